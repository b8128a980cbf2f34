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

/// Version of this crate, which is the message API version a plugin was built against.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

#[allow(unsafe_code)]
pub mod abi;
pub mod duration;
mod host;
pub mod messages;
mod plugin;
pub mod profile;
pub mod testing;

pub use host::Host;
pub use messages::{
    CertificateContext, CertificateInfo, ClientIdentity, Completion, ErrorKind, HostError,
    HostErrorKind, HttpRequest, HttpResponse, IssueOutcome, KeyRef, LogLevel, OrderContext,
    PluginError, RenewalWindow, RunCommand, SettingDoc, SettingProblem, SignatureAlgorithm,
    StepContext, StepOutcome, TaskFile, TaskFileContent, TaskSpec,
};
pub use plugin::{About, DEFAULT_POLL_AFTER_SECS, Plugin, UNKNOWN_METHOD, dispatch};
