//! The renewal engine's state file, the audit history, and the folders for operator tasks,
//! imports and plugin state.
//!
//! - `state.json` is replaced atomically on every save: the engine writes "about to do X" before
//!   acting and "X done" after, and after a crash reads back exactly one of the two.
//! - `history.jsonl` is append only: one JSON object per line, written with `O_APPEND` in one
//!   `write` and fsynced before [`Store::append_history`] returns. A line cut short by a crash
//!   (no newline at the end) is skipped when reading and cut off before the next append, so it
//!   can never glue itself to the next record. Any other line that does not parse is an error
//!   naming file and line.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::atomic::{self, FileSpec};
use super::{DIR_MODE, META_MODE, Result, Store, StoreError, check_name, io_err};

const STATE_FILE: &str = "state.json";
const HISTORY_FILE: &str = "history.jsonl";
const PENDING_KEY_FILE: &str = "pending-key.pem";
/// The key made in advance for the next renewal (`key_policy = "prestage"`), beside the
/// pending key so that taking it is one rename.
pub const NEXT_KEY_FILE: &str = "next-key.pem";
const OUTBOX_DIR: &str = "outbox";
const INBOX_DIR: &str = "inbox";
const PLUGINS_DIR: &str = "plugins";

/// How far back a torn history line is searched for per read.
const TAIL_CHUNK: u64 = 4096;

