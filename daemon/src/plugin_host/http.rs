//! [`HttpService`]: the HTTP(S) client a plugin uses through the host.
//!
//! A plugin never opens a socket: it sends [`HttpRequest`] through the host table and gets an
//! [`HttpResponse`] or a [`HostError`]. The host decides how the request leaves the machine.
//!
//! Contract:
//! - URLs: `https://` only, with one exception: `http://` to a loopback address (`127.0.0.0/8`,
//!   `::1`, or `localhost`, which is then only connected to where it resolves to a loopback
//!   address) for tests and local authority simulators. Plain http anywhere else, other
//!   schemes, and URLs with a user name or password are refused before anything is resolved
//!   or connected. A fragment (`#…`) is dropped, as browsers do.
//! - Methods `GET`, `POST`, `PUT`, `DELETE`, `HEAD` (any case, sent upper-case). Headers are
//!   sent as given, except that hop-by-hop headers (`connection`, `keep-alive`,
//!   `proxy-connection`, `proxy-authenticate`, `proxy-authorization`, `te`, `trailer`,
//!   `transfer-encoding`, `upgrade`), `host` and `content-length` are refused: the host writes
//!   those itself from the URL and the body. `user-agent: certvakt/<version>` is added unless
//!   the plugin sends its own.
//! - TLS is rustls with the aws-lc-rs provider (TLS 1.2 and 1.3, ALPN `http/1.1`). The
//!   server's certificate is checked against the trust set the request names (a PEM bundle
//!   from [`TrustSource`]) or, when it names none, the system's roots (see [`tls`] for where
//!   they come from). The client certificate is the chain and key [`IdentitySource`] gives for
//!   the certificate the call is about and the identity the request names. Private keys are
//!   read by the host only, live in zeroizing buffers until aws-lc holds them, and never cross
//!   to the plugin or into a message. Plain http (loopback) has no TLS, so the identity and
//!   trust set a request names are not used there: a local simulator without TLS can stand in
//!   for an authority that wants a client certificate.
//! - One rustls client configuration per (certificate, identity, trust set) is built and
//!   cached. Every request asks the sources again and compares a SHA-256 of the chain and the
//!   trust bundle with the cached one, so a renewal that swaps `current`, or an edited trust
//!   bundle, takes effect at the next request without a restart. Connections are not pooled: plugins make a handful of
//!   requests per renewal, and a fresh connection never presents a stale identity.
//! - `timeout_ms` covers the whole request, from resolving the name to the last byte of the
//!   body, and is capped at [`MAX_TIMEOUT`]. Response bodies larger than
//!   [`MAX_RESPONSE_BYTES`] are refused ([`HttpError::TooLarge`]). Redirects are not followed:
//!   a 3xx goes back to the plugin like any other status, so a plugin sees where it is sent
//!   and the host never carries a client certificate to a place the plugin did not name.
//! - Errors become [`HostError`]s: [`HostErrorKind::Invalid`] for a request refused before
//!   any traffic (bad URL, method or header, unknown trust set or identity),
//!   [`HostErrorKind::Failed`] for everything that went wrong trying. Messages name the URL
//!   as scheme, host, port and path, never the query (it may hold secrets) or anything of a key.
//! - Every request is one debug line on target `certvakt::plugin_host::http` (plugin,
//!   certificate, method, host, status or outcome, duration) and one count in
//!   `certvakt_plugin_http_requests_total{plugin,outcome}` ([`HttpOutcome`]).
//! - Threads: [`HttpService::handle`] blocks and is meant for the plugin call's blocking thread
//!   (see [`super::LoadedPlugin::call`]). It reads identities and trust sets and builds the
//!   TLS configuration on that thread, so file reads and key parsing never stall the runtime,
//!   then runs the network part on the daemon's runtime through the [`Handle`] it was given
//!   (the daemon's current-thread runtime drives all IO on its one thread) and waits for the
//!   answer on a channel. Called from the runtime's own thread it cannot be answered (that
//!   thread would have to run the request while it waits); the wait then gives up after the
//!   request's timeout plus a few seconds with [`HttpError::NotRun`] instead of hanging.
//!
//! Why hyper's own HTTP/1 client connection over tokio-rustls, and not reqwest 0.13 or
//! hyper-util's pooled client with hyper-rustls: hyper and hyper-util are already built for
//! `/metrics`, so the client costs hyper's `client` feature, rustls and tokio-rustls (shared
//! with the test simulators) and rustls-native-certs. reqwest adds `url` with `idna` and the
//! ICU crates, tower, and hyper-util's pooled client; hyper-rustls adds that client too, and
//! neither pool is wanted (see above). Driving the TLS handshake ourselves also gives the
//! handshake's own error (not trusted, no client certificate) to put into the sentence for
//! the operator, instead of a boxed "client error (Connect)".

