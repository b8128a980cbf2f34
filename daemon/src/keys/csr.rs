//! Certificate signing requests from a plugin's [`CsrProfile`], built by rcgen and signed
//! through [`sign`](super::sign) (rcgen never sees the private key).

use std::cell::RefCell;
use std::net::IpAddr;

use certvakt_plugin_api::profile::{
    CsrProfile, ExtendedKeyUsage, KeyAlgorithm, KeyUsage, StringType, SubjectAltName,
    SubjectAttribute, oid,
};
use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose,
    KeyUsagePurpose, PublicKeyData, SanType, SigningKey,
};

use super::private_key::PrivateKey;
use super::sign::{SignatureAlgorithm, sign};
use super::{KeyError, pem_encode};

/// A PKCS#10 certificate signing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    pub der: Vec<u8>,
    /// `CERTIFICATE REQUEST` PEM, LF line endings.
    pub pem: String,
}

/// Builds and signs the CSR `profile` describes for `key`. See the module contract in
/// [`crate::keys`] for what goes in.
pub fn csr(profile: &CsrProfile, key: &PrivateKey) -> Result<Csr, KeyError> {
    if profile.key != key.algorithm() {
        return Err(KeyError::ProfileKeyMismatch {
            profile: profile.key,
            key: key.algorithm(),
        });
    }
    if profile.subject.is_empty() && profile.sans.is_empty() {
        return Err(KeyError::EmptyCsr);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(&profile.subject)?;
    params.subject_alt_names = profile.sans.iter().map(san).collect::<Result<_, _>>()?;
    params.key_usages = profile.key_usage.iter().map(|u| key_usage(*u)).collect();
    params.extended_key_usages = Vec::new();
    for usage in &profile.extended_key_usage {
        params.insert_extended_key_usage(extended_key_usage(*usage));
    }

    let signer = CsrSigner::new(key);
    let request = params.serialize_request(&signer).map_err(|e| {
        signer
            .failure
            .take()
            .unwrap_or_else(|| KeyError::Csr(e.to_string()))
    })?;
    let der = request.der().to_vec();
    let pem = pem_encode("CERTIFICATE REQUEST", &der);
    Ok(Csr { der, pem })
}

/// Signs for rcgen with [`sign`], so CSRs and plugin signatures take one path.
struct CsrSigner<'a> {
    key: &'a PrivateKey,
    algorithm: SignatureAlgorithm,
    rcgen_algorithm: &'static rcgen::SignatureAlgorithm,
    /// The real error when signing fails (rcgen's own error type cannot carry it).
    failure: RefCell<Option<KeyError>>,
}

impl<'a> CsrSigner<'a> {
    fn new(key: &'a PrivateKey) -> Self {
        let (algorithm, rcgen_algorithm) = match key.algorithm() {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                (SignatureAlgorithm::RsaPkcs1Sha256, &rcgen::PKCS_RSA_SHA256)
            }
            KeyAlgorithm::EcP256 => (
                SignatureAlgorithm::EcdsaP256Sha256,
                &rcgen::PKCS_ECDSA_P256_SHA256,
            ),
            KeyAlgorithm::EcP384 => (
                SignatureAlgorithm::EcdsaP384Sha384,
                &rcgen::PKCS_ECDSA_P384_SHA384,
            ),
        };
        Self {
            key,
            algorithm,
            rcgen_algorithm,
            failure: RefCell::new(None),
        }
    }
}

impl PublicKeyData for CsrSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.key.public_key()
    }

    /// Also names the SubjectPublicKeyInfo algorithm: rsaEncryption, or id-ecPublicKey with
    /// the curve.
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.rcgen_algorithm
    }
}

impl SigningKey for CsrSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        sign(self.key, self.algorithm, msg).map_err(|e| {
            self.failure.replace(Some(e));
            rcgen::Error::RingUnspecified
        })
    }
}

fn subject(attributes: &[SubjectAttribute]) -> Result<DistinguishedName, KeyError> {
    let mut name = DistinguishedName::new();
    let mut seen: Vec<Vec<u64>> = Vec::new();
    for attribute in attributes {
        let arcs = parse_oid(&attribute.oid)?;
        let label = attribute_label(&arcs);
        // rcgen keeps one value per attribute type; a second would silently replace the first.
        if seen.contains(&arcs) {
            return Err(KeyError::DuplicateAttribute { attribute: label });
        }
        let value = attribute_value(attribute, &arcs, &label)?;
        name.push(DnType::from_oid(&arcs), value);
        seen.push(arcs);
    }
    Ok(name)
}

