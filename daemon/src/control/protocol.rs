//! The control socket protocol: one JSON object per line, in both directions.
//!
//! A connection starts with a [`Hello`] from the client and a [`HelloReply`] from the daemon.
//! Both are deliberately loose (unknown fields ignored, nothing but numbers and strings) so
//! that any two versions of certvakt can read each other's hello and say clearly that they do
//! not fit, instead of failing on a parse error. After a successful hello the client sends
//! [`Request`]s and reads one [`Response`] for each, in order.
//!
//! Everything here, and in [`super::wire`], is the protocol's own: no internal type of the
//! daemon crosses the socket, so renaming one changes nothing on the wire. `certvakt --json`
//! prints these responses as they are. The JSON of every response variant is pinned in
//! `src/control/golden/` (see `golden.rs`): a change there is a change of
//! [`PROTOCOL_VERSION`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::wire::{
    CertInfo, CertState, Completion, ConfigProblem, IdentityFields, KeyCheck, KeyInfo,
    NordicIdentity, Phase, ProblemKind, Renewal, ShownEntry, SourceKind, SourceProblem, Task,
};

/// Bumped whenever a request or response changes: the CLI and the daemon exchange it in the
/// hello and refuse each other, with a sentence, when it differs. The golden files in
/// `src/control/golden/` record the JSON of each version.
pub const PROTOCOL_VERSION: u32 = 6;

/// The client's first line: `{"hello":{"protocol":1,"version":"0.1.0","program":"certvakt"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub hello: HelloBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloBody {
    pub protocol: u32,
    pub version: String,
    #[serde(default)]
    pub program: String,
}

/// The daemon's answer to a hello. `error` is set (and `access` is `none`) when the protocol
/// does not fit or the peer is not allowed in; the daemon closes the connection after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    pub hello: HelloReplyBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReplyBody {
    pub protocol: u32,
    pub version: String,
    #[serde(default)]
    pub access: Access,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a peer may do, decided from its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Not allowed in.
    #[default]
    None,
    /// Member of `read_group`: may look.
    Read,
    /// root or member of `admin_group`: may change things.
    Admin,
}

/// A request after the hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Daemon health and a summary of every certificate; read access.
    Status,
    /// One line per certificate found, a page at a time: from `offset` (in inventory order),
    /// at most `limit` and never more than [`LIST_PAGE`] items; read access.
    List {
        #[serde(default, skip_serializing_if = "is_zero")]
        offset: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Every managed certificate's renewal, a page at a time: from `offset` (in
    /// configuration order), at most `limit` and never more than [`LIST_PAGE`]; read access.
    Renewals {
        #[serde(default, skip_serializing_if = "is_zero")]
        offset: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Everything about one certificate id (or watched path); read access.
    Show { id: String },
    /// Re-read the configuration (validated first) and rescan; admin access.
    Reload,
    /// Start a renewal of a managed certificate now (`force`: even if not due), or retry the
    /// waiting step of one in progress; admin access.
    Renew {
        id: String,
        #[serde(default)]
        force: bool,
    },
    /// Install the previous version again; admin access.
    Rollback { id: String },
    /// Every open operator task; read access.
    Tasks,
    /// One task with its instructions and files; read access.
    TaskShow { id: String },
    /// Mark a `confirm` task done; admin access.
    TaskDone { id: String },
    /// A certificate from the CA for `id`: PEM/DER certificates, or a PKCS#12 with
    /// `password`; `data` is base64; a set's further files in `more`. Admin access.
    Import {
        id: String,
        data: String,
        #[serde(default)]
        password: Option<String>,
        /// A certificate set's further files, base64, opened with the same `password`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        more: Vec<String>,
    },
    /// The plugins loaded, and the files refused with the reason; read access.
    Plugins,
    /// Send a test message through one `[[notify]]` route, or every route; admin access.
    NotifyTest {
        #[serde(default)]
        route: Option<String>,
    },
    /// Try the undeliverable notifications again; admin access.
    NotifyRetry,
    /// The ended runs of a managed certificate, newest first (at most `limit`, default
    /// [`HISTORY_LIMIT`]); read access.
    History {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// What a renewal would do now, changing nothing; read access (nothing is written, and
    /// the plugin is asked only its read-only `describe` and `csr_profile`).
    RenewDryRun { id: String },
    /// Stop the run in progress between steps, keeping the certificate in use; admin access.
    Cancel { id: String },
    /// Discard the kept run and pending key of a certificate removed from the configuration;
    /// admin access.
    Forget { id: String },
}

/// How many history entries `history` answers when no limit is given.
pub const HISTORY_LIMIT: usize = 20;

impl Request {
    /// The access a request needs.
    pub fn needs(&self) -> Access {
        match self {
            Request::Status
            | Request::List { .. }
            | Request::Renewals { .. }
            | Request::Show { .. }
            | Request::Tasks
            | Request::TaskShow { .. }
            | Request::Plugins
            | Request::History { .. }
            | Request::RenewDryRun { .. } => Access::Read,
            Request::Reload
            | Request::Renew { .. }
            | Request::Rollback { .. }
            | Request::TaskDone { .. }
            | Request::Import { .. }
            | Request::NotifyTest { .. }
            | Request::NotifyRetry
            | Request::Cancel { .. }
            | Request::Forget { .. } => Access::Admin,
        }
    }

    /// Its name, as in the `request` tag.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::List { .. } => "list",
            Request::Renewals { .. } => "renewals",
            Request::Show { .. } => "show",
            Request::Reload => "reload",
            Request::Renew { .. } => "renew",
            Request::Rollback { .. } => "rollback",
            Request::Tasks => "tasks",
            Request::TaskShow { .. } => "task_show",
            Request::TaskDone { .. } => "task_done",
            Request::Import { .. } => "import",
            Request::Plugins => "plugins",
            Request::NotifyTest { .. } => "notify_test",
            Request::NotifyRetry => "notify_retry",
            Request::History { .. } => "history",
            Request::RenewDryRun { .. } => "renew_dry_run",
            Request::Cancel { .. } => "cancel",
            Request::Forget { .. } => "forget",
        }
    }
}

