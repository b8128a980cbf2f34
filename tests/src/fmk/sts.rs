//! The SOSI STS stand-in (brief §5.4, §9 "SOSI STS stub"): a WS-Trust 2005/02
//! `RequestSecurityToken` with a self-signed system ID card in `wst:Claims` comes back as a
//! `RequestSecurityTokenResponse` holding a copy of the card signed by the STS, valid 24 h.

use certvakt_soap::read::child;
use quick_xml::escape::escape;
use roxmltree::Node;

use super::idcard::{self, IdCard};
use super::{Endpoint, LoggedRequest, STS_ISSUER, Shared, StsAllow, lock, ns};
use crate::soapd::{self, Fault, SoapReply, SoapRequest};
use crate::xmlsec::{text, utc_seconds};

/// The token type DGWS asks for (with its trailing colon).
pub(super) const TOKEN_TYPE: &str = "urn:oasis:names:tc:SAML:2.0:assertion:";
const ISSUE: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue";
const STATUS_VALID: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust/status/valid";

const INVALID_REQUEST: &str = "wst:InvalidRequest";
const FAILED_AUTHENTICATION: &str = "wst:FailedAuthentication";

type Refusal = (&'static str, String);

pub(super) fn handle(shared: &Shared, request: &SoapRequest) -> SoapReply {
    let soap_action = request.action().to_owned();
    if lock(&shared.state).sts_down {
        shared.log(LoggedRequest {
            endpoint: Endpoint::Sts,
            soap_action,
            body_root: String::new(),
            fault: Some("unavailable".into()),
            by_owner: false,
        });
        return SoapReply::text(503, "Service Unavailable");
    }
    let source = String::from_utf8_lossy(&request.body).into_owned();
    let mut body_root = String::new();
    let outcome = process(shared, request, &source, &mut body_root);
    let (reply, fault) = match outcome {
        Ok(envelope) => (SoapReply::xml(200, envelope), None),
        Err((code, text)) => (
            SoapReply::xml(200, fault(code, &text)),
            Some(code.to_owned()),
        ),
    };
    shared.log(LoggedRequest {
        endpoint: Endpoint::Sts,
        soap_action,
        body_root,
        fault,
        by_owner: false,
    });
    reply
}

fn invalid(text: impl Into<String>) -> Refusal {
    (INVALID_REQUEST, text.into())
}

fn failed(text: impl Into<String>) -> Refusal {
    (FAILED_AUTHENTICATION, text.into())
}

fn process(
    shared: &Shared,
    request: &SoapRequest,
    source: &str,
    body_root: &mut String,
) -> Result<String, Refusal> {
    let doc = soapd::parse_envelope(source).map_err(invalid)?;
    let envelope = doc.root_element();
    let body = child(envelope, ns::SOAP, "Body").ok_or(invalid("no soapenv:Body"))?;
    let rst = body
        .children()
        .find(Node::is_element)
        .ok_or(invalid("the soapenv:Body is empty"))?;
    body_root.push_str(rst.tag_name().name());
    if !rst.has_tag_name((ns::WST, "RequestSecurityToken")) {
        return Err(invalid(
            "the body is not a WS-Trust 2005/02 wst:RequestSecurityToken",
        ));
    }
    if rst.attribute("Context") != Some("www.sosi.dk") {
        return Err(invalid(
            "RequestSecurityToken Context must be \"www.sosi.dk\"",
        ));
    }
    let token_type = child(rst, ns::WST, "TokenType")
        .map(text)
        .unwrap_or_default();
    if token_type != TOKEN_TYPE {
        return Err(invalid(format!(
            "TokenType {token_type:?} is not {TOKEN_TYPE:?}"
        )));
    }
    if let Some(request_type) = child(rst, ns::WST, "RequestType").map(text) {
        if request_type != ISSUE {
            return Err(invalid(format!(
                "RequestType {request_type:?} is not {ISSUE}"
            )));
        }
    }
    let claims = child(rst, ns::WST, "Claims").ok_or(invalid("no wst:Claims with an ID card"))?;
    let node = idcard::locate(&doc, claims).map_err(invalid)?;
    let card = idcard::parse(node).map_err(invalid)?;
    let leaf = card.certificates.first().cloned().ok_or(failed(
        "the ID card's signature carries no certificate (KeyInfo/X509Data)",
    ))?;
    let leaf_pem = pem::encode(&pem::Pem::new("CERTIFICATE", leaf.clone()));
    idcard::check_signature(source, node, &leaf_pem)
        .map_err(|e| failed(format!("the ID card's signature: {e}")))?;
    check_chain(shared, request, &card, &leaf)?;
    check_contents(&card, &leaf)?;
    check_allowed(shared, &leaf)?;

    let now = idcard::now();
    let signed = idcard::issue(
        &card,
        STS_ISSUER,
        now,
        now + time::Duration::hours(24),
        &shared.sts_identity,
        shared.options.sts_signs_sha256,
    )
    .map_err(|e| {
        (
            INVALID_REQUEST,
            format!("the STS could not sign the card: {e:#}"),
        )
    })?;
    Ok(response(&signed))
}

/// The card's certificate chains to the client roots and is valid now.
fn check_chain(
    shared: &Shared,
    request: &SoapRequest,
    card: &IdCard,
    leaf: &[u8],
) -> Result<(), Refusal> {
    let intermediates = shared
        .options
        .client_intermediates
        .iter()
        .chain(request.client_chain.iter().skip(1))
        .chain(card.certificates.iter().skip(1));
    soapd::check_client_chain(
        &shared.options.client_roots,
        intermediates,
        leaf,
        "the ID card's certificate",
    )
    .map_err(failed)
}

/// A system card at level 3, for the certificate that signed it.
fn check_contents(card: &IdCard, leaf: &[u8]) -> Result<(), Refusal> {
    use base64::Engine as _;
    use sha1::{Digest as _, Sha1};
    let expected = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(leaf));
    let stated = card.attribute("sosi:OCESCertHash").unwrap_or_default();
    if stated != expected {
        return Err(invalid(format!(
            "sosi:OCESCertHash {stated:?} is not base64(SHA-1) of the signing certificate ({expected})"
        )));
    }
    let card_type = card.attribute("sosi:IDCardType").unwrap_or_default();
    if card_type != "system" {
        return Err(invalid(format!(
            "sosi:IDCardType {card_type:?}: this STS issues system ID cards only"
        )));
    }
    let level = card
        .attribute("sosi:AuthenticationLevel")
        .unwrap_or_default();
    if level != "3" {
        return Err(invalid(format!(
            "sosi:AuthenticationLevel {level:?}: a system card with an OCES certificate is level 3"
        )));
    }
    let identity = crate::mitid::identity(leaf).map_err(|e| {
        failed(format!(
            "the certificate is not an OCES3 organisation certificate: {e:#}"
        ))
    })?;
    let cvr = card.care_provider_cvr().unwrap_or_default();
    if cvr != identity.cvr {
        return Err(invalid(format!(
            "medcom:CareProviderID (medcom:cvrnumber) {cvr:?} is not the certificate's CVR {}",
            identity.cvr
        )));
    }
    let now = idcard::now();
    if card.not_on_or_after.is_some_and(|end| end <= now) {
        return Err(invalid("the ID card's Conditions have expired"));
    }
    if card
        .not_before
        .is_some_and(|start| start > now + time::Duration::minutes(5))
    {
        return Err(invalid("the ID card's Conditions start in the future"));
    }
    Ok(())
}

