//! Norwegian SEID 2 issuers that hand out whole certificate sets: a Buypass-like CA (two
//! certificates, two PKCS#12 files) and a Commfides-like CA (three certificates, from its own
//! keys as three PKCS#12 files, or from three CSRs as three PEM chains).
//!
//! Owns: [`SeidCa`], [`SetOrder`] (what is ordered, with [`Flaw`]s that make a wrong set),
//! [`IssuedSet`] / [`CsrSet`] (what came back), [`SeidSerial`] and [`Pkcs12Form`].
//!
//! Promises (profiles from `shared/protocols/no-nhn.md` §1 and
//! `reference/certificate-profiles/`):
//! - CA names as on the real test CAs: `Buypass Class 3 Test4 Root CA G2 ST` →
//!   `Buypass Class 3 Test4 CA G2 ST Business` (`C=NO, organizationIdentifier=NTRNO-983163327,
//!   O=Buypass AS, CN=…`) and `Commfides Root CA - G3 - TEST` → `Commfides Legal Person - G3 -
//!   TEST` (`C=NO, O=Commfides Norge AS, organizationIdentifier=NTRNO-988312495, CN=…`). The CA
//!   keys are RSA 2048 (real: 4096) so that a test makes a CA quickly; leaves carry
//!   `sha256WithRSAEncryption` as on the real ones.
//! - Every certificate of a set has the subject `C=NO, O=<name>, CN=<name>,
//!   organizationIdentifier=NTRNO-<orgnr>`, the same `notBefore` (whole seconds, a minute ago),
//!   `CA:FALSE`, a critical KeyUsage per role and no EKU, and an **11-byte serial** whose first
//!   byte is `0x01` (positive, no leading zero), unique within the process.
//! - Buypass: [`SeidRole::AuthEncryption`] (digitalSignature + keyEncipherment) and
//!   [`SeidRole::Signing`] (nonRepudiation), 3 years, policies `2.16.578.1.26.1.0.3.2` (the
//!   test enterprise policy) plus ETSI NCP `0.4.0.2042.1.1` (auth/enc) or QCP-l
//!   `0.4.0.194112.1.1` (signing). Files: `buypass-<orgnr>-auth-enc.p12` and
//!   `buypass-<orgnr>-signing.p12`.
//! - Commfides: [`SeidRole::Authentication`] (digitalSignature, policy
//!   `2.16.578.1.29.913.210.1.1`), [`SeidRole::Encryption`] (keyEncipherment +
//!   dataEncipherment, `…913.220.1.1`, valid one year longer: 4 years, the real difference is
//!   not documented) and [`SeidRole::Signing`] (nonRepudiation, `…913.200.1.1`), 3 years.
//!   Files: `commfides-<orgnr>-{authentication,encryption,signing}.p12`, or `.pem` chains
//!   (certificate, intermediate, root) for [`SeidCa::issue_from_csrs`].
//! - Each PKCS#12 file holds the key, the leaf and the chain (intermediate, root), paired by a
//!   localKeyId (SHA-1 of the leaf, as OpenSSL does), all with the one password of the set, in
//!   the [`Pkcs12Form`] the order asks for.
//! - Serial conventions ([`SeidSerial`]): [`SeidSerial::decimal`] is the value in decimal (what
//!   Buypass directories and `E_DS` URLs for Buypass use); [`SeidSerial::hex`] is the value in
//!   lowercase hex **without leading zeros and without colons** (what Commfides directories use):
//!   for the bytes `01 8c ba …` it is `18cba…`, 21 digits, not 22. [`SeidSerial::bytes_hex`]
//!   is the 11 bytes, 22 digits, for whoever needs the byte form.
//! - Nothing is hidden: the RSA 1024 [`Flaw`] key is made by `openssl genpkey` (neither rcgen
//!   nor aws-lc makes keys that small), everything else in process.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail, ensure};
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use sha1::{Digest, Sha1};
use time::{Duration, OffsetDateTime};
use x509_parser::asn1_rs::{Oid, Sequence, ToDer};

