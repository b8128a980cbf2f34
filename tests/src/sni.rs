//! An SNI-dependent TLS endpoint, as e-resept and kjernejournal ran during their certificate
//! swap (`shared/protocols/no-nhn.md` §4): new URLs served the new certificate, old URLs the
//! old one, and a client without SNI got the old one, so it could not reach the new URL.
//!
//! Owns: [`SniEndpoint`] (the listener), [`SniCerts`] (an old and a new CA with a server
//! certificate each), [`SniConnection`] (what it saw of each connection) and [`https_get`] (a
//! small blocking client that can leave SNI out, for tests).
//!
//! Promises:
//! - One TLS listener on `127.0.0.1:<free port>`, on its own thread and runtime
//!   ([`crate::serve::Served`]); dropping the [`SniEndpoint`] stops it. Clients connect to
//!   127.0.0.1 and name the host in SNI (nothing resolves the `.invalid` names).
//! - The certificate is chosen from the ClientHello before the handshake: SNI equal to the new
//!   host name (ASCII case-insensitive) gets the new certificate and chain; any other name
//!   and a ClientHello without SNI get the old one.
//! - With client roots, the server *asks* for a client certificate and accepts connections
//!   without one; a presented certificate must chain to one of the roots.
//! - Every connection is recorded once its handshake ends, failed ones too
//!   ([`SniEndpoint::connections`]): the SNI name, the host whose certificate was presented,
//!   whether the handshake completed, and the client certificate's serial (lowercase hex of
//!   its value, no colons) if one was presented.
//! - HTTP/1.1 on top: `GET` of any path answers 200 with `text/plain` body `<host>\n` (the
//!   host whose certificate was presented); other methods get 405.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use tokio_rustls::LazyConfigAcceptor;

use crate::serve::{Served, server_chain};
use crate::{CaShape, IssuedCert, KeyType, LeafSpec, TestCa};

/// The old service name (the certificate in use before the swap).
pub const OLD_HOST: &str = "old.ws.test.nhn.invalid";
/// The new service name (the new certificate).
pub const NEW_HOST: &str = "new.ws.test.nhn.invalid";

/// An old and a new TLS CA, each with a server certificate for its host name (EC P-256):
/// the old certificate does not chain to the new root, nor name the new host.
pub struct SniCerts {
    pub old_ca: TestCa,
    pub old: IssuedCert,
    pub new_ca: TestCa,
    pub new: IssuedCert,
}

impl std::fmt::Debug for SniCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniCerts")
            .field("old_ca", &self.old_ca)
            .field("new_ca", &self.new_ca)
            .finish_non_exhaustive()
    }
}

impl SniCerts {
    /// Fresh CAs and certificates for [`OLD_HOST`] and [`NEW_HOST`].
    pub fn generate() -> Result<SniCerts> {
        let issue = |ca: &TestCa, host: &str| {
            ca.issue(
                &LeafSpec::tls_server(&[host])
                    .key_type(KeyType::EcP256)
                    .days(-1, 365),
            )
        };
        let old_ca = TestCa::new(CaShape::Tls)?;
        let new_ca = TestCa::new(CaShape::Tls)?;
        let old = issue(&old_ca, OLD_HOST)?;
        let new = issue(&new_ca, NEW_HOST)?;
        Ok(SniCerts {
            old_ca,
            old,
            new_ca,
            new,
        })
    }
}

/// What the endpoint saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniConnection {
    /// The SNI host name the client sent; `None` without SNI.
    pub server_name: Option<String>,
    /// The host whose certificate the server presented.
    pub presented: String,
    /// Whether the TLS handshake completed.
    pub handshake_ok: bool,
    /// The client certificate's serial (lowercase hex of its value, no colons), if any.
    pub client_serial: Option<String>,
}

/// The running endpoint. See the module documentation.
#[derive(Debug)]
pub struct SniEndpoint {
    addr: SocketAddr,
    old_host: String,
    new_host: String,
    seen: Arc<Mutex<Vec<SniConnection>>>,
    _served: Served,
}

impl SniEndpoint {
    /// Serves [`OLD_HOST`] with `certs.old` and [`NEW_HOST`] with `certs.new`, without client
    /// certificates.
    pub fn start(certs: &SniCerts) -> Result<SniEndpoint> {
        SniEndpoint::start_with(OLD_HOST, &certs.old, NEW_HOST, &certs.new, &[])
    }

