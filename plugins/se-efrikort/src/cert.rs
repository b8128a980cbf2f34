//! The facts about a SITHS function certificate the plugin acts on, read from its PEM with
//! x509-parser (never from the daemon's display strings): the HSA-ID in the subject's
//! `serialNumber` and its string type, CN, the SAN dNSNames, whether clientAuth is among the
//! extended key usages, and the validity.
//!
//! Contract:
//! - [`Cert::read`] reads the leaf of a PEM text; a PEM or certificate that does not parse is
//!   an error naming `what`.

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_X509_COMMON_NAME, OID_X509_SERIALNUMBER};
use x509_parser::prelude::FromDer;

/// What the plugin reads from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// The subject's `serialNumber`: the HSA-ID.
    pub hsa_id: Option<String>,
    /// Whether `serialNumber` is a PrintableString, as SITHS writes it.
    pub hsa_id_printable: bool,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    /// `None`: no extended key usage extension.
    pub client_auth: Option<bool>,
    pub not_before: i64,
    pub not_after: i64,
}

impl Cert {
    /// Reads the leaf certificate of `pem`; `what` names it in the error.
    pub fn read(pem: &str, what: &str) -> Result<Cert, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("{what} is not readable PEM ({e})"))?;
        let (_, cert) = X509Certificate::from_der(&block.contents)
            .map_err(|e| format!("{what} does not parse as a certificate ({e})"))?;
        let serial = cert.subject().iter_by_oid(&OID_X509_SERIALNUMBER).next();
        let hsa_id = serial
            .and_then(|a| a.as_str().ok())
            .map(|s| s.trim().to_owned());
        let hsa_id_printable =
            serial.is_some_and(|a| a.attr_value().header.tag() == Tag::PrintableString);
        let common_name = cert
            .subject()
            .iter_by_oid(&OID_X509_COMMON_NAME)
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned);
        let dns_names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some((*d).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let client_auth = cert
            .extended_key_usage()
            .ok()
            .flatten()
            .map(|ext| ext.value.client_auth);
        let validity = cert.validity();
        Ok(Cert {
            hsa_id,
            hsa_id_printable,
            common_name,
            dns_names,
            client_auth,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }
}
