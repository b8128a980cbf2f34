//! The pre-staged key (`key_policy = "prestage"`): the next renewal's key, made right after a
//! renewal completes, so that its hash can be published (DNS TLSA records, an authority's
//! whitelist) before it is used.
//!
//! Contract:
//! - While no run is in progress, a certificate with `prestage` has a next key in
//!   `certs/<id>/next-key.pem` (0600, written atomically): made when there is none, of
//!   `key_type` or else the live key's type. A first issue makes none (there is no live key
//!   to take the type from); its completion does. The record keeps the key's public facts
//!   ([`NextKey`]): shown by `certvakt show`, told by the `key_prestaged` notification. The key
//!   itself is never logged.
//! - When the next run starts, the next key becomes the pending key by one rename: a kill -9
//!   leaves it either still the next key or already the pending key, never lost or made twice.
//!   A next key of another type than the plugin's profile asks for, or one that cannot be
//!   read, is not used: a new key is made, and the run carries a note saying the published
//!   hash no longer fits.
//! - A cancelled run gives the pre-staged key it took back: it is the next key again, and
//!   the hash published for it stays true.
//! - The next key is read without following a symbolic link: one planted in its place is
//!   refused, never taken (a rename would move the link, not a key).
//! - Another policy removes a next key left from `prestage`: it was never in a certificate.

use std::path::Path;

use base64::Engine as _;
use certvakt_plugin_api::profile::KeyAlgorithm;
use sha2::Digest as _;
use zeroize::Zeroizing;

use super::{Core, EngineError, Record};
use crate::bounded;
use crate::config::{KeyPolicy, ManagedCertificate};
use crate::keys::{self, PrivateKey};
use crate::store;

pub use super::run::NextKey;

impl Core {
    /// Brings the certificate's next key in line with its key policy; see the module contract.
    /// A failure is logged, never a reason to hold the renewal back: without a next key the
    /// next renewal makes one as `rotate` does.
    pub(super) async fn keep_next_key(&self, cert: &ManagedCertificate, record: &mut Record) {
        let path = match self.store.next_key_path(&cert.id) {
            Ok(path) => path,
            Err(e) => {
                log::error!(cert_id = cert.id.as_str(); "cannot keep the next key: {e}");
                return;
            }
        };
        let (owned, known) = (cert.clone(), record.next_key.as_deref().cloned());
        match super::blocking(move || next_key_now(&owned, &path, known)).await {
            Ok(Ok(Some(now))) => record.next_key = now.map(Box::new),
            Ok(Ok(None)) => {}
            Ok(Err(e)) | Err(e) => {
                log::error!(cert_id = cert.id.as_str(); "cannot keep the pre-staged next key: {e}");
            }
        }
    }
}

/// The next key's facts as they should be recorded: `None` when the record is right already.
fn next_key_now(
    cert: &ManagedCertificate,
    path: &Path,
    known: Option<NextKey>,
) -> Result<Option<Option<NextKey>>, EngineError> {
    if cert.renewal.key_policy != KeyPolicy::Prestage {
        match std::fs::remove_file(path) {
            Ok(()) => {
                log::info!(cert_id = cert.id.as_str(); "removed the pre-staged next key: key_policy is no longer \"prestage\"");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(EngineError::Other(format!(
                    "cannot remove {}: {e}",
                    path.display()
                )));
            }
        }
        return Ok(known.is_some().then_some(None));
    }
    match bounded::read_no_follow(path, bounded::KEY_FILE_LIMIT) {
        Ok(bytes) => {
            let key = PrivateKey::from_bytes(&Zeroizing::new(bytes)).map_err(|e| {
                EngineError::Other(format!(
                    "the pre-staged key {} cannot be read ({e}); it is not used, and the next renewal makes a new key",
                    path.display()
                ))
            })?;
            let made_at = known.as_ref().map_or_else(crate::now_unix, |k| k.made_at);
            let facts = describe(&key, made_at)?;
            if known.as_ref() == Some(&facts) {
                return Ok(None);
            }
            // Made before a crash that came before the record was saved, or changed by hand.
            let facts = NextKey {
                made_at: crate::now_unix(),
                ..facts
            };
            Ok(Some(Some(facts)))
        }
        Err(e) if e.is_not_found() => {
            let Some(algorithm) = next_algorithm(cert)? else {
                return Ok(known.is_some().then_some(None));
            };
            let key = keys::generate(algorithm)?;
            store::atomic::write_file(
                path,
                key.to_pkcs8_pem().as_bytes(),
                &store::FileSpec::mode(0o600),
            )?;
            let facts = describe(&key, crate::now_unix())?;
            log::info!(
                cert_id = cert.id.as_str(), key_type = algorithm.as_str(), spki_sha256 = facts.spki_sha256.as_str();
                "pre-staged the key of the next renewal"
            );
            Ok(Some(Some(facts)))
        }
        Err(e) => Err(EngineError::Other(format!(
            "cannot read the pre-staged key: {}",
            e.sentence(path)
        ))),
    }
}

