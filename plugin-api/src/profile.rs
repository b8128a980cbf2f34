//! What a new key and its certificate signing request must look like.
//!
//! A plugin returns a [`CsrProfile`] for the certificate being renewed; the daemon generates
//! the key and the CSR from it (plugins never hold private keys). The types say what the
//! authorities' profiles need: subject attributes by OID with their ASN.1 string type (OCES3's
//! `organizationIdentifier` is a UTF8String, SITHS's `serialNumber` a PrintableString), SANs,
//! key usage and extended key usage.

use serde::{Deserialize, Serialize};

/// The key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcP256,
    EcP384,
}

impl KeyAlgorithm {
    /// The name used in configuration files (`rsa-3072`, `ec-p256`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
            KeyAlgorithm::EcP256 => "ec-p256",
            KeyAlgorithm::EcP384 => "ec-p384",
        }
    }
}

/// When a renewal gets a new key: a certificate's `key_policy`. A plugin says which its
/// authority works with in [`crate::plugin::About::key_policies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPolicy {
    /// A new key at every renewal, made when the renewal starts (the default).
    #[default]
    Rotate,
    /// The key in use is kept across renewals (for pinning, DANE, or an authority that
    /// registers the key rather than the certificate).
    Reuse,
    /// The next key is made right after a renewal completes and kept until the next one, so
    /// its hash can be published (DNS TLSA records, an authority's whitelist) in advance.
    Prestage,
}

impl KeyPolicy {
    pub const ALL: [KeyPolicy; 3] = [KeyPolicy::Rotate, KeyPolicy::Reuse, KeyPolicy::Prestage];

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPolicy::Rotate => "rotate",
            KeyPolicy::Reuse => "reuse",
            KeyPolicy::Prestage => "prestage",
        }
    }
}

/// How a subject attribute's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringType {
    #[default]
    Utf8,
    Printable,
}

/// One attribute of the subject DN, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubjectAttribute {
    /// Dotted OID, e.g. `2.5.4.3` (CN), `2.5.4.97` (organizationIdentifier), `2.5.4.5`
    /// (serialNumber). The constants in [`oid`] name the common ones.
    pub oid: String,
    pub value: String,
    #[serde(default)]
    pub string_type: StringType,
}

/// Common attribute OIDs.
pub mod oid {
    pub const COUNTRY: &str = "2.5.4.6";
    pub const ORGANIZATION: &str = "2.5.4.10";
    pub const ORGANIZATIONAL_UNIT: &str = "2.5.4.11";
    pub const COMMON_NAME: &str = "2.5.4.3";
    pub const SERIAL_NUMBER: &str = "2.5.4.5";
    pub const LOCALITY: &str = "2.5.4.7";
    pub const ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";
    pub const EMAIL_ADDRESS: &str = "1.2.840.113549.1.9.1";
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum SubjectAltName {
    Dns(String),
    Ip(String),
    Email(String),
    Uri(String),
}

/// Key usage bits requested in the CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUsage {
    DigitalSignature,
    NonRepudiation,
    KeyEncipherment,
    DataEncipherment,
    KeyAgreement,
}

/// Extended key usages requested in the CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtendedKeyUsage {
    ServerAuth,
    ClientAuth,
    EmailProtection,
}

/// Everything the daemon needs to make the key and the CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrProfile {
    pub key: KeyAlgorithm,
    /// In DN order, most significant first (as the authority's profile lists it).
    pub subject: Vec<SubjectAttribute>,
    #[serde(default)]
    pub sans: Vec<SubjectAltName>,
    #[serde(default)]
    pub key_usage: Vec<KeyUsage>,
    #[serde(default)]
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
}
