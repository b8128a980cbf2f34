//! The HTTP service against real TLS servers on loopback: a hyper server over tokio-rustls
//! with a server certificate from one test CA, requiring client certificates from another.
//! Every test runs like the daemon: a current-thread runtime drives IO on its one thread, and
//! the service is called from the runtime's blocking pool, as a plugin call's host callback is.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use certvakt_plugin_api::{ClientIdentity, HostError, HostErrorKind, HttpRequest, HttpResponse};
use certvakt_testkit::{CaShape, IssuedCert, KeyType, LeafSpec, TestCa};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use zeroize::Zeroizing;

use super::*;

pub(crate) const CERT_ID: &str = "apotek-prod";
pub(crate) const PLUGIN: &str = "example";

/// The certificates of the tests: the servers' CA and leaf, the clients' CA and leaf, and a
/// third CA that trusts neither.
pub(crate) struct Pki {
    pub server_ca: TestCa,
    pub server: IssuedCert,
    pub client_ca: TestCa,
    pub client: IssuedCert,
    pub other_ca: TestCa,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let server_ca = TestCa::new(CaShape::Tls).unwrap();
        let server = server_ca
            .issue(&LeafSpec::tls_server(&["localhost", "127.0.0.1"]).key_type(KeyType::EcP256))
            .unwrap();
        let client_ca = TestCa::new(CaShape::Oces3).unwrap();
        let client = client_ca
            .issue(
                &LeafSpec::oces3(
                    "25450442",
                    "8d3fa047-6f5c-4d2b-9a51-0c1f2e3d4b5a",
                    "Hjørring Apotek",
                )
                .key_type(KeyType::EcP256),
            )
            .unwrap();
        let other_ca = TestCa::new(CaShape::Siths).unwrap();
        Pki {
            server_ca,
            server,
            client_ca,
            client,
            other_ca,
        }
    }
}

/// The subject of a certificate as the test server reports it.
pub(crate) fn subject(cert_der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    cert.subject().to_string()
}

/// Client identities set by the test, per (certificate, identity).
#[derive(Default)]
pub(crate) struct Identities(Mutex<HashMap<(String, ClientIdentity), (String, String)>>);

impl Identities {
    pub(crate) fn set(&self, cert_id: &str, identity: ClientIdentity, issued: &IssuedCert) {
        self.set_pem(
            cert_id,
            identity,
            issued.fullchain_pem(),
            issued.key_pem.clone(),
        );
    }

    fn set_pem(&self, cert_id: &str, identity: ClientIdentity, chain: String, key: String) {
        self.0
            .lock()
            .unwrap()
            .insert((cert_id.to_owned(), identity), (chain, key));
    }
}

impl IdentitySource for Identities {
    fn client_identity(
        &self,
        cert_id: &str,
        identity: &ClientIdentity,
    ) -> Result<Option<ClientCredentials>, SourceError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&(cert_id.to_owned(), identity.clone()))
            .map(|(chain, key)| ClientCredentials {
                chain_pem: chain.clone(),
                key_pem: Zeroizing::new(key.clone()),
            }))
    }
}

