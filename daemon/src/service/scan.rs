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
use crate::inventory::{self, CertState, Entry, Inventory, ProblemKind, Scanner};
use crate::metrics::Metrics;
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
}

impl Scanning {
    pub(super) fn new(config: &Config) -> Scanning {
        Scanning {
            scanner: Scanner::new(config.daemon.max_file_size),
            watcher: Watcher::new(),
            tracker: Tracker::default(),
            last: Arc::new(Inventory::default()),
            incomplete: false,
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
        let joined = tokio::task::spawn_blocking(move || {
            let inventory = owned.scan(&sources);
            (owned, inventory)
        })
        .await;
        match joined {
            Ok((back, inventory)) => {
                self.scanner = back;
                Some((inventory, started.elapsed()))
            }
            Err(err) => {
                log::error!(error = err.to_string(); "the inventory scan failed unexpectedly; keeping what the last scan found, and scanning again within {} s", inventory::RETRY_INCOMPLETE.as_secs());
                self.scanner = Scanner::new(config.daemon.max_file_size);
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
