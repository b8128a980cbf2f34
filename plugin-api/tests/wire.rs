//! The plugin wire form, pinned: every message that crosses the plugin boundary, in the exact
//! bytes it crosses as, recorded per plugin API version in `tests/wire/plugin-api-X.Y.Z.json`.
//!
//! - A message that serialises differently from the file of the current
//!   [`PLUGIN_API_VERSION`] fails, and says to bump the version: the file of a version, once
//!   recorded, is never rewritten (`UPDATE_GOLDEN=1` only records a version that has no file
//!   yet), so regenerating without a bump fails too.
//! - Every line of the file decodes back into its sample (requests from their method name and
//!   parameters, as the ABI passes them), and the files of older versions with the same major
//!   version still decode: a minor version only adds.
//! - Every request and response variant has a sample, so a new one cannot go unrecorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use certvakt_plugin_api::messages::{
    CertificateContext, CertificateInfo, CheckIssued, ClientIdentity, Completion, CrlStatus,
    Description, ErrorKind, HostError, HostErrorKind, HostRequest, HostResponse, HttpRequest,
    HttpResponse, IssueOutcome, KeyRef, LogLevel, LogRecord, Mail, MailAttachment, MailOutcome,
    OrderContext, PluginError, PluginRequest, PluginResponse, RenewalWindow, RunCommand,
    SettingDoc, SettingProblem, SignRequest, SignatureAlgorithm, StepContext, StepOutcome,
    TaskFile, TaskFileContent, TaskSpec, ValidateSettings,
};
use certvakt_plugin_api::profile::{
    CsrProfile, ExtendedKeyUsage, KeyAlgorithm, KeyPolicy, KeyUsage, StringType, SubjectAltName,
    SubjectAttribute,
};
use certvakt_plugin_api::{ABI_VERSION, PLUGIN_API_VERSION};
use serde_json::{Value, json};

const HOW_TO_BUMP: &str = "bump PLUGIN_API_VERSION in plugin-api/src/lib.rs (the minor version \
     for added optional fields or methods, the major version for anything else) and record the \
     new form with UPDATE_GOLDEN=1 cargo test -p certvakt-plugin-api --test wire";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/wire")
}

fn golden_path(version: &str) -> PathBuf {
    golden_dir().join(format!("plugin-api-{version}.json"))
}

// ---------------------------------------------------------------------------------------------
// The samples: at least one of every variant, with the optional parts filled in where that
// shows more of the form.

fn current() -> CertificateInfo {
    CertificateInfo {
        pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        subject: "CN=Apotek system,O=Hjørring Apotek,organizationIdentifier=NTRDK-25450442,C=DK"
            .into(),
        serial: "01:ab".into(),
        not_before: 1_735_689_600,
        not_after: 1_798_761_600,
        identities: vec!["DK CVR 25450442 UUID 8d3fa047-1f1c-4a5e-9c3b-2b8a4c6d7e8f".into()],
    }
}

fn context() -> CertificateContext {
    CertificateContext {
        certificate_id: "fmk-prod".into(),
        settings: json!({"cvr": "25450442", "environment": "production"}),
        environment: "production".into(),
        current: Some(current()),
        roles: Vec::new(),
        current_set: BTreeMap::new(),
        role: None,
    }
}

/// A Norwegian enterprise certificate set: authentication + encryption, and signing.
fn set_context() -> CertificateContext {
    CertificateContext {
        certificate_id: "virksomhet".into(),
        settings: json!({"organisation_number": "100101696"}),
        environment: "test".into(),
        current: Some(current()),
        roles: vec!["authentication".into(), "signing".into()],
        current_set: BTreeMap::from([(
            "signing".into(),
            CertificateInfo {
                serial: "01:8c:bb".into(),
                ..current()
            },
        )]),
        role: None,
    }
}

fn order(state: Value) -> OrderContext {
    OrderContext {
        certificate: CertificateContext {
            current: None,
            ..context()
        },
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
        csr_set: BTreeMap::new(),
        state,
    }
}

fn step(state: Value) -> StepContext {
    StepContext {
        certificate: context(),
        new: Some(CertificateInfo {
            serial: "02:cd".into(),
            ..current()
        }),
        new_set: BTreeMap::new(),
        state,
    }
}

