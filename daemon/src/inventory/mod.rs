//! Inventory: which certificates exist, what they say, and which files are broken.
//!
//! Contract:
//! - [`Source`]s come from the configuration (managed certificates and watch patterns);
//!   [`Scanner::scan`] turns them into an [`Inventory`]: one [`Entry`] per certificate found
//!   (a file can hold a chain, a PKCS#12 bundle several) and one [`SourceProblem`] per file or
//!   pattern that could not be read. A bad file never stops the others.
//! - Files are read with a size limit, symlinks are followed with loop detection by the OS
//!   (`ELOOP` is reported, not followed forever), directories are reported, and parsing is done
//!   by x509-parser / p12-keystore, never by hand.
//! - The scanner keeps a cache keyed by (device, inode, size, mtime, password file): unchanged
//!   files are not read or parsed again, so a rescan of 10,000 files costs about one `stat` each.
//! - Private keys are read only to check that they belong to the certificate, and are never
//!   logged, stored or returned.
//! - A scan that cannot look at something for want of a resource (too many open files, no
//!   memory) never takes that for a verdict on the file: what the last scan found there is
//!   kept, and one [`ProblemKind::ScanIncomplete`] problem per source says so
//!   ([`Inventory::is_complete`]); the daemon scans again within [`RETRY_INCOMPLETE`].

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod keycheck;
mod org_ids;
mod parse;
mod scan;
#[cfg(test)]
mod tests;

pub use keycheck::{KeyVerdict, check_key};
pub use org_ids::{SubjectIds, identities, identities_in_name};
pub use scan::{DEFAULT_MAX_FILE_SIZE, RETRY_INCOMPLETE, SavedKeyCheck, Scanner};

/// What a configured source is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SourceKind {
    /// A `[[certificate]]`: managed (renewed from the renewal engine on).
    Managed {
        id: String,
        plugin: String,
        key: Option<PathBuf>,
    },
    /// A `[[watch]]` path or glob pattern: only monitored.
    Watched { pattern: String },
}

/// One configured place to look for certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// The file (managed) or the pattern (watched; may contain glob characters).
    pub path: String,
    pub pkcs12_password_file: Option<PathBuf>,
}

/// The key inside a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// `RSA`, `EC`, `Ed25519`, `Ed448`, or the algorithm OID when unknown.
    pub algorithm: Cow<'static, str>,
    /// Key size in bits (RSA modulus bits, curve size for EC).
    pub bits: u32,
    /// Named curve for EC keys, e.g. `P-256`.
    pub curve: Option<Cow<'static, str>>,
}

/// A fingerprint of a certificate's DER encoding: `N` bytes, written as lower-case hex with
/// colons (`ab:01:…`), as openssl prints them. Kept as bytes: two fingerprints as text were a
/// tenth of what a watched certificate costs in memory.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint<const N: usize>(pub [u8; N]);

impl<const N: usize> fmt::Display for Fingerprint<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex_colons(f, &self.0)
    }
}

/// `bytes` as lower-case hex with colons (`ab:01:…`): fingerprints and serials.
pub(crate) fn write_hex_colons(out: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.write_char(':')?;
        }
        write!(out, "{b:02x}")?;
    }
    Ok(())
}

impl<const N: usize> fmt::Debug for Fingerprint<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl<const N: usize> std::str::FromStr for Fingerprint<N> {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut bytes = [0u8; N];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts
                .next()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| format!("{text:?} is not {N} hex bytes with colons"))?;
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("{text:?} is not {N} hex bytes with colons"))?;
        }
        match parts.next() {
            None => Ok(Fingerprint(bytes)),
            Some(_) => Err(format!("{text:?} is longer than {N} bytes")),
        }
    }
}

