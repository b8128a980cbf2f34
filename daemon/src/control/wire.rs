//! The control protocol's own copies of what the daemon shows: certificates, sources and
//! their problems, renewals, operator tasks, configuration problems.
//!
//! Contract:
//! - These types are what crosses the control socket and what `certvakt --json` prints; the
//!   daemon's internal types (the inventory's entries, the renewal engine's view, the
//!   configuration's problems) never do. An internal rename therefore changes nothing here,
//!   and a change here is a protocol change: `golden.rs` pins the JSON and asks for a
//!   [`PROTOCOL_VERSION`](super::protocol::PROTOCOL_VERSION) bump.
//! - Each type converts from its internal counterpart with `From`. The conversions take the
//!   internal structs apart field by field, without `..`: a field added inside the daemon is a
//!   compile error here until someone decides whether the protocol shows it.
//! - The JSON names are the documented ones (`certvakt.1`, docs/cli.md): snake_case, enums tagged
//!   as the comments say.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config;
use crate::inventory;
use crate::lifecycle;

/// What a configured source is; tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SourceKind {
    /// A `[[certificate]]`: managed (renewed).
    Managed {
        id: String,
        plugin: String,
        key: Option<PathBuf>,
    },
    /// A `[[watch]]` path or glob pattern: only monitored.
    Watched { pattern: String },
}

impl From<&inventory::SourceKind> for SourceKind {
    fn from(kind: &inventory::SourceKind) -> SourceKind {
        match kind {
            inventory::SourceKind::Managed { id, plugin, key } => SourceKind::Managed {
                id: id.clone(),
                plugin: plugin.clone(),
                key: key.clone(),
            },
            inventory::SourceKind::Watched { pattern } => SourceKind::Watched {
                pattern: pattern.clone(),
            },
        }
    }
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
    pub const ALL: [CertState; 4] = [
        CertState::Ok,
        CertState::Expiring,
        CertState::NotYetValid,
        CertState::Expired,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Ok => "ok",
            CertState::Expiring => "expiring",
            CertState::NotYetValid => "not_yet_valid",
            CertState::Expired => "expired",
        }
    }
}

impl From<inventory::CertState> for CertState {
    fn from(state: inventory::CertState) -> CertState {
        match state {
            inventory::CertState::Ok => CertState::Ok,
            inventory::CertState::Expiring => CertState::Expiring,
            inventory::CertState::NotYetValid => CertState::NotYetValid,
            inventory::CertState::Expired => CertState::Expired,
        }
    }
}

/// What kind of trouble a source had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Missing,
    NoMatch,
    Unreadable,
    IsDirectory,
    SymlinkLoop,
    TooLarge,
    NotCertificate,
    Malformed,
    Pkcs12Password,
    KeyMismatch,
    KeyUnreadable,
    /// The scan could not read this source for want of a resource (too many open files, no
    /// memory); what the last scan found there is kept.
    ScanIncomplete,
}

impl ProblemKind {
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

    /// The name on the wire.
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
}

impl From<inventory::ProblemKind> for ProblemKind {
    fn from(kind: inventory::ProblemKind) -> ProblemKind {
        match kind {
            inventory::ProblemKind::Missing => ProblemKind::Missing,
            inventory::ProblemKind::NoMatch => ProblemKind::NoMatch,
            inventory::ProblemKind::Unreadable => ProblemKind::Unreadable,
            inventory::ProblemKind::IsDirectory => ProblemKind::IsDirectory,
            inventory::ProblemKind::SymlinkLoop => ProblemKind::SymlinkLoop,
            inventory::ProblemKind::TooLarge => ProblemKind::TooLarge,
            inventory::ProblemKind::NotCertificate => ProblemKind::NotCertificate,
            inventory::ProblemKind::Malformed => ProblemKind::Malformed,
            inventory::ProblemKind::Pkcs12Password => ProblemKind::Pkcs12Password,
            inventory::ProblemKind::KeyMismatch => ProblemKind::KeyMismatch,
            inventory::ProblemKind::KeyUnreadable => ProblemKind::KeyUnreadable,
            inventory::ProblemKind::ScanIncomplete => ProblemKind::ScanIncomplete,
        }
    }
}

