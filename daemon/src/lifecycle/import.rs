//! Taking in an issued certificate: from the plugin (a CA with an API), from `certvakt import`
//! or from the inbox folder.
//!
//! Contract: nothing is staged unless the leaf belongs to the pending key (or to the key the
//! CA delivered with it in a PKCS#12), is still valid, keeps the organisation identity of the
//! certificate it replaces, and — with `issuer_trust` — chains to that trust set. Every
//! refusal is a sentence naming what does not fit. What fits but deserves a person's
//! attention (a Danish certificate with a new UUID) is a note, not a refusal.

use crate::config::ManagedCertificate;
use crate::inventory::{self, NordicIdentity};
use crate::keys::{self, PrivateKey};

use super::{CertFacts, EngineError, Requested};
use certvakt_plugin_api::profile::{KeyAlgorithm, KeyUsage};

/// What an imported file held.
#[derive(Debug)]
pub struct Imported {
    /// The certificates, as PEM.
    pub chain_pem: Vec<u8>,
    /// The key, when the file was a PKCS#12 with one (the CA made the key).
    pub key: Option<PrivateKey>,
}

/// A checked chain: the leaf first, then its issuers.
#[derive(Debug)]
pub struct Checked {
    pub leaf_der: Vec<u8>,
    pub chain_der: Vec<Vec<u8>>,
    pub facts: CertFacts,
    /// What the operator should know about the new certificate (sentences).
    pub notes: Vec<String>,
}

/// What a new certificate is held to beyond the key and the organisation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect<'a> {
    /// The `issuer_trust` set it must chain to.
    pub trust: Option<&'a IssuerTrust>,
    /// What the CSR asked for (absent when the run had no CSR: a PKCS#12 import started it).
    pub requested: Option<&'a Requested>,
    /// Whether the CA made the key (a PKCS#12 with a key): it must then be as strong as the
    /// profile's key type.
    pub key_from_ca: bool,
}

/// The trust set an issued certificate must chain to: its name and its roots (DER).
#[derive(Debug)]
pub struct IssuerTrust {
    pub name: String,
    pub roots: Vec<Vec<u8>>,
}

/// Reads a certificate file as sent by `certvakt import`: PEM or DER certificates, or a
/// PKCS#12 (with `password`).
pub fn read_import(bytes: &[u8], password: Option<&str>) -> Result<Imported, EngineError> {
    if let Ok(ders) = keys::parse_certificate_chain(bytes) {
        return Ok(Imported {
            chain_pem: keys::pem_certificates(&ders).into_bytes(),
            key: None,
        });
    }
    let Some(password) = password else {
        return Err(EngineError::Import(
            "the file is neither PEM nor DER certificates; if it is a PKCS#12 bundle, pass --password-file".into(),
        ));
    };
    let contents = keys::read_pkcs12(bytes, password)?;
    let mut ders = vec![contents.leaf_der];
    ders.extend(contents.chain_der);
    Ok(Imported {
        chain_pem: keys::pem_certificates(&ders).into_bytes(),
        key: contents.key,
    })
}

/// The facts the engine keeps of a certificate (DER).
pub fn facts(der: &[u8]) -> Result<CertFacts, EngineError> {
    let (_, infos) = inventory::parse_certificates(der, None)
        .map_err(|(_, why)| EngineError::Import(format!("the certificate {why}")))?;
    let info = infos
        .into_iter()
        .next()
        .ok_or_else(|| EngineError::Import("the file holds no certificate".into()))?;
    Ok(CertFacts {
        pem: keys::pem_certificates(&[der.to_vec()]),
        subject: info.subject.clone(),
        serial: info.serial.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
        identities: info.identities.iter().map(NordicIdentity::label).collect(),
    })
}

