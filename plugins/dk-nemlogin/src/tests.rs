//! dk-nemlogin through FakeHost: settings, the STS request as it goes on the wire, and what
//! register, verify and retire make of each STS answer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, CertificateInfo, ClientIdentity, Completion, ErrorKind, HttpResponse,
    IssueOutcome, KeyRef, OrderContext, StepContext, StepOutcome, TaskFileContent, TaskSpec,
};
use certvakt_soap::{dsig, ns, xs_datetime};
use certvakt_testkit::{CaShape, LeafSpec, TestCa};
use roxmltree::{Document, Node};
use serde_json::{Value, json};

use crate::settings::{Environment, Settings};
use crate::sts::{self, predictable};
use crate::{DkNemlogin, task};

const CVR: &str = "29189846";
const OLD_UUID: &str = "3f1c2a9e-7b4d-4e2f-9a8b-1c2d3e4f5a6b";
const NEW_UUID: &str = "8d3fa047-5b6c-4d7e-8f90-a1b2c3d4e5f6";
const STS: &str = "https://sts.example/SecurityTokenService.svc";
const APPLIES_TO: &str = "https://smdb.example.dk/ws";
const NOW: i64 = FakeHost::DEFAULT_NOW;

fn settings_value() -> Value {
    json!({
        "entity_id": "https://wsc.odense.smdb.dk",
        "environment": "production",
        "cvr": CVR,
        "web_service": "Smdb_Sts_Dev",
        "privileges": ["urn:dk:smdb:prod:indberetter", "urn:dk:smdb:prod:sundhedsfaglig"],
        "applies_to": APPLIES_TO,
        "sts_endpoint": STS,
        "sts_trust": "nemlogin-sts",
    })
}

fn with(changes: Value) -> Value {
    let mut value = settings_value();
    if let (Some(base), Some(changes)) = (value.as_object_mut(), changes.as_object()) {
        base.extend(changes.clone());
    }
    value
}

fn problems(value: Value) -> Vec<(String, String)> {
    Settings::parse(&value)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

/// A real OCES3 certificate as the daemon describes it, and its DER.
fn certificate(cvr: &str, uuid: &str) -> (CertificateInfo, Vec<u8>) {
    let issued = TestCa::new(CaShape::Oces3)
        .and_then(|ca| ca.issue(&LeafSpec::oces3(cvr, uuid, "Odense Kommune")))
        .unwrap_or_else(|e| panic!("the test CA cannot issue: {e}"));
    let info = CertificateInfo {
        pem: issued.cert_pem.clone(),
        subject: "CN=Odense Kommune,O=Odense Kommune,C=DK".into(),
        serial: issued.serial_hex().unwrap_or_default(),
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        identities: vec![format!("DK CVR {cvr} UUID {uuid}")],
    };
    (info, issued.cert_der)
}

struct Run {
    old: (CertificateInfo, Vec<u8>),
    new: (CertificateInfo, Vec<u8>),
}

impl Run {
    fn new() -> Run {
        Run {
            old: certificate(CVR, OLD_UUID),
            new: certificate(CVR, NEW_UUID),
        }
    }

    fn step(&self, settings: Value, state: Value) -> StepContext {
        StepContext {
            new_set: Default::default(),
            certificate: context(settings, Some(self.old.0.clone())),
            new: Some(self.new.0.clone()),
            state,
        }
    }
}

fn context(settings: Value, current: Option<CertificateInfo>) -> CertificateContext {
    CertificateContext {
        roles: Vec::new(),
        current_set: Default::default(),
        role: None,
        certificate_id: "smdb-prod".into(),
        settings,
        environment: "production".into(),
        current,
    }
}

/// An STS that answers every request with `response`. UUIDs count from 1 in this thread, so
/// the `n`th token request carries MessageID `uuid(2n-1)` and Context `uuid(2n)`.
fn sts(response: HttpResponse) -> FakeHost {
    predictable::start();
    let host = FakeHost::new();
    host.respond_http("POST", STS, response);
    host
}

fn context_of(nth_request: u64) -> String {
    format!("urn:uuid:{}", predictable::uuid(2 * nth_request))
}

fn soap(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "text/xml; charset=utf-8".into())],
        body: format!(
            r#"<s:Envelope xmlns:s="{}" xmlns:a="{}"><s:Header><a:Action>{}</a:Action></s:Header><s:Body>{body}</s:Body></s:Envelope>"#,
            ns::SOAP11,
            ns::WSA_10,
            sts::ACTION_ISSUE
        )
        .into_bytes(),
    }
}