/// A file or pattern that could not be turned into certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProblem {
    /// The managed id, or the path or pattern of a watched source.
    pub id: String,
    pub source: SourceKind,
    /// The file (or pattern) concerned.
    pub path: String,
    pub kind: ProblemKind,
    /// A sentence: what is wrong and what to do.
    pub message: String,
}

impl From<&inventory::SourceProblem> for SourceProblem {
    fn from(problem: &inventory::SourceProblem) -> SourceProblem {
        let inventory::SourceProblem {
            id,
            source,
            path,
            kind,
            message,
        } = problem;
        SourceProblem {
            id: id.clone(),
            source: source.into(),
            path: path.clone(),
            kind: (*kind).into(),
            message: message.clone(),
        }
    }
}

/// The key inside a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// `RSA`, `EC`, `Ed25519`, `Ed448`, or the algorithm OID when unknown.
    pub algorithm: String,
    /// RSA modulus bits, or the curve size for EC.
    pub bits: u32,
    /// Named curve of an EC key, e.g. `P-256`.
    pub curve: Option<String>,
}

/// A national identity a certificate carries; tagged by `scheme`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scheme")]
pub enum NordicIdentity {
    /// Danish OCES3.
    DkOces3 { cvr: String, uuid: Option<String> },
    /// Danish OCES2.
    DkOces2 {
        cvr: String,
        fid: Option<String>,
        uid: Option<String>,
        rid: Option<String>,
    },
    /// Swedish HSA-ID.
    SeHsaId { hsa_id: String },
    /// Norwegian organisation number (SEID 1 or 2).
    NoOrgNumber { orgnr: String, seid: u8 },
    /// Finnish business ID or organisation identifier.
    FiOrganisation {
        business_id: Option<String>,
        identifier: String,
    },
}

impl NordicIdentity {
    /// The short label the daemon uses everywhere (`DK CVR 12345678 UUID …`).
    pub fn label(&self) -> String {
        inventory::NordicIdentity::from(self).label()
    }
}

impl From<&inventory::NordicIdentity> for NordicIdentity {
    fn from(identity: &inventory::NordicIdentity) -> NordicIdentity {
        use inventory::NordicIdentity as I;
        match identity.clone() {
            I::DkOces3 { cvr, uuid } => NordicIdentity::DkOces3 { cvr, uuid },
            I::DkOces2 { cvr, fid, uid, rid } => NordicIdentity::DkOces2 { cvr, fid, uid, rid },
            I::SeHsaId { hsa_id } => NordicIdentity::SeHsaId { hsa_id },
            I::NoOrgNumber { orgnr, seid } => NordicIdentity::NoOrgNumber { orgnr, seid },
            I::FiOrganisation {
                business_id,
                identifier,
            } => NordicIdentity::FiOrganisation {
                business_id,
                identifier,
            },
        }
    }
}

/// A Nordic identity as fields scripts can use without parsing the label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityFields {
    /// The scheme: `dk_oces3`, `dk_oces2`, `se_hsa_id`, `no_org_number`, `fi_organisation`.
    pub kind: String,
    /// ISO 3166 country code: `DK`, `SE`, `NO`, `FI`.
    pub country: String,
    /// The number in the authority's register: CVR, HSA-ID, organisation number, Y-tunnus
    /// (or the Finnish organisation identifier when there is no Y-tunnus).
    pub number: String,
    /// The OCES3 UUID, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The preformatted label, as the `identity` column shows it.
    pub label: String,
}

impl From<&NordicIdentity> for IdentityFields {
    fn from(identity: &NordicIdentity) -> IdentityFields {
        let (kind, country, number, uuid) = match identity {
            NordicIdentity::DkOces3 { cvr, uuid } => ("dk_oces3", "DK", cvr, uuid.clone()),
            NordicIdentity::DkOces2 { cvr, .. } => ("dk_oces2", "DK", cvr, None),
            NordicIdentity::SeHsaId { hsa_id } => ("se_hsa_id", "SE", hsa_id, None),
            NordicIdentity::NoOrgNumber { orgnr, .. } => ("no_org_number", "NO", orgnr, None),
            NordicIdentity::FiOrganisation {
                business_id,
                identifier,
            } => (
                "fi_organisation",
                "FI",
                business_id.as_ref().unwrap_or(identifier),
                None,
            ),
        };
        IdentityFields {
            kind: kind.to_owned(),
            country: country.to_owned(),
            number: number.clone(),
            uuid,
            label: identity.label(),
        }
    }
}