/// Checks `chain` (PEM or DER) against `key` and the certificate it replaces.
pub fn check_chain(
    cert: &ManagedCertificate,
    chain: &[u8],
    key: &PrivateKey,
    old: Option<&CertFacts>,
    expect: Expect<'_>,
    now: i64,
) -> Result<Checked, EngineError> {
    let ders = keys::parse_certificate_chain(chain)?;
    // The leaf is the certificate of our key, wherever the CA put it in the file.
    let mut leaf_at = None;
    for (i, der) in ders.iter().enumerate() {
        if keys::cert_matches_key(der, key)? {
            leaf_at = Some(i);
            break;
        }
    }
    let Some(leaf_at) = leaf_at else {
        return Err(EngineError::Import(format!(
            "none of the {} certificate(s) belongs to the pending key of {}: it was issued for another CSR (send the CSR from the task's files, `certvakt task show`)",
            ders.len(),
            cert.id
        )));
    };
    let mut rest = ders;
    let leaf_der = rest.remove(leaf_at);
    let facts = facts(&leaf_der)?;
    if facts.not_after <= now {
        return Err(EngineError::Import(format!(
            "certificate {} for {} has already expired ({})",
            facts.serial,
            cert.id,
            crate::human_time::format_time(facts.not_after)
        )));
    }
    let mut notes = Vec::new();
    if let Some(old) = old {
        let (old_ids, new_ids) = (identities(&old.pem), identities(&facts.pem));
        let (was, is) = (organisation(&old_ids), organisation(&new_ids));
        if was.is_some() && is.is_some() && was != is {
            return Err(EngineError::Import(format!(
                "certificate {} is for {}, but {} was for {}: a certificate for another organisation is not installed",
                facts.serial,
                is.unwrap_or_default(),
                cert.id,
                was.unwrap_or_default()
            )));
        }
        if let (Some(was), Some(is)) = (oces3_uuid(&old_ids), oces3_uuid(&new_ids))
            && !was.eq_ignore_ascii_case(is)
        {
            notes.push(format!(
                "certificate {} has a new UUID ({is}; the one it replaces had {was}): it is a new certificate to the authorities, not a renewal of the old one, so each must be told about it (whitelistings, system users) rather than get a new hash",
                facts.serial
            ));
        }
    }
    if let Some(requested) = expect.requested {
        if expect.key_from_ca && !strong_enough(key.algorithm(), requested.key) {
            return Err(EngineError::Import(format!(
                "the key that came with certificate {} is {}, but {} asks for {} (or stronger of the same kind); ask the CA for a certificate with such a key",
                facts.serial,
                key.algorithm().as_str(),
                cert.id,
                requested.key.as_str()
            )));
        }
        let missing = missing_key_usages(&leaf_der, &requested.key_usage);
        if !missing.is_empty() {
            return Err(EngineError::Import(format!(
                "certificate {} for {} does not allow {}, which the request asked for; it cannot be used as the authority expects",
                facts.serial,
                cert.id,
                missing.join(" and ")
            )));
        }
    }
    if let Some(trust) = expect.trust {
        verify_issuer(cert, &facts, &leaf_der, &rest, trust, now)?;
    }
    Ok(Checked {
        leaf_der,
        chain_der: rest,
        facts,
        notes,
    })
}

/// Accepts any extended key usage: `issuer_trust` asks who issued the certificate, not what
/// it may be used for (OCES3 system certificates carry no EKU; TLS certificates do).
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// Checks that the leaf chains, through the certificates that came with it, to a root of
/// `trust`, with valid signatures and validity periods at `now`.
fn verify_issuer(
    cert: &ManagedCertificate,
    facts: &CertFacts,
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    trust: &IssuerTrust,
    now: i64,
) -> Result<(), EngineError> {
    use rustls::pki_types::{CertificateDer, UnixTime};

    let refuse = |why: String| {
        EngineError::Import(format!(
            "certificate {} for {} does not chain to trust set `{}` ({why}); import it with its intermediate certificates, or check that the set holds the issuing CA's root",
            facts.serial, cert.id, trust.name
        ))
    };
    let roots: Vec<CertificateDer<'_>> = trust
        .roots
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let anchors = roots
        .iter()
        .map(|der| webpki::anchor_from_trusted_cert(der).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            refuse(format!(
                "the set has a certificate that cannot be a root: {e}"
            ))
        })?;
    let leaf = CertificateDer::from(leaf_der);
    let end_entity = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| refuse(format!("the certificate cannot be checked: {e}")))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ));
    let algorithms = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    end_entity
        .verify_for_usage(
            algorithms,
            &anchors,
            &intermediates,
            time,
            AnyUsage,
            None,
            None,
        )
        .map(drop)
        .map_err(|e| {
            refuse(match e {
                webpki::Error::UnknownIssuer => {
                    "no issuer in the set or among the certificates that came with it".into()
                }
                webpki::Error::InvalidSignatureForPublicKey => "a signature does not verify".into(),
                other => format!("{other}"),
            })
        })
}

