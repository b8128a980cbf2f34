//! The plugin through FakeHost, with DVV-shaped certificates from the test kit.

use std::sync::{Arc, Mutex, OnceLock};

use certvakt_plugin_api::profile::{
    ExtendedKeyUsage, KeyAlgorithm, KeyUsage, StringType, SubjectAltName, oid,
};
use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, CertificateInfo, CheckIssued, ClientIdentity, Completion, ErrorKind,
    HostError, HostErrorKind, HttpResponse, IssueOutcome, OrderContext, Plugin, StepContext,
    StepOutcome, TaskFileContent, TaskSpec,
};
use certvakt_testkit::{CaShape, IssuedCert, KeyType, LeafSpec, TestCa};
use rcgen::{CrlDistributionPoint, KeyPair, SerialNumber};
use serde_json::{Value, json};

use crate::crl::CrlStatus;
use crate::settings::{MIN_RENEW_BEFORE_SECS, Settings};
use crate::{FiKanta, RunState};

const ORG: &str = "Helsingin Yliopiston Apteekki";
const OU: &str = "Helsingin VI apteekki";
const FQDN: &str = "kanta.apteekki.example.fi";
const Y_TUNNUS: &str = "0201256-6";
const SOTE_OID: &str = "1.2.246.10.1234567.10.0";
const CRL_URL: &str = "http://crl.dvv.example/dvvsp5.crl";
/// DVV's example of a long serial (brief §4): 18 bytes, first byte 0x01.
const LONG_SERIAL: [u8; 18] = [
    0x01, 0x00, 0x00, 0x01, 0x68, 0xf0, 0xa8, 0x05, 0xc3, 0x66, 0xb4, 0x3b, 0x5d, 0xe9, 0x68, 0xc6,
    0x91, 0xfb,
];
/// The same serial in decimal, worked out independently of the plugin (`int(hex, 16)`).
const LONG_SERIAL_DECIMAL: &str = "87112293252494463413683796322992020427259";
const DAY: i64 = 86_400;

fn settings() -> Value {
    json!({
        "certificate_type": "server",
        "organization": ORG,
        "organizational_unit": OU,
        "fqdn": FQDN,
    })
}

fn with(extra: Value) -> Value {
    let mut base = settings();
    for (k, v) in extra.as_object().expect("an object") {
        base[k] = v.clone();
    }
    base
}

fn context(settings: Value, current: Option<CertificateInfo>) -> CertificateContext {
    CertificateContext {
        certificate_id: "kanta-prod".into(),
        settings,
        environment: "production".into(),
        current,
        roles: Vec::new(),
        current_set: Default::default(),
        role: None,
    }
}

fn rsa2048() -> Arc<KeyPair> {
    static KEY: OnceLock<Arc<KeyPair>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(KeyType::Rsa2048.generate().expect("an RSA key")))
        .clone()
}

fn dvv_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new(CaShape::Dvv).expect("a DVV CA"))
}

/// A sote server certificate as the settings ask for it.
fn sote(spec: LeafSpec) -> IssuedCert {
    dvv_ca().issue(&spec).expect("issued")
}

fn sote_spec() -> LeafSpec {
    LeafSpec::dvv(Y_TUNNUS, ORG)
        .with_key(rsa2048())
        .org_unit(OU)
        .server_name(FQDN)
}

fn info(pem: &str, not_before: i64, not_after: i64) -> CertificateInfo {
    CertificateInfo {
        pem: pem.to_owned(),
        subject: format!("CN={FQDN},OU={OU},O={ORG},C=FI"),
        serial: String::new(),
        not_before,
        not_after,
        identities: Vec::new(),
    }
}

fn info_of(issued: &IssuedCert) -> CertificateInfo {
    info(
        &issued.cert_pem,
        issued.not_before.unix_timestamp(),
        issued.not_after.unix_timestamp(),
    )
}

