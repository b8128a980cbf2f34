//! Installing a staged version: what is live and in no version is kept first, the hooks run
//! around the switch, and the live files change together through the store's install intent.
//!
//! Contract:
//! - Before the first install over files certvakt did not write, they become a version of their
//!   own (so rollback goes back to them and the old key is never lost); a configured
//!   `pkcs12` that does not exist yet is made for that version from the pair in use.
//! - Any live file about to be overwritten that is not byte for byte the current version's is
//!   copied (0600) to `replaced/<time>/` first.
//! - A failing pre hook stops the install (the post hook is told); deploy and post hooks are
//!   reported, not returned: by then the live files are what they are.
//! - Live files are read through [`crate::bounded`], on the blocking pool when a step reads
//!   them.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{CertFacts, Core, EngineError, Run, hooks, import, read_password};
use crate::bounded;
use crate::config::ManagedCertificate;
use crate::keys::{self, PrivateKey};
use crate::store::{self, LivePaths, Ownership, VersionFiles};

impl Core {
    pub(super) fn announce(&self, id: &str) {
        if let Some(tx) = &self.installed {
            let _ = tx.send(id.to_owned());
        }
    }

    pub(super) async fn install(
        &self,
        cert: &ManagedCertificate,
        run: &Run,
    ) -> Result<(), EngineError> {
        let Some(version) = run.version else {
            return Err(EngineError::Other("no staged version to install".into()));
        };
        if live_is_pkcs12(cert).await {
            return Err(EngineError::Other(format!(
                "{} is a PKCS#12 bundle, and certvakt writes the certificate as PEM: set `cert` to a PEM path and `pkcs12 = \"{}\"` (with pkcs12_password_file) so both are written",
                cert.cert.display(),
                cert.cert.display()
            )));
        }
        let live = live_paths(cert);
        let own = ownership(cert)?;
        let env = hook_env(cert, run);
        let timeout = hook_timeout(cert);
        let r = &cert.renewal;
        // Before anything runs or changes: what is live and in no version is kept.
        self.adopt_live(cert, &live, &own).await?;
        self.preserve_live(cert, &live, &own)?;
        if let Some(pre) = r.pre_hook.clone() {
            let pre_env = env.clone();
            let pre_result =
                super::blocking(move || hooks::run(hooks::HookKind::Pre, &pre, &pre_env, timeout))
                    .await?;
            if let Err(e) = pre_result {
                // Nothing was installed; the post hook still runs, told so.
                self.after_hook(
                    cert,
                    hooks::HookKind::Post,
                    &r.post_hook,
                    &env,
                    "failure",
                    timeout,
                )
                .await?;
                return Err(e.into());
            }
        }
        let store = self.store.clone();
        let id = cert.id.clone();
        let result = super::blocking(move || store.install(&id, version, &live, &own)).await;
        let ok = matches!(result, Ok(Ok(())));
        if ok {
            log::info!(cert_id = cert.id.as_str(), version = version.0; "new certificate installed");
            self.announce(&cert.id);
            self.after_hook(
                cert,
                hooks::HookKind::Deploy,
                &r.deploy_hook,
                &env,
                "success",
                timeout,
            )
            .await?;
        }
        let outcome = if ok { "success" } else { "failure" };
        self.after_hook(
            cert,
            hooks::HookKind::Post,
            &r.post_hook,
            &env,
            outcome,
            timeout,
        )
        .await?;
        result??;
        Ok(())
    }

