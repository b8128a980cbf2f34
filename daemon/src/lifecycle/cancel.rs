//! Stopping a run in progress (`certvakt cancel`), and the runs of certificates removed from
//! the configuration (kept until `certvakt forget`).
//!
//! Contract:
//! - A cancel is answered at once: a certificate whose step is being taken is refused with
//!   the step's name (try again when it is over), never waited for. A run whose certificate
//!   has arrived (step `issued` or later) is refused too: it is staged and goes on to the
//!   authority's registration and the install, and from then on the run finishes by itself
//!   (`certvakt rollback` goes back after it). So a cancel never meets an install mid-way.
//! - The order is the write-ahead rule: first the state without the run (tasks closed, the
//!   cancel recorded) is on disk, then the history entry, then the pending keys are removed.
//!   A crash between the state and the keys leaves keys no run refers to; loading the records
//!   at the next start removes those (a pending key is only ever read by the run that made it), so no later run
//!   can take one up.
//! - The certificate in use, its key and the installed versions are not touched. An order
//!   already placed with the CA is not withdrawn: the answer says so.
//! - After a cancel no run starts by itself for the certificate in use: `certvakt renew ID`
//!   starts one (and lifts the hold), and so does a new certificate becoming live (by an
//!   install or an operator's copy). Status shows the hold as a note.
//! - A certificate that leaves the configuration with a run (an open task or a pending key)
//!   is kept as it is on disk, logged at every load, and listed in the view's `removed`; its
//!   run continues if it comes back. `certvakt forget ID` discards it: the state first, the
//!   pending keys after, a history entry; an id still configured is refused.

use super::history::{HistoryEntry, Outcome};
use super::{Cancelled, Engine, EngineError, Phase, Record, RemovedCert};
use crate::store::Store;

impl Engine {
    /// `certvakt cancel ID`.
    pub(super) fn cancel(&mut self, id: &str) -> Result<String, EngineError> {
        let cert = self.managed(id)?;
        if let Some(flight) = self.in_flight.get(id) {
            return Err(EngineError::Busy(format!(
                "{id} is in the middle of step {} now; nothing was cancelled. A run is cancelled only between steps: try again when the step is over (`certvakt show {id}`)",
                flight.step
            )));
        }
        let now = crate::now_unix();
        let before = self.records.get(id).cloned().unwrap_or_default();
        let Some(run) = before.run.clone() else {
            return Err(EngineError::Other(format!(
                "no renewal of {id} is in progress; nothing to cancel"
            )));
        };
        if run.phase >= Phase::Issued {
            return Err(EngineError::Other(format!(
                "the renewal of {id} is past step {}: the new certificate has arrived and goes on to registration and installation, so the run is not cancelled and finishes by itself; after it, `certvakt rollback {id}` goes back to the previous version",
                run.phase.as_str()
            )));
        }
        let mut record = before.clone();
        let closed = close_all_tasks(&mut record, now);
        let mut entry = HistoryEntry::of_run(&run, &record, &cert.plugin, Outcome::Cancelled, now);
        entry.tasks.clone_from(&closed);
        record.run = None;
        record.failures = 0;
        record.retry_at = None;
        record.last_error = None;
        record.cancelled = Some(Cancelled {
            at: now,
            serial: run.old.as_ref().map(|o| o.serial.clone()),
        });
        let prestaged = before.next_key.as_deref().cloned();
        // 1. The state saying "no run" is on disk before anything else changes.
        self.keep(id, record, before)?;
        // 2. The history: a failure to append is logged, never undoes the cancel.
        if let Err(e) = self.core.store.append_history(id, &entry) {
            log::error!(cert_id = id; "the run was cancelled, but its history entry cannot be written: {e}");
        }
        // 3. The pending keys: no run refers to them any more. A pre-staged key the run took
        //    becomes the next key again, so the hash published for it stays true.
        if cert.renewal.key_policy == crate::config::KeyPolicy::Prestage {
            if let Some(next) = &prestaged {
                super::next_key::give_back(&self.core.store, id, next);
            }
        }
        let removed = match self.core.store.remove_pending_keys(id) {
            Ok(keys) => keys.len(),
            Err(e) => {
                log::error!(cert_id = id; "the run was cancelled, but its pending key cannot be removed now ({e}); it is removed at the next start");
                0
            }
        };
        log::warn!(
            cert_id = id, plugin = cert.plugin.as_str(), run = run.number;
            "renewal cancelled by the operator after step {}; {} pending key(s) removed, {} task(s) closed",
            run.phase.as_str(), removed, closed.len()
        );
        let ordered = if run.phase >= Phase::Ordered {
            " An order already placed at the CA is not withdrawn: withdraw it there if it should not be issued."
        } else {
            ""
        };
        let tasks = if closed.is_empty() {
            String::new()
        } else {
            format!(" Closed task(s): {}.", closed.join(", "))
        };
        Ok(format!(
            "renewal of {id} (run {}) cancelled after step {}; the certificate in use and its key are unchanged, {removed} pending key(s) removed.{tasks}{ordered} No new run starts by itself for this certificate: `certvakt renew {id}` starts one.",
            run.number,
            run.phase.as_str()
        ))
    }

