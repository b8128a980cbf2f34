//! A TLS service that serves a managed certificate, as nginx or a mail server does: for the
//! verified deploy's tests and the demo.
//!
//! Owns: [`Site`] and how it gets its certificate ([`SiteFiles`]).
//!
//! Promises:
//! - One TLS listener on `127.0.0.1:<free port>` ([`Site::address`]), on its own thread
//!   ([`crate::serve::Served`]); dropping the [`Site`] stops it. HTTP is not spoken: a client
//!   gets the handshake and then the connection closes.
//! - [`SiteFiles::Live`]: the certificate (with any chain after it) and key are read from the
//!   live files at the start (or, while they cannot be read, at the first connection), and
//!   read again only when the reload file's
//!   modification time changes (a deploy hook that `touch`es it is the service's reload).
//!   While the files cannot be read (before the first install) connections are closed
//!   without a handshake. [`SiteFiles::LiveNeverReloads`] reads them once and never again.
//! - [`SiteFiles::Fixed`]: always the certificate and key given (a service configured with
//!   the wrong files).
//! - [`Site::loads`] counts how often the files were read and used.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt as _;

use crate::serve::Served;

/// Where a [`Site`]'s certificate comes from.
#[derive(Debug, Clone)]
pub enum SiteFiles {
    /// The live files, read again when `reload` changes.
    Live {
        cert: PathBuf,
        key: PathBuf,
        reload: PathBuf,
    },
    /// The live files as they were when first readable; never read again.
    LiveNeverReloads { cert: PathBuf, key: PathBuf },
    /// Always this certificate (PEM, chain after it) and key (PEM).
    Fixed { cert_pem: String, key_pem: String },
}

/// A running TLS service; see the module.
#[derive(Debug)]
pub struct Site {
    address: String,
    loads: Arc<AtomicUsize>,
    _served: Served,
}

/// What the site serves now, and the reload file's time it was read at.
struct Loaded {
    stamp: Option<SystemTime>,
    config: Arc<rustls::ServerConfig>,
}

impl Site {
    pub fn start(files: SiteFiles) -> Result<Site> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?.to_string();
        let loads = Arc::new(AtomicUsize::new(0));
        let current: Arc<Mutex<Option<Loaded>>> = Arc::new(Mutex::new(None));
        // Like a service at its start: the files are read now if they can be.
        config_now(&files, &current, &loads);
        let (files, counter) = (Arc::new(files), loads.clone());
        let served = Served::spawn("site", listener, move |tcp| {
            let config = config_now(&files, &current, &counter);
            async move {
                let Some(config) = config else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.read(&mut [0; 64]).await;
                }
            }
        })?;
        Ok(Site {
            address,
            loads,
            _served: served,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// How often the certificate files were read and put to use.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

/// The configuration to serve this connection with: read again when the files say so.
fn config_now(
    files: &SiteFiles,
    current: &Mutex<Option<Loaded>>,
    loads: &AtomicUsize,
) -> Option<Arc<rustls::ServerConfig>> {
    let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
    let (stamp, stale) = match (files, current.as_ref()) {
        (_, None) => (reload_stamp(files), true),
        (SiteFiles::Live { reload, .. }, Some(loaded)) => {
            let stamp = std::fs::metadata(reload).and_then(|m| m.modified()).ok();
            (stamp, stamp != loaded.stamp)
        }
        (_, Some(loaded)) => (loaded.stamp, false),
    };
    if stale {
        let read = match files {
            SiteFiles::Live { cert, key, .. } | SiteFiles::LiveNeverReloads { cert, key } => {
                read_pair(cert, key)
            }
            SiteFiles::Fixed { cert_pem, key_pem } => pair(cert_pem.as_bytes(), key_pem.as_bytes()),
        };
        if let Ok(config) = read {
            loads.fetch_add(1, Ordering::SeqCst);
            *current = Some(Loaded { stamp, config });
        }
    }
    current.as_ref().map(|l| l.config.clone())
}

fn reload_stamp(files: &SiteFiles) -> Option<SystemTime> {
    match files {
        SiteFiles::Live { reload, .. } => std::fs::metadata(reload).and_then(|m| m.modified()).ok(),
        _ => None,
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    pair(&cert_pem, &key_pem)
}

fn pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}
