//! Scanning sources: expanding patterns, reading files safely, caching what did not change.
//!
//! Owns [`Scanner`] and its caches.
//!
//! Promises:
//! - Every configured source is looked at on every scan; one bad file, pattern or key never
//!   stops the others. Trouble becomes a [`SourceProblem`] whose message starts with the path.
//! - Patterns: a path without `*`, `?` or `[` is taken literally (missing → `Missing`); a glob
//!   is expanded with the `glob` crate, `*` not crossing `/` and not matching names that start
//!   with `.` (so editors' and installers' hidden temp files are not scanned); no match →
//!   `NoMatch`; a folder glob cannot read → `Unreadable`. A file matched by a managed source
//!   is not also reported by a watch pattern, and a file matched by two patterns once.
//! - Files: `stat` first. Directories, non-regular files and files above `max_file_size` are
//!   reported without being opened. Otherwise the file is opened non-blocking (a FIFO swapped
//!   in cannot hang the scan), `fstat`ed again and read with a hard cap of `max_file_size + 1`
//!   bytes, so a file that grows while read cannot exhaust memory.
//! - Cache: per path, the outcome (certificates or problem) is kept with the file's (device,
//!   inode, size, mtime ns, ctime ns) and the password file's path and stamp. A rescan `stat`s
//!   each file and re-reads only those whose stamp changed; paths no longer seen are evicted.
//!   Key checks are cached the same way per key file and certificate public key.
//! - PKCS#12 passwords are read only when a bundle must be parsed, never cached, and zeroed
//!   after use; a trailing newline in the password file is not part of the password.
//! - Cold scans of many files parse on up to four threads.
//! - Errors that say the daemon or the system is short of something right now — `EMFILE`,
//!   `ENFILE`, `ENOMEM`, `EAGAIN` — say nothing about a file. A file that cannot be opened or
//!   read for one keeps what the last scan found in it (its cached certificates or problem, and
//!   its key's verdict), a folder that cannot be read while expanding a pattern keeps the files
//!   the last scan found through that pattern, and nothing of it is cached. Each source so
//!   affected gets one [`ProblemKind::ScanIncomplete`] problem ("scan incomplete: too many open
//!   files …"), never an "unreadable" one with a permissions hint.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keycheck::{self, KeyVerdict};
use super::parse::{self, ParsedCert, Password};
use super::{
    Entry, Fingerprint, Inventory, KeyCheck, ProblemKind, Source, SourceKind, SourceProblem,
};

/// The default `max_file_size` (1 MiB), as in the configuration.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;

/// How soon the daemon scans again after a scan that could not look at everything.
pub const RETRY_INCOMPLETE: std::time::Duration = std::time::Duration::from_secs(10);

/// A password file larger than this is not a password file.
const PASSWORD_FILE_LIMIT: u64 = 4096;

/// Below this many files to parse, threads cost more than they save.
pub(crate) const PARALLEL_THRESHOLD: usize = 64;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    /// Nanoseconds since the epoch (saturated past the year 2262; the other fields still
    /// tell such a file's versions apart).
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        }
    }
}

/// The password file a source names, and its stamp when it could be `stat`ed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswordId {
    path: PathBuf,
    stamp: Option<Stamp>,
    /// Why it cannot be used (missing, unreadable, a directory), as a sentence tail.
    unavailable: Option<String>,
    /// Why it could not even be looked at now (see [`is_transient`]).
    transient: Option<String>,
}

/// What one file turned out to be.
#[derive(Debug, Clone)]
enum Outcome {
    Certs {
        format: &'static str,
        certs: Arc<[ParsedCert]>,
    },
    /// A problem kind and a sentence tail that follows the path.
    Problem(ProblemKind, String),
    /// Not looked at for want of a resource (the reason, see [`is_transient`]): says nothing
    /// about the file; never cached.
    Transient(String),
}

#[derive(Debug, Clone)]
struct CachedFile {
    stamp: Stamp,
    /// Shared by every file of its source (a cached file is kept per certificate file).
    password: Option<Arc<PasswordId>>,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
struct CachedKey {
    stamp: Stamp,
    /// SHA-256 of the certificate's public key the verdict was reached against.
    cert_key: Fingerprint<32>,
    verdict: KeyVerdict,
}

impl CachedKey {
    /// Whether the verdict depends on nothing but the two files (and so is saved).
    fn worth_saving(&self) -> bool {
        !matches!(self.verdict, KeyVerdict::Unreadable(_))
    }
}

/// A key check as saved between runs ([`Scanner::saved_key_checks`]): which key file
/// (by path and stamp), which certificate key (by SHA-256), and whether they match. Only
/// verdicts that depend on nothing but the two files are saved; an unreadable key is read
/// again at the next start.
///
/// A start with 1,000 managed certificates spends most of its time computing public keys
/// from private keys; with these, it reads no key that did not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedKeyCheck {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    cert_key: Fingerprint<32>,
    matches: bool,
}