/// The STS's own whitelist of callers.
fn check_allowed(shared: &Shared, leaf: &[u8]) -> Result<(), Refusal> {
    let allow = lock(&shared.state).sts_allow.clone();
    match allow {
        StsAllow::Any => Ok(()),
        StsAllow::Uuids(uuids) => {
            let uuid = crate::mitid::identity(leaf)
                .map(|i| i.uuid)
                .unwrap_or_default();
            if uuids.iter().any(|u| u.eq_ignore_ascii_case(&uuid)) {
                Ok(())
            } else {
                Err(failed(format!(
                    "the certificate (UUID {uuid}) is not whitelisted for the SOSI STS"
                )))
            }
        }
        StsAllow::Thumbprints(prints) => {
            use sha1::{Digest as _, Sha1};
            use sha2::Sha256;
            let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
            let sha1 = hex(&Sha1::digest(leaf));
            let sha256 = hex(&Sha256::digest(leaf));
            let allowed = prints.iter().any(|p| {
                let p = p.replace(':', "").to_ascii_lowercase();
                p == sha1 || p == sha256
            });
            if allowed {
                Ok(())
            } else {
                Err(failed(format!(
                    "the certificate (SHA-1 thumbprint {}) is not whitelisted for the SOSI STS",
                    sha1.to_ascii_uppercase()
                )))
            }
        }
    }
}

fn response(signed_card: &str) -> String {
    let header = format!(
        "<wsse:Security><wsu:Timestamp><wsu:Created>{}</wsu:Created></wsu:Timestamp></wsse:Security>",
        utc_seconds(idcard::now())
    );
    let body = format!(
        concat!(
            "<wst:RequestSecurityTokenResponse Context=\"www.sosi.dk\">",
            "<wst:TokenType>{token_type}</wst:TokenType>",
            "<wst:RequestedSecurityToken>{card}</wst:RequestedSecurityToken>",
            "<wst:Status><wst:Code>{valid}</wst:Code></wst:Status>",
            "<wst:Issuer><wsa:Address>{issuer}</wsa:Address></wst:Issuer>",
            "</wst:RequestSecurityTokenResponse>"
        ),
        token_type = TOKEN_TYPE,
        card = signed_card,
        valid = STATUS_VALID,
        issuer = escape(STS_ISSUER),
    );
    soapd::envelope(
        "soapenv",
        &[
            ("wsse", ns::WSSE),
            ("wsu", ns::WSU),
            ("wst", ns::WST),
            ("wsa", ns::WSA),
        ],
        Some(&header),
        &body,
    )
}

/// A SOAP 1.1 fault with a WS-Trust 2005/02 fault code, sent with HTTP 200 (brief §8).
fn fault(code: &str, text: &str) -> String {
    let fault = Fault {
        code,
        text,
        ..Fault::default()
    };
    soapd::envelope(
        "soapenv",
        &[("wst", ns::WST)],
        None,
        &fault.element("soapenv", &[]),
    )
}
