//! Turning file contents into certificates: PEM, DER and PKCS#12.
//!
//! Owns format detection, the X.509 → [`CertInfo`] mapping and the wording of what is wrong
//! with a file that holds no usable certificate.
//!
//! Promises:
//! - X.509 is parsed only by x509-parser, PKCS#12 only by p12-keystore; the few ASN.1 headers
//!   read here (to tell a cut-off certificate from a DER private key or a PKCS#12 bundle)
//!   are read with x509-parser's asn1-rs.
//! - PEM: every `CERTIFICATE` block is taken, in file order, whatever else the file holds
//!   (keys, CSRs, text before and between blocks). A block that is cut off or does not decode
//!   makes the whole file [`ProblemKind::Malformed`]: a half-written file is reported, not
//!   half-read. A PEM without certificate blocks is [`ProblemKind::NotCertificate`] and says
//!   what it holds instead.
//! - DER: one certificate (several concatenated ones are accepted too).
//! - The same PEM and DER readers hand `keys` the certificates' exact DER
//!   ([`certificate_ders`]), so both say the same about a bad file.
//! - PKCS#12: every certificate of the bundle; those paired with a private key come first, so
//!   index 0 is the bundle's own certificate. No password: the empty password is tried, then
//!   [`ProblemKind::Pkcs12Password`]. The bundle's private key is decrypted by p12-keystore
//!   (it cannot be skipped) and dropped at once.
//! - Problem messages are sentence tails that follow the file name (`"<path> is empty"`): the
//!   caller prepends it. They never contain file contents.
//! - Fingerprints are SHA-1 / SHA-256 over the certificate's exact DER bytes.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::{FromBer, Header, Oid, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OidEntry, OidRegistry};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use super::identity;
use super::{CertInfo, KeyInfo, ProblemKind};

/// A parsed certificate plus what the inventory keeps for the key check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedCert {
    pub info: Arc<CertInfo>,
    /// The raw subjectPublicKey bits (RSAPublicKey DER, EC point, Ed25519 key): what the
    /// configured private key must produce.
    pub public_key: Vec<u8>,
}

/// Where a PKCS#12 password comes from, for the messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Password<'a> {
    /// No password configured.
    None,
    /// The password, and where it was read from (a file path, or "the given password").
    Given { secret: &'a str, source: &'a str },
    /// A password file is configured but could not be read.
    Unavailable { source: &'a str, reason: &'a str },
}

pub(crate) type Parsed = (&'static str, Vec<ParsedCert>);
pub(crate) type Problem = (ProblemKind, String);

/// See [`super::parse_certificates`].
pub fn parse_certificates(
    bytes: &[u8],
    password: Option<&str>,
) -> Result<(String, Vec<CertInfo>), (ProblemKind, String)> {
    let password = match password {
        Some(secret) => Password::Given {
            secret,
            source: "the given password",
        },
        None => Password::None,
    };
    let (format, certs) = parse_bytes(bytes, password)?;
    Ok((
        format.to_string(),
        certs
            .into_iter()
            .map(|c| Arc::unwrap_or_clone(c.info))
            .collect(),
    ))
}

/// Whether `bytes` look like a PKCS#12 bundle (so the caller knows to fetch a password).
pub(crate) fn looks_like_pkcs12(bytes: &[u8]) -> bool {
    !is_pem(bytes) && sniff_der(bytes) == DerKind::Pkcs12
}

/// Parses whatever `bytes` hold.
pub(crate) fn parse_bytes(bytes: &[u8], password: Password<'_>) -> Result<Parsed, Problem> {
    let bytes = not_blank(bytes)?;
    if is_pem(bytes) {
        return parse_pem(bytes, cert_info).map(|certs| ("pem", certs));
    }
    match sniff_der(bytes) {
        DerKind::Pkcs12 => parse_pkcs12(bytes, password).map(|certs| ("pkcs12", certs)),
        DerKind::Certificate => parse_der(bytes, cert_info).map(|certs| ("der", certs)),
        other => Err(not_certificate(other)),
    }
}

/// The exact DER of every certificate in `bytes`, PEM or DER, with the same checks and
/// messages as [`parse_bytes`]; for `keys::parse_certificate_chain`, which handles
/// certificates rather than inventories them. PKCS#12 is refused: it needs a password.
pub(crate) fn certificate_ders(bytes: &[u8]) -> Result<Vec<Vec<u8>>, Problem> {
    let bytes = not_blank(bytes)?;
    let keep_der = |der: &[u8], _: &X509Certificate<'_>| der.to_vec();
    if is_pem(bytes) {
        return parse_pem(bytes, keep_der);
    }
    match sniff_der(bytes) {
        DerKind::Certificate => parse_der(bytes, keep_der),
        DerKind::Pkcs12 => Err((
            ProblemKind::NotCertificate,
            "is a PKCS#12 bundle, not PEM or DER certificates; it has to be opened with its password".into(),
        )),
        other => Err(not_certificate(other)),
    }
}

/// `bytes` without a UTF-8 byte order mark (Windows tools write PEM with one, which hides the
/// first BEGIN line), or the problem if nothing but blank space is left.
fn not_blank(bytes: &[u8]) -> Result<&[u8], Problem> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
        let what = if bytes.is_empty() {
            "is empty"
        } else {
            "holds only blank space"
        };
        return Err((
            ProblemKind::NotCertificate,
            format!("{what}; put the certificate (PEM, DER or PKCS#12) in it"),
        ));
    }
    Ok(bytes)
}

