//! The NemLog-in STS over the wire: requests signed with `xmlsec1` from a template, as an OIO
//! WS-Trust client signs them, against the registry's rules.

use anyhow::{Context, Result};
use certvakt_soap::read::{self, find};
use roxmltree::Document;

use super::sts::{SIGNED, ns};
use super::*;
use crate::soapd::{PostOptions, post};
use crate::xmlsec::{self, text, utc_seconds as stamp};

const CVR: &str = "29189846";
const UUID: &str = "5e50b9bb-22fd-483d-baf7-fd077ed975f5";
const WSC: &str = "https://wsc.odense.smdb.dk";
const WSP: &str = "https://smdb.example.dk";
const INDBERETTER: &str = "urn:dk:smdb:prod:indberetter";
const ENV: Environment = Environment::Production;

struct Municipality {
    ca: TestCa,
    cert: IssuedCert,
    sim: NemLoginSimulator,
}

fn municipality(options: NemLoginOptions) -> Result<Municipality> {
    let ca = TestCa::new(CaShape::Oces3)?;
    let cert = ca.issue(&LeafSpec::oces3(CVR, UUID, "Odense SMDB").key_type(KeyType::Rsa2048))?;
    let sim = NemLoginSimulator::start(NemLoginOptions {
        client_roots: vec![ca.root_der()],
        client_intermediates: ca.chain_der(),
        ..options
    })?;
    sim.add_web_service(
        ENV,
        "Smdb_Sts_Dev",
        WSP,
        None,
        &[INDBERETTER, "urn:dk:smdb:prod:sundhedsfaglig"],
    );
    Ok(Municipality { ca, cert, sim })
}

/// Registers the system user with the certificate and a granted privilege, provisioned.
fn register(m: &Municipality) -> Result<()> {
    m.sim.add_system_user(ENV, "Odense SMDB", WSC)?;
    m.sim.attach_certificate(ENV, WSC, &m.cert.cert_der)?;
    m.sim
        .request_access(ENV, WSC, "Smdb_Sts_Dev", &[INDBERETTER])?;
    m.sim.grant(ENV, WSC, "Smdb_Sts_Dev")?;
    m.sim.provision(ENV);
    Ok(())
}

/// A signed request as the OIO WS-Trust client makes it.
fn request(cert: &IssuedCert, message_id: &str, context: &str, applies_to: &str) -> Result<String> {
    use base64::Engine as _;
    let bst = base64::engine::general_purpose::STANDARD.encode(&cert.cert_der);
    let now = crate::ca::now_seconds();
    let reference = |id: &str| {
        format!(
            concat!(
                "<ds:Reference URI=\"#{id}\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>",
                "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/></ds:Reference>"
            ),
            id = id
        )
    };
    let references: String = ["action", "msgid", "to", "ts", "bst", "body"]
        .iter()
        .map(|id| reference(id))
        .collect();
    let bst_element = |id: Option<&str>| {
        format!(
            "<wsse:BinarySecurityToken{} ValueType=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3\" EncodingType=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary\">{bst}</wsse:BinarySecurityToken>",
            id.map(|id| format!(" wsu:Id=\"{id}\"")).unwrap_or_default()
        )
    };
    let template = format!(
        concat!(
            "<S11:Envelope xmlns:S11=\"{soap}\" xmlns:wsa=\"{wsa}\" xmlns:wsse=\"{wsse}\" xmlns:wsu=\"{wsu}\" xmlns:wst=\"{wst}\" xmlns:ds=\"{ds}\">",
            "<S11:Header><wsa:Action wsu:Id=\"action\">{action}</wsa:Action><wsa:MessageID wsu:Id=\"msgid\">{message_id}</wsa:MessageID>",
            "<wsa:To wsu:Id=\"to\">https://signature.sts.nemlog-in.dk/</wsa:To>",
            "<wsse:Security S11:mustUnderstand=\"1\"><wsu:Timestamp wsu:Id=\"ts\"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp>",
            "{bst}",
            "<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
            "<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>{references}</ds:SignedInfo><ds:SignatureValue/>",
            "<ds:KeyInfo><wsse:SecurityTokenReference><wsse:Reference URI=\"#bst\" ValueType=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3\"/></wsse:SecurityTokenReference></ds:KeyInfo>",
            "</ds:Signature></wsse:Security></S11:Header>",
            "<S11:Body wsu:Id=\"body\"><wst:RequestSecurityToken Context=\"{context}\">",
            "<wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey</wst:KeyType>",
            "<wst:Lifetime><wsu:Expires>{lifetime}</wsu:Expires></wst:Lifetime>",
            "<wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>",
            "<wst:TokenType>http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0</wst:TokenType>",
            "<wst:UseKey>{use_key}</wst:UseKey>",
            "<wsp:AppliesTo xmlns:wsp=\"http://schemas.xmlsoap.org/ws/2002/12/policy\"><wsa:EndpointReference><wsa:Address>{applies_to}</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>",
            "</wst:RequestSecurityToken></S11:Body></S11:Envelope>"
        ),
        soap = ns::SOAP,
        wsa = ns::WSA,
        wsse = ns::WSSE,
        wsu = ns::WSU,
        wst = ns::WST,
        ds = ns::DS,
        action = ISSUE_ACTION,
        message_id = message_id,
        created = stamp(now),
        expires = stamp(now + time::Duration::minutes(5)),
        bst = bst_element(Some("bst")),
        references = references,
        context = context,
        lifetime = stamp(now + time::Duration::minutes(5)),
        use_key = bst_element(None),
        applies_to = applies_to,
    );
    xmlsec::sign(&template, &cert.key_pem, &cert.cert_pem, &SIGNED)
}

