//! The monitoring files the package ships (packaging/monitoring): the Prometheus alert rules
//! pass `promtool check rules` and their own `promtool test rules` expectations, every alert
//! has a case where it fires and one where it does not, the Grafana dashboard is well formed,
//! and every metric the rules and the dashboard use is one the real daemon publishes.
//!
//! No YAML parser is among the dependencies, so the rule and test files are read line by line
//! for the few things checked here; promtool parses them properly, and the first test makes
//! sure both readings agree on the number of rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use certvakt_testkit::harness::{self, Daemon, eventually};
use certvakt_testkit::simca::{SimCa, SimCaConfig};
use certvakt_testkit::{CaShape, LeafSpec, TestCa};
use serde_json::Value;

use crate::common::{bins, stderr, stdout};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/monitoring/certvakt-alerts.yml"
);
const RULE_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/monitoring/certvakt-alerts.test.yml"
);
const COMPAT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/monitoring/certvakt-compat-rules.yml"
);
const COMPAT_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/monitoring/certvakt-compat-rules.test.yml"
);
const ALERTMANAGER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/monitoring/alertmanager-example.yml"
);
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/monitoring/certvakt-dashboard.json"
);

/// Runs `program ARGS` (from the Debian package `package`); fails with its output unless it
/// succeeds, and returns its stdout.
fn tool(program: &str, package: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!(
            "{program} is not installed: run scripts/test, which installs it (Debian package {package})"
        )
    })?;
    ensure!(
        out.status.success(),
        "{program} {} failed:\n{}{}",
        args.join(" "),
        stdout(&out),
        stderr(&out)
    );
    Ok(stdout(&out))
}

/// Runs `promtool ARGS` (see [`tool`]).
fn promtool(args: &[&str]) -> Result<String> {
    tool("promtool", "prometheus", args)
}

/// The text of a line without its comment, if the whole line is not a comment.
fn content(line: &str) -> Option<&str> {
    let trimmed = line.trim();
    (!trimmed.is_empty() && !trimmed.starts_with('#')).then_some(trimmed)
}

/// The value after `key:` on a line like `- key: value` or `key: value`, unquoted.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let line = content(line)?;
    let line = line.strip_prefix("- ").unwrap_or(line);
    let value = line.strip_prefix(key)?.strip_prefix(':')?.trim();
    Some(value.trim_matches(|c| c == '"' || c == '\''))
}

/// Each rule of the rules file, by name (`- alert: NAME` or `- record: NAME`), with the lines
/// of its entry.
fn rules(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        let starts = content(line).is_some_and(|l| l.starts_with("- "));
        if let Some(name) = value_of(line, "alert").or_else(|| value_of(line, "record")) {
            current = Some(name.to_owned());
        } else if starts {
            // Another list entry at the rule level or above (`- name:` of a group) ends the
            // rule; list entries inside a rule (none in the shipped file) would too, which
            // only makes the check below stricter.
            current = None;
        }
        if let Some(name) = &current {
            rules.entry(name.clone()).or_default().push(line.to_owned());
        }
    }
    rules
}

/// What the test file expects of one alert: whether some case sees it fire (a non-empty
/// `exp_alerts`) and whether some case sees it quiet (`exp_alerts: []` or none).
#[derive(Debug, Default)]
struct Coverage {
    fires: bool,
    quiet: bool,
}

/// Reads the `alert_rule_test` cases of a promtool test file. A case is a list entry that
/// starts with one of its keys (`- eval_time:`, `- alertname:`, `- exp_alerts:`); an
/// expected alert is an entry `- exp_labels:` or `- exp_annotations:` inside it.
fn coverage(text: &str) -> BTreeMap<String, Coverage> {
    let mut found: BTreeMap<String, Coverage> = BTreeMap::new();
    let mut case: Option<(Option<String>, bool)> = None;
    let mut close = |case: Option<(Option<String>, bool)>| {
        if let Some((Some(name), fires)) = case {
            let entry = found.entry(name).or_default();
            entry.fires |= fires;
            entry.quiet |= !fires;
        }
    };
    for line in text.lines() {
        let Some(trimmed) = content(line) else {
            continue;
        };
        let starts_case = ["- eval_time:", "- alertname:", "- exp_alerts:"]
            .iter()
            .any(|key| trimmed.starts_with(key));
        let starts_other = trimmed.starts_with("- ")
            && !starts_case
            && !trimmed.starts_with("- exp_labels:")
            && !trimmed.starts_with("- exp_annotations:");
        if starts_case || starts_other {
            close(case.take());
        }
        if starts_case {
            case = Some((None, false));
        }
        if let Some((name, fires)) = case.as_mut() {
            if let Some(alert) = value_of(line, "alertname") {
                *name = Some(alert.to_owned());
            }
            if trimmed.starts_with("- exp_labels:") || trimmed.starts_with("- exp_annotations:") {
                *fires = true;
            }
        }
    }
    close(case);
    found
}

