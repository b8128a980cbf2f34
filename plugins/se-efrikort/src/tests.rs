use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use certvakt_plugin_api::profile::{ExtendedKeyUsage, StringType, SubjectAltName, oid};
use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, CertificateInfo, CheckIssued, ClientIdentity, Completion, ErrorKind,
    HttpRequest, HttpResponse, IssueOutcome, OrderContext, StepContext, StepOutcome,
    TaskFileContent, TaskSpec,
};
use certvakt_testkit::{CaShape, IssuedCert, LeafSpec, TestCa};
use rcgen::ExtendedKeyUsagePurpose;
use roxmltree::Document;
use serde_json::{Value, json};

use crate::grants::{Grants, How};
use crate::rivta::{CORE, REGISTRY, RESPONDER, SOAP_ACTION};
use crate::settings::{Environment, Settings};
use crate::{RunState, SeEfrikort};

const HSA: &str = "SE5565594230-BCQ";
const OTHER_HSA: &str = "SE5565594230-XYZ";
const FQDN: &str = "efrikort.vardsystem.example.se";
const UPPSALA: &str = "SE162321000024-0001";
const DALARNA: &str = "SE2321000180-1000";
const TEST_ENDPOINT: &str =
    "https://test.efrikort.example/efrikortService/GetExtendedCardForPerson/1/rivtabp21";
const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

// ---------------------------------------------------------------------------------------------
// Fixtures

fn settings_json(environment: &str) -> Value {
    json!({
        "hsa_id": HSA,
        "fqdn": FQDN,
        "organization": "Vårdsystem AB",
        "locality": "Stockholm",
        "environment": environment,
        "regions": [
            {"name": "Region Uppsala", "contact_addresses": ["efrikort@regionuppsala.example.se"], "principal_hsa_id": UPPSALA},
            {"name": "Region Dalarna", "contact_addresses": ["a@regiondalarna.example.se", "b@regiondalarna.example.se"], "principal_hsa_id": DALARNA},
        ],
        "system_name": "G-Medical",
        "contact_name": "Göthe Alfonso",
        "contact_email": "gothe@gmedical.example.se",
        "contact_phone": "+46 70 123 12 31",
        "care_providers": ["Vårdcentralen Åre", "Hälsocentralen Östra"],
        "endpoint": TEST_ENDPOINT,
        "probe_person_id": "191212121212",
        "probe_card_type_id": "1",
        "grant_poll": "10m",
    })
}

fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new(CaShape::Siths).expect("a SITHS CA"))
}

fn siths(hsa: &str) -> LeafSpec {
    LeafSpec::siths(hsa, "Vårdsystem AB", FQDN).locality("Stockholm")
}

fn issue(spec: &LeafSpec) -> IssuedCert {
    ca().issue(spec).expect("issued")
}

fn info(issued: &IssuedCert) -> CertificateInfo {
    CertificateInfo {
        pem: issued.cert_pem.clone(),
        subject: String::new(),
        serial: "01".into(),
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        identities: Vec::new(),
    }
}

fn context(settings: Value, current: Option<&IssuedCert>) -> CertificateContext {
    CertificateContext {
        certificate_id: "efrikort".into(),
        settings,
        environment: "test".into(),
        current: current.map(info),
        roles: Vec::new(),
        current_set: BTreeMap::new(),
        role: None,
    }
}

fn step(
    settings: Value,
    current: Option<&IssuedCert>,
    new: &IssuedCert,
    state: Value,
) -> StepContext {
    StepContext {
        certificate: context(settings, current),
        new: Some(info(new)),
        new_set: BTreeMap::new(),
        state,
    }
}

fn now() -> i64 {
    certvakt_testkit::now_seconds().unix_timestamp()
}

