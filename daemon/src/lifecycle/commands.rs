//! What an operator asks of the engine: renew, import, task done, rollback, a new
//! configuration.
//!
//! Contract:
//! - Every command is answered promptly: none waits for a plugin call longer than
//!   [`super::engine::DEFER_COMMAND`]. A command for a certificate whose step is being taken
//!   waits for that step to end (most take milliseconds), then is carried out; if the step
//!   takes longer, the command is refused, saying why and when to try again. A `renew` of a run
//!   in progress is answered at once, and the next step follows the one being taken.
//! - An answer that says something was done is true on disk: the record is saved before the
//!   answer, and a command whose effect could not be saved answers an error and leaves the
//!   record as it was.
//! - A refused import leaves the record as it was: no run started for nothing.

use certvakt_plugin_api::Completion;

use super::install::read_live;
use super::tasks::close_tasks;
use super::{Command, Engine, EngineError, Phase, Reason, import};
use crate::config::ManagedCertificate;

impl Engine {
    /// Takes a command: a command for a certificate whose step is being taken waits for that
    /// step (see [`super::engine::Deferred`]); the rest are carried out now.
    pub(super) async fn command(&mut self, command: Command) {
        if let Some(id) = self.waits_for(&command) {
            self.deferred.push(super::engine::Deferred {
                id,
                command,
                until: std::time::Instant::now() + super::engine::DEFER_COMMAND,
            });
            return;
        }
        self.carry_out(command).await;
    }

    /// The certificate `command` must wait for, when its step is being taken. A `renew` of a
    /// run in progress never waits: it is answered at once and the next step follows the one
    /// being taken without its wait.
    fn waits_for(&self, command: &Command) -> Option<String> {
        let id = match command {
            Command::Renew { id, .. } => {
                let run_in_progress = self.records.get(id).is_some_and(|r| r.run.is_some());
                (!run_in_progress).then(|| id.clone())
            }
            Command::Import { id, .. } | Command::Rollback { id, .. } => Some(id.clone()),
            Command::TaskDone { task_id, .. } => self
                .records
                .iter()
                .find(|(_, r)| r.open_tasks().any(|t| &t.id == task_id))
                .map(|(id, _)| id.clone()),
            Command::Reconfigure(_)
            | Command::Ping
            | Command::History { .. }
            | Command::DryRun { .. }
            | Command::Cancel { .. }
            | Command::Forget { .. } => None,
        }?;
        self.in_flight.contains_key(&id).then_some(id)
    }

    /// Carries out a command now and answers it.
    pub(super) async fn carry_out(&mut self, command: Command) {
        let touched = match command {
            // The turn is all it asks.
            Command::Ping => None,
            Command::Renew { id, force, reply } => {
                let result = self.renew(&id, force).await;
                let _ = reply.send(result);
                Some(id)
            }
            Command::Import {
                id,
                files,
                password,
                reply,
            } => {
                let result = self.import(&id, files, password).await;
                let _ = reply.send(result);
                Some(id)
            }
            Command::TaskDone { task_id, reply } => {
                let (result, id) = match self.task_done(&task_id) {
                    Ok((message, id)) => (Ok(message), Some(id)),
                    Err(e) => (Err(e), None),
                };
                let _ = reply.send(result);
                id
            }
            Command::Rollback { id, reply } => {
                let result = self.rollback(&id).await;
                let _ = reply.send(result);
                None
            }
            Command::Reconfigure(config) => {
                self.reconfigure(config);
                None
            }
            Command::History { id, limit, reply } => {
                let result = self.history(&id, limit).await;
                let _ = reply.send(result);
                return;
            }
            Command::DryRun { id, reply } => {
                self.dry_run(&id, reply);
                return;
            }
            Command::Cancel { id, reply } => {
                let result = self.cancel(&id);
                let _ = reply.send(result);
                None
            }
            Command::Forget { id, reply } => {
                let result = self.forget(&id);
                let _ = reply.send(result);
                None
            }
        };
        if let Some(id) = touched {
            self.pause_if_reached(&id);
        }
        self.publish(crate::now_unix());
    }

