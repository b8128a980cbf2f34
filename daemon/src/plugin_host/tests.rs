//! The plugin host against real shared libraries loaded from disk: the example plugin and
//! the wrong-ABI plugin from `tests/plugins/`, built as cdylibs by `cargo build --workspace`,
//! copied into a temporary plugin folder with the modes under test.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certvakt_plugin_api::messages::PluginResponse;
use certvakt_plugin_api::profile::KeyAlgorithm;
use certvakt_plugin_api::{
    CertificateContext, CertificateInfo, Completion, ErrorKind, IssueOutcome, OrderContext,
    StepContext, StepOutcome, TaskFileContent,
};
use serde_json::{Value, json};

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// A cdylib of the workspace, from the target folder this test binary runs in
/// (`target/<profile>/deps/certvakt-…` → `target/<profile>/lib<name>.so`).
fn built(lib: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(format!("lib{lib}.so"));
    assert!(
        path.is_file(),
        "{} is missing: build the test plugins first with `cargo build --workspace`",
        path.display()
    );
    path
}

fn example() -> PathBuf {
    built("certvakt_plugin_example")
}

/// certvaktd, which the plugin processes run (this test binary cannot be one).
fn certvaktd() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("certvaktd");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first with `cargo build --workspace`",
        path.display()
    );
    path
}

/// [`super::load_dir`] with plugin processes that run the built certvaktd.
fn load_dir(dir: &Path, service_uid: Option<u32>, metrics: Arc<Metrics>) -> Registry {
    load_dir_with(dir, service_uid, metrics, &certvaktd())
}

/// A plugin folder like a package would make it: mode 0755, owned by whoever runs the test.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn install(dir: &Path, from: &Path, name: &str, mode: u32) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(from, &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    to
}

/// The uid the test runs as, which must be allowed to own plugins (it owns the copies).
fn my_uid(dir: &Path) -> Option<u32> {
    Some(std::fs::metadata(dir).unwrap().uid())
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(0).unwrap())
}

fn load_example() -> (tempfile::TempDir, Registry, Arc<Metrics>) {
    let dir = plugin_dir();
    install(dir.path(), &example(), "example.so", 0o644);
    let metrics = metrics();
    let registry = load_dir(dir.path(), my_uid(dir.path()), metrics.clone());
    assert!(registry.refused.is_empty(), "{:?}", registry.refused);
    (dir, registry, metrics)
}

fn services(dir: &Path) -> Arc<BasicServices> {
    Arc::new(BasicServices::new(
        "example",
        "apotek-prod",
        dir.join("state"),
    ))
}

fn certificate(settings: Value) -> CertificateContext {
    CertificateContext {
        roles: Vec::new(),
        current_set: Default::default(),
        role: None,
        certificate_id: "apotek-prod".into(),
        settings,
        environment: "test".into(),
        current: None,
    }
}

fn settings() -> Value {
    json!({ "common_name": "apotek.example", "organisation": "Hjørring Apotek" })
}

fn order(settings: Value) -> OrderContext {
    OrderContext {
        csr_set: Default::default(),
        certificate: certificate(settings),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n".into(),
        state: Value::Null,
    }
}

fn refusal_text(registry: &Registry, file: &str) -> String {
    registry
        .refused
        .iter()
        .find(|r| r.file.file_name().is_some_and(|n| n == file))
        .map(|r| r.to_string())
        .unwrap_or_else(|| panic!("{file} was not refused: {:?}", registry.refused))
}

