//! Manual CA through FakeHost: every method over the real JSON codec, no daemon.

use certvakt_plugin_api::profile::{
    CsrProfile, ExtendedKeyUsage, KeyAlgorithm, KeyUsage, StringType, SubjectAltName,
    SubjectAttribute, oid,
};
use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, CertificateInfo, Completion, ErrorKind, IssueOutcome, OrderContext,
    StepContext, StepOutcome, TaskFileContent,
};
use certvakt_testkit::{CaShape, KeyType, LeafSpec, TestCa};
use serde_json::{Value, json};

use crate::{ManualCa, POLL_AFTER_SECS};

const UUID: &str = "8d3fa047-5b6c-4d7e-8f90-a1b2c3d4e5f6";

fn context(settings: Value, current: Option<CertificateInfo>) -> CertificateContext {
    CertificateContext {
        roles: Vec::new(),
        current_set: Default::default(),
        role: None,
        certificate_id: "fmk-prod".into(),
        settings,
        environment: "production".into(),
        current,
    }
}

fn order(settings: Value, current: Option<CertificateInfo>) -> OrderContext {
    OrderContext {
        csr_set: Default::default(),
        certificate: context(settings, current),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n…\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
        state: Value::Null,
    }
}

/// A real certificate as the daemon describes it, minted by the testkit.
fn info(spec: &LeafSpec) -> CertificateInfo {
    let issued = TestCa::new(CaShape::Oces3).unwrap().issue(spec).unwrap();
    CertificateInfo {
        pem: issued.cert_pem.clone(),
        subject: "(as the daemon shows it)".into(),
        serial: issued.serial_hex().unwrap(),
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        identities: vec![],
    }
}

fn oces3_current() -> CertificateInfo {
    info(&LeafSpec::oces3("25450442", UUID, "Hjørring Apotek").key_type(KeyType::EcP256))
}

/// OCES3's subject, in its DER order and string types.
fn oces3_settings() -> Value {
    json!({
        "ca_name": "MitID Erhverv",
        "subject": [
            { "attribute": "CN", "value": "Hjørring Apotek" },
            { "attribute": "serialNumber", "value": format!("UI:DK-O:G:{UUID}") },
            { "attribute": "O", "value": "Hjørring Apotek" },
            { "attribute": "organizationIdentifier", "value": "NTRDK-25450442" },
            { "attribute": "C", "value": "DK" }
        ],
        "key_type": "rsa-3072",
        "key_usage": ["digitalSignature", "key_encipherment"],
        "extended_key_usage": ["clientAuth"],
        "submit_url": "https://erhvervsadministration.example/certificates/order",
        "instructions": "Use the pharmacy's MitID Erhverv administrator login."
    })
}

fn attribute(oid: &str, value: &str, string_type: StringType) -> SubjectAttribute {
    SubjectAttribute {
        oid: oid.into(),
        value: value.into(),
        string_type,
    }
}

fn oces3_subject() -> Vec<SubjectAttribute> {
    vec![
        attribute(oid::COMMON_NAME, "Hjørring Apotek", StringType::Utf8),
        attribute(
            oid::SERIAL_NUMBER,
            &format!("UI:DK-O:G:{UUID}"),
            StringType::Printable,
        ),
        attribute(oid::ORGANIZATION, "Hjørring Apotek", StringType::Utf8),
        attribute(
            oid::ORGANIZATION_IDENTIFIER,
            "NTRDK-25450442",
            StringType::Utf8,
        ),
        attribute(oid::COUNTRY, "DK", StringType::Printable),
    ]
}

#[test]
fn describes_itself_and_every_setting() {
    let description = FakeHost::new().describe(&ManualCa).unwrap();
    assert_eq!(description.name, "manual");
    assert_eq!(
        description.api_version,
        certvakt_plugin_api::PLUGIN_API_VERSION
    );
    let required: Vec<&str> = description
        .settings
        .iter()
        .filter(|s| s.required)
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(required, ["ca_name"]);
    assert!(description.settings.iter().all(|s| s.example.is_some()));
}

#[test]
fn the_profile_comes_from_the_settings_with_oces3_string_types() {
    let host = FakeHost::new();
    let profile = host
        .csr_profile(&ManualCa, context(oces3_settings(), Some(oces3_current())))
        .unwrap();
    assert_eq!(
        profile,
        CsrProfile {
            key: KeyAlgorithm::Rsa3072,
            subject: oces3_subject(),
            sans: vec![],
            key_usage: vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
            extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
        }
    );
    assert!(host.logs().is_empty(), "nothing copied: {:?}", host.logs());
}

