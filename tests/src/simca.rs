//! simca: a simulated certificate authority with an HTTPS API, for tests and the demo.
//!
//! Owns: [`SimCa`] (a running server on loopback with its three test CAs), [`SimCaConfig`],
//! [`SimCaFiles`] (what [`SimCa::write_files`] writes for a daemon), [`SeenRequest`].
//!
//! The API, as authorities with an API do it: asynchronous orders over mutual TLS.
//!
//! | request | answer |
//! |---|---|
//! | `POST /orders` `{"csr_pem": "…", "profile": "tls"\|"oces3"}` (profile optional, `tls`) | `202 {"order": "SIM-1", "status": "pending", "retry_after": 5}` and `Retry-After`; `400 {"error": …}` for a CSR the profile refuses |
//! | `GET /orders/<id>` before `issue_after` has passed | `202 {"order", "status": "pending", "retry_after"}` |
//! | `GET /orders/<id>` after | `200 {"order", "status": "issued", "chain_pem": "<leaf><issuing CA>"}` |
//! | `GET /orders/<unknown>` | `404 {"error": …}` |
//! | any request while [`SimCa::fail_next`] has failures left | `503 {"error": …}`, `Retry-After: 1` |
//!
//! Promises:
//! - The server is real: TCP on the given address, TLS 1.2/1.3 by rustls with the aws-lc-rs
//!   provider, HTTP/1.1 by hyper, on its own thread with its own tokio runtime, so a plain
//!   `#[test]` or the binary can start it. Dropping the [`SimCa`] stops it.
//! - A client must present a certificate from the sim's client CA ([`SimCa::client_ca`]), or
//!   (unless [`SimCaConfig::accept_issued`] is off) one the sim issued itself, as a renewal
//!   with the current certificate would; otherwise the handshake fails and nothing is read.
//! - The server's certificate is for `localhost`, `127.0.0.1` and `::1` (and the listen
//!   address), issued by a separate server CA ([`SimCa::server_ca_pem`]): a client must be
//!   told to trust it, as the daemon is told through a named trust set.
//! - Orders are checked and issued as the `orders` module describes ([`Profile`]): `tls` and
//!   `oces3`, certificates signed by a [`TestCa`] of [`SimCaConfig::shape`], valid for
//!   [`SimCaConfig::validity`] from the moment of issue.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::serve::{Served, server_chain};
use anyhow::{Context, Result, anyhow};
use rcgen::ExtendedKeyUsagePurpose;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::ca::{CaShape, KeyType, TestCa};
use crate::leaf::{IssuedCert, LeafSpec, PemPaths};

mod orders;
mod server;
#[cfg(test)]
mod tests;

use orders::Orders;
pub use orders::Profile;
use server::{Shared, lock};

/// How a [`SimCa`] behaves.
#[derive(Debug, Clone)]
pub struct SimCaConfig {
    /// How long an order stays pending after it is placed.
    pub issue_after: Duration,
    /// How long the certificates it issues are valid (minutes make a lively demo).
    pub validity: Duration,
    /// Whose names the issuing CA carries.
    pub shape: CaShape,
    /// Also accept client certificates the sim issued itself (renewing with the current
    /// certificate). Default: yes.
    pub accept_issued: bool,
    /// Print one line per request and per refused handshake on stderr.
    pub log_requests: bool,
}

impl Default for SimCaConfig {
    fn default() -> SimCaConfig {
        SimCaConfig {
            issue_after: Duration::from_secs(5),
            validity: Duration::from_secs(30 * 86_400),
            shape: CaShape::Tls,
            accept_issued: true,
            log_requests: false,
        }
    }
}

/// One request the sim answered (requests refused in the handshake are not here; see
/// [`SimCa::tls_refusals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Subject of the client certificate presented, RFC 4514 style.
    pub client: Option<String>,
}

/// The files [`SimCa::write_files`] writes.
#[derive(Debug, Clone)]
pub struct SimCaFiles {
    /// `url`: the base URL, one line.
    pub url: PathBuf,
    /// `server-ca.pem`: the root that signed the server's certificate (the trust set).
    pub server_ca: PathBuf,
    /// `client.{cert,key,chain,fullchain}.pem`: the client identity for the daemon.
    pub client: PemPaths,
    /// `client-ca.pem`: the root the sim checks client certificates against.
    pub client_ca: PathBuf,
    /// `issuing-ca.pem`: the chain above the certificates it issues (issuing CA, root).
    pub issuing_ca: PathBuf,
}

/// A running simulated CA. Dropping it stops the server.
pub struct SimCa {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server_ca: TestCa,
    client_ca: TestCa,
    client: IssuedCert,
    issuing_chain_pem: String,
    _served: Served,
}

