//! The author's side: the [`Plugin`] trait, [`dispatch`], and [`export_plugin!`].
//!
//! Contract:
//! - A plugin implements [`Plugin`] and calls `export_plugin!(MyPlugin)` once. Nothing else is
//!   exported and no `unsafe` is written by the author.
//! - [`dispatch`] is the whole plugin-side protocol: method name and JSON parameters in,
//!   decoded into a [`PluginRequest`], handed to the trait method, its result encoded as a
//!   [`PluginResponse`]. A request that does not decode, a method the plugin does not know, and
//!   a panic in the trait method all become [`PluginResponse::Error`] with
//!   [`ErrorKind::Permanent`](crate::messages::ErrorKind::Permanent); nothing unwinds out. A
//!   method the plugin does not know carries the fault code [`UNKNOWN_METHOD`], so the host
//!   can tell "not offered" (a plugin older than the method) from a failure.
//! - The name, version and API version in [`Description`] come from the trait's constants and
//!   this crate, so `describe` cannot disagree with the descriptor the host loaded.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use crate::host::Host;
use crate::messages::{
    CertificateContext, CheckIssued, Description, IssueOutcome, OrderContext, PluginError,
    PluginRequest, PluginResponse, RenewalWindow, SettingDoc, SettingProblem, StepContext,
    StepOutcome,
};
use crate::profile::{CsrProfile, KeyPolicy};

/// The fault code of the error answering a method the plugin does not know.
pub const UNKNOWN_METHOD: &str = "unknown_method";

/// How long [`Plugin::poll`]'s default asks the daemon to wait before polling again.
pub const DEFAULT_POLL_AFTER_SECS: u64 = 900;

/// What a plugin says about itself in [`Plugin::describe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    /// One or two sentences: which authority, what the plugin automates, what stays manual.
    pub summary: String,
    /// Every setting it reads from `[certificate.settings]`.
    pub settings: Vec<SettingDoc>,
    /// The key policies its authority works with; empty: every one. A plugin whose CA makes
    /// the keys lists only [`KeyPolicy::Rotate`]: a kept or pre-staged key would never be
    /// used. `check-config` and a reload refuse a certificate configured with another, and
    /// the daemon holds one back, as it does refused settings. Added in 1.5.0.
    pub key_policies: Vec<KeyPolicy>,
}