/// A fake eFrikort: answers GetExtendedCardForPerson with the result code in `code`, and
/// records nothing itself (the FakeHost keeps the requests).
fn efrikort(host: &FakeHost) -> Arc<Mutex<String>> {
    let code = Arc::new(Mutex::new("ACCESSDENIED".to_owned()));
    let answer = code.clone();
    host.respond_http_with(move |request: &HttpRequest| {
        if request.method != "POST" || request.url != TEST_ENDPOINT {
            return None;
        }
        let code = answer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(if code == "FAULT" {
            soap(
                500,
                "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Technical error</faultstring></soap:Fault>",
            )
        } else {
            soap(
                200,
                &format!(
                    "<ns2:GetExtendedCardForPersonResponse xmlns:ns2=\"{RESPONDER}\" xmlns:ns3=\"{CORE}\">\
                     <ns2:getExtendedCardResultType><ns3:result><ns3:resultCode>{code}</ns3:resultCode>\
                     <ns3:resultText>Svar från eFrikort</ns3:resultText></ns3:result></ns2:getExtendedCardResultType>\
                     </ns2:GetExtendedCardForPersonResponse>"
                ),
            )
        })
    });
    code
}

fn soap(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("Content-Type".into(), "text/xml; charset=utf-8".into())],
        body: format!(
            "<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body>{body}</soap:Body></soap:Envelope>"
        )
        .into_bytes(),
    }
}

fn set(code: &Arc<Mutex<String>>, value: &str) {
    *code.lock().unwrap_or_else(|p| p.into_inner()) = value.to_owned();
}

fn pending(outcome: StepOutcome) -> (u64, Option<TaskSpec>, Value) {
    match outcome {
        StepOutcome::Pending {
            poll_after_secs,
            task,
            state,
        } => (poll_after_secs, task, state),
        other => panic!("expected Pending, got {other:?}"),
    }
}

fn grants(host: &FakeHost) -> Grants {
    serde_json::from_value(host.state(crate::grants::KEY).unwrap_or(Value::Null))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Settings and CSR profile

#[test]
fn the_csr_profile_is_a_siths_function_certificate() {
    let host = FakeHost::new();
    let profile = host
        .csr_profile(&SeEfrikort, context(settings_json("test"), None))
        .expect("a profile");
    let subject: Vec<(&str, &str, StringType)> = profile
        .subject
        .iter()
        .map(|a| (a.oid.as_str(), a.value.as_str(), a.string_type))
        .collect();
    assert_eq!(
        subject,
        [
            (oid::COUNTRY, "SE", StringType::Printable),
            (oid::LOCALITY, "Stockholm", StringType::Utf8),
            (oid::ORGANIZATION, "Vårdsystem AB", StringType::Utf8),
            (oid::COMMON_NAME, FQDN, StringType::Utf8),
            (oid::SERIAL_NUMBER, HSA, StringType::Printable),
        ]
    );
    assert_eq!(profile.sans, [SubjectAltName::Dns(FQDN.into())]);
    assert_eq!(profile.extended_key_usage, [ExtendedKeyUsage::ClientAuth]);
    assert_eq!(profile.key.as_str(), "rsa-2048");

    let mut settings = settings_json("test");
    settings["key_type"] = json!("ec-p256");
    let profile = host
        .csr_profile(&SeEfrikort, context(settings, None))
        .expect("a profile");
    assert_eq!(profile.key.as_str(), "ec-p256");
}

#[test]
fn an_hsa_id_outside_printable_string_is_refused_with_the_reason() {
    let host = FakeHost::new();
    let mut settings = settings_json("test");
    settings["hsa_id"] = json!("T_SERVICES_SE121212121212-121A");
    let problems = host
        .validate_settings(&SeEfrikort, settings.clone())
        .expect("an answer");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "hsa_id");
    assert!(problems[0].message.contains("'_'"), "{problems:?}");
    assert!(
        problems[0].message.contains("PrintableString"),
        "{problems:?}"
    );

    let err = host
        .csr_profile(&SeEfrikort, context(settings, None))
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert!(err.message.contains("PrintableString"), "{err}");

    for bad in ["SE123å", "SE123@x", "SE123456789012345678901234567890123"] {
        assert!(crate::settings::hsa_id(bad).is_err(), "{bad}");
    }
    for good in ["SE5565594230-BCQ", "TSTNMT2321000156-B02", "SE13813023981"] {
        assert_eq!(crate::settings::hsa_id(good), Ok(()), "{good}");
    }
}

