//! Noticing changes on disk without polling: inotify on the folders that hold what we watch.
//!
//! Contract:
//! - [`Watcher::set_paths`] takes every path the inventory depends on (managed certificate and
//!   key files, password files, watch patterns and the files they matched) and watches the
//!   folder each lives in, or for a folder that does not exist yet its nearest existing
//!   ancestor, so that creating `/etc/certvakt/fmk/` and then `cert.pem` is noticed.
//! - Watching folders rather than files survives the usual atomic replace (write a temp file,
//!   rename over the old one), which a watch on the old inode would miss.
//! - [`Watcher::changed`] resolves when anything changed in a watched folder; the caller
//!   rescans (cheap: the scanner's cache skips unchanged files). A watcher that could not be
//!   set up degrades to the schedule's safety rescan and says so once in the log.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use futures_core::Stream;
use inotify::{EventStream, Inotify, WatchDescriptor, WatchMask};

/// Folder watches for the inventory.
pub struct Watcher {
    stream: Option<EventStream<Vec<u8>>>,
    watches: HashMap<PathBuf, WatchDescriptor>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("active", &self.stream.is_some())
            .field("folders", &self.watches.len())
            .finish()
    }
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

impl Watcher {
    /// Starts inotify. On failure (no inotify, limits reached) the watcher is inert.
    pub fn new() -> Watcher {
        let stream = Inotify::init().and_then(|i| i.into_event_stream(vec![0u8; 4096]));
        match stream {
            Ok(stream) => Watcher {
                stream: Some(stream),
                watches: HashMap::new(),
            },
            Err(err) => {
                log::warn!(error = err.to_string(); "inotify is unavailable; changes on disk are noticed only by the periodic rescan, SIGHUP or `certvakt reload`");
                Watcher {
                    stream: None,
                    watches: HashMap::new(),
                }
            }
        }
    }

    /// Number of folders watched.
    pub fn folders(&self) -> usize {
        self.watches.len()
    }

    /// Watches the folders that `paths` (files or glob patterns) live in; drops watches no
    /// longer needed. Returns how many folders are newly watched: what changed in them
    /// before now was not seen, so the caller looks again.
    pub fn set_paths<'a>(&mut self, paths: impl IntoIterator<Item = &'a Path>) -> usize {
        let Some(stream) = &self.stream else {
            return 0;
        };
        let wanted: BTreeSet<PathBuf> = paths.into_iter().filter_map(folder_to_watch).collect();
        let mut watches = stream.watches();
        self.watches.retain(|dir, wd| {
            let keep = wanted.contains(dir);
            if !keep {
                let _ = watches.remove(wd.clone());
            }
            keep
        });
        let mut added = 0;
        for dir in wanted {
            if self.watches.contains_key(&dir) {
                continue;
            }
            match watches.add(&dir, mask()) {
                Ok(wd) => {
                    self.watches.insert(dir, wd);
                    added += 1;
                }
                Err(err) => {
                    log::warn!(path = dir.display().to_string(), error = err.to_string(); "cannot watch folder for changes; relying on the periodic rescan for it");
                }
            }
        }
        added
    }

    /// Resolves when something changed in a watched folder. Never resolves when inert.
    pub async fn changed(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return std::future::pending().await;
        };
        let next = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await;
        match next {
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                log::warn!(error = err.to_string(); "reading inotify events failed; watching stops, the periodic rescan goes on");
                self.stream = None;
                self.watches.clear();
            }
            None => {
                self.stream = None;
                self.watches.clear();
            }
        }
    }

    /// Takes every event already queued, so one burst of changes leads to one rescan.
    pub async fn drain_for(&mut self, quiet: std::time::Duration) {
        loop {
            match tokio::time::timeout(quiet, self.changed()).await {
                Ok(()) if self.stream.is_some() => continue,
                _ => return,
            }
        }
    }
}

impl Default for Watcher {
    fn default() -> Self {
        Watcher::new()
    }
}

/// The folder to watch for a file or pattern: its parent with glob components cut off, or
/// the nearest ancestor that exists.
fn folder_to_watch(path: &Path) -> Option<PathBuf> {
    let mut dir = PathBuf::new();
    let parent = path.parent()?;
    for component in parent.components() {
        let text = component.as_os_str().to_string_lossy();
        if text.contains(['*', '?', '[']) {
            break;
        }
        dir.push(component);
    }
    let mut candidate = dir.as_path();
    loop {
        if candidate.is_dir() {
            return Some(candidate.to_path_buf());
        }
        candidate = candidate.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_the_folder_before_any_glob_and_the_nearest_existing_ancestor() {
        let tmp = std::env::temp_dir();
        let pattern = tmp.join("*/certs/*.pem");
        assert_eq!(folder_to_watch(&pattern), Some(tmp.clone()));
        let missing = tmp.join("certvakt-does-not-exist/deeper/cert.pem");
        assert_eq!(folder_to_watch(&missing), Some(tmp.clone()));
        let file = tmp.join("cert.pem");
        assert_eq!(folder_to_watch(&file), Some(tmp));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_new_file_in_a_watched_folder_is_noticed() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("later.pem");
        let mut watcher = Watcher::new();
        watcher.set_paths([target.as_path()]);
        assert_eq!(watcher.folders(), 1);
        std::fs::write(&target, b"x")?;
        let noticed =
            tokio::time::timeout(std::time::Duration::from_secs(5), watcher.changed()).await;
        assert!(noticed.is_ok(), "creating a file was not noticed");
        Ok(())
    }
}
