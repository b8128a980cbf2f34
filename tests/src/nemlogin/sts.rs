//! The NemLog-in STS endpoint: the checks of the module documentation of [`super`], in order,
//! and the RSTR (brief §5, §6, §8).

use certvakt_soap::read::{child, children};
use quick_xml::escape::escape;
use roxmltree::{Document, Node};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Environment, ISSUE_ACTION, IssuedToken, SCENARIOS, STS_ENTITY_ID, Shared, lock};
use crate::soapd::{self, Fault, SoapReply, SoapRequest};
use crate::xmlsec::{self, IdAttr, text, utc_millis, utc_seconds};

pub(super) mod ns {
    pub use crate::soapd::ns::{DS, SAML, SOAP, WSSE, WSU};
    pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
    pub const WST: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
    pub const WSP_2002: &str = "http://schemas.xmlsoap.org/ws/2002/12/policy";
}

const TOKEN_TYPE: &str = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0";
const REQUEST_TYPE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
const KEY_TYPE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey";
const BPP: &str = "http://itst.dk/oiosaml/basic_privilege_profile";
/// The longest token lifetime of the signature scenario.
const MAX_LIFETIME: time::Duration = time::Duration::hours(8);
/// How far `Created` may be from the STS's clock.
const SKEW: time::Duration = time::Duration::minutes(5);

/// The elements the request signature must cover, by their `wsu:Id`.
pub(super) const SIGNED: [IdAttr; 6] = [
    IdAttr {
        attr: "Id",
        namespace: ns::WSA,
        element: "Action",
    },
    IdAttr {
        attr: "Id",
        namespace: ns::WSA,
        element: "MessageID",
    },
    IdAttr {
        attr: "Id",
        namespace: ns::WSA,
        element: "To",
    },
    IdAttr {
        attr: "Id",
        namespace: ns::WSU,
        element: "Timestamp",
    },
    IdAttr {
        attr: "Id",
        namespace: ns::WSSE,
        element: "BinarySecurityToken",
    },
    IdAttr {
        attr: "Id",
        namespace: ns::SOAP,
        element: "Body",
    },
];
pub(super) const SIGNATURE_XPATH: &str = "//*[local-name()='Security']/*[local-name()='Signature' and namespace-uri()='http://www.w3.org/2000/09/xmldsig#']";

