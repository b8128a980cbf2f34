//! Test certificate authorities shaped like the Nordic issuers.
//!
//! Owns: [`TestCa`] (a root and, by default, an issuing intermediate), [`CaShape`] (whose names
//! the CA carries) and [`KeyType`] (what keys the kit can make).
//!
//! Promises:
//! - The CA names follow the real issuers' layout and attribute order (with `TEST` in the
//!   common name), so subjects and issuers printed by certvakt look like what operators see on
//!   real certificates: `TEST Den Danske Stat OCES udstedende-CA 1`, `TEST SITHS e-id Function
//!   CA v1`, `TEST DVV Service Certificates`, `TEST Buypass Class 3 CA G2 HT Business`, ...
//! - CA keys are EC P-256 unless asked otherwise, because a CA is made in every test and RSA
//!   key generation costs up to a second. Real OCES3 issuers sign with RSASSA-PSS; rcgen 0.14
//!   cannot sign PSS, so minted certificates carry `sha256WithRSAEncryption` or
//!   `ecdsa-with-SHA256` as the issuer signature. The real PSS case is covered by the public
//!   OCES3 certificate under `shared/protocols/reference/certificates/`.
//! - Every certificate a `TestCa` issues has a serial number unique within the process.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, DnValue, IsCa,
    KeyPair, KeyUsagePurpose, RsaKeySize, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::leaf::{IssuedCert, LeafSpec};

/// `organizationIdentifier` (2.5.4.97), as the eIDAS profiles use it (`NTRDK-…`, `NTRNO-…`).
pub const OID_ORGANIZATION_IDENTIFIER: [u64; 4] = [2, 5, 4, 97];
/// `serialNumber` (2.5.4.5): OCES UUIDs, HSA-IDs, SEID 1 organisation numbers.
pub const OID_SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];

/// The keys the kit can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcP256,
    EcP384,
}

impl KeyType {
    /// Generates a fresh key pair of this type (RSA 3072 takes a few hundred milliseconds).
    pub fn generate(self) -> Result<KeyPair> {
        let key = match self {
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            }
            KeyType::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
            }
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
            }
            KeyType::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        };
        key.with_context(|| format!("generating a {self:?} key"))
    }

    /// The algorithm name certvakt's inventory reports for this key (`RSA` or `EC`).
    pub fn algorithm(self) -> &'static str {
        match self {
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => "RSA",
            KeyType::EcP256 | KeyType::EcP384 => "EC",
        }
    }

    /// Key size in bits.
    pub fn bits(self) -> u32 {
        match self {
            KeyType::Rsa2048 => 2048,
            KeyType::Rsa3072 => 3072,
            KeyType::Rsa4096 => 4096,
            KeyType::EcP256 => 256,
            KeyType::EcP384 => 384,
        }
    }

    /// The named curve, for EC keys.
    pub fn curve(self) -> Option<&'static str> {
        match self {
            KeyType::EcP256 => Some("P-256"),
            KeyType::EcP384 => Some("P-384"),
            _ => None,
        }
    }
}

/// Which national issuer a [`TestCa`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaShape {
    /// Danish MitID Erhverv / OCES3: `Den Danske Stat OCES udstedende-CA 1`.
    Oces3,
    /// Swedish SITHS: `SITHS e-id Function CA v1` (Inera AB).
    Siths,
    /// Finnish DVV service certificates.
    Dvv,
    /// Norwegian Buypass SEID 2.0: `Buypass Class 3 CA G2 HT Business`.
    BuypassSeid2,
    /// Norwegian Buypass SEID 1.0: `Buypass Class 3 CA 3` (issuer of the legacy certificates).
    BuypassSeid1,
    /// Norwegian Commfides SEID 2.0: `Commfides Legal Person - G3 - TEST`.
    Commfides,
    /// A plain TLS CA (ACME-style server certificates).
    Tls,
}

impl CaShape {
    /// Every shape, for loops in tests and the sample set.
    pub const ALL: [CaShape; 7] = [
        CaShape::Oces3,
        CaShape::Siths,
        CaShape::Dvv,
        CaShape::BuypassSeid2,
        CaShape::BuypassSeid1,
        CaShape::Commfides,
        CaShape::Tls,
    ];