use crate::ca::{
    CaShape, KeyType, TestCa, now_seconds, org_identifier, printable, serial_number_attr,
};
use crate::leaf::{IssuedCert, LeafShape, pem_encode, write_file, write_secret};

/// Buypass's test policy for enterprise certificates, soft token (production:
/// `2.16.578.1.26.1.3.2`).
pub const BUYPASS_TEST_POLICY: &str = "2.16.578.1.26.1.0.3.2";
/// ETSI EN 319 411-1 NCP (Buypass authentication/encryption certificates).
pub const ETSI_NCP: &str = "0.4.0.2042.1.1";
/// ETSI EN 319 411-2 QCP-l (Buypass signing certificates: qualified e-seal).
pub const ETSI_QCP_L: &str = "0.4.0.194112.1.1";
/// Commfides G3 test policies: signing, authentication, encryption.
pub const COMMFIDES_TEST_SIGNING_POLICY: &str = "2.16.578.1.29.913.200.1.1";
pub const COMMFIDES_TEST_AUTHENTICATION_POLICY: &str = "2.16.578.1.29.913.210.1.1";
pub const COMMFIDES_TEST_ENCRYPTION_POLICY: &str = "2.16.578.1.29.913.220.1.1";

/// The password of a set unless [`SetOrder::password`] sets another.
pub const DEFAULT_SET_PASSWORD: &str = "seid2-test-passord";

/// The organisation numbers in the real issuers' DNs.
pub const BUYPASS_ORGNR: &str = "983163327";
pub const COMMFIDES_ORGNR: &str = "988312495";

const OID_CERTIFICATE_POLICIES: [u64; 4] = [2, 5, 29, 32];
const OID_GIVEN_NAME: [u64; 4] = [2, 5, 4, 42];
const OID_SURNAME: [u64; 4] = [2, 5, 4, 4];

/// Which issuer a [`SeidCa`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeidVendor {
    Buypass,
    Commfides,
}

impl SeidVendor {
    /// `buypass` or `commfides` (file names).
    pub fn as_str(self) -> &'static str {
        match self {
            SeidVendor::Buypass => "buypass",
            SeidVendor::Commfides => "commfides",
        }
    }

    /// The roles of a set, in the order the files come.
    pub fn roles(self) -> &'static [SeidRole] {
        match self {
            SeidVendor::Buypass => &[SeidRole::AuthEncryption, SeidRole::Signing],
            SeidVendor::Commfides => &[
                SeidRole::Authentication,
                SeidRole::Encryption,
                SeidRole::Signing,
            ],
        }
    }
}

/// What one certificate of a set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeidRole {
    /// Buypass: authentication and encryption in one certificate.
    AuthEncryption,
    /// Commfides: authentication.
    Authentication,
    /// Commfides: encryption.
    Encryption,
    /// Both: signing (nonRepudiation).
    Signing,
}

