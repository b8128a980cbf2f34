//! The engine's loop: it owns the records, answers commands, takes the inboxes, starts each
//! certificate's steps in a task of their own and takes the record back when they stop, and
//! publishes the view.
//!
//! Contract:
//! - The loop never awaits a plugin. It waits only for a command, a step task handing a
//!   record back, a certificate's last plugin call returning, an inbox change, or the next
//!   moment something is due.
//! - A certificate is started only when it is not in flight, not held, not paused, its record
//!   is on disk, and its time has come; a certificate stays in flight until its task has
//!   handed the record back *and* every plugin call it made has returned.
//! - Publishing the view reads no file: the schedule comes from what the last step saw.
//! - The crash-test hook (`test-hooks` feature only) stops a certificate for ever right after
//!   the named step is saved, and says so in the journal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{
    CallToken, CertRenewal, Command, Core, Engine, EngineError, EngineView, Phase, Record,
};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugin_host::settings_check::SettingsAnswers;
use crate::plugin_host::{HttpService, Registry};
use crate::store::Store;

/// A certificate whose steps are in flight.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    /// The step it started to take (for messages).
    pub step: &'static str,
    pub since: i64,
    /// Whether its task has handed the record back.
    pub record_back: bool,
    /// Whether every plugin call it made has returned.
    pub released: bool,
}

/// How long a command for a certificate whose step is being taken waits for that step to end
/// before it is refused as busy.
/// During a burst of steps, how often the view and the next wake are made again.
const BURST_PASS: Duration = Duration::from_millis(200);

pub(super) const DEFER_COMMAND: Duration = Duration::from_secs(5);

/// A command waiting for its certificate's step in flight to end.
#[derive(Debug)]
pub(super) struct Deferred {
    pub id: String,
    pub command: Command,
    pub until: std::time::Instant,
}

/// What the last step saw of a certificate, for the view.
#[derive(Debug, Clone, Default)]
pub(super) struct Seen {
    /// When the certificate in use is due (no run in progress); `None` when it cannot be read.
    pub due: Option<i64>,
    /// The authority's suggested window for the certificate in use.
    pub window: Option<(i64, i64)>,
}

/// A step task handing its certificate's record back.
#[derive(Debug)]
pub(super) struct StepDone {
    pub id: String,
    pub record: Record,
    /// When to look again (`None`: not until something changes).
    pub next_at: Option<i64>,
    pub seen: Option<Seen>,
    /// The record in memory is not on disk.
    pub unsaved: bool,
    /// The crash-test hook stopped it.
    pub paused: bool,
    /// The plugin refused the settings (the reason), or accepted them (`None` after a check).
    pub settings: Option<Result<(), String>>,
}

impl Engine {
    /// Opens the store, finishes any install a crash interrupted, and loads every record.
    pub fn new(
        config: Arc<Config>,
        plugins: Arc<Registry>,
        metrics: Arc<Metrics>,
        http: Option<Arc<HttpService>>,
    ) -> Result<Engine, EngineError> {
        let store = Store::open(&config.daemon.state_dir)?;
        let pause_after = pause_hook();
        let (steps_done, steps_rx) = mpsc::unbounded_channel();
        let (released, released_rx) = mpsc::unbounded_channel();
        let mut engine = Engine {
            core: Arc::new(Core {
                store,
                plugins: plugins.clone(),
                metrics,
                by_id: super::index_ids(&config),
                plugins_used: super::plugins_used(&config, &plugins),
                settings_answers: Arc::new(SettingsAnswers::for_engine()),
                config,
                http,
                http01: None,
                mail_out: None,
                installed: None,
                deadline: plugin_deadline(),
                pause_after,
            }),
            records: BTreeMap::new(),
            view: Arc::default(),
            published: None,
            held: BTreeMap::new(),
            settings_checked: Default::default(),
            in_flight: BTreeMap::new(),
            next_at: BTreeMap::new(),
            seen: BTreeMap::new(),
            unsaved: Default::default(),
            paused: Default::default(),
            nudged: Default::default(),
            deferred: Vec::new(),
            removed: Vec::new(),
            stuck_inbox_files: Default::default(),
            settling: BTreeMap::new(),
            inbox_watch_stale: true,
            start_from: 0,
            inbox_all: true,
            inbox_ids: Default::default(),
            steps_done,
            steps_rx: Some(steps_rx),
            released,
            released_rx: Some(released_rx),
        };
        engine.load_records(true, &BTreeSet::new());
        engine.publish(crate::now_unix());
        Ok(engine)
    }

