//! Operating system signals as a small domain enum.
//!
//! SIGTERM and SIGINT mean "shut down", SIGHUP means "reload the configuration and rescan".
//! Nothing else in the daemon touches signal handling.

use tokio::signal::unix::{SignalKind, signal};

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: drain and exit.
    Shutdown(&'static str),
    /// SIGHUP: validate the configuration on disk, apply it if valid, rescan.
    Reload,
}

/// The daemon's signal handlers, installed once at start-up.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. Must be called inside the runtime.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Shutdown("SIGTERM"),
            _ = self.int.recv() => Signal::Shutdown("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