fn attribute_value(
    attribute: &SubjectAttribute,
    arcs: &[u64],
    label: &str,
) -> Result<DnValue, KeyError> {
    let value = &attribute.value;
    let bad = |problem| KeyError::BadAttribute {
        attribute: label.to_string(),
        value: value.clone(),
        problem,
    };
    if value.is_empty() {
        return Err(bad("is empty; give it a value or leave the attribute out"));
    }
    // X.520 and PKCS#9 allow these two a single string type, whatever the profile says.
    if arcs == [2, 5, 4, 6] {
        if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad(
                "is not a two-letter country code in capitals (DK, SE, FI, NO)",
            ));
        }
        return printable(value, label).map(DnValue::PrintableString);
    }
    if arcs == [1, 2, 840, 113549, 1, 9, 1] {
        return Ia5String::try_from(value.as_str())
            .map(DnValue::Ia5String)
            .map_err(|_| bad("is not ASCII, which an emailAddress (IA5String) must be"));
    }
    match attribute.string_type {
        StringType::Utf8 => Ok(DnValue::Utf8String(value.clone())),
        StringType::Printable => printable(value, label).map(DnValue::PrintableString),
    }
}

fn printable(value: &str, label: &str) -> Result<PrintableString, KeyError> {
    let not_printable = |character| KeyError::NotPrintable {
        attribute: label.to_string(),
        value: value.to_string(),
        character,
    };
    if let Some(character) = value.chars().find(|c| !is_printable(*c)) {
        return Err(not_printable(character));
    }
    // Same alphabet as above, so this only fails if rcgen's check ever grows stricter.
    PrintableString::try_from(value).map_err(|_| not_printable('?'))
}

/// The PrintableString alphabet (X.680 §41.4).
fn is_printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

fn parse_oid(dotted: &str) -> Result<Vec<u64>, KeyError> {
    let bad = || KeyError::BadOid {
        oid: dotted.to_string(),
    };
    let arcs = dotted
        .split('.')
        .map(|arc| {
            if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            arc.parse::<u64>().map_err(|_| bad())
        })
        .collect::<Result<Vec<_>, _>>()?;
    match arcs.as_slice() {
        [0 | 1, second, ..] if *second <= 39 => Ok(arcs),
        [2, _, ..] => Ok(arcs),
        _ => Err(bad()),
    }
}

/// `organizationIdentifier (2.5.4.97)`, for messages.
fn attribute_label(arcs: &[u64]) -> String {
    let dotted = arcs
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let name = match dotted.as_str() {
        oid::COUNTRY => "C",
        oid::ORGANIZATION => "O",
        oid::ORGANIZATIONAL_UNIT => "OU",
        oid::COMMON_NAME => "CN",
        oid::SERIAL_NUMBER => "serialNumber",
        oid::LOCALITY => "L",
        oid::ORGANIZATION_IDENTIFIER => "organizationIdentifier",
        oid::EMAIL_ADDRESS => "emailAddress",
        "2.5.4.8" => "ST",
        _ => return dotted,
    };
    format!("{name} ({dotted})")
}

fn san(name: &SubjectAltName) -> Result<SanType, KeyError> {
    let (kind, value) = match name {
        SubjectAltName::Dns(v) => ("DNS", v),
        SubjectAltName::Ip(v) => ("IP", v),
        SubjectAltName::Email(v) => ("email", v),
        SubjectAltName::Uri(v) => ("URI", v),
    };
    let bad = |problem| KeyError::BadSan {
        san: format!("{kind}:{value}"),
        problem,
    };
    if value.is_empty() {
        return Err(bad("is empty"));
    }
    let ia5 = |problem| Ia5String::try_from(value.as_str()).map_err(|_| bad(problem));
    match name {
        SubjectAltName::Dns(_) => {
            ia5("is not ASCII; write an internationalised domain name in its xn-- (punycode) form")
                .map(SanType::DnsName)
        }
        SubjectAltName::Ip(_) => value
            .parse::<IpAddr>()
            .map(SanType::IpAddress)
            .map_err(|_| bad("is not an IP address (like 192.0.2.10 or 2001:db8::1)")),
        SubjectAltName::Email(_) => ia5("is not ASCII").map(SanType::Rfc822Name),
        SubjectAltName::Uri(_) => ia5("is not ASCII; percent-encode the URI").map(SanType::URI),
    }
}

fn key_usage(usage: KeyUsage) -> KeyUsagePurpose {
    match usage {
        KeyUsage::DigitalSignature => KeyUsagePurpose::DigitalSignature,
        KeyUsage::NonRepudiation => KeyUsagePurpose::ContentCommitment,
        KeyUsage::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
        KeyUsage::DataEncipherment => KeyUsagePurpose::DataEncipherment,
        KeyUsage::KeyAgreement => KeyUsagePurpose::KeyAgreement,
    }
}

fn extended_key_usage(usage: ExtendedKeyUsage) -> ExtendedKeyUsagePurpose {
    match usage {
        ExtendedKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
    }
}
