//! Store: the daemon's files on disk — atomic writes, certificate versions, the live install,
//! the renewal engine's state journal and its audit history.
//!
//! Contract:
//! - **No key is ever deleted or overwritten before its successor is safely in place.** Every
//!   file is written by [`atomic::write_file`]: a temp file beside the target, created with
//!   `O_EXCL` and its final mode (a key is never world-readable, not even for a moment), written,
//!   fsynced, renamed over the target, directory fsynced. A failing write (disk full) leaves the
//!   target as it was and no temp file behind.
//! - **Versions are whole or absent.** [`Store::stage`] writes a new key, certificate, chain and
//!   PKCS#12 into `versions/<n>.partial/` and renames the folder to `versions/<n>` only when
//!   everything is on disk. Numbers only grow; a number is never handed out twice, not even after
//!   its version was retired or its staging crashed.
//! - **Installing is all or nothing, and resumable.** [`Store::install`] first writes every new
//!   live file to a temp beside its target; only when all of them are on disk does it record an
//!   intent (`install.json`) and rename them into place, key first. A crash before the intent
//!   leaves the old live files untouched; a crash after it is finished by [`Store::recover`] at
//!   start-up, so the live key and certificate always end up from the same version.
//! - **Rollback is one call.** The previous version stays on disk until [`Store::retire`], which
//!   never removes the current, the previous or a version an unfinished install points at.
//! - The store has one writer: the daemon, which runs at most one operation per certificate at a
//!   time. It does not lock against a second writer.
//! - Certificate ids and plugin names are re-checked here (`[A-Za-z0-9][A-Za-z0-9._-]{0,63}`,
//!   never `..`), so no id can name a path outside the state directory.
//! - Key material is held in [`Zeroizing`] buffers and never logged.
//!
//! On disk, under the state directory (all folders 0750, metadata files 0640):
//!
//! ```text
//! certs/<id>/
//!     versions/<n>/{key.pem 0600, cert.pem 0644, chain.pem 0644, bundle.p12 0600}
//!     versions/<n>/<role>/       a certificate set's other roles, the same files each
//!     versions/<n>.partial/      a staging cut short (ignored; removed by stage, retire, recover)
//!     versions/<n>.retiring/     a removal cut short (ignored; removed by stage, retire, recover)
//!     next-version.json          {"next": n}: the number the next stage gets
//!     current.json               {"current": n, "previous": m}
//!     install.json               the intent of an install in progress
//!     state.json                 the renewal engine's state ("about to do X", "X done")
//!     history.jsonl              the audit history, one JSON object per line, append only
//!     outbox/  inbox/            operator tasks out, imported files in
//! plugins/<plugin>/              a plugin's own state
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub mod atomic;
mod fault;
mod install;
mod journal;
mod live;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_set;
mod versions;

pub use atomic::FileSpec;
pub use journal::NEXT_KEY_FILE;

/// Folder modes: the daemon's group (the read-only operators) may look, nobody else.
const DIR_MODE: u32 = 0o750;
/// Mode of the store's own metadata (state, history, intents): no secrets, but not public.
const META_MODE: u32 = 0o640;

