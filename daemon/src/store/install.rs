//! Installing a version on the live paths, finishing an interrupted install, rolling back.
//!
//! An install runs in four phases, each durable before the next starts:
//! 1. **prepare**: every new live file is written to its temp beside the target and fsynced.
//!    Missing live folders are created first (mode 0755). If a write fails (disk full,
//!    permission) all temps are removed and the error returned: the old live files were never
//!    touched.
//! 2. **intent**: `install.json` records the version, what becomes previous, the targets and the
//!    ownership. From here on the install is finished, by this call or by [`Store::recover`].
//! 3. **switch**: the temps are renamed into place, key first, then certificate, chain, full
//!    chain, PKCS#12, each directory fsynced after its rename.
//! 4. **record**: `current.json` gets `current = n` and `previous`, then the intent is removed.
//!
//! A live path that is a symlink is replaced by a regular file: the rename replaces the link,
//! never the file it points to.
//!
//! During phase 3 a service could see a new key with the old certificate for the moment between
//! two renames; only a crash there leaves it so, and [`Store::recover`] at start-up redoes the
//! whole install from the version folder (every step is idempotent), so key and certificate end
//! up from one version.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::atomic::{self, FileSpec};
use super::live::{CURRENT_FILE, CurrentRecord, INTENT_FILE, Intent, read_current, read_intent};
use super::versions::{
    KEY_FILE, PKCS12_FILE, read_version_dir, remove_incomplete, version_dir, versions_dir,
};
use super::{
    LivePaths, META_MODE, Ownership, Result, Store, StoreError, VersionFiles, VersionId, fault,
    io_err,
};

/// Mode of a live folder the store creates.
const LIVE_FOLDER_MODE: u32 = 0o755;

/// One live file to write.
struct Planned {
    target: PathBuf,
    bytes: Zeroizing<Vec<u8>>,
    spec: FileSpec,
}

impl Store {
    /// Installs version `n` of certificate `id` on the live paths (see the module docs for the
    /// order). The version live before becomes `previous`; installing the live version again
    /// rewrites its files and keeps `previous` as it is.
    pub fn install(&self, id: &str, n: VersionId, live: &LivePaths, own: &Ownership) -> Result<()> {
        let cert_dir = self.cert_dir("install", id)?;
        let record = read_current(&cert_dir)?;
        let previous = if record.current == Some(n) {
            record.previous
        } else {
            record.current
        };
        self.install_version("install", id, n, live, own, previous)
    }

    /// What installing version `n` writes to each live path, without writing it.
    pub fn live_contents(
        &self,
        id: &str,
        n: VersionId,
        live: &LivePaths,
        own: &Ownership,
    ) -> Result<Vec<(PathBuf, Zeroizing<Vec<u8>>)>> {
        let cert_dir = self.cert_dir("read", id)?;
        let dir = version_dir(&cert_dir, n);
        let previous = read_current(&cert_dir)?
            .previous
            .map(|p| version_dir(&cert_dir, p));
        let plan = plan("read", id, n, &dir, live, own, previous.as_deref())?;
        Ok(plan.into_iter().map(|f| (f.target, f.bytes)).collect())
    }

    /// Installs the previous version and makes the current one previous; returns the version
    /// now live. Refuses when no previous version is recorded.
    pub fn rollback(&self, id: &str, live: &LivePaths, own: &Ownership) -> Result<VersionId> {
        let cert_dir = self.cert_dir("rollback", id)?;
        let record = read_current(&cert_dir)?;
        let Some(previous) = record.previous else {
            return Err(StoreError::NoPrevious {
                id: id.to_string(),
                path: cert_dir.join(CURRENT_FILE),
            });
        };
        self.install_version("rollback", id, previous, live, own, record.current)?;
        log::info!(cert_id = id, version = previous.0; "rolled back to the previous version");
        Ok(previous)
    }

    /// Removes the `legacy` files (the replaced version's certificate and key) of every role,
    /// at the end of a run: the retention they were kept for is over. Returns what was removed.
    pub fn remove_legacy(&self, id: &str, live: &LivePaths) -> Result<Vec<PathBuf>> {
        let removed = remove_legacy_files(live)?;
        for path in &removed {
            log::info!(cert_id = id, path = path.display().to_string(); "removed the legacy certificate or key of the replaced version");
        }
        Ok(removed)
    }

    /// The version live on the paths, as last recorded.
    pub fn current(&self, id: &str) -> Result<Option<VersionId>> {
        Ok(read_current(&self.cert_dir("read current version", id)?)?.current)
    }

    /// The version a rollback would install.
    pub fn previous(&self, id: &str) -> Result<Option<VersionId>> {
        Ok(read_current(&self.cert_dir("read previous version", id)?)?.previous)
    }

