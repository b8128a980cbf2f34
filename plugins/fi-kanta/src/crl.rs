//! Whether a serial is on a CRL (sulkulista): the host's CRL service, behind one function.
//!
//! Contract:
//! - [`crl_status`]`(host, url, serial_hex)` asks the host whether the CRL at `url` lists
//!   `serial_hex` (lower-case hex, no separators, no leading zero bytes: [`Serial::hex`]).
//!   The host fetches the CRL over http(s), checks that it parses, and looks the serial up;
//!   any failure is a [`HostError`].
//! - That service is plugin API 1.4.0's `HostRequest::CrlStatus { url, serial_hex }` →
//!   `HostResponse::CrlStatus { revoked, this_update, next_update }`, added to the API beside
//!   this plugin. Until it is, [`crl_status`] answers [`HostErrorKind::NotAvailable`] (what a
//!   host older than 1.4.0 answers too), and the plugin falls back to a revocation task a
//!   person confirms. The plugin calls the lookup only through [`CrlLookup`], so tests replace
//!   it with a closure.
//!
//! The glue, once `HostRequest::CrlStatus` exists (the body of [`crl_status`]):
//!
//! ```text
//! match host.request(&HostRequest::CrlStatus { url: url.into(), serial_hex: serial_hex.into() })? {
//!     HostResponse::CrlStatus { revoked, this_update, next_update } =>
//!         Ok(CrlStatus { revoked, this_update, next_update }),
//!     other => Err(HostError::new(HostErrorKind::Failed,
//!         format!("unexpected host answer {}", other.method()))),
//! }
//! ```
//!
//! [`Serial::hex`]: crate::cert::Serial::hex

use certvakt_plugin_api::{Host, HostError, HostErrorKind};

/// What the host read from a CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlStatus {
    /// The serial is on the CRL.
    pub revoked: bool,
    /// The CRL's `thisUpdate`, Unix seconds.
    pub this_update: i64,
    /// The CRL's `nextUpdate`, Unix seconds, when it has one.
    pub next_update: Option<i64>,
}

/// The CRL lookup the plugin uses: [`crl_status`] in the built plugin, a closure in tests.
pub type CrlLookup =
    dyn Fn(&Host<'_>, &str, &str) -> Result<CrlStatus, HostError> + Send + Sync + 'static;

/// Asks the host whether the CRL at `url` lists `serial_hex` (see the module docs).
pub fn crl_status(host: &Host<'_>, url: &str, serial_hex: &str) -> Result<CrlStatus, HostError> {
    // Plugin API 1.3.0 has no CRL service: the `HostRequest::CrlStatus` call (module docs)
    // replaces this answer once the API is 1.4.0.
    let _ = (host, serial_hex);
    Err(HostError::new(
        HostErrorKind::NotAvailable,
        format!(
            "this certvakt cannot read CRLs for plugins yet (the crl_status host service of \
             plugin API 1.4.0), so the CRL at {url} is not watched"
        ),
    ))
}