impl SeidRole {
    /// `auth-enc`, `authentication`, `encryption`, `signing` (file names).
    pub fn as_str(self) -> &'static str {
        match self {
            SeidRole::AuthEncryption => "auth-enc",
            SeidRole::Authentication => "authentication",
            SeidRole::Encryption => "encryption",
            SeidRole::Signing => "signing",
        }
    }

    /// The KeyUsage the issuer gives this role.
    pub fn key_usages(self) -> Vec<KeyUsagePurpose> {
        match self {
            SeidRole::AuthEncryption => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            SeidRole::Authentication => vec![KeyUsagePurpose::DigitalSignature],
            SeidRole::Encryption => vec![
                KeyUsagePurpose::KeyEncipherment,
                KeyUsagePurpose::DataEncipherment,
            ],
            SeidRole::Signing => vec![KeyUsagePurpose::ContentCommitment],
        }
    }

    /// The certificate policies (dotted OIDs) this role gets from `vendor`.
    pub fn policies(self, vendor: SeidVendor) -> Vec<&'static str> {
        match (vendor, self) {
            (SeidVendor::Buypass, SeidRole::Signing) => vec![BUYPASS_TEST_POLICY, ETSI_QCP_L],
            (SeidVendor::Buypass, _) => vec![BUYPASS_TEST_POLICY, ETSI_NCP],
            (SeidVendor::Commfides, SeidRole::Signing) => vec![COMMFIDES_TEST_SIGNING_POLICY],
            (SeidVendor::Commfides, SeidRole::Encryption) => {
                vec![COMMFIDES_TEST_ENCRYPTION_POLICY]
            }
            (SeidVendor::Commfides, _) => vec![COMMFIDES_TEST_AUTHENTICATION_POLICY],
        }
    }

    /// Validity in days (Commfides' encryption certificate lives a year longer).
    fn valid_days(self, vendor: SeidVendor) -> i64 {
        match (vendor, self) {
            (SeidVendor::Commfides, SeidRole::Encryption) => 4 * 365,
            _ => 3 * 365,
        }
    }
}

/// How the PKCS#12 files of a set are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pkcs12Form {
    /// DER, PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), HMAC-SHA256: current OpenSSL and Java.
    Der,
    /// DER, pbeWithSHAAnd3-KeyTripleDES-CBC for keys and certificates, HMAC-SHA1: what
    /// OpenSSL before 3.0 (and `-legacy`) writes.
    Legacy,
    /// [`Pkcs12Form::Legacy`] re-encoded with BER outside the MACed content (indefinite
    /// lengths, the authSafe in 1000-byte chunks), as Windows and older Java write it
    /// ([`crate::ber::pkcs12_to_ber`]).
    Ber,
    /// [`Pkcs12Form::Ber`] with BER inside the MACed content too and the MAC computed over
    /// those BER bytes, as Windows writes it ([`crate::ber::pkcs12_to_ber_inside`]).
    BerInside,
}

/// What makes one certificate of a set wrong (for tests of certvakt's set checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flaw {
    /// `organizationIdentifier=NTRNO-<this>` instead of the order's number.
    OtherOrgnr(String),
    /// SEID 1 subject: `C=NO, O, CN, serialNumber=<orgnr>`, no organizationIdentifier.
    Seid1Subject,
    /// This KeyUsage instead of the role's.
    KeyUsage(Vec<KeyUsagePurpose>),
    /// Expired yesterday, after three years.
    Expired,
    /// A personal certificate: `C=NO, SN=<last word of name>, GN=<the rest>, CN=<name>,
    /// serialNumber=<serial_number>` (a person's 9-digit number), no O and no
    /// organizationIdentifier.
    Personal { name: String, serial_number: String },
    /// An RSA 1024 key (made with `openssl genpkey`; the key cannot be turned into an rcgen
    /// `KeyPair`, so [`IssuedCert::key_pair`] fails for it).
    Rsa1024,
}

/// An order for a set.
#[derive(Debug, Clone)]
pub struct SetOrder {
    orgnr: String,
    name: String,
    key_type: KeyType,
    password: String,
    form: Pkcs12Form,
    flaws: Vec<(SeidRole, Flaw)>,
}

impl SetOrder {
    /// A set for organisation number `orgnr` (9 digits) named `name`: RSA 3072 keys (the
    /// real profile), [`DEFAULT_SET_PASSWORD`], [`Pkcs12Form::Der`], no flaws.
    pub fn new(orgnr: &str, name: &str) -> SetOrder {
        SetOrder {
            orgnr: orgnr.to_string(),
            name: name.to_string(),
            key_type: KeyType::Rsa3072,
            password: DEFAULT_SET_PASSWORD.to_string(),
            form: Pkcs12Form::Der,
            flaws: Vec::new(),
        }
    }