/// The `certvakt_…` metric names in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("certvakt_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        if !before.is_some_and(is_name) {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Every series name a `/metrics` text can be queried by: the families it declares (with the
/// `_bucket`, `_sum` and `_count` series of histograms and summaries) and the samples in it.
fn published_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            let (Some(name), kind) = (words.next(), words.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if matches!(kind, Some("histogram" | "summary")) {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_owned());
            }
        }
    }
    names
}

/// The panels of a dashboard, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every query in the dashboard: the panels' target expressions and the variables' queries.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries: Vec<String> = panels(dashboard)
        .into_iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "query" {
            queries.extend(variable["definition"].as_str().map(str::to_owned));
            queries.extend(variable["query"]["query"].as_str().map(str::to_owned));
            queries.extend(variable["query"].as_str().map(str::to_owned));
        }
    }
    queries
}

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

fn read_dashboard() -> Result<Value> {
    serde_json::from_str(&read(DASHBOARD)?).with_context(|| format!("{DASHBOARD} is not JSON"))
}

#[test]
fn shipped_alert_rules_pass_promtool_check_and_their_own_tests() -> Result<()> {
    let checked = promtool(&["check", "rules", RULES])?;
    let text = read(RULES)?;
    let named = text
        .lines()
        .filter(|l| {
            value_of(l, "alert")
                .or_else(|| value_of(l, "record"))
                .is_some()
        })
        .count();
    // promtool's count and the line-based reading agree, so the other tests see every rule.
    ensure!(
        checked.contains(&format!("SUCCESS: {named} rules found")),
        "promtool and this test disagree on the rules in {RULES}: {:?}\n{checked}",
        rules(&text).keys()
    );
    let tested = promtool(&["test", "rules", RULE_TESTS])?;
    ensure!(tested.contains("SUCCESS"), "{tested}");
    Ok(())
}

#[test]
fn compatible_recording_rules_pass_promtool_check_and_their_own_tests() -> Result<()> {
    let checked = promtool(&["check", "rules", COMPAT])?;
    let text = read(COMPAT)?;
    let records: BTreeSet<&str> = text.lines().filter_map(|l| value_of(l, "record")).collect();
    // The names dashboards of x509-certificate-exporter and cert-manager query.
    for name in [
        "x509_cert_not_after",
        "x509_cert_not_before",
        "x509_cert_expired",
        "certmanager_certificate_expiration_timestamp_seconds",
        "certmanager_certificate_ready_status",
    ] {
        ensure!(records.contains(name), "{COMPAT} does not record {name}");
    }
    ensure!(
        checked.contains(&format!("SUCCESS: {} rules found", records.len())),
        "{checked}"
    );
    let tested = promtool(&["test", "rules", COMPAT_TESTS])?;
    ensure!(tested.contains("SUCCESS"), "{tested}");
    // Every recorded name is tested.
    let tests = read(COMPAT_TESTS)?;
    for name in records.iter().filter(|n| !n.contains(':')) {
        ensure!(
            tests.contains(&format!("- expr: {name}")),
            "{COMPAT_TESTS} has no promql_expr_test of {name}"
        );
    }
    Ok(())
}

