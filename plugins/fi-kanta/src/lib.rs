//! fi-kanta: certvakt's plugin for the Finnish sote service certificates (DVV,
//! Digi- ja väestötietovirasto) that pharmacies and social-welfare and healthcare
//! organisations use towards the Kanta services.
//!
//! DVV has no API: an application goes through its e-service with a CSR, the certificate
//! comes back by e-mail, nothing is pushed to Kanta, and the old certificate is revoked by its
//! serial number in the same e-service (brief fi-kanta.md). The renewal, method by method:
//!
//! - [`Plugin::csr_profile`]: RSA 2048 or 4096, `C=FI, O, OU=<Kela/THL long name>,
//!   CN=<FQDN>` (and `serialNumber=<SOTE OID>` when configured), SAN dNSName = the FQDN and
//!   `alt_names`; key usages per [`CertificateType`].
//! - [`Plugin::issue`]: every renewal is a new application: an operator task
//!   ([`task::application`]) with the CSR, the exact form values and a deadline; completed by
//!   importing the certificate DVV e-mails (DER or PEM).
//! - [`Plugin::renewal_window`]: starts `processing_time + correction_time + renew_before`
//!   before the certificate in use expires ([`window`]).
//! - [`Plugin::check_issued`]: [`check`] — the type's validity limit, the names, the SOTE OID,
//!   the key.
//! - [`Plugin::register`]: nothing to push (default: done).
//! - [`Plugin::verify`]: with `verify_url`, one HTTPS request with the new (now current)
//!   certificate; records when the new certificate was verified.
//! - [`Plugin::retire`]: after `revoke_after` from the verification, a revocation task for the
//!   old certificate (`step.certificate.current`); then the CRL named in the old certificate
//!   is watched ([`crl`]) until its serial is on it.
//!
//! The run's state ([`RunState`]) remembers when the new certificate was verified and what
//! retire asked for; a state that does not parse stops the run.

use certvakt_plugin_api::profile::{
    CsrProfile, ExtendedKeyUsage, KeyUsage, StringType, SubjectAltName, SubjectAttribute, oid,
};
use certvakt_plugin_api::{
    About, CertificateContext, CheckIssued, ClientIdentity, Host, HostErrorKind, HttpRequest,
    IssueOutcome, LogLevel, OrderContext, Plugin, PluginError, RenewalWindow, SettingProblem,
    StepContext, StepOutcome, export_plugin,
};
use certvakt_plugin_common::state;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod cert;
pub mod check;
pub mod crl;
pub mod settings;
pub mod task;
#[cfg(test)]
mod tests;

use cert::Cert;
use crl::{CrlLookup, CrlStatus};
pub use settings::{CertificateType, Settings};
use task::Watch;

/// The plugin. Per-renewal data travels in the run's state ([`RunState`]); the CRL lookup is
/// [`crl::crl_status`] unless a test gives another ([`FiKanta::with_crl_lookup`]).
pub struct FiKanta {
    crl: Box<CrlLookup>,
}

impl Default for FiKanta {
    fn default() -> FiKanta {
        FiKanta {
            crl: Box::new(crl::crl_status),
        }
    }
}

impl std::fmt::Debug for FiKanta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiKanta").finish_non_exhaustive()
    }
}

impl FiKanta {
    /// The plugin with another CRL lookup (tests; see [`crl`]).
    pub fn with_crl_lookup(
        lookup: impl Fn(&Host<'_>, &str, &str) -> Result<CrlStatus, certvakt_plugin_api::HostError>
        + Send
        + Sync
        + 'static,
    ) -> FiKanta {
        FiKanta {
            crl: Box::new(lookup),
        }
    }
}

export_plugin!(FiKanta);

/// How often the daemon asks about an application that is with a person (the import
/// completes it).
pub const ORDER_POLL_SECS: u64 = 6 * 3600;
/// When the daemon asks again for the renewal window (it moves only with the certificate).
pub const WINDOW_RECHECK_SECS: u64 = 7 * 86_400;

/// What a renewal run remembers between calls. No secrets, no personal data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// When verify found the new certificate working (Unix seconds): `revoke_after` counts
    /// from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<i64>,
    /// Retire's clock when verify recorded nothing (a run started by an older version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_from: Option<i64>,
    /// The revocation task, once opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
}

