//! The DGWS ID card: a SAML assertion the caller signs with its OCES3 certificate and the
//! SOSI STS signs again, valid for 24 hours, that every FMK call carries (brief §5.4).
//!
//! The card is a *system* card at authentication level 3 for the pharmacy's CVR, with
//! `sosi:OCESCertHash` = base64(SHA-1(certificate)). It is signed enveloped (`#IDCard`,
//! exclusive canonicalisation) by the host with the credential's key; the certificate goes
//! into `KeyInfo`. The request to the STS is WS-Trust 2005/02 with `Context="www.sosi.dk"`.
//! The STS may answer a refusal as a SOAP fault with HTTP 200, so the body decides.

use certvakt_plugin_api::{ClientIdentity, Host, KeyRef, PluginError, SignatureAlgorithm};
use certvakt_plugin_common::oces3;
use certvakt_soap::call::{Answer, SoapRequest, call};
use certvakt_soap::dsig::{self, Reference};
use certvakt_soap::write::XmlWriter;
use certvakt_soap::{ns, read, xs_datetime};

use crate::settings::Settings;

/// The WS-Trust 2005/02 action the SOSI STS takes.
pub const ISSUE: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue";
/// The token type of an ID card.
pub const TOKEN_TYPE: &str = "urn:oasis:names:tc:SAML:2.0:assertion:";
/// How long a card is asked for; the STS decides (24 h).
const CARD_HOURS: i64 = 24;

/// The credential that signs the card: the live certificate (PEM) and its key.
#[derive(Debug, Clone, Copy)]
pub struct Credential<'a> {
    pub certificate_pem: &'a str,
    pub key: &'a KeyRef,
    pub identity: &'a ClientIdentity,
}

/// Asks the STS for an ID card; returns it standalone, ready for an FMK request's header.
pub fn id_card(
    host: &Host<'_>,
    settings: &Settings,
    credential: Credential<'_>,
    card_id: &str,
) -> Result<String, PluginError> {
    let der = oces3::der(credential.certificate_pem).map_err(PluginError::permanent)?;
    let now = host.now()?;
    let unsigned = request(settings, &der, now, card_id, None).map_err(PluginError::permanent)?;
    let signed_info = dsig::signed_info(&unsigned, &["id"], &[Reference::enveloped("IDCard")])
        .map_err(|e| PluginError::permanent(e.to_string()))?;
    let value = host.sign(
        credential.key.clone(),
        SignatureAlgorithm::RsaPkcs1Sha256,
        signed_info.as_bytes(),
    )?;
    let key_info = dsig::key_info_x509(&der).map_err(|e| PluginError::permanent(e.to_string()))?;
    let signature = dsig::signature(
        &signed_info,
        &value,
        &key_info,
        Some(("id", "OCESSignature")),
    )
    .map_err(|e| PluginError::permanent(e.to_string()))?;
    let envelope =
        request(settings, &der, now, card_id, Some(&signature)).map_err(PluginError::permanent)?;

    let answer = call(
        host,
        SoapRequest {
            service: "the SOSI STS",
            url: &settings.sts_endpoint,
            action: ISSUE,
            envelope,
            identity: credential.identity.clone(),
            trust: settings.sts_trust.clone(),
            timeout_ms: 30_000,
        },
    )?;
    let text = match answer {
        Answer::Envelope(text) => text,
        Answer::Fault { fault, .. } => {
            return Err(PluginError::needs_person(format!(
                "the SOSI STS refused an ID card for CVR {} ({}: {}). It accepts only OCES3 \
                 certificates it has whitelisted: if this is a new certificate, ask NSP's \
                 operations to whitelist it for the SOSI STS",
                settings.cvr, fault.code, fault.string
            ))
            .with_fault_code(format!("sosi:{}", fault.code_local)));
        }
    };
    let doc = read::parse(&text, "the SOSI STS's answer").map_err(PluginError::permanent)?;
    let card = read::find(
        doc.root_element(),
        ns::WST_2005_02,
        "RequestedSecurityToken",
    )
    .and_then(|t| read::child(t, ns::SAML2, "Assertion"))
    .ok_or_else(|| {
        PluginError::permanent(
            "the SOSI STS answered without an ID card (no RequestedSecurityToken/Assertion)",
        )
    })?;
    read::standalone(&text, card).map_err(PluginError::permanent)
}