    /// Puts the previous version back on the live paths and records it in the history, with
    /// `why` when certvakt did it by itself (then the deploy hook runs again, with
    /// `CERTVAKT_OUTCOME=rollback`, so the service reloads the previous files). Returns the
    /// version live again.
    pub(super) async fn roll_back(
        &self,
        cert: &ManagedCertificate,
        run: Option<&Run>,
        why: Option<String>,
    ) -> Result<store::VersionId, EngineError> {
        let (store, live, own, id) = (
            self.store.clone(),
            live_paths(cert),
            ownership(cert)?,
            cert.id.clone(),
        );
        let version = super::blocking(move || store.rollback(&id, &live, &own)).await??;
        log::warn!(cert_id = cert.id.as_str(), version = version.0; "rolled back to the previous version");
        let entry = super::HistoryEntry {
            run: run.map(|r| r.number),
            outcome: super::Outcome::RolledBack,
            reason: None,
            started_at: None,
            finished_at: crate::now_unix(),
            plugin: Some(cert.plugin.clone()),
            phase: None,
            old_serial: None,
            new_serial: None,
            version: Some(version),
            notes: Vec::new(),
            error: why.clone(),
            tasks: Vec::new(),
        };
        if let Err(e) = self.store.append_history(&cert.id, &entry) {
            log::error!(cert_id = cert.id.as_str(); "rolled back, but the history entry cannot be written: {e}");
        }
        self.announce(&cert.id);
        if let (Some(run), Some(_)) = (run, why) {
            let env = hook_env(cert, run);
            let deploy = &cert.renewal.deploy_hook;
            self.after_hook(
                cert,
                hooks::HookKind::Deploy,
                deploy,
                &env,
                "rollback",
                hook_timeout(cert),
            )
            .await?;
        }
        Ok(version)
    }

    /// Runs a deploy or post hook, if configured. Its failure is reported (journal, metric),
    /// not returned: by then the live files are what they are, and undoing them would be
    /// worse.
    async fn after_hook(
        &self,
        cert: &ManagedCertificate,
        kind: hooks::HookKind,
        argv: &Option<Vec<String>>,
        env: &hooks::HookEnv,
        outcome: &str,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let Some(argv) = argv.clone() else {
            return Ok(());
        };
        let mut env = env.clone();
        env.outcome = outcome.into();
        if let Err(e) = super::blocking(move || hooks::run(kind, &argv, &env, timeout)).await? {
            log::error!(cert_id = cert.id.as_str(); "{e}");
            self.metrics.observe_hook_failure(&cert.id, kind.as_str());
        }
        Ok(())
    }