fn not_certificate(kind: DerKind) -> Problem {
    let message = match kind {
        DerKind::PrivateKey => {
            "holds a DER-encoded private key but no certificate; point this source at the certificate file"
        }
        _ => "is neither a PEM, a DER certificate nor a PKCS#12 bundle",
    };
    (ProblemKind::NotCertificate, message.into())
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DerKind {
    Certificate,
    Pkcs12,
    PrivateKey,
    Unknown,
}

/// Reads only the first ASN.1 headers: a certificate is `SEQUENCE { SEQUENCE tbs … }`, a
/// PFX `SEQUENCE { INTEGER 3, SEQUENCE … }`, a private key `SEQUENCE { INTEGER 0|1, … }`
/// (PKCS#8, PKCS#1, SEC1). Works on cut-off input, which is the point.
fn sniff_der(bytes: &[u8]) -> DerKind {
    let Ok((content, outer)) = Header::from_ber(bytes) else {
        return DerKind::Unknown;
    };
    if outer.tag() != Tag::Sequence || !outer.is_constructed() {
        return DerKind::Unknown;
    }
    let Ok((_, first)) = Header::from_ber(content) else {
        return DerKind::Unknown;
    };
    match first.tag() {
        Tag::Sequence => DerKind::Certificate,
        Tag::Integer => match u32::from_ber(content) {
            Ok((after, 3)) => match Header::from_ber(after) {
                Ok((_, h)) if h.tag() == Tag::Sequence => DerKind::Pkcs12,
                _ => DerKind::Unknown,
            },
            Ok((_, 0 | 1)) => DerKind::PrivateKey,
            _ => DerKind::Unknown,
        },
        _ => DerKind::Unknown,
    }
}

/// `make` turns each certificate (its exact DER and its parse) into what the caller keeps.
fn parse_pem<T>(
    bytes: &[u8],
    make: impl Fn(&[u8], &X509Certificate<'_>) -> T,
) -> Result<Vec<T>, Problem> {
    let mut certs = Vec::new();
    let mut other_labels: Vec<String> = Vec::new();
    for (n, block) in Pem::iter_from_buffer(bytes).enumerate() {
        let block_no = n + 1;
        let pem = block.map_err(|e| {
            use x509_parser::error::PEMError;
            let what = match e {
                PEMError::IncompletePEM => "is cut off (no END line)".to_string(),
                PEMError::Base64DecodeError => "is not valid base64 (cut off or damaged)".to_string(),
                PEMError::InvalidHeader => "has a damaged BEGIN line".to_string(),
                other => format!("could not be read ({other})"),
            };
            (
                ProblemKind::Malformed,
                format!("is damaged: PEM block {block_no} {what}; restore the file from the issuer's original"),
            )
        })?;
        match pem.label.as_str() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                let cert = parse_one(&pem.contents, &make).map_err(|e| {
                    (
                        ProblemKind::Malformed,
                        format!("has a damaged certificate in PEM block {block_no}: {e}"),
                    )
                })?;
                certs.push(cert);
            }
            other => other_labels.push(other.to_string()),
        }
    }
    if !certs.is_empty() {
        return Ok(certs);
    }
    Err((
        ProblemKind::NotCertificate,
        no_certificate_message(bytes, &other_labels),
    ))
}