/// Why a store operation failed. Every variant names the path and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A system call on a file or folder failed.
    #[error("{op} {}: {source}{}", path.display(), read_only_hint(source, path))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the store does not parse. It is left as it is for a person to look at.
    #[error(
        "{op} {}: not valid JSON at line {line}, column {column}: {source} (the file is left as it is; fix or remove it by hand)",
        path.display()
    )]
    Parse {
        op: &'static str,
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON.
    #[error("{op} {}: cannot serialise: {source}", path.display())]
    Serialize {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A certificate id or plugin name that could name a path outside the store.
    #[error(
        "{op}: refusing {kind} {name:?} under {}: it must match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}} and not contain `..`",
        root.display()
    )]
    InvalidName {
        op: &'static str,
        kind: &'static str,
        name: String,
        root: PathBuf,
    },
    /// The version does not exist (never staged, or retired).
    #[error("{op}: certificate {id} has no version {version} (no folder {})", path.display())]
    NoSuchVersion {
        op: &'static str,
        id: String,
        version: VersionId,
        path: PathBuf,
    },
    /// A live target asks for a file the version does not have.
    #[error(
        "{op}: certificate {id} version {version} has no {what} ({} is missing) but a live {what} path is configured; stage the {what} with the version",
        path.display()
    )]
    MissingFile {
        op: &'static str,
        id: String,
        version: VersionId,
        what: &'static str,
        path: PathBuf,
    },
    /// Rollback with nothing to roll back to.
    #[error(
        "rollback: certificate {id} has no previous version recorded in {} (nothing to roll back to)",
        path.display()
    )]
    NoPrevious { id: String, path: PathBuf },
    /// The live paths cannot be installed as given.
    #[error("{op} {}: {reason}", path.display())]
    BadTarget {
        op: &'static str,
        path: PathBuf,
        reason: &'static str,
    },
    /// A crash simulated by a test at a numbered step.
    #[cfg(test)]
    #[error("injected crash at step {step} ({what} {})", path.display())]
    Injected {
        step: u32,
        what: &'static str,
        path: PathBuf,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What to do when the file system refuses a write because it is read-only: under the
/// packaged unit that is `ProtectSystem=strict`, not a full disk or a broken mount.
fn read_only_hint(source: &std::io::Error, path: &Path) -> String {
    if source.kind() != std::io::ErrorKind::ReadOnlyFilesystem {
        return String::new();
    }
    format!(
        " (the folder is read-only for certvaktd: {})",
        read_write_advice(path.parent().unwrap_or(path))
    )
}

/// How an operator lets the packaged service write to `folder`.
pub fn read_write_advice(folder: &Path) -> String {
    format!(
        "under systemd, run `systemctl edit certvakt`, add `[Service]` and \
         `ReadWritePaths={}`, then `systemctl restart certvakt`",
        folder.display()
    )
}

impl LivePaths {
    /// The folders of the live files that exist but that this process may not write to, with
    /// the reason. A folder that does not exist yet is left out: the install makes it.
    pub fn folders_not_writable(&self) -> Vec<(&Path, nix::errno::Errno)> {
        use nix::unistd::{AccessFlags, access};
        let mut folders: Vec<&Path> = self
            .files()
            .into_iter()
            .filter_map(|(_, f)| f.parent())
            .collect();
        folders.sort();
        folders.dedup();
        folders
            .into_iter()
            .filter_map(|folder| match access(folder, AccessFlags::W_OK) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => None,
                Err(err) => Some((folder, err)),
            })
            .collect()
    }
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// A version number of one certificate: 1, 2, 3, … never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionId(pub u64);

impl std::fmt::Display for VersionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The files of one version, as staged and as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFiles {
    /// The private key (PKCS#8 PEM). `None` when the key never leaves a token; a version that
    /// reuses the previous key carries a copy, so every version can be installed on its own.
    pub key_pem: Option<Zeroizing<String>>,
    pub cert_pem: String,
    /// The intermediate certificates, the issuer of `cert_pem` first; may be empty.
    pub chain_pem: String,
    /// A PKCS#12 bundle, already encrypted with the password of the live password file.
    pub pkcs12: Option<Zeroizing<Vec<u8>>>,
    /// A certificate set's other roles, by role (`signing`, …), each in its own folder of
    /// the version; their own `set` is empty. Empty for a single certificate.
    pub set: BTreeMap<String, VersionFiles>,
}

impl VersionFiles {
    /// One certificate's files, with no further roles.
    pub fn single(
        key_pem: Option<Zeroizing<String>>,
        cert_pem: String,
        chain_pem: String,
        pkcs12: Option<Zeroizing<Vec<u8>>>,
    ) -> VersionFiles {
        VersionFiles {
            key_pem,
            cert_pem,
            chain_pem,
            pkcs12,
            set: BTreeMap::new(),
        }
    }
}

/// Where the files of a staged version are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPaths {
    pub dir: PathBuf,
    pub key: Option<PathBuf>,
    pub cert: PathBuf,
    pub chain: PathBuf,
    pub pkcs12: Option<PathBuf>,
}

