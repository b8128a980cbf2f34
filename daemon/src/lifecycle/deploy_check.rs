//! The verified deploy: after an install and its deploy hook, every endpoint configured for
//! the certificate (`[[certificate.verify]]`) must serve the new certificate before the
//! `verified` step asks the plugin about the authorities.
//!
//! Contract:
//! - The endpoints are probed at once, all together, and then every few seconds until all
//!   serve the new leaf certificate, byte for byte, or `verify_window` (counted from the
//!   install) is over.
//!   Waiting in between is a wait of the step, not a sleep: commands, other certificates and
//!   the metrics go on.
//! - After the window, the step fails with a [`DeployFailure`] that names each endpoint and
//!   what it served (subject, serial, not-after) or why it could not be read. The failure
//!   counts as any step's does (status, `certvakt_renewal_failures_total{step="verified"}`),
//!   and opens a task for a person (the `task_opened` notification), which `task done`
//!   answers by probing again.
//! - With `rollback_on_failed_verify`, the previous version is put back first and the deploy
//!   hook runs again (`CERTVAKT_OUTCOME=rollback`); the run goes back to before its install,
//!   which it does again when the task is done. A crash between the rollback and the saved
//!   record does not roll back twice: only a live version that is the run's is rolled back.
//! - Once the endpoints serve it, tasks of a failed check close by themselves.

use std::fmt;
use std::time::Duration;

use super::tasks::close_tasks;
use super::{Core, EngineError, Phase, Record};
use crate::config::ManagedCertificate;
use crate::probe;
use crate::store::VersionId;

/// How long one endpoint may take to show its certificate.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two probes inside the window.
const PROBE_EVERY_MAX: i64 = 5;

/// Where the deploy check stands.
pub(super) enum DeployCheck {
    /// Every endpoint serves the new certificate.
    Served,
    /// Not yet; probe again at this time (inside the window).
    Again(i64),
}

/// The endpoints did not serve the new certificate within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployFailure {
    /// The new certificate's serial.
    pub serial: String,
    /// One sentence per endpoint that does not serve it.
    pub endpoints: Vec<String>,
    /// The version put back, with `rollback_on_failed_verify`.
    pub rolled_back: Option<VersionId>,
}

impl fmt::Display for DeployFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the installed certificate (serial {}) is not what is served: {}",
            self.serial,
            self.endpoints.join("; ")
        )?;
        if let Some(version) = self.rolled_back {
            write!(
                f,
                "; certvakt put version {version} (the previous certificate) back and ran the deploy hook again"
            )?;
        }
        Ok(())
    }
}

impl DeployFailure {
    /// The task that hands the failure to a person.
    pub fn task(&self, cert: &ManagedCertificate) -> certvakt_plugin_api::TaskSpec {
        let endpoints: String = self
            .endpoints
            .iter()
            .map(|e| format!("  - {e}\n"))
            .collect();
        let (title, then) = match self.rolled_back {
            Some(version) => (
                format!("{}: the new certificate was not served and was rolled back", cert.id),
                format!(
                    "certvakt put version {version} (the previous certificate) back on the live files and ran the deploy hook again.\n\nFind out why the service did not serve the new certificate (the deploy hook, the service's certificate paths, a load balancer in front), then mark this task done: certvakt installs the new certificate again and checks the endpoints."
                ),
            ),
            None => (
                format!("{}: the new certificate is installed but not served", cert.id),
                "Make the service load the new certificate (reload it; check the deploy hook and the service's certificate paths), then mark this task done: certvakt checks the endpoints again at once. It also checks by itself, with growing pauses.".to_owned(),
            ),
        };
        certvakt_plugin_api::TaskSpec {
            title,
            instructions: format!(
                "certvakt installed the certificate with serial {serial} for {id}, but after the verify window these endpoints do not serve it:\n\n{endpoints}\n{then}",
                serial = self.serial,
                id = cert.id,
            ),
            files: Vec::new(),
            completes_by: certvakt_plugin_api::Completion::Confirm,
        }
    }
}