mod tls;

pub(crate) use tls::{find_rustls_error, load_system_roots};

#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use certvakt_plugin_api::{ClientIdentity, HostError, HostErrorKind, HttpRequest, HttpResponse};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use zeroize::Zeroizing;

use crate::metrics::Metrics;

/// The longest a request may take, whatever `timeout_ms` says.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest response body handed to a plugin (authority answers are small; a certificate
/// chain or a SOAP reply is kilobytes).
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// How much longer than the request's own timeout the blocking caller waits for the runtime.
const WAIT_GRACE: Duration = Duration::from_secs(5);

/// Headers the host writes itself or that only concern one hop.
const REFUSED_HEADERS: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

// ---------------------------------------------------------------------------------------------
// Sources of client identities and trust anchors

/// A client certificate chain and its private key, as the host reads them for one request.
pub struct ClientCredentials {
    /// The certificate first, then its issuers, PEM.
    pub chain_pem: String,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1, unencrypted); cleared when dropped.
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("chain_pem_len", &self.chain_pem.len())
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Why an identity or a trust set could not be read: a sentence for the operator (which file,
/// what is wrong), never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where the client certificates come from. The renewal engine implements it over the
/// certificates it manages (`current`, `pending`, `previous`, configured names).
pub trait IdentitySource: Send + Sync {
    /// The chain and key of `identity` for the certificate `cert_id`; `Ok(None)` when that
    /// certificate has no such identity (no renewal running, no such name). Never asked for
    /// [`ClientIdentity::None`].
    fn client_identity(
        &self,
        cert_id: &str,
        identity: &ClientIdentity,
    ) -> Result<Option<ClientCredentials>, SourceError>;
}

/// Where named trust anchor sets come from.
pub trait TrustSource: Send + Sync {
    /// The PEM bundle of the trust set `name` (one or more `CERTIFICATE` blocks); `Ok(None)`
    /// when no set has that name.
    fn trust_set(&self, name: &str) -> Result<Option<String>, SourceError>;
}

/// An [`IdentitySource`] without identities: requests that name one are refused. For hosts
/// that have no key access (yet).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoIdentities;

impl IdentitySource for NoIdentities {
    fn client_identity(
        &self,
        _cert_id: &str,
        _identity: &ClientIdentity,
    ) -> Result<Option<ClientCredentials>, SourceError> {
        Ok(None)
    }
}

/// A [`TrustSource`] of PEM bundle files: each name is one or more files, read (and so
/// re-read after an edit) at every request.
#[derive(Debug, Clone, Default)]
pub struct TrustFiles {
    sets: BTreeMap<String, Vec<PathBuf>>,
}

impl TrustFiles {
    pub fn new() -> TrustFiles {
        TrustFiles::default()
    }

    /// Adds (or replaces) the set `name`, made of the certificates in `files`.
    pub fn with_set(
        mut self,
        name: impl Into<String>,
        files: impl IntoIterator<Item = impl Into<PathBuf>>,
    ) -> TrustFiles {
        self.sets
            .insert(name.into(), files.into_iter().map(Into::into).collect());
        self
    }
}

impl TrustSource for TrustFiles {
    fn trust_set(&self, name: &str) -> Result<Option<String>, SourceError> {
        let Some(files) = self.sets.get(name) else {
            return Ok(None);
        };
        let mut bundle = String::new();
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|e| {
                SourceError(format!(
                    "cannot read {} of trust set `{name}`: {e}",
                    file.display()
                ))
            })?;
            bundle.push_str(&text);
            bundle.push('\n');
        }
        Ok(Some(bundle))
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and outcomes

/// Why a plugin's HTTP request got no response. Each is a whole sentence naming the URL
/// without its query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Malformed or not allowed; nothing was sent.
    #[error("{0}")]
    Refused(String),
    /// The trust set or client identity the request names is not configured.
    #[error("{0}")]
    Unknown(String),
    /// The trust set or client identity could not be read or used.
    #[error("{0}")]
    Setup(String),
    #[error("connecting to {endpoint} failed: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("TLS handshake with {endpoint} failed: {reason}")]
    Tls { endpoint: String, reason: String },
    #[error("{request} got no complete answer within {timeout:?}")]
    Timeout { request: String, timeout: Duration },
    #[error("the answer to {request} is larger than {limit} bytes, the most the host accepts")]
    TooLarge { request: String, limit: usize },
    #[error("{request} failed: {reason}")]
    Protocol { request: String, reason: String },
    #[error("the HTTP request did not run: {0}")]
    NotRun(String),
}

