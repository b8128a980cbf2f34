//! The messages that cross the plugin boundary, both ways.
//!
//! Contract:
//! - The host calls a plugin with a method name and that method's parameters as JSON: a
//!   [`PluginRequest`] split by [`PluginRequest::method`] and [`PluginRequest::encode_params`],
//!   joined again by [`PluginRequest::decode`]. The plugin answers with one [`PluginResponse`],
//!   whose variant names the request it answers, or [`PluginResponse::Error`].
//! - During a call the plugin may call the host the same way: a [`HostRequest`] in, a
//!   [`HostResponse`] (or [`HostResponse::Error`]) out.
//! - Each pair of enums is declared once, method by method, with `plugin_messages!`
//!   (`crate::wire`): a method's name, its parameters and its answer are one entry, and the
//!   method names, `method()`, `encode_params()` and `decode()` all come from it.
//! - Serialised, a request is `{"method": "<name>", "params": …}` and a response
//!   `{"response": "<name>", "result": …}`, so the same messages can later travel one per line
//!   over a pipe to a sandboxed plugin process. Over the C ABI the method name and the
//!   parameters are passed separately.
//! - Bytes (signatures, HTTP bodies, binary files) are `Vec<u8>` here and base64 (standard
//!   alphabet, padded) on the wire.
//! - The messages are versioned by [`crate::PLUGIN_API_VERSION`], not by this crate's version:
//!   fields (with `#[serde(default)]`) and methods may be added in a new minor version;
//!   renaming or removing anything needs a new major version, which the host's version check
//!   then refuses to mix. `plugin-api/tests/wire.rs` records every message's bytes per version
//!   and fails when they change without a new version.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::profile::CsrProfile;
use crate::wire::plugin_messages;

// ---------------------------------------------------------------------------------------------
// Host → plugin

plugin_messages! {
    /// A call from the host to a plugin: one variant per method, declared with its answer.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum PluginRequest;
    /// A plugin's answer to a [`PluginRequest`]: the variant named after the request it
    /// answers, or [`PluginResponse::Error`].
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum PluginResponse;
    /// Answers any request the plugin could not carry out.
    error Error(PluginError);

    /// Who are you, and which settings do you take?
    "describe" => Describe -> Describe(Description);
    /// Check a certificate's `settings` table.
    "validate_settings" => ValidateSettings(params: ValidateSettings)
        /// Every problem found; empty means valid.
        -> ValidateSettings(Vec<SettingProblem>);
    /// What must the new key and CSR look like?
    "csr_profile" => CsrProfile(certificate: CertificateContext) -> CsrProfile(CsrProfile);
    /// Order a certificate for this CSR.
    "issue" => Issue(order: OrderContext) -> Issue(IssueOutcome);
    /// Is the pending order issued yet?
    "poll" => Poll(order: OrderContext) -> Poll(IssueOutcome);
    /// Tell the authority about the new certificate.
    "register" => Register(step: StepContext) -> Register(StepOutcome);
    /// Check that the authority accepts the new certificate.
    "verify" => Verify(step: StepContext) -> Verify(StepOutcome);
    /// Withdraw the old certificate from the authority.
    "retire" => Retire(step: StepContext) -> Retire(StepOutcome);
    /// When does the authority suggest renewing the current certificate? Asked only while no
    /// renewal runs, and only about a certificate in use (`current` is set).
    "renewal_window" => RenewalWindow(certificate: CertificateContext)
        /// `None` when the authority suggests nothing (the daemon's own schedule applies).
        -> RenewalWindow(Option<RenewalWindow>);
    /// Does the newly issued (or imported) certificate, or set, fit what the authority needs?
    /// Asked before anything is staged, after the daemon's own checks (key, validity,
    /// organisation, `issuer_trust`). Added in 1.3.0; a plugin without it has no objections.
    "check_issued" => CheckIssued(check: CheckIssued)
        /// Every objection, one sentence each; empty means the certificate fits.
        -> CheckIssued(Vec<String>);
}

/// Parameters of [`PluginRequest::ValidateSettings`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateSettings {
    /// The certificate's `[certificate.settings]` table, as JSON.
    pub settings: Value,
}