fn no_certificate_message(bytes: &[u8], labels: &[String]) -> String {
    let has = |pred: &dyn Fn(&str) -> bool| labels.iter().any(|l| pred(l));
    if has(&|l| l.ends_with("PRIVATE KEY")) {
        return "holds a private key but no certificate; point this source at the certificate file"
            .into();
    }
    if has(&|l| l.contains("CERTIFICATE REQUEST")) {
        return "holds a certificate request (CSR) but no certificate; the issued certificate still has to be put here".into();
    }
    if has(&|l| l == "PKCS7") {
        return "holds a PKCS#7 bundle, not PEM certificates; convert it with `openssl pkcs7 -print_certs`".into();
    }
    if !labels.is_empty() {
        return format!(
            "holds PEM blocks ({}) but no certificate",
            labels.join(", ")
        );
    }
    // "-----BEGIN " was there but no block could be read from it.
    let _ = bytes;
    "has a PEM BEGIN line but no readable block".into()
}

fn parse_der<T>(
    bytes: &[u8],
    make: impl Fn(&[u8], &X509Certificate<'_>) -> T,
) -> Result<Vec<T>, Problem> {
    let mut certs = Vec::new();
    let mut rest = bytes;
    loop {
        let (after, cert) = X509Certificate::from_der(rest).map_err(|e| {
            let what = if certs.is_empty() {
                "is a damaged or cut-off DER certificate".to_string()
            } else {
                format!("has damaged data after certificate {}", certs.len())
            };
            (
                ProblemKind::Malformed,
                format!("{what} ({e}); restore the file from the issuer's original"),
            )
        })?;
        let der = &rest[..rest.len() - after.len()];
        certs.push(make(der, &cert));
        rest = after;
        // Editors and mail clients add newlines or NULs after a DER blob; they are not a
        // second certificate. (Only after a parsed certificate: its own last byte may be
        // 0x00 or 0x0a.)
        if rest.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
            return Ok(certs);
        }
    }
}

fn parse_pkcs12(bytes: &[u8], password: Password<'_>) -> Result<Vec<ParsedCert>, Problem> {
    use p12_keystore::error::Error as P12Error;
    let secret = match password {
        Password::Given { secret, .. } => secret,
        // Some bundles are made with an empty password; trying it costs one KDF run.
        Password::None | Password::Unavailable { .. } => "",
    };
    let archive = match p12_keystore::Pkcs12Archive::from_pkcs12(bytes, secret) {
        Ok(archive) => archive,
        Err(P12Error::MacError(_) | P12Error::UnpadError | P12Error::Pkcs5Error(_)) => {
            let message = match password {
                Password::None => "is a PKCS#12 bundle and needs a password; set pkcs12_password_file for this source to a file that holds it".to_string(),
                Password::Given { source, .. } => format!(
                    "is a PKCS#12 bundle that the password in {source} does not open; put this bundle's password in that file"
                ),
                Password::Unavailable { source, reason } => format!(
                    "is a PKCS#12 bundle, and its password file {source} could not be read ({reason})"
                ),
            };
            return Err((ProblemKind::Pkcs12Password, message));
        }
        Err(e) => {
            return Err((
                ProblemKind::Malformed,
                format!(
                    "is a damaged PKCS#12 bundle ({e}); restore the file from the issuer's original"
                ),
            ));
        }
    };
    // The bundle's own certificate (the one with a key) first, then the chain in bag order.
    let mut bags: Vec<_> = archive.certs.iter().collect();
    bags.sort_by_key(|bag| bag.local_key_id.is_none());
    drop(archive.keys);
    if bags.is_empty() {
        return Err((
            ProblemKind::NotCertificate,
            "is a PKCS#12 bundle without a certificate".into(),
        ));
    }
    bags.iter()
        .enumerate()
        .map(|(n, bag)| {
            parse_one(bag.cert.as_der(), cert_info).map_err(|e| {
                (
                    ProblemKind::Malformed,
                    format!(
                        "is a PKCS#12 bundle with a damaged certificate (number {}): {e}",
                        n + 1
                    ),
                )
            })
        })
        .collect()
}