impl HttpError {
    /// The kind a plugin sees: refused before any traffic is `Invalid`, the rest `Failed`.
    pub fn kind(&self) -> HostErrorKind {
        match self {
            HttpError::Refused(_) | HttpError::Unknown(_) => HostErrorKind::Invalid,
            _ => HostErrorKind::Failed,
        }
    }

    pub fn outcome(&self) -> HttpOutcome {
        match self {
            HttpError::Refused(_) => HttpOutcome::Refused,
            HttpError::Unknown(_) | HttpError::Setup(_) => HttpOutcome::Setup,
            HttpError::Connect { .. } => HttpOutcome::Connect,
            HttpError::Tls { .. } => HttpOutcome::Tls,
            HttpError::Timeout { .. } => HttpOutcome::Timeout,
            HttpError::TooLarge { .. } => HttpOutcome::TooLarge,
            HttpError::Protocol { .. } => HttpOutcome::Protocol,
            HttpError::NotRun(_) => HttpOutcome::NotRun,
        }
    }
}

impl From<HttpError> for HostError {
    fn from(error: HttpError) -> HostError {
        HostError::new(error.kind(), error.to_string())
    }
}

/// The `outcome` label of `certvakt_plugin_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpOutcome {
    /// A response, whatever its status.
    Ok,
    Refused,
    Setup,
    Connect,
    Tls,
    Timeout,
    TooLarge,
    Protocol,
    NotRun,
}

impl HttpOutcome {
    pub const ALL: [HttpOutcome; 9] = [
        HttpOutcome::Ok,
        HttpOutcome::Refused,
        HttpOutcome::Setup,
        HttpOutcome::Connect,
        HttpOutcome::Tls,
        HttpOutcome::Timeout,
        HttpOutcome::TooLarge,
        HttpOutcome::Protocol,
        HttpOutcome::NotRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HttpOutcome::Ok => "ok",
            HttpOutcome::Refused => "refused",
            HttpOutcome::Setup => "setup",
            HttpOutcome::Connect => "connect",
            HttpOutcome::Tls => "tls",
            HttpOutcome::Timeout => "timeout",
            HttpOutcome::TooLarge => "too_large",
            HttpOutcome::Protocol => "protocol",
            HttpOutcome::NotRun => "not_run",
        }
    }
}

/// A hex serial (`01:AB`, `01ab`, `0x`-less, any case, leading zeros or not) as its value.
fn serial_value(serial: &str) -> Option<x509_parser::num_bigint::BigUint> {
    let hex: String = serial.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() {
        return None;
    }
    x509_parser::num_bigint::BigUint::parse_bytes(hex.as_bytes(), 16)
}

/// Reading a CRL (DER or PEM) with x509-parser.
mod crl {
    use certvakt_plugin_api::messages::CrlStatus;
    use x509_parser::prelude::FromDer as _;
    use x509_parser::revocation_list::CertificateRevocationList;

