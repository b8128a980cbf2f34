//! The simulated CA's HTTPS side: mutual TLS with rustls, HTTP/1.1 with hyper, JSON in and out.
//!
//! Promises:
//! - No request is read from a client that did not present a certificate chaining to the
//!   client CA: the TLS handshake fails (rustls answers `certificate_required` or
//!   `unknown_ca`), and the refusal is recorded.
//! - Every answer is JSON; an error is `{"error": "<sentence>"}` with a 4xx or 5xx status.
//! - While the failure switch is set, each request (any route) uses up one failure and is
//!   answered 503 with `Retry-After: 1`, before it is routed.
//! - Request bodies over [`MAX_BODY`] are refused with 413.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::SeenRequest;
use super::orders::{Orders, Profile, Status};

/// The largest request body taken (a CSR is a few kilobytes).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// What the connections share: the orders, the failure switch, and what was seen.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) orders: Mutex<Orders>,
    pub(crate) fail_next: AtomicU32,
    pub(crate) seen: Mutex<Vec<SeenRequest>>,
    pub(crate) refusals: Mutex<Vec<String>>,
    /// Print one line per request and refusal on stderr (the binary does).
    pub(crate) log: bool,
}

impl Shared {
    pub(crate) fn new(orders: Orders, log: bool) -> Shared {
        Shared {
            orders: Mutex::new(orders),
            fail_next: AtomicU32::new(0),
            seen: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            log,
        }
    }

    /// Uses up one failure of the switch, if any is left.
    fn take_failure(&self) -> bool {
        self.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn record(&self, seen: SeenRequest) {
        if self.log {
            eprintln!(
                "certvakt-simca: {} {} -> {} (client {})",
                seen.method,
                seen.path,
                seen.status,
                seen.client.as_deref().unwrap_or("none")
            );
        }
        lock(&self.seen).push(seen);
    }

    fn refuse(&self, why: String) {
        if self.log {
            eprintln!("certvakt-simca: TLS handshake refused: {why}");
        }
        lock(&self.refusals).push(why);
    }
}

/// A lock that survives a panicked holder: the data is plain bookkeeping.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves one connection (the accept loop is [`crate::serve::Served`]).
pub(crate) async fn connection(tcp: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => return shared.refuse(e.to_string()),
    };
    let client = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
        .map(|(_, cert)| cert.subject().to_string());
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let client = client.clone();
        async move { Ok::<_, Infallible>(answer(&shared, client, request).await) }
    });
    // A client that hangs up mid-request is its own business.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn answer(
    shared: &Shared,
    client: Option<String>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let response = route(shared, request).await;
    shared.record(SeenRequest {
        method,
        path,
        status: response.status().as_u16(),
        client,
    });
    response
}

async fn route(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if shared.take_failure() {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the CA is unavailable (simulated outage); try again later",
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let path = request.uri().path().to_owned();
    if path == "/orders" {
        if request.method() != Method::POST {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "use POST /orders");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        return place(shared, request).await;
    }
    if let Some(id) = path.strip_prefix("/orders/") {
        if request.method() != Method::GET {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "use GET /orders/<id>");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        return status(shared, id);
    }
    error(
        StatusCode::NOT_FOUND,
        &format!("no resource at {path}: this CA serves POST /orders and GET /orders/<id>"),
    )
}

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    csr_pem: String,
    #[serde(default)]
    profile: Option<String>,
}

async fn place(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body could not be read (at most {MAX_BODY} bytes): {e}"),
            );
        }
    };
    let order: NewOrder = match serde_json::from_slice(&body) {
        Ok(order) => order,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body must be JSON {{\"csr_pem\": \"…\", \"profile\": \"tls\"|\"oces3\"}}: {e}"
                ),
            );
        }
    };
    let profile = match Profile::from_name(order.profile.as_deref()) {
        Ok(profile) => profile,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let placed = lock(&shared.orders).place(&order.csr_pem, profile, Instant::now());
    match placed {
        Ok((id, retry_after)) => pending(&id, retry_after),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

fn status(shared: &Shared, id: &str) -> Response<Full<Bytes>> {
    let status = lock(&shared.orders).status(id, Instant::now());
    match status {
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no order {id:?} at this CA"),
        ),
        Some(Ok(Status::Pending { retry_after })) => pending(id, retry_after),
        Some(Ok(Status::Issued { chain_pem })) => json_response(
            StatusCode::OK,
            &json!({ "order": id, "status": "issued", "chain_pem": chain_pem }),
        ),
        Some(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("issuing order {id} failed: {e}"),
        ),
    }
}

fn pending(id: &str, retry_after: u64) -> Response<Full<Bytes>> {
    let mut response = json_response(
        StatusCode::ACCEPTED,
        &json!({ "order": id, "status": "pending", "retry_after": retry_after }),
    );
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
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
