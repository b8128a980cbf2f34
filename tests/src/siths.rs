//! A SITHS-like CA for Swedish function certificates, with the order inbox of the SITHS eID
//! portal: what certvakt's `se-efrikort` plugin renews against.
//!
//! Owns: [`SithsCa`], [`SithsOrganisation`] (the ordering organisation as SITHS knows it),
//! [`OrderId`] / [`Order`] (the inbox) and [`SithsCert`] (what was issued for a CSR).
//!
//! Promises (profile from `shared/protocols/se-efrikort.md` §1 and §6):
//! - The chain is `TEST SITHS e-id Root CA v2` → `TEST SITHS e-id Function CA v1`, both
//!   `…, O=Inera AB, C=SE` ([`CaShape::Siths`]); the CA keys are EC P-256 so that a test makes
//!   the CA quickly.
//! - [`SithsCa::submit`] takes a PEM CSR, an HSA-ID and an FQDN into the inbox. Refused, each
//!   with a sentence naming the value and the rule: a CSR that cannot be read or whose
//!   signature does not verify; an HSA-ID that is empty, longer than 32 characters (eFrikort's
//!   `HsaId`), outside the PrintableString character set (e.g. `_`) or outside the
//!   organisation's branch of the HSA service tree ([`SithsOrganisation::hsa_prefix`]); an
//!   FQDN that is not one of the organisation's validated domains or below one.
//! - [`SithsCa::issue`] turns an order into a certificate. The CA puts in what it verified,
//!   not what the CSR's subject says: subject (DER order) `C=SE, L, O, CN=<FQDN>,
//!   serialNumber=<HSA-ID>` with `C` and `serialNumber` as **PrintableString** (the RFC 2253
//!   form reads `SERIALNUMBER=…, CN=…, O=…, L=…, C=SE`), SAN dNSName = the FQDN, `CA:FALSE`,
//!   digitalSignature + keyEncipherment, EKU clientAuth + serverAuth, two years from now (the
//!   real validity is unknown). The key is the CSR's.
//! - [`SithsCert::with_key`] pairs an issued certificate with the CSR's key (checked) as an
//!   [`IssuedCert`], e.g. to call eFrikort with a renewed certificate.
//! - [`SithsCa::issue_current`] mints, with a key made here, the same profile for the
//!   certificate a system already has when a test starts (valid since 30 days ago).
//! - Every issued HSA-ID is remembered ([`SithsCa::issued_hsa_ids`]), for the eFrikort
//!   access-request checks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{Result, anyhow, bail, ensure};
use rcgen::{
    DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::ca::{CaShape, KeyType, TestCa, now_seconds, printable, serial_number_attr};
use crate::leaf::{IssuedCert, LeafShape, LeafSpec};

/// The validity of what the CA issues.
pub const VALID_DAYS: i64 = 2 * 365;

/// The organisation that orders function certificates, as SITHS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SithsOrganisation {
    /// `O` of the certificates (e.g. `Region Testland`).
    pub name: String,
    /// `L` of the certificates (e.g. `Stockholm`).
    pub locality: String,
    /// The organisation's branch of the HSA service tree: every HSA-ID it may put in a
    /// certificate starts with this (e.g. `SE2321000016-`, or `TSTNMT2321000156-`).
    pub hsa_prefix: String,
    /// Domains the organisation proved it owns; an FQDN must equal one or end in `.<domain>`.
    pub validated_domains: Vec<String>,
}

impl SithsOrganisation {
    pub fn new(name: &str, locality: &str, hsa_prefix: &str, domains: &[&str]) -> Self {
        SithsOrganisation {
            name: name.to_owned(),
            locality: locality.to_owned(),
            hsa_prefix: hsa_prefix.to_owned(),
            validated_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        }
    }
}

/// An order's number in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(pub u64);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SITHS-{:06}", self.0)
    }
}

/// An accepted order waiting in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub csr_pem: String,
    pub hsa_id: String,
    pub fqdn: String,
}

