//! Files dropped into a certificate's inbox (`<state>/certs/<id>/inbox/`), imported as
//! `certvakt import` would.
//!
//! Contract:
//! - Only a regular file whose name does not start with a dot is looked at, and only once it
//!   is quiet: not modified for [`QUIET`], and the same size and modification time as when
//!   first seen so. A file renamed into place whole (written under a dot name first) has been
//!   quiet since it was written and is taken at the first look. A file still being copied in
//!   is left alone, however often the engine wakes for other reasons.
//! - A file that is taken moves to `inbox/imported/`; one that is refused to `inbox/refused/`
//!   beside a `.reason.txt` that says why. Never onto an existing name, and never deleted: a
//!   PKCS#12 from a CA may hold the only copy of its key. A file that cannot be moved is
//!   remembered and not imported again.
//! - A certificate whose steps are in flight keeps its inbox until they end.
//! - Inboxes are read when the watcher saw a change (and at start and after a reload), and
//!   then only the ones still holding files that were not taken: never at every turn.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use super::{Engine, read_password};
use crate::bounded;
use crate::config::ManagedCertificate;

/// How long a file must be unchanged before it is taken.
pub(super) const QUIET: Duration = Duration::from_secs(2);

/// What an inbox file looked like when last looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Settling {
    len: u64,
    modified: Option<SystemTime>,
    /// When it was first seen as it is now.
    since: SystemTime,
}

impl Engine {
    pub(super) async fn watch_inboxes(&self, watcher: &mut crate::watcher::Watcher) {
        let store = self.core.store.clone();
        let ids: Vec<String> = self
            .core
            .config
            .certificates
            .iter()
            .map(|c| c.id.clone())
            .collect();
        // The folders are made (each one durable) on the blocking pool: a reload that adds a
        // thousand certificates would otherwise hold up the loop's thread, and with it the
        // control socket, for a thousand folders.
        let inboxes = super::blocking(move || {
            ids.iter()
                .filter_map(|id| store.inbox(id).ok())
                .map(|dir| dir.join("*"))
                .collect::<Vec<PathBuf>>()
        })
        .await
        .unwrap_or_default();
        watcher.set_paths(inboxes.iter().map(PathBuf::as_path));
    }

    /// Imports the quiet files of every inbox; answers how soon a file that is not quiet yet
    /// may be (the loop wakes then), or `None` when none is settling.
    pub(super) async fn take_inboxes(&mut self) -> Option<Duration> {
        let all = std::mem::take(&mut self.inbox_all);
        let wanted = std::mem::take(&mut self.inbox_ids);
        let certs: Vec<ManagedCertificate> = self
            .core
            .config
            .certificates
            .iter()
            .filter(|c| all || wanted.contains(&c.id))
            .cloned()
            .collect();
        let mut soonest: Option<Duration> = None;
        let mut still_there = std::collections::BTreeSet::new();
        for cert in certs {
            let Ok(inbox) = self.core.store.inbox(&cert.id) else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(&inbox) else {
                continue;
            };
            let mut files: Vec<(PathBuf, std::fs::Metadata)> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
                .filter(|(p, _)| !self.stuck_inbox_files.contains(p))
                .collect();
            files.sort_by(|a, b| a.0.cmp(&b.0));
            for (file, meta) in files {
                still_there.insert(file.clone());
                if let Some(wait) = self.not_quiet(&file, &meta) {
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                    // Looked at again at the next turn (which the wait above brings).
                    self.inbox_ids.insert(cert.id.clone());
                    continue;
                }
                if self.in_flight.contains_key(&cert.id) {
                    // Looked at again when the step is over (its end wakes the loop).
                    self.inbox_ids.insert(cert.id.clone());
                    continue;
                }
                self.settling.remove(&file);
                self.take_file(&cert, &inbox, file).await;
            }
        }
        // Every certificate with a settling file was looked at (it stays in `inbox_ids` until
        // its files are taken), so what was not seen now is gone.
        self.settling.retain(|path, _| still_there.contains(path));
        soonest
    }

    /// `None` when `file` is quiet; otherwise how long until it may be.
    fn not_quiet(&mut self, file: &PathBuf, meta: &std::fs::Metadata) -> Option<Duration> {
        let now = SystemTime::now();
        let modified = meta.modified().ok();
        let quiet_since = modified.map_or(now, |m| m.min(now));
        let looked = Settling {
            len: meta.len(),
            modified,
            since: quiet_since,
        };
        let since = match self.settling.get(file) {
            Some(before) if before.len == looked.len && before.modified == looked.modified => {
                before.since
            }
            _ => {
                self.settling.insert(file.clone(), looked.clone());
                looked.since
            }
        };
        let quiet_for = now.duration_since(since).unwrap_or_default();
        (quiet_for < QUIET).then(|| QUIET - quiet_for + Duration::from_millis(50))
    }

    async fn take_file(
        &mut self,
        cert: &ManagedCertificate,
        inbox: &std::path::Path,
        file: PathBuf,
    ) {
        let bytes = match bounded::read(&file, bounded::CERT_FILE_LIMIT) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) => {
                log::warn!(cert_id = cert.id.as_str(); "inbox: {}", e.sentence(&file));
                return;
            }
        };
        let password = match &cert.pkcs12_password_file {
            Some(path) => read_password(path).ok(),
            None => None,
        };
        let result = self.import(&cert.id, vec![bytes], password).await;
        let name = file
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let (folder, reason) = match &result {
            Ok(message) => {
                log::info!(cert_id = cert.id.as_str(), path = file.display().to_string(); "inbox: {message}");
                ("imported", None)
            }
            Err(e) => ("refused", Some(e.to_string())),
        };
        let target = inbox.join(folder);
        // Never onto an existing name (two downloads called `certificate.p12`): the
        // older may be a CA-made bundle holding the only copy of its key.
        let mut dest = target.join(&name);
        for n in 1.. {
            if !dest.exists() || n > 1000 {
                break;
            }
            let mut numbered = name.clone();
            numbered.push(format!(".{n}"));
            dest = target.join(numbered);
        }
        let moved = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&target)
            .and_then(|()| {
                // It may hold a key: only the daemon reads it from here on.
                std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            })
            .and_then(|()| std::fs::rename(&file, &dest));
        if let Some(reason) = reason {
            let mut reason_file = dest.clone().into_os_string();
            reason_file.push(".reason.txt");
            if let Err(e) = std::fs::write(&reason_file, format!("{reason}\n")) {
                log::warn!(cert_id = cert.id.as_str(); "cannot write {}: {e}", PathBuf::from(&reason_file).display());
            }
        }
        if let Err(e) = moved {
            // Never delete it (a PKCS#12 from a CA may hold the only copy of its
            // key); remember it so it is not imported again and again.
            log::error!(cert_id = cert.id.as_str(), path = file.display().to_string(); "cannot move the file out of the inbox ({e}); move it away by hand");
            self.stuck_inbox_files.insert(file);
        }
    }
}