    /// Keeps a copy (mode 0600, in `certs/<id>/replaced/<time>/`) of every live file an
    /// install is about to overwrite that is not byte for byte the current version's: files
    /// put there by hand, a key without its certificate, a pair swapped in an emergency. The
    /// install may then replace them; nothing that was live is lost.
    fn preserve_live(
        &self,
        cert: &ManagedCertificate,
        live: &LivePaths,
        own: &Ownership,
    ) -> Result<(), EngineError> {
        // A current version that cannot be laid out (its files damaged, the configured live
        // paths changed since) expects nothing: every live file is kept.
        let expected = match self.store.current(&cert.id)? {
            Some(version) => self
                .store
                .live_contents(&cert.id, version, live, own)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let folder = self
            .store
            .state_path(&cert.id)?
            .with_file_name("replaced")
            .join(crate::now_unix().to_string());
        for (what, path) in live.files() {
            let bytes = match bounded::read_no_follow(path, bounded::CERT_FILE_LIMIT) {
                Ok(bytes) => Zeroizing::new(bytes),
                Err(e) if e.is_not_found() => continue,
                // The install replaces the link itself; what it points to is left as it is,
                // so nothing is lost, and nothing is read through it.
                Err(bounded::ReadError::Symlink) => {
                    log::warn!(
                        cert_id = cert.id.as_str(), path = path.display().to_string();
                        "{} is a symbolic link: the install replaces the link with a regular file and leaves what it points to as it is",
                        path.display()
                    );
                    continue;
                }
                Err(e) => {
                    return Err(EngineError::Other(format!(
                        "cannot read {} before replacing it: {}; nothing was changed",
                        path.display(),
                        e
                    )));
                }
            };
            if expected
                .iter()
                .any(|(target, want)| target == path && want[..] == bytes[..])
            {
                continue;
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&folder)
                .map_err(|e| {
                    EngineError::Other(format!("cannot create {}: {e}", folder.display()))
                })?;
            let copy = folder.join(what);
            store::atomic::write_file(&copy, &bytes, &store::FileSpec::mode(0o600))?;
            log::warn!(
                cert_id = cert.id.as_str(), path = path.display().to_string();
                "{} was not written by certvakt; kept a copy at {} before replacing it", path.display(), copy.display()
            );
        }
        Ok(())
    }

    /// Before the first install over files certvakt did not write, keeps them as a version of
    /// their own, so the old pair (or set) can be rolled back to and the old key is never lost.
    async fn adopt_live(
        &self,
        cert: &ManagedCertificate,
        live: &LivePaths,
        own: &Ownership,
    ) -> Result<(), EngineError> {
        if self.store.current(&cert.id)?.is_some() || !cert.cert.exists() {
            return Ok(());
        }
        let primary = InUse {
            cert: &cert.cert,
            key: cert.key.as_ref(),
            chain: cert.renewal.chain.as_ref(),
            pkcs12: &live.pkcs12,
        };
        let Some(mut files) = adopt_role(cert, primary)? else {
            return Ok(());
        };
        for (role, member) in &cert.renewal.set {
            let Some(member_live) = live.set.get(role) else {
                continue;
            };
            let in_use = InUse {
                cert: &member.cert,
                key: member.key.as_ref(),
                chain: member.chain.as_ref(),
                pkcs12: &member_live.pkcs12,
            };
            let Some(member_files) = adopt_role(cert, in_use)? else {
                return Ok(());
            };
            files.set.insert(role.clone(), member_files);
        }
        let version = self.store.stage(&cert.id, &files)?;
        // Installing the adopted version writes the same pair again and makes it `current`,
        // so the new install records it as `previous`.
        let (store, id, live, own) = (
            self.store.clone(),
            cert.id.clone(),
            live.clone(),
            own.clone(),
        );
        super::blocking(move || store.install(&id, version, &live, &own)).await??;
        log::info!(cert_id = cert.id.as_str(), version = version.0; "kept the certificate and key in use before certvakt's first install as a version (rollback goes back to them)");
        Ok(())
    }
}

/// The live certificate's facts, read on the blocking pool: `None` when the file does not
/// exist yet (a first issue), an error when it exists but cannot be read — then nothing is
/// renewed, because replacing a file certvakt cannot read could destroy what a service
/// depends on.
pub(super) async fn read_live(cert: &ManagedCertificate) -> Result<Option<CertFacts>, EngineError> {
    let cert = cert.clone();
    super::blocking(move || read_live_now(&cert)).await?
}

/// [`read_live`] on the calling thread.
fn read_live_now(cert: &ManagedCertificate) -> Result<Option<CertFacts>, EngineError> {
    read_live_file(cert, &cert.cert)
}

/// The live certificates of a set's other roles, by role (a role whose file does not exist
/// yet has none), on the calling thread.
pub(super) fn read_live_members(
    cert: &ManagedCertificate,
) -> Result<std::collections::BTreeMap<String, CertFacts>, EngineError> {
    let mut members = std::collections::BTreeMap::new();
    for (role, member) in &cert.renewal.set {
        if let Some(facts) = read_live_file(cert, &member.cert)? {
            members.insert(role.clone(), facts);
        }
    }
    Ok(members)
}

/// The leaf of one live certificate file of `cert` (PEM, DER, or a PKCS#12 opened with the
/// certificate's password); `None` when the file does not exist.
fn read_live_file(
    cert: &ManagedCertificate,
    path: &std::path::Path,
) -> Result<Option<CertFacts>, EngineError> {
    let unreadable = |why: String| {
        EngineError::Other(format!(
            "the live certificate {} of {} cannot be read ({why}); no renewal starts until it can (fix the file, or move it away for a first issue)",
            path.display(),
            cert.id
        ))
    };
    let bytes = match bounded::read(path, bounded::CERT_FILE_LIMIT) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(unreadable(format!("it {e}"))),
    };
    if let Ok(ders) = keys::parse_certificate_chain(&bytes) {
        let leaf = ders
            .into_iter()
            .next()
            .ok_or_else(|| unreadable("it holds no certificate".into()))?;
        return import::facts(&leaf).map(Some);
    }
    let Some(password_file) = &cert.pkcs12_password_file else {
        return Err(unreadable(
            "it is neither PEM nor DER, and no pkcs12_password_file is configured".into(),
        ));
    };
    let password = read_password(password_file)?;
    let contents = keys::read_pkcs12(&bytes, &password).map_err(|e| unreadable(e.to_string()))?;
    import::facts(&contents.leaf_der).map(Some)
}