    pub(super) fn status(
        body: &[u8],
        serial: &x509_parser::num_bigint::BigUint,
    ) -> Result<CrlStatus, String> {
        let der = match x509_parser::pem::parse_x509_pem(body) {
            Ok((_, block)) if block.label == "X509 CRL" => block.contents,
            _ => body.to_vec(),
        };
        let (_, crl) = CertificateRevocationList::from_der(&der)
            .map_err(|e| format!("it is not a CRL ({e})"))?;
        let hit = crl
            .iter_revoked_certificates()
            .find(|revoked| revoked.serial() == serial);
        Ok(CrlStatus {
            revoked: hit.is_some(),
            revoked_at: hit.map(|r| r.revocation_date.timestamp()),
            issuer: crl.issuer().to_string(),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The service

/// The host's HTTP client for plugins; one per daemon, shared by every plugin call.
pub struct HttpService {
    runtime: Handle,
    identities: Arc<dyn IdentitySource>,
    trust: Arc<dyn TrustSource>,
    metrics: Arc<Metrics>,
    clients: tls::ClientCache,
}

impl fmt::Debug for HttpService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpService").finish_non_exhaustive()
    }
}

impl HttpService {
    /// A client whose network work runs on `runtime` (the daemon's), with client identities
    /// from `identities` and named trust sets from `trust`.
    pub fn new(
        runtime: Handle,
        identities: Arc<dyn IdentitySource>,
        trust: Arc<dyn TrustSource>,
        metrics: Arc<Metrics>,
    ) -> HttpService {
        HttpService {
            runtime,
            identities,
            trust,
            metrics,
            clients: tls::ClientCache::default(),
        }
    }

    /// Carries out `request` for `plugin`'s call about `cert_id`, blocking until it is done.
    /// See the module documentation for what is allowed and which thread may call this.
    pub fn handle(
        &self,
        plugin: &str,
        cert_id: &str,
        request: HttpRequest,
    ) -> Result<HttpResponse, HostError> {
        let started = Instant::now();
        let method = request.method.to_ascii_uppercase();
        let host = log_host(&request.url);
        let result = self
            .prepare(cert_id, request, started)
            .and_then(|prepared| self.run(prepared));
        let duration_ms = started.elapsed().as_millis() as u64;
        let outcome = match &result {
            Ok(_) => HttpOutcome::Ok,
            Err(error) => error.outcome(),
        };
        self.metrics
            .observe_plugin_http_request(plugin, outcome.as_str());
        match &result {
            Ok(response) => log::debug!(
                plugin = plugin, cert_id = cert_id, method = method.as_str(), host = host.as_str(),
                status = response.status, duration_ms = duration_ms;
                "plugin HTTP request"
            ),
            Err(error) => log::debug!(
                plugin = plugin, cert_id = cert_id, method = method.as_str(), host = host.as_str(),
                outcome = outcome.as_str(), duration_ms = duration_ms, error = error.to_string().as_str();
                "plugin HTTP request"
            ),
        }
        result.map_err(HostError::from)
    }

    /// Fetches the CRL at `url` for `plugin`'s call about `cert_id` and says whether `serial`
    /// (hex) is on it. Plain `http://` may go anywhere here (a CRL is signed data), never
    /// with a client identity; the answer is read with x509-parser, not verified: it only
    /// tells a plugin that a revocation it asked a person for has been published.
    pub fn crl_status(
        &self,
        plugin: &str,
        cert_id: &str,
        url: &str,
        serial: &str,
    ) -> Result<certvakt_plugin_api::messages::CrlStatus, HostError> {
        let wanted = serial_value(serial).ok_or_else(|| {
            HostError::new(
                HostErrorKind::Invalid,
                format!("{serial:?} is not a serial number in hex (digits 0-9 a-f, `:` allowed)"),
            )
        })?;
        let request = HttpRequest {
            method: "GET".into(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            identity: certvakt_plugin_api::ClientIdentity::None,
            trust: None,
            timeout_ms: 30_000,
        };
        let started = Instant::now();
        let result = self
            .prepare_for(cert_id, request, started, Plain::Anywhere)
            .and_then(|prepared| self.run(prepared));
        let outcome = match &result {
            Ok(_) => HttpOutcome::Ok,
            Err(error) => error.outcome(),
        };
        self.metrics
            .observe_plugin_http_request(plugin, outcome.as_str());
        let response = result.map_err(HostError::from)?;
        if response.status != 200 {
            return Err(HostError::new(
                HostErrorKind::Failed,
                format!("the CRL at {url} answered HTTP {}", response.status),
            ));
        }
        crl::status(&response.body, &wanted).map_err(|why| {
            HostError::new(
                HostErrorKind::Failed,
                format!("the CRL at {url} cannot be read: {why}"),
            )
        })
    }

    /// Everything that needs no network: checks, the request, the TLS configuration.
    fn prepare(
        &self,
        cert_id: &str,
        request: HttpRequest,
        started: Instant,
    ) -> Result<Prepared, HttpError> {
        self.prepare_for(cert_id, request, started, Plain::LoopbackOnly)
    }

    fn prepare_for(
        &self,
        cert_id: &str,
        request: HttpRequest,
        started: Instant,
        plain: Plain,
    ) -> Result<Prepared, HttpError> {
        let target = Target::parse_with(&request.url, plain)?;
        let method = parse_method(&request.method, &target)?;
        if request.timeout_ms == 0 {
            return Err(HttpError::Refused(format!(
                "{method} {target}: timeout_ms is 0; give the whole request's time limit in milliseconds"
            )));
        }
        let timeout = Duration::from_millis(request.timeout_ms).min(MAX_TIMEOUT);
        let hyper_request = build_request(&method, &target, request.headers, request.body)?;
        let tls = if target.https {
            let connector = self.clients.connector(
                self.identities.as_ref(),
                self.trust.as_ref(),
                cert_id,
                &request.identity,
                request.trust.as_deref(),
            )?;
            let server_name = tls::server_name(&target)?;
            Some(TlsSetup {
                connector,
                server_name,
                context: tls::Context {
                    cert_id: cert_id.to_owned(),
                    identity: request.identity,
                    trust: request.trust,
                },
            })
        } else {
            None
        };
        Ok(Prepared {
            described: format!("{method} {target}"),
            target,
            request: hyper_request,
            tls,
            deadline: started + timeout,
            timeout,
        })
    }

    /// The network part, on the daemon's runtime; this thread waits for it.
    fn run(&self, prepared: Prepared) -> Result<HttpResponse, HttpError> {
        let described = prepared.described.clone();
        let timeout = prepared.timeout;
        let deadline = prepared.deadline;
        let (sender, receiver) = mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let answer = match tokio::time::timeout_at(deadline.into(), exchange(prepared)).await {
                Ok(answer) => answer,
                Err(_elapsed) => Err(HttpError::Timeout {
                    request: described,
                    timeout,
                }),
            };
            // The waiter may have given up; then nobody needs the answer.
            let _ = sender.send(answer);
        });
        let wait = deadline.saturating_duration_since(Instant::now()) + WAIT_GRACE;
        match receiver.recv_timeout(wait) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => Err(HttpError::NotRun(format!(
                "the daemon's runtime did not carry it out within {wait:?} (was it asked from the runtime's own thread?)"
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(HttpError::NotRun(
                "the daemon's runtime is shutting down".into(),
            )),
        }
    }
}

/// A checked request, ready to go.
struct Prepared {
    target: Target,
    /// `METHOD scheme://host:port/path`, for messages.
    described: String,
    request: Request<Full<Bytes>>,
    tls: Option<TlsSetup>,
    deadline: Instant,
    timeout: Duration,
}

struct TlsSetup {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
    context: tls::Context,
}

/// Where a request goes, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    /// As in the URL: a name, an IPv4 address, or an IPv6 address in brackets.
    host: String,
    port: u16,
    /// The host as an address, when it is one.
    ip: Option<IpAddr>,
    /// Plain http to `localhost`: only loopback addresses of the name are used.
    loopback_only: bool,
    /// `host[:port]` as written in the URL: the `host` header.
    authority: String,
    /// The path, without the query: for messages.
    path: String,
    /// The path and query: the request target.
    path_and_query: String,
}

/// Where plain `http://` may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plain {
    /// Only to loopback addresses (simulators): every plugin request.
    LoopbackOnly,
    /// Anywhere: a CRL, which is signed data published over plain HTTP by design (RFC 5280
    /// §4.2.1.13), fetched without a client identity.
    Anywhere,
}

impl Target {
    #[cfg(test)]
    fn parse(url: &str) -> Result<Target, HttpError> {
        Target::parse_with(url, Plain::LoopbackOnly)
    }