/// The STS request; without `signature`, the text the signature is computed over.
fn request(
    settings: &Settings,
    der: &[u8],
    now: i64,
    card_id: &str,
    signature: Option<&str>,
) -> Result<String, String> {
    // Issued a little in the past, as SOSI's own library does, so clocks that differ by a
    // few minutes agree the card is valid.
    let issued = xs_datetime(now - 300);
    let until = xs_datetime(now - 300 + CARD_HOURS * 3600);
    let mut w = XmlWriter::new();
    w.element(
        "soapenv:Envelope",
        &[
            ("xmlns:soapenv", ns::SOAP11),
            ("xmlns:wsse", ns::WSSE),
            ("xmlns:wsu", ns::WSU),
            ("xmlns:wst", ns::WST_2005_02),
            ("xmlns:wsa", ns::WSA_2004_08),
        ],
        |w| {
            w.element("soapenv:Header", &[], |w| {
                w.element("wsse:Security", &[], |w| {
                    w.element("wsu:Timestamp", &[], |w| {
                        w.text_element("wsu:Created", &[], &xs_datetime(now));
                    });
                });
            });
            w.element("soapenv:Body", &[], |w| {
                w.element(
                    "wst:RequestSecurityToken",
                    &[("Context", "www.sosi.dk")],
                    |w| {
                        w.text_element("wst:TokenType", &[], TOKEN_TYPE);
                        w.text_element("wst:RequestType", &[], ISSUE);
                        w.element("wst:Claims", &[], |w| {
                            card(w, settings, der, &issued, &until, card_id, signature);
                        });
                        w.element("wst:Issuer", &[], |w| {
                            w.text_element("wsa:Address", &[], &settings.system_name);
                        });
                    },
                );
            });
        },
    );
    w.finish()
}

#[allow(clippy::too_many_arguments)]
fn card(
    w: &mut XmlWriter,
    settings: &Settings,
    der: &[u8],
    issued: &str,
    until: &str,
    card_id: &str,
    signature: Option<&str>,
) {
    let attribute = |w: &mut XmlWriter, name: &str, format: Option<&str>, value: &str| {
        let mut attrs = vec![("Name", name)];
        attrs.extend(format.map(|f| ("NameFormat", f)));
        w.element("saml:Attribute", &attrs, |w| {
            w.text_element("saml:AttributeValue", &[], value);
        });
    };
    w.element(
        "saml:Assertion",
        &[
            ("xmlns:saml", ns::SAML2),
            ("xmlns:ds", ns::DS),
            ("IssueInstant", issued),
            ("Version", "2.0"),
            ("id", "IDCard"),
        ],
        |w| {
            w.text_element("saml:Issuer", &[], &settings.system_name);
            w.element("saml:Subject", &[], |w| {
                w.text_element(
                    "saml:NameID",
                    &[("Format", "medcom:cvrnumber")],
                    &settings.cvr,
                );
                w.element("saml:SubjectConfirmation", &[], |w| {
                    w.text_element(
                        "saml:ConfirmationMethod",
                        &[],
                        "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key",
                    );
                    w.element("saml:SubjectConfirmationData", &[], |w| {
                        w.element("ds:KeyInfo", &[], |w| {
                            w.text_element("ds:KeyName", &[], "OCESSignature");
                        });
                    });
                });
            });
            w.empty(
                "saml:Conditions",
                &[("NotBefore", issued), ("NotOnOrAfter", until)],
            );
            w.element("saml:AttributeStatement", &[("id", "IDCardData")], |w| {
                attribute(w, "sosi:IDCardID", None, card_id);
                attribute(w, "sosi:IDCardVersion", None, "1.0.1");
                attribute(w, "sosi:IDCardType", None, "system");
                attribute(w, "sosi:AuthenticationLevel", None, "3");
                attribute(w, "sosi:OCESCertHash", None, &oces3::sha1_base64(der));
            });
            w.element("saml:AttributeStatement", &[("id", "SystemLog")], |w| {
                attribute(w, "medcom:ITSystemName", None, &settings.system_name);
                attribute(
                    w,
                    "medcom:CareProviderID",
                    Some("medcom:cvrnumber"),
                    &settings.cvr,
                );
                attribute(w, "medcom:CareProviderName", None, &settings.pharmacy_name);
            });
            if let Some(signature) = signature {
                w.raw(signature);
            }
        },
    );
}
