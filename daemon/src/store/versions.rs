//! Versions of one certificate: `certs/<id>/versions/<n>/`, staged whole or not at all, retired
//! oldest first.
//!
//! A version folder appears under its number only by the rename of a complete, fsynced
//! `<n>.partial/`, and disappears only by a rename to `<n>.retiring/` before its contents are
//! removed. So a folder named by a bare number always holds every file it was staged with, and
//! a crash leaves at most one `.partial` or `.retiring` folder, which readers ignore and the next
//! stage, retire or recover removes.
//!
//! Numbers come from `next-version.json`, which is advanced (durably) before the folder is
//! created: a number is used at most once, even when its staging crashes or it is retired.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::atomic::{self, FileSpec};
use super::live::{read_current, read_intent};
use super::{
    DIR_MODE, META_MODE, Result, Store, StoreError, VersionFiles, VersionId, VersionPaths, fault,
    io_err,
};

pub(crate) const KEY_FILE: &str = "key.pem";
pub(crate) const CERT_FILE: &str = "cert.pem";
pub(crate) const CHAIN_FILE: &str = "chain.pem";
pub(crate) const PKCS12_FILE: &str = "bundle.p12";

const VERSIONS_DIR: &str = "versions";
const COUNTER_FILE: &str = "next-version.json";
const PARTIAL: &str = ".partial";
const RETIRING: &str = ".retiring";

const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Counter {
    next: u64,
}

/// What a name in `versions/` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Whole(u64),
    Partial(u64),
    Retiring(u64),
}

impl Entry {
    fn parse(name: &str) -> Option<Entry> {
        let number = |s: &str| {
            // Only canonical decimal: "007" or "+7" are not ours.
            let ok = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            ok.then(|| s.parse::<u64>().ok()).flatten()
        };
        if let Some(n) = name.strip_suffix(PARTIAL) {
            return number(n).map(Entry::Partial);
        }
        if let Some(n) = name.strip_suffix(RETIRING) {
            return number(n).map(Entry::Retiring);
        }
        number(name).map(Entry::Whole)
    }

    fn number(self) -> u64 {
        match self {
            Entry::Whole(n) | Entry::Partial(n) | Entry::Retiring(n) => n,
        }
    }
}

/// The entries of `versions/` that are ours; an absent folder has none.
fn entries(versions: &Path) -> Result<Vec<(Entry, PathBuf)>> {
    let read = match fs::read_dir(versions) {
        Ok(read) => read,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_err("list versions", versions)(err)),
    };
    let mut found = Vec::new();
    for entry in read {
        let entry = entry.map_err(io_err("list versions", versions))?;
        let Some(kind) = entry.file_name().to_str().and_then(Entry::parse) else {
            continue;
        };
        let is_dir = entry
            .file_type()
            .map_err(io_err("stat", &entry.path()))?
            .is_dir();
        if is_dir {
            found.push((kind, entry.path()));
        }
    }
    found.sort_by_key(|(kind, _)| kind.number());
    Ok(found)
}

/// Removes what a crash left: `.partial` and `.retiring` folders. Returns what was removed.
pub(crate) fn remove_incomplete(versions: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for (kind, path) in entries(versions)? {
        if matches!(kind, Entry::Whole(_)) {
            continue;
        }
        fs::remove_dir_all(&path).map_err(io_err("remove incomplete version", &path))?;
        log::info!(path = path.display().to_string(); "removed a version folder left incomplete by an interrupted run");
        removed.push(path);
    }
    if !removed.is_empty() {
        atomic::fsync_dir(versions)?;
    }
    Ok(removed)
}

pub(crate) fn versions_dir(cert_dir: &Path) -> PathBuf {
    cert_dir.join(VERSIONS_DIR)
}

pub(crate) fn version_dir(cert_dir: &Path, n: VersionId) -> PathBuf {
    versions_dir(cert_dir).join(n.0.to_string())
}