impl Store {
    /// `certs/<id>/state.json`.
    pub fn state_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.cert_dir("find state", id)?.join(STATE_FILE))
    }

    /// The engine's state of certificate `id`; `None` before the first save.
    pub fn load_state<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>> {
        atomic::read_json_opt(&self.state_path(id)?)
    }

    /// Replaces the engine's state of certificate `id` atomically.
    pub fn save_state<T: Serialize + ?Sized>(&self, id: &str, state: &T) -> Result<()> {
        let dir = self.cert_dir_created("save state", id)?;
        atomic::write_json(&dir.join(STATE_FILE), state, &FileSpec::mode(META_MODE))
    }

    /// Appends one record to the audit history of certificate `id`; it is on disk on return.
    pub fn append_history<T: Serialize + ?Sized>(&self, id: &str, record: &T) -> Result<()> {
        let dir = self.cert_dir_created("append history", id)?;
        let path = dir.join(HISTORY_FILE);
        // Compact JSON escapes newlines inside strings: one record is one line.
        let mut line = serde_json::to_vec(record).map_err(|source| StoreError::Serialize {
            op: "append history",
            path: path.clone(),
            source,
        })?;
        line.push(b'\n');
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(META_MODE)
            .open(&path)
            .map_err(io_err("open history", &path))?;
        cut_torn_tail(&file, &path)?;
        file.write_all(&line)
            .map_err(io_err("append history", &path))?;
        file.sync_data().map_err(io_err("fsync history", &path))?;
        if !existed {
            atomic::fsync_dir(&dir)?;
        }
        Ok(())
    }

    /// The last `last_n` records of the audit history of certificate `id`, oldest first.
    pub fn read_history<T: DeserializeOwned>(&self, id: &str, last_n: usize) -> Result<Vec<T>> {
        let path = self.cert_dir("read history", id)?.join(HISTORY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_err("read history", &path)(err)),
        };
        // A torn last line (crash mid-append) holds no whole record: skip it.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        let lines: Vec<&str> = complete.lines().collect();
        let first = lines.len().saturating_sub(last_n);
        lines[first..]
            .iter()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|source| StoreError::Parse {
                    op: "read history",
                    path: path.clone(),
                    line: first + i + 1,
                    column: source.column(),
                    source,
                })
            })
            .collect()
    }

    /// `certs/<id>/outbox/`: operator tasks and the files they need. Created (0750) on demand.
    pub fn outbox(&self, id: &str) -> Result<PathBuf> {
        self.cert_subdir("open outbox", id, OUTBOX_DIR)
    }

    /// `certs/<id>/inbox/`: issued certificates dropped in or imported. Created (0750) on demand.
    pub fn inbox(&self, id: &str) -> Result<PathBuf> {
        self.cert_subdir("open inbox", id, INBOX_DIR)
    }

    /// `certs/<id>/pending-key.pem`: the key of a renewal in progress, written (0600) before
    /// the CSR is made and kept until the run that made it is finished or abandoned, so a crash
    /// between "key generated" and "key installed" never loses it.
    pub fn pending_key_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self
            .cert_dir_created("find pending key", id)?
            .join(PENDING_KEY_FILE))
    }

    /// `certs/<id>/next-key.pem`: the pre-staged key of the next renewal (0600), made right
    /// after a renewal completes and renamed to the pending key when the next one starts.
    pub fn next_key_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self
            .cert_dir_created("find the next key", id)?
            .join(NEXT_KEY_FILE))
    }

    /// The pending keys of certificate `id` that exist: `pending-key.pem` and a set's or an
    /// earlier order's `pending-key.*.pem`. Creates nothing.
    pub fn pending_keys(&self, id: &str) -> Result<Vec<PathBuf>> {
        let dir = self.cert_dir("find pending keys", id)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_err("list pending keys", &dir)(err)),
        };
        let mut keys: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name == PENDING_KEY_FILE
                    || (name.starts_with("pending-key.") && name.ends_with(".pem"))
            })
            .map(|e| e.path())
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Removes every pending key of certificate `id` (see [`Store::pending_keys`]), and makes
    /// the removal durable. Call it only after the state that no longer needs them is on disk.
    pub fn remove_pending_keys(&self, id: &str) -> Result<Vec<PathBuf>> {
        let keys = self.pending_keys(id)?;
        for key in &keys {
            match fs::remove_file(key) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(io_err("remove pending key", key)(err)),
            }
        }
        if !keys.is_empty() {
            atomic::fsync_dir(&self.cert_dir("remove pending keys", id)?)?;
        }
        Ok(keys)
    }

    /// Removes the engine's state of certificate `id` (durably); the history stays.
    pub fn remove_state(&self, id: &str) -> Result<()> {
        let dir = self.cert_dir("remove state", id)?;
        let path = dir.join(STATE_FILE);
        match fs::remove_file(&path) {
            Ok(()) => atomic::fsync_dir(&dir),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_err("remove state", &path)(err)),
        }
    }

    /// The ids that have a folder under `certs/` (configured or not), sorted.
    pub fn cert_ids(&self) -> Result<Vec<String>> {
        let entries =
            fs::read_dir(&self.certs).map_err(io_err("list certificates", &self.certs))?;
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| check_name("list certificates", "certificate id", id, &self.certs).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// `plugins/<plugin>/`: the plugin's own state. Created (0750) on demand.
    pub fn plugin_state_dir(&self, plugin: &str) -> Result<PathBuf> {
        let plugins = self.root.join(PLUGINS_DIR);
        check_name("open plugin state", "plugin name", plugin, &plugins)?;
        let dir = plugins.join(plugin);
        atomic::ensure_dir(&dir, DIR_MODE)?;
        Ok(dir)
    }

    fn cert_subdir(&self, op: &'static str, id: &str, name: &str) -> Result<PathBuf> {
        let dir = self.cert_dir_created(op, id)?.join(name);
        atomic::ensure_dir(&dir, DIR_MODE)?;
        Ok(dir)
    }
}

/// Cuts a line left without its newline by a crash, so the next record starts on its own line.
fn cut_torn_tail(file: &File, path: &Path) -> Result<()> {
    let len = file.metadata().map_err(io_err("stat history", path))?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)
        .map_err(io_err("read history", path))?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut end = len;
    let keep = loop {
        let start = end.saturating_sub(TAIL_CHUNK);
        let mut chunk = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        file.read_exact_at(&mut chunk, start)
            .map_err(io_err("read history", path))?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            break start + pos as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    log::warn!(path = path.display().to_string(), bytes = len - keep; "history ends in a record cut short by a crash; removing the fragment");
    file.set_len(keep)
        .map_err(io_err("truncate torn history line", path))?;
    file.sync_data().map_err(io_err("fsync history", path))
}