/// The answer to [`PluginRequest::Describe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// The plugin's name, as the descriptor gives it.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The plugin API version it was built against ([`crate::PLUGIN_API_VERSION`]).
    pub api_version: String,
    /// The ABI version it was built with.
    pub abi_version: u32,
    /// One or two sentences for `certvakt plugins`: which authority, what it automates.
    pub summary: String,
    /// Every setting the plugin reads.
    #[serde(default)]
    pub settings: Vec<SettingDoc>,
    /// The key policies the plugin's authority works with; empty: every one. Added in 1.5.0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_policies: Vec<crate::profile::KeyPolicy>,
}

/// One documented setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingDoc {
    pub key: String,
    pub required: bool,
    /// What it means, with its type and default.
    pub description: String,
    /// A valid value, as it would be written in TOML.
    #[serde(default)]
    pub example: Option<String>,
}

impl SettingDoc {
    /// A setting that must be given.
    pub fn required(key: impl Into<String>, description: impl Into<String>) -> SettingDoc {
        SettingDoc {
            key: key.into(),
            required: true,
            description: description.into(),
            example: None,
        }
    }

    /// A setting with a default.
    pub fn optional(key: impl Into<String>, description: impl Into<String>) -> SettingDoc {
        SettingDoc {
            required: false,
            ..SettingDoc::required(key, description)
        }
    }

    /// A valid value, as written in TOML (`"\"ec-p256\""`, `100`).
    pub fn example(mut self, toml_value: impl Into<String>) -> SettingDoc {
        self.example = Some(toml_value.into());
        self
    }
}

/// One problem in a certificate's plugin settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingProblem {
    /// The setting's key (`""` for the table as a whole).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    #[serde(default)]
    pub hint: Option<String>,
}

impl SettingProblem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> SettingProblem {
        SettingProblem {
            key: key.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> SettingProblem {
        self.hint = Some(hint.into());
        self
    }
}

/// A certificate as the daemon knows it: the PEM and the facts a plugin usually needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// The certificate (leaf only) as PEM.
    pub pem: String,
    /// Subject DN, RFC 4514 style (`CN=…,O=…,C=DK`).
    pub subject: String,
    /// Serial number, hexadecimal, as the daemon shows it.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The Nordic identities the daemon recognised, as it shows them
    /// (`DK CVR 33257872 UUID 8d3fa047-…`, `SE HSA-ID SE2321000016-39KJ`).
    #[serde(default)]
    pub identities: Vec<String>,
}

/// What every call about one certificate carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateContext {
    /// The configured certificate id.
    pub certificate_id: String,
    /// The certificate's plugin settings (`[certificate.settings]`), as JSON.
    #[serde(default)]
    pub settings: Value,
    /// The environment the certificate is for (`production`, `test`, …).
    pub environment: String,
    /// The certificate in use now; `None` for a first issuance. For a certificate set, the
    /// primary role's certificate (the first of `roles`).
    #[serde(default)]
    pub current: Option<CertificateInfo>,
    /// A certificate set's roles as configured, the primary role first (`authentication`,
    /// then e.g. `encryption`, `signing`); empty for a single certificate. Added in 1.3.0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The set's other certificates in use now, by role. Added in 1.3.0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub current_set: BTreeMap<String, CertificateInfo>,
    /// In [`PluginRequest::CsrProfile`] for a set whose keys certvakt makes: the role the
    /// profile is for (the daemon asks once per role). Added in 1.3.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Parameters of [`PluginRequest::Issue`] and [`PluginRequest::Poll`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderContext {
    #[serde(flatten)]
    pub certificate: CertificateContext,
    /// The CSR the daemon made from the plugin's [`CsrProfile`], as PEM (for a set, the
    /// primary role's).
    pub csr_pem: String,
    /// For a set whose keys certvakt makes: the CSRs of the other roles, by role. Added in
    /// 1.3.0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub csr_set: BTreeMap<String, String>,
    /// The plugin's state for this renewal run, as it last returned it (`null` at first).
    #[serde(default)]
    pub state: Value,
}

/// Parameters of [`PluginRequest::Register`], [`PluginRequest::Verify`] and
/// [`PluginRequest::Retire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepContext {
    #[serde(flatten)]
    pub certificate: CertificateContext,
    /// The newly issued certificate, once known (for a set, the primary role's).
    #[serde(default)]
    pub new: Option<CertificateInfo>,
    /// The new set's other certificates, by role. Added in 1.3.0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub new_set: BTreeMap<String, CertificateInfo>,
    /// The plugin's state for this renewal run, as it last returned it.
    #[serde(default)]
    pub state: Value,
}

