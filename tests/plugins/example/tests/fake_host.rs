//! Example CA against FakeHost: every method through the real JSON encoding, no daemon.

use certvakt_plugin_api::profile::KeyAlgorithm;
use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, CertificateInfo, Completion, ErrorKind, HostError, HostErrorKind,
    HttpResponse, IssueOutcome, KeyRef, OrderContext, SignatureAlgorithm, StepContext, StepOutcome,
    TaskFileContent,
};
use certvakt_plugin_example::ExampleCa;
use serde_json::{Value, json};

const API: &str = "https://api.example-ca.test";

fn certificate(settings: Value) -> CertificateContext {
    CertificateContext {
        roles: Vec::new(),
        current_set: Default::default(),
        role: None,
        certificate_id: "apotek-prod".into(),
        settings,
        environment: "production".into(),
        current: Some(info("0A")),
    }
}

fn info(serial: &str) -> CertificateInfo {
    CertificateInfo {
        pem: format!("-----BEGIN CERTIFICATE-----\n{serial}\n-----END CERTIFICATE-----\n"),
        subject: "CN=apotek.example,O=Hjørring Apotek,C=DK".into(),
        serial: serial.into(),
        not_before: 1_700_000_000,
        not_after: 1_800_000_000,
        identities: vec![],
    }
}

fn order(settings: Value, state: Value) -> OrderContext {
    OrderContext {
        csr_set: Default::default(),
        certificate: certificate(settings),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n...\n".into(),
        state,
    }
}

fn step(settings: Value, state: Value) -> StepContext {
    StepContext {
        new_set: Default::default(),
        certificate: certificate(settings),
        new: Some(info("0B")),
        state,
    }
}

fn manual() -> Value {
    json!({ "common_name": "apotek.example", "organisation": "Hjørring Apotek" })
}

fn with_api() -> Value {
    json!({ "common_name": "apotek.example", "organisation": "Hjørring Apotek", "api_url": API })
}