/// Back to the inventory's form, for its label.
impl From<&NordicIdentity> for inventory::NordicIdentity {
    fn from(identity: &NordicIdentity) -> inventory::NordicIdentity {
        use inventory::NordicIdentity as I;
        match identity.clone() {
            NordicIdentity::DkOces3 { cvr, uuid } => I::DkOces3 { cvr, uuid },
            NordicIdentity::DkOces2 { cvr, fid, uid, rid } => I::DkOces2 { cvr, fid, uid, rid },
            NordicIdentity::SeHsaId { hsa_id } => I::SeHsaId { hsa_id },
            NordicIdentity::NoOrgNumber { orgnr, seid } => I::NoOrgNumber { orgnr, seid },
            NordicIdentity::FiOrganisation {
                business_id,
                identifier,
            } => I::FiOrganisation {
                business_id,
                identifier,
            },
        }
    }
}

/// What a certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// Subject DN in RFC 4514-like form.
    pub subject: String,
    pub issuer: String,
    /// Serial number, lower-case hex with colons.
    pub serial: String,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub key: KeyInfo,
    /// Fingerprints of the DER encoding, lower-case hex with colons.
    pub sha1: String,
    pub sha256: String,
    /// Subject alternative names: `DNS:…`, `IP:…`, `email:…`, `URI:…`.
    pub sans: Vec<String>,
    /// Nordic identities found in the subject.
    pub identities: Vec<NordicIdentity>,
    /// Basic constraints say CA.
    pub is_ca: bool,
    /// Subject equals issuer.
    pub self_signed: bool,
    /// E.g. `sha256WithRSAEncryption`.
    pub signature_algorithm: String,
}

impl From<&inventory::CertInfo> for CertInfo {
    fn from(cert: &inventory::CertInfo) -> CertInfo {
        let inventory::CertInfo {
            subject,
            issuer,
            serial,
            not_before,
            not_after,
            key,
            sha1,
            sha256,
            sans,
            identities,
            is_ca,
            self_signed,
            signature_algorithm,
        } = cert;
        let inventory::KeyInfo {
            algorithm,
            bits,
            curve,
        } = key;
        CertInfo {
            subject: subject.clone(),
            issuer: issuer.clone(),
            serial: serial.clone(),
            not_before: *not_before,
            not_after: *not_after,
            key: KeyInfo {
                algorithm: algorithm.to_string(),
                bits: *bits,
                curve: curve.as_deref().map(str::to_owned),
            },
            sha1: sha1.to_string(),
            sha256: sha256.to_string(),
            sans: sans.clone(),
            identities: identities.iter().map(NordicIdentity::from).collect(),
            is_ca: *is_ca,
            self_signed: *self_signed,
            signature_algorithm: signature_algorithm.to_string(),
        }
    }
}

/// Whether a configured private key belongs to the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyCheck {
    /// No key path configured.
    NotConfigured,
    /// The key's public half equals the certificate's.
    Matches,
    /// They do not belong together.
    Mismatch,
    /// The key file could not be read or parsed.
    Unreadable,
}

impl From<inventory::KeyCheck> for KeyCheck {
    fn from(check: inventory::KeyCheck) -> KeyCheck {
        match check {
            inventory::KeyCheck::NotConfigured => KeyCheck::NotConfigured,
            inventory::KeyCheck::Matches => KeyCheck::Matches,
            inventory::KeyCheck::Mismatch => KeyCheck::Mismatch,
            inventory::KeyCheck::Unreadable => KeyCheck::Unreadable,
        }
    }
}

/// One certificate of `show`: where it was found, what it says, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownEntry {
    /// The managed id or the path, with `#<index>` after the first certificate of a file.
    pub id: String,
    pub source: SourceKind,
    /// The file it was read from.
    pub path: PathBuf,
    /// Position in the file (0 = first).
    pub index: usize,
    /// `pem`, `der` or `pkcs12`.
    pub format: String,
    pub cert: CertInfo,
    /// `cert.identities` as fields (kind, country, number, uuid, label), for scripts.
    #[serde(default)]
    pub identity_fields: Vec<IdentityFields>,
    /// Only meaningful for the first certificate of a managed source.
    pub key_check: KeyCheck,
    pub state: CertState,
    /// Negative once expired.
    pub seconds_left: i64,
}