/// Parameters of [`PluginRequest::CheckIssued`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckIssued {
    #[serde(flatten)]
    pub certificate: CertificateContext,
    /// The new certificate (for a set, the primary role's).
    pub new: CertificateInfo,
    /// The new set's other certificates, by role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub new_set: BTreeMap<String, CertificateInfo>,
    /// Whether the CA made the keys (a PKCS#12 import) rather than certvakt.
    #[serde(default)]
    pub key_from_ca: bool,
}

/// The result of [`PluginRequest::Issue`] or [`PluginRequest::Poll`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IssueOutcome {
    /// The certificate is issued: leaf first, then the intermediates, as PEM.
    Issued { chain_pem: String },
    /// A certificate set is issued: the primary role's chain as in `Issued`, and each other
    /// role's chain (leaf first, PEM) by role. Added in 1.3.0.
    IssuedSet {
        chain_pem: String,
        set: BTreeMap<String, String>,
    },
    /// Not yet: ask again after `poll_after_secs`, or when the operator completes `task`.
    Pending {
        poll_after_secs: u64,
        #[serde(default)]
        task: Option<TaskSpec>,
        #[serde(default)]
        state: Value,
    },
}

/// When the authority suggests renewing a certificate (e.g. ACME Renewal Information, RFC
/// 9773). The daemon renews at a time inside the window, the same for the same certificate
/// id, and at once when the window has begun.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalWindow {
    /// Start of the window, Unix seconds.
    pub start: i64,
    /// End of the window, Unix seconds (after `start`).
    pub end: i64,
    /// When to ask again, in seconds from now (the authority may move the window, e.g.
    /// ahead of a mass revocation).
    pub check_again_secs: u64,
    /// Where the authority explains the window, when it moved it for a reason.
    #[serde(default)]
    pub explanation: Option<String>,
}

/// The result of [`PluginRequest::Register`], [`PluginRequest::Verify`] or
/// [`PluginRequest::Retire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    /// The step is complete.
    Done {
        #[serde(default)]
        state: Value,
    },
    /// Not yet: ask again after `poll_after_secs`, or when the operator completes `task`.
    Pending {
        poll_after_secs: u64,
        #[serde(default)]
        task: Option<TaskSpec>,
        #[serde(default)]
        state: Value,
    },
}

/// Why a plugin method failed, in terms the daemon can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}{}", fault_code.as_ref().map(|c| format!(" (fault code {c})")).unwrap_or_default())]
pub struct PluginError {
    pub kind: ErrorKind,
    /// What went wrong, for the operator; names the authority's own words where it can.
    pub message: String,
    /// The authority's own fault code, when it gave one.
    #[serde(default)]
    pub fault_code: Option<String>,
}

/// What the daemon does about a [`PluginError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Try again later with back-off (network down, authority busy).
    Temporary,
    /// Retrying will not help (refused by the authority, plugin bug).
    Permanent,
    /// The certificate's settings are wrong; fix the configuration.
    Configuration,
    /// A person must act (portal approval, contract); the message says who and what.
    NeedsPerson,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Temporary => "temporary",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Configuration => "configuration",
            ErrorKind::NeedsPerson => "needs a person",
        })
    }
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> PluginError {
        PluginError {
            kind,
            message: message.into(),
            fault_code: None,
        }
    }

    pub fn temporary(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorKind::Temporary, message)
    }

    pub fn permanent(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorKind::Permanent, message)
    }

    pub fn configuration(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorKind::Configuration, message)
    }

    pub fn needs_person(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorKind::NeedsPerson, message)
    }

    pub fn with_fault_code(mut self, code: impl Into<String>) -> PluginError {
        self.fault_code = Some(code.into());
        self
    }
}

/// A host service failing becomes a plugin error: a failed service (I/O, network) is
/// temporary; a service the host does not offer, or a request it refuses, is permanent
/// (retrying the same request will not help).
impl From<HostError> for PluginError {
    fn from(error: HostError) -> PluginError {
        let kind = match error.kind {
            HostErrorKind::Failed => ErrorKind::Temporary,
            HostErrorKind::NotAvailable | HostErrorKind::Invalid => ErrorKind::Permanent,
        };
        PluginError::new(kind, format!("host service: {}", error.message))
    }
}

