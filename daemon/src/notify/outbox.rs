//! The outbox: every message not yet delivered, and every condition already told, in one
//! file (`<state_dir>/notify/outbox.json`, 0600) replaced atomically (fsynced) at each change.
//!
//! Contract:
//! - A delivery is in the file before its first attempt and leaves it only once delivered;
//!   so after a crash at any point it is either still there (and is tried again, with the same
//!   id) or was delivered.
//! - A file this version cannot read (damaged, or written by a newer version) is never
//!   overwritten: it is moved aside as `outbox.json.unreadable-<time>`, the daemon says so
//!   (journal, `certvakt status`), and starts with an empty outbox.
//! - Attempts back off: 5 s after the first failure, doubling to at most 30 minutes; after
//!   `retry_for` a delivery is undeliverable (kept, shown, counted; `certvakt notify retry`
//!   tries it again); 30 days later it is dropped, said in the journal and counted. A
//!   delivery whose route was removed from the configuration is dropped at the reload.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::derive::Ledger;
use super::message::Message;
use crate::store;

/// The version of the file's layout.
pub const VERSION: u32 = 1;
/// The first retry's delay and the cap.
const BACKOFF_FIRST: i64 = 5;
const BACKOFF_MAX: i64 = 30 * 60;
/// At most this many deliveries are kept; beyond it the oldest delivered-or-undeliverable
/// are dropped first (counted and logged), so a route that fails for months cannot fill the
/// disk.
pub const MAX_QUEUE: usize = 10_000;

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// What was told, by condition key.
    #[serde(default)]
    pub told: Ledger,
    /// Deliveries not yet made, oldest first.
    #[serde(default)]
    pub queue: Vec<Delivery>,
}

/// One message on its way to one route (or a plugin's mail to its recipients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `<message id>.<route>`: the idempotency key the receiver sees.
    pub id: String,
    /// The route's name; for a plugin's own mail, `plugin-mail`.
    pub route: String,
    /// `mail`, `webhook` or `command`, for the metrics and status.
    pub channel: String,
    pub message: Message,
    /// A plugin's own mail: its recipients (routes have theirs in the configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    pub created_at: i64,
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set once `retry_for` has passed (or the error cannot go away by waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up_at: Option<i64>,
}

/// Recipients of a plugin's own mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

impl Delivery {
    /// Whether an attempt is due at `now`.
    pub fn due(&self, now: i64) -> bool {
        self.gave_up_at.is_none() && self.next_at <= now
    }

    /// Records a failed attempt at `now`: when to try again, or that it is undeliverable.
    pub fn failed(&mut self, now: i64, error: String, permanent: bool, retry_for: i64) {
        self.attempts += 1;
        self.last_error = Some(error);
        let shift = self.attempts.saturating_sub(1).min(20);
        let delay = (BACKOFF_FIRST << shift).min(BACKOFF_MAX);
        self.next_at = now + delay;
        if permanent || now - self.created_at >= retry_for {
            self.gave_up_at = Some(now);
        }
    }
}

/// The outbox file.
#[derive(Debug, Clone)]
pub struct Outbox {
    path: PathBuf,
}

