//! A run's key and CSR, and accepting an issued chain.
//!
//! Contract:
//! - The pending key is made once per run (0600, written before anything is asked of a CA) and
//!   read again after a crash; with `key_policy = "reuse"` it is the live key.
//! - An issued chain is staged as a new version only after [`super::import::check_chain`]
//!   passed (the key, validity, organisation, requested usages, `issuer_trust`). A key the CA
//!   made becomes the pending key only once its chain is staged; the key of the order that was
//!   with the CA is kept beside it, never overwritten, until the run is over.
//! - Accepting runs on the blocking pool: it reads files, checks signatures and may build a
//!   PKCS#12 bundle (slow by design), none of which may stall the runtime thread.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::cert_services::CertServices;
use super::import::Imported;
use super::{CertFacts, Core, EngineError, Phase, Requested, Run, import, read_password, set};
use crate::bounded;
use crate::config::{Config, KeyPolicy, ManagedCertificate, PRIMARY_ROLE};
use crate::keys::{self, PrivateKey};
use crate::plugin_host::{LoadedPlugin, TrustFiles, TrustSource as _};
use crate::store::{self, Store, VersionFiles};

impl Core {
    /// The pending key (made once, kept across crashes) and the CSR for it; for a
    /// certificate set, one per role, each from the plugin's profile for that role.
    pub(super) async fn make_key_and_csr(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
        run: &mut Run,
        current: Option<&CertFacts>,
        services: &Arc<CertServices>,
    ) -> Result<(), EngineError> {
        let roles = cert.roles();
        let mut csrs = std::collections::BTreeMap::new();
        for role in roles
            .iter()
            .map(Some)
            .chain(roles.is_empty().then_some(None))
        {
            let mut context = self.context(cert, current);
            context.role = role.cloned();
            let mut profile = plugin
                .csr_profile(context, services.clone(), self.deadline)
                .await?;
            if let Some(key_type) = cert.renewal.key_type {
                profile.key = key_type;
            }
            let (pending, live) = match role {
                Some(role) if role != PRIMARY_ROLE => (
                    pending_role_key_path(&self.store, &cert.id, role)?,
                    cert.renewal.set.get(role).and_then(|m| m.key.clone()),
                ),
                _ => (self.store.pending_key_path(&cert.id)?, cert.key.clone()),
            };
            let cert = cert.clone();
            // Reading or making the key (RSA takes a while), writing it with its fsyncs, and
            // the CSR's signature: all off the runtime thread.
            let (profile, csr, note) = super::blocking(move || {
                pending_key_and_csr(&cert, &pending, live.as_deref(), profile)
            })
            .await??;
            run.notes.extend(note);
            csrs.insert(role.cloned().unwrap_or_default(), (profile, csr));
        }
        let primary = if roles.is_empty() { "" } else { PRIMARY_ROLE };
        let Some((profile, csr)) = csrs.remove(primary) else {
            return Err(EngineError::Other(
                "no CSR was made for the certificate".into(),
            ));
        };
        run.csr_pem = Some(csr.pem);
        run.requested = Some(Requested {
            key: profile.key,
            key_usage: profile.key_usage.clone(),
        });
        for (role, (profile, csr)) in csrs {
            run.csr_set.insert(role.clone(), csr.pem);
            run.requested_set.insert(
                role,
                Requested {
                    key: profile.key,
                    key_usage: profile.key_usage.clone(),
                },
            );
        }
        Ok(())
    }

    /// [`accept_issued`] on the blocking pool; `run` is updated only when it succeeds.
    pub(super) async fn accept_issued_now(
        &self,
        cert: &ManagedCertificate,
        run: &mut Run,
        delivered: Vec<Imported>,
    ) -> Result<(), EngineError> {
        let (store, config, cert) = (self.store.clone(), self.config.clone(), cert.clone());
        let mut staged = run.clone();
        let (result, staged) = super::blocking(move || {
            let result = if cert.roles().is_empty() {
                accept_single(&store, &config, &cert, &mut staged, delivered)
            } else {
                accept_set(&store, &config, &cert, &mut staged, delivered)
            };
            (result, staged)
        })
        .await?;
        result?;
        *run = staged;
        Ok(())
    }
}