#[test]
fn validate_settings_reports_every_problem_at_once() {
    let host = FakeHost::new();
    let settings = json!({
        "hsa_id": "SE_1",
        "fqdn": "not a host",
        "environment": "staging",
        "regions": [
            {"name": "Region Uppsala", "contact_addresses": [], "principal_hsa_id": UPPSALA},
            {"name": "Region X", "contact_addresses": ["not-an-address"], "principal_hsa_id": UPPSALA, "phone": "1"},
        ],
        "contact_email": "x",
        "grant_poll": "1s",
        "colour": "red",
    });
    let problems = host
        .validate_settings(&SeEfrikort, settings)
        .expect("an answer");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "colour",
        "hsa_id",
        "fqdn",
        "organization",
        "locality",
        "environment",
        "regions[0].contact_addresses",
        "regions[1].phone",
        "regions[1].contact_addresses[0]",
        "regions[1].principal_hsa_id",
        "system_name",
        "contact_name",
        "contact_email",
        "contact_phone",
        "grant_poll",
    ] {
        assert!(keys.contains(&key), "{key} not among {keys:?}");
    }

    // Test needs an endpoint and a probe; production has a default endpoint and no probe.
    let mut test = settings_json("test");
    for key in ["endpoint", "probe_person_id", "probe_card_type_id"] {
        test.as_object_mut().expect("a table").remove(key);
    }
    let problems = host
        .validate_settings(&SeEfrikort, test)
        .expect("an answer");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["probe_person_id", "probe_card_type_id", "endpoint"]);
    let mut production = settings_json("production");
    for key in ["endpoint", "probe_person_id", "probe_card_type_id"] {
        production.as_object_mut().expect("a table").remove(key);
    }
    let parsed = Settings::parse(&production).expect("valid");
    assert_eq!(parsed.endpoint, crate::settings::PRODUCTION_ENDPOINT);
    assert!(!parsed.full_probe());
    assert_eq!(parsed.support_address, "support.efrikort@cgi.com");
    assert_eq!(parsed.grant_poll.as_secs(), 600);
}

#[test]
fn every_setting_is_documented_with_an_example_that_parses_as_toml() {
    let host = FakeHost::new();
    let description = host.describe(&SeEfrikort).expect("a description");
    assert_eq!(description.name, "se-efrikort");
    let keys: Vec<&str> = description
        .settings
        .iter()
        .map(|d| d.key.as_str())
        .collect();
    for key in settings_json("test").as_object().expect("a table").keys() {
        assert!(keys.contains(&key.as_str()), "{key} is not documented");
    }
    for doc in &description.settings {
        let example = doc.example.as_deref().expect("an example");
        let parsed: Result<toml::Table, _> = toml::from_str(&format!("v = {example}"));
        assert!(parsed.is_ok(), "{}: {example}", doc.key);
    }
}

// ---------------------------------------------------------------------------------------------
// The order

#[test]
fn the_order_is_a_task_for_the_siths_eid_portal_completed_by_import() {
    let host = FakeHost::new();
    let current = issue(&siths(HSA).expires_in_days(20));
    let outcome = host
        .issue(
            &SeEfrikort,
            OrderContext {
                certificate: context(settings_json("test"), Some(&current)),
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
                csr_set: BTreeMap::new(),
                state: Value::Null,
            },
        )
        .expect("an outcome");
    let IssueOutcome::Pending {
        task: Some(task), ..
    } = outcome
    else {
        panic!("expected a pending order with a task");
    };
    assert_eq!(task.completes_by, Completion::Import);
    assert_eq!(task.files.len(), 1);
    assert_eq!(task.files[0].name, "request.csr");
    assert_eq!(task.files[0].content, TaskFileContent::Csr);
    assert!(
        task.title.contains(FQDN) && task.title.contains(HSA),
        "{}",
        task.title
    );
    for part in [
        "https://portal.siths.se/",
        "ombud",
        "funktionscertifikat",
        &format!("HSA-ID (serialNumber): {HSA}"),
        &format!("CN and DNS name (SAN): {FQDN}"),
        "O = Vårdsystem AB, L = Stockholm, C = SE",
        "TEST SITHS e-id Function CA v1",
        "certvakt import efrikort <file>",
        "inbox",
        "client authentication",
    ] {
        assert!(
            task.instructions.contains(part),
            "{part:?} not in:\n{}",
            task.instructions
        );
    }
    let deadline = time::OffsetDateTime::from_unix_timestamp(current.not_after.unix_timestamp())
        .expect("a time")
        .date()
        .to_string();
    assert!(
        task.instructions.contains(&format!("before {deadline}")),
        "{}",
        task.instructions
    );
}

