//! A DVV-like CA for Finnish sote service certificates, with its own CRL server: what certvakt's
//! `fi-kanta` plugin renews against and watches a revocation land on.
//!
//! Owns: [`DvvCa`] (the CA and its plain-HTTP CRL server), [`SoteType`] (the four certificate
//! types), [`DvvCert`] (what it issued for a CSR) and [`DvvConfig`].
//!
//! Promises (profiles from `shared/protocols/fi-kanta.md` §1, §2, §4, §5):
//! - The chain is `TEST DVV Gov. Root CA - G3 RSA` → `TEST DVV Service Certificates`
//!   ([`CaShape::Dvv`]); all four types come from that one issuing CA (the real names of the
//!   sote issuers, test and production, are an open question in the brief).
//! - [`DvvCa::issue`] takes a PEM CSR and a [`SoteType`]. **The CSR decides the content**: its
//!   subject and SANs are kept. Refused with a sentence naming the rule: a CSR whose
//!   signature does not verify; a key that is not RSA 2048 or 4096; for the server types a CSR
//!   without a SAN dNSName (an IP address alone is not enough since 15 Sep 2023), and any
//!   e-mail address in the subject or SAN.
//! - Validity starts now and lasts 365 days for the server types and 730 days for the
//!   system-signature types. Server types get digitalSignature + keyEncipherment and EKU
//!   serverAuth + clientAuth; system-signature types digitalSignature + nonRepudiation and no
//!   EKU. No certificate policies (the sote OIDs are unknown; certvakt must not require any).
//! - Serial numbers are **18 bytes, the first `0x01`**, like DVV's long serials
//!   (`0100000168f0a805c366b43b5de968c691fb`): nine random bytes per CA and an 8-byte counter.
//! - Every certificate names the CA's CRL in a CRL distribution point:
//!   `http://127.0.0.1:PORT/crl/dvv-sote-test.crl` ([`DvvCa::crl_url`]), served by the CA's own
//!   plain HTTP server (`GET` only; `Content-Type: application/pkix-crl`; other paths 404).
//! - The CRL is DER, signed by the issuing CA with rcgen, with `thisUpdate`, `nextUpdate`
//!   (`thisUpdate` + [`DvvConfig::crl_lifetime`]), a CRL number and one entry per revoked
//!   certificate (serial, revocation date, reason code). A new CRL (new number, new
//!   `thisUpdate`) is signed only when its content changes; between changes the same bytes
//!   are served.
//! - [`DvvCa::revoke`] takes the serial and a reason and refuses an unknown serial or a second
//!   revocation of the same one. The entry is published only after the revocation delay
//!   ([`DvvConfig::revocation_delay`], [`DvvCa::set_revocation_delay`]; DVV promises ≤ 24 h):
//!   until then the published CRL does not change. The revocation date is when it takes
//!   effect.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration as StdDuration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, DnType, ExtendedKeyUsagePurpose,
    KeyIdMethod, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer as _;
use x509_parser::public_key::PublicKey;

use crate::ca::{CaShape, KeyType, TestCa, now_seconds};
use crate::serve::Served;

/// The path the CRL is served at.
pub const CRL_PATH: &str = "/crl/dvv-sote-test.crl";

/// `emailAddress` (1.2.840.113549.1.9.1), which DVV no longer puts in server certificates.
const OID_EMAIL_ADDRESS: [u64; 7] = [1, 2, 840, 113549, 1, 9, 1];

/// The four sote service certificate types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoteType {
    /// Sote server certificate (palvelinvarmenne): TLS towards Kanta.
    Server,
    /// Sote test server certificate.
    TestServer,
    /// Sote system-signature certificate (järjestelmäallekirjoitusvarmenne).
    SystemSignature,
    /// Sote test system-signature certificate.
    TestSystemSignature,
}

impl SoteType {
    pub const ALL: [SoteType; 4] = [
        SoteType::Server,
        SoteType::TestServer,
        SoteType::SystemSignature,
        SoteType::TestSystemSignature,
    ];

