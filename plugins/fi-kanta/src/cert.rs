//! A DVV certificate read exactly: what the import check, the revocation task and the CRL
//! watch need.
//!
//! Contract:
//! - [`Cert::read`] parses the PEM the daemon hands over (with x509-parser) and fails with a
//!   sentence naming which certificate did not parse.
//! - Serial numbers are arbitrary-length unsigned integers (DVV's are 18 bytes, brief §4):
//!   kept as big-endian bytes without leading zero bytes, shown through [`Serial`] in hex
//!   (with and without colons) and decimal. Nothing converts them to a machine integer.
//! - The CRL distribution point is the first `http://` or `https://` URI of the extension.

use std::net::IpAddr;

use certvakt_plugin_api::profile::oid;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// The parts of a certificate the plugin reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// Subject attributes in DER order: (dotted OID, value).
    pub subject: Vec<(String, String)>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub email_addresses: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub serial: Serial,
    /// `("RSA", bits)`, `("EC", bits)` or the algorithm's OID and 0.
    pub key: (String, usize),
    /// The CRL distribution point URLs (http/https), in order.
    pub crl_urls: Vec<String>,
}

impl Cert {
    /// Reads `pem`; `what` names it in the error ("the new certificate").
    pub fn read(pem: &str, what: &str) -> Result<Cert, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("{what} is not a PEM certificate: {e}"))?;
        let (_, x509) = X509Certificate::from_der(&block.contents)
            .map_err(|e| format!("{what} does not parse as X.509: {e}"))?;
        let subject = x509
            .subject()
            .iter_attributes()
            .map(|a| {
                (
                    a.attr_type().to_id_string(),
                    a.as_str().map(str::to_owned).unwrap_or_default(),
                )
            })
            .collect();
        let mut cert = Cert {
            subject,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            email_addresses: Vec::new(),
            not_before: x509.validity().not_before.timestamp(),
            not_after: x509.validity().not_after.timestamp(),
            serial: Serial::from_bytes(x509.raw_serial()),
            key: key_of(&x509),
            crl_urls: Vec::new(),
        };
        for extension in x509.extensions() {
            match extension.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(dns) => {
                                cert.dns_names.push(dns.to_ascii_lowercase())
                            }
                            GeneralName::IPAddress(bytes) => {
                                if let Some(ip) = ip(bytes) {
                                    cert.ip_addresses.push(ip);
                                }
                            }
                            GeneralName::RFC822Name(mail) => {
                                cert.email_addresses.push((*mail).to_owned())
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::CRLDistributionPoints(points) => {
                    for point in points.iter() {
                        if let Some(DistributionPointName::FullName(names)) =
                            &point.distribution_point
                        {
                            for name in names {
                                if let GeneralName::URI(uri) = name
                                    && (uri.starts_with("http://") || uri.starts_with("https://"))
                                {
                                    cert.crl_urls.push((*uri).to_owned());
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(cert)
    }

    /// Every value of a subject attribute.
    pub fn attribute(&self, oid: &str) -> Vec<&str> {
        self.subject
            .iter()
            .filter(|(o, _)| o == oid)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The subject's e-mail attributes (PKCS#9 emailAddress).
    pub fn subject_emails(&self) -> Vec<&str> {
        self.attribute(oid::EMAIL_ADDRESS)
    }
}

fn key_of(x509: &X509Certificate<'_>) -> (String, usize) {
    match x509.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => ("RSA".into(), rsa.key_size()),
        Ok(PublicKey::EC(ec)) => ("EC".into(), ec.key_size()),
        _ => (x509.public_key().algorithm.algorithm.to_id_string(), 0),
    }
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A certificate serial number of any length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial {
    /// Big-endian, without leading zero bytes (at least one byte).
    bytes: Vec<u8>,
}

impl Serial {
    /// From the DER integer's content bytes (a leading `00` sign byte is dropped).
    pub fn from_bytes(bytes: &[u8]) -> Serial {
        let start = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        let mut bytes = bytes[start.min(bytes.len())..].to_vec();
        if bytes.is_empty() {
            bytes.push(0);
        }
        Serial { bytes }
    }

    /// Lower-case hex, two digits per byte, no separators (`0100000168f0…`): what the CRL
    /// lookup is asked for.
    pub fn hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Upper-case hex with colons (`01:00:00:01:68:F0:…`), as certificate viewers show it.
    pub fn hex_colons(&self) -> String {
        self.bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Decimal, as an arbitrary-length integer.
    pub fn decimal(&self) -> String {
        BigUint::from_bytes_be(&self.bytes).to_str_radix(10)
    }

    /// How many bytes it has.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
