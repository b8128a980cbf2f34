//! The certvakt plugin boundary: ABI version, message types, and the SDK plugin authors use.
//!
//! This crate holds types only: no tokio, no I/O. The renewal engine fills it in; until then it
//! carries the version constants both sides of the boundary check against each other.

/// Version of the C ABI (the `#[repr(C)]` descriptor a plugin exports). Bumped on any change
/// to the descriptor's layout or calling convention.
pub const ABI_VERSION: u32 = 1;

/// Version of this crate, which is the message API version a plugin was built against.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod profile;
