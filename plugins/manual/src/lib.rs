//! Manual CA: certvakt's plugin for any certificate authority without an API, and the worked
//! example for plugin authors.
//!
//! Most authorities that issue Nordic health certificates (DVV, the SITHS eID portal, MitID
//! Erhverv, Buypass, Commfides) take orders through a web page or by e-mail. For them certvakt
//! still does everything a machine can: it makes the key and the CSR, hands a person the
//! order as an operator task with exact steps and the CSR attached, waits, takes in the
//! certificate the person imports, checks it against the key, and installs it. This plugin is
//! that flow, for any such CA, configured by `[certificate.settings]` (see the README).
//!
//! # How a plugin works, walked through this one
//!
//! A plugin is a `cdylib` that implements [`Plugin`] and calls [`export_plugin!`] once. The
//! daemon calls the trait's methods over a C boundary with JSON messages; the plugin never
//! opens a socket, reads a file or holds a key, and asks the daemon (the [`Host`]) for the
//! little it needs: here only the clock and the log. The methods, in the order a renewal
//! meets them:
//!
//! 1. [`Plugin::describe`] — a summary and every setting, for `certvakt plugins`. The setting
//!    docs live beside the parser ([`settings::docs`]), which also uses them to find unknown
//!    keys, so the two cannot drift.
//! 2. [`Plugin::validate_settings`] — every problem at once, for `certvakt check-config` and
//!    before a reload. Pure: no host calls. It is [`Settings::parse`] returning its problems;
//!    every other method parses the same way ([`Settings::for_call`]) and refuses bad
//!    settings with [`ErrorKind::Configuration`](certvakt_plugin_api::ErrorKind), so
//!    validation and action cannot disagree.
//! 3. [`Plugin::csr_profile`] — what key and CSR the daemon should make. From the settings;
//!    a subject or SAN list left out of them is copied from the certificate being renewed
//!    ([`certvakt_plugin_common::current`]), exactly, string types and order included.
//! 4. The daemon makes the key and the CSR. The plugin never sees the key.
//! 5. [`Plugin::issue`] — order the certificate. There is no API, so the answer is
//!    [`IssueOutcome::Pending`] with a [`TaskSpec`](certvakt_plugin_api::TaskSpec) made by
//!    [`task::order`]: a title naming the certificate and the CA, numbered steps, the CSR as a
//!    [`TaskFileContent::Csr`](certvakt_plugin_api::TaskFileContent::Csr) file the daemon
//!    fills in, and [`Completion::Import`](certvakt_plugin_api::Completion::Import): the task
//!    is done when the certificate is imported. `state` carries what this run needs later
//!    (here, when it was ordered).
//! 6. [`Plugin::poll`] — asked again after `poll_after_secs`. A person completes the order, so
//!    there is nothing to ask anyone: still pending. (This equals the trait's default but for
//!    the interval; it is written out so the example shows every method.)
//! 7. The operator runs `certvakt import <id> <file>` (or drops the file in the inbox); the
//!    daemon checks the certificate against the key and the profile and goes on.
//! 8. [`Plugin::register`], [`Plugin::verify`], [`Plugin::retire`] — tell the authority about
//!    the new certificate, check it is accepted, withdraw the old one. A plain CA has nothing
//!    to be told: each is done at once, state unchanged (again the defaults, written out).
//!
//! Errors are [`PluginError`]s whose kind tells the daemon what to do; a host error converts
//! with `?`. Where a person must act, a plugin returns a task rather than failing.
//!
//! # The crate
//!
//! - `Cargo.toml`: `crate-type = ["cdylib", "rlib"]` — the cdylib is what certvaktd loads
//!   from `plugin_dir`; the rlib lets the tests call the plugin in-process.
//! - [`settings`]: the settings' documentation, and the one parser that validates them.
//! - `certvakt_plugin_common::current` (shared with the Danish plugins): copying the subject
//!   and names of the certificate being renewed.
//! - [`task`]: the operator task, word for word.
//! - This file: the [`Plugin`] implementation, and `export_plugin!(ManualCa)`.
//!
//! # Testing
//!
//! The tests (`src/tests.rs`) run every method through
//! [`FakeHost`](certvakt_plugin_api::testing::FakeHost): the request is encoded to JSON and
//! decoded by the same dispatcher the exported symbol uses, so the codec is tested too; only
//! `dlopen` is left out. Certificates to renew are minted by `certvakt-testkit`.