fn parse_one<T>(der: &[u8], make: impl Fn(&[u8], &X509Certificate<'_>) -> T) -> Result<T, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    // TRUSTED CERTIFICATE blocks carry OpenSSL trust settings after the certificate.
    let exact = &der[..der.len() - rest.len()];
    Ok(make(exact, &cert))
}

/// Everything the inventory reports about one certificate; `der` is its exact encoding.
pub(crate) fn cert_info(der: &[u8], cert: &X509Certificate<'_>) -> ParsedCert {
    let spki = cert.public_key();
    let info = CertInfo {
        subject: dn_string(cert.subject()),
        issuer: dn_string(cert.issuer()),
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key: key_info(spki),
        sha1: hex_colons(&Sha1::digest(der)),
        sha256: hex_colons(&Sha256::digest(der)),
        sans: sans(cert),
        identities: identity::identities_in_name(cert.subject()),
        is_ca: cert.is_ca(),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        signature_algorithm: signature_algorithm_name(
            &cert.signature_algorithm.algorithm.to_id_string(),
        ),
    };
    ParsedCert {
        info: Arc::new(info),
        public_key: spki.subject_public_key.data.to_vec(),
    }
}

/// A name the way x509-parser prints it (attributes in DER order, `, ` between them), with
/// openssl's name for 2.5.4.97, which x509-parser's registry lacks (it would print
/// `OID(2.5.4.97)=NTRDK-…`).
fn dn_string(name: &X509Name<'_>) -> String {
    name.to_string_with_registry(name_registry())
        .unwrap_or_else(|_| name.to_string())
}

fn name_registry() -> &'static OidRegistry<'static> {
    static REGISTRY: OnceLock<OidRegistry<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = OidRegistry::default().with_all_crypto().with_x509();
        if let Ok(oid) = Oid::from(&[2, 5, 4, 97]) {
            registry.insert(
                oid,
                OidEntry::new(
                    "organizationIdentifier",
                    "organizationIdentifier (X.520, eIDAS)",
                ),
            );
        }
        registry
    })
}

fn hex_colons(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The serial's magnitude: the DER sign byte (a leading 00 before a byte ≥ 0x80) is not part
/// of the number, and openssl does not print it either.
fn serial_hex(raw: &[u8]) -> String {
    match raw {
        [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => hex_colons(rest),
        _ => hex_colons(raw),
    }
}

fn key_info(spki: &SubjectPublicKeyInfo<'_>) -> KeyInfo {
    let oid = spki.algorithm.algorithm.to_id_string();
    let data: &[u8] = &spki.subject_public_key.data;
    match oid.as_str() {
        // rsaEncryption and id-RSASSA-PSS keys: both an RSAPublicKey.
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
            let bits = x509_parser::public_key::RSAPublicKey::from_der(data)
                .map(|(_, key)| significant_bits(key.modulus))
                .unwrap_or(0);
            KeyInfo {
                algorithm: "RSA".into(),
                bits,
                curve: None,
            }
        }
        "1.2.840.10045.2.1" => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let (curve, bits) = match curve_oid.as_deref() {
                Some("1.2.840.10045.3.1.7") => (Some("P-256".to_string()), 256),
                Some("1.3.132.0.34") => (Some("P-384".to_string()), 384),
                Some("1.3.132.0.35") => (Some("P-521".to_string()), 521),
                Some("1.3.132.0.10") => (Some("secp256k1".to_string()), 256),
                Some("1.3.36.3.3.2.8.1.1.7") => (Some("brainpoolP256r1".to_string()), 256),
                Some("1.3.36.3.3.2.8.1.1.11") => (Some("brainpoolP384r1".to_string()), 384),
                Some("1.3.36.3.3.2.8.1.1.13") => (Some("brainpoolP512r1".to_string()), 512),
                other => (other.map(str::to_string), ec_point_bits(data)),
            };
            KeyInfo {
                algorithm: "EC".into(),
                bits,
                curve,
            }
        }
        "1.3.101.112" => KeyInfo {
            algorithm: "Ed25519".into(),
            bits: 256,
            curve: None,
        },
        "1.3.101.113" => KeyInfo {
            algorithm: "Ed448".into(),
            bits: 456,
            curve: None,
        },
        _ => KeyInfo {
            algorithm: oid,
            bits: u32::try_from(data.len() * 8).unwrap_or(0),
            curve: None,
        },
    }
}