/// The next key's type: `key_type`, else the live key's; `None` before there is a live key.
fn next_algorithm(cert: &ManagedCertificate) -> Result<Option<KeyAlgorithm>, EngineError> {
    if let Some(algorithm) = cert.renewal.key_type {
        return Ok(Some(algorithm));
    }
    let Some(live) = &cert.key else {
        return Ok(None);
    };
    match bounded::read(live, bounded::KEY_FILE_LIMIT) {
        Ok(bytes) => Ok(Some(
            PrivateKey::from_bytes(&Zeroizing::new(bytes))?.algorithm(),
        )),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(EngineError::Other(format!(
            "cannot read the live key for its type: {}",
            e.sentence(live)
        ))),
    }
}

/// A key's public facts.
pub fn describe(key: &PrivateKey, made_at: i64) -> Result<NextKey, EngineError> {
    let spki = key.spki_der()?;
    let digest = sha2::Sha256::digest(&spki);
    Ok(NextKey {
        algorithm: key.algorithm(),
        spki_sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        spki: base64::engine::general_purpose::STANDARD.encode(&spki),
        made_at,
    })
}

/// The run's key, when the pre-staged key can be it: renamed to `pending` (one rename, so a
/// crash leaves it in one place or the other). `Err` carries the note for the run when it
/// cannot: the hash published in advance will not fit the new key.
pub(super) fn take(
    cert: &ManagedCertificate,
    pending: &Path,
    wanted: KeyAlgorithm,
) -> Result<PrivateKey, String> {
    let next = pending.with_file_name(store::NEXT_KEY_FILE);
    let not_used = |why: String| {
        log::warn!(cert_id = cert.id.as_str(); "{why}");
        format!(
            "{why}: the hash published for it does not fit the new key; publish the new certificate's key instead (`certvakt show {}`)",
            cert.id
        )
    };
    let bytes = match bounded::read_no_follow(&next, bounded::KEY_FILE_LIMIT) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) => {
            return Err(not_used(format!(
                "no pre-staged key could be used ({}); a new key was made",
                e.sentence(&next)
            )));
        }
    };
    let key = match PrivateKey::from_bytes(&bytes) {
        Ok(key) => key,
        Err(e) => {
            return Err(not_used(format!(
                "the pre-staged key {} cannot be read ({e}); a new key was made",
                next.display()
            )));
        }
    };
    if key.algorithm() != wanted {
        let why = format!(
            "the pre-staged key is {} but the plugin asks for {}; a new key was made",
            key.algorithm().as_str(),
            wanted.as_str()
        );
        // Of no use to any renewal: it was never in a certificate.
        let _ = std::fs::remove_file(&next);
        return Err(not_used(why));
    }
    let renamed = std::fs::rename(&next, pending).map_err(|e| e.to_string());
    let synced = renamed.and_then(|()| {
        pending.parent().map_or(Ok(()), |dir| {
            store::atomic::fsync_dir(dir).map_err(|e| e.to_string())
        })
    });
    if let Err(e) = synced {
        return Err(not_used(format!(
            "the pre-staged key could not become the pending key ({e}); a new key was made"
        )));
    }
    log::info!(cert_id = cert.id.as_str(), key_type = wanted.as_str(); "the pre-staged key is this renewal's key");
    Ok(key)
}