    fn parse_with(url: &str, plain: Plain) -> Result<Target, HttpError> {
        // The fragment never leaves the client.
        let url = url.split('#').next().unwrap_or_default();
        let uri: Uri = url.parse().map_err(|e| {
            HttpError::Refused(format!(
                "the URL does not parse as an absolute https:// URL ({e})"
            ))
        })?;
        let https = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
            Some(scheme) => {
                return Err(HttpError::Refused(format!(
                    "the URL's scheme is {scheme:?}; the host speaks https:// (and http:// to loopback addresses)"
                )));
            }
            None => {
                return Err(HttpError::Refused(
                    "the URL is not absolute; give scheme and host, like https://authority.example/path"
                        .into(),
                ));
            }
        };
        let Some(authority) = uri.authority() else {
            return Err(HttpError::Refused("the URL has no host".into()));
        };
        if authority.as_str().contains('@') {
            return Err(HttpError::Refused(format!(
                "the URL to {} carries a user name or password; send credentials in a header",
                authority.host()
            )));
        }
        let host = authority.host().to_owned();
        if host.is_empty() {
            return Err(HttpError::Refused("the URL has no host".into()));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        let path = match uri.path() {
            "" => "/".to_owned(),
            path => path.to_owned(),
        };
        let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
            Some(pq) if pq.starts_with('/') => pq.to_owned(),
            Some(pq) => format!("/{pq}"),
            None => "/".to_owned(),
        };
        let is_localhost = ip.is_none() && bare.eq_ignore_ascii_case("localhost");
        let target = Target {
            https,
            host,
            port,
            ip,
            loopback_only: !https && is_localhost,
            authority: authority.as_str().to_owned(),
            path,
            path_and_query,
        };
        if plain == Plain::LoopbackOnly
            && !https
            && !ip.is_some_and(|ip| ip.is_loopback())
            && !is_localhost
        {
            return Err(HttpError::Refused(format!(
                "refusing plain http to {target}: the host speaks https:// only, and http:// only to loopback addresses (127.0.0.0/8, ::1, localhost) for local simulators"
            )));
        }
        Ok(target)
    }