type Refusal = (&'static str, String);

fn refuse(code: &'static str, text: impl Into<String>) -> Refusal {
    (code, text.into())
}

pub(super) fn handle(shared: &Shared, request: &SoapRequest) -> SoapReply {
    if lock(&shared.state).down {
        return SoapReply::text(503, "Service Unavailable");
    }
    let env = match request.path.as_str() {
        "/integrationtest/SecurityTokenService.svc" => Environment::IntegrationTest,
        "/production/SecurityTokenService.svc" => Environment::Production,
        other => return SoapReply::text(404, &format!("no service at {other}")),
    };
    if request.method != "POST" {
        return SoapReply::text(405, "only POST is served here");
    }
    match process(shared, env, request) {
        Ok((envelope, token)) => {
            lock(&shared.state).tokens.push(token);
            SoapReply::xml(200, envelope)
        }
        Err((code, text)) => {
            lock(&shared.state).faults.push(code.to_owned());
            SoapReply::xml(500, fault(code, &text))
        }
    }
}

fn process(
    shared: &Shared,
    env: Environment,
    request: &SoapRequest,
) -> Result<(String, IssuedToken), Refusal> {
    // 1. SOAP 1.1 and SOAPAction.
    let action = request.action();
    if action != ISSUE_ACTION {
        return Err(refuse(
            "wst:InvalidRequest",
            format!("SOAPAction {action:?} is not {ISSUE_ACTION}"),
        ));
    }
    // 2. Chunked bodies.
    if request.chunked && shared.options.refuse_chunked {
        return Err(refuse(
            "wst:InvalidRequest",
            "chunked request bodies are not supported; send Content-Length",
        ));
    }
    let source = std::str::from_utf8(&request.body)
        .map_err(|_| refuse("wst:InvalidRequest", "the body is not UTF-8"))?;
    let doc = soapd::parse_envelope(source).map_err(|e| refuse("wst:InvalidRequest", e))?;
    let envelope = doc.root_element();
    let header =
        child(envelope, ns::SOAP, "Header").ok_or(refuse("wst:InvalidRequest", "no S11:Header"))?;
    let body =
        child(envelope, ns::SOAP, "Body").ok_or(refuse("wst:InvalidRequest", "no S11:Body"))?;

    // 3. Addressing.
    let wsa = |name: &str| child(header, ns::WSA, name);
    let action_node = wsa("Action").ok_or(refuse("wst:InvalidRequest", "no wsa:Action"))?;
    if text(action_node) != ISSUE_ACTION {
        return Err(refuse(
            "wst:InvalidRequest",
            format!("wsa:Action is not {ISSUE_ACTION}"),
        ));
    }
    let message_id_node =
        wsa("MessageID").ok_or(refuse("wst:InvalidRequest", "no wsa:MessageID"))?;
    let message_id = text(message_id_node);
    let to_node = wsa("To").ok_or(refuse("wst:InvalidRequest", "no wsa:To"))?;
    let to = text(to_node);
    if !SCENARIOS.contains(&to.as_str()) {
        return Err(refuse(
            "wst:InvalidRequest",
            format!("wsa:To {to:?} is none of {}", SCENARIOS.join(", ")),
        ));
    }
    if message_id.is_empty() || !lock(&shared.state).message_ids.insert(message_id.clone()) {
        return Err(refuse(
            "wst:InvalidRequest",
            format!("wsa:MessageID {message_id:?} was used before"),
        ));
    }

    // 4. The signature.
    let security = child(header, ns::WSSE, "Security")
        .ok_or(refuse("wst:InvalidRequest", "no wsse:Security"))?;
    let timestamp = child(security, ns::WSU, "Timestamp")
        .ok_or(refuse("wst:InvalidRequest", "no wsu:Timestamp"))?;
    let bst = child(security, ns::WSSE, "BinarySecurityToken")
        .ok_or(refuse("wst:InvalidRequest", "no wsse:BinarySecurityToken"))?;
    let bst_der = certificate_of(bst)?;
    check_signature(
        source,
        &doc,
        security,
        [action_node, message_id_node, to_node, timestamp, bst, body],
        &bst_der,
    )?;

    // 5. Times.
    let now = OffsetDateTime::now_utc();
    let created = instant(child(timestamp, ns::WSU, "Created"))?
        .ok_or(refuse("wst:InvalidRequest", "no Timestamp/Created"))?;
    let expires = instant(child(timestamp, ns::WSU, "Expires"))?
        .ok_or(refuse("wst:InvalidRequest", "no Timestamp/Expires"))?;
    if (created - now).abs() > SKEW {
        return Err(refuse(
            "wst:InvalidTimeRange",
            "Timestamp/Created is too far from the STS's clock",
        ));
    }
    if expires <= created {
        return Err(refuse(
            "wst:InvalidTimeRange",
            "Timestamp/Expires is not after Created",
        ));
    }
    if expires <= now {
        return Err(refuse(
            "wst:ExpiredData",
            "the request's Timestamp has expired",
        ));
    }
    let rst = body
        .children()
        .find(Node::is_element)
        .filter(|n| n.has_tag_name((ns::WST, "RequestSecurityToken")))
        .ok_or(refuse(
            "wst:InvalidRequest",
            "the body is not a WS-Trust 1.3 wst:RequestSecurityToken",
        ))?;
    for (name, expected) in [
        ("TokenType", TOKEN_TYPE),
        ("RequestType", REQUEST_TYPE),
        ("KeyType", KEY_TYPE),
    ] {
        let value = child(rst, ns::WST, name).map(text).unwrap_or_default();
        if value != expected {
            return Err(refuse(
                "wst:InvalidRequest",
                format!("{name} {value:?} is not {expected}"),
            ));
        }
    }
    let lifetime_expires = child(rst, ns::WST, "Lifetime")
        .and_then(|l| child(l, ns::WSU, "Expires"))
        .map(text)
        .ok_or(refuse("wst:InvalidRequest", "no Lifetime/Expires"))?;
    if !whole_seconds(&lifetime_expires) {
        return Err(refuse(
            "wst:InvalidRequest",
            format!(
                "Lifetime/Expires {lifetime_expires:?} must be yyyy-MM-ddTHH:mm:ssZ (no milliseconds)"
            ),
        ));
    }
    let requested_end = OffsetDateTime::parse(&lifetime_expires, &Rfc3339)
        .map_err(|e| refuse("wst:InvalidRequest", format!("Lifetime/Expires: {e}")))?;
    if requested_end <= now {
        return Err(refuse(
            "wst:InvalidTimeRange",
            "the requested Lifetime has already ended",
        ));
    }

    // 6. The certificate.
    check_chain(shared, &bst_der)?;
    let use_key = child(rst, ns::WST, "UseKey")
        .and_then(|k| child(k, ns::WSSE, "BinarySecurityToken"))
        .ok_or(refuse(
            "wst:InvalidSecurityToken",
            "no UseKey/BinarySecurityToken",
        ))?;
    if certificate_of(use_key)? != bst_der {
        return Err(refuse(
            "wst:InvalidSecurityToken",
            "UseKey is not the signing certificate",
        ));
    }

    // 7. AppliesTo.
    let applies_to = rst
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "AppliesTo")
        .ok_or(refuse("wst:InvalidRequest", "no AppliesTo"))?;
    if applies_to.tag_name().namespace() != Some(ns::WSP_2002) {
        return Err(refuse(
            "wst:InvalidRequest",
            format!(
                "AppliesTo is in {:?}; this STS reads the 2002/12 policy namespace ({})",
                applies_to.tag_name().namespace().unwrap_or_default(),
                ns::WSP_2002
            ),
        ));
    }
    let address = child(applies_to, ns::WSA, "EndpointReference")
        .and_then(|e| child(e, ns::WSA, "Address"))
        .map(text)
        .ok_or(refuse(
            "wst:InvalidRequest",
            "no AppliesTo/EndpointReference/Address",
        ))?;
    if address.ends_with('/') {
        return Err(refuse(
            "wst:InvalidRequest",
            format!("AppliesTo {address:?} ends with a slash; no such web service"),
        ));
    }

    // 8.–10. Registry and Context.
    let context = rst.attribute("Context").unwrap_or_default().to_owned();
    let identity = crate::mitid::identity(&bst_der).map_err(|e| {
        refuse(
            "wst:FailedAuthentication",
            format!("not an OCES3 organisation certificate: {e:#}"),
        )
    })?;
    let (service, entity_id, privileges) = {
        let mut state = lock(&shared.state);
        let registry = &state.registries[env.index()];
        let service = registry
            .service(&address)
            .filter(|s| s.entity_id == address)
            .cloned()
            .ok_or_else(|| {
                refuse(
                    "wst:InvalidRequest",
                    format!("{address} is not a registered web service"),
                )
            })?;
        let (entity_id, user) = registry
            .live
            .iter()
            .find(|(_, user)| user.certificates.contains(&bst_der))
            .map(|(id, user)| (id.clone(), user.clone()))
            .ok_or_else(|| {
                refuse(
                    "wst:FailedAuthentication",
                    format!(
                        "the certificate belongs to no provisioned system user in {}",
                        env.path()
                    ),
                )
            })?;
        let privileges = user
            .access
            .get(&service.entity_id)
            .filter(|a| a.granted)
            .map(|a| a.privileges.clone())
            .unwrap_or_default();
        if context.is_empty() || !state.contexts.insert(context.clone()) {
            return Err(refuse(
                "wst:InvalidRequest",
                format!("Context {context:?} is missing or was used before"),
            ));
        }
        (service, entity_id, privileges)
    };

    let end = requested_end.min(now + MAX_LIFETIME);
    let assertion = assertion(
        shared,
        &entity_id,
        &identity.cvr,
        &bst_der,
        &address,
        &privileges,
        now,
        end,
    )
    .map_err(|e| refuse("wst:RequestFailed", format!("{e:#}")))?;
    let encrypted = xmlsec::encrypt_for(&assertion.1, &service.cert_pem)
        .map_err(|e| refuse("wst:RequestFailed", format!("{e:#}")))?;
    let envelope = response(
        &message_id,
        &context,
        &address,
        &assertion.0,
        &encrypted,
        now,
        end,
    );
    Ok((
        envelope,
        IssuedToken {
            env,
            entity_id,
            applies_to: address,
            cvr: identity.cvr,
            privileges,
        },
    ))
}