// ---------------------------------------------------------------------------------------------
// check_issued

fn objections(settings: Value, current: Option<&IssuedCert>, new: &IssuedCert) -> Vec<String> {
    let host = FakeHost::new();
    host.set_now(now());
    host.check_issued(
        &SeEfrikort,
        CheckIssued {
            certificate: context(settings, current),
            new: info(new),
            new_set: BTreeMap::new(),
            key_from_ca: false,
        },
    )
    .expect("an answer")
}

#[test]
fn check_issued_accepts_the_certificate_asked_for() {
    let current = issue(&siths(HSA).expires_in_days(20));
    let new = issue(&siths(HSA));
    assert_eq!(
        objections(settings_json("test"), Some(&current), &new),
        Vec::<String>::new()
    );
}

#[test]
fn check_issued_refuses_another_hsa_id_missing_client_auth_other_names_and_expiry() {
    let current = issue(&siths(HSA).expires_in_days(20));

    let other = issue(&siths(OTHER_HSA));
    let found = objections(settings_json("test"), Some(&current), &other);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(&format!("is for HSA-ID {OTHER_HSA}")),
        "{found:?}"
    );
    assert!(found[0].contains("a renewal keeps the HSA-ID"), "{found:?}");

    let server_only =
        issue(&siths(HSA).extended_key_usage(vec![ExtendedKeyUsagePurpose::ServerAuth]));
    let found = objections(settings_json("test"), Some(&current), &server_only);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("lacks the extended key usage clientAuth"),
        "{found:?}"
    );

    let renamed = issue(&LeafSpec::siths(
        HSA,
        "Vårdsystem AB",
        "other.vardsystem.example.se",
    ));
    let found = objections(settings_json("test"), Some(&current), &renamed);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("has CN \"other.vardsystem.example.se\""),
        "{found:?}"
    );
    assert!(
        found[1].contains(&format!("does not name {FQDN}")),
        "{found:?}"
    );

    let expired = issue(&siths(HSA).expired_days_ago(2));
    let found = objections(settings_json("test"), Some(&current), &expired);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("expired on"), "{found:?}");

    let early = issue(&siths(HSA).not_yet_valid_for_days(3));
    let found = objections(settings_json("test"), Some(&current), &early);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("more than a day from now"), "{found:?}");

    // A new HSA-ID on purpose: configured, it is accepted although the old one differs.
    let mut moved = settings_json("test");
    moved["hsa_id"] = json!(OTHER_HSA);
    assert_eq!(
        objections(moved, Some(&current), &other),
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------------------------
// The access request

#[test]
fn the_access_mail_is_the_template_in_utf8_with_its_swedish_labels() {
    let settings = Settings::parse(&settings_json("test")).expect("valid");
    let mail = crate::mail::access_request(&settings, HSA, Environment::Test, &settings.regions[1]);
    assert_eq!(
        mail.to,
        ["a@regiondalarna.example.se", "b@regiondalarna.example.se"]
    );
    assert_eq!(mail.cc, ["support.efrikort@cgi.com"]);
    assert_eq!(mail.reply_to.as_deref(), Some("gothe@gmedical.example.se"));
    assert_eq!(mail.subject, "Anslutningsförfrågan eFrikort");
    assert_eq!(mail.subject.as_bytes()[17..19], [0xc3, 0xa5], "å as UTF-8");
    assert_eq!(
        mail.body,
        "Hej!\n\
         \n\
         Vi vill ha access till eFrikort för integration av följande system. Innan CGI tilldelar \
         behörighet måste CGI få ett skriftligt godkännande av regionen att anslutningen är ok.\n\
         \n\
         Namn på integrerande system: G-Medical\n\
         Kontaktperson: Göthe Alfonso, gothe@gmedical.example.se, +46 70 123 12 31\n\
         Avser miljö för: TEST\n\
         Avser vårdhuvudman (region/landsting): Region Dalarna\n\
         Serialnumber på certifikat: SE5565594230-BCQ\n\
         \n\
         Vårdcentralen Åre\n\
         Hälsocentralen Östra\n"
    );
    assert!(!mail.body.contains('Ã'), "no mojibake");
    let production = crate::mail::access_request(
        &settings,
        HSA,
        Environment::Production,
        &settings.regions[0],
    );
    assert!(production.body.contains("Avser miljö för: PRODUKTION\n"));
    assert_eq!(production.to, ["efrikort@regionuppsala.example.se"]);
}

// ---------------------------------------------------------------------------------------------
// register

#[test]
fn a_renewal_that_keeps_the_hsa_id_is_done_at_once_without_mail() {
    let host = FakeHost::new();
    let current = issue(&siths(HSA).expires_in_days(20));
    let new = issue(&siths(HSA));
    let outcome = host
        .register(
            &SeEfrikort,
            step(settings_json("test"), Some(&current), &new, Value::Null),
        )
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    assert!(host.mails().is_empty());
    assert!(host.http_requests().is_empty());
    assert!(host.tasks().is_empty());
    // The access in use is recorded, so that a region added later is seen as new.
    let recorded = grants(&host);
    assert_eq!(recorded.grants.len(), 2);
    assert!(
        recorded
            .grants
            .iter()
            .all(|g| g.how == How::InUse && g.hsa_id == HSA)
    );

    // The next renewal finds the grants and again needs nothing.
    let outcome = host
        .register(
            &SeEfrikort,
            step(
                settings_json("test"),
                Some(&new),
                &issue(&siths(HSA)),
                Value::Null,
            ),
        )
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    assert!(host.mails().is_empty());
}

#[test]
fn a_new_hsa_id_sends_the_request_and_waits_until_efrikort_accepts_the_new_certificate() {
    let host = FakeHost::new();
    let code = efrikort(&host);
    let current = issue(&siths(HSA).expires_in_days(20));
    let new = issue(&siths(OTHER_HSA));
    let mut settings = settings_json("test");
    settings["hsa_id"] = json!(OTHER_HSA);

    // 1. The proof says ACCESSDENIED: the request goes to both regions, the step waits.
    let (poll, task, state) = pending(
        host.register(
            &SeEfrikort,
            step(settings.clone(), Some(&current), &new, Value::Null),
        )
        .expect("an outcome"),
    );
    assert_eq!(poll, 600);
    let task = task.expect("the access-request task");
    assert_eq!(task.completes_by, Completion::Poll);
    assert!(
        task.title.contains(OTHER_HSA) && task.title.contains("TEST"),
        "{}",
        task.title
    );
    assert!(
        task.instructions.contains("certvakt sent the request"),
        "{}",
        task.instructions
    );
    assert!(task.files.is_empty(), "sent mail needs no file");
    let mails = host.mails();
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[0].to, ["efrikort@regionuppsala.example.se"]);
    assert_eq!(mails[1].to.len(), 2);
    assert!(mails.iter().all(|m| m.cc == ["support.efrikort@cgi.com"]));
    assert!(
        mails[0]
            .body
            .contains(&format!("Serialnumber på certifikat: {OTHER_HSA}\n"))
    );
    let run: RunState = serde_json::from_value(state.clone()).expect("a run state");
    assert_eq!(run.requested, [UPPSALA, DALARNA]);
    assert_eq!(host.http_requests().len(), 2, "one proof per region");
    assert!(
        host.http_requests()
            .iter()
            .all(|r| r.identity == ClientIdentity::Pending)
    );

    // 2. Still ACCESSDENIED: still pending, no new mail, no new task.
    let (_, task, state) = pending(
        host.register(
            &SeEfrikort,
            step(settings.clone(), Some(&current), &new, state),
        )
        .expect("an outcome"),
    );
    assert!(task.is_none());
    assert_eq!(host.mails().len(), 2);
    assert!(grants(&host).grants.iter().all(|g| g.hsa_id != OTHER_HSA));

    // A SOAP fault keeps it open too.
    set(&code, "FAULT");
    let (_, task, state) = pending(
        host.register(
            &SeEfrikort,
            step(settings.clone(), Some(&current), &new, state),
        )
        .expect("an outcome"),
    );
    assert!(task.is_none());

    // 3. OK: done, and the grants are recorded for the next renewal.
    set(&code, "OK");
    let outcome = host
        .register(
            &SeEfrikort,
            step(settings.clone(), Some(&current), &new, state),
        )
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    let recorded = grants(&host);
    for principal in [UPPSALA, DALARNA] {
        assert!(
            recorded.has(OTHER_HSA, principal, Environment::Test),
            "{principal}: {recorded:?}"
        );
    }
    assert!(recorded.grants.iter().all(|g| g.how == How::Proven));
    assert_eq!(host.mails().len(), 2);
}