fn send(m: &Municipality, envelope: &str, chunked: bool) -> Result<(u16, String)> {
    let action = format!("\"{ISSUE_ACTION}\"");
    post(
        &m.sim.sts_url(ENV),
        &m.sim.server_root_pem(),
        envelope,
        &PostOptions {
            soap_action: Some(&action),
            chunked,
            identity: None,
        },
    )
}

/// Signs a request for `applies_to` with `cert` and sends it with `Content-Length`.
fn ask(
    m: &Municipality,
    cert: &IssuedCert,
    message_id: &str,
    context: &str,
    applies_to: &str,
) -> Result<(u16, String)> {
    send(m, &request(cert, message_id, context, applies_to)?, false)
}

/// Asserts that `answer` is a SOAP fault with the `faultcode` `code`.
fn assert_fault(answer: &str, code: &str) {
    let faultcode = Document::parse(answer)
        .ok()
        .and_then(|doc| read::fault(&doc))
        .map(|fault| fault.code);
    assert_eq!(faultcode.as_deref(), Some(code), "{answer}");
}

#[test]
fn the_registry_keeps_its_rules() -> Result<()> {
    let m = municipality(NemLoginOptions::default())?;
    let err = m
        .sim
        .add_system_user(ENV, "Odense", "https://odense.smdb.dk")
        .expect_err("prefix");
    assert!(err.to_string().contains("https://wsc."), "{err}");
    m.sim.add_system_user(ENV, "Odense SMDB", WSC)?;
    assert!(m.sim.add_system_user(ENV, "again", WSC).is_err());
    m.sim
        .add_system_user(ENV, "Other", "https://wsc.other.dk")?;
    m.sim.attach_certificate(ENV, WSC, &m.cert.cert_der)?;
    let err = m
        .sim
        .attach_certificate(ENV, "https://wsc.other.dk", &m.cert.cert_der)
        .expect_err("shared");
    assert!(err.to_string().contains("already attached"), "{err}");
    let err = m
        .sim
        .attach_certificate(ENV, WSC, m.cert.cert_pem.as_bytes())
        .expect_err("PEM");
    assert!(err.to_string().contains("DER"), "{err}");
    assert!(
        m.sim
            .request_access(ENV, WSC, "Smdb_Sts_Dev", &["urn:dk:smdb:prod:unknown"])
            .is_err()
    );
    assert!(m.sim.grant(ENV, WSC, "Smdb_Sts_Dev").is_err());
    m.sim.detach_certificate(ENV, WSC, &m.cert.cert_der)?;
    assert!(
        m.sim
            .detach_certificate(ENV, WSC, &m.cert.cert_der)
            .is_err()
    );

    let pem_ok = NemLoginSimulator::start(NemLoginOptions {
        accept_pem_upload: true,
        ..NemLoginOptions::default()
    })?;
    pem_ok.add_system_user(ENV, "Odense SMDB", WSC)?;
    pem_ok.attach_certificate(ENV, WSC, m.cert.cert_pem.as_bytes())?;
    Ok(())
}