/// One delivered certificate for a single-certificate entry: [`accept_issued`].
fn accept_single(
    store: &Store,
    config: &Config,
    cert: &ManagedCertificate,
    run: &mut Run,
    delivered: Vec<Imported>,
) -> Result<(), EngineError> {
    let mut delivered = delivered.into_iter();
    let (Some(item), None) = (delivered.next(), delivered.next()) else {
        return Err(EngineError::Import(format!(
            "{} is a single certificate: import one file (its certificate, or the PKCS#12 the CA made)",
            cert.id
        )));
    };
    accept_issued(store, config, cert, run, &item.chain_pem, item.key)
}

/// Checks the certificates of a set, one per role, each against the key that came with it
/// and the certificate of its role it replaces, and stages them as one version.
fn accept_set(
    store: &Store,
    config: &Config,
    cert: &ManagedCertificate,
    run: &mut Run,
    delivered: Vec<Imported>,
) -> Result<(), EngineError> {
    let roles = cert.roles();
    if run.old_set.is_empty() && run.old.is_some() {
        // The set in use now: the install has not happened yet, so it is what the run
        // replaces.
        run.old_set = super::install::read_live_members(cert)?;
    }
    // Certificates for certvakt's own keys (a CSR per role) go to the role whose pending key
    // they belong to; those the CA made keys for, to the role their key usage fits.
    let mut pending = pending_set_keys(store, cert, &roles)?;
    let mut taken: std::collections::BTreeMap<String, (Vec<u8>, PrivateKey, bool)> =
        std::collections::BTreeMap::new();
    let mut from_ca = Vec::new();
    let mut described = Vec::new();
    for (n, item) in delivered.into_iter().enumerate() {
        let ders = keys::parse_certificate_chain(&item.chain_pem)?;
        let Some(key) = item.key else {
            let mut owner = None;
            'roles: for (at, (_, key)) in pending.iter().enumerate() {
                for der in &ders {
                    if keys::cert_matches_key(der, key)? {
                        owner = Some(at);
                        break 'roles;
                    }
                }
            }
            // A role's key is taken by its first file: a second file for it matches no key.
            let Some(at) = owner else {
                return Err(EngineError::Import(format!(
                    "file {} holds certificates but no key, and none of them belongs to a pending key of the set {} not already matched by another file: import the PKCS#12 files the CA made (each with its key, `--password-file FILE`), or the certificates issued for the CSRs of this renewal's task, one per role",
                    n + 1,
                    cert.id
                )));
            };
            let (role, key) = pending.swap_remove(at);
            taken.insert(role, (item.chain_pem, key, false));
            continue;
        };
        let mut leaf = None;
        for der in &ders {
            if keys::cert_matches_key(der, &key)? {
                leaf = Some(der);
                break;
            }
        }
        let Some(leaf) = leaf else {
            return Err(EngineError::Import(format!(
                "file {} holds a key, but none of its {} certificate(s) belongs to it: the file is not as the CA made it",
                n + 1,
                ders.len()
            )));
        };
        described.push(set::Delivered {
            serial: import::facts(leaf)?.serial,
            usages: set::Usages::of(leaf),
        });
        from_ca.push(Some((item.chain_pem, key)));
    }
    let open: Vec<String> = roles
        .iter()
        .filter(|r| !taken.contains_key(*r))
        .cloned()
        .collect();
    if !open.is_empty() || !described.is_empty() {
        let order = set::assign(&cert.id, &open, &described)?;
        for (role, i) in open.iter().zip(order) {
            let Some((chain, key)) = from_ca.get_mut(i).and_then(Option::take) else {
                return Err(EngineError::Other(format!(
                    "certificate {} of the set was given two roles",
                    i + 1
                )));
            };
            taken.insert(role.clone(), (chain, key, true));
        }
    }
    let trust = issuer_trust(config, cert)?;
    let now = crate::now_unix();
    let password = match &cert.pkcs12_password_file {
        Some(file) => Some(read_password(file)?),
        None => None,
    };
    let mut primary = None;
    let mut member_files = std::collections::BTreeMap::new();
    let mut member_facts = std::collections::BTreeMap::new();
    let mut notes = Vec::new();
    let mut primary_from_ca = false;
    for role in &roles {
        let Some((chain, key, key_from_ca)) = taken.remove(role) else {
            return Err(EngineError::Import(format!(
                "no certificate for the {role} role of {} came",
                cert.id
            )));
        };
        let requested = if role == PRIMARY_ROLE {
            primary_from_ca = key_from_ca;
            run.requested.as_ref()
        } else {
            run.requested_set.get(role)
        };
        let (old, pkcs12_out) = if role == PRIMARY_ROLE {
            (run.old.as_ref(), cert.renewal.pkcs12.is_some())
        } else {
            let member = cert.renewal.set.get(role);
            (
                run.old_set.get(role),
                member.is_some_and(|m| m.pkcs12.is_some()),
            )
        };
        // A key the CA made is held to the plugin's profile by the plugin (check_issued):
        // the CSR's profile is not what the CA was asked for then.
        let expect = import::Expect {
            trust: trust.as_ref(),
            requested: requested.filter(|_| !key_from_ca),
            key_from_ca,
        };
        let checked = import::check_chain(cert, &chain, &key, old, expect, now)?;
        let bundle = password
            .as_deref()
            .filter(|_| pkcs12_out)
            .map(|p| (p.as_str(), format!("{}-{role}", cert.id)));
        let files = version_files(&key, &checked, bundle)?;
        notes.extend(checked.notes.iter().cloned());
        if role == PRIMARY_ROLE {
            primary = Some((files, checked, key));
        } else {
            member_files.insert(role.clone(), files);
            member_facts.insert(role.clone(), checked.facts);
        }
    }
    let Some((mut files, checked, key)) = primary else {
        return Err(EngineError::Other(
            "the set has no primary certificate".into(),
        ));
    };
    files.set = member_files;
    for note in &notes {
        log::warn!(cert_id = cert.id.as_str(); "{note}");
    }
    let version = store.stage(&cert.id, &files)?;
    if primary_from_ca {
        keep_key_from_ca(store, cert, &key)?;
    }
    log::info!(cert_id = cert.id.as_str(), serial = checked.facts.serial.as_str(), version = version.0, roles = roles.join(","); "new certificate set issued and staged");
    run.chain_pem = Some(keys::pem_certificates(&checked.chain_der));
    run.new = Some(checked.facts);
    run.new_set = member_facts;
    run.version = Some(version);
    run.notes = notes;
    run.plugin_checked = false;
    run.set_phase(Phase::Issued, now);
    Ok(())
}

