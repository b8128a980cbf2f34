//! Where the host's HTTP client finds client identities and trust anchors for a plugin's
//! request: the certificates certvakt manages, and the `[trust]` sets of the configuration.
//!
//! - `current`: the live certificate (with the configured chain, or the full chain, or else the
//!   chain certvakt keeps with the current version) and key of the certificate the call is
//!   about; `named(ID)`: the same for another managed certificate.
//! - `previous`: the previous installed version, from the store.
//! - `pending`: the run's new key with its certificate, once it is issued and staged (an
//!   authority can be told about the new certificate over a connection made with it).
//!
//! Both read the configuration through a shared handle, so a reload applies to the next
//! request; keys are read per request into zeroized buffers.

use std::sync::{Arc, RwLock};

use certvakt_plugin_api::ClientIdentity;
use zeroize::Zeroizing;

use crate::config::{Config, ManagedCertificate};
use crate::plugin_host::{ClientCredentials, IdentitySource, SourceError, TrustFiles, TrustSource};
use crate::store::Store;

/// The configuration as it is now, shared by the service (which replaces it on reload) and
/// the readers here.
pub type SharedConfig = Arc<RwLock<Arc<Config>>>;

fn current(config: &SharedConfig) -> Arc<Config> {
    match config.read() {
        Ok(c) => c.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Client identities from the managed certificates.
#[derive(Debug)]
pub struct Identities {
    pub store: Store,
    pub config: SharedConfig,
}

fn read(path: &std::path::Path, what: &str) -> Result<String, SourceError> {
    std::fs::read_to_string(path)
        .map_err(|e| SourceError(format!("cannot read {what} {}: {e}", path.display())))
}

fn read_key(path: &std::path::Path) -> Result<Zeroizing<String>, SourceError> {
    read(path, "the key").map(Zeroizing::new)
}

fn live(
    cert: &ManagedCertificate,
    store: &crate::store::Store,
) -> Result<Option<ClientCredentials>, SourceError> {
    let Some(key) = &cert.key else {
        return Err(SourceError(format!(
            "certificate {} has no key configured, so it cannot be a client identity",
            cert.id
        )));
    };
    let chain_pem = match (&cert.renewal.fullchain, &cert.renewal.chain) {
        (Some(full), _) if full.exists() => read(full, "the full chain")?,
        (_, Some(chain)) if chain.exists() => {
            read(&cert.cert, "the certificate")? + &read(chain, "the chain")?
        }
        _ => {
            let leaf = read(&cert.cert, "the certificate")?;
            let chain = stored_chain(cert, store, &leaf);
            leaf + &chain
        }
    };
    Ok(Some(ClientCredentials {
        chain_pem,
        key_pem: read_key(key)?,
    }))
}

/// The chain certvakt keeps with the live certificate (the current version's), when no chain
/// file is configured: a server needs the intermediates to check a client certificate, and the
/// live certificate file holds the leaf alone. Empty when the live file is not the current
/// version's certificate (the operator replaced it) or the version cannot be read.
fn stored_chain(cert: &ManagedCertificate, store: &crate::store::Store, leaf: &str) -> String {
    let Ok(Some(version)) = store.current(&cert.id) else {
        return String::new();
    };
    let Ok(files) = store.version_files(&cert.id, version) else {
        return String::new();
    };
    match std::fs::read_to_string(&files.cert) {
        Ok(kept) if kept.trim() == leaf.trim() => {
            std::fs::read_to_string(&files.chain).unwrap_or_default()
        }
        _ => String::new(),
    }
}

impl IdentitySource for Identities {
    fn client_identity(
        &self,
        cert_id: &str,
        identity: &ClientIdentity,
    ) -> Result<Option<ClientCredentials>, SourceError> {
        let config = current(&self.config);
        let find = |id: &str| {
            config
                .certificates
                .iter()
                .find(|c| c.id == id)
                .ok_or_else(|| {
                    SourceError(format!(
                        "no managed certificate `{id}` to use as a client identity"
                    ))
                })
        };
        let store_error = |e: crate::store::StoreError| SourceError(e.to_string());
        match identity {
            ClientIdentity::None => Ok(None),
            ClientIdentity::Current => live(find(cert_id)?, &self.store),
            ClientIdentity::Named(name) => live(find(name)?, &self.store),
            ClientIdentity::Previous => {
                let Some(version) = self.store.previous(cert_id).map_err(store_error)? else {
                    return Err(SourceError(format!("{cert_id} has no previous version")));
                };
                let files = self
                    .store
                    .version_files(cert_id, version)
                    .map_err(store_error)?;
                let key = files.key.ok_or_else(|| {
                    SourceError(format!("version {version} of {cert_id} has no key"))
                })?;
                Ok(Some(ClientCredentials {
                    chain_pem: read(&files.cert, "the certificate")?
                        + &read(&files.chain, "the chain")?,
                    key_pem: read_key(&key)?,
                }))
            }
            ClientIdentity::Pending => {
                let key = self.store.pending_key_path(cert_id).map_err(store_error)?;
                let newest = self
                    .store
                    .versions(cert_id)
                    .map_err(store_error)?
                    .into_iter()
                    .next_back()
                    .ok_or_else(|| {
                        SourceError(format!(
                            "{cert_id} has no issued certificate for the pending key yet"
                        ))
                    })?;
                let files = self
                    .store
                    .version_files(cert_id, newest)
                    .map_err(store_error)?;
                let key_pem = read_key(&key)?;
                // The newest version belongs to the pending key only once this run's
                // certificate is staged; before that it is an older pair.
                let staged_key = files.key.as_deref().map(read_key).transpose()?;
                if staged_key.as_deref().map(String::as_str) != Some(key_pem.as_str()) {
                    return Err(SourceError(format!(
                        "{cert_id} has no issued certificate for the pending key yet"
                    )));
                }
                Ok(Some(ClientCredentials {
                    chain_pem: read(&files.cert, "the certificate")?
                        + &read(&files.chain, "the chain")?,
                    key_pem,
                }))
            }
        }
    }
}

/// Trust sets from `[trust]`.
#[derive(Debug)]
pub struct Trust {
    pub config: SharedConfig,
}

impl TrustSource for Trust {
    fn trust_set(&self, name: &str) -> Result<Option<String>, SourceError> {
        let config = current(&self.config);
        let Some(files) = config.trust.get(name) else {
            return Ok(None);
        };
        TrustFiles::new()
            .with_set(name, files.clone())
            .trust_set(name)
    }
}