#[test]
fn a_provisioned_system_user_gets_a_token_for_the_wsp() -> Result<()> {
    let m = municipality(NemLoginOptions::default())?;
    m.sim.add_system_user(ENV, "Odense SMDB", WSC)?;
    m.sim.attach_certificate(ENV, WSC, &m.cert.cert_der)?;
    m.sim
        .request_access(ENV, WSC, "Smdb_Sts_Dev", &[INDBERETTER])?;
    m.sim.grant(ENV, WSC, "Smdb_Sts_Dev")?;

    // Saved but not provisioned: the STS does not know the certificate yet.
    let (status, answer) = ask(&m, &m.cert, "uuid:m-1", "urn:uuid:c-1", WSP)?;
    assert_eq!(status, 500);
    assert_fault(&answer, "wst:FailedAuthentication");
    // Provisioned to the other environment only: still unknown here.
    m.sim.provision(Environment::IntegrationTest);
    let (_, answer) = ask(&m, &m.cert, "uuid:m-2", "urn:uuid:c-2", WSP)?;
    assert_fault(&answer, "wst:FailedAuthentication");

    m.sim.provision(ENV);
    let (status, answer) = ask(&m, &m.cert, "uuid:m-3", "urn:uuid:c-3", WSP)?;
    assert_eq!(status, 200, "{answer}");
    let doc = Document::parse(&answer)?;
    let action = find(doc.root_element(), ns::WSA, "Action").map(text);
    assert_eq!(action.as_deref(), Some(ISSUE_ACTION));
    let rstr =
        find(doc.root_element(), ns::WST, "RequestSecurityTokenResponse").context("no RSTR")?;
    assert_eq!(rstr.attribute("Context"), Some("urn:uuid:c-3"));
    let expires = find(rstr, ns::WSU, "Expires")
        .map(text)
        .context("no Lifetime/Expires")?;
    assert_eq!(expires.len(), 24, "milliseconds expected: {expires}");
    let applies_to = rstr
        .descendants()
        .find(|n| n.tag_name().name() == "AppliesTo")
        .context("no AppliesTo")?;
    assert_eq!(
        applies_to.tag_name().namespace(),
        Some("http://schemas.xmlsoap.org/ws/2002/12/policy")
    );

    // The WSP can read the token: decrypt, check the STS's signature, read the attributes.
    let encrypted = rstr
        .descendants()
        .find(|n| n.tag_name().name() == "EncryptedData")
        .context("no EncryptedData")?;
    let key = m.sim.wsp_key_pem(ENV, WSP).context("no WSP key")?;
    let plain = xmlsec::decrypt(&xmlsec::standalone(&answer, encrypted)?, &key)?;
    let ids = [xmlsec::IdAttr {
        attr: "ID",
        namespace: ns::SAML,
        element: "Assertion",
    }];
    xmlsec::verify(
        &plain,
        "//*[local-name()='Signature']",
        &m.sim.sts_certificate_pem(),
        &ids,
    )?;
    let token = Document::parse(&plain)?;
    let name_id = find(token.root_element(), ns::SAML, "NameID").map(text);
    assert_eq!(name_id.as_deref(), Some(WSC));
    let privileges_b64 = token
        .descendants()
        .find(|n| n.attribute("Name") == Some("dk:gov:saml:attribute:Privileges_intermediate"))
        .map(text)
        .context("no privileges")?;
    use base64::Engine as _;
    let privileges =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(privileges_b64)?)?;
    assert!(
        privileges.contains(&format!("<Privilege>{INDBERETTER}</Privilege>")),
        "{privileges}"
    );
    assert!(
        privileges.contains(&format!("cvrNumberIdentifier:{CVR}")),
        "{privileges}"
    );

    assert_eq!(
        m.sim.tokens_issued(),
        vec![IssuedToken {
            env: ENV,
            entity_id: WSC.into(),
            applies_to: WSP.into(),
            cvr: CVR.into(),
            privileges: vec![INDBERETTER.into()],
        }]
    );
    assert_eq!(
        m.sim.faults(),
        vec!["wst:FailedAuthentication", "wst:FailedAuthentication"]
    );
    Ok(())
}