/// Reads the pending key at `pending` (a renewal that crashed made it already), or makes it —
/// from the live key `live` with `key_policy = "reuse"`, the pre-staged key with `prestage` —
/// and writes it (0600) before anything is asked of a CA; then the CSR for it, and a note for
/// the run when a pre-staged key could not be used.
fn pending_key_and_csr(
    cert: &ManagedCertificate,
    pending: &std::path::Path,
    live: Option<&std::path::Path>,
    mut profile: certvakt_plugin_api::profile::CsrProfile,
) -> Result<
    (
        certvakt_plugin_api::profile::CsrProfile,
        keys::Csr,
        Option<String>,
    ),
    EngineError,
> {
    let mut note = None;
    let key = match bounded::read(pending, bounded::KEY_FILE_LIMIT) {
        Ok(bytes) => PrivateKey::from_bytes(&Zeroizing::new(bytes))?,
        Err(e) if e.is_not_found() && cert.renewal.key_policy == KeyPolicy::Prestage => {
            match super::next_key::take(cert, pending, profile.key) {
                Ok(key) => key,
                Err(why) => {
                    note = Some(why);
                    let key = keys::generate(profile.key)?;
                    store::atomic::write_file(
                        pending,
                        key.to_pkcs8_pem().as_bytes(),
                        &store::FileSpec::mode(0o600),
                    )?;
                    key
                }
            }
        }
        Err(e) if e.is_not_found() => {
            let key = match (cert.renewal.key_policy, live) {
                (KeyPolicy::Reuse, Some(live)) if live.exists() => {
                    let bytes = Zeroizing::new(
                        bounded::read(live, bounded::KEY_FILE_LIMIT).map_err(|e| {
                            EngineError::Other(format!(
                                "cannot read the live key: {}",
                                e.sentence(live)
                            ))
                        })?,
                    );
                    PrivateKey::from_bytes(&bytes)?
                }
                _ => keys::generate(profile.key)?,
            };
            store::atomic::write_file(
                pending,
                key.to_pkcs8_pem().as_bytes(),
                &store::FileSpec::mode(0o600),
            )?;
            log::info!(cert_id = cert.id.as_str(), key_type = key.algorithm().as_str(); "new key generated and saved as the pending key");
            key
        }
        Err(e) => {
            return Err(EngineError::Other(format!(
                "cannot read the pending key: {}",
                e.sentence(pending)
            )));
        }
    };
    if key.algorithm() != profile.key {
        // A reused or earlier pending key decides; the CSR must match the key.
        profile.key = key.algorithm();
    }
    let csr = keys::csr(&profile, &key)?;
    Ok((profile, csr, note))
}