/// SHA-256 of a certificate's raw public key bits, as kept with a key verdict.
fn cert_key_digest(cert_public_key: &[u8]) -> Fingerprint<32> {
    Fingerprint(Sha256::digest(cert_public_key).into())
}

/// The sources a scan could not look at completely: per source index, the places (files or
/// folders) and why.
#[derive(Debug, Default)]
struct Incomplete {
    by_source: std::collections::BTreeMap<usize, (Vec<String>, String)>,
}

impl Incomplete {
    fn note(&mut self, source: usize, place: &Path, reason: String) {
        let (places, _) = self
            .by_source
            .entry(source)
            .or_insert_with(|| (Vec::new(), reason));
        places.push(place.display().to_string());
    }

    /// One [`ProblemKind::ScanIncomplete`] problem per source.
    fn problems(self, sources: &[Source]) -> impl Iterator<Item = SourceProblem> + '_ {
        self.by_source
            .into_iter()
            .map(move |(index, (places, reason))| {
                let source = &sources[index];
                let what = match places.as_slice() {
                    [one] => one.clone(),
                    [first, ..] => format!("{} files and folders ({first}, …)", places.len()),
                    [] => source.path.clone(),
                };
                SourceProblem {
                    id: source_id(source),
                    source: source.kind.clone(),
                    path: source.path.clone(),
                    kind: ProblemKind::ScanIncomplete,
                    message: format!(
                        "scan incomplete: {reason}: {what} could not be read; what the last scan found there is kept, and certvakt scans again within {} s",
                        RETRY_INCOMPLETE.as_secs()
                    ),
                }
            })
    }
}

/// One file to look at in this scan.
#[derive(Debug)]
struct Work {
    source: usize,
    path: PathBuf,
}

/// Scans sources; holds the per-file cache between scans.
#[derive(Debug)]
pub struct Scanner {
    max_file_size: u64,
    files: HashMap<PathBuf, CachedFile>,
    keys: HashMap<PathBuf, CachedKey>,
    /// Whether `keys` holds verdicts worth saving that are not saved yet.
    key_checks_changed: bool,
    paths_in_use: Vec<PathBuf>,
}

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner::new(DEFAULT_MAX_FILE_SIZE)
    }
}

impl Scanner {
    pub fn new(max_file_size: u64) -> Scanner {
        Scanner {
            max_file_size,
            files: HashMap::new(),
            keys: HashMap::new(),
            key_checks_changed: false,
            paths_in_use: Vec::new(),
        }
    }

    /// Takes key checks saved by an earlier run. Each is used only while its key file's
    /// stamp and the certificate's public key are what they were; a key checked in this run
    /// already is kept as it is.
    pub fn restore_key_checks(&mut self, checks: Vec<SavedKeyCheck>) {
        for check in checks {
            let stamp = Stamp {
                dev: check.dev,
                ino: check.ino,
                size: check.size,
                mtime_ns: check.mtime_ns,
                ctime_ns: check.ctime_ns,
            };
            let verdict = if check.matches {
                KeyVerdict::Matches
            } else {
                KeyVerdict::Mismatch
            };
            self.keys.entry(check.path).or_insert(CachedKey {
                stamp,
                cert_key: check.cert_key,
                verdict,
            });
        }
    }

    /// The key checks to save when they changed since the last call (`None` otherwise):
    /// every cached verdict that depends on nothing but the key and certificate files.
    pub fn saved_key_checks(&mut self) -> Option<Vec<SavedKeyCheck>> {
        if !std::mem::take(&mut self.key_checks_changed) {
            return None;
        }
        let mut checks: Vec<SavedKeyCheck> = self
            .keys
            .iter()
            .filter_map(|(path, cached)| {
                let matches = match cached.verdict {
                    KeyVerdict::Matches => true,
                    KeyVerdict::Mismatch => false,
                    // Read again at the next start.
                    KeyVerdict::Unreadable(_) => return None,
                };
                Some(SavedKeyCheck {
                    path: path.clone(),
                    dev: cached.stamp.dev,
                    ino: cached.stamp.ino,
                    size: cached.stamp.size,
                    mtime_ns: cached.stamp.mtime_ns,
                    ctime_ns: cached.stamp.ctime_ns,
                    cert_key: cached.cert_key,
                    matches,
                })
            })
            .collect();
        checks.sort_by(|a, b| a.path.cmp(&b.path));
        Some(checks)
    }