#[test]
fn framing_addresses_tampering_and_replays_are_refused() -> Result<()> {
    let m = municipality(NemLoginOptions::default())?;
    register(&m)?;

    let (status, answer) = send(
        &m,
        &request(&m.cert, "uuid:f-1", "urn:uuid:f-1", WSP)?,
        true,
    )?;
    assert_eq!(status, 500);
    assert!(answer.contains("chunked"), "{answer}");

    let (_, answer) = ask(&m, &m.cert, "uuid:f-2", "urn:uuid:f-2", &format!("{WSP}/"))?;
    assert!(answer.contains("ends with a slash"), "{answer}");

    let signed = request(&m.cert, "uuid:f-3", "urn:uuid:f-3", WSP)?;
    let tampered = signed.replace(WSP, "https://other.example.dk");
    assert_ne!(tampered, signed);
    let (_, answer) = send(&m, &tampered, false)?;
    assert_fault(&answer, "wst:FailedAuthentication");

    let (status, answer) = ask(&m, &m.cert, "uuid:f-4", "urn:uuid:f-4", WSP)?;
    assert_eq!(status, 200, "{answer}");
    let (_, answer) = ask(&m, &m.cert, "uuid:f-5", "urn:uuid:f-4", WSP)?;
    assert!(answer.contains("used before"), "{answer}");
    let (_, answer) = ask(&m, &m.cert, "uuid:f-4", "urn:uuid:f-6", WSP)?;
    assert!(answer.contains("MessageID"), "{answer}");

    // A certificate from another CA, attached and provisioned, still does not chain.
    let stranger = TestCa::new(CaShape::Oces3)?
        .issue(&LeafSpec::oces3(CVR, UUID, "Stranger").key_type(KeyType::Rsa2048))?;
    m.sim.attach_certificate(ENV, WSC, &stranger.cert_der)?;
    m.sim.provision(ENV);
    let (_, answer) = ask(&m, &stranger, "uuid:f-7", "urn:uuid:f-7", WSP)?;
    assert!(answer.contains("not a valid OCES certificate"), "{answer}");
    // A renewal from the right CA works once attached and provisioned.
    let renewed =
        m.ca.issue(&LeafSpec::oces3(CVR, UUID, "Odense SMDB").key_type(KeyType::Rsa2048))?;
    let (_, answer) = ask(&m, &renewed, "uuid:f-8", "urn:uuid:f-8", WSP)?;
    assert_fault(&answer, "wst:FailedAuthentication");
    m.sim.attach_certificate(ENV, WSC, &renewed.cert_der)?;
    m.sim.provision(ENV);
    let (status, answer) = ask(&m, &renewed, "uuid:f-9", "urn:uuid:f-9", WSP)?;
    assert_eq!(status, 200, "{answer}");

    m.sim.set_down(true);
    let (status, _) = ask(&m, &renewed, "uuid:f-10", "urn:uuid:f-10", WSP)?;
    assert_eq!(status, 503);
    assert_eq!(
        m.sim.faults(),
        vec![
            "wst:InvalidRequest",
            "wst:InvalidRequest",
            "wst:FailedAuthentication",
            "wst:InvalidRequest",
            "wst:InvalidRequest",
            "wst:FailedAuthentication",
            "wst:FailedAuthentication",
        ]
    );
    Ok(())
}