impl Store {
    /// Stages a new version of certificate `id` and returns its number. The version exists whole
    /// (every file written and fsynced, key 0600, bundle 0600, the rest 0644) or not at all.
    pub fn stage(&self, id: &str, files: &VersionFiles) -> Result<VersionId> {
        let cert_dir = self.cert_dir_created("stage", id)?;
        let versions = versions_dir(&cert_dir);
        atomic::ensure_dir(&versions, DIR_MODE)?;
        // Numbered above any left-over folder before that is removed: its number stays burnt
        // even if the counter was lost.
        let n = allocate(&cert_dir, &versions)?;
        remove_incomplete(&versions)?;
        let partial = versions.join(format!("{n}{PARTIAL}"));
        let whole = version_dir(&cert_dir, n);
        let result = write_version(&partial, files).and_then(|()| {
            fs::rename(&partial, &whole)
                .map_err(io_err("rename staged version into place", &whole))?;
            atomic::fsync_dir(&versions)
        });
        if let Err(err) = result {
            if !fault::crashed()
                && let Err(clean) = fs::remove_dir_all(&partial)
                && clean.kind() != ErrorKind::NotFound
            {
                log::warn!(cert_id = id, path = partial.display().to_string(), error = clean.to_string(); "cannot remove a failed staging; the next stage removes it");
            }
            return Err(err);
        }
        log::info!(cert_id = id, version = n.0; "staged a new version");
        Ok(n)
    }

    /// The whole versions of certificate `id`, oldest first.
    pub fn versions(&self, id: &str) -> Result<Vec<VersionId>> {
        let cert_dir = self.cert_dir("list versions", id)?;
        Ok(entries(&versions_dir(&cert_dir))?
            .into_iter()
            .filter_map(|(kind, _)| match kind {
                Entry::Whole(n) => Some(VersionId(n)),
                Entry::Partial(_) | Entry::Retiring(_) => None,
            })
            .collect())
    }

    /// Where the files of version `n` are; optional files only when the version has them.
    pub fn version_files(&self, id: &str, n: VersionId) -> Result<VersionPaths> {
        let cert_dir = self.cert_dir("find version", id)?;
        let dir = existing_version(&cert_dir, id, n, "find version")?;
        let optional = |name: &str| {
            let path = dir.join(name);
            path.exists().then_some(path)
        };
        Ok(VersionPaths {
            key: optional(KEY_FILE),
            cert: dir.join(CERT_FILE),
            chain: dir.join(CHAIN_FILE),
            pkcs12: optional(PKCS12_FILE),
            dir,
        })
    }

    /// Reads version `n` back.
    pub fn read_version(&self, id: &str, n: VersionId) -> Result<VersionFiles> {
        let cert_dir = self.cert_dir("read version", id)?;
        let dir = existing_version(&cert_dir, id, n, "read version")?;
        read_version_dir(&dir)
    }

    /// Removes old versions of certificate `id`, oldest first, keeping the current, the previous,
    /// any version an unfinished install refers to, and `keep` more besides. Returns the removed
    /// versions, oldest first.
    pub fn retire(&self, id: &str, keep: usize) -> Result<Vec<VersionId>> {
        let cert_dir = self.cert_dir("retire", id)?;
        let versions = versions_dir(&cert_dir);
        remove_incomplete(&versions)?;
        let record = read_current(&cert_dir)?;
        let intent = read_intent(&cert_dir)?;
        let protected: BTreeSet<VersionId> = [
            record.current,
            record.previous,
            intent.as_ref().map(|i| i.version),
            intent.as_ref().and_then(|i| i.previous),
        ]
        .into_iter()
        .flatten()
        .collect();
        let candidates: Vec<VersionId> = self
            .versions(id)?
            .into_iter()
            .filter(|n| !protected.contains(n))
            .collect();
        let excess = candidates.len().saturating_sub(keep);
        let mut removed = Vec::with_capacity(excess);
        for &n in &candidates[..excess] {
            let whole = version_dir(&cert_dir, n);
            let retiring = versions.join(format!("{n}{RETIRING}"));
            // Renamed first: a crash mid-removal must not leave a numbered folder without its key.
            fs::rename(&whole, &retiring).map_err(io_err("rename version for removal", &whole))?;
            atomic::fsync_dir(&versions)?;
            fault::point("version renamed for removal", &retiring)?;
            fs::remove_dir_all(&retiring).map_err(io_err("remove retired version", &retiring))?;
            atomic::fsync_dir(&versions)?;
            log::info!(cert_id = id, version = n.0; "retired an old version");
            removed.push(n);
        }
        Ok(removed)
    }
}

fn existing_version(cert_dir: &Path, id: &str, n: VersionId, op: &'static str) -> Result<PathBuf> {
    let dir = version_dir(cert_dir, n);
    if dir.is_dir() {
        return Ok(dir);
    }
    Err(StoreError::NoSuchVersion {
        op,
        id: id.to_string(),
        version: n,
        path: dir,
    })
}