    /// The responder that answers ACME http-01 challenges plugins publish.
    pub fn set_http01(&mut self, responder: Arc<crate::plugin_host::challenges::Http01Responder>) {
        self.edit_core(|core| core.http01 = Some(responder));
    }

    /// Where a plugin's mail goes: sent through the relay when the certificate's `plugin_mail`
    /// allows it, otherwise rendered for a person. Without it a plugin's mail is refused.
    pub fn set_mail_out(&mut self, mail_out: Arc<dyn crate::plugin_host::MailOut>) {
        self.edit_core(|core| core.mail_out = Some(mail_out));
    }

    /// Told each time the engine's view is replaced.
    pub fn tell_publications(&mut self, to: Arc<tokio::sync::Notify>) {
        self.published = Some(to);
    }

    /// Where to say that a certificate's live files changed.
    pub fn notify_installs(&mut self, tx: mpsc::UnboundedSender<String>) {
        self.edit_core(|core| core.installed = Some(tx));
    }

    /// The snapshot readers use.
    pub fn view(&self) -> Arc<std::sync::RwLock<EngineView>> {
        self.view.clone()
    }

    /// A new core with `change` made: steps in flight finish with the one they started with.
    fn edit_core(&mut self, change: impl FnOnce(&mut Core)) {
        let mut core = Core::clone(&self.core);
        change(&mut core);
        self.core = Arc::new(core);
    }

