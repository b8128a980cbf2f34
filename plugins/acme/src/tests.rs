//! The plugin through [`FakeHost`]: settings, and the CA's refusals that pebble cannot be
//! made to send (rate limits, a person needed). The whole protocol runs against pebble in
//! the end-to-end tests (`tests/e2e/acme.rs`).

use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, ErrorKind, HttpResponse, IssueOutcome, OrderContext,
};
use serde_json::{Value, json};

use crate::Acme;
use crate::challenge::{self, Published};
use crate::client::Answer;
use crate::jws::AccountKey;
use crate::settings::{Challenge, LETSENCRYPT, Settings};

const DIRECTORY: &str = "https://ca.test/dir";

fn settings(extra: Value) -> Value {
    let mut base = json!({
        "directory": DIRECTORY,
        "domains": ["apotek.example"],
        "agree_terms": true,
    });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

fn problems(value: Value) -> Vec<(String, String)> {
    Settings::parse(&value)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

#[test]
fn a_full_configuration_parses() {
    let parsed = Settings::parse(&json!({
        "directory": "letsencrypt",
        "domains": ["Apotek.example", "*.apotek.example"],
        "contact": ["mailto:it@apotek.example"],
        "agree_terms": true,
        "challenge": "dns-01",
        "dns_hook": ["/usr/local/bin/hook", "--zone", "apotek.example"],
        "dns_wait": "2m",
        "key_type": "rsa-3072",
        "account_key_type": "ec-p384",
        "preferred_chain": "ISRG Root X1",
        "eab_kid": "kid-1",
        "eab_hmac_key_file": "/etc/certvakt/eab.key",
        "revoke_old": true,
    }))
    .expect("valid");
    assert_eq!(parsed.directory, LETSENCRYPT);
    assert_eq!(parsed.domains, ["apotek.example", "*.apotek.example"]);
    assert_eq!(
        parsed.challenge,
        Challenge::Dns01 {
            hook: vec![
                "/usr/local/bin/hook".into(),
                "--zone".into(),
                "apotek.example".into()
            ],
            wait_secs: 120
        }
    );
    assert!(parsed.revoke_old && parsed.agree_terms);
    assert_eq!(parsed.external_account.map(|e| e.kid), Some("kid-1".into()));
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let found = problems(json!({
        "directory": "http://ca.example/dir",
        "domains": ["*.apotek.example", "bad_name.example", "apotek.example", "apotek.example"],
        "contact": ["it@apotek.example"],
        "dns_hook": ["hook"],
        "key_type": "dsa",
        "eab_kid": "kid",
        "renew": true,
    }));
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "renew",
        "directory",
        "dns_hook",
        "domains[0]",
        "domains[1]",
        "domains[3]",
        "contact[0]",
        "key_type",
        "eab_hmac_key_file",
    ] {
        assert!(keys.contains(&key), "{key} missing from {found:?}");
    }
    assert!(
        found
            .iter()
            .any(|(k, m)| k == "domains[0]" && m.contains("dns-01")),
        "{found:?}"
    );
    let missing = problems(json!({}));
    let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["directory", "domains"]);
    assert_eq!(
        problems(json!({"directory": DIRECTORY, "domains": ["a.example"], "challenge": "dns-01"}))
            [0]
        .0,
        "dns_hook"
    );
}

/// The dns-01 wait of `dns_wait = text`, or the problems with it.
fn dns_wait(text: &str) -> Result<u64, Vec<(String, String)>> {
    let value = settings(json!({
        "challenge": "dns-01",
        "dns_hook": ["/bin/true"],
        "dns_wait": text,
    }));
    match Settings::parse(&value) {
        Ok(Settings {
            challenge: Challenge::Dns01 { wait_secs, .. },
            ..
        }) => Ok(wait_secs),
        Ok(other) => panic!("not dns-01: {other:?}"),
        Err(problems) => Err(problems.into_iter().map(|p| (p.key, p.message)).collect()),
    }
}