impl std::fmt::Debug for SimCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCa")
            .field("addr", &self.addr)
            .field("server_ca", &self.server_ca)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

impl SimCa {
    /// Starts a sim CA on `listen` (`127.0.0.1:0` picks a free port; see [`SimCa::url`]).
    pub fn start(listen: SocketAddr, config: SimCaConfig) -> Result<SimCa> {
        let server_ca = TestCa::new(CaShape::Tls)?;
        let client_ca = TestCa::new(CaShape::Oces3)?;
        let issuing_ca = TestCa::new(config.shape)?;
        let client = client_identity(&client_ca, "certvakt sim client")?;

        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding the sim CA to {listen}"))?;
        let addr = std_listener.local_addr()?;

        let mut server_names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
        if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
            server_names.push(addr.ip().to_string());
        }
        let server = server_ca.issue(
            &LeafSpec::tls_server(&server_names)
                .key_type(KeyType::EcP256)
                .days(-1, 365),
        )?;
        let mut client_roots = vec![client_ca.root_der()];
        if config.accept_issued {
            client_roots.push(issuing_ca.root_der());
        }
        let acceptor = tls_acceptor(&server, &client_roots)?;

        let issuing_chain_pem = issuing_ca.chain_pem();
        let orders = Orders::new(issuing_ca, config.issue_after, config.validity);
        let shared = Arc::new(Shared::new(orders, config.log_requests));

        let serving = Arc::clone(&shared);
        let served = Served::spawn("certvakt-simca", std_listener, move |tcp| {
            server::connection(tcp, acceptor.clone(), Arc::clone(&serving))
        })?;

        Ok(SimCa {
            addr,
            shared,
            server_ca,
            client_ca,
            client,
            issuing_chain_pem,
            _served: served,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://<ip>:<port>` (loopback when listening on all addresses), no trailing slash.
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        format!("https://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The root that signed the server's certificate, PEM: what a client must trust.
    pub fn server_ca_pem(&self) -> String {
        self.server_ca.root_pem()
    }

    /// The CA whose certificates the sim accepts from clients; issue more with
    /// [`SimCa::issue_client_identity`].
    pub fn client_ca(&self) -> &TestCa {
        &self.client_ca
    }

    /// A client identity (OCES3-shaped system certificate, EC P-256 key) from the client CA.
    pub fn client_identity(&self) -> &IssuedCert {
        &self.client
    }

    /// Another client identity from the client CA, with this common name.
    pub fn issue_client_identity(&self, name: &str) -> Result<IssuedCert> {
        client_identity(&self.client_ca, name)
    }

    /// The chain above the certificates it issues, PEM, nearest first (issuing CA, root).
    pub fn issuing_ca_pem(&self) -> &str {
        &self.issuing_chain_pem
    }

    /// Makes the next `n` requests (any route) fail with 503, for back-off tests.
    pub fn fail_next(&self, n: u32) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.shared.seen).clone()
    }

    /// Every TLS handshake refused so far (missing or unknown client certificate, …), as
    /// rustls words it.
    pub fn tls_refusals(&self) -> Vec<String> {
        lock(&self.shared.refusals).clone()
    }

    /// How many orders it has taken.
    pub fn orders_placed(&self) -> usize {
        lock(&self.shared.orders).placed()
    }

    /// Writes what a daemon needs to use the sim into `dir` (created if needed): see
    /// [`SimCaFiles`].
    pub fn write_files(&self, dir: &Path) -> Result<SimCaFiles> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        Ok(SimCaFiles {
            url: write("url", &format!("{}\n", self.url()))?,
            server_ca: write("server-ca.pem", &self.server_ca_pem())?,
            client: self.client.write_pem(dir, "client")?,
            client_ca: write("client-ca.pem", &self.client_ca.root_pem())?,
            issuing_ca: write("issuing-ca.pem", &self.issuing_chain_pem)?,
        })
    }
}

/// An OCES3-shaped system certificate for mutual TLS, from `ca`.
fn client_identity(ca: &TestCa, name: &str) -> Result<IssuedCert> {
    ca.issue(
        &LeafSpec::oces3("12345678", "2c1d3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6", name)
            .key_type(KeyType::EcP256)
            .extended_key_usage(vec![ExtendedKeyUsagePurpose::ClientAuth]),
    )
}

/// Mutual TLS: the server's certificate and intermediate, client certificates required and
/// checked against `client_roots` (DER). Shared with the SOAP simulators ([`crate::soapd`]).
pub(crate) fn tls_acceptor(server: &IssuedCert, client_roots: &[Vec<u8>]) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for root in client_roots {
        roots
            .add(CertificateDer::from(root.clone()))
            .context("adding a client CA root")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the client certificate verifier")?;
    let chain = server_chain(server);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_pkcs8_der.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the server certificate for mutual TLS")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