/// The old certificate: DVV's long serial and a CRL distribution point (made from a CSR, as
/// the test kit's CA lets the caller set any extension).
fn old_with_crl(crl: Option<&str>) -> CertificateInfo {
    let key = KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(vec![FQDN.to_owned()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FQDN);
    let csr = params.serialize_request(&key).expect("a CSR");
    let issued = dvv_ca()
        .issue_from_csr(&csr.pem().expect("PEM"), |p| {
            p.serial_number = Some(SerialNumber::from_slice(&LONG_SERIAL));
            if let Some(url) = crl {
                p.crl_distribution_points = vec![CrlDistributionPoint {
                    uris: vec![url.to_owned()],
                }];
            }
        })
        .expect("issued");
    let cert = crate::cert::Cert::read(&issued.pem, "old").expect("parses");
    info(&issued.pem, cert.not_before, cert.not_after)
}

fn step(
    settings: Value,
    old: Option<CertificateInfo>,
    new: Option<CertificateInfo>,
    state: Value,
) -> StepContext {
    StepContext {
        certificate: context(settings, old),
        new,
        new_set: Default::default(),
        state,
    }
}

// ---------------------------------------------------------------------------------------------
// describe, validate_settings

#[test]
fn describe_documents_every_setting_and_the_readme_too() {
    let fake = FakeHost::new();
    let description = fake.describe(&FiKanta::default()).expect("describe");
    assert_eq!(description.name, "fi-kanta");
    assert!(
        description.summary.contains("DVV"),
        "{}",
        description.summary
    );
    let keys: Vec<&str> = description
        .settings
        .iter()
        .map(|d| d.key.as_str())
        .collect();
    for key in [
        "certificate_type",
        "organization",
        "organizational_unit",
        "fqdn",
        "alt_names",
        "sote_oid",
        "key_type",
        "business_id",
        "technical_contact",
        "processing_time",
        "correction_time",
        "renew_before",
        "verify_url",
        "verify_trust",
        "revoke_after",
        "revocation_reason",
        "crl_poll",
    ] {
        assert!(keys.contains(&key), "{key} is not documented");
    }
    let readme = include_str!("../README.md");
    for doc in &description.settings {
        assert!(!doc.description.is_empty(), "{}", doc.key);
        assert!(
            readme.contains(&format!("`{}`", doc.key)),
            "the README does not document {}",
            doc.key
        );
        // Every example is a valid value for its setting.
        let example = doc.example.as_deref().expect("an example");
        let parsed: toml::Table = toml::from_str(&format!("v = {example}")).expect("a TOML value");
        let value = serde_json::to_value(&parsed["v"]).expect("JSON");
        let mut extra = serde_json::Map::new();
        extra.insert(doc.key.clone(), value);
        let settings = with(Value::Object(extra));
        assert_eq!(
            fake.validate_settings(&FiKanta::default(), settings)
                .expect("validate"),
            vec![],
            "the example of {}",
            doc.key
        );
    }
}

#[test]
fn valid_settings_have_no_problems_and_defaults_apply() {
    let fake = FakeHost::new();
    assert_eq!(
        fake.validate_settings(&FiKanta::default(), settings())
            .expect("validate"),
        vec![]
    );
    let parsed = Settings::parse(&settings()).expect("valid");
    assert_eq!(parsed.key, KeyAlgorithm::Rsa2048);
    assert_eq!(parsed.lead_time_secs(), 14 * DAY);
    assert_eq!(parsed.renew_before.as_secs(), 30 * 86_400);
    assert_eq!(parsed.revoke_after.as_secs(), 7 * 86_400);
    assert_eq!(parsed.crl_poll.as_secs(), 3600);
}

#[test]
fn every_problem_is_reported_at_once_with_the_reason() {
    let fake = FakeHost::new();
    let problems = fake
        .validate_settings(
            &FiKanta::default(),
            json!({
                "certificate_type": "client",
                "organization": ORG,
                "fqdn": "it@apteekki.example.fi",
                "alt_names": ["kanta2.apteekki.example.fi", "admin@apteekki.example.fi", "10.1.2.3"],
                "key_type": "rsa-3072",
                "sote_oid": "SOTE-123",
                "business_id": "1234567",
                "renew_before": "14d",
                "verify_url": "http://kanta.example.fi/",
                "crl_poll": "2s",
                "colour": "blue",
            }),
        )
        .expect("validate");
    let find = |key: &str| {
        problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no problem for {key}: {problems:?}"))
            .message
            .clone()
    };
    assert!(find("certificate_type").contains("\"test-system-signature\""));
    assert!(find("organizational_unit").contains("required"));
    assert!(find("fqdn").contains("e-mail address"), "{}", find("fqdn"));
    assert!(find("alt_names[1]").contains("e-mail address"));
    assert!(
        find("key_type").contains("2048 or 4096"),
        "{}",
        find("key_type")
    );
    assert!(find("sote_oid").contains("OID"));
    assert!(find("business_id").contains("Y-tunnus"));
    assert!(find("renew_before").contains("three weeks"));
    assert!(find("verify_url").contains("https://"));
    assert!(find("crl_poll").contains("every 5 seconds"));
    assert!(find("colour").contains("not a setting"));
    // The IP address beside the FQDN is allowed; only an IP-only certificate is not.
    assert!(
        !problems.iter().any(|p| p.key == "alt_names[2]"),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 11, "{problems:?}");
}

#[test]
fn an_ip_only_name_and_other_key_types_are_refused() {
    let fake = FakeHost::new();
    for (extra, key, reason) in [
        (json!({"fqdn": "192.0.2.10"}), "fqdn", "IP address"),
        (json!({"fqdn": "2001:db8::1"}), "fqdn", "IP address"),
        (json!({"fqdn": "kanta"}), "fqdn", "fully qualified"),
        (
            json!({"key_type": "ec-p384"}),
            "key_type",
            "RSA keys of 2048 or 4096",
        ),
        (
            json!({"key_type": "rsa-1024"}),
            "key_type",
            "RSA keys of 2048 or 4096",
        ),
        (
            json!({"organizational_unit": "apteekki@example.fi"}),
            "organizational_unit",
            "e-mail",
        ),
    ] {
        let problems = fake
            .validate_settings(&FiKanta::default(), with(extra.clone()))
            .expect("validate");
        assert_eq!(problems.len(), 1, "{extra}: {problems:?}");
        assert_eq!(problems[0].key, key, "{extra}");
        assert!(
            problems[0].message.contains(reason),
            "{extra}: {}",
            problems[0].message
        );
    }
    assert!(
        Settings::parse(&with(json!({"renew_before": "21d"}))).is_ok(),
        "three weeks is enough"
    );
    assert_eq!(MIN_RENEW_BEFORE_SECS, 21 * 86_400);
    // Acting on bad settings is a configuration error naming the setting.
    let err = fake
        .csr_profile(
            &FiKanta::default(),
            context(with(json!({"fqdn": "192.0.2.10"})), None),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert!(err.message.contains("fqdn"), "{}", err.message);
}

// ---------------------------------------------------------------------------------------------
// csr_profile

#[test]
fn the_server_profile_is_c_o_ou_cn_with_the_names_and_both_tls_usages() {
    let fake = FakeHost::new();
    let profile = fake
        .csr_profile(
            &FiKanta::default(),
            context(
                with(json!({
                    "fqdn": "Kanta.Apteekki.Example.fi.",
                    "alt_names": ["Kanta2.Apteekki.Example.fi", "192.0.2.10", "kanta.apteekki.example.fi"],
                })),
                None,
            ),
        )
        .expect("profile");
    assert_eq!(profile.key, KeyAlgorithm::Rsa2048);
    let subject: Vec<(&str, &str, StringType)> = profile
        .subject
        .iter()
        .map(|a| (a.oid.as_str(), a.value.as_str(), a.string_type))
        .collect();
    assert_eq!(
        subject,
        vec![
            (oid::COUNTRY, "FI", StringType::Printable),
            (oid::ORGANIZATION, ORG, StringType::Utf8),
            (oid::ORGANIZATIONAL_UNIT, OU, StringType::Utf8),
            (oid::COMMON_NAME, FQDN, StringType::Utf8),
        ]
    );
    assert_eq!(
        profile.sans,
        vec![
            SubjectAltName::Dns(FQDN.into()),
            SubjectAltName::Dns("kanta2.apteekki.example.fi".into()),
            SubjectAltName::Ip("192.0.2.10".into()),
        ]
    );
    assert!(
        !profile
            .sans
            .iter()
            .any(|s| matches!(s, SubjectAltName::Email(_)))
    );
    assert_eq!(
        profile.key_usage,
        vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]
    );
    assert_eq!(
        profile.extended_key_usage,
        vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth]
    );
}

