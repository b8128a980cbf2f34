//! The renewal engine's persisted state: one [`Record`] per managed certificate, holding the
//! run in progress (if any), its operator tasks, and what happened last.
//!
//! The record is the write-ahead log of the state machine: the engine saves it (atomically,
//! through the store) after every step, and every step is written so that doing it again after
//! a crash is harmless. `phase` is the last step completed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::VersionId;

/// The steps of a renewal, in order. A run's `phase` is the last one completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The run exists; nothing done yet.
    Due,
    /// The new key is on disk (pending) and the CSR made.
    KeyGenerated,
    /// The order is with the CA (or a person); waiting for the certificate.
    Ordered,
    /// The certificate arrived, was checked against the key and profile, and is staged.
    Issued,
    /// The authorities that must know it were told.
    Registered,
    /// The live files are the new version.
    Installed,
    /// The authorities accept it.
    Verified,
    /// The old certificate was retired after the overlap; the run is over.
    Retired,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Due,
        Phase::KeyGenerated,
        Phase::Ordered,
        Phase::Issued,
        Phase::Registered,
        Phase::Installed,
        Phase::Verified,
        Phase::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Due => "due",
            Phase::KeyGenerated => "key_generated",
            Phase::Ordered => "ordered",
            Phase::Issued => "issued",
            Phase::Registered => "registered",
            Phase::Installed => "installed",
            Phase::Verified => "verified",
            Phase::Retired => "retired",
        }
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The schedule said so.
    Scheduled,
    /// `certvakt renew ID --force`, or `renew` when it was due anyway.
    Requested,
    /// The live certificate does not exist yet.
    FirstIssue,
    /// The authority's suggested renewal window (ACME Renewal Information) has begun.
    Suggested,
    /// `certvakt import` of a certificate whose key the CA made (PKCS#12).
    Import,
}

/// A few facts of a certificate, kept in the record for messages, hooks and retiring: the
/// same the plugins are given, so the record and the messages cannot drift apart.
pub use certvakt_plugin_api::CertificateInfo as CertFacts;

/// A renewal in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Counts runs of this certificate, from 1.
    pub number: u64,
    pub reason: Reason,
    pub started_at: i64,
    /// The last step completed.
    pub phase: Phase,
    /// When the last step completed.
    pub phase_at: i64,
    /// The CSR for the pending key (PEM), once made.
    #[serde(default)]
    pub csr_pem: Option<String>,
    /// The plugin's own state for this run, handed back on every call.
    #[serde(default)]
    pub plugin_state: Value,
    /// The certificate being replaced, when there is one.
    #[serde(default)]
    pub old: Option<CertFacts>,
    /// The new certificate, once issued.
    #[serde(default)]
    pub new: Option<CertFacts>,
    /// A certificate set's other roles being replaced, by role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub old_set: BTreeMap<String, CertFacts>,
    /// A certificate set's other new certificates, by role, once issued.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub new_set: BTreeMap<String, CertFacts>,
    /// Whether the plugin saw the staged certificate (or set) and had no objection
    /// (`check_issued`), which it does before registration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plugin_checked: bool,
    /// Whether every `[[certificate.verify]]` endpoint served the new certificate after the
    /// install (the verified deploy); only then are the authorities asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deploy_verified: bool,
    /// The new certificate's chain (PEM), once issued.
    #[serde(default)]
    pub chain_pem: Option<String>,
    /// The staged version, once issued.
    #[serde(default)]
    pub version: Option<VersionId>,
    /// Waiting for the CA, a person or the overlap: not before this time.
    #[serde(default)]
    pub wait_until: Option<i64>,
    /// What the operator should know about the new certificate (e.g. a new UUID).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the CSR asked for, to hold the issued certificate (and a key the CA made) to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<Requested>,
    /// A certificate set's further CSRs (PEM), by role: one pending key per role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub csr_set: BTreeMap<String, String>,
    /// What each further role's CSR asked for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requested_set: BTreeMap<String, Requested>,
}

impl Run {
    /// `phase` is the last step completed, at `now`; whatever the run waited for is over.
    pub fn set_phase(&mut self, phase: Phase, now: i64) {
        self.phase = phase;
        self.phase_at = now;
        self.wait_until = None;
    }