    /// Serves `old_host` with `old` (also to clients without SNI) and `new_host` with `new`.
    /// With non-empty `client_roots` (DER), asks for an optional client certificate that must
    /// chain to one of them.
    pub fn start_with(
        old_host: &str,
        old: &IssuedCert,
        new_host: &str,
        new: &IssuedCert,
        client_roots: &[Vec<u8>],
    ) -> Result<SniEndpoint> {
        let old_config = server_config(old, client_roots)?;
        let new_config = server_config(new, client_roots)?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .context("binding the SNI endpoint to a loopback port")?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (old_name, new_name) = (old_host.to_owned(), new_host.to_owned());
        let serving_seen = Arc::clone(&seen);
        let served = Served::spawn("certvakt-sni", listener, move |tcp| {
            let (old_config, new_config) = (Arc::clone(&old_config), Arc::clone(&new_config));
            let (old_name, new_name) = (old_name.clone(), new_name.clone());
            let seen = Arc::clone(&serving_seen);
            async move {
                let Ok(start) = LazyConfigAcceptor::new(Acceptor::default(), tcp).await else {
                    return;
                };
                let server_name = start.client_hello().server_name().map(str::to_owned);
                let is_new = server_name
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(&new_name));
                let (config, presented) = if is_new {
                    (new_config, new_name)
                } else {
                    (old_config, old_name)
                };
                let stream = start.into_stream(config).await;
                let client_serial = stream.as_ref().ok().and_then(|tls| {
                    let certs = tls.get_ref().1.peer_certificates()?;
                    serial_hex(certs.first()?)
                });
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(SniConnection {
                        server_name,
                        presented: presented.clone(),
                        handshake_ok: stream.is_ok(),
                        client_serial,
                    });
                let Ok(tls) = stream else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = answer(&presented, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        })?;
        Ok(SniEndpoint {
            addr,
            old_host: old_host.to_owned(),
            new_host: new_host.to_owned(),
            seen,
            _served: served,
        })
    }

    /// Where it listens (127.0.0.1 and a free port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn old_host(&self) -> &str {
        &self.old_host
    }

    pub fn new_host(&self) -> &str {
        &self.new_host
    }