/// The answer to one [`Request`]; each variant is named after its request, and its `response`
/// tag is that name (`{"response":"status",…}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// Answers [`Request::Status`]: the daemon and every certificate at a glance, with each
    /// managed certificate's renewal.
    Status(Box<StatusReport>),
    /// Answers [`Request::List`]: one page of the certificates found, in inventory order.
    List {
        items: Vec<ListItem>,
        /// How many certificates the inventory holds in all.
        #[serde(default)]
        total: usize,
        /// The scan the page comes from (Unix seconds): pages of two scans do not fit together.
        #[serde(default)]
        scanned_at: i64,
    },
    /// Answers [`Request::Renewals`]: one page of the managed certificates' renewals, in
    /// configuration order.
    Renewals {
        items: Vec<Renewal>,
        /// How many managed certificates there are in all.
        total: usize,
    },
    /// Answers [`Request::Show`]: the certificates under the id, their source's problems and
    /// the renewal.
    Show(ShowReport),
    /// Answers [`Request::Reload`] when the new configuration was valid and applied (a refused
    /// one is an [`ErrorCode::InvalidConfig`] error).
    Reload(ReloadReport),
    /// Answers [`Request::Renew`]: what the renewal engine did (started a run, nudged the run in
    /// progress, or why nothing was due), as a sentence.
    Renew { message: String },
    /// Answers [`Request::Rollback`]: the version installed again, as a sentence.
    Rollback { message: String },
    /// Answers [`Request::Tasks`]: every open operator task.
    Tasks { tasks: Vec<Task> },
    /// Answers [`Request::TaskShow`]: one open task, with its instructions and files.
    TaskShow { task: Task },
    /// Answers [`Request::TaskDone`]: what completing the task did, as a sentence.
    TaskDone { message: String },
    /// Answers [`Request::Import`]: what the imported certificate was taken for, as a sentence.
    Import { message: String },
    /// Answers [`Request::Plugins`]: the plugins loaded and the files refused.
    Plugins(PluginsReport),
    /// Answers [`Request::NotifyTest`]: each route's result, in configuration order.
    NotifyTest { results: Vec<NotifyTestResult> },
    /// Answers [`Request::NotifyRetry`]: how many undeliverable messages are queued again.
    NotifyRetry { queued: usize },
    /// Answers [`Request::History`]: the ended runs, newest first.
    History {
        id: String,
        entries: Vec<HistoryEntry>,
    },
    /// Answers [`Request::RenewDryRun`]: what a renewal would do.
    RenewDryRun(DryRunReport),
    /// Answers [`Request::Cancel`]: what was cancelled and what was kept, as a sentence.
    Cancel { message: String },
    /// Answers [`Request::Forget`]: what was removed, as a sentence.
    Forget { message: String },
    /// Answers any request that failed; `code` is for scripts, `message` for people.
    Error { code: ErrorCode, message: String },
}

