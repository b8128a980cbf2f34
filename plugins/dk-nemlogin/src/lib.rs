//! dk-nemlogin: certvakt's plugin for the certificate of a Danish NemLog-in *system user*
//! (a web service consumer), such as the one a municipality, or its IT supplier, reports to
//! the drug-abuse treatment database SMDB with.
//!
//! The reporting system authenticates to the NemLog-in STS with an OCES3 organisation
//! certificate and gets a SAML token for the web service. NemLog-in knows the certificate
//! because a person attached it to the system user in NemLog-in Administration and
//! *provisioned* the change; there is no API for that. So every change there is an operator
//! task, and certvakt proves each one with a real token request. The renewal, method by
//! method:
//!
//! - [`Plugin::csr_profile`], [`Plugin::issue`]: MitID Erhverv has no API either, so the order
//!   is an operator task ([`certvakt_plugin_common::mitid`]); the renewal comes back as a
//!   PKCS#12 download through `certvakt import`.
//! - [`Plugin::register`] (after the import, before the install): asks the STS for a token
//!   signed with the **new** certificate. Issued: NemLog-in knows it already, done. Otherwise
//!   a task ([`task::attach`]): attach the new certificate (`.cer`) to the system user,
//!   "Gem tekniske oplysninger", "Provisioner til …". Every poll asks the STS again; the
//!   first token closes the task and the daemon installs the certificate.
//! - [`Plugin::verify`] (after the install): one token request with the live certificate.
//! - [`Plugin::retire`] (after the overlap): asks the STS for a token with the **old**
//!   certificate. Refused (`wst:FailedAuthentication`): it is detached, done. Issued: a task
//!   ([`task::detach`]) to remove it and provision, closed when the STS refuses the old one.
//!
//! What the STS answers means ([`sts::Probe`]): a token — the certificate is attached and
//! provisioned; `wst:FailedAuthentication` — it is not (yet); no answer — ask again later.
//! Every other fault is an error naming the fault code and what to check. The first call of
//! a step always opens its task unless the STS already answers as hoped, whatever else it
//! answers: the person's work is needed either way. A step's task is opened once (the run's
//! state remembers it, [`RunState`]; a state that does not parse stops the run, it is never
//! read as "no task yet"); on later polls an STS that does not answer is a
//! temporary error, which the daemon retries with back-off and shows in `certvakt status`,
//! while the task stays open.

use certvakt_plugin_api::profile::CsrProfile;
use certvakt_plugin_api::{
    About, CertificateContext, CertificateInfo, ClientIdentity, Host, IssueOutcome, KeyRef,
    LogLevel, OrderContext, Plugin, PluginError, SettingProblem, StepContext, StepOutcome,
    TaskSpec, export_plugin,
};
use certvakt_plugin_common::{mitid, oces3, state};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod settings;
pub mod sts;
pub mod task;
#[cfg(test)]
mod tests;

pub use settings::Settings;
use sts::{Credential, Probe};

/// The plugin. Per-renewal data travels in the run's state ([`RunState`]).
#[derive(Debug, Default)]
pub struct DkNemlogin;

export_plugin!(DkNemlogin);

/// What a renewal run remembers between calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The step whose task is open (`register`, `verify`, `retire`), so it is opened once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_open_for: Option<String>,
}

impl RunState {
    /// The run's state for `method`, read before the STS is asked: nothing yet at the run's
    /// first call; a state that does not parse stops the run ([`state::read`]). Cleared by a
    /// person, the step asks the STS again and opens its task again if it must.
    fn read(step: &StepContext, method: &str) -> Result<RunState, PluginError> {
        state::read(
            &step.state,
            &state::Step {
                plugin: DkNemlogin::NAME,
                method,
                certificate_id: &step.certificate.certificate_id,
                by_hand: "nothing needs doing in NemLog-in Administration first (the step asks \
                          the STS again, and opens its task again if the STS does not yet \
                          answer as hoped)",
            },
        )
    }

    fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Plugin for DkNemlogin {
    const NAME: &'static str = "dk-nemlogin";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "NemLog-in system user (web service consumer, e.g. a municipality's SMDB \
                      reporting): the renewal is ordered in MitID Erhverv and attached to the \
                      system user in NemLog-in Administration by a person (operator tasks); \
                      certvakt proves each step with a token request to the NemLog-in STS, \
                      installs the certificate once the STS accepts it, and sees the old one \
                      removed after the overlap."
                .into(),
            settings: settings::docs(),
            // MitID Erhverv makes the key: a kept or pre-staged one would never be used.
            key_policies: vec![certvakt_plugin_api::profile::KeyPolicy::Rotate],
        }
    }

    fn validate_settings(&self, settings: &Value) -> Vec<SettingProblem> {
        Settings::parse(settings).err().unwrap_or_default()
    }

    fn csr_profile(
        &self,
        _host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<CsrProfile, PluginError> {
        let settings = Settings::for_call(&certificate.settings)?;
        if let Some(current) = &certificate.current {
            same_cvr(&settings, current, "the certificate in use")?;
        }
        mitid::csr_profile(&certificate)
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(&order.certificate.settings)?;
        if let Some(current) = &order.certificate.current {
            same_cvr(&settings, current, "the certificate in use")?;
        }
        host.info("the renewal is ordered in MitID Erhverv by a person: task opened");
        Ok(mitid::ordered(
            order,
            &format!(
                "the NemLog-in system user {} ({})",
                settings.entity_id, settings.web_service
            ),
            "certvakt then gives you a second task: attach the new certificate to the system \
             user in NemLog-in Administration and provision it. It checks that with the \
             NemLog-in STS, installs the certificate, and asks you to remove the old one \
             when the overlap is over.",
        ))
    }

    fn poll(&self, _host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        // The order is with a person; the import completes it.
        Ok(mitid::still_ordered(order))
    }

    fn register(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let new = new_certificate(&step, "register")?;
        same_cvr(&settings, new, "the new certificate")?;
        let der = oces3::der(&new.pem).map_err(PluginError::permanent)?;
        let credential = Credential {
            certificate_der: &der,
            key: KeyRef::Pending,
            identity: ClientIdentity::Pending,
        };
        let why = if step.certificate.current.is_some() {
            task::Why::Renewal
        } else {
            task::Why::First
        };
        let state = RunState::read(&step, "register")?;
        let make_task =
            || task::attach(&step.certificate.certificate_id, &settings, new, &der, why);
        let probe = sts::probe(host, &settings, &credential);
        wait_for(
            host,
            &settings,
            state,
            "register",
            probe,
            Hope::Issued,
            make_task,
            |host, expires| {
                host.log_with(
                    LogLevel::Info,
                    "the NemLog-in STS issues a token for the new certificate: it is attached and \
                 provisioned",
                    &[
                        ("entity_id", &settings.entity_id),
                        ("token_expires", expires),
                    ],
                );
            },
        )
    }

    fn verify(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        // After the install the live certificate is the new one.
        let new = new_certificate(&step, "verify")?;
        same_cvr(&settings, new, "the new certificate")?;
        let der = oces3::der(&new.pem).map_err(PluginError::permanent)?;
        let credential = Credential {
            certificate_der: &der,
            key: KeyRef::Current,
            identity: ClientIdentity::Current,
        };
        let state = RunState::read(&step, "verify")?;
        let make_task = || {
            task::attach(
                &step.certificate.certificate_id,
                &settings,
                new,
                &der,
                task::Why::RefusedAfterInstall,
            )
        };
        let probe = sts::probe(host, &settings, &credential);
        // Register proved the certificate; a task is only for a refusal since then.
        let probe = match probe {
            Ok(Probe::Unavailable(why)) => return Err(unavailable(&why)),
            Err(e) => return Err(e),
            other => other,
        };
        wait_for(
            host,
            &settings,
            state,
            "verify",
            probe,
            Hope::Issued,
            make_task,
            |host, expires| {
                host.log_with(
                    LogLevel::Info,
                    "the NemLog-in STS issues a token for the installed certificate",
                    &[
                        ("entity_id", &settings.entity_id),
                        ("token_expires", expires),
                    ],
                );
            },
        )
    }

    fn retire(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        // In a run, `current` is the certificate the run replaced.
        let Some(old) = step.certificate.current.as_ref() else {
            return Ok(StepOutcome::Done { state: step.state });
        };
        let now = host.now()?;
        if old.not_after <= now {
            host.log_with(
                LogLevel::Info,
                "the old certificate has expired, so the STS refuses it anyway; remove it from \
                 the system user in NemLog-in Administration when convenient",
                &[("serial", &old.serial), ("entity_id", &settings.entity_id)],
            );
            return Ok(StepOutcome::Done { state: step.state });
        }
        let der = oces3::der(&old.pem).map_err(PluginError::permanent)?;
        let credential = Credential {
            certificate_der: &der,
            key: KeyRef::Previous,
            identity: ClientIdentity::Previous,
        };
        let state = RunState::read(&step, "retire")?;
        let make_task = || task::detach(&step.certificate.certificate_id, &settings, old, &der);
        let probe = sts::probe(host, &settings, &credential);
        wait_for(
            host,
            &settings,
            state,
            "retire",
            probe,
            Hope::Refused,
            make_task,
            |host, _| {
                host.log_with(
                    LogLevel::Info,
                    "the NemLog-in STS refuses the old certificate: it is removed from the system \
                 user",
                    &[("serial", &old.serial), ("entity_id", &settings.entity_id)],
                );
            },
        )
    }
}