    /// `host:port`.
    fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `scheme://host:port/path`: the query may hold secrets and is never shown.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// The host of a URL for the log line, or `-`.
fn log_host(url: &str) -> String {
    url.split('#')
        .next()
        .and_then(|url| url.parse::<Uri>().ok())
        .and_then(|uri| uri.host().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

fn parse_method(method: &str, target: &Target) -> Result<Method, HttpError> {
    let upper = method.to_ascii_uppercase();
    match upper.as_str() {
        "GET" => Ok(Method::GET),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "DELETE" => Ok(Method::DELETE),
        "HEAD" => Ok(Method::HEAD),
        _ => Err(HttpError::Refused(format!(
            "{target}: method {method:?} is not offered; use GET, POST, PUT, DELETE or HEAD"
        ))),
    }
}

fn build_request(
    method: &Method,
    target: &Target,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, HttpError> {
    let refuse = |what: String| HttpError::Refused(format!("{method} {target}: {what}"));
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(target.path_and_query.as_str())
        .header(header::HOST, target.authority.as_str());
    let mut user_agent = false;
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| refuse(format!("{name:?} is not a valid header name")))?;
        if REFUSED_HEADERS.contains(&header_name.as_str()) {
            return Err(refuse(format!(
                "header {header_name} is set by the host (hop-by-hop, host and content-length headers are refused)"
            )));
        }
        let header_value = HeaderValue::from_str(&value).map_err(|_| {
            refuse(format!(
                "the value of header {header_name} is not valid (control characters or line breaks)"
            ))
        })?;
        user_agent |= header_name == header::USER_AGENT;
        builder = builder.header(header_name, header_value);
    }
    if !user_agent {
        builder = builder.header(header::USER_AGENT, format!("certvakt/{}", crate::VERSION));
    }
    // Servers answer a POST or PUT without a length with 411, even when the body is empty.
    if !body.is_empty() || *method == Method::POST || *method == Method::PUT {
        builder = builder.header(header::CONTENT_LENGTH, body.len());
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| refuse(format!("the request cannot be built: {e}")))
}

// ---------------------------------------------------------------------------------------------
// The network part (on the runtime)

async fn exchange(prepared: Prepared) -> Result<HttpResponse, HttpError> {
    let Prepared {
        target,
        described,
        request,
        tls,
        ..
    } = prepared;
    let tcp = connect(&target).await?;
    match tls {
        Some(setup) => {
            let stream = setup
                .connector
                .connect(setup.server_name, tcp)
                .await
                .map_err(|e| HttpError::Tls {
                    endpoint: target.endpoint(),
                    reason: tls::explain_io(&e, &setup.context),
                })?;
            send(
                TokioIo::new(stream),
                request,
                &target,
                &described,
                Some(&setup.context),
            )
            .await
        }
        None => send(TokioIo::new(tcp), request, &target, &described, None).await,
    }
}

/// Resolves the host (unless it is an address) and connects to the first address that
/// answers.
async fn connect(target: &Target) -> Result<TcpStream, HttpError> {
    let failed = |reason: String| HttpError::Connect {
        endpoint: target.endpoint(),
        reason,
    };
    let mut addresses: Vec<SocketAddr> = match target.ip {
        Some(ip) => vec![SocketAddr::new(ip, target.port)],
        None => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| failed(format!("cannot resolve {}: {e}", target.host)))?
            .collect(),
    };
    if target.loopback_only {
        addresses.retain(|a| a.ip().is_loopback());
    }
    if addresses.is_empty() {
        let what = if target.loopback_only {
            "no loopback address (plain http is only allowed to loopback addresses)"
        } else {
            "no address"
        };
        return Err(failed(format!("{} resolves to {what}", target.host)));
    }
    let mut last_error = None;
    for address in &addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // Requests are small and written at once; do not wait for ACKs.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = Some((address, e)),
        }
    }
    let reason = match last_error {
        Some((address, e)) if addresses.len() > 1 => {
            format!(
                "{e} (tried {} addresses, the last {address})",
                addresses.len()
            )
        }
        Some((_, e)) => e.to_string(),
        None => "no address answered".into(),
    };
    Err(failed(reason))
}