fn task() -> TaskSpec {
    TaskSpec {
        title: "Order the renewed FOCES certificate in MitID Erhverv".into(),
        instructions: "1. Sign in.\n2. Upload request.csr.\n3. certvakt import fmk-prod FILE"
            .into(),
        files: vec![
            TaskFile {
                name: "request.csr".into(),
                content: TaskFileContent::Csr,
            },
            TaskFile {
                name: "readme.txt".into(),
                content: TaskFileContent::Text("Renew before May".into()),
            },
            TaskFile {
                name: "form.bin".into(),
                content: TaskFileContent::Base64(vec![0, 1, 254, 255]),
            },
            TaskFile {
                name: "new.pem".into(),
                content: TaskFileContent::CertificatePem,
            },
            TaskFile {
                name: "new.cer".into(),
                content: TaskFileContent::CertificateDer,
            },
            TaskFile {
                name: "old.cer".into(),
                content: TaskFileContent::PreviousCertificateDer,
            },
        ],
        completes_by: Completion::Import,
    }
}

fn plugin_requests() -> Vec<PluginRequest> {
    vec![
        PluginRequest::Describe,
        PluginRequest::ValidateSettings(ValidateSettings {
            settings: json!({"cvr": "25450442", "key_type": "rsa-3072"}),
        }),
        PluginRequest::CsrProfile(context()),
        PluginRequest::Issue(order(Value::Null)),
        PluginRequest::Poll(order(json!({"order_id": "A-7"}))),
        PluginRequest::Register(step(json!({"registered": false}))),
        PluginRequest::Verify(step(Value::Null)),
        PluginRequest::Retire(StepContext {
            new: None,
            ..step(json!({"step": 2}))
        }),
        PluginRequest::RenewalWindow(context()),
        PluginRequest::CsrProfile(CertificateContext {
            role: Some("signing".into()),
            ..set_context()
        }),
        PluginRequest::Issue(OrderContext {
            certificate: set_context(),
            csr_set: BTreeMap::from([(
                "signing".into(),
                "-----BEGIN CERTIFICATE REQUEST-----\nMIIC\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            )]),
            ..order(Value::Null)
        }),
        PluginRequest::Register(StepContext {
            certificate: set_context(),
            new_set: BTreeMap::from([(
                "signing".into(),
                CertificateInfo {
                    serial: "01:9d".into(),
                    ..current()
                },
            )]),
            ..step(json!({"written": false}))
        }),
        PluginRequest::CheckIssued(CheckIssued {
            certificate: set_context(),
            new: CertificateInfo {
                serial: "01:9c".into(),
                ..current()
            },
            new_set: BTreeMap::from([(
                "signing".into(),
                CertificateInfo {
                    serial: "01:9d".into(),
                    ..current()
                },
            )]),
            key_from_ca: true,
        }),
    ]
}

fn plugin_responses() -> Vec<PluginResponse> {
    vec![
        PluginResponse::Describe(Description {
            name: "dk-fmk".into(),
            version: "0.3.1".into(),
            api_version: PLUGIN_API_VERSION.into(),
            abi_version: ABI_VERSION,
            summary: "FMK: FOCES whitelisting through MitID Erhverv.".into(),
            settings: vec![
                SettingDoc::required("cvr", "The pharmacy's CVR number.").example("\"25450442\""),
                SettingDoc::optional("environment", "\"production\" (default) or \"test\"."),
            ],
            key_policies: vec![KeyPolicy::Rotate],
        }),
        PluginResponse::ValidateSettings(vec![
            SettingProblem::new("cvr", "is required").with_hint("write cvr = \"25450442\""),
            SettingProblem::new("", "settings must be a table"),
        ]),
        PluginResponse::CsrProfile(CsrProfile {
            key: KeyAlgorithm::Rsa3072,
            subject: vec![
                SubjectAttribute {
                    oid: "2.5.4.6".into(),
                    value: "DK".into(),
                    string_type: StringType::Printable,
                },
                SubjectAttribute {
                    oid: "2.5.4.3".into(),
                    value: "Apotek system".into(),
                    string_type: StringType::Utf8,
                },
            ],
            sans: vec![
                SubjectAltName::Dns("apotek.example".into()),
                SubjectAltName::Ip("192.0.2.7".into()),
                SubjectAltName::Email("it@apotek.example".into()),
                SubjectAltName::Uri("https://apotek.example/".into()),
            ],
            key_usage: vec![
                KeyUsage::DigitalSignature,
                KeyUsage::NonRepudiation,
                KeyUsage::KeyEncipherment,
                KeyUsage::DataEncipherment,
                KeyUsage::KeyAgreement,
            ],
            extended_key_usage: vec![
                ExtendedKeyUsage::ServerAuth,
                ExtendedKeyUsage::ClientAuth,
                ExtendedKeyUsage::EmailProtection,
            ],
        }),
        PluginResponse::Issue(IssueOutcome::Pending {
            poll_after_secs: 3600,
            task: Some(task()),
            state: json!({"ordered_at": 1_767_225_600}),
        }),
        PluginResponse::Poll(IssueOutcome::Issued {
            chain_pem: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n".into(),
        }),
        PluginResponse::Register(StepOutcome::Pending {
            poll_after_secs: 60,
            task: Some(TaskSpec {
                files: Vec::new(),
                completes_by: Completion::Confirm,
                ..task()
            }),
            state: json!({"registration": "R-1"}),
        }),
        PluginResponse::Verify(StepOutcome::Done {
            state: json!({"verified": true}),
        }),
        PluginResponse::Retire(StepOutcome::Pending {
            poll_after_secs: 900,
            task: Some(TaskSpec {
                files: Vec::new(),
                completes_by: Completion::Poll,
                ..task()
            }),
            state: Value::Null,
        }),
        PluginResponse::RenewalWindow(Some(RenewalWindow {
            start: 1_790_000_000,
            end: 1_790_086_400,
            check_again_secs: 21_600,
            explanation: Some("https://ca.example/incidents/42".into()),
        })),
        PluginResponse::RenewalWindow(None),
        PluginResponse::Issue(IssueOutcome::IssuedSet {
            chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            set: BTreeMap::from([(
                "signing".into(),
                "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n".into(),
            )]),
        }),
        PluginResponse::CheckIssued(Vec::new()),
        PluginResponse::CheckIssued(vec![
            "the signing certificate lacks the key usage nonRepudiation".into(),
        ]),
        PluginResponse::Error(
            PluginError::new(ErrorKind::Temporary, "FMK did not answer").with_fault_code("E503"),
        ),
        PluginResponse::Error(PluginError::permanent("refused")),
        PluginResponse::Error(PluginError::configuration("cvr is not a CVR number")),
        PluginResponse::Error(PluginError::needs_person(
            "sign the agreement in the portal",
        )),
    ]
}

fn host_requests() -> Vec<HostRequest> {
    vec![
        HostRequest::Log(LogRecord {
            level: LogLevel::Warn,
            message: "order placed".into(),
            fields: [("order_id".to_owned(), "A-7".to_owned())].into(),
        }),
        HostRequest::Log(LogRecord {
            level: LogLevel::Error,
            message: "e".into(),
            fields: Default::default(),
        }),
        HostRequest::Log(LogRecord {
            level: LogLevel::Info,
            message: "i".into(),
            fields: Default::default(),
        }),
        HostRequest::Log(LogRecord {
            level: LogLevel::Debug,
            message: "d".into(),
            fields: Default::default(),
        }),
        HostRequest::Log(LogRecord {
            level: LogLevel::Trace,
            message: "t".into(),
            fields: Default::default(),
        }),
        HostRequest::Now,
        HostRequest::StateGet {
            key: "order".into(),
        },
        HostRequest::StatePut {
            key: "order".into(),
            value: json!({"id": 7, "urls": ["https://ca.example/o/7"]}),
        },
        HostRequest::OpenTask(task()),
        HostRequest::Sign(SignRequest {
            key: KeyRef::Pending,
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            data: b"to be signed".to_vec(),
        }),
        HostRequest::Sign(SignRequest {
            key: KeyRef::Current,
            algorithm: SignatureAlgorithm::RsaPkcs1Sha384,
            data: vec![0],
        }),
        HostRequest::Sign(SignRequest {
            key: KeyRef::Previous,
            algorithm: SignatureAlgorithm::RsaPssSha256,
            data: vec![1],
        }),
        HostRequest::Sign(SignRequest {
            key: KeyRef::Named("seal".into()),
            algorithm: SignatureAlgorithm::EcdsaP256Sha256,
            data: vec![2],
        }),
        HostRequest::Sign(SignRequest {
            key: KeyRef::Plugin("acme-account".into()),
            algorithm: SignatureAlgorithm::EcdsaP384Sha384,
            data: vec![3],
        }),
        HostRequest::Sign(SignRequest {
            key: KeyRef::Plugin("acme-account".into()),
            algorithm: SignatureAlgorithm::EcdsaP256Sha256Fixed,
            data: vec![4],
        }),
        HostRequest::Sign(SignRequest {
            key: KeyRef::Pending,
            algorithm: SignatureAlgorithm::EcdsaP384Sha384Fixed,
            data: vec![5],
        }),
        HostRequest::Http(
            HttpRequest::post("https://ca.example/orders", "{\"csr\":\"…\"}")
                .header("Content-Type", "application/json")
                .identity(ClientIdentity::Current)
                .trust("oces3")
                .timeout_ms(10_000),
        ),
        HostRequest::Http(HttpRequest::get("https://ca.example/directory")),
        HostRequest::Http(
            HttpRequest::get("https://ca.example/a").identity(ClientIdentity::Pending),
        ),
        HostRequest::Http(
            HttpRequest::get("https://ca.example/b").identity(ClientIdentity::Previous),
        ),
        HostRequest::Http(
            HttpRequest::get("https://ca.example/c").identity(ClientIdentity::Named("sts".into())),
        ),
        HostRequest::PluginKey {
            name: "acme-account".into(),
            algorithm: KeyAlgorithm::EcP256,
        },
        HostRequest::PluginKey {
            name: "other".into(),
            algorithm: KeyAlgorithm::Rsa2048,
        },
        HostRequest::PluginKey {
            name: "other".into(),
            algorithm: KeyAlgorithm::Rsa4096,
        },
        HostRequest::PluginKey {
            name: "other".into(),
            algorithm: KeyAlgorithm::EcP384,
        },
        HostRequest::Http01Publish {
            token: "tok_EN-1".into(),
            key_authorization: "tok_EN-1.thumbprint".into(),
            webroot: None,
        },
        HostRequest::Http01Publish {
            token: "tok_EN-2".into(),
            key_authorization: "tok_EN-2.thumbprint".into(),
            webroot: Some("/srv/www".into()),
        },
        HostRequest::Http01Withdraw {
            token: "tok_EN-1".into(),
            webroot: None,
        },
        HostRequest::Http01Withdraw {
            token: "tok_EN-2".into(),
            webroot: Some("/srv/www".into()),
        },
        HostRequest::RunCommand(RunCommand {
            argv: vec!["/usr/local/bin/dns-01".into(), "add".into()],
            env: [("CERTVAKT_TOKEN".to_owned(), "abc".to_owned())].into(),
            timeout_ms: 60_000,
        }),
        HostRequest::ReadSecret {
            path: "/etc/certvakt/acme/eab.key".into(),
        },
        HostRequest::SendMail(Mail {
            to: vec!["efrikort.behorighet@region.example".into()],
            cc: vec!["support@cgi.example".into()],
            reply_to: Some("it@vardcentral.example".into()),
            subject: "Behörighet till eFrikort för SE2321000016-39KJ".into(),
            body: "Hej,\nvi ansöker om behörighet till eFrikort.\n".into(),
            attachments: vec![MailAttachment {
                name: "request.csr".into(),
                content_type: "application/pkcs10".into(),
                bytes: vec![0, 1, 254, 255],
            }],
        }),
        HostRequest::SendMail(Mail {
            to: vec!["support@cgi.example".into()],
            cc: Vec::new(),
            reply_to: None,
            subject: "Nytt certifikat".into(),
            body: "Hej".into(),
            attachments: Vec::new(),
        }),
        HostRequest::CrlStatus {
            url: "http://proxy.fineid.fi/crl/dvvsp5tc.crl".into(),
            serial: "1b:4f:0e:9a:77:03:c1:d2:00:8e:41:5a:6c:90:12:34".into(),
        },
    ]
}

fn host_responses() -> Vec<HostResponse> {
    vec![
        HostResponse::Log,
        HostResponse::Now {
            unix_seconds: 1_767_225_600,
        },
        HostResponse::StateGet {
            value: Some(json!({"id": 7})),
        },
        HostResponse::StateGet { value: None },
        HostResponse::StatePut,
        HostResponse::OpenTask {
            task_id: "fmk-prod-3-1".into(),
        },
        HostResponse::Sign {
            signature: b"signature".to_vec(),
        },
        HostResponse::Http(HttpResponse {
            status: 201,
            headers: vec![("Location".into(), "https://ca.example/o/7".into())],
            body: b"{\"order_id\":\"A-7\"}".to_vec(),
        }),
        HostResponse::PluginKey {
            public_key: vec![4, 1, 2, 3],
            created: true,
        },
        HostResponse::Http01Publish,
        HostResponse::Http01Withdraw,
        HostResponse::RunCommand,
        HostResponse::ReadSecret {
            bytes: b"secret".to_vec(),
        },
        HostResponse::SendMail(MailOutcome::Queued {
            message_id: "<efrikort-1.7f3a@certvakt.vardcentral.example>".into(),
        }),
        HostResponse::SendMail(MailOutcome::ForPerson {
            file_name: "efrikort-behorighet.eml".into(),
            eml: b"To: efrikort.behorighet@region.example\r\nSubject: =?utf-8?q?Beh=C3=B6righet?=\r\n\r\nHej\r\n".to_vec(),
        }),
        HostResponse::CrlStatus(CrlStatus {
            revoked: true,
            revoked_at: Some(1_767_225_000),
            issuer: "CN=DVV Service Certificates - G5R TEST,OU=Sosiaali- ja terveydenhuollon palveluvarmenteet,O=Digi- ja vaestotietovirasto TEST,C=FI".into(),
            this_update: 1_767_225_600,
            next_update: Some(1_767_268_800),
        }),
        HostResponse::CrlStatus(CrlStatus {
            revoked: false,
            revoked_at: None,
            issuer: "CN=DVV Service Certificates - G5R TEST,C=FI".into(),
            this_update: 1_767_225_600,
            next_update: None,
        }),
        HostResponse::Error(HostError::new(
            HostErrorKind::NotAvailable,
            "http01_listen is off",
        )),
        HostResponse::Error(HostError::new(HostErrorKind::Invalid, "bad state key")),
        HostResponse::Error(HostError::new(HostErrorKind::Failed, "connection refused")),
    ]
}

// ---------------------------------------------------------------------------------------------
// The golden file: JSON, one message a line, each in the exact bytes it crosses as (a
// request as its method name and its parameters, the two halves the ABI passes; a response
// whole), so a test compares text, and a diff shows what changed.

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn request_line(method: &str, params: &[u8]) -> Result<String> {
    Ok(format!(
        "{{\"method\":\"{method}\",\"params\":{}}}",
        std::str::from_utf8(params)?
    ))
}

fn section(name: &str, lines: &[String]) -> String {
    format!("  \"{name}\": [\n    {}\n  ]", lines.join(",\n    "))
}

fn render() -> Result<String> {
    let plugin_requests = plugin_requests()
        .iter()
        .map(|r| request_line(r.method(), &r.encode_params()?))
        .collect::<Result<Vec<String>>>()?;
    let plugin_responses = plugin_responses()
        .iter()
        .map(serde_json::to_string)
        .collect::<serde_json::Result<Vec<String>>>()?;
    let host_requests = host_requests()
        .iter()
        .map(|r| request_line(r.method(), &r.encode_params()?))
        .collect::<Result<Vec<String>>>()?;
    let host_responses = host_responses()
        .iter()
        .map(serde_json::to_string)
        .collect::<serde_json::Result<Vec<String>>>()?;
    Ok(format!(
        "{{\n  \"plugin_api_version\": \"{PLUGIN_API_VERSION}\",\n{},\n{},\n{},\n{}\n}}\n",
        section("plugin_requests", &plugin_requests),
        section("plugin_responses", &plugin_responses),
        section("host_requests", &host_requests),
        section("host_responses", &host_responses),
    ))
}

/// `MAJOR.MINOR.PATCH` as numbers; `None` for anything else.
fn version_of(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Every recorded version, from the file names, oldest first.
fn recorded_versions() -> Result<Vec<String>> {
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(golden_dir())? {
        let name = entry?.file_name();
        let version = name
            .to_str()
            .and_then(|n| n.strip_prefix("plugin-api-"))
            .and_then(|n| n.strip_suffix(".json"));
        match version {
            Some(v) if version_of(v).is_some() => versions.push(v.to_owned()),
            _ => {
                return Err(format!(
                    "{name:?} in tests/wire is not a golden file (plugin-api-MAJOR.MINOR.PATCH.json)"
                )
                .into());
            }
        }
    }
    versions.sort_by_key(|v| version_of(v));
    Ok(versions)
}

fn first_difference(recorded: &str, now: &str) -> String {
    let (mut recorded_lines, mut now_lines) = (recorded.lines(), now.lines());
    for number in 1.. {
        match (recorded_lines.next(), now_lines.next()) {
            (None, None) => break,
            (a, b) if a == b => continue,
            (a, b) => {
                return format!(
                    "line {number}:\n  recorded: {}\n  now:      {}",
                    a.unwrap_or("(end of file)"),
                    b.unwrap_or("(end of file)")
                );
            }
        }
    }
    "(the files differ only in line endings)".into()
}

#[test]
fn the_messages_cross_as_the_golden_file_of_this_plugin_api_version_records() -> Result<()> {
    let path = golden_path(PLUGIN_API_VERSION);
    let now = render()?;
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0");
    match std::fs::read_to_string(&path) {
        Ok(recorded) if recorded == now => Ok(()),
        Ok(recorded) => Err(format!(
            "the plugin messages changed: they no longer cross as {} records for plugin API \
             {PLUGIN_API_VERSION}, so a plugin built against {PLUGIN_API_VERSION} would not read \
             them the same: {HOW_TO_BUMP}. (The file of a version already recorded is never \
             rewritten, UPDATE_GOLDEN or not.) First difference, {}",
            path.display(),
            first_difference(&recorded, &now)
        )
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && update => {
            if let Some(newest) = recorded_versions()?.pop() {
                if version_of(&newest) >= version_of(PLUGIN_API_VERSION) {
                    return Err(format!(
                        "PLUGIN_API_VERSION {PLUGIN_API_VERSION} is not newer than the recorded \
                         {newest}: a bump goes up"
                    )
                    .into());
                }
            }
            std::fs::write(&path, &now)?;
            eprintln!(
                "recorded plugin API {PLUGIN_API_VERSION} in {}",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(format!(
            "no golden file for plugin API {PLUGIN_API_VERSION} ({}: {e}): record it with \
             UPDATE_GOLDEN=1 cargo test -p certvakt-plugin-api --test wire",
            path.display()
        )
        .into()),
    }
}

#[test]
fn this_plugin_api_version_is_the_newest_recorded() -> Result<()> {
    let versions = recorded_versions()?;
    assert_eq!(
        versions.last().map(String::as_str),
        Some(PLUGIN_API_VERSION),
        "recorded: {versions:?}"
    );
    Ok(())
}

/// The recorded file of `version`, parsed.
fn recorded(version: &str) -> Result<Value> {
    let path = golden_path(version);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} ({e}); a new version is recorded with UPDATE_GOLDEN=1 cargo test \
             -p certvakt-plugin-api --test wire",
            path.display()
        )
    })?;
    let value: Value = serde_json::from_str(&text)?;
    if value["plugin_api_version"] != version {
        return Err(format!("the golden file of {version} names another version").into());
    }
    Ok(value)
}

fn entries<'a>(file: &'a Value, section: &str) -> &'a [Value] {
    file[section].as_array().map_or(&[], Vec::as_slice)
}

/// A recorded request as the ABI passes it: method name and parameter bytes.
fn halves(entry: &Value) -> Result<(String, Vec<u8>)> {
    let method = entry["method"]
        .as_str()
        .ok_or_else(|| format!("{entry} names no method"))?;
    Ok((method.to_owned(), serde_json::to_vec(&entry["params"])?))
}

#[test]
fn every_recorded_message_decodes_back_into_its_sample() -> Result<()> {
    let file = recorded(PLUGIN_API_VERSION)?;
    let mut decoded = Vec::new();
    for entry in entries(&file, "plugin_requests") {
        let (method, params) = halves(entry)?;
        decoded.push(PluginRequest::decode(&method, &params)?);
    }
    assert_eq!(decoded, plugin_requests());
    let mut decoded = Vec::new();
    for entry in entries(&file, "host_requests") {
        let (method, params) = halves(entry)?;
        decoded.push(HostRequest::decode(&method, &params)?);
    }
    assert_eq!(decoded, host_requests());
    let decoded = entries(&file, "plugin_responses")
        .iter()
        .map(|e| serde_json::from_value(e.clone()))
        .collect::<serde_json::Result<Vec<PluginResponse>>>()?;
    assert_eq!(decoded, plugin_responses());
    let decoded = entries(&file, "host_responses")
        .iter()
        .map(|e| serde_json::from_value(e.clone()))
        .collect::<serde_json::Result<Vec<HostResponse>>>()?;
    assert_eq!(decoded, host_responses());
    Ok(())
}

#[test]
fn messages_of_older_minor_versions_still_decode() -> Result<()> {
    let major = version_of(PLUGIN_API_VERSION).map(|v| v.0);
    for version in recorded_versions()? {
        if version_of(&version).map(|v| v.0) != major {
            continue;
        }
        // A plugin built against an older minor version still loads: the host's version
        // check lets it in.
        certvakt_plugin_api::abi::check_api_version(PLUGIN_API_VERSION, &version)
            .map_err(|e| format!("a plugin built against {version} would be refused: {e}"))?;
        let file = recorded(&version)?;
        let old = |what: &str, e: &dyn std::fmt::Display| {
            format!("plugin API {version}'s {what} no longer decodes: {e}")
        };
        for entry in entries(&file, "plugin_requests") {
            let (method, params) = halves(entry)?;
            PluginRequest::decode(&method, &params)
                .map_err(|e| old(&format!("{method} request"), &e))?;
        }
        for entry in entries(&file, "host_requests") {
            let (method, params) = halves(entry)?;
            HostRequest::decode(&method, &params)
                .map_err(|e| old(&format!("{method} host request"), &e))?;
        }
        for entry in entries(&file, "plugin_responses") {
            serde_json::from_value::<PluginResponse>(entry.clone())
                .map_err(|e| old(&format!("plugin response {entry}"), &e))?;
        }
        for entry in entries(&file, "host_responses") {
            serde_json::from_value::<HostResponse>(entry.clone())
                .map_err(|e| old(&format!("host response {entry}"), &e))?;
        }
    }
    Ok(())
}

#[test]
fn the_samples_cover_every_method_and_every_answer() {
    let set = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<_>>();
    let with_error = |names: &[&'static str]| {
        let mut all = set(names);
        all.insert("error");
        all
    };
    let plugin: Vec<&str> = plugin_requests()
        .iter()
        .map(PluginRequest::method)
        .collect();
    assert_eq!(set(&plugin), set(PluginRequest::METHODS));
    let answers: Vec<&str> = plugin_responses()
        .iter()
        .map(PluginResponse::method)
        .collect();
    assert_eq!(set(&answers), with_error(PluginRequest::METHODS));
    let host: Vec<&str> = host_requests().iter().map(HostRequest::method).collect();
    assert_eq!(set(&host), set(HostRequest::METHODS));
    let answers: Vec<&str> = host_responses().iter().map(HostResponse::method).collect();
    assert_eq!(set(&answers), with_error(HostRequest::METHODS));
}