    /// `server`, `test-server`, `system-signature`, `test-system-signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            SoteType::Server => "server",
            SoteType::TestServer => "test-server",
            SoteType::SystemSignature => "system-signature",
            SoteType::TestSystemSignature => "test-system-signature",
        }
    }

    /// A server type (TLS), as opposed to a system-signature type.
    pub fn is_server(self) -> bool {
        matches!(self, SoteType::Server | SoteType::TestServer)
    }

    /// The longest validity DVV gives this type: 1 year for servers (since 1 Sep 2020),
    /// 2 years for system signatures.
    pub fn validity_days(self) -> i64 {
        if self.is_server() { 365 } else { 730 }
    }

    pub fn key_usages(self) -> Vec<KeyUsagePurpose> {
        if self.is_server() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ]
        }
    }

    pub fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        if self.is_server() {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            Vec::new()
        }
    }
}

/// How a [`DvvCa`] starts.
#[derive(Debug, Clone)]
pub struct DvvConfig {
    /// How long after [`DvvCa::revoke`] the entry appears on the CRL (default 0).
    pub revocation_delay: StdDuration,
    /// `nextUpdate` − `thisUpdate` of every CRL (default 24 hours).
    pub crl_lifetime: Duration,
}

impl Default for DvvConfig {
    fn default() -> DvvConfig {
        DvvConfig {
            revocation_delay: StdDuration::ZERO,
            crl_lifetime: Duration::hours(24),
        }
    }
}

/// A certificate the CA issued for a CSR (the key stays with whoever made the CSR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvvCert {
    pub sote_type: SoteType,
    /// The serial number, big-endian (18 bytes, first `0x01`).
    pub serial: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// Certificate, issuing CA, root, PEM (what the delivery mail's `.pem` holds).
    pub chain_pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl DvvCert {
    /// The serial in lowercase hex, two digits a byte, no separators.
    pub fn serial_hex(&self) -> String {
        hex(&self.serial)
    }
}

/// One revocation request, published once `effective` has passed.
#[derive(Debug, Clone)]
struct Revocation {
    serial: Vec<u8>,
    reason: RevocationReason,
    effective: Instant,
    effective_time: OffsetDateTime,
}

/// The CRL being served.
#[derive(Debug, Clone)]
struct Published {
    serials: Vec<Vec<u8>>,
    der: Vec<u8>,
}

struct State {
    issued: Vec<DvvCert>,
    revocations: Vec<Revocation>,
    published: Option<Published>,
    crl_number: u64,
    revocation_delay: StdDuration,
    crl_lifetime: Duration,
    crl_fetches: usize,
}

struct Inner {
    ca: TestCa,
    crl_url: String,
    serial_prefix: [u8; 9],
    state: Mutex<State>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// The CRL as published now: re-signed only when the set of effective entries changed.
    fn current_crl(&self) -> Result<Vec<u8>> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        let effective: Vec<&Revocation> = state
            .revocations
            .iter()
            .filter(|r| r.effective <= now)
            .collect();
        let serials: Vec<Vec<u8>> = effective.iter().map(|r| r.serial.clone()).collect();
        if let Some(published) = &state.published
            && published.serials == serials
        {
            return Ok(published.der.clone());
        }
        let this_update = now_seconds();
        let params = CertificateRevocationListParams {
            this_update,
            next_update: this_update + state.crl_lifetime,
            crl_number: SerialNumber::from(state.crl_number + 1),
            issuing_distribution_point: None,
            revoked_certs: effective
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: r.effective_time,
                    reason_code: Some(r.reason),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(self.ca.signing_issuer())
            .context("signing the DVV test CRL")?;
        let der = crl.der().to_vec();
        state.crl_number += 1;
        state.published = Some(Published {
            serials,
            der: der.clone(),
        });
        Ok(der)
    }
}

/// The DVV-like CA and its CRL server on `127.0.0.1`. Dropping it stops the server.
pub struct DvvCa {
    inner: Arc<Inner>,
    addr: SocketAddr,
    _served: Served,
}

impl fmt::Debug for DvvCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DvvCa")
            .field("issuer", &self.inner.ca.issuer_name())
            .field("crl_url", &self.inner.crl_url)
            .finish_non_exhaustive()
    }
}

