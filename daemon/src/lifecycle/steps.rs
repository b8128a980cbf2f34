//! The state machine: one step of one certificate, taken by the certificate's step task with
//! the record it holds, and what a step failing means.
//!
//! Contract:
//! - [`Core::advance`] takes as many steps as are ready (at most [`super::STEPS_PER_TURN`]),
//!   saves the record after every step that changed it, and stops at the first wait, failure,
//!   or save that did not reach the disk; it hands the record back in a [`StepDone`].
//! - A step is idempotent: after a crash it is taken again from the saved record.
//! - Every task a plugin opened through the host during a call is filed, under the id the host
//!   gave the plugin, whatever the step's outcome (done, pending, or an error).
//! - A failure backs off (temporary: exponentially from `retry_initial`; permanent or
//!   configuration: `retry_max`); one that needs a person opens a task.

use std::sync::Arc;

use certvakt_plugin_api::TaskSpec;
use certvakt_plugin_api::messages::{
    CertificateContext, CheckIssued, IssueOutcome, OrderContext, StepContext, StepOutcome,
};
use serde_json::Value;

use super::cert_services::{CertServices, KeyFiles, TaskIds};
use super::deploy_check::DeployCheck;
use super::engine::{Seen, StepDone};
use super::tasks::{Certificates, close_tasks};
use super::{
    CallToken, CertFacts, Core, EngineError, Phase, Progress, Reason, Record, Run, Suggestion, fnv,
    next_step_name,
};
use crate::config::{KeyPolicy, ManagedCertificate};
use crate::plugin_host::{BasicServices, LoadedPlugin, settings_check};

/// How often to ask about a renewal window when the plugin does not say (and the longest
/// wait it may ask for): the authority may move a window ahead of a mass revocation.
const WINDOW_RECHECK_SECS: u64 = 6 * 3_600;
/// The shortest wait between two questions about a renewal window.
const WINDOW_MIN_RECHECK_SECS: u64 = 60;
/// How long to wait after a failure to ask about a renewal window.
const WINDOW_RETRY_SECS: u64 = 3_600;

impl Core {
    /// Finishes an install a crash interrupted and loads the certificate's record.
    pub(super) fn recover_and_load(
        &self,
        cert: &ManagedCertificate,
    ) -> Result<Record, EngineError> {
        let live = super::install::live_paths(cert);
        // An interrupted install is finished with the owner and paths it recorded, so it
        // does not wait for this configuration's owner/group to resolve.
        let own = super::install::ownership(cert).unwrap_or_default();
        if let Some(done) = self.store.recover(&cert.id, &live, &own)? {
            log::warn!(cert_id = cert.id.as_str(), version = done.0; "finished an install that a crash had interrupted");
        }
        super::install::ownership(cert)?;
        Ok(self
            .store
            .load_state::<Record>(&cert.id)?
            .unwrap_or_default())
    }

    /// Takes the steps of `cert` that are ready; see the module contract.
    pub(super) async fn advance(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
        mut record: Record,
        token: &Arc<CallToken>,
        check_settings: bool,
    ) -> StepDone {
        let mut done = StepDone {
            id: cert.id.clone(),
            record: Record::default(),
            next_at: None,
            seen: None,
            unsaved: false,
            paused: false,
            settings: None,
        };
        if check_settings {
            let verdict = self.check_settings(cert, plugin, token).await;
            let refused = verdict.is_err();
            done.settings = Some(verdict);
            if refused {
                done.record = record;
                return done;
            }
        }
        for _ in 0..super::STEPS_PER_TURN {
            let now = crate::now_unix();
            if let Some(retry) = record.retry_at.filter(|t| *t > now) {
                done.next_at = Some(retry);
                break;
            }
            let before = record.clone();
            let services = match self.services(cert, &plugin.name, &record, token) {
                Ok(services) => services,
                Err(error) => {
                    self.failed(cert, &mut record, &error);
                    done.next_at = record.retry_at;
                    done.unsaved = !self.save(&cert.id, &record).await;
                    break;
                }
            };
            let result = self
                .step(cert, plugin, &mut record, &services, &mut done.seen, now)
                .await;
            // Tasks the plugin opened and the step did not file (it failed): filed anyway.
            let phase = task_phase(&record);
            self.file_opened(cert, &mut record, phase, services.take_tasks(), now);
            let wait = match result {
                Ok(Progress::Advanced) => {
                    record.failures = 0;
                    record.retry_at = None;
                    record.last_error = None;
                    None
                }
                Ok(Progress::Wait(until)) => Some(until),
                Err(error) => {
                    self.failed(cert, &mut record, &error);
                    Some(record.retry_at)
                }
            };
            if record != before
                && !nothing_suggested_alone(&before, &record)
                && !self.save(&cert.id, &record).await
            {
                done.unsaved = true;
                done.next_at = Some(crate::now_unix() + self.retry_initial_secs());
                break;
            }
            if self.pause_reached(&record) {
                self.say_paused();
                done.paused = true;
                break;
            }
            if let Some(until) = wait {
                done.next_at = until;
                break;
            }
        }
        done.record = record;
        done
    }