impl ShownEntry {
    /// An inventory entry as `show` shows it, at `state` with `seconds_left`.
    pub fn new(entry: &inventory::Entry, state: CertState, seconds_left: i64) -> ShownEntry {
        let inventory::Entry {
            id,
            source,
            path,
            index,
            format,
            cert,
            key_check,
        } = entry;
        ShownEntry {
            id: id.clone(),
            source: source.as_ref().into(),
            path: path.clone(),
            index: *index,
            format: format.to_string(),
            cert: cert.as_ref().into(),
            identity_fields: cert
                .identities
                .iter()
                .map(|identity| IdentityFields::from(&NordicIdentity::from(identity)))
                .collect(),
            key_check: (*key_check).into(),
            state,
            seconds_left,
        }
    }
}

/// The steps of a renewal, in order; a run's `phase` is the last one completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Due,
    KeyGenerated,
    Ordered,
    Issued,
    Registered,
    Installed,
    Verified,
    Retired,
}

impl Phase {
    /// Every step, in the order a run takes them.
    pub const ALL: [Phase; 8] = [
        Phase::Due,
        Phase::KeyGenerated,
        Phase::Ordered,
        Phase::Issued,
        Phase::Registered,
        Phase::Installed,
        Phase::Verified,
        Phase::Retired,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Due => "due",
            Phase::KeyGenerated => "key_generated",
            Phase::Ordered => "ordered",
            Phase::Issued => "issued",
            Phase::Registered => "registered",
            Phase::Installed => "installed",
            Phase::Verified => "verified",
            Phase::Retired => "retired",
        }
    }
}

impl From<lifecycle::Phase> for Phase {
    fn from(phase: lifecycle::Phase) -> Phase {
        match phase {
            lifecycle::Phase::Due => Phase::Due,
            lifecycle::Phase::KeyGenerated => Phase::KeyGenerated,
            lifecycle::Phase::Ordered => Phase::Ordered,
            lifecycle::Phase::Issued => Phase::Issued,
            lifecycle::Phase::Registered => Phase::Registered,
            lifecycle::Phase::Installed => Phase::Installed,
            lifecycle::Phase::Verified => Phase::Verified,
            lifecycle::Phase::Retired => Phase::Retired,
        }
    }
}

/// How an operator task is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// By importing the issued certificate (`certvakt import`, or a file in the inbox).
    Import,
    /// By `certvakt task done ID`.
    Confirm,
    /// By itself: the plugin notices on its next poll.
    Poll,
}

impl From<certvakt_plugin_api::Completion> for Completion {
    fn from(completion: certvakt_plugin_api::Completion) -> Completion {
        match completion {
            certvakt_plugin_api::Completion::Import => Completion::Import,
            certvakt_plugin_api::Completion::Confirm => Completion::Confirm,
            certvakt_plugin_api::Completion::Poll => Completion::Poll,
        }
    }
}

/// A step that needs a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// `<cert-id>-<run>-<n>`.
    pub id: String,
    pub cert_id: String,
    /// The step it belongs to (the one that completes when it is done).
    pub phase: Phase,
    /// The same as `phase`, by the name the CLI's `tasks` table gives it (STEP).
    pub step: Phase,
    pub title: String,
    pub instructions: String,
    /// Files written for it, in the certificate's outbox.
    pub files: Vec<PathBuf>,
    pub completes_by: Completion,
    pub opened_at: i64,
    #[serde(default)]
    pub closed_at: Option<i64>,
}

impl From<&lifecycle::Task> for Task {
    fn from(task: &lifecycle::Task) -> Task {
        let lifecycle::Task {
            id,
            cert_id,
            phase,
            title,
            instructions,
            files,
            completes_by,
            opened_at,
            closed_at,
        } = task;
        Task {
            id: id.clone(),
            cert_id: cert_id.clone(),
            phase: (*phase).into(),
            step: (*phase).into(),
            title: title.clone(),
            instructions: instructions.clone(),
            files: files.clone(),
            completes_by: (*completes_by).into(),
            opened_at: *opened_at,
            closed_at: *closed_at,
        }
    }
}