#[test]
fn a_grant_already_in_place_is_proven_without_a_mail() {
    let host = FakeHost::new();
    let code = efrikort(&host);
    set(&code, "INFO");
    let new = issue(&siths(HSA));
    let outcome = host
        .register(
            &SeEfrikort,
            step(settings_json("test"), None, &new, Value::Null),
        )
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    assert!(host.mails().is_empty());
    assert_eq!(grants(&host).grants.len(), 2);
}

#[test]
fn a_new_region_alone_is_asked_for() {
    let host = FakeHost::new();
    let _code = efrikort(&host);
    let current = issue(&siths(HSA).expires_in_days(20));
    let new = issue(&siths(HSA));
    // Only Uppsala was configured when the certificate in use was renewed.
    let mut before = settings_json("test");
    before["regions"]
        .as_array_mut()
        .expect("a list")
        .truncate(1);
    let outcome = host
        .register(&SeEfrikort, step(before, Some(&current), &new, Value::Null))
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }));

    let (_, task, _) = pending(
        host.register(
            &SeEfrikort,
            step(
                settings_json("test"),
                Some(&new),
                &issue(&siths(HSA)),
                Value::Null,
            ),
        )
        .expect("an outcome"),
    );
    let task = task.expect("a task");
    assert!(task.title.ends_with("Region Dalarna"), "{}", task.title);
    let mails = host.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].to,
        ["a@regiondalarna.example.se", "b@regiondalarna.example.se"]
    );
    assert!(
        mails[0]
            .body
            .contains("Avser vårdhuvudman (region/landsting): Region Dalarna\n")
    );
    // Only Dalarna was probed: Uppsala's grant is known.
    let requests = host.http_requests();
    assert_eq!(requests.len(), 1);
    assert!(String::from_utf8_lossy(&requests[0].body).contains(DALARNA));
}