/// Work for a person: shown by `certvakt tasks`, completed by `certvakt task done` or
/// `certvakt import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// One line: what to do (`Order the renewed FOCES certificate in MitID Erhverv`).
    pub title: String,
    /// Plain text, exact steps: which portal, which menu, what to paste, where to put the
    /// result.
    pub instructions: String,
    /// Files the person needs; the daemon writes them beside the task.
    #[serde(default)]
    pub files: Vec<TaskFile>,
    /// How the task is completed.
    pub completes_by: Completion,
}

/// One file handed to the person doing a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    /// File name, without folders (`request.csr`).
    pub name: String,
    pub content: TaskFileContent,
}

/// What a task file holds: given by the plugin, or filled in by the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum TaskFileContent {
    /// Text the plugin wrote.
    Text(String),
    /// Bytes the plugin made (base64 on the wire).
    Base64(#[serde(with = "base64_bytes")] Vec<u8>),
    /// The run's CSR, PEM (the daemon fills it in).
    Csr,
    /// The new certificate, PEM.
    CertificatePem,
    /// The new certificate, DER.
    CertificateDer,
    /// The certificate being replaced, DER.
    PreviousCertificateDer,
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

// ---------------------------------------------------------------------------------------------
// Plugin → host

plugin_messages! {
    /// A call from a plugin to the host's services, during a plugin call: one variant per
    /// service, declared with its answer.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum HostRequest;
    /// The host's answer to a [`HostRequest`]: the variant named after the request it
    /// answers, or [`HostResponse::Error`].
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum HostResponse;
    /// Answers any request the host could not or would not carry out.
    error Error(HostError);

    /// Write a log line.
    "log" => Log(record: LogRecord) -> Log;
    /// What time is it?
    "now" => Now
        /// Seconds since the Unix epoch.
        -> Now { unix_seconds: i64 };
    /// Read a value of the plugin's state for this certificate.
    "state_get" => StateGet { key: String }
        /// `None` when nothing is stored under the key.
        -> StateGet { value: Option<Value> };
    /// Write (or, with `null`, remove) a value of the plugin's state.
    "state_put" => StatePut { key: String, value: Value }
        /// Written durably.
        -> StatePut;
    /// Open an operator task now (beside any task an outcome returns).
    "open_task" => OpenTask(task: TaskSpec)
        /// The task's id.
        -> OpenTask { task_id: String };
    /// Sign bytes with one of the certificate's keys.
    "sign" => Sign(sign: SignRequest)
        /// The signature (base64 on the wire; ECDSA as DER unless the algorithm is a
        /// `…Fixed` one).
        -> Sign {
            #[serde(with = "base64_bytes")]
            signature: Vec<u8>,
        };
    /// Make an HTTP(S) request, the host holding TLS and the client identity.
    "http" => Http(request: HttpRequest)
        /// Whatever status the server gave.
        -> Http(HttpResponse);
    /// Make (if it does not exist yet) and keep a key for the plugin under `name`, e.g. an ACME
    /// account key; sign with it as [`KeyRef::Plugin`].
    "plugin_key" => PluginKey {
        name: String,
        algorithm: crate::profile::KeyAlgorithm,
    }
        /// The public half (EC: the uncompressed point `04 || x || y`; RSA: the PKCS#1
        /// `RSAPublicKey` DER), and whether it was made just now.
        -> PluginKey {
            #[serde(with = "base64_bytes")]
            public_key: Vec<u8>,
            created: bool,
        };
    /// Answer the ACME http-01 challenge `token` with `key_authorization`: on the host's
    /// responder (`GET /.well-known/acme-challenge/<token>`), or, with `webroot`, as the file
    /// `<webroot>/.well-known/acme-challenge/<token>` that a web server serves.
    "http01_publish" => Http01Publish {
        token: String,
        #[serde(default)]
        key_authorization: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webroot: Option<String>,
    }
        /// The responder (or the web server) answers the token now.
        -> Http01Publish;
    /// Stop answering `token` (on the responder, or in `webroot`).
    "http01_withdraw" => Http01Withdraw {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webroot: Option<String>,
    }
        -> Http01Withdraw;
    /// Run a command the certificate's settings name (e.g. a dns-01 hook), as the daemon runs
    /// its own hooks.
    "run_command" => RunCommand(command: RunCommand)
        /// The command exited 0.
        -> RunCommand;
    /// Read a secret file the certificate's settings name (an ACME EAB key, say): the plugin
    /// process cannot open files itself. Only an absolute path that is a value in the
    /// certificate's `[certificate.settings]` is read.
    "read_secret" => ReadSecret { path: String }
        /// The file's bytes.
        -> ReadSecret {
            #[serde(with = "base64_bytes")]
            bytes: Vec<u8>,
        };
    /// Send a mail the plugin prepared to an authority (an access request to a region, a
    /// note to a CA's support), since the plugin process cannot reach a mail relay. The host
    /// sends it through the operator's relay only when the operator allowed that for this
    /// certificate (`plugin_mail = true`); otherwise it renders the mail as an `.eml` file for
    /// a person to send. The same mail asked again (a retried step) is not sent twice.
    "send_mail" => SendMail(mail: Mail)
        /// Sent, or handed back for a person to send.
        -> SendMail(MailOutcome);
    /// Is this serial number on the certificate revocation list at `url` (a CRL distribution
    /// point, usually plain `http://`)? The host fetches the CRL now and reads it; the plugin
    /// never parses ASN.1. `serial` is hexadecimal, with or without `:` separators, any case.
    /// Added in 1.4.0.
    "crl_status" => CrlStatus { url: String, serial: String }
        /// What the CRL says.
        -> CrlStatus(CrlStatus);
}

/// The answer to [`HostRequest::CrlStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlStatus {
    /// Whether the serial is on the list.
    pub revoked: bool,
    /// When it was revoked, Unix seconds, if it is.
    #[serde(default)]
    pub revoked_at: Option<i64>,
    /// The CRL's issuer, RFC 4514 style.
    pub issuer: String,
    /// The CRL's thisUpdate, Unix seconds.
    pub this_update: i64,
    /// The CRL's nextUpdate, Unix seconds, when it has one.
    #[serde(default)]
    pub next_update: Option<i64>,
}