impl<const N: usize> Serialize for Fingerprint<N> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, const N: usize> Deserialize<'de> for Fingerprint<N> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A national identity a certificate carries, named the way the authorities name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scheme")]
pub enum NordicIdentity {
    /// Danish OCES3: `organizationIdentifier=NTRDK-<CVR>`, `serialNumber=UI:DK-O:G:<uuid>`
    /// (also `UI:DK-E:`, `UI:DK-P:` for employee and person certificates).
    DkOces3 { cvr: String, uuid: Option<String> },
    /// Danish OCES2: `serialNumber=CVR:<cvr>-FID:<fid>` (function/system) or `-UID:<uid>`
    /// (employee) or `-RID:<rid>`.
    DkOces2 {
        cvr: String,
        fid: Option<String>,
        uid: Option<String>,
        rid: Option<String>,
    },
    /// Swedish HSA-ID in `serialNumber`, e.g. `SE2321000016-39KJ`.
    SeHsaId { hsa_id: String },
    /// Norwegian organisation number: `organizationIdentifier=NTRNO-<orgnr>` (SEID 2) or a
    /// 9-digit `serialNumber` (SEID 1).
    NoOrgNumber { orgnr: String, seid: u8 },
    /// Finnish identifiers: business ID (Y-tunnus) `NTRFI-<id>` or `serialNumber` with a
    /// Y-tunnus / OID of the organisation, as DVV certificates carry them.
    FiOrganisation {
        business_id: Option<String>,
        identifier: String,
    },
}

impl NordicIdentity {
    /// A short label, for tables and logs: `DK CVR 12345678 UUID …`, `SE HSA-ID …`,
    /// `NO org 983544622 (SEID 1)`, `FI Y-tunnus 1234567-1`.
    pub fn label(&self) -> String {
        match self {
            NordicIdentity::DkOces3 { cvr, uuid } => match uuid {
                Some(uuid) => format!("DK CVR {cvr} UUID {uuid}"),
                None => format!("DK CVR {cvr}"),
            },
            NordicIdentity::DkOces2 { cvr, fid, uid, rid } => {
                let extra = fid
                    .as_ref()
                    .map(|f| format!(" FID {f}"))
                    .or_else(|| uid.as_ref().map(|u| format!(" UID {u}")))
                    .or_else(|| rid.as_ref().map(|r| format!(" RID {r}")))
                    .unwrap_or_default();
                format!("DK CVR {cvr}{extra} (OCES2)")
            }
            NordicIdentity::SeHsaId { hsa_id } => format!("SE HSA-ID {hsa_id}"),
            NordicIdentity::NoOrgNumber { orgnr, seid } => format!("NO org {orgnr} (SEID {seid})"),
            NordicIdentity::FiOrganisation {
                business_id,
                identifier,
            } => match business_id {
                Some(id) => format!("FI Y-tunnus {id}"),
                None => format!("FI {identifier}"),
            },
        }
    }
}

/// Everything the inventory knows about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// Subject DN in RFC 4514-like form (as x509-parser prints it).
    pub subject: String,
    pub issuer: String,
    /// Serial number, lower-case hex with colons.
    pub serial: String,
    /// Validity, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub key: KeyInfo,
    /// Fingerprints of the DER encoding (written as lower-case hex with colons).
    pub sha1: Fingerprint<20>,
    pub sha256: Fingerprint<32>,
    /// Subject alternative names, as `DNS:...`, `IP:...`, `email:...`, `URI:...`.
    pub sans: Vec<String>,
    /// Nordic identities found in the subject (usually zero or one).
    pub identities: Vec<NordicIdentity>,
    /// Basic constraints say CA.
    pub is_ca: bool,
    /// Subject equals issuer.
    pub self_signed: bool,
    /// The signature algorithm, e.g. `sha256WithRSAEncryption` or `RSASSA-PSS`.
    pub signature_algorithm: Cow<'static, str>,
}

/// Whether a configured private key belongs to the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyCheck {
    /// No key path configured.
    NotConfigured,
    /// The key's public half equals the certificate's.
    Matches,
    /// They do not belong together (a [`SourceProblem`] says more).
    Mismatch,
    /// The key file could not be read or parsed (a [`SourceProblem`] says more).
    Unreadable,
}