    /// The size limit in force.
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Changes the size limit (after a reload). The cache is dropped when it changes, since
    /// "too large" verdicts depend on it.
    pub fn set_max_file_size(&mut self, max_file_size: u64) {
        if max_file_size != self.max_file_size {
            self.max_file_size = max_file_size;
            self.files.clear();
            self.keys.clear();
        }
    }

    /// Every file the last scan depended on: certificate files it looked at, key files and
    /// password files (for the folder watcher).
    pub fn paths_in_use(&self) -> &[PathBuf] {
        &self.paths_in_use
    }

    /// Scans every source. Never fails as a whole: what goes wrong is in `problems`.
    pub fn scan(&mut self, sources: &[Source]) -> Inventory {
        let mut problems = Vec::new();
        let mut incomplete = Incomplete::default();
        let passwords: Vec<Option<Arc<PasswordId>>> = sources
            .iter()
            .enumerate()
            .map(|(i, source)| password_id(i, source, &mut problems, &mut incomplete).map(Arc::new))
            .collect();
        let work = self.expand_sources(sources, &mut problems, &mut incomplete);

        // Stat everything; decide what must be read.
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(work.len());
        let mut jobs: Vec<(usize, &Path, Option<&PasswordId>)> = Vec::new();
        for (i, w) in work.iter().enumerate() {
            let password = passwords[w.source].as_deref();
            match fs::metadata(&w.path) {
                Err(e) => outcomes.push(Some(io_outcome(&w.path, &e))),
                Ok(meta) => match self.precheck(&meta) {
                    Some(problem) => outcomes.push(Some(problem)),
                    None => {
                        let stamp = Stamp::of(&meta);
                        match self.files.get(&w.path) {
                            Some(c) if c.stamp == stamp && c.password.as_deref() == password => {
                                outcomes.push(Some(c.outcome.clone()));
                            }
                            _ => {
                                outcomes.push(None);
                                jobs.push((i, w.path.as_path(), password));
                            }
                        }
                    }
                },
            }
        }

        let files_parsed = jobs.len();
        let max = self.max_file_size;
        for (i, stamp, outcome) in run_jobs(&jobs, max) {
            // A watched file's key is never checked: its public key is not kept.
            let outcome = match sources[work[i].source].kind {
                SourceKind::Watched { .. } => without_public_keys(outcome),
                SourceKind::Managed { .. } => outcome,
            };
            if let Some(stamp) = stamp {
                self.files.insert(
                    work[i].path.clone(),
                    CachedFile {
                        stamp,
                        password: passwords[work[i].source].clone(),
                        outcome: outcome.clone(),
                    },
                );
            }
            outcomes[i] = Some(outcome);
        }

        let mut key_verdicts = self.key_verdicts(sources, &work, &outcomes);

        // Assemble, in source and file order. Key files count as in use even when their
        // certificate is broken, so the watcher notices the pair being restored.
        let mut entries = Vec::with_capacity(work.len());
        let kinds: Vec<Arc<SourceKind>> =
            sources.iter().map(|s| Arc::new(s.kind.clone())).collect();
        let keys_seen: HashSet<PathBuf> = sources
            .iter()
            .filter_map(|s| match &s.kind {
                SourceKind::Managed { key: Some(key), .. } => Some(key.clone()),
                _ => None,
            })
            .collect();
        for (i, (w, outcome)) in work.iter().zip(outcomes).enumerate() {
            let source = &sources[w.source];
            let base_id = match &source.kind {
                SourceKind::Managed { id, .. } => id.clone(),
                SourceKind::Watched { .. } => w.path.display().to_string(),
            };
            let outcome = match outcome {
                Some(Outcome::Transient(reason)) => {
                    // Nothing is known of the file now: what the last scan found stands.
                    incomplete.note(w.source, &w.path, reason);
                    match self.files.get(&w.path) {
                        Some(cached) => cached.outcome.clone(),
                        None => continue,
                    }
                }
                Some(outcome) => outcome,
                None => Outcome::Problem(
                    ProblemKind::Unreadable,
                    "was not scanned (internal error)".into(),
                ),
            };
            let (format, certs) = match outcome {
                // Never cached, so never what the last scan found.
                Outcome::Transient(_) => continue,
                Outcome::Problem(kind, tail) => {
                    problems.push(SourceProblem {
                        id: base_id,
                        source: source.kind.clone(),
                        path: w.path.display().to_string(),
                        kind,
                        message: format!("{} {tail}", w.path.display()),
                    });
                    continue;
                }
                Outcome::Certs { format, certs } => (format, certs),
            };
            let mut first_key_check = KeyCheck::NotConfigured;
            if let (SourceKind::Managed { key: Some(key), .. }, Some(first)) =
                (&source.kind, certs.first())
            {
                // Checked beforehand unless the certificate came from the cache because the
                // file could not be read now.
                let verdict = match key_verdicts[i]
                    .take()
                    .unwrap_or_else(|| self.key_verdict(key, &first.public_key))
                {
                    Ok(verdict) => Some(verdict),
                    Err(reason) => {
                        incomplete.note(w.source, key, reason);
                        // The verdict on this key the last time it could be read, if any.
                        let cert_key = cert_key_digest(&first.public_key);
                        self.keys
                            .get(key)
                            .filter(|c| c.cert_key == cert_key)
                            .map(|c| c.verdict.clone())
                    }
                };
                first_key_check = match verdict {
                    // Never read, and not readable now: the incomplete scan says why.
                    None => KeyCheck::Unreadable,
                    Some(KeyVerdict::Matches) => KeyCheck::Matches,
                    Some(KeyVerdict::Mismatch) => {
                        problems.push(SourceProblem {
                            id: base_id.clone(),
                            source: source.kind.clone(),
                            path: key.display().to_string(),
                            kind: ProblemKind::KeyMismatch,
                            message: format!(
                                "key {} does not belong to certificate {} ({base_id}); the pair must be restored before the service using it can start",
                                key.display(),
                                w.path.display()
                            ),
                        });
                        KeyCheck::Mismatch
                    }
                    Some(KeyVerdict::Unreadable(tail)) => {
                        problems.push(SourceProblem {
                            id: base_id.clone(),
                            source: source.kind.clone(),
                            path: key.display().to_string(),
                            kind: ProblemKind::KeyUnreadable,
                            message: format!("key {} {tail}", key.display()),
                        });
                        KeyCheck::Unreadable
                    }
                };
            }
            for (index, cert) in certs.iter().enumerate() {
                entries.push(Entry {
                    id: if index == 0 {
                        base_id.clone()
                    } else {
                        format!("{base_id}#{index}")
                    },
                    source: kinds[w.source].clone(),
                    path: w.path.clone(),
                    index,
                    format: Cow::Borrowed(format),
                    cert: cert.info.clone(),
                    key_check: if index == 0 {
                        first_key_check
                    } else {
                        KeyCheck::NotConfigured
                    },
                });
            }
        }

        // Evict what this scan did not see, remember what it depended on.
        let files_seen: HashSet<&PathBuf> = work.iter().map(|w| &w.path).collect();
        self.files.retain(|p, _| files_seen.contains(p));
        let mut saved_check_gone = false;
        self.keys.retain(|p, cached| {
            let keep = keys_seen.contains(p);
            saved_check_gone |= !keep && cached.worth_saving();
            keep
        });
        self.key_checks_changed |= saved_check_gone;
        let mut in_use: Vec<PathBuf> = files_seen.into_iter().cloned().collect();
        in_use.extend(keys_seen);
        in_use.extend(passwords.iter().flatten().map(|p| p.path.clone()));
        in_use.sort();
        in_use.dedup();
        self.paths_in_use = in_use;
        problems.extend(incomplete.problems(sources));
        // Kept until the next scan: no room for entries that are not there.
        entries.shrink_to_fit();

        Inventory {
            entries,
            problems,
            scanned_at: crate::now_unix(),
            files_seen: work.len(),
            files_parsed,
        }
    }

