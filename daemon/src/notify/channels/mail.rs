//! The mail channel: the message as an RFC 5322 mail, sent through the `[mail]` relay.
//!
//! Contract:
//! - [`render`] makes the mail (also what a person gets as an `.eml` file): From, To, Cc,
//!   Subject, Date (the event's time), `Message-ID: <message_id>`, `X-Certvakt-Event`, the
//!   body as `text/plain; charset=utf-8`, attachments as MIME parts of `multipart/mixed`.
//!   Non-ASCII text is encoded (RFC 2047 headers, quoted-printable or base64 bodies), so the
//!   mail is 7-bit and any relay carries it. A bad address is [`SendError::Permanent`].
//! - [`send`] makes one attempt, bounded as a whole by `timeout`: `starttls` must upgrade (a
//!   relay that does not offer STARTTLS gets nothing after its EHLO, never a plaintext
//!   fallback); `tls` is TLS from the first byte; `none` is allowed only to a loopback relay
//!   and never with AUTH. The relay's certificate is checked against the `[mail] trust` set
//!   or the system's roots (as plugin HTTP loads them). AUTH (PLAIN or LOGIN) only over TLS,
//!   the password read from `password_file` at each attempt. EHLO names `hello_name` or the
//!   host name. No connection is kept between attempts.
//! - Errors: a refused or timed-out connection, a 4xx reply, or a broken dialogue is
//!   [`SendError::Transient`]; a 5xx reply (a refused recipient, failed AUTH), an untrusted
//!   certificate, a missing STARTTLS, a missing relay or trust set is
//!   [`SendError::Permanent`]. Messages name the relay and what to do; never the password.
//!
//! The password passes through lettre's `Credentials`, a plain `String` that lettre copies
//! and does not clear; certvakt's own copies are cleared.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Attachment as MimeAttachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use rustls::CertificateError;
use rustls::pki_types::CertificateDer;
use zeroize::Zeroizing;

use super::SendError;
use crate::config::{MailSection, MailTls};
use crate::notify::message::Message;

/// The sender and recipients of one mail.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub cc: &'a [String],
    /// Where answers go, when not to `from` (a plugin's mail to an authority: the pharmacy's IT).
    pub reply_to: Option<&'a str>,
}

/// `X-Certvakt-Event: <event>`.
#[derive(Debug, Clone)]
struct EventHeader(String);