    /// Run `number`, started at `now` for `reason`, replacing `old` (when there is one).
    pub fn new(number: u64, reason: Reason, now: i64, old: Option<CertFacts>) -> Run {
        Run {
            number,
            reason,
            started_at: now,
            phase: Phase::Due,
            phase_at: now,
            csr_pem: None,
            plugin_state: Value::Null,
            old,
            new: None,
            old_set: BTreeMap::new(),
            new_set: BTreeMap::new(),
            plugin_checked: false,
            deploy_verified: false,
            chain_pem: None,
            version: None,
            wait_until: None,
            notes: Vec::new(),
            requested: None,
            csr_set: BTreeMap::new(),
            requested_set: BTreeMap::new(),
        }
    }
}

/// The parts of the plugin's CSR profile an issued certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    /// The key type the profile asks for (after `key_type` in the configuration).
    pub key: certvakt_plugin_api::profile::KeyAlgorithm,
    /// The key usages the CSR requested: the certificate must allow each.
    #[serde(default)]
    pub key_usage: Vec<certvakt_plugin_api::profile::KeyUsage>,
}

/// A step that needs a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// `<cert-id>-<run>-<n>`.
    pub id: String,
    pub cert_id: String,
    /// The step it belongs to (the one that will complete when it is done).
    pub phase: Phase,
    pub title: String,
    pub instructions: String,
    /// Files written for it, in the certificate's outbox.
    pub files: Vec<std::path::PathBuf>,
    /// How it completes: `import`, `confirm` (`certvakt task done`) or `poll` (the plugin
    /// sees it done).
    pub completes_by: certvakt_plugin_api::Completion,
    pub opened_at: i64,
    #[serde(default)]
    pub closed_at: Option<i64>,
}

/// Everything the engine keeps about one certificate (its `state.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Boxed: most certificates have no run most of the time, and a record is kept for each.
    #[serde(default)]
    pub run: Option<Box<Run>>,
    /// Runs started so far (numbers the next one).
    #[serde(default)]
    pub runs: u64,
    /// Consecutive failures of the current step; 0 after a success.
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub retry_at: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_success: Option<i64>,
    /// Open tasks, and closed ones of the current run.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// The notes of the last completed run (e.g. a new UUID), until the next one completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_notes: Vec<String>,
    /// What the plugin last said about when to renew the certificate in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested: Option<Suggestion>,
    /// The operator cancelled the last run: no run starts by itself for the certificate in
    /// use until `certvakt renew` (or a new certificate is live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Cancelled>,
    /// The key made in advance for the next renewal (`key_policy = "prestage"`), as it is
    /// shown and published: never the key itself. Boxed: most certificates have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key: Option<Box<NextKey>>,
}

/// A pre-staged key's public facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextKey {
    pub algorithm: certvakt_plugin_api::profile::KeyAlgorithm,
    /// SHA-256 of the SubjectPublicKeyInfo, lowercase hex: the data of a DANE `TLSA 3 1 1`
    /// record.
    pub spki_sha256: String,
    /// The SubjectPublicKeyInfo, DER, base64.
    pub spki: String,
    /// When it was made (Unix seconds).
    pub made_at: i64,
}

/// A cancelled run, holding back automatic renewal of the certificate it would have replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    pub at: i64,
    /// The serial of the certificate in use when it was cancelled; `None` before a first issue.
    pub serial: Option<String>,
}

/// The authority's suggested renewal window for one certificate (e.g. ACME Renewal
/// Information), as the plugin last gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// The serial of the certificate it is about: a new certificate needs a new answer.
    pub serial: String,
    /// Start and end, Unix seconds; `None`: the authority suggests nothing.
    pub window: Option<(i64, i64)>,
    #[serde(default)]
    pub explanation: Option<String>,
    /// When to ask again, Unix seconds.
    pub check_at: i64,
}

impl Record {
    /// The authority's suggested window for the certificate with `serial`, if it gave one for
    /// that certificate (an answer about an earlier certificate does not count).
    pub fn suggested_window(&self, serial: &str) -> Option<(i64, i64)> {
        self.suggested
            .as_ref()
            .filter(|s| s.serial == serial)
            .and_then(|s| s.window)
    }

    /// The open tasks.
    pub fn open_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().filter(|t| t.closed_at.is_none())
    }
}