/// Parameters of [`HostRequest::SendMail`]: a plain-text mail with optional attachments.
///
/// The host checks it before anything is sent or rendered, and refuses it
/// ([`HostErrorKind::Invalid`], naming the rule) when it has more than 10 recipients (`to`
/// and `cc` together), an address that is not a plain `local@domain`, a subject longer than
/// 200 characters or with a line break, a body over 64 KiB, or more than 8 attachments or
/// 2 MiB of them, or an attachment name that is not a plain file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// The recipients, plain `local@domain` addresses (`registrator@region.example`).
    pub to: Vec<String>,
    /// Copies, plain addresses like `to`.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Where answers should go, when not to the sender the operator configured.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// One line.
    pub subject: String,
    /// Plain text.
    pub body: String,
    #[serde(default)]
    pub attachments: Vec<MailAttachment>,
}

/// One file attached to a [`Mail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailAttachment {
    /// File name, without folders (`request.csr`).
    pub name: String,
    /// Its MIME type (`application/pkcs10`, `application/pdf`).
    pub content_type: String,
    /// The file's bytes (base64 on the wire).
    #[serde(with = "base64_bytes")]
    pub bytes: Vec<u8>,
}

/// The answer to [`HostRequest::SendMail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MailOutcome {
    /// Handed to the operator's mail relay (or to the host's outbox, which delivers it): the
    /// mail's `Message-ID`, the same when the same mail is asked again.
    Queued { message_id: String },
    /// Not sent: the operator did not allow this certificate's plugin to send mail, so here is
    /// the mail as an `.eml` file (RFC 5322, the recipients and subject filled in) for a person
    /// to send. Attach it to the task the plugin opens, as a [`TaskFile`] named `file_name`
    /// with [`TaskFileContent::Base64`]`(eml)`, and say in the instructions to send it.
    ForPerson {
        file_name: String,
        #[serde(with = "base64_bytes")]
        eml: Vec<u8>,
    },
}

/// Parameters of [`HostRequest::RunCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCommand {
    /// The program (an absolute path) and its arguments; no shell.
    pub argv: Vec<String>,
    /// Extra environment variables, each named `CERTVAKT_*`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The most it may run; the host caps it below the plugin call's deadline.
    pub timeout_ms: u64,
}