impl Header for EventHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Certvakt-Event")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn StdError + Send + Sync>> {
        Ok(EventHeader(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The mail for `msg` (see the module documentation).
pub fn render(
    msg: &Message,
    envelope: &Envelope<'_>,
    message_id: &str,
) -> Result<Vec<u8>, SendError> {
    build(msg, envelope, message_id).map(|(bytes, _)| bytes)
}

/// The mail's bytes and the SMTP envelope (sender, every To and Cc).
fn build(
    msg: &Message,
    envelope: &Envelope<'_>,
    message_id: &str,
) -> Result<(Vec<u8>, lettre::address::Envelope), SendError> {
    let valid_id = !message_id.is_empty()
        && message_id.contains('@')
        && message_id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>'));
    if !valid_id {
        return Err(SendError::Permanent(format!(
            "{message_id:?} cannot be a mail's Message-ID: it must look like local@domain, printable ASCII without angle brackets."
        )));
    }
    let from = mailbox(envelope.from, "sender (`from`)")?;
    if envelope.to.is_empty() {
        return Err(SendError::Permanent(
            "The mail has no recipient; give the route at least one address in `to`.".into(),
        ));
    }
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(msg.created_at.max(0) as u64);
    // One line, whatever the caller gave (a newline would end the header).
    let subject = msg.subject.replace(['\r', '\n'], " ");
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(subject)
        .date(created)
        .message_id(Some(format!("<{message_id}>")))
        .header(EventHeader(msg.event.as_str().to_owned()));
    let mut recipients = Vec::new();
    for to in envelope.to {
        let to = mailbox(to, "recipient (`to`)")?;
        recipients.push(to.email.clone());
        builder = builder.to(to);
    }
    if let Some(reply_to) = envelope.reply_to {
        builder = builder.reply_to(mailbox(reply_to, "reply address (`reply_to`)")?);
    }
    for cc in envelope.cc {
        let cc = mailbox(cc, "recipient (`cc`)")?;
        recipients.push(cc.email.clone());
        builder = builder.cc(cc);
    }
    let text = SinglePart::plain(msg.body.clone());
    let built = if msg.attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut parts = MultiPart::mixed().singlepart(text);
        for attachment in &msg.attachments {
            let content_type = ContentType::parse(&attachment.content_type).unwrap_or(
                ContentType::parse("application/octet-stream")
                    .map_err(|e| SendError::Permanent(format!("cannot make a MIME type: {e}")))?,
            );
            // Always base64: lettre sends bytes it judges to be 7-bit text as they are, and a
            // PEM file with bare LF line ends then arrives as one over-long line, which relays
            // refuse (RFC 5321 4.5.3.1.6) or, worse, read as the end of the data.
            let body =
                Body::new_with_encoding(attachment.bytes.clone(), ContentTransferEncoding::Base64)
                    .map_err(|_| {
                        SendError::Permanent(format!(
                            "the attachment {} could not be encoded",
                            attachment.name
                        ))
                    })?;
            parts = parts
                .singlepart(MimeAttachment::new(attachment.name.clone()).body(body, content_type));
        }
        builder.multipart(parts)
    };
    let mail = built
        .map_err(|e| SendError::Permanent(format!("The mail could not be put together: {e}.")))?;
    let smtp_envelope = lettre::address::Envelope::new(Some(from.email), recipients)
        .map_err(|e| SendError::Permanent(format!("The mail's envelope is not valid: {e}.")))?;
    Ok((mail.formatted(), smtp_envelope))
}

fn mailbox(text: &str, role: &str) -> Result<Mailbox, SendError> {
    text.parse::<Mailbox>().map_err(|e| {
        SendError::Permanent(format!(
            "The {role} address {text:?} is not a valid mail address ({e}); correct it in the configuration."
        ))
    })
}

/// What an attempt needs that is read from files: on a blocking thread.
struct Prepared {
    /// `None` for `tls = "none"`.
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
}

/// One attempt to send `msg` through the `[mail]` relay; the relay's answer when it took the
/// mail (e.g. `250 2.0.0 Ok: queued as 4XYZ`). See the module documentation.
pub async fn send(
    mail: &MailSection,
    trust: &BTreeMap<String, Vec<PathBuf>>,
    msg: &Message,
    envelope: &Envelope<'_>,
    message_id: &str,
    timeout: Duration,
) -> Result<String, SendError> {
    let Some(relay) = mail.relay.as_deref() else {
        return Err(SendError::Permanent(
            "No mail relay is configured, so no mail can be sent: set `relay` (and `from`) in [mail].".into(),
        ));
    };
    let at = Relay {
        // `[::1]` as written in URLs; resolving and TLS want the bare address.
        host: relay
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: mail.port(),
        trust: mail.trust.clone(),
    };
    let (bytes, smtp_envelope) = build(msg, envelope, message_id)?;
    let attempt = attempt(mail, trust, &at, &smtp_envelope, &bytes, timeout);
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Transient(format!(
            "The mail relay {at} did not take the mail within {} s; it will be tried again (raise [notifications] timeout if the relay is slow).",
            timeout.as_secs_f64()
        ))),
    }
}