/// After a cancel: the run's pending key becomes the next key again when it is the
/// pre-staged key `next` (one rename); otherwise nothing happens and the cancel removes it.
pub(super) fn give_back(store: &store::Store, id: &str, next: &NextKey) {
    let (Ok(pending), Ok(next_path)) = (store.pending_key_path(id), store.next_key_path(id)) else {
        return;
    };
    if next_path.exists() {
        return;
    }
    let same = bounded::read_no_follow(&pending, bounded::KEY_FILE_LIMIT)
        .ok()
        .and_then(|bytes| PrivateKey::from_bytes(&Zeroizing::new(bytes)).ok())
        .and_then(|key| describe(&key, next.made_at).ok())
        .is_some_and(|facts| facts.spki_sha256 == next.spki_sha256);
    if !same {
        return;
    }
    match std::fs::rename(&pending, &next_path) {
        Ok(()) => {
            if let Some(dir) = next_path.parent() {
                let _ = store::atomic::fsync_dir(dir);
            }
            log::info!(cert_id = id; "the cancelled run's pre-staged key is the next key again");
        }
        Err(e) => {
            log::warn!(cert_id = id; "the cancelled run's pre-staged key cannot be kept for the next renewal ({e}); a new one is made");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn cert() -> ManagedCertificate {
        let origin = Origin {
            file: "/etc/certvakt/certvakt.toml".into(),
            line: 1,
        };
        ManagedCertificate::new("web", "/etc/ssl/web.pem".into(), "manual", origin)
    }

    fn write_key(path: &Path, algorithm: KeyAlgorithm) -> NextKey {
        let key = keys::generate(algorithm).unwrap();
        std::fs::write(path, key.to_pkcs8_pem().as_bytes()).unwrap();
        describe(&key, 0).unwrap()
    }

    #[test]
    fn the_next_key_is_taken_by_one_rename_and_a_damaged_or_unfit_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (next, pending) = (
            dir.path().join(store::NEXT_KEY_FILE),
            dir.path().join("pending-key.pem"),
        );

        // Missing, half-written, a FIFO, a symlink: not used, and the note says the hash does not fit.
        let note = take(&cert(), &pending, KeyAlgorithm::EcP256).unwrap_err();
        assert!(note.contains("no pre-staged key could be used"), "{note}");
        assert!(note.contains("does not fit the new key"), "{note}");
        let whole = keys::generate(KeyAlgorithm::EcP256).unwrap().to_pkcs8_pem();
        std::fs::write(&next, &whole.as_bytes()[..whole.len() / 2]).unwrap();
        let note = take(&cert(), &pending, KeyAlgorithm::EcP256).unwrap_err();
        assert!(note.contains("cannot be read"), "{note}");
        std::fs::remove_file(&next).unwrap();
        nix::unistd::mkfifo(&next, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let note = take(&cert(), &pending, KeyAlgorithm::EcP256).unwrap_err();
        assert!(note.contains("not a regular file"), "{note}");
        std::fs::remove_file(&next).unwrap();
        // A symbolic link to a good key is refused, not followed.
        let elsewhere = dir.path().join("elsewhere.pem");
        write_key(&elsewhere, KeyAlgorithm::EcP256);
        std::os::unix::fs::symlink(&elsewhere, &next).unwrap();
        let note = take(&cert(), &pending, KeyAlgorithm::EcP256).unwrap_err();
        assert!(note.contains("no pre-staged key could be used"), "{note}");
        std::fs::remove_file(&next).unwrap();
        assert!(!pending.exists());

        // Another type than the profile asks for: not used, and removed (it is in no
        // certificate, and would not fit the next renewal either).
        write_key(&next, KeyAlgorithm::EcP384);
        let note = take(&cert(), &pending, KeyAlgorithm::EcP256).unwrap_err();
        assert!(
            note.contains("is ec-p384 but the plugin asks for ec-p256"),
            "{note}"
        );
        assert!(!next.exists() && !pending.exists());

        // The right one becomes the pending key, whole.
        let facts = write_key(&next, KeyAlgorithm::EcP256);
        let key = take(&cert(), &pending, KeyAlgorithm::EcP256).unwrap();
        assert_eq!(describe(&key, 0).unwrap(), facts);
        assert!(!next.exists());
        let again = PrivateKey::from_bytes(&std::fs::read(&pending).unwrap()).unwrap();
        assert_eq!(describe(&again, 0).unwrap(), facts);
    }
}