/// One log line from a plugin. The host adds `plugin` and `cert_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub level: LogLevel,
    /// A sentence; never a key, a password or a whole certificate.
    pub message: String,
    /// Structured fields (`order_id`, `fault_code`): lower-case keys of `[a-z0-9_]`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// Severity of a [`LogRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Which of the certificate's keys to use. The plugin never sees a private key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum KeyRef {
    /// The new key of the running renewal.
    Pending,
    /// The key of the certificate in use.
    Current,
    /// The key of the certificate replaced by the last renewal, until it is retired.
    Previous,
    /// A key configured by name for this certificate (e.g. a separate signing key).
    Named(String),
    /// A key the plugin asked the host to keep for it ([`HostRequest::PluginKey`]), e.g. an
    /// ACME account key. The host makes it, keeps it (0600, in the plugin's state) and signs
    /// with it; the plugin only ever sees its public half.
    Plugin(String),
}

/// Signature algorithms the host can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureAlgorithm {
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPssSha256,
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    /// ECDSA P-256 with SHA-256, the signature as fixed-size r‖s (64 bytes): the form XML-DSig
    /// (RFC 6931) and so WS-Security, and JWS, use. The plain variants give DER, as OpenSSL does.
    EcdsaP256Sha256Fixed,
    /// ECDSA P-384 with SHA-384 as fixed-size r‖s (96 bytes).
    EcdsaP384Sha384Fixed,
}

/// Parameters of [`HostRequest::Sign`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    pub key: KeyRef,
    pub algorithm: SignatureAlgorithm,
    /// The message to sign (the host hashes it), base64 on the wire.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// The client certificate an HTTP request presents.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum ClientIdentity {
    /// No client certificate.
    #[default]
    None,
    /// The new certificate and key of the running renewal.
    Pending,
    /// The certificate in use and its key.
    Current,
    /// The certificate replaced by the last renewal, until it is retired.
    Previous,
    /// A client identity configured by name.
    Named(String),
}

/// Parameters of [`HostRequest::Http`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// An `https://` URL (the host may refuse plain `http://`).
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, with = "base64_bytes")]
    pub body: Vec<u8>,
    #[serde(default)]
    pub identity: ClientIdentity,
    /// A named set of trust anchors for the server's certificate; `None` for the host's
    /// default roots.
    #[serde(default)]
    pub trust: Option<String>,
    /// The whole request, connect to last byte; the host caps it.
    pub timeout_ms: u64,
}

impl HttpRequest {
    /// Default timeout of the constructors.
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

    /// A request without body or client certificate.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            identity: ClientIdentity::None,
            trust: None,
            timeout_ms: HttpRequest::DEFAULT_TIMEOUT_MS,
        }
    }

    pub fn get(url: impl Into<String>) -> HttpRequest {
        HttpRequest::new("GET", url)
    }

    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> HttpRequest {
        HttpRequest::new("POST", url).body(body)
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpRequest {
        self.body = body.into();
        self
    }

    pub fn identity(mut self, identity: ClientIdentity) -> HttpRequest {
        self.identity = identity;
        self
    }

    pub fn trust(mut self, anchors: impl Into<String>) -> HttpRequest {
        self.trust = Some(anchors.into());
        self
    }

    pub fn timeout_ms(mut self, timeout_ms: u64) -> HttpRequest {
        self.timeout_ms = timeout_ms;
        self
    }
}

/// The answer to [`HostRequest::Http`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, with = "base64_bytes")]
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a host service did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HostError {
    pub kind: HostErrorKind,
    pub message: String,
}

/// What kind of [`HostError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostErrorKind {
    /// The host does not offer this service (here, or yet).
    NotAvailable,
    /// The request is malformed or not allowed (bad state key, unknown key name).
    Invalid,
    /// The service tried and failed (I/O, network, timeout).
    Failed,
}

impl fmt::Display for HostErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostErrorKind::NotAvailable => "not available",
            HostErrorKind::Invalid => "invalid request",
            HostErrorKind::Failed => "failed",
        })
    }
}

impl HostError {
    pub fn new(kind: HostErrorKind, message: impl Into<String>) -> HostError {
        HostError {
            kind,
            message: message.into(),
        }
    }
}

/// A request that could not be decoded (defined beside the decoder).
pub use crate::wire::DecodeError;