#[test]
fn without_plugin_mail_the_eml_is_attached_to_the_task() {
    let host = FakeHost::new();
    host.set_mail_for_person(true);
    let _code = efrikort(&host);
    let new = issue(&siths(HSA));
    let (_, task, _) = pending(
        host.register(
            &SeEfrikort,
            step(settings_json("test"), None, &new, Value::Null),
        )
        .expect("an outcome"),
    );
    let task = task.expect("a task");
    assert_eq!(task.files.len(), 2);
    let names: Vec<&str> = task.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["mail-1.eml", "mail-2.eml"]);
    let TaskFileContent::Base64(eml) = &task.files[0].content else {
        panic!("the eml as bytes");
    };
    let eml = String::from_utf8(eml.clone()).expect("UTF-8");
    assert!(
        eml.contains("To: efrikort@regionuppsala.example.se\r\n"),
        "{eml}"
    );
    assert!(eml.contains("Cc: support.efrikort@cgi.com\r\n"), "{eml}");
    assert!(
        eml.contains("Subject: Anslutningsförfrågan eFrikort\r\n"),
        "{eml}"
    );
    assert!(
        task.instructions
            .contains("send the attached mail-1.eml (to efrikort@regionuppsala.example.se, copy to support.efrikort@cgi.com)"),
        "{}",
        task.instructions
    );
    assert!(task.instructions.contains("plugin_mail is off"));
}

#[test]
fn production_without_a_proven_test_grant_is_refused() {
    let host = FakeHost::new();
    let new = issue(&siths(OTHER_HSA));
    let mut settings = settings_json("production");
    settings["hsa_id"] = json!(OTHER_HSA);
    let err = host
        .register(&SeEfrikort, step(settings, None, &new, Value::Null))
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert!(err.message.contains("PRODUKTION only after TEST"), "{err}");
    assert!(
        err.message.contains("Region Uppsala, Region Dalarna"),
        "{err}"
    );
    assert!(err.message.contains("environment = \"test\""), "{err}");
    assert!(host.mails().is_empty());
    assert!(host.http_requests().is_empty());
}