#[test]
fn dns_wait_is_written_like_every_other_duration() {
    assert_eq!(dns_wait("30s"), Ok(30));
    assert_eq!(dns_wait("2m"), Ok(120));
    // The daemon's syntax: sums of units, which the plugin's own parser used to refuse.
    assert_eq!(dns_wait("1m30s"), Ok(90));
    assert_eq!(dns_wait("1h"), Ok(3600));
    // And its rules: a bare number is a unit mistake, and 100 years is the most.
    for (text, why) in [
        ("90", "a number without a unit"),
        ("soon", "is not a duration"),
        ("9223372036854775808s", "longer than 100 years"),
    ] {
        let found = dns_wait(text).err().unwrap_or_default();
        assert_eq!(found.len(), 1, "{text}: {found:?}");
        assert_eq!(found[0].0, "dns_wait");
        assert!(found[0].1.contains(why), "{text}: {found:?}");
    }
}

#[test]
fn the_plugin_describes_its_settings() {
    let host = FakeHost::new();
    let about = host.describe(&Acme::default()).expect("describe");
    assert_eq!(about.name, "acme");
    for doc in &about.settings {
        // Every example is a valid value for its own setting.
        let example = doc.example.as_deref().expect("an example");
        let value: toml::Value =
            toml::from_str(&format!("v = {example}")).expect("example is TOML");
        let value = serde_json::to_value(&value["v"]).expect("json");
        let mut table = settings(json!({}));
        if doc.key.starts_with("eab_") {
            table["eab_kid"] = json!("kid");
            table["eab_hmac_key_file"] = json!("/etc/certvakt/eab.key");
        }
        if ["dns_hook", "dns_wait"].contains(&doc.key.as_str())
            || (doc.key == "challenge" && example.contains("dns"))
        {
            table["challenge"] = json!("dns-01");
            table["dns_hook"] = json!(["/bin/true"]);
        }
        table[&doc.key] = value;
        assert_eq!(problems(table.clone()), Vec::new(), "{}: {table}", doc.key);
    }
}