/// Takes the next number and records the one after it, durably, before anything is written.
fn allocate(cert_dir: &Path, versions: &Path) -> Result<VersionId> {
    let counter_path = cert_dir.join(COUNTER_FILE);
    let from_counter = atomic::read_json_opt::<Counter>(&counter_path)?.map_or(1, |c| c.next);
    // Also above anything on disk, should the counter have been lost or restored from a backup.
    let above_disk = entries(versions)?
        .iter()
        .map(|(kind, _)| kind.number() + 1)
        .max()
        .unwrap_or(1);
    let n = from_counter.max(above_disk).max(1);
    atomic::write_json(
        &counter_path,
        &Counter { next: n + 1 },
        &FileSpec::mode(META_MODE),
    )?;
    fault::point("version number taken", &counter_path)?;
    Ok(VersionId(n))
}

fn write_version(partial: &Path, files: &VersionFiles) -> Result<()> {
    fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(partial)
        .map_err(io_err("create staging folder", partial))?;
    if let Some(key) = &files.key_pem {
        let path = partial.join(KEY_FILE);
        atomic::write_file(&path, key.as_bytes(), &FileSpec::mode(SECRET_MODE))?;
        fault::point("version key written", &path)?;
    }
    let public = FileSpec::mode(PUBLIC_MODE);
    atomic::write_file(&partial.join(CERT_FILE), files.cert_pem.as_bytes(), &public)?;
    atomic::write_file(
        &partial.join(CHAIN_FILE),
        files.chain_pem.as_bytes(),
        &public,
    )?;
    if let Some(bundle) = &files.pkcs12 {
        atomic::write_file(
            &partial.join(PKCS12_FILE),
            bundle,
            &FileSpec::mode(SECRET_MODE),
        )?;
    }
    for (role, member) in &files.set {
        check_role(role, partial)?;
        write_version(&partial.join(role), member)?;
    }
    fault::point("version written", partial)
}

/// A set's role names a folder inside the version: lower-case letters only.
fn check_role(role: &str, dir: &Path) -> Result<()> {
    if !role.is_empty() && role.len() <= 32 && role.bytes().all(|b| b.is_ascii_lowercase()) {
        return Ok(());
    }
    Err(StoreError::Io {
        op: "stage set member",
        path: dir.join(role),
        source: std::io::Error::new(
            ErrorKind::InvalidInput,
            "a role of a certificate set is named by lower-case letters only",
        ),
    })
}

pub(crate) fn read_version_dir(dir: &Path) -> Result<VersionFiles> {
    let key_path = dir.join(KEY_FILE);
    let key_pem = match read_secret(&key_path)? {
        None => None,
        // Moved, not copied, into the String: no second copy of the key to wipe.
        Some(mut bytes) => match String::from_utf8(std::mem::take(&mut *bytes)) {
            Ok(text) => Some(Zeroizing::new(text)),
            Err(err) => {
                err.into_bytes().zeroize();
                return Err(StoreError::Io {
                    op: "read key",
                    path: key_path,
                    source: std::io::Error::new(ErrorKind::InvalidData, "the key is not UTF-8 PEM"),
                });
            }
        },
    };
    let read_text = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(io_err("read", &path))
    };
    let mut set = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_err("list version", dir))? {
        let entry = entry.map_err(io_err("list version", dir))?;
        let is_dir = entry
            .file_type()
            .map_err(io_err("stat", &entry.path()))?
            .is_dir();
        let name = entry.file_name();
        if let (true, Some(role)) = (is_dir, name.to_str())
            && check_role(role, dir).is_ok()
        {
            let member = read_version_dir(&entry.path())?;
            set.insert(role.to_owned(), member);
        }
    }
    Ok(VersionFiles {
        key_pem,
        cert_pem: read_text(CERT_FILE)?,
        chain_pem: read_text(CHAIN_FILE)?,
        pkcs12: read_secret(&dir.join(PKCS12_FILE))?,
        set,
    })
}

/// Reads a file holding key material into a buffer sized up front (no reallocation leaves
/// copies behind) that is wiped when dropped. A missing file is `None`.
pub(crate) fn read_secret(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_err("read", path)(err)),
    };
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(len).unwrap_or(0).saturating_add(1),
    ));
    file.read_to_end(&mut bytes).map_err(io_err("read", path))?;
    Ok(Some(bytes))
}
