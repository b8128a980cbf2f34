//! SOAP over HTTPS for the authority simulators ([`crate::fmk`], [`crate::nemlogin`]): a
//! loopback server that hands each request (POST, or a GET for a WSDL), whole, to a
//! synchronous handler, and a plain client ([`post`], [`get`]) for the simulators' own tests.
//!
//! Promises:
//! - TLS by rustls (aws-lc-rs), HTTP/1.1 by hyper, on its own thread ([`Served`]). With client
//!   roots the server requires mutual TLS ([`crate::simca`]'s acceptor): a client without a
//!   certificate chaining to them fails the handshake and nothing is read.
//! - The handler sees the method, the path and query, `SOAPAction` (as sent, quotes
//!   included), `Content-Type`, `Authorization`, whether the body came chunked, the body, and
//!   the client's certificate chain; it runs on the blocking pool, so a handler that starts
//!   `xmllint` or `xmlsec1` does not stall other connections. Its answer may carry extra
//!   headers (`WWW-Authenticate`).
//! - Bodies over [`MAX_BODY`] are refused with 413 before the handler is called.
//! - The server's certificate is for `127.0.0.1`, `localhost` and `::1`, from its own
//!   [`CaShape::Tls`] test CA ([`ServerIdentity`]).
//!
//! What both simulators' answers share is here too: the namespaces ([`ns`]), the SOAP 1.1
//! envelope ([`envelope`]) and fault ([`Fault`]), and checking that a caller's certificate
//! chains to the client roots ([`check_client_chain`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use quick_xml::escape::escape;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::ca::{CaShape, KeyType, TestCa};
use crate::leaf::{IssuedCert, LeafSpec};
use crate::serve::{Served, server_chain};

/// The largest request body taken.
pub const MAX_BODY: usize = 1024 * 1024;

/// Namespaces both simulators use (each adds its own protocol's). Spelled here again rather
/// than taken from certvakt-soap: a simulator must not accept a namespace because the code under
/// test misspells it the same way.
pub mod ns {
    pub const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    pub const WSSE: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
    pub const WSU: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
    pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
    pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
}

/// One HTTP request as the handler sees it.
#[derive(Debug, Clone)]
pub struct SoapRequest {
    pub method: String,
    pub path: String,
    /// The query string after `?` (`wsdl`), if any.
    pub query: Option<String>,
    /// The `SOAPAction` header as sent (quotes included), if any.
    pub soap_action: Option<String>,
    pub content_type: Option<String>,
    /// The `Authorization` header as sent, if any.
    pub authorization: Option<String>,
    /// The body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    pub body: Vec<u8>,
    /// The client's TLS certificate chain, leaf first (empty without mutual TLS).
    pub client_chain: Vec<Vec<u8>>,
}

impl SoapRequest {
    /// The `SOAPAction` without surrounding space and quotes (empty when absent).
    pub fn action(&self) -> &str {
        self.soap_action
            .as_deref()
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
    }
}

/// What the handler answers.
#[derive(Debug, Clone)]
pub struct SoapReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Headers sent besides `Content-Type` (name, value).
    pub headers: Vec<(&'static str, String)>,
}

impl SoapReply {
    /// A SOAP 1.1 answer (`text/xml; charset=utf-8`).
    pub fn xml(status: u16, body: String) -> SoapReply {
        SoapReply {
            status,
            content_type: "text/xml; charset=utf-8",
            body,
            headers: Vec::new(),
        }
    }

    /// A plain-text answer (outages, wrong paths).
    pub fn text(status: u16, body: &str) -> SoapReply {
        SoapReply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// The same answer with the header `name: value` added.
    pub fn with_header(mut self, name: &'static str, value: &str) -> SoapReply {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Parses a request body that must be a SOAP 1.1 envelope; `Err` says why it is not one.
pub fn parse_envelope(source: &str) -> Result<roxmltree::Document<'_>, String> {
    let doc = roxmltree::Document::parse(source)
        .map_err(|e| format!("the request is not well-formed XML: {e}"))?;
    if !doc.root_element().has_tag_name((ns::SOAP, "Envelope")) {
        return Err("the request is not a SOAP 1.1 envelope (soapenv:Envelope)".to_owned());
    }
    Ok(doc)
}

/// A SOAP 1.1 answer: the XML declaration and `<{prefix}:Envelope>`, which declares `prefix`
/// for SOAP 1.1 and every `(prefix, namespace)` of `declarations`, holding `header`'s content
/// in a `Header` (when given) and `body`'s in the `Body`.
pub fn envelope(
    prefix: &str,
    declarations: &[(&str, &str)],
    header: Option<&str>,
    body: &str,
) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{prefix}:Envelope xmlns:{prefix}=\"{}\"{}>",
        ns::SOAP,
        xmlns(declarations)
    );
    if let Some(header) = header {
        xml.push_str(&format!("<{prefix}:Header>{header}</{prefix}:Header>"));
    }
    xml.push_str(&format!(
        "<{prefix}:Body>{body}</{prefix}:Body></{prefix}:Envelope>"
    ));
    xml
}