#[test]
fn the_readme_examples_are_valid_settings() {
    let readme = include_str!("../README.md");
    let mut checked = 0;
    for block in readme.split("```toml").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        let doc: toml::Table = toml::from_str(block).expect("README TOML parses");
        let Some(certs) = doc.get("certificate").and_then(|c| c.as_array()) else {
            continue;
        };
        for cert in certs {
            if cert.get("plugin").and_then(|p| p.as_str()) != Some("acme") {
                continue;
            }
            let table = cert.get("settings").cloned().expect("settings");
            let json = serde_json::to_value(table).expect("json");
            assert_eq!(problems(json.clone()), Vec::new(), "{json}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} examples");
}

fn json_response(status: u16, body: Value, headers: &[(&str, &str)]) -> HttpResponse {
    let mut all = vec![
        ("replay-nonce".to_owned(), format!("nonce-{status}")),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    all.extend(
        headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    HttpResponse {
        status,
        headers: all,
        body: body.to_string().into_bytes(),
    }
}

/// A CA with a directory, nonces and an existing account for the plugin's key.
fn ca() -> FakeHost {
    let host = FakeHost::new();
    host.respond_http(
        "GET",
        DIRECTORY,
        json_response(
            200,
            json!({
                "newNonce": "https://ca.test/nonce",
                "newAccount": "https://ca.test/account",
                "newOrder": "https://ca.test/order",
                "revokeCert": "https://ca.test/revoke",
                "keyChange": "https://ca.test/key",
                "meta": {"termsOfService": "https://ca.test/terms"},
            }),
            &[],
        ),
    );
    host.respond_http(
        "HEAD",
        "https://ca.test/nonce",
        json_response(200, Value::Null, &[]),
    );
    host.respond_http(
        "POST",
        "https://ca.test/account",
        json_response(
            200,
            json!({"status": "valid"}),
            &[("location", "https://ca.test/acct/1")],
        ),
    );
    host
}

fn order() -> OrderContext {
    OrderContext {
        csr_set: Default::default(),
        certificate: CertificateContext {
            roles: Vec::new(),
            current_set: Default::default(),
            role: None,
            certificate_id: "web".into(),
            settings: settings(json!({})),
            environment: "production".into(),
            current: None,
        },
        csr_pem: String::new(),
        state: Value::Null,
    }
}

/// Puts the account a previous call found (`https://ca.test/acct/1`, the plugin's EC P-256
/// key for [`DIRECTORY`], given `contact`) in the host's state.
fn remember_account(host: &FakeHost, contact: &[&str]) {
    host.put_state(
        "account",
        json!({
            "directory": DIRECTORY,
            "key_name": crate::client::key_name(
                DIRECTORY,
                certvakt_plugin_api::profile::KeyAlgorithm::EcP256
            ),
            "key_type": "ec-p256",
            "url": "https://ca.test/acct/1",
            "contact": contact,
        }),
    );
}

/// Makes the CA answer every new order `rateLimited` with `detail` and a `Retry-After`.
fn refuse_orders_for(host: &FakeHost, detail: &str, retry_after_secs: u64) {
    host.respond_http(
        "POST",
        "https://ca.test/order",
        json_response(
            429,
            json!({"type": "urn:ietf:params:acme:error:rateLimited", "detail": detail}),
            &[("retry-after", &retry_after_secs.to_string())],
        ),
    );
}

#[test]
fn a_rate_limit_is_a_wait_of_retry_after_not_a_failure() {
    let host = ca();
    refuse_orders_for(&host, "too many new orders recently", 1800);
    let outcome = host.issue(&Acme::default(), order()).expect("not an error");
    assert_eq!(
        outcome,
        IssueOutcome::Pending {
            poll_after_secs: 1800,
            task: None,
            state: Value::Null
        }
    );
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("too many new orders recently")),
        "{:?}",
        host.logs()
    );
    // The account found for the key is kept for the next call.
    assert_eq!(
        host.state("account").map(|a| a["url"].clone()),
        Some(json!("https://ca.test/acct/1"))
    );
}

#[test]
fn retry_after_may_be_an_http_date() {
    let host = ca();
    host.set_now(1_767_225_600); // 2026-01-01T00:00:00Z
    host.respond_http(
        "POST",
        "https://ca.test/order",
        json_response(
            503,
            json!({"type": "urn:ietf:params:acme:error:serverInternal", "detail": "maintenance"}),
            &[("retry-after", "Thu, 01 Jan 2026 00:10:00 GMT")],
        ),
    );
    match host.issue(&Acme::default(), order()) {
        Ok(IssueOutcome::Pending {
            poll_after_secs, ..
        }) => assert_eq!(poll_after_secs, 600),
        other => panic!("{other:?}"),
    }
}

#[test]
fn refusals_become_errors_the_daemon_can_act_on() {
    let cases = [
        (
            403,
            "userActionRequired",
            ErrorKind::NeedsPerson,
            "https://ca.test/terms/v2",
        ),
        (400, "malformed", ErrorKind::Permanent, "malformed"),
        (
            500,
            "serverInternal",
            ErrorKind::Temporary,
            "serverInternal",
        ),
        (
            400,
            "externalAccountRequired",
            ErrorKind::Configuration,
            "externalAccountRequired",
        ),
    ];
    for (status, kind, expected, mentions) in cases {
        let host = ca();
        host.respond_http(
            "POST",
            "https://ca.test/order",
            json_response(
                status,
                json!({
                    "type": format!("urn:ietf:params:acme:error:{kind}"),
                    "detail": "said the CA",
                    "instance": "https://ca.test/terms/v2",
                }),
                &[],
            ),
        );
        let error = host.issue(&Acme::default(), order()).expect_err(kind);
        assert_eq!(error.kind, expected, "{kind}: {error}");
        assert!(error.message.contains("said the CA"), "{error}");
        assert!(
            error.message.contains(mentions) || error.fault_code.as_deref() == Some(mentions),
            "{error}"
        );
    }
}

#[test]
fn a_directory_that_is_not_acme_is_a_configuration_error() {
    let host = FakeHost::new();
    host.respond_http(
        "GET",
        DIRECTORY,
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: b"<html>welcome</html>".to_vec(),
        },
    );
    let error = host.issue(&Acme::default(), order()).expect_err("not ACME");
    assert_eq!(error.kind, ErrorKind::Configuration);
    assert!(error.message.contains(DIRECTORY), "{error}");
}

#[test]
fn alternate_links_are_read_from_every_link_header() {
    let answer = Answer {
        response: HttpResponse {
            status: 200,
            headers: vec![
                ("Link".into(), "<https://ca.test/dir>;rel=\"index\"".into()),
                (
                    "link".into(),
                    "<https://ca.test/cert/1/1>; rel=\"alternate\", <https://ca.test/cert/1/2>;rel=alternate".into(),
                ),
            ],
            body: Vec::new(),
        },
        retry_after: None,
    };
    assert_eq!(
        answer.links("alternate"),
        ["https://ca.test/cert/1/1", "https://ca.test/cert/1/2"]
    );
    assert_eq!(answer.links("index"), ["https://ca.test/dir"]);
}