/// One managed certificate's renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    pub id: String,
    pub plugin: String,
    pub plugin_loaded: bool,
    /// The last step completed by the run in progress; `None` when no run is.
    pub phase: Option<Phase>,
    /// The same as `phase`, by the name the CLI's tables give it (STEP).
    #[serde(default)]
    pub step: Option<Phase>,
    /// When the engine next acts for it (due time, poll, retry or end of overlap).
    pub next_at: Option<i64>,
    /// Failed steps in a row.
    pub failures: u32,
    pub last_error: Option<String>,
    /// When the last run completed.
    pub last_success: Option<i64>,
    pub open_tasks: Vec<Task>,
    /// The authority's suggested renewal window (start, end), when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_window: Option<(i64, i64)>,
    /// What the operator should know about the new certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The key pre-staged for the next renewal (`key_policy = "prestage"`): its type, the
    /// SHA-256 of its SubjectPublicKeyInfo (hex) and the SubjectPublicKeyInfo (base64 DER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key: Option<lifecycle::run::NextKey>,
}

impl From<&lifecycle::CertRenewal> for Renewal {
    fn from(renewal: &lifecycle::CertRenewal) -> Renewal {
        let lifecycle::CertRenewal {
            id,
            plugin,
            plugin_loaded,
            phase,
            next_at,
            failures,
            last_error,
            last_success,
            open_tasks,
            suggested_window,
            notes,
            next_key,
        } = renewal;
        Renewal {
            id: id.clone(),
            plugin: plugin.clone(),
            plugin_loaded: *plugin_loaded,
            phase: phase.map(Phase::from),
            step: phase.map(Phase::from),
            next_at: *next_at,
            failures: *failures,
            last_error: last_error.clone(),
            last_success: *last_success,
            open_tasks: open_tasks.iter().map(Task::from).collect(),
            suggested_window: *suggested_window,
            notes: notes.clone(),
            next_key: next_key.as_deref().cloned(),
        }
    }
}

/// One problem of a configuration (`certvakt check-config --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, when the problem has a place.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `certificate[2].plugin`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl From<&config::Problem> for ConfigProblem {
    fn from(problem: &config::Problem) -> ConfigProblem {
        let config::Problem {
            file,
            line,
            key,
            message,
            hint,
        } = problem;
        ConfigProblem {
            file: file.clone(),
            line: *line,
            key: key.clone(),
            message: message.clone(),
            hint: hint.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `as_str` gives are the serde names, for every variant.
    #[test]
    fn names_are_the_wire_names() {
        let serde_name = |value: serde_json::Value| value.as_str().map(str::to_owned);
        for state in CertState::ALL {
            assert_eq!(
                serde_name(serde_json::json!(state)).as_deref(),
                Some(state.as_str())
            );
        }
        for kind in ProblemKind::ALL {
            assert_eq!(
                serde_name(serde_json::json!(kind)).as_deref(),
                Some(kind.as_str())
            );
            assert_eq!(
                kind.as_str(),
                inventory::ProblemKind::ALL[kind as usize].as_str()
            );
        }
        for phase in Phase::ALL {
            assert_eq!(
                serde_name(serde_json::json!(phase)).as_deref(),
                Some(phase.as_str())
            );
        }
    }

    /// Every internal variant maps to the wire variant of the same name.
    #[test]
    fn enums_convert_variant_for_variant() {
        for (i, phase) in lifecycle::Phase::ALL.into_iter().enumerate() {
            assert_eq!(Phase::from(phase), Phase::ALL[i]);
            assert_eq!(Phase::from(phase).as_str(), phase.as_str());
        }
        for (i, kind) in inventory::ProblemKind::ALL.into_iter().enumerate() {
            assert_eq!(ProblemKind::from(kind), ProblemKind::ALL[i]);
        }
        for state in [
            inventory::CertState::Ok,
            inventory::CertState::Expiring,
            inventory::CertState::NotYetValid,
            inventory::CertState::Expired,
        ] {
            assert_eq!(CertState::from(state).as_str(), state.as_str());
        }
    }

    #[test]
    fn identities_keep_their_label() {
        let entry = inventory::example_entry();
        for identity in &entry.cert.identities {
            assert_eq!(NordicIdentity::from(identity).label(), identity.label());
        }
    }
}