impl Response {
    /// Its name, as in the `response` tag: the name of the request it answers, or `error`.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Status(_) => "status",
            Response::List { .. } => "list",
            Response::Renewals { .. } => "renewals",
            Response::Show(_) => "show",
            Response::Reload(_) => "reload",
            Response::Renew { .. } => "renew",
            Response::Rollback { .. } => "rollback",
            Response::Tasks { .. } => "tasks",
            Response::TaskShow { .. } => "task_show",
            Response::TaskDone { .. } => "task_done",
            Response::Import { .. } => "import",
            Response::Plugins(_) => "plugins",
            Response::NotifyTest { .. } => "notify_test",
            Response::NotifyRetry { .. } => "notify_retry",
            Response::History { .. } => "history",
            Response::RenewDryRun(_) => "renew_dry_run",
            Response::Cancel { .. } => "cancel",
            Response::Forget { .. } => "forget",
            Response::Error { .. } => "error",
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line was not a request this daemon understands.
    BadRequest,
    /// The peer's access is not enough for this request.
    Forbidden,
    /// No certificate or source with that id.
    NotFound,
    /// A reload found the new configuration invalid; the running one stays.
    InvalidConfig,
    /// Something went wrong inside the daemon.
    Internal,
    /// The daemon understood and would not do it (an import that does not fit, a rollback
    /// with nothing to go back to, a plugin that is not loaded); the message says why.
    Refused,
}

/// Overall health, worst first wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    Warning,
    Critical,
}

/// Counts of certificates by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub ok: usize,
    pub expiring: usize,
    pub expired: usize,
    pub not_yet_valid: usize,
    /// Sources (files, patterns) with a problem, not counting first issues under way.
    pub problems: usize,
    /// Managed certificates whose first issue is under way (no file yet, a run in progress):
    /// a warning, not a source problem.
    #[serde(default)]
    pub first_issues: usize,
    /// Renewed certificates installed before their not-before while the run that made them
    /// goes on (not counted in `not_yet_valid`): a warning.
    #[serde(default)]
    pub staged: usize,
}

/// Counts over every managed certificate's renewal, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalCounts {
    /// Managed certificates.
    pub renewals: usize,
    /// With a run in progress.
    pub in_progress: usize,
    /// Whose last step failed (failures in a row > 0).
    pub failing: usize,
    /// Operator tasks waiting for a person, over all of them.
    pub tasks: usize,
    /// Whose plugin is not loaded (not renewed).
    pub plugin_not_loaded: usize,
    /// That need a person: failing, with a task waiting, or without their plugin.
    pub need_someone: usize,
}

/// A managed certificate that has no file yet because its first issue is under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstIssue {
    pub id: String,
    /// Where the certificate will be installed.
    pub path: String,
    /// The last step the run completed.
    pub step: Phase,
}

/// `list` answers at most this many certificates at once (about 1 MiB), so an answer stays far
/// below the 16 MiB line limit whatever the inventory; the CLI asks page after page.
pub const LIST_PAGE: usize = 2_000;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `status` lists at most this many certificates needing attention, and this many source
/// problems: its answer stays small whatever the inventory (the counts are always whole;
/// `certvakt list --expiring` lists every certificate).
pub const STATUS_CAP: usize = 100;

