//! exampleca: Example CA's JSON API, as the SDK's example plugin (`tests/plugins/example`)
//! speaks it with `api_url`, over HTTPS on loopback, so the renewal engine's tests can run that
//! plugin through every step.
//!
//! | request | answer |
//! |---|---|
//! | `POST /orders` `{"csr": "<PEM>"}` | `201 {"order_id": "EX-<n>"}`; the CSR is signed at once |
//! | `GET /orders/<id>` | `200` the certificate and its chain, PEM; `404` for an unknown order |
//! | `POST /registrations` | `201 {}` |
//! | `GET /registrations/<serial>` | `200 {}` |
//! | `DELETE /registrations/<serial>` | `204` |
//! | anything else | `404 {"error": …}` |
//!
//! Promises:
//! - The server's certificate is for `localhost` and `127.0.0.1`, from a server CA of its own
//!   ([`ExampleCaApi::server_ca_pem`]): the daemon must be told to trust it (the plugin asks for
//!   the trust set `example-ca`). Clients are not asked for a certificate.
//! - Certificates are signed by a [`TestCa`] as the CSR asks ([`TestCa::issue_from_csr`]).
//! - Every request answered is recorded ([`ExampleCaApi::requests`]): method, path, status.
//! - Dropping it stops the server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;

use crate::ca::{CaShape, KeyType, TestCa};
use crate::leaf::LeafSpec;
use crate::serve::{Served, server_chain};

/// The largest request body taken (a CSR or a certificate is a few kilobytes).
const MAX_BODY: usize = 64 * 1024;

/// One request the server answered: method, path, status.
pub type Seen = (String, String, u16);

/// What the connections share.
#[derive(Debug)]
struct State {
    issuing: TestCa,
    /// The PEM chain of each order, by id.
    orders: Vec<(String, String)>,
    seen: Vec<Seen>,
}

/// A running Example CA. See the module documentation.
#[derive(Debug)]
pub struct ExampleCaApi {
    addr: SocketAddr,
    server_ca: TestCa,
    state: Arc<Mutex<State>>,
    _served: Served,
}

impl ExampleCaApi {
    /// Starts it on a free port of 127.0.0.1.
    pub fn start() -> Result<ExampleCaApi> {
        let server_ca = TestCa::new(CaShape::Tls)?;
        let server = server_ca.issue(
            &LeafSpec::tls_server(&["localhost", "127.0.0.1"])
                .key_type(KeyType::EcP256)
                .days(-1, 365),
        )?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_pkcs8_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_single_cert(server_chain(&server), key)
            .context("Example CA's server certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("binding Example CA to 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            issuing: TestCa::new(CaShape::Tls)?,
            orders: Vec::new(),
            seen: Vec::new(),
        }));
        let serving = Arc::clone(&state);
        let served = Served::spawn("certvakt-exampleca", listener, move |tcp| {
            let (acceptor, state) = (acceptor.clone(), Arc::clone(&serving));
            async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let (method, path) = (
                            request.method().to_string(),
                            request.uri().path().to_owned(),
                        );
                        let response = answer(&state, request).await;
                        lock(&state)
                            .seen
                            .push((method, path, response.status().as_u16()));
                        Ok::<_, Infallible>(response)
                    }
                });
                // A client that hangs up mid-request is its own business.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        })?;
        Ok(ExampleCaApi {
            addr,
            server_ca,
            state,
            _served: served,
        })
    }

    /// `https://127.0.0.1:<port>`, no trailing slash: the plugin's `api_url`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The root that signed the server's certificate, PEM: the `example-ca` trust set.
    pub fn server_ca_pem(&self) -> String {
        self.server_ca.root_pem()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }
}

/// A lock that survives a panicked holder: the data is plain bookkeeping.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn answer(state: &Mutex<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (method, path.as_str()) {
        (Method::POST, "/orders") => {
            let body = match read_json(request).await {
                Ok(body) => body,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            };
            let Some(csr) = body["csr"].as_str() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body must be {\"csr\": \"<PEM>\"}",
                );
            };
            let mut state = lock(state);
            let issued = match state.issuing.issue_from_csr(csr, |_| {}) {
                Ok(issued) => issued,
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("{e:#}")),
            };
            let id = format!("EX-{}", state.orders.len() + 1);
            state
                .orders
                .push((id.clone(), format!("{}{}", issued.pem, issued.chain_pem)));
            json_response(StatusCode::CREATED, &json!({ "order_id": id }))
        }
        (Method::GET, path) if path.starts_with("/orders/") => {
            let id = path.trim_start_matches("/orders/");
            match lock(state).orders.iter().find(|(o, _)| o == id) {
                Some((_, chain)) => {
                    let mut response = Response::new(Full::new(Bytes::from(chain.clone())));
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/pem-certificate-chain"),
                    );
                    response
                }
                None => error(StatusCode::NOT_FOUND, &format!("no order {id:?}")),
            }
        }
        (Method::POST, "/registrations") => match read_json(request).await {
            Ok(_) => json_response(StatusCode::CREATED, &json!({})),
            Err(e) => error(StatusCode::BAD_REQUEST, &e),
        },
        (Method::GET, path) if path.starts_with("/registrations/") => {
            json_response(StatusCode::OK, &json!({}))
        }
        (Method::DELETE, path) if path.starts_with("/registrations/") => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        (method, path) => error(
            StatusCode::NOT_FOUND,
            &format!("Example CA has no {method} {path}"),
        ),
    }
}

async fn read_json(request: Request<Incoming>) -> Result<Value, String> {
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("the body could not be read (at most {MAX_BODY} bytes): {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