impl DvvCa {
    /// A fresh CA (EC P-256 keys, so a test makes it quickly) and its CRL server on a free
    /// loopback port.
    pub fn start(config: DvvConfig) -> Result<DvvCa> {
        let ca = TestCa::with_key_type(CaShape::Dvv, KeyType::EcP256)?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .context("binding the DVV CRL server to loopback")?;
        let addr = listener.local_addr()?;
        let mut serial_prefix = [0u8; 9];
        SystemRandom::new()
            .fill(&mut serial_prefix)
            .map_err(|_| anyhow!("the system random generator failed"))?;
        let inner = Arc::new(Inner {
            ca,
            crl_url: format!("http://{addr}{CRL_PATH}"),
            serial_prefix,
            state: Mutex::new(State {
                issued: Vec::new(),
                revocations: Vec::new(),
                published: None,
                crl_number: 0,
                revocation_delay: config.revocation_delay,
                crl_lifetime: config.crl_lifetime,
                crl_fetches: 0,
            }),
        });
        let serving = Arc::clone(&inner);
        let served = Served::spawn("dvv-crl", listener, move |tcp| {
            let inner = Arc::clone(&serving);
            async move {
                let service = service_fn(move |request| {
                    let inner = Arc::clone(&inner);
                    async move { Ok::<_, Infallible>(crl_answer(&inner, &request)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            }
        })?;
        Ok(DvvCa {
            inner,
            addr,
            _served: served,
        })
    }

    /// The underlying test CA (names, chain).
    pub fn ca(&self) -> &TestCa {
        &self.inner.ca
    }

    /// The issuing CA's common name (`TEST DVV Service Certificates`).
    pub fn issuer_name(&self) -> &str {
        self.inner.ca.issuer_name()
    }

    pub fn root_pem(&self) -> String {
        self.inner.ca.root_pem()
    }

    /// Issuing CA then root, PEM (a trust set).
    pub fn chain_pem(&self) -> String {
        self.inner.ca.chain_pem()
    }

    /// `http://127.0.0.1:PORT/crl/dvv-sote-test.crl`, as written into every certificate.
    pub fn crl_url(&self) -> &str {
        &self.inner.crl_url
    }

    /// The CRL server's address.
    pub fn crl_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CRL as the server publishes it now (DER).
    pub fn crl_der(&self) -> Result<Vec<u8>> {
        self.inner.current_crl()
    }

    /// How many times the CRL was fetched over HTTP.
    pub fn crl_fetches(&self) -> usize {
        lock(&self.inner.state).crl_fetches
    }

    /// Changes the delay for revocations requested from now on.
    pub fn set_revocation_delay(&self, delay: StdDuration) {
        lock(&self.inner.state).revocation_delay = delay;
    }

    /// Everything issued so far, oldest first.
    pub fn issued(&self) -> Vec<DvvCert> {
        lock(&self.inner.state).issued.clone()
    }

    fn next_serial(&self, counter: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(18);
        bytes.push(0x01);
        bytes.extend_from_slice(&self.inner.serial_prefix);
        bytes.extend_from_slice(&counter.to_be_bytes());
        bytes
    }

    /// Issues a `sote_type` certificate for the PEM CSR `csr_pem` (see the module docs for
    /// what is kept, what is refused and what is set).
    pub fn issue(&self, csr_pem: &str, sote_type: SoteType) -> Result<DvvCert> {
        check_key(csr_pem)?;
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            anyhow!("the DVV test CA refuses the CSR: it cannot be read or its signature does not verify ({e})")
        })?;
        check_names(&csr.params, sote_type)?;
        let counter = lock(&self.inner.state).issued.len() as u64 + 1;
        let serial = self.next_serial(counter);
        let not_before = now_seconds();
        let not_after = not_before + Duration::days(sote_type.validity_days());
        let crl_url = self.inner.crl_url.clone();
        let issued = self.inner.ca.issue_from_csr(csr_pem, |params| {
            params.serial_number = Some(SerialNumber::from_slice(&serial));
            params.not_before = not_before;
            params.not_after = not_after;
            params.key_usages = sote_type.key_usages();
            params.extended_key_usages = sote_type.extended_key_usages();
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![crl_url],
            }];
        })?;
        let cert = DvvCert {
            sote_type,
            serial,
            chain_pem: format!("{}{}", issued.pem, issued.chain_pem),
            cert_der: issued.der,
            cert_pem: issued.pem,
            not_before,
            not_after,
        };
        lock(&self.inner.state).issued.push(cert.clone());
        Ok(cert)
    }

