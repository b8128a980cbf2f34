//! The audit history of a managed certificate: one [`HistoryEntry`] per ended run, appended to
//! the store's `history.jsonl`, and read back for `certvakt history`.
//!
//! Contract:
//! - Every way a run ends writes one entry: completed (after the retire step), cancelled by
//!   the operator, forgotten (the certificate left the configuration and the operator
//!   discarded its run), and a rollback (which ends no run, but changes what is live).
//! - Lines written before entries had an `outcome` read as `completed`: the only ending that
//!   was recorded then. A line that does not parse is an error naming the file and the line
//!   (the store's reader says so); it never stops the daemon.
//! - An entry never holds key material: serials, times, ids and sentences only.

use serde::{Deserialize, Serialize};

use super::{EngineError, Reason};
use crate::store::{Store, VersionId};

/// How a run (or a rollback) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new certificate is installed, verified, and the old one retired.
    Completed,
    /// `certvakt cancel`: the run was stopped; the certificate in use stayed.
    Cancelled,
    /// `certvakt forget` of a certificate removed from the configuration: its run and
    /// pending key were discarded.
    Forgotten,
    /// `certvakt rollback`: the previous version is live again.
    RolledBack,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Cancelled => "cancelled",
            Outcome::Forgotten => "forgotten",
            Outcome::RolledBack => "rolled_back",
        }
    }
}

fn completed() -> Outcome {
    Outcome::Completed
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The run's number (none for a rollback).
    #[serde(default)]
    pub run: Option<u64>,
    #[serde(default = "completed")]
    pub outcome: Outcome,
    /// Why the run started.
    #[serde(default)]
    pub reason: Option<Reason>,
    #[serde(default)]
    pub started_at: Option<i64>,
    pub finished_at: i64,
    /// The plugin in charge (absent in entries written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The last step the run completed before it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<super::Phase>,
    #[serde(default)]
    pub old_serial: Option<String>,
    #[serde(default)]
    pub new_serial: Option<String>,
    #[serde(default)]
    pub version: Option<VersionId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The last error of the run, when it ended with one standing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The operator tasks the ending closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
}

impl HistoryEntry {
    /// An entry for run `run` of `record` ending now with `outcome`.
    pub fn of_run(
        run: &super::Run,
        record: &super::Record,
        plugin: &str,
        outcome: Outcome,
        now: i64,
    ) -> HistoryEntry {
        HistoryEntry {
            run: Some(run.number),
            outcome,
            reason: Some(run.reason),
            started_at: Some(run.started_at),
            finished_at: now,
            plugin: Some(plugin.to_owned()),
            phase: Some(run.phase),
            old_serial: run.old.as_ref().map(|o| o.serial.clone()),
            new_serial: run.new.as_ref().map(|n| n.serial.clone()),
            version: run.version,
            notes: run.notes.clone(),
            error: record.last_error.clone(),
            tasks: Vec::new(),
        }
    }
}

/// The last `limit` entries of `id`'s history, newest first.
pub fn read(store: &Store, id: &str, limit: usize) -> Result<Vec<HistoryEntry>, EngineError> {
    let mut entries: Vec<HistoryEntry> = store.read_history(id, limit)?;
    entries.reverse();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_from_before_outcomes_reads_as_completed_and_new_lines_round_trip() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let store = Store::open(&dir).expect("store");
        // What `finish` wrote before entries had an outcome.
        store
            .append_history(
                "shop",
                &serde_json::json!({"run": 1, "reason": "scheduled", "started_at": 10,
                    "finished_at": 20, "old_serial": "01", "new_serial": "02",
                    "version": 2, "notes": []}),
            )
            .expect("append");
        let cancelled = HistoryEntry {
            run: Some(2),
            outcome: Outcome::Cancelled,
            reason: Some(Reason::Requested),
            started_at: Some(30),
            finished_at: 40,
            plugin: Some("manual".into()),
            phase: Some(super::super::Phase::Ordered),
            old_serial: Some("02".into()),
            new_serial: None,
            version: None,
            notes: Vec::new(),
            error: None,
            tasks: vec!["shop-2-1".into()],
        };
        store.append_history("shop", &cancelled).expect("append");
        let read = read(&store, "shop", 10).expect("read");
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], cancelled, "newest first");
        assert_eq!(read[1].outcome, Outcome::Completed);
        assert_eq!(read[1].new_serial.as_deref(), Some("02"));
        assert_eq!(read[1].plugin, None);
        let last = super::read(&store, "shop", 1).expect("read");
        assert_eq!(last, vec![cancelled]);
    }

    #[test]
    fn a_damaged_line_is_an_error_naming_file_and_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let store = Store::open(&dir).expect("store");
        store
            .append_history("shop", &serde_json::json!({"finished_at": 1}))
            .expect("append");
        let path = dir.join("certs/shop/history.jsonl");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{not json}\n");
        std::fs::write(&path, text).expect("write");
        let err = read(&store, "shop", 10).expect_err("damaged").to_string();
        assert!(err.contains("history.jsonl"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
}