/// Everything of [`send`] after the mail is made: the caller bounds it in time.
async fn attempt(
    mail: &MailSection,
    trust: &BTreeMap<String, Vec<PathBuf>>,
    at: &Relay,
    envelope: &lettre::address::Envelope,
    bytes: &[u8],
    timeout: Duration,
) -> Result<String, SendError> {
    let plain_to = match mail.tls {
        MailTls::None => {
            if mail.username.is_some() {
                return Err(SendError::Permanent(format!(
                    "[mail] has a `username` with `tls = \"none\"`: certvakt sends a password only over TLS, so nothing was sent to {at}. Use `tls = \"starttls\"` or `\"tls\"`, or remove `username`."
                )));
            }
            Some(loopback_address(mail.relay.as_deref().unwrap_or_default(), at.port).await?)
        }
        MailTls::Starttls | MailTls::Tls => None,
    };

    let (section, trust_files, named) = (mail.clone(), trust.clone(), at.clone());
    let prepared = tokio::task::spawn_blocking(move || prepare(&section, &trust_files, &named))
        .await
        .map_err(|e| {
            SendError::Transient(format!(
                "The mail to {at} was not sent: its preparation ended early ({e})."
            ))
        })??;

    // TLS from the first byte only in `tls` mode; STARTTLS upgrades later.
    let wrapper = match mail.tls {
        MailTls::Tls => prepared.tls.clone(),
        MailTls::Starttls | MailTls::None => None,
    };
    let hello = &prepared.hello;
    let conn = match plain_to {
        Some(address) => {
            AsyncSmtpConnection::connect_tokio1(address, Some(timeout), hello, None, None).await
        }
        None => {
            AsyncSmtpConnection::connect_tokio1(
                (at.host.as_str(), at.port),
                Some(timeout),
                hello,
                wrapper,
                None,
            )
            .await
        }
    };
    let mut conn = conn.map_err(|e| at.error("connecting", &e))?;
    let mut stream_lost = false;
    let result = dialogue(
        &mut conn,
        &mut stream_lost,
        at,
        mail.tls,
        &prepared,
        envelope,
        bytes,
    )
    .await;
    match &result {
        Ok(_) => {
            let _ = conn.quit().await;
        }
        // lettre leaves no stream behind a failed STARTTLS handshake, and QUIT would write to
        // nothing (a debug assertion in lettre): dropping closes the socket.
        Err(_) if stream_lost => {}
        Err(_) => conn.abort().await,
    }
    result
}

/// STARTTLS, AUTH and the mail itself, on a connection that has had its EHLO.
async fn dialogue(
    conn: &mut AsyncSmtpConnection,
    stream_lost: &mut bool,
    at: &Relay,
    mode: MailTls,
    prepared: &Prepared,
    envelope: &lettre::address::Envelope,
    bytes: &[u8],
) -> Result<String, SendError> {
    if mode == MailTls::Starttls {
        if !conn.can_starttls() {
            return Err(SendError::Permanent(format!(
                "The mail relay {at} does not offer STARTTLS, so nothing was sent: certvakt never sends mail in clear. Have the relay offer STARTTLS, or use `tls = \"tls\"` if it speaks TLS from the first byte (usually port 465)."
            )));
        }
        let Some(tls) = prepared.tls.clone() else {
            return Err(SendError::Permanent(format!(
                "The mail to {at} was not sent: no TLS setup was made for STARTTLS."
            )));
        };
        if let Err(e) = conn.starttls(tls, &prepared.hello).await {
            *stream_lost = true;
            return Err(at.error("upgrading to TLS (STARTTLS)", &e));
        }
    }
    if let Some(credentials) = &prepared.credentials {
        if !conn.is_encrypted() {
            return Err(SendError::Permanent(format!(
                "The connection to the mail relay {at} is not encrypted, so the password was not sent."
            )));
        }
        conn.auth(DEFAULT_MECHANISMS, credentials)
            .await
            .map_err(|e| at.error("logging in (AUTH)", &e))?;
    }
    let response = conn
        .send(envelope, bytes)
        .await
        .map_err(|e| at.error("sending the mail", &e))?;
    Ok(response_text(&response))
}

/// The address to connect to without TLS: the relay must be a loopback address, or
/// `localhost` resolving to one. Nothing else is resolved or connected to.
async fn loopback_address(relay: &str, port: u16) -> Result<SocketAddr, SendError> {
    let refused = || {
        SendError::Permanent(format!(
            "[mail] `tls = \"none\"` is allowed only to a relay on this machine (127.0.0.1, ::1 or localhost), and the relay is {relay}: nothing was sent. Use `tls = \"starttls\"` or `\"tls\"` for a relay elsewhere."
        ))
    };
    let bare = relay.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if ip.is_loopback() {
            Ok(SocketAddr::new(ip, port))
        } else {
            Err(refused())
        };
    }
    if !relay.eq_ignore_ascii_case("localhost") {
        return Err(refused());
    }
    let resolved = tokio::net::lookup_host((relay, port)).await.map_err(|e| {
        SendError::Transient(format!(
            "The mail relay {relay} could not be resolved: {e}; it will be tried again."
        ))
    })?;
    resolved
        .into_iter()
        .find(|a| a.ip().is_loopback())
        .ok_or_else(refused)
}