/// A service on the current runtime, trust sets as PEM files: `test-servers` (the servers'
/// root, what the example plugin calls `example-ca` too) and `other`.
pub(crate) struct Fixture {
    pub pki: Pki,
    pub identities: Arc<Identities>,
    pub metrics: Arc<Metrics>,
    pub service: Arc<HttpService>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let pki = Pki::new();
        let dir = tempfile::tempdir().unwrap();
        let servers = dir.path().join("servers.pem");
        std::fs::write(&servers, pki.server_ca.root_pem()).unwrap();
        let other = dir.path().join("other.pem");
        std::fs::write(&other, pki.other_ca.root_pem()).unwrap();
        let trust = TrustFiles::new()
            .with_set("test-servers", [&servers])
            .with_set("example-ca", [&servers])
            .with_set("other", [&other]);
        let identities = Arc::new(Identities::default());
        identities.set(CERT_ID, ClientIdentity::Current, &pki.client);
        let metrics = Arc::new(Metrics::new(0).unwrap());
        let service = Arc::new(HttpService::new(
            Handle::current(),
            identities.clone(),
            Arc::new(trust),
            metrics.clone(),
        ));
        Fixture {
            pki,
            identities,
            metrics,
            service,
            _dir: dir,
        }
    }

    /// `request` from the blocking pool, as a plugin's host call arrives.
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        let service = self.service.clone();
        tokio::task::spawn_blocking(move || service.handle(PLUGIN, CERT_ID, request))
            .await
            .unwrap()
    }

    async fn error(&self, request: HttpRequest) -> HostError {
        match self.call(request).await {
            Ok(response) => panic!("expected an error, got HTTP {}", response.status),
            Err(error) => error,
        }
    }

    fn counted(&self, outcome: &str) -> bool {
        self.metrics.render(0).contains(&format!(
            "certvakt_plugin_http_requests_total{{outcome=\"{outcome}\",plugin=\"{PLUGIN}\"}} "
        ))
    }

    fn count(&self, outcome: &str) -> u64 {
        let prefix = format!(
            "certvakt_plugin_http_requests_total{{outcome=\"{outcome}\",plugin=\"{PLUGIN}\"}} "
        );
        self.metrics
            .render(0)
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|n| n.parse().unwrap())
            .unwrap_or(0)
    }
}

/// A request to the test server that presents the current identity and trusts the servers'
/// CA.
fn mtls(method: &str, server: &TestServer, path: &str) -> HttpRequest {
    HttpRequest::new(method, server.url(path))
        .identity(ClientIdentity::Current)
        .trust("test-servers")
}

// ---------------------------------------------------------------------------------------------
// The test server

