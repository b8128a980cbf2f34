//! Leaf certificates in the national shapes, and writing them to disk.
//!
//! Owns: [`LeafSpec`] (what to mint: subject layout, validity, key, usages, names),
//! [`IssuedCert`] (what was minted: certificate, key, issuing chain) and its writers.
//!
//! Promises:
//! - Subjects are laid out like the real certificates, in the real DER attribute order and
//!   string types (sources: `shared/protocols/*.md`, `reference/certificates/`,
//!   `reference/certificate-profiles/`):
//!   - OCES3: `CN, serialNumber=UI:DK-O:G:<uuid> (PrintableString), O, organizationIdentifier=NTRDK-<cvr>, C=DK`
//!     — as on the public NSP test certificate, `O` is the plain organisation name;
//!     [`LeafSpec::organization`] can set `<name> // CVR:<cvr>` if a test wants that form;
//!   - OCES2 function: `C=DK, O=<name> // CVR:<cvr>, CN=<name>, serialNumber=CVR:<cvr>-FID:<fid>`
//!     (the real ones put CN and serialNumber in one multi-valued RDN; rcgen cannot, so they
//!     are two RDNs);
//!   - SITHS: `C=SE, O, CN, serialNumber=<HSA-ID> (PrintableString)`;
//!   - DVV: `C=FI, O, organizationIdentifier=NTRFI-<Y-tunnus>, CN` — `fi-kanta.md` leaves the
//!     real layout open (it lists `C, O, OU, CN=<FQDN>` and an optional `serialNumber=<SOTE
//!     OID>` as a hypothesis), so this is the eIDAS-style fallback; [`LeafSpec::org_unit`],
//!     [`LeafSpec::sote_oid`] and [`LeafSpec::server_name`] add the hypothesised parts;
//!   - SEID 2: `C=NO, O, CN, organizationIdentifier=NTRNO-<orgnr>`;
//!   - SEID 1: `C=NO, O, CN, serialNumber=<orgnr> (PrintableString)`;
//!   - TLS server: `CN=<first name>` and the names as SAN dNSName / iPAddress.
//! - Leaves carry `CA:FALSE` (critical), key usage per shape, an authority key identifier and
//!   a 16-byte serial. Validity is whole seconds.
//! - Private keys are written PKCS#8 (`PRIVATE KEY`) with mode 0600; PKCS#1 and SEC1 forms are
//!   available for tests of key parsing.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use rcgen::{
    CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::ca::{KeyType, now_seconds, org_identifier, printable, serial_number_attr};

/// Which national layout a leaf has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeafShape {
    Oces3,
    Oces2Function,
    Siths,
    Dvv,
    Seid2,
    Seid1,
    TlsServer,
}

impl LeafShape {
    /// A short stable name (`oces3`, `siths`, ...) for manifests and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            LeafShape::Oces3 => "oces3",
            LeafShape::Oces2Function => "oces2_function",
            LeafShape::Siths => "siths",
            LeafShape::Dvv => "dvv",
            LeafShape::Seid2 => "seid2",
            LeafShape::Seid1 => "seid1",
            LeafShape::TlsServer => "tls_server",
        }
    }

    /// The default key type: what the real issuer uses, or EC P-256 where the shape allows it
    /// (so bulk minting stays fast).
    pub fn default_key_type(self) -> KeyType {
        match self {
            // The public OCES3 test certificate and the SEID 2 profiles are RSA 3072.
            LeafShape::Oces3 | LeafShape::Seid2 => KeyType::Rsa3072,
            // DVV: RSA 2048 or 4096 (fi-kanta.md §2); OCES2 and SEID 1 were RSA 2048.
            LeafShape::Oces2Function | LeafShape::Dvv | LeafShape::Seid1 => KeyType::Rsa2048,
            // SITHS key type is configurable at the portal; TLS: anything.
            LeafShape::Siths | LeafShape::TlsServer => KeyType::EcP256,
        }
    }
}

#[derive(Debug, Clone)]
struct Attr {
    ty: DnType,
    value: String,
    /// Encode as PrintableString (C, serialNumber) rather than UTF8String.
    printable: bool,
}