/// An account key with a fixed JWK.
fn test_key() -> AccountKey {
    AccountKey {
        name: "k".into(),
        algorithm: certvakt_plugin_api::profile::KeyAlgorithm::EcP256,
        jwk: json!({"crv": "P-256", "kty": "EC", "x": "AAA", "y": "BBB"}),
    }
}

#[test]
fn webroot_responses_go_to_the_host_and_come_back_and_odd_tokens_are_refused() {
    // The host writes and removes the file (lifecycle::services tests check the file, its
    // mode and the host's own token check); the plugin names the folder.
    let host = FakeHost::new();
    let how = Challenge::Http01Webroot("/var/www/html".into());
    let key = test_key();
    let table = certvakt_plugin_api::abi::LocalHostTable::new(&host);
    let fake = certvakt_plugin_api::Host::new(table.table());
    let published: Published = challenge::publish(
        &fake,
        &how,
        &key,
        "apotek.example",
        "tok_EN-1",
        "https://ca.test/chall/1",
    )
    .expect("published");
    assert_eq!(
        host.http01().get("/var/www/html/tok_EN-1"),
        Some(&key.key_authorization("tok_EN-1"))
    );
    challenge::withdraw(&fake, &how, &[published]);
    assert!(host.http01().is_empty());
    let error = challenge::publish(&fake, &how, &key, "a.example", "../../etc/x", "u")
        .expect_err("refused");
    assert!(error.message.contains("not base64url"), "{error}");
}

#[test]
fn the_dns_hook_is_run_by_the_host_with_the_record_and_a_failure_is_temporary() {
    let host = FakeHost::new();
    let how = Challenge::Dns01 {
        hook: vec!["/usr/local/lib/certvakt/dns-hook".into(), "--zone=x".into()],
        wait_secs: 0,
    };
    let key = test_key();
    let table = certvakt_plugin_api::abi::LocalHostTable::new(&host);
    let fake = certvakt_plugin_api::Host::new(table.table());
    let published =
        challenge::publish(&fake, &how, &key, "*.apotek.example", "tok", "u").expect("published");
    let value = crate::jws::dns01_value(&key.key_authorization("tok"));
    let commands = host.commands();
    assert_eq!(
        commands[0].argv,
        [
            "/usr/local/lib/certvakt/dns-hook",
            "--zone=x",
            "set",
            "_acme-challenge.apotek.example",
            value.as_str()
        ]
    );
    assert_eq!(commands[0].env["CERTVAKT_ACME_DOMAIN"], "*.apotek.example");
    challenge::withdraw(&fake, &how, &[published]);
    assert_eq!(host.commands()[1].argv[2], "unset");

    host.fail(
        "run_command",
        certvakt_plugin_api::HostError::new(
            certvakt_plugin_api::HostErrorKind::Failed,
            "plugin_command /usr/local/lib/certvakt/dns-hook exited with exit status: 1: zone locked",
        ),
    );
    let error =
        challenge::publish(&fake, &how, &key, "apotek.example", "tok", "u").expect_err("failed");
    assert_eq!(error.kind, ErrorKind::Temporary);
    assert!(error.message.contains("zone locked"), "{error}");
}

