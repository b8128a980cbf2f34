//! Atomic file replacement: a file is either the old one or the new one, never a mixture, never
//! missing, and never readable by more people than its final mode allows.
//!
//! Contract of [`write_file`]:
//! 1. the temp file `.<name>.certvakt-tmp` is created beside the target with `O_CREAT|O_EXCL`
//!    (a planted file or symlink is never followed) and with the final mode in the `open` call,
//!    so the umask can only narrow it; owner and group are set and the mode is made exact with
//!    `fchown`/`fchmod` *before* the first byte is written, so the content only ever exists
//!    with its final owner, group and mode;
//! 2. the bytes are written and fsynced;
//! 3. the temp is renamed over the target and the directory is fsynced.
//!
//! On any error before the rename the temp file is removed and the target is untouched. The
//! temp name is fixed per target, so a temp left by a crash is found and replaced by the next
//! write (the store has one writer, the daemon).
//!
//! [`read_json`] never guesses: a file that does not parse is an error naming file, line and
//! column, and the file stays as it is.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Result, StoreError, fault, io_err};

/// Mode and ownership a file gets. `None` keeps the writer's own uid / gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl FileSpec {
    /// A file owned by the daemon with this mode.
    pub fn mode(mode: u32) -> FileSpec {
        FileSpec {
            mode,
            owner: None,
            group: None,
        }
    }
}

/// Replaces `path` with `bytes` atomically (see the module docs).
pub fn write_file(path: &Path, bytes: &[u8], spec: &FileSpec) -> Result<()> {
    prepare(path, bytes, spec)?.commit()
}

/// Replaces `path` with `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T, spec: &FileSpec) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Serialize {
        op: "write",
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_file(path, &bytes, spec)
}

/// Reads a JSON file. A missing file is a [`StoreError::Io`] whose source is `NotFound`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::Parse {
        op: "read",
        path: path.to_path_buf(),
        line: source.line(),
        column: source.column(),
        source,
    })
}

/// [`read_json`], with a missing file as `None`.
pub(crate) fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match read_json(path) {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

const TEMP_SUFFIX: &str = ".certvakt-tmp";

/// The fixed temp name beside `target`, or `None` when `target` has no file name.
pub(crate) fn temp_path(target: &Path) -> Option<PathBuf> {
    let name = target.file_name()?;
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(TEMP_SUFFIX);
    Some(parent_dir(target).join(temp))
}

/// Whether a file name is one of [`temp_path`]'s.
pub(crate) fn is_temp_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > 1 + TEMP_SUFFIX.len()
        && bytes.starts_with(b".")
        && bytes.ends_with(TEMP_SUFFIX.as_bytes())
}

/// The folder a path lives in; `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A temp file written and fsynced beside its target, waiting for [`Prepared::commit`].
/// Dropped uncommitted, it removes the temp: the target was never touched.
#[derive(Debug)]
pub(crate) struct Prepared {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

/// Steps 1 and 2 of [`write_file`]: the temp beside `target`, complete and on disk.
pub(crate) fn prepare(target: &Path, bytes: &[u8], spec: &FileSpec) -> Result<Prepared> {
    let temp = temp_path(target).ok_or_else(|| StoreError::BadTarget {
        op: "write",
        path: target.to_path_buf(),
        reason: "not a file path (no file name)",
    })?;
    let mut file = match create_excl(&temp, spec.mode) {
        // Left by a crash of an earlier write of the same target: ours by name, replace it.
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            fs::remove_file(&temp).map_err(io_err("remove stale temp file", &temp))?;
            create_excl(&temp, spec.mode)
        }
        other => other,
    }
    .map_err(io_err("create temp file", &temp))?;
    // From here on the temp exists: dropping `prepared` on an error removes it.
    let prepared = Prepared {
        target: target.to_path_buf(),
        temp,
        committed: false,
    };
    fault::temp_created(&prepared.temp);
    if spec.owner.is_some() || spec.group.is_some() {
        std::os::unix::fs::fchown(&file, spec.owner, spec.group)
            .map_err(io_err("chown temp file", &prepared.temp))?;
    }
    // The umask may have narrowed the mode in open(); fchmod is not subject to it.
    file.set_permissions(Permissions::from_mode(spec.mode))
        .map_err(io_err("chmod temp file", &prepared.temp))?;
    file.write_all(bytes)
        .map_err(io_err("write temp file", &prepared.temp))?;
    file.sync_all()
        .map_err(io_err("fsync temp file", &prepared.temp))?;
    drop(file);
    fault::point("temp file written", &prepared.temp)?;
    Ok(prepared)
}

impl Prepared {
    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    /// Step 3 of [`write_file`]: rename over the target, fsync the directory.
    pub(crate) fn commit(mut self) -> Result<()> {
        fs::rename(&self.temp, &self.target).map_err(io_err("rename into place", &self.target))?;
        self.committed = true;
        fsync_dir(parent_dir(&self.target))
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.committed || fault::crashed() {
            return;
        }
        if let Err(err) = fs::remove_file(&self.temp)
            && err.kind() != ErrorKind::NotFound
        {
            log::warn!(path = self.temp.display().to_string(), error = err.to_string(); "cannot remove temp file after a failed write; it is replaced by the next write");
        }
    }
}

fn create_excl(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Makes a rename or a new entry in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Creates `dir` and any missing parents with `mode` (exact, whatever the umask), each new entry
/// made durable in its parent. An existing folder is left as it is: its mode is the operator's.
pub(crate) fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        ensure_dir(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        // Another thread (or the operator) made it meanwhile: fine.
        Err(err) if err.kind() == ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(err) => return Err(io_err("create directory", dir)(err)),
    }
    fs::set_permissions(dir, Permissions::from_mode(mode))
        .map_err(io_err("chmod directory", dir))?;
    fsync_dir(parent_dir(dir))
}

/// Removes a file and makes the removal durable; a missing file is fine.
pub(crate) fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fsync_dir(parent_dir(path)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_err("remove", path)(err)),
    }
}
