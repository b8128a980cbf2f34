//! Renewal end to end: the real daemon, the real `manual` plugin loaded from disk, a CA that
//! is a test CA signing the CSR from the operator task, the real CLI importing the result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use certvakt::control::protocol::{Completion, KeyCheck, Phase, Task};
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually};
use certvakt_testkit::{CaShape, TestCa};

use crate::common::{WAIT, bins, pair_matches, stderr, stdout};

/// A folder with a plugin dir holding the manual plugin, live paths that do not exist yet,
/// and a configuration for one managed certificate renewed by it.
pub struct ManualSetup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fullchain: PathBuf,
    pub hook_log: PathBuf,
}

impl ManualSetup {
    pub fn new() -> Result<ManualSetup> {
        let dir = tempfile::tempdir()?;
        let bins = bins()?;
        harness::install_plugins(
            &bins,
            &dir.path().join("plugins"),
            &["certvakt-plugin-manual"],
        )?;
        let live = dir.path().join("live");
        let (cert, key, fullchain) = (
            live.join("web.pem"),
            live.join("web.key"),
            live.join("web-fullchain.pem"),
        );
        let hook_log = dir.path().join("deploy-hook.log");
        let body = format!(
            r#"[[certificate]]
id = "web"
cert = "{cert}"
key = "{key}"
fullchain = "{fullchain}"
plugin = "manual"
deploy_hook = ["/bin/sh", "-c", "echo \"$CERTVAKT_CERT_ID $CERTVAKT_NEW_SERIAL\" >> {hook}"]

[certificate.settings]
ca_name = "Test CA"
subject = [{{ attribute = "CN", value = "apotek-test.example" }}, {{ attribute = "O", value = "Hjørring Apotek" }}]
sans = ["DNS:apotek-test.example"]
key_type = "ec-p256"
"#,
            cert = cert.display(),
            key = key.display(),
            fullchain = fullchain.display(),
            hook = hook_log.display(),
        );
        let config = dir.path().join("certvakt.toml");
        std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:0", &body))?;
        Ok(ManualSetup {
            dir,
            config,
            cert,
            key,
            fullchain,
            hook_log,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Plays the CA: takes the CSR from the task's files, signs it, writes the certificate to a
/// file, and imports it with the CLI.
pub fn answer_the_order(daemon: &Daemon, ca: &TestCa, work: &Path) -> Result<std::process::Output> {
    let task = eventually(WAIT, "an operator task to order the certificate", || {
        daemon
            .tasks()
            .ok()?
            .into_iter()
            .find(|t| t.cert_id == "web")
    })?;
    let issued = ca.issue_from_csr(&task_csr(&task)?, |_| {})?;
    let chain = format!("{}{}", issued.pem, issued.chain_pem);
    import_file(daemon, work, "web", "issued.pem", chain.as_bytes(), None)
}

/// The CSR (PEM) among an order task's files.
pub fn task_csr(task: &Task) -> Result<String> {
    let file = task
        .files
        .iter()
        .find(|f| f.extension() == Some("csr".as_ref()))
        .with_context(|| format!("no CSR among the task's files {:?}", task.files))?;
    Ok(std::fs::read_to_string(file)?)
}

/// Writes `bytes` to `dir/name` and imports it for `id` with the CLI; with `password`, as a
/// PKCS#12 whose password is written beside it for `--password-file`.
pub fn import_file(
    daemon: &Daemon,
    dir: &Path,
    id: &str,
    name: &str,
    bytes: &[u8],
    password: Option<&str>,
) -> Result<std::process::Output> {
    let file = dir.join(name);
    std::fs::write(&file, bytes)?;
    let file = file.display().to_string();
    let mut args = vec!["import", id, file.as_str()];
    let password_file = dir.join(format!("{name}.pass")).display().to_string();
    if let Some(password) = password {
        std::fs::write(&password_file, password)?;
        args.extend(["--password-file", password_file.as_str()]);
    }
    // A command for a certificate whose step is being taken is refused at once as busy; an
    // operator sends it again, and so does this helper (for at most WAIT).
    let started = std::time::Instant::now();
    loop {
        let out = daemon.cli(&args)?;
        let busy = String::from_utf8_lossy(&out.stderr).contains("in the middle of a step");
        if !busy || started.elapsed() > WAIT {
            return Ok(out);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_first_certificate_is_ordered_through_a_task_imported_and_installed() -> Result<()> {
    let setup = ManualSetup::new()?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let ca = TestCa::new(CaShape::Tls)?;

    // The plugin is loaded, and the first issue started by itself.
    let (_, plugins) = daemon.plugins()?;
    assert_eq!(plugins.loaded[0].name, "manual", "{plugins:#?}");
    let task = eventually(WAIT, "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })?;
    assert_eq!(task.completes_by, Completion::Import);
    let shown = daemon.cli(&["task", "show", &task.id])?;
    let text = stdout(&shown);
    assert!(text.contains("certvakt import web"), "{text}");
    assert!(text.contains("Test CA"), "{text}");
    let (code, status) = daemon.status()?;
    assert!(code >= 1, "a pending task is at least a warning");
    assert_eq!(
        status.renewals[0].phase,
        Some(Phase::Ordered),
        "{status:#?}"
    );
    let (_, metrics) = harness::http_get(&daemon.metrics_addr()?, "/metrics")?;
    assert!(
        metrics.contains("certvakt_tasks_pending{id=\"web\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certvakt_renewal_step{id=\"web\",step=\"ordered\"} 1"),
        "{metrics}"
    );

    // A certificate for another key is refused, and nothing is installed.
    let stranger = ca.issue(&certvakt_testkit::LeafSpec::tls_server(&[
        "apotek-test.example",
    ]))?;
    let wrong = setup.path().join("wrong.pem");
    std::fs::write(&wrong, &stranger.cert_pem)?;
    let out = daemon.cli(&["import", "web", &wrong.display().to_string()])?;
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("pending key"), "{}", stderr(&out));
    assert!(!setup.cert.exists());

    // The right one is accepted; registration, install, verification and retirement follow.
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let done = eventually(WAIT, "the renewal to complete", || {
        let r = daemon.renewal("web").ok()??;
        (r.phase.is_none() && r.last_success.is_some()).then_some(())
    });
    if let Err(e) = done {
        bail!("{e}\n{}", daemon.log_text());
    }
    assert!(
        pair_matches(&setup.cert, &setup.key)?,
        "live key and certificate belong together"
    );
    let fullchain = std::fs::read_to_string(&setup.fullchain)?;
    assert_eq!(
        fullchain.matches("BEGIN CERTIFICATE").count(),
        3,
        "leaf + intermediate + root"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&setup.key)?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    let hook = std::fs::read_to_string(&setup.hook_log)?;
    assert!(
        hook.starts_with("web "),
        "deploy hook ran with the id: {hook:?}"
    );
    assert!(daemon.tasks()?.is_empty());
    let (_, metrics) = harness::http_get(&daemon.metrics_addr()?, "/metrics")?;
    assert!(
        metrics.contains("certvakt_renewals_total{id=\"web\"} 1"),
        "{metrics}"
    );
    // The inventory sees the new live certificate with a matching key.
    eventually(WAIT, "the inventory to see the new certificate", || {
        let (_, shown) = daemon.show("web").ok()?;
        (shown.entries.first()?.key_check == KeyCheck::Matches).then_some(())
    })?;
    Ok(())
}

#[test]
fn a_forced_renewal_makes_a_new_key_and_rollback_returns_to_the_old_pair() -> Result<()> {
    let setup = ManualSetup::new()?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let ca = TestCa::new(CaShape::Tls)?;
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "the first issue to complete", || {
        daemon.renewal("web").ok()??.last_success.map(|_| ())
    })?;
    let first_key = std::fs::read(&setup.key)?;
    let first_cert = std::fs::read(&setup.cert)?;

    // Not due: renew says so and does nothing; --force starts one.
    let out = daemon.cli(&["renew", "web"])?;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("not due"), "{}", stdout(&out));
    let out = daemon.cli(&["renew", "web", "--force"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "the second run to complete", || {
        let r = daemon.renewal("web").ok()??;
        (r.phase.is_none() && std::fs::read(&setup.key).ok()? != first_key).then_some(())
    })?;
    assert!(pair_matches(&setup.cert, &setup.key)?);

    let out = daemon.cli(&["rollback", "web"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(&setup.key)?, first_key);
    assert_eq!(std::fs::read(&setup.cert)?, first_cert);
    Ok(())
}

#[test]
fn renew_wait_stops_at_the_order_task_and_after_the_import_follows_the_run_to_its_end() -> Result<()>
{
    let setup = ManualSetup::new()?;
    // An overlap holds the run at `verified` for a while after the import, so the second
    // `renew --wait` finds it in progress however fast the steps before it went.
    let text = std::fs::read_to_string(&setup.config)?.replace(
        "plugin = \"manual\"\n",
        "plugin = \"manual\"\noverlap = \"8s\"\n",
    );
    std::fs::write(&setup.config, text)?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let ca = TestCa::new(CaShape::Tls)?;

    // The first issue starts by itself. (While the engine decides whether to start a run, a
    // command for the certificate is refused at once as busy: wait until the run shows.)
    eventually(WAIT, "the first issue to start", || {
        daemon.renewal("web").ok()??.phase.map(|_| ())
    })?;
    // The run is followed to the order task, and the CLI says which task and how to complete
    // it.
    let out = daemon.cli(&["renew", "web", "--force", "--wait", "--timeout", "1m"])?;
    let (said, progress) = (stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(1), "{progress}{said}");
    assert!(progress.contains("web: ordered\n"), "{progress}");
    let task = daemon
        .tasks()?
        .into_iter()
        .next()
        .context("the order task")?;
    assert!(
        said.contains(&format!(
            "the renewal of web waits for a person: task {} \"{}\"",
            task.id, task.title
        )),
        "{said}"
    );
    assert!(said.contains("`certvakt import web FILE`"), "{said}");

    // After the import, the run in progress is followed to its end.
    let issued = ca.issue_from_csr(&task_csr(&task)?, |_| {})?;
    let chain = format!("{}{}", issued.pem, issued.chain_pem);
    // The renew above made the engine poll the order at once: while that step is being taken
    // an import is refused at once as busy, and is sent again, as an operator would.
    let imported = eventually(WAIT, "the import to be taken", || {
        let out = import_file(
            &daemon,
            setup.path(),
            "web",
            "issued.pem",
            chain.as_bytes(),
            None,
        )
        .ok()?;
        (out.status.success() || !stderr(&out).contains("in the middle of a step")).then_some(out)
    })?;
    ensure!(imported.status.success(), "import: {}", stderr(&imported));
    let out = daemon.cli(&["renew", "web", "--wait", "--timeout", "1m"])?;
    let (said, progress) = (stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(0), "{progress}{said}");
    let verified = progress.find("web: verified\n");
    let retired = progress.find("web: retired\n");
    let completed = progress.find("renewal of web completed at ");
    assert!(
        verified.is_some() && verified < retired && retired < completed,
        "every step in order, then the end: {progress}"
    );
    let renewal = daemon.renewal("web")?.context("web's renewal")?;
    assert!(
        renewal.phase.is_none() && renewal.last_success.is_some(),
        "{renewal:?}"
    );
    assert!(pair_matches(&setup.cert, &setup.key)?);
    Ok(())
}

/// Kills the daemon with SIGKILL right after each step of a run is saved, restarts it, and
/// checks that no key is lost, the live pair always matches, and the run completes.
#[test]
fn a_kill_9_after_any_step_resumes_without_losing_a_key() -> Result<()> {
    let bins = bins()?;
    let steps = [
        "due",
        "key_generated",
        "ordered",
        "issued",
        "registered",
        "installed",
        "verified",
    ];
    for step in steps {
        let setup = ManualSetup::new()?;
        let ca = TestCa::new(CaShape::Tls)?;
        // A first certificate, so there is a live pair to protect.
        {
            let daemon = Daemon::start(&bins, &setup.config, &[])?;
            let out = answer_the_order(&daemon, &ca, setup.path())?;
            ensure!(out.status.success(), "{}", stderr(&out));
            eventually(WAIT, "the first issue", || {
                daemon.renewal("web").ok()??.last_success.map(|_| ())
            })?;
        }
        let old_key = std::fs::read(&setup.key)?;

        let daemon = Daemon::start(
            &bins,
            &setup.config,
            &[(certvakt::lifecycle::PAUSE_ENV, step)],
        )?;
        let out = daemon.cli(&["renew", "web", "--force"])?;
        ensure!(out.status.success(), "{step}: {}", stderr(&out));
        if step != "due" && step != "key_generated" && step != "ordered" {
            let out = answer_the_order(&daemon, &ca, setup.path())?;
            ensure!(out.status.success(), "{step}: {}", stderr(&out));
        }
        eventually(
            Duration::from_secs(30),
            &format!("the engine to pause after {step}"),
            || {
                daemon
                    .log_text()
                    .contains(&format!("paused after step {step}"))
                    .then_some(())
            },
        )?;
        daemon.signal("KILL")?;
        drop(daemon);

        // Right after the kill: the live pair matches, and the key of the run is on disk.
        ensure!(
            pair_matches(&setup.cert, &setup.key)?,
            "{step}: live pair split by the kill"
        );
        let pending = setup.path().join("state/certs/web/pending-key.pem");
        if step != "due" {
            ensure!(
                pending.exists() || std::fs::read(&setup.key)? != old_key,
                "{step}: the new key is neither pending nor live"
            );
        }

        // Restart without the hook: the run resumes and completes.
        let daemon = Daemon::start(&bins, &setup.config, &[])?;
        if step == "due" || step == "key_generated" || step == "ordered" {
            let out = answer_the_order(&daemon, &ca, setup.path())?;
            ensure!(out.status.success(), "{step}: {}", stderr(&out));
        }
        let done = eventually(
            WAIT,
            &format!("the run to complete after a kill after {step}"),
            || {
                let r = daemon.renewal("web").ok()??;
                (r.phase.is_none() && r.failures == 0).then_some(())
            },
        );
        if let Err(e) = done {
            bail!("{e}\n{}", daemon.log_text());
        }
        ensure!(
            pair_matches(&setup.cert, &setup.key)?,
            "{step}: pair after resume"
        );
        ensure!(
            std::fs::read(&setup.key)? != old_key,
            "{step}: the renewal made a new key"
        );
        ensure!(
            !pending.exists(),
            "{step}: the pending key is cleaned up once installed"
        );
    }
    Ok(())
}

/// Writes a configuration for two managed certificates: the sim CA's client identity (kept by
/// the manual plugin, never due) and `web`, renewed by the simca plugin over mutual TLS.
pub fn simca_config(
    dir: &Path,
    files: &certvakt_testkit::simca::SimCaFiles,
    url: &str,
) -> Result<PathBuf> {
    let body = format!(
        r#"[trust]
simca = ["{server_ca}"]

[[certificate]]
id = "simca-client"
cert = "{client_cert}"
key = "{client_key}"
plugin = "manual"
[certificate.settings]
ca_name = "the sim CA's client CA"

[[certificate]]
id = "web"
cert = "{dir}/live/web.pem"
key = "{dir}/live/web.key"
fullchain = "{dir}/live/web-fullchain.pem"
plugin = "simca"
[certificate.settings]
url = "{url}"
trust = "simca"
identity = "simca-client"
subject = [{{ attribute = "CN", value = "apotek-test.example" }}]
sans = ["DNS:apotek-test.example"]
"#,
        server_ca = files.server_ca.display(),
        client_cert = files.client.fullchain.display(),
        client_key = files.client.key.display(),
        dir = dir.display(),
    );
    let text = config_toml(dir, "127.0.0.1:0", &body).replace(
        "log_level = \"debug\"",
        "log_level = \"debug\"\nretry_initial = \"1s\"\nretry_max = \"3s\"",
    );
    let config = dir.join("certvakt.toml");
    std::fs::write(&config, text)?;
    Ok(config)
}

#[test]
fn a_ca_with_an_api_issues_renews_on_schedule_and_failures_back_off() -> Result<()> {
    use certvakt_testkit::simca::{SimCa, SimCaConfig};

    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-manual", "certvakt-plugin-simca"],
    )?;
    let sim = SimCa::start(
        "127.0.0.1:0".parse()?,
        SimCaConfig {
            issue_after: Duration::from_secs(1),
            validity: Duration::from_secs(30),
            ..SimCaConfig::default()
        },
    )?;
    let files = sim.write_files(&dir.path().join("sim"))?;
    // The CA is down for the first requests: the engine must back off, show it, and recover.
    sim.fail_next(2);
    let config = simca_config(dir.path(), &files, &sim.url())?;
    let daemon = Daemon::start(&bins, &config, &[])?;

    let failing = eventually(WAIT, "the failure to show", || {
        let web = daemon.renewal("web").ok()??;
        (web.failures >= 1).then(|| web.last_error.unwrap_or_default())
    })?;
    assert!(
        failing.contains("503") || failing.contains("temporar"),
        "{failing}"
    );
    let (_, metrics) = harness::http_get(&daemon.metrics_addr()?, "/metrics")?;
    assert!(
        // Counted: some step's counter (all exist at 0 from the start) has moved.
        metrics.lines().any(
            |l| l.starts_with("certvakt_renewal_failures_total{id=\"web\"") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    let first = eventually(Duration::from_secs(40), "the first certificate", || {
        let web = daemon.renewal("web").ok()??;
        (web.last_success.is_some() && web.failures == 0).then_some(())?;
        std::fs::read(dir.path().join("live/web.pem")).ok()
    });
    let first = match first {
        Ok(first) => first,
        Err(e) => bail!("{e}\n{}", daemon.log_text()),
    };
    assert!(pair_matches(
        &dir.path().join("live/web.pem"),
        &dir.path().join("live/web.key")
    )?);

    // 30-second certificates renew at two thirds of their life, by themselves.
    let renewed = eventually(Duration::from_secs(60), "the scheduled renewal", || {
        let now = std::fs::read(dir.path().join("live/web.pem")).ok()?;
        (now != first).then_some(())
    });
    if let Err(e) = renewed {
        bail!("{e}\n{}", daemon.log_text());
    }
    eventually(WAIT, "the second run to finish", || {
        let (_, metrics) = harness::http_get(&daemon.metrics_addr().ok()?, "/metrics").ok()?;
        metrics
            .contains("certvakt_renewals_total{id=\"web\"} 2")
            .then_some(())
    })?;
    assert!(pair_matches(
        &dir.path().join("live/web.pem"),
        &dir.path().join("live/web.key")
    )?);
    assert!(sim.orders_placed() >= 2, "orders: {}", sim.orders_placed());
    assert!(sim.tls_refusals().is_empty(), "{:?}", sim.tls_refusals());
    Ok(())
}

#[test]
fn a_certificate_dropped_into_the_inbox_is_imported_and_a_wrong_one_set_aside() -> Result<()> {
    let setup = ManualSetup::new()?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let ca = TestCa::new(CaShape::Tls)?;
    let task = eventually(WAIT, "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })?;
    let inbox = setup.path().join("state/certs/web/inbox");
    ensure!(
        inbox.is_dir(),
        "the inbox exists once a certificate is managed"
    );

    let stranger = ca.issue(&certvakt_testkit::LeafSpec::tls_server(&[
        "apotek-test.example",
    ]))?;
    std::fs::write(inbox.join("wrong.pem"), &stranger.cert_pem)?;
    let reason = inbox.join("refused/wrong.pem.reason.txt");
    eventually(WAIT, "the wrong file to be set aside", || {
        reason.exists().then_some(())
    })?;
    assert!(std::fs::read_to_string(&reason)?.contains("pending key"));

    let issued = ca.issue_from_csr(&task_csr(&task)?, |_| {})?;
    // As an operator would: copy in under a hidden name, then rename.
    std::fs::write(
        inbox.join(".incoming"),
        format!("{}{}", issued.pem, issued.chain_pem),
    )?;
    std::fs::rename(inbox.join(".incoming"), inbox.join("from-ca.pem"))?;
    let done = eventually(WAIT, "the renewal to complete", || {
        daemon.renewal("web").ok()??.last_success.map(|_| ())
    });
    if let Err(e) = done {
        bail!("{e}\n{}", daemon.log_text());
    }
    assert!(inbox.join("imported/from-ca.pem").exists());
    assert!(pair_matches(&setup.cert, &setup.key)?);
    Ok(())
}

#[test]
fn the_pair_in_use_before_certvakt_is_kept_and_can_be_rolled_back_to() -> Result<()> {
    let setup = ManualSetup::new()?;
    // A pair the operator installed by hand, before certvakt managed it.
    let ca = TestCa::new(CaShape::Tls)?;
    let own = ca.issue(&certvakt_testkit::LeafSpec::tls_server(&[
        "apotek-test.example",
    ]))?;
    std::fs::create_dir_all(setup.cert.parent().context("live folder")?)?;
    std::fs::write(&setup.cert, &own.cert_pem)?;
    std::fs::write(&setup.key, &own.key_pem)?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let out = daemon.cli(&["renew", "web", "--force"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "the renewal to complete", || {
        daemon.renewal("web").ok()??.last_success.map(|_| ())
    })?;
    assert_ne!(std::fs::read_to_string(&setup.key)?, own.key_pem);
    let out = daemon.cli(&["rollback", "web"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&setup.key)?, own.key_pem);
    assert_eq!(std::fs::read_to_string(&setup.cert)?, own.cert_pem);
    Ok(())
}

#[test]
fn settings_the_plugin_refuses_hold_the_certificate_back_until_a_reload_fixes_them() -> Result<()> {
    let setup = ManualSetup::new()?;
    let good = std::fs::read_to_string(&setup.config)?;
    std::fs::write(
        &setup.config,
        good.replace("key_type = \"ec-p256\"", "key_type = \"dsa-512\""),
    )?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    // The plugin is asked before the certificate's first step, which the engine takes at once.
    let (code, status) = eventually(WAIT, "the settings to be refused", || {
        let (code, status) = daemon.status().ok()?;
        let error = status.renewals[0].last_error.as_deref().unwrap_or_default();
        (error.contains("settings.key_type") && error.contains("dsa-512")).then_some((code, status))
    })?;
    assert!(code >= 1, "{status:#?}");
    assert!(
        daemon.tasks()?.is_empty(),
        "a held certificate orders nothing"
    );

    std::fs::write(&setup.config, good)?;
    let out = daemon.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let task = eventually(WAIT, "the order task after the fix", || {
        daemon.tasks().ok()?.into_iter().next()
    });
    if let Err(e) = task {
        bail!("{e}\n{}", daemon.log_text());
    }
    Ok(())
}

#[test]
fn nothing_starts_inside_quiet_hours() -> Result<()> {
    let setup = ManualSetup::new()?;
    let text = std::fs::read_to_string(&setup.config)?.replace(
        "[control]",
        // Two windows that together cover the whole day, whatever the machine's time zone.
        "quiet_hours = [\"00:00-13:00\", \"12:00-01:00\"]\n\n[control]",
    );
    std::fs::write(&setup.config, text)?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let (_, status) = daemon.status()?;
    let next = status.renewals[0].next_at.context("next_at")?;
    assert!(
        next > status.now + 3_600,
        "the first issue waits for the quiet hours: {status:#?}"
    );
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(daemon.tasks()?.is_empty(), "no order inside quiet hours");
    assert!(
        !setup
            .path()
            .join("state/certs/web/pending-key.pem")
            .exists()
    );
    Ok(())
}

#[test]
fn check_config_asks_the_plugins_about_their_settings() -> Result<()> {
    let setup = ManualSetup::new()?;
    let bins = bins()?;
    let check = |bin: &Path| -> Result<std::process::Output> {
        Ok(std::process::Command::new(bin)
            .arg("--config")
            .arg(&setup.config)
            .arg("check-config")
            .output()?)
    };
    for bin in [&bins.certvaktd, &bins.certvakt] {
        let out = check(bin)?;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let good = std::fs::read_to_string(&setup.config)?;
    std::fs::write(
        &setup.config,
        good.replace("key_type = \"ec-p256\"", "key_type = \"dsa-512\""),
    )?;
    for bin in [&bins.certvaktd, &bins.certvakt] {
        let out = check(bin)?;
        assert_eq!(out.status.code(), Some(6), "{}", bin.display());
        let err = stderr(&out);
        assert!(
            err.contains("certificate[0].settings.key_type: plugin manual:")
                && err.contains("dsa-512"),
            "{err}"
        );
        assert!(
            err.contains(&format!("{}:", setup.config.display())),
            "{err}"
        );
    }
    Ok(())
}

#[test]
fn a_live_file_certvakt_did_not_write_is_kept_before_it_is_replaced() -> Result<()> {
    let setup = ManualSetup::new()?;
    // A key made by hand, its certificate not there (yet): a first issue must not lose it.
    let ca = TestCa::new(CaShape::Tls)?;
    let hand_made = ca.issue(&certvakt_testkit::LeafSpec::tls_server(&[
        "apotek-test.example",
    ]))?;
    std::fs::create_dir_all(setup.key.parent().context("live folder")?)?;
    std::fs::write(&setup.key, &hand_made.key_pem)?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "the first issue", || {
        daemon.renewal("web").ok()??.last_success.map(|_| ())
    })?;
    assert_ne!(std::fs::read_to_string(&setup.key)?, hand_made.key_pem);
    let replaced = setup.path().join("state/certs/web/replaced");
    let kept: Vec<PathBuf> = std::fs::read_dir(&replaced)?
        .flatten()
        .map(|e| e.path().join("key"))
        .filter(|p| p.exists())
        .collect();
    ensure!(
        kept.len() == 1,
        "one kept key under {}: {kept:?}",
        replaced.display()
    );
    assert_eq!(std::fs::read_to_string(&kept[0])?, hand_made.key_pem);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept[0])?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}

/// Starts a daemon in `dir` managing `fmk` (the live files `live`) with the manual plugin,
/// its new certificates held to the trust set `oces3` = `root_pem`; `settings` are more
/// `[certificate.settings]` lines.
fn start_oces3_fmk(
    dir: &Path,
    bins: &certvakt_testkit::harness::Bins,
    root_pem: &str,
    live: &certvakt_testkit::PemPaths,
    settings: &str,
) -> Result<Daemon> {
    let root = dir.join("oces3-root.pem");
    std::fs::write(&root, root_pem)?;
    let body = format!(
        r#"[trust]
oces3 = ["{root}"]

[[certificate]]
id = "fmk"
cert = "{cert}"
key = "{key}"
plugin = "manual"
issuer_trust = "oces3"
[certificate.settings]
ca_name = "MitID Erhverv"
{settings}
"#,
        root = root.display(),
        cert = live.cert.display(),
        key = live.key.display(),
    );
    let config = dir.join("certvakt.toml");
    std::fs::write(&config, config_toml(dir, "127.0.0.1:0", &body))?;
    Daemon::start(bins, &config, &[])
}

#[test]
fn issuer_trust_refuses_a_stranger_and_a_new_uuid_is_noted() -> Result<()> {
    use certvakt_testkit::LeafSpec;

    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-manual"],
    )?;
    let mitid = TestCa::new(CaShape::Oces3)?;
    let stranger = TestCa::new(CaShape::Oces3)?;
    let current = mitid.issue(
        &LeafSpec::oces3(
            "25450442",
            "9b2e61d0-3c4f-4a8e-b5d7-1f0e2c3a4b5d",
            "Hjørring Apotek FMK",
        )
        .days(-700, 400),
    )?;
    let live = current.write_pem(&dir.path().join("live"), "fmk")?;
    let daemon = start_oces3_fmk(dir.path(), &bins, &mitid.root_pem(), &live, "")?;
    let renew = daemon.cli(&["renew", "fmk", "--force"])?;
    ensure!(renew.status.success(), "renew: {}", stderr(&renew));
    let task = eventually(WAIT, "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })?;
    let csr = task_csr(&task)?;
    let import = |issued: certvakt_testkit::ca::CsrCertificate, name: &str| {
        let chain = format!("{}{}", issued.pem, issued.chain_pem);
        import_file(&daemon, dir.path(), "fmk", name, chain.as_bytes(), None)
    };

    // From a CA outside the trust set: refused, and the run still waits for a certificate.
    let refused = import(stranger.issue_from_csr(&csr, |_| {})?, "stranger.pem")?;
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(
        said.contains("does not chain to trust set `oces3`"),
        "{said}"
    );
    assert!(!daemon.tasks()?.is_empty(), "the order task stays open");

    // From MitID Erhverv, but a new order (another UUID): taken, and noted.
    let new_uuid = "0443b8ae-dfd0-48c1-8af4-b9993cbce492";
    let issued = mitid.issue_from_csr(&csr, |params| {
        params.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
            rcgen::DnValue::PrintableString(
                format!("UI:DK-O:G:{new_uuid}")
                    .try_into()
                    .expect("printable"),
            ),
        );
    })?;
    let taken = import(issued, "mitid.pem")?;
    assert!(taken.status.success(), "{}", stderr(&taken));
    let said = stdout(&taken);
    assert!(said.contains("note: ") && said.contains(new_uuid), "{said}");
    // Still shown once the renewal is complete: it matters to whoever registers the new one.
    eventually(WAIT, "the renewal to complete", || {
        let fmk = daemon.renewal("fmk").ok()??;
        (fmk.last_success.is_some() && fmk.phase.is_none()).then_some(())
    })?;
    let show = daemon.cli(&["show", "fmk"])?;
    let shown = stdout(&show);
    assert!(shown.contains("new UUID"), "{shown}");
    Ok(())
}

#[test]
fn a_certificate_is_held_to_the_key_usages_and_key_type_its_request_asked_for() -> Result<()> {
    use certvakt_testkit::{KeyType, LeafSpec};

    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-manual"],
    )?;
    let body = format!(
        r#"[[certificate]]
id = "fmk"
cert = "{live}/fmk.pem"
key = "{live}/fmk.key"
plugin = "manual"
[certificate.settings]
ca_name = "MitID Erhverv"
key_type = "rsa-3072"
key_usage = ["digitalSignature"]
subject = [
  {{ attribute = "C", value = "DK" }},
  {{ attribute = "organizationIdentifier", value = "NTRDK-25450442" }},
  {{ attribute = "O", value = "Hjørring Apotek" }},
  {{ attribute = "serialNumber", value = "UI:DK-O:G:9b2e61d0-3c4f-4a8e-b5d7-1f0e2c3a4b5d" }},
  {{ attribute = "CN", value = "Hjørring Apotek FMK" }},
]
"#,
        live = dir.path().join("live").display(),
    );
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:0", &body))?;
    let daemon = Daemon::start(&bins, &config, &[])?;
    let task = eventually(WAIT, "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })?;
    let csr = task_csr(&task)?;
    let mitid = TestCa::new(CaShape::Oces3)?;
    let import = |bytes: &[u8], name: &str, password: Option<&str>| {
        import_file(&daemon, dir.path(), "fmk", name, bytes, password)
    };

    // The CA left out digitalSignature: refused.
    let wrong_usage = mitid.issue_from_csr(&csr, |params| {
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment];
    })?;
    let refused = import(
        format!("{}{}", wrong_usage.pem, wrong_usage.chain_pem).as_bytes(),
        "wrong-usage.pem",
        None,
    )?;
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(said.contains("does not allow digitalSignature"), "{said}");

    // A PKCS#12 whose key the CA made, but weaker than the profile's RSA 3072: refused.
    let weak = mitid.issue(
        &LeafSpec::oces3(
            "25450442",
            "9b2e61d0-3c4f-4a8e-b5d7-1f0e2c3a4b5d",
            "Hjørring Apotek FMK",
        )
        .key_type(KeyType::Rsa2048),
    )?;
    let refused = import(&weak.pkcs12_bytes("kodeord")?, "weak.p12", Some("kodeord"))?;
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(
        said.contains("is rsa-2048, but fmk asks for rsa-3072"),
        "{said}"
    );

    // As asked: taken.
    let right = mitid.issue_from_csr(&csr, |params| {
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    })?;
    let taken = import(
        format!("{}{}", right.pem, right.chain_pem).as_bytes(),
        "right.pem",
        None,
    )?;
    assert!(taken.status.success(), "{}", stderr(&taken));
    Ok(())
}

#[test]
fn an_oces3_renewal_downloaded_from_mitid_erhverv_is_imported_with_its_key() -> Result<()> {
    use certvakt_testkit::mitid::{MitIdErhverv, identity};

    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-manual"],
    )?;
    let portal = MitIdErhverv::new()?;
    let current = portal.order("25450442", "Hjørring Apotek FMK")?;
    let live = current
        .certificate
        .write_pem(&dir.path().join("live"), "fmk")?;
    let daemon = start_oces3_fmk(
        dir.path(),
        &bins,
        &portal.ca().root_pem(),
        &live,
        "key_type = \"rsa-3072\"",
    )?;

    // The administrator renews in the portal and downloads the bundle; no run was waiting.
    let renewal = portal.renew(&current.certificate.cert_pem)?;
    let (bundle, password) = renewal.write(&dir.path().join("Downloads"), "fmk-2026")?;
    let imported = daemon.cli(&[
        "import",
        "fmk",
        &bundle.display().to_string(),
        "--password-file",
        &password.display().to_string(),
    ])?;
    assert!(imported.status.success(), "{}", stderr(&imported));
    let said = stdout(&imported);
    assert!(!said.contains("note:"), "a renewal keeps the UUID: {said}");

    eventually(WAIT, "the renewal to be installed", || {
        let now = std::fs::read_to_string(&live.cert).ok()?;
        (now.trim() == renewal.certificate.cert_pem.trim()).then_some(())
    })?;
    let installed_key = certvakt::keys::PrivateKey::from_bytes(&std::fs::read(&live.key)?)?;
    let downloaded_key =
        certvakt::keys::PrivateKey::from_bytes(renewal.certificate.key_pem.as_bytes())?;
    assert_eq!(
        installed_key.public_key_raw(),
        downloaded_key.public_key_raw(),
        "the key the CA made is the one installed"
    );
    let installed = std::fs::read(&live.cert)?;
    let der = certvakt::keys::parse_certificate_chain(&installed)?
        .into_iter()
        .next()
        .context("a certificate")?;
    assert_eq!(identity(&der)?, identity(&current.certificate.cert_der)?);
    Ok(())
}
