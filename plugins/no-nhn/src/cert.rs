//! The facts about one certificate of a set that the plugin acts on, read from its PEM with
//! x509-parser (never from the daemon's display strings): the organisation number in the
//! subject, the SEID generation, key usage, key, validity and serial.
//!
//! Contract:
//! - [`Cert::read`] reads the leaf of a PEM text; a PEM or certificate that does not parse is
//!   an error naming `what`.
//! - [`Cert::organization_number`] is the 9 digits of `organizationIdentifier=NTRNO-<digits>`
//!   (SEID 2); [`Cert::seid1_number`] the 9 digits of a bare `serialNumber` (SEID 1).

use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// `organizationIdentifier` (2.5.4.97).
const ORGANIZATION_IDENTIFIER: &[u64] = &[2, 5, 4, 97];
/// `serialNumber` (2.5.4.5).
const SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
/// `givenName` (2.5.4.42) and `surname` (2.5.4.4): a person's subject.
const GIVEN_NAME: &[u64] = &[2, 5, 4, 42];
const SURNAME: &[u64] = &[2, 5, 4, 4];

/// The key of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Rsa { bits: usize },
    Ec { bits: usize },
    Other,
}

/// Key usage bits that matter here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub digital_signature: bool,
    pub non_repudiation: bool,
    pub key_encipherment: bool,
    pub data_encipherment: bool,
    pub key_agreement: bool,
}

/// What the plugin reads from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub der: Vec<u8>,
    /// Big-endian, as in the certificate.
    pub serial: Vec<u8>,
    pub organization_identifier: Option<String>,
    pub serial_number_attribute: Option<String>,
    pub person_names: bool,
    /// `None`: no key usage extension.
    pub usage: Option<Usage>,
    pub key: Key,
    pub not_before: i64,
    pub not_after: i64,
}

impl Cert {
    /// Reads the leaf certificate of `pem`; `what` names it in the error.
    pub fn read(pem: &str, what: &str) -> Result<Cert, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("{what} is not readable PEM ({e})"))?;
        let der = block.contents;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| format!("{what} does not parse as a certificate ({e})"))?;
        let attribute = |arcs: &[u64]| -> Option<String> {
            let oid = Oid::from(arcs).ok()?;
            cert.subject()
                .iter_by_oid(&oid)
                .next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_owned)
        };
        let has = |arcs: &[u64]| attribute(arcs).is_some();
        let usage = cert.key_usage().ok().flatten().map(|ext| Usage {
            digital_signature: ext.value.digital_signature(),
            non_repudiation: ext.value.non_repudiation(),
            key_encipherment: ext.value.key_encipherment(),
            data_encipherment: ext.value.data_encipherment(),
            key_agreement: ext.value.key_agreement(),
        });
        let key = match cert.public_key().parsed() {
            Ok(PublicKey::RSA(rsa)) => Key::Rsa {
                bits: rsa.key_size(),
            },
            Ok(PublicKey::EC(ec)) => Key::Ec {
                bits: ec.key_size(),
            },
            _ => Key::Other,
        };
        let validity = cert.validity();
        Ok(Cert {
            serial: cert.raw_serial().to_vec(),
            organization_identifier: attribute(ORGANIZATION_IDENTIFIER),
            serial_number_attribute: attribute(SERIAL_NUMBER),
            person_names: has(GIVEN_NAME) || has(SURNAME),
            usage,
            key,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            der: der.clone(),
        })
    }

    /// The organisation number of a SEID 2 enterprise certificate (`NTRNO-<9 digits>`).
    pub fn organization_number(&self) -> Option<&str> {
        let number = self
            .organization_identifier
            .as_deref()?
            .strip_prefix("NTRNO-")?;
        nine_digits(number).then_some(number)
    }

    /// The organisation number of a SEID 1 certificate (a bare 9-digit `serialNumber`, no
    /// `organizationIdentifier`).
    pub fn seid1_number(&self) -> Option<&str> {
        if self.organization_identifier.is_some() {
            return None;
        }
        let number = self.serial_number_attribute.as_deref()?;
        nine_digits(number).then_some(number)
    }
}

fn nine_digits(value: &str) -> bool {
    value.len() == 9 && value.bytes().all(|b| b.is_ascii_digit())
}