    /// Asks the plugin whether it accepts the certificate's `[certificate.settings]` and its
    /// `key_policy`; a refusal is logged (every problem) and becomes the reason the certificate
    /// is held back, until a reload brings a configuration the plugin accepts. A check that cannot be made is logged and
    /// does not hold the certificate back (the steps then say what is wrong).
    async fn check_settings(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
        token: &Arc<CallToken>,
    ) -> Result<(), String> {
        let services = Arc::new(
            BasicServices::new(plugin.name.clone(), cert.id.clone(), std::env::temp_dir())
                .with_token(token.clone()),
        );
        let answers = &self.settings_answers;
        match answers
            .validate(plugin, cert, services.clone(), self.deadline)
            .await
        {
            Ok(found) => settings_check::refusal(cert, &found).map_or(Ok(()), Err)?,
            Err(e) => {
                log::warn!(cert_id = cert.id.as_str(); "settings could not be checked: {e}");
            }
        }
        // A key policy the plugin's authority cannot honour (its CA makes the keys) holds the
        // certificate back like refused settings.
        match answers
            .key_policy_refusal(plugin, cert, services, self.deadline)
            .await
        {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Saves the record; says whether it is on disk. The caller stops acting for this
    /// certificate when it is not: acting on what is not written ahead would be lost at a crash.
    /// The write (with its fsyncs) runs on the blocking pool, off the runtime thread that
    /// answers the control socket.
    pub(super) async fn save(&self, id: &str, record: &Record) -> bool {
        let (store, key, copy) = (self.store.clone(), id.to_owned(), record.clone());
        let saved = super::blocking(move || store.save_state(&key, &copy))
            .await
            .and_then(|r| r.map_err(EngineError::from));
        match saved {
            Ok(()) => true,
            Err(e) => {
                log::error!(cert_id = id; "cannot save the renewal state (no further step until it can): {e}");
                self.metrics.observe_renewal_failure(id, "save_state");
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
        services: &Arc<CertServices>,
        seen: &mut Option<Seen>,
        now: i64,
    ) -> Result<Progress, EngineError> {
        let current = match super::install::read_live(cert).await {
            Ok(current) => current,
            Err(e) => {
                *seen = Some(Seen::default());
                return Err(e);
            }
        };
        if record.run.is_none() {
            if cert.renewal.key_policy == KeyPolicy::Prestage || record.next_key.is_some() {
                self.keep_next_key(cert, record).await;
            }
            let mut check_at = None;
            let serial = current.as_ref().map(|f| f.serial.as_str());
            if super::cancel::held_by_cancel(record, serial) {
                // Cancelled by the operator: nothing starts by itself until `renew`.
                *seen = Some(Seen::default());
                return Ok(Progress::Wait(None));
            }
            let (due, reason) = match &current {
                Some(facts) => {
                    self.ask_renewal_window(cert, plugin, record, facts, services, now)
                        .await;
                    check_at = record.suggested.as_ref().map(|s| s.check_at);
                    due_at(cert, record, facts)
                }
                None => (now, Reason::FirstIssue),
            };
            *seen = Some(Seen {
                due: Some(due),
                window: current
                    .as_ref()
                    .and_then(|f| record.suggested_window(&f.serial)),
            });
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
                self.make_key_and_csr(cert, plugin, run, current.as_ref(), services)
                    .await?;
                run.set_phase(Phase::KeyGenerated, now);
            }
            Phase::KeyGenerated | Phase::Ordered => {
                let order = OrderContext {
                    csr_set: run.csr_set.clone(),
                    certificate: self.context(cert, run.old.as_ref()),
                    csr_pem: run.csr_pem.clone().unwrap_or_default(),
                    state: run.plugin_state.clone(),
                };
                let outcome = if run.phase == Phase::KeyGenerated {
                    plugin.issue(order, services.clone(), self.deadline).await?
                } else {
                    plugin.poll(order, services.clone(), self.deadline).await?
                };
                let opened = services.take_tasks();
                match outcome {
                    IssueOutcome::IssuedSet { chain_pem, set } => {
                        if cert.roles().is_empty() {
                            return Err(EngineError::Other(format!(
                                "plugin {} answered with a certificate set, but `{}` is configured as a single certificate",
                                cert.plugin, cert.id
                            )));
                        }
                        let delivered = std::iter::once(chain_pem)
                            .chain(set.into_values())
                            .map(|chain| super::import::Imported {
                                chain_pem: chain.into_bytes(),
                                key: None,
                            })
                            .collect();
                        self.accept_issued_now(cert, run, delivered).await?;
                        close_tasks(record, Phase::Ordered, now);
                        self.file_opened(cert, record, Phase::Ordered, opened, now);
                    }
                    IssueOutcome::Issued { chain_pem } => {
                        let delivered = super::import::Imported {
                            chain_pem: chain_pem.into_bytes(),
                            key: None,
                        };
                        self.accept_issued_now(cert, run, vec![delivered]).await?;
                        close_tasks(record, Phase::Ordered, now);
                        self.file_opened(cert, record, Phase::Ordered, opened, now);
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
                        run.set_phase(Phase::Ordered, now);
                        self.file_opened(cert, record, Phase::Ordered, opened, now);
                        return self.wait_for_plugin(
                            cert,
                            record,
                            Phase::Ordered,
                            poll_after_secs,
                            task,
                            now,
                        );
                    }
                }
            }
            Phase::Issued | Phase::Installed => {
                let registering = run.phase == Phase::Issued;
                if registering
                    && !run.plugin_checked
                    && !self
                        .plugin_check(cert, plugin, record, services, now)
                        .await?
                {
                    return Ok(Progress::Wait(None));
                }
                let verify_deploy = !registering
                    && cert.renewal.verify_deploy().is_some()
                    && record.run.as_ref().is_some_and(|r| !r.deploy_verified);
                if verify_deploy {
                    match self.check_deploy(cert, record).await? {
                        DeployCheck::Again(at) => return Ok(Progress::Wait(Some(at))),
                        DeployCheck::Served => {
                            if let Some(run) = record.run.as_mut() {
                                run.deploy_verified = true;
                            }
                        }
                    }
                }
                let Some(run) = record.run.as_mut() else {
                    return Ok(Progress::Wait(None));
                };
                let step = self.step_context(cert, run);
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
                        run.set_phase(next, now);
                        close_tasks(record, next, now);
                        self.file_opened(cert, record, next, opened, now);
                    }
                    StepOutcome::Pending {
                        poll_after_secs,
                        task,
                        state,
                    } => {
                        run.plugin_state = state;
                        self.file_opened(cert, record, next, opened, now);
                        return self.wait_for_plugin(
                            cert,
                            record,
                            next,
                            poll_after_secs,
                            task,
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
                run.set_phase(Phase::Installed, now);
            }
            Phase::Verified => {
                let overlap = i64::try_from(cert.renewal.overlap.as_secs()).unwrap_or(i64::MAX / 4);
                let retire_at = run.phase_at.saturating_add(overlap);
                if retire_at > now {
                    run.wait_until = Some(retire_at);
                    return Ok(Progress::Wait(Some(retire_at)));
                }
                if run.old.is_some() {
                    let step = self.step_context(cert, run);
                    let outcome = plugin.retire(step, services.clone(), self.deadline).await?;
                    let opened = services.take_tasks();
                    if let StepOutcome::Pending {
                        poll_after_secs,
                        task,
                        state,
                    } = outcome
                    {
                        run.plugin_state = state;
                        self.file_opened(cert, record, Phase::Retired, opened, now);
                        return self.wait_for_plugin(
                            cert,
                            record,
                            Phase::Retired,
                            poll_after_secs,
                            task,
                            now,
                        );
                    }
                    close_tasks(record, Phase::Retired, now);
                    self.file_opened(cert, record, Phase::Retired, opened, now);
                } else {
                    close_tasks(record, Phase::Retired, now);
                }
                // Saved as retired before `finish` (which removes the pending key), so a crash
                // in between does not retire the old certificate twice.
                if let Some(run) = record.run.as_mut() {
                    run.set_phase(Phase::Retired, now);
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
        services: &Arc<CertServices>,
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
        let context = self.context(cert, Some(facts));
        let answer = plugin
            .renewal_window(context, services.clone(), self.deadline)
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
            new_set: run.new_set.clone(),
            certificate: self.run_context(cert, run),
            new: run.new.clone(),
            state: run.plugin_state.clone(),
        }
    }

    /// The certificate as a run sees it: what it replaces, with a set's other roles.
    fn run_context(&self, cert: &ManagedCertificate, run: &Run) -> CertificateContext {
        CertificateContext {
            current_set: run.old_set.clone(),
            ..self.context(cert, run.old.as_ref())
        }
    }

    /// Before registration: the plugin looks at the staged certificate (or set) and may
    /// object. An objection sends the run back to waiting for a certificate, with a task that
    /// says what was wrong; the refused version is never installed.
    async fn plugin_check(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
        record: &mut Record,
        services: &Arc<CertServices>,
        now: i64,
    ) -> Result<bool, EngineError> {
        let Some(run) = record.run.as_mut() else {
            return Ok(false);
        };
        if run.plugin_checked {
            return Ok(true);
        }
        let Some(new) = run.new.clone() else {
            return Ok(true);
        };
        let check = CheckIssued {
            certificate: self.run_context(cert, run),
            new,
            new_set: run.new_set.clone(),
            key_from_ca: run.csr_pem.is_none(),
        };
        let objections = plugin
            .check_issued(check, services.clone(), self.deadline)
            .await?;
        let _ = services.take_tasks();
        if objections.is_empty() {
            run.plugin_checked = true;
            return Ok(true);
        }
        let serial = run
            .new
            .as_ref()
            .map(|n| n.serial.clone())
            .unwrap_or_default();
        let refused = run.version.take();
        run.new = None;
        run.new_set.clear();
        run.chain_pem = None;
        run.notes.clear();
        run.set_phase(Phase::Ordered, now);
        let message = format!(
            "the {} plugin refused certificate {serial} of {} before registration: {}",
            cert.plugin,
            cert.id,
            objections.join("; ")
        );
        log::error!(cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(), serial = serial.as_str(), version = refused.map_or(0, |v| v.0); "{message}; it stays staged but is never installed");
        let spec = TaskSpec {
            title: format!(
                "Get a certificate for {} that the {} plugin accepts",
                cert.id, cert.plugin
            ),
            instructions: format!(
                "certvakt staged the certificate you imported (serial {serial}), but the {} plugin found it unfit for the authority, so it was not registered or installed:\n\n{}\n\nOrder a certificate that fits (the plugin's earlier task says what to order), then import it: certvakt import {} FILE… --password-file FILE",
                cert.plugin,
                objections
                    .iter()
                    .map(|o| format!("- {o}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                cert.id
            ),
            files: Vec::new(),
            completes_by: certvakt_plugin_api::Completion::Import,
        };
        record.last_error = Some(message);
        let files = Certificates::of(record);
        self.open_task(cert, record, Phase::Ordered, spec, None, files, now)?;
        Ok(false)
    }

    /// Files the tasks a plugin opened through the host during a call that answered, under
    /// `phase` and the ids the host gave it.
    fn file_opened(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        phase: Phase,
        opened: Vec<(String, TaskSpec)>,
        now: i64,
    ) {
        for (id, spec) in opened {
            let files = Certificates::of(record);
            if let Err(e) = self.open_task(cert, record, phase, spec, Some(id), files, now) {
                log::error!(cert_id = cert.id.as_str(); "cannot open the task: {e}");
            }
        }
    }

    /// A plugin answered "pending": wait as long as it asked, and file the task of its answer
    /// under `phase` (the step it leads to).
    fn wait_for_plugin(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        phase: Phase,
        poll_after_secs: u64,
        task: Option<TaskSpec>,
        now: i64,
    ) -> Result<Progress, EngineError> {
        // The plugin answered: whatever failed before is over, even if the step is not done.
        record.failures = 0;
        record.last_error = None;
        record.retry_at = None;
        let Some(run) = record.run.as_mut() else {
            return Ok(Progress::Wait(None));
        };
        let poll = i64::try_from(poll_after_secs.max(1)).unwrap_or(i64::MAX / 4);
        run.wait_until = Some(now.saturating_add(poll));
        if let Some(spec) = task {
            let files = Certificates::of(record);
            self.open_task(cert, record, phase, spec, None, files, now)?;
        }
        Ok(Progress::Wait(
            record.run.as_ref().and_then(|r| r.wait_until),
        ))
    }

    pub(super) fn start_run(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        reason: Reason,
        current: Option<CertFacts>,
        now: i64,
    ) {
        // A pending key is read only by the run that made it: one left by a cancel whose key
        // removal failed belongs to no run and must not become this run's key.
        if record.run.is_none() {
            match self.store.remove_pending_keys(&cert.id) {
                Ok(keys) if !keys.is_empty() => {
                    log::warn!(cert_id = cert.id.as_str(); "removed {} pending key(s) that no run refers to before starting a new run", keys.len());
                }
                Ok(_) => {}
                Err(e) => {
                    log::error!(cert_id = cert.id.as_str(); "cannot remove pending keys that no run refers to: {e}")
                }
            }
        }
        record.runs += 1;
        record.cancelled = None;
        record.run = Some(Box::new(Run::new(record.runs, reason, now, current)));
        record.tasks.retain(|t| t.closed_at.is_none());
        log::info!(cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(), reason = format!("{reason:?}").to_lowercase(); "renewal started (run {})", record.runs);
    }
    /// A step failed. Temporary trouble backs off exponentially from `retry_initial`; a
    /// permanent or configuration error waits `retry_max` (retrying sooner would only repeat
    /// it: fix the cause, then `certvakt renew ID`); an error that needs a person becomes a
    /// task, and the step is tried again when it is marked done.
    pub(super) fn failed(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        error: &EngineError,
    ) {
        record.failures += 1;
        let daemon = &self.config.daemon;
        let initial = daemon.retry_initial.as_secs().max(1);
        let max = daemon.retry_max.as_secs().max(initial);
        let wait = if error.waits_for_a_person() {
            max
        } else {
            crate::schedule::backoff(record.failures, initial, max, fnv(&cert.id))
        };
        let now = crate::now_unix();
        record.retry_at = Some(now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)));
        record.last_error = Some(error.to_string());
        let (step, phase) = record.run.as_ref().map_or(("due", Phase::Due), |r| {
            (
                error.step().unwrap_or_else(|| next_step_name(r.phase)),
                r.phase,
            )
        });
        log::error!(
            cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(), step = step, failures = record.failures;
            "renewal step {step} failed (retry in {}): {error}", crate::human_time::format_span(wait)
        );
        let task = error.task(cert, step);
        if let Some(spec) = task {
            let files = Certificates::default();
            if let Err(e) = self.open_task(cert, record, phase, spec, None, files, now) {
                log::error!(cert_id = cert.id.as_str(); "cannot open the task: {e}");
            }
        }
        self.metrics.observe_renewal_failure(&cert.id, step);
    }

    pub(super) fn finish(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        now: i64,
    ) -> Result<(), EngineError> {
        // The retention the replaced version's legacy files were kept for is over with the
        // run (the plugin's retire step decides when that is).
        self.store
            .remove_legacy(&cert.id, &super::install::live_paths(cert))?;
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
        // Keys of orders that a CA-made key replaced, and a set's further pending keys (each
        // now in the installed version), go with the run.
        if let Some(dir) = pending.parent() {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("pending-key.")
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        if let Some(run) = record.run.take() {
            let entry = super::HistoryEntry::of_run(
                &run,
                record,
                &cert.plugin,
                super::Outcome::Completed,
                now,
            );
            if let Err(e) = self.store.append_history(&cert.id, &entry) {
                log::error!(cert_id = cert.id.as_str(); "the run completed, but its history entry cannot be written: {e}");
            }
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

    /// The host services for the calls of one step of `plugin`: keys by role, tasks under the
    /// ids the engine will file them with, mail as the certificate's `plugin_mail` allows, and
    /// the token that keeps the certificate busy until the last call returns.
    pub(super) fn services(
        &self,
        cert: &ManagedCertificate,
        plugin: &str,
        record: &Record,
        token: &Arc<CallToken>,
    ) -> Result<Arc<CertServices>, EngineError> {
        let state_dir = self.store.plugin_state_dir(plugin)?.join(&cert.id);
        let previous = self
            .store
            .previous(&cert.id)?
            .and_then(|v| self.store.version_files(&cert.id, v).ok())
            .and_then(|p| p.key);
        let mut basic =
            BasicServices::new(plugin, cert.id.clone(), state_dir).with_token(token.clone());
        if let Some(http) = &self.http {
            basic = basic.with_http(http.clone());
        }
        if let Some(responder) = &self.http01 {
            basic = basic.with_http01(responder.clone());
        }
        let mut services = CertServices::new(
            basic,
            KeyFiles {
                pending: Some(self.store.pending_key_path(&cert.id)?),
                current: cert.key.clone(),
                previous,
                // `.keys`: a certificate id cannot start with a dot, so no certificate's state folder
                // can be this one.
                plugin_keys: Some(self.store.plugin_state_dir(plugin)?.join(".keys")),
            },
            TaskIds::for_record(&cert.id, record),
        )
        .with_settings(cert.renewal.settings.value());
        if let Some(mail_out) = &self.mail_out {
            services = services.with_mail(mail_out.clone(), cert.renewal.plugin_mail);
        }
        Ok(Arc::new(services))
    }

    pub(super) fn context(
        &self,
        cert: &ManagedCertificate,
        current: Option<&CertFacts>,
    ) -> CertificateContext {
        let settings = cert.renewal.settings.value();
        CertificateContext {
            roles: cert.roles(),
            current_set: Default::default(),
            role: None,
            certificate_id: cert.id.clone(),
            environment: settings
                .get("environment")
                .and_then(Value::as_str)
                .unwrap_or("production")
                .to_owned(),
            settings,
            current: current.cloned(),
        }
    }
    /// `t`, or the end of the quiet-hours window it falls in (local time of the system's
    /// time zone).
    pub(super) fn outside_quiet_hours(&self, t: i64) -> i64 {
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

/// The step a task opened now leads to: the phase it is filed under.
fn task_phase(record: &Record) -> Phase {
    match record.run.as_ref().map(|r| r.phase) {
        None => Phase::Due,
        Some(Phase::Due) => Phase::KeyGenerated,
        Some(Phase::KeyGenerated | Phase::Ordered) => Phase::Ordered,
        Some(Phase::Issued) => Phase::Registered,
        Some(Phase::Registered) => Phase::Installed,
        Some(Phase::Installed) => Phase::Verified,
        Some(Phase::Verified | Phase::Retired) => Phase::Retired,
    }
}

/// Whether the only change from `before` to `after` is an authority's answer that suggests
/// no renewal window: not written on its own (with a thousand certificates, a thousand
/// folders and files at every start of a new configuration), but with the next change. Lost
/// at a crash, it costs one question to the plugin after the restart.
fn nothing_suggested_alone(before: &Record, after: &Record) -> bool {
    after.suggested.as_ref().is_some_and(|s| s.window.is_none())
        && Record {
            suggested: before.suggested.clone(),
            ..after.clone()
        } == *before
}