impl Outbox {
    /// The outbox of the state directory `state_dir`.
    pub fn new(state_dir: &Path) -> Outbox {
        Outbox {
            path: state_dir.join("notify").join("outbox.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file (blocking). A missing file is an empty outbox; an unreadable one is
    /// moved aside and reported in the `String`.
    pub fn load(&self) -> (State, Option<String>) {
        let empty = State {
            version: VERSION,
            ..State::default()
        };
        let bytes = match crate::bounded::read_no_follow(&self.path, 256 * 1024 * 1024) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return (empty, None),
            Err(e) => return (empty, Some(self.set_aside(&e.sentence(&self.path)))),
        };
        let why = match serde_json::from_slice::<State>(&bytes) {
            Ok(state) if state.version == VERSION => return (state, None),
            Ok(state) => format!(
                "it was written by another version of certvakt (layout {}, this one reads {VERSION})",
                state.version
            ),
            Err(e) => format!("it is damaged ({e})"),
        };
        (empty, Some(self.set_aside(&why)))
    }

    fn set_aside(&self, why: &str) -> String {
        let aside = self
            .path
            .with_file_name(format!("outbox.json.unreadable-{}", crate::now_unix()));
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => format!(
                "the notification outbox {} could not be read: {why}; it was moved to {} and \
                 certvakt started a new one (messages in the old file were not sent)",
                self.path.display(),
                aside.display()
            ),
            Err(e) => format!(
                "the notification outbox {} could not be read: {why}, nor moved aside ({e}); \
                 certvakt keeps it and holds every notification until it is fixed or removed",
                self.path.display()
            ),
        }
    }

    /// Replaces the file with `state` (blocking): written to a temporary file, fsynced, and
    /// renamed over the old one.
    pub fn save(&self, state: &State) -> Result<(), String> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        store::atomic::write_json(&self.path, state, &store::FileSpec::mode(0o600))
            .map_err(|e| format!("cannot write the notification outbox: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NotifyEvent;

    fn delivery(created_at: i64) -> Delivery {
        Delivery {
            id: "abc.desk".into(),
            route: "desk".into(),
            channel: "mail".into(),
            message: Message {
                id: "abc".into(),
                event: NotifyEvent::TaskOpened,
                cert_id: Some("fmk-prod".into()),
                task_id: None,
                plugin: None,
                created_at,
                deadline: None,
                subject: "Fornyelse: æ ø å".into(),
                body: "body".into(),
                attachments: Vec::new(),
                details: serde_json::Map::new(),
            },
            envelope: None,
            created_at,
            attempts: 0,
            next_at: created_at,
            last_error: None,
            gave_up_at: None,
        }
    }

    #[test]
    fn attempts_back_off_then_give_up_after_retry_for() {
        let mut d = delivery(1000);
        assert!(d.due(1000));
        d.failed(1000, "down".into(), false, 3600);
        assert_eq!(d.next_at, 1005);
        assert!(!d.due(1004));
        d.failed(1005, "down".into(), false, 3600);
        assert_eq!(d.next_at, 1015);
        let mut at = d.next_at;
        for _ in 0..30 {
            at = d.next_at;
            d.failed(at, "down".into(), false, 1_000_000_000);
        }
        assert_eq!(d.next_at - at, BACKOFF_MAX);
        assert!(d.gave_up_at.is_none());
        d.failed(1000 + 3600, "down".into(), false, 3600);
        assert_eq!(d.gave_up_at, Some(4600));
        assert!(!d.due(i64::MAX));
        let mut p = delivery(0);
        p.failed(1, "550 no such user".into(), true, 3600);
        assert_eq!(p.gave_up_at, Some(1));
    }

    #[test]
    fn the_file_round_trips_and_a_damaged_or_newer_one_is_set_aside_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::new(dir.path());
        assert_eq!(outbox.load().0.queue.len(), 0);
        let mut state = State {
            version: VERSION,
            ..State::default()
        };
        state.queue.push(delivery(5));
        outbox.save(&state).expect("save");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(outbox.path())
                .expect("meta")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(outbox.load(), (state.clone(), None));

        // Cut off half-way, as a full disk or a copy might leave it.
        let bytes = std::fs::read(outbox.path()).expect("read");
        std::fs::write(outbox.path(), &bytes[..bytes.len() / 2]).expect("write");
        let (loaded, problem) = outbox.load();
        assert!(loaded.queue.is_empty());
        let problem = problem.expect("a problem");
        assert!(problem.contains("damaged"), "{problem}");
        let aside: Vec<_> = std::fs::read_dir(dir.path().join("notify"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("outbox.json.unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let kept = std::fs::read(dir.path().join("notify").join(&aside[0])).expect("aside");
        assert_eq!(kept, bytes[..bytes.len() / 2]);

        // A newer layout is not this version's to rewrite.
        let newer = serde_json::json!({"version": 2, "told": {}, "queue": []});
        std::fs::write(outbox.path(), newer.to_string()).expect("write");
        let (_, problem) = outbox.load();
        assert!(problem.expect("a problem").contains("another version"),);
        assert!(!outbox.path().exists());
    }
}