    /// Finishes interrupted installs and loads each certificate's record, except those in
    /// flight (their task holds the newer record). A certificate whose install cannot be
    /// finished or whose record cannot be read is held back (shown in status, never advanced)
    /// instead of stopping the daemon: a fresh record would start a new run and forget the key
    /// of the one on disk.
    ///
    /// At start (`at_start`) it also removes pending keys no run refers to: only a crash
    /// between a cancel's (or forget's) state and its key removal leaves them, so a reload
    /// does not list every certificate's folder again to look.
    ///
    /// The records of `unchanged` certificates (configured as before; see
    /// [`crate::config::unchanged_certificates`]) are kept as they are in memory, where every change was
    /// saved first: a reload that adds one certificate to a thousand reads one record.
    pub(super) fn load_records(&mut self, at_start: bool, unchanged: &BTreeSet<String>) {
        let core = self.core.clone();
        let mut records = BTreeMap::new();
        let mut held = BTreeMap::new();
        for cert in &core.config.certificates {
            if self.in_flight.contains_key(&cert.id) || unchanged.contains(&cert.id) {
                if let Some(record) = self.records.remove(&cert.id) {
                    records.insert(cert.id.clone(), record);
                    continue;
                }
                if self.in_flight.contains_key(&cert.id) {
                    continue;
                }
            }
            let live = super::install::live_paths(cert);
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
            match core.recover_and_load(cert) {
                Ok(record) => {
                    if at_start {
                        self.remove_orphan_keys(&cert.id, &record);
                    }
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
        self.find_removed();
    }

    /// Runs until `commands` closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let (Some(mut steps), Some(mut released)) = (self.steps_rx.take(), self.released_rx.take())
        else {
            log::error!("the renewal engine was started twice");
            return;
        };
        let mut inboxes = crate::watcher::Watcher::new();
        let mut pace = Pace::default();
        // When the loop next wakes by itself, and whether the last turn was a scrape's `Ping`
        // alone: such a turn only says the engine answers; the rest waits for that wake.
        let mut deadline = tokio::time::Instant::now();
        let mut ping_only = false;
        loop {
            self.core.metrics.observe_engine_turn(crate::now_unix());
            if !std::mem::take(&mut ping_only) {
                let sleep = self.turn(&mut inboxes, &mut pace).await;
                deadline = tokio::time::Instant::now() + sleep.max(Duration::from_millis(200));
            }
            if self
                .wait(
                    &mut commands,
                    &mut steps,
                    &mut released,
                    &mut inboxes,
                    deadline,
                    &mut ping_only,
                )
                .await
            {
                return;
            }
        }
    }

    /// One turn: takes what the inboxes hold, starts the steps that are due, publishes the
    /// view and answers deferred commands (paced by `pace` during a burst); returns how long
    /// the loop may sleep before the next turn it must take by itself.
    async fn turn(&mut self, inboxes: &mut crate::watcher::Watcher, pace: &mut Pace) -> Duration {
        // Inboxes are looked at when something may be there, not at every turn: with a
        // thousand certificates every turn would be a thousand folder reads.
        if self.inbox_watch_stale {
            self.watch_inboxes(inboxes).await;
            self.inbox_watch_stale = false;
        }
        // Without a watch, every turn looks, as nothing else would notice a new file.
        self.inbox_all |= inboxes.folders() == 0;
        let settling = if self.inbox_all || !self.inbox_ids.is_empty() {
            self.take_inboxes().await
        } else {
            None
        };
        let now = crate::now_unix();
        self.start_steps(now);
        let was_burst = pace.burst;
        pace.burst = !self.in_flight.is_empty();
        if was_burst && !pace.burst {
            // A burst's passing allocations (a thousand steps) are free now.
            crate::allocator::give_back();
        }
        let publish_in = if pace.fresh(pace.published) {
            pace.published
                .map(|at| BURST_PASS.saturating_sub(at.elapsed()))
        } else {
            self.publish(now);
            pace.published = Some(std::time::Instant::now());
            None
        };
        self.answer_deferred().await;
        let wake = match pace.wake_known {
            Some((at, wake)) if pace.fresh(Some(at)) => wake,
            _ => {
                let wake = self.next_wake(now);
                pace.wake_known = Some((std::time::Instant::now(), wake));
                wake
            }
        };
        let mut sleep = wake.map_or(Duration::from_secs(3_600), |at| {
            Duration::from_secs(u64::try_from(at - now).unwrap_or(0))
        });
        if let Some(soon) = publish_in {
            sleep = sleep.min(soon);
        }
        if let Some(until) = self.deferred.iter().map(|d| d.until).min() {
            sleep = sleep.min(until.saturating_duration_since(std::time::Instant::now()));
        }
        if let Some(soon) = settling {
            sleep = sleep.min(soon);
        }
        sleep
    }

    /// Waits for the next event (a command, a step done, calls returned, an inbox change) or
    /// `deadline`, and takes it. True when the command channel is closed (the daemon stops).
    /// A `Ping` sets `ping_only` and is all the turn does.
    async fn wait(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        steps: &mut mpsc::UnboundedReceiver<StepDone>,
        released: &mut mpsc::UnboundedReceiver<String>,
        inboxes: &mut crate::watcher::Watcher,
        deadline: tokio::time::Instant,
        ping_only: &mut bool,
    ) -> bool {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Ping) => *ping_only = true,
                Some(command) => self.command(command).await,
                None => return true,
            },
            Some(done) = steps.recv() => {
                self.step_done(done);
                // Under a mass renewal many steps end together: take them all before the
                // view is made again, which costs a pass over every certificate.
                while let Ok(done) = steps.try_recv() {
                    self.step_done(done);
                }
                while let Ok(id) = released.try_recv() {
                    self.calls_returned(&id);
                }
            }
            Some(id) = released.recv() => {
                self.calls_returned(&id);
                while let Ok(id) = released.try_recv() {
                    self.calls_returned(&id);
                }
            }
            _ = inboxes.changed() => {
                self.inbox_all = true;
                // The quiet rule (see `inbox`) decides when a file is taken; more events
                // of the same copy need no separate turn.
                inboxes.drain_for(Duration::from_millis(50)).await;
            }
            _ = tokio::time::sleep_until(deadline) => {
                // A timed wake also looks at every inbox, in case a change went unseen
                // (inotify's queue overflowed, or no watch could be set).
                self.inbox_all = true;
            }
        }
        false
    }

    /// Carries out each deferred command whose certificate is no longer in flight, and
    /// refuses the ones that waited [`DEFER_COMMAND`].
    async fn answer_deferred(&mut self) {
        let now = std::time::Instant::now();
        for deferred in std::mem::take(&mut self.deferred) {
            if !self.in_flight.contains_key(&deferred.id) {
                self.carry_out(deferred.command).await;
            } else if deferred.until <= now {
                let busy = self.busy(&deferred.id).map(|()| String::new());
                deferred.command.refuse(busy);
            } else {
                self.deferred.push(deferred);
            }
        }
    }

    /// The earliest moment a certificate that is not in flight wants its next step.
    fn next_wake(&self, now: i64) -> Option<i64> {
        let retry_unsaved =
            (!self.unsaved.is_empty()).then(|| now + self.core.retry_initial_secs());
        self.core
            .config
            .certificates
            .iter()
            .filter(|c| self.startable(c))
            .filter_map(|c| self.next_at.get(&c.id).copied().unwrap_or(Some(now)))
            .chain(retry_unsaved)
            .min()
    }

    /// Whether `cert` may be started (its time aside).
    fn startable(&self, cert: &crate::config::ManagedCertificate) -> bool {
        let id = cert.id.as_str();
        !self.in_flight.contains_key(id)
            && !self.held.contains_key(id)
            && !self.paused.contains(id)
            && self.core.plugins.get(&cert.plugin).is_some()
    }

    /// Starts a step task for every certificate whose time has come, at most
    /// [`super::STEPS_PER_PLUGIN`] per plugin in flight at once.
    fn start_steps(&mut self, now: i64) {
        let core = self.core.clone();
        let mut per_plugin: BTreeMap<&str, usize> = BTreeMap::new();
        for id in self.in_flight.keys() {
            if let Some(cert) = core.cert(id) {
                *per_plugin.entry(cert.plugin.as_str()).or_default() += 1;
            }
        }
        let mut full = per_plugin
            .values()
            .filter(|&&running| running >= super::STEPS_PER_PLUGIN)
            .count();
        let certs = &core.config.certificates;
        let first = if self.start_from < certs.len() {
            self.start_from
        } else {
            0
        };
        // Round from where the last start left off. The cheapest test first: during a burst
        // most certificates are done for now, and once every plugin's steps are taken the
        // rest need not be looked at.
        let numbered = certs.iter().enumerate();
        for (i, cert) in numbered.clone().skip(first).chain(numbered.take(first)) {
            if full >= core.plugins_used {
                break;
            }
            let due = self.next_at.get(&cert.id).copied().unwrap_or(Some(now));
            if due.is_none_or(|at| at > now) {
                continue;
            }
            let running = per_plugin.entry(cert.plugin.as_str()).or_default();
            if *running >= super::STEPS_PER_PLUGIN || !self.startable(cert) {
                continue;
            }
            let Some(plugin) = core.plugins.get(&cert.plugin).cloned() else {
                continue;
            };
            // The task takes a copy; the view shows the record as it was until the task
            // hands the new one back.
            let record = self.records.get(&cert.id).cloned().unwrap_or_default();
            // Write-ahead: no step starts from a record that is not on disk.
            if self.unsaved.contains(&cert.id) {
                if let Err(e) = core.store.save_state(&cert.id, &record) {
                    log::error!(cert_id = cert.id.as_str(); "the renewal state still cannot be saved: {e}");
                    self.next_at
                        .insert(cert.id.clone(), Some(now + core.retry_initial_secs()));
                    continue;
                }
                log::info!(cert_id = cert.id.as_str(); "the renewal state is saved again");
                self.unsaved.remove(&cert.id);
            }
            *running += 1;
            if *running == super::STEPS_PER_PLUGIN {
                full += 1;
            }
            self.start_from = i + 1;
            let step = record
                .run
                .as_ref()
                .map_or("due", |r| super::next_step_name(r.phase));
            self.in_flight.insert(
                cert.id.clone(),
                InFlight {
                    step,
                    since: now,
                    record_back: false,
                    released: false,
                },
            );
            let token = Arc::new(CallToken {
                id: cert.id.clone(),
                released: self.released.clone(),
            });
            let check_settings = !self.settings_checked.contains(&cert.id);
            let (core, cert, done) = (core.clone(), cert.clone(), self.steps_done.clone());
            tokio::spawn(async move {
                let finished = core
                    .advance(&cert, &plugin, record, &token, check_settings)
                    .await;
                let _ = done.send(finished);
                drop(token);
            });
        }
    }

    /// A step task handed its record back.
    fn step_done(&mut self, done: StepDone) {
        let id = done.id;
        let configured = self.core.cert(&id).is_some();
        if let Some(flight) = self.in_flight.get_mut(&id) {
            flight.record_back = true;
            if flight.released {
                self.in_flight.remove(&id);
            }
        }
        if !configured {
            // Removed from the configuration while it ran: its record is on disk (or not) as
            // the step left it, and is read again if it comes back.
            return;
        }
        match done.settings {
            Some(Ok(())) => {
                self.settings_checked.insert(id.clone());
            }
            Some(Err(why)) => {
                self.held.insert(id.clone(), why);
            }
            None => {}
        }
        if done.unsaved {
            self.unsaved.insert(id.clone());
        }
        if done.paused {
            self.paused.insert(id.clone());
        }
        if let Some(seen) = done.seen {
            self.seen.insert(id.clone(), seen);
        }
        let mut record = done.record;
        // `None`: at once (see `Engine::next_at`).
        let mut next_at = Some(done.next_at);
        if self.nudged.remove(&id) {
            // `certvakt renew` while the step ran: no wait before the next one. The record
            // changed, so it is saved before that step starts.
            if let Some(run) = record.run.as_mut() {
                run.wait_until = None;
            }
            record.retry_at = None;
            self.unsaved.insert(id.clone());
            next_at = None;
        }
        match next_at {
            Some(at) => self.next_at.insert(id.clone(), at),
            None => self.next_at.remove(&id),
        };
        self.records.insert(id, record);
    }

    /// Every plugin call of `id`'s steps has returned.
    fn calls_returned(&mut self, id: &str) {
        if let Some(flight) = self.in_flight.get_mut(id) {
            flight.released = true;
            if flight.record_back {
                self.in_flight.remove(id);
            }
        }
    }

    /// Why `id` cannot be changed by a command now, if it cannot.
    pub(super) fn busy(&self, id: &str) -> Result<(), EngineError> {
        match self.in_flight.get(id) {
            None => Ok(()),
            Some(flight) => {
                let secs = (crate::now_unix() - flight.since).max(0);
                let what = if flight.record_back {
                    "is waiting for a plugin call that overran its deadline to return"
                } else {
                    "is in the middle of a step"
                };
                Err(EngineError::Busy(format!(
                    "{id} {what} (step {}, for {}); try again when it is done (`certvakt show {id}`)",
                    flight.step,
                    crate::human_time::format_span(secs.unsigned_abs())
                )))
            }
        }
    }

    /// Keeps `record` for `id` after a command changed it: saved, or — when it cannot be —
    /// the record as it was before, and an error. So what a command answered is on disk.
    pub(super) fn keep(
        &mut self,
        id: &str,
        record: Record,
        before: Record,
    ) -> Result<(), EngineError> {
        match self.core.store.save_state(id, &record) {
            Ok(()) => {
                self.unsaved.remove(id);
                self.records.insert(id.to_owned(), record);
                self.next_at.remove(id);
                Ok(())
            }
            Err(e) => {
                log::error!(cert_id = id; "cannot save the renewal state: {e}");
                self.core.metrics.observe_renewal_failure(id, "save_state");
                self.records.insert(id.to_owned(), before);
                Err(EngineError::Other(format!(
                    "nothing was changed: the renewal state of {id} cannot be saved ({e}); fix that first (see the journal)"
                )))
            }
        }
    }

    /// Applies a reloaded configuration: a new core; the records read again, their plugin
    /// settings checked again and the certificates looked at now — except those in flight,
    /// and those configured exactly as before (see [`crate::config::unchanged_certificates`]) that are
    /// not failing: they keep their record, their checked settings and their next moment.
    /// Every failing certificate is tried again now: a new configuration may have fixed it.
    pub(super) fn reconfigure(&mut self, config: Arc<Config>) {
        let mut unchanged = crate::config::unchanged_certificates(&self.core.config, &config);
        // A record whose save failed is newer in memory than on disk: it is read again, as
        // every record was before, so memory and disk agree once `unsaved` is cleared below.
        unchanged.retain(|id| !self.unsaved.contains(id));
        self.edit_core(|core| {
            core.by_id = super::index_ids(&config);
            core.plugins_used = super::plugins_used(&config, &core.plugins);
            core.settings_answers = Arc::new(SettingsAnswers::for_engine());
            core.config = config;
        });
        self.load_records(false, &unchanged);
        self.inbox_watch_stale = true;
        self.inbox_all = true;
        self.unsaved.clear();
        let mut settled = BTreeSet::new();
        for (id, record) in &mut self.records {
            let failing = record.retry_at.is_some() || record.failures > 0;
            if unchanged.contains(id) && !failing {
                settled.insert(id.clone());
            }
            record.retry_at = None;
        }
        self.settings_checked.retain(|id| settled.contains(id));
        self.next_at.retain(|id, _| settled.contains(id));
    }

    /// Replaces the view readers see. Reads no file.
    pub(super) fn publish(&self, now: i64) {
        let core = &self.core;
        let none = Record::default();
        let certificates = core
            .config
            .certificates
            .iter()
            .map(|cert| {
                // Read in place: a record holds PEM and CSR text that the view does not need.
                let record = self.records.get(&cert.id).unwrap_or(&none);
                let seen = self.seen.get(&cert.id);
                let mut suggested_window = None;
                let next_at = match (&record.run, record.retry_at) {
                    (_, Some(retry)) => Some(retry),
                    (Some(run), None) => Some(run.wait_until.unwrap_or(now)),
                    (None, None) => match seen {
                        Some(seen) => {
                            suggested_window = seen.window;
                            seen.due
                        }
                        // Not looked at yet: it is, now.
                        None => Some(now),
                    }
                    .map(|due| core.outside_quiet_hours(due.max(now))),
                };
                let held = self.held.get(&cert.id);
                let unsaved = self.unsaved.contains(&cert.id).then(|| {
                    "the renewal state cannot be saved (see the journal); no further step until it can"
                        .to_owned()
                });
                CertRenewal {
                    id: cert.id.clone(),
                    plugin: cert.plugin.clone(),
                    plugin_loaded: core.plugins.get(&cert.plugin).is_some(),
                    phase: record.run.as_ref().map(|r| r.phase),
                    next_at,
                    failures: record
                        .failures
                        .max(u32::from(held.is_some() || unsaved.is_some())),
                    last_error: held.cloned().or(unsaved).or(record.last_error.clone()),
                    last_success: record.last_success,
                    open_tasks: record.open_tasks().cloned().collect(),
                    suggested_window,
                    notes: record.run.as_ref().map_or_else(
                        || {
                            let mut notes = record.last_notes.clone();
                            if let Some(c) = &record.cancelled {
                                notes.push(format!(
                                    "the last renewal was cancelled by the operator at {}; no run starts by itself until `certvakt renew {}`",
                                    crate::human_time::format_time(c.at),
                                    cert.id
                                ));
                            }
                            notes
                        },
                        |r| r.notes.clone(),
                    ),
                    next_key: record.next_key.clone(),
                }
            })
            .collect();
        let view = EngineView {
            certificates,
            removed: self.removed.clone(),
        };
        core.metrics.observe_renewals(
            view.certificates
                .iter()
                .map(|c| crate::metrics::RenewalSeries {
                    id: c.id.clone(),
                    step: c.phase.map(Phase::as_str),
                    next_at: c.next_at,
                    consecutive_failures: c.failures,
                    last_success: c.last_success,
                    tasks_pending: c.open_tasks.len(),
                    tasks: c
                        .open_tasks
                        .iter()
                        .map(|t| crate::metrics::TaskSeries {
                            id: t.id.clone(),
                            step: t.phase.as_str(),
                            completes_by: match t.completes_by {
                                certvakt_plugin_api::Completion::Import => "import",
                                certvakt_plugin_api::Completion::Confirm => "confirm",
                                certvakt_plugin_api::Completion::Poll => "poll",
                            },
                            opened_at: t.opened_at,
                        })
                        .collect(),
                })
                .collect(),
        );
        match self.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
        if let Some(published) = &self.published {
            published.notify_one();
        }
    }

    /// Whether the crash-test hook stops `record` here; says so in the journal once.
    pub(super) fn pause_if_reached(&mut self, id: &str) {
        let reached = self
            .records
            .get(id)
            .is_some_and(|record| self.core.pause_reached(record));
        if reached && self.paused.insert(id.to_owned()) {
            self.publish(crate::now_unix());
            self.core.say_paused();
        }
    }
}