#[test]
fn a_renewal_without_a_subject_keeps_the_current_one_exactly() {
    let host = FakeHost::new();
    let current = oces3_current();
    let settings = json!({ "ca_name": "MitID Erhverv", "sans": [] });
    let profile = host
        .csr_profile(&ManualCa, context(settings, Some(current.clone())))
        .unwrap();
    assert_eq!(profile.subject, oces3_subject());
    assert_eq!(profile.key, KeyAlgorithm::EcP256, "the default key type");
    assert_eq!(profile.sans, vec![]);
    let logs = host.logs();
    assert_eq!(
        logs[0].message,
        "subject copied from the current certificate"
    );
    assert_eq!(logs[0].fields["serial"], current.serial);
}

#[test]
fn a_renewal_without_names_keeps_the_current_names() {
    let current = info(&LeafSpec::tls_server(&["apotek.example", "192.0.2.10"]));
    let settings = json!({ "ca_name": "Buypass", "subject": [{ "attribute": "CN", "value": "apotek.example" }] });
    let profile = FakeHost::new()
        .csr_profile(&ManualCa, context(settings, Some(current)))
        .unwrap();
    assert_eq!(
        profile.sans,
        vec![
            SubjectAltName::Dns("apotek.example".into()),
            SubjectAltName::Ip("192.0.2.10".into())
        ]
    );
    assert_eq!(
        profile.subject,
        vec![attribute(
            oid::COMMON_NAME,
            "apotek.example",
            StringType::Utf8
        )]
    );
}

#[test]
fn a_first_issuance_with_nothing_configured_is_a_configuration_error() {
    let err = FakeHost::new()
        .csr_profile(&ManualCa, context(json!({ "ca_name": "DVV" }), None))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert!(err.message.contains("configure subject or sans"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once_with_its_place_and_a_hint() {
    let settings = json!({
        "subject": [
            { "attribute": "CN", "value": "Apotek" },
            { "attribute": "XX", "value": "?" },
            { "attribute": "C", "value": "dk" },
            { "attribute": "serialNumber", "value": "HSA_ID" },
            { "attribute": "cn", "value": "again" },
            { "attribute": "2.5.4.5x", "value": "x" },
            { "attribute": "O", "value": "" },
            "CN=Apotek"
        ],
        "sans": ["apotek.example", "ftp:apotek.example", "IP:300.1.1.1", "DNS:apotek.example"],
        "key_type": "rsa-1024",
        "key_usage": ["signing"],
        "submit_url": "http://portal.example",
        "colour": "blue"
    });
    let problems = FakeHost::new()
        .validate_settings(&ManualCa, settings)
        .unwrap();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "colour",
            "ca_name",
            "subject[1].attribute",
            "subject[2].value",
            "subject[3].value",
            "subject[4]",
            "subject[5].attribute",
            "subject[6].value",
            "subject[7]",
            "sans[0]",
            "sans[1]",
            "sans[2]",
            "key_type",
            "key_usage[0]",
            "submit_url",
        ]
    );
    let problem = |key: &str| problems.iter().find(|p| p.key == key).unwrap();
    assert!(
        problem("subject[1].attribute")
            .hint
            .as_deref()
            .unwrap()
            .contains("organizationIdentifier"),
    );
    assert_eq!(
        problem("subject[4]").message,
        "repeats the attribute of subject[0]"
    );
    assert!(
        problem("subject[3].value")
            .hint
            .as_deref()
            .unwrap()
            .contains("printable = false")
    );
    assert!(
        problem("sans[0]")
            .hint
            .as_deref()
            .unwrap()
            .contains("DNS:, IP:, email: or URI:")
    );
    assert_eq!(
        problem("sans[1]").message,
        "\"ftp:apotek.example\" has an unknown type prefix"
    );
    assert!(
        problem("key_type")
            .hint
            .as_deref()
            .unwrap()
            .contains("rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384")
    );
}

#[test]
fn an_empty_subject_without_names_is_a_problem_and_good_settings_are_none() {
    let host = FakeHost::new();
    let problems = host
        .validate_settings(&ManualCa, json!({ "ca_name": "DVV", "subject": [] }))
        .unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "subject");
    assert!(problems[0].message.contains("no sans"));

    for good in [
        oces3_settings(),
        json!({ "ca_name": "DVV" }),
        json!({ "ca_name": "DVV", "subject": [], "sans": ["dns:kanta.apotek.example"] }),
        json!({ "ca_name": "X", "subject": [{ "attribute": "2.5.4.5", "value": "SE2321000016-39KJ" }] }),
    ] {
        assert_eq!(
            host.validate_settings(&ManualCa, good.clone()).unwrap(),
            vec![],
            "{good}"
        );
    }
    let not_a_table = host.validate_settings(&ManualCa, json!("x")).unwrap();
    assert_eq!(not_a_table[0].key, "");
}