    /// Problems visible from `stat` alone (nothing is opened for these).
    fn precheck(&self, meta: &Metadata) -> Option<Outcome> {
        precheck(meta, self.max_file_size)
    }

    /// The verdict on each managed source's key, by work index: one `stat` per key, the
    /// verdict from the cache when file and certificate are unchanged, and the keys that must
    /// be read checked on every core (a key check computes the public key, the costliest part
    /// of a first scan). `None` where there is no key or no certificate read now.
    fn key_verdicts(
        &mut self,
        sources: &[Source],
        work: &[Work],
        outcomes: &[Option<Outcome>],
    ) -> Vec<Option<Result<KeyVerdict, String>>> {
        let mut verdicts: Vec<Option<Result<KeyVerdict, String>>> = vec![None; work.len()];
        let mut to_read: Vec<(usize, &Path, &[u8])> = Vec::new();
        for (i, (w, outcome)) in work.iter().zip(outcomes).enumerate() {
            let (SourceKind::Managed { key: Some(key), .. }, Some(Outcome::Certs { certs, .. })) =
                (&sources[w.source].kind, outcome)
            else {
                continue;
            };
            let Some(first) = certs.first() else { continue };
            match self.key_looked_up(key, &first.public_key) {
                Some(known) => verdicts[i] = Some(known),
                None => to_read.push((i, key.as_path(), first.public_key.as_slice())),
            }
        }
        let max = self.max_file_size;
        let read = in_parallel(&to_read, |&(_, key, public_key)| {
            read_and_check_key(key, public_key, max)
        });
        for ((i, key, public_key), read) in to_read.into_iter().zip(read) {
            verdicts[i] = Some(self.remember_key(key, public_key, read));
        }
        verdicts
    }