impl Core {
    pub(super) fn pause_reached(&self, record: &Record) -> bool {
        self.pause_after.is_some() && record.run.as_ref().map(|r| r.phase) == self.pause_after
    }

    pub(super) fn say_paused(&self) {
        log::warn!(
            "paused after step {} ({})",
            self.pause_after.map_or("", Phase::as_str),
            super::PAUSE_ENV
        );
    }

    pub(super) fn retry_initial_secs(&self) -> i64 {
        i64::try_from(self.config.daemon.retry_initial.as_secs().max(1)).unwrap_or(60)
    }

    pub(super) fn cert(&self, id: &str) -> Option<&crate::config::ManagedCertificate> {
        self.by_id
            .get(id)
            .and_then(|&i| self.config.certificates.get(i))
    }
}

/// While steps are in flight a turn comes with every step that ends, and the view and the
/// next wake are each a pass over every certificate: with a thousand certificates due
/// together (a start, a reload adding them) that was most of the daemon's time. So during
/// such a burst they are made again at most every `BURST_PASS`; when nothing is in flight, at
/// every turn.
#[derive(Debug, Default)]
struct Pace {
    /// Steps were in flight at the last turn.
    burst: bool,
    /// When the view was last published.
    published: Option<std::time::Instant>,
    /// When the next wake was last worked out, and what it was.
    wake_known: Option<(std::time::Instant, Option<i64>)>,
}

