//! Certificate files as bytes: which format a file is in (PEM, DER, PKCS#12, or a DER private
//! key), every certificate of a PEM or DER file, and the sentence for a file that holds none.
//!
//! Promises:
//! - The inventory (which reports on files) and `keys` (which reads the certificates it
//!   installs) both read certificate files through here, so they say the same about a bad file.
//! - PEM: every `CERTIFICATE` block is taken, in file order, whatever else the file holds
//!   (keys, CSRs, text before and between blocks). A block that is cut off or does not decode
//!   makes the whole file [`Flaw::Malformed`]: a half-written file is reported, not
//!   half-read. A PEM without certificate blocks is [`Flaw::NotCertificate`] and says what it
//!   holds instead.
//! - DER: one certificate (several concatenated ones are accepted too).
//! - X.509 is parsed only by x509-parser; the few ASN.1 headers read here (to tell a cut-off
//!   certificate from a DER private key or a PKCS#12 bundle) are read with its asn1-rs.
//! - Messages are sentence tails that follow the file name (`"<path> is empty"`): the caller
//!   prepends it. They never contain file contents.

use x509_parser::asn1_rs::{FromBer, Header, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

/// Why a file's bytes give no certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// The file holds no certificate (blank, a key, a CSR, something else).
    NotCertificate,
    /// A certificate that is cut off or otherwise damaged.
    Malformed,
}

/// A [`Flaw`] and its sentence tail.
pub type Refusal = (Flaw, String);

/// Whether `bytes` look like a PKCS#12 bundle (so the caller knows to fetch a password).
pub fn looks_like_pkcs12(bytes: &[u8]) -> bool {
    !is_pem(bytes) && sniff_der(bytes) == DerKind::Pkcs12
}

/// The exact DER of every certificate in `bytes`, PEM or DER, with the same checks and
/// messages the inventory gives; for `keys::parse_certificate_chain`, which handles
/// certificates rather than inventories them. PKCS#12 is refused: it needs a password.
pub fn certificate_ders(bytes: &[u8]) -> Result<Vec<Vec<u8>>, Refusal> {
    let bytes = not_blank(bytes)?;
    let keep_der = |der: &[u8], _: &X509Certificate<'_>| der.to_vec();
    if is_pem(bytes) {
        return parse_pem(bytes, keep_der);
    }
    match sniff_der(bytes) {
        DerKind::Certificate => parse_der(bytes, keep_der),
        DerKind::Pkcs12 => Err((
            Flaw::NotCertificate,
            "is a PKCS#12 bundle, not PEM or DER certificates; it has to be opened with its password".into(),
        )),
        other => Err(not_certificate(other)),
    }
}

/// `bytes` without a UTF-8 byte order mark (Windows tools write PEM with one, which hides the
/// first BEGIN line), or the problem if nothing but blank space is left.
pub fn not_blank(bytes: &[u8]) -> Result<&[u8], Refusal> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
        let what = if bytes.is_empty() {
            "is empty"
        } else {
            "holds only blank space"
        };
        return Err((
            Flaw::NotCertificate,
            format!("{what}; put the certificate (PEM, DER or PKCS#12) in it"),
        ));
    }
    Ok(bytes)
}

pub fn not_certificate(kind: DerKind) -> Refusal {
    let message = match kind {
        DerKind::PrivateKey => {
            "holds a DER-encoded private key but no certificate; point this source at the certificate file"
        }
        _ => "is neither a PEM, a DER certificate nor a PKCS#12 bundle",
    };
    (Flaw::NotCertificate, message.into())
}

pub fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerKind {
    Certificate,
    Pkcs12,
    PrivateKey,
    Unknown,
}

/// Reads only the first ASN.1 headers: a certificate is `SEQUENCE { SEQUENCE tbs … }`, a
/// PFX `SEQUENCE { INTEGER 3, SEQUENCE … }`, a private key `SEQUENCE { INTEGER 0|1, … }`
/// (PKCS#8, PKCS#1, SEC1). Works on cut-off input, which is the point.
pub fn sniff_der(bytes: &[u8]) -> DerKind {
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
pub fn parse_pem<T>(
    bytes: &[u8],
    make: impl Fn(&[u8], &X509Certificate<'_>) -> T,
) -> Result<Vec<T>, Refusal> {
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
                Flaw::Malformed,
                format!("is damaged: PEM block {block_no} {what}; restore the file from the issuer's original"),
            )
        })?;
        match pem.label.as_str() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                let cert = parse_one(&pem.contents, &make).map_err(|e| {
                    (
                        Flaw::Malformed,
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
        Flaw::NotCertificate,
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

pub fn parse_der<T>(
    bytes: &[u8],
    make: impl Fn(&[u8], &X509Certificate<'_>) -> T,
) -> Result<Vec<T>, Refusal> {
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
                Flaw::Malformed,
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

pub fn parse_one<T>(
    der: &[u8],
    make: impl Fn(&[u8], &X509Certificate<'_>) -> T,
) -> Result<T, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    // TRUSTED CERTIFICATE blocks carry OpenSSL trust settings after the certificate.
    let exact = &der[..der.len() - rest.len()];
    Ok(make(exact, &cert))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // BER, as Windows and older Java write PKCS#12: indefinite lengths.
        assert_eq!(
            sniff_der(b"\x30\x80\x02\x01\x03\x30\x80\x06\x09"),
            DerKind::Pkcs12
        );
        assert_eq!(sniff_der(b"hello world"), DerKind::Unknown);
        assert_eq!(sniff_der(b""), DerKind::Unknown);
    }
}
