//! The certvakt plugin boundary: ABI, message types, and the SDK plugin authors use.
//!
//! This crate holds types and the C boundary only: no tokio, no I/O. Both sides depend on it:
//! certvaktd to load and call plugins, each plugin to be called.
//!
//! - [`abi`]: the `#[repr(C)]` descriptor a plugin exports, the host table it is called with,
//!   buffers, and the version rules. The only module with `unsafe` code.
//! - [`messages`]: the typed requests and responses, host → plugin and plugin → host.
//! - [`Plugin`], [`Host`] and [`export_plugin!`]: what a plugin author writes against.
//! - [`testing`]: [`testing::FakeHost`], to test a plugin without the daemon.
//! - [`profile`]: what a new key and CSR must look like.
//!
//! See the crate's README for a complete plugin and the versioning rules.

/// Version of the C ABI (the `#[repr(C)]` descriptor a plugin exports). Bumped on any change
/// to the descriptor's layout or calling convention.
pub const ABI_VERSION: u32 = 1;

/// Version of the plugin API: the messages ([`messages`]) a plugin was built to exchange,
/// `MAJOR.MINOR.PATCH`. It is its own version, not this crate's: a release of certvakt that
/// leaves the messages alone leaves it alone, so plugins built out of tree keep loading.
/// Bumped only when a message changes: the minor version when fields (with defaults) or
/// methods are added, the major version for anything else. `tests/wire.rs` holds the bytes of
/// every message per version and fails when they change without a bump. The descriptor
/// carries it as `api_version`; [`abi::check_api_version`] decides what fits.
pub const PLUGIN_API_VERSION: &str = "1.5.0";

#[allow(unsafe_code)]
pub mod abi;
pub mod duration;
mod host;
pub mod messages;
mod plugin;
pub mod profile;
pub mod testing;
mod wire;

pub use host::Host;
pub use messages::{
    CertificateContext, CertificateInfo, CheckIssued, ClientIdentity, Completion, CrlStatus,
    ErrorKind, HostError, HostErrorKind, HttpRequest, HttpResponse, IssueOutcome, KeyRef, LogLevel,
    Mail, MailAttachment, MailOutcome, OrderContext, PluginError, RenewalWindow, RunCommand,
    SettingDoc, SettingProblem, SignatureAlgorithm, StepContext, StepOutcome, TaskFile,
    TaskFileContent, TaskSpec,
};
pub use plugin::{About, DEFAULT_POLL_AFTER_SECS, Plugin, UNKNOWN_METHOD, dispatch};