#[tokio::test]
async fn the_example_plugin_loads_and_answers_through_the_abi() {
    let (dir, registry, metrics) = load_example();
    let plugin = registry.get("example").expect("example loaded");
    assert_eq!(plugin.name, "example");
    assert_eq!(plugin.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(plugin.api_version, certvakt_plugin_api::PLUGIN_API_VERSION);
    assert_eq!(plugin.file, dir.path().join("example.so"));

    let services = services(dir.path());
    let description = plugin.describe(services.clone(), DEADLINE).await.unwrap();
    assert_eq!(description.name, "example");
    assert_eq!(description.abi_version, certvakt_plugin_api::ABI_VERSION);
    assert_eq!(description.settings[0].key, "common_name");

    let problems = plugin
        .validate_settings(json!({"organisation": "X"}), services.clone(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "common_name");

    let mut rsa = settings();
    rsa["key"] = json!("rsa-3072");
    let profile = plugin
        .csr_profile(certificate(rsa), services.clone(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(profile.key, KeyAlgorithm::Rsa3072);
    assert_eq!(profile.subject[2].value, "apotek.example");

    // issue asks the host for the time: the answer crossed the ABI both ways.
    let before = crate::now_unix();
    let outcome = plugin
        .issue(order(settings()), services.clone(), DEADLINE)
        .await
        .unwrap();
    let IssueOutcome::Pending {
        poll_after_secs: 3600,
        task: Some(task),
        state,
    } = outcome
    else {
        panic!("expected a pending manual order, got {outcome:?}");
    };
    assert_eq!(task.completes_by, Completion::Import);
    assert_eq!(task.files[0].content, TaskFileContent::Csr);
    let ordered_at = state["ordered_at"].as_i64().unwrap();
    assert!(ordered_at >= before && ordered_at <= crate::now_unix());

    let text = metrics.render(0);
    for method in ["describe", "validate_settings", "csr_profile", "issue"] {
        let line = format!(
            "certvakt_plugin_calls_total{{method=\"{method}\",outcome=\"ok\",plugin=\"example\"}} 1\n"
        );
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    assert!(text.contains("certvakt_plugin_call_duration_seconds_count{plugin=\"example\"} 4\n"));
    assert!(text.contains("certvakt_plugins{state=\"loaded\"} 1\n"));
    assert!(text.contains("certvakt_plugins{state=\"refused\"} 0\n"));
    promtool_check(&text);
}

/// `promtool check metrics` on the exposition (scripts/test installs promtool).
fn promtool_check(text: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run scripts/test, which installs it (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn host_services_reach_the_plugin_and_signing_is_not_there_yet() {
    let (dir, registry, metrics) = load_example();
    let plugin = registry.get("example").unwrap();
    let services = services(dir.path());
    let step = |settings: Value| StepContext {
        new_set: Default::default(),
        certificate: certificate(settings),
        new: Some(CertificateInfo {
            pem: "PEM".into(),
            subject: "CN=apotek.example".into(),
            serial: "0B".into(),
            not_before: 0,
            not_after: 1,
            identities: vec![],
        }),
        state: json!({"run": 1}),
    };

    // Without an API, register hands the person a task and keeps the run's state.
    let outcome = plugin
        .register(step(settings()), services.clone(), DEADLINE)
        .await
        .unwrap();
    let StepOutcome::Pending {
        task: Some(task),
        state,
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(task.completes_by, Completion::Confirm);
    assert_eq!(state, json!({"run": 1}));

    // With one, it reads its state, then needs the pending key, which BasicServices does not
    // offer yet: that arrives as the plugin's error, named.
    let earlier = HostRequest::StatePut {
        key: "registered_serial".into(),
        value: json!("0A"),
    };
    assert_eq!(services.handle(earlier), HostResponse::StatePut);
    let mut with_api = settings();
    with_api["api_url"] = json!("https://api.example-ca.test");
    let err = plugin
        .register(step(with_api), services.clone(), DEADLINE)
        .await
        .unwrap_err();
    let PluginCallError::Plugin { error, .. } = &err else {
        panic!("expected the plugin's error, got {err}");
    };
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert_eq!(
        err.to_string(),
        "plugin example could not register: permanent: host service: keys are not available here: the renewal engine's services offer them"
    );
    assert!(metrics.render(0).contains(
        "certvakt_plugin_calls_total{method=\"register\",outcome=\"error\",plugin=\"example\"} 1\n"
    ));
}

/// Through the whole boundary: the example plugin's `issue` with `api_url` posts the order
/// over the host's HTTP service to a mutual-TLS server on loopback, presenting the current
/// identity (the host reads its key; the plugin only names it), and keeps the order id the
/// server made from the client certificate it saw.
#[tokio::test]
async fn the_example_plugin_orders_over_mutual_tls_through_the_host() {
    use super::http::tests::{Fixture, TestServer, subject};

    let (dir, registry, _metrics) = load_example();
    let plugin = registry.get("example").unwrap();
    let fixture = Fixture::new();
    let server = TestServer::tls(&fixture.pki, &[&rustls::version::TLS13]).await;
    let services = Arc::new(
        BasicServices::new("example", "apotek-prod", dir.path().join("state"))
            .with_http(fixture.service.clone()),
    );
    let mut with_api = settings();
    with_api["api_url"] = json!(server.url("/"));

    // A renewal: the plugin authenticates with the certificate in use.
    let mut renewal = order(with_api.clone());
    renewal.certificate.current = Some(CertificateInfo {
        pem: fixture.pki.client.cert_pem.clone(),
        subject: "CN=Hjørring Apotek".into(),
        serial: "01".into(),
        not_before: 0,
        not_after: i64::MAX,
        identities: vec![],
    });
    let outcome = plugin
        .issue(renewal, services.clone(), DEADLINE)
        .await
        .unwrap();
    let IssueOutcome::Pending {
        poll_after_secs: 60,
        task: None,
        state,
    } = outcome
    else {
        panic!("expected a placed order, got {outcome:?}");
    };
    assert_eq!(
        state,
        json!({ "order_id": subject(&fixture.pki.client.cert_der) })
    );

    // A first order has no certificate to present, and this server insists on one: the
    // plugin gets the host's sentence as a temporary error.
    let err = plugin
        .issue(order(with_api), services, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "plugin example could not issue: temporary: host service: TLS handshake with localhost:{} failed: the server requires a client certificate and the request presented none (client identity `none`)",
            server.addr.port()
        )
    );
    let text = fixture.metrics.render(0);
    for outcome in ["ok", "tls"] {
        let line = format!(
            "certvakt_plugin_http_requests_total{{outcome=\"{outcome}\",plugin=\"example\"}} 1\n"
        );
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn a_panicking_plugin_is_an_error_and_the_daemon_goes_on() {
    let (dir, registry, _metrics) = load_example();
    let plugin = registry.get("example").unwrap();
    let services = services(dir.path());
    let mut panicking = settings();
    panicking["test_panic_in"] = json!("issue");

    let err = plugin
        .issue(order(panicking), services.clone(), DEADLINE)
        .await
        .unwrap_err();
    let PluginCallError::Plugin {
        plugin: name,
        method,
        error,
    } = err
    else {
        panic!("expected the plugin's error, got {err}");
    };
    assert_eq!((name.as_str(), method.as_str()), ("example", "issue"));
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert_eq!(
        error.message,
        "plugin panicked: test_panic_in asked issue to panic"
    );

    // Same process, same library: the next call works.
    let outcome = plugin
        .issue(order(settings()), services, DEADLINE)
        .await
        .unwrap();
    assert!(matches!(outcome, IssueOutcome::Pending { .. }));
}

#[tokio::test]
async fn a_plugin_that_overruns_its_deadline_times_out() {
    let (dir, registry, metrics) = load_example();
    let plugin = registry.get("example").unwrap();
    let mut slow = settings();
    slow["test_delay_ms"] = json!(1500);

    let started = Instant::now();
    let err = plugin
        .csr_profile(
            certificate(slow),
            services(dir.path()),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let PluginCallError::Timeout {
        plugin: name,
        method,
        deadline,
    } = &err
    else {
        panic!("expected a timeout, got {err}");
    };
    assert_eq!((name.as_str(), method.as_str()), ("example", "csr_profile"));
    assert_eq!(*deadline, Duration::from_millis(100));
    assert_eq!(
        err.to_string(),
        "plugin example did not answer csr_profile within 100ms; its process was stopped, and the step is tried again later"
    );
    let rendered = metrics.render(0);
    assert!(rendered.contains(
        "certvakt_plugin_calls_total{method=\"csr_profile\",outcome=\"timeout\",plugin=\"example\"} 1\n"
    ));
    assert!(
        rendered
            .contains("certvakt_plugin_crashes_total{plugin=\"example\",reason=\"deadline\"} 1\n"),
        "{rendered}"
    );
    // The stopped call is over: the next one gets a new process and answers.
    plugin
        .csr_profile(certificate(settings()), services(dir.path()), DEADLINE)
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_methods_and_undecodable_answers_are_named() {
    let (dir, registry, metrics) = load_example();
    let plugin = registry.get("example").unwrap();

    let answer: PluginResponse = plugin
        .call("renew", &json!({}), services(dir.path()), DEADLINE)
        .await
        .unwrap();
    let PluginResponse::Error(error) = answer else {
        panic!("expected an error, got {answer:?}");
    };
    assert_eq!(
        error.message,
        format!(
            "plugin example {}: unknown method \"renew\" (this side speaks plugin API {})",
            env!("CARGO_PKG_VERSION"),
            certvakt_plugin_api::PLUGIN_API_VERSION
        )
    );
    assert_eq!(
        error.fault_code.as_deref(),
        Some(certvakt_plugin_api::UNKNOWN_METHOD)
    );

    // Decoding the answer as the wrong type is a bad response naming plugin and method.
    let err = plugin
        .call::<_, Description>("describe", &(), services(dir.path()), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginCallError::BadResponse { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("plugin example's answer to describe does not decode: "),
        "{err}"
    );
    let text = metrics.render(0);
    assert!(text.contains(
        "certvakt_plugin_calls_total{method=\"renew\",outcome=\"error\",plugin=\"example\"} 1\n"
    ));
    assert!(text.contains(
        "certvakt_plugin_calls_total{method=\"describe\",outcome=\"bad_response\",plugin=\"example\"} 1\n"
    ));
}

/// Some real shared library without the plugin symbol.
fn libm() -> PathBuf {
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/libm.so.6"),
        format!("/lib/{arch}-linux-gnu/libm.so.6"),
        "/usr/lib64/libm.so.6".to_owned(),
        "/lib64/libm.so.6".to_owned(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("libm.so.6 in a standard place")
}

#[tokio::test]
async fn every_bad_file_is_refused_with_its_reason_and_the_good_one_still_loads() {
    let dir = plugin_dir();
    let d = dir.path();
    install(d, &example(), "a-example.so", 0o644);
    install(d, &example(), "b-example-again.so", 0o755);
    install(d, &example(), "c-group-writable.so", 0o664);
    install(
        d,
        &built("certvakt_plugin_wrong_abi"),
        "d-wrong-abi.so",
        0o644,
    );
    install(d, &libm(), "e-libm.so", 0o644);
    std::fs::write(d.join("x.so"), "not a library\n").unwrap();
    std::os::unix::fs::symlink(d.join("a-example.so"), d.join("f-link.so")).unwrap();
    // Not candidates at all: another extension, a folder.
    std::fs::write(d.join("README"), "plugins go here\n").unwrap();
    std::fs::create_dir(d.join("g-folder.so")).unwrap();

    let metrics = metrics();
    let registry = load_dir(d, my_uid(d), metrics.clone());

    let loaded: Vec<&str> = registry.loaded.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(loaded, ["example"]);
    assert_eq!(registry.loaded[0].file, d.join("a-example.so"));
    let refused: Vec<String> = registry
        .refused
        .iter()
        .map(|r| r.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        refused,
        [
            "b-example-again.so",
            "c-group-writable.so",
            "d-wrong-abi.so",
            "e-libm.so",
            "f-link.so",
            "x.so"
        ]
    );

    let p = |name: &str| d.join(name).display().to_string();
    assert_eq!(
        refusal_text(&registry, "b-example-again.so"),
        format!(
            "plugin file {}: names itself \"example\", which is already loaded from {}",
            p("b-example-again.so"),
            p("a-example.so")
        )
    );
    assert_eq!(
        refusal_text(&registry, "c-group-writable.so"),
        format!(
            "plugin file {}: is writable by group or others (mode 0664), and a plugin runs inside certvaktd: chmod go-w it",
            p("c-group-writable.so")
        )
    );
    assert_eq!(
        refusal_text(&registry, "d-wrong-abi.so"),
        format!(
            "plugin file {}: was built for plugin ABI version 999, this certvaktd speaks plugin ABI version 1: install a build of the plugin made for this certvaktd",
            p("d-wrong-abi.so")
        )
    );
    assert_eq!(
        refusal_text(&registry, "e-libm.so"),
        format!(
            "plugin file {}: is not a certvakt plugin: it has no certvakt_plugin_v1 symbol",
            p("e-libm.so")
        )
    );
    assert_eq!(
        refusal_text(&registry, "f-link.so"),
        format!(
            "plugin file {}: is a symbolic link: install plugins as regular files",
            p("f-link.so")
        )
    );
    let x = refusal_text(&registry, "x.so");
    assert!(
        x.starts_with(&format!(
            "plugin file {}: cannot be loaded: dlopen failed: ",
            p("x.so")
        )),
        "{x}"
    );
    assert!(
        x.contains("invalid ELF header") || x.contains("too short"),
        "{x}"
    );
    assert!(matches!(
        registry.refused[0].reason,
        RefusalReason::Duplicate { .. }
    ));

    let text = metrics.render(0);
    assert!(
        text.contains("certvakt_plugins{state=\"loaded\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("certvakt_plugins{state=\"refused\"} 6\n"),
        "{text}"
    );
}

#[test]
fn a_folder_writable_by_others_refuses_every_plugin_in_it() {
    let dir = plugin_dir();
    install(dir.path(), &example(), "example.so", 0o644);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let registry = load_dir(dir.path(), my_uid(dir.path()), metrics());
    assert!(registry.loaded.is_empty());
    assert_eq!(
        refusal_text(&registry, "example.so"),
        format!(
            "plugin file {}: its folder {} is writable by group or others (mode 0777), and a plugin runs inside certvaktd: chmod go-w the folder",
            dir.path().join("example.so").display(),
            dir.path().display()
        )
    );
}

#[test]
fn a_plugin_owned_by_someone_else_is_refused() {
    let dir = plugin_dir();
    let file = install(dir.path(), &example(), "example.so", 0o644);
    let me = my_uid(dir.path()).unwrap();
    // As root, give the file away; as anyone else, our own files are not root's, and no
    // service user is configured.
    let (service_uid, owner) = if me == 0 {
        std::os::unix::fs::chown(&file, Some(4242), None).unwrap();
        (None, 4242)
    } else {
        (None, me)
    };
    let registry = load_dir(dir.path(), service_uid, metrics());
    assert!(registry.loaded.is_empty());
    let expected_reason = if me == 0 {
        format!("is owned by uid {owner}, not by root: chown root it")
    } else {
        // The folder is checked first, and it is ours too.
        format!(
            "its folder {} is owned by uid {owner}, not by root: chown root the folder",
            dir.path().display()
        )
    };
    assert_eq!(
        refusal_text(&registry, "example.so"),
        format!("plugin file {}: {expected_reason}", file.display())
    );
}

#[test]
fn a_missing_folder_is_no_plugins() {
    let dir = plugin_dir();
    let metrics = metrics();
    let registry = load_dir(&dir.path().join("none"), None, metrics.clone());
    assert!(registry.loaded.is_empty() && registry.refused.is_empty());
    assert!(
        metrics
            .render(0)
            .contains("certvakt_plugins{state=\"loaded\"} 0\n")
    );
}

#[test]
fn api_versions_and_names_are_checked_after_the_descriptor_is_read() {
    // The descriptor checks in `accept`, on what a plugin of another API version would say.
    let opened = |name: &str, api: &str| process::Described {
        name: name.into(),
        version: "2.0.0".into(),
        api_version: api.into(),
    };
    let empty = Registry::default();
    let err = accept(&opened("future", "2.0.0"), &empty).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "future 2.0.0: plugin built against certvakt-plugin-api 2.0.0, this certvaktd uses {host} (major versions must match): rebuild the plugin against certvakt-plugin-api {host}",
            host = certvakt_plugin_api::PLUGIN_API_VERSION
        )
    );
    let err = accept(
        &opened("../etc", certvakt_plugin_api::PLUGIN_API_VERSION),
        &empty,
    )
    .unwrap_err();
    assert!(matches!(err, RefusalReason::BadName { .. }), "{err}");
    assert!(
        accept(
            &opened("dk-fmk", certvakt_plugin_api::PLUGIN_API_VERSION),
            &empty
        )
        .is_ok()
    );
}