    /// Keys of this type instead of RSA 3072 (`KeyType::Rsa2048` makes tests faster).
    pub fn key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }

    pub fn password(mut self, password: &str) -> Self {
        self.password = password.to_string();
        self
    }

    pub fn form(mut self, form: Pkcs12Form) -> Self {
        self.form = form;
        self
    }

    /// Makes the certificate of `role` wrong in this way (several flaws may apply to a role).
    pub fn flaw(mut self, role: SeidRole, flaw: Flaw) -> Self {
        self.flaws.push((role, flaw));
        self
    }

    pub fn orgnr(&self) -> &str {
        &self.orgnr
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn flaws_of(&self, role: SeidRole) -> impl Iterator<Item = &Flaw> {
        self.flaws
            .iter()
            .filter(move |(r, _)| *r == role)
            .map(|(_, f)| f)
    }
}

/// A certificate serial number and its spellings.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SeidSerial {
    bytes: Vec<u8>,
}

impl fmt::Debug for SeidSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeidSerial({})", self.bytes_hex())
    }
}

impl SeidSerial {
    /// From the big-endian bytes of a positive INTEGER of at most 16 bytes (a leading zero
    /// byte, as DER puts before a high bit, is dropped).
    pub fn from_bytes(bytes: &[u8]) -> Result<SeidSerial> {
        let bytes = match bytes {
            [0, rest @ ..] if !rest.is_empty() => rest,
            _ => bytes,
        };
        ensure!(
            !bytes.is_empty() && bytes.len() <= 16,
            "a serial of {} bytes is not one SeidSerial handles (1 to 16)",
            bytes.len()
        );
        Ok(SeidSerial {
            bytes: bytes.to_vec(),
        })
    }

    /// The serial of a DER certificate.
    pub fn of_certificate(cert_der: &[u8]) -> Result<SeidSerial> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| anyhow!("reading a certificate for its serial: {e}"))?;
        SeidSerial::from_bytes(cert.raw_serial())
    }

    /// The big-endian bytes (11 for what [`SeidCa`] issues).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn value(&self) -> u128 {
        self.bytes
            .iter()
            .fold(0u128, |acc, &b| (acc << 8) | u128::from(b))
    }

    /// The value in decimal (Buypass directories).
    pub fn decimal(&self) -> String {
        self.value().to_string()
    }

    /// The value in lowercase hex, no leading zeros, no colons (Commfides directories).
    pub fn hex(&self) -> String {
        format!("{:x}", self.value())
    }

    /// The bytes in lowercase hex, two digits each, no colons.
    pub fn bytes_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One certificate of a set, with its key.
#[derive(Debug, Clone)]
pub struct SeidCert {
    pub role: SeidRole,
    pub serial: SeidSerial,
    pub issued: IssuedCert,
}

/// A set issued from the CA's own keys.
#[derive(Clone)]
pub struct IssuedSet {
    pub vendor: SeidVendor,
    /// In [`SeidVendor::roles`] order.
    pub certs: Vec<SeidCert>,
    /// The PKCS#12 files as (file name, bytes), in [`SeidVendor::roles`] order.
    pub files: Vec<(String, Vec<u8>)>,
    /// The one password of every file.
    pub password: String,
    pub root_pem: String,
    pub intermediate_pem: String,
}

impl fmt::Debug for IssuedSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSet")
            .field("vendor", &self.vendor)
            .field("certs", &self.certs)
            .field(
                "files",
                &self.files.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("password", &"<redacted>")
            .finish()
    }
}

impl IssuedSet {
    /// The certificate of `role`.
    pub fn cert(&self, role: SeidRole) -> Result<&SeidCert> {
        self.certs
            .iter()
            .find(|c| c.role == role)
            .ok_or_else(|| anyhow!("a {} set has no {role:?} certificate", self.vendor.as_str()))
    }

