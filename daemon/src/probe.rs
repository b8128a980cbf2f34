//! Reads the certificate a TLS endpoint serves, for the verified deploy: after an install and
//! its deploy hook, certvakt connects to each endpoint configured for the certificate and
//! compares what it is served with what it installed.
//!
//! Contract:
//! - [`served_certificate`] connects to `host:port`, optionally speaks the STARTTLS dialogue
//!   of SMTP (RFC 3207), IMAP (RFC 3501) or LDAP (RFC 4511) first, and starts a TLS handshake with the SNI name
//!   given (or the host, when it is a name). LDAP's StartTLS is the extended operation of
//!   RFC 4511 §4.14; its answer is read with `asn1-rs`. It returns the leaf certificate (DER) the server
//!   presented once the handshake is done, or once the server, having presented it, refused
//!   this client with an alert (it wants a client certificate): it has still shown what it
//!   serves.
//! - Nothing is trusted or refused by chain or name here: the caller compares bytes. The
//!   handshake's signatures are still checked with the provider's algorithms, so a
//!   certificate is returned only from a server that proved it holds its key.
//! - Every read is bounded: lines of a STARTTLS dialogue at [`MAX_LINE`] bytes and
//!   [`MAX_LINES`] lines, an LDAP answer at [`MAX_LDAP_ANSWER`] bytes, the whole probe by the timeout given. Errors name the endpoint and
//!   what went wrong.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::config::{StartTls, VerifyEndpoint};

/// The longest line of a STARTTLS dialogue read.
pub const MAX_LINE: usize = 4096;
/// The most lines of one reply (an SMTP EHLO answer lists the extensions, one per line).
pub const MAX_LINES: usize = 100;
/// The largest LDAP answer to StartTLS read (it is a result code and two short strings).
pub const MAX_LDAP_ANSWER: usize = 16 * 1024;

/// LDAP's StartTLS request: `LDAPMessage { messageID 1, ExtendedRequest [APPLICATION 23] {
/// requestName [0] "1.3.6.1.4.1.1466.20037" } }` (RFC 4511 §4.14.1), DER. A fixed message;
/// the unit tests read it back with `asn1-rs`.
pub const LDAP_STARTTLS_REQUEST: &[u8] =
    b"\x30\x1d\x02\x01\x01\x77\x18\x80\x161.3.6.1.4.1.1466.20037";

/// Why an endpoint could not be read. The message names the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address}: {what}")]
pub struct ProbeError {
    pub address: String,
    pub what: String,
}

/// The leaf certificate (DER) `endpoint` serves; see the module contract.
pub async fn served_certificate(
    endpoint: &VerifyEndpoint,
    timeout: Duration,
) -> Result<Vec<u8>, ProbeError> {
    let fail = |what: String| ProbeError {
        address: endpoint.address.clone(),
        what,
    };
    match tokio::time::timeout(timeout, probe(endpoint)).await {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail(format!(
            "no certificate within {} (connect, STARTTLS and handshake)",
            crate::human_time::format_span(timeout.as_secs().max(1))
        ))),
    }
}

async fn probe(endpoint: &VerifyEndpoint) -> Result<Vec<u8>, String> {
    let server_name = endpoint.server_name()?;
    let mut stream = TcpStream::connect(endpoint.address.as_str())
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if let Some(starttls) = endpoint.starttls {
        stream = start_tls(stream, starttls).await?;
    }
    let seen = Arc::new(Mutex::new(None));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder {
            seen: seen.clone(),
            provider,
        }))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = connector.connect(server_name, stream).await;
    let served = seen.lock().unwrap_or_else(PoisonError::into_inner).take();
    match (served, handshake) {
        (Some(der), Ok(_)) => Ok(der),
        // The server showed its certificate and signed the handshake, then refused this
        // client (it wants a client certificate): what it serves is known.
        (Some(der), Err(e)) if refused_by_peer(&e) => Ok(der),
        (_, Err(e)) => Err(format!("TLS handshake failed: {e}")),
        (None, Ok(_)) => Err("the TLS handshake ended without a server certificate".into()),
    }
}