/// Reads the trust anchors and the password; blocks.
fn prepare(
    mail: &MailSection,
    trust: &BTreeMap<String, Vec<PathBuf>>,
    at: &Relay,
) -> Result<Prepared, SendError> {
    let hello = ClientId::Domain(mail.hello_name.clone().unwrap_or_else(super::host_name));
    let tls = match mail.tls {
        MailTls::None => None,
        MailTls::Starttls | MailTls::Tls => Some(tls_parameters(mail, at, trust)?),
    };
    let credentials = match &mail.username {
        None => None,
        Some(username) => {
            let Some(path) = &mail.password_file else {
                return Err(SendError::Permanent(format!(
                    "[mail] has `username = {username:?}` but no `password_file`: set it to a file holding the relay password."
                )));
            };
            let bytes = super::read_secret(path).map_err(|sentence| {
                SendError::Permanent(format!(
                    "The mail to {at} was not sent: cannot read [mail] password_file {sentence}. Fix the file or `password_file`."
                ))
            })?;
            let password = Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| {
                SendError::Permanent(format!(
                    "The mail to {at} was not sent: [mail] password_file {} is not UTF-8 text.",
                    path.display()
                ))
            })?);
            Some(Credentials::new(username.clone(), password.to_string()))
        }
    };
    Ok(Prepared {
        tls,
        credentials,
        hello,
    })
}