/// ` xmlns:p="namespace"` for each pair.
fn xmlns(declarations: &[(&str, &str)]) -> String {
    declarations
        .iter()
        .map(|(prefix, namespace)| format!(" xmlns:{prefix}=\"{}\"", escape(*namespace)))
        .collect()
}

/// A SOAP 1.1 `Fault` (its children unqualified, as SOAP 1.1 has them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fault<'a> {
    /// `faultcode`, as written (`wst:InvalidRequest`, `soapenv:Client`).
    pub code: &'a str,
    /// `faultstring` (escaped here).
    pub text: &'a str,
    /// The `xml:lang` of `faultstring`, if it has one.
    pub lang: Option<&'a str>,
    /// The content of `detail` (XML), if there is one.
    pub detail: Option<&'a str>,
}

impl Fault<'_> {
    /// The element, in the namespace `prefix` is declared for by the envelope, declaring
    /// `declarations` itself.
    pub fn element(&self, prefix: &str, declarations: &[(&str, &str)]) -> String {
        let lang = self
            .lang
            .map(|lang| format!(" xml:lang=\"{}\"", escape(lang)))
            .unwrap_or_default();
        let detail = self
            .detail
            .map(|detail| format!("<detail>{detail}</detail>"))
            .unwrap_or_default();
        format!(
            "<{prefix}:Fault{}><faultcode>{}</faultcode><faultstring{lang}>{}</faultstring>{detail}</{prefix}:Fault>",
            xmlns(declarations),
            self.code,
            escape(self.text),
        )
    }
}

/// Checks that `leaf` (DER) chains to one of `roots` through `intermediates` and is valid now,
/// as a client certificate. `Err` names the certificate as `what` (`the BinarySecurityToken`).
pub fn check_client_chain<'a>(
    roots: &[Vec<u8>],
    intermediates: impl IntoIterator<Item = &'a Vec<u8>>,
    leaf: &[u8],
    what: &str,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store
            .add(CertificateDer::from(root.clone()))
            .map_err(|e| format!("a client root does not parse: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .map_err(|e| format!("the STS has no usable client roots: {e}"))?;
    let intermediates: Vec<CertificateDer<'static>> = intermediates
        .into_iter()
        .cloned()
        .map(CertificateDer::from)
        .collect();
    verifier
        .verify_client_cert(
            &CertificateDer::from(leaf.to_vec()),
            &intermediates,
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| format!("{what} is not a valid OCES certificate here: {e}"))
}

/// The handler: called once per request, on the blocking pool.
pub type Handler = Arc<dyn Fn(SoapRequest) -> SoapReply + Send + Sync>;

/// A server certificate for loopback and the test CA that issued it.
pub struct ServerIdentity {
    pub ca: TestCa,
    pub cert: IssuedCert,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// A fresh TLS test CA and a certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn loopback() -> Result<ServerIdentity> {
        let ca = TestCa::new(CaShape::Tls)?;
        let cert = ca.issue(
            &LeafSpec::tls_server(&["localhost", "127.0.0.1", "::1"])
                .key_type(KeyType::EcP256)
                .days(-1, 365),
        )?;
        Ok(ServerIdentity { ca, cert })
    }
}

/// A running SOAP server; dropping it stops it.
#[derive(Debug)]
pub struct SoapServer {
    addr: SocketAddr,
    _served: Served,
}