/// The STS answer a step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hope {
    /// A token (the certificate is attached and provisioned).
    Issued,
    /// `wst:FailedAuthentication` (the certificate is detached).
    Refused,
}

/// One poll of a step that waits for a person: done when the STS answers as hoped; otherwise
/// pending, with the task the first time. On later polls an unreachable STS is a temporary
/// error and any other fault the error [`sts::probe`] made of it: the task stays open.
#[allow(clippy::too_many_arguments)]
fn wait_for(
    host: &Host<'_>,
    settings: &Settings,
    mut state: RunState,
    name: &str,
    probe: Result<Probe, PluginError>,
    hope: Hope,
    make_task: impl FnOnce() -> TaskSpec,
    on_done: impl FnOnce(&Host<'_>, &str),
) -> Result<StepOutcome, PluginError> {
    let first = state.task_open_for.as_deref() != Some(name);
    let done = match (&probe, hope) {
        (Ok(Probe::Issued { expires }), Hope::Issued) => Some(expires.clone()),
        (Ok(Probe::Refused(_)), Hope::Refused) => Some(String::new()),
        _ => None,
    };
    if let Some(expires) = done {
        on_done(host, &expires);
        state.task_open_for = None;
        return Ok(StepOutcome::Done {
            state: state.value(),
        });
    }
    let pending = |state: &RunState, task| {
        Ok(StepOutcome::Pending {
            poll_after_secs: settings.poll_seconds,
            task,
            state: state.value(),
        })
    };
    // Why the step is not done, for the log.
    let fields = [("entity_id", settings.entity_id.as_str()), ("step", name)];
    match probe {
        Ok(Probe::Issued { .. }) => host.log_with(
            LogLevel::Info,
            "the NemLog-in STS still issues tokens for the old certificate: it is not removed \
             from the system user, or the removal is not provisioned yet",
            &fields,
        ),
        Ok(Probe::Refused(fault)) => host.log_with(
            LogLevel::Info,
            format!(
                "the NemLog-in STS refuses the certificate ({}: {}): it is probably not \
                 attached to the system user yet, or the change is not provisioned",
                fault.code, fault.string
            ),
            &fields,
        ),
        Ok(Probe::Unavailable(why)) if !first => return Err(unavailable(&why)),
        Ok(Probe::Unavailable(why)) => host.log_with(
            LogLevel::Warn,
            format!(
                "{why}; certvakt asks again in {} seconds",
                settings.poll_seconds
            ),
            &fields,
        ),
        Err(e) if !first => return Err(e),
        Err(e) => host.log_with(
            LogLevel::Warn,
            format!("the check failed ({e}); the task opens anyway and certvakt checks again"),
            &fields,
        ),
    }
    if !first {
        return pending(&state, None);
    }
    state.task_open_for = Some(name.to_owned());
    pending(&state, Some(make_task()))
}

/// The STS did not answer: a temporary error, retried with back-off, the task left open.
fn unavailable(why: &str) -> PluginError {
    PluginError::temporary(format!(
        "{why}. The NemLog-in STS is down or unreachable from this server; certvakt asks \
         again later, and any open task stays open"
    ))
}

fn new_certificate<'s>(
    step: &'s StepContext,
    method: &str,
) -> Result<&'s CertificateInfo, PluginError> {
    step.new.as_ref().ok_or_else(|| {
        PluginError::permanent(format!("{method} was called without a new certificate"))
    })
}

/// The certificate is an OCES3 certificate of the configured CVR.
fn same_cvr(settings: &Settings, info: &CertificateInfo, what: &str) -> Result<(), PluginError> {
    let identity = oces3::identity(info).ok_or_else(|| {
        PluginError::permanent(format!(
            "{what} (serial {}, {}) is not an OCES3 certificate with a CVR number; the \
             NemLog-in STS takes only OCES organisation or system certificates",
            info.serial, info.subject
        ))
    })?;
    if identity.cvr != settings.cvr {
        return Err(PluginError::configuration(format!(
            "wrong CVR: {what} (serial {}) is for CVR {}, but the settings say cvr = \"{}\". \
             A system user authenticates with its own organisation's certificate: import the \
             certificate of CVR {}, or correct cvr",
            info.serial, identity.cvr, settings.cvr, settings.cvr
        ))
        .with_fault_code("wrong_cvr"));
    }
    Ok(())
}