    /// Revokes the certificate with serial `serial` (big-endian bytes; a leading zero byte is
    /// ignored) for `reason`. It appears on the CRL after the revocation delay. Refuses a
    /// serial this CA did not issue and one already revoked.
    pub fn revoke(&self, serial: &[u8], reason: RevocationReason) -> Result<()> {
        let serial = match serial {
            [0, rest @ ..] if !rest.is_empty() => rest,
            _ => serial,
        };
        let mut state = lock(&self.inner.state);
        ensure!(
            state.issued.iter().any(|c| c.serial == serial),
            "the DVV test CA issued no certificate with serial {}; check the serial (hex, \
             18 bytes starting 01)",
            hex(serial)
        );
        if state.revocations.iter().any(|r| r.serial == serial) {
            bail!(
                "the certificate with serial {} is already revoked (a revocation cannot be \
                 undone or repeated)",
                hex(serial)
            );
        }
        let delay = state.revocation_delay;
        let effective_time = now_seconds()
            + Duration::try_from(delay).context("the revocation delay is out of range")?;
        state.revocations.push(Revocation {
            serial: serial.to_vec(),
            reason,
            effective: Instant::now() + delay,
            effective_time: effective_time
                .replace_nanosecond(0)
                .unwrap_or(effective_time),
        });
        Ok(())
    }
}

fn crl_answer(inner: &Inner, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let respond = |status: StatusCode, content_type: &'static str, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    if request.method() != Method::GET || request.uri().path() != CRL_PATH {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("the DVV test CRL server only serves GET {CRL_PATH}").into_bytes(),
        );
    }
    lock(&inner.state).crl_fetches += 1;
    match inner.current_crl() {
        Ok(der) => respond(StatusCode::OK, "application/pkix-crl", der),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e:#}").into_bytes(),
        ),
    }
}

/// RSA 2048 or 4096 only (fi-kanta.md §2).
fn check_key(csr_pem: &str) -> Result<()> {
    let block = pem::parse(csr_pem)
        .map_err(|e| anyhow!("the DVV test CA refuses the CSR: it is not PEM ({e})"))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(block.contents())
            .map_err(|e| {
                anyhow!("the DVV test CA refuses the CSR: it is not a PKCS#10 request ({e})")
            })?;
    let spki = &csr.certification_request_info.subject_pki;
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) if matches!(rsa.key_size(), 2048 | 4096) => Ok(()),
        Ok(PublicKey::RSA(rsa)) => bail!(
            "the DVV test CA refuses the CSR: an RSA key of {} bits; DVV takes RSA 2048 or 4096",
            rsa.key_size()
        ),
        _ => bail!(
            "the DVV test CA refuses the CSR: its key is not RSA (algorithm {}); DVV takes RSA \
             2048 or 4096",
            spki.algorithm.algorithm
        ),
    }
}

/// The name rules for server types (fi-kanta.md §2): a DNS name, no e-mail address.
fn check_names(params: &rcgen::CertificateParams, sote_type: SoteType) -> Result<()> {
    if !sote_type.is_server() {
        return Ok(());
    }
    let email_in_subject = params.distinguished_name.iter().any(
        |(ty, _)| matches!(ty, DnType::CustomDnType(oid) if oid.as_slice() == OID_EMAIL_ADDRESS),
    );
    let email_in_san = params
        .subject_alt_names
        .iter()
        .any(|san| matches!(san, SanType::Rfc822Name(_)));
    ensure!(
        !email_in_subject && !email_in_san,
        "the DVV test CA refuses the CSR for a {} certificate: it carries an e-mail address \
         (DVV issues no server certificates with one since 15 Sep 2023); remove it",
        sote_type.as_str()
    );
    let has_dns = params
        .subject_alt_names
        .iter()
        .any(|san| matches!(san, SanType::DnsName(_)));
    ensure!(
        has_dns,
        "the DVV test CA refuses the CSR for a {} certificate: it has no SAN dNSName (a \
         server certificate needs a domain name; an IP address alone is not enough)",
        sote_type.as_str()
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
