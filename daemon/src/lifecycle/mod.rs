//! The renewal engine: for each managed certificate, `due → key generated → ordered → issued →
//! registered → installed → verified → retired`, through its plugin.
//!
//! Contract:
//! - One task owns the engine ([`Engine::run`], in `engine`): it owns every certificate's
//!   [`Record`], answers commands, takes the inbox, and starts steps. It never waits for a
//!   plugin: each certificate's steps run in a task of their own that holds the record while it
//!   runs and hands it back, so a slow authority holds up neither the commands, nor the
//!   control socket, nor `/metrics`, nor another certificate.
//! - At most one plugin call per certificate is ever in flight: a certificate is busy until
//!   every plugin call its steps made has returned, a call that overran its deadline included
//!   (its blocking thread cannot be stopped, so the next step waits for it). A command that
//!   would change a busy certificate's record is refused at once and says why.
//! - Every step is written ahead: the record is saved after each step, each step can be done
//!   again after a crash without harm, and the new key is on disk (0600) before anything is
//!   asked of a CA. No step starts from a record that is not on disk: a failed save is a
//!   failure (status, metric, log) retried with backoff, and a command whose effect could not
//!   be saved answers an error and changes nothing. So a kill -9 at any point resumes where it
//!   stopped and never loses a key; the store's install intent makes the live key and
//!   certificate switch together.
//! - A step that fails backs off exponentially (with jitter, capped); the failure is logged,
//!   counted, and shown in `certvakt status` until a step succeeds.
//! - A step that needs a person becomes a [`Task`] with instructions and files in the
//!   certificate's outbox; an import, `certvakt task done`, or the plugin seeing it done
//!   completes it. A task a plugin opens through the host is filed under the id the host gave
//!   it, whatever the step's outcome.
//! - Everything the engine reads from a path it was given goes through [`crate::bounded`]:
//!   regular files only, a size cap, never blocking.
//! - Readers see an [`EngineView`] snapshot, replaced after every change; making it reads no
//!   file.
//!
//! The map, one concept a file:
//! - `engine`: the loop, starting steps and taking their results back, publishing the view.
//! - `steps`: the state machine: one step of one certificate, and what a step failing means.
//! - `issued`: the key and CSR of a run, and accepting an issued chain (with issuer trust).
//! - [`import`]: what an imported file holds, and the checks an issued chain must pass.
//! - `set`: which delivered certificate is which role of a certificate set.
//! - `install`: installing a staged version, the hooks around it, and the live files.
//! - `tasks`: operator tasks: opening them with their files, closing them.
//! - `commands`: what an operator asks: renew, import, task done, rollback.
//! - `cancel`: stopping a run in progress, and the runs of certificates removed from the
//!   configuration (kept until `certvakt forget`).
//! - [`dry_run`]: what `renew --dry-run` says would happen, changing nothing.
//! - [`history`]: the audit history of ended runs.
//! - `inbox`: files dropped into a certificate's inbox.
//! - [`run`]: the persisted record: runs, phases, tasks.
//! - [`cert_services`]: the host services a plugin gets during a call about one certificate.
//! - [`client_identities`]: managed certificates as the HTTP client's identities and trust.
//! - [`hooks`]: running the operator's hook programs.

mod cancel;
pub mod cert_services;
pub mod client_identities;
mod commands;
pub mod deploy_check;
pub mod dry_run;
mod engine;
pub mod history;
pub mod hooks;
pub mod import;
mod inbox;
mod install;
mod issued;
pub mod next_key;
pub mod run;
mod set;
mod steps;
mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::keys;
use crate::metrics::Metrics;
use crate::plugin_host::challenges::Http01Responder;
use crate::plugin_host::{HttpService, MailOut, PluginCallError, Registry};
use crate::store::{self, Store};

pub use dry_run::{DryRun, DryStep};
pub use history::{HistoryEntry, Outcome};
pub use run::{Cancelled, CertFacts, Phase, Reason, Record, Requested, Run, Suggestion, Task};

