//! Keys: private keys, certificate signing requests, signatures and PKCS#12 bundles.
//!
//! Owns every private key certvakt touches, from generation (or import from an authority's
//! PKCS#12) to the bundle a service loads, and the checks that a certificate belongs to a key.
//!
//! Promises:
//! - Keys are RSA 2048/3072/4096 or EC P-256/P-384 ([`KeyAlgorithm`]), made and used by aws-lc
//!   through aws-lc-rs, the backend rcgen uses too (ring cannot make RSA keys; the `rsa` crate
//!   has an open timing advisory). Other keys (RSA of other sizes, P-521, Ed25519) are refused
//!   with [`KeyError::UnsupportedKey`], naming what they are.
//! - Private key bytes live only in [`Zeroizing`] buffers, cleared when dropped. `Debug` of a
//!   [`PrivateKey`] shows its algorithm only, and no error, `Display` or log line carries key
//!   material. The libraries keep copies while they work: aws-lc inside its key objects (cleared
//!   when freed) and p12-keystore while a bundle is written or read (not cleared).
//! - Key files are read as PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
//!   (`EC PRIVATE KEY`), PEM or DER, and written as PKCS#8. An encrypted key is refused
//!   ([`KeyFileProblem::Encrypted`]): the service that uses the key needs it unencrypted too,
//!   so the file's permissions are what protects it. The inventory's key check reads key files
//!   with the same function.
//! - [`csr`] writes the profile's subject attributes in the profile's order, each with the
//!   profile's string type (a PrintableString value outside that alphabet is refused, naming
//!   the attribute), except the two attributes whose ASN.1 type admits one string type only:
//!   countryName is always a two-letter PrintableString, emailAddress always an IA5String. SANs
//!   (DNS, IP, email, URI), key usage (critical) and extended key usage go into the
//!   extensionRequest. The CSR is signed with sha256WithRSAEncryption (RSA keys),
//!   ecdsa-with-SHA256 (P-256) or ecdsa-with-SHA384 (P-384), and only if the profile's key
//!   algorithm is the key's.
//! - [`sign`] signs data for the protocols plugins speak (XML-DSig, WS-Security, JWS) with a
//!   [`SignatureAlgorithm`] that must fit the key; nothing is substituted. RSA-PSS uses MGF1
//!   with the same hash and a salt as long as the hash. ECDSA signatures are DER
//!   (`Ecdsa-Sig-Value`, as OpenSSL makes them) or, with a `…Fixed` variant, r‖s of fixed
//!   width, which is what an XML-DSig `SignatureValue` (RFC 6931 §2.3.6, so WS-Security too)
//!   and JWS carry.
//! - PKCS#12 bundles are written with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for keys and
//!   certificates and an HMAC-SHA256 MAC, which OpenSSL 3 and Java read without legacy
//!   providers. A bundle is written, and read, only if its key belongs to its certificate.
//! - Certificates are parsed by x509-parser; certificate files are read through
//!   [`crate::certfile`] ([`parse_certificate_chain`]), as the inventory reads them, so both
//!   say the same about a bad file.

use certvakt_plugin_api::profile::KeyAlgorithm;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

mod csr;
mod pkcs12;
mod private_key;
mod sign;
#[cfg(test)]
mod tests;

pub use csr::{Csr, csr};
pub use pkcs12::{Pkcs12Contents, read_pkcs12, write_pkcs12};
pub(crate) use private_key::private_key_der;
pub use private_key::{PrivateKey, generate};
pub use sign::{SignatureAlgorithm, sign};