/// TLS towards the relay: rustls with aws-lc-rs, trusting the `[mail] trust` set or the
/// system's roots.
fn tls_parameters(
    mail: &MailSection,
    at: &Relay,
    trust: &BTreeMap<String, Vec<PathBuf>>,
) -> Result<TlsParameters, SendError> {
    let anchors: Vec<CertificateDer<'static>> = match &mail.trust {
        Some(name) => trust_set(name, trust)?,
        None => {
            // Certificates a trust anchor cannot be made of are left out, as plugin HTTP does.
            let usable: Vec<_> = crate::plugin_host::http::load_system_roots()
                .into_iter()
                .filter(|der| webpki::anchor_from_trusted_cert(der).is_ok())
                .collect();
            if usable.is_empty() {
                return Err(SendError::Permanent(
                    "[mail] names no trust set and no system root certificates were found: install the ca-certificates package, set SSL_CERT_FILE, or name a `trust` set in [mail].".into(),
                ));
            }
            usable
        }
    };
    // The name the relay's certificate must carry: its DNS name or IP address.
    let mut builder =
        TlsParameters::builder(at.host.clone()).certificate_store(CertificateStore::None);
    for der in anchors {
        let certificate = Certificate::from_der(der.to_vec()).map_err(|e| {
            SendError::Permanent(format!(
                "A trust anchor for the mail relay cannot be used: {e}."
            ))
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build_rustls().map_err(|e| {
        SendError::Permanent(format!(
            "TLS towards the mail relay {at} cannot be set up: {e}."
        ))
    })
}

/// The certificates of the trust set `name`, each one checked to be usable as an anchor.
fn trust_set(
    name: &str,
    trust: &BTreeMap<String, Vec<PathBuf>>,
) -> Result<Vec<CertificateDer<'static>>, SendError> {
    let Some(files) = trust.get(name) else {
        return Err(SendError::Permanent(format!(
            "[mail] names the trust set `{name}`, which is not configured: add it to [trust] or correct [mail] `trust`."
        )));
    };
    let mut anchors = Vec::new();
    for file in files {
        let bytes = crate::bounded::read(file, crate::bounded::CERT_FILE_LIMIT).map_err(|e| {
            SendError::Permanent(format!(
                "Trust set `{name}` for the mail relay cannot be read: {}.",
                e.sentence(file)
            ))
        })?;
        let ders = crate::keys::parse_certificate_chain(&bytes).map_err(|e| {
            SendError::Permanent(format!(
                "Trust set `{name}` for the mail relay cannot be used: {}: {e}.",
                file.display()
            ))
        })?;
        for (i, der) in ders.into_iter().enumerate() {
            let der = CertificateDer::from(der);
            if let Err(e) = webpki::anchor_from_trusted_cert(&der) {
                return Err(SendError::Permanent(format!(
                    "Trust set `{name}` has a certificate (number {} in {}) that cannot be a trust anchor: {e}.",
                    i + 1,
                    file.display()
                )));
            }
            anchors.push(der);
        }
    }
    if anchors.is_empty() {
        return Err(SendError::Permanent(format!(
            "Trust set `{name}` for the mail relay holds no certificate."
        )));
    }
    Ok(anchors)
}

/// `250 2.0.0 Ok: queued as …`: the reply on one line, sanitised.
fn response_text(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    crate::plugin_host::sanitise(&format!("{} {}", response.code(), lines.join(" ")))
}

/// The relay as messages name it.
#[derive(Debug, Clone)]
struct Relay {
    host: String,
    port: u16,
    trust: Option<String>,
}

impl std::fmt::Display for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') && !self.host.starts_with('[') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Relay {
    fn trust_text(&self) -> String {
        match &self.trust {
            Some(name) => format!("trust set `{name}` ([mail] trust)"),
            None => "the system's root certificates ([mail] names no trust set)".into(),
        }
    }

    /// An SMTP error while `doing`, as a sentence, classified.
    fn error(&self, doing: &str, error: &SmtpError) -> SendError {
        if let Some(code) = error.status() {
            let reply = crate::plugin_host::sanitise(&source_text(error));
            let text = format!("The mail relay {self} answered {code} while {doing}: {reply}");
            return if error.is_permanent() {
                let hint = if doing.starts_with("logging in") {
                    " Check [mail] `username` and `password_file`."
                } else {
                    " Check the addresses and the relay's settings; it is not tried again."
                };
                SendError::Permanent(format!("{text}.{hint}"))
            } else {
                SendError::Transient(format!("{text}; it will be tried again."))
            };
        }
        if let Some(tls) = crate::plugin_host::http::find_rustls_error(error) {
            return match tls {
                rustls::Error::InvalidCertificate(problem) => SendError::Permanent(format!(
                    "The mail relay {self} was not trusted while {doing}, so nothing was sent: {}. Name the right set in [mail] `trust`, or fix the relay's certificate.",
                    self.certificate_problem(problem)
                )),
                other => SendError::Transient(format!(
                    "The TLS handshake with the mail relay {self} failed while {doing}: {other}; it will be tried again."
                )),
            };
        }
        if error.is_client() {
            // lettre refused before the relay said anything: no common AUTH mechanism, an
            // address the relay cannot take (non-ASCII without SMTPUTF8).
            return SendError::Permanent(format!(
                "The mail was not sent to {self} while {doing}: {}.",
                source_text(error)
            ));
        }
        SendError::Transient(format!(
            "The mail relay {self} could not be reached or broke off while {doing}: {}; it will be tried again.",
            crate::plugin_host::sanitise(&chain_text(error))
        ))
    }

    fn certificate_problem(&self, problem: &CertificateError) -> String {
        match problem {
            CertificateError::UnknownIssuer => {
                format!("its certificate is not trusted by {}", self.trust_text())
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "its certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its certificate is not valid yet (or this machine's clock is wrong)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "its certificate is not valid for the name {} ([mail] relay)",
                    self.host
                )
            }
            other => format!(
                "its certificate was refused ({other:?}) by {}",
                self.trust_text()
            ),
        }
    }
}

/// The error's own text after lettre's kind ("permanent error (535): …" → the reply).
fn source_text(error: &SmtpError) -> String {
    error
        .source()
        .map(|s| s.to_string())
        .unwrap_or_else(|| error.to_string())
}

/// Every distinct message down the error's chain, joined.
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