/// A token answer as the STS writes it: a collection, milliseconds in the Lifetime, the
/// Action echoing RST/Issue, and a signature a strict (BSP) reader would reject.
fn token(context: &str) -> HttpResponse {
    soap(
        200,
        &format!(
            r#"<trust:RequestSecurityTokenResponseCollection xmlns:trust="{wst}"><trust:RequestSecurityTokenResponse Context="{context}"><trust:TokenType>{}</trust:TokenType><trust:RequestedSecurityToken><EncryptedAssertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion"><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">AAAA</xenc:EncryptedData></EncryptedAssertion></trust:RequestedSecurityToken><trust:Lifetime><wsu:Created xmlns:wsu="{wsu}">2026-01-01T00:00:00.000Z</wsu:Created><wsu:Expires xmlns:wsu="{wsu}">2026-01-01T00:05:00.123Z</wsu:Expires></trust:Lifetime></trust:RequestSecurityTokenResponse></trust:RequestSecurityTokenResponseCollection>"#,
            sts::TOKEN_SAML2,
            wst = ns::WST_13,
            wsu = ns::WSU,
        ),
    )
}

fn fault(code: &str, text: &str) -> HttpResponse {
    soap(
        500,
        &format!(
            r#"<s:Fault xmlns:wst="{}"><faultcode>{code}</faultcode><faultstring>{text}</faultstring></s:Fault>"#,
            ns::WST_13
        ),
    )
}

fn failed_authentication() -> HttpResponse {
    fault(
        "wst:FailedAuthentication",
        "Authentication failed: the certificate is not registered",
    )
}

fn pending(outcome: StepOutcome) -> (Option<TaskSpec>, Value) {
    match outcome {
        StepOutcome::Pending {
            poll_after_secs,
            task,
            state,
        } => {
            assert_eq!(poll_after_secs, 300, "the default poll interval");
            (task, state)
        }
        other => panic!("not pending: {other:?}"),
    }
}

fn sent(host: &FakeHost, n: usize) -> String {
    let requests = host.http_requests();
    let request = requests
        .get(n)
        .unwrap_or_else(|| panic!("no request {n}: {requests:?}"));
    String::from_utf8(request.body.clone()).unwrap_or_default()
}

fn element<'a, 'i>(node: Node<'a, 'i>, ns: &str, local: &str) -> Node<'a, 'i> {
    certvakt_soap::read::find(node, ns, local)
        .unwrap_or_else(|| panic!("no {{{ns}}}{local} under {}", node.tag_name().name()))
}

fn text<'a>(node: Node<'a, '_>, ns: &str, local: &str) -> &'a str {
    element(node, ns, local).text().unwrap_or_default()
}

fn wsu_id<'a>(node: Node<'a, '_>) -> Option<&'a str> {
    node.attribute((ns::WSU, "Id"))
}

// ---------------------------------------------------------------------------------------------
// Settings

#[test]
fn describes_itself_and_every_setting_example_is_valid() {
    let about = FakeHost::new()
        .describe(&DkNemlogin)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(about.name, "dk-nemlogin");
    let required: Vec<&str> = about
        .settings
        .iter()
        .filter(|s| s.required)
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(
        required,
        [
            "entity_id",
            "environment",
            "cvr",
            "web_service",
            "privileges",
            "applies_to",
            "sts_endpoint"
        ]
    );
    for doc in &about.settings {
        let example = doc
            .example
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no example", doc.key));
        let value: toml::Table = toml::from_str(&format!("v = {example}"))
            .unwrap_or_else(|e| panic!("{}'s example is not TOML: {e}", doc.key));
        let mut settings = settings_value();
        settings[&doc.key] = serde_json::to_value(&value["v"]).unwrap_or_default();
        assert_eq!(problems(settings), vec![], "{}", doc.key);
    }
}

#[test]
fn good_settings_parse_with_their_defaults() {
    let parsed = Settings::parse(&settings_value()).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(parsed.environment, Environment::Production);
    assert!(parsed.overlap, "overlap is the default");
    assert_eq!(parsed.poll_seconds, 300);
    assert_eq!(parsed.privileges.len(), 2);
    assert_eq!(parsed.sts_trust.as_deref(), Some("nemlogin-sts"));
    let test = Settings::parse(&with(
        json!({"environment": "integrationtest", "overlap": false}),
    ))
    .unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(test.environment, Environment::IntegrationTest);
    assert!(!test.overlap);
}