impl Pace {
    /// Whether something made at `at` is still good: during a burst, for `BURST_PASS`.
    fn fresh(&self, at: Option<std::time::Instant>) -> bool {
        self.burst && at.is_some_and(|at| at.elapsed() < BURST_PASS)
    }
}

/// The step the crash-test hook stops after: read from [`super::PAUSE_ENV`] only in a build
/// with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
fn pause_hook() -> Option<Phase> {
    let phase = std::env::var(super::PAUSE_ENV)
        .ok()
        .and_then(|v| Phase::ALL.into_iter().find(|p| p.as_str() == v));
    if let Some(phase) = phase {
        log::warn!(
            "{} is set: the renewal engine stops after step {} (a test hook)",
            super::PAUSE_ENV,
            phase.as_str()
        );
    }
    phase
}

#[cfg(not(feature = "test-hooks"))]
fn pause_hook() -> Option<Phase> {
    None
}

/// How long a plugin call may take: [`super::PLUGIN_DEADLINE`], or, in a build with the
/// `test-hooks` feature, [`super::DEADLINE_ENV`] milliseconds (so a test can overrun it).
#[cfg(feature = "test-hooks")]
fn plugin_deadline() -> Duration {
    std::env::var(super::DEADLINE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(super::PLUGIN_DEADLINE, Duration::from_millis)
}

#[cfg(not(feature = "test-hooks"))]
fn plugin_deadline() -> Duration {
    super::PLUGIN_DEADLINE
}