/// A function certificate issued for a CSR (the key stays with whoever made the CSR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SithsCert {
    pub order: Option<OrderId>,
    pub hsa_id: String,
    pub fqdn: String,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// Certificate, `TEST SITHS e-id Function CA v1`, `TEST SITHS e-id Root CA v2`, PEM.
    pub chain_pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl SithsCert {
    /// The certificate with the key the CSR was made with (PKCS#8 DER), as an [`IssuedCert`]
    /// that can be a TLS client identity or be written out; refuses a key that is not the
    /// certificate's.
    pub fn with_key(&self, key_pkcs8_der: &[u8]) -> Result<IssuedCert> {
        let key = rcgen::KeyPair::try_from(key_pkcs8_der).map_err(|e| {
            anyhow!(
                "the key for {}'s certificate cannot be read: {e}",
                self.fqdn
            )
        })?;
        let (_, cert) = x509_parser::parse_x509_certificate(&self.cert_der)
            .map_err(|e| anyhow!("re-reading the issued certificate: {e}"))?;
        ensure!(
            cert.public_key().raw == rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
            "the key given is not the key of {}'s certificate (HSA-ID {})",
            self.fqdn,
            self.hsa_id
        );
        let chain_der = ::pem::parse_many(&self.chain_pem)
            .map_err(|e| anyhow!("re-reading the issued chain: {e}"))?
            .into_iter()
            .skip(1)
            .map(::pem::Pem::into_contents)
            .collect();
        let chain_pem = self
            .chain_pem
            .strip_prefix(&self.cert_pem)
            .unwrap_or_default()
            .to_owned();
        Ok(IssuedCert {
            shape: LeafShape::Siths,
            cert_der: self.cert_der.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pkcs8_der: key_pkcs8_der.to_vec(),
            key_pem: key.serialize_pem(),
            chain_der,
            chain_pem,
            not_before: self.not_before,
            not_after: self.not_after,
        })
    }
}

struct State {
    inbox: BTreeMap<OrderId, Order>,
    issued_hsa_ids: Vec<String>,
}

/// The SITHS-like CA for one organisation, with its order inbox.
pub struct SithsCa {
    ca: TestCa,
    organisation: SithsOrganisation,
    next_order: AtomicU64,
    state: Mutex<State>,
}