    /// The key's verdict for one source; `Err` with the reason when the key could not be
    /// looked at for want of a resource (see [`is_transient`]).
    fn key_verdict(&mut self, key: &Path, cert_public_key: &[u8]) -> Result<KeyVerdict, String> {
        match self.key_looked_up(key, cert_public_key) {
            Some(known) => known,
            None => {
                let read = read_and_check_key(key, cert_public_key, self.max_file_size);
                self.remember_key(key, cert_public_key, read)
            }
        }
    }

    /// What `stat` and the cache already say of a key: a problem (missing, not a regular
    /// file, too large), the cached verdict when file and certificate are unchanged, or
    /// `None`: it must be read.
    fn key_looked_up(
        &self,
        key: &Path,
        cert_public_key: &[u8],
    ) -> Option<Result<KeyVerdict, String>> {
        let meta = match fs::metadata(key) {
            Ok(meta) => meta,
            Err(e) => {
                return Some(match io_outcome(key, &e) {
                    Outcome::Transient(reason) => Err(reason),
                    Outcome::Problem(_, tail) => Ok(KeyVerdict::Unreadable(tail)),
                    Outcome::Certs { .. } => {
                        Ok(KeyVerdict::Unreadable(format!("cannot be read: {e}")))
                    }
                });
            }
        };
        if let Some(Outcome::Problem(_, tail)) = precheck(&meta, self.max_file_size) {
            return Some(Ok(KeyVerdict::Unreadable(tail)));
        }
        let stamp = Stamp::of(&meta);
        let cert_key = cert_key_digest(cert_public_key);
        self.keys
            .get(key)
            .filter(|c| c.stamp == stamp && c.cert_key == cert_key)
            .map(|c| Ok(c.verdict.clone()))
    }

    /// Keeps a key's verdict for the next scan, and returns it.
    fn remember_key(
        &mut self,
        key: &Path,
        cert_public_key: &[u8],
        read: Result<(Stamp, KeyVerdict), Result<KeyVerdict, String>>,
    ) -> Result<KeyVerdict, String> {
        let (stamp, verdict) = match read {
            Ok(read) => read,
            Err(uncached) => return uncached,
        };
        let cached = CachedKey {
            stamp,
            cert_key: cert_key_digest(cert_public_key),
            verdict: verdict.clone(),
        };
        let worth_saving = cached.worth_saving();
        let replaced = self.keys.insert(key.to_path_buf(), cached);
        self.key_checks_changed |= worth_saving || replaced.is_some_and(|r| r.worth_saving());
        Ok(verdict)
    }

    /// The files to look at, in source order: managed files always; watched files unless a
    /// managed source or an earlier pattern already has them.
    fn expand_sources(
        &self,
        sources: &[Source],
        problems: &mut Vec<SourceProblem>,
        incomplete: &mut Incomplete,
    ) -> Vec<Work> {
        let managed: HashSet<PathBuf> = sources
            .iter()
            .filter(|s| matches!(s.kind, SourceKind::Managed { .. }))
            .map(|s| PathBuf::from(&s.path))
            .collect();
        let mut watched_seen: HashSet<PathBuf> = HashSet::new();
        let mut work = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            match &source.kind {
                SourceKind::Managed { .. } => work.push(Work {
                    source: i,
                    path: PathBuf::from(&source.path),
                }),
                SourceKind::Watched { .. } => {
                    let expanded = expand_pattern(source, problems);
                    let found = match expanded.transient {
                        None => expanded.found,
                        Some((folder, reason)) => {
                            incomplete.note(i, &folder, reason);
                            self.found_before(source, expanded.found)
                        }
                    };
                    for path in found {
                        if !managed.contains(&path) && watched_seen.insert(path.clone()) {
                            work.push(Work { source: i, path });
                        }
                    }
                }
            }
        }
        work
    }

    /// `found` and every file the last scan read through `source`'s pattern, in path order:
    /// the files a folder that could not be read now still holds, as far as anyone knows.
    fn found_before(&self, source: &Source, mut found: Vec<PathBuf>) -> Vec<PathBuf> {
        if let Ok(pattern) = glob::Pattern::new(&source.path) {
            let known: HashSet<PathBuf> = found.iter().cloned().collect();
            found.extend(
                self.files
                    .keys()
                    .filter(|p| pattern.matches_path_with(p, glob_options()) && !known.contains(*p))
                    .cloned(),
            );
            found.sort();
        }
        found
    }
}

