//! One SOAP 1.1 request through the host's HTTP client, and its failures sorted into what the
//! daemon can act on.
//!
//! - No answer at all (refused, timed out, TLS failed) and 5xx answers that are not SOAP:
//!   [`ErrorKind::Temporary`](certvakt_plugin_api::ErrorKind): the daemon backs off and tries
//!   again, keeping everything.
//! - A SOAP fault, whatever the HTTP status (some services send faults with 200):
//!   [`Answer::Fault`], for the plugin to map, because only it knows what the codes mean.
//! - Anything else that is not a SOAP envelope: a permanent error quoting the start of the
//!   answer, so the operator sees what came back.
//!
//! The body is sent whole with `Content-Length` (never chunked: NemLog-in's load balancer does
//! not cope with chunked bodies), as `text/xml; charset=utf-8` with the `SOAPAction` header
//! quoted, as SOAP 1.1 §6.1.1 writes it.

use certvakt_plugin_api::{ClientIdentity, Host, HttpRequest, PluginError};

use crate::read::{self, Fault};

/// One request.
#[derive(Debug, Clone)]
pub struct SoapRequest<'a> {
    /// Who is asked, for messages: `FMK`, `the SOSI STS`.
    pub service: &'a str,
    pub url: &'a str,
    pub action: &'a str,
    pub envelope: String,
    /// The client certificate for mutual TLS.
    pub identity: ClientIdentity,
    /// The named trust set for the server's certificate (`None`: the system's roots).
    pub trust: Option<String>,
    pub timeout_ms: u64,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A SOAP envelope without a fault: its text.
    Envelope(String),
    /// A SOAP fault, and the HTTP status it came with.
    Fault { fault: Fault, status: u16 },
}

/// Sends `request` and sorts the answer.
pub fn call(host: &Host<'_>, request: SoapRequest<'_>) -> Result<Answer, PluginError> {
    let service = request.service;
    let http = HttpRequest::post(request.url, request.envelope.into_bytes())
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{}\"", request.action))
        .identity(request.identity)
        .timeout_ms(request.timeout_ms);
    let http = match request.trust {
        Some(trust) => http.trust(trust),
        None => http,
    };
    let response = host
        .http(http)
        .map_err(|e| PluginError::temporary(format!("{service} did not answer: {e}")))?;
    let status = response.status;
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let parsed = read::parse(&text, "the answer").and_then(|doc| {
        read::body(&doc)?;
        Ok(read::fault(&doc))
    });
    match parsed {
        Ok(Some(fault)) => Ok(Answer::Fault { fault, status }),
        Ok(None) if (200..300).contains(&status) => Ok(Answer::Envelope(text)),
        Ok(None) => Err(PluginError::temporary(format!(
            "{service} answered HTTP {status} with a SOAP envelope that is not a fault"
        ))),
        Err(e) if status >= 500 || status == 429 => Err(PluginError::temporary(format!(
            "{service} answered HTTP {status}, not SOAP ({e}): {}",
            snippet(&text)
        ))),
        Err(e) => Err(PluginError::permanent(format!(
            "{service} answered HTTP {status}, and {e}: {}",
            snippet(&text)
        ))),
    }
}

/// The first 200 characters of an answer, on one line, for an error message.
pub fn snippet(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if text.chars().count() > 200 {
        format!("{one_line}…")
    } else {
        one_line
    }
}