/// Runs one HTTP/1.1 exchange on a connected stream and reads the whole answer.
async fn send<T>(
    io: T,
    request: Request<Full<Bytes>>,
    target: &Target,
    described: &str,
    tls: Option<&tls::Context>,
) -> Result<HttpResponse, HttpError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let failed = |error: &(dyn StdError + 'static)| exchange_error(error, target, described, tls);
    let head = request.method() == Method::HEAD;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| failed(&e))?;
    // The connection runs beside the request; dropping the guard (done, failed or timed out)
    // ends it.
    let mut driver = AbortOnDrop(tokio::spawn(connection));
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(error) => {
            // When the connection broke, its own error says why (a TLS alert, a reset); the
            // request only learns that it was cancelled.
            if error.is_canceled() || error.is_closed() {
                if let Ok(Err(cause)) = (&mut driver.0).await {
                    return Err(failed(&cause));
                }
            }
            return Err(failed(&error));
        }
    };
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let too_large = || HttpError::TooLarge {
        request: described.to_owned(),
        limit: MAX_RESPONSE_BYTES,
    };
    // A HEAD answer announces the length of a body it does not carry.
    let announced = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| !head);
    if announced.is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = response.into_body();
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failed(&e))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&data);
        }
    }
    drop(driver);
    Ok(HttpResponse {
        status,
        headers,
        body: bytes,
    })
}

/// A TLS problem found anywhere in the error's chain, or the chain as text.
fn exchange_error(
    error: &(dyn StdError + 'static),
    target: &Target,
    described: &str,
    tls: Option<&tls::Context>,
) -> HttpError {
    if let (Some(context), Some(tls_error)) = (tls, tls::find_rustls_error(error)) {
        return HttpError::Tls {
            endpoint: target.endpoint(),
            reason: tls::explain(tls_error, context),
        };
    }
    HttpError::Protocol {
        request: described.to_owned(),
        reason: chain_text(error),
    }
}

/// An error and its causes, `outer: inner: innermost`, without repeating a message that
/// already ends the text (hyper and std often repeat their cause).
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Aborts the task when dropped, so a timed-out request leaves no connection behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