/// A hyper server on 127.0.0.1 over TLS (requiring a client certificate from the clients'
/// CA) or plain TCP. Routes:
/// - `/echo`: 200 and JSON of what it saw (client certificate subject, method, target,
///   headers, body);
/// - `/orders`: 201 `{"order_id": "<client subject>"}` (what the example plugin expects);
/// - `/redirect`: 302 to `/echo`;
/// - `/slow`: never answers;
/// - `/large`: a chunked body one byte over the cap; `/large-announced`: the same with a
///   content-length.
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    tls: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// A TLS server speaking the given versions.
    pub(crate) async fn tls(
        pki: &Pki,
        versions: &[&'static SupportedProtocolVersion],
    ) -> TestServer {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut client_roots = RootCertStore::empty();
        client_roots
            .add(CertificateDer::from(pki.client_ca.root_der()))
            .unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone())
                .build()
                .unwrap();
        let mut chain = vec![CertificateDer::from(pki.server.cert_der.clone())];
        chain.extend(
            pki.server
                .chain_der
                .iter()
                .cloned()
                .map(CertificateDer::from),
        );
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.key_pkcs8_der.clone()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor.accept(&mut tcp).await {
                        Ok(stream) => {
                            let client = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|certs| certs.first())
                                .map(|cert| subject(cert));
                            serve(TokioIo::new(stream), client).await;
                        }
                        // Keep the socket a moment, as a real server's close is not instant:
                        // closing at once with the client's request unread would reset the
                        // connection and could drop the alert before the client reads it.
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                });
            }
        });
        TestServer {
            addr,
            tls: true,
            task,
        }
    }

    /// A plain HTTP server.
    pub(crate) async fn plain() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(TokioIo::new(tcp), None));
            }
        });
        TestServer {
            addr,
            tls: false,
            task,
        }
    }

    /// `https://localhost:PORT<path>` (or `http://`).
    pub(crate) fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}{path}", self.addr.port())
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn serve<T>(io: T, client: Option<String>)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let client = client.clone();
        async move { Ok::<_, Infallible>(route(request, client).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

async fn route(request: Request<Incoming>, client: Option<String>) -> Response<Body> {
    let full = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
        *response.status_mut() = status;
        response
    };
    match request.uri().path() {
        "/echo" => {
            let method = request.method().to_string();
            let target = request.uri().to_string();
            let headers: BTreeMap<String, String> = request
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let echo = json!({
                "client": client,
                "method": method,
                "target": target,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            let mut response = full(StatusCode::OK, echo.to_string().into_bytes());
            response
                .headers_mut()
                .insert("x-echo", "yes".parse().unwrap());
            response
        }
        "/orders" => {
            let order = json!({ "order_id": client.unwrap_or_else(|| "anonymous".into()) });
            full(StatusCode::CREATED, order.to_string().into_bytes())
        }
        "/redirect" => {
            let mut response = full(StatusCode::FOUND, Vec::new());
            response
                .headers_mut()
                .insert("location", "/echo".parse().unwrap());
            response
        }
        "/slow" => std::future::pending().await,
        "/large" => Response::new(
            Chunks {
                left: MAX_RESPONSE_BYTES + 1,
            }
            .boxed(),
        ),
        "/large-announced" => full(StatusCode::OK, vec![b'x'; MAX_RESPONSE_BYTES + 1]),
        _ => full(StatusCode::NOT_FOUND, b"not found".to_vec()),
    }
}

/// A body of `left` bytes in 1 MiB chunks, with no length known beforehand (so chunked).
struct Chunks {
    left: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(1 << 20);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
    }
}

fn tls13() -> [&'static SupportedProtocolVersion; 1] {
    [&rustls::version::TLS13]
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn mutual_tls_with_the_right_identity_and_trust_set_gets_the_answer() {
    let fixture = Fixture::new();
    let server = TestServer::tls(&fixture.pki, &tls13()).await;

    let request = mtls("POST", &server, "/echo?token=s3cret")
        .header("x-test", "fmk")
        .header("content-type", "application/json")
        .body(r#"{"cvr":"25450442"}"#);
    let response = fixture.call(request).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-echo"), Some("yes"));
    let echo: Value = serde_json::from_slice(&response.body).unwrap();
    let client = subject(&fixture.pki.client.cert_der);
    assert!(client.contains("Hjørring Apotek"), "{client}");
    assert_eq!(echo["client"], json!(client));
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["target"], "/echo?token=s3cret");
    assert_eq!(echo["body"], r#"{"cvr":"25450442"}"#);
    let headers = &echo["headers"];
    assert_eq!(headers["x-test"], "fmk");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["host"], format!("localhost:{}", server.addr.port()));
    assert_eq!(
        headers["user-agent"],
        format!("certvakt/{}", crate::VERSION)
    );
    assert_eq!(headers["content-length"], "18");

    // HEAD: the same headers, no body; a lower-case method is accepted.
    let head = fixture.call(mtls("head", &server, "/echo")).await.unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(fixture.count("ok"), 2);
    assert_eq!(fixture.service.clients.len(), 1, "one cached configuration");
}

#[tokio::test]
async fn a_renewed_identity_is_presented_at_the_next_request() {
    let fixture = Fixture::new();
    let server = TestServer::tls(&fixture.pki, &tls13()).await;
    let client_of = |response: HttpResponse| -> String {
        let echo: Value = serde_json::from_slice(&response.body).unwrap();
        echo["client"].as_str().unwrap().to_owned()
    };
    let first = fixture.call(mtls("GET", &server, "/echo")).await.unwrap();
    assert_eq!(client_of(first), subject(&fixture.pki.client.cert_der));

    // The renewal swaps `current` for a certificate with a new (RSA) key and a new subject.
    let renewed = fixture
        .pki
        .client_ca
        .issue(
            &LeafSpec::oces3(
                "25450442",
                "0b9c7e3a-1d2f-4e5a-8b6c-7d8e9f0a1b2c",
                "Hjørring Apotek Filial",
            )
            .key_type(KeyType::Rsa2048),
        )
        .unwrap();
    fixture
        .identities
        .set(CERT_ID, ClientIdentity::Current, &renewed);
    let second = fixture.call(mtls("GET", &server, "/echo")).await.unwrap();
    assert_eq!(client_of(second), subject(&renewed.cert_der));
    assert_eq!(fixture.service.clients.len(), 1, "the entry was replaced");
}

#[tokio::test]
async fn without_a_client_identity_the_server_refuses_and_the_error_says_so() {
    let fixture = Fixture::new();
    // rustls servers send `certificate_required` for both versions (TLS 1.2 has no such
    // alert of its own); with TLS 1.3 it arrives after the client's handshake is done, while
    // the request is under way, and still reads as the handshake's failure.
    let expected = "the server requires a client certificate and the request presented none (client identity `none`)";
    for versions in [vec![&rustls::version::TLS13], vec![&rustls::version::TLS12]] {
        let server = TestServer::tls(&fixture.pki, &versions).await;
        let request = HttpRequest::get(server.url("/echo")).trust("test-servers");
        let error = fixture.error(request).await;
        assert_eq!(error.kind, HostErrorKind::Failed);
        assert_eq!(
            error.message,
            format!(
                "TLS handshake with localhost:{} failed: {expected}",
                server.addr.port()
            ),
            "{versions:?}"
        );
    }
    assert_eq!(fixture.count("tls"), 2);
}

#[tokio::test]
async fn a_server_outside_the_trust_set_is_not_trusted() {
    let fixture = Fixture::new();
    let server = TestServer::tls(&fixture.pki, &tls13()).await;
    let port = server.addr.port();

    let error = fixture
        .error(mtls("GET", &server, "/echo?token=s3cret").trust("other"))
        .await;
    assert_eq!(error.kind, HostErrorKind::Failed);
    assert_eq!(
        error.message,
        format!(
            "TLS handshake with localhost:{port} failed: the server's certificate is not trusted by trust set `other`"
        )
    );

    // No trust set: the system's roots, which do not know the test CA either.
    let mut system = mtls("GET", &server, "/echo");
    system.trust = None;
    let error = fixture.error(system).await;
    assert_eq!(
        error.message,
        format!(
            "TLS handshake with localhost:{port} failed: the server's certificate is not trusted by the system's root certificates (the request names no trust set)"
        )
    );

    // A name that is not configured is the request's fault, found before connecting.
    let error = fixture
        .error(mtls("GET", &server, "/echo").trust("fmk-test"))
        .await;
    assert_eq!(error.kind, HostErrorKind::Invalid);
    assert_eq!(
        error.message,
        "no trust set named `fmk-test` is configured; add it to the daemon's trust sets or correct the plugin's setting"
    );
    assert_eq!(fixture.count("tls"), 2);
    assert_eq!(fixture.count("setup"), 1);
}

#[tokio::test]
async fn identities_that_are_missing_or_broken_are_named() {
    let fixture = Fixture::new();
    let server = TestServer::tls(&fixture.pki, &tls13()).await;

    let error = fixture
        .error(mtls("GET", &server, "/echo").identity(ClientIdentity::Pending))
        .await;
    assert_eq!(error.kind, HostErrorKind::Invalid);
    assert_eq!(
        error.message,
        "certificate apotek-prod has no client identity `pending`"
    );

    // A chain that is not the key's certificate.
    fixture.identities.set_pem(
        CERT_ID,
        ClientIdentity::Named("seal".into()),
        fixture.pki.server.fullchain_pem(),
        fixture.pki.client.key_pem.clone(),
    );
    let error = fixture
        .error(mtls("GET", &server, "/echo").identity(ClientIdentity::Named("seal".into())))
        .await;
    assert_eq!(error.kind, HostErrorKind::Failed);
    assert_eq!(
        error.message,
        "client identity `seal` of certificate apotek-prod: the first certificate of the chain does not belong to the private key; the chain must start with the identity's own certificate"
    );
    // Nothing of the key in the message, whatever went wrong with it.
    fixture.identities.set_pem(
        CERT_ID,
        ClientIdentity::Previous,
        fixture.pki.client.fullchain_pem(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
    );
    let error = fixture
        .error(mtls("GET", &server, "/echo").identity(ClientIdentity::Previous))
        .await;
    assert!(
        error
            .message
            .starts_with("client identity `previous` of certificate apotek-prod: the key file "),
        "{}",
        error.message
    );
    assert!(!error.message.contains("AAAA"), "{}", error.message);
    assert_eq!(fixture.count("setup"), 3);
}

#[tokio::test]
async fn plain_http_is_refused_except_to_loopback() {
    let fixture = Fixture::new();
    for (url, expected) in [
        (
            "http://fmk-test.example/api?token=s3cret",
            "refusing plain http to http://fmk-test.example:80/api: the host speaks https:// only, and http:// only to loopback addresses (127.0.0.0/8, ::1, localhost) for local simulators",
        ),
        (
            "http://192.0.2.10:8080/x",
            "refusing plain http to http://192.0.2.10:8080/x: the host speaks https:// only, and http:// only to loopback addresses (127.0.0.0/8, ::1, localhost) for local simulators",
        ),
        (
            "ftp://fmk-test.example/x",
            "the URL's scheme is \"ftp\"; the host speaks https:// (and http:// to loopback addresses)",
        ),
        (
            "https://user:pw@fmk-test.example/x",
            "the URL to fmk-test.example carries a user name or password; send credentials in a header",
        ),
        (
            "/relative/path",
            "the URL is not absolute; give scheme and host, like https://authority.example/path",
        ),
    ] {
        let started = Instant::now();
        let error = fixture.error(HttpRequest::get(url)).await;
        assert_eq!(error.kind, HostErrorKind::Invalid, "{url}");
        assert_eq!(error.message, expected, "{url}");
        // Refused before resolving or connecting (192.0.2.0/24 would not answer).
        assert!(started.elapsed() < Duration::from_secs(1), "{url}");
    }
    assert_eq!(fixture.count("refused"), 5);

    // Loopback, by address and by name: allowed, without TLS.
    let server = TestServer::plain().await;
    for url in [
        format!("http://127.0.0.1:{}/echo", server.addr.port()),
        server.url("/echo"),
    ] {
        let response = fixture.call(HttpRequest::get(&url)).await.unwrap();
        assert_eq!(response.status, 200, "{url}");
        let echo: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(echo["client"], Value::Null);
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_the_query_stays_secret() {
    let fixture = Fixture::new();
    let server = TestServer::tls(&fixture.pki, &tls13()).await;
    let started = Instant::now();
    let error = fixture
        .error(mtls("POST", &server, "/slow?token=s3cret").timeout_ms(300))
        .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(error.kind, HostErrorKind::Failed);
    assert_eq!(
        error.message,
        format!(
            "POST https://localhost:{}/slow got no complete answer within 300ms",
            server.addr.port()
        )
    );
    assert_eq!(fixture.count("timeout"), 1);

    let error = fixture
        .error(mtls("GET", &server, "/echo").timeout_ms(0))
        .await;
    assert_eq!(error.kind, HostErrorKind::Invalid);
    assert!(
        error.message.contains("timeout_ms is 0"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let fixture = Fixture::new();
    let server = TestServer::tls(&fixture.pki, &tls13()).await;
    for path in ["/large", "/large-announced"] {
        let error = fixture.error(mtls("GET", &server, path)).await;
        assert_eq!(error.kind, HostErrorKind::Failed);
        assert_eq!(
            error.message,
            format!(
                "the answer to GET https://localhost:{}{path} is larger than 16777216 bytes, the most the host accepts",
                server.addr.port()
            )
        );
    }
    assert_eq!(fixture.count("too_large"), 2);

    // HEAD announces the length of a body it does not send: not too large.
    let head = fixture
        .call(mtls("HEAD", &server, "/large-announced"))
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("16777217"));
    assert!(head.body.is_empty());
}

#[test]
fn urls_are_split_into_what_is_sent_and_what_is_shown() {
    let target = Target::parse("https://[::1]:8443/a/b?token=s3cret#part").unwrap();
    assert_eq!(target.host, "[::1]");
    assert_eq!(target.port, 8443);
    assert_eq!(target.ip, Some("::1".parse().unwrap()));
    assert_eq!(target.authority, "[::1]:8443");
    assert_eq!(target.path_and_query, "/a/b?token=s3cret");
    assert_eq!(target.to_string(), "https://[::1]:8443/a/b");
    assert_eq!(target.endpoint(), "[::1]:8443");

    let target = Target::parse("https://FMK-test.example").unwrap();
    assert_eq!((target.port, target.ip), (443, None));
    assert_eq!(target.path_and_query, "/");
    assert_eq!(target.to_string(), "https://FMK-test.example:443/");

    let target = Target::parse("http://LocalHost/sim").unwrap();
    assert!(!target.https && target.loopback_only);
    assert_eq!(target.port, 80);
    assert!(!Target::parse("http://[::1]/sim").unwrap().loopback_only);
    assert!(Target::parse("http://127.0.0.2/sim").is_ok());
    assert!(Target::parse("http://[::ffff:127.0.0.1]/sim").is_err());
}

#[tokio::test]
async fn a_redirect_is_returned_not_followed() {
    let fixture = Fixture::new();
    let server = TestServer::tls(&fixture.pki, &tls13()).await;
    let response = fixture
        .call(mtls("GET", &server, "/redirect"))
        .await
        .unwrap();
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("/echo"));
    assert!(response.body.is_empty());
    assert!(fixture.counted("ok"));
}

#[tokio::test]
async fn methods_and_headers_the_host_owns_are_refused() {
    let fixture = Fixture::new();
    let url = "https://fmk-test.example/api";
    let cases = [
        (
            HttpRequest::new("PATCH", url),
            "https://fmk-test.example:443/api: method \"PATCH\" is not offered; use GET, POST, PUT, DELETE or HEAD",
        ),
        (
            HttpRequest::get(url).header("Host", "other.example"),
            "GET https://fmk-test.example:443/api: header host is set by the host (hop-by-hop, host and content-length headers are refused)",
        ),
        (
            HttpRequest::get(url).header("Connection", "keep-alive"),
            "GET https://fmk-test.example:443/api: header connection is set by the host (hop-by-hop, host and content-length headers are refused)",
        ),
        (
            HttpRequest::post(url, "x").header("Transfer-Encoding", "chunked"),
            "POST https://fmk-test.example:443/api: header transfer-encoding is set by the host (hop-by-hop, host and content-length headers are refused)",
        ),
        (
            HttpRequest::post(url, "x").header("content-length", "1"),
            "POST https://fmk-test.example:443/api: header content-length is set by the host (hop-by-hop, host and content-length headers are refused)",
        ),
        (
            HttpRequest::get(url).header("x-a", "1\r\nx-b: 2"),
            "GET https://fmk-test.example:443/api: the value of header x-a is not valid (control characters or line breaks)",
        ),
        (
            HttpRequest::get(url).header("bad name", "1"),
            "GET https://fmk-test.example:443/api: \"bad name\" is not a valid header name",
        ),
    ];
    for (request, expected) in cases {
        let error = fixture.error(request).await;
        assert_eq!(error.kind, HostErrorKind::Invalid);
        assert_eq!(error.message, expected);
    }
}

#[tokio::test]
async fn connection_failures_name_host_and_port() {
    let fixture = Fixture::new();
    // A port nothing listens on: bind one, note it, close it.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = fixture
        .error(
            HttpRequest::get(format!("https://127.0.0.1:{port}/x?token=s3cret"))
                .trust("test-servers"),
        )
        .await;
    assert_eq!(error.kind, HostErrorKind::Failed);
    assert!(
        error.message.starts_with(&format!(
            "connecting to 127.0.0.1:{port} failed: Connection refused"
        )),
        "{}",
        error.message
    );
    assert!(!error.message.contains("s3cret"));
    assert_eq!(fixture.count("connect"), 1);
}

/// The daemon's shape, spelled out: a current-thread runtime driven by `block_on` on one
/// thread, the service called from that runtime's blocking pool.
#[test]
fn works_from_the_blocking_pool_of_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(
            Handle::current().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        );
        let fixture = Fixture::new();
        let server = TestServer::tls(&fixture.pki, &tls13()).await;
        let runtime_thread = std::thread::current().id();
        let service = fixture.service.clone();
        let request = mtls("GET", &server, "/echo");
        let (caller_thread, answer) = tokio::task::spawn_blocking(move || {
            (
                std::thread::current().id(),
                service.handle(PLUGIN, CERT_ID, request),
            )
        })
        .await
        .unwrap();
        assert_ne!(caller_thread, runtime_thread);
        assert_eq!(answer.unwrap().status, 200);
    });
}

/// Misuse: called on the runtime's own thread, nothing can run the request. It must come
/// back (after the timeout and the grace period), not hang the daemon for ever.
#[tokio::test]
async fn called_on_the_runtime_thread_it_gives_up_instead_of_hanging() {
    let fixture = Fixture::new();
    let started = Instant::now();
    let error = fixture
        .service
        .handle(
            PLUGIN,
            CERT_ID,
            HttpRequest::get("http://127.0.0.1:9/x").timeout_ms(100),
        )
        .unwrap_err();
    assert!(started.elapsed() < WAIT_GRACE + Duration::from_secs(2));
    assert_eq!(error.kind, HostErrorKind::Failed);
    assert!(
        error.message.starts_with(
            "the HTTP request did not run: the daemon's runtime did not carry it out within"
        ),
        "{}",
        error.message
    );
    assert_eq!(fixture.count("not_run"), 1);
}

#[test]
fn outcome_labels_are_distinct() {
    let labels: std::collections::BTreeSet<&str> =
        HttpOutcome::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(labels.len(), HttpOutcome::ALL.len());
}

/// Serves `body` over plain HTTP on loopback, once per connection, on its own thread.
fn serve_once_per_connection(body: Vec<u8>) -> SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/pkix-crl\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    addr
}

#[tokio::test]
async fn a_crl_is_fetched_over_plain_http_and_a_serial_is_looked_up_in_any_form() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
    };
    let fixture = Fixture::new();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "DVV Test CRL CA");
    let issuer = Issuer::new(params, key);
    let now = time::OffsetDateTime::now_utc();
    // A long serial (20 bytes), as DVV's are, with a leading zero byte for its sign.
    let long: Vec<u8> = std::iter::once(0x00)
        .chain((1..=20).map(|i| (i * 13) as u8 | 0x80))
        .collect();
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(1),
        next_update: now + time::Duration::days(1),
        crl_number: SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(&long),
            revocation_time: now - time::Duration::seconds(30),
            reason_code: Some(RevocationReason::Superseded),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    let addr = serve_once_per_connection(crl.der().to_vec());
    let url = format!("http://{addr}/dvv-test.crl");
    let hex: String = long[1..].iter().map(|b| format!("{b:02x}")).collect();
    let colons = long[1..]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let ask = |serial: String| {
        let (service, url) = (fixture.service.clone(), url.clone());
        tokio::task::spawn_blocking(move || service.crl_status(PLUGIN, CERT_ID, &url, &serial))
    };
    for serial in [hex.clone(), colons, format!("00{hex}")] {
        let status = ask(serial.clone()).await.unwrap().unwrap();
        assert!(status.revoked, "{serial}");
        assert!(status.revoked_at.is_some_and(|t| t <= now.unix_timestamp()));
        assert!(
            status.issuer.contains("DVV Test CRL CA"),
            "{}",
            status.issuer
        );
        assert!(status.next_update.is_some_and(|t| t > status.this_update));
    }
    let other = ask("01ab".into()).await.unwrap().unwrap();
    assert!(!other.revoked && other.revoked_at.is_none());
    let bad = ask("zz".into()).await.unwrap().unwrap_err();
    assert_eq!(bad.kind, HostErrorKind::Invalid, "{}", bad.message);
    // Not a CRL: said so, with the URL.
    let junk = serve_once_per_connection(b"<html>moved</html>".to_vec());
    let junk_url = format!("http://{junk}/crl");
    let service = fixture.service.clone();
    let error =
        tokio::task::spawn_blocking(move || service.crl_status(PLUGIN, CERT_ID, &junk_url, "01"))
            .await
            .unwrap()
            .unwrap_err();
    assert!(
        error.message.contains("cannot be read: it is not a CRL"),
        "{}",
        error.message
    );
}

#[test]
fn plain_http_goes_anywhere_only_for_a_crl() {
    assert!(Target::parse("http://crl.fineid.fi/dvv.crl").is_err());
    let target = Target::parse_with("http://crl.fineid.fi/dvv.crl", Plain::Anywhere).unwrap();
    assert!(!target.https);
    assert_eq!(target.port, 80);
}
