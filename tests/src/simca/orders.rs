//! The simulated CA's order book: CSRs checked against a profile when ordered, certificates
//! signed once an order has waited its delay.
//!
//! Promises:
//! - An order is only taken for a CSR that the real kind of CA would take: a PEM `CERTIFICATE
//!   REQUEST` with a valid self-signature and extensions rcgen can carry over, and a subject,
//!   names and key that fit the profile ([`Profile::check`]). Anything else is refused with a
//!   sentence that says what is wrong, before an order id is handed out.
//! - An order is issued at the first status request after `issue_after` has passed since it was
//!   placed, valid from then for `validity`, and answered with the same chain from then on.
//! - Order ids are `SIM-<n>`, counting from 1 in each sim CA.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::ca::{TestCa, now_seconds};

/// `organizationIdentifier` (2.5.4.97).
const ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";
/// `commonName` (2.5.4.3).
const COMMON_NAME: &str = "2.5.4.3";

/// Which certificate profile an order asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// A TLS certificate: at least one DNS or IP SAN; issued with digitalSignature and
    /// serverAuth + clientAuth.
    #[default]
    Tls,
    /// An OCES3-shaped organisation certificate: `organizationIdentifier=NTRDK-<8 digits>`,
    /// a CN and an RSA key of at least 3072 bits; issued with digitalSignature and
    /// keyEncipherment and no extended key usage, as MitID Erhverv issues them.
    Oces3,
}

impl Profile {
    /// The profile named in an order (`"tls"`, `"oces3"`); `None` is [`Profile::Tls`].
    pub fn from_name(name: Option<&str>) -> Result<Profile, String> {
        match name {
            None | Some("tls") => Ok(Profile::Tls),
            Some("oces3") => Ok(Profile::Oces3),
            Some(other) => Err(format!(
                "unknown profile {other:?}: this CA issues \"tls\" and \"oces3\""
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Tls => "tls",
            Profile::Oces3 => "oces3",
        }
    }

    /// Whether this profile takes the CSR; `Err` says why not.
    pub fn check(self, csr_pem: &str) -> Result<(), String> {
        let pem = pem::parse(csr_pem).map_err(|e| format!("csr_pem is not PEM: {e}"))?;
        if pem.tag() != "CERTIFICATE REQUEST" {
            return Err(format!(
                "csr_pem holds a {:?}, not a \"CERTIFICATE REQUEST\"",
                pem.tag()
            ));
        }
        let (_, csr) = X509CertificationRequest::from_der(pem.contents())
            .map_err(|e| format!("csr_pem is not a PKCS#10 request: {e}"))?;
        csr.verify_signature()
            .map_err(|e| format!("the CSR's signature does not verify: {e}"))?;
        let info = &csr.certification_request_info;
        // rcgen, which signs, panics on an empty RDN; refuse it here first.
        if info.subject.iter().any(|rdn| rdn.iter().next().is_none()) {
            return Err("the CSR's subject has an empty RDN".into());
        }
        let has_dns_or_ip_name = csr
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|extension| match extension {
                ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
                _ => None,
            })
            .flatten()
            .any(|name| matches!(name, GeneralName::DNSName(_) | GeneralName::IPAddress(_)));
        let attribute = |oid: &str| {
            info.subject
                .iter_attributes()
                .find(|a| a.attr_type().to_id_string() == oid)
                .and_then(|a| a.as_str().ok())
        };
        match self {
            Profile::Tls => {
                if !has_dns_or_ip_name {
                    return Err("a TLS certificate needs at least one DNS or IP subject \
                                alternative name in the CSR"
                        .into());
                }
            }
            Profile::Oces3 => {
                let org_id = attribute(ORGANIZATION_IDENTIFIER).unwrap_or("");
                let cvr = org_id.strip_prefix("NTRDK-").unwrap_or("");
                if cvr.len() != 8 || !cvr.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "an OCES3 certificate needs organizationIdentifier=NTRDK-<CVR, 8 digits> \
                         in the subject, not {org_id:?}"
                    ));
                }
                if attribute(COMMON_NAME).is_none_or(str::is_empty) {
                    return Err("an OCES3 certificate needs a CN in the subject".into());
                }
                let key = info
                    .subject_pki
                    .parsed()
                    .map_err(|e| format!("the CSR's public key does not parse: {e}"))?;
                match key {
                    PublicKey::RSA(rsa) if rsa.key_size() >= 3072 => {}
                    PublicKey::RSA(rsa) => {
                        return Err(format!(
                            "an OCES3 certificate needs an RSA key of 3072 bits or more, \
                             not {} bits",
                            rsa.key_size()
                        ));
                    }
                    _ => {
                        return Err(
                            "an OCES3 certificate needs an RSA key (3072 bits or more)".into()
                        );
                    }
                }
            }
        }
        // Last, so the profile's own refusals come first: what rcgen cannot carry over
        // (an extension it does not know, a multi-valued RDN) this CA does not take either.
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| format!("this CA cannot take the CSR: {e}"))?;
        Ok(())
    }

    fn key_usages(self) -> Vec<KeyUsagePurpose> {
        match self {
            Profile::Tls => vec![KeyUsagePurpose::DigitalSignature],
            Profile::Oces3 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
        }
    }

    fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Profile::Tls => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Profile::Oces3 => Vec::new(),
        }
    }
}