impl SoapServer {
    /// Serves HTTPS on a free loopback port with `identity`'s certificate. With non-empty
    /// `client_roots` (DER), clients must present a certificate chaining to one of them.
    pub fn start(
        name: &str,
        identity: &ServerIdentity,
        client_roots: &[Vec<u8>],
        handler: Handler,
    ) -> Result<SoapServer> {
        let acceptor = if client_roots.is_empty() {
            server_only_acceptor(&identity.cert)?
        } else {
            crate::simca::tls_acceptor(&identity.cert, client_roots)?
        };
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .with_context(|| format!("binding {name} to loopback"))?;
        let addr = listener.local_addr()?;
        let served = Served::spawn(name, listener, move |tcp| {
            connection(tcp, acceptor.clone(), Arc::clone(&handler))
        })?;
        Ok(SoapServer {
            addr,
            _served: served,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

fn server_only_acceptor(server: &IssuedCert) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_pkcs8_der.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(server_chain(server), key)
        .context("the SOAP server's certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn connection(tcp: TcpStream, acceptor: TlsAcceptor, handler: Handler) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let client_chain: Vec<Vec<u8>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
        .unwrap_or_default();
    let service = service_fn(move |request| {
        let handler = Arc::clone(&handler);
        let client_chain = client_chain.clone();
        async move { Ok::<_, Infallible>(answer(handler, client_chain, request).await) }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn answer(
    handler: Handler,
    client_chain: Vec<Vec<u8>>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let soap_action = header("soapaction");
    let content_type = header("content-type");
    let authorization = header("authorization");
    let chunked = request
        .headers()
        .get_all(TRANSFER_ENCODING)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        });
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(e) => {
            return reply(SoapReply::text(
                413,
                &format!("the request body could not be read (at most {MAX_BODY} bytes): {e}"),
            ));
        }
    };
    let request = SoapRequest {
        method,
        path,
        query,
        soap_action,
        content_type,
        authorization,
        chunked,
        body,
        client_chain,
    };
    match tokio::task::spawn_blocking(move || handler(request)).await {
        Ok(answer) => reply(answer),
        Err(e) => reply(SoapReply::text(500, &format!("the simulator failed: {e}"))),
    }
}

fn reply(answer: SoapReply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// How [`post`] sends its request.
#[derive(Debug, Clone, Default)]
pub struct PostOptions<'a> {
    /// The `SOAPAction` header value, sent as given (add the quotes yourself).
    pub soap_action: Option<&'a str>,
    /// Send the body chunked instead of with `Content-Length`.
    pub chunked: bool,
    /// A client certificate for mutual TLS.
    pub identity: Option<&'a IssuedCert>,
}

/// POSTs `body` (`text/xml`) to `url` (`https://127.0.0.1:PORT/path`), trusting
/// `server_root_pem`; returns the status and the body. A raw HTTP/1.1 client, so that tests
/// control the framing exactly.
pub fn post(
    url: &str,
    server_root_pem: &str,
    body: &str,
    options: &PostOptions<'_>,
) -> Result<(u16, String)> {
    post_raw(url, server_root_pem, body, options, &[]).map(|r| (r.status, r.body))
}

/// An answer as [`post_raw`] read it.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Every header line (name lowercased, value trimmed), in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// [`post`] with `headers` (name, value) added to the request (a `Content-Type` among them
/// replaces `text/xml`), returning the answer's headers too.
pub fn post_raw(
    url: &str,
    server_root_pem: &str,
    body: &str,
    options: &PostOptions<'_>,
    headers: &[(&str, &str)],
) -> Result<RawResponse> {
    exchange("POST", url, server_root_pem, body, options, headers)
}

/// A `GET` of `url` (`https://127.0.0.1:PORT/path?query`), trusting `server_root_pem`, with
/// `identity` as the client certificate if given (a WSDL download over mutual TLS).
pub fn get(url: &str, server_root_pem: &str, identity: Option<&IssuedCert>) -> Result<RawResponse> {
    let options = PostOptions {
        identity,
        ..PostOptions::default()
    };
    exchange("GET", url, server_root_pem, "", &options, &[])
}

fn exchange(
    method: &str,
    url: &str,
    server_root_pem: &str,
    body: &str,
    options: &PostOptions<'_>,
    headers: &[(&str, &str)],
) -> Result<RawResponse> {
    let rest = url
        .strip_prefix("https://")
        .with_context(|| format!("{url} is not an https URL"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let (host, _) = authority
        .rsplit_once(':')
        .with_context(|| format!("{url} has no port"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for block in pem::parse_many(server_root_pem)? {
            roots.add(CertificateDer::from(block.into_contents()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match options.identity {
            Some(identity) => {
                let intermediates = identity.chain_der.len().saturating_sub(1);
                let chain = std::iter::once(&identity.cert_der)
                    .chain(identity.chain_der.iter().take(intermediates))
                    .cloned()
                    .map(CertificateDer::from)
                    .collect();
                let key =
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8_der.clone()));
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
        let mut tls = connector.connect(name, tcp).await.context("TLS handshake")?;
        let content_type = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map_or("text/xml; charset=utf-8", |(_, value)| *value);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
        );
        for (name, value) in headers {
            if !name.eq_ignore_ascii_case("content-type") {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        if let Some(action) = options.soap_action {
            head.push_str(&format!("SOAPAction: {action}\r\n"));
        }
        let mut wire = Vec::new();
        if options.chunked {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            wire.extend_from_slice(head.as_bytes());
            for piece in body.as_bytes().chunks(1000) {
                wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                wire.extend_from_slice(piece);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            wire.extend_from_slice(head.as_bytes());
            wire.extend_from_slice(body.as_bytes());
        }
        tls.write_all(&wire).await?;
        tls.flush().await?;
        let mut response = Vec::new();
        // A server that closes without close_notify is still an answer.
        let _ = tls.read_to_end(&mut response).await;
        parse_response(&response)
    })
}

fn parse_response(raw: &[u8]) -> Result<RawResponse> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP response (got {} bytes)", raw.len()))?;
    let status: u16 = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .context("no HTTP status line")?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    if !chunked {
        return Ok(RawResponse {
            status,
            headers,
            body: body.to_owned(),
        });
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            bail!("a truncated chunked body");
        };
        let size = usize::from_str_radix(size.trim(), 16).context("a chunk size")?;
        if size == 0 {
            return Ok(RawResponse {
                status,
                headers,
                body: out,
            });
        }
        let chunk = after.get(..size).context("a truncated chunk")?;
        out.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or_default();
    }
}