fn significant_bits(be: &[u8]) -> u32 {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    match trimmed.first() {
        Some(first) => (trimmed.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
        None => 0,
    }
}

fn ec_point_bits(point: &[u8]) -> u32 {
    match point {
        [4, rest @ ..] => (rest.len() * 4) as u32,
        [2 | 3, rest @ ..] => (rest.len() * 8) as u32,
        _ => 0,
    }
}

fn signature_algorithm_name(oid: &str) -> String {
    let name = match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.14" => "sha224WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.1" => "ecdsa-with-SHA224",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.2.840.10040.4.3" => "dsa-with-SHA1",
        "2.16.840.1.101.3.4.3.2" => "dsa-with-SHA256",
        other => return other.to_string(),
    };
    name.to_string()
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    // A certificate with a duplicated SAN extension is invalid; x509-parser errs and the
    // names are left out rather than guessed.
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(n) => Some(format!("DNS:{n}")),
            GeneralName::RFC822Name(n) => Some(format!("email:{n}")),
            GeneralName::URI(n) => Some(format!("URI:{n}")),
            GeneralName::IPAddress(bytes) => Some(format!("IP:{}", ip_string(bytes))),
            GeneralName::DirectoryName(dn) => Some(format!("DirName:{dn}")),
            GeneralName::RegisteredID(oid) => Some(format!("RID:{}", oid.to_id_string())),
            GeneralName::OtherName(oid, _) => Some(format!("othername:{}", oid.to_id_string())),
            _ => None,
        })
        .collect()
}

fn ip_string(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ipv4Addr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return Ipv6Addr::from(v6).to_string();
    }
    // Name constraints use address+mask (8 or 32 bytes); print it raw.
    hex_colons(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_serial_formatting() {
        assert_eq!(hex_colons(&[0x17, 0x2e, 0x0a]), "17:2e:0a");
        assert_eq!(serial_hex(&[0x00, 0x8c, 0x01]), "8c:01");
        assert_eq!(serial_hex(&[0x00, 0x7c]), "00:7c");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(significant_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(significant_bits(&[0x01, 0xff]), 9);
        assert_eq!(ip_string(&[10, 0, 0, 1]), "10.0.0.1");
        assert_eq!(
            ip_string(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            "::1"
        );
    }

    #[test]
    fn sniffing_der() {
        assert_eq!(
            sniff_der(b"\x30\x82\x01\x00\x30\x82\x00\xf0\xa0"),
            DerKind::Certificate
        );
        assert_eq!(
            sniff_der(b"\x30\x82\x01\x00\x02\x01\x03\x30\x80"),
            DerKind::Pkcs12
        );
        assert_eq!(
            sniff_der(b"\x30\x82\x01\x00\x02\x01\x00\x30\x0d"),
            DerKind::PrivateKey
        );
        assert_eq!(
            sniff_der(b"\x30\x77\x02\x01\x01\x04\x20"),
            DerKind::PrivateKey
        );
        assert_eq!(sniff_der(b"hello world"), DerKind::Unknown);
        assert_eq!(sniff_der(b""), DerKind::Unknown);
    }

    #[test]
    fn blank_and_text_files_are_not_certificates() {
        for bytes in [&b""[..], b"\n\n  \t", b"\0\0\0", b"just some notes\n"] {
            let (kind, _) = parse_bytes(bytes, Password::None).expect_err("no certificate");
            assert_eq!(kind, ProblemKind::NotCertificate, "{bytes:?}");
        }
        let (_, message) = parse_bytes(b"", Password::None).expect_err("empty");
        assert!(message.starts_with("is empty"), "{message}");
    }

    #[test]
    fn pem_without_certificates_says_what_it_holds() {
        let csr = b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        let (kind, message) = parse_bytes(csr, Password::None).expect_err("csr");
        assert_eq!(kind, ProblemKind::NotCertificate);
        assert!(message.contains("certificate request"), "{message}");

        let crl = b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        let (kind, message) = parse_bytes(crl, Password::None).expect_err("crl");
        assert_eq!(kind, ProblemKind::NotCertificate);
        assert!(message.contains("X509 CRL"), "{message}");
    }

    #[test]
    fn damaged_pem_certificate_block_is_malformed() {
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let (kind, message) = parse_bytes(bad, Password::None).expect_err("damaged");
        assert_eq!(kind, ProblemKind::Malformed);
        assert!(message.contains("PEM block 1"), "{message}");
        let not_base64 = b"-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n";
        assert_eq!(
            parse_bytes(not_base64, Password::None)
                .expect_err("base64")
                .0,
            ProblemKind::Malformed
        );
    }
}
