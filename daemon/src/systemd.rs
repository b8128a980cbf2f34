//! Living under systemd: journal logging and `sd_notify`.
//!
//! Contract:
//! - [`init_logging`] sends log records to the journal with their key-value pairs as
//!   structured fields (`cert_id` becomes `CERT_ID`) when stderr is connected to the journal,
//!   and to stderr otherwise: with `<N>` priority prefixes when stderr is not a terminal (so
//!   any supervisor that understands sd-daemon prefixes gets levels), readable when it is.
//! - [`Notifier`] speaks `sd_notify` when `NOTIFY_SOCKET` is set and is silent otherwise;
//!   failures to notify are logged once, never fatal.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};
use sd_notify::NotifyState;

/// Where log records went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Journal,
    Stderr,
}

/// Installs the process-wide logger. Safe to call once; later calls only change the level.
pub fn init_logging(level: LevelFilter) -> LogTarget {
    let target = if systemd_journal_logger::connected_to_journal() {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                let journal = journal
                    .with_syslog_identifier("certvaktd".to_owned())
                    .with_extra_fields([("CERTVAKT_VERSION", crate::VERSION)]);
                let _ = journal.install();
                LogTarget::Journal
            }
            Err(_) => install_stderr(),
        }
    } else {
        install_stderr()
    };
    log::set_max_level(level);
    target
}

fn install_stderr() -> LogTarget {
    let logger = StderrLog {
        prefixes: !std::io::stderr().is_terminal(),
    };
    let _ = log::set_boxed_logger(Box::new(logger));
    LogTarget::Stderr
}

/// stderr logger: `fields: message`, fields first, so a grep for `cert_id=fmk-prod` finds
/// every line about that certificate.
struct StderrLog {
    prefixes: bool,
}

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::new();
        if self.prefixes {
            let priority = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            let _ = write!(line, "<{priority}>");
        } else {
            let _ = write!(line, "{:<5} ", record.level());
        }
        let mut fields = FieldWriter::default();
        let _ = record.key_values().visit(&mut fields);
        if !fields.0.is_empty() {
            line.push_str(fields.0.trim_start());
            line.push_str(": ");
        }
        let _ = write!(line, "{}", record.args());
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Writes ` key=value` pairs; `path` is left out when it only repeats `cert_id` (a watched
/// file's id is its path), which keeps stderr lines readable. The journal gets every field.
#[derive(Default)]
struct FieldWriter(String, Option<String>);

impl<'kvs> VisitSource<'kvs> for FieldWriter {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let value = value.to_string();
        if key.as_str() == "cert_id" {
            self.1 = Some(value.clone());
        } else if key.as_str() == "path" && self.1.as_deref() == Some(value.as_str()) {
            return Ok(());
        }
        if value.is_empty() {
            return Ok(());
        }
        if value.contains(' ') {
            let _ = write!(self.0, " {key}={value:?}");
        } else {
            let _ = write!(self.0, " {key}={value}");
        }
        Ok(())
    }
}

/// Talks to the service manager.
#[derive(Debug)]
pub struct Notifier {
    watchdog: Option<Duration>,
    enabled: bool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    /// How often to ping the watchdog: half the configured timeout, as systemd recommends.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// Announces a reload; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(err) = sd_notify::notify(states) {
            log::warn!(error = err.to_string(); "could not notify the service manager");
        }
    }
}
