//! Turning file contents into certificates: PEM, DER and PKCS#12.
//!
//! Owns the X.509 → [`CertInfo`] mapping, PKCS#12 opening, and the inventory's problem kinds
//! for a file that holds no usable certificate.
//!
//! Promises:
//! - PEM and DER are read by [`crate::certfile`] (which `keys` uses too, so both say the same
//!   about a bad file): its not-a-certificate and malformed flaws become
//!   [`ProblemKind::NotCertificate`] and [`ProblemKind::Malformed`], with its sentence.
//! - PKCS#12 is parsed only by p12-keystore, after [`crate::ber::pkcs12_to_der`] has made a
//!   bundle written with BER (Windows, older Java) DER, inside its MACed content too: every
//!   certificate of the bundle; those paired with a private key come first, so index 0 is
//!   the bundle's own certificate. No password: the empty password is tried, then
//!   [`ProblemKind::Pkcs12Password`]. The bundle's private key is decrypted by p12-keystore
//!   (it cannot be skipped) and dropped at once.
//! - Problem messages are sentence tails that follow the file name (`"<path> is empty"`): the
//!   caller prepends it. They never contain file contents.
//! - Fingerprints are SHA-1 / SHA-256 over the certificate's exact DER bytes.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::Oid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OidEntry, OidRegistry};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use crate::certfile::{self, DerKind, Flaw, Refusal};

use super::org_ids;
use super::{CertInfo, Fingerprint, KeyInfo, ProblemKind};

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

/// Parses whatever `bytes` hold.
pub(crate) fn parse_bytes(bytes: &[u8], password: Password<'_>) -> Result<Parsed, Problem> {
    let bytes = certfile::not_blank(bytes).map_err(problem)?;
    if certfile::is_pem(bytes) {
        return certfile::parse_pem(bytes, cert_info)
            .map(|certs| ("pem", certs))
            .map_err(problem);
    }
    match certfile::sniff_der(bytes) {
        DerKind::Pkcs12 => parse_pkcs12(bytes, password).map(|certs| ("pkcs12", certs)),
        DerKind::Certificate => certfile::parse_der(bytes, cert_info)
            .map(|certs| ("der", certs))
            .map_err(problem),
        other => Err(problem(certfile::not_certificate(other))),
    }
}

/// A certificate file's flaw as an inventory problem.
fn problem((flaw, message): Refusal) -> Problem {
    let kind = match flaw {
        Flaw::NotCertificate => ProblemKind::NotCertificate,
        Flaw::Malformed => ProblemKind::Malformed,
    };
    (kind, message)
}

fn parse_pkcs12(bytes: &[u8], password: Password<'_>) -> Result<Vec<ParsedCert>, Problem> {
    use p12_keystore::error::Error as P12Error;
    let secret = match password {
        Password::Given { secret, .. } => secret,
        // Some bundles are made with an empty password; trying it costs one KDF run.
        Password::None | Password::Unavailable { .. } => "",
    };
    let wrong_password = || {
        let message = match password {
            Password::None => "is a PKCS#12 bundle and needs a password; set pkcs12_password_file for this source to a file that holds it".to_string(),
            Password::Given { source, .. } => format!(
                "is a PKCS#12 bundle that the password in {source} does not open; put this bundle's password in that file"
            ),
            Password::Unavailable { source, reason } => format!(
                "is a PKCS#12 bundle, and its password file {source} could not be read ({reason})"
            ),
        };
        (ProblemKind::Pkcs12Password, message)
    };
    // Bundles written with BER (Windows, older Java) are made DER first, inside the MACed
    // content too; input the normaliser cannot read goes to p12-keystore as it is, which says
    // what is wrong.
    let der = match crate::ber::pkcs12_to_der(bytes, secret) {
        crate::ber::Pkcs12Der::Bytes(der) => der,
        crate::ber::Pkcs12Der::WrongMac => return Err(wrong_password()),
    };
    let archive = match p12_keystore::Pkcs12Archive::from_pkcs12(&der, secret) {
        Ok(archive) => archive,
        Err(P12Error::MacError(_) | P12Error::UnpadError | P12Error::Pkcs5Error(_)) => {
            return Err(wrong_password());
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
            certfile::parse_one(bag.cert.as_der(), cert_info).map_err(|e| {
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
        sha1: Fingerprint(Sha1::digest(der).into()),
        sha256: Fingerprint(Sha256::digest(der).into()),
        sans: sans(cert),
        identities: org_ids::identities_in_certificate(cert.subject(), cert.issuer()),
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
    // Writing to a String cannot fail.
    let _ = super::write_hex_colons(&mut out, bytes);
    out
}

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
                Some("1.2.840.10045.3.1.7") => (Some("P-256".into()), 256),
                Some("1.3.132.0.34") => (Some("P-384".into()), 384),
                Some("1.3.132.0.35") => (Some("P-521".into()), 521),
                Some("1.3.132.0.10") => (Some("secp256k1".into()), 256),
                Some("1.3.36.3.3.2.8.1.1.7") => (Some("brainpoolP256r1".into()), 256),
                Some("1.3.36.3.3.2.8.1.1.11") => (Some("brainpoolP384r1".into()), 384),
                Some("1.3.36.3.3.2.8.1.1.13") => (Some("brainpoolP512r1".into()), 512),
                other => (other.map(|o| o.to_owned().into()), ec_point_bits(data)),
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
            algorithm: oid.into(),
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

fn signature_algorithm_name(oid: &str) -> std::borrow::Cow<'static, str> {
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
        other => return other.to_owned().into(),
    };
    name.into()
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