fn ok(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn describes_itself_with_its_settings() {
    let description = FakeHost::new().describe(&ExampleCa).unwrap();
    assert_eq!(description.name, "example");
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
    assert_eq!(required, ["common_name", "organisation"]);
}

#[test]
fn reports_every_settings_problem_at_once() {
    let settings = json!({ "organisation": "", "key": "dsa", "api_url": "http://x", "colour": 1 });
    let problems = FakeHost::new()
        .validate_settings(&ExampleCa, settings)
        .unwrap();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["common_name", "organisation", "key", "api_url", "colour"]
    );
    assert_eq!(
        problems[0].hint.as_deref(),
        Some("write common_name = \"apotek.example\"")
    );
    assert!(
        FakeHost::new()
            .validate_settings(&ExampleCa, manual())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn csr_profile_follows_the_settings() {
    let mut settings = manual();
    settings["key"] = json!("rsa-3072");
    let profile = FakeHost::new()
        .csr_profile(&ExampleCa, certificate(settings))
        .unwrap();
    assert_eq!(profile.key, KeyAlgorithm::Rsa3072);
    let values: Vec<&str> = profile.subject.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(values, ["DK", "Hjørring Apotek", "apotek.example"]);
}

#[test]
fn a_manual_order_is_a_task_with_the_csr() {
    let host = FakeHost::new();
    host.set_now(1_800_000_000);
    let outcome = host
        .issue(&ExampleCa, order(manual(), Value::Null))
        .unwrap();
    let IssueOutcome::Pending {
        task: Some(task),
        state,
        ..
    } = outcome
    else {
        panic!("expected a pending order with a task, got {outcome:?}");
    };
    assert_eq!(task.completes_by, Completion::Import);
    assert_eq!(task.files[0].content, TaskFileContent::Csr);
    assert!(
        task.instructions
            .contains("certvakt import apotek-prod FILE")
    );
    assert_eq!(state, json!({ "ordered_at": 1_800_000_000 }));
}

#[test]
fn an_api_order_is_placed_and_polled_until_issued() {
    let host = FakeHost::new();
    host.respond_http(
        "POST",
        &format!("{API}/orders"),
        ok(201, r#"{"order_id":"A-7"}"#),
    );
    let outcome = host
        .issue(&ExampleCa, order(with_api(), Value::Null))
        .unwrap();
    let IssueOutcome::Pending { state, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(state, json!({ "order_id": "A-7" }));

    host.respond_http("GET", &format!("{API}/orders/A-7"), ok(202, ""));
    let outcome = host
        .poll(&ExampleCa, order(with_api(), state.clone()))
        .unwrap();
    assert!(matches!(
        outcome,
        IssueOutcome::Pending {
            poll_after_secs: 60,
            ..
        }
    ));

    host.respond_http("GET", &format!("{API}/orders/A-7"), ok(200, "CHAIN"));
    let outcome = host.poll(&ExampleCa, order(with_api(), state)).unwrap();
    assert_eq!(
        outcome,
        IssueOutcome::Issued {
            chain_pem: "CHAIN".into()
        }
    );
    assert_eq!(host.logs()[0].fields["order_id"], "A-7");
}

#[test]
fn register_uses_every_host_service() {
    let host = FakeHost::new();
    host.set_now(1_800_000_000);
    host.respond_http("POST", &format!("{API}/registrations"), ok(202, ""));
    let outcome = host
        .register(&ExampleCa, step(with_api(), json!({})))
        .unwrap();
    let StepOutcome::Pending { state, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(state, json!({ "approval_task": "task-1" }));

    assert_eq!(host.logs()[0].message, "registering the new certificate");
    let signed = &host.sign_requests()[0];
    assert_eq!(signed.key, KeyRef::Pending);
    assert_eq!(signed.algorithm, SignatureAlgorithm::EcdsaP256Sha256);
    assert_eq!(signed.data, b"register:0B:1800000000");
    let body: Value = serde_json::from_slice(&host.http_requests()[0].body).unwrap();
    assert_eq!(body["signature"], "66616b652d7369676e6174757265"); // "fake-signature"
    assert_eq!(host.tasks()[0].1.completes_by, Completion::Poll);

    // Approved: registered once, remembered, and not registered again.
    host.respond_http("POST", &format!("{API}/registrations"), ok(201, ""));
    let outcome = host
        .register(&ExampleCa, step(with_api(), state.clone()))
        .unwrap();
    assert!(matches!(outcome, StepOutcome::Done { .. }));
    assert_eq!(host.state("registered_serial"), Some(json!("0B")));
    host.register(&ExampleCa, step(with_api(), state)).unwrap();
    assert_eq!(host.http_requests().len(), 2);
    assert_eq!(host.tasks().len(), 1);
}

#[test]
fn refusals_and_host_failures_become_plugin_errors() {
    let host = FakeHost::new();
    let fault = ok(409, r#"{"fault":"DUPLICATE"}"#);
    host.respond_http("POST", &format!("{API}/registrations"), fault);
    let err = host
        .register(&ExampleCa, step(with_api(), json!({})))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.fault_code.as_deref(), Some("DUPLICATE"));
    assert_eq!(
        err.message,
        "Example CA did not register the certificate: HTTP 409"
    );

    host.fail(
        "sign",
        HostError::new(HostErrorKind::NotAvailable, "no keys here"),
    );
    let err = host
        .register(&ExampleCa, step(with_api(), json!({})))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.message, "host service: no keys here");
}

#[test]
fn a_panic_is_an_error_not_a_crash() {
    let mut settings = manual();
    settings["test_panic_in"] = json!("issue");
    let err = FakeHost::new()
        .issue(&ExampleCa, order(settings, Value::Null))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(
        err.message,
        "plugin panicked: test_panic_in asked issue to panic"
    );
}

#[test]
fn steps_without_an_api_fall_back_to_people_or_nothing() {
    let host = FakeHost::new();
    let outcome = host
        .register(&ExampleCa, step(manual(), json!({"k": 1})))
        .unwrap();
    let StepOutcome::Pending {
        task: Some(task),
        state,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(task.files[0].content, TaskFileContent::CertificatePem);
    assert_eq!(state, json!({"k": 1}));
    let done = StepOutcome::Done {
        state: json!({"k": 1}),
    };
    assert_eq!(
        host.verify(&ExampleCa, step(manual(), json!({"k": 1})))
            .unwrap(),
        done
    );
    assert_eq!(
        host.retire(&ExampleCa, step(manual(), json!({"k": 1})))
            .unwrap(),
        done
    );
    assert!(host.http_requests().is_empty());
}

/// A step about a certificate of its own: calls with test hooks count themselves per
/// certificate in the whole process, and the tests here run in parallel.
fn step_of(id: &str, settings: Value) -> StepContext {
    let mut step = step(settings, json!({}));
    step.certificate.certificate_id = id.into();
    step
}

#[test]
fn test_hooks_open_a_task_log_its_id_and_fail_when_asked() {
    let host = FakeHost::new();
    let mut settings = manual();
    settings["test_task_in"] = json!("verify");
    let outcome = host
        .verify(&ExampleCa, step_of("hooks", settings.clone()))
        .unwrap();
    assert_eq!(outcome, StepOutcome::Done { state: json!({}) });
    let tasks = host.tasks();
    assert_eq!(tasks.len(), 1);
    let (task_id, task) = &tasks[0];
    assert_eq!(task.title, "Test task opened in verify");
    let said = format!("test_task_in: verify of hooks opened task {task_id}");
    assert!(
        host.logs().iter().any(|l| l.message == said),
        "{:?}",
        host.logs()
    );

    // Another method is left alone.
    host.retire(&ExampleCa, step_of("hooks", settings.clone()))
        .unwrap();
    assert_eq!(host.tasks().len(), 1);

    settings["test_fail_in"] = json!("verify");
    let err = host
        .verify(&ExampleCa, step_of("hooks", settings))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert_eq!(err.message, "test_fail_in asked verify to fail");
    assert_eq!(
        host.tasks().len(),
        2,
        "the task is opened before the failure"
    );
}

#[test]
fn calls_one_after_the_other_are_no_overlap() {
    let host = FakeHost::new();
    let mut settings = manual();
    settings["test_delay_ms"] = json!(1);
    for _ in 0..3 {
        host.verify(&ExampleCa, step_of("one-by-one", settings.clone()))
            .unwrap();
    }
    let logs = host.logs();
    assert_eq!(logs.len(), 6, "sleeps and slept, three times: {logs:?}");
    assert!(
        !logs.iter().any(|l| l.message.contains("overlap")),
        "{logs:?}"
    );
}

#[test]
fn a_call_that_starts_while_another_about_the_same_certificate_runs_is_an_overlap() {
    let slow = FakeHost::new();
    let second = FakeHost::new();
    let mut settings = manual();
    settings["test_delay_ms"] = json!(1_000);
    std::thread::scope(|scope| {
        scope.spawn(|| slow.verify(&ExampleCa, step_of("overlapping", settings.clone())));
        // The first call says when it sleeps; only then is it surely in flight.
        while !slow.logs().iter().any(|l| l.message.contains("sleeps")) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut quick = manual();
        quick["test_task_in"] = json!("verify");
        second
            .retire(&ExampleCa, step_of("overlapping", quick))
            .unwrap();
    });
    let logs = second.logs();
    assert!(
        logs.iter().any(|l| l.message
            == "overlap: retire of overlapping started while 1 other call(s) about it run"),
        "{logs:?}"
    );
    assert!(
        slow.logs()
            .iter()
            .any(|l| l.message == "test_delay_ms: verify of overlapping slept 1000 ms")
    );
}