/// Why bytes that should hold a private key do not: the tail of a sentence that starts with
/// the file's name (`"<path> is encrypted; …"`). Never quotes the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileProblem {
    /// `ENCRYPTED PRIVATE KEY`, a `Proc-Type: 4,ENCRYPTED` header, or encrypted PKCS#8 DER.
    #[error("is encrypted; certvakt needs an unencrypted key file protected by its permissions")]
    Encrypted,
    /// A PEM block that is cut off or not base64.
    #[error("is damaged (a PEM block is cut off or not valid base64)")]
    DamagedPem,
    /// Neither PEM nor something that starts like DER.
    #[error(
        "holds no private key (expected PEM PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY, or DER)"
    )]
    NoKey,
    /// PEM blocks, none of them a private key; the labels found.
    #[error("holds no private key{}", only(.0))]
    OtherBlocks(Vec<String>),
    /// DER (or a PEM key block) that no key parser accepts.
    #[error(
        "is not a private key certvakt can read (unencrypted RSA or EC in PKCS#8, PKCS#1 or SEC1 form)"
    )]
    NotAKey,
}

fn only(labels: &[String]) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!(" (only {})", labels.join(", "))
    }
}

/// What went wrong with a key, a CSR, a signature, a certificate or a PKCS#12 bundle. Messages
/// are whole sentences for the operator: what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// aws-lc could not make a key.
    #[error(
        "generating a {} key failed in the crypto library (aws-lc); check that the system's random source works and try again",
        .0.as_str()
    )]
    Generate(KeyAlgorithm),
    /// The bytes hold no private key that can be read.
    #[error("the key file {0}")]
    KeyFile(#[from] KeyFileProblem),
    /// A valid key of a kind certvakt does not use; `what` names it ("an Ed25519 key").
    #[error(
        "the key is {what}; certvakt makes and uses RSA 2048, 3072 and 4096-bit and EC P-256 and P-384 keys only"
    )]
    UnsupportedKey { what: String },
    /// The CSR profile wants another kind of key than the one given.
    #[error(
        "the CSR profile asks for a {} key but the key is {}; generate a new key for this profile",
        .profile.as_str(), .key.as_str()
    )]
    ProfileKeyMismatch {
        profile: KeyAlgorithm,
        key: KeyAlgorithm,
    },
    /// A subject attribute OID that is not dotted decimal.
    #[error(
        "subject attribute {oid:?} in the CSR profile is not an object identifier; write it dotted, like 2.5.4.3"
    )]
    BadOid { oid: String },
    /// The same attribute type twice (rcgen writes each type once).
    #[error(
        "subject attribute {attribute} appears more than once in the CSR profile; certvakt writes each attribute type once"
    )]
    DuplicateAttribute { attribute: String },
    /// A PrintableString value with a character outside the alphabet.
    #[error(
        "subject attribute {attribute} = {value:?} cannot be a PrintableString: {character:?} is not in its alphabet (A-Z a-z 0-9 space ' ( ) + , - . / : = ?); correct the value or make the attribute a UTF8String in the profile"
    )]
    NotPrintable {
        attribute: String,
        value: String,
        character: char,
    },
    /// A subject attribute value that its type cannot hold.
    #[error("subject attribute {attribute} = {value:?} {problem}")]
    BadAttribute {
        attribute: String,
        value: String,
        problem: &'static str,
    },
    /// A subject alternative name that cannot be encoded.
    #[error("subject alternative name {san} {problem}")]
    BadSan { san: String, problem: &'static str },
    /// A profile with neither subject nor SANs.
    #[error(
        "the CSR profile has neither subject attributes nor subject alternative names, so the CSR would name nothing; fix the plugin's profile"
    )]
    EmptyCsr,
    /// rcgen refused the request.
    #[error("building the CSR failed: {0}")]
    Csr(String),
    /// A signature algorithm that does not fit the key.
    #[error("{algorithm} signatures need {}, but the key is {}", .algorithm.key_description(), .key.as_str())]
    SignatureKeyMismatch {
        algorithm: SignatureAlgorithm,
        key: KeyAlgorithm,
    },
    /// aws-lc could not sign.
    #[error("signing with {0} failed in the crypto library (aws-lc)")]
    Sign(SignatureAlgorithm),
    /// A certificate that cannot be read; `problem` is a sentence tail.
    #[error("the certificate {problem}")]
    Certificate { problem: String },
    /// A certificate with another public key than the private key's.
    #[error(
        "the certificate does not belong to the private key (their public keys differ); use the certificate issued for this key's CSR"
    )]
    CertificateKeyMismatch,
    /// MAC or decryption failed: the password is wrong.
    #[error(
        "the PKCS#12 bundle does not open with the given password; use the password the authority delivered with the bundle"
    )]
    Pkcs12Password,
    /// Not a PKCS#12 bundle p12-keystore can read.
    #[error(
        "the PKCS#12 bundle is damaged or in a form certvakt cannot read ({0}); download it again from the authority"
    )]
    Pkcs12Damaged(String),
    /// A bundle without any certificate.
    #[error("the PKCS#12 bundle holds no certificate; download the bundle with the certificate")]
    Pkcs12NoCertificate,
    /// More than one private key: which one is meant is a guess certvakt does not make.
    #[error(
        "the PKCS#12 bundle holds {0} private keys; certvakt imports a bundle with one key and its certificate chain"
    )]
    Pkcs12SeveralKeys(usize),
    /// The bundle's key and its certificate do not belong together.
    #[error(
        "the PKCS#12 bundle's private key does not belong to its certificate ({subject}); ask the authority for a correct bundle"
    )]
    Pkcs12KeyMismatch { subject: String },
    /// p12-keystore could not write the bundle.
    #[error("writing the PKCS#12 bundle failed ({0})")]
    Pkcs12Write(String),
}