/// How long a plugin call may take before it counts as failed.
pub const PLUGIN_DEADLINE: Duration = Duration::from_secs(120);
/// At most this many steps in a row for one certificate before its task hands the record
/// back (and the engine publishes what happened).
const STEPS_PER_TURN: usize = 16;
/// At most this many certificates of one plugin have steps in flight at once: a mass renewal
/// does not start a thousand calls, and a slow authority holds up only its own certificates.
const STEPS_PER_PLUGIN: usize = 8;

/// The environment variable of the crash-test hook (see `engine`): honoured only by a build
/// with the `test-hooks` feature, which the end-to-end tests enable and packages never do.
pub const PAUSE_ENV: &str = "CERTVAKT_TEST_PAUSE_AFTER";
/// The environment variable that shortens the plugin call deadline (milliseconds), honoured
/// only with the `test-hooks` feature, like [`PAUSE_ENV`].
pub const DEADLINE_ENV: &str = "CERTVAKT_TEST_PLUGIN_DEADLINE_MS";

/// Why a command was refused or a step failed. Messages say what, where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "no managed certificate `{0}` (see `certvakt list`; only [[certificate]] entries renew)"
    )]
    UnknownCertificate(String),
    #[error(
        "certificate `{id}` needs plugin `{plugin}`, which is not loaded (see `certvakt plugins`)"
    )]
    PluginMissing { id: String, plugin: String },
    #[error("no open task `{0}` (see `certvakt tasks`)")]
    UnknownTask(String),
    #[error("task `{id}` completes by {how}, not by `task done`")]
    TaskNotConfirmable { id: String, how: String },
    #[error("{0}")]
    Plugin(#[from] PluginCallError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Keys(#[from] keys::KeyError),
    #[error("{0}")]
    Import(String),
    #[error("{0}")]
    Hook(#[from] hooks::HookError),
    /// The endpoints did not serve the installed certificate (the verified deploy).
    #[error("{0}")]
    Deploy(deploy_check::DeployFailure),
    /// The certificate's steps are in flight; the command cannot be done now.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    /// The kind of error a plugin answered with, when one did.
    fn plugin_kind(&self) -> Option<certvakt_plugin_api::ErrorKind> {
        match self {
            EngineError::Plugin(PluginCallError::Plugin { error, .. }) => Some(error.kind),
            _ => None,
        }
    }

    /// Whether trying the step again by itself is no use until a person or a fix comes: a
    /// permanent, configuration or person-needing answer of the plugin, and a deploy that was
    /// rolled back (each try would swap the service's certificate twice). Such a step waits
    /// `retry_max`, or its task.
    fn waits_for_a_person(&self) -> bool {
        use certvakt_plugin_api::ErrorKind as K;
        matches!(
            self.plugin_kind(),
            Some(K::Permanent | K::Configuration | K::NeedsPerson)
        ) || matches!(self, EngineError::Deploy(d) if d.rolled_back.is_some())
    }

    /// The step it is a failure of, when not the run's next one: a deploy check's is
    /// `verified`, also after a rollback moved the run back to before its install.
    fn step(&self) -> Option<&'static str> {
        matches!(self, EngineError::Deploy(_)).then(|| next_step_name(Phase::Installed))
    }

    /// The task for a person this failure opens, when it needs one.
    fn task(
        &self,
        cert: &crate::config::ManagedCertificate,
        step: &str,
    ) -> Option<certvakt_plugin_api::TaskSpec> {
        match self {
            EngineError::Deploy(failure) => Some(failure.task(cert)),
            _ if self.plugin_kind() == Some(certvakt_plugin_api::ErrorKind::NeedsPerson) => {
                Some(certvakt_plugin_api::TaskSpec {
                    title: format!("{} needs a person before step {step}", cert.id),
                    instructions: format!(
                        "The {} plugin stopped at step {step} and says:\n\n    {self}\n\nDo what it asks, then mark this task done; certvakt tries the step again at once.",
                        cert.plugin
                    ),
                    files: Vec::new(),
                    completes_by: certvakt_plugin_api::Completion::Confirm,
                })
            }
            _ => None,
        }
    }
}