/// What retire asked a person for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When the task was opened.
    pub requested_at: i64,
    /// The old certificate's serial, lower-case hex.
    pub serial_hex: String,
    /// The CRL certvakt watches; `None` when a person confirms instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_url: Option<String>,
}

impl RunState {
    fn read(step: &StepContext, method: &str) -> Result<RunState, PluginError> {
        state::read(
            &step.state,
            &state::Step {
                plugin: FiKanta::NAME,
                method,
                certificate_id: &step.certificate.certificate_id,
                by_hand: "look in DVV's e-service whether a revocation request for the old \
                          certificate was already sent (do not send a second one)",
            },
        )
    }

    fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Plugin for FiKanta {
    const NAME: &'static str = "fi-kanta";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "Finnish sote service certificates from DVV for the Kanta services: \
                      certvakt makes the key and CSR, a person applies in DVV's e-service (an \
                      operator task with the exact form values and a deadline) and imports the \
                      certificate DVV e-mails; certvakt checks it (type, validity, names), \
                      verifies it against a Kanta endpoint, and after a grace period asks for \
                      the old certificate's revocation and watches the CRL until it is done."
                .into(),
            settings: settings::docs(),
            key_policies: Vec::new(),
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
        Ok(profile(&settings))
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(&order.certificate.settings)?;
        let now = host.now()?;
        host.info(format!(
            "the {} is applied for by a person in DVV's e-service: task opened",
            settings.certificate_type.form_name()
        ));
        Ok(IssueOutcome::Pending {
            poll_after_secs: ORDER_POLL_SECS,
            task: Some(task::application(&order.certificate, &settings, now)),
            state: order.state,
        })
    }

    fn poll(&self, _host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        // The application is with a person and DVV; the import completes it.
        Ok(IssueOutcome::Pending {
            poll_after_secs: ORDER_POLL_SECS,
            task: None,
            state: order.state,
        })
    }