#[test]
fn issue_hands_the_order_to_a_person_with_the_csr_and_the_import_command() {
    let host = FakeHost::new();
    let current = oces3_current();
    let outcome = host
        .issue(&ManualCa, order(oces3_settings(), Some(current.clone())))
        .unwrap();
    let IssueOutcome::Pending {
        poll_after_secs,
        task: Some(task),
        state,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(poll_after_secs, POLL_AFTER_SECS);
    assert_eq!(state, json!({ "ordered_at": FakeHost::DEFAULT_NOW }));
    assert_eq!(
        task.title,
        "Order a new certificate for fmk-prod from MitID Erhverv"
    );
    assert_eq!(task.completes_by, Completion::Import);
    let text = &task.instructions;
    for expected in [
        "1. Open https://erhvervsadministration.example/certificates/order and sign in",
        "2. Paste the whole of request.csr",
        "4. Use the pharmacy's MitID Erhverv administrator login.",
        "certvakt import fmk-prod <file>",
        "certs/fmk-prod/inbox/",
        &format!("serial {}", current.serial),
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert_eq!(task.files.len(), 2);
    assert_eq!(task.files[0].name, "request.csr");
    assert_eq!(task.files[0].content, TaskFileContent::Csr);
    assert_eq!(task.files[1].name, "current-certificate.pem");
    assert_eq!(task.files[1].content, TaskFileContent::Text(current.pem));
    assert_eq!(host.logs()[0].fields["ca"], "MitID Erhverv");
}

#[test]
fn without_a_submit_url_the_csr_is_sent_to_the_ca() {
    let settings = json!({ "ca_name": "DVV", "sans": ["DNS:kanta.apotek.example"] });
    let outcome = FakeHost::new()
        .issue(&ManualCa, order(settings, None))
        .unwrap();
    let IssueOutcome::Pending {
        task: Some(task), ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(
        task.instructions
            .starts_with("certvakt has made a new key for fmk-prod")
    );
    assert!(
        task.instructions
            .contains("1. Send request.csr (attached) to DVV the way DVV takes"),
        "{}",
        task.instructions
    );
    assert!(
        task.instructions
            .contains("certvakt import fmk-prod <file>")
    );
    assert_eq!(task.files.len(), 1, "no current certificate to attach");
}

#[test]
fn poll_waits_for_the_import_and_keeps_the_state() {
    let mut pending = order(oces3_settings(), None);
    pending.state = json!({ "ordered_at": 1 });
    let outcome = FakeHost::new().poll(&ManualCa, pending).unwrap();
    assert_eq!(
        outcome,
        IssueOutcome::Pending {
            poll_after_secs: POLL_AFTER_SECS,
            task: None,
            state: json!({ "ordered_at": 1 }),
        }
    );
}

#[test]
fn register_verify_and_retire_have_nothing_to_do() {
    let host = FakeHost::new();
    let step = || StepContext {
        new_set: Default::default(),
        certificate: context(oces3_settings(), Some(oces3_current())),
        new: None,
        state: json!({ "ordered_at": 1 }),
    };
    let done = StepOutcome::Done {
        state: json!({ "ordered_at": 1 }),
    };
    assert_eq!(host.register(&ManualCa, step()).unwrap(), done);
    assert_eq!(host.verify(&ManualCa, step()).unwrap(), done);
    assert_eq!(host.retire(&ManualCa, step()).unwrap(), done);
    assert!(host.http_requests().is_empty() && host.tasks().is_empty());
}

#[test]
fn bad_settings_stop_a_renewal_with_a_configuration_error() {
    let err = FakeHost::new()
        .issue(&ManualCa, order(json!({ "sans": ["x"] }), None))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert!(err.message.contains("ca_name: is required"), "{err}");
    assert!(err.message.contains("sans[0]"), "{err}");
}

#[test]
fn the_readme_examples_are_valid_settings() {
    let readme = include_str!("../README.md");
    let examples: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert_eq!(examples.len(), 3);
    for example in examples {
        let parsed: Value = toml::from_str(example).unwrap();
        // `[[certificate]]` with its settings, or `[certificate.settings]` alone.
        let certificate = &parsed["certificate"];
        let (settings, whole_entry) = match certificate.as_array() {
            Some(certificates) => (certificates[0]["settings"].clone(), true),
            None => (certificate["settings"].clone(), false),
        };
        // A whole entry is what a first issue needs: its CSR can be made with no current
        // certificate (the settings-only example is the like-for-like renewal).
        if whole_entry {
            FakeHost::new()
                .csr_profile(&ManualCa, context(settings.clone(), None))
                .unwrap_or_else(|e| panic!("{e}\n{example}"));
        }
        assert!(
            settings.is_object(),
            "no [certificate.settings] in:\n{example}"
        );
        assert_eq!(
            FakeHost::new()
                .validate_settings(&ManualCa, settings.clone())
                .unwrap(),
            vec![],
            "{example}"
        );
    }
}
