//! Scan tracking: the scanner, the folder watcher, and the change log that says each change
//! of a certificate's state or a source's problems once.
//!
//! A scan never erases what the last one found because of a passing shortage: a scan that
//! could not look at everything (see [`Inventory::is_complete`]), or that failed as a whole
//! (the last inventory stands then), makes the loop scan again within
//! [`inventory::RETRY_INCOMPLETE`] ([`Scanning::retry_in`]), not at the next change or the
//! safety rescan hours later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::inventory::{self, CertState, Entry, Inventory, ProblemKind, SavedKeyCheck, Scanner};
use crate::metrics::Metrics;
use crate::store;
use crate::watcher::Watcher;

use super::{MAX_SCAN_ROUNDS, warn_before};

/// The scanner, the folder watcher and the change log: what one scan feeds.
#[derive(Debug)]
pub(super) struct Scanning {
    pub(super) scanner: Scanner,
    pub(super) watcher: Watcher,
    pub(super) tracker: Tracker,
    /// What the last scan found, kept when a scan fails as a whole.
    last: Arc<Inventory>,
    /// Whether the last scan could not look at everything.
    incomplete: bool,
    /// Where the scanner's key checks are kept between runs, and whether they were read.
    key_checks: Arc<Path>,
    key_checks_read: bool,
}

/// The file of saved key checks in the state directory.
const KEY_CHECKS_FILE: &str = "key-checks.json";
/// Its layout; a file of another layout is set aside unread (it only saves time).
const KEY_CHECKS_VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyChecksFile {
    version: u32,
    checks: Vec<SavedKeyCheck>,
}

/// Reads the saved key checks (blocking). Missing: none. Damaged or of another layout:
/// none, said in the log; every key is then read and checked again, which only takes time.
fn read_key_checks(path: &Path) -> Vec<SavedKeyCheck> {
    let bytes = match crate::bounded::read_no_follow(path, 64 * 1024 * 1024) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Vec::new(),
        Err(e) => {
            log::warn!(
                "{}; every key file is read and checked again",
                e.sentence(path)
            );
            return Vec::new();
        }
    };
    match serde_json::from_slice::<KeyChecksFile>(&bytes) {
        Ok(file) if file.version == KEY_CHECKS_VERSION => file.checks,
        Ok(file) => {
            log::info!(
                "{} was written by another version of certvakt (layout {}, this one reads {KEY_CHECKS_VERSION}); every key file is read and checked again",
                path.display(),
                file.version
            );
            Vec::new()
        }
        Err(e) => {
            log::warn!(
                "{} is damaged ({e}); every key file is read and checked again, and the file is written anew",
                path.display()
            );
            Vec::new()
        }
    }
}

/// Replaces the saved key checks (blocking). A failure costs the next start time, not
/// correctness: it is logged, not retried.
fn write_key_checks(path: &Path, checks: Vec<SavedKeyCheck>) {
    let file = KeyChecksFile {
        version: KEY_CHECKS_VERSION,
        checks,
    };
    let written = serde_json::to_vec(&file)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            store::atomic::write_file(path, &bytes, &store::FileSpec::mode(0o600))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        log::warn!(
            "cannot save the key checks to {}: {e}; the next start reads and checks every key file again",
            path.display()
        );
    }
}

impl Scanning {
    pub(super) fn new(config: &Config) -> Scanning {
        Scanning {
            scanner: Scanner::new(config.daemon.max_file_size),
            watcher: Watcher::new(),
            tracker: Tracker::default(),
            last: Arc::new(Inventory::default()),
            incomplete: false,
            key_checks: config.daemon.state_dir.join(KEY_CHECKS_FILE).into(),
            key_checks_read: false,
        }
    }

    /// How soon the loop must scan again whatever else happens: after a scan that could not
    /// look at everything.
    pub(super) fn retry_in(&self) -> Option<Duration> {
        self.incomplete.then_some(inventory::RETRY_INCOMPLETE)
    }

    /// Scans, then hands the result to the metrics, the watcher (which folders to watch) and
    /// the change log. `first` logs only what is not ok, not every certificate found.
    ///
    /// When the scan makes the watcher take on new folders (a configured folder that was
    /// just created, say), what happened in them before the watch began is unseen, so it
    /// scans again; unchanged files cost a `stat`. Bounded: each round watches deeper.
    pub(super) async fn run(
        &mut self,
        config: &Config,
        metrics: &Metrics,
        first: bool,
    ) -> Arc<Inventory> {
        let mut rounds = 0;
        let scanned = loop {
            let Some((inventory, took)) = self.scan(config).await else {
                break None;
            };
            rounds += 1;
            if self.watch(config) == 0 || rounds == MAX_SCAN_ROUNDS {
                break Some((inventory, took));
            }
        };
        let Some((inventory, took)) = scanned else {
            // The scan failed as a whole: what the last one found stands.
            self.incomplete = true;
            return self.last.clone();
        };
        let inventory = Arc::new(inventory);
        self.incomplete = !inventory.is_complete();
        metrics.observe_inventory(&inventory, took);
        self.tracker
            .observe(&inventory, crate::now_unix(), warn_before(config), first);
        self.last = inventory.clone();
        inventory
    }