impl Core {
    /// Probes the certificate's endpoints; see the module contract. Called in the
    /// `installed` phase while the deploy is not yet verified.
    pub(super) async fn check_deploy(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
    ) -> Result<DeployCheck, EngineError> {
        let (Some(run), Some(verify)) = (record.run.as_ref(), cert.renewal.verify_deploy()) else {
            return Ok(DeployCheck::Served);
        };
        let Some(new) = run.new.as_ref() else {
            return Err(EngineError::Other(
                "the run has no new certificate to compare the endpoints with".into(),
            ));
        };
        let expected = crate::keys::parse_certificate_chain(new.pem.as_bytes())
            .ok()
            .and_then(|ders| ders.into_iter().next())
            .ok_or_else(|| EngineError::Other("the run's new certificate cannot be read".into()))?;
        // All endpoints at once: a check takes one probe's time, however many there are.
        let mut probes = tokio::task::JoinSet::new();
        for (i, endpoint) in verify.endpoints.iter().cloned().enumerate() {
            probes.spawn(
                async move { (i, probe::served_certificate(&endpoint, PROBE_TIMEOUT).await) },
            );
        }
        let mut served_by = vec![None; verify.endpoints.len()];
        while let Some(done) = probes.join_next().await {
            if let Ok((i, result)) = done {
                served_by[i] = Some(result);
            }
        }
        let mut wrong = Vec::new();
        for (endpoint, result) in verify.endpoints.iter().zip(served_by) {
            match result {
                Some(Ok(der)) if der == expected => {}
                Some(Ok(der)) => {
                    wrong.push(format!("{} serves {}", endpoint.describe(), served(&der)))
                }
                Some(Err(e)) => wrong.push(format!(
                    "{} cannot be read: {}",
                    endpoint.describe(),
                    e.what
                )),
                None => wrong.push(format!(
                    "{} cannot be read: the probe stopped",
                    endpoint.describe()
                )),
            }
        }
        let now = crate::now_unix();
        if wrong.is_empty() {
            log::info!(cert_id = cert.id.as_str(), endpoints = verify.endpoints.len(); "every endpoint serves the new certificate");
            close_tasks(record, Phase::Registered, now);
            close_tasks(record, Phase::Installed, now);
            return Ok(DeployCheck::Served);
        }
        let window = i64::try_from(verify.window.as_secs()).unwrap_or(3_600);
        let window_end = run.phase_at.saturating_add(window);
        if now < window_end {
            let every = (window / 10).clamp(1, PROBE_EVERY_MAX);
            log::info!(cert_id = cert.id.as_str(); "waiting for the endpoints to serve the new certificate: {}", wrong.join("; "));
            return Ok(DeployCheck::Again((now + every).min(window_end)));
        }
        let mut failure = DeployFailure {
            serial: new.serial.clone(),
            endpoints: wrong,
            rolled_back: None,
        };
        if verify.rollback {
            let version = run.version;
            let live = self.store.current(&cert.id)?;
            // Only the run's own version is rolled back: after a crash that came between the
            // rollback and the saved record, the previous version is live already (and that
            // is what the failure says).
            failure.rolled_back = if version.is_some() && live == version {
                let why = failure.to_string();
                Some(self.roll_back(cert, Some(run), Some(why)).await?)
            } else {
                live
            };
            if let Some(run) = record.run.as_mut() {
                run.set_phase(Phase::Registered, now);
            }
        }
        Err(EngineError::Deploy(failure))
    }
}

/// What an endpoint served, as a person compares it: subject, serial, expiry.
fn served(der: &[u8]) -> String {
    match super::import::facts(der) {
        Ok(facts) => format!(
            "{} (serial {}, valid until {})",
            facts.subject,
            facts.serial,
            crate::human_time::format_date(facts.not_after)
        ),
        Err(e) => format!("a certificate certvakt cannot read ({e})"),
    }
}