    /// The root CA's common name.
    pub fn root_name(self) -> &'static str {
        match self {
            CaShape::Oces3 => "TEST Den Danske Stat OCES rod-CA",
            CaShape::Siths => "TEST SITHS e-id Root CA v2",
            CaShape::Dvv => "TEST DVV Gov. Root CA - G3 RSA",
            CaShape::BuypassSeid2 => "TEST Buypass Class 3 Root CA G2 HT",
            CaShape::BuypassSeid1 => "TEST Buypass Class 3 Root CA",
            CaShape::Commfides => "Commfides Root CA - G3 - TEST",
            CaShape::Tls => "TEST certvakt Root CA",
        }
    }

    /// The issuing (intermediate) CA's common name.
    pub fn issuing_name(self) -> &'static str {
        match self {
            CaShape::Oces3 => "TEST Den Danske Stat OCES udstedende-CA 1",
            CaShape::Siths => "TEST SITHS e-id Function CA v1",
            CaShape::Dvv => "TEST DVV Service Certificates",
            CaShape::BuypassSeid2 => "TEST Buypass Class 3 CA G2 HT Business",
            CaShape::BuypassSeid1 => "TEST Buypass Class 3 CA 3",
            CaShape::Commfides => "Commfides Legal Person - G3 - TEST",
            CaShape::Tls => "TEST certvakt Issuing CA",
        }
    }

    /// A CA distinguished name in the real issuer's attribute order (DER order).
    fn dn(self, common_name: &str) -> Result<DistinguishedName> {
        let mut dn = DistinguishedName::new();
        match self {
            // Real: CN, OU=Test - cti, O=Den Danske Stat, C=DK (in that DER order).
            CaShape::Oces3 => {
                dn.push(DnType::CommonName, common_name);
                dn.push(DnType::OrganizationalUnitName, "Test - cti");
                dn.push(DnType::OrganizationName, "Den Danske Stat");
                dn.push(DnType::CountryName, printable("DK")?);
            }
            // Real (RFC 2253 string, reversed): CN=…,O=Inera AB,C=SE.
            CaShape::Siths => {
                dn.push(DnType::CountryName, printable("SE")?);
                dn.push(DnType::OrganizationName, "Inera AB");
                dn.push(DnType::CommonName, common_name);
            }
            CaShape::Dvv => {
                dn.push(DnType::CountryName, printable("FI")?);
                dn.push(DnType::OrganizationName, "Digi- ja väestötietovirasto TEST");
                dn.push(DnType::CommonName, common_name);
            }
            // Real: C=NO, organizationIdentifier=NTRNO-983163327, O=Buypass AS, CN=….
            CaShape::BuypassSeid2 => {
                dn.push(DnType::CountryName, printable("NO")?);
                dn.push(org_identifier(), "NTRNO-983163327");
                dn.push(DnType::OrganizationName, "Buypass AS");
                dn.push(DnType::CommonName, common_name);
            }
            // Real: C=NO, O=Buypass AS-983163327, CN=Buypass Class 3 Test4 CA 3.
            CaShape::BuypassSeid1 => {
                dn.push(DnType::CountryName, printable("NO")?);
                dn.push(DnType::OrganizationName, "Buypass AS-983163327");
                dn.push(DnType::CommonName, common_name);
            }
            // Real: C=NO, O=Commfides Norge AS, organizationIdentifier=NTRNO-988312495, CN=….
            CaShape::Commfides => {
                dn.push(DnType::CountryName, printable("NO")?);
                dn.push(DnType::OrganizationName, "Commfides Norge AS");
                dn.push(org_identifier(), "NTRNO-988312495");
                dn.push(DnType::CommonName, common_name);
            }
            CaShape::Tls => {
                dn.push(DnType::CountryName, printable("SE")?);
                dn.push(DnType::OrganizationName, "certvakt test");
                dn.push(DnType::CommonName, common_name);
            }
        }
        Ok(dn)
    }
}

pub(crate) fn org_identifier() -> DnType {
    DnType::CustomDnType(OID_ORGANIZATION_IDENTIFIER.to_vec())
}

pub(crate) fn serial_number_attr() -> DnType {
    DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec())
}