/// Whether the live `cert` file is a PKCS#12 bundle (certvakt writes PEM to `cert`; a bundle
/// belongs in `pkcs12`).
async fn live_is_pkcs12(cert: &ManagedCertificate) -> bool {
    let path = cert.cert.clone();
    super::blocking(move || {
        bounded::read(&path, bounded::CERT_FILE_LIMIT)
            .is_ok_and(|bytes| keys::parse_certificate_chain(&bytes).is_err() && !bytes.is_empty())
    })
    .await
    .unwrap_or(false)
}

/// The files of one certificate in use before certvakt's first install.
struct InUse<'a> {
    cert: &'a std::path::Path,
    key: Option<&'a PathBuf>,
    chain: Option<&'a PathBuf>,
    pkcs12: &'a Option<(PathBuf, PathBuf)>,
}

/// One certificate in use (a single one, or a role of a set) as a version's files; `None`
/// (with the reason logged) when it cannot be kept.
fn adopt_role(
    cert: &ManagedCertificate,
    in_use: InUse<'_>,
) -> Result<Option<VersionFiles>, EngineError> {
    // Nothing is read through a link here (what it points to could be any file the
    // daemon may read, and would end up in a version and then in the live folder), and
    // what is read must be what it claims: a certificate, the key that belongs to it.
    let not_kept = |why: String| {
        log::warn!(
            cert_id = cert.id.as_str();
            "kept no version of the pair in use before certvakt's first install: {why}; the install replaces the live files (a link is replaced, what it points to is left as it is), and rollback has nothing to go back to"
        );
        Ok(None)
    };
    let cert_bytes = match bounded::read_no_follow(in_use.cert, bounded::CERT_FILE_LIMIT) {
        Ok(bytes) => bytes,
        Err(e) => return not_kept(e.sentence(in_use.cert)),
    };
    let Ok(ders) = keys::parse_certificate_chain(&cert_bytes) else {
        return not_kept(format!(
            "{} holds no certificate",
            in_use.cert.to_path_buf().display()
        ));
    };
    let Some(leaf) = ders.first() else {
        return not_kept(format!(
            "{} holds no certificate",
            in_use.cert.to_path_buf().display()
        ));
    };
    let key_pem = match in_use.key {
        Some(path) if path.symlink_metadata().is_ok() => {
            let text = match bounded::read_no_follow(path, bounded::KEY_FILE_LIMIT) {
                Ok(bytes) => Zeroizing::new(bytes),
                Err(e) => return not_kept(e.sentence(path)),
            };
            let belongs = PrivateKey::from_bytes(&text)
                .ok()
                .and_then(|key| keys::cert_matches_key(leaf, &key).ok())
                .unwrap_or(false);
            if !belongs {
                return not_kept(format!(
                    "{} is not the key of {}",
                    path.display(),
                    in_use.cert.to_path_buf().display()
                ));
            }
            match String::from_utf8(text.to_vec()) {
                Ok(pem) => Some(Zeroizing::new(pem)),
                Err(_) => return not_kept(format!("{} is not a PEM key", path.display())),
            }
        }
        Some(_) => return Ok(None),
        None => None,
    };
    let bundled = || keys::pem_certificates(ders.get(1..).unwrap_or_default());
    let chain_pem = match in_use.chain {
        Some(chain) if chain.symlink_metadata().is_ok() => {
            match bounded::read_no_follow(chain, bounded::CERT_FILE_LIMIT)
                .ok()
                .filter(|bytes| keys::parse_certificate_chain(bytes).is_ok())
                .and_then(|bytes| String::from_utf8(bytes).ok())
            {
                Some(text) => text,
                None => {
                    log::warn!(
                        cert_id = cert.id.as_str(), path = chain.display().to_string();
                        "{} is a link or not certificates: the kept version uses the chain in {} instead",
                        chain.display(),
                        in_use.cert.to_path_buf().display()
                    );
                    bundled()
                }
            }
        }
        _ => bundled(),
    };
    let made_from_pair =
        |password_file: &std::path::Path| -> Result<Option<Zeroizing<Vec<u8>>>, EngineError> {
            let Some(key_pem) = &key_pem else {
                return Ok(None);
            };
            let key = PrivateKey::from_bytes(key_pem.as_bytes())?;
            let password = read_password(password_file)?;
            Ok(Some(keys::write_pkcs12(
                &key,
                leaf,
                ders.get(1..).unwrap_or_default(),
                &password,
                &cert.id,
            )?))
        };
    let pkcs12 = match in_use.pkcs12 {
        // A bundle in use is kept as it is when it is what it claims: this certificate,
        // opened with the configured password. Otherwise (a link, another certificate, or
        // no bundle yet: the first renewal that writes one) the version gets one made from
        // the pair in use, so it can be installed and rolled back to like any other.
        Some((bundle, password_file)) => {
            let own = bounded::read_no_follow(bundle, bounded::CERT_FILE_LIMIT)
                .ok()
                .filter(|bytes| {
                    read_password(password_file)
                        .ok()
                        .and_then(|password| keys::read_pkcs12(bytes, &password).ok())
                        .is_some_and(|contents| contents.leaf_der == *leaf)
                })
                .map(Zeroizing::new);
            match own {
                Some(bytes) => Some(bytes),
                None => match made_from_pair(password_file)? {
                    Some(bytes) => Some(bytes),
                    None => return Ok(None),
                },
            }
        }
        None => None,
    };
    Ok(Some(VersionFiles::single(
        key_pem,
        keys::pem_certificates(std::slice::from_ref(leaf)),
        chain_pem,
        pkcs12,
    )))
}