#[test]
fn every_alert_has_a_severity_advice_and_a_test_where_it_fires_and_one_where_it_does_not()
-> Result<()> {
    let rules = rules(&read(RULES)?);
    let alerts: Vec<&String> = rules
        .iter()
        .filter(|(_, lines)| lines.iter().any(|l| value_of(l, "alert").is_some()))
        .map(|(name, _)| name)
        .collect();
    ensure!(
        alerts.len() >= 10,
        "too few alerts read from {RULES}: {alerts:?}"
    );
    for name in &alerts {
        let lines = &rules[*name];
        for key in ["severity", "summary", "description", "expr"] {
            ensure!(
                lines.iter().any(|l| value_of(l, key).is_some()),
                "alert {name} has no {key}:\n{}",
                lines.join("\n")
            );
        }
    }

    let covered = coverage(&read(RULE_TESTS)?);
    let mut missing = Vec::new();
    for name in &alerts {
        let seen = covered.get(*name);
        if !seen.is_some_and(|c| c.fires) {
            missing.push(format!("{name}: no case where it fires"));
        }
        if !seen.is_some_and(|c| c.quiet) {
            missing.push(format!("{name}: no case where it does not fire"));
        }
    }
    let unknown: Vec<&String> = covered.keys().filter(|n| !rules.contains_key(*n)).collect();
    ensure!(
        missing.is_empty() && unknown.is_empty(),
        "{RULE_TESTS} does not cover every alert of {RULES}:\n{}\ntests of alerts that do not exist: {unknown:?}",
        missing.join("\n")
    );
    Ok(())
}

#[test]
fn the_dashboard_has_a_uid_variables_and_a_query_on_the_chosen_data_source_per_panel() -> Result<()>
{
    let dashboard = read_dashboard()?;
    assert_eq!(dashboard["uid"], "certvakt");
    assert!(
        dashboard["id"].is_null(),
        "a fixed id clashes with the importing Grafana's own dashboards"
    );
    assert!(dashboard["schemaVersion"].as_u64() >= Some(36));
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));

    let variables = dashboard["templating"]["list"]
        .as_array()
        .context("templating.list")?;
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    let datasource = variable("datasource").context("no datasource variable")?;
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let instance = variable("instance").context("no instance variable")?;
    assert_eq!(instance["type"], "query");
    assert_eq!(
        instance["definition"],
        "label_values(certvakt_build_info, instance)"
    );
    assert_eq!(instance["datasource"]["uid"], "${datasource}");

    let mut ids = BTreeSet::new();
    let mut areas: Vec<(String, [u64; 4])> = Vec::new();
    let mut count = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        let id = panel["id"]
            .as_u64()
            .with_context(|| format!("{title}: id"))?;
        ensure!(ids.insert(id), "{title}: panel id {id} is used twice");
        if panel["type"] == "row" {
            continue;
        }
        count += 1;
        ensure!(!title.is_empty(), "panel {id} has no title");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        ensure!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            ensure!(!expr.trim().is_empty(), "{title}: a query without expr");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            ensure!(
                expr.contains("$instance"),
                "{title}: {expr} ignores the instance variable"
            );
        }
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap_or(0));
        ensure!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {grid}");
        for (other, [ox, oy, ow, oh]) in &areas {
            let apart = x + w <= *ox || *ox + *ow <= x || y + h <= *oy || *oy + *oh <= y;
            ensure!(apart, "panels {title:?} and {other:?} overlap");
        }
        areas.push((title.to_owned(), [x, y, w, h]));
    }
    ensure!(count >= 14, "only {count} panels");

    // Every query is valid PromQL once Grafana's variables are filled in: promtool checks
    // them as recording rules.
    let dir = tempfile::tempdir()?;
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, query) in dashboard_queries(&dashboard).iter().enumerate() {
        if query.starts_with("label_values(") {
            continue;
        }
        let expr = query
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1d")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{n}\n        expr: {}\n",
            serde_json::to_string(&expr)?
        ));
    }
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules)?;
    promtool(&["check", "rules", &file.display().to_string()])?;
    Ok(())
}

/// Starts a daemon that has done everything the metrics count: a renewal through the simca
/// plugin (plugin calls and their HTTP requests), one failed attempt (the CA is down for the
/// first request), a completed renewal, and a post hook that fails.
fn busy_daemon(dir: &Path) -> Result<(Daemon, SimCa)> {
    let bins = bins()?;
    harness::install_plugins(
        &bins,
        &dir.join("plugins"),
        &["certvakt-plugin-manual", "certvakt-plugin-simca"],
    )?;
    let sim = SimCa::start(
        "127.0.0.1:0".parse()?,
        SimCaConfig {
            issue_after: Duration::from_secs(1),
            ..SimCaConfig::default()
        },
    )?;
    let files = sim.write_files(&dir.join("sim"))?;
    sim.fail_next(1);
    let config = crate::renewal::simca_config(dir, &files, &sim.url())?;
    let text = std::fs::read_to_string(&config)?;
    let with_hook = text.replacen(
        "plugin = \"simca\"\n",
        "plugin = \"simca\"\npost_hook = [\"/bin/false\"]\n",
        1,
    );
    ensure!(with_hook != text, "no simca certificate in\n{text}");
    std::fs::write(&config, with_hook)?;
    let daemon = Daemon::start(&bins, &config, &[])?;
    Ok((daemon, sim))
}