impl fmt::Debug for SithsCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SithsCa")
            .field("issuer", &self.ca.issuer_name())
            .field("organisation", &self.organisation)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SithsCa {
    /// A fresh TEST SITHS chain for `organisation`.
    pub fn new(organisation: SithsOrganisation) -> Result<SithsCa> {
        Ok(SithsCa {
            ca: TestCa::new(CaShape::Siths)?,
            organisation,
            next_order: AtomicU64::new(1),
            state: Mutex::new(State {
                inbox: BTreeMap::new(),
                issued_hsa_ids: Vec::new(),
            }),
        })
    }

    /// The underlying test CA (names, chain).
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    pub fn organisation(&self) -> &SithsOrganisation {
        &self.organisation
    }

    /// `TEST SITHS e-id Function CA v1`.
    pub fn issuer_name(&self) -> &str {
        self.ca.issuer_name()
    }

    /// `TEST SITHS e-id Root CA v2`, PEM.
    pub fn root_pem(&self) -> String {
        self.ca.root_pem()
    }

    /// The root, DER: the client root of an eFrikort endpoint.
    pub fn root_der(&self) -> Vec<u8> {
        self.ca.root_der()
    }

    /// Function CA then root, PEM (a trust set).
    pub fn chain_pem(&self) -> String {
        self.ca.chain_pem()
    }

    /// Puts an order into the inbox after the portal's checks (see the module docs).
    pub fn submit(&self, csr_pem: &str, hsa_id: &str, fqdn: &str) -> Result<OrderId> {
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            anyhow!(
                "the SITHS test CA refuses the order for {fqdn}: the CSR cannot be read or its \
                 signature does not verify ({e})"
            )
        })?;
        self.check_hsa_id(hsa_id)?;
        self.check_fqdn(fqdn)?;
        let id = OrderId(self.next_order.fetch_add(1, Ordering::Relaxed));
        lock(&self.state).inbox.insert(
            id,
            Order {
                id,
                csr_pem: csr_pem.to_owned(),
                hsa_id: hsa_id.to_owned(),
                fqdn: fqdn.to_ascii_lowercase(),
            },
        );
        Ok(id)
    }

    /// The orders waiting in the inbox, oldest first.
    pub fn orders(&self) -> Vec<Order> {
        lock(&self.state).inbox.values().cloned().collect()
    }

    /// Issues the certificate for `order` and takes the order out of the inbox.
    pub fn issue(&self, order: OrderId) -> Result<SithsCert> {
        let pending = lock(&self.state).inbox.remove(&order).ok_or_else(|| {
            anyhow!("the SITHS test CA has no order {order} in its inbox (issued already, or never submitted)")
        })?;
        let not_before = now_seconds();
        let not_after = not_before + Duration::days(VALID_DAYS);
        let subject = self.subject(&pending.hsa_id, &pending.fqdn)?;
        let fqdn = pending.fqdn.clone();
        let san = SanType::DnsName(
            fqdn.as_str()
                .try_into()
                .map_err(|e| anyhow!("{fqdn:?} cannot be a dNSName: {e}"))?,
        );
        let issued = self.ca.issue_from_csr(&pending.csr_pem, |params| {
            params.distinguished_name = subject;
            params.subject_alt_names = vec![san];
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ];
            params.custom_extensions.clear();
            params.not_before = not_before;
            params.not_after = not_after;
        })?;
        lock(&self.state)
            .issued_hsa_ids
            .push(pending.hsa_id.clone());
        Ok(SithsCert {
            order: Some(order),
            hsa_id: pending.hsa_id,
            fqdn: pending.fqdn,
            chain_pem: format!("{}{}", issued.pem, issued.chain_pem),
            cert_der: issued.der,
            cert_pem: issued.pem,
            not_before,
            not_after,
        })
    }

    /// Mints, with a fresh EC P-256 key, the certificate `fqdn` already has at test start
    /// (same checks and profile as an order; valid since 30 days ago).
    pub fn issue_current(&self, hsa_id: &str, fqdn: &str) -> Result<IssuedCert> {
        self.issue_current_with_key(hsa_id, fqdn, KeyType::EcP256)
    }

    /// [`SithsCa::issue_current`] with a key of `key_type` (the plugin's default is RSA 2048).
    pub fn issue_current_with_key(
        &self,
        hsa_id: &str,
        fqdn: &str,
        key_type: KeyType,
    ) -> Result<IssuedCert> {
        self.check_hsa_id(hsa_id)?;
        self.check_fqdn(fqdn)?;
        let spec = LeafSpec::siths(hsa_id, &self.organisation.name, fqdn)
            .locality(&self.organisation.locality)
            .server_name(&fqdn.to_ascii_lowercase())
            .key_type(key_type)
            .days(-30, VALID_DAYS - 30)
            .key_usage(vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ])
            .extended_key_usage(vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ]);
        let issued = self.ca.issue(&spec)?;
        lock(&self.state).issued_hsa_ids.push(hsa_id.to_owned());
        Ok(issued)
    }

    /// Every HSA-ID the CA has put in a certificate, in issue order.
    pub fn issued_hsa_ids(&self) -> Vec<String> {
        lock(&self.state).issued_hsa_ids.clone()
    }

    fn subject(&self, hsa_id: &str, fqdn: &str) -> Result<DistinguishedName> {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, printable("SE")?);
        dn.push(
            DnType::LocalityName,
            DnValue::Utf8String(self.organisation.locality.clone()),
        );
        dn.push(
            DnType::OrganizationName,
            DnValue::Utf8String(self.organisation.name.clone()),
        );
        dn.push(DnType::CommonName, DnValue::Utf8String(fqdn.to_owned()));
        dn.push(serial_number_attr(), printable(hsa_id)?);
        Ok(dn)
    }

    fn check_hsa_id(&self, hsa_id: &str) -> Result<()> {
        ensure!(
            !hsa_id.is_empty() && hsa_id.len() <= 32,
            "the SITHS test CA refuses the HSA-ID {hsa_id:?}: it must be 1 to 32 characters"
        );
        if printable(hsa_id).is_err() {
            bail!(
                "the SITHS test CA refuses the HSA-ID {hsa_id:?}: a function certificate carries \
                 it as a PrintableString, which cannot hold some of its characters (e.g. `_`)"
            );
        }
        ensure!(
            hsa_id.starts_with(&self.organisation.hsa_prefix),
            "the SITHS test CA refuses the HSA-ID {hsa_id:?}: it is not in {}'s branch of the \
             HSA service tree (HSA-IDs starting {:?}); order it under that branch or ask HSA \
             for a new one",
            self.organisation.name,
            self.organisation.hsa_prefix
        );
        Ok(())
    }

    fn check_fqdn(&self, fqdn: &str) -> Result<()> {
        let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
        let validated = self.organisation.validated_domains.iter().any(|domain| {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            fqdn == domain || fqdn.ends_with(&format!(".{domain}"))
        });
        ensure!(
            validated,
            "the SITHS test CA refuses the FQDN {fqdn:?}: it is not in a domain {} has validated \
             ({}); prove ownership of its domain in the SITHS eID portal first",
            self.organisation.name,
            self.organisation.validated_domains.join(", ")
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