    /// `certvakt history ID`: a configured certificate, or one removed whose run is kept.
    async fn history(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<super::HistoryEntry>, EngineError> {
        if self.core.cert(id).is_none() && !self.removed.iter().any(|r| r.id == id) {
            return Err(EngineError::UnknownCertificate(id.to_owned()));
        }
        let (store, id) = (self.core.store.clone(), id.to_owned());
        super::blocking(move || super::history::read(&store, &id, limit)).await?
    }

    pub(super) fn managed(&self, id: &str) -> Result<ManagedCertificate, EngineError> {
        if let Some(why) = self.held.get(id) {
            return Err(EngineError::Other(format!("{id}: {why}")));
        }
        self.core
            .cert(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownCertificate(id.to_owned()))
    }

    pub(super) async fn renew(&mut self, id: &str, force: bool) -> Result<String, EngineError> {
        let cert = self.managed(id)?;
        if self.core.plugins.get(&cert.plugin).is_none() {
            return Err(EngineError::PluginMissing {
                id: id.into(),
                plugin: cert.plugin.clone(),
            });
        }
        if self.in_flight.contains_key(id) {
            // A run in progress is mid-step: the next step follows as soon as this one is
            // over, without the wait it may ask for.
            if let Some(run) = self.records.get(id).and_then(|r| r.run.as_ref()) {
                let message = format!(
                    "renewal of {id} is in progress (step {} is being taken now); the next step follows at once",
                    super::next_step_name(run.phase)
                );
                self.nudged.insert(id.to_owned());
                return Ok(message);
            }
            self.busy(id)?;
        }
        let now = crate::now_unix();
        let before = self.records.get(id).cloned().unwrap_or_default();
        let mut record = before.clone();
        record.retry_at = None;
        if let Some(run) = record.run.as_mut() {
            run.wait_until = None;
            let message = format!(
                "renewal of {id} is in progress (after step {}); trying the next step now",
                run.phase.as_str()
            );
            self.keep(id, record, before)?;
            return Ok(message);
        }
        let current = read_live(&cert).await?;
        let lifted = record.cancelled.take().is_some();
        if lifted {
            self.keep(id, record.clone(), before.clone())?;
        }
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
                let lifted = if lifted {
                    "; the hold of the cancelled run is lifted, so it renews by itself when due"
                } else {
                    ""
                };
                return Ok(format!(
                    "{id} is not due until {} (use --force to renew now){lifted}",
                    crate::human_time::format_time(due)
                ));
            }
        }
        let reason = if current.is_some() {
            Reason::Requested
        } else {
            Reason::FirstIssue
        };
        self.core
            .start_run(&cert, &mut record, reason, current, now);
        self.keep(id, record, before)?;
        // The engine's loop takes the next step right after this answer; `certvakt status`
        // shows how it goes.
        Ok(format!("renewal of {id} started"))
    }

    pub(super) async fn import(
        &mut self,
        id: &str,
        files: Vec<zeroize::Zeroizing<Vec<u8>>>,
        password: Option<zeroize::Zeroizing<String>>,
    ) -> Result<String, EngineError> {
        let cert = self.managed(id)?;
        self.busy(id)?;
        // A PKCS#12 is opened with a deliberately slow key derivation: off the runtime thread.
        let parsed = super::blocking(move || {
            let several = files.len() > 1;
            files
                .iter()
                .enumerate()
                .map(|(n, bytes)| {
                    import::read_import(bytes, password.as_deref().map(|p| p.as_str())).map_err(
                        |e| match e {
                            EngineError::Import(why) if several => {
                                EngineError::Import(format!("file {}: {why}", n + 1))
                            }
                            other => other,
                        },
                    )
                })
                .collect::<Result<Vec<_>, EngineError>>()
        })
        .await??;
        let has_key = parsed.iter().all(|p| p.key.is_some());
        let now = crate::now_unix();
        let before = self.records.get(id).cloned().unwrap_or_default();
        let mut record = before.clone();
        let result = async {
            if record.run.is_none() {
                if !has_key {
                    return Err(EngineError::Import(format!(
                        "no renewal of {id} is waiting for a certificate, and the file has no key: start one with `certvakt renew {id} --force` and send its CSR to the CA, or import the PKCS#12 the CA made (it carries its key)"
                    )));
                }
                let current = read_live(&cert).await?;
                self.core
                    .start_run(&cert, &mut record, Reason::Import, current, now);
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
            self.core
                .accept_issued_now(&cert, run, parsed)
                .await?;
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
        }
        .await;
        match result {
            Ok(message) => {
                record.failures = 0;
                record.retry_at = None;
                record.last_error = None;
                self.keep(id, record, before)?;
                Ok(message)
            }
            Err(e) => {
                log::warn!(cert_id = id; "import refused: {e}");
                Err(e)
            }
        }
    }

    /// Marks a `confirm` task done; answers the message and the certificate's id.
    fn task_done(&mut self, task_id: &str) -> Result<(String, String), EngineError> {
        let now = crate::now_unix();
        let Some((id, task)) = self.records.iter().find_map(|(id, r)| {
            r.open_tasks()
                .find(|t| t.id == task_id)
                .map(|t| (id.clone(), t.clone()))
        }) else {
            // A certificate in flight holds its record: its tasks are not here to be found.
            if let Some(id) = self
                .in_flight
                .keys()
                .find(|id| task_id.starts_with(&format!("{id}-")))
                .cloned()
            {
                self.busy(&id)?;
            }
            return Err(EngineError::UnknownTask(task_id.to_owned()));
        };
        if task.completes_by == Completion::Import {
            return Err(EngineError::TaskNotConfirmable {
                id: task_id.to_owned(),
                how: format!("importing the certificate (`certvakt import {id} <file>`)"),
            });
        }
        self.busy(&id)?;
        let before = self.records.get(&id).cloned().unwrap_or_default();
        let mut record = before.clone();
        for t in record.tasks.iter_mut().filter(|t| t.id == task_id) {
            t.closed_at = Some(now);
        }
        if let Some(run) = record.run.as_mut() {
            run.wait_until = None;
        }
        record.retry_at = None;
        self.keep(&id, record, before)?;
        log::info!(cert_id = id.as_str(), task_id = task_id; "operator marked the task done");
        Ok((format!("task {task_id} done; {id} continues"), id))
    }

    async fn rollback(&mut self, id: &str) -> Result<String, EngineError> {
        let cert = self.managed(id)?;
        self.busy(id)?;
        let version = self.core.roll_back(&cert, None, None).await?;
        Ok(format!("{id} is back at version {version}"))
    }
}