#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_published_by_the_daemon() -> Result<()> {
    let mut used: BTreeMap<String, &str> = BTreeMap::new();
    for (file, text) in [
        (RULES, read(RULES)?),
        (RULE_TESTS, read(RULE_TESTS)?),
        (COMPAT, read(COMPAT)?),
        (COMPAT_TESTS, read(COMPAT_TESTS)?),
    ] {
        for name in metric_names(&text) {
            used.entry(name).or_insert(file);
        }
    }
    for query in dashboard_queries(&read_dashboard()?) {
        for name in metric_names(&query) {
            used.entry(name).or_insert(DASHBOARD);
        }
    }
    ensure!(used.len() >= 20, "too few metrics found: {used:?}");

    let dir = tempfile::tempdir()?;
    let (daemon, _sim) = busy_daemon(dir.path())?;
    let addr = daemon.metrics_addr()?;
    // Counters with labels appear once something happened to them: wait for the renewal,
    // its failure and the hook to have been counted.
    let mut last = String::new();
    let done = eventually(Duration::from_secs(40), "every used metric", || {
        let (_, text) = harness::http_get(&addr, "/metrics").ok()?;
        let published = published_names(&text);
        last = text;
        used.keys().all(|n| published.contains(n)).then_some(())
    });
    if done.is_err() {
        let published = published_names(&last);
        let missing: Vec<String> = used
            .iter()
            .filter(|(name, _)| !published.contains(*name))
            .map(|(name, file)| format!("{name} (used in {file})"))
            .collect();
        bail!(
            "the daemon does not publish these metrics:\n{}\n\n/metrics:\n{last}\n\ndaemon log:\n{}",
            missing.join("\n"),
            daemon.log_text()
        );
    }
    // The exposition with the info, warn_before and process series still passes promtool.
    promtool_check_metrics(&last)?;
    let published = published_names(&last);
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        ensure!(published.contains(name), "no {name} in\n{last}");
    }
    Ok(())
}

/// `promtool check metrics` on an exposition.
fn promtool_check_metrics(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("promtool is not installed: run scripts/test, which installs it (Debian package prometheus)")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    Ok(())
}

/// A daemon with one managed certificate (`shop`, plugin `manual`) whose file holds the leaf
/// and its chain (intermediate, root). `metrics_extra` is added to `[metrics]`.
pub(crate) fn shop_daemon(dir: &Path, metrics_extra: &str) -> Result<Daemon> {
    let bins = bins()?;
    harness::install_plugins(&bins, &dir.join("plugins"), &["certvakt-plugin-manual"])?;
    let ca = TestCa::new(CaShape::Tls)?;
    let issued = ca.issue(&LeafSpec::tls_server(&["shop.apotek.example"]))?;
    let cert = dir.join("shop.pem");
    let key = dir.join("shop.key");
    std::fs::write(&cert, format!("{}{}", issued.cert_pem, issued.chain_pem))?;
    std::fs::write(&key, &issued.key_pem)?;
    let body = format!(
        "[[certificate]]\nid = \"shop\"\ncert = \"{}\"\nkey = \"{}\"\nplugin = \"manual\"\n\n\
         [certificate.settings]\nca_name = \"Test CA\"\nsans = [\"DNS:shop.apotek.example\"]\n",
        cert.display(),
        key.display()
    );
    let text = harness::config_toml(dir, "127.0.0.1:0", &body).replacen(
        "listen = \"127.0.0.1:0\"\n",
        &format!("listen = \"127.0.0.1:0\"\n{metrics_extra}"),
        1,
    );
    let config = dir.join("certvakt.toml");
    std::fs::write(&config, text)?;
    Daemon::start(&bins, &config, &[])
}

