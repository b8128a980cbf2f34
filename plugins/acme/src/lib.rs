//! ACME: certvakt's plugin for fully automatic renewal at any RFC 8555 certificate authority
//! (Let's Encrypt, commercial ACME CAs, an internal step-ca or Boulder).
//!
//! The flow, in the order a renewal meets it:
//!
//! 1. [`Plugin::csr_profile`]: the configured key type, the domains as DNS names (the first
//!    also as CN when it fits in 64 characters). The daemon makes the key and the CSR.
//! 2. [`Plugin::issue`] and [`Plugin::poll`]: [`order::advance`] finds or registers the
//!    account ([`client::Client::account`]), places the order, publishes the challenge
//!    responses ([`challenge`]), tells the CA to look, finalizes with the daemon's CSR and
//!    downloads the chain. Each call goes as far as the CA lets it and returns `Pending` with
//!    the order in `state` when it has to wait, so many orders are in flight at once.
//! 3. [`Plugin::retire`]: with `revoke_old = true`, revokes the replaced certificate (reason
//!    superseded) once the overlap is over.
//! 4. [`Plugin::renewal_window`], between runs: the CA's suggested window for the certificate
//!    in use, from its renewal information (RFC 9773, [`renewal_info`]), when it offers it.
//!
//! Everything reaches the CA through the host ([`Host::http`], with the configured trust set);
//! the account key is the host's ([`Host::plugin_key`]), and the plugin only sees its public
//! half. Settings are documented in [`settings::docs`] and the README.

use certvakt_plugin_api::profile::{CsrProfile, SubjectAltName, SubjectAttribute, oid};
use certvakt_plugin_api::{
    About, CertificateContext, Host, IssueOutcome, LogLevel, OrderContext, Plugin, PluginError,
    RenewalWindow, SettingProblem, StepContext, StepOutcome, export_plugin,
};
use serde_json::{Value, json};

pub mod challenge;
pub mod client;
pub mod jws;
pub mod order;
pub mod renewal_info;
pub mod settings;
#[cfg(test)]
mod tests;

pub use settings::Settings;

use client::{CaCache, Client, Failure, Signer};

/// RFC 5280 reason code `superseded`.
const REASON_SUPERSEDED: u8 = 4;

/// The plugin. Its only memory between calls is a cache per directory (the directory object,
/// unused nonces); the order travels in the daemon's state.
#[derive(Debug, Default)]
pub struct Acme {
    cache: CaCache,
}

export_plugin!(Acme);

impl Plugin for Acme {
    const NAME: &'static str = "acme";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "ACME (RFC 8555): fully automatic renewal at Let's Encrypt or any ACME CA, \
                      validated by http-01 (the daemon's responder or a webroot) or dns-01 (a \
                      hook command); nothing for a person to do."
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
        let subject = settings
            .domains
            .first()
            .filter(|d| d.len() <= 64)
            .map(|d| {
                vec![SubjectAttribute {
                    oid: oid::COMMON_NAME.into(),
                    value: d.clone(),
                    string_type: Default::default(),
                }]
            })
            .unwrap_or_default();
        Ok(CsrProfile {
            key: settings.key,
            subject,
            sans: settings
                .domains
                .iter()
                .cloned()
                .map(SubjectAltName::Dns)
                .collect(),
            key_usage: Vec::new(),
            extended_key_usage: Vec::new(),
        })
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(&order.certificate.settings)?;
        // A fresh run: whatever an earlier run left in `state` is not this order's.
        let order = OrderContext {
            state: Value::Null,
            ..order
        };
        order::advance(*host, &self.cache, &order, &settings)
    }

    fn poll(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(&order.certificate.settings)?;
        order::advance(*host, &self.cache, &order, &settings)
    }

    fn renewal_window(
        &self,
        host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<Option<RenewalWindow>, PluginError> {
        let settings = Settings::for_call(&certificate.settings)?;
        let Some(current) = &certificate.current else {
            return Ok(None);
        };
        let client = Client::new(*host, &settings, &self.cache).map_err(Failure::into_error)?;
        match client.directory.renewal_info.clone() {
            Some(url) => renewal_info::window(&client, &url, current),
            None => Ok(None),
        }
    }

    fn retire(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let old = match (&step.certificate.current, settings.revoke_old) {
            (Some(old), true) => old,
            _ => return Ok(StepOutcome::Done { state: step.state }),
        };
        let der = pem::parse(&old.pem)
            .map_err(|e| PluginError::permanent(format!("the old certificate is not PEM: {e}")))?;
        let client = Client::new(*host, &settings, &self.cache).map_err(Failure::into_error)?;
        let Some(url) = client.directory.revoke_cert.clone() else {
            host.warn("revoke_old is set, but the CA offers no revocation; nothing revoked");
            return Ok(StepOutcome::Done { state: step.state });
        };
        let account = client.account().map_err(Failure::into_error)?;
        let payload = json!({"certificate": jws::b64(der.contents()), "reason": REASON_SUPERSEDED});
        let result = client.post(&url, Some(&payload), Signer::Account(&account));
        client.finish();
        match result {
            Ok(_) => {
                host.log_with(
                    LogLevel::Info,
                    "revoked the replaced certificate (superseded)",
                    &[("serial", &old.serial)],
                );
                Ok(StepOutcome::Done { state: step.state })
            }
            Err(Failure::Later { after_secs, why }) => {
                host.warn(format!("{why}; revoking again in {after_secs}s"));
                Ok(StepOutcome::Pending {
                    poll_after_secs: after_secs,
                    task: None,
                    state: step.state,
                })
            }
            Err(Failure::Error(e)) if e.fault_code.as_deref() == Some("alreadyRevoked") => {
                host.info("the replaced certificate was revoked already");
                Ok(StepOutcome::Done { state: step.state })
            }
            Err(Failure::Error(e)) if e.fault_code.as_deref() == Some("unauthorized") => {
                // Not this account's certificate (issued elsewhere, or before certvakt ran it):
                // retrying cannot help, and the new certificate is in place.
                host.log_with(
                    LogLevel::Warn,
                    format!(
                        "the CA does not let this account revoke the replaced certificate: {e}"
                    ),
                    &[("serial", &old.serial)],
                );
                Ok(StepOutcome::Done { state: step.state })
            }
            Err(other) => Err(other.into_error()),
        }
    }
}