#[test]
fn an_entity_id_without_the_wsc_prefix_is_refused_with_the_guides_words() {
    for bad in [
        "https://odense.smdb.dk",
        "http://wsc.odense.smdb.dk",
        "https://wsc.",
    ] {
        let found = problems(with(json!({ "entity_id": bad })));
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert_eq!(found[0].0, "entity_id");
        let message = &found[0].1;
        assert!(
            message.contains("does not start with https://wsc."),
            "{message}"
        );
        assert!(
            message.contains("EntityID skal starte med"),
            "the guide is quoted: {message}"
        );
        assert!(message.contains("https://wsc.odense.smdb.dk"), "{message}");
    }
}

#[test]
fn an_applies_to_with_a_trailing_slash_is_refused_because_the_sts_compares_strings() {
    let found = problems(with(json!({ "applies_to": "https://smdb.example.dk/ws/" })));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "applies_to");
    assert!(found[0].1.contains("compares AppliesTo"), "{}", found[0].1);
    assert!(
        found[0].1.contains("write \"https://smdb.example.dk/ws\""),
        "{}",
        found[0].1
    );
    assert_eq!(
        problems(with(json!({ "applies_to": "smdb" })))[0].0,
        "applies_to"
    );
    assert_eq!(
        problems(with(json!({ "applies_to": "urn:dk:smdb:ws" }))),
        vec![]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let found = problems(json!({
        "entity_id": "https://smdb.odense.dk",
        "environment": "test",
        "cvr": "2918984",
        "privileges": ["indberetter"],
        "sts_endpoint": "http://sts.example",
        "overlap": "yes",
        "poll_seconds": 1,
        "colour": "blue",
    }));
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "colour",
            "entity_id",
            "environment",
            "cvr",
            "web_service",
            "privileges[0]",
            "applies_to",
            "sts_endpoint",
            "overlap",
            "poll_seconds"
        ]
    );
    assert!(found[3].1.contains("must be 8 digits"), "{:?}", found[3]);
    let cvr_letters = problems(with(json!({ "cvr": "2918984x" })));
    assert_eq!(cvr_letters[0].0, "cvr");
    let none = problems(with(json!({ "privileges": [] })));
    assert_eq!(
        none,
        vec![("privileges".into(), "names no privilege".into())]
    );
    let missing = problems(json!({}));
    assert_eq!(missing.len(), 7, "{missing:?}");
    assert!(
        missing.iter().all(|(_, m)| m == "is required"),
        "{missing:?}"
    );
}

