//! The sim CA plugin against FakeHost, with the sim CA's answers canned.

use certvakt_plugin_api::profile::{KeyAlgorithm, StringType, SubjectAltName, oid};
use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, ClientIdentity, ErrorKind, HostError, HostErrorKind, HttpResponse,
    IssueOutcome, OrderContext,
};
use serde_json::{Value, json};

use crate::SimCaPlugin;

const URL: &str = "https://127.0.0.1:8443";
const CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";

fn settings() -> Value {
    json!({
        "url": format!("{URL}/"),
        "trust": "simca",
        "identity": "simca-client",
        "subject": [{ "attribute": "CN", "value": "apotek.example" }],
        "sans": ["DNS:apotek.example"]
    })
}

fn order(settings: Value, state: Value) -> OrderContext {
    OrderContext {
        csr_set: Default::default(),
        certificate: CertificateContext {
            roles: Vec::new(),
            current_set: Default::default(),
            role: None,
            certificate_id: "web".into(),
            settings,
            environment: "test".into(),
            current: None,
        },
        csr_pem: CSR.into(),
        state,
    }
}

fn answer(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![],
        body: body.to_string().into_bytes(),
    }
}

#[test]
fn an_order_is_placed_with_the_csr_and_polled_until_issued() {
    let host = FakeHost::new();
    host.respond_http(
        "POST",
        &format!("{URL}/orders"),
        answer(202, json!({ "order": "SIM-1", "retry_after": 7 })),
    );
    let outcome = host
        .issue(&SimCaPlugin, order(settings(), Value::Null))
        .unwrap();
    assert_eq!(
        outcome,
        IssueOutcome::Pending {
            poll_after_secs: 7,
            task: None,
            state: json!({ "order": "SIM-1" }),
        }
    );
    let sent = &host.http_requests()[0];
    assert_eq!(sent.trust.as_deref(), Some("simca"));
    assert_eq!(sent.identity, ClientIdentity::Named("simca-client".into()));
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body, json!({ "csr_pem": CSR, "profile": "tls" }));
    assert_eq!(host.logs()[0].fields["order"], "SIM-1");

    let state = json!({ "order": "SIM-1" });
    let status_url = format!("{URL}/orders/SIM-1");
    host.respond_http(
        "GET",
        &status_url,
        HttpResponse {
            status: 202,
            headers: vec![("Retry-After".into(), "3".into())],
            body: br#"{"order":"SIM-1","status":"pending"}"#.to_vec(),
        },
    );
    let outcome = host
        .poll(&SimCaPlugin, order(settings(), state.clone()))
        .unwrap();
    assert_eq!(
        outcome,
        IssueOutcome::Pending {
            poll_after_secs: 3,
            task: None,
            state: state.clone(),
        },
        "retry_after from the header when the body has none"
    );

    host.respond_http(
        "GET",
        &status_url,
        answer(200, json!({ "order": "SIM-1", "chain_pem": "LEAF\nCA\n" })),
    );
    let outcome = host.poll(&SimCaPlugin, order(settings(), state)).unwrap();
    assert_eq!(
        outcome,
        IssueOutcome::Issued {
            chain_pem: "LEAF\nCA\n".into()
        }
    );
}

#[test]
fn issue_with_an_order_in_the_state_polls_it_instead_of_ordering_again() {
    let host = FakeHost::new();
    host.respond_http(
        "GET",
        &format!("{URL}/orders/SIM-4"),
        answer(202, json!({ "order": "SIM-4", "retry_after": 2 })),
    );
    let outcome = host
        .issue(&SimCaPlugin, order(settings(), json!({ "order": "SIM-4" })))
        .unwrap();
    assert!(matches!(
        outcome,
        IssueOutcome::Pending {
            poll_after_secs: 2,
            ..
        }
    ));
    let methods: Vec<String> = host.http_requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET"]);
}

