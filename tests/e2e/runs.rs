//! The operator's commands about runs, end to end with the real daemon, the real CLI and the
//! `manual` plugin: `history`, `renew --dry-run`, `cancel` (and a kill -9 right after it), and
//! a certificate removed from the configuration, kept until `forget`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use certvakt::control::protocol::{Outcome, Response};
use certvakt_testkit::harness::{Daemon, config_toml, eventually};
use certvakt_testkit::{CaShape, TestCa};

use crate::common::{WAIT, bins, pair_matches, stderr, stdout};
use crate::renewal::{ManualSetup, answer_the_order};

/// A daemon managing `web` with the manual plugin, its first certificate issued and installed.
fn issued(setup: &ManualSetup, ca: &TestCa) -> Result<Daemon> {
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let out = answer_the_order(&daemon, ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "the first issue to complete", || {
        let r = daemon.renewal("web").ok()??;
        (r.phase.is_none() && r.last_success.is_some()).then_some(())
    })?;
    Ok(daemon)
}

/// Starts a forced renewal of `web` and waits until it waits for the operator's order, with
/// its pending key on disk.
fn waiting_for_order(daemon: &Daemon, pending: &Path) -> Result<String> {
    let out = daemon.cli(&["renew", "web", "--force"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "the run to wait for the order task", || {
        let r = daemon.renewal("web").ok()??;
        (r.open_tasks.len() == 1 && pending.exists()).then(|| r.open_tasks[0].id.clone())
    })
}

/// Every file under `dir` with its content: what "changed nothing" is checked against.
fn snapshot(dir: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
                files.insert(entry.path(), Vec::new());
            } else if kind.is_file() {
                files.insert(entry.path(), std::fs::read(entry.path())?);
            }
        }
    }
    Ok(files)
}

fn pending(setup: &ManualSetup) -> PathBuf {
    setup.path().join("state/certs/web/pending-key.pem")
}

#[test]
fn history_shows_a_completed_renewal_and_an_unknown_id_is_not_found() -> Result<()> {
    let setup = ManualSetup::new()?;
    let ca = TestCa::new(CaShape::Tls)?;
    let daemon = issued(&setup, &ca)?;
    let (code, answer) = daemon.cli_typed::<Response>(&["history", "web"])?;
    ensure!(code == 0, "history exited {code}");
    let Response::History { id, entries } = answer else {
        anyhow::bail!("not a history answer: {answer:?}");
    };
    assert_eq!(id, "web");
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let entry = &entries[0];
    assert_eq!(entry.outcome, Outcome::Completed);
    assert_eq!(entry.run, Some(1));
    assert_eq!(entry.reason.as_deref(), Some("first_issue"));
    assert_eq!(entry.plugin.as_deref(), Some("manual"));
    assert!(entry.old_serial.is_none(), "{entry:?}");
    let serial = entry.new_serial.clone().expect("a new serial");
    assert!(entry.started_at.is_some_and(|s| s <= entry.finished_at));

    let out = daemon.cli(&["history", "web"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("run 1  completed"), "{text}");
    assert!(text.contains(&format!("(none) -> {serial}")), "{text}");

    let out = daemon.cli(&["history", "nope"])?;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no managed certificate `nope`"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn renew_dry_run_says_what_would_happen_and_changes_nothing() -> Result<()> {
    let setup = ManualSetup::new()?;
    let ca = TestCa::new(CaShape::Tls)?;
    let daemon = issued(&setup, &ca)?;
    let watched = |_: ()| -> Result<_> {
        let mut all = snapshot(&setup.path().join("state"))?;
        all.extend(snapshot(&setup.path().join("live"))?);
        Ok(all)
    };
    let before = watched(())?;
    let (code, answer) = daemon.cli_typed::<Response>(&["renew", "web", "--dry-run"])?;
    ensure!(code == 0, "dry run exited {code}");
    let Response::RenewDryRun(report) = answer else {
        anyhow::bail!("not a dry-run answer: {answer:?}");
    };
    assert!(!report.due, "a fresh certificate is not due: {report:?}");
    assert!(report.why.contains("not due until"), "{}", report.why);
    assert_eq!(report.key, "a new ec-p256 key");
    assert!(
        report
            .subject
            .contains(&"CN=apotek-test.example".to_owned()),
        "{:?}",
        report.subject
    );
    assert_eq!(report.sans, ["DNS:apotek-test.example"]);
    assert!(
        report
            .hooks
            .iter()
            .any(|h| h.starts_with("deploy_hook: /bin/sh"))
    );
    assert!(
        report
            .tasks
            .contains("the plugin decides at the issue step")
    );
    let steps: Vec<&str> = report.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "key_generated",
            "ordered",
            "issued",
            "registered",
            "installed",
            "verified",
            "retired"
        ]
    );
    let out = daemon.cli(&["renew", "web", "--dry-run"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing was changed"),
        "{}",
        stdout(&out)
    );

    // No state, key, task, history or plugin state was written.
    let after = watched(())?;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the dry run added or removed files"
    );
    assert!(before == after, "the dry run changed a file");
    assert!(daemon.renewal("web")?.is_some_and(|r| r.phase.is_none()));
    assert!(daemon.tasks()?.is_empty());
    Ok(())
}

