//! webhook: an HTTP receiver for the webhook channel's tests, on plain http to 127.0.0.1
//! (the daemon allows http to loopback).
//!
//! Promises:
//! - Answers every request, in this order: `503` while told to fail
//!   ([`WebhookReceiver::fail_next`]); `401` when `x-certvakt-signature` is missing or is not
//!   `sha256=` and the lowercase hex HMAC-SHA256 of the body under its secret (computed with
//!   the `hmac` crate, not the daemon's aws-lc); `400` when the body is not JSON; else `204`.
//! - Records what it accepted (path, headers with lowercase names, body, parsed JSON) and
//!   counts what it refused (401) and failed (503).
//! - Dropping it stops the server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use hmac::{KeyInit as _, Mac as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::Sha256;

use crate::serve::Served;

/// One request the receiver accepted.
#[derive(Debug, Clone)]
pub struct ReceivedHook {
    pub path: String,
    /// Header names in lowercase; the last value of a repeated header.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub json: serde_json::Value,
}

#[derive(Debug, Default)]
struct State {
    fail_next: usize,
    accepted: Vec<ReceivedHook>,
    refused: usize,
    failed: usize,
}

/// The running receiver. See the module documentation.
#[derive(Debug)]
pub struct WebhookReceiver {
    port: u16,
    state: Arc<Mutex<State>>,
    _served: Served,
}

impl WebhookReceiver {
    /// Listens on a free port of 127.0.0.1, accepting what is signed with `secret`.
    pub fn start(secret: &[u8]) -> Result<WebhookReceiver> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .context("binding the webhook receiver to 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let secret: Arc<[u8]> = Arc::from(secret);
        let serving_state = Arc::clone(&state);
        let served = Served::spawn("certvakt-webhook", listener, move |tcp| {
            let (state, secret) = (Arc::clone(&serving_state), Arc::clone(&secret));
            async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (state, secret) = (Arc::clone(&state), Arc::clone(&secret));
                    async move { Ok::<_, Infallible>(answer(request, &state, &secret).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            }
        })?;
        Ok(WebhookReceiver {
            port,
            state,
            _served: served,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers the next `n` requests with 503.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    /// What was accepted, in order.
    pub fn accepted(&self) -> Vec<ReceivedHook> {
        self.lock().accepted.clone()
    }

    /// How many were refused for their signature (401).
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    /// How many got a 503.
    pub fn failed(&self) -> usize {
        self.lock().failed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn expected_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|e| panic!("HMAC takes keys of any length: {e}"));
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn answer(
    request: Request<Incoming>,
    state: &Mutex<State>,
    secret: &[u8],
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => return respond(StatusCode::BAD_REQUEST, "the body could not be read"),
    };
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    if state.fail_next > 0 {
        state.fail_next -= 1;
        state.failed += 1;
        return respond(StatusCode::SERVICE_UNAVAILABLE, "busy, try later");
    }
    let signed = headers.get("x-certvakt-signature").map(String::as_str);
    if signed != Some(expected_signature(secret, &body).as_str()) {
        state.refused += 1;
        return respond(
            StatusCode::UNAUTHORIZED,
            "the x-certvakt-signature does not match this receiver's secret",
        );
    }
    let Ok(json) = serde_json::from_slice(&body) else {
        return respond(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    state.accepted.push(ReceivedHook {
        path,
        headers,
        body,
        json,
    });
    respond(StatusCode::NO_CONTENT, "")
}

fn respond(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn post(receiver: &WebhookReceiver, body: &str, signature: Option<&str>) -> u16 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", receiver.port())).unwrap();
        let signature = signature
            .map(|s| format!("x-certvakt-signature: {s}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n{signature}\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer[9..12].parse().unwrap()
    }

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            expected_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn answers_by_signature_and_fails_when_told() {
        let receiver = WebhookReceiver::start(b"key").unwrap();
        let body = r#"{"schema":1}"#;
        let good = expected_signature(b"key", body.as_bytes());
        assert_eq!(post(&receiver, body, None), 401);
        assert_eq!(post(&receiver, body, Some("sha256=00")), 401);
        receiver.fail_next(1);
        assert_eq!(post(&receiver, body, Some(&good)), 503);
        assert_eq!(post(&receiver, body, Some(&good)), 204);
        assert_eq!(receiver.refused(), 2);
        assert_eq!(receiver.failed(), 1);
        let accepted = receiver.accepted();
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].json["schema"], 1);
        assert_eq!(accepted[0].path, "/hook");
    }
}