fn certificate_of(bst: Node<'_, '_>) -> Result<Vec<u8>, Refusal> {
    use base64::Engine as _;
    let b64: String = text(bst).split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| {
            refuse(
                "wst:InvalidSecurityToken",
                format!("the BinarySecurityToken is not base64: {e}"),
            )
        })
}

fn instant(node: Option<Node<'_, '_>>) -> Result<Option<OffsetDateTime>, Refusal> {
    node.map(|n| {
        let value = text(n);
        OffsetDateTime::parse(&value, &Rfc3339).map_err(|e| {
            refuse(
                "wst:InvalidRequest",
                format!("{value:?} is not a time: {e}"),
            )
        })
    })
    .transpose()
}

/// `yyyy-MM-ddTHH:mm:ssZ`, nothing more.
fn whole_seconds(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Step 4: one signature, exactly the six elements referenced by unique `wsu:Id`s, the key
/// reference pointing at the BST, and `xmlsec1` agreeing with the BST's key.
fn check_signature(
    source: &str,
    doc: &Document<'_>,
    security: Node<'_, '_>,
    signed: [Node<'_, '_>; 6],
    bst_der: &[u8],
) -> Result<(), Refusal> {
    let failed = |text: String| refuse("wst:FailedAuthentication", text);
    let signatures: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| n.has_tag_name((ns::DS, "Signature")))
        .collect();
    let [signature] = signatures.as_slice() else {
        return Err(failed(format!(
            "{} ds:Signature elements; expected one",
            signatures.len()
        )));
    };
    if signature.parent() != Some(security) {
        return Err(failed("the ds:Signature is not in wsse:Security".into()));
    }
    let id_of = |n: Node<'_, '_>| n.attribute((ns::WSU, "Id")).map(str::to_owned);
    let mut expected = Vec::new();
    for node in signed {
        let id = id_of(node)
            .ok_or_else(|| failed(format!("{} has no wsu:Id", node.tag_name().name())))?;
        let holders = doc
            .descendants()
            .filter(|n| n.attribute((ns::WSU, "Id")) == Some(id.as_str()))
            .count();
        if holders != 1 {
            return Err(failed(format!("wsu:Id {id:?} is not unique")));
        }
        expected.push(format!("#{id}"));
    }
    let signed_info =
        child(*signature, ns::DS, "SignedInfo").ok_or_else(|| failed("no SignedInfo".into()))?;
    let mut referenced: Vec<String> = children(signed_info, ns::DS, "Reference")
        .map(|r| r.attribute("URI").unwrap_or_default().to_owned())
        .collect();
    referenced.sort();
    expected.sort();
    if referenced != expected {
        return Err(failed(format!(
            "the signature references {referenced:?}; it must cover Action, MessageID, To, Timestamp, the BinarySecurityToken and Body ({expected:?})"
        )));
    }
    let bst_id = id_of(signed[4]).unwrap_or_default();
    let key_reference = child(*signature, ns::DS, "KeyInfo")
        .and_then(|k| child(k, ns::WSSE, "SecurityTokenReference"))
        .and_then(|s| child(s, ns::WSSE, "Reference"))
        .and_then(|r| r.attribute("URI"));
    if key_reference != Some(format!("#{bst_id}").as_str()) {
        return Err(failed(
            "KeyInfo does not reference the BinarySecurityToken".into(),
        ));
    }
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", bst_der.to_vec()));
    xmlsec::verify(source, SIGNATURE_XPATH, &pem, &SIGNED).map_err(|e| failed(format!("{e:#}")))
}