    /// `https://<host>:<port>/`, for clients that resolve `host` to 127.0.0.1 themselves.
    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/", self.addr.port())
    }

    /// Every connection so far, in the order their handshakes ended.
    pub fn connections(&self) -> Vec<SniConnection> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn server_config(cert: &IssuedCert, client_roots: &[Vec<u8>]) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?;
    let builder = if client_roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for root in client_roots {
            roots
                .add(CertificateDer::from(root.clone()))
                .context("adding a client CA root")?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .context("building the client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pkcs8_der.clone()));
    let mut config = builder
        .with_single_cert(server_chain(cert), key)
        .context("the SNI endpoint's server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn serial_hex(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.serial.to_str_radix(16))
}

fn answer(presented: &str, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = if request.method() == Method::GET {
        (StatusCode::OK, format!("{presented}\n"))
    } else {
        (StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_owned())
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// `GET /` over TLS to `addr`, verifying the server as `host` against `roots` (DER), sending
/// SNI only if `send_sni`, and presenting `client_cert` (with its chain) if given. Returns the
/// whole HTTP response (status line, headers, body); a failed handshake is an error that
/// carries rustls's reason (`invalid peer certificate: …`).
pub fn https_get(
    addr: SocketAddr,
    host: &str,
    roots: &[Vec<u8>],
    send_sni: bool,
    client_cert: Option<&IssuedCert>,
) -> Result<String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(CertificateDer::from(root.clone()))
            .context("adding a server root")?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_root_certificates(store);
    let mut config = match client_cert {
        Some(cert) => {
            let chain = std::iter::once(&cert.cert_der)
                .chain(&cert.chain_der)
                .map(|der| CertificateDer::from(der.clone()))
                .collect();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pkcs8_der.clone()));
            builder
                .with_client_auth_cert(chain, key)
                .context("the client certificate")?
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = send_sni;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| anyhow!("{host:?} is not a server name: {e}"))?;
    let mut tls =
        rustls::ClientConnection::new(Arc::new(config), name).context("starting a TLS client")?;
    let mut tcp = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("TLS to {host} at {addr}"))?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // The server may close without close_notify once it has answered.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e).with_context(|| format!("reading from {host} at {addr}")),
    }
    String::from_utf8(response).context("the response is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(ca: &TestCa) -> Vec<Vec<u8>> {
        vec![ca.root_der()]
    }

    #[test]
    fn the_new_name_needs_sni_and_the_old_name_works_without() {
        let certs = SniCerts::generate().expect("certs");
        let endpoint = SniEndpoint::start(&certs).expect("start");
        let addr = endpoint.addr();
        assert_eq!(
            endpoint.url(NEW_HOST),
            format!("https://{NEW_HOST}:{}/", addr.port())
        );

        // With SNI each name gets its own certificate, verified against its own root.
        let new = https_get(addr, NEW_HOST, &roots(&certs.new_ca), true, None).expect("new");
        assert!(new.starts_with("HTTP/1.1 200"), "{new}");
        assert!(new.ends_with(&format!("\r\n\r\n{NEW_HOST}\n")), "{new}");
        let old = https_get(addr, OLD_HOST, &roots(&certs.old_ca), true, None).expect("old");
        assert!(old.ends_with(&format!("\r\n\r\n{OLD_HOST}\n")), "{old}");

        // Without SNI the server cannot tell: the old certificate, which the new root does
        // not vouch for, so the client refuses the new name ...
        let err = https_get(addr, NEW_HOST, &roots(&certs.new_ca), false, None)
            .expect_err("no SNI against the new name");
        let text = format!("{err:#}");
        assert!(text.contains("invalid peer certificate"), "{text}");
        // ... and even trusting both roots, the old certificate does not name the new host.
        let both = vec![certs.old_ca.root_der(), certs.new_ca.root_der()];
        let err = https_get(addr, NEW_HOST, &both, false, None).expect_err("wrong name");
        assert!(
            format!("{err:#}").contains("invalid peer certificate"),
            "{err:#}"
        );
        // The old name works without SNI.
        let old = https_get(addr, OLD_HOST, &roots(&certs.old_ca), false, None).expect("old");
        assert!(old.ends_with(&format!("\r\n\r\n{OLD_HOST}\n")), "{old}");

        // (A refused handshake is recorded when the server reads the client's alert, which
        // may come after the next connection: compare without order.)
        let seen = endpoint.connections();
        let mut summary: Vec<_> = seen
            .iter()
            .map(|c| (c.server_name.clone(), c.presented.clone(), c.handshake_ok))
            .collect();
        summary.sort();
        let mut want: Vec<_> = [
            (Some(NEW_HOST), NEW_HOST, true),
            (Some(OLD_HOST), OLD_HOST, true),
            (None, OLD_HOST, false),
            (None, OLD_HOST, false),
            (None, OLD_HOST, true),
        ]
        .into_iter()
        .map(|(sni, host, ok)| (sni.map(str::to_owned), host.to_owned(), ok))
        .collect();
        want.sort();
        assert_eq!(summary, want);
        assert!(seen.iter().all(|c| c.client_serial.is_none()));
    }

    #[test]
    fn a_requested_client_certificate_is_recorded_by_serial() {
        let certs = SniCerts::generate().expect("certs");
        let client_spec = LeafSpec::tls_server(&["apotek.example"])
            .key_type(KeyType::EcP256)
            .extended_key_usage(vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]);
        let client_ca = TestCa::new(CaShape::Tls).expect("client ca");
        let client = client_ca.issue(&client_spec).expect("client cert");
        let endpoint = SniEndpoint::start_with(
            OLD_HOST,
            &certs.old,
            NEW_HOST,
            &certs.new,
            &[client_ca.root_der()],
        )
        .expect("start");
        let addr = endpoint.addr();
        let with = https_get(addr, NEW_HOST, &roots(&certs.new_ca), true, Some(&client))
            .expect("with a client certificate");
        assert!(with.starts_with("HTTP/1.1 200"), "{with}");
        let without =
            https_get(addr, NEW_HOST, &roots(&certs.new_ca), true, None).expect("without");
        assert!(without.starts_with("HTTP/1.1 200"), "{without}");
        // A client certificate from another CA is refused.
        let stranger = TestCa::new(CaShape::Tls)
            .expect("another ca")
            .issue(&client_spec)
            .expect("stranger");
        assert!(https_get(addr, NEW_HOST, &roots(&certs.new_ca), true, Some(&stranger)).is_err());

        let serials: Vec<_> = endpoint
            .connections()
            .into_iter()
            .filter(|c| c.handshake_ok)
            .map(|c| c.client_serial)
            .collect();
        let want = client.serial_hex().expect("serial").replace(':', "");
        assert_eq!(serials, [Some(want), None]);
    }
}