/// Where a certificate is used: the paths the services read. Only `cert` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivePaths {
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
    pub chain: Option<PathBuf>,
    /// Certificate followed by the chain.
    pub fullchain: Option<PathBuf>,
    /// (bundle path, password file). The password file belongs to the operator and is never
    /// written: the bundle in the version was made with the password it holds.
    pub pkcs12: Option<(PathBuf, PathBuf)>,
    /// (certificate, key): where the certificate and key of the version this install replaces
    /// stay readable, until [`Store::remove_legacy`] at the end of the run. Left alone when
    /// there is no version before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<(PathBuf, PathBuf)>,
    /// A certificate set's other roles, by role, installed with this one (after it, each
    /// key before its certificate).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, LivePaths>,
}

impl LivePaths {
    /// The configured live files with what they are (`key`, `cert`, `chain`, `fullchain`,
    /// `pkcs12`, `legacy-cert`, `legacy-key`; a set's other roles prefixed `signing-cert`, …),
    /// in switch order.
    pub fn files(&self) -> Vec<(String, &Path)> {
        let mut files = self.own_files("");
        for (role, member) in &self.set {
            files.extend(member.own_files(&format!("{role}-")));
        }
        files
    }

    fn own_files(&self, prefix: &str) -> Vec<(String, &Path)> {
        let (legacy_cert, legacy_key) = match &self.legacy {
            Some((cert, key)) => (Some(cert.as_path()), Some(key.as_path())),
            None => (None, None),
        };
        [
            ("key", self.key.as_deref()),
            ("cert", Some(self.cert.as_path())),
            ("chain", self.chain.as_deref()),
            ("fullchain", self.fullchain.as_deref()),
            (
                "pkcs12",
                self.pkcs12.as_ref().map(|(bundle, _)| bundle.as_path()),
            ),
            ("legacy-key", legacy_key),
            ("legacy-cert", legacy_cert),
        ]
        .into_iter()
        .filter_map(|(what, path)| Some((format!("{prefix}{what}"), path?)))
        .collect()
    }
}

/// Owner, group and modes of the live files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ownership {
    /// `None` keeps the daemon's own uid / gid.
    pub owner: Option<u32>,
    pub group: Option<u32>,
    /// Mode of the key and of the PKCS#12 bundle (it holds the key too).
    pub key_mode: u32,
    /// Mode of the certificate, chain and full chain.
    pub cert_mode: u32,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            owner: None,
            group: None,
            key_mode: 0o600,
            cert_mode: 0o644,
        }
    }
}

/// The daemon's state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    certs: PathBuf,
}

impl Store {
    /// Opens the store at `state_dir`, creating it and `certs/` (0750) when missing.
    pub fn open(state_dir: impl Into<PathBuf>) -> Result<Store> {
        let root = state_dir.into();
        atomic::ensure_dir(&root, DIR_MODE)?;
        let certs = root.join("certs");
        atomic::ensure_dir(&certs, DIR_MODE)?;
        Ok(Store { root, certs })
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `certs/<id>`, after checking the id; not created.
    fn cert_dir(&self, op: &'static str, id: &str) -> Result<PathBuf> {
        check_name(op, "certificate id", id, &self.certs)?;
        Ok(self.certs.join(id))
    }

    /// `certs/<id>`, created when missing.
    fn cert_dir_created(&self, op: &'static str, id: &str) -> Result<PathBuf> {
        let dir = self.cert_dir(op, id)?;
        atomic::ensure_dir(&dir, DIR_MODE)?;
        Ok(dir)
    }
}

/// The rule config applies to certificate ids, applied again where ids become paths.
fn check_name(op: &'static str, kind: &'static str, name: &str, root: &Path) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && name.len() <= 64 && !name.contains("..") {
        return Ok(());
    }
    Err(StoreError::InvalidName {
        op,
        kind,
        name: name.to_string(),
        root: root.to_path_buf(),
    })
}
