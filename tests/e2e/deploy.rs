//! The verified deploy end to end: the real daemon renews through the `manual` plugin, installs,
//! runs the deploy hook, and then probes a real TLS service on loopback ([`Site`]) that serves
//! the live files the way nginx does: read at start, read again on reload.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use certvakt::control::protocol::{Outcome, Phase, Response};
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually};
use certvakt_testkit::site::{Site, SiteFiles};
use certvakt_testkit::smtp::{SmtpOptions, SmtpSink};
use certvakt_testkit::{CaShape, IssuedCert, LeafSpec, TestCa};

use crate::common::{WAIT, bins, stderr, stdout};
use crate::renewal::answer_the_order;

const NAME: &str = "apotek-test.example";

/// A managed certificate in use (issued by the test CA before certvakt), renewed by the
/// `manual` plugin, with one `[[certificate.verify]]` endpoint.
struct Setup {
    dir: tempfile::TempDir,
    ca: TestCa,
    own: IssuedCert,
    cert: PathBuf,
    key: PathBuf,
    /// What the site's reload reads (a deploy hook `touch`es it).
    reload: PathBuf,
    hook_log: PathBuf,
}

impl Setup {
    fn new() -> Result<Setup> {
        let dir = tempfile::tempdir()?;
        harness::install_plugins(
            &bins()?,
            &dir.path().join("plugins"),
            &["certvakt-plugin-manual"],
        )?;
        let live = dir.path().join("live");
        std::fs::create_dir_all(&live)?;
        let ca = TestCa::new(CaShape::Tls)?;
        let own = ca.issue(&LeafSpec::tls_server(&[NAME]))?;
        let (cert, key) = (live.join("web.pem"), live.join("web.key"));
        std::fs::write(&cert, &own.cert_pem)?;
        std::fs::write(&key, &own.key_pem)?;
        Ok(Setup {
            reload: dir.path().join("reload"),
            hook_log: dir.path().join("hook.log"),
            dir,
            ca,
            own,
            cert,
            key,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn live_site(&self) -> Result<Site> {
        Site::start(SiteFiles::Live {
            cert: self.cert.clone(),
            key: self.key.clone(),
            reload: self.reload.clone(),
        })
    }

    /// Starts the daemon with `site` as the endpoint; `extra` goes into the `[[certificate]]`.
    fn start(&self, site: &Site, extra: &str) -> Result<Daemon> {
        self.start_probing(site.address(), "", extra)
    }

    /// Starts the daemon with the endpoint at `address` (spoken to with `starttls`, a line of
    /// its own, when not empty).
    fn start_probing(&self, address: &str, starttls: &str, extra: &str) -> Result<Daemon> {
        let body = format!(
            r#"[[certificate]]
id = "web"
cert = "{cert}"
key = "{key}"
plugin = "manual"
{extra}

[certificate.settings]
ca_name = "Test CA"
subject = [{{ attribute = "CN", value = "{NAME}" }}]
sans = ["DNS:{NAME}"]
key_type = "ec-p256"

[[certificate.verify]]
address = "{address}"
sni = "{NAME}"
{starttls}
"#,
            cert = self.cert.display(),
            key = self.key.display(),
        );
        let config = self.path().join("certvakt.toml");
        std::fs::write(&config, config_toml(self.path(), "127.0.0.1:0", &body))?;
        Daemon::start(&bins()?, &config, &[])
    }

    /// `renew --force`, then the CA's part: the new certificate is imported.
    fn renew(&self, daemon: &Daemon) -> Result<()> {
        let out = daemon.cli(&["renew", "web", "--force"])?;
        ensure!(out.status.success(), "{}", stderr(&out));
        let out = answer_the_order(daemon, &self.ca, self.path())?;
        ensure!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        Ok(())
    }

    /// A hook line that logs the outcome and the new serial.
    fn logging_hook(&self, also: &str) -> String {
        format!(
            r#"deploy_hook = ["/bin/sh", "-c", "echo \"$CERTVAKT_OUTCOME $CERTVAKT_NEW_SERIAL\" >> {log}{also}"]"#,
            log = self.hook_log.display()
        )
    }
}

fn history(daemon: &Daemon) -> Result<Vec<certvakt::control::protocol::HistoryEntry>> {
    match daemon.cli_typed::<Response>(&["history", "web"])?.1 {
        Response::History { entries, .. } => Ok(entries),
        other => anyhow::bail!("not a history answer: {other:?}"),
    }
}

fn verified_failures(daemon: &Daemon) -> Result<u64> {
    let (_, metrics) = harness::http_get(&daemon.metrics_addr()?, "/metrics")?;
    let line = r#"certvakt_renewal_failures_total{id="web",step="verified"} "#;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .context("no verified-step failure counter")?
        .parse()
        .context("the counter's value")
}

#[test]
fn a_service_reloaded_by_the_deploy_hook_is_verified_and_the_run_completes() -> Result<()> {
    let setup = Setup::new()?;
    let site = setup.live_site()?;
    let hook = setup.logging_hook(&format!("; touch {}", setup.reload.display()));
    let daemon = setup.start(&site, &format!("{hook}\nverify_window = \"30s\""))?;
    setup.renew(&daemon)?;
    eventually(WAIT, "the run to complete", || {
        let r = daemon.renewal("web").ok()??;
        (r.phase.is_none() && r.last_success.is_some()).then_some(())
    })
    .with_context(|| daemon.log_text())?;
    // Read at the first probe, then again after the hook's reload: the new certificate.
    assert_eq!(site.loads(), 2);
    assert!(
        daemon
            .log_text()
            .contains("every endpoint serves the new certificate")
    );
    assert_eq!(verified_failures(&daemon)?, 0);
    assert!(daemon.tasks()?.is_empty());
    let entries = history(&daemon)?;
    assert_eq!(entries.last().map(|e| e.outcome), Some(Outcome::Completed));
    Ok(())
}

#[test]
fn a_service_that_is_not_reloaded_fails_the_verified_step_until_a_person_reloads_it() -> Result<()>
{
    let setup = Setup::new()?;
    let site = setup.live_site()?;
    let daemon = setup.start(&site, "verify_window = \"2s\"")?;
    setup.renew(&daemon)?;
    // The service still serves the old certificate: after the window, the step fails, says
    // what is served, and hands the reload to a person.
    let renewal = eventually(WAIT, "the verified step to fail", || {
        let r = daemon.renewal("web").ok()??;
        r.last_error.is_some().then_some(r)
    })
    .with_context(|| daemon.log_text())?;
    let error = renewal.last_error.clone().unwrap_or_default();
    assert_eq!(renewal.phase, Some(Phase::Installed), "{renewal:#?}");
    let old_serial = certvakt::lifecycle::import::facts(&setup.own.cert_der)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .serial;
    assert!(error.contains("is not what is served"), "{error}");
    assert!(
        error.contains(&format!("{} (SNI {NAME}) serves CN={NAME}", site.address())),
        "{error}"
    );
    assert!(error.contains(&format!("serial {old_serial}")), "{error}");
    assert!(error.contains("valid until "), "{error}");
    assert_eq!(verified_failures(&daemon)?, 1);
    let task = daemon
        .tasks()?
        .into_iter()
        .find(|t| t.title.contains("installed but not served"))
        .with_context(|| format!("no task: {:#?}", daemon.tasks()))?;
    assert!(
        task.instructions.contains(site.address()),
        "{}",
        task.instructions
    );
    // The live files are the new certificate all along: nothing was rolled back.
    assert_ne!(std::fs::read_to_string(&setup.cert)?, setup.own.cert_pem);

    // The person reloads the service and says so: the endpoint is probed at once.
    std::fs::write(&setup.reload, "")?;
    let out = daemon.cli(&["task", "done", &task.id])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(WAIT, "the run to complete", || {
        let r = daemon.renewal("web").ok()??;
        r.phase.is_none().then_some(())
    })
    .with_context(|| daemon.log_text())?;
    assert!(daemon.tasks()?.is_empty());
    assert_eq!(site.loads(), 2);
    Ok(())
}

#[test]
fn a_mail_server_is_read_over_smtp_starttls_and_named_with_what_it_serves() -> Result<()> {
    let setup = Setup::new()?;
    // Debian's aiosmtpd with STARTTLS, serving the certificate in use: not reloaded.
    let mail = SmtpSink::start(SmtpOptions::starttls(&setup.own))?;
    let address = format!("127.0.0.1:{}", mail.port());
    let daemon = setup.start_probing(&address, "starttls = \"smtp\"", "verify_window = \"1s\"")?;
    setup.renew(&daemon)?;
    let renewal = eventually(WAIT, "the verified step to fail", || {
        let r = daemon.renewal("web").ok()??;
        r.last_error.is_some().then_some(r)
    })
    .with_context(|| daemon.log_text())?;
    let error = renewal.last_error.unwrap_or_default();
    let old_serial = certvakt::lifecycle::import::facts(&setup.own.cert_der)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .serial;
    assert!(
        error.contains(&format!(
            "{address} (SNI {NAME}) (STARTTLS smtp) serves CN={NAME} (serial {old_serial}"
        )),
        "{error}"
    );
    // The server saw a plain EHLO, then the handshake (no mail).
    let ehlo = mail
        .commands()
        .into_iter()
        .find(|c| c.verb == "EHLO")
        .context("no EHLO reached the mail server")?;
    assert_eq!(ehlo.arg.as_deref(), Some("certvakt.invalid"));
    assert!(!ehlo.tls);
    assert!(mail.messages().is_empty());
    Ok(())
}

#[test]
fn a_service_serving_the_wrong_certificate_is_rolled_back_when_asked() -> Result<()> {
    let setup = Setup::new()?;
    let wrong = setup.ca.issue(&LeafSpec::tls_server(&[NAME]))?;
    let site = Site::start(SiteFiles::Fixed {
        cert_pem: wrong.cert_pem.clone(),
        key_pem: wrong.key_pem.clone(),
    })?;
    let hook = setup.logging_hook("");
    let extra = format!("{hook}\nverify_window = \"2s\"\nrollback_on_failed_verify = true");
    let daemon = setup.start(&site, &extra)?;
    setup.renew(&daemon)?;
    let renewal = eventually(WAIT, "the rollback", || {
        let r = daemon.renewal("web").ok()??;
        (r.phase == Some(Phase::Registered) && r.last_error.is_some()).then_some(r)
    })
    .with_context(|| daemon.log_text())?;
    let error = renewal.last_error.unwrap_or_default();
    let wrong_serial = certvakt::lifecycle::import::facts(&wrong.cert_der)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .serial;
    assert!(error.contains(&format!("serial {wrong_serial}")), "{error}");
    assert!(
        error.contains("put version 2 (the previous certificate) back"),
        "{error}"
    );
    // The pair in use before (kept as version 2 at the install; the new one was staged as
    // version 1) is live again, and the service was told (the hook ran twice:
    // after the install, then after the rollback).
    assert_eq!(std::fs::read_to_string(&setup.cert)?, setup.own.cert_pem);
    assert_eq!(std::fs::read_to_string(&setup.key)?, setup.own.key_pem);
    let hooks = std::fs::read_to_string(&setup.hook_log)?;
    let outcomes: Vec<&str> = hooks.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(outcomes, ["success", "rollback"], "{hooks}");
    let entries = history(&daemon)?;
    let last = entries.last().context("no history")?;
    assert_eq!(last.outcome, Outcome::RolledBack, "{entries:#?}");
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains(&wrong_serial)),
        "{last:?}"
    );
    assert!(
        daemon
            .tasks()?
            .iter()
            .any(|t| t.title.contains("was rolled back")),
        "{:#?}",
        daemon.tasks()
    );
    assert_eq!(verified_failures(&daemon)?, 1);

    // The crash window: killed after the rollback, before the record saying so reached the
    // disk. The saved record still says "installed"; the restart must not roll back again
    // (that would put the new certificate back), only go back to before the install.
    daemon.signal("KILL")?;
    drop(daemon);
    let state = setup.path().join("state/certs/web/state.json");
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state)?)?;
    record["run"]["phase"] = "installed".into();
    record["retry_at"] = serde_json::Value::Null;
    std::fs::write(&state, serde_json::to_vec_pretty(&record)?)?;
    let daemon = setup.start(&site, &extra)?;
    eventually(WAIT, "the run to be back before its install", || {
        let r = daemon.renewal("web").ok()??;
        (r.phase == Some(Phase::Registered)).then_some(())
    })
    .with_context(|| daemon.log_text())?;
    assert_eq!(std::fs::read_to_string(&setup.cert)?, setup.own.cert_pem);
    // What the restart says is still true: the previous version is back, and a person is
    // asked to install again (the same task, not a second one).
    let renewal = daemon.renewal("web")?.context("no renewal")?;
    let error = renewal.last_error.unwrap_or_default();
    assert!(
        error.contains("put version 2 (the previous certificate) back"),
        "{error}"
    );
    let rolled_back_tasks = daemon
        .tasks()?
        .iter()
        .filter(|t| t.title.contains("was rolled back"))
        .count();
    assert_eq!(rolled_back_tasks, 1);
    let rollbacks = history(&daemon)?
        .iter()
        .filter(|e| e.outcome == Outcome::RolledBack)
        .count();
    assert_eq!(rollbacks, 1, "rolled back once, not twice");
    Ok(())
}
