//! The renewal engine's promises end to end, one test per defect the engine once had: the
//! real daemon, the real CLI, plugins loaded from disk. Where a plugin must misbehave, the
//! example plugin's test hooks do it (`tests/plugins/example/src/test_hooks.rs`): a slow call,
//! a task opened through the host, a failure, and "overlap" in the log when two calls about
//! one certificate run at once.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use certvakt_testkit::exampleca::ExampleCaApi;
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually};
use certvakt_testkit::{CaShape, LeafSpec, TestCa};
use serde_json::Value;

use crate::common::{WAIT, bins, pair_matches, stderr, stdout};
use crate::renewal::{ManualSetup, answer_the_order, task_csr};

/// A folder with the example plugin installed and a configuration of what `body` writes for
/// the folder, with the shortest retry waits the configuration allows.
pub(crate) fn example_dir(
    body: impl FnOnce(&Path) -> String,
) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    harness::install_plugins(
        &bins()?,
        &dir.path().join("plugins"),
        &["certvakt-plugin-example"],
    )?;
    let text = config_toml(dir.path(), "127.0.0.1:0", &body(dir.path())).replace(
        "log_level = \"debug\"",
        "log_level = \"debug\"\nretry_initial = \"1s\"\nretry_max = \"2s\"",
    );
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, text)?;
    Ok((dir, config))
}

/// A `[[certificate]]` renewed by the example plugin, its live files in `dir/live/`, with
/// more `[certificate.settings]` lines.
pub(crate) fn example_certificate(dir: &Path, id: &str, settings: &str) -> String {
    format!(
        r#"
[[certificate]]
id = "{id}"
cert = "{live}/{id}.pem"
key = "{live}/{id}.key"
plugin = "example"
[certificate.settings]
common_name = "{id}.apotek.example"
organisation = "Hjørring Apotek"
{settings}
"#,
        live = dir.join("live").display(),
    )
}

/// A pair in use at `dir/live/<id>.{pem,key}`, not due for months.
fn live_pair(ca: &TestCa, dir: &Path, id: &str) -> Result<()> {
    let pair = ca.issue(&LeafSpec::tls_server(&[format!("{id}.apotek.example")]))?;
    let live = dir.join("live");
    std::fs::create_dir_all(&live)?;
    std::fs::write(live.join(format!("{id}.pem")), &pair.cert_pem)?;
    std::fs::write(live.join(format!("{id}.key")), &pair.key_pem)?;
    Ok(())
}

fn renewal_of(status: &Value, id: &str) -> Option<Value> {
    status["renewals"]
        .as_array()?
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
}

