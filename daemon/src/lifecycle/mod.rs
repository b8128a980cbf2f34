//! The renewal engine: for each managed certificate, `due → key generated → ordered → issued →
//! registered → installed → verified → retired`, through its plugin.
//!
//! Contract:
//! - One task owns the engine. It wakes when a certificate is due, when a wait ends (a CA to
//!   poll, a retry after a failure, the end of an overlap) or when a command arrives (renew,
//!   import, task done, rollback, a new configuration); between those it sleeps.
//! - Every step is written ahead: the certificate's [`Record`] is saved after each step, each
//!   step can be done again after a crash without harm, and the new key is on disk (0600) before
//!   anything is asked of a CA. So a kill -9 at any point resumes where it stopped and never
//!   loses a key; the store's install intent makes the live key and certificate switch together.
//! - A step that fails backs off exponentially (with jitter, capped); the failure is logged,
//!   counted, and shown in `certvakt status` until a step succeeds.
//! - A step that needs a person becomes a [`Task`] with instructions and files in the
//!   certificate's outbox; an import, `certvakt task done`, or the plugin seeing it done
//!   completes it.
//! - Readers see an [`EngineView`] snapshot, replaced after every change.

pub mod hooks;
pub mod identity;
pub mod import;
pub mod run;
pub mod services;

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use certvakt_plugin_api::messages::{
    CertificateContext, IssueOutcome, OrderContext, StepContext, StepOutcome, TaskFileContent,
};
use certvakt_plugin_api::{Completion, ErrorKind, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::config::{Config, KeyPolicy, ManagedCertificate};
use crate::keys::{self, PrivateKey};
use crate::metrics::Metrics;
use crate::plugin_host::{
    BasicServices, HttpService, LoadedPlugin, PluginCallError, Registry, TrustFiles,
    TrustSource as _,
};
use crate::store::{self, LivePaths, Ownership, Store, VersionFiles};

pub use run::{CertFacts, Phase, Reason, Record, Requested, Run, Suggestion, Task};
use services::{EngineServices, KeyFiles};

/// How long a plugin call may take before it counts as failed.
pub const PLUGIN_DEADLINE: Duration = Duration::from_secs(120);
/// At most this many steps in a row for one certificate before others get a turn.
const STEPS_PER_TURN: usize = 16;
/// How often to ask about a renewal window when the plugin does not say (and the longest
/// wait it may ask for): the authority may move a window ahead of a mass revocation.
const WINDOW_RECHECK_SECS: u64 = 6 * 3_600;
/// The shortest wait between two questions about a renewal window.
const WINDOW_MIN_RECHECK_SECS: u64 = 60;
/// How long to wait after a failure to ask about a renewal window.
const WINDOW_RETRY_SECS: u64 = 3_600;

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
    #[error("{0}")]
    Other(String),
}