/// Whether a failed handshake ended with the server's alert (not with a fault of its own).
fn refused_by_peer(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::AlertReceived(_)))
}

/// Speaks `protocol`'s STARTTLS dialogue and hands back the stream, ready for the handshake.
async fn start_tls(stream: TcpStream, protocol: StartTls) -> Result<TcpStream, String> {
    let mut io = BufReader::new(stream);
    match protocol {
        StartTls::Smtp => {
            smtp_reply(&mut io, "220", "greeting").await?;
            send(&mut io, "EHLO certvakt.invalid\r\n").await?;
            let extensions = smtp_reply(&mut io, "250", "EHLO").await?;
            if !extensions.iter().any(|l| {
                l.get(4..)
                    .is_some_and(|e| e.eq_ignore_ascii_case("STARTTLS"))
            }) {
                return Err("the SMTP server does not offer STARTTLS".into());
            }
            send(&mut io, "STARTTLS\r\n").await?;
            smtp_reply(&mut io, "220", "STARTTLS").await?;
        }
        StartTls::Imap => {
            let greeting = line(&mut io).await?;
            if !greeting.starts_with("* OK") {
                return Err(format!(
                    "the IMAP greeting is {greeting:?}, not \"* OK ...\""
                ));
            }
            send(&mut io, "cv1 STARTTLS\r\n").await?;
            for _ in 0..MAX_LINES {
                let answer = line(&mut io).await?;
                if let Some(status) = answer.strip_prefix("cv1 ") {
                    if status
                        .get(..2)
                        .is_some_and(|s| s.eq_ignore_ascii_case("OK"))
                    {
                        return handed_over(io);
                    }
                    return Err(format!("the IMAP server refused STARTTLS: {answer:?}"));
                }
            }
            return Err(format!("no answer to STARTTLS in {MAX_LINES} lines"));
        }
        StartTls::Ldap => {
            send_bytes(&mut io, LDAP_STARTTLS_REQUEST).await?;
            let answer = ldap_answer(&mut io).await?;
            ldap_starttls_result(&answer)?;
        }
    }
    handed_over(io)
}

/// One whole LDAP message (BER), read until it parses.
async fn ldap_answer(io: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    use x509_parser::asn1_rs::{Any, FromBer as _};
    let mut answer = Vec::new();
    loop {
        match Any::from_ber(&answer) {
            Ok(_) => return Ok(answer),
            Err(x509_parser::nom::Err::Incomplete(_)) => {}
            Err(_) if answer.is_empty() => {}
            Err(e) => return Err(format!("the LDAP server's answer is not BER: {e}")),
        }
        let chunk = io
            .fill_buf()
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        if chunk.is_empty() {
            return Err("the LDAP server closed the connection".into());
        }
        // Only what this message needs is taken: the TLS handshake follows it.
        let want = ldap_missing(&answer).unwrap_or(1).min(chunk.len());
        answer.extend_from_slice(&chunk[..want]);
        io.consume(want);
        if answer.len() > MAX_LDAP_ANSWER {
            return Err(format!(
                "an LDAP answer longer than {MAX_LDAP_ANSWER} bytes"
            ));
        }
    }
}

/// How many more bytes the message begun in `partial` needs, once its header is there.
fn ldap_missing(partial: &[u8]) -> Option<usize> {
    use x509_parser::asn1_rs::{FromBer as _, Header, Length};
    let (rest, header) = Header::from_ber(partial).ok()?;
    match header.length() {
        Length::Definite(n) => Some(n.saturating_sub(rest.len()).max(1)),
        Length::Indefinite => None,
    }
}

