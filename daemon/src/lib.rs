//! certvakt: keeps the organisation certificates of Nordic health IT alive.
//!
//! The library does the work; the binaries `certvaktd` (the service) and `certvakt` (the
//! operator's CLI) only parse arguments and call into it. One module per concept:
//!
//! - [`bounded`]: reading a file without trusting what sits at its path: regular files only,
//!   a size cap, never blocking.
//! - [`config`]: loading the TOML files (main file plus `conf.d/` drop-ins) and validating them,
//!   every problem at once, with file, line and key.
//! - [`inventory`]: finding and parsing certificates (PEM, DER, PKCS#12), the Nordic identities
//!   they carry, and what is wrong with the files that are not certificates.
//! - [`schedule`]: when the daemon must next wake up.
//! - [`keys`]: private keys, CSRs, signatures and PKCS#12 bundles, and whether a certificate
//!   belongs to a key.
//! - [`store`]: the state directory: atomic files, certificate versions, the live install and its
//!   recovery after a crash, rollback, the renewal state and history.
//! - [`lifecycle`]: the renewal engine: its loop, the state machine from due to retired (each
//!   certificate's steps in a task of their own), operator tasks, commands, the inbox, imports,
//!   installs and hooks.
//! - [`plugin_host`]: loading authority plugins, calling them with a deadline, and the services
//!   they get (HTTP(S) with client identities and trust sets, state, tasks, signatures).
//! - [`metrics`]: the Prometheus registry and the `/metrics` endpoint.
//! - [`control`]: the control socket protocol, its server, and the client the CLI uses.
//! - [`service`]: the daemon itself: config, inventory, metrics, control, signals, in one loop;
//!   the control backend, the reports and scan tracking beside it.
//! - [`signal`]: operating system signals as a small domain enum.
//! - [`systemd`]: journal logging and `sd_notify`.
//! - [`cli`]: the operator's command line; [`daemon_cli`]: `certvaktd`'s.
//! - [`certfile`]: certificate files as bytes (PEM, DER, PKCS#12 sniffing), below both the
//!   inventory and `keys`.
//! - [`ber`]: BER → DER for the PKCS#12 bundles Windows and older Java write, before
//!   p12-keystore reads them.
//! - [`duration`]: durations in configuration files (the SDK's parser).
//! - [`human_time`]: times and spans as operators read them.
//! - [`httpd`]: the small HTTP server behind `/metrics` and the http-01 responder.
//! - [`log_limit`]: log lines a peer can cause, at most one per peer and interval.
//! - [`program`]: running a configured program (hooks, notification commands): no shell, a
//!   clean environment, stdin fed, bounded in time and output.
//! - [`watcher`]: inotify on watched folders and renewal inboxes.

pub mod allocator;
pub mod ber;
pub mod bounded;
pub mod certfile;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon_cli;
pub mod duration;
pub mod httpd;
pub mod human_time;
pub mod inventory;
pub mod keys;
pub mod lifecycle;
pub mod log_limit;
pub mod metrics;
pub mod notify;
pub mod plugin_host;
pub mod probe;
pub mod program;
pub mod schedule;
pub mod service;
pub mod signal;
pub mod store;
pub mod systemd;
pub mod watcher;
pub mod web_config;

/// The version of this build, as shown in `Hello`, `--version` and the build-info metric.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Current time as seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