    /// Points the watcher at every folder the configuration and the last scan depend on.
    pub(super) fn watch(&mut self, config: &Config) -> usize {
        let patterns = config
            .watch
            .iter()
            .flat_map(|w| w.paths.iter().map(Path::new));
        let in_use = self.scanner.paths_in_use().iter().map(PathBuf::as_path);
        // Configured files that may not exist yet: their folder (or nearest ancestor) is
        // watched so that their arrival is noticed.
        let configured = config.certificates.iter().flat_map(|c| {
            [
                Some(&c.cert),
                c.key.as_ref(),
                c.pkcs12_password_file.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
        });
        self.watcher
            .set_paths(patterns.chain(in_use).chain(configured))
    }

    /// Scans on a blocking thread; the scanner (and its cache) travels there and back. `None`
    /// when the scan failed as a whole (logged).
    pub(super) async fn scan(&mut self, config: &Config) -> Option<(Inventory, Duration)> {
        let sources = inventory::sources_from_config(config);
        let mut owned = std::mem::take(&mut self.scanner);
        owned.set_max_file_size(config.daemon.max_file_size);
        let started = Instant::now();
        let key_checks = Arc::clone(&self.key_checks);
        let read_key_checks_first = !self.key_checks_read;
        let joined = tokio::task::spawn_blocking(move || {
            if read_key_checks_first {
                owned.restore_key_checks(read_key_checks(&key_checks));
            }
            let inventory = owned.scan(&sources);
            if let Some(checks) = owned.saved_key_checks() {
                write_key_checks(&key_checks, checks);
            }
            (owned, inventory)
        })
        .await;
        match joined {
            Ok((back, inventory)) => {
                self.scanner = back;
                self.key_checks_read = true;
                Some((inventory, started.elapsed()))
            }
            Err(err) => {
                log::error!(error = err.to_string(); "the inventory scan failed unexpectedly; keeping what the last scan found, and scanning again within {} s", inventory::RETRY_INCOMPLETE.as_secs());
                self.scanner = Scanner::new(config.daemon.max_file_size);
                self.key_checks_read = false;
                None
            }
        }
    }
}

/// Remembers states and problems between scans so that each change is logged once.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    pub(super) states: BTreeMap<String, CertState>,
    pub(super) problems: BTreeMap<(String, ProblemKind), String>,
}

impl Tracker {
    pub(super) fn observe(
        &mut self,
        inventory: &Inventory,
        now: i64,
        warn_before: u64,
        first: bool,
    ) {
        let mut states = BTreeMap::new();
        for entry in &inventory.entries {
            let state = entry.cert.state_at(now, warn_before);
            let before = self.states.get(&entry.id).copied();
            if before != Some(state) && !(first && state == CertState::Ok) {
                log_state(entry, state, before, now);
            }
            states.insert(entry.id.clone(), state);
        }
        for id in self.states.keys().filter(|id| !states.contains_key(*id)) {
            log::info!(cert_id = id.as_str(); "certificate is no longer found (its file or configuration changed)");
        }
        let mut problems = BTreeMap::new();
        for p in &inventory.problems {
            let key = (p.id.clone(), p.kind);
            if !self.problems.contains_key(&key) {
                log::warn!(
                    cert_id = p.id.as_str(),
                    path = p.path.as_str(),
                    problem = p.kind.as_str();
                    "{}", p.message
                );
            }
            problems.insert(key, p.path.clone());
        }
        for ((id, kind), path) in &self.problems {
            if !problems.contains_key(&(id.clone(), *kind)) {
                log::info!(cert_id = id.as_str(), path = path.as_str(), problem = kind.as_str(); "problem resolved");
            }
        }
        self.states = states;
        self.problems = problems;
    }
}

pub(super) fn log_state(entry: &Entry, state: CertState, before: Option<CertState>, now: i64) {
    let left = crate::human_time::format_span((entry.cert.not_after - now).unsigned_abs());
    let id = entry.id.as_str();
    let path = entry.path.display().to_string();
    let path = path.as_str();
    let was = before.map_or("new", CertState::as_str);
    let (level, message) = match state {
        CertState::Expired => (
            log::Level::Error,
            format!("certificate has expired ({left} ago)"),
        ),
        CertState::NotYetValid => (log::Level::Error, "certificate is not valid yet".to_owned()),
        CertState::Expiring => (log::Level::Warn, format!("certificate expires in {left}")),
        CertState::Ok => (log::Level::Info, format!("certificate is valid for {left}")),
    };
    log::log!(
        level,
        cert_id = id, path = path, state = state.as_str(), was = was;
        "{message}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_key_checks_that_cannot_be_used_are_none_and_the_file_is_written_anew() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_CHECKS_FILE);
        assert!(read_key_checks(&path).is_empty(), "missing");
        for bad in [
            &b""[..],
            b"{\"version\":1,\"checks\":[{\"path\":\"/k\"",
            b"{\"version\":7,\"checks\":[]}",
            b"\x00\xff garbage",
        ] {
            std::fs::write(&path, bad).expect("write");
            assert!(read_key_checks(&path).is_empty(), "{bad:?}");
        }
        // A FIFO in its place is not opened for a writer that never comes.
        std::fs::remove_file(&path).expect("remove");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        assert!(read_key_checks(&path).is_empty());
        // A symlink in its place is not followed.
        std::fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink("/etc/passwd", &path).expect("symlink");
        assert!(read_key_checks(&path).is_empty());
        std::fs::remove_file(&path).expect("remove");

        write_key_checks(&path, Vec::new());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("written").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(written["version"], KEY_CHECKS_VERSION);
        assert!(read_key_checks(&path).is_empty());
    }
}