#[test]
fn each_type_gets_its_usages_and_the_sote_oid_goes_last_as_serial_number() {
    let fake = FakeHost::new();
    for (kind, server) in [
        ("server", true),
        ("test-server", true),
        ("system-signature", false),
        ("test-system-signature", false),
    ] {
        let profile = fake
            .csr_profile(
                &FiKanta::default(),
                context(
                    with(json!({"certificate_type": kind, "sote_oid": SOTE_OID, "key_type": "rsa-4096"})),
                    None,
                ),
            )
            .expect("profile");
        assert_eq!(profile.key, KeyAlgorithm::Rsa4096, "{kind}");
        let last = profile.subject.last().expect("attributes");
        assert_eq!(
            (last.oid.as_str(), last.value.as_str(), last.string_type),
            (oid::SERIAL_NUMBER, SOTE_OID, StringType::Printable),
            "{kind}"
        );
        assert_eq!(profile.subject[3].value, FQDN, "{kind}: CN is the FQDN");
        if server {
            assert!(
                profile.key_usage.contains(&KeyUsage::KeyEncipherment),
                "{kind}"
            );
            assert_eq!(profile.extended_key_usage.len(), 2, "{kind}");
        } else {
            assert_eq!(
                profile.key_usage,
                vec![KeyUsage::DigitalSignature, KeyUsage::NonRepudiation],
                "{kind}"
            );
            assert!(profile.extended_key_usage.is_empty(), "{kind}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// issue: the application task

fn order(settings: Value, current: Option<CertificateInfo>) -> OrderContext {
    OrderContext {
        certificate: context(settings, current),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
        csr_set: Default::default(),
        state: Value::Null,
    }
}

fn pending_task(outcome: IssueOutcome) -> TaskSpec {
    match outcome {
        IssueOutcome::Pending {
            task: Some(task), ..
        } => task,
        other => panic!("expected a pending order with a task, got {other:?}"),
    }
}

#[test]
fn the_application_task_gives_the_form_values_the_csr_and_a_deadline() {
    let fake = FakeHost::new();
    let now = FakeHost::DEFAULT_NOW;
    let not_after = now + 60 * DAY;
    let current = info("-", now - 300 * DAY, not_after);
    let settings = with(json!({
        "sote_oid": SOTE_OID,
        "business_id": Y_TUNNUS,
        "technical_contact": "Maija Meikäläinen <it@apteekki.example.fi>",
        "alt_names": ["kanta2.apteekki.example.fi"],
    }));
    let task = pending_task(
        fake.issue(&FiKanta::default(), order(settings, Some(current)))
            .expect("issue"),
    );
    assert_eq!(task.completes_by, Completion::Import);
    assert!(task.title.contains("DVV"), "{}", task.title);
    assert!(task.title.contains(FQDN), "{}", task.title);
    let text = &task.instructions;
    for value in [
        "Sote server certificate (sote-palvelinvarmenne)",
        &format!("Organisation (O): {ORG}"),
        &format!("Organisational unit (OU; the long name in the Kela/THL code service): {OU}"),
        &format!("Server name (CN, FQDN): {FQDN}"),
        &format!("Subject alternative names (SAN): {FQDN}, kanta2.apteekki.example.fi"),
        &format!("SOTE organisation OID (subject serialNumber): {SOTE_OID}"),
        &format!("Business ID (Y-tunnus): {Y_TUNNUS}"),
        "Technical contact: Maija Meikäläinen <it@apteekki.example.fi>",
        "Key: RSA 2048",
        "request.csr",
        "certvakt import kanta-prod <file>",
        "DER and as PEM",
        "new application",
    ] {
        assert!(text.contains(value), "missing {value:?} in:\n{text}");
    }
    // Deadline: expiry − (7 days of processing + 7 days for a correction round).
    let submit_by = crate::task::date(not_after - 14 * DAY);
    assert_eq!(submit_by, "2026-02-16");
    assert!(
        text.contains(&format!(
            "Send the application by {submit_by} at the latest"
        )),
        "{text}"
    );
    assert!(text.contains("expires on 2026-03-02"), "{text}");
    assert!(text.contains("expected around 2026-01-08"), "{text}");
    // The CSR and the form values come as files.
    assert_eq!(task.files[0].name, "request.csr");
    assert_eq!(task.files[0].content, TaskFileContent::Csr);
    let TaskFileContent::Text(values) = &task.files[1].content else {
        panic!("form values as text");
    };
    assert!(
        values.starts_with("Certificate type: Sote server certificate"),
        "{values}"
    );
    assert!(values.contains(OU));
}

#[test]
fn a_late_or_first_application_says_so_and_the_poll_keeps_waiting_for_the_import() {
    let fake = FakeHost::new();
    let now = FakeHost::DEFAULT_NOW;
    let late = info("-", now - 355 * DAY, now + 10 * DAY);
    let task = pending_task(
        fake.issue(
            &FiKanta::default(),
            order(
                with(json!({"certificate_type": "system-signature"})),
                Some(late),
            ),
        )
        .expect("issue"),
    );
    assert!(
        task.instructions.contains("Send the application today"),
        "{}",
        task.instructions
    );
    assert!(
        task.instructions
            .contains("järjestelmäallekirjoitusvarmenne")
    );
    let first = pending_task(
        fake.issue(&FiKanta::default(), order(settings(), None))
            .expect("issue"),
    );
    assert!(first.instructions.contains("no certificate in use yet"));
    match fake
        .poll(&FiKanta::default(), order(settings(), None))
        .expect("poll")
    {
        IssueOutcome::Pending { task, .. } => assert!(task.is_none()),
        other => panic!("still pending, not {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// renewal_window

#[test]
fn the_window_leaves_dvvs_lead_time_and_renew_before() {
    let fake = FakeHost::new();
    let not_after = FakeHost::DEFAULT_NOW + 365 * DAY;
    let current = info("-", FakeHost::DEFAULT_NOW, not_after);
    let window = fake
        .renewal_window(
            &FiKanta::default(),
            context(settings(), Some(current.clone())),
        )
        .expect("window")
        .expect("a window");
    // 7d processing + 7d correction + 30d renew_before.
    assert_eq!(window.start, not_after - 44 * DAY);
    assert_eq!(window.end, not_after - 37 * DAY);
    assert!(window.check_again_secs > 0);
    let custom =
        with(json!({"processing_time": "10d", "correction_time": "5d", "renew_before": "21d"}));
    let window = fake
        .renewal_window(&FiKanta::default(), context(custom, Some(current)))
        .expect("window")
        .expect("a window");
    assert_eq!(window.start, not_after - 36 * DAY);
    assert_eq!(window.end, not_after - 31 * DAY);
    assert_eq!(
        fake.renewal_window(&FiKanta::default(), context(settings(), None))
            .expect("window"),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// check_issued

fn check(settings: Value, new: &IssuedCert) -> Vec<String> {
    FakeHost::new()
        .check_issued(
            &FiKanta::default(),
            CheckIssued {
                certificate: context(settings, None),
                new: info_of(new),
                new_set: Default::default(),
                key_from_ca: false,
            },
        )
        .expect("check_issued")
}

#[test]
fn a_certificate_as_applied_for_with_a_long_serial_passes() {
    let issued = sote(sote_spec().serial(&LONG_SERIAL).days(0, 365));
    assert_eq!(check(settings(), &issued), Vec::<String>::new());
    let cert = crate::cert::Cert::read(&issued.cert_pem, "new").expect("parses");
    assert_eq!(cert.serial.len(), 18);
    assert_eq!(cert.serial.hex(), "0100000168f0a805c366b43b5de968c691fb");
    assert_eq!(cert.serial.decimal(), LONG_SERIAL_DECIMAL);
}

#[test]
fn the_validity_limit_follows_the_type_with_a_day_of_slack() {
    // A server certificate: one year (and a day of slack), not two.
    assert!(check(settings(), &sote(sote_spec().days(0, 367))).is_empty());
    let objections = check(settings(), &sote(sote_spec().days(0, 730)));
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(objections[0].contains("730 days"), "{}", objections[0]);
    assert!(
        objections[0].contains("at most 1 year"),
        "{}",
        objections[0]
    );
    let test_server = with(json!({"certificate_type": "test-server"}));
    assert_eq!(check(test_server, &sote(sote_spec().days(0, 369))).len(), 1);
    // A system-signature certificate: two years.
    let signature = with(json!({"certificate_type": "system-signature"}));
    assert!(check(signature.clone(), &sote(sote_spec().days(0, 731))).is_empty());
    let objections = check(signature, &sote(sote_spec().days(0, 735)));
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(
        objections[0].contains("at most 2 year"),
        "{}",
        objections[0]
    );
}

#[test]
fn names_that_differ_from_the_application_are_objections() {
    let wrong = sote(
        LeafSpec::dvv(Y_TUNNUS, "Toinen Oy")
            .with_key(rsa2048())
            .org_unit("Helsingin V apteekki")
            .server_name("other.apteekki.example.fi"),
    );
    let objections = check(
        with(json!({"alt_names": ["kanta2.apteekki.example.fi"]})),
        &wrong,
    );
    let all = objections.join("\n");
    assert!(all.contains("organisation (O) is \"Toinen Oy\""), "{all}");
    assert!(
        all.contains("organisational unit (OU) is \"Helsingin V apteekki\""),
        "{all}"
    );
    assert!(
        all.contains("common name (CN) is \"other.apteekki.example.fi\""),
        "{all}"
    );
    assert!(
        all.contains(&format!("lack {FQDN}, kanta2.apteekki.example.fi")),
        "{all}"
    );
    assert_eq!(objections.len(), 4, "{all}");
    // The SOTE OID, when configured, must be there.
    let with_oid = with(json!({"sote_oid": SOTE_OID}));
    let objections = check(with_oid.clone(), &sote(sote_spec()));
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(
        objections[0].contains("SOTE organisation OID"),
        "{}",
        objections[0]
    );
    assert!(objections[0].contains("missing"), "{}", objections[0]);
    assert!(check(with_oid, &sote(sote_spec().sote_oid(SOTE_OID))).is_empty());
    // An e-mail address in the names, and a key DVV does not take.
    let objections = check(
        settings(),
        &sote(sote_spec().san("email:it@apteekki.example.fi")),
    );
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(
        objections[0].contains("it@apteekki.example.fi"),
        "{}",
        objections[0]
    );
    let objections = check(
        settings(),
        &sote(
            LeafSpec::dvv(Y_TUNNUS, ORG)
                .org_unit(OU)
                .server_name(FQDN)
                .key_type(KeyType::EcP256),
        ),
    );
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(objections[0].contains("EC 256"), "{}", objections[0]);
}

// ---------------------------------------------------------------------------------------------
// register, verify

#[test]
fn register_pushes_nothing() {
    let fake = FakeHost::new();
    let outcome = fake
        .register(
            &FiKanta::default(),
            step(settings(), None, None, json!({"kept": 1})),
        )
        .expect("register");
    assert_eq!(
        outcome,
        StepOutcome::Done {
            state: json!({"kept": 1})
        }
    );
    assert!(fake.http_requests().is_empty());
}

fn verified_at(outcome: &StepOutcome) -> Option<i64> {
    match outcome {
        StepOutcome::Done { state } => {
            serde_json::from_value::<RunState>(state.clone())
                .ok()?
                .verified_at
        }
        StepOutcome::Pending { .. } => None,
    }
}

#[test]
fn verify_without_an_endpoint_is_done_and_records_the_time() {
    let fake = FakeHost::new();
    let outcome = fake
        .verify(
            &FiKanta::default(),
            step(settings(), None, None, Value::Null),
        )
        .expect("verify");
    assert_eq!(verified_at(&outcome), Some(FakeHost::DEFAULT_NOW));
    assert!(fake.http_requests().is_empty());
}

#[test]
fn verify_makes_a_handshake_with_the_current_certificate_against_kanta() {
    let url = "https://kanta-test.example.fi/health";
    let settings = with(json!({"verify_url": url, "verify_trust": "kanta"}));
    let fake = FakeHost::new();
    fake.respond_http(
        "GET",
        url,
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        },
    );
    let outcome = fake
        .verify(
            &FiKanta::default(),
            step(settings.clone(), None, None, Value::Null),
        )
        .expect("verify");
    assert_eq!(verified_at(&outcome), Some(FakeHost::DEFAULT_NOW));
    let requests = fake.http_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].identity, ClientIdentity::Current);
    assert_eq!(requests[0].trust.as_deref(), Some("kanta"));

    let refusing = FakeHost::new();
    refusing.respond_http(
        "GET",
        url,
        HttpResponse {
            status: 403,
            headers: Vec::new(),
            body: Vec::new(),
        },
    );
    let err = refusing
        .verify(
            &FiKanta::default(),
            step(settings.clone(), None, None, Value::Null),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NeedsPerson);
    assert_eq!(err.fault_code.as_deref(), Some("http_403"));

    // No answer at all (a failed handshake): try again later.
    let err = FakeHost::new()
        .verify(&FiKanta::default(), step(settings, None, None, Value::Null))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(err.message.contains("TLS handshake"), "{}", err.message);
}

// ---------------------------------------------------------------------------------------------
// retire

/// A CRL lookup that answers from a switch and records what it was asked.
#[derive(Clone, Default)]
struct FakeCrl {
    revoked: Arc<Mutex<Option<Result<bool, HostError>>>>,
    asked: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeCrl {
    fn set(&self, answer: Result<bool, HostError>) {
        *self.revoked.lock().expect("lock") = Some(answer);
    }

    fn asked(&self) -> Vec<(String, String)> {
        self.asked.lock().expect("lock").clone()
    }

    fn plugin(&self) -> FiKanta {
        let this = self.clone();
        FiKanta::with_crl_lookup(move |_host, url, serial_hex| {
            this.asked
                .lock()
                .expect("lock")
                .push((url.to_owned(), serial_hex.to_owned()));
            let answer = this.revoked.lock().expect("lock").clone();
            match answer.expect("the test set an answer") {
                Ok(revoked) => Ok(CrlStatus {
                    revoked,
                    revoked_at: revoked.then_some(FakeHost::DEFAULT_NOW),
                    issuer: "CN=TEST DVV Service Certificates,C=FI".into(),
                    this_update: FakeHost::DEFAULT_NOW,
                    next_update: Some(FakeHost::DEFAULT_NOW + DAY),
                }),
                Err(e) => Err(e),
            }
        })
    }
}

fn state_of(outcome: &StepOutcome) -> Value {
    match outcome {
        StepOutcome::Done { state } | StepOutcome::Pending { state, .. } => state.clone(),
    }
}

#[test]
fn retire_waits_for_the_grace_period_then_asks_for_the_revocation_and_watches_the_crl() {
    let crl = FakeCrl::default();
    let plugin = crl.plugin();
    let fake = FakeHost::new();
    let verified = FakeHost::DEFAULT_NOW;
    let old = old_with_crl(Some(CRL_URL));
    let new = info_of(&sote(sote_spec()));
    let state = json!({"verified_at": verified});

    // Within the grace period: pending until it ends, no task, the CRL not even read.
    fake.set_now(verified + 2 * DAY);
    let outcome = plugin.retire_with(
        &fake,
        step(
            settings(),
            Some(old.clone()),
            Some(new.clone()),
            state.clone(),
        ),
    );
    assert_eq!(
        outcome,
        StepOutcome::Pending {
            poll_after_secs: 5 * 86_400,
            task: None,
            state: state.clone()
        }
    );
    assert!(crl.asked().is_empty());

    // After it: the revocation task, with the old serial in every form.
    fake.set_now(verified + 7 * DAY);
    crl.set(Ok(false));
    let outcome = plugin.retire_with(
        &fake,
        step(settings(), Some(old.clone()), Some(new.clone()), state),
    );
    let StepOutcome::Pending {
        poll_after_secs,
        task: Some(task),
        state,
    } = outcome
    else {
        panic!("expected the revocation task, got {outcome:?}");
    };
    assert_eq!(poll_after_secs, 3600);
    assert_eq!(task.completes_by, Completion::Poll);
    assert_eq!(
        crl.asked(),
        vec![(
            CRL_URL.to_owned(),
            "0100000168f0a805c366b43b5de968c691fb".to_owned()
        )]
    );
    let text = &task.instructions;
    for value in [
        "Serial number (hex): 0100000168f0a805c366b43b5de968c691fb",
        "Serial number (hex with colons): 01:00:00:01:68:F0:A8:05:C3:66:B4:3B:5D:E9:68:C6:91:FB",
        &format!("Serial number (decimal): {LONG_SERIAL_DECIMAL}"),
        "Reason for the revocation: superseded",
        "Log in to the e-service",
        "Granted permits and unfinished matters",
        "Tee varmenteen sulkupyyntö",
        "within 24 hours",
        CRL_URL,
        "cannot be taken back into use",
    ] {
        assert!(text.contains(value), "missing {value:?} in:\n{text}");
    }
    assert!(
        task.title.contains("0100000168f0a805c366b43b5de968c691fb"),
        "{}",
        task.title
    );
    assert_eq!(
        task.files[0].content,
        TaskFileContent::PreviousCertificateDer
    );

    // The CRL does not list it yet: pending, no second task.
    fake.set_now(verified + 8 * DAY);
    let outcome = plugin.retire_with(
        &fake,
        step(
            settings(),
            Some(old.clone()),
            Some(new.clone()),
            state.clone(),
        ),
    );
    assert!(
        matches!(
            outcome,
            StepOutcome::Pending {
                task: None,
                poll_after_secs: 3600,
                ..
            }
        ),
        "{outcome:?}"
    );
    // A CRL that cannot be read is a temporary error; the task stays open.
    crl.set(Err(HostError::new(
        HostErrorKind::Failed,
        "connection refused",
    )));
    let err = fake
        .retire(
            &plugin,
            step(
                settings(),
                Some(old.clone()),
                Some(new.clone()),
                state.clone(),
            ),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(
        err.message.contains("connection refused"),
        "{}",
        err.message
    );
    // Revoked: done.
    crl.set(Ok(true));
    let outcome = plugin.retire_with(&fake, step(settings(), Some(old), Some(new), state));
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    assert_eq!(crl.asked().len(), 4);
}

#[test]
fn an_old_certificate_already_on_the_crl_needs_no_task() {
    let crl = FakeCrl::default();
    crl.set(Ok(true));
    let fake = FakeHost::new();
    fake.set_now(FakeHost::DEFAULT_NOW + 30 * DAY);
    let outcome = crl.plugin().retire_with(
        &fake,
        step(
            settings(),
            Some(old_with_crl(Some(CRL_URL))),
            None,
            json!({"verified_at": FakeHost::DEFAULT_NOW}),
        ),
    );
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
}

#[test]
fn without_a_crl_to_watch_a_person_confirms_the_revocation() {
    // The built plugin on a host that cannot read CRLs (older than plugin API 1.4.0, or the
    // service not offered): a person confirms the revocation.
    let fake = FakeHost::new();
    fake.fail(
        "crl_status",
        certvakt_plugin_api::HostError::new(
            certvakt_plugin_api::HostErrorKind::NotAvailable,
            "this certvakt cannot read CRLs for plugins (plugin API older than 1.4.0)",
        ),
    );
    fake.set_now(FakeHost::DEFAULT_NOW + 7 * DAY);
    let first = fake
        .retire(
            &FiKanta::default(),
            step(
                settings(),
                Some(old_with_crl(Some(CRL_URL))),
                None,
                json!({"verified_at": FakeHost::DEFAULT_NOW}),
            ),
        )
        .expect("retire");
    let StepOutcome::Pending {
        task: Some(task),
        state,
        poll_after_secs,
    } = first
    else {
        panic!("expected the revocation task, got {first:?}");
    };
    assert_eq!(task.completes_by, Completion::Confirm);
    // Asked again when the task is marked done, or at the old certificate's expiry.
    let old = old_with_crl(Some(CRL_URL));
    let until_expiry = old.not_after - (FakeHost::DEFAULT_NOW + 7 * DAY);
    assert!(
        (until_expiry - 5..=until_expiry).contains(&i64::try_from(poll_after_secs).expect("fits")),
        "{poll_after_secs} vs {until_expiry}"
    );
    assert!(
        task.instructions
            .contains("ends the run when the old certificate expires")
    );
    assert!(
        task.instructions.contains("cannot read CRLs"),
        "{}",
        task.instructions
    );
    assert!(
        task.instructions.contains("mark this task done"),
        "{}",
        task.instructions
    );
    // Asked again (the task marked done): done.
    let again = fake
        .retire(
            &FiKanta::default(),
            step(settings(), Some(old_with_crl(Some(CRL_URL))), None, state),
        )
        .expect("retire");
    assert!(matches!(again, StepOutcome::Done { .. }), "{again:?}");

    // An old certificate without a CRL distribution point: the same, and the lookup is never
    // asked.
    let crl = FakeCrl::default();
    let outcome = crl.plugin().retire_with(
        &fake,
        step(
            settings(),
            Some(old_with_crl(None)),
            None,
            json!({"verified_at": FakeHost::DEFAULT_NOW}),
        ),
    );
    let StepOutcome::Pending {
        task: Some(task), ..
    } = outcome
    else {
        panic!("expected the revocation task, got {outcome:?}");
    };
    assert_eq!(task.completes_by, Completion::Confirm);
    assert!(task.instructions.contains("no CRL distribution point"));
    assert!(crl.asked().is_empty());
}

#[test]
fn retire_counts_the_grace_period_from_its_first_call_when_verify_recorded_nothing() {
    let crl = FakeCrl::default();
    crl.set(Ok(false));
    let plugin = crl.plugin();
    let fake = FakeHost::new();
    let old = old_with_crl(Some(CRL_URL));
    let outcome = plugin.retire_with(
        &fake,
        step(settings(), Some(old.clone()), None, Value::Null),
    );
    assert!(
        matches!(outcome, StepOutcome::Pending { task: None, poll_after_secs, .. } if poll_after_secs == 7 * 86_400),
        "{outcome:?}"
    );
    let state = state_of(&outcome);
    fake.set_now(FakeHost::DEFAULT_NOW + 7 * DAY - 1);
    let outcome = plugin.retire_with(
        &fake,
        step(settings(), Some(old.clone()), None, state.clone()),
    );
    assert!(
        matches!(
            outcome,
            StepOutcome::Pending {
                task: None,
                poll_after_secs: 1,
                ..
            }
        ),
        "{outcome:?}"
    );
    fake.set_now(FakeHost::DEFAULT_NOW + 7 * DAY);
    let outcome = plugin.retire_with(&fake, step(settings(), Some(old), None, state));
    assert!(
        matches!(outcome, StepOutcome::Pending { task: Some(_), .. }),
        "{outcome:?}"
    );
}

#[test]
fn an_expired_old_certificate_is_not_revoked_nor_watched() {
    let crl = FakeCrl::default();
    crl.set(Ok(false));
    let plugin = crl.plugin();
    let old = old_with_crl(Some(CRL_URL));
    let fake = FakeHost::new();
    fake.set_now(old.not_after);
    let outcome = plugin.retire_with(
        &fake,
        step(
            settings(),
            Some(old.clone()),
            None,
            json!({"verified_at": old.not_after - DAY}),
        ),
    );
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    // Also while the CRL is watched: the run ends, with a warning to check DVV's e-mail.
    let watching = json!({
        "verified_at": old.not_after - 30 * DAY,
        "revocation": {"requested_at": old.not_after - 20 * DAY, "serial_hex": "01", "crl_url": CRL_URL},
    });
    let outcome = plugin.retire_with(&fake, step(settings(), Some(old), None, watching));
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    assert!(crl.asked().is_empty());
    assert!(
        fake.logs().iter().any(|l| l
            .message
            .contains("expired before its serial showed on the CRL")),
        "{:?}",
        fake.logs()
    );
}

#[test]
fn a_state_that_does_not_parse_stops_retire() {
    let err = FakeHost::new()
        .retire(
            &FiKanta::default(),
            step(
                settings(),
                Some(old_with_crl(Some(CRL_URL))),
                None,
                json!({"verified_at": "yesterday"}),
            ),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("verified_at"), "{}", err.message);
}

// ---------------------------------------------------------------------------------------------
// README

#[test]
fn the_readme_examples_are_valid_settings() {
    let readme = include_str!("../README.md");
    let mut seen = 0;
    for block in readme.split("```toml").skip(1) {
        let Some((toml_text, _)) = block.split_once("```") else {
            continue;
        };
        let doc: toml::Table = toml::from_str(toml_text)
            .unwrap_or_else(|e| panic!("a README TOML block does not parse: {e}\n{toml_text}"));
        let Some(certificates) = doc.get("certificate").and_then(|c| c.as_array()) else {
            continue;
        };
        for certificate in certificates {
            assert_eq!(
                certificate["plugin"].as_str(),
                Some("fi-kanta"),
                "{toml_text}"
            );
            let settings = certificate
                .get("settings")
                .cloned()
                .unwrap_or(toml::Value::Table(toml::Table::new()));
            let value = serde_json::to_value(&settings).expect("JSON");
            Settings::parse(&value).unwrap_or_else(|p| panic!("{p:?}\n{toml_text}"));
            seen += 1;
        }
    }
    assert!(seen >= 2, "the README has {seen} fi-kanta examples");
}

impl FiKanta {
    /// Retire through FakeHost, expecting an outcome.
    fn retire_with(&self, fake: &FakeHost, step: StepContext) -> StepOutcome {
        fake.retire(self, step).expect("retire")
    }
}

#[test]
fn the_name_is_fi_kanta() {
    assert_eq!(<FiKanta as Plugin>::NAME, "fi-kanta");
}