/// What a command asks of the engine. Its `Debug` never shows imported bytes or passwords.
pub enum Command {
    /// Start a renewal now (`force`: even when one is not due), or continue a waiting one.
    Renew {
        id: String,
        force: bool,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    /// A certificate (PEM/DER chain or PKCS#12) from the CA for `id`.
    Import {
        id: String,
        bytes: Zeroizing<Vec<u8>>,
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
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Renew { id, force, .. } => write!(f, "Renew {{ id: {id:?}, force: {force} }}"),
            Command::Import { id, bytes, .. } => {
                write!(f, "Import {{ id: {id:?}, {} bytes, .. }}", bytes.len())
            }
            Command::TaskDone { task_id, .. } => write!(f, "TaskDone {{ task_id: {task_id:?} }}"),
            Command::Rollback { id, .. } => write!(f, "Rollback {{ id: {id:?} }}"),
            Command::Reconfigure(_) => f.write_str("Reconfigure"),
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
}

/// The engine as readers see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineView {
    pub certificates: Vec<CertRenewal>,
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
enum Progress {
    /// Moved on; another step may follow at once.
    Advanced,
    /// Nothing to do before this time (or ever, `None`).
    Wait(Option<i64>),
}

/// The renewal engine.
pub struct Engine {
    store: Store,
    plugins: Arc<Registry>,
    metrics: Arc<Metrics>,
    config: Arc<Config>,
    http: Option<Arc<HttpService>>,
    records: BTreeMap<String, Record>,
    view: Arc<RwLock<EngineView>>,
    deadline: Duration,
    /// Test hook: stop (forever) right after this step is saved, so a test can kill -9 the
    /// daemon at a known point. From `CERTVAKT_TEST_PAUSE_AFTER`; never set in production.
    pause_after: Option<Phase>,
    /// Inbox files that could not be moved away after their import was tried.
    stuck_inbox_files: std::collections::BTreeSet<PathBuf>,
    /// Certificates whose state could not be loaded, and why; never advanced.
    held: BTreeMap<String, String>,
    /// Told the id of every certificate whose live files changed (install, rollback), so
    /// the inventory rescans at once rather than when inotify's events arrive.
    installed: Option<mpsc::UnboundedSender<String>>,
    http01: Option<Arc<crate::plugin_host::challenges::Http01Responder>>,
}

/// The environment variable of the crash-test hook.
pub const PAUSE_ENV: &str = "CERTVAKT_TEST_PAUSE_AFTER";

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("certificates", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The responder that answers ACME http-01 challenges plugins publish.
    pub fn set_http01(&mut self, responder: Arc<crate::plugin_host::challenges::Http01Responder>) {
        self.http01 = Some(responder);
    }

    /// Where to say that a certificate's live files changed.
    pub fn notify_installs(&mut self, tx: mpsc::UnboundedSender<String>) {
        self.installed = Some(tx);
    }

    fn announce(&self, id: &str) {
        if let Some(tx) = &self.installed {
            let _ = tx.send(id.to_owned());
        }
    }

    /// Opens the store, finishes any install a crash interrupted, and loads every record.
    pub fn new(
        config: Arc<Config>,
        plugins: Arc<Registry>,
        metrics: Arc<Metrics>,
        http: Option<Arc<HttpService>>,
    ) -> Result<Engine, EngineError> {
        let store = Store::open(&config.daemon.state_dir)?;
        let mut engine = Engine {
            store,
            plugins,
            metrics,
            config,
            http,
            records: BTreeMap::new(),
            view: Arc::new(RwLock::new(EngineView::default())),
            deadline: PLUGIN_DEADLINE,
            stuck_inbox_files: std::collections::BTreeSet::new(),
            held: BTreeMap::new(),
            installed: None,
            http01: None,
            pause_after: std::env::var(PAUSE_ENV)
                .ok()
                .and_then(|v| Phase::ALL.into_iter().find(|p| p.as_str() == v)),
        };
        if let Some(phase) = engine.pause_after {
            log::warn!(
                "{PAUSE_ENV} is set: the renewal engine stops after step {} (a test hook)",
                phase.as_str()
            );
        }
        engine.load_records()?;
        engine.publish(crate::now_unix());
        Ok(engine)
    }

    /// The snapshot readers use.
    pub fn view(&self) -> Arc<RwLock<EngineView>> {
        self.view.clone()
    }

    /// Finishes interrupted installs and loads each certificate's record. A certificate whose
    /// install cannot be finished or whose record cannot be read is held back (shown in
    /// status, never advanced) instead of stopping the daemon: a fresh record would start a
    /// new run and forget the key of the one on disk.
    fn load_records(&mut self) -> Result<(), EngineError> {
        let mut records = BTreeMap::new();
        let mut held = BTreeMap::new();
        for cert in &self.config.certificates {
            let live = live_paths(cert);
            // Said at start and reload, not months later at the install.
            for (folder, err) in live.folders_not_writable() {
                log::warn!(
                    cert_id = cert.id.as_str();
                    "{}: certvaktd cannot write to {} ({}): a renewal will fail when it installs. \
                     Make the folder writable for certvaktd's user; {}",
                    cert.id,
                    folder.display(),
                    err.desc(),
                    crate::store::read_write_advice(folder)
                );
            }
            // An interrupted install is finished with the owner and paths it recorded, so it
            // does not wait for this configuration's owner/group to resolve.
            let own = ownership(cert).unwrap_or_default();
            let loaded = self
                .store
                .recover(&cert.id, &live, &own)
                .map_err(EngineError::from)
                .and_then(|done| {
                    if let Some(done) = done {
                        log::warn!(cert_id = cert.id.as_str(), version = done.0; "finished an install that a crash had interrupted");
                    }
                    ownership(cert)?;
                    Ok(self.store.load_state::<Record>(&cert.id)?.unwrap_or_default())
                });
            match loaded {
                Ok(record) => {
                    records.insert(cert.id.clone(), record);
                }
                Err(e) => {
                    log::error!(cert_id = cert.id.as_str(); "renewal held back: {e}");
                    held.insert(cert.id.clone(), format!("renewal held back: {e}"));
                }
            }
        }
        self.records = records;
        self.held = held;
        Ok(())
    }

    /// Asks each plugin to check its certificates' `[certificate.settings]`; a certificate
    /// with problems is held back (every problem logged and shown in status) until a reload
    /// brings settings its plugin accepts.
    async fn check_settings(&mut self) {
        let certs = self.config.certificates.clone();
        for cert in certs {
            let Some(plugin) = self.plugins.get(&cert.plugin).cloned() else {
                continue;
            };
            let Ok(services) = self.services(&cert, &plugin) else {
                continue;
            };
            let problems = match plugin
                .validate_settings(cert.renewal.settings.clone(), services, self.deadline)
                .await
            {
                Ok(problems) => problems,
                Err(e) => {
                    log::warn!(cert_id = cert.id.as_str(); "settings could not be checked: {e}");
                    continue;
                }
            };
            if problems.is_empty() {
                continue;
            }
            let place = cert.origin.to_string();
            let lines: Vec<String> = problems
                .iter()
                .map(|p| {
                    let hint = p
                        .hint
                        .as_deref()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    format!("settings.{}: {}{hint}", p.key, p.message)
                })
                .collect();
            for line in &lines {
                log::error!(cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(); "{place}: certificate[{}] {line}", cert.id);
            }
            self.held.insert(
                cert.id.clone(),
                format!(
                    "renewal held back: plugin {} refuses the settings of [[certificate]] {} at {place}: {}",
                    cert.plugin,
                    cert.id,
                    lines.join("; ")
                ),
            );
        }
    }

    /// Runs until `commands` closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.check_settings().await;
        let mut inboxes = crate::watcher::Watcher::new();
        loop {
            self.watch_inboxes(&mut inboxes);
            self.take_inboxes().await;
            let now = crate::now_unix();
            let next = self.turn(now).await;
            self.publish(crate::now_unix());
            let sleep = next.map_or(Duration::from_secs(3_600), |at| {
                Duration::from_secs(u64::try_from(at - crate::now_unix()).unwrap_or(0))
            });
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None => return,
                },
                _ = inboxes.changed() => {
                    // A file being copied in arrives in several writes: wait for quiet.
                    inboxes.drain_for(Duration::from_millis(500)).await;
                }
                _ = tokio::time::sleep(sleep.max(Duration::from_millis(200))) => {}
            }
        }
    }

    fn watch_inboxes(&self, watcher: &mut crate::watcher::Watcher) {
        let inboxes: Vec<PathBuf> = self
            .config
            .certificates
            .iter()
            .filter_map(|c| self.store.inbox(&c.id).ok())
            .map(|dir| dir.join("*"))
            .collect();
        watcher.set_paths(inboxes.iter().map(PathBuf::as_path));
    }

    /// Imports what was dropped into each certificate's inbox, as `certvakt import` would;
    /// a file that is taken moves to `inbox/imported/`, one that is refused to
    /// `inbox/refused/` beside a `.reason.txt` that says why.
    async fn take_inboxes(&mut self) {
        let certs: Vec<ManagedCertificate> = self.config.certificates.clone();
        for cert in certs {
            let Ok(inbox) = self.store.inbox(&cert.id) else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(&inbox) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .filter(|p| {
                    !p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
                })
                .filter(|p| !self.stuck_inbox_files.contains(p))
                .collect();
            files.sort();
            for file in files {
                let Ok(bytes) = std::fs::read(&file).map(Zeroizing::new) else {
                    continue;
                };
                let password = match &cert.pkcs12_password_file {
                    Some(path) => read_password(path).ok(),
                    None => None,
                };
                let result = self
                    .import(&cert.id, &bytes, password.as_deref().map(|p| p.as_str()))
                    .await;
                let name = file
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_default();
                let (folder, reason) = match &result {
                    Ok(message) => {
                        log::info!(cert_id = cert.id.as_str(), path = file.display().to_string(); "inbox: {message}");
                        ("imported", None)
                    }
                    Err(e) => ("refused", Some(e.to_string())),
                };
                let target = inbox.join(folder);
                // Never onto an existing name (two downloads called `certificate.p12`): the
                // older may be a CA-made bundle holding the only copy of its key.
                let mut dest = target.join(&name);
                for n in 1.. {
                    if !dest.exists() || n > 1000 {
                        break;
                    }
                    let mut numbered = name.clone();
                    numbered.push(format!(".{n}"));
                    dest = target.join(numbered);
                }
                let moved = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&target)
                    .and_then(|()| {
                        // It may hold a key: only the daemon reads it from here on.
                        std::fs::set_permissions(
                            &file,
                            std::os::unix::fs::PermissionsExt::from_mode(0o600),
                        )
                    })
                    .and_then(|()| std::fs::rename(&file, &dest));
                if let Some(reason) = reason {
                    let mut reason_file = dest.clone().into_os_string();
                    reason_file.push(".reason.txt");
                    if let Err(e) = std::fs::write(&reason_file, format!("{reason}\n")) {
                        log::warn!(cert_id = cert.id.as_str(); "cannot write {}: {e}", PathBuf::from(&reason_file).display());
                    }
                }
                if let Err(e) = moved {
                    // Never delete it (a PKCS#12 from a CA may hold the only copy of its
                    // key); remember it so it is not imported again and again.
                    log::error!(cert_id = cert.id.as_str(), path = file.display().to_string(); "cannot move the file out of the inbox ({e}); move it away by hand");
                    self.stuck_inbox_files.insert(file);
                }
            }
        }
    }

    /// Advances every certificate whose time has come; returns the next time anything is due.
    async fn turn(&mut self, now: i64) -> Option<i64> {
        let mut next: Option<i64> = None;
        let ids: Vec<String> = self
            .config
            .certificates
            .iter()
            .map(|c| c.id.clone())
            .collect();
        for id in ids {
            let at = self.advance(&id, now).await;
            next = match (next, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// Runs as many steps as are ready for `id`; returns when to look again.
    async fn advance(&mut self, id: &str, now: i64) -> Option<i64> {
        if self.held.contains_key(id) {
            return None;
        }
        let cert = self
            .config
            .certificates
            .iter()
            .find(|c| c.id == id)
            .cloned()?;
        let plugin = self.plugins.get(&cert.plugin).cloned()?;
        let mut record = self.records.remove(id).unwrap_or_default();
        let mut at = None;
        for _ in 0..STEPS_PER_TURN {
            if let Some(retry) = record.retry_at.filter(|t| *t > now) {
                at = Some(retry);
                break;
            }
            match self
                .step(&cert, &plugin, &mut record, crate::now_unix())
                .await
            {
                Ok(Progress::Advanced) => {
                    record.failures = 0;
                    record.retry_at = None;
                    record.last_error = None;
                    if !self.save(&cert.id, &record) {
                        let wait = self.config.daemon.retry_initial.as_secs().max(1);
                        record.failures += 1;
                        record.retry_at = Some(crate::now_unix() + wait as i64);
                        record.last_error = Some(
                            "the renewal state cannot be saved (see the journal); no further step until it can"
                                .into(),
                        );
                        at = record.retry_at;
                        break;
                    }
                    if self.pause_reached(&record) {
                        self.records.insert(id.to_owned(), record);
                        self.pause().await;
                        return None;
                    }
                }
                Ok(Progress::Wait(until)) => {
                    if self.pause_reached(&record) {
                        self.records.insert(id.to_owned(), record);
                        self.pause().await;
                        return None;
                    }
                    at = until;
                    break;
                }
                Err(error) => {
                    self.failed(&cert, &mut record, &error);
                    at = record.retry_at;
                    break;
                }
            }
        }
        self.records.insert(id.to_owned(), record);
        at
    }

    /// `t`, or the end of the quiet-hours window it falls in (local time of the system's
    /// time zone).
    fn outside_quiet_hours(&self, t: i64) -> i64 {
        let windows = &self.config.daemon.quiet_hours;
        if windows.is_empty() {
            return t;
        }
        let tz = jiff::tz::TimeZone::system();
        crate::schedule::after_quiet_hours(t, windows, |at| {
            jiff::Timestamp::from_second(at)
                .map(|ts| i64::from(tz.to_offset(ts).seconds()))
                .unwrap_or(0)
        })
    }

    fn pause_reached(&self, record: &Record) -> bool {
        self.pause_after.is_some() && record.run.as_ref().map(|r| r.phase) == self.pause_after
    }

    /// The crash-test hook: publish, say so, and never go on.
    async fn pause(&self) {
        self.publish(crate::now_unix());
        log::warn!(
            "paused after step {} ({PAUSE_ENV})",
            self.pause_after.map_or("", Phase::as_str)
        );
        std::future::pending::<()>().await;
    }

    /// A step failed. Temporary trouble backs off exponentially from `retry_initial`; a
    /// permanent or configuration error waits `retry_max` (retrying sooner would only repeat
    /// it: fix the cause, then `certvakt renew ID`); an error that needs a person becomes a
    /// task, and the step is tried again when it is marked done.
    fn failed(&self, cert: &ManagedCertificate, record: &mut Record, error: &EngineError) {
        record.failures += 1;
        let daemon = &self.config.daemon;
        let initial = daemon.retry_initial.as_secs().max(1);
        let max = daemon.retry_max.as_secs().max(initial);
        let kind = match error {
            EngineError::Plugin(PluginCallError::Plugin { error, .. }) => Some(error.kind),
            _ => None,
        };
        let wait = match kind {
            Some(ErrorKind::Permanent | ErrorKind::Configuration | ErrorKind::NeedsPerson) => max,
            _ => crate::schedule::backoff(record.failures, initial, max, fnv(&cert.id)),
        };
        let now = crate::now_unix();
        record.retry_at = Some(now + i64::try_from(wait).unwrap_or(i64::MAX / 2));
        record.last_error = Some(error.to_string());
        let (step, run_number, phase) = record.run.as_ref().map_or(("due", 0, Phase::Due), |r| {
            (next_step_name(r.phase), r.number, r.phase)
        });
        log::error!(
            cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(), step = step, failures = record.failures;
            "renewal step {step} failed (retry in {}): {error}", crate::human_time::format_span(wait)
        );
        if kind == Some(ErrorKind::NeedsPerson) {
            let spec = TaskSpec {
                title: format!("{} needs a person before step {step}", cert.id),
                instructions: format!(
                    "The {} plugin stopped at step {step} and says:\n\n    {error}\n\nDo what it asks, then mark this task done; certvakt tries the step again at once.",
                    cert.plugin
                ),
                files: Vec::new(),
                completes_by: Completion::Confirm,
            };
            if let Err(e) = self.open_task(
                cert,
                record,
                run_number,
                phase,
                spec,
                None,
                Certificates::default(),
                now,
            ) {
                log::error!(cert_id = cert.id.as_str(); "cannot open the task: {e}");
            }
        }
        self.metrics.observe_renewal_failure(&cert.id, step);
        self.save(&cert.id, record);
    }

    /// Saves the record; says whether it is on disk. The caller stops acting for this
    /// certificate when it is not: acting on what is not written ahead would be lost at a crash.
    fn save(&self, id: &str, record: &Record) -> bool {
        match self.store.save_state(id, record) {
            Ok(()) => true,
            Err(e) => {
                log::error!(cert_id = id; "cannot save the renewal state: {e}");
                false
            }
        }
    }

    /// One step of the state machine.
    async fn step(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
        record: &mut Record,
        now: i64,
    ) -> Result<Progress, EngineError> {
        let current = read_live(cert)?;
        if record.run.is_none() {
            let mut check_at = None;
            let (due, reason) = match &current {
                Some(facts) => {
                    self.ask_renewal_window(cert, plugin, record, facts, now)
                        .await;
                    check_at = record.suggested.as_ref().map(|s| s.check_at);
                    due_at(cert, record, facts)
                }
                None => (now, Reason::FirstIssue),
            };
            if due > now {
                let wake = check_at.filter(|c| *c > now).map_or(due, |c| c.min(due));
                return Ok(Progress::Wait(Some(wake)));
            }
            let start = self.outside_quiet_hours(now);
            if start > now {
                return Ok(Progress::Wait(Some(start)));
            }
            self.start_run(cert, record, reason, current, now);
            return Ok(Progress::Advanced);
        }
        let Some(run) = record.run.as_mut() else {
            return Ok(Progress::Wait(None));
        };
        if let Some(until) = run.wait_until.filter(|t| *t > now) {
            return Ok(Progress::Wait(Some(until)));
        }
        match run.phase {
            Phase::Due => {
                self.make_key_and_csr(cert, plugin, run, current.as_ref())
                    .await?;
                set_phase(run, Phase::KeyGenerated, now);
            }
            Phase::KeyGenerated | Phase::Ordered => {
                let order = OrderContext {
                    certificate: self.context(cert, run.old.as_ref()),
                    csr_pem: run.csr_pem.clone().unwrap_or_default(),
                    state: run.plugin_state.clone(),
                };
                let services = self.services(cert, plugin)?;
                let outcome = if run.phase == Phase::KeyGenerated {
                    plugin.issue(order, services.clone(), self.deadline).await?
                } else {
                    plugin.poll(order, services.clone(), self.deadline).await?
                };
                let opened = services.take_tasks();
                match outcome {
                    IssueOutcome::Issued { chain_pem } => {
                        self.accept_issued(cert, run, chain_pem.as_bytes(), None)?;
                        close_tasks(record, Phase::Ordered, now);
                    }
                    IssueOutcome::Pending {
                        poll_after_secs,
                        task,
                        state,
                    } => {
                        run.plugin_state = state;
                        if run.phase == Phase::KeyGenerated {
                            log::info!(cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(); "ordered a new certificate; waiting for the CA");
                        }
                        set_phase(run, Phase::Ordered, now);
                        let tasks = task.into_iter().chain(opened).collect();
                        return self.wait_for_plugin(
                            cert,
                            record,
                            Phase::Ordered,
                            poll_after_secs,
                            tasks,
                            now,
                        );
                    }
                }
            }
            Phase::Issued | Phase::Installed => {
                let registering = run.phase == Phase::Issued;
                let step = self.step_context(cert, run);
                let services = self.services(cert, plugin)?;
                let outcome = if registering {
                    plugin
                        .register(step, services.clone(), self.deadline)
                        .await?
                } else {
                    plugin.verify(step, services.clone(), self.deadline).await?
                };
                let opened = services.take_tasks();
                // Tasks of this step are filed under the step it leads to.
                let next = if registering {
                    Phase::Registered
                } else {
                    Phase::Verified
                };
                match outcome {
                    StepOutcome::Done { state } => {
                        run.plugin_state = state;
                        set_phase(run, next, now);
                        close_tasks(record, next, now);
                    }
                    StepOutcome::Pending {
                        poll_after_secs,
                        task,
                        state,
                    } => {
                        run.plugin_state = state;
                        let tasks = task.into_iter().chain(opened).collect();
                        return self.wait_for_plugin(
                            cert,
                            record,
                            next,
                            poll_after_secs,
                            tasks,
                            now,
                        );
                    }
                }
            }
            Phase::Registered => {
                // Installing is what services notice: never inside quiet hours.
                let at = self.outside_quiet_hours(now);
                if at > now {
                    run.wait_until = Some(at);
                    return Ok(Progress::Wait(Some(at)));
                }
                self.install(cert, run).await?;
                set_phase(run, Phase::Installed, now);
            }
            Phase::Verified => {
                let overlap = i64::try_from(cert.renewal.overlap.as_secs()).unwrap_or(0);
                let retire_at = run.phase_at + overlap;
                if retire_at > now {
                    run.wait_until = Some(retire_at);
                    return Ok(Progress::Wait(Some(retire_at)));
                }
                if run.old.is_some() {
                    let step = self.step_context(cert, run);
                    let services = self.services(cert, plugin)?;
                    let outcome = plugin.retire(step, services.clone(), self.deadline).await?;
                    let opened = services.take_tasks();
                    if let StepOutcome::Pending {
                        poll_after_secs,
                        task,
                        state,
                    } = outcome
                    {
                        run.plugin_state = state;
                        let tasks = task.into_iter().chain(opened).collect();
                        return self.wait_for_plugin(
                            cert,
                            record,
                            Phase::Retired,
                            poll_after_secs,
                            tasks,
                            now,
                        );
                    }
                }
                close_tasks(record, Phase::Retired, now);
                // Saved as retired before `finish` (which removes the pending key), so a crash
                // in between does not retire the old certificate twice.
                if let Some(run) = record.run.as_mut() {
                    set_phase(run, Phase::Retired, now);
                }
                return Ok(Progress::Advanced);
            }
            Phase::Retired => {
                self.finish(cert, record, now)?;
            }
        }
        Ok(Progress::Advanced)
    }

    /// Asks the plugin when the authority suggests renewing the certificate in use, when the
    /// last answer is about another certificate or due to be asked again. A failure to ask
    /// keeps the last answer for this certificate (or none) and asks again in an hour: the
    /// engine's own schedule is the fallback, never a reason to stop.
    async fn ask_renewal_window(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
        record: &mut Record,
        facts: &CertFacts,
        now: i64,
    ) {
        let fresh = record
            .suggested
            .as_ref()
            .is_some_and(|s| s.serial == facts.serial && s.check_at > now);
        if fresh {
            return;
        }
        let kept = record.suggested_window(&facts.serial);
        let services = match self.services(cert, plugin) {
            Ok(services) => services,
            Err(e) => {
                log::warn!(cert_id = cert.id.as_str(); "cannot ask for a renewal window: {e}");
                return;
            }
        };
        let context = self.context(cert, Some(facts));
        let answer = plugin
            .renewal_window(context, services, self.deadline)
            .await;
        let (window, explanation, check_after) = match answer {
            Ok(Some(w)) if w.start < w.end && w.start < facts.not_after => {
                (Some((w.start, w.end)), w.explanation, w.check_again_secs)
            }
            Ok(Some(w)) => {
                log::warn!(
                    cert_id = cert.id.as_str(), plugin = cert.plugin.as_str();
                    "ignoring the authority's renewal window {}..{}: it is empty or starts after the certificate expires",
                    w.start, w.end
                );
                (None, None, WINDOW_RECHECK_SECS)
            }
            Ok(None) => (None, None, WINDOW_RECHECK_SECS),
            Err(e) => {
                log::warn!(
                    cert_id = cert.id.as_str(), plugin = cert.plugin.as_str();
                    "cannot ask for a renewal window (the engine's own schedule applies): {e}"
                );
                (kept, None, WINDOW_RETRY_SECS)
            }
        };
        if window.is_some() && window != kept {
            let (start, end) = window.unwrap_or_default();
            log::info!(
                cert_id = cert.id.as_str(), plugin = cert.plugin.as_str();
                "the authority suggests renewing between {} and {}{}",
                crate::human_time::format_time(start),
                crate::human_time::format_time(end),
                explanation.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            );
        }
        let check_after = check_after.clamp(WINDOW_MIN_RECHECK_SECS, WINDOW_RECHECK_SECS);
        record.suggested = Some(Suggestion {
            serial: facts.serial.clone(),
            window,
            explanation,
            check_at: now + i64::try_from(check_after).unwrap_or(0),
        });
    }

    /// What register, verify and retire are told about the certificate and the run.
    fn step_context(&self, cert: &ManagedCertificate, run: &Run) -> StepContext {
        StepContext {
            certificate: self.context(cert, run.old.as_ref()),
            new: run.new.clone(),
            state: run.plugin_state.clone(),
        }
    }

    /// A plugin answered "pending": wait as long as it asked, file the tasks it opened under
    /// `phase` (the step they lead to), save.
    fn wait_for_plugin(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        phase: Phase,
        poll_after_secs: u64,
        tasks: Vec<TaskSpec>,
        now: i64,
    ) -> Result<Progress, EngineError> {
        // The plugin answered: whatever failed before is over, even if the step is not done.
        record.failures = 0;
        record.last_error = None;
        let Some(run) = record.run.as_mut() else {
            return Ok(Progress::Wait(None));
        };
        run.wait_until = Some(now + i64::try_from(poll_after_secs.max(1)).unwrap_or(i64::MAX / 2));
        let (number, csr) = (run.number, run.csr_pem.clone());
        let (old, new) = (run.old.clone(), run.new.clone());
        for spec in tasks {
            self.open_task(
                cert,
                record,
                number,
                phase,
                spec,
                csr.as_deref(),
                Certificates {
                    old: old.as_ref(),
                    new: new.as_ref(),
                },
                now,
            )?;
        }
        self.save(&cert.id, record);
        Ok(Progress::Wait(
            record.run.as_ref().and_then(|r| r.wait_until),
        ))
    }

    fn start_run(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        reason: Reason,
        current: Option<CertFacts>,
        now: i64,
    ) {
        record.runs += 1;
        record.run = Some(Run {
            number: record.runs,
            reason,
            started_at: now,
            phase: Phase::Due,
            phase_at: now,
            csr_pem: None,
            plugin_state: Value::Null,
            old: current,
            new: None,
            chain_pem: None,
            version: None,
            wait_until: None,
            notes: Vec::new(),
            requested: None,
        });
        record.tasks.retain(|t| t.closed_at.is_none());
        log::info!(cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(), reason = format!("{reason:?}").to_lowercase(); "renewal started (run {})", record.runs);
        self.save(&cert.id, record);
    }

    /// The pending key (made once, kept across crashes) and the CSR for it.
    async fn make_key_and_csr(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
        run: &mut Run,
        current: Option<&CertFacts>,
    ) -> Result<(), EngineError> {
        let services = self.services(cert, plugin)?;
        let mut profile = plugin
            .csr_profile(self.context(cert, current), services, self.deadline)
            .await?;
        if let Some(key_type) = cert.renewal.key_type {
            profile.key = key_type;
        }
        let pending = self.store.pending_key_path(&cert.id)?;
        let key = match std::fs::read(&pending) {
            Ok(bytes) => PrivateKey::from_bytes(&Zeroizing::new(bytes))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = match (cert.renewal.key_policy, &cert.key) {
                    (KeyPolicy::Reuse, Some(live)) if live.exists() => {
                        let bytes = Zeroizing::new(std::fs::read(live).map_err(|e| {
                            EngineError::Other(format!(
                                "cannot read the live key {}: {e}",
                                live.display()
                            ))
                        })?);
                        PrivateKey::from_bytes(&bytes)?
                    }
                    _ => {
                        let algorithm = profile.key;
                        tokio::task::spawn_blocking(move || keys::generate(algorithm))
                            .await
                            .map_err(|e| {
                                EngineError::Other(format!("key generation stopped: {e}"))
                            })??
                    }
                };
                store::atomic::write_file(
                    &pending,
                    key.to_pkcs8_pem().as_bytes(),
                    &store::FileSpec::mode(0o600),
                )?;
                log::info!(cert_id = cert.id.as_str(), key_type = key.algorithm().as_str(); "new key generated and saved as the pending key");
                key
            }
            Err(e) => {
                return Err(EngineError::Other(format!(
                    "cannot read the pending key {}: {e}",
                    pending.display()
                )));
            }
        };
        if key.algorithm() != profile.key {
            // A reused or earlier pending key decides; the CSR must match the key.
            profile.key = key.algorithm();
        }
        let csr = keys::csr(&profile, &key)?;
        run.csr_pem = Some(csr.pem);
        run.requested = Some(Requested {
            key: profile.key,
            key_usage: profile.key_usage.clone(),
        });
        Ok(())
    }

    /// Checks an issued chain against the pending key (or the key that came with it) and
    /// stages it as a new version.
    fn accept_issued(
        &self,
        cert: &ManagedCertificate,
        run: &mut Run,
        chain: &[u8],
        key_from_ca: Option<PrivateKey>,
    ) -> Result<(), EngineError> {
        let pending = self.store.pending_key_path(&cert.id)?;
        let from_ca = key_from_ca.is_some();
        let key = match key_from_ca {
            // Written as the pending key only once the chain is checked (below): a refused
            // bundle must not replace the key of the order that is still with the CA.
            Some(key) => key,
            None => {
                let bytes = std::fs::read(&pending).map_err(|e| {
                    EngineError::Import(format!(
                        "there is no pending key for `{}` ({e}): the certificate cannot be checked; start a renewal with `certvakt renew {} --force`",
                        cert.id, cert.id
                    ))
                })?;
                PrivateKey::from_bytes(&Zeroizing::new(bytes))?
            }
        };
        let trust = self.issuer_trust(cert)?;
        let checked = import::check_chain(
            cert,
            chain,
            &key,
            run.old.as_ref(),
            import::Expect {
                trust: trust.as_ref(),
                requested: run.requested.as_ref(),
                key_from_ca: from_ca,
            },
            crate::now_unix(),
        )?;
        for note in &checked.notes {
            log::warn!(cert_id = cert.id.as_str(), serial = checked.facts.serial.as_str(); "{note}");
        }
        let pkcs12 = match (&cert.renewal.pkcs12, &cert.pkcs12_password_file) {
            (Some(_), Some(password_file)) => {
                let password = read_password(password_file)?;
                Some(keys::write_pkcs12(
                    &key,
                    &checked.leaf_der,
                    &checked.chain_der,
                    &password,
                    &cert.id,
                )?)
            }
            _ => None,
        };
        let version = self.store.stage(
            &cert.id,
            &VersionFiles {
                key_pem: Some(key.to_pkcs8_pem()),
                cert_pem: keys::pem_certificates(std::slice::from_ref(&checked.leaf_der)),
                chain_pem: keys::pem_certificates(&checked.chain_der),
                pkcs12,
            },
        )?;
        if from_ca {
            // The CA's key is safe in the staged version now. It becomes the pending key; the
            // key of the order that was with the CA is kept beside it, never overwritten,
            // until the run is over.
            if pending.exists() {
                let kept = pending
                    .with_file_name(format!("pending-key.superseded-{}.pem", crate::now_unix()));
                std::fs::rename(&pending, &kept).map_err(|e| {
                    EngineError::Other(format!(
                        "cannot keep the previous pending key as {}: {e}",
                        kept.display()
                    ))
                })?;
            }
            store::atomic::write_file(
                &pending,
                key.to_pkcs8_pem().as_bytes(),
                &store::FileSpec::mode(0o600),
            )?;
        }
        log::info!(cert_id = cert.id.as_str(), serial = checked.facts.serial.as_str(), version = version.0; "new certificate issued and staged");
        run.chain_pem = Some(keys::pem_certificates(&checked.chain_der));
        run.new = Some(checked.facts);
        run.version = Some(version);
        run.notes = checked.notes;
        set_phase(run, Phase::Issued, crate::now_unix());
        Ok(())
    }

    /// The roots of the certificate's `issuer_trust` set, read now (a replaced file counts at
    /// once); `None` when it has none.
    fn issuer_trust(
        &self,
        cert: &ManagedCertificate,
    ) -> Result<Option<import::IssuerTrust>, EngineError> {
        let Some(name) = &cert.renewal.issuer_trust else {
            return Ok(None);
        };
        let unusable = |why: String| {
            EngineError::Import(format!(
                "trust set `{name}` cannot be used to check the new certificate: {why}"
            ))
        };
        let files = self.config.trust.get(name).ok_or_else(|| {
            unusable(format!(
                "issuer_trust of {} names it, but [trust] does not define it",
                cert.id
            ))
        })?;
        // The same reader as the HTTP service's trust sets: every file, read at each use.
        let bundle = TrustFiles::new()
            .with_set(name.as_str(), files.clone())
            .trust_set(name)
            .map_err(|e| unusable(e.0))?
            .unwrap_or_default();
        let roots = keys::parse_certificate_chain(bundle.as_bytes())
            .map_err(|e| unusable(e.to_string()))?;
        Ok(Some(import::IssuerTrust {
            name: name.clone(),
            roots,
        }))
    }

    async fn install(&self, cert: &ManagedCertificate, run: &Run) -> Result<(), EngineError> {
        let Some(version) = run.version else {
            return Err(EngineError::Other("no staged version to install".into()));
        };
        if live_is_pkcs12(cert) {
            return Err(EngineError::Other(format!(
                "{} is a PKCS#12 bundle, and certvakt writes the certificate as PEM: set `cert` to a PEM path and `pkcs12 = \"{}\"` (with pkcs12_password_file) so both are written",
                cert.cert.display(),
                cert.cert.display()
            )));
        }
        let live = live_paths(cert);
        let own = ownership(cert)?;
        let env = hooks::HookEnv {
            cert_id: cert.id.clone(),
            cert: cert.cert.display().to_string(),
            key: cert
                .key
                .as_ref()
                .map(|k| k.display().to_string())
                .unwrap_or_default(),
            chain: path_text(&cert.renewal.chain),
            fullchain: path_text(&cert.renewal.fullchain),
            old_serial: run
                .old
                .as_ref()
                .map(|o| o.serial.clone())
                .unwrap_or_default(),
            new_serial: run
                .new
                .as_ref()
                .map(|n| n.serial.clone())
                .unwrap_or_default(),
            outcome: String::new(),
            extra: Vec::new(),
        };
        let timeout = Duration::from_secs(cert.renewal.hook_timeout.as_secs().max(1));
        let r = &cert.renewal;
        // Before anything runs or changes: what is live and in no version is kept.
        self.adopt_live(cert, &live, &own).await?;
        self.preserve_live(cert, &live, &own)?;
        if let Some(pre) = r.pre_hook.clone() {
            let pre_env = env.clone();
            let pre_result =
                blocking(move || hooks::run(hooks::HookKind::Pre, &pre, &pre_env, timeout)).await?;
            if let Err(e) = pre_result {
                // Nothing was installed; the post hook still runs, told so.
                self.after_hook(
                    cert,
                    hooks::HookKind::Post,
                    &r.post_hook,
                    &env,
                    "failure",
                    timeout,
                )
                .await?;
                return Err(e.into());
            }
        }
        let store = self.store.clone();
        let id = cert.id.clone();
        let result = blocking(move || store.install(&id, version, &live, &own)).await;
        let ok = matches!(result, Ok(Ok(())));
        if ok {
            log::info!(cert_id = cert.id.as_str(), version = version.0; "new certificate installed");
            self.announce(&cert.id);
            self.after_hook(
                cert,
                hooks::HookKind::Deploy,
                &r.deploy_hook,
                &env,
                "success",
                timeout,
            )
            .await?;
        }
        let outcome = if ok { "success" } else { "failure" };
        self.after_hook(
            cert,
            hooks::HookKind::Post,
            &r.post_hook,
            &env,
            outcome,
            timeout,
        )
        .await?;
        result??;
        Ok(())
    }

    /// Runs a deploy or post hook, if configured. Its failure is reported (journal, metric),
    /// not returned: by then the live files are what they are, and undoing them would be
    /// worse.
    async fn after_hook(
        &self,
        cert: &ManagedCertificate,
        kind: hooks::HookKind,
        argv: &Option<Vec<String>>,
        env: &hooks::HookEnv,
        outcome: &str,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let Some(argv) = argv.clone() else {
            return Ok(());
        };
        let mut env = env.clone();
        env.outcome = outcome.into();
        if let Err(e) = blocking(move || hooks::run(kind, &argv, &env, timeout)).await? {
            log::error!(cert_id = cert.id.as_str(); "{e}");
            self.metrics.observe_hook_failure(&cert.id, kind.as_str());
        }
        Ok(())
    }

    /// Keeps a copy (mode 0600, in `certs/<id>/replaced/<time>/`) of every live file an
    /// install is about to overwrite that is not byte for byte the current version's: files
    /// put there by hand, a key without its certificate, a pair swapped in an emergency. The
    /// install may then replace them; nothing that was live is lost.
    fn preserve_live(
        &self,
        cert: &ManagedCertificate,
        live: &LivePaths,
        own: &Ownership,
    ) -> Result<(), EngineError> {
        // A current version that cannot be laid out (its files damaged, the configured live
        // paths changed since) expects nothing: every live file is kept.
        let expected = match self.store.current(&cert.id)? {
            Some(version) => self
                .store
                .live_contents(&cert.id, version, live, own)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let folder = self
            .store
            .state_path(&cert.id)?
            .with_file_name("replaced")
            .join(crate::now_unix().to_string());
        for (what, path) in live.files() {
            let bytes = match std::fs::read(path) {
                Ok(bytes) => Zeroizing::new(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(EngineError::Other(format!(
                        "cannot read {} before replacing it: {e}; nothing was changed",
                        path.display()
                    )));
                }
            };
            if expected
                .iter()
                .any(|(target, want)| target == path && want[..] == bytes[..])
            {
                continue;
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&folder)
                .map_err(|e| {
                    EngineError::Other(format!("cannot create {}: {e}", folder.display()))
                })?;
            let copy = folder.join(what);
            store::atomic::write_file(&copy, &bytes, &store::FileSpec::mode(0o600))?;
            log::warn!(
                cert_id = cert.id.as_str(), path = path.display().to_string();
                "{} was not written by certvakt; kept a copy at {} before replacing it", path.display(), copy.display()
            );
        }
        Ok(())
    }

    /// Before the first install over files certvakt did not write, keeps them as a version of
    /// their own, so the old pair can be rolled back to and the old key is never lost.
    async fn adopt_live(
        &self,
        cert: &ManagedCertificate,
        live: &LivePaths,
        own: &Ownership,
    ) -> Result<(), EngineError> {
        if self.store.current(&cert.id)?.is_some() || !cert.cert.exists() {
            return Ok(());
        }
        let cert_bytes = std::fs::read(&cert.cert)
            .map_err(|e| EngineError::Other(format!("cannot read {}: {e}", cert.cert.display())))?;
        let Ok(ders) = keys::parse_certificate_chain(&cert_bytes) else {
            return Ok(());
        };
        let Some(leaf) = ders.first() else {
            return Ok(());
        };
        let key_pem = match &cert.key {
            Some(key) if key.exists() => {
                Some(Zeroizing::new(std::fs::read_to_string(key).map_err(
                    |e| EngineError::Other(format!("cannot read {}: {e}", key.display())),
                )?))
            }
            Some(_) => return Ok(()),
            None => None,
        };
        let chain_pem = match &cert.renewal.chain {
            Some(chain) if chain.exists() => std::fs::read_to_string(chain).unwrap_or_default(),
            _ => keys::pem_certificates(ders.get(1..).unwrap_or_default()),
        };
        let pkcs12 = match &live.pkcs12 {
            Some((bundle, _)) if bundle.exists() => std::fs::read(bundle).ok().map(Zeroizing::new),
            Some(_) => return Ok(()),
            None => None,
        };
        let version = self.store.stage(
            &cert.id,
            &VersionFiles {
                key_pem,
                cert_pem: keys::pem_certificates(std::slice::from_ref(leaf)),
                chain_pem,
                pkcs12,
            },
        )?;
        // Installing the adopted version writes the same pair again and makes it `current`,
        // so the new install records it as `previous`.
        let (store, id, live, own) = (
            self.store.clone(),
            cert.id.clone(),
            live.clone(),
            own.clone(),
        );
        blocking(move || store.install(&id, version, &live, &own)).await??;
        log::info!(cert_id = cert.id.as_str(), version = version.0; "kept the certificate and key in use before certvakt's first install as a version (rollback goes back to them)");
        Ok(())
    }

    fn finish(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        now: i64,
    ) -> Result<(), EngineError> {
        let removed = self.store.retire(&cert.id, 0)?;
        let pending = self.store.pending_key_path(&cert.id)?;
        // The pending key is now in the installed version: safe to remove the copy.
        if let Err(e) = std::fs::remove_file(&pending) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(EngineError::Other(format!(
                    "cannot remove {}: {e}",
                    pending.display()
                )));
            }
        }
        // Keys of orders that a CA-made key replaced go with the run that replaced them.
        if let Some(dir) = pending.parent() {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("pending-key.superseded-")
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        if let Some(run) = record.run.take() {
            let _ = self.store.append_history(
                &cert.id,
                &serde_json::json!({
                    "run": run.number,
                    "reason": run.reason,
                    "started_at": run.started_at,
                    "finished_at": now,
                    "old_serial": run.old.as_ref().map(|o| o.serial.clone()),
                    "new_serial": run.new.as_ref().map(|n| n.serial.clone()),
                    "version": run.version,
                    "notes": run.notes,
                }),
            );
            // Kept for status until the next run ends: a new UUID matters after the install.
            record.last_notes.clone_from(&run.notes);
            log::info!(
                cert_id = cert.id.as_str(), plugin = cert.plugin.as_str();
                "renewal complete (run {}): serial {} valid until {}; {} old version(s) removed",
                run.number,
                run.new.as_ref().map_or("?", |n| n.serial.as_str()),
                run.new.as_ref().map_or(String::new(), |n| crate::human_time::format_date(n.not_after)),
                removed.len()
            );
        }
        record.last_success = Some(now);
        record.tasks.retain(|t| t.closed_at.is_none());
        self.metrics.observe_renewal_success(&cert.id);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn open_task(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        run: u64,
        phase: Phase,
        spec: TaskSpec,
        csr_pem: Option<&str>,
        certificates: Certificates<'_>,
        now: i64,
    ) -> Result<(), EngineError> {
        // The same step asking again while its task is open is the same task.
        if record
            .open_tasks()
            .any(|t| t.phase == phase && t.title == spec.title)
        {
            return Ok(());
        }
        let n = record.tasks.len() + 1;
        let id = format!("{}-{run}-{n}", cert.id);
        let folder = self.store.outbox(&cert.id)?.join(&id);
        std::fs::create_dir_all(&folder)
            .map_err(|e| EngineError::Other(format!("cannot create {}: {e}", folder.display())))?;
        let mut files = Vec::new();
        let instructions = format!(
            "{}\n\n{}\n\nCertificate: {}\nTask: {}\nWhen done: {}\n",
            spec.title,
            spec.instructions,
            cert.id,
            id,
            match spec.completes_by {
                Completion::Import => format!(
                    "certvakt import {} <file>  (or drop the file into {})",
                    cert.id,
                    self.store.inbox(&cert.id)?.display()
                ),
                Completion::Confirm => format!("certvakt task done {id}"),
                Completion::Poll => "nothing: certvakt notices by itself".into(),
            }
        );
        let mut write = |name: &str, bytes: &[u8]| -> Result<(), EngineError> {
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = folder.join(safe);
            store::atomic::write_file(&path, bytes, &store::FileSpec::mode(0o640))?;
            files.push(path);
            Ok(())
        };
        write("instructions.txt", instructions.as_bytes())?;
        for file in &spec.files {
            let bytes: Option<Vec<u8>> = match &file.content {
                TaskFileContent::Text(text) => Some(text.clone().into_bytes()),
                TaskFileContent::Base64(bytes) => Some(bytes.clone()),
                TaskFileContent::Csr => csr_pem.map(|c| c.as_bytes().to_vec()),
                TaskFileContent::CertificatePem => {
                    certificates.new.map(|c| c.pem.clone().into_bytes())
                }
                TaskFileContent::CertificateDer => certificates.new.and_then(leaf_der),
                TaskFileContent::PreviousCertificateDer => certificates.old.and_then(leaf_der),
            };
            if let Some(bytes) = bytes {
                write(&file.name, &bytes)?;
            }
        }
        log::warn!(
            cert_id = cert.id.as_str(), task_id = id.as_str(), step = phase.as_str();
            "operator task opened: {} (see `certvakt task show {id}`)", spec.title
        );
        record.tasks.push(Task {
            id,
            cert_id: cert.id.clone(),
            phase,
            title: spec.title,
            instructions: spec.instructions,
            files,
            completes_by: spec.completes_by,
            opened_at: now,
            closed_at: None,
        });
        Ok(())
    }

    fn services(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
    ) -> Result<Arc<EngineServices>, EngineError> {
        let state_dir = self.store.plugin_state_dir(&plugin.name)?.join(&cert.id);
        let previous = self
            .store
            .previous(&cert.id)?
            .and_then(|v| self.store.version_files(&cert.id, v).ok())
            .and_then(|p| p.key);
        let mut basic = BasicServices::new(plugin.name.clone(), cert.id.clone(), state_dir);
        if let Some(http) = &self.http {
            basic = basic.with_http(http.clone());
        }
        if let Some(responder) = &self.http01 {
            basic = basic.with_http01(responder.clone());
        }
        Ok(Arc::new(EngineServices::new(
            basic,
            KeyFiles {
                pending: Some(self.store.pending_key_path(&cert.id)?),
                current: cert.key.clone(),
                previous,
                // `.keys`: a certificate id cannot start with a dot, so no certificate's state folder
                // can be this one.
                plugin_keys: Some(self.store.plugin_state_dir(&plugin.name)?.join(".keys")),
            },
        )))
    }

    fn context(
        &self,
        cert: &ManagedCertificate,
        current: Option<&CertFacts>,
    ) -> CertificateContext {
        let settings = &cert.renewal.settings;
        CertificateContext {
            certificate_id: cert.id.clone(),
            settings: settings.clone(),
            environment: settings
                .get("environment")
                .and_then(Value::as_str)
                .unwrap_or("production")
                .to_owned(),
            current: current.cloned(),
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Renew { id, force, reply } => {
                let result = self.renew(&id, force).await;
                let _ = reply.send(result);
            }
            Command::Import {
                id,
                bytes,
                password,
                reply,
            } => {
                let result = self
                    .import(&id, &bytes, password.as_deref().map(|p| p.as_str()))
                    .await;
                let _ = reply.send(result);
            }
            Command::TaskDone { task_id, reply } => {
                let result = self.task_done(&task_id).await;
                let _ = reply.send(result);
            }
            Command::Rollback { id, reply } => {
                let result = self.rollback(&id);
                let _ = reply.send(result);
            }
            Command::Reconfigure(config) => {
                self.config = config;
                if let Err(e) = self.load_records() {
                    log::error!("renewal state could not be reloaded: {e}");
                }
                self.check_settings().await;
                // A new configuration may have fixed what failed: try again now.
                for record in self.records.values_mut() {
                    record.retry_at = None;
                }
            }
        }
        self.publish(crate::now_unix());
        if self.records.values().any(|r| self.pause_reached(r)) {
            self.pause().await;
        }
    }

    fn managed(&self, id: &str) -> Result<ManagedCertificate, EngineError> {
        if let Some(why) = self.held.get(id) {
            return Err(EngineError::Other(format!("{id}: {why}")));
        }
        self.config
            .certificates
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownCertificate(id.to_owned()))
    }

    async fn renew(&mut self, id: &str, force: bool) -> Result<String, EngineError> {
        let cert = self.managed(id)?;
        if self.plugins.get(&cert.plugin).is_none() {
            return Err(EngineError::PluginMissing {
                id: id.into(),
                plugin: cert.plugin.clone(),
            });
        }
        let now = crate::now_unix();
        let record = self.records.entry(id.to_owned()).or_default();
        record.retry_at = None;
        if let Some(run) = record.run.as_mut() {
            run.wait_until = None;
            return Ok(format!(
                "renewal of {id} is in progress (after step {}); trying the next step now",
                run.phase.as_str()
            ));
        }
        let current = read_live(&cert)?;
        if !force {
            let due = current.as_ref().map(|f| {
                crate::schedule::renewal_due(
                    id,
                    f.not_before,
                    f.not_after,
                    cert.renewal.renew_before.map(|d| d.as_secs()),
                )
            });
            if let Some(due) = due.filter(|due| *due > now) {
                return Ok(format!(
                    "{id} is not due until {} (use --force to renew now)",
                    crate::human_time::format_time(due)
                ));
            }
        }
        let reason = if current.is_some() {
            Reason::Requested
        } else {
            Reason::FirstIssue
        };
        let mut record = self.records.remove(id).unwrap_or_default();
        self.start_run(&cert, &mut record, reason, current, now);
        self.records.insert(id.to_owned(), record);
        let message = format!("renewal of {id} started");
        // The engine's loop takes the next step right after this answer; `certvakt status`
        // shows how it goes.
        Ok(message)
    }

    async fn import(
        &mut self,
        id: &str,
        bytes: &[u8],
        password: Option<&str>,
    ) -> Result<String, EngineError> {
        let cert = self.managed(id)?;
        let parsed = import::read_import(bytes, password)?;
        let now = crate::now_unix();
        let mut record = self.records.remove(id).unwrap_or_default();
        // A refused import leaves the record as it was: no run started for nothing.
        let before = record.clone();
        let result = (|| -> Result<String, EngineError> {
            if record.run.is_none() {
                if parsed.key.is_none() {
                    return Err(EngineError::Import(format!(
                        "no renewal of {id} is waiting for a certificate, and the file has no key: start one with `certvakt renew {id} --force` and send its CSR to the CA, or import the PKCS#12 the CA made (it carries its key)"
                    )));
                }
                let current = read_live(&cert)?;
                self.start_run(&cert, &mut record, Reason::Import, current, now);
            }
            let Some(run) = record.run.as_mut() else {
                return Err(EngineError::Other("no run".into()));
            };
            if run.phase >= Phase::Issued {
                return Err(EngineError::Import(format!(
                    "the renewal of {id} already has its certificate (step {}); nothing to import",
                    run.phase.as_str()
                )));
            }
            self.accept_issued(&cert, run, &parsed.chain_pem, parsed.key)?;
            close_tasks(&mut record, Phase::Ordered, now);
            let (serial, notes) = record
                .run
                .as_ref()
                .and_then(|r| Some((r.new.as_ref()?.serial.clone(), r.notes.clone())))
                .unwrap_or_default();
            let notes: String = notes.iter().map(|n| format!("\nnote: {n}")).collect();
            Ok(format!(
                "imported certificate {serial} for {id}; continuing with registration and installation{notes}"
            ))
        })();
        match &result {
            Ok(_) => {
                record.failures = 0;
                record.retry_at = None;
                record.last_error = None;
                self.save(id, &record);
            }
            Err(e) => {
                log::warn!(cert_id = id; "import refused: {e}");
                if record != before {
                    record = before;
                    self.save(id, &record);
                }
            }
        }
        self.records.insert(id.to_owned(), record);
        result
    }

    async fn task_done(&mut self, task_id: &str) -> Result<String, EngineError> {
        let now = crate::now_unix();
        let Some((id, task)) = self.records.iter().find_map(|(id, r)| {
            r.open_tasks()
                .find(|t| t.id == task_id)
                .map(|t| (id.clone(), t.clone()))
        }) else {
            return Err(EngineError::UnknownTask(task_id.to_owned()));
        };
        if task.completes_by == Completion::Import {
            return Err(EngineError::TaskNotConfirmable {
                id: task_id.to_owned(),
                how: format!("importing the certificate (`certvakt import {id} <file>`)"),
            });
        }
        if let Some(record) = self.records.get_mut(&id) {
            for t in record.tasks.iter_mut().filter(|t| t.id == task_id) {
                t.closed_at = Some(now);
            }
            if let Some(run) = record.run.as_mut() {
                run.wait_until = None;
            }
            record.retry_at = None;
            let record = record.clone();
            self.save(&id, &record);
        }
        log::info!(cert_id = id.as_str(), task_id = task_id; "operator marked the task done");
        Ok(format!("task {task_id} done; {id} continues"))
    }

    fn rollback(&mut self, id: &str) -> Result<String, EngineError> {
        let cert = self.managed(id)?;
        let version = self
            .store
            .rollback(id, &live_paths(&cert), &ownership(&cert)?)?;
        log::warn!(cert_id = id, version = version.0; "rolled back to the previous version");
        self.announce(id);
        Ok(format!("{id} is back at version {version}"))
    }

    fn publish(&self, now: i64) {
        let certificates = self
            .config
            .certificates
            .iter()
            .map(|cert| {
                let record = self.records.get(&cert.id).cloned().unwrap_or_default();
                let mut suggested_window = None;
                let next_at = match (&record.run, record.retry_at) {
                    (_, Some(retry)) => Some(retry),
                    (Some(run), None) => Some(run.wait_until.unwrap_or(now)),
                    (None, None) => match read_live(cert) {
                        Ok(Some(f)) => {
                            suggested_window = record.suggested_window(&f.serial);
                            Some(due_at(cert, &record, &f).0)
                        }
                        // A first issue is due now.
                        Ok(None) => Some(now),
                        Err(_) => None,
                    }
                    .map(|due| self.outside_quiet_hours(due.max(now))),
                };
                CertRenewal {
                    id: cert.id.clone(),
                    plugin: cert.plugin.clone(),
                    plugin_loaded: self.plugins.get(&cert.plugin).is_some(),
                    phase: record.run.as_ref().map(|r| r.phase),
                    next_at,
                    failures: record
                        .failures
                        .max(u32::from(self.held.contains_key(&cert.id))),
                    last_error: self
                        .held
                        .get(&cert.id)
                        .cloned()
                        .or(record.last_error.clone()),
                    last_success: record.last_success,
                    open_tasks: record.open_tasks().cloned().collect(),
                    suggested_window,
                    notes: record
                        .run
                        .as_ref()
                        .map_or_else(|| record.last_notes.clone(), |r| r.notes.clone()),
                }
            })
            .collect();
        let view = EngineView { certificates };
        self.metrics.observe_renewals(
            view.certificates
                .iter()
                .map(|c| crate::metrics::RenewalSeries {
                    id: c.id.clone(),
                    step: c.phase.map(Phase::as_str),
                    next_at: c.next_at,
                    consecutive_failures: c.failures,
                    last_success: c.last_success,
                    tasks_pending: c.open_tasks.len(),
                })
                .collect(),
        );
        match self.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }
}

/// `check-config`'s second half: the configuration loads, and each managed certificate's
/// plugin (loaded from `plugin_dir` as the daemon would) accepts its
/// `[certificate.settings]`. A plugin that is not installed is not a problem here (the daemon
/// monitors the certificate and says so); its settings cannot be checked.
pub fn load_and_check(path: &std::path::Path) -> Result<Config, Vec<crate::config::Problem>> {
    let config = crate::config::load(path)?;
    let problems = check_plugin_settings(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn check_plugin_settings(config: &Config) -> Vec<crate::config::Problem> {
    if config.certificates.is_empty() {
        return Vec::new();
    }
    let (Ok(metrics), Ok(runtime)) = (
        Metrics::new(0),
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    ) else {
        return Vec::new();
    };
    let euid = nix::unistd::geteuid().as_raw();
    let plugins = crate::plugin_host::load_dir(
        &config.daemon.plugin_dir,
        (euid != 0).then_some(euid),
        Arc::new(metrics),
    );
    let scratch = std::env::temp_dir().join(format!("certvakt-check-{}", std::process::id()));
    let mut problems = Vec::new();
    for (i, cert) in config.certificates.iter().enumerate() {
        let Some(plugin) = plugins.get(&cert.plugin) else {
            continue;
        };
        let services = Arc::new(BasicServices::new(
            plugin.name.clone(),
            cert.id.clone(),
            scratch.clone(),
        ));
        let answer = runtime.block_on(plugin.validate_settings(
            cert.renewal.settings.clone(),
            services,
            Duration::from_secs(10),
        ));
        let key = format!("certificate[{i}].settings");
        let line = config
            .key_origins
            .get(&key)
            .map_or(cert.origin.line, |o| o.line);
        match answer {
            Ok(found) => problems.extend(found.into_iter().map(|p| {
                crate::config::Problem {
                    file: cert.origin.file.clone(),
                    line: Some(line),
                    key: format!("{key}.{}", p.key),
                    message: format!("plugin {}: {}", cert.plugin, p.message),
                    hint: p
                        .hint
                        .unwrap_or_else(|| format!("see the {} plugin's settings", cert.plugin)),
                }
            })),
            Err(e) => problems.push(crate::config::Problem {
                file: cert.origin.file.clone(),
                line: Some(line),
                key,
                message: format!("the settings could not be checked: {e}"),
                hint: "see `certvakt plugins` and the journal".into(),
            }),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    problems
}

/// When the certificate in use is due, and why: inside the authority's suggested window when
/// it gave one for this certificate, otherwise by the engine's own schedule.
fn due_at(cert: &ManagedCertificate, record: &Record, facts: &CertFacts) -> (i64, Reason) {
    match record.suggested_window(&facts.serial) {
        Some((start, end)) => (
            crate::schedule::in_window(&cert.id, start, end),
            Reason::Suggested,
        ),
        None => (
            crate::schedule::renewal_due(
                &cert.id,
                facts.not_before,
                facts.not_after,
                cert.renewal.renew_before.map(|d| d.as_secs()),
            ),
            Reason::Scheduled,
        ),
    }
}

fn set_phase(run: &mut Run, phase: Phase, now: i64) {
    run.phase = phase;
    run.phase_at = now;
    run.wait_until = None;
}

fn close_tasks(record: &mut Record, phase: Phase, now: i64) {
    for task in record
        .tasks
        .iter_mut()
        .filter(|t| t.phase == phase && t.closed_at.is_none())
    {
        task.closed_at = Some(now);
        log::info!(cert_id = task.cert_id.as_str(), task_id = task.id.as_str(); "operator task completed");
    }
}

/// The certificates a task's files may hold: the one being replaced and the new one (once
/// issued).
#[derive(Debug, Clone, Copy, Default)]
struct Certificates<'a> {
    old: Option<&'a CertFacts>,
    new: Option<&'a CertFacts>,
}

/// The leaf of a certificate, DER.
fn leaf_der(facts: &CertFacts) -> Option<Vec<u8>> {
    keys::parse_certificate_chain(facts.pem.as_bytes())
        .ok()
        .and_then(|ders| ders.into_iter().next())
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

/// The live certificate's facts: `None` when the file does not exist yet (a first issue),
/// an error when it exists but cannot be read — then nothing is renewed, because replacing a
/// file certvakt cannot read could destroy what a service depends on.
fn read_live(cert: &ManagedCertificate) -> Result<Option<CertFacts>, EngineError> {
    let unreadable = |why: String| {
        EngineError::Other(format!(
            "the live certificate {} of {} cannot be read ({why}); no renewal starts until it can (fix the file, or move it away for a first issue)",
            cert.cert.display(),
            cert.id
        ))
    };
    let bytes = match std::fs::read(&cert.cert) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    if let Ok(ders) = keys::parse_certificate_chain(&bytes) {
        let leaf = ders
            .into_iter()
            .next()
            .ok_or_else(|| unreadable("it holds no certificate".into()))?;
        return import::facts(&leaf).map(Some);
    }
    let Some(password_file) = &cert.pkcs12_password_file else {
        return Err(unreadable(
            "it is neither PEM nor DER, and no pkcs12_password_file is configured".into(),
        ));
    };
    let password = read_password(password_file)?;
    let contents = keys::read_pkcs12(&bytes, &password).map_err(|e| unreadable(e.to_string()))?;
    import::facts(&contents.leaf_der).map(Some)
}

/// Whether the live `cert` file is a PKCS#12 bundle (certvakt writes PEM to `cert`; a bundle
/// belongs in `pkcs12`).
fn live_is_pkcs12(cert: &ManagedCertificate) -> bool {
    std::fs::read(&cert.cert)
        .is_ok_and(|bytes| keys::parse_certificate_chain(&bytes).is_err() && !bytes.is_empty())
}

fn live_paths(cert: &ManagedCertificate) -> LivePaths {
    LivePaths {
        cert: cert.cert.clone(),
        key: cert.key.clone(),
        chain: cert.renewal.chain.clone(),
        fullchain: cert.renewal.fullchain.clone(),
        pkcs12: cert
            .renewal
            .pkcs12
            .clone()
            .zip(cert.pkcs12_password_file.clone()),
    }
}

fn ownership(cert: &ManagedCertificate) -> Result<Ownership, EngineError> {
    let r = &cert.renewal;
    let owner = match &r.owner {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    EngineError::Other(format!("owner `{name}` of {} does not exist", cert.id))
                })?
                .uid
                .as_raw(),
        ),
        None => None,
    };
    let group = match &r.group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    EngineError::Other(format!("group `{name}` of {} does not exist", cert.id))
                })?
                .gid
                .as_raw(),
        ),
        None => None,
    };
    Ok(Ownership {
        owner,
        group,
        key_mode: r.key_mode,
        cert_mode: r.cert_mode,
    })
}

fn read_password(path: &std::path::Path) -> Result<Zeroizing<String>, EngineError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        EngineError::Other(format!(
            "cannot read the PKCS#12 password file {}: {e}",
            path.display()
        ))
    })?);
    let trimmed = text.trim_end_matches(['\n', '\r']);
    Ok(Zeroizing::new(trimmed.to_owned()))
}

fn path_text(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

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