    /// Root and intermediate, PEM: a trust set for the daemon's `issuer_trust`.
    pub fn trust_pem(&self) -> String {
        format!("{}{}", self.root_pem, self.intermediate_pem)
    }

    /// Writes every file into `dir` (created if needed; the PKCS#12 files mode 0600) and
    /// returns their paths in [`IssuedSet::files`] order.
    pub fn write_files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        write_all(dir, &self.files, true)
    }
}

/// One certificate issued for a CSR (the key stays with whoever made the CSR).
#[derive(Debug, Clone)]
pub struct CsrCert {
    pub role: SeidRole,
    pub serial: SeidSerial,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// Certificate, intermediate, root (what the `.pem` file holds).
    pub chain_pem: String,
}

/// A Commfides set issued for three CSRs.
#[derive(Debug, Clone)]
pub struct CsrSet {
    /// In [`SeidVendor::roles`] order.
    pub certs: Vec<CsrCert>,
    /// The PEM chains as (file name, bytes), in [`SeidVendor::roles`] order.
    pub files: Vec<(String, Vec<u8>)>,
    pub root_pem: String,
    pub intermediate_pem: String,
}

impl CsrSet {
    pub fn cert(&self, role: SeidRole) -> Result<&CsrCert> {
        self.certs
            .iter()
            .find(|c| c.role == role)
            .ok_or_else(|| anyhow!("a Commfides set has no {role:?} certificate"))
    }

    /// Root and intermediate, PEM: a trust set for the daemon's `issuer_trust`.
    pub fn trust_pem(&self) -> String {
        format!("{}{}", self.root_pem, self.intermediate_pem)
    }

    /// Writes every file into `dir` (created if needed) and returns their paths.
    pub fn write_files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        write_all(dir, &self.files, false)
    }
}

/// A Buypass-like or Commfides-like issuing CA (root and intermediate, RSA 2048).
pub struct SeidCa {
    vendor: SeidVendor,
    ca: TestCa,
    serial_prefix: [u8; 6],
    next_serial: AtomicU64,
}

impl fmt::Debug for SeidCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeidCa")
            .field("vendor", &self.vendor)
            .field("issuer", &self.ca.issuer_name())
            .finish()
    }
}

impl SeidCa {
    /// `Buypass Class 3 Test4 Root CA G2 ST` → `Buypass Class 3 Test4 CA G2 ST Business`.
    pub fn buypass() -> Result<SeidCa> {
        let ca = TestCa::named(
            CaShape::BuypassSeid2,
            KeyType::Rsa2048,
            "Buypass Class 3 Test4 Root CA G2 ST",
            "Buypass Class 3 Test4 CA G2 ST Business",
        )?;
        Ok(SeidCa::from_ca(SeidVendor::Buypass, ca))
    }

    /// `Commfides Root CA - G3 - TEST` → `Commfides Legal Person - G3 - TEST`.
    pub fn commfides() -> Result<SeidCa> {
        let ca = TestCa::with_key_type(CaShape::Commfides, KeyType::Rsa2048)?;
        Ok(SeidCa::from_ca(SeidVendor::Commfides, ca))
    }