    /// `certvakt forget ID`.
    pub(super) fn forget(&mut self, id: &str) -> Result<String, EngineError> {
        if self.core.cert(id).is_some() {
            return Err(EngineError::Other(format!(
                "{id} is still in the configuration; `forget` discards only the run of a certificate removed from it (to stop a run in progress, use `certvakt cancel {id}`)"
            )));
        }
        let Some(removed) = self.removed.iter().find(|r| r.id == id).cloned() else {
            return Err(EngineError::UnknownCertificate(id.to_owned()));
        };
        let store = &self.core.store;
        let record: Record = store.load_state(id)?.unwrap_or_default();
        let now = crate::now_unix();
        let mut entry = match &record.run {
            Some(run) => HistoryEntry::of_run(run, &record, "", Outcome::Forgotten, now),
            None => HistoryEntry {
                run: None,
                outcome: Outcome::Forgotten,
                reason: None,
                started_at: None,
                finished_at: now,
                plugin: None,
                phase: None,
                old_serial: None,
                new_serial: None,
                version: None,
                notes: Vec::new(),
                error: None,
                tasks: Vec::new(),
            },
        };
        entry.plugin = None;
        entry.tasks.clone_from(&removed.open_tasks);
        // The state first, the keys after: a crash in between leaves only keys, which still
        // list the certificate as removed, and `forget` finishes the job.
        store.remove_state(id)?;
        if let Err(e) = store.append_history(id, &entry) {
            log::error!(cert_id = id; "the run was forgotten, but its history entry cannot be written: {e}");
        }
        let keys = store.remove_pending_keys(id)?;
        self.removed.retain(|r| r.id != id);
        log::warn!(cert_id = id; "forgot the run of a certificate removed from the configuration: state and {} pending key(s) removed", keys.len());
        Ok(format!(
            "forgot {id}: its renewal state and {} pending key(s) are removed; {} open task(s) dropped. Its history and installed versions stay in the state directory.",
            keys.len(),
            removed.open_tasks.len()
        ))
    }

    /// Finds the certificates with a folder in the store that are not configured and still
    /// hold a run (an open task or a pending key), says so, and lists them for the view.
    pub(super) fn find_removed(&mut self) {
        let store = &self.core.store;
        let ids = match store.cert_ids() {
            Ok(ids) => ids,
            Err(e) => {
                log::error!("cannot list the state directory's certificates: {e}");
                return;
            }
        };
        let mut removed = Vec::new();
        for id in ids {
            if self.core.cert(&id).is_some() {
                continue;
            }
            match held_run(store, &id) {
                Ok(Some(found)) => {
                    log::warn!(
                        cert_id = id.as_str();
                        "{id} is no longer in the configuration but holds a renewal (step {}, {} pending key(s), open task(s): {}); its state and pending key are kept in {}: add it back to continue, or `certvakt forget {id}` to discard them",
                        found.phase.map_or("none", Phase::as_str),
                        found.pending_keys,
                        if found.open_tasks.is_empty() { "none".to_owned() } else { found.open_tasks.join(", ") },
                        store.root().join("certs").join(&id).display()
                    );
                    removed.push(found);
                }
                Ok(None) => {}
                Err(e) => {
                    log::error!(cert_id = id.as_str(); "{id} is no longer in the configuration and its state cannot be read: {e}");
                }
            }
        }
        self.removed = removed;
    }

    /// Removes the pending keys of a configured certificate that has no run: a cancel (or
    /// forget) that a crash stopped between the state and the keys. Only the run that made a
    /// pending key reads it, so one without a run must never be taken up by the next.
    pub(super) fn remove_orphan_keys(&self, id: &str, record: &Record) {
        if record.run.is_some() {
            return;
        }
        match self.core.store.remove_pending_keys(id) {
            Ok(keys) if !keys.is_empty() => {
                log::warn!(cert_id = id; "removed {} pending key(s) that no run refers to (a cancel interrupted by a crash)", keys.len());
            }
            Ok(_) => {}
            Err(e) => {
                log::error!(cert_id = id; "cannot remove pending keys that no run refers to: {e}");
            }
        }
    }
}

