//! What a renewal keeps from the certificate it replaces: its subject and its names.
//!
//! Contract:
//! - [`subject`] and [`sans`] read the current certificate's PEM (the context carries it) with
//!   x509-parser, not the `subject` display string: that gives each attribute's OID, its ASN.1
//!   string type (PrintableString stays PrintableString, as OCES3's serialNumber and SITHS's
//!   HSA-ID must) and the DER order, so the CSR asks for the same subject the CA issued.
//! - What the daemon could not write back faithfully is refused with a sentence that says to
//!   configure `subject` (or `sans`) instead: a subject with an attribute type twice, a
//!   multi-valued RDN, a value in a string type other than Printable, UTF8 or IA5, a name type
//!   other than DNS, IP, e-mail or URI.

use std::net::IpAddr;

use certvakt_plugin_api::profile::{StringType, SubjectAltName, SubjectAttribute};
use certvakt_plugin_api::{CertificateInfo, PluginError};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The current certificate's subject, attribute by attribute, in DER order.
pub fn subject(current: &CertificateInfo) -> Result<Vec<SubjectAttribute>, PluginError> {
    with_certificate(current, |cert| {
        let mut subject: Vec<SubjectAttribute> = Vec::new();
        for rdn in cert.subject().iter() {
            if rdn.iter().count() > 1 {
                return Err(refuse("has a multi-valued RDN", "subject"));
            }
            for attribute in rdn.iter() {
                let oid = attribute.attr_type().to_id_string();
                let string_type = match attribute.attr_value().header.tag() {
                    Tag::PrintableString => StringType::Printable,
                    // IA5String (emailAddress) is written as IA5 again by the daemon.
                    Tag::Utf8String | Tag::Ia5String => StringType::Utf8,
                    _ => {
                        return Err(refuse(
                            &format!("has {oid} in a string type certvakt cannot write"),
                            "subject",
                        ));
                    }
                };
                let value = attribute
                    .as_str()
                    .map_err(|_| refuse(&format!("has an unreadable {oid}"), "subject"))?;
                if subject.iter().any(|a| a.oid == oid) {
                    return Err(refuse(&format!("has {oid} twice"), "subject"));
                }
                subject.push(SubjectAttribute {
                    oid,
                    value: value.to_owned(),
                    string_type,
                });
            }
        }
        Ok(subject)
    })
}

/// The current certificate's subject alternative names, in order.
pub fn sans(current: &CertificateInfo) -> Result<Vec<SubjectAltName>, PluginError> {
    with_certificate(current, |cert| {
        let extension = cert
            .subject_alternative_name()
            .map_err(|_| refuse("has an unreadable subjectAltName", "sans"))?;
        let Some(extension) = extension else {
            return Ok(Vec::new());
        };
        extension
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => Ok(SubjectAltName::Dns((*dns).to_owned())),
                GeneralName::RFC822Name(email) => Ok(SubjectAltName::Email((*email).to_owned())),
                GeneralName::URI(uri) => Ok(SubjectAltName::Uri((*uri).to_owned())),
                GeneralName::IPAddress(bytes) => ip(bytes)
                    .map(|ip| SubjectAltName::Ip(ip.to_string()))
                    .ok_or_else(|| refuse("has an IP address name of odd length", "sans")),
                _ => Err(refuse("has a name type certvakt cannot request", "sans")),
            })
            .collect()
    })
}

fn with_certificate<T>(
    current: &CertificateInfo,
    read: impl FnOnce(&X509Certificate<'_>) -> Result<T, PluginError>,
) -> Result<T, PluginError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(current.pem.as_bytes())
        .map_err(|e| refuse(&format!("is not readable PEM ({e})"), "subject and sans"))?;
    let (_, cert) = X509Certificate::from_der(&pem.contents)
        .map_err(|e| refuse(&format!("does not parse ({e})"), "subject and sans"))?;
    read(&cert)
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A current certificate this plugin cannot copy from: the operator configures it instead.
fn refuse(problem: &str, configure: &str) -> PluginError {
    PluginError::configuration(format!(
        "the current certificate {problem}, so the renewal cannot copy it: configure {configure} \
         in [certificate.settings]"
    ))
}