fn check_chain(shared: &Shared, der: &[u8]) -> Result<(), Refusal> {
    soapd::check_client_chain(
        &shared.options.client_roots,
        &shared.options.client_intermediates,
        der,
        "the BinarySecurityToken",
    )
    .map_err(|e| refuse("wst:FailedAuthentication", e))
}

/// The assertion (ID, signed XML) for the WSP.
#[allow(clippy::too_many_arguments)]
fn assertion(
    shared: &Shared,
    entity_id: &str,
    cvr: &str,
    wsc_der: &[u8],
    audience: &str,
    privileges: &[String],
    now: OffsetDateTime,
    end: OffsetDateTime,
) -> anyhow::Result<(String, String)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let id = format!(
        "_{}",
        super::wsp_uuid(&format!("{entity_id}/{}", now.unix_timestamp_nanos()))
    );
    let privileges_value = if privileges.is_empty() {
        "<saml:AttributeValue xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:nil=\"true\"/>".to_owned()
    } else {
        let mut list = format!(
            "<bpp:PrivilegeList xmlns:bpp=\"{BPP}\"><PrivilegeGroup Scope=\"urn:dk:gov:saml:cvrNumberIdentifier:{cvr}\">"
        );
        for privilege in privileges {
            list.push_str(&format!("<Privilege>{}</Privilege>", escape(privilege)));
        }
        list.push_str("</PrivilegeGroup></bpp:PrivilegeList>");
        format!(
            "<saml:AttributeValue>{}</saml:AttributeValue>",
            b64.encode(list)
        )
    };
    let attribute = |name: &str, value: &str| {
        format!(
            "<saml:Attribute Name=\"{name}\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\">{value}</saml:Attribute>"
        )
    };
    let plain_value = |v: &str| format!("<saml:AttributeValue>{}</saml:AttributeValue>", escape(v));
    let template = format!(
        concat!(
            "<saml:Assertion xmlns:saml=\"{saml}\" xmlns:ds=\"{ds}\" ID=\"{id}\" IssueInstant=\"{now}\" Version=\"2.0\">",
            "<saml:Issuer>{issuer}</saml:Issuer>",
            "<ds:Signature><ds:SignedInfo>",
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
            "<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>",
            "<ds:Reference URI=\"#{id}\"><ds:Transforms>",
            "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>",
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>",
            "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/></ds:Reference>",
            "</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>",
            "<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:entity\">{entity}</saml:NameID>",
            "<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:holder-of-key\"><saml:SubjectConfirmationData>",
            "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{wsc}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
            "</saml:SubjectConfirmationData></saml:SubjectConfirmation></saml:Subject>",
            "<saml:Conditions NotBefore=\"{now}\" NotOnOrAfter=\"{end}\"><saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>",
            "<saml:AttributeStatement>{spec}{level}{cvr}{privileges}</saml:AttributeStatement>",
            "</saml:Assertion>"
        ),
        saml = ns::SAML,
        ds = ns::DS,
        id = id,
        now = utc_seconds(now),
        end = utc_seconds(end),
        issuer = STS_ENTITY_ID,
        entity = escape(entity_id),
        wsc = b64.encode(wsc_der),
        audience = escape(audience),
        spec = attribute("dk:gov:saml:attribute:SpecVer", &plain_value("DK-SAML-2.0")),
        level = attribute("dk:gov:saml:attribute:AssuranceLevel", &plain_value("3")),
        cvr = attribute(
            "dk:gov:saml:attribute:CvrNumberIdentifier",
            &plain_value(cvr)
        ),
        privileges = attribute(
            "dk:gov:saml:attribute:Privileges_intermediate",
            &privileges_value
        ),
    );
    let ids = [IdAttr {
        attr: "ID",
        namespace: ns::SAML,
        element: "Assertion",
    }];
    let signed = xmlsec::sign(
        &template,
        &shared.signer.key_pem,
        &shared.signer.cert_pem,
        &ids,
    )?;
    Ok((id, signed))
}