/// Whether a key of type `have` meets a request for `want`: the same kind (RSA or EC), and at
/// least the size.
fn strong_enough(have: KeyAlgorithm, want: KeyAlgorithm) -> bool {
    let rank = |k: KeyAlgorithm| match k {
        KeyAlgorithm::Rsa2048 => ("RSA", 1),
        KeyAlgorithm::Rsa3072 => ("RSA", 2),
        KeyAlgorithm::Rsa4096 => ("RSA", 3),
        KeyAlgorithm::EcP256 => ("EC", 1),
        KeyAlgorithm::EcP384 => ("EC", 2),
    };
    let ((have_kind, have_rank), (want_kind, want_rank)) = (rank(have), rank(want));
    have_kind == want_kind && have_rank >= want_rank
}

/// The requested key usages the certificate does not allow, by their RFC 5280 names. A
/// certificate without a key usage extension allows every usage (RFC 5280 §4.2.1.3).
fn missing_key_usages(leaf_der: &[u8], requested: &[KeyUsage]) -> Vec<&'static str> {
    let Ok((_, leaf)) = x509_parser::parse_x509_certificate(leaf_der) else {
        return Vec::new();
    };
    let Ok(Some(usage)) = leaf.key_usage() else {
        return Vec::new();
    };
    let allows = usage.value;
    requested
        .iter()
        .filter_map(|wanted| {
            let (present, name) = match wanted {
                KeyUsage::DigitalSignature => (allows.digital_signature(), "digitalSignature"),
                KeyUsage::NonRepudiation => (allows.non_repudiation(), "nonRepudiation"),
                KeyUsage::KeyEncipherment => (allows.key_encipherment(), "keyEncipherment"),
                KeyUsage::DataEncipherment => (allows.data_encipherment(), "dataEncipherment"),
                KeyUsage::KeyAgreement => (allows.key_agreement(), "keyAgreement"),
            };
            (!present).then_some(name)
        })
        .collect()
}

/// The Nordic identities of a PEM certificate (none when it does not parse): read once per
/// certificate for the checks below.
fn identities(pem: &str) -> Vec<NordicIdentity> {
    inventory::parse_certificates(pem.as_bytes(), None)
        .ok()
        .and_then(|(_, infos)| infos.into_iter().next())
        .map(|info| info.identities)
        .unwrap_or_default()
}

/// The OCES3 UUID (`serialNumber=UI:DK-…:<uuid>`), if the certificate has one.
fn oces3_uuid(identities: &[NordicIdentity]) -> Option<&str> {
    identities.iter().find_map(|id| match id {
        NordicIdentity::DkOces3 { uuid, .. } => uuid.as_deref(),
        _ => None,
    })
}

/// The organisation number (CVR, HSA-ID's organisation part, orgnr, Y-tunnus) a certificate
/// carries, for the "same organisation" check.
fn organisation(identities: &[NordicIdentity]) -> Option<String> {
    identities.iter().find_map(|id| match id {
        NordicIdentity::DkOces3 { cvr, .. } | NordicIdentity::DkOces2 { cvr, .. } => {
            Some(format!("CVR {cvr}"))
        }
        NordicIdentity::NoOrgNumber { orgnr, .. } => Some(format!("org {orgnr}")),
        NordicIdentity::FiOrganisation {
            business_id: Some(b),
            ..
        } => Some(format!("Y-tunnus {b}")),
        NordicIdentity::SeHsaId { hsa_id } => hsa_id.split('-').next().map(str::to_owned),
        NordicIdentity::FiOrganisation { .. } => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_the_ca_made_must_be_of_the_kind_and_at_least_the_size_asked_for() {
        use KeyAlgorithm::*;
        assert!(strong_enough(Rsa3072, Rsa3072));
        assert!(strong_enough(Rsa4096, Rsa3072));
        assert!(!strong_enough(Rsa2048, Rsa3072));
        assert!(strong_enough(EcP384, EcP256));
        assert!(!strong_enough(EcP256, EcP384));
        assert!(!strong_enough(EcP384, Rsa2048), "another kind");
        assert!(!strong_enough(Rsa4096, EcP256), "another kind");
    }
}