    fn from_ca(vendor: SeidVendor, ca: TestCa) -> SeidCa {
        static CAS: AtomicU64 = AtomicU64::new(0);
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        let seed = nanos
            ^ (u64::from(std::process::id()) << 40)
            ^ CAS
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9);
        let digest = Sha1::digest(seed.to_be_bytes());
        let mut serial_prefix = [0u8; 6];
        serial_prefix.copy_from_slice(&digest[..6]);
        SeidCa {
            vendor,
            ca,
            serial_prefix,
            next_serial: AtomicU64::new(1),
        }
    }

    pub fn vendor(&self) -> SeidVendor {
        self.vendor
    }

    /// The underlying CA (names, chain, other leaves).
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The issuing CA's common name.
    pub fn issuer_name(&self) -> &str {
        self.ca.issuer_name()
    }

    pub fn root_pem(&self) -> String {
        self.ca.root_pem()
    }

    pub fn intermediate_pem(&self) -> Result<String> {
        self.ca
            .intermediate_pem()
            .ok_or_else(|| anyhow!("the SEID CA has no intermediate"))
    }

    /// A fresh 11-byte serial: `0x01`, six bytes of this CA, four of a counter.
    pub fn next_serial(&self) -> SeidSerial {
        let n = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::with_capacity(11);
        bytes.push(0x01);
        bytes.extend_from_slice(&self.serial_prefix);
        bytes.extend_from_slice(&(n as u32).to_be_bytes());
        SeidSerial { bytes }
    }

    /// Issues the vendor's set from its own keys, with PKCS#12 files (see the module docs).
    pub fn issue_set(&self, order: &SetOrder) -> Result<IssuedSet> {
        let not_before = now_seconds() - Duration::minutes(1);
        let mut certs = Vec::new();
        let mut files = Vec::new();
        for &role in self.vendor.roles() {
            let serial = self.next_serial();
            let params = self.params(order, role, &serial, not_before)?;
            let rsa1024 = order.flaws_of(role).any(|f| *f == Flaw::Rsa1024);
            let (cert, key_pkcs8_der) = if rsa1024 {
                let (pkcs8, spki) = openssl_rsa1024()?;
                let public = rcgen::SubjectPublicKeyInfo::from_der(&spki)
                    .map_err(|e| anyhow!("the RSA 1024 public key: {e}"))?;
                let cert = params
                    .signed_by(&public, self.ca.signing_issuer())
                    .context("signing the RSA 1024 certificate")?;
                (cert, pkcs8)
            } else {
                let key: KeyPair = order.key_type.generate()?;
                let cert = params
                    .signed_by(&key, self.ca.signing_issuer())
                    .with_context(|| format!("signing the {role:?} certificate"))?;
                (cert, key.serialize_der())
            };
            let shape = if order.flaws_of(role).any(|f| *f == Flaw::Seid1Subject) {
                LeafShape::Seid1
            } else {
                LeafShape::Seid2
            };
            let issued = IssuedCert {
                shape,
                cert_der: cert.der().to_vec(),
                cert_pem: cert.pem(),
                key_pem: pem_encode("PRIVATE KEY", &key_pkcs8_der),
                key_pkcs8_der,
                chain_der: self.ca.chain_der(),
                chain_pem: self.ca.chain_pem(),
                not_before: params.not_before,
                not_after: params.not_after,
            };
            let name = format!(
                "{}-{}-{}.p12",
                self.vendor.as_str(),
                order.orgnr,
                role.as_str()
            );
            files.push((name, pkcs12(&issued, &order.password, order.form)?));
            certs.push(SeidCert {
                role,
                serial,
                issued,
            });
        }
        Ok(IssuedSet {
            vendor: self.vendor,
            certs,
            files,
            password: order.password.clone(),
            root_pem: self.root_pem(),
            intermediate_pem: self.intermediate_pem()?,
        })
    }

    /// Issues a Commfides set for customer keys: one PEM CSR per role (authentication,
    /// encryption, signing, in any order). The CSR's signature is checked and its key used;
    /// subject, usages, policies and validity come from the order and the profile, as a CA
    /// puts in what it verified, not what the request says. [`Flaw::Rsa1024`] does not apply
    /// (the customer chose the key).
    pub fn issue_from_csrs(&self, order: &SetOrder, csrs: &[(SeidRole, &str)]) -> Result<CsrSet> {
        ensure!(
            self.vendor == SeidVendor::Commfides,
            "only the Commfides-like CA issues sets for CSRs"
        );
        let not_before = now_seconds() - Duration::minutes(1);
        let mut certs = Vec::new();
        let mut files = Vec::new();
        for &role in self.vendor.roles() {
            if order.flaws_of(role).any(|f| *f == Flaw::Rsa1024) {
                bail!("Flaw::Rsa1024 does not apply to a CSR order: make the CSR with that key");
            }
            let csr_pem = csrs
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, pem)| *pem)
                .ok_or_else(|| anyhow!("no CSR for the {role:?} certificate"))?;
            let serial = self.next_serial();
            let profile = self.params(order, role, &serial, not_before)?;
            let cert = self.ca.issue_from_csr(csr_pem, |params| {
                params.distinguished_name = profile.distinguished_name.clone();
                params.subject_alt_names.clear();
                params.key_usages = profile.key_usages.clone();
                params.extended_key_usages.clear();
                params.custom_extensions = profile.custom_extensions.clone();
                params.not_before = profile.not_before;
                params.not_after = profile.not_after;
                params.serial_number = profile.serial_number.clone();
            })?;
            let chain_pem = format!("{}{}", cert.pem, cert.chain_pem);
            let name = format!(
                "{}-{}-{}.pem",
                self.vendor.as_str(),
                order.orgnr,
                role.as_str()
            );
            files.push((name, chain_pem.clone().into_bytes()));
            certs.push(CsrCert {
                role,
                serial,
                cert_der: cert.der,
                cert_pem: cert.pem,
                chain_pem,
            });
        }
        Ok(CsrSet {
            certs,
            files,
            root_pem: self.root_pem(),
            intermediate_pem: self.intermediate_pem()?,
        })
    }

    /// The rcgen parameters of `role`'s certificate (without key).
    fn params(
        &self,
        order: &SetOrder,
        role: SeidRole,
        serial: &SeidSerial,
        not_before: OffsetDateTime,
    ) -> Result<CertificateParams> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(order, role)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = role.key_usages();
        params.not_before = not_before;
        params.not_after = not_before + Duration::days(role.valid_days(self.vendor));
        params.serial_number = Some(SerialNumber::from_slice(serial.bytes()));
        params.use_authority_key_identifier_extension = true;
        params
            .custom_extensions
            .push(certificate_policies(&role.policies(self.vendor))?);
        for flaw in order.flaws_of(role) {
            match flaw {
                Flaw::KeyUsage(usages) => params.key_usages = usages.clone(),
                Flaw::Expired => {
                    let end = now_seconds() - Duration::days(1);
                    params.not_before = end - Duration::days(3 * 365);
                    params.not_after = end;
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

/// The subject of `role`'s certificate, with the order's subject flaws applied.
fn subject(order: &SetOrder, role: SeidRole) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    let flaws: Vec<&Flaw> = order.flaws_of(role).collect();
    if let Some(Flaw::Personal {
        name,
        serial_number,
    }) = flaws
        .iter()
        .find(|f| matches!(f, Flaw::Personal { .. }))
        .copied()
    {
        let (given, surname) = name.rsplit_once(' ').unwrap_or(("", name.as_str()));
        dn.push(DnType::CountryName, printable("NO")?);
        dn.push(
            DnType::CustomDnType(OID_SURNAME.to_vec()),
            DnValue::Utf8String(surname.to_string()),
        );
        dn.push(
            DnType::CustomDnType(OID_GIVEN_NAME.to_vec()),
            DnValue::Utf8String(given.to_string()),
        );
        dn.push(DnType::CommonName, DnValue::Utf8String(name.clone()));
        dn.push(serial_number_attr(), printable(serial_number)?);
        return Ok(dn);
    }
    let orgnr = flaws
        .iter()
        .find_map(|f| match f {
            Flaw::OtherOrgnr(other) => Some(other.as_str()),
            _ => None,
        })
        .unwrap_or(&order.orgnr);
    dn.push(DnType::CountryName, printable("NO")?);
    dn.push(
        DnType::OrganizationName,
        DnValue::Utf8String(order.name.clone()),
    );
    dn.push(DnType::CommonName, DnValue::Utf8String(order.name.clone()));
    if flaws.contains(&&Flaw::Seid1Subject) {
        dn.push(serial_number_attr(), printable(orgnr)?);
    } else {
        dn.push(
            org_identifier(),
            DnValue::Utf8String(format!("NTRNO-{orgnr}")),
        );
    }
    Ok(dn)
}

/// A non-critical certificatePolicies extension naming `policies` (no qualifiers).
fn certificate_policies(policies: &[&str]) -> Result<CustomExtension> {
    let mut infos = Vec::new();
    for policy in policies {
        let oid: Oid<'static> = policy
            .parse()
            .map_err(|e| anyhow!("{policy} is not an OID: {e:?}"))?;
        let oid_der = oid
            .to_der_vec()
            .map_err(|e| anyhow!("encoding {policy}: {e}"))?;
        let info = Sequence::new(oid_der.into())
            .to_der_vec()
            .map_err(|e| anyhow!("encoding a PolicyInformation: {e}"))?;
        infos.extend_from_slice(&info);
    }
    let content = Sequence::new(infos.into())
        .to_der_vec()
        .map_err(|e| anyhow!("encoding certificatePolicies: {e}"))?;
    Ok(CustomExtension::from_oid_content(
        &OID_CERTIFICATE_POLICIES,
        content,
    ))
}

/// The PKCS#12 file of `issued` in `form`.
pub fn pkcs12(issued: &IssuedCert, password: &str, form: Pkcs12Form) -> Result<Vec<u8>> {
    let key = PrivateKey::from_der(&issued.key_pkcs8_der).context("PKCS#8 key for PKCS#12")?;
    let mut certs = vec![Certificate::from_der(&issued.cert_der).context("leaf for PKCS#12")?];
    for der in &issued.chain_der {
        certs.push(Certificate::from_der(der).context("chain certificate for PKCS#12")?);
    }
    let local_key_id = Sha1::digest(&issued.cert_der).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        "seid",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    let writer = store.writer(password);
    let writer = match form {
        Pkcs12Form::Der => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(MacAlgorithm::HmacSha256),
        Pkcs12Form::Legacy | Pkcs12Form::Ber | Pkcs12Form::BerInside => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(MacAlgorithm::HmacSha1),
    };
    let der = writer.write().context("writing PKCS#12")?;
    match form {
        Pkcs12Form::Der | Pkcs12Form::Legacy => Ok(der),
        Pkcs12Form::Ber => crate::ber::pkcs12_to_ber(&der),
        Pkcs12Form::BerInside => crate::ber::pkcs12_to_ber_inside(&der, password),
    }
}

/// An RSA 1024 key from `openssl genpkey`: (PKCS#8 DER, SubjectPublicKeyInfo DER). PEM,
/// because OpenSSL 3.0 writes a DER private key in the PKCS#1 form.
fn openssl_rsa1024() -> Result<(Vec<u8>, Vec<u8>)> {
    let key_pem = run_openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ],
        None,
    )?;
    let key = pem::parse(&key_pem).context("reading the key openssl genpkey wrote")?;
    ensure!(
        key.tag() == "PRIVATE KEY",
        "openssl genpkey wrote a {} instead of a PKCS#8 PRIVATE KEY",
        key.tag()
    );
    let spki = run_openssl(&["pkey", "-pubout", "-outform", "DER"], Some(&key_pem))?;
    Ok((key.into_contents(), spki))
}

fn run_openssl(args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting openssl (scripts/install-test-deps installs it)")?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default())
            .context("writing to openssl")?;
    }
    let output = child.wait_with_output().context("waiting for openssl")?;
    ensure!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output.stdout)
}

fn write_all(dir: &Path, files: &[(String, Vec<u8>)], secret: bool) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let path = dir.join(name);
        if secret {
            write_secret(&path, bytes)?;
        } else {
            write_file(&path, bytes)?;
        }
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests;