/// What a command asks of the engine. Its `Debug` never shows imported bytes or passwords.
pub enum Command {
    /// Nothing but a turn of the engine's loop, which the metrics record
    /// (`certvakt_engine_last_turn_timestamp_seconds`); asked for at each scrape.
    Ping,
    /// Start a renewal now (`force`: even when one is not due), or continue a waiting one.
    Renew {
        id: String,
        force: bool,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    /// A certificate (PEM/DER chain or PKCS#12) from the CA for `id`; a set's files
    /// (one PKCS#12 per role, or several), all opened with `password`.
    Import {
        id: String,
        files: Vec<Zeroizing<Vec<u8>>>,
        password: Option<Zeroizing<String>>,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    /// An operator says a `confirm` task is done.
    TaskDone {
        task_id: String,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    /// Go back to the previous version.
    Rollback {
        id: String,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    /// The configuration was reloaded.
    Reconfigure(Arc<Config>),
    /// The last `limit` history entries of `id`, newest first.
    History {
        id: String,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<HistoryEntry>, EngineError>>,
    },
    /// What a renewal of `id` would do now, changing nothing.
    DryRun {
        id: String,
        reply: oneshot::Sender<Result<DryRun, EngineError>>,
    },
    /// Stop the run in progress of `id`, keeping the certificate in use.
    Cancel {
        id: String,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    /// Discard the run and pending key of `id`, removed from the configuration.
    Forget {
        id: String,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
}

impl Command {
    /// Answers the command with `answer` without carrying it out (a refusal).
    fn refuse(self, answer: Result<String, EngineError>) {
        let reply = match self {
            Command::Renew { reply, .. }
            | Command::Import { reply, .. }
            | Command::TaskDone { reply, .. }
            | Command::Rollback { reply, .. }
            | Command::Cancel { reply, .. }
            | Command::Forget { reply, .. } => reply,
            Command::History { reply, .. } => {
                let _ = reply.send(answer.and_then(|_| Err(EngineError::Other("refused".into()))));
                return;
            }
            Command::DryRun { reply, .. } => {
                let _ = reply.send(answer.and_then(|_| Err(EngineError::Other("refused".into()))));
                return;
            }
            Command::Reconfigure(_) | Command::Ping => return,
        };
        let _ = reply.send(answer);
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Renew { id, force, .. } => write!(f, "Renew {{ id: {id:?}, force: {force} }}"),
            Command::Import { id, files, .. } => {
                let sizes: Vec<usize> = files.iter().map(|f| f.len()).collect();
                write!(f, "Import {{ id: {id:?}, bytes: {sizes:?}, .. }}")
            }
            Command::TaskDone { task_id, .. } => write!(f, "TaskDone {{ task_id: {task_id:?} }}"),
            Command::Rollback { id, .. } => write!(f, "Rollback {{ id: {id:?} }}"),
            Command::Reconfigure(_) => f.write_str("Reconfigure"),
            Command::History { id, limit, .. } => {
                write!(f, "History {{ id: {id:?}, limit: {limit} }}")
            }
            Command::DryRun { id, .. } => write!(f, "DryRun {{ id: {id:?} }}"),
            Command::Cancel { id, .. } => write!(f, "Cancel {{ id: {id:?} }}"),
            Command::Forget { id, .. } => write!(f, "Forget {{ id: {id:?} }}"),
            Command::Ping => f.write_str("Ping"),
        }
    }
}

/// One certificate's renewal, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRenewal {
    pub id: String,
    pub plugin: String,
    pub plugin_loaded: bool,
    /// The last step completed by the run in progress; `None` when no run is.
    pub phase: Option<Phase>,
    /// When the engine next acts for it (due time, poll, retry or end of overlap).
    pub next_at: Option<i64>,
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_success: Option<i64>,
    pub open_tasks: Vec<Task>,
    /// The authority's suggested renewal window for the certificate in use (start, end), when
    /// it gave one: `next_at` lies inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_window: Option<(i64, i64)>,
    /// What the operator should know about the new certificate of the run in progress, or of
    /// the last one when none is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The key pre-staged for the next renewal (`key_policy = "prestage"`); boxed, as most
    /// certificates have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key: Option<Box<run::NextKey>>,
}

/// The engine as readers see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineView {
    pub certificates: Vec<CertRenewal>,
    /// Certificates no longer in the configuration whose run (open task, pending key) is
    /// kept on disk until `certvakt forget`.
    #[serde(default)]
    pub removed: Vec<RemovedCert>,
}

/// A certificate removed from the configuration that still holds a run's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedCert {
    pub id: String,
    /// The last step the kept run completed, when there is a run.
    pub phase: Option<Phase>,
    /// How many pending keys are kept.
    pub pending_keys: usize,
    /// The kept run's open tasks.
    pub open_tasks: Vec<String>,
}

impl EngineView {
    pub fn get(&self, id: &str) -> Option<&CertRenewal> {
        self.certificates.iter().find(|c| c.id == id)
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.certificates.iter().flat_map(|c| c.open_tasks.iter())
    }
}

/// What one step did.
#[derive(Debug)]
enum Progress {
    /// Moved on; another step may follow at once.
    Advanced,
    /// Nothing to do before this time (or ever, `None`).
    Wait(Option<i64>),
}

/// What a step needs, shared by the engine loop and the step tasks it starts: the parts of
/// the engine that do not change while a step runs. A reload makes a new one; a step in
/// flight finishes with the one it started with.
#[derive(Clone)]
struct Core {
    store: Store,
    plugins: Arc<Registry>,
    metrics: Arc<Metrics>,
    config: Arc<Config>,
    /// Where each id is in `config.certificates`.
    by_id: Arc<std::collections::HashMap<String, usize>>,
    /// Plugins' answers about settings, shared by certificates with the same settings; new
    /// with each configuration.
    settings_answers: Arc<crate::plugin_host::settings_check::SettingsAnswers>,
    /// How many loaded plugins the configured certificates name: once that many have
    /// [`STEPS_PER_PLUGIN`] steps in flight, nothing more can start.
    plugins_used: usize,
    http: Option<Arc<HttpService>>,
    http01: Option<Arc<Http01Responder>>,
    /// Where a plugin's mail goes (sent, or rendered for a person); `None`: plugins' mail is
    /// refused as not available.
    mail_out: Option<Arc<dyn MailOut>>,
    /// Told the id of every certificate whose live files changed (install, rollback), so
    /// the inventory rescans at once rather than when inotify's events arrive.
    installed: Option<mpsc::UnboundedSender<String>>,
    deadline: Duration,
    /// The crash-test hook: stop a certificate (for ever) right after this step is saved, so
    /// a test can kill -9 the daemon at a known point.
    pause_after: Option<Phase>,
}

/// How many loaded plugins `config`'s certificates name.
fn plugins_used(config: &Config, plugins: &Registry) -> usize {
    config
        .certificates
        .iter()
        .map(|c| c.plugin.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|name| plugins.get(name).is_some())
        .count()
}

/// Where each certificate id is in `config.certificates`.
fn index_ids(config: &Config) -> Arc<std::collections::HashMap<String, usize>> {
    Arc::new(
        config
            .certificates
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect(),
    )
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("certificates", &self.config.certificates.len())
            .finish_non_exhaustive()
    }
}

/// The renewal engine. See the module contract.
pub struct Engine {
    core: Arc<Core>,
    records: BTreeMap<String, Record>,
    view: Arc<RwLock<EngineView>>,
    /// Told each time the view is replaced (the notifier looks then).
    published: Option<Arc<tokio::sync::Notify>>,
    /// Certificates whose state could not be loaded or whose settings the plugin refuses, and
    /// why; never advanced.
    held: BTreeMap<String, String>,
    /// Certificates whose settings the plugin accepted under the configuration in force.
    settings_checked: BTreeSet<String>,
    /// Certificates with steps in flight: their task holds the record.
    in_flight: BTreeMap<String, engine::InFlight>,
    /// When each certificate wants its next step; absent: at once.
    next_at: BTreeMap<String, Option<i64>>,
    /// What the last step found about each certificate, for the view (which reads no file).
    seen: BTreeMap<String, engine::Seen>,
    /// Certificates whose record in memory is not on disk: no step starts until it is.
    unsaved: BTreeSet<String>,
    /// Certificates whose next step follows at once when their step in flight is over.
    nudged: BTreeSet<String>,
    /// Commands waiting for their certificate's step in flight.
    deferred: Vec<engine::Deferred>,
    /// Certificates removed from the configuration whose run is kept (see `cancel`).
    removed: Vec<RemovedCert>,
    /// Certificates stopped by the crash-test hook.
    paused: BTreeSet<String>,
    /// Inbox files that could not be moved away after their import was tried.
    stuck_inbox_files: BTreeSet<PathBuf>,
    /// Whether the inbox folders to watch must be set again (at start and after a reload).
    inbox_watch_stale: bool,
    /// Where the next look for steps to start begins in `config.certificates`: after the
    /// last one started, so a burst of steps does not walk past the same finished
    /// certificates at every turn.
    start_from: usize,
    /// Whether every inbox must be looked at (at start, after a reload, after a change the
    /// watcher saw); otherwise only `inbox_ids`, the ones that still hold files.
    inbox_all: bool,
    inbox_ids: BTreeSet<String>,
    /// Inbox files seen but not quiet yet: size and modification time when last looked at.
    settling: BTreeMap<PathBuf, inbox::Settling>,
    steps_done: mpsc::UnboundedSender<engine::StepDone>,
    steps_rx: Option<mpsc::UnboundedReceiver<engine::StepDone>>,
    released: mpsc::UnboundedSender<String>,
    released_rx: Option<mpsc::UnboundedReceiver<String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("certificates", &self.records.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// Held by a step's task and by every host-services object of its plugin calls; when the
/// last of them is dropped (the plugin returned, even long after its deadline), the
/// certificate is free for its next step.
struct CallToken {
    id: String,
    released: mpsc::UnboundedSender<String>,
}

impl Drop for CallToken {
    fn drop(&mut self) {
        let _ = self.released.send(std::mem::take(&mut self.id));
    }
}

impl std::fmt::Debug for CallToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallToken({})", self.id)
    }
}

/// The name of the step that comes after `phase`, for messages and metrics.
pub fn next_step_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Due => "key_generated",
        Phase::KeyGenerated => "ordered",
        Phase::Ordered => "issued",
        Phase::Issued => "registered",
        Phase::Registered => "installed",
        Phase::Installed => "verified",
        Phase::Verified | Phase::Retired => "retired",
    }
}

/// Reads a PKCS#12 password file (one line; a trailing newline is not part of it).
fn read_password(path: &std::path::Path) -> Result<Zeroizing<String>, EngineError> {
    let text = crate::bounded::read_secret(path).map_err(|e| {
        EngineError::Other(format!(
            "cannot read the PKCS#12 password file: {}",
            e.sentence(path)
        ))
    })?;
    let text = std::str::from_utf8(&text).map_err(|_| {
        EngineError::Other(format!(
            "the PKCS#12 password file {} is not UTF-8 text",
            path.display()
        ))
    })?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Runs `f` on the blocking pool: file and key work stays off the runtime thread, which
/// serves the control socket, `/metrics` and the watchdog.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Other(format!("a blocking task stopped: {e}")))
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