pub(super) fn live_paths(cert: &ManagedCertificate) -> LivePaths {
    let r = &cert.renewal;
    let password = &cert.pkcs12_password_file;
    LivePaths {
        cert: cert.cert.clone(),
        key: cert.key.clone(),
        chain: r.chain.clone(),
        fullchain: r.fullchain.clone(),
        pkcs12: r.pkcs12.clone().zip(password.clone()),
        legacy: r.legacy_cert.clone().zip(r.legacy_key.clone()),
        set: r
            .set
            .iter()
            .map(|(role, m)| {
                let paths = LivePaths {
                    cert: m.cert.clone(),
                    key: m.key.clone(),
                    chain: m.chain.clone(),
                    fullchain: m.fullchain.clone(),
                    pkcs12: m.pkcs12.clone().zip(password.clone()),
                    legacy: m.legacy_cert.clone().zip(m.legacy_key.clone()),
                    set: Default::default(),
                };
                (role.clone(), paths)
            })
            .collect(),
    }
}

pub(super) fn ownership(cert: &ManagedCertificate) -> Result<Ownership, EngineError> {
    let r = &cert.renewal;
    let owner = match &r.owner {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    EngineError::Other(format!("owner `{name}` of {} does not exist", cert.id))
                })?
                .uid
                .as_raw(),
        ),
        None => None,
    };
    let group = match &r.group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    EngineError::Other(format!("group `{name}` of {} does not exist", cert.id))
                })?
                .gid
                .as_raw(),
        ),
        None => None,
    };
    Ok(Ownership {
        owner,
        group,
        key_mode: r.key_mode,
        cert_mode: r.cert_mode,
    })
}

/// What the hooks of `run`'s install are told.
fn hook_env(cert: &ManagedCertificate, run: &Run) -> hooks::HookEnv {
    hooks::HookEnv {
        cert_id: cert.id.clone(),
        cert: cert.cert.display().to_string(),
        key: cert
            .key
            .as_ref()
            .map(|k| k.display().to_string())
            .unwrap_or_default(),
        chain: path_text(&cert.renewal.chain),
        fullchain: path_text(&cert.renewal.fullchain),
        old_serial: run
            .old
            .as_ref()
            .map(|o| o.serial.clone())
            .unwrap_or_default(),
        new_serial: run
            .new
            .as_ref()
            .map(|n| n.serial.clone())
            .unwrap_or_default(),
        outcome: String::new(),
        extra: Vec::new(),
    }
}

fn hook_timeout(cert: &ManagedCertificate) -> Duration {
    Duration::from_secs(cert.renewal.hook_timeout.as_secs().max(1))
}

fn path_text(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}