/// `certvakt --json tasks`, read into the protocol's typed tasks (a renamed field fails
/// there), then as JSON values for the comparisons below.
fn tasks(daemon: &Daemon) -> Result<Vec<Value>> {
    Ok(serde_json::to_value(daemon.tasks()?)?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// `id`'s renewal in `certvakt --json status`.
fn renewal(daemon: &Daemon, id: &str) -> Option<Value> {
    let (_, status) = daemon.cli_json(&["status"]).ok()?;
    renewal_of(&status, id)
}

/// The id the example plugin logged for the task it opened in `method` for `cert`.
fn logged_task_id(daemon: &Daemon, method: &str, cert: &str) -> Option<String> {
    let said = format!("test_task_in: {method} of {cert} opened task ");
    let log = daemon.log_text();
    let line = log.lines().find(|l| l.contains(&said))?;
    let rest = &line[line.find(&said)? + said.len()..];
    rest.split_whitespace().next().map(str::to_owned)
}

/// `result`, with the daemon's log added to an error.
fn with_log<T>(daemon: &Daemon, result: Result<T>) -> Result<T> {
    result.map_err(|e| e.context(format!("daemon log:\n{}", daemon.log_text())))
}

/// Defect 1: a task opened through the host was lost unless the step answered pending, and
/// the id the plugin was given was not the one filed.
#[test]
fn a_task_a_plugin_opens_is_filed_under_its_id_whatever_the_step_answers() -> Result<()> {
    let api = ExampleCaApi::start()?;
    let ca = TestCa::new(CaShape::Tls)?;
    let api_url = format!("api_url = \"{}\"", api.url());
    let (dir, config) = example_dir(|dir| {
        format!(
            "[trust]\nexample-ca = [\"{trust}\"]\n{fails}{issued}{done}",
            trust = dir.join("example-ca.pem").display(),
            // The step fails after opening the task.
            fails = example_certificate(
                dir,
                "fails",
                "test_task_in = \"issue\"\ntest_fail_in = \"issue\""
            ),
            // poll answers "issued".
            issued = example_certificate(
                dir,
                "issued",
                &format!("{api_url}\ntest_task_in = \"poll\"")
            ),
            // register answers "done".
            done = example_certificate(
                dir,
                "done",
                &format!("{api_url}\ntest_task_in = \"register\"")
            ),
        )
    })?;
    std::fs::write(dir.path().join("example-ca.pem"), api.server_ca_pem())?;
    live_pair(&ca, dir.path(), "issued")?;
    live_pair(&ca, dir.path(), "done")?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;

    for id in ["issued", "done"] {
        let out = daemon.cli(&["renew", id, "--force"])?;
        ensure!(out.status.success(), "renew {id}: {}", stderr(&out));
    }
    // Example CA asks to be polled in a minute; `renew` polls now.
    let ordered = eventually(WAIT, "both orders to be placed and polled", || {
        let mut polled = 0;
        for id in ["issued", "done"] {
            let r = renewal(&daemon, id)?;
            match r["phase"].as_str() {
                Some("ordered") => {
                    daemon.cli(&["renew", id]).ok()?;
                }
                Some("due" | "key_generated") => {}
                _ => polled += 1,
            }
        }
        (polled == 2).then_some(())
    });
    with_log(&daemon, ordered)?;

    let cases = [("fails", "issue"), ("issued", "poll"), ("done", "register")];
    for (cert, method) in cases {
        let filed = eventually(WAIT, &format!("the task {cert} opened in {method}"), || {
            let id = logged_task_id(&daemon, method, cert)?;
            tasks(&daemon)
                .ok()?
                .into_iter()
                .any(|t| t["id"] == id.as_str() && t["cert_id"] == cert)
                .then_some(())
        });
        with_log(&daemon, filed)?;
    }
    let failing = renewal(&daemon, "fails").context("fails in status")?;
    assert!(
        failing["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("test_fail_in asked issue to fail")),
        "the step that opened the task failed: {failing:#}"
    );
    // `renewals` lists every one, as `status` does; a glob keeps the ids it matches, and the
    // failing one is shown with its error.
    let (code, all) = daemon.cli_json(&["renewals"])?;
    ensure!(code == 0, "renewals exited {code}: {all:#}");
    assert_eq!(all["response"], "renewals", "{all:#}");
    let mut ids: Vec<&str> = all["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["done", "fails", "issued"], "{all:#}");
    let (_, one) = daemon.cli_json(&["renewals", "iss*"])?;
    assert_eq!(one["items"].as_array().map(Vec::len), Some(1), "{one:#}");
    assert_eq!(one["items"][0]["id"], "issued", "{one:#}");
    let trouble = daemon.cli(&["renewals", "--trouble"])?;
    let text = stdout(&trouble);
    assert!(
        trouble.status.success()
            && text.contains("fails")
            && text.contains("test_fail_in asked issue to fail"),
        "{text}{}",
        stderr(&trouble)
    );

    // The runs that went on after their task finish, and the tasks stay as they were filed.
    let finished = eventually(WAIT, "the runs to complete", || {
        ["issued", "done"]
            .iter()
            .all(|id| {
                renewal(&daemon, id)
                    .is_some_and(|r| r["phase"].is_null() && r["last_success"].is_i64())
            })
            .then_some(())
    });
    with_log(&daemon, finished)?;
    let open = tasks(&daemon)?;
    for (cert, method) in cases {
        let id = logged_task_id(&daemon, method, cert).context("logged id")?;
        let title = format!("Test task opened in {method}");
        let filed: Vec<&Value> = open
            .iter()
            .filter(|t| t["cert_id"] == cert && t["title"] == title.as_str())
            .collect();
        assert_eq!(filed.len(), 1, "{cert}: one task, not two: {open:#?}");
        assert_eq!(filed[0]["id"], id.as_str(), "{cert}: {open:#?}");
        let instructions = dir
            .path()
            .join(format!("state/certs/{cert}/outbox/{id}/instructions.txt"));
        assert!(instructions.is_file(), "{}", instructions.display());
    }
    assert!(
        api.requests()
            .iter()
            .any(|(method, path, status)| method == "POST"
                && path == "/registrations"
                && *status == 201),
        "{:?}",
        api.requests()
    );
    Ok(())
}

/// Defect 2: commands timed out while a plugin call ran, and then ran anyway; one slow
/// certificate held up the others.
#[test]
fn commands_and_other_certificates_go_on_while_a_plugin_call_is_slow() -> Result<()> {
    // slow first: an engine that takes one certificate at a time is stuck on it.
    let (dir, config) = example_dir(|dir| {
        example_certificate(dir, "slow", "test_delay_ms = 30000")
            + &example_certificate(dir, "quick", "")
    })?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;
    let slow_returned = || {
        daemon
            .log_text()
            .contains("test_delay_ms: csr_profile of slow slept")
    };

    let in_flight = eventually(WAIT, "slow's plugin call to start", || {
        daemon
            .log_text()
            .contains("test_delay_ms: csr_profile of slow sleeps 30000 ms")
            .then_some(())
    });
    with_log(&daemon, in_flight)?;

    let (code, status) = daemon.cli_json(&["status"])?;
    assert!((0..=2).contains(&code), "status answers: {code} {status:#}");
    let quick = eventually(WAIT, "quick's order task", || {
        tasks(&daemon)
            .ok()?
            .into_iter()
            .find(|t| t["cert_id"] == "quick")
    });
    with_log(&daemon, quick)?;

    let out = daemon.cli(&["rollback", "slow"])?;
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("slow is in the middle of a step"),
        "{}",
        stderr(&out)
    );
    let ca = TestCa::new(CaShape::Tls)?;
    let stranger = ca.issue(&LeafSpec::tls_server(&["slow.apotek.example"]))?;
    let file = dir.path().join("stranger.pem");
    std::fs::write(&file, &stranger.cert_pem)?;
    let out = daemon.cli(&["import", "slow", &file.display().to_string()])?;
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("slow is in the middle of a step"),
        "{}",
        stderr(&out)
    );

    // All of it happened while slow's call had not returned.
    assert!(!slow_returned(), "{}", daemon.log_text());
    Ok(())
}

/// Defect 3: an operator command whose effect could not be saved answered success.
#[test]
fn a_command_whose_effect_cannot_be_saved_answers_an_error_and_changes_nothing() -> Result<()> {
    let setup = ManualSetup::new()?;
    let ca = TestCa::new(CaShape::Tls)?;
    let own = ca.issue(&LeafSpec::tls_server(&["apotek-test.example"]))?;
    std::fs::create_dir_all(setup.cert.parent().context("live folder")?)?;
    std::fs::write(&setup.cert, &own.cert_pem)?;
    std::fs::write(&setup.key, &own.key_pem)?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    // The engine has looked at the pair: not due for weeks.
    let looked = eventually(WAIT, "the first look at web", || {
        let (_, status) = daemon.cli_json(&["status"]).ok()?;
        let now = status["now"].as_i64()?;
        let next = renewal_of(&status, "web")?["next_at"].as_i64()?;
        (next > now + 86_400).then_some(())
    });
    with_log(&daemon, looked)?;

    // A folder where state.json belongs: the atomic rename over it fails, even for root.
    let state = setup.path().join("state/certs/web/state.json");
    if state.is_file() {
        std::fs::remove_file(&state)?;
    }
    std::fs::create_dir_all(&state)?;
    std::fs::write(state.join("in-the-way"), "x")?;
    let out = daemon.cli(&["renew", "web", "--force"])?;
    assert_eq!(out.status.code(), Some(7), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains("nothing was changed") && said.contains("cannot be saved"),
        "{said}"
    );
    let web = renewal(&daemon, "web").context("web in status")?;
    assert!(web["phase"].is_null(), "no run started: {web:#}");
    assert!(tasks(&daemon)?.is_empty(), "nothing ordered");
    assert!(
        !setup
            .path()
            .join("state/certs/web/pending-key.pem")
            .exists()
    );

    std::fs::remove_dir_all(&state)?;
    let out = daemon.cli(&["renew", "web", "--force"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("renewal of web started"),
        "{}",
        stdout(&out)
    );
    let ordered = eventually(WAIT, "the order task", || {
        tasks(&daemon).ok()?.into_iter().next()
    });
    with_log(&daemon, ordered)?;
    assert!(state.is_file());
    Ok(())
}

/// What the log says of a plugin call that sleeps: it started, it returned, the engine gave
/// up waiting, or a call overlapped another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Started,
    Returned,
    TimedOut,
    Overlap,
}

fn calls_in_log(log: &str, method: &str, cert: &str) -> Vec<Seen> {
    log.lines()
        .filter_map(|line| {
            if line.contains("overlap:") {
                Some(Seen::Overlap)
            } else if line.contains(&format!("test_delay_ms: {method} of {cert} sleeps")) {
                Some(Seen::Started)
            } else if line.contains(&format!("test_delay_ms: {method} of {cert} slept")) {
                Some(Seen::Returned)
            } else if line.contains(&format!("did not answer {method} within")) {
                Some(Seen::TimedOut)
            } else {
                None
            }
        })
        .collect()
}

/// Defect 4: a call that overran its deadline could overlap its own retry.
#[test]
fn a_call_that_overran_its_deadline_is_never_overlapped_by_its_retry() -> Result<()> {
    let (_dir, config) =
        example_dir(|dir| example_certificate(dir, "slow", "test_delay_ms = 3000"))?;
    let daemon = Daemon::start(
        &bins()?,
        &config,
        &[(certvakt::lifecycle::DEADLINE_ENV, "500")],
    )?;

    // The first call overruns its 500 ms deadline (it would take 3 s): its plugin process is
    // stopped there, and only then may the retry start. Nothing of the first call goes on.
    let retried = eventually(WAIT, "the retry of the timed-out call", || {
        let seen = calls_in_log(&daemon.log_text(), "csr_profile", "slow");
        (seen.iter().filter(|s| **s == Seen::Started).count() >= 2).then_some(seen)
    });
    let seen = with_log(&daemon, retried)?;
    let log = daemon.log_text();
    assert!(!seen.contains(&Seen::Overlap), "{log}");
    let starts: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == Seen::Started)
        .map(|(i, _)| i)
        .collect();
    let timed_out = seen
        .iter()
        .position(|s| *s == Seen::TimedOut)
        .context("the engine gave up waiting")?;
    assert!(
        starts[0] < timed_out && timed_out < starts[1],
        "the retry started only after the first call was stopped: {seen:?}\n{log}"
    );
    assert!(
        !seen[starts[0]..timed_out].contains(&Seen::Returned),
        "the first call was stopped, not left to return: {seen:?}\n{log}"
    );
    assert!(
        log.contains("its process was stopped"),
        "the log says the call's process was stopped:\n{log}"
    );
    let web = renewal(&daemon, "slow").context("slow in status")?;
    assert!(
        web["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer csr_profile within 500ms")),
        "{web:#}"
    );
    Ok(())
}

/// Starts a daemon over `setup` whose managed `cert` is what `make` put there, and checks that
/// it is ready, answers, and reports the file as no regular file without ordering anything.
fn the_daemon_reports_what_is_not_a_file(
    setup: &ManualSetup,
    make: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(setup.cert.parent().context("live folder")?)?;
    make(&setup.cert)?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let (code, status) = daemon.cli_json(&["status"])?;
    assert!((0..=2).contains(&code), "{status:#}");
    let reported = eventually(WAIT, "the renewal to report the file", || {
        let web = renewal(&daemon, "web")?;
        web["last_error"]
            .as_str()
            .filter(|e| e.contains("is not a regular file"))
            .map(str::to_owned)
    });
    let error = with_log(&daemon, reported)?;
    assert!(error.contains(&setup.cert.display().to_string()), "{error}");
    assert!(tasks(&daemon)?.is_empty(), "no first issue over it");
    Ok(())
}

/// Defect 6: a FIFO at a managed `cert` path hung the daemon before it was ready.
#[test]
fn a_fifo_at_the_managed_cert_path_is_reported_not_read() -> Result<()> {
    let setup = ManualSetup::new()?;
    the_daemon_reports_what_is_not_a_file(&setup, |path| {
        let made = std::process::Command::new("mkfifo").arg(path).status()?;
        ensure!(made.success(), "mkfifo {}", path.display());
        Ok(())
    })
}

/// Defect 6: a link to `/dev/zero` at a managed `cert` path grew the daemon without bound.
#[test]
fn a_link_to_dev_zero_at_the_managed_cert_path_is_reported_not_read() -> Result<()> {
    let setup = ManualSetup::new()?;
    the_daemon_reports_what_is_not_a_file(&setup, |path| {
        std::os::unix::fs::symlink("/dev/zero", path)?;
        Ok(())
    })
}

/// Defect 7: a half-copied inbox file was taken (and refused) when the engine woke.
#[test]
fn a_file_still_being_copied_into_the_inbox_waits_until_it_is_whole() -> Result<()> {
    let setup = ManualSetup::new()?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let ca = TestCa::new(CaShape::Tls)?;
    let task = eventually(WAIT, "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })?;
    let issued = ca.issue_from_csr(&task_csr(&task)?, |_| {})?;
    let whole = format!("{}{}", issued.pem, issued.chain_pem).into_bytes();
    let (first, rest) = whole.split_at(whole.len() / 2);
    let inbox = setup.path().join("state/certs/web/inbox");
    let file = inbox.join("x.pem");

    let mut copy = std::fs::File::create(&file)?;
    copy.write_all(first)?;
    copy.flush()?;
    let written = Instant::now();
    // The engine wakes for a command.
    let out = daemon.cli(&["renew", "web"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_secs(1).saturating_sub(written.elapsed()));
    let reason = std::fs::read_to_string(inbox.join("refused/x.pem.reason.txt"));
    assert!(reason.is_err(), "half a file was refused: {reason:?}");
    assert!(
        file.exists(),
        "half a file was taken: {}",
        daemon.log_text()
    );

    copy.write_all(rest)?;
    drop(copy);
    let imported = eventually(WAIT, "the whole file to be imported", || {
        inbox.join("imported/x.pem").exists().then_some(())
    });
    with_log(&daemon, imported)?;
    let done = eventually(WAIT, "the renewal to complete", || {
        renewal(&daemon, "web")?["last_success"]
            .is_i64()
            .then_some(())
    });
    with_log(&daemon, done)?;
    assert!(pair_matches(&setup.cert, &setup.key)?);
    assert!(!inbox.join("refused").exists());
    Ok(())
}

/// Defect 8: a reload did not ask the plugins about their settings, as start and
/// check-config do.
#[test]
fn a_reload_with_settings_the_plugin_refuses_is_refused_and_the_old_configuration_stays()
-> Result<()> {
    let setup = ManualSetup::new()?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let ca = TestCa::new(CaShape::Tls)?;
    eventually(WAIT, "the order task", || {
        tasks(&daemon).ok()?.into_iter().next()
    })?;

    let good = std::fs::read_to_string(&setup.config)?;
    std::fs::write(
        &setup.config,
        good.replace("key_type = \"ec-p256\"", "key_type = \"dsa-512\""),
    )?;
    let out = daemon.cli(&["reload"])?;
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let said = stderr(&out);
    assert!(
        said.contains("settings.key_type") && said.contains("dsa-512"),
        "{said}"
    );

    let (_, status) = daemon.cli_json(&["status"])?;
    assert!(
        status["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("dsa-512")),
        "{status:#}"
    );
    let web = renewal_of(&status, "web").context("web in status")?;
    assert!(web["last_error"].is_null(), "web is not held back: {web:#}");
    assert_eq!(tasks(&daemon)?.len(), 1, "the order task is still open");
    // The renewal goes on under the configuration in force.
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let done = eventually(WAIT, "the renewal to complete", || {
        renewal(&daemon, "web")?["last_success"]
            .is_i64()
            .then_some(())
    });
    with_log(&daemon, done)?;
    Ok(())
}

/// Defect 10: with `pkcs12` configured and no bundle yet, the pair in use before the first
/// renewal was not kept, and rollback was refused.
#[test]
fn the_pair_in_use_is_kept_for_rollback_when_the_pkcs12_bundle_does_not_exist_yet() -> Result<()> {
    let setup = ManualSetup::new()?;
    let bundle = setup.path().join("live/web.p12");
    let password_file = setup.path().join("web.p12.pass");
    std::fs::write(&password_file, "kodeord\n")?;
    let text = std::fs::read_to_string(&setup.config)?.replace(
        "plugin = \"manual\"\n",
        &format!(
            "plugin = \"manual\"\npkcs12 = \"{}\"\npkcs12_password_file = \"{}\"\n",
            bundle.display(),
            password_file.display()
        ),
    );
    std::fs::write(&setup.config, text)?;
    let ca = TestCa::new(CaShape::Tls)?;
    let own = ca.issue(&LeafSpec::tls_server(&["apotek-test.example"]))?;
    std::fs::create_dir_all(setup.cert.parent().context("live folder")?)?;
    std::fs::write(&setup.cert, &own.cert_pem)?;
    std::fs::write(&setup.key, &own.key_pem)?;
    ensure!(!bundle.exists());

    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let out = daemon.cli(&["renew", "web", "--force"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let done = eventually(WAIT, "the renewal to complete", || {
        renewal(&daemon, "web")?["last_success"]
            .is_i64()
            .then_some(())
    });
    with_log(&daemon, done)?;
    assert_ne!(std::fs::read_to_string(&setup.key)?, own.key_pem);
    assert!(bundle.is_file(), "the renewal wrote the bundle");

    let out = daemon.cli(&["rollback", "web"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&setup.key)?, own.key_pem);
    assert_eq!(std::fs::read_to_string(&setup.cert)?, own.cert_pem);
    // The bundle went back with the pair.
    let contents = certvakt::keys::read_pkcs12(&std::fs::read(&bundle)?, "kodeord")?;
    assert_eq!(contents.leaf_der, own.cert_der);
    let key = contents.key.context("the bundle has its key")?;
    let own_key = certvakt::keys::PrivateKey::from_bytes(own.key_pem.as_bytes())?;
    assert_eq!(key.public_key_raw(), own_key.public_key_raw());
    assert!(pair_matches(&setup.cert, &setup.key)?);
    Ok(())
}