/// A PrintableString value; refuses characters outside that set (e.g. `_`), as a real CA would.
pub(crate) fn printable(value: &str) -> Result<DnValue> {
    let s = rcgen::string::PrintableString::try_from(value)
        .map_err(|e| anyhow!("{value:?} cannot be a PrintableString: {e}"))?;
    Ok(DnValue::PrintableString(s))
}

/// A root CA and (unless made with [`TestCa::root_only`]) an issuing CA below it.
pub struct TestCa {
    shape: CaShape,
    /// The CAs' common names: the shape's, unless [`TestCa::named`] gave others.
    root_name: String,
    issuing_name: String,
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: Option<CertifiedIssuer<'static, KeyPair>>,
    /// Random-ish per CA, so two CAs in one test do not share serials either.
    serial_prefix: [u8; 7],
    next_serial: AtomicU64,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("shape", &self.shape)
            .field("issuer", &self.issuer_name())
            .field("intermediate", &self.intermediate.is_some())
            .finish()
    }
}

impl TestCa {
    /// A root and an issuing CA with the shape's names, EC P-256 keys.
    pub fn new(shape: CaShape) -> Result<TestCa> {
        TestCa::build(shape, KeyType::EcP256, true)
    }

    /// Only a root; leaves are issued directly by it.
    pub fn root_only(shape: CaShape) -> Result<TestCa> {
        TestCa::build(shape, KeyType::EcP256, false)
    }

    /// Like [`TestCa::new`] with CA keys of `key_type` (e.g. RSA so that leaves carry
    /// `sha256WithRSAEncryption` like the real issuers).
    pub fn with_key_type(shape: CaShape, key_type: KeyType) -> Result<TestCa> {
        TestCa::build(shape, key_type, true)
    }

    /// Like [`TestCa::with_key_type`] with other common names in the shape's DN layout (e.g.
    /// `Buypass Class 3 Test4 CA G2 ST Business`, the soft-token issuer, under the HT shape's
    /// attributes).
    pub fn named(
        shape: CaShape,
        key_type: KeyType,
        root_name: &str,
        issuing_name: &str,
    ) -> Result<TestCa> {
        TestCa::build_named(shape, key_type, true, root_name, issuing_name)
    }

    fn build(shape: CaShape, key_type: KeyType, with_intermediate: bool) -> Result<TestCa> {
        let (root_name, issuing_name) = (shape.root_name(), shape.issuing_name());
        TestCa::build_named(shape, key_type, with_intermediate, root_name, issuing_name)
    }

    fn build_named(
        shape: CaShape,
        key_type: KeyType,
        with_intermediate: bool,
        root_name: &str,
        issuing_name: &str,
    ) -> Result<TestCa> {
        let now = now_seconds();
        let serial_prefix = serial_prefix();
        let next_serial = AtomicU64::new(1);

        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = shape.dn(root_name)?;
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root_params.not_before = now - Duration::days(365);
        root_params.not_after = now + Duration::days(20 * 365);
        root_params.serial_number = Some(serial(&serial_prefix, &next_serial));
        let root = CertifiedIssuer::self_signed(root_params, key_type.generate()?)
            .context("self-signing the test root CA")?;

        let intermediate = if with_intermediate {
            let mut params = CertificateParams::default();
            params.distinguished_name = shape.dn(issuing_name)?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ];
            params.not_before = now - Duration::days(365);
            params.not_after = now + Duration::days(10 * 365);
            params.serial_number = Some(serial(&serial_prefix, &next_serial));
            params.use_authority_key_identifier_extension = true;
            let issuer = CertifiedIssuer::signed_by(params, key_type.generate()?, &root)
                .context("signing the test issuing CA")?;
            Some(issuer)
        } else {
            None
        };