/// The StartTLS answer's result: success (0), or an error naming the code and the server's
/// message.
pub(crate) fn ldap_starttls_result(answer: &[u8]) -> Result<(), String> {
    use x509_parser::asn1_rs::{Any, Class, FromBer as _, Tag};
    let not = |what: &str| format!("the LDAP server's answer to StartTLS is not {what}");
    let (_, message) = Any::from_ber(answer).map_err(|_| not("BER"))?;
    if message.tag() != Tag::Sequence {
        return Err(not("an LDAPMessage"));
    }
    let (after_id, _id) = Any::from_ber(message.data).map_err(|_| not("an LDAPMessage"))?;
    let (_, op) = Any::from_ber(after_id).map_err(|_| not("an LDAPMessage"))?;
    // ExtendedResponse is [APPLICATION 24].
    if op.class() != Class::Application || op.tag() != Tag(24) {
        return Err(not("an ExtendedResponse"));
    }
    let (after_code, code) = Any::from_ber(op.data).map_err(|_| not("an LDAPResult"))?;
    if code.tag() != Tag::Enumerated || code.data.is_empty() || code.data.len() > 4 {
        return Err(not("an LDAPResult"));
    }
    let result = code.data.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b));
    if result == 0 {
        return Ok(());
    }
    // matchedDN, then diagnosticMessage.
    let diagnostic = Any::from_ber(after_code)
        .ok()
        .and_then(|(rest, _)| Any::from_ber(rest).ok())
        .map(|(_, text)| String::from_utf8_lossy(text.data).into_owned())
        .filter(|t| !t.is_empty())
        .map(|t| format!(": {t:?}"))
        .unwrap_or_default();
    Err(format!(
        "the LDAP server refused StartTLS with result code {result}{diagnostic}"
    ))
}

async fn send_bytes(io: &mut BufReader<TcpStream>, bytes: &[u8]) -> Result<(), String> {
    io.get_mut()
        .write_all(bytes)
        .await
        .map_err(|e| format!("cannot write: {e}"))
}

/// The stream after a STARTTLS dialogue: the server must not have sent anything more.
fn handed_over(io: BufReader<TcpStream>) -> Result<TcpStream, String> {
    if !io.buffer().is_empty() {
        return Err("the server sent more after agreeing to STARTTLS".into());
    }
    Ok(io.into_inner())
}

async fn send(io: &mut BufReader<TcpStream>, text: &str) -> Result<(), String> {
    send_bytes(io, text.as_bytes()).await
}