/// A certvakt plugin: renews certificates of one kind of authority.
///
/// Methods run on a blocking thread of the daemon with a deadline; they may block (on
/// [`Host`] calls) but should not run long on their own. A plugin value is shared by all
/// calls, possibly from several threads at once, so keep per-renewal data in the `state` the
/// outcomes carry, or in [`Host::state_put`], not in `self`.
///
/// Every method may fail with a [`PluginError`] whose kind tells the daemon what to do:
/// retry later, give up, report a configuration problem, or wait for a person.
pub trait Plugin: Send + Sync + 'static {
    /// The name certificates use: `plugin = "dk-fmk"` (`[a-z0-9][a-z0-9-]*` by convention).
    const NAME: &'static str;
    /// The plugin's version; usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;

    /// A summary and the documented settings, for `certvakt plugins`.
    fn describe(&self) -> About;

    /// Every problem in a certificate's settings, at once, for `certvakt check-config`.
    /// Pure: no host calls, and the answer depends on nothing but `settings` (the daemon asks
    /// once for all the certificates with the same settings). Default: any settings are valid.
    fn validate_settings(&self, settings: &Value) -> Vec<SettingProblem> {
        let _ = settings;
        Vec::new()
    }

    /// What the new key and CSR must look like; the daemon makes both.
    fn csr_profile(
        &self,
        host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<CsrProfile, PluginError>;

    /// Orders a certificate for `order.csr_pem`: returns it, or `Pending` with a poll
    /// interval, perhaps an operator task, and the state the next [`Plugin::poll`] gets back.
    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError>;

    /// Asks again about a pending order.
    ///
    /// Default: still pending, poll again in [`DEFAULT_POLL_AFTER_SECS`], state unchanged —
    /// right for authorities where a person completes the order by importing the certificate.
    fn poll(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let _ = host;
        Ok(IssueOutcome::Pending {
            poll_after_secs: DEFAULT_POLL_AFTER_SECS,
            task: None,
            state: order.state,
        })
    }

    /// Tells the authority about the new certificate.
    /// Default: nothing to register, done at once (state unchanged).
    fn register(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let _ = host;
        Ok(StepOutcome::Done { state: step.state })
    }

    /// Checks that the authority accepts the new certificate.
    /// Default: nothing to check, done at once (state unchanged).
    fn verify(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let _ = host;
        Ok(StepOutcome::Done { state: step.state })
    }

    /// Withdraws the old certificate from the authority after the overlap.
    /// Default: nothing to withdraw, done at once (state unchanged).
    fn retire(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let _ = host;
        Ok(StepOutcome::Done { state: step.state })
    }

    /// When the authority suggests renewing `certificate.current`, if it says.
    /// Default: `None`, the daemon's own schedule (two thirds of the lifetime, or
    /// `renew_before`).
    fn renewal_window(
        &self,
        host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<Option<RenewalWindow>, PluginError> {
        let _ = (host, certificate);
        Ok(None)
    }

    /// Objections to a newly issued or imported certificate (or set), one sentence each,
    /// before the daemon stages it: what the authority needs beyond the daemon's own checks
    /// (a profile, a key usage per role). Pure by convention: look, do not change anything.
    /// Default: no objections.
    fn check_issued(
        &self,
        host: &Host<'_>,
        check: CheckIssued,
    ) -> Result<Vec<String>, PluginError> {
        let _ = (host, check);
        Ok(Vec::new())
    }
}

/// Answers one call: `method` and its JSON `params` in, a JSON [`PluginResponse`] out.
/// Used by the exported `call` and by [`crate::testing::FakeHost`]; never panics.
pub fn dispatch<P: Plugin>(plugin: &P, method: &str, params: &[u8], host: &Host<'_>) -> Vec<u8> {
    let response = catch_unwind(AssertUnwindSafe(|| answer(plugin, method, params, host)))
        .unwrap_or_else(|panic| {
            PluginResponse::Error(PluginError::permanent(format!(
                "plugin panicked: {}",
                crate::abi::panic_message(panic.as_ref())
            )))
        });
    serde_json::to_vec(&response).unwrap_or_else(|e| {
        let error = PluginResponse::Error(PluginError::permanent(format!(
            "plugin could not encode its answer to {method}: {e}"
        )));
        serde_json::to_vec(&error).unwrap_or_default()
    })
}

fn answer<P: Plugin>(plugin: &P, method: &str, params: &[u8], host: &Host<'_>) -> PluginResponse {
    let request = match PluginRequest::decode(method, params) {
        Ok(request) => request,
        Err(e) => {
            let unknown = matches!(e, crate::messages::DecodeError::UnknownMethod(_));
            let error = PluginError::permanent(format!("plugin {} {}: {e}", P::NAME, P::VERSION));
            return PluginResponse::Error(if unknown {
                error.with_fault_code(UNKNOWN_METHOD)
            } else {
                error
            });
        }
    };
    let outcome = match request {
        PluginRequest::Describe => {
            let About {
                summary,
                settings,
                key_policies,
            } = plugin.describe();
            Ok(PluginResponse::Describe(Description {
                name: P::NAME.to_owned(),
                version: P::VERSION.to_owned(),
                api_version: crate::PLUGIN_API_VERSION.to_owned(),
                abi_version: crate::ABI_VERSION,
                summary,
                settings,
                key_policies,
            }))
        }
        PluginRequest::ValidateSettings(params) => Ok(PluginResponse::ValidateSettings(
            plugin.validate_settings(&params.settings),
        )),
        PluginRequest::CsrProfile(certificate) => plugin
            .csr_profile(host, certificate)
            .map(PluginResponse::CsrProfile),
        PluginRequest::Issue(order) => plugin.issue(host, order).map(PluginResponse::Issue),
        PluginRequest::Poll(order) => plugin.poll(host, order).map(PluginResponse::Poll),
        PluginRequest::Register(step) => plugin.register(host, step).map(PluginResponse::Register),
        PluginRequest::Verify(step) => plugin.verify(host, step).map(PluginResponse::Verify),
        PluginRequest::Retire(step) => plugin.retire(host, step).map(PluginResponse::Retire),
        PluginRequest::RenewalWindow(certificate) => plugin
            .renewal_window(host, certificate)
            .map(PluginResponse::RenewalWindow),
        PluginRequest::CheckIssued(check) => plugin
            .check_issued(host, check)
            .map(PluginResponse::CheckIssued),
    };
    outcome.unwrap_or_else(PluginResponse::Error)
}

/// Exports a [`Plugin`] type from a `cdylib`: generates the [`crate::abi::ENTRY_SYMBOL`]
/// function, the static descriptor, and the `call` that forwards to [`dispatch`].
///
/// `export_plugin!(MyPlugin)` builds the plugin with `Default::default()` on its first call;
/// `export_plugin!(MyPlugin, MyPlugin::new())` with the given expression. Call it once per
/// library (a second call is a duplicate-symbol error).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!($plugin, <$plugin as ::core::default::Default>::default());
    };
    ($plugin:ty, $make:expr) => {
        const _: () = {
            static INSTANCE: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();

            fn instance() -> &'static $plugin {
                INSTANCE.get_or_init(|| $make)
            }

            #[allow(unsafe_code)]
            unsafe extern "C" fn call(
                method: *const u8,
                method_len: usize,
                params: *const u8,
                params_len: usize,
                host: *const $crate::abi::HostTable,
            ) -> $crate::abi::Buffer {
                // SAFETY: the arguments come unchanged from the host, which promises what
                // `plugin_call` requires (the ABI contract in `certvakt_plugin_api::abi`).
                unsafe {
                    $crate::abi::plugin_call(
                        |method, params, table| {
                            $crate::dispatch(instance(), method, params, &$crate::Host::new(table))
                        },
                        method,
                        method_len,
                        params,
                        params_len,
                        host,
                    )
                }
            }

            static DESCRIPTOR: $crate::abi::StaticDescriptor = $crate::abi::StaticDescriptor::new(
                <$plugin as $crate::Plugin>::NAME,
                <$plugin as $crate::Plugin>::VERSION,
                call,
            );

            /// The plugin's entry point: returns its descriptor.
            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            pub extern "C" fn certvakt_plugin_v1() -> *const $crate::abi::PluginDescriptor {
                DESCRIPTOR.as_ptr()
            }
        };
    };
}