/// Where the pending key of a set's further role is kept: beside the primary's.
pub(super) fn pending_role_key_path(
    store: &Store,
    id: &str,
    role: &str,
) -> Result<std::path::PathBuf, EngineError> {
    Ok(store
        .pending_key_path(id)?
        .with_file_name(format!("pending-key.{role}.pem")))
}

/// The pending keys of a set's roles that exist (a run with CSRs has one per role).
fn pending_set_keys(
    store: &Store,
    cert: &ManagedCertificate,
    roles: &[String],
) -> Result<Vec<(String, PrivateKey)>, EngineError> {
    let mut keys = Vec::new();
    for role in roles {
        let path = if role == PRIMARY_ROLE {
            store.pending_key_path(&cert.id)?
        } else {
            pending_role_key_path(store, &cert.id, role)?
        };
        match bounded::read(&path, bounded::KEY_FILE_LIMIT) {
            Ok(bytes) => keys.push((
                role.clone(),
                PrivateKey::from_bytes(&Zeroizing::new(bytes))?,
            )),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(EngineError::Other(format!(
                    "cannot read the pending key of the {role} role: {}",
                    e.sentence(&path)
                )));
            }
        }
    }
    Ok(keys)
}

/// A checked certificate's files for a version: its key, the leaf, its chain, and with
/// `bundle` = (password, friendly name) a PKCS#12 of the three.
fn version_files(
    key: &PrivateKey,
    checked: &import::Checked,
    bundle: Option<(&str, String)>,
) -> Result<VersionFiles, EngineError> {
    let pkcs12 = match bundle {
        Some((password, name)) => Some(keys::write_pkcs12(
            key,
            &checked.leaf_der,
            &checked.chain_der,
            password,
            &name,
        )?),
        None => None,
    };
    Ok(VersionFiles::single(
        Some(key.to_pkcs8_pem()),
        keys::pem_certificates(std::slice::from_ref(&checked.leaf_der)),
        keys::pem_certificates(&checked.chain_der),
        pkcs12,
    ))
}

/// The CA's key is safe in the staged version now. It becomes the pending key; the key of
/// the order that was with the CA is kept beside it, never overwritten, until the run is over.
fn keep_key_from_ca(
    store: &Store,
    cert: &ManagedCertificate,
    key: &PrivateKey,
) -> Result<(), EngineError> {
    let pending = store.pending_key_path(&cert.id)?;
    if pending.exists() {
        let kept =
            pending.with_file_name(format!("pending-key.superseded-{}.pem", crate::now_unix()));
        std::fs::rename(&pending, &kept).map_err(|e| {
            EngineError::Other(format!(
                "cannot keep the previous pending key as {}: {e}",
                kept.display()
            ))
        })?;
    }
    store::atomic::write_file(
        &pending,
        key.to_pkcs8_pem().as_bytes(),
        &store::FileSpec::mode(0o600),
    )?;
    Ok(())
}