#[test]
fn cancel_keeps_the_old_pair_removes_the_pending_key_and_survives_a_kill_9() -> Result<()> {
    let setup = ManualSetup::new()?;
    let ca = TestCa::new(CaShape::Tls)?;
    let daemon = issued(&setup, &ca)?;
    let (old_cert, old_key) = (std::fs::read(&setup.cert)?, std::fs::read(&setup.key)?);

    // Idle: nothing to cancel, exit 7 with a sentence.
    let out = daemon.cli(&["cancel", "web"])?;
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to cancel"),
        "{}",
        stderr(&out)
    );

    let task = waiting_for_order(&daemon, &pending(&setup))?;
    let out = daemon.cli(&["cancel", "web"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Killed right after the answer.
    daemon.signal("KILL")?;
    drop(daemon);
    let text = stdout(&out);
    assert!(text.contains("cancelled after step ordered"), "{text}");
    assert!(text.contains("not withdrawn"), "{text}");
    assert!(text.contains(&task), "{text}");
    assert!(!pending(&setup).exists(), "the pending key is gone");
    assert_eq!(std::fs::read(&setup.cert)?, old_cert);
    assert_eq!(std::fs::read(&setup.key)?, old_key);
    assert!(pair_matches(&setup.cert, &setup.key)?);

    // After a restart: no run, no task, the cancel in the history, and no run by itself.
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let renewal = eventually(WAIT, "the cancelled certificate to be looked at", || {
        let r = daemon.renewal("web").ok()??;
        r.notes.iter().any(|n| n.contains("cancelled")).then_some(r)
    })?;
    assert!(renewal.phase.is_none(), "{renewal:?}");
    assert!(renewal.open_tasks.is_empty(), "{renewal:?}");
    assert!(daemon.tasks()?.is_empty());
    assert!(!pending(&setup).exists());
    let (_, answer) = daemon.cli_typed::<Response>(&["history", "web", "--limit", "1"])?;
    let Response::History { entries, .. } = answer else {
        anyhow::bail!("not a history answer: {answer:?}");
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, Outcome::Cancelled);
    assert_eq!(entries[0].tasks, [task]);
    assert_eq!(std::fs::read(&setup.key)?, old_key);
    let out = daemon.cli(&["cancel", "web"])?;
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    // `renew` lifts the hold; --force starts a run with a fresh key.
    let out = daemon.cli(&["renew", "web", "--force"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(WAIT, "a new run after the operator's renew", || {
        daemon.renewal("web").ok()??.phase.map(|_| ())
    })?;
    Ok(())
}

#[test]
fn a_removed_certificate_keeps_its_pending_key_until_forget() -> Result<()> {
    let setup = ManualSetup::new()?;
    let ca = TestCa::new(CaShape::Tls)?;
    let daemon = issued(&setup, &ca)?;
    waiting_for_order(&daemon, &pending(&setup))?;
    let out = daemon.cli(&["forget", "web"])?;
    assert_eq!(out.status.code(), Some(7), "a configured id is refused");
    assert!(
        stderr(&out).contains("still in the configuration"),
        "{}",
        stderr(&out)
    );

    let configured = std::fs::read_to_string(&setup.config)?;
    std::fs::write(&setup.config, config_toml(setup.path(), "127.0.0.1:0", ""))?;
    let out = daemon.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, status) = daemon.status()?;
    assert_eq!(status.removed.len(), 1, "{:?}", status.removed);
    assert_eq!(status.removed[0].id, "web");
    assert_eq!(status.removed[0].pending_keys, 1);
    assert_eq!(status.removed[0].open_tasks.len(), 1);
    let text = stdout(&daemon.cli(&["status"])?);
    assert!(
        text.contains("removed from the configuration, still holding 1 pending key(s)"),
        "{text}"
    );
    assert!(text.contains("`certvakt forget web` to discard"), "{text}");
    assert!(
        daemon
            .log_text()
            .contains("web is no longer in the configuration"),
        "{}",
        daemon.log_text()
    );
    assert!(pending(&setup).exists(), "kept until the operator confirms");

    // Back in the configuration before `forget`: the run continues where it was.
    std::fs::write(&setup.config, &configured)?;
    let out = daemon.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = daemon.renewal("web")?.expect("web again");
    assert!(r.phase.is_some() && r.open_tasks.len() == 1, "{r:?}");
    assert!(daemon.status()?.1.removed.is_empty());

    // Removed again, then forgotten: state first, key after.
    std::fs::write(&setup.config, config_toml(setup.path(), "127.0.0.1:0", ""))?;
    let out = daemon.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = daemon.cli(&["forget", "web"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 pending key(s)"),
        "{}",
        stdout(&out)
    );
    assert!(!pending(&setup).exists());
    assert!(!setup.path().join("state/certs/web/state.json").exists());
    assert!(daemon.status()?.1.removed.is_empty());
    let out = daemon.cli(&["forget", "web"])?;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    Ok(())
}