/// What a removed certificate still holds, if anything.
fn held_run(store: &Store, id: &str) -> Result<Option<RemovedCert>, EngineError> {
    let record: Record = store.load_state(id)?.unwrap_or_default();
    let keys = store.pending_keys(id)?;
    let open_tasks: Vec<String> = record.open_tasks().map(|t| t.id.clone()).collect();
    let phase = record.run.as_ref().map(|r| r.phase);
    if keys.is_empty() && open_tasks.is_empty() && phase.is_none() {
        return Ok(None);
    }
    Ok(Some(RemovedCert {
        id: id.to_owned(),
        phase,
        pending_keys: keys.len(),
        open_tasks,
    }))
}

/// Closes every open task of `record` at `now`; answers their ids.
fn close_all_tasks(record: &mut Record, now: i64) -> Vec<String> {
    let mut closed = Vec::new();
    for task in record.tasks.iter_mut().filter(|t| t.closed_at.is_none()) {
        task.closed_at = Some(now);
        closed.push(task.id.clone());
    }
    closed
}

/// Whether automatic renewal of the certificate with `serial` in use is held back by a cancel.
pub(super) fn held_by_cancel(record: &Record, serial: Option<&str>) -> bool {
    record
        .cancelled
        .as_ref()
        .is_some_and(|c| c.serial.as_deref() == serial)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, ManagedCertificate, Origin};
    use crate::lifecycle::{CertFacts, HistoryEntry, Outcome, Reason, Run, Task};

    fn config(dir: &Path, ids: &[&str]) -> Arc<Config> {
        let mut config = Config::defaults();
        config.daemon.state_dir = dir.join("state");
        config.certificates = ids
            .iter()
            .map(|id| {
                ManagedCertificate::new(
                    id,
                    dir.join(format!("live/{id}.pem")),
                    "manual",
                    Origin {
                        file: "/etc/certvakt/certvakt.toml".into(),
                        line: 1,
                    },
                )
            })
            .collect();
        Arc::new(config)
    }

    fn engine(config: Arc<Config>) -> Engine {
        let metrics = Arc::new(crate::metrics::Metrics::new(0).expect("metrics"));
        Engine::new(config, Arc::default(), metrics, None).expect("engine")
    }

    /// A run of `id` waiting at `phase` with an open task, and its pending key, on disk.
    fn waiting_run(state: &Path, id: &str, phase: Phase) -> Store {
        let store = Store::open(state).expect("store");
        let old = CertFacts {
            pem: String::new(),
            subject: format!("CN={id}"),
            serial: "0a".into(),
            not_before: 0,
            not_after: 1_000,
            identities: Vec::new(),
        };
        let mut run = Run::new(1, Reason::Requested, 100, Some(old));
        run.phase = phase;
        let record = Record {
            run: Some(Box::new(run)),
            runs: 1,
            tasks: vec![Task {
                id: format!("{id}-1-1"),
                cert_id: id.into(),
                phase: Phase::Ordered,
                title: "Order it".into(),
                instructions: "Order it by hand.".into(),
                files: Vec::new(),
                completes_by: certvakt_plugin_api::Completion::Import,
                opened_at: 100,
                closed_at: None,
            }],
            ..Record::default()
        };
        store.save_state(id, &record).expect("save");
        let key = store.pending_key_path(id).expect("key path");
        std::fs::write(&key, "not a real key").expect("key");
        store
    }

    fn history(store: &Store, id: &str) -> Vec<HistoryEntry> {
        crate::lifecycle::history::read(store, id, 10).expect("history")
    }

    #[test]
    fn cancel_saves_the_state_then_removes_the_key_and_holds_automatic_renewal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = config(tmp.path(), &["shop"]);
        let store = waiting_run(&config.daemon.state_dir, "shop", Phase::Ordered);
        let mut engine = engine(config);
        let message = engine.cancel("shop").expect("cancelled");
        assert!(message.contains("not withdrawn"), "{message}");
        assert!(message.contains("shop-1-1"), "{message}");
        let saved: Record = store.load_state("shop").expect("load").expect("state");
        assert!(saved.run.is_none());
        assert_eq!(saved.open_tasks().count(), 0);
        assert_eq!(
            saved.cancelled.as_ref().and_then(|c| c.serial.as_deref()),
            Some("0a")
        );
        assert!(held_by_cancel(&saved, Some("0a")));
        assert!(
            !held_by_cancel(&saved, Some("0b")),
            "a new certificate lifts the hold"
        );
        assert!(store.pending_keys("shop").expect("keys").is_empty());
        let entries = history(&store, "shop");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].outcome, Outcome::Cancelled);
        assert_eq!(entries[0].tasks, ["shop-1-1"]);
        assert_eq!(entries[0].plugin.as_deref(), Some("manual"));
        let again = engine
            .cancel("shop")
            .expect_err("nothing to cancel")
            .to_string();
        assert!(
            again.contains("no renewal of shop is in progress"),
            "{again}"
        );
        let unknown = engine.cancel("nope").expect_err("unknown");
        assert!(matches!(unknown, EngineError::UnknownCertificate(_)));
    }

    #[test]
    fn a_run_whose_certificate_arrived_is_not_cancelled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = config(tmp.path(), &["shop"]);
        let store = waiting_run(&config.daemon.state_dir, "shop", Phase::Issued);
        let mut engine = engine(config);
        let err = engine.cancel("shop").expect_err("past issue").to_string();
        assert!(err.contains("finishes by itself"), "{err}");
        let saved: Record = store.load_state("shop").expect("load").expect("state");
        assert!(saved.run.is_some());
        assert_eq!(store.pending_keys("shop").expect("keys").len(), 1);
    }

    #[test]
    fn a_pending_key_no_run_refers_to_is_removed_at_load() {
        // What a kill -9 between the cancel's state and its key removal leaves.
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = config(tmp.path(), &["shop"]);
        let store = waiting_run(&config.daemon.state_dir, "shop", Phase::Ordered);
        let mut record: Record = store.load_state("shop").expect("load").expect("state");
        record.run = None;
        store.save_state("shop", &record).expect("save");
        assert_eq!(store.pending_keys("shop").expect("keys").len(), 1);
        let _engine = engine(config);
        assert!(store.pending_keys("shop").expect("keys").is_empty());
    }

    #[test]
    fn a_new_run_never_takes_up_a_pending_key_no_run_refers_to() {
        // A cancel whose key removal failed leaves the key until the next start; a run
        // started before that (`certvakt renew`) removes it instead of making it its key.
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = config(tmp.path(), &["shop"]);
        let store = waiting_run(&config.daemon.state_dir, "shop", Phase::Ordered);
        let mut record: Record = store.load_state("shop").expect("load").expect("state");
        record.run = None;
        let engine = engine(config);
        // The key came back after the engine loaded (as if its removal had failed).
        let key = store.pending_key_path("shop").expect("key path");
        std::fs::write(&key, "not a real key").expect("key");
        let cert = engine.core.cert("shop").expect("configured").clone();
        engine.core.start_run(
            &cert,
            &mut record,
            super::super::Reason::Requested,
            None,
            200,
        );
        assert!(record.run.is_some());
        assert!(store.pending_keys("shop").expect("keys").is_empty());
    }

    #[test]
    fn a_removed_certificate_is_kept_until_forget_and_continues_if_it_comes_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let both = config(tmp.path(), &["shop", "old"]);
        let store = waiting_run(&both.daemon.state_dir, "old", Phase::Ordered);
        let mut engine = engine(config(tmp.path(), &["shop"]));
        assert_eq!(
            engine.removed,
            [RemovedCert {
                id: "old".into(),
                phase: Some(Phase::Ordered),
                pending_keys: 1,
                open_tasks: vec!["old-1-1".into()],
            }]
        );
        let view = engine.view();
        assert_eq!(view.read().expect("view").removed.len(), 1);
        // Back in the configuration: its run is there again, untouched.
        engine.reconfigure(both);
        assert!(engine.removed.is_empty());
        assert_eq!(
            engine
                .records
                .get("old")
                .and_then(|r| r.run.as_ref())
                .map(|r| r.phase),
            Some(Phase::Ordered)
        );
        assert_eq!(store.pending_keys("old").expect("keys").len(), 1);
        // Removed again, then forgotten.
        engine.reconfigure(config(tmp.path(), &["shop"]));
        let configured = engine.forget("shop").expect_err("configured").to_string();
        assert!(
            configured.contains("still in the configuration"),
            "{configured}"
        );
        let message = engine.forget("old").expect("forgotten");
        assert!(message.contains("1 pending key(s)"), "{message}");
        assert!(store.load_state::<Record>("old").expect("load").is_none());
        assert!(store.pending_keys("old").expect("keys").is_empty());
        assert_eq!(history(&store, "old")[0].outcome, Outcome::Forgotten);
        assert!(engine.removed.is_empty());
        let gone = engine.forget("old").expect_err("nothing left");
        assert!(matches!(gone, EngineError::UnknownCertificate(_)));
    }
}
