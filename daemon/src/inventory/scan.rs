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

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::keycheck::{self, KeyVerdict};
use super::parse::{self, ParsedCert, Password};
use super::{Entry, Inventory, KeyCheck, ProblemKind, Source, SourceKind, SourceProblem};

/// The default `max_file_size` (1 MiB), as in the configuration.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;

/// A password file larger than this is not a password file.
const PASSWORD_FILE_LIMIT: u64 = 4096;

/// Below this many files to parse, threads cost more than they save.
const PARALLEL_THRESHOLD: usize = 64;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
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
}

#[derive(Debug, Clone)]
struct CachedFile {
    stamp: Stamp,
    password: Option<PasswordId>,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
struct CachedKey {
    stamp: Stamp,
    cert_public_key: Vec<u8>,
    verdict: KeyVerdict,
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
            paths_in_use: Vec::new(),
        }
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
        let passwords: Vec<Option<PasswordId>> = sources
            .iter()
            .map(|source| password_id(source, &mut problems))
            .collect();
        let work = expand_sources(sources, &mut problems);

        // Stat everything; decide what must be read.
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(work.len());
        let mut jobs: Vec<(usize, &Path, Option<&PasswordId>)> = Vec::new();
        for (i, w) in work.iter().enumerate() {
            let password = passwords[w.source].as_ref();
            match fs::metadata(&w.path) {
                Err(e) => outcomes.push(Some(io_outcome(&w.path, &e))),
                Ok(meta) => match self.precheck(&meta) {
                    Some(problem) => outcomes.push(Some(problem)),
                    None => {
                        let stamp = Stamp::of(&meta);
                        match self.files.get(&w.path) {
                            Some(c) if c.stamp == stamp && c.password.as_ref() == password => {
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

        // Assemble, in source and file order. Key files count as in use even when their
        // certificate is broken, so the watcher notices the pair being restored.
        let mut entries = Vec::new();
        let keys_seen: HashSet<PathBuf> = sources
            .iter()
            .filter_map(|s| match &s.kind {
                SourceKind::Managed { key: Some(key), .. } => Some(key.clone()),
                _ => None,
            })
            .collect();
        for (w, outcome) in work.iter().zip(outcomes) {
            let source = &sources[w.source];
            let base_id = match &source.kind {
                SourceKind::Managed { id, .. } => id.clone(),
                SourceKind::Watched { .. } => w.path.display().to_string(),
            };
            let outcome = outcome.unwrap_or_else(|| {
                Outcome::Problem(
                    ProblemKind::Unreadable,
                    "was not scanned (internal error)".into(),
                )
            });
            let (format, certs) = match outcome {
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
                let verdict = self.key_verdict(key, &first.public_key);
                first_key_check = match verdict {
                    KeyVerdict::Matches => KeyCheck::Matches,
                    KeyVerdict::Mismatch => {
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
                    KeyVerdict::Unreadable(tail) => {
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
                    source: source.kind.clone(),
                    path: w.path.clone(),
                    index,
                    format: format.to_string(),
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
        self.keys.retain(|p, _| keys_seen.contains(p));
        let mut in_use: Vec<PathBuf> = files_seen.into_iter().cloned().collect();
        in_use.extend(keys_seen);
        in_use.extend(passwords.into_iter().flatten().map(|p| p.path));
        in_use.sort();
        in_use.dedup();
        self.paths_in_use = in_use;

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

    fn key_verdict(&mut self, key: &Path, cert_public_key: &[u8]) -> KeyVerdict {
        let meta = match fs::metadata(key) {
            Ok(meta) => meta,
            Err(e) => {
                let Outcome::Problem(_, tail) = io_outcome(key, &e) else {
                    return KeyVerdict::Unreadable(format!("cannot be read: {e}"));
                };
                return KeyVerdict::Unreadable(tail);
            }
        };
        if let Some(Outcome::Problem(_, tail)) = precheck(&meta, self.max_file_size) {
            return KeyVerdict::Unreadable(tail);
        }
        let stamp = Stamp::of(&meta);
        if let Some(c) = self.keys.get(key) {
            if c.stamp == stamp && c.cert_public_key == cert_public_key {
                return c.verdict.clone();
            }
        }
        let (stamp, verdict) = match read_capped(key, self.max_file_size) {
            Ok((stamp, bytes)) => {
                let bytes = Zeroizing::new(bytes);
                (stamp, keycheck::check_key(&bytes, cert_public_key))
            }
            Err(Outcome::Problem(_, tail)) => return KeyVerdict::Unreadable(tail),
            Err(Outcome::Certs { .. }) => {
                return KeyVerdict::Unreadable("could not be read".into());
            }
        };
        self.keys.insert(
            key.to_path_buf(),
            CachedKey {
                stamp,
                cert_public_key: cert_public_key.to_vec(),
                verdict: verdict.clone(),
            },
        );
        verdict
    }
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
fn password_id(source: &Source, problems: &mut Vec<SourceProblem>) -> Option<PasswordId> {
    let path = source.pkcs12_password_file.as_ref()?;
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

/// The files to look at, in source order: managed files always; watched files unless a
/// managed source or an earlier pattern already has them.
fn expand_sources(sources: &[Source], problems: &mut Vec<SourceProblem>) -> Vec<Work> {
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
                for path in expand_pattern(source, problems) {
                    if !managed.contains(&path) && watched_seen.insert(path.clone()) {
                        work.push(Work { source: i, path });
                    }
                }
            }
        }
    }
    work
}

fn expand_pattern(source: &Source, problems: &mut Vec<SourceProblem>) -> Vec<PathBuf> {
    let pattern = source.path.as_str();
    if !has_glob_meta(pattern) {
        return vec![PathBuf::from(pattern)];
    }
    let problem = |path: String, kind: ProblemKind, message: String| SourceProblem {
        id: path.clone(),
        source: source.kind.clone(),
        path,
        kind,
        message,
    };
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = match glob::glob_with(pattern, options) {
        Ok(paths) => paths,
        Err(e) => {
            problems.push(problem(
                pattern.to_string(),
                ProblemKind::NoMatch,
                format!("pattern {pattern} is not a valid glob pattern ({e}) and matches nothing; fix the [[watch]] entry"),
            ));
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    let mut errors = 0;
    for entry in paths {
        match entry {
            Ok(path) => found.push(path),
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
    if found.is_empty() && errors == 0 {
        problems.push(problem(
            pattern.to_string(),
            ProblemKind::NoMatch,
            format!("pattern {pattern} matches no file; check the pattern, or remove the [[watch]] entry if the files are gone for good"),
        ));
    }
    found
}

/// An I/O error of `path` as a problem.
fn io_outcome(path: &Path, e: &io::Error) -> Outcome {
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
        .map_err(|e| {
            Outcome::Problem(ProblemKind::Unreadable, format!("could not be read: {e}"))
        })?;
    if bytes.len() as u64 > max {
        return Err(Outcome::Problem(
            ProblemKind::TooLarge,
            format!("grew past max_file_size ({max} bytes) while being read, and was not parsed"),
        ));
    }
    Ok((Stamp::of(&meta), bytes))
}

fn read_password(id: &PasswordId) -> Result<Zeroizing<String>, String> {
    if let Some(why) = &id.unavailable {
        return Err(why.clone());
    }
    let (_, bytes) = read_capped(&id.path, PASSWORD_FILE_LIMIT).map_err(|o| match o {
        Outcome::Problem(_, tail) => tail,
        Outcome::Certs { .. } => "could not be read".into(),
    })?;
    let bytes = Zeroizing::new(bytes);
    let text = std::str::from_utf8(&bytes).map_err(|_| "is not UTF-8 text".to_string())?;
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
                Err(why) => {
                    reason = why;
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
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4);
    if jobs.len() < PARALLEL_THRESHOLD || workers < 2 {
        return jobs.iter().map(run).collect();
    }
    let chunk = jobs.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let spawned: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                let handle = std::thread::Builder::new()
                    .name("certvakt-scan".into())
                    .spawn_scoped(scope, move || part.iter().map(run).collect::<Vec<_>>());
                (part, handle)
            })
            .collect();
        let mut results = Vec::with_capacity(jobs.len());
        for (part, handle) in spawned {
            match handle.map(|h| h.join()) {
                Ok(Ok(done)) => results.extend(done),
                // No thread (resource limits) or a panic outside `run`: do the part here.
                _ => results.extend(part.iter().map(run)),
            }
        }
        results
    })
}