/// One certificate found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Stable id: the managed id, or the file path for watched files; certificates after the
    /// first in a file get `#<index>` appended (`fmk-prod#1`, `/etc/ssl/chain.pem#2`).
    pub id: String,
    /// Shared by every entry of its source.
    pub source: Arc<SourceKind>,
    /// The file it was read from.
    pub path: PathBuf,
    /// Position in the file (0 = first, the leaf in a well-formed chain).
    pub index: usize,
    /// `pem`, `der` or `pkcs12`.
    pub format: Cow<'static, str>,
    /// Shared with the scanner's cache: one copy per certificate, however many scans.
    pub cert: Arc<CertInfo>,
    /// Only meaningful for the first certificate of a managed source.
    pub key_check: KeyCheck,
}

/// What kind of trouble a source had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The file does not exist.
    Missing,
    /// A glob pattern matched no file.
    NoMatch,
    /// Permission denied or another I/O error.
    Unreadable,
    /// The path is a directory.
    IsDirectory,
    /// Too many levels of symbolic links.
    SymlinkLoop,
    /// Larger than `max_file_size`.
    TooLarge,
    /// The file holds no certificate.
    NotCertificate,
    /// A certificate that is cut off or otherwise malformed.
    Malformed,
    /// PKCS#12 without a password file, or the password is wrong.
    Pkcs12Password,
    /// The configured key does not belong to the certificate.
    KeyMismatch,
    /// The configured key could not be read or parsed.
    KeyUnreadable,
    /// The scan could not read a file or folder of this source for want of a resource (too
    /// many open files, no memory); what the last scan found there is kept.
    ScanIncomplete,
}

impl ProblemKind {
    /// The label value used in metrics (bounded set).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::NoMatch => "no_match",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::IsDirectory => "is_directory",
            ProblemKind::SymlinkLoop => "symlink_loop",
            ProblemKind::TooLarge => "too_large",
            ProblemKind::NotCertificate => "not_certificate",
            ProblemKind::Malformed => "malformed",
            ProblemKind::Pkcs12Password => "pkcs12_password",
            ProblemKind::KeyMismatch => "key_mismatch",
            ProblemKind::KeyUnreadable => "key_unreadable",
            ProblemKind::ScanIncomplete => "scan_incomplete",
        }
    }

    /// Every kind, for metrics that must show zero as well.
    pub const ALL: [ProblemKind; 12] = [
        ProblemKind::Missing,
        ProblemKind::NoMatch,
        ProblemKind::Unreadable,
        ProblemKind::IsDirectory,
        ProblemKind::SymlinkLoop,
        ProblemKind::TooLarge,
        ProblemKind::NotCertificate,
        ProblemKind::Malformed,
        ProblemKind::Pkcs12Password,
        ProblemKind::KeyMismatch,
        ProblemKind::KeyUnreadable,
        ProblemKind::ScanIncomplete,
    ];
}

/// A file or pattern that could not be turned into certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProblem {
    /// The managed id, or the path / pattern for watched sources (same ids as [`Entry::id`]
    /// without the `#index`).
    pub id: String,
    pub source: SourceKind,
    /// The file (or pattern) concerned.
    pub path: String,
    pub kind: ProblemKind,
    /// A sentence: what is wrong and what to do. Never contains key material.
    pub message: String,
}

impl SourceProblem {
    /// Whether this is a managed certificate's file missing while `run_in_progress` says its
    /// run is under way: its first issue, which `status` and `/metrics` do not count as a
    /// problem.
    pub fn is_first_issue(&self, run_in_progress: impl FnOnce(&str) -> bool) -> bool {
        self.kind == ProblemKind::Missing
            && matches!(self.source, SourceKind::Managed { .. })
            && run_in_progress(&self.id)
    }
}

/// The result of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub entries: Vec<Entry>,
    pub problems: Vec<SourceProblem>,
    /// When the scan finished, seconds since the Unix epoch.
    pub scanned_at: i64,
    /// Files looked at in this scan, and how many of them were read and parsed (not cached).
    pub files_seen: usize,
    pub files_parsed: usize,
}

