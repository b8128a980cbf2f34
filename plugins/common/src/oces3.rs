//! Danish OCES3 certificates: the CVR number and UUID the daemon read from the subject
//! (`organizationIdentifier=NTRDK-<CVR>`, `serialNumber=UI:DK-O:G:<uuid>`), and thumbprints.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certvakt_plugin_api::CertificateInfo;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// Who an OCES3 certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oces3Identity {
    /// 8 digits.
    pub cvr: String,
    /// As it appears in the certificate (send it so; compare case-insensitively).
    pub uuid: String,
}

impl Oces3Identity {
    /// Same UUID, compared case-insensitively.
    pub fn same_uuid(&self, other: &str) -> bool {
        self.uuid.eq_ignore_ascii_case(other)
    }
}

/// The OCES3 identity among those the daemon recognised in `info` (`DK CVR … UUID …`).
pub fn identity(info: &CertificateInfo) -> Option<Oces3Identity> {
    info.identities.iter().find_map(|line| {
        let rest = line.strip_prefix("DK CVR ")?;
        let (cvr, uuid) = rest.split_once(" UUID ")?;
        let uuid = uuid.split_whitespace().next()?;
        Some(Oces3Identity {
            cvr: cvr.to_owned(),
            uuid: uuid.to_owned(),
        })
    })
}

/// The leaf certificate of `pem` as DER.
pub fn der(pem_text: &str) -> Result<Vec<u8>, String> {
    pem::parse_many(pem_text)
        .map_err(|e| format!("the certificate PEM does not parse: {e}"))?
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.contents().to_vec())
        .ok_or_else(|| "no CERTIFICATE block in the PEM".to_owned())
}

/// base64(SHA-1(DER)): DGWS's `sosi:OCESCertHash`.
pub fn sha1_base64(der: &[u8]) -> String {
    STANDARD.encode(Sha1::digest(der))
}

/// SHA-1 of the DER as 40 uppercase hex digits: the conventional thumbprint.
pub fn sha1_hex_upper(der: &[u8]) -> String {
    hex_upper(&Sha1::digest(der))
}

/// SHA-256 of the DER as 64 uppercase hex digits.
pub fn sha256_hex_upper(der: &[u8]) -> String {
    hex_upper(&Sha256::digest(der))
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