use certvakt_plugin_api::profile::CsrProfile;
use certvakt_plugin_api::{
    About, CertificateContext, Host, IssueOutcome, LogLevel, OrderContext, Plugin, PluginError,
    SettingProblem, StepContext, StepOutcome, export_plugin,
};
use certvakt_plugin_common::current;
use serde_json::{Value, json};

pub mod settings;
pub mod task;
#[cfg(test)]
mod tests;

pub use settings::Settings;

/// How often the daemon asks about a pending manual order. Nothing changes until a person
/// imports the certificate, so seldom; the import itself does not wait for a poll.
pub const POLL_AFTER_SECS: u64 = 3600;

/// The plugin. It keeps nothing between calls: the plugin value is shared by all
/// certificates and threads, so per-renewal data travels in `state`.
#[derive(Debug, Default)]
pub struct ManualCa;

export_plugin!(ManualCa);

impl Plugin for ManualCa {
    const NAME: &'static str = "manual";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "Manual CA: certvakt makes the key and the CSR and gives a person the \
                      order, with exact steps, for any CA without an API; the certificate \
                      comes back through certvakt import or the inbox."
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
        host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<CsrProfile, PluginError> {
        let settings = Settings::for_call(&certificate.settings)?;
        let current = certificate.current.as_ref();
        // What the settings leave out, a renewal keeps; a first issuance has nothing to keep.
        let subject = match (settings.subject, current) {
            (Some(subject), _) => subject,
            (None, Some(current)) => {
                host.log_with(
                    LogLevel::Info,
                    "subject copied from the current certificate",
                    &[("serial", &current.serial)],
                );
                current::subject(current)?
            }
            (None, None) => Vec::new(),
        };
        let sans = match (settings.sans, current) {
            (Some(sans), _) => sans,
            (None, Some(current)) => current::sans(current)?,
            (None, None) => Vec::new(),
        };
        if subject.is_empty() && sans.is_empty() {
            return Err(PluginError::configuration(format!(
                "nothing to put in the CSR for {}: there is no current certificate to copy a \
                 subject from, so configure subject or sans in [certificate.settings]",
                certificate.certificate_id
            )));
        }
        Ok(CsrProfile {
            key: settings.key,
            subject,
            sans,
            key_usage: settings.key_usage,
            extended_key_usage: settings.extended_key_usage,
        })
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(&order.certificate.settings)?;
        let task = task::order(&order.certificate, &settings);
        host.log_with(
            LogLevel::Info,
            "the order goes to an operator task",
            &[("ca", &settings.ca_name)],
        );
        Ok(IssueOutcome::Pending {
            poll_after_secs: POLL_AFTER_SECS,
            task: Some(task),
            state: json!({ "ordered_at": host.now()? }),
        })
    }

    fn poll(&self, _host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        // The order is with a person, and the daemon completes it when they import the
        // certificate (the task from `issue` says how): there is no one to ask. Stay pending,
        // keep the state, and open no second task.
        Ok(IssueOutcome::Pending {
            poll_after_secs: POLL_AFTER_SECS,
            task: None,
            state: order.state,
        })
    }

    fn register(&self, _host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        // A CA without an API has no directory to be told about the new certificate.
        Ok(StepOutcome::Done { state: step.state })
    }

    fn verify(&self, _host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        // Nothing registered, nothing to check; the daemon has checked the certificate
        // against the key and the profile when it was imported.
        Ok(StepOutcome::Done { state: step.state })
    }

    fn retire(&self, _host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        // Withdrawing the old certificate (revoking it, where a CA wants that) is the CA's
        // own procedure, outside certvakt; there is no registration to remove.
        Ok(StepOutcome::Done { state: step.state })
    }
}