/// How patterns match: `*` does not cross `/` and does not match a leading `.`.
fn glob_options() -> glob::MatchOptions {
    glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    }
}

/// Whether an I/O error says the daemon or the system is short of something right now
/// (`EMFILE`, `ENFILE`, `ENOMEM`, `EAGAIN`) rather than anything about the file; if so, how to
/// say it.
fn transient_reason(e: &io::Error) -> Option<String> {
    use nix::errno::Errno;
    let reason = match Errno::from_raw(e.raw_os_error()?) {
        Errno::EMFILE => "too many open files (certvaktd's limit, LimitNOFILE in its unit)",
        Errno::ENFILE => "too many open files (the system's limit, fs.file-max)",
        Errno::ENOMEM => "out of memory",
        Errno::EAGAIN => "resource temporarily unavailable",
        _ => return None,
    };
    Some(reason.to_owned())
}

/// [`transient_reason`] as a yes or no.
fn is_transient(e: &io::Error) -> bool {
    transient_reason(e).is_some()
}

fn precheck(meta: &Metadata, max_file_size: u64) -> Option<Outcome> {
    if meta.is_dir() {
        return Some(Outcome::Problem(
            ProblemKind::IsDirectory,
            "is a directory, not a file; point the configuration at the file inside it, or use a pattern such as <dir>/*.pem".into(),
        ));
    }
    if !meta.is_file() {
        return Some(Outcome::Problem(
            ProblemKind::Unreadable,
            "is not a regular file (a FIFO, socket or device); certvakt reads only regular files"
                .into(),
        ));
    }
    if meta.len() > max_file_size {
        return Some(Outcome::Problem(
            ProblemKind::TooLarge,
            format!(
                "is {} bytes, larger than max_file_size ({max_file_size} bytes), and was not read; raise [daemon] max_file_size if it really is a certificate file",
                meta.len()
            ),
        ));
    }
    None
}

/// The password file of a source, `stat`ed; a missing or unreadable one is a problem of the
/// source (reported once per scan).
fn password_id(
    index: usize,
    source: &Source,
    problems: &mut Vec<SourceProblem>,
    incomplete: &mut Incomplete,
) -> Option<PasswordId> {
    let path = source.pkcs12_password_file.as_ref()?;
    let mut transient = None;
    let (stamp, unavailable) = match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => (
            None,
            Some((ProblemKind::IsDirectory, "is a directory".to_string())),
        ),
        Ok(meta) if meta.len() > PASSWORD_FILE_LIMIT => (
            Some(Stamp::of(&meta)),
            Some((
                ProblemKind::TooLarge,
                format!("is larger than {PASSWORD_FILE_LIMIT} bytes"),
            )),
        ),
        Ok(meta) => (Some(Stamp::of(&meta)), None),
        Err(e) => match io_outcome(path, &e) {
            Outcome::Problem(kind, tail) => (None, Some((kind, tail))),
            Outcome::Transient(reason) => {
                incomplete.note(index, path, reason.clone());
                transient = Some(reason);
                (None, None)
            }
            Outcome::Certs { .. } => (None, Some((ProblemKind::Unreadable, e.to_string()))),
        },
    };
    if let Some((kind, tail)) = &unavailable {
        problems.push(SourceProblem {
            id: source_id(source),
            source: source.kind.clone(),
            path: path.display().to_string(),
            kind: *kind,
            message: format!(
                "pkcs12_password_file {} {tail}; PKCS#12 files of this source cannot be opened until it is fixed",
                path.display()
            ),
        });
    }
    Some(PasswordId {
        path: path.clone(),
        stamp,
        unavailable: unavailable.map(|(_, tail)| tail),
        transient,
    })
}

fn source_id(source: &Source) -> String {
    match &source.kind {
        SourceKind::Managed { id, .. } => id.clone(),
        SourceKind::Watched { pattern } => pattern.clone(),
    }
}

fn has_glob_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// What expanding one pattern found.
#[derive(Debug, Default)]
struct Expanded {
    found: Vec<PathBuf>,
    /// A folder that could not be read for want of a resource, and why.
    transient: Option<(PathBuf, String)>,
}