#[test]
fn counters_exist_at_zero_and_chain_certificates_are_not_managed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let daemon = shop_daemon(dir.path(), "")?;
    let (_, text) = harness::http_get(&daemon.metrics_addr()?, "/metrics")?;
    for line in [
        r#"certvakt_renewals_total{id="shop"} 0"#,
        r#"certvakt_renewal_failures_total{id="shop",step="ordered"} 0"#,
        r#"certvakt_hook_failures_total{hook="deploy_hook",id="shop"} 0"#,
        r#"certvakt_plugin_crashes_total{plugin="manual",reason="segfault"} 0"#,
        "certvakt_warn_before_seconds 2592000",
    ] {
        ensure!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
    let info: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("certvakt_certificate_info{"))
        .collect();
    ensure!(info.len() == 3, "leaf, intermediate and root: {info:#?}");
    let of = |id: &str| {
        info.iter()
            .find(|l| l.contains(&format!("{{id=\"{id}\",")))
            .copied()
            .unwrap_or_default()
    };
    ensure!(
        of("shop").contains(r#"source="managed",plugin="manual",subject_cn="shop.apotek.example""#)
            && of("shop").contains(r#"role="leaf""#),
        "{info:#?}"
    );
    // The CA certificates of the file are watched, never the manual plugin's.
    ensure!(
        of("shop#1").contains(r#"source="watched",plugin="""#)
            && of("shop#1").contains(r#"role="intermediate""#),
        "{info:#?}"
    );
    ensure!(of("shop#2").contains(r#"role="root""#), "{info:#?}");
    ensure!(
        text.contains("certvakt_certificates{source=\"managed\"} 1\n"),
        "{text}"
    );
    promtool_check_metrics(&text)?;
    Ok(())
}

/// `curl` with `args`; its exit code and the HTTP status it printed (`-w '%{http_code}'`).
fn curl(args: &[&str]) -> Result<(i32, String)> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .context("curl is not installed")?;
    Ok((out.status.code().unwrap_or(-1), stdout(&out)))
}

#[test]
fn metrics_over_tls_with_basic_auth_from_a_web_config() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new(CaShape::Tls)?;
    let server = ca.issue(&LeafSpec::tls_server(&["localhost"]))?;
    std::fs::write(
        dir.path().join("metrics.pem"),
        format!("{}{}", server.cert_pem, server.chain_pem),
    )?;
    std::fs::write(dir.path().join("metrics.key"), &server.key_pem)?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.root_pem())?;
    let hash = bcrypt::hash("scrape-secret", 4)?;
    let web = dir.path().join("web-config.yml");
    std::fs::write(
        &web,
        format!(
            "# As the exporter toolkit writes it; paths relative to this file.\n\
             tls_server_config:\n  cert_file: metrics.pem\n  key_file: metrics.key\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )?;
    let daemon = shop_daemon(dir.path(), &format!("web_config = \"{}\"\n", web.display()))?;
    let addr = daemon.metrics_addr()?;
    let port = addr.rsplit(':').next().context("port")?;
    let url = format!("https://localhost:{port}/metrics");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca_arg = ca_file.display().to_string();
    let tls = |extra: &[&str]| -> Result<(i32, String)> {
        let mut args = vec!["--cacert", &ca_arg, "--resolve", &resolve];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };
    // No credentials, wrong ones, right ones.
    assert_eq!(tls(&[])?, (0, "401".into()));
    assert_eq!(tls(&["-u", "prometheus:wrong"])?, (0, "401".into()));
    assert_eq!(tls(&["-u", "nobody:scrape-secret"])?, (0, "401".into()));
    assert_eq!(tls(&["-u", "prometheus:scrape-secret"])?, (0, "200".into()));
    // Again, from the cache of verified passwords.
    assert_eq!(tls(&["-u", "prometheus:scrape-secret"])?, (0, "200".into()));
    // The challenge that makes clients send credentials.
    let out = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            &ca_arg,
            "--resolve",
            &resolve,
            &url,
        ])
        .output()?;
    ensure!(
        stdout(&out)
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{}",
        stdout(&out)
    );
    // The body is the exposition, and it passes promtool.
    let body = Command::new("curl")
        .args([
            "-sf",
            "--cacert",
            &ca_arg,
            "--resolve",
            &resolve,
            "-u",
            "prometheus:scrape-secret",
            &url,
        ])
        .output()?;
    ensure!(body.status.success(), "{}", stderr(&body));
    promtool_check_metrics(&stdout(&body))?;
    // Plain HTTP to the TLS port gets no metrics.
    let plain = harness::http_get(&addr, "/metrics");
    ensure!(
        plain.as_ref().map_or(true, |(code, text)| *code != 200
            && !text.contains("certvakt_")),
        "plain HTTP answered: {plain:?}"
    );
    // A client that does not trust the server's CA fails the handshake.
    let (code, _) = curl(&[
        "--resolve",
        &resolve,
        "-u",
        "prometheus:scrape-secret",
        &url,
    ])?;
    ensure!(code != 0, "curl without the CA succeeded");

    // A reload with a broken web config is refused, and TLS with auth keeps serving.
    std::fs::write(&web, "tls_server_config:\n  cert_file: metrics.pem\n")?;
    let out = daemon.cli(&["reload"])?;
    ensure!(
        !out.status.success(),
        "a reload with a broken web config was applied"
    );
    ensure!(
        stderr(&out).contains("tls_server_config.key_file")
            || stdout(&out).contains("tls_server_config.key_file"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(tls(&[])?, (0, "401".into()));
    assert_eq!(tls(&["-u", "prometheus:scrape-secret"])?, (0, "200".into()));
    // check-config names the same problem, with the file.
    let check = Command::new(&daemon.bins.certvaktd)
        .args(["check-config", "--config"])
        .arg(&daemon.config)
        .output()?;
    let said = format!("{}{}", stdout(&check), stderr(&check));
    ensure!(
        !check.status.success()
            && said.contains(&web.display().to_string())
            && said.contains("key_file"),
        "{said}"
    );
    Ok(())
}

/// `certvakt_engine_last_turn_timestamp_seconds` from `/metrics`.
fn engine_turn(daemon: &Daemon) -> Result<f64> {
    let (code, body) = harness::http_get(&daemon.metrics_addr()?, "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    body.lines()
        .find_map(|l| l.strip_prefix("certvakt_engine_last_turn_timestamp_seconds "))
        .context("no certvakt_engine_last_turn_timestamp_seconds in /metrics")?
        .parse()
        .context("its value")
}

/// An idle engine turns only hourly on its own; each scrape asks it for a turn (without
/// waiting for it), so the gauge the staleness alert reads keeps up with the scrapes.
#[test]
fn each_scrape_asks_the_idle_engine_for_a_turn() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, harness::config_toml(dir.path(), "127.0.0.1:0", ""))?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;
    std::thread::sleep(Duration::from_secs(2));
    let asked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as f64;
    let first = engine_turn(&daemon)?;
    assert!(
        first > 0.0 && first < asked_at,
        "the start's turn: {first} < {asked_at}"
    );
    let later = eventually(Duration::from_secs(10), "a turn after a scrape", || {
        std::thread::sleep(Duration::from_millis(200));
        let turn = engine_turn(&daemon).ok()?;
        (turn >= asked_at).then_some(turn)
    })
    .with_context(|| daemon.log_text())?;
    assert!(later >= asked_at, "{later}");
    Ok(())
}

/// Runs `amtool ARGS` (see [`tool`]).
fn amtool(args: &[&str]) -> Result<String> {
    tool("amtool", "prometheus-alertmanager", args)
}

/// The Alertmanager example is valid, and routes every shipped alert by its severity:
/// critical to the on-call receiver, warning to the desk, info nowhere.
#[test]
fn the_alertmanager_example_is_valid_and_routes_every_shipped_alert_by_severity() -> Result<()> {
    amtool(&["check-config", ALERTMANAGER])?;
    let mut seen = BTreeSet::new();
    for (name, lines) in rules(&read(RULES)?) {
        let severity = lines
            .iter()
            .find_map(|l| value_of(l, "severity"))
            .with_context(|| format!("{name}: no severity"))?
            .to_owned();
        let want = match severity.as_str() {
            "critical" => "on-call",
            "warning" => "integrator-desk",
            "info" => "nobody",
            other => bail!("{name}: severity {other} is not routed by the example"),
        };
        let got = amtool(&[
            "config",
            "routes",
            "test",
            "--config.file",
            ALERTMANAGER,
            &format!("alertname={name}"),
            &format!("severity={severity}"),
            "instance=pharmacy-01:9617",
            "job=certvakt",
        ])?;
        assert_eq!(got.trim(), want, "{name} ({severity})");
        seen.insert(severity);
    }
    assert!(seen.len() >= 2, "severities seen: {seen:?}");
    Ok(())
}