/// Serde for `Vec<u8>` as a base64 string (standard alphabet, padded).
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> CertificateContext {
        CertificateContext {
            roles: Vec::new(),
            current_set: Default::default(),
            role: None,
            certificate_id: "fmk-prod".into(),
            settings: json!({"cvr": "25450442"}),
            environment: "production".into(),
            current: None,
        }
    }

    #[test]
    fn plugin_requests_split_and_join_like_the_serde_form() {
        let requests = [
            PluginRequest::Describe,
            PluginRequest::ValidateSettings(ValidateSettings {
                settings: json!({"a": 1}),
            }),
            PluginRequest::CsrProfile(context()),
            PluginRequest::Issue(OrderContext {
                csr_set: Default::default(),
                certificate: context(),
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
                state: Value::Null,
            }),
            PluginRequest::Retire(StepContext {
                new_set: Default::default(),
                certificate: context(),
                new: None,
                state: json!({"step": 2}),
            }),
            PluginRequest::RenewalWindow(context()),
        ];
        for request in requests {
            let params = request.encode_params().unwrap();
            let whole = serde_json::to_value(&request).unwrap();
            assert_eq!(whole["method"], request.method());
            let params_value: Value = serde_json::from_slice(&params).unwrap();
            assert_eq!(
                whole.get("params").cloned().unwrap_or(Value::Null),
                params_value
            );
            assert_eq!(
                PluginRequest::decode(request.method(), &params).unwrap(),
                request
            );
        }
    }

    #[test]
    fn host_requests_split_and_join_like_the_serde_form() {
        let requests = [
            HostRequest::Now,
            HostRequest::StateGet {
                key: "order".into(),
            },
            HostRequest::StatePut {
                key: "order".into(),
                value: json!({"id": 7}),
            },
            HostRequest::Sign(SignRequest {
                key: KeyRef::Named("seal".into()),
                algorithm: SignatureAlgorithm::EcdsaP256Sha256,
                data: vec![0, 1, 255],
            }),
            HostRequest::Http(HttpRequest::post("https://ca.example/orders", "{}")),
            HostRequest::SendMail(mail()),
        ];
        for request in requests {
            let params = request.encode_params().unwrap();
            let whole = serde_json::to_value(&request).unwrap();
            let params_value: Value = serde_json::from_slice(&params).unwrap();
            assert_eq!(
                whole.get("params").cloned().unwrap_or(Value::Null),
                params_value
            );
            assert_eq!(
                HostRequest::decode(request.method(), &params).unwrap(),
                request
            );
        }
    }

    fn mail() -> Mail {
        Mail {
            to: vec!["registrator@region.example".into()],
            cc: vec!["support@cgi.example".into()],
            reply_to: None,
            subject: "Behörighet till eFrikort".into(),
            body: "Hej,\nvi ansöker om behörighet.\n".into(),
            attachments: vec![MailAttachment {
                name: "request.csr".into(),
                content_type: "application/pkcs10".into(),
                bytes: b"hi".to_vec(),
            }],
        }
    }

    #[test]
    fn a_mail_and_its_outcomes_cross_in_the_documented_form_and_come_back_unchanged() {
        let request = HostRequest::SendMail(mail());
        assert_eq!(request.method(), "send_mail");
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"method": "send_mail", "params": {
                "to": ["registrator@region.example"],
                "cc": ["support@cgi.example"],
                "reply_to": null,
                "subject": "Behörighet till eFrikort",
                "body": "Hej,\nvi ansöker om behörighet.\n",
                "attachments": [{"name": "request.csr", "content_type": "application/pkcs10", "bytes": "aGk="}],
            }})
        );
        // Only `to`, `subject` and `body` must be written.
        let minimal = HostRequest::decode(
            "send_mail",
            br#"{"to": ["a@b.example"], "subject": "s", "body": "b"}"#,
        )
        .unwrap();
        assert_eq!(
            minimal,
            HostRequest::SendMail(Mail {
                to: vec!["a@b.example".into()],
                cc: Vec::new(),
                reply_to: None,
                subject: "s".into(),
                body: "b".into(),
                attachments: Vec::new(),
            })
        );
        let err = HostRequest::decode("send_mail", br#"{"to": ["a@b.example"], "body": "b"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("subject"), "{err}");

        let outcomes = [
            (
                MailOutcome::Queued {
                    message_id: "<m-1@certvakt.example>".into(),
                },
                json!({"response": "send_mail", "result": {"outcome": "queued", "message_id": "<m-1@certvakt.example>"}}),
            ),
            (
                MailOutcome::ForPerson {
                    file_name: "access.eml".into(),
                    eml: b"hi".to_vec(),
                },
                json!({"response": "send_mail", "result": {"outcome": "for_person", "file_name": "access.eml", "eml": "aGk="}}),
            ),
        ];
        for (outcome, wire) in outcomes {
            let response = HostResponse::SendMail(outcome);
            assert_eq!(response.method(), "send_mail");
            assert_eq!(serde_json::to_value(&response).unwrap(), wire);
            assert_eq!(
                serde_json::from_value::<HostResponse>(wire).unwrap(),
                response
            );
        }
    }

    #[test]
    fn wire_form_is_the_documented_one() {
        let response = PluginResponse::Issue(IssueOutcome::Pending {
            poll_after_secs: 60,
            task: None,
            state: json!({"order": "A-1"}),
        });
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({"response": "issue", "result": {"outcome": "pending", "poll_after_secs": 60, "task": null, "state": {"order": "A-1"}}})
        );
        let sign = HostRequest::Sign(SignRequest {
            key: KeyRef::Pending,
            algorithm: SignatureAlgorithm::RsaPssSha256,
            data: b"hi".to_vec(),
        });
        assert_eq!(
            serde_json::to_value(&sign).unwrap(),
            json!({"method": "sign", "params": {"key": {"type": "pending"}, "algorithm": "rsa_pss_sha256", "data": "aGk="}})
        );
        let file = TaskFile {
            name: "request.csr".into(),
            content: TaskFileContent::Csr,
        };
        assert_eq!(
            serde_json::to_value(&file).unwrap(),
            json!({"name": "request.csr", "content": {"type": "csr"}})
        );
    }

    #[test]
    fn unknown_methods_and_bad_params_are_named() {
        let err = PluginRequest::decode("renew", b"{}").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unknown method \"renew\" (this side speaks plugin API {})",
                crate::PLUGIN_API_VERSION
            )
        );
        let err = PluginRequest::decode("issue", b"{\"certificate_id\": 3}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("parameters of \"issue\" do not decode: "),
            "{err}"
        );
        let err = HostRequest::decode("sign", b"not json").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("parameters of \"sign\" do not decode: "),
            "{err}"
        );
        // An answer's name is not a request method.
        assert!(matches!(
            HostRequest::decode("error", b"null"),
            Err(DecodeError::UnknownMethod(_))
        ));
        let err = serde_json::from_str::<SignRequest>(
            r#"{"key":{"type":"current"},"algorithm":"rsa_pkcs1_sha256","data":"@@"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid base64"), "{err}");
    }

    #[test]
    fn errors_read_as_sentences() {
        let err = PluginError::permanent("FMK refused the whitelisting").with_fault_code("E123");
        assert_eq!(
            err.to_string(),
            "permanent: FMK refused the whitelisting (fault code E123)"
        );
        let from_host: PluginError =
            HostError::new(HostErrorKind::Failed, "connection refused").into();
        assert_eq!(from_host.kind, ErrorKind::Temporary);
        assert_eq!(from_host.message, "host service: connection refused");
    }

    /// Found by the `host_to_plugin` fuzz target (kept verbatim): a number too large for an
    /// integer is a float, and serde_json's default float parser did not read back the
    /// shortest form it writes itself, so the settings (and a plugin's state) changed by one
    /// unit in the last place on every trip between daemon and plugin.
    #[test]
    fn a_large_number_in_the_settings_survives_the_trip_unchanged() {
        let input = br#"issue
{"certificate_id":"","csr_pem":"","environment":"p","settings":{"":{"":104377777777777777712}}}"#;
        let (method, params) = input.split_at(5);
        let request = PluginRequest::decode(std::str::from_utf8(method).unwrap(), &params[1..])
            .expect("a valid issue request");
        let again = request.encode_params().unwrap();
        let back = PluginRequest::decode(request.method(), &again).unwrap();
        assert_eq!(back, request);
        // The same for any value on the wire: written, read, written again gives the same.
        let value: Value =
            serde_json::from_str("[104377777777777777712, 1.8043777777777775e24, 0.1, 5e-324]")
                .unwrap();
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            value,
            "{text}"
        );
    }
}