fn expand_pattern(source: &Source, problems: &mut Vec<SourceProblem>) -> Expanded {
    let pattern = source.path.as_str();
    if !has_glob_meta(pattern) {
        return Expanded {
            found: vec![PathBuf::from(pattern)],
            transient: None,
        };
    }
    let problem = |path: String, kind: ProblemKind, message: String| SourceProblem {
        id: path.clone(),
        source: source.kind.clone(),
        path,
        kind,
        message,
    };
    let paths = match glob::glob_with(pattern, glob_options()) {
        Ok(paths) => paths,
        Err(e) => {
            problems.push(problem(
                pattern.to_string(),
                ProblemKind::NoMatch,
                format!("pattern {pattern} is not a valid glob pattern ({e}) and matches nothing; fix the [[watch]] entry"),
            ));
            return Expanded::default();
        }
    };
    let mut found = Vec::new();
    let mut errors = 0;
    let mut transient = None;
    for entry in paths {
        match entry {
            Ok(path) => found.push(path),
            Err(e) if is_transient(e.error()) => {
                if transient.is_none() {
                    let reason = transient_reason(e.error()).unwrap_or_default();
                    transient = Some((e.path().to_path_buf(), reason));
                }
            }
            Err(e) => {
                errors += 1;
                let path = e.path().display().to_string();
                problems.push(problem(
                    path.clone(),
                    ProblemKind::Unreadable,
                    format!(
                        "{path} cannot be read while expanding {pattern}: {}; give the certvakt service user access",
                        e.error()
                    ),
                ));
            }
        }
    }
    if found.is_empty() && errors == 0 && transient.is_none() {
        problems.push(problem(
            pattern.to_string(),
            ProblemKind::NoMatch,
            format!("pattern {pattern} matches no file; check the pattern, or remove the [[watch]] entry if the files are gone for good"),
        ));
    }
    Expanded { found, transient }
}

/// An I/O error of `path` as a problem.
fn io_outcome(path: &Path, e: &io::Error) -> Outcome {
    if let Some(reason) = transient_reason(e) {
        return Outcome::Transient(reason);
    }
    if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
        return Outcome::Problem(
            ProblemKind::SymlinkLoop,
            "is a symbolic link loop (too many levels of symbolic links); fix the link".into(),
        );
    }
    match e.kind() {
        io::ErrorKind::NotFound => {
            let tail = if fs::symlink_metadata(path).is_ok() {
                "is a symbolic link to a file that does not exist; fix the link or the path"
            } else {
                "does not exist; create it or correct the path in the configuration"
            };
            Outcome::Problem(ProblemKind::Missing, tail.into())
        }
        io::ErrorKind::PermissionDenied => Outcome::Problem(
            ProblemKind::Unreadable,
            format!("cannot be read: {e}; give the certvakt service user read access"),
        ),
        _ => Outcome::Problem(ProblemKind::Unreadable, format!("cannot be read: {e}")),
    }
}

/// Opens (non-blocking), `fstat`s and reads at most `max + 1` bytes.
fn read_capped(path: &Path, max: u64) -> Result<(Stamp, Vec<u8>), Outcome> {
    let file = File::options()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits() | nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(path)
        .map_err(|e| io_outcome(path, &e))?;
    let meta = file.metadata().map_err(|e| io_outcome(path, &e))?;
    // The file may have been replaced since the `stat`: check again on what was opened.
    if let Some(problem) = precheck(&meta, max) {
        return Err(problem);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| match transient_reason(&e) {
            Some(reason) => Outcome::Transient(reason),
            None => Outcome::Problem(ProblemKind::Unreadable, format!("could not be read: {e}")),
        })?;
    if bytes.len() as u64 > max {
        return Err(Outcome::Problem(
            ProblemKind::TooLarge,
            format!("grew past max_file_size ({max} bytes) while being read, and was not parsed"),
        ));
    }
    Ok((Stamp::of(&meta), bytes))
}

/// The password; `Err` with [`Outcome::Problem`] (its tail says why it cannot be used) or
/// [`Outcome::Transient`].
fn read_password(id: &PasswordId) -> Result<Zeroizing<String>, Outcome> {
    let unusable = |why: String| Outcome::Problem(ProblemKind::Pkcs12Password, why);
    if let Some(reason) = &id.transient {
        return Err(Outcome::Transient(reason.clone()));
    }
    if let Some(why) = &id.unavailable {
        return Err(unusable(why.clone()));
    }
    let (_, bytes) = read_capped(&id.path, PASSWORD_FILE_LIMIT).map_err(|o| match o {
        Outcome::Certs { .. } => unusable("could not be read".into()),
        other => other,
    })?;
    let bytes = Zeroizing::new(bytes);
    let text = std::str::from_utf8(&bytes).map_err(|_| unusable("is not UTF-8 text".into()))?;
    // `echo secret > file` adds a newline that is not part of the password.
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(Zeroizing::new(trimmed.to_string()))
}