        Ok(TestCa {
            shape,
            root_name: root_name.to_string(),
            issuing_name: issuing_name.to_string(),
            root,
            intermediate,
            serial_prefix,
            next_serial,
        })
    }

    pub fn shape(&self) -> CaShape {
        self.shape
    }

    /// The common name of the CA that signs leaves.
    pub fn issuer_name(&self) -> &str {
        if self.intermediate.is_some() {
            &self.issuing_name
        } else {
            &self.root_name
        }
    }

    /// The issuing (intermediate) CA certificate, PEM; `None` for [`TestCa::root_only`].
    pub fn intermediate_pem(&self) -> Option<String> {
        self.intermediate.as_ref().map(|i| i.pem())
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> Vec<u8> {
        self.root.der().to_vec()
    }

    /// The issuing chain above a leaf, DER, nearest first (intermediate, then root).
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        let mut chain = Vec::with_capacity(2);
        if let Some(intermediate) = &self.intermediate {
            chain.push(intermediate.der().to_vec());
        }
        chain.push(self.root.der().to_vec());
        chain
    }

    /// The issuing chain above a leaf, PEM, nearest first (intermediate, then root).
    pub fn chain_pem(&self) -> String {
        let mut pem = String::new();
        if let Some(intermediate) = &self.intermediate {
            pem.push_str(&intermediate.pem());
        }
        pem.push_str(&self.root.pem());
        pem
    }

    /// A fresh serial number: 16 bytes, positive, unique within this process.
    pub fn next_serial(&self) -> SerialNumber {
        serial(&self.serial_prefix, &self.next_serial)
    }

    /// Issues one leaf certificate as `spec` describes.
    pub fn issue(&self, spec: &LeafSpec) -> Result<IssuedCert> {
        let serial = spec
            .serial_bytes()
            .map(SerialNumber::from_slice)
            .unwrap_or_else(|| self.next_serial());
        let issuer: &rcgen::Issuer<'static, KeyPair> = match &self.intermediate {
            Some(intermediate) => intermediate,
            None => &self.root,
        };
        spec.issue_with(issuer, serial, self.chain_der(), self.chain_pem())
    }

    /// Issues a certificate for a PKCS#10 request, as a CA that receives a CSR does: the CSR's
    /// signature is checked, its subject, SANs and key are kept, and the certificate gets a
    /// fresh serial, `CA:FALSE`, an authority key identifier and, until `decide` changes them,
    /// the (extended) key usages the CSR requested and a year of validity from now. `decide` is
    /// where the caller applies its own profile (validity, usages).
    pub fn issue_from_csr(
        &self,
        csr_pem: &str,
        decide: impl FnOnce(&mut CertificateParams),
    ) -> Result<CsrCertificate> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| anyhow!("the CSR cannot be used: {e}"))?;
        let now = now_seconds();
        let params = &mut csr.params;
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = now;
        params.not_after = now + Duration::days(365);
        params.serial_number = Some(self.next_serial());
        params.use_authority_key_identifier_extension = true;
        decide(params);
        let cert = csr
            .signed_by(self.signing_issuer())
            .context("signing a certificate for a CSR")?;
        Ok(CsrCertificate {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            chain_pem: self.chain_pem(),
        })
    }

    /// The issuer used to sign leaves, for callers that build `CertificateParams` themselves
    /// (the bulk generator).
    pub(crate) fn signing_issuer(&self) -> &rcgen::Issuer<'static, KeyPair> {
        match &self.intermediate {
            Some(intermediate) => intermediate,
            None => &self.root,
        }
    }
}

/// A certificate a [`TestCa`] issued for a CSR (the key stays with whoever made the CSR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrCertificate {
    pub der: Vec<u8>,
    pub pem: String,
    /// The issuing chain above it, PEM, nearest first (intermediate, then root).
    pub chain_pem: String,
}

/// Now, whole seconds: certificates carry seconds, and tests compare with what was asked.
pub fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn serial_prefix() -> [u8; 7] {
    static CAS: AtomicU64 = AtomicU64::new(0);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ CAS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = mixed.to_be_bytes();
    [b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn serial(prefix: &[u8; 7], counter: &AtomicU64) -> SerialNumber {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let mut bytes = Vec::with_capacity(16);
    // 0x4c: high bit clear (positive INTEGER) and non-zero (no leading-zero trimming), so every
    // serial is exactly 16 bytes, like the long serials real CAs use.
    bytes.push(0x4c);
    bytes.extend_from_slice(prefix);
    bytes.extend_from_slice(&n.to_be_bytes());
    SerialNumber::from(bytes)
}