#[test]
fn production_after_test_asks_first_then_proves_with_the_wsdl() {
    let host = FakeHost::new();
    let code = efrikort(&host);
    set(&code, "OK");
    let new = issue(&siths(OTHER_HSA));
    let mut test = settings_json("test");
    test["hsa_id"] = json!(OTHER_HSA);
    let outcome = host
        .register(&SeEfrikort, step(test, None, &new, Value::Null))
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }));

    let mut production = settings_json("production");
    production["hsa_id"] = json!(OTHER_HSA);
    production
        .as_object_mut()
        .expect("a table")
        .remove("endpoint");
    let wsdl = format!("{}?wsdl", crate::settings::PRODUCTION_ENDPOINT);
    host.respond_http(
        "GET",
        &wsdl,
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: b"<wsdl:definitions/>".to_vec(),
        },
    );
    let before = host.http_requests().len();
    let (_, task, state) = pending(
        host.register(
            &SeEfrikort,
            step(production.clone(), None, &new, Value::Null),
        )
        .expect("an outcome"),
    );
    assert!(task.expect("a task").title.contains("PRODUKTION"));
    assert_eq!(
        host.http_requests().len(),
        before,
        "no proof before the request went out"
    );
    assert!(
        host.mails()
            .iter()
            .all(|m| m.body.contains("Avser miljö för: PRODUKTION\n"))
    );

    let outcome = host
        .register(&SeEfrikort, step(production, None, &new, state))
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    let requests = host.http_requests();
    let last = requests.last().expect("the WSDL request");
    assert_eq!(
        (last.method.as_str(), last.url.as_str()),
        ("GET", wsdl.as_str())
    );
    assert_eq!(last.identity, ClientIdentity::Pending);
    assert!(grants(&host).has(OTHER_HSA, UPPSALA, Environment::Production));
}

#[test]
fn the_rivta_request_is_the_contracts() {
    let host = FakeHost::new();
    let _code = efrikort(&host);
    let new = issue(&siths(HSA));
    let mut settings = settings_json("test");
    settings["regions"]
        .as_array_mut()
        .expect("a list")
        .truncate(1);
    settings["endpoint_trust"] = json!("efrikort-test");
    let _ = host
        .register(&SeEfrikort, step(settings, None, &new, Value::Null))
        .expect("an outcome");
    let requests = host.http_requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.url, TEST_ENDPOINT);
    assert_eq!(request.identity, ClientIdentity::Pending);
    assert_eq!(request.trust.as_deref(), Some("efrikort-test"));
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        header("SOAPAction"),
        Some(format!("\"{SOAP_ACTION}\"").as_str())
    );
    assert_eq!(header("Content-Type"), Some("text/xml; charset=utf-8"));

    let text = String::from_utf8(request.body.clone()).expect("UTF-8");
    let doc = Document::parse(&text).expect("XML");
    let envelope = doc.root_element();
    assert!(envelope.has_tag_name((SOAP11, "Envelope")));
    let elements = |node: roxmltree::Node<'_, '_>| -> Vec<(String, String)> {
        node.children()
            .filter(|c| c.is_element())
            .map(|c| {
                (
                    c.tag_name().namespace().unwrap_or("").to_owned(),
                    c.tag_name().name().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        elements(envelope),
        [
            (SOAP11.to_owned(), "Header".to_owned()),
            (SOAP11.to_owned(), "Body".to_owned())
        ]
    );
    let header_node = envelope.first_element_child().expect("a header");
    let logical = header_node.first_element_child().expect("LogicalAddress");
    assert!(logical.has_tag_name((REGISTRY, "LogicalAddress")));
    assert_eq!(logical.text(), Some(UPPSALA));
    let body = envelope.last_element_child().expect("a body");
    let operation = body.first_element_child().expect("the operation");
    assert!(operation.has_tag_name((RESPONDER, "GetExtendedCardForPerson")));
    assert_eq!(
        elements(operation),
        ["carePrincipalId", "personId", "cardTypeId"].map(|n| (RESPONDER.to_owned(), n.to_owned()))
    );
    let texts: Vec<&str> = operation
        .children()
        .filter(|c| c.is_element())
        .filter_map(|c| c.text())
        .collect();
    assert_eq!(texts, [UPPSALA, "191212121212", "1"]);
    // The probe's personal number never reaches a log line.
    assert!(
        host.logs()
            .iter()
            .all(|l| !l.message.contains("191212121212")
                && l.fields.values().all(|v| !v.contains("191212121212")))
    );
}

// ---------------------------------------------------------------------------------------------
// verify and retire

#[test]
fn verify_proves_with_the_installed_certificate() {
    let host = FakeHost::new();
    let code = efrikort(&host);
    set(&code, "OK");
    let new = issue(&siths(HSA));
    let outcome = host
        .verify(
            &SeEfrikort,
            step(settings_json("test"), None, &new, json!({"requested": []})),
        )
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    let requests = host.http_requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r.identity == ClientIdentity::Current)
    );

    set(&code, "ACCESSDENIED");
    let err = host
        .verify(
            &SeEfrikort,
            step(settings_json("test"), None, &new, Value::Null),
        )
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::NeedsPerson);
    assert_eq!(err.fault_code.as_deref(), Some("ACCESSDENIED"));
    assert!(err.message.contains("certvakt rollback efrikort"), "{err}");

    let mut quiet = settings_json("test");
    quiet["verify_after_install"] = json!(false);
    let before = host.http_requests().len();
    let outcome = host
        .verify(&SeEfrikort, step(quiet, None, &new, Value::Null))
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }));
    assert_eq!(host.http_requests().len(), before);

    let outcome = host
        .retire(
            &SeEfrikort,
            step(settings_json("test"), None, &new, Value::Null),
        )
        .expect("an outcome");
    assert!(matches!(outcome, StepOutcome::Done { .. }));
}