impl Inventory {
    /// Whether the scan could look at everything (no [`ProblemKind::ScanIncomplete`]).
    pub fn is_complete(&self) -> bool {
        !self
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::ScanIncomplete)
    }
}

/// Parses every certificate in `bytes` (PEM with any number of certificates and other blocks,
/// DER, or PKCS#12 when `password` is given or the content is PKCS#12).
///
/// On failure the message is the tail of a sentence whose subject is the file (`"is empty"`,
/// `"holds a private key but no certificate; …"`): the caller prepends the file name.
pub fn parse_certificates(
    bytes: &[u8],
    password: Option<&str>,
) -> Result<(String, Vec<CertInfo>), (ProblemKind, String)> {
    parse::parse_certificates(bytes, password)
}

/// The sources a configuration names: each `[[certificate]]` (managed, in order), then each
/// path or pattern of each `[[watch]]`.
pub fn sources_from_config(config: &crate::config::Config) -> Vec<Source> {
    let managed = config.certificates.iter().map(|c| Source {
        kind: SourceKind::Managed {
            id: c.id.clone(),
            plugin: c.plugin.clone(),
            key: c.key.clone(),
        },
        path: c.cert.display().to_string(),
        pkcs12_password_file: c.pkcs12_password_file.clone(),
    });
    let watched = config.watch.iter().flat_map(|w| {
        w.paths.iter().map(|p| Source {
            kind: SourceKind::Watched { pattern: p.clone() },
            path: p.clone(),
            pkcs12_password_file: w.pkcs12_password_file.clone(),
        })
    });
    managed.chain(watched).collect()
}

/// Where a certificate stands in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    Ok,
    /// Valid, but expires within `warn_before`.
    Expiring,
    NotYetValid,
    Expired,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Ok => "ok",
            CertState::Expiring => "expiring",
            CertState::NotYetValid => "not_yet_valid",
            CertState::Expired => "expired",
        }
    }
}

impl CertInfo {
    /// The state at `now` (Unix seconds), given the warning window in seconds.
    pub fn state_at(&self, now: i64, warn_before: u64) -> CertState {
        if now >= self.not_after {
            CertState::Expired
        } else if now < self.not_before {
            CertState::NotYetValid
        } else if self.not_after.saturating_sub(now)
            <= i64::try_from(warn_before).unwrap_or(i64::MAX)
        {
            CertState::Expiring
        } else {
            CertState::Ok
        }
    }
}

/// A managed OCES3-shaped entry (`fmk-prod`, plugin `dk-fmk`, key matching) for the unit tests
/// of the modules that consume entries; tests change the fields they are about.
#[cfg(test)]
pub(crate) fn example_entry() -> Entry {
    Entry {
        id: "fmk-prod".into(),
        source: Arc::new(SourceKind::Managed {
            id: "fmk-prod".into(),
            plugin: "dk-fmk".into(),
            key: Some(PathBuf::from("/etc/certvakt/fmk.key")),
        }),
        path: PathBuf::from("/etc/certvakt/fmk.pem"),
        index: 0,
        format: "pem".into(),
        cert: Arc::new(CertInfo {
            subject: "CN=Apotek, organizationIdentifier=NTRDK-12345678".into(),
            issuer: "CN=Den Danske Stat OCES udstedende-CA 1".into(),
            serial: "01:02:03".into(),
            not_before: 1_740_787_200,
            not_after: 1_803_859_200,
            key: KeyInfo {
                algorithm: "RSA".into(),
                bits: 3072,
                curve: None,
            },
            sha1: Fingerprint([0xaa; 20]),
            sha256: Fingerprint([0xcc; 32]),
            sans: vec![],
            identities: vec![NordicIdentity::DkOces3 {
                cvr: "12345678".into(),
                uuid: None,
            }],
            is_ca: false,
            self_signed: false,
            signature_algorithm: "sha256WithRSAEncryption".into(),
        }),
        key_check: KeyCheck::Matches,
    }
}
