//! The webhook channel: the message as signed JSON, POSTed through the host's HTTP client.
//!
//! Contract:
//! - The body is [`payload`]: a public, versioned JSON document (schema below). Commands get
//!   the same document on stdin.
//! - Headers: `content-type: application/json`, `x-certvakt-event: <event>`,
//!   `idempotency-key: <delivery_id>` (the same for every attempt), and, when the route has a
//!   `secret_file`, `x-certvakt-signature: sha256=<hex>` ([`signature`] of the exact body
//!   bytes). The secret is the file's bytes less one trailing newline, read again at each
//!   attempt (bounded, never logged).
//! - The request goes through [`HttpService::handle`] (plugin label `notify`): https, or http
//!   to a loopback address only; the route's trust set or the system's roots; no redirects.
//! - 2xx delivers. 408, 429, 5xx and failures to connect or to get an answer are
//!   [`SendError::Transient`]; other statuses (a 3xx too), a URL or trust set the host refuses
//!   and an unreadable secret are [`SendError::Permanent`]. Errors give the status and the
//!   first 200 bytes of the answer's body, sanitised; the URL never with its query.
//!
//! # The payload, schema 1
//!
//! One JSON object; absent values are `null`, never missing:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `schema` | number | `1`; a change that breaks readers gets a new number |
//! | `id` | string | the event's idempotency key (32 lowercase hex), the same on every route |
//! | `delivery_id` | string | this route's delivery of it; the same on every attempt |
//! | `route` | string | the `[[notify]]` route's `name` |
//! | `event` | string | `task_opened`, `task_reminder`, `renewal_failing`, `expiring`, `expired`, `renewal_completed`, `plugin_refused`, `test` |
//! | `host` | string | the host name of the machine certvakt runs on |
//! | `created_at` | number | when the event happened, Unix seconds |
//! | `sent_at` | number | when this attempt was made, Unix seconds |
//! | `cert_id` | string or null | the certificate it is about |
//! | `task_id` | string or null | the operator task it is about |
//! | `plugin` | string or null | the plugin it is about |
//! | `deadline` | number or null | when it must be done by (the certificate's expiry), Unix seconds |
//! | `subject` | string | one line |
//! | `body` | string | plain text, several lines |
//! | `attachments` | array | `{"name", "content_type", "base64"}` per file (standard base64 with padding) |
//! | `details` | object | machine-readable facts, stable keys per event |

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certvakt_plugin_api::{HostErrorKind, HttpRequest};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::SendError;
use crate::notify::message::{Message, SCHEMA_VERSION};
use crate::plugin_host::http::HttpService;

/// The plugin label the host's HTTP client counts webhook requests under.
pub const HTTP_LABEL: &str = "notify";

/// How much of a refusing answer's body goes into the error.
const BODY_EXCERPT: usize = 200;

/// The JSON document of schema [`SCHEMA_VERSION`] (see the module documentation).
pub fn payload(msg: &Message, route: &str, delivery_id: &str, sent_at: i64) -> Vec<u8> {
    let attachments: Vec<Value> = msg
        .attachments
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "content_type": a.content_type,
                "base64": STANDARD.encode(&a.bytes),
            })
        })
        .collect();
    json!({
        "schema": SCHEMA_VERSION,
        "id": msg.id,
        "delivery_id": delivery_id,
        "route": route,
        "event": msg.event.as_str(),
        "host": super::host_name(),
        "created_at": msg.created_at,
        "sent_at": sent_at,
        "cert_id": msg.cert_id,
        "task_id": msg.task_id,
        "plugin": msg.plugin,
        "deadline": msg.deadline,
        "subject": msg.subject,
        "body": msg.body,
        "attachments": attachments,
        "details": msg.details,
    })
    .to_string()
    .into_bytes()
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in tag.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// One attempt to deliver `msg` to `url` for `route`. See the module documentation.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    http: Arc<HttpService>,
    url: &str,
    secret_file: Option<&Path>,
    trust: Option<&str>,
    msg: &Message,
    route: &str,
    delivery_id: &str,
    timeout: Duration,
) -> Result<String, SendError> {
    let shown = url_text(url);
    let body = payload(msg, route, delivery_id, crate::now_unix());
    let mut request = HttpRequest::post(url, body)
        .header("content-type", "application/json")
        .header("x-certvakt-event", msg.event.as_str())
        .header("idempotency-key", delivery_id)
        .timeout_ms(
            u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
    if let Some(trust) = trust {
        request = request.trust(trust);
    }
    let secret_file = secret_file.map(Path::to_path_buf);
    let route_name = route.to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        if let Some(path) = &secret_file {
            let secret = read_secret(path, &route_name)?;
            let signed = signature(&secret, &request.body);
            request = request.header("x-certvakt-signature", signed);
        }
        Ok(http.handle(HTTP_LABEL, "", request))
    })
    .await
    .map_err(|e| {
        SendError::Transient(format!(
            "The webhook of route `{route}` to {shown} was not sent: its task ended early ({e})."
        ))
    })??;
    let response = answer.map_err(|e| {
        let text = format!(
            "The webhook of route `{route}` was not delivered: {}.",
            e.message
        );
        match e.kind {
            HostErrorKind::Failed => SendError::Transient(text),
            // A URL or trust set the host refuses: only a configuration change helps.
            HostErrorKind::Invalid | HostErrorKind::NotAvailable => {
                SendError::Permanent(format!("{text} Correct the route's `url` or `trust`."))
            }
        }
    })?;
    let status = response.status;
    if (200..300).contains(&status) {
        return Ok(format!("HTTP {status}"));
    }
    let excerpt = body_excerpt(&response.body);
    let text = format!("{shown} answered HTTP {status} to the webhook of route `{route}`{excerpt}");
    if status == 408 || status == 429 || (500..600).contains(&status) {
        Err(SendError::Transient(format!(
            "{text}; it will be tried again."
        )))
    } else if (300..400).contains(&status) {
        Err(SendError::Permanent(format!(
            "{text}; redirects are not followed, so it is not tried again: set the route's `url` to where it leads."
        )))
    } else {
        Err(SendError::Permanent(format!(
            "{text}; the receiver refused it, so it is not tried again: check the route's `url` and `secret_file` against the receiver's settings."
        )))
    }
}

fn read_secret(path: &Path, route: &str) -> Result<Zeroizing<Vec<u8>>, SendError> {
    super::read_secret(path).map_err(|sentence| {
        SendError::Permanent(format!(
            "The webhook of route `{route}` was not sent: cannot read its secret_file {sentence}. Fix the file or the route's `secret_file`."
        ))
    })
}

/// The URL as messages show it: without query and fragment, which may hold tokens.
fn url_text(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    crate::plugin_host::sanitise(&url[..end])
}

/// `: "<start of the body>"`, sanitised, or nothing for an empty body.
fn body_excerpt(body: &[u8]) -> String {
    let start = &body[..body.len().min(BODY_EXCERPT)];
    let text = String::from_utf8_lossy(start);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let more = if body.len() > BODY_EXCERPT { "…" } else { "" };
    format!(": \"{}{more}\"", crate::plugin_host::sanitise(text))
}