/// What to mint. Start from a shape constructor, adjust with the builder methods, hand it to
/// [`crate::TestCa::issue`].
#[derive(Clone)]
pub struct LeafSpec {
    shape: LeafShape,
    subject: Vec<Attr>,
    sans: Vec<String>,
    key_type: KeyType,
    key: Option<Arc<KeyPair>>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key_usages: Vec<KeyUsagePurpose>,
    extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    serial: Option<Vec<u8>>,
}

impl fmt::Debug for LeafSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafSpec")
            .field("shape", &self.shape)
            .field("subject", &self.subject_string())
            .field("sans", &self.sans)
            .field("key_type", &self.key_type)
            .field("given_key", &self.key.is_some())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl LeafSpec {
    fn new(shape: LeafShape, subject: Vec<Attr>, valid_days: i64) -> LeafSpec {
        let now = now_seconds();
        LeafSpec {
            shape,
            subject,
            sans: Vec::new(),
            key_type: shape.default_key_type(),
            key: None,
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(valid_days),
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            extended_key_usages: Vec::new(),
            serial: None,
        }
    }

    /// Danish OCES3 organisation (system) certificate, as MitID Erhverv issues it: RSA 3072,
    /// 3 years, `organizationIdentifier=NTRDK-<cvr>`, `serialNumber=UI:DK-O:G:<uuid>`.
    pub fn oces3(cvr: &str, uuid: &str, name: &str) -> LeafSpec {
        // DER order of the real certificate: CN, serialNumber, O, organizationIdentifier, C.
        let subject = vec![
            utf8(DnType::CommonName, name),
            printable_attr(serial_number_attr(), &format!("UI:DK-O:G:{uuid}")),
            utf8(DnType::OrganizationName, name),
            utf8(org_identifier(), &format!("NTRDK-{cvr}")),
            printable_attr(DnType::CountryName, "DK"),
        ];
        let mut spec = LeafSpec::new(LeafShape::Oces3, subject, 3 * 365);
        // The real profile: validity 3 years minus one second.
        spec.not_after = spec.not_before + Duration::days(3 * 365) - Duration::seconds(1);
        spec
    }

    /// Danish OCES2 function certificate (FOCES): `serialNumber=CVR:<cvr>-FID:<fid>`,
    /// `O=<name> // CVR:<cvr>`.
    pub fn oces2_function(cvr: &str, fid: &str, name: &str) -> LeafSpec {
        let subject = vec![
            printable_attr(DnType::CountryName, "DK"),
            utf8(DnType::OrganizationName, &format!("{name} // CVR:{cvr}")),
            utf8(DnType::CommonName, name),
            printable_attr(serial_number_attr(), &format!("CVR:{cvr}-FID:{fid}")),
        ];
        LeafSpec::new(LeafShape::Oces2Function, subject, 3 * 365)
    }

    /// Swedish SITHS function certificate: the HSA-ID in `serialNumber` as PrintableString.
    /// `name` becomes the CN; if it looks like a host name it is also a SAN dNSName (the CN of
    /// a SITHS function certificate is the system's FQDN).
    pub fn siths(hsa_id: &str, org: &str, name: &str) -> LeafSpec {
        let subject = vec![
            printable_attr(DnType::CountryName, "SE"),
            utf8(DnType::OrganizationName, org),
            utf8(DnType::CommonName, name),
            printable_attr(serial_number_attr(), hsa_id),
        ];
        let mut spec = LeafSpec::new(LeafShape::Siths, subject, 2 * 365);
        if looks_like_host(name) {
            spec.sans.push(name.to_string());
        }
        spec.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        spec
    }

    /// Finnish DVV sote service certificate (server): `organizationIdentifier=NTRFI-<Y-tunnus>`,
    /// 1 year, server + client authentication. See the module doc for why this layout.
    pub fn dvv(business_id: &str, name: &str) -> LeafSpec {
        let subject = vec![
            printable_attr(DnType::CountryName, "FI"),
            utf8(DnType::OrganizationName, name),
            utf8(org_identifier(), &format!("NTRFI-{business_id}")),
            utf8(DnType::CommonName, name),
        ];
        let mut spec = LeafSpec::new(LeafShape::Dvv, subject, 365);
        spec.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        spec
    }

    /// Norwegian SEID 2.0 enterprise certificate (Buypass / Commfides):
    /// `organizationIdentifier=NTRNO-<orgnr>`, RSA 3072, 3 years.
    pub fn seid2(orgnr: &str, name: &str) -> LeafSpec {
        let subject = vec![
            printable_attr(DnType::CountryName, "NO"),
            utf8(DnType::OrganizationName, name),
            utf8(DnType::CommonName, name),
            utf8(org_identifier(), &format!("NTRNO-{orgnr}")),
        ];
        LeafSpec::new(LeafShape::Seid2, subject, 3 * 365)
    }

    /// Norwegian SEID 1.0 enterprise certificate: the organisation number as a bare
    /// `serialNumber`, RSA 2048, 3 years.
    pub fn seid1(orgnr: &str, name: &str) -> LeafSpec {
        let subject = vec![
            printable_attr(DnType::CountryName, "NO"),
            utf8(DnType::OrganizationName, name),
            utf8(DnType::CommonName, name),
            printable_attr(serial_number_attr(), orgnr),
        ];
        let mut spec = LeafSpec::new(LeafShape::Seid1, subject, 3 * 365);
        spec.key_usages.push(KeyUsagePurpose::DataEncipherment);
        spec
    }

    /// A TLS server certificate (ACME-style, 90 days): CN = the first name, every name as a
    /// SAN (IP addresses as iPAddress).
    pub fn tls_server<S: AsRef<str>>(names: &[S]) -> LeafSpec {
        let first = names.first().map(|s| s.as_ref()).unwrap_or("localhost");
        let subject = vec![utf8(DnType::CommonName, first)];
        let mut spec = LeafSpec::new(LeafShape::TlsServer, subject, 90);
        spec.sans = names.iter().map(|s| s.as_ref().to_string()).collect();
        spec.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        spec
    }

    pub fn shape(&self) -> LeafShape {
        self.shape
    }

    pub fn key_type_value(&self) -> KeyType {
        self.key_type
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The subject as `TYPE=value` pairs joined with `, `, in DER order (for messages).
    pub fn subject_string(&self) -> String {
        self.subject
            .iter()
            .map(|a| format!("{}={}", attr_name(&a.ty), a.value))
            .collect::<Vec<_>>()
            .join(", ")
    }

    // ----- validity -----

    /// Absolute validity (rounded down to whole seconds).
    pub fn validity(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before.replace_nanosecond(0).unwrap_or(not_before);
        self.not_after = not_after.replace_nanosecond(0).unwrap_or(not_after);
        self
    }

    /// Validity in days relative to now: `days(-10, 355)` started ten days ago.
    pub fn days(mut self, from: i64, to: i64) -> Self {
        let now = now_seconds();
        self.not_before = now + Duration::days(from);
        self.not_after = now + Duration::days(to);
        self
    }

    /// Valid now, expires in `days` (began a year minus `days` earlier, at least a day ago).
    pub fn expires_in_days(self, days: i64) -> Self {
        let from = (days - 365).min(-1);
        self.days(from, days)
    }

    /// Expired `days` ago, after a year of validity.
    pub fn expired_days_ago(self, days: i64) -> Self {
        self.days(-days - 365, -days)
    }

    /// Becomes valid in `days`, then valid for a year.
    pub fn not_yet_valid_for_days(self, days: i64) -> Self {
        self.days(days, days + 365)
    }

    // ----- key -----

    /// Generate a key of this type (ignored when [`LeafSpec::with_key`] gave one).
    pub fn key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// Use this key instead of generating one (fast bulk minting, or a renewal that keeps the
    /// key).
    pub fn with_key(mut self, key: Arc<KeyPair>) -> Self {
        self.key = Some(key);
        self
    }

    /// Reuse the key of an already issued certificate.
    pub fn reuse_key_of(self, issued: &IssuedCert) -> Result<Self> {
        Ok(self.with_key(Arc::new(issued.key_pair()?)))
    }

    // ----- usages -----

    pub fn key_usage(mut self, usages: Vec<KeyUsagePurpose>) -> Self {
        self.key_usages = usages;
        self
    }

    pub fn extended_key_usage(mut self, usages: Vec<ExtendedKeyUsagePurpose>) -> Self {
        self.extended_key_usages = usages;
        self
    }

    // ----- names -----

    /// Adds a subject alternative name: a host name, an IP address, `email:<addr>` or
    /// `uri:<uri>`.
    pub fn san(mut self, name: &str) -> Self {
        self.sans.push(name.to_string());
        self
    }

    /// Sets CN to a host name and adds it as a SAN dNSName (SITHS and DVV server certificates).
    pub fn server_name(mut self, fqdn: &str) -> Self {
        self.set_attr(utf8(DnType::CommonName, fqdn));
        if !self.sans.iter().any(|s| s == fqdn) {
            self.sans.push(fqdn.to_string());
        }
        self
    }

    pub fn common_name(mut self, cn: &str) -> Self {
        self.set_attr(utf8(DnType::CommonName, cn));
        self
    }

    pub fn organization(mut self, o: &str) -> Self {
        self.set_attr(utf8(DnType::OrganizationName, o));
        self
    }

    /// Adds or replaces `OU` (placed after `O`).
    pub fn org_unit(mut self, ou: &str) -> Self {
        self.set_attr_after(
            utf8(DnType::OrganizationalUnitName, ou),
            &DnType::OrganizationName,
        );
        self
    }

    /// Adds or replaces `L` (placed after `C`; the SITHS CSR profile has it).
    pub fn locality(mut self, l: &str) -> Self {
        self.set_attr_after(utf8(DnType::LocalityName, l), &DnType::CountryName);
        self
    }

    /// Sets the subject `serialNumber` (PrintableString) to any value, e.g. to test values that
    /// carry no identity.
    pub fn subject_serial_number(mut self, value: &str) -> Self {
        self.set_attr(printable_attr(serial_number_attr(), value));
        self
    }

    /// Sets the subject `organizationIdentifier` (UTF8String) to any value.
    pub fn organization_identifier(mut self, value: &str) -> Self {
        self.set_attr_after(utf8(org_identifier(), value), &DnType::OrganizationName);
        self
    }

    /// DVV hypothesis (fi-kanta.md §2): the SOTE organisation OID in `serialNumber`.
    pub fn sote_oid(self, oid: &str) -> Self {
        self.subject_serial_number(oid)
    }

    /// A fixed certificate serial number (big-endian bytes) instead of a fresh one.
    pub fn serial(mut self, bytes: &[u8]) -> Self {
        self.serial = Some(bytes.to_vec());
        self
    }

    pub(crate) fn serial_bytes(&self) -> Option<&[u8]> {
        self.serial.as_deref()
    }

    fn set_attr(&mut self, attr: Attr) {
        match self.subject.iter_mut().find(|a| a.ty == attr.ty) {
            Some(existing) => *existing = attr,
            None => self.subject.push(attr),
        }
    }

    fn set_attr_after(&mut self, attr: Attr, after: &DnType) {
        if let Some(existing) = self.subject.iter_mut().find(|a| a.ty == attr.ty) {
            *existing = attr;
            return;
        }
        match self.subject.iter().position(|a| &a.ty == after) {
            Some(i) => self.subject.insert(i + 1, attr),
            None => self.subject.push(attr),
        }
    }

    /// The rcgen parameters for this leaf (without key or issuer).
    pub(crate) fn params(&self, serial: SerialNumber) -> Result<CertificateParams> {
        let mut params = CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        for attr in &self.subject {
            let value = if attr.printable {
                printable(&attr.value)?
            } else {
                DnValue::Utf8String(attr.value.clone())
            };
            dn.push(attr.ty.clone(), value);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = self
            .sans
            .iter()
            .map(|s| san(s))
            .collect::<Result<Vec<_>>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = self.key_usages.clone();
        params.extended_key_usages = self.extended_key_usages.clone();
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    pub(crate) fn issue_with(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        serial: SerialNumber,
        chain_der: Vec<Vec<u8>>,
        chain_pem: String,
    ) -> Result<IssuedCert> {
        let key = match &self.key {
            Some(key) => Arc::clone(key),
            None => Arc::new(self.key_type.generate()?),
        };
        let params = self.params(serial)?;
        let cert = params
            .signed_by(key.as_ref(), issuer)
            .with_context(|| format!("signing {}", self.subject_string()))?;
        Ok(IssuedCert {
            shape: self.shape,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pkcs8_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
            chain_der,
            chain_pem,
            not_before: self.not_before,
            not_after: self.not_after,
        })
    }
}

fn utf8(ty: DnType, value: &str) -> Attr {
    Attr {
        ty,
        value: value.to_string(),
        printable: false,
    }
}

fn printable_attr(ty: DnType, value: &str) -> Attr {
    Attr {
        ty,
        value: value.to_string(),
        printable: true,
    }
}

fn attr_name(ty: &DnType) -> String {
    match ty {
        DnType::CountryName => "C".into(),
        DnType::LocalityName => "L".into(),
        DnType::StateOrProvinceName => "ST".into(),
        DnType::OrganizationName => "O".into(),
        DnType::OrganizationalUnitName => "OU".into(),
        DnType::CommonName => "CN".into(),
        DnType::CustomDnType(oid) if oid.as_slice() == [2, 5, 4, 97] => {
            "organizationIdentifier".into()
        }
        DnType::CustomDnType(oid) if oid.as_slice() == [2, 5, 4, 5] => "serialNumber".into(),
        DnType::CustomDnType(oid) => oid
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("."),
        _ => "?".into(),
    }
}

fn looks_like_host(name: &str) -> bool {
    name.contains('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn san(name: &str) -> Result<SanType> {
    if let Some(email) = name.strip_prefix("email:") {
        return Ok(SanType::Rfc822Name(email.try_into()?));
    }
    if let Some(uri) = name.strip_prefix("uri:") {
        return Ok(SanType::URI(uri.try_into()?));
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    Ok(SanType::DnsName(name.try_into()?))
}

/// A minted certificate with its key and issuing chain.
#[derive(Clone)]
pub struct IssuedCert {
    pub shape: LeafShape,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_pkcs8_der: Vec<u8>,
    /// The private key, PKCS#8 PEM (`PRIVATE KEY`).
    pub key_pem: String,
    /// The issuing chain, nearest first (intermediate, then root), DER.
    pub chain_der: Vec<Vec<u8>>,
    /// The issuing chain, nearest first (intermediate, then root), PEM.
    pub chain_pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("shape", &self.shape)
            .field("cert_der_len", &self.cert_der.len())
            .field("key", &"<redacted>")
            .field("chain_len", &self.chain_der.len())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Where [`IssuedCert::write_pem`] put things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPaths {
    /// `<name>.cert.pem`: the certificate alone.
    pub cert: PathBuf,
    /// `<name>.key.pem`: the PKCS#8 private key, mode 0600.
    pub key: PathBuf,
    /// `<name>.chain.pem`: the issuing chain (intermediate, root).
    pub chain: PathBuf,
    /// `<name>.fullchain.pem`: certificate followed by the issuing chain.
    pub fullchain: PathBuf,
}

/// Where [`IssuedCert::write_pkcs12`] put things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs12Paths {
    pub bundle: PathBuf,
    /// `<bundle>.pass`: the password and a newline, mode 0600.
    pub password_file: PathBuf,
}

impl IssuedCert {
    /// Certificate followed by the issuing chain.
    pub fn fullchain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }

    /// The key pair again (e.g. to reuse it for a renewal).
    pub fn key_pair(&self) -> Result<KeyPair> {
        KeyPair::try_from(self.key_pkcs8_der.as_slice()).context("re-reading the minted key")
    }

    /// The private key in its algorithm-specific form: PKCS#1 `RSA PRIVATE KEY` for RSA keys,
    /// SEC1 `EC PRIVATE KEY` for EC keys (the inner structure of the PKCS#8 key; for EC it
    /// carries no curve parameters, which RFC 5915 allows when the curve is known).
    pub fn key_traditional_pem(&self) -> Result<String> {
        let (label, der) = self.key_traditional_der()?;
        Ok(pem_encode(label, &der))
    }

    /// Like [`IssuedCert::key_traditional_pem`], DER, with its PEM label.
    pub fn key_traditional_der(&self) -> Result<(&'static str, Vec<u8>)> {
        use x509_parser::asn1_rs::{Any, FromDer, OctetString, Oid, Sequence};
        let err = |what: &str| anyhow!("minted key is not the PKCS#8 expected: {what}");
        let (_, info) = Sequence::from_der(&self.key_pkcs8_der).map_err(|_| err("outer"))?;
        let (rest, _version) = Any::from_der(&info.content).map_err(|_| err("version"))?;
        let (rest, alg) = Sequence::from_der(rest).map_err(|_| err("algorithm"))?;
        let (_, alg_oid) = Oid::from_der(&alg.content).map_err(|_| err("algorithm oid"))?;
        let (_, inner) = OctetString::from_der(rest).map_err(|_| err("key"))?;
        let label = match alg_oid.to_id_string().as_str() {
            "1.2.840.113549.1.1.1" => "RSA PRIVATE KEY",
            "1.2.840.10045.2.1" => "EC PRIVATE KEY",
            other => return Err(anyhow!("no traditional form for key algorithm {other}")),
        };
        Ok((label, inner.as_cow().to_vec()))
    }

    /// The certificate's serial number, lower-case hex with colons (as certvakt prints it).
    pub fn serial_hex(&self) -> Result<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.cert_der)
            .map_err(|e| anyhow!("re-reading the minted certificate: {e}"))?;
        let bytes = cert.raw_serial();
        let bytes = match bytes {
            [0, rest @ ..] if !rest.is_empty() => rest,
            _ => bytes,
        };
        Ok(bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"))
    }

    /// Writes `<name>.cert.pem`, `<name>.key.pem` (0600), `<name>.chain.pem` and
    /// `<name>.fullchain.pem` into `dir` (created if needed).
    pub fn write_pem(&self, dir: &Path, name: &str) -> Result<PemPaths> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let paths = PemPaths {
            cert: dir.join(format!("{name}.cert.pem")),
            key: dir.join(format!("{name}.key.pem")),
            chain: dir.join(format!("{name}.chain.pem")),
            fullchain: dir.join(format!("{name}.fullchain.pem")),
        };
        write_file(&paths.cert, self.cert_pem.as_bytes())?;
        write_secret(&paths.key, self.key_pem.as_bytes())?;
        write_file(&paths.chain, self.chain_pem.as_bytes())?;
        write_file(&paths.fullchain, self.fullchain_pem().as_bytes())?;
        Ok(paths)
    }

    /// Writes the certificate, DER, as `<name>.der` into `dir`.
    pub fn write_der(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.der"));
        write_file(&path, &self.cert_der)?;
        Ok(path)
    }

    /// The PKCS#12 bundle (key, certificate, chain) as bytes, AES-256/PBKDF2 like current
    /// OpenSSL and Java write it.
    pub fn pkcs12_bytes(&self, password: &str) -> Result<Vec<u8>> {
        use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
        let key = PrivateKey::from_der(&self.key_pkcs8_der).context("PKCS#8 key for PKCS#12")?;
        let mut certs =
            vec![Certificate::from_der(&self.cert_der).context("certificate for PKCS#12")?];
        for der in &self.chain_der {
            certs.push(Certificate::from_der(der).context("chain certificate for PKCS#12")?);
        }
        let chain = PrivateKeyChain::new(b"certvakt-testkit".as_slice(), key, certs);
        let mut store = KeyStore::new();
        store.add_entry("certvakt", KeyStoreEntry::PrivateKeyChain(chain));
        store.writer(password).write().context("writing PKCS#12")
    }

    /// Writes the PKCS#12 bundle to `path` and its password (plus a newline, as `echo` would)
    /// to `<path>.pass` with mode 0600.
    pub fn write_pkcs12(&self, path: &Path, password: &str) -> Result<Pkcs12Paths> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_file(path, &self.pkcs12_bytes(password)?)?;
        let mut password_file = path.as_os_str().to_owned();
        password_file.push(".pass");
        let password_file = PathBuf::from(password_file);
        write_secret(&password_file, format!("{password}\n").as_bytes())?;
        Ok(Pkcs12Paths {
            bundle: path.to_path_buf(),
            password_file,
        })
    }
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der.to_vec()), config)
}

/// Writes a public file (0644).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes a secret file with mode 0600 from the start (never briefly world-readable).
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // `mode` only applies when the file is created; an existing file is tightened too.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