/// Where an order stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not yet; ask again in `retry_after` seconds.
    Pending { retry_after: u64 },
    /// Issued: the certificate, then the issuing CA (not the root), PEM.
    Issued { chain_pem: String },
}

/// Every order a sim CA has taken, and the CA that signs them.
#[derive(Debug)]
pub(crate) struct Orders {
    ca: TestCa,
    issue_after: Duration,
    validity: Duration,
    placed: u64,
    orders: HashMap<String, Order>,
}

#[derive(Debug)]
struct Order {
    csr_pem: String,
    profile: Profile,
    ready_at: Instant,
    chain_pem: Option<String>,
}

impl Orders {
    pub(crate) fn new(ca: TestCa, issue_after: Duration, validity: Duration) -> Orders {
        Orders {
            ca,
            issue_after,
            validity,
            placed: 0,
            orders: HashMap::new(),
        }
    }

    /// How many orders were taken.
    pub(crate) fn placed(&self) -> usize {
        self.orders.len()
    }

    /// Takes an order for `csr_pem`, or says why not. Returns the order id and how many
    /// seconds to wait before asking.
    pub(crate) fn place(
        &mut self,
        csr_pem: &str,
        profile: Profile,
        now: Instant,
    ) -> Result<(String, u64), String> {
        profile.check(csr_pem)?;
        self.placed += 1;
        let id = format!("SIM-{}", self.placed);
        let ready_at = now + self.issue_after;
        self.orders.insert(
            id.clone(),
            Order {
                csr_pem: csr_pem.to_owned(),
                profile,
                ready_at,
                chain_pem: None,
            },
        );
        Ok((id, retry_after(ready_at, now)))
    }

    /// Where order `id` stands at `now`, issuing it if its time has come; `None` for an order
    /// this CA never took. `Err` if signing failed (a bug in the sim, not the caller's fault).
    pub(crate) fn status(&mut self, id: &str, now: Instant) -> Option<Result<Status, String>> {
        let order = self.orders.get_mut(id)?;
        if let Some(chain_pem) = &order.chain_pem {
            return Some(Ok(Status::Issued {
                chain_pem: chain_pem.clone(),
            }));
        }
        if now < order.ready_at {
            return Some(Ok(Status::Pending {
                retry_after: retry_after(order.ready_at, now),
            }));
        }
        let profile = order.profile;
        let validity = time::Duration::try_from(self.validity).unwrap_or(time::Duration::DAY);
        let issued = self.ca.issue_from_csr(&order.csr_pem, |params| {
            let now = now_seconds();
            params.not_before = now;
            params.not_after = now + validity;
            params.key_usages = profile.key_usages();
            params.extended_key_usages = profile.extended_key_usages();
        });
        let issued = match issued {
            Ok(issued) => issued,
            Err(e) => return Some(Err(format!("{e:#}"))),
        };
        let chain_pem = format!("{}{}", issued.pem, issuing_ca_pem(&issued.chain_pem));
        order.chain_pem = Some(chain_pem.clone());
        Some(Ok(Status::Issued { chain_pem }))
    }
}

/// Whole seconds until `ready_at`, at least 1 (a client told 0 would ask in a busy loop).
fn retry_after(ready_at: Instant, now: Instant) -> u64 {
    let left = ready_at.saturating_duration_since(now);
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
}

/// The chain above a leaf without its last certificate (the root, which a client already
/// trusts and a CA does not send), or the whole chain when it is the root alone.
fn issuing_ca_pem(chain_pem: &str) -> String {
    const END: &str = "-----END CERTIFICATE-----\n";
    let blocks: Vec<&str> = chain_pem
        .split_inclusive(END)
        .filter(|b| b.contains("BEGIN"))
        .collect();
    match blocks.split_last() {
        Some((_, above)) if !above.is_empty() => above.concat(),
        _ => chain_pem.to_owned(),
    }
}