#[test]
fn an_order_still_pending_an_hour_after_validation_is_reported_and_replaced() {
    let host = ca();
    remember_account(&host, &[]);
    host.respond_http(
        "POST",
        "https://ca.test/order/7",
        json_response(
            200,
            json!({"status": "pending", "authorizations": [], "finalize": "https://ca.test/fin/7"}),
            &[],
        ),
    );
    let mut context = order();
    context.state = json!({
        "order": "https://ca.test/order/7",
        "responded": true,
        "responded_at": FakeHost::DEFAULT_NOW - 4_000,
    });
    let error = host
        .poll(&Acme::default(), context.clone())
        .expect_err("stuck");
    assert_eq!(error.kind, ErrorKind::Temporary);
    assert!(error.message.contains("66 minutes"), "{error}");
    assert_eq!(
        host.state("failed_order"),
        Some(json!("https://ca.test/order/7"))
    );
    // Not stuck yet: polled again after a quarter of the wait so far, at most a minute.
    context.state["responded_at"] = json!(FakeHost::DEFAULT_NOW - 100);
    host.put_state("failed_order", Value::Null);
    match host.poll(&Acme::default(), context) {
        Ok(IssueOutcome::Pending {
            poll_after_secs, ..
        }) => assert_eq!(poll_after_secs, 25),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_changed_contact_is_given_to_the_ca_once() {
    let host = ca();
    remember_account(&host, &["mailto:old@apotek.example"]);
    host.respond_http(
        "POST",
        "https://ca.test/acct/1",
        json_response(200, json!({"status": "valid"}), &[]),
    );
    refuse_orders_for(&host, "later", 60);
    let mut context = order();
    context.certificate.settings["contact"] = json!(["mailto:it@apotek.example"]);
    let updates = |host: &FakeHost| {
        host.http_requests()
            .iter()
            .filter(|r| r.url == "https://ca.test/acct/1")
            .count()
    };
    host.issue(&Acme::default(), context.clone())
        .expect("pending");
    assert_eq!(updates(&host), 1);
    assert_eq!(
        host.state("account").map(|a| a["contact"].clone()),
        Some(json!(["mailto:it@apotek.example"]))
    );
    host.issue(&Acme::default(), context).expect("pending");
    assert_eq!(updates(&host), 1, "not sent again once the CA has it");
}

#[test]
fn the_directory_is_read_once_an_hour_not_at_every_call() {
    let host = ca();
    refuse_orders_for(&host, "later", 60);
    let plugin = Acme::default();
    let reads = |host: &FakeHost| {
        host.http_requests()
            .iter()
            .filter(|r| r.method == "GET" && r.url == DIRECTORY)
            .count()
    };
    host.issue(&plugin, order()).expect("pending");
    host.issue(&plugin, order()).expect("pending");
    assert_eq!(reads(&host), 1);
    host.set_now(FakeHost::DEFAULT_NOW + crate::client::DIRECTORY_TTL_SECS);
    host.issue(&plugin, order()).expect("pending");
    assert_eq!(reads(&host), 2, "read again after an hour");
}

#[test]
fn an_order_state_that_does_not_parse_is_reported_and_a_new_order_placed() {
    let host = ca();
    remember_account(&host, &[]);
    refuse_orders_for(&host, "later", 60);
    let mut context = order();
    context.state = json!({ "order": 7, "published": [] });
    let outcome = host.poll(&Acme::default(), context).expect("pending");
    assert!(
        matches!(outcome, IssueOutcome::Pending { .. }),
        "{outcome:?}"
    );
    // A new order for the same CSR: the run goes on (redoing an order is safe).
    assert!(
        host.http_requests()
            .iter()
            .any(|r| r.method == "POST" && r.url == "https://ca.test/order"),
        "{:?}",
        host.http_requests()
    );
    // Not silently: the journal says what did not parse and what may be left published.
    let warning = host
        .logs()
        .into_iter()
        .find(|l| l.message.contains("does not parse"))
        .unwrap_or_else(|| panic!("no warning: {:?}", host.logs()));
    assert_eq!(warning.level, certvakt_plugin_api::LogLevel::Warn);
    for expected in ["`order`", "new order", "withdraw"] {
        assert!(
            warning.message.contains(expected),
            "{expected:?} not in: {}",
            warning.message
        );
    }
}

#[test]
fn an_account_record_that_does_not_parse_is_reported_and_looked_up_again() {
    let host = ca();
    host.put_state("account", json!({ "directory": DIRECTORY, "url": 5 }));
    refuse_orders_for(&host, "later", 60);
    host.issue(&Acme::default(), order()).expect("pending");
    let warning = host
        .logs()
        .into_iter()
        .find(|l| l.message.contains("does not parse"))
        .unwrap_or_else(|| panic!("no warning: {:?}", host.logs()));
    assert_eq!(warning.level, certvakt_plugin_api::LogLevel::Warn);
    assert!(warning.message.contains("`url`"), "{}", warning.message);
    // Found again by its key, and remembered whole.
    assert_eq!(
        host.state("account").map(|a| a["url"].clone()),
        Some(json!("https://ca.test/acct/1"))
    );
}