/// `status`: the daemon and the certificates at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    /// Unix seconds.
    pub started_at: i64,
    pub now: i64,
    pub config_files: Vec<PathBuf>,
    /// Unix seconds when the running configuration was loaded.
    pub config_loaded_at: i64,
    /// Set when the last reload was refused; the running configuration is older.
    pub last_reload_error: Option<String>,
    pub scanned_at: i64,
    pub socket: PathBuf,
    pub metrics_listen: Option<String>,
    pub warn_before_secs: u64,
    pub health: Health,
    pub counts: Counts,
    /// Certificates that are not `ok`, soonest expiry first; at most [`STATUS_CAP`].
    pub attention: Vec<ListItem>,
    /// Sources with a problem, in inventory order; at most [`STATUS_CAP`].
    pub problems: Vec<SourceProblem>,
    /// How many more certificates need attention than `attention` lists (the cap).
    #[serde(default)]
    pub attention_more: usize,
    /// How many more source problems there are than `problems` lists (the cap).
    #[serde(default)]
    pub problems_more: usize,
    /// Managed certificates' renewals, in configuration order; at most [`STATUS_CAP`]. When
    /// there are more, the ones kept are those that need a person (a failure, a task, a
    /// missing plugin), then those with a run in progress, then the soonest next step
    /// (`certvakt renewals` lists every one).
    #[serde(default)]
    pub renewals: Vec<Renewal>,
    /// How many more managed certificates there are than `renewals` lists (the cap).
    #[serde(default)]
    pub renewals_more: usize,
    /// Counts over every managed certificate's renewal, whatever `renewals` lists.
    #[serde(default)]
    pub renewal_counts: RenewalCounts,
    /// Plugin files refused at start-up.
    #[serde(default)]
    pub plugins_refused: usize,
    /// The notification outbox.
    #[serde(default)]
    pub notifications: Notifications,
    /// Certificates removed from the configuration whose run is kept until `certvakt forget`.
    #[serde(default)]
    pub removed: Vec<RemovedCertificate>,
    /// Managed certificates whose first issue is under way (not in `problems`).
    #[serde(default)]
    pub first_issues: Vec<FirstIssue>,
}

/// A certificate removed from the configuration that still holds a run, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedCertificate {
    pub id: String,
    /// The last step its kept run completed, when there is a run.
    pub step: Option<Phase>,
    /// How many pending keys are kept.
    pub pending_keys: usize,
    /// The open tasks of the kept run.
    pub open_tasks: Vec<String>,
}

impl From<&crate::lifecycle::RemovedCert> for RemovedCertificate {
    fn from(removed: &crate::lifecycle::RemovedCert) -> RemovedCertificate {
        RemovedCertificate {
            id: removed.id.clone(),
            step: removed.phase.map(Phase::from),
            pending_keys: removed.pending_keys,
            open_tasks: removed.open_tasks.clone(),
        }
    }
}

/// How an ended run (or a rollback) ended, in `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Cancelled,
    Forgotten,
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

/// One ended run, in `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The run's number; `None` for a rollback.
    pub run: Option<u64>,
    pub outcome: Outcome,
    /// Why the run started (`scheduled`, `requested`, `first_issue`, `suggested`, `import`).
    pub reason: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: i64,
    /// The plugin in charge, when the entry recorded it.
    pub plugin: Option<String>,
    /// The last step the run completed.
    pub step: Option<Phase>,
    pub old_serial: Option<String>,
    pub new_serial: Option<String>,
    /// The installed version (for a rollback: the version live again).
    pub version: Option<u64>,
    pub notes: Vec<String>,
    /// The error standing when the run ended.
    pub error: Option<String>,
    /// The operator tasks the ending closed.
    pub tasks: Vec<String>,
}

impl From<&crate::lifecycle::HistoryEntry> for HistoryEntry {
    fn from(entry: &crate::lifecycle::HistoryEntry) -> HistoryEntry {
        use crate::lifecycle::Outcome as O;
        HistoryEntry {
            run: entry.run,
            outcome: match entry.outcome {
                O::Completed => Outcome::Completed,
                O::Cancelled => Outcome::Cancelled,
                O::Forgotten => Outcome::Forgotten,
                O::RolledBack => Outcome::RolledBack,
            },
            reason: entry.reason.and_then(|r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            }),
            started_at: entry.started_at,
            finished_at: entry.finished_at,
            plugin: entry.plugin.clone(),
            step: entry.phase.map(Phase::from),
            old_serial: entry.old_serial.clone(),
            new_serial: entry.new_serial.clone(),
            version: entry.version.map(|v| v.0),
            notes: entry.notes.clone(),
            error: entry.error.clone(),
            tasks: entry.tasks.clone(),
        }
    }
}