    /// Run at start-up for every certificate: removes what a crash left (partial and retiring
    /// version folders, temp files beside the live paths) and finishes an interrupted install.
    /// Returns the version it finished installing, if any.
    ///
    /// An unfinished install is redone with the targets and ownership it recorded, because those
    /// are the files it was switching; `live` and `own` are the configured ones, whose stale
    /// temps are removed as well.
    pub fn recover(
        &self,
        id: &str,
        live: &LivePaths,
        own: &Ownership,
    ) -> Result<Option<VersionId>> {
        let cert_dir = self.cert_dir("recover", id)?;
        if !cert_dir.is_dir() {
            return Ok(None);
        }
        remove_incomplete(&versions_dir(&cert_dir))?;
        remove_own_temps(&cert_dir)?;
        let intent = read_intent(&cert_dir)?;
        remove_stale_temps(live)?;
        let Some(intent) = intent else {
            return Ok(None);
        };
        if intent.targets != *live || intent.ownership != *own {
            log::warn!(cert_id = id, version = intent.version.0; "the interrupted install had other live paths or ownership than configured now; finishing it as it was started");
            remove_stale_temps(&intent.targets)?;
        }
        self.install_version(
            "recover",
            id,
            intent.version,
            &intent.targets,
            &intent.ownership,
            intent.previous,
        )?;
        log::info!(cert_id = id, version = intent.version.0; "finished an install interrupted by a crash");
        Ok(Some(intent.version))
    }

    fn install_version(
        &self,
        op: &'static str,
        id: &str,
        n: VersionId,
        live: &LivePaths,
        own: &Ownership,
        previous: Option<VersionId>,
    ) -> Result<()> {
        let cert_dir = self.cert_dir(op, id)?;
        let dir = version_dir(&cert_dir, n);
        if !dir.is_dir() {
            return Err(StoreError::NoSuchVersion {
                op,
                id: id.to_string(),
                version: n,
                path: dir,
            });
        }
        let previous_dir = previous.map(|p| version_dir(&cert_dir, p));
        let plan = plan(op, id, n, &dir, live, own, previous_dir.as_deref())?;
        create_live_folders(live)?;

        // Phase 1. An error drops `prepared`, which removes every temp written so far.
        let mut prepared = Vec::with_capacity(plan.len());
        for file in &plan {
            prepared.push(atomic::prepare(&file.target, &file.bytes, &file.spec)?);
        }
        drop(plan);

        // Phase 2.
        let intent_path = cert_dir.join(INTENT_FILE);
        let intent = Intent {
            version: n,
            previous,
            targets: live.clone(),
            ownership: own.clone(),
        };
        atomic::write_json(&intent_path, &intent, &FileSpec::mode(META_MODE))?;
        fault::point("install intent recorded", &intent_path)?;

        // Phase 3. On an error the rest of `prepared` is dropped (temps removed); the intent
        // stays, so `recover` finishes the switch.
        for file in prepared {
            let target = file.target().to_path_buf();
            file.commit().inspect_err(|err| {
                log::error!(cert_id = id, version = n.0, error = err.to_string(); "install stopped half way: the live files may be of two versions until `recover` finishes it (at the next start)");
            })?;
            fault::point("live file renamed", &target)?;
        }

        // Phase 4.
        let current_path = cert_dir.join(CURRENT_FILE);
        let record = CurrentRecord {
            current: Some(n),
            previous,
        };
        atomic::write_json(&current_path, &record, &FileSpec::mode(META_MODE))?;
        fault::point("current version recorded", &current_path)?;
        atomic::remove_durably(&intent_path)?;
        fault::point("install intent removed", &intent_path)?;
        log::info!(cert_id = id, version = n.0; "installed on the live paths");
        Ok(())
    }
}

/// The live files, in switch order: key first, so that whenever the new certificate is live its
/// key is too; then a set's other roles the same way. `previous_dir` is the version the install
/// replaces, whose files go to the `legacy` paths.
fn plan(
    op: &'static str,
    id: &str,
    n: VersionId,
    dir: &Path,
    live: &LivePaths,
    own: &Ownership,
    previous_dir: Option<&Path>,
) -> Result<Vec<Planned>> {
    let files = read_version_dir(dir)?;
    // The replaced version (its keys too) is read only when a legacy path wants it.
    let wants_legacy =
        live.legacy.is_some() || live.set.values().any(|member| member.legacy.is_some());
    let previous = match previous_dir.filter(|d| wants_legacy && d.is_dir()) {
        Some(dir) => Some(read_version_dir(dir)?),
        None => None,
    };
    let mut plan = Vec::with_capacity(5);
    let at = Version { op, id, n, dir };
    plan_role(&mut plan, &at, "", &files, previous.as_ref(), live, own)?;
    for (role, member_live) in &live.set {
        let member = files.set.get(role).ok_or_else(|| StoreError::MissingFile {
            op,
            id: id.to_string(),
            version: n,
            what: "certificate of a role of the set",
            path: dir.join(role),
        })?;
        let previous = previous.as_ref().and_then(|p| p.set.get(role));
        plan_role(&mut plan, &at, role, member, previous, member_live, own)?;
    }

    let mut seen = BTreeSet::new();
    for file in &plan {
        if !seen.insert(file.target.as_path()) {
            return Err(StoreError::BadTarget {
                op,
                path: file.target.clone(),
                reason: "the same path is configured for two live files",
            });
        }
    }
    Ok(plan)
}