/// One CRLF- or LF-ended line, without its end; at most [`MAX_LINE`] bytes.
async fn line(io: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = (&mut *io)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut bytes)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    if read == 0 {
        return Err("the server closed the connection".into());
    }
    if bytes.last() != Some(&b'\n') {
        return Err(format!("a line longer than {MAX_LINE} bytes"));
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// An SMTP reply (all its lines) whose code must be `code`.
async fn smtp_reply(
    io: &mut BufReader<TcpStream>,
    code: &str,
    after: &str,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for _ in 0..MAX_LINES {
        let text = line(io).await?;
        if !text.starts_with(code) {
            return Err(format!("the SMTP server answered {after} with {text:?}"));
        }
        let last = text.as_bytes().get(3) != Some(&b'-');
        lines.push(text);
        if last {
            return Ok(lines);
        }
    }
    Err(format!("an SMTP reply of more than {MAX_LINES} lines"))
}

/// Keeps the leaf certificate the server presents and accepts it: the caller compares it.
/// Handshake signatures are verified as usual.
#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Option<Vec<u8>>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// What a test server says before TLS.
    #[derive(Clone, Copy)]
    enum Before {
        Nothing,
        Smtp {
            offers_starttls: bool,
        },
        Imap,
        /// Answers LDAP's StartTLS with this result code.
        Ldap(u8),
        /// Greets as SMTP and then says nothing more.
        Hang,
        /// A greeting longer than [`MAX_LINE`].
        LongLine,
    }

    struct Server {
        address: String,
        der: Vec<u8>,
    }

    /// A loopback TLS server with a new self-signed certificate for `name`; with
    /// `client_auth`, it requires a client certificate (and so refuses the probe).
    async fn server(before: Before, client_auth: bool) -> Server {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["apotek.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(der.clone())).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![CertificateDer::from(der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Some(stream) = dialogue(stream, before).await {
                        if let Ok(mut tls) = acceptor.accept(stream).await {
                            let _ = tls.read(&mut [0; 16]).await;
                        }
                    }
                });
            }
        });
        Server { address, der }
    }

    /// The server's side of the plain-text part; `None` when it does not go on to TLS.
    async fn dialogue(stream: TcpStream, before: Before) -> Option<TcpStream> {
        let mut io = BufReader::new(stream);
        let mut line = String::new();
        match before {
            Before::Nothing => {}
            Before::Smtp { offers_starttls } => {
                io.get_mut()
                    .write_all(b"220 mx.example ESMTP\r\n")
                    .await
                    .ok()?;
                io.read_line(&mut line).await.ok()?;
                assert!(line.starts_with("EHLO "), "{line:?}");
                let extensions: &[u8] = if offers_starttls {
                    b"250-mx.example\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n"
                } else {
                    b"250-mx.example\r\n250 SIZE 10240000\r\n"
                };
                io.get_mut().write_all(extensions).await.ok()?;
                line.clear();
                io.read_line(&mut line).await.ok()?;
                assert_eq!(line, "STARTTLS\r\n");
                io.get_mut()
                    .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                    .await
                    .ok()?;
            }
            Before::Imap => {
                io.get_mut()
                    .write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
                    .await
                    .ok()?;
                io.read_line(&mut line).await.ok()?;
                let tag = line.split(' ').next()?.to_owned();
                assert!(line.ends_with("STARTTLS\r\n"), "{line:?}");
                let answer = format!("{tag} OK Begin TLS negotiation now\r\n");
                io.get_mut().write_all(answer.as_bytes()).await.ok()?;
            }
            Before::Ldap(code) => {
                let mut request = vec![0; LDAP_STARTTLS_REQUEST.len()];
                io.read_exact(&mut request).await.ok()?;
                assert_eq!(request, LDAP_STARTTLS_REQUEST);
                // ExtendedResponse { resultCode, matchedDN "", diagnosticMessage }.
                let text: &[u8] = if code == 0 { b"" } else { b"unwilling" };
                let mut op = vec![0x0a, 0x01, code, 0x04, 0x00, 0x04, text.len() as u8];
                op.extend_from_slice(text);
                let mut message = vec![0x02, 0x01, 0x01, 0x78, op.len() as u8];
                message.extend(op);
                let mut answer = vec![0x30, message.len() as u8];
                answer.extend(message);
                // Sent in two pieces: the reader waits for the whole message.
                let (first, second) = answer.split_at(3);
                io.get_mut().write_all(first).await.ok()?;
                io.get_mut().flush().await.ok()?;
                tokio::time::sleep(Duration::from_millis(50)).await;
                io.get_mut().write_all(second).await.ok()?;
                if code != 0 {
                    return None;
                }
            }
            Before::Hang => {
                io.get_mut()
                    .write_all(b"220 mx.example ESMTP\r\n")
                    .await
                    .ok()?;
                tokio::time::sleep(Duration::from_secs(30)).await;
                return None;
            }
            Before::LongLine => {
                let long = format!("220 {}\r\n", "x".repeat(MAX_LINE + 10));
                io.get_mut().write_all(long.as_bytes()).await.ok()?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                return None;
            }
        }
        Some(io.into_inner())
    }

    fn endpoint(address: &str, starttls: Option<StartTls>) -> VerifyEndpoint {
        VerifyEndpoint {
            address: address.to_owned(),
            sni: Some("apotek.example".into()),
            starttls,
        }
    }

    const LONG: Duration = Duration::from_secs(10);

    #[tokio::test(flavor = "current_thread")]
    async fn reads_the_certificate_served_over_tls() {
        let s = server(Before::Nothing, false).await;
        let served = served_certificate(&endpoint(&s.address, None), LONG).await;
        assert_eq!(served.unwrap(), s.der);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_the_certificate_after_smtp_and_imap_starttls() {
        let smtp = server(
            Before::Smtp {
                offers_starttls: true,
            },
            false,
        )
        .await;
        let at = endpoint(&smtp.address, Some(StartTls::Smtp));
        assert_eq!(served_certificate(&at, LONG).await.unwrap(), smtp.der);
        let imap = server(Before::Imap, false).await;
        let at = endpoint(&imap.address, Some(StartTls::Imap));
        assert_eq!(served_certificate(&at, LONG).await.unwrap(), imap.der);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_the_certificate_after_ldap_starttls_and_names_a_refusal() {
        let s = server(Before::Ldap(0), false).await;
        let at = endpoint(&s.address, Some(StartTls::Ldap));
        assert_eq!(served_certificate(&at, LONG).await.unwrap(), s.der);
        let refusing = server(Before::Ldap(53), false).await;
        let at = endpoint(&refusing.address, Some(StartTls::Ldap));
        let e = served_certificate(&at, LONG).await.unwrap_err();
        assert_eq!(
            e.what,
            "the LDAP server refused StartTLS with result code 53: \"unwilling\""
        );
    }

    #[test]
    fn the_ldap_request_is_an_extended_request_for_starttls() {
        use x509_parser::asn1_rs::{Any, Class, FromDer as _, Tag};
        let (rest, message) = Any::from_der(LDAP_STARTTLS_REQUEST).unwrap();
        assert!(rest.is_empty());
        assert_eq!(message.tag(), Tag::Sequence);
        let (after, id) = Any::from_der(message.data).unwrap();
        assert_eq!((id.tag(), id.data), (Tag::Integer, &[1u8][..]));
        let (_, op) = Any::from_der(after).unwrap();
        assert_eq!((op.class(), op.tag()), (Class::Application, Tag(23)));
        let (_, name) = Any::from_der(op.data).unwrap();
        assert_eq!((name.class(), name.tag()), (Class::ContextSpecific, Tag(0)));
        assert_eq!(name.data, b"1.3.6.1.4.1.1466.20037");
        // Damaged answers are named, not trusted.
        for damaged in [
            &b""[..],
            b"\x30\x03\x02\x01\x01",
            b"\x04\x00",
            b"\x30\x05\x02\x01\x01\x78\x00",
        ] {
            assert!(ldap_starttls_result(damaged).is_err(), "{damaged:?}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_server_that_wants_a_client_certificate_still_shows_its_own() {
        let s = server(Before::Nothing, true).await;
        let served = served_certificate(&endpoint(&s.address, None), LONG).await;
        assert_eq!(served.unwrap(), s.der);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_smtp_server_without_starttls_is_named_as_such() {
        let s = server(
            Before::Smtp {
                offers_starttls: false,
            },
            false,
        )
        .await;
        let e = served_certificate(&endpoint(&s.address, Some(StartTls::Smtp)), LONG)
            .await
            .unwrap_err();
        assert_eq!(e.address, s.address);
        assert_eq!(e.what, "the SMTP server does not offer STARTTLS");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn plain_text_where_tls_was_expected_fails_the_handshake() {
        let s = server(
            Before::Smtp {
                offers_starttls: true,
            },
            false,
        )
        .await;
        let e = served_certificate(&endpoint(&s.address, None), LONG)
            .await
            .unwrap_err();
        assert!(e.what.starts_with("TLS handshake failed: "), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_server_that_stops_talking_runs_into_the_timeout() {
        let s = server(Before::Hang, false).await;
        let started = std::time::Instant::now();
        let e = served_certificate(
            &endpoint(&s.address, Some(StartTls::Smtp)),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(e.what.starts_with("no certificate within 1s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_overlong_line_and_a_closed_port_are_errors_not_hangs() {
        let s = server(Before::LongLine, false).await;
        let e = served_certificate(&endpoint(&s.address, Some(StartTls::Smtp)), LONG)
            .await
            .unwrap_err();
        assert_eq!(e.what, format!("a line longer than {MAX_LINE} bytes"));
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap().to_string();
        drop(closed);
        let e = served_certificate(&endpoint(&address, None), LONG)
            .await
            .unwrap_err();
        assert!(e.what.starts_with("cannot connect: "), "{e}");
    }

    #[test]
    fn the_server_name_is_the_sni_else_the_host() {
        let mut e = endpoint("[::1]:443", None);
        e.sni = None;
        assert_eq!(e.host(), "::1");
        assert!(matches!(e.server_name(), Ok(ServerName::IpAddress(_))));
        let e = VerifyEndpoint {
            address: "mail.apotek.example:25".into(),
            sni: None,
            starttls: None,
        };
        assert_eq!(
            e.server_name().unwrap(),
            ServerName::try_from("mail.apotek.example").unwrap()
        );
    }
}
