//! A fleet: Debian's real Prometheus scrapes three real certvakt daemons, one per site, and
//! evaluates the shipped alert rules; its HTTP API must show exactly the alerts each site
//! deserves, labelled with the site (`instance`) and the certificate (`id`).
//!
//! The rules are the shipped file with every `for:` set to `0s` and the waiting task's two
//! hours set to none, so that the test need not wait hours; the expressions, labels and
//! annotations are the shipped ones.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually};
use certvakt_testkit::{CaShape, LeafSpec, TestCa};
use serde_json::Value;

use crate::common::bins;
use crate::engine::{example_certificate, example_dir};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/monitoring/certvakt-alerts.yml"
);

/// A Prometheus server of its own, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `targets` (job `certvakt`) every second and evaluates `rules` every second.
    fn start(dir: &Path, targets: &[String], rules: &Path) -> Result<Prometheus> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: certvakt\n    static_configs:\n      - targets: {targets}\n",
                rules = serde_json::to_string(&rules.display().to_string())?,
                targets = serde_json::to_string(targets)?,
            ),
        )?;
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context(
                "prometheus is not installed: run scripts/test, which installs it (Debian package prometheus)",
            )?;
        let prometheus = Prometheus {
            child,
            addr: format!("127.0.0.1:{port}"),
            log,
        };
        eventually(Duration::from_secs(30), "Prometheus to be ready", || {
            harness::http_get(&prometheus.addr, "/-/ready")
                .ok()
                .filter(|(code, _)| *code == 200)
        })
        .with_context(|| prometheus.log_text())?;
        Ok(prometheus)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The firing alerts: name, `instance` and `id` (empty when none).
    fn firing(&self) -> Result<BTreeSet<(String, String, String)>> {
        let (code, body) = harness::http_get(&self.addr, "/api/v1/alerts")?;
        ensure!(code == 200, "/api/v1/alerts answered {code}: {body}");
        let answer: Value = serde_json::from_str(&body)?;
        let label = |alert: &Value, name: &str| {
            alert["labels"][name]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        Ok(answer["data"]["alerts"]
            .as_array()
            .context("data.alerts")?
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| (label(a, "alertname"), label(a, "instance"), label(a, "id")))
            .collect())
    }
}

/// The shipped rules with no waiting: `for: 0s`, and a task counts as waiting at once.
fn rules_without_waiting(to: &Path) -> Result<()> {
    let shipped = std::fs::read_to_string(RULES)?;
    ensure!(
        shipped.contains("> 2 * 3600"),
        "the task age threshold moved"
    );
    let mut text = String::new();
    let mut fors = 0;
    for line in shipped.replace("> 2 * 3600", "> 0").lines() {
        if let Some(indent) = line
            .strip_suffix(line.trim_start())
            .filter(|_| line.trim_start().starts_with("for: "))
        {
            text.push_str(&format!("{indent}for: 0s\n"));
            fors += 1;
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    ensure!(fors >= 10, "only {fors} `for:` lines in the shipped rules");
    std::fs::write(to, text)?;
    Ok(())
}

/// A daemon watching one certificate file that expires in `days`.
fn watching(dir: &Path, ca: &TestCa, name: &str, days: i64) -> Result<(Daemon, String)> {
    let issued =
        ca.issue(&LeafSpec::tls_server(&[format!("{name}.apotek.example")]).expires_in_days(days))?;
    let files = issued.write_pem(&dir.join("certs"), name)?;
    let config = dir.join("certvakt.toml");
    std::fs::write(
        &config,
        config_toml(
            dir,
            "127.0.0.1:0",
            &format!(
                "[[watch]]\npaths = [{:?}]\n",
                files.cert.display().to_string()
            ),
        ),
    )?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;
    Ok((daemon, files.cert.display().to_string()))
}

#[test]
fn prometheus_fires_exactly_each_sites_alerts_with_the_site_and_the_certificate() -> Result<()> {
    let ca = TestCa::new(CaShape::Tls)?;
    // Site A: all well. Site B: a certificate nothing renews, expiring in 10 days (within
    // warn_before, 30 days). Site C: a renewal whose step opens a task, then fails.
    let a_dir = tempfile::tempdir()?;
    let (a, _) = watching(a_dir.path(), &ca, "healthy", 365)?;
    let b_dir = tempfile::tempdir()?;
    let (b, b_cert) = watching(b_dir.path(), &ca, "soon", 10)?;
    let (c_dir, c_config) = example_dir(|dir| {
        example_certificate(
            dir,
            "shop",
            "test_task_in = \"issue\"\ntest_fail_in = \"issue\"",
        )
    })?;
    let c = Daemon::start(&bins()?, &c_config, &[])?;
    let sites = [a.metrics_addr()?, b.metrics_addr()?, c.metrics_addr()?];

    let prom_dir = tempfile::tempdir()?;
    let rules = prom_dir.path().join("rules.yml");
    rules_without_waiting(&rules)?;
    let prometheus = Prometheus::start(prom_dir.path(), &sites, &rules)?;

    let expected: BTreeSet<(String, String, String)> = [
        (
            "CertvaktCertificateExpiringSoon",
            &sites[1],
            b_cert.as_str(),
        ),
        ("CertvaktTaskPending", &sites[2], "shop"),
        ("CertvaktRenewalFailing", &sites[2], "shop"),
    ]
    .into_iter()
    .map(|(alert, site, id)| (alert.to_owned(), site.clone(), id.to_owned()))
    .collect();
    let mut last = BTreeSet::new();
    let reached = eventually(
        Duration::from_secs(60),
        "the expected alerts to fire",
        || {
            last = prometheus.firing().ok()?;
            expected.is_subset(&last).then_some(())
        },
    );
    reached.with_context(|| {
        format!(
            "firing: {last:#?}\nsite C's log:\n{}\nprometheus:\n{}",
            c.log_text(),
            prometheus.log_text()
        )
    })?;
    // A few more evaluations: nothing else fires, for any site.
    std::thread::sleep(Duration::from_secs(3));
    let firing = prometheus.firing()?;
    assert_eq!(firing, expected, "site A is {}", sites[0]);
    drop(c_dir);
    Ok(())
}