/// The version a plan is made from, for errors.
struct Version<'a> {
    op: &'static str,
    id: &'a str,
    n: VersionId,
    dir: &'a Path,
}

/// The live files of one certificate (a single one, or one role of a set).
fn plan_role(
    plan: &mut Vec<Planned>,
    at: &Version<'_>,
    role: &str,
    files: &VersionFiles,
    previous: Option<&VersionFiles>,
    live: &LivePaths,
    own: &Ownership,
) -> Result<()> {
    let key_spec = FileSpec {
        mode: own.key_mode,
        owner: own.owner,
        group: own.group,
    };
    let cert_spec = FileSpec {
        mode: own.cert_mode,
        ..key_spec
    };
    let missing = |what: &'static str, name: &str| StoreError::MissingFile {
        op: at.op,
        id: at.id.to_string(),
        version: at.n,
        what,
        path: at.dir.join(role).join(name),
    };
    let public = |target: &Path, text: String| Planned {
        target: target.to_path_buf(),
        bytes: Zeroizing::new(text.into_bytes()),
        spec: cert_spec,
    };
    let secret = |target: &Path, key: &Zeroizing<String>| Planned {
        target: target.to_path_buf(),
        bytes: Zeroizing::new(key.as_bytes().to_vec()),
        spec: key_spec,
    };

    if let Some(target) = &live.key {
        let key = files
            .key_pem
            .as_ref()
            .ok_or_else(|| missing("key", KEY_FILE))?;
        plan.push(secret(target, key));
    }
    plan.push(public(&live.cert, files.cert_pem.clone()));
    if let Some(target) = &live.chain {
        plan.push(public(target, files.chain_pem.clone()));
    }
    if let Some(target) = &live.fullchain {
        let mut full = files.cert_pem.clone();
        if !full.is_empty() && !full.ends_with('\n') {
            full.push('\n');
        }
        full.push_str(&files.chain_pem);
        plan.push(public(target, full));
    }
    if let Some((target, _password_file)) = &live.pkcs12 {
        let bundle = files
            .pkcs12
            .as_ref()
            .ok_or_else(|| missing("PKCS#12 bundle", PKCS12_FILE))?;
        plan.push(Planned {
            target: target.clone(),
            bytes: bundle.clone(),
            spec: key_spec,
        });
    }
    // The replaced version's key and certificate, for a message system still decrypting what
    // was encrypted to it. Without a version before (a first issue) there is nothing to keep.
    if let (Some((cert_target, key_target)), Some(previous)) = (&live.legacy, previous)
        && let Some(key) = &previous.key_pem
    {
        plan.push(secret(key_target, key));
        plan.push(public(cert_target, previous.cert_pem.clone()));
    }
    Ok(())
}

/// Removes the `legacy` files of every role, durably; a file already gone is fine.
fn remove_legacy_files(live: &LivePaths) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let roles = std::iter::once(live).chain(live.set.values());
    for (cert, key) in roles.filter_map(|l| l.legacy.as_ref()) {
        for path in [cert, key] {
            match fs::remove_file(path) {
                Ok(()) => {
                    atomic::fsync_dir(atomic::parent_dir(path))?;
                    removed.push(path.clone());
                }
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(io_err("remove legacy file", path)(err)),
            }
        }
    }
    Ok(removed)
}

/// Creates the folders of live files that do not exist yet (a first issue may name new ones),
/// mode 0755: services must be able to reach their files.
fn create_live_folders(live: &LivePaths) -> Result<()> {
    for (_, target) in live.files().into_iter() {
        if let Some(folder) = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(LIVE_FOLDER_MODE)
                .create(folder)
                .map_err(io_err("create live folder", folder))?;
        }
    }
    Ok(())
}

/// Removes temp files a crash left beside the live paths (they are ours by name).
fn remove_stale_temps(live: &LivePaths) -> Result<()> {
    for (_, target) in live.files().into_iter() {
        if let Some(temp) = atomic::temp_path(target) {
            remove_temp(&temp)?;
        }
    }
    Ok(())
}

/// Removes temp files a crash left beside the store's own files of one certificate.
fn remove_own_temps(cert_dir: &Path) -> Result<()> {
    let read = fs::read_dir(cert_dir).map_err(io_err("list", cert_dir))?;
    for entry in read {
        let entry = entry.map_err(io_err("list", cert_dir))?;
        let path = entry.path();
        if atomic::is_temp_name(&entry.file_name()) {
            remove_temp(&path)?;
        }
    }
    Ok(())
}

fn remove_temp(temp: &Path) -> Result<()> {
    match fs::remove_file(temp) {
        Ok(()) => {
            atomic::fsync_dir(atomic::parent_dir(temp))?;
            log::info!(path = temp.display().to_string(); "removed a temp file left by an interrupted write");
            Ok(())
        }
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_err("remove stale temp file", temp)(err)),
    }
}