fn response(
    message_id: &str,
    context: &str,
    applies_to: &str,
    assertion_id: &str,
    encrypted: &str,
    now: OffsetDateTime,
    end: OffsetDateTime,
) -> String {
    let reference = format!(
        "<wsse:SecurityTokenReference xmlns:wsse11=\"http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd\" wsse11:TokenType=\"http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0\"><wsse:KeyIdentifier ValueType=\"http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLID\">{assertion_id}</wsse:KeyIdentifier></wsse:SecurityTokenReference>"
    );
    let header = format!(
        concat!(
            "<a:Action s:mustUnderstand=\"1\">{action}</a:Action><a:RelatesTo>{relates}</a:RelatesTo>",
            "<wsse:Security s:mustUnderstand=\"1\"><u:Timestamp u:Id=\"_0\"><u:Created>{created}</u:Created><u:Expires>{ts_expires}</u:Expires></u:Timestamp></wsse:Security>",
        ),
        action = ISSUE_ACTION,
        relates = escape(message_id),
        created = utc_millis(now),
        ts_expires = utc_millis(now + time::Duration::minutes(5)),
    );
    let body = format!(
        concat!(
            "<trust:RequestSecurityTokenResponseCollection xmlns:trust=\"{wst}\">",
            "<trust:RequestSecurityTokenResponse Context=\"{context}\">",
            "<trust:TokenType>{token_type}</trust:TokenType>",
            "<trust:RequestedSecurityToken><saml:EncryptedAssertion xmlns:saml=\"{saml}\">{encrypted}</saml:EncryptedAssertion></trust:RequestedSecurityToken>",
            "<trust:RequestedAttachedReference>{reference}</trust:RequestedAttachedReference>",
            "<trust:RequestedUnattachedReference>{reference}</trust:RequestedUnattachedReference>",
            "<wsp:AppliesTo xmlns:wsp=\"{wsp}\"><a:EndpointReference><a:Address>{applies_to}</a:Address></a:EndpointReference></wsp:AppliesTo>",
            "<trust:Lifetime><u:Created>{created}</u:Created><u:Expires>{expires}</u:Expires></trust:Lifetime>",
            "</trust:RequestSecurityTokenResponse></trust:RequestSecurityTokenResponseCollection>"
        ),
        wst = ns::WST,
        wsp = ns::WSP_2002,
        saml = ns::SAML,
        created = utc_millis(now),
        context = escape(context),
        token_type = TOKEN_TYPE,
        encrypted = encrypted,
        reference = reference,
        applies_to = escape(applies_to),
        expires = utc_millis(end),
    );
    soapd::envelope(
        "s",
        &[("a", ns::WSA), ("u", ns::WSU), ("wsse", ns::WSSE)],
        Some(&header),
        &body,
    )
}

/// A SOAP 1.1 fault with a `wst:` code (§6).
fn fault(code: &str, text: &str) -> String {
    let fault = Fault {
        code,
        text,
        lang: Some("en-US"),
        detail: None,
    };
    soapd::envelope("s", &[], None, &fault.element("s", &[("wst", ns::WST)]))
}