#[test]
fn an_unreadable_grant_state_stops_rather_than_asking_again() {
    let host = FakeHost::new();
    host.put_state(crate::grants::KEY, json!({"grants": "many"}));
    let new = issue(&siths(HSA));
    let err = host
        .register(
            &SeEfrikort,
            step(settings_json("test"), None, &new, Value::Null),
        )
        .expect_err("stopped");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("grants"), "{err}");
    assert!(host.mails().is_empty());
}

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
                certificate.get("plugin").and_then(|p| p.as_str()),
                Some("se-efrikort")
            );
            let settings = certificate
                .get("settings")
                .cloned()
                .unwrap_or(toml::Value::Table(toml::Table::new()));
            let value: Value = serde_json::to_value(settings).expect("JSON");
            Settings::parse(&value).unwrap_or_else(|p| panic!("{p:?}\n{toml_text}"));
            seen += 1;
        }
    }
    assert!(seen >= 2, "the README has {seen} certificate examples");
}

#[test]
fn a_grant_is_dated_by_the_hosts_clock() {
    let host = FakeHost::new();
    host.set_now(now() + 1234);
    let current = issue(&siths(HSA).expires_in_days(20));
    let new = issue(&siths(HSA));
    let _ = host
        .register(
            &SeEfrikort,
            step(settings_json("test"), Some(&current), &new, Value::Null),
        )
        .expect("an outcome");
    let recorded = grants(&host);
    assert!(!recorded.grants.is_empty());
    let first = recorded.grants[0].at;
    assert!(first > now() + 1000, "{first}");
    assert!(recorded.grants.iter().all(|g| g.at == first));
}

#[test]
fn an_unreachable_efrikort_still_sends_the_request_then_retries_later() {
    let host = FakeHost::new();
    // No responder: every proof call fails as if the TLS handshake did.
    let new = issue(&siths(HSA));
    let (_, task, state) = pending(
        host.register(
            &SeEfrikort,
            step(settings_json("test"), None, &new, Value::Null),
        )
        .expect("an outcome"),
    );
    assert!(task.is_some());
    assert_eq!(host.mails().len(), 2);
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("did not answer the proof"))
    );
    let err = host
        .register(&SeEfrikort, step(settings_json("test"), None, &new, state))
        .expect_err("retried later");
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(err.message.contains(TEST_ENDPOINT), "{err}");
    assert_eq!(host.mails().len(), 2, "no second request");
}