    fn renewal_window(
        &self,
        _host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<Option<RenewalWindow>, PluginError> {
        let settings = Settings::for_call(&certificate.settings)?;
        Ok(certificate
            .current
            .as_ref()
            .map(|current| window(&settings, current.not_after)))
    }

    fn check_issued(
        &self,
        _host: &Host<'_>,
        check: CheckIssued,
    ) -> Result<Vec<String>, PluginError> {
        let settings = Settings::for_call(&check.certificate.settings)?;
        let cert =
            Cert::read(&check.new.pem, "the new certificate").map_err(PluginError::permanent)?;
        Ok(check::objections(&settings, &cert))
    }

    fn verify(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let mut state = RunState::read(&step, "verify")?;
        let now = host.now()?;
        if let Some(url) = &settings.verify_url {
            // Verify runs after the install: the new certificate is the current one.
            let mut request = HttpRequest::get(url.as_str()).identity(ClientIdentity::Current);
            if let Some(trust) = &settings.verify_trust {
                request = request.trust(trust.as_str());
            }
            let response = host.http(request).map_err(|e| {
                PluginError::temporary(format!(
                    "the TLS handshake with verify_url {url} using the new certificate failed \
                     ({}): the Kanta endpoint did not accept it or did not answer. Check that \
                     the certificate is the one DVV issued for this server, and verify_url / \
                     verify_trust; certvakt tries again later",
                    e.message
                ))
            })?;
            if matches!(response.status, 401 | 403) {
                return Err(PluginError::needs_person(format!(
                    "{url} refuses the new sote certificate (HTTP {}): the TLS handshake \
                     worked, but the service does not accept the certificate. Ask the \
                     service's operator (Kela / Kanta), or check verify_url",
                    response.status
                ))
                .with_fault_code(format!("http_{}", response.status)));
            }
            host.log_with(
                LogLevel::Info,
                "verify_url answers with the new certificate as client certificate",
                &[("url", url), ("status", &response.status.to_string())],
            );
        }
        state.verified_at.get_or_insert(now);
        Ok(StepOutcome::Done {
            state: state.value(),
        })
    }

    fn retire(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let mut state = RunState::read(&step, "retire")?;
        let now = host.now()?;
        // In retire the certificate in use is still the OLD one; the new one is `step.new`.
        let Some(old_info) = &step.certificate.current else {
            host.info("there is no old certificate to revoke");
            return Ok(StepOutcome::Done {
                state: state.value(),
            });
        };
        let old =
            Cert::read(&old_info.pem, "the old certificate").map_err(PluginError::permanent)?;
        let new_serial = match &step.new {
            Some(new) => Some(
                Cert::read(&new.pem, "the new certificate")
                    .map_err(PluginError::permanent)?
                    .serial,
            ),
            None => None,
        };
        if new_serial.as_ref() == Some(&old.serial) {
            return Err(PluginError::permanent(format!(
                "retire was given the same certificate (serial {}) as old and new: certvakt \
                 does not ask for the revocation of the certificate in use",
                old.serial.hex()
            )));
        }
        let serial_hex = old.serial.hex();
        // An expired certificate is no longer accepted anywhere: revoking it changes nothing,
        // and DVV's CRL may drop it, so nothing is asked and nothing is watched.
        if now >= old.not_after {
            let watched = state.revocation.as_ref().and_then(|r| r.crl_url.as_deref());
            match watched {
                Some(url) => host.log_with(
                    LogLevel::Warn,
                    format!(
                        "the old certificate expired before its serial showed on the CRL at \
                         {url}: check DVV's confirmation e-mail that the revocation request \
                         went through; nothing more is needed"
                    ),
                    &[("serial", &serial_hex)],
                ),
                None => host.log_with(
                    LogLevel::Info,
                    "the old certificate has expired: no revocation is needed any more",
                    &[("serial", &serial_hex)],
                ),
            }
            return Ok(StepOutcome::Done {
                state: state.value(),
            });
        }

        let Some(revocation) = state.revocation.clone() else {
            // Never before the grace period: a revocation cannot be undone.
            let since = match state.verified_at {
                Some(at) => at,
                None => *state.retire_from.get_or_insert(now),
            };
            let until = since.saturating_add(settings.revoke_after.as_secs_i64());
            if now < until {
                return Ok(StepOutcome::Pending {
                    poll_after_secs: u64::try_from(until - now).unwrap_or(0).max(1),
                    task: None,
                    state: state.value(),
                });
            }
            let crl_url = old.crl_urls.first().cloned();
            let watch = match &crl_url {
                None => {
                    Watch::Confirm("the old certificate names no CRL distribution point".to_owned())
                }
                Some(url) => match (self.crl)(host, url, &serial_hex) {
                    Ok(status) if status.revoked => {
                        host.log_with(
                            LogLevel::Info,
                            "the old certificate is on its CRL already: no revocation request \
                             is needed",
                            &[("serial", &serial_hex), ("crl", url)],
                        );
                        return Ok(StepOutcome::Done {
                            state: state.value(),
                        });
                    }
                    Ok(_) => Watch::Crl(url.clone()),
                    Err(e) if e.kind == HostErrorKind::NotAvailable => Watch::Confirm(e.message),
                    Err(e) => {
                        host.warn(format!(
                            "the CRL at {url} cannot be read now ({}); the revocation task \
                             opens anyway and certvakt keeps reading the CRL",
                            e.message
                        ));
                        Watch::Crl(url.clone())
                    }
                },
            };
            let task = task::revocation(
                &step.certificate.certificate_id,
                &settings,
                &old,
                &old_info.subject,
                new_serial.as_ref().map(|s| s.hex()).as_deref(),
                &watch,
            );
            let poll_after_secs = match &watch {
                Watch::Crl(_) => settings.crl_poll.as_secs(),
                // Asked again when the task is marked done, or when the old certificate
                // expires (then its revocation no longer matters).
                Watch::Confirm(_) => u64::try_from(old.not_after - now).unwrap_or(0).max(1),
            };
            state.revocation = Some(Revocation {
                requested_at: now,
                serial_hex,
                crl_url: match watch {
                    Watch::Crl(url) => Some(url),
                    Watch::Confirm(_) => None,
                },
            });
            host.info("the old certificate's revocation is asked of a person: task opened");
            return Ok(StepOutcome::Pending {
                poll_after_secs,
                task: Some(task),
                state: state.value(),
            });
        };

        let Some(url) = &revocation.crl_url else {
            // A person confirms: retire is asked again when the task is marked done (the
            // old certificate's expiry, handled above, is the only other time).
            host.log_with(
                LogLevel::Info,
                "the revocation of the old certificate was confirmed by a person; certvakt \
                 could not check it on a CRL",
                &[("serial", &revocation.serial_hex)],
            );
            return Ok(StepOutcome::Done {
                state: state.value(),
            });
        };
        let status = (self.crl)(host, url, &revocation.serial_hex).map_err(|e| {
            let mut error = PluginError::from(e.clone());
            error.message = format!(
                "the CRL (sulkulista) of the old certificate at {url} cannot be read ({}); the \
                 revocation task stays open and certvakt reads the CRL again later",
                e.message
            );
            error
        })?;
        if status.revoked {
            host.log_with(
                LogLevel::Info,
                "the old certificate is on its CRL: revoked",
                &[("serial", &revocation.serial_hex), ("crl", url)],
            );
            return Ok(StepOutcome::Done {
                state: state.value(),
            });
        }
        host.log_with(
            LogLevel::Info,
            format!(
                "the old certificate is not on its CRL yet (CRL of {}); certvakt reads it \
                 again in {}",
                task::date(status.this_update),
                settings.crl_poll
            ),
            &[("serial", &revocation.serial_hex), ("crl", url)],
        );
        Ok(StepOutcome::Pending {
            poll_after_secs: settings.crl_poll.as_secs(),
            task: None,
            state: state.value(),
        })
    }
}

/// The CSR profile for `settings` (see the module docs).
pub fn profile(settings: &Settings) -> CsrProfile {
    let attribute = |oid: &str, value: &str, string_type| SubjectAttribute {
        oid: oid.to_owned(),
        value: value.to_owned(),
        string_type,
    };
    let mut subject = vec![
        attribute(oid::COUNTRY, "FI", StringType::Printable),
        attribute(oid::ORGANIZATION, &settings.organization, StringType::Utf8),
        attribute(
            oid::ORGANIZATIONAL_UNIT,
            &settings.organizational_unit,
            StringType::Utf8,
        ),
        attribute(oid::COMMON_NAME, &settings.fqdn, StringType::Utf8),
    ];
    if let Some(sote_oid) = &settings.sote_oid {
        subject.push(attribute(
            oid::SERIAL_NUMBER,
            sote_oid,
            StringType::Printable,
        ));
    }
    let sans = settings
        .dns_names()
        .into_iter()
        .map(SubjectAltName::Dns)
        .chain(
            settings
                .ip_addresses()
                .into_iter()
                .map(|ip| SubjectAltName::Ip(ip.to_string())),
        )
        .collect();
    let (key_usage, extended_key_usage) = if settings.certificate_type.is_server() {
        (
            vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
            vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth],
        )
    } else {
        (
            vec![KeyUsage::DigitalSignature, KeyUsage::NonRepudiation],
            Vec::new(),
        )
    };
    CsrProfile {
        key: settings.key,
        subject,
        sans,
        key_usage,
        extended_key_usage,
    }
}

/// The suggested renewal window for a certificate expiring at `not_after`: it starts
/// `processing_time + correction_time + renew_before` before the expiry, and ends
/// `correction_time` later (the last start that still leaves DVV's processing time before
/// `renew_before`).
pub fn window(settings: &Settings, not_after: i64) -> RenewalWindow {
    let start = not_after
        .saturating_sub(settings.lead_time_secs())
        .saturating_sub(settings.renew_before.as_secs_i64());
    let end = start
        .saturating_add(settings.correction_time.as_secs_i64())
        .max(start.saturating_add(1));
    RenewalWindow {
        start,
        end,
        check_again_secs: WINDOW_RECHECK_SECS,
        explanation: None,
    }
}
