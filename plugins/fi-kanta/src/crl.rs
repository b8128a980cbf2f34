//! Whether a serial is on a CRL (sulkulista): the host's CRL service, behind one function.
//!
//! Contract:
//! - [`crl_status`]`(host, url, serial_hex)` asks the host whether the CRL at `url` lists
//!   `serial_hex` (lower-case hex, no separators, no leading zero bytes: [`Serial::hex`]).
//!   The host fetches the CRL over http(s), checks that it parses, and looks the serial up;
//!   any failure is a [`HostError`].
//! - That service is plugin API 1.4.0's `HostRequest::CrlStatus` ([`Host::crl_status`]). A
//!   host older than 1.4.0 answers [`HostErrorKind::NotAvailable`](certvakt_plugin_api::HostErrorKind::NotAvailable) (an unknown request), and
//!   the plugin falls back to a revocation task a person confirms. The plugin calls the lookup
//!   only through [`CrlLookup`], so tests replace it with a closure.
//!
//! [`Serial::hex`]: crate::cert::Serial::hex

use certvakt_plugin_api::{Host, HostError};

/// What the host read from a CRL: the plugin API's own answer.
pub use certvakt_plugin_api::CrlStatus;

/// The CRL lookup the plugin uses: [`crl_status`] in the built plugin, a closure in tests.
pub type CrlLookup =
    dyn Fn(&Host<'_>, &str, &str) -> Result<CrlStatus, HostError> + Send + Sync + 'static;

/// Asks the host whether the CRL at `url` lists `serial_hex` (see the module docs).
pub fn crl_status(host: &Host<'_>, url: &str, serial_hex: &str) -> Result<CrlStatus, HostError> {
    host.crl_status(url, serial_hex)
}