/// Checks an issued chain against the pending key (or the key that came with it) and
/// stages it as a new version.
fn accept_issued(
    store: &Store,
    config: &Config,
    cert: &ManagedCertificate,
    run: &mut Run,
    chain: &[u8],
    key_from_ca: Option<PrivateKey>,
) -> Result<(), EngineError> {
    let pending = store.pending_key_path(&cert.id)?;
    let from_ca = key_from_ca.is_some();
    let key = match key_from_ca {
        // Written as the pending key only once the chain is checked (below): a refused
        // bundle must not replace the key of the order that is still with the CA.
        Some(key) => key,
        None => {
            let bytes = bounded::read(&pending, bounded::KEY_FILE_LIMIT).map_err(|e| {
                EngineError::Import(format!(
                    "there is no pending key for `{}` ({}): the certificate cannot be checked; start a renewal with `certvakt renew {} --force`",
                    cert.id,
                    e.sentence(&pending),
                    cert.id
                ))
            })?;
            PrivateKey::from_bytes(&Zeroizing::new(bytes))?
        }
    };
    let trust = issuer_trust(config, cert)?;
    let checked = import::check_chain(
        cert,
        chain,
        &key,
        run.old.as_ref(),
        import::Expect {
            trust: trust.as_ref(),
            requested: run.requested.as_ref(),
            key_from_ca: from_ca,
        },
        crate::now_unix(),
    )?;
    for note in &checked.notes {
        log::warn!(cert_id = cert.id.as_str(), serial = checked.facts.serial.as_str(); "{note}");
    }
    let password = match (&cert.renewal.pkcs12, &cert.pkcs12_password_file) {
        (Some(_), Some(password_file)) => Some(read_password(password_file)?),
        _ => None,
    };
    let bundle = password.as_deref().map(|p| (p.as_str(), cert.id.clone()));
    let version = store.stage(&cert.id, &version_files(&key, &checked, bundle)?)?;
    if from_ca {
        keep_key_from_ca(store, cert, &key)?;
    }
    log::info!(cert_id = cert.id.as_str(), serial = checked.facts.serial.as_str(), version = version.0; "new certificate issued and staged");
    run.chain_pem = Some(keys::pem_certificates(&checked.chain_der));
    run.new = Some(checked.facts);
    run.version = Some(version);
    run.notes = checked.notes;
    run.plugin_checked = false;
    run.set_phase(Phase::Issued, crate::now_unix());
    Ok(())
}

/// The roots of the certificate's `issuer_trust` set, read now (a replaced file counts at
/// once); `None` when it has none.
fn issuer_trust(
    config: &Config,
    cert: &ManagedCertificate,
) -> Result<Option<import::IssuerTrust>, EngineError> {
    let Some(name) = &cert.renewal.issuer_trust else {
        return Ok(None);
    };
    let unusable = |why: String| {
        EngineError::Import(format!(
            "trust set `{name}` cannot be used to check the new certificate: {why}"
        ))
    };
    let files = config.trust.get(name).ok_or_else(|| {
        unusable(format!(
            "issuer_trust of {} names it, but [trust] does not define it",
            cert.id
        ))
    })?;
    // The same reader as the HTTP service's trust sets: every file, read at each use.
    let bundle = TrustFiles::new()
        .with_set(name.as_str(), files.clone())
        .trust_set(name)
        .map_err(|e| unusable(e.0))?
        .unwrap_or_default();
    let roots =
        keys::parse_certificate_chain(bundle.as_bytes()).map_err(|e| unusable(e.to_string()))?;
    Ok(Some(import::IssuerTrust {
        name: name.clone(),
        roots,
    }))
}