#[test]
fn bad_settings_stop_a_step_with_a_configuration_error() {
    let run = Run::new();
    let host = FakeHost::new();
    let err = host
        .register(
            &DkNemlogin,
            run.step(with(json!({ "cvr": "1" })), Value::Null),
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert!(err.message.contains("cvr: must be 8 digits"), "{err}");
    assert!(host.http_requests().is_empty());
}

#[test]
fn the_readme_examples_are_valid_settings() {
    let readme = include_str!("../README.md");
    let mut checked = 0;
    for block in readme.split("```toml").skip(1) {
        let Some((toml_text, _)) = block.split_once("```") else {
            continue;
        };
        let doc: toml::Table = toml::from_str(toml_text)
            .unwrap_or_else(|e| panic!("a README TOML block does not parse: {e}\n{toml_text}"));
        let certificates = doc.get("certificate").and_then(|c| c.as_array());
        for certificate in certificates.into_iter().flatten() {
            if certificate.get("plugin").and_then(|p| p.as_str()) != Some("dk-nemlogin") {
                continue;
            }
            let settings = certificate
                .get("settings")
                .cloned()
                .unwrap_or(toml::Value::Table(toml::Table::new()));
            let value = serde_json::to_value(settings).unwrap_or_default();
            assert_eq!(problems(value.clone()), vec![], "{toml_text}");
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the README shows production and integration test ({checked})"
    );
}

// ---------------------------------------------------------------------------------------------
// The request

#[test]
fn the_token_request_is_the_oio_ws_trust_request_with_its_quirks() {
    let run = Run::new();
    let host = sts(token(&context_of(1)));
    let outcome = host
        .register(&DkNemlogin, run.step(settings_value(), Value::Null))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");

    let requests = host.http_requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("POST", STS)
    );
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        header("SOAPAction"),
        Some(format!("\"{}\"", sts::ACTION_ISSUE).as_str())
    );
    assert_eq!(header("Content-Type"), Some("text/xml; charset=utf-8"));
    assert_eq!(request.identity, ClientIdentity::Pending);
    assert_eq!(request.trust.as_deref(), Some("nemlogin-sts"));

    let xml = sent(&host, 0);
    let doc = Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let envelope = doc.root_element();
    assert!(envelope.has_tag_name((ns::SOAP11, "Envelope")), "SOAP 1.1");
    let head = element(envelope, ns::SOAP11, "Header");

    // Addressing: the action, a fresh uuid: MessageID, the signature scenario with its slash.
    let action = element(head, ns::WSA_10, "Action");
    assert_eq!(action.text(), Some(sts::ACTION_ISSUE));
    let message_id = element(head, ns::WSA_10, "MessageID");
    assert_eq!(
        message_id.text(),
        Some(format!("uuid:{}", predictable::uuid(1)).as_str())
    );
    let to = element(head, ns::WSA_10, "To");
    assert_eq!(to.text(), Some("https://signature.sts.nemlog-in.dk/"));

    let security = element(head, ns::WSSE, "Security");
    assert_eq!(
        security.attribute((ns::SOAP11, "mustUnderstand")),
        Some("1")
    );
    let timestamp = element(security, ns::WSU, "Timestamp");
    assert_eq!(text(timestamp, ns::WSU, "Created"), "2026-01-01T00:00:00Z");
    assert_eq!(text(timestamp, ns::WSU, "Expires"), "2026-01-01T00:05:00Z");
    let bst = element(security, ns::WSSE, "BinarySecurityToken");
    assert_eq!(bst.attribute("ValueType"), Some(dsig::X509V3));
    assert_eq!(
        bst.attribute("EncodingType"),
        Some(
            "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
        )
    );
    let new_der = STANDARD.encode(&run.new.1);
    assert_eq!(bst.text(), Some(new_der.as_str()), "the NEW certificate");

    // The body.
    let body = element(envelope, ns::SOAP11, "Body");
    let rst = element(body, ns::WST_13, "RequestSecurityToken");
    assert_eq!(rst.attribute("Context"), Some(context_of(1).as_str()));
    assert_eq!(
        text(rst, ns::WST_13, "KeyType"),
        "http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey"
    );
    let lifetime = element(rst, ns::WST_13, "Lifetime");
    assert_eq!(text(lifetime, ns::WSU, "Expires"), "2026-01-01T00:05:00Z");
    assert_eq!(
        text(rst, ns::WST_13, "RequestType"),
        "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
    );
    assert_eq!(
        text(rst, ns::WST_13, "TokenType"),
        "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
    );
    let use_key = element(rst, ns::WST_13, "UseKey");
    assert_eq!(text(use_key, ns::WSSE, "BinarySecurityToken"), new_der);
    let order: Vec<&str> = rst
        .children()
        .filter(|c| c.is_element())
        .map(|c| c.tag_name().name())
        .collect();
    assert_eq!(
        order,
        [
            "KeyType",
            "Lifetime",
            "RequestType",
            "TokenType",
            "UseKey",
            "AppliesTo"
        ]
    );
    let applies_to = rst
        .children()
        .find(|c| c.tag_name().name() == "AppliesTo")
        .unwrap_or_else(|| panic!("no AppliesTo"));
    assert_eq!(
        applies_to.tag_name().namespace(),
        Some("http://schemas.xmlsoap.org/ws/2002/12/policy"),
        "2002/12, not 2004/09"
    );
    let address = element(
        element(applies_to, ns::WSA_10, "EndpointReference"),
        ns::WSA_10,
        "Address",
    );
    assert_eq!(address.text(), Some(APPLIES_TO));
    assert!(
        !xml.contains(".000Z") && !xml.contains("T00:00:00."),
        "no milliseconds: {xml}"
    );

    // The signature: six references by wsu:Id, exc-c14n, KeyInfo pointing at the BST.
    let signature = element(security, ns::DS, "Signature");
    let ids: Vec<&str> = [action, message_id, to, timestamp, bst, body]
        .into_iter()
        .map(|n| wsu_id(n).unwrap_or_else(|| panic!("{} has no wsu:Id", n.tag_name().name())))
        .collect();
    let uris: Vec<String> = signature
        .descendants()
        .filter(|n| n.has_tag_name((ns::DS, "Reference")))
        .map(|n| n.attribute("URI").unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
    assert_eq!(uris, expected);
    let transforms: Vec<&str> = signature
        .descendants()
        .filter(|n| n.has_tag_name((ns::DS, "Transform")))
        .filter_map(|n| n.attribute("Algorithm"))
        .collect();
    assert_eq!(transforms, [dsig::EXC_C14N; 6]);
    assert_eq!(
        element(signature, ns::DS, "CanonicalizationMethod").attribute("Algorithm"),
        Some(dsig::EXC_C14N)
    );
    let reference = element(element(signature, ns::DS, "KeyInfo"), ns::WSSE, "Reference");
    assert_eq!(
        reference.attribute("URI"),
        Some(format!("#{}", ids[4]).as_str())
    );

    // The host signed exactly the SignedInfo in the message, with the new key; and its
    // digests are those of the message as sent.
    let signed_info = element(signature, ns::DS, "SignedInfo");
    let written = &xml[signed_info.range()];
    let signs = host.sign_requests();
    assert_eq!(signs.len(), 1);
    assert_eq!(signs[0].key, KeyRef::Pending);
    assert_eq!(String::from_utf8_lossy(&signs[0].data), written);
    let references: Vec<dsig::Reference<'_>> =
        ids.iter().map(|id| dsig::Reference::detached(id)).collect();
    let again = dsig::signed_info(&xml, &["wsu:Id"], &references).unwrap_or_default();
    assert_eq!(again, written, "the digests hold for the message as sent");
    assert_eq!(
        text(signature, ns::DS, "SignatureValue"),
        STANDARD.encode(FakeHost::DEFAULT_SIGNATURE)
    );
}

#[test]
fn every_request_has_its_own_message_id_and_context() {
    let a = sts::Unique::new(NOW).unwrap_or_else(|e| panic!("{e}"));
    let b = sts::Unique::new(NOW).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(a.context, b.context);
    assert_ne!(a.message_id, b.message_id);
    assert_ne!(
        a.message_id.trim_start_matches("uuid:"),
        a.context.trim_start_matches("urn:uuid:")
    );
    let uuid = a.context.trim_start_matches("urn:uuid:");
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
    assert!("89ab".contains(&uuid[19..20]), "RFC 4122 variant: {uuid}");
}

// ---------------------------------------------------------------------------------------------
// register

#[test]
fn register_opens_the_attach_task_once_and_finishes_when_the_sts_issues_a_token() {
    let run = Run::new();
    let host = sts(failed_authentication());
    let (task, state) = pending(
        host.register(&DkNemlogin, run.step(settings_value(), Value::Null))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let task = task.unwrap_or_else(|| panic!("no task"));
    assert_eq!(state, json!({ "task_open_for": "register" }));
    assert_eq!(task.completes_by, Completion::Poll);
    assert_eq!(
        task.title,
        "Attach smdb-prod's new certificate to NemLog-in system user https://wsc.odense.smdb.dk and provision"
    );
    let text = &task.instructions;
    for expected in [
        "https://administration.nemlog-in.dk",
        "\"Administrator for systembrugere\"",
        "EntityID https://wsc.odense.smdb.dk",
        "Keep the old certificate attached",
        "\"Gem tekniske oplysninger\"",
        "\"Provisioner til produktion\"",
        "\"Anmod om web service adgang\"",
        "Smdb_Sts_Dev",
        "urn:dk:smdb:prod:indberetter, urn:dk:smdb:prod:sundhedsfaglig",
        "\"Send anmodning\"",
        "Only if the system user has no access to Smdb_Sts_Dev yet",
        "wst:FailedAuthentication",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains("planned outage"), "{text}");
    assert_eq!(task.files.len(), 2);
    assert_eq!(task.files[0].name, "new-certificate.cer");
    // The daemon writes the new certificate (the run's, not the one in use) into the file.
    assert_eq!(task.files[0].content, TaskFileContent::CertificateDer);
    assert_eq!(task.files[1].name, "new-certificate.pem");
    assert_eq!(task.files[1].content, TaskFileContent::CertificatePem);
    let logs = host.logs();
    assert!(
        logs.iter()
            .any(|l| l.message.contains("probably not attached")),
        "{logs:?}"
    );

    // Still refused: pending, no second task.
    let (again, state) = pending(
        host.register(&DkNemlogin, run.step(settings_value(), state))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(again, None);
    assert_eq!(state, json!({ "task_open_for": "register" }));

    // Attached and provisioned: the third request gets a token.
    host.respond_http("POST", STS, token(&context_of(3)));
    let done = host
        .register(&DkNemlogin, run.step(settings_value(), state))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done, StepOutcome::Done { state: json!({}) });
    assert_eq!(host.http_requests().len(), 3);
    assert!(
        host.sign_requests()
            .iter()
            .all(|s| s.key == KeyRef::Pending)
    );
    let last = host.logs().pop().unwrap_or_else(|| panic!("no log"));
    assert_eq!(last.fields["token_expires"], "2026-01-01T00:05:00.123Z");
}

#[test]
fn register_is_done_at_once_when_the_new_certificate_already_works() {
    let run = Run::new();
    let host = sts(token(&context_of(1)));
    let outcome = host
        .register(&DkNemlogin, run.step(settings_value(), Value::Null))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, StepOutcome::Done { state: json!({}) });
    assert!(host.tasks().is_empty());
}

#[test]
fn without_overlap_the_task_announces_a_planned_outage() {
    let run = Run::new();
    let host = sts(failed_authentication());
    let (task, _) = pending(
        host.register(
            &DkNemlogin,
            run.step(with(json!({ "overlap": false })), Value::Null),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let text = task.map(|t| t.instructions).unwrap_or_default();
    assert!(text.contains("short planned outage"), "{text}");
    assert!(text.contains("replace the old certificate"), "{text}");
    assert!(
        !text.contains("Keep the old certificate attached"),
        "{text}"
    );
}

#[test]
fn a_first_certificate_may_need_a_new_system_user_and_web_service_access() {
    let run = Run::new();
    let host = sts(failed_authentication());
    let mut step = run.step(
        with(json!({ "environment": "integrationtest" })),
        Value::Null,
    );
    step.certificate.current = None;
    let (task, _) = pending(
        host.register(&DkNemlogin, step)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let text = task.map(|t| t.instructions).unwrap_or_default();
    assert!(text.contains("\"Tilføj systembruger\""), "{text}");
    assert!(
        text.contains("\"Provisioner til integrationstest\""),
        "{text}"
    );
    assert!(
        text.contains("If the system user is new: choose \"Anmod om web service adgang\""),
        "{text}"
    );
}

#[test]
fn another_fault_is_an_error_naming_it_once_the_task_is_open() {
    let run = Run::new();
    let host = sts(fault(
        "wst:InvalidRequest",
        "The AppliesTo is not a known service",
    ));
    // The first call opens the task anyway: the certificate must be attached regardless.
    let (task, state) = pending(
        host.register(&DkNemlogin, run.step(settings_value(), Value::Null))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(task.is_some());
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("wst:InvalidRequest")),
        "{:?}",
        host.logs()
    );
    let err = host
        .register(&DkNemlogin, run.step(settings_value(), state))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.fault_code.as_deref(), Some("wst:InvalidRequest"));
    assert!(
        err.message.contains("The AppliesTo is not a known service"),
        "{err}"
    );
    assert!(err.message.contains("check applies_to"), "{err}");

    host.respond_http(
        "POST",
        STS,
        fault("wst:InvalidSecurityToken", "Certificate revoked"),
    );
    let err = host
        .register(
            &DkNemlogin,
            run.step(settings_value(), json!({"task_open_for": "register"})),
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(
        err.message
            .contains("OCES organisation or system certificate"),
        "{err}"
    );

    host.respond_http(
        "POST",
        STS,
        fault("wst:InvalidTimeRange", "Timestamp expired"),
    );
    let err = host
        .register(
            &DkNemlogin,
            run.step(settings_value(), json!({"task_open_for": "register"})),
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(err.message.contains("clock"), "{err}");
}

#[test]
fn an_sts_that_does_not_answer_keeps_the_task_open_and_backs_off() {
    let run = Run::new();
    // No canned answer: the fake host's HTTP fails, as a refused connection does.
    predictable::start();
    let host = FakeHost::new();
    let (task, state) = pending(
        host.register(&DkNemlogin, run.step(settings_value(), Value::Null))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(task.is_some(), "the task opens even while the STS is down");
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("did not answer")),
        "{:?}",
        host.logs()
    );
    // Later: a temporary error, which the daemon retries with back-off, the task left open.
    let err = host
        .register(&DkNemlogin, run.step(settings_value(), state.clone()))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(err.message.contains("STS is down or unreachable"), "{err}");
    // A 503 page from the load balancer is the same.
    host.respond_http(
        "POST",
        STS,
        HttpResponse {
            status: 503,
            headers: vec![],
            body: b"<html>Service Unavailable</html>".to_vec(),
        },
    );
    let err = host
        .register(&DkNemlogin, run.step(settings_value(), state))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(err.message.contains("HTTP 503"), "{err}");
}

#[test]
fn a_certificate_of_another_cvr_is_the_wrong_cvr() {
    let mut run = Run::new();
    run.new = certificate("12345678", NEW_UUID);
    let host = sts(token(&context_of(1)));
    let err = host
        .register(&DkNemlogin, run.step(settings_value(), Value::Null))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert_eq!(err.fault_code.as_deref(), Some("wrong_cvr"));
    assert!(
        err.message.starts_with("wrong CVR: the new certificate"),
        "{err}"
    );
    assert!(err.message.contains("is for CVR 12345678"), "{err}");
    assert!(err.message.contains(CVR), "{err}");
    assert!(host.http_requests().is_empty(), "nothing is sent");
}

#[test]
fn answers_that_are_not_a_token_for_this_request_are_refused() {
    let run = Run::new();
    let answers = [
        (token(&context_of(7)), "its Context is"),
        (
            soap(
                200,
                &format!(
                    r#"<t:RequestSecurityTokenResponse xmlns:t="{}" Context="{}"><t:Lifetime/></t:RequestSecurityTokenResponse>"#,
                    ns::WST_13,
                    context_of(1)
                ),
            ),
            "no RequestedSecurityToken",
        ),
        (
            soap(200, "<x:Other xmlns:x=\"urn:x\"/>"),
            "not a RequestSecurityTokenResponse",
        ),
    ];
    for (answer, expected) in answers {
        let host = sts(answer);
        let err = host
            .register(
                &DkNemlogin,
                run.step(settings_value(), json!({"task_open_for": "register"})),
            )
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert!(err.message.contains(expected), "{expected:?}: {err}");
    }
    // A bare RSTR (no collection) is a token all the same.
    let bare = soap(
        200,
        &format!(
            r#"<t:RequestSecurityTokenResponse xmlns:t="{wst}" Context="{}"><t:RequestedSecurityToken><e:EncryptedAssertion xmlns:e="{}"/></t:RequestedSecurityToken><t:Lifetime><u:Expires xmlns:u="{}">{}</u:Expires></t:Lifetime></t:RequestSecurityTokenResponse>"#,
            context_of(1),
            ns::SAML2,
            ns::WSU,
            xs_datetime(NOW + 300),
            wst = ns::WST_13,
        ),
    );
    let host = sts(bare);
    let outcome = host
        .register(&DkNemlogin, run.step(settings_value(), Value::Null))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
}

// ---------------------------------------------------------------------------------------------
// verify

#[test]
fn verify_asks_with_the_live_certificate() {
    let run = Run::new();
    let host = sts(token(&context_of(1)));
    let outcome = host
        .verify(&DkNemlogin, run.step(settings_value(), json!({})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, StepOutcome::Done { state: json!({}) });
    assert_eq!(host.sign_requests()[0].key, KeyRef::Current);
    assert_eq!(host.http_requests()[0].identity, ClientIdentity::Current);
    let xml = sent(&host, 0);
    assert!(
        xml.contains(&STANDARD.encode(&run.new.1)),
        "the new (live) certificate"
    );

    let refused = sts(failed_authentication());
    let (task, _) = pending(
        refused
            .verify(&DkNemlogin, run.step(settings_value(), json!({})))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let task = task.unwrap_or_else(|| panic!("no task"));
    assert!(
        task.title.contains("installed certificate"),
        "{}",
        task.title
    );
    assert!(
        task.instructions.contains("refuses it"),
        "{}",
        task.instructions
    );

    let down = FakeHost::new();
    let err = down
        .verify(&DkNemlogin, run.step(settings_value(), json!({})))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(down.tasks().is_empty());
}

// ---------------------------------------------------------------------------------------------
// retire

#[test]
fn retire_is_done_when_the_sts_refuses_the_old_certificate() {
    let run = Run::new();
    let host = sts(failed_authentication());
    let outcome = host
        .retire(&DkNemlogin, run.step(settings_value(), json!({})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, StepOutcome::Done { state: json!({}) });
    assert_eq!(host.sign_requests()[0].key, KeyRef::Previous);
    assert_eq!(host.http_requests()[0].identity, ClientIdentity::Previous);
    let xml = sent(&host, 0);
    assert!(
        xml.contains(&STANDARD.encode(&run.old.1)),
        "signed as the OLD certificate"
    );
    assert!(!xml.contains(&STANDARD.encode(&run.new.1)));
}

#[test]
fn retire_waits_while_the_old_certificate_still_gets_tokens() {
    let run = Run::new();
    let host = sts(token(&context_of(1)));
    let (task, state) = pending(
        host.retire(&DkNemlogin, run.step(settings_value(), json!({})))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let task = task.unwrap_or_else(|| panic!("no task"));
    assert_eq!(state, json!({ "task_open_for": "retire" }));
    assert_eq!(task.completes_by, Completion::Poll);
    assert_eq!(
        task.title,
        "Remove smdb-prod's old certificate from NemLog-in system user https://wsc.odense.smdb.dk"
    );
    let serial = format!("serial {}", run.old.0.serial);
    for expected in [
        serial.as_str(),
        "\"Gem tekniske oplysninger\"",
        "\"Provisioner til produktion\"",
        "Keep the new certificate",
    ] {
        assert!(
            task.instructions.contains(expected),
            "{expected:?} not in:\n{}",
            task.instructions
        );
    }
    assert_eq!(task.files[0].name, task::OLD_CER);
    assert_eq!(
        task.files[0].content,
        TaskFileContent::PreviousCertificateDer
    );

    host.respond_http("POST", STS, token(&context_of(2)));
    let (again, state) = pending(
        host.retire(&DkNemlogin, run.step(settings_value(), state))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(again, None, "one task");

    host.respond_http("POST", STS, failed_authentication());
    let done = host
        .retire(&DkNemlogin, run.step(settings_value(), state))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done, StepOutcome::Done { state: json!({}) });
}

#[test]
fn retire_has_nothing_to_do_without_an_old_or_with_an_expired_certificate() {
    let run = Run::new();
    let host = FakeHost::new();
    let mut step = run.step(settings_value(), json!({}));
    step.certificate.current = None;
    assert_eq!(
        host.retire(&DkNemlogin, step)
            .unwrap_or_else(|e| panic!("{e}")),
        StepOutcome::Done { state: json!({}) }
    );
    host.set_now(run.old.0.not_after + 1);
    assert_eq!(
        host.retire(&DkNemlogin, run.step(settings_value(), json!({})))
            .unwrap_or_else(|e| panic!("{e}")),
        StepOutcome::Done { state: json!({}) }
    );
    assert!(host.http_requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The order

#[test]
fn the_order_is_a_mitid_erhverv_task_and_the_profile_its_profile() {
    let run = Run::new();
    let host = FakeHost::new();
    let order = OrderContext {
        csr_set: Default::default(),
        certificate: context(settings_value(), Some(run.old.0.clone())),
        csr_pem: String::new(),
        state: Value::Null,
    };
    let outcome = host
        .issue(&DkNemlogin, order.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let IssueOutcome::Pending {
        task: Some(task), ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(task.completes_by, Completion::Import);
    assert!(
        task.instructions.contains("https://wsc.odense.smdb.dk"),
        "{}",
        task.instructions
    );
    assert!(
        task.instructions.contains("NemLog-in Administration"),
        "{}",
        task.instructions
    );
    let profile = host
        .csr_profile(&DkNemlogin, order.certificate.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        profile.key,
        certvakt_plugin_api::profile::KeyAlgorithm::Rsa3072
    );

    let other = certificate("12345678", OLD_UUID).0;
    let err = host
        .issue(
            &DkNemlogin,
            OrderContext {
                certificate: context(settings_value(), Some(other)),
                ..order
            },
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.fault_code.as_deref(), Some("wrong_cvr"));
}

// ---------------------------------------------------------------------------------------------
// The run's state

#[test]
fn a_state_that_does_not_parse_stops_each_step_before_it_asks_the_sts() {
    let run = Run::new();
    let unreadable = [
        (json!("register"), "the whole state"),
        (json!({ "task_open_for": 3 }), "`task_open_for`"),
        (json!({ "task_open_for": ["retire"] }), "`task_open_for`"),
    ];
    for (state, place) in unreadable {
        for name in ["register", "verify", "retire"] {
            // An STS that would answer: the state is the only reason to stop.
            let host = sts(failed_authentication());
            let step = run.step(settings_value(), state.clone());
            let result = match name {
                "register" => host.register(&DkNemlogin, step),
                "verify" => host.verify(&DkNemlogin, step),
                _ => host.retire(&DkNemlogin, step),
            };
            let error = result.expect_err(&format!("{name} went on with {state}"));
            assert_eq!(error.kind, ErrorKind::Permanent, "{name}: {error}");
            for expected in [
                "dk-nemlogin",
                name,
                place,
                "certvakt show smdb-prod",
                "state.json",
            ] {
                assert!(
                    error.message.contains(expected),
                    "{name}: {expected:?} not in: {error}"
                );
            }
            assert!(
                host.http_requests().is_empty(),
                "{name}: no token request: {:?}",
                host.http_requests()
            );
            assert!(host.tasks().is_empty(), "{name}: no task");
        }
    }
}

#[test]
fn random_uuids_are_version_4_hyphenated_and_differ() {
    let a = crate::sts::uuid_v4().expect("random bytes");
    let b = crate::sts::uuid_v4().expect("random bytes");
    assert_ne!(a, b);
    let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 4, "{a}");
    assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{a}");
    assert_eq!(parsed.hyphenated().to_string(), a);
}

#[test]
fn predictable_uuids_keep_their_shape() {
    crate::sts::predictable::start();
    assert_eq!(
        crate::sts::uuid_v4().expect("bytes"),
        crate::sts::predictable::uuid(1)
    );
    assert_eq!(
        crate::sts::uuid_v4().expect("bytes"),
        crate::sts::predictable::uuid(2)
    );
}