/// Whether the certificate (DER) carries `key`'s public key: compares the SubjectPublicKeyInfo
/// bit strings.
pub fn cert_matches_key(cert_der: &[u8], key: &PrivateKey) -> Result<bool, KeyError> {
    let cert = parse_certificate(cert_der)?;
    Ok(spki_bits(&cert) == key.public_key_raw())
}

/// Certificates (DER) as PEM `CERTIFICATE` blocks, in order, LF line endings.
pub fn pem_certificates(ders: &[Vec<u8>]) -> String {
    ders.iter()
        .map(|der| pem_encode("CERTIFICATE", der))
        .collect()
}

/// The certificates (DER, in file order) in `bytes`: every PEM `CERTIFICATE` block, whatever
/// else the file holds, or DER (one certificate, or several concatenated). Each certificate
/// is parsed; a damaged one, or a file without any, is an error saying what the file holds.
/// PKCS#12 is refused: [`read_pkcs12`] reads it with its password.
pub fn parse_certificate_chain(bytes: &[u8]) -> Result<Vec<Vec<u8>>, KeyError> {
    crate::certfile::certificate_ders(bytes).map_err(|(_, problem)| KeyError::Certificate {
        problem: format!("file {problem}"),
    })
}

fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, KeyError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| KeyError::Certificate {
            problem: format!("is damaged ({e})"),
        })
}

fn spki_bits<'a>(cert: &'a X509Certificate<'_>) -> &'a [u8] {
    &cert.public_key().subject_public_key.data
}

/// PEM for data that is not secret.
fn pem_encode(label: &str, der: &[u8]) -> String {
    // Only fails for an invalid label or a length overflow, neither possible here; an empty
    // string would then make the caller's file visibly wrong rather than the daemon panic.
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der).unwrap_or_default()
}

/// PEM for a private key, built in a buffer that is cleared when dropped (the usual helpers
/// leave a base64 copy of the key behind).
fn pem_encode_secret(label: &str, der: &[u8]) -> Zeroizing<String> {
    let line_ending = pem_rfc7468::LineEnding::LF;
    let Ok(len) = pem_rfc7468::encoded_len(label, line_ending, der) else {
        return Zeroizing::new(String::new());
    };
    let mut buf = Zeroizing::new(vec![0u8; len]);
    let written = match pem_rfc7468::encode(label, line_ending, der, &mut buf) {
        Ok(text) => text.len(),
        Err(_) => return Zeroizing::new(String::new()),
    };
    buf.truncate(written);
    // Moves the buffer into the String without a copy. PEM is ASCII, so this cannot fail;
    // were it to, the bytes handed back are cleared all the same.
    match String::from_utf8(std::mem::take(&mut *buf)) {
        Ok(text) => Zeroizing::new(text),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Zeroizing::new(String::new())
        }
    }
}
