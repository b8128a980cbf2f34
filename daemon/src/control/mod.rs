//! The control socket: protocol, server, client, and who may do what.
//!
//! Contract:
//! - [`server::serve`] accepts connections on a Unix socket until shutdown; each connection is
//!   a hello exchange, then requests answered in order by a [`Backend`]. A peer is admitted by
//!   its kernel-reported credentials ([`auth`]): root and `admin_group` get admin access,
//!   `read_group` read access, anyone else is refused in the hello reply with a sentence that
//!   names the groups to join.
//! - Bad lines get an `error` response, never a dropped connection without a word; a request
//!   line longer than the server's budget ([`server::ADMIN_MAX_LINE`] for admins,
//!   [`server::READ_MAX_LINE`] for readers) is answered with an error that says so, then the
//!   connection closes. Which connections are served at all is `admission`'s business.
//! - [`client::Client`] is what the CLI uses; it turns a version mismatch into a readable error.
//! - What crosses the socket is [`protocol`] and [`wire`], the protocol's own types: the
//!   daemon's internal types are converted into them, never sent as they are, and their JSON
//!   is pinned per protocol version (`golden.rs`).

mod admission;
pub mod auth;
pub mod client;
#[cfg(test)]
mod golden;
pub mod protocol;
pub mod server;
pub mod wire;

use std::future::Future;

use protocol::{Request, Response};

/// Longest response line the client accepts, in bytes (a `list` of 10,000 certificates is a
/// few MiB). Requests have budgets of their own, far smaller: see [`server`].
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// What answers requests: the running daemon (and test doubles).
pub trait Backend: Send + Sync + 'static {
    /// Answers one request. Authorisation has already been checked.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}
