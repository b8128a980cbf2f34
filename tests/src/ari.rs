//! A renewal-information front for pebble: what an ACME CA with RFC 9773 looks like to a
//! client, for a pebble (2.4) that has no `renewalInfo` of its own.
//!
//! Owns: [`AriFront`], an HTTPS server on loopback with its own test CA.
//!
//! Promises:
//! - `GET /dir` answers pebble's directory, unchanged but for one added member,
//!   `renewalInfo: https://<front>/renewal-info`. Every other URL in it is pebble's own, so
//!   signed requests go to pebble directly and pebble checks their `url`s as usual.
//! - `GET /renewal-info/<certID>` answers as RFC 9773 §4.2 does: the certificate identifier
//!   must be `base64url(keyIdentifier) "." base64url(serial)` (400 `malformed` otherwise); the
//!   serial must be one pebble issued, asked of pebble's management interface (404 otherwise);
//!   then 200 with `{"suggestedWindow": {"start", "end"}}` in RFC 3339 and a `Retry-After`
//!   header, from what the test set with [`AriFront::set_window`] (404 while none is set).
//! - Every request is recorded ([`AriFront::requests`]): method, path, status.
//! - Dropping it stops the server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_rustls::TlsAcceptor;

use crate::ca::{CaShape, KeyType, TestCa};
use crate::leaf::LeafSpec;
use crate::pebble::{Pebble, https_get};
use crate::serve::{Served, server_chain};

/// One request the front answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Debug)]
struct Shared {
    directory: Value,
    window: Mutex<Option<(i64, i64)>>,
    retry_after: Mutex<u64>,
    requests: Mutex<Vec<FrontRequest>>,
    management: SocketAddr,
    management_ca_pem: String,
}

/// The running front. See the module documentation.
pub struct AriFront {
    addr: SocketAddr,
    ca: TestCa,
    shared: Arc<Shared>,
    _served: Served,
}

impl std::fmt::Debug for AriFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AriFront")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AriFront {
    /// Starts a front for `pebble` on a free loopback port.
    pub fn start(pebble: &Pebble) -> Result<AriFront> {
        let ca = TestCa::new(CaShape::Tls)?;
        let server = ca.issue(
            &LeafSpec::tls_server(&["localhost", "127.0.0.1"])
                .key_type(KeyType::EcP256)
                .days(-1, 365),
        )?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = std_listener.local_addr()?;

        let (status, text) = pebble.acme_get("/dir")?;
        anyhow::ensure!(status == 200, "pebble's directory answered {status}");
        let mut directory: Value = serde_json::from_str(&text)?;
        directory["renewalInfo"] = json!(format!("https://{addr}/renewal-info"));
        let shared = Arc::new(Shared {
            directory,
            window: Mutex::new(None),
            retry_after: Mutex::new(21_600),
            requests: Mutex::new(Vec::new()),
            management: pebble.management_addr(),
            management_ca_pem: pebble.listener_ca_pem().to_owned(),
        });

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_pkcs8_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_single_cert(server_chain(&server), key)
            .context("the front's certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let serving = Arc::clone(&shared);
        let served = Served::spawn("certvakt-ari-front", std_listener, move |tcp| {
            let (acceptor, shared) = (acceptor.clone(), Arc::clone(&serving));
            async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(answer(&shared, request).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        })?;
        Ok(AriFront {
            addr,
            ca,
            shared,
            _served: served,
        })
    }

    /// The directory URL a client is configured with.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.addr)
    }

    /// The root of the front's TLS certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.ca.root_pem()
    }

    /// Sets the suggested window (Unix seconds) and the `Retry-After` sent with it.
    pub fn set_window(&self, start: i64, end: i64, retry_after_secs: u64) {
        *lock(&self.shared.window) = Some((start, end));
        *lock(&self.shared.retry_after) = retry_after_secs;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<FrontRequest> {
        lock(&self.shared.requests).clone()
    }
}

fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    let body = json!({"type": "urn:ietf:params:acme:error:malformed", "detail": detail});
    Response::builder()
        .status(status)
        .header("content-type", "application/problem+json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn json_response(body: &Value, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().header("content-type", "application/json");
    if let Some(secs) = retry_after {
        builder = builder.header("retry-after", secs.to_string());
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

async fn answer(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let response = route(shared, request.method(), &path).await;
    lock(&shared.requests).push(FrontRequest {
        method: request.method().to_string(),
        path,
        status: response.status().as_u16(),
    });
    response
}

async fn route(shared: &Arc<Shared>, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return problem(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here");
    }
    if path == "/dir" {
        return json_response(&shared.directory, None);
    }
    let Some(id) = path.strip_prefix("/renewal-info/") else {
        return problem(StatusCode::NOT_FOUND, "no such resource");
    };
    let parts: Vec<&str> = id.split('.').collect();
    let decoded: Vec<Vec<u8>> = parts
        .iter()
        .filter_map(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .filter(|bytes| !bytes.is_empty())
        .collect();
    let [_key_id, serial] = decoded.as_slice() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the certificate identifier is not base64url(keyIdentifier).base64url(serial)",
        );
    };
    if parts.len() != 2 {
        return problem(
            StatusCode::BAD_REQUEST,
            "the certificate identifier has extra parts",
        );
    }
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    let hex = hex.trim_start_matches('0').to_owned();
    let (management, ca) = (shared.management, shared.management_ca_pem.clone());
    let known = tokio::task::spawn_blocking(move || {
        https_get(management, &format!("/cert-status-by-serial/{hex}"), &ca)
    })
    .await;
    if !matches!(known, Ok(Ok((200, _)))) {
        return problem(
            StatusCode::NOT_FOUND,
            "no certificate with that serial was issued here",
        );
    }
    let Some((start, end)) = *lock(&shared.window) else {
        return problem(StatusCode::NOT_FOUND, "no renewal information yet");
    };
    let format = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default()
    };
    let retry_after = *lock(&shared.retry_after);
    json_response(
        &json!({"suggestedWindow": {"start": format(start), "end": format(end)}}),
        Some(retry_after),
    )
}