#[test]
fn server_errors_are_temporary_and_refusals_permanent_with_the_cas_words() {
    let host = FakeHost::new();
    let orders = format!("{URL}/orders");
    host.respond_http(
        "POST",
        &orders,
        answer(
            503,
            json!({ "error": "the CA is unavailable (simulated outage); try again later" }),
        ),
    );
    let err = host
        .issue(&SimCaPlugin, order(settings(), Value::Null))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert_eq!(
        err.message,
        "the sim CA did not take the order: HTTP 503: the CA is unavailable (simulated outage); try again later"
    );

    host.respond_http(
        "POST",
        &orders,
        answer(
            400,
            json!({ "error": "a TLS certificate needs at least one DNS or IP subject alternative name in the CSR" }),
        ),
    );
    let err = host
        .issue(&SimCaPlugin, order(settings(), Value::Null))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(
        err.message
            .ends_with("HTTP 400: a TLS certificate needs at least one DNS or IP subject alternative name in the CSR"),
        "{err}"
    );

    host.respond_http(
        "GET",
        &format!("{URL}/orders/SIM-9"),
        answer(404, json!({ "error": "no order \"SIM-9\" at this CA" })),
    );
    let err = host
        .poll(&SimCaPlugin, order(settings(), json!({ "order": "SIM-9" })))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(
        err.message.contains("report on order SIM-9: HTTP 404"),
        "{err}"
    );
}

#[test]
fn no_answer_at_all_is_temporary() {
    let host = FakeHost::new();
    host.fail(
        "http",
        HostError::new(HostErrorKind::Failed, "connection refused"),
    );
    let err = host
        .issue(&SimCaPlugin, order(settings(), Value::Null))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert_eq!(err.message, "host service: connection refused");
}

#[test]
fn the_profile_follows_the_settings() {
    let host = FakeHost::new();
    let mut oces3 = settings();
    oces3["profile"] = json!("oces3");
    oces3["subject"] = json!([
        { "attribute": "CN", "value": "Hjørring Apotek" },
        { "attribute": "organizationIdentifier", "value": "NTRDK-25450442" },
        { "attribute": "C", "value": "DK" }
    ]);
    oces3["sans"] = json!([]);
    oces3["identity"] = json!({ "type": "current" });
    let profile = host
        .csr_profile(&SimCaPlugin, order(oces3.clone(), Value::Null).certificate)
        .unwrap();
    assert_eq!(profile.key, KeyAlgorithm::Rsa3072, "OCES3's default");
    assert_eq!(profile.subject[1].oid, oid::ORGANIZATION_IDENTIFIER);
    assert_eq!(profile.subject[1].string_type, StringType::Utf8);
    assert_eq!(profile.subject[2].string_type, StringType::Printable);
    assert!(profile.extended_key_usage.is_empty());

    let profile = host
        .csr_profile(&SimCaPlugin, order(settings(), Value::Null).certificate)
        .unwrap();
    assert_eq!(profile.key, KeyAlgorithm::EcP256);
    assert_eq!(profile.sans, [SubjectAltName::Dns("apotek.example".into())]);

    host.respond_http(
        "POST",
        &format!("{URL}/orders"),
        answer(202, json!({ "order": "SIM-2", "retry_after": 1 })),
    );
    host.issue(&SimCaPlugin, order(oces3, Value::Null)).unwrap();
    let sent = &host.http_requests()[0];
    assert_eq!(sent.identity, ClientIdentity::Current);
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["profile"], "oces3");
}

#[test]
fn bad_settings_are_reported() {
    let host = FakeHost::new();
    let problems = host
        .validate_settings(
            &SimCaPlugin,
            json!({
                "url": "http://127.0.0.1:8443",
                "trust": "simca",
                "identity": "simca-client",
                "subject": [{ "attribute": "XX", "value": "x" }],
                "sans": ["apotek.example"],
                "key_type": "rsa-1024"
            }),
        )
        .unwrap();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["url", "key_type", "subject[0]", "sans[0]"]);

    let problems = host
        .validate_settings(&SimCaPlugin, json!({ "url": URL, "trust": "simca" }))
        .unwrap();
    assert!(problems[0].message.contains("identity"), "{problems:?}");
    assert_eq!(
        host.validate_settings(&SimCaPlugin, settings()).unwrap(),
        []
    );
}