/// Reads and parses one file.
fn read_and_parse(
    path: &Path,
    max: u64,
    password: Option<&PasswordId>,
) -> (Option<Stamp>, Outcome) {
    let (stamp, bytes) = match read_capped(path, max) {
        Ok(read) => read,
        Err(problem) => return (None, problem),
    };
    let secret;
    let source;
    let reason;
    let password_arg = match password {
        None => Password::None,
        Some(id) if crate::certfile::looks_like_pkcs12(&bytes) => {
            source = id.path.display().to_string();
            match read_password(id) {
                Ok(s) => {
                    secret = s;
                    Password::Given {
                        secret: &secret,
                        source: &source,
                    }
                }
                // Nothing is known of the bundle now; nothing of it is cached.
                Err(Outcome::Transient(why)) => return (None, Outcome::Transient(why)),
                Err(Outcome::Problem(_, why)) => {
                    reason = why;
                    Password::Unavailable {
                        source: &source,
                        reason: &reason,
                    }
                }
                Err(Outcome::Certs { .. }) => {
                    reason = "could not be read".into();
                    Password::Unavailable {
                        source: &source,
                        reason: &reason,
                    }
                }
            }
        }
        Some(_) => Password::None,
    };
    let outcome = match parse::parse_bytes(&bytes, password_arg) {
        Ok((format, certs)) => Outcome::Certs {
            format,
            certs: certs.into(),
        },
        Err((kind, tail)) => Outcome::Problem(kind, tail),
    };
    (Some(stamp), outcome)
}

/// Runs `jobs` (work index, path, password) and returns (work index, stamp, outcome), on
/// several threads when there are many.
fn run_jobs(
    jobs: &[(usize, &Path, Option<&PasswordId>)],
    max: u64,
) -> Vec<(usize, Option<Stamp>, Outcome)> {
    let run = |&(i, path, password): &(usize, &Path, Option<&PasswordId>)| {
        // A parser bug on one hostile file must not take the daemon down with it.
        match catch_unwind(AssertUnwindSafe(|| read_and_parse(path, max, password))) {
            Ok((stamp, outcome)) => (i, stamp, outcome),
            Err(_) => (
                i,
                None,
                Outcome::Problem(
                    ProblemKind::Malformed,
                    "made the certificate parser fail; please report this file's shape (not its contents) as a bug".into(),
                ),
            ),
        }
    };
    in_parallel(jobs, run)
}

/// `outcome` without the certificates' public keys (kept only for key checks).
fn without_public_keys(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Certs { format, certs } => Outcome::Certs {
            format,
            certs: certs
                .iter()
                .map(|c| ParsedCert {
                    info: c.info.clone(),
                    public_key: Vec::new(),
                })
                .collect(),
        },
        other => other,
    }
}

/// Reads a key and checks it against the certificate's public key: the stamp of what was
/// read and the verdict, or (`Err`) the verdict or reason without a stamp to cache it by.
/// A parser bug on one hostile key must not take the daemon down with it.
fn read_and_check_key(
    key: &Path,
    cert_public_key: &[u8],
    max: u64,
) -> Result<(Stamp, KeyVerdict), Result<KeyVerdict, String>> {
    match read_capped(key, max) {
        Ok((stamp, bytes)) => {
            let bytes = Zeroizing::new(bytes);
            match catch_unwind(AssertUnwindSafe(|| {
                keycheck::check_key(&bytes, cert_public_key)
            })) {
                Ok(verdict) => Ok((stamp, verdict)),
                Err(_) => Err(Ok(KeyVerdict::Unreadable(
                    "made the key reader fail; please report this file's shape (not its contents) as a bug".into(),
                ))),
            }
        }
        Err(Outcome::Transient(reason)) => Err(Err(reason)),
        Err(Outcome::Problem(_, tail)) => Err(Ok(KeyVerdict::Unreadable(tail))),
        Err(Outcome::Certs { .. }) => Err(Ok(KeyVerdict::Unreadable("could not be read".into()))),
    }
}

/// `run` over `items` on up to four threads (one per core) when there are enough of them,
/// results in the order of `items`. A part whose thread cannot start or panics outside
/// `run` is done on the calling thread.
fn in_parallel<T: Sync, R: Send>(items: &[T], run: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4);
    if items.len() < PARALLEL_THRESHOLD || workers < 2 {
        return items.iter().map(&run).collect();
    }
    let chunk = items.len().div_ceil(workers);
    let run = &run;
    std::thread::scope(|scope| {
        let spawned: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let handle = std::thread::Builder::new()
                    .name("certvakt-scan".into())
                    .spawn_scoped(scope, move || part.iter().map(run).collect::<Vec<_>>());
                (part, handle)
            })
            .collect();
        let mut results = Vec::with_capacity(items.len());
        for (part, handle) in spawned {
            match handle.map(|h| h.join()) {
                Ok(Ok(done)) => results.extend(done),
                _ => results.extend(part.iter().map(run)),
            }
        }
        results
    })
}