/// `renew --dry-run`: what a renewal would do now; nothing was changed to find out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunReport {
    pub id: String,
    pub plugin: String,
    pub plugin_summary: String,
    /// Whether a renewal would start now without `--force` (or one is in progress).
    pub due: bool,
    /// When it is due (Unix seconds), when that is known.
    pub due_at: Option<i64>,
    /// Why it is or is not due, as a sentence.
    pub why: String,
    /// The last step of the run in progress, when there is one.
    pub step: Option<Phase>,
    /// The steps a renewal would take, in order.
    pub steps: Vec<DryRunStep>,
    /// The key that would be made (or kept), as a sentence.
    pub key: String,
    /// The CSR's subject attributes (`CN=…`), most significant first.
    pub subject: Vec<String>,
    /// The CSR's SANs (`DNS:…`).
    pub sans: Vec<String>,
    /// The hooks around the install (`deploy_hook: /usr/bin/…`).
    pub hooks: Vec<String>,
    /// Whether an operator task is expected, as a sentence.
    pub tasks: String,
}

/// One step of a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunStep {
    pub step: String,
    pub what: String,
}

impl From<&crate::lifecycle::DryRun> for DryRunReport {
    fn from(d: &crate::lifecycle::DryRun) -> DryRunReport {
        DryRunReport {
            id: d.id.clone(),
            plugin: d.plugin.clone(),
            plugin_summary: d.plugin_summary.clone(),
            due: d.due,
            due_at: d.due_at,
            why: d.why.clone(),
            step: d.run_phase.map(Phase::from),
            steps: d
                .steps
                .iter()
                .map(|s| DryRunStep {
                    step: s.step.clone(),
                    what: s.what.clone(),
                })
                .collect(),
            key: d.key.clone(),
            subject: d.subject.clone(),
            sans: d.sans.clone(),
            hooks: d.hooks.clone(),
            tasks: d.tasks.clone(),
        }
    }
}

/// The notification outbox, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    /// How many `[[notify]]` routes are configured.
    pub routes: usize,
    /// Messages still being tried.
    pub pending: usize,
    /// When the oldest of them was queued (Unix seconds).
    pub oldest_pending_at: Option<i64>,
    /// Messages given up on: kept until `certvakt notify retry`.
    pub undeliverable: Vec<UndeliveredNotification>,
    pub last_sent_at: Option<i64>,
    /// Why the outbox could not be read or written.
    pub problem: Option<String>,
}

/// A notification that could not be delivered within `retry_for`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeliveredNotification {
    pub route: String,
    pub event: String,
    pub subject: String,
    pub queued_at: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// One route's result in `notify test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyTestResult {
    pub route: String,
    pub channel: String,
    pub ok: bool,
    /// The relay's or receiver's answer, or why it failed.
    pub detail: String,
}

/// One certificate in `list` (and in `status.attention`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListItem {
    pub id: String,
    pub source: SourceKind,
    pub path: PathBuf,
    /// The subject's CN, or the whole subject when it has none.
    pub name: String,
    /// The Nordic identity, short: `DK CVR 12345678 UUID …`, `SE HSA SE…`, `NO org 123456789`.
    pub identity: Option<String>,
    pub not_after: i64,
    /// Negative once expired.
    pub seconds_left: i64,
    pub state: CertState,
    /// The Nordic identity as fields (the first one the certificate carries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_fields: Option<IdentityFields>,
    /// A renewed certificate installed before its not-before while its run goes on: not
    /// valid yet, and a warning rather than critical (`status.attention` only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged: bool,
}

/// `show ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowReport {
    pub id: String,
    /// The certificate(s) under this id: the one asked for, followed by the rest of its file.
    pub entries: Vec<ShownEntry>,
    /// Problems of the source behind this id.
    pub problems: Vec<SourceProblem>,
    /// The renewal, for a managed certificate.
    #[serde(default)]
    pub renewal: Option<Renewal>,
}

/// `reload`: what the new configuration and scan found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    pub summary: String,
    pub certificates: usize,
    pub problems: usize,
}

/// `plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginsReport {
    pub plugin_dir: PathBuf,
    pub loaded: Vec<PluginInfo>,
    pub refused: Vec<RefusedPlugin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub file: PathBuf,
    /// The managed certificates that use it.
    pub certificates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedPlugin {
    pub file: PathBuf,
    pub reason: String,
}

/// What `certvakt check-config --json` prints (the CLI checks the files itself; this never
/// crosses the socket, but scripts read it like the responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConfigReport {
    /// No problem was found.
    pub ok: bool,
    /// Every problem found, in file order.
    pub problems: Vec<ConfigProblem>,
    /// What the configuration holds, when it is valid.
    pub summary: Option<String>,
}
