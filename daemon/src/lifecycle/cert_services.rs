//! The host services a plugin gets while the renewal engine calls it about one certificate.
//!
//! Contract:
//! - Log, clock and plugin state are [`BasicServices`]'.
//! - `open_task` collects the task and answers the id the engine files it under when the call
//!   returns, whatever the call's outcome ([`TaskIds`]); a task with the title of one already
//!   open is that task, and gets its id.
//! - `sign` signs with a key the plugin names by role — the pending key of the run, the
//!   current live key, the previous version's key — read from disk by the host for this one
//!   signature and dropped (zeroized) right after. The plugin never sees key bytes.
//! - `http` is [`BasicServices`]' too: the host's HTTP client, with the engine's identities.
//! - `read_secret` reads a file for the plugin, whose process may not open files: only an
//!   absolute path that is a value of the certificate's settings, through
//!   [`crate::bounded`] (64 KiB at most), with a warning when any user may read it.
//! - `run_command` runs a command from the certificate's settings (a dns-01 hook) with the
//!   engine's hook runner ([`super::hooks::run`]): an absolute program, no shell, a clean
//!   environment plus the plugin's `CERTVAKT_*` variables, output to the journal, killed with
//!   its process group after the timeout, capped at [`MAX_COMMAND_SECS`].
//! - `send_mail` checks the plugin's mail ([`crate::plugin_host::clean_mail`]) and hands it to
//!   the daemon's [`MailOut`] given with [`CertServices::with_mail`], telling it whether the
//!   certificate's `plugin_mail` allows sending (otherwise it renders the mail for a person).
//!   Without a `MailOut` it answers [`HostErrorKind::NotAvailable`].

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use certvakt_plugin_api::messages::{HostRequest, HostResponse, KeyRef, SignatureAlgorithm};
use certvakt_plugin_api::profile::KeyAlgorithm;
use certvakt_plugin_api::{HostError, HostErrorKind, Mail, MailOutcome, TaskSpec};

use crate::keys::{self, PrivateKey};
use crate::plugin_host::{BasicServices, HostServices, MailOut};

/// The longest a plugin's command may run: well inside the plugin call's deadline.
pub const MAX_COMMAND_SECS: u64 = 90;

/// Where the keys a plugin may name live.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    pub pending: Option<PathBuf>,
    pub current: Option<PathBuf>,
    pub previous: Option<PathBuf>,
    /// Where the plugin's own keys live (its state folder's `keys/`).
    pub plugin_keys: Option<PathBuf>,
}

/// The ids tasks opened during one step get: the next free ones of the certificate's record,
/// or the id of the open task with the same title.
#[derive(Debug, Clone, Default)]
pub struct TaskIds {
    prefix: String,
    next: usize,
    open: Vec<(String, String)>,
}

impl TaskIds {
    /// The ids for tasks opened now for `cert_id`, whose record is `record`.
    pub fn for_record(cert_id: &str, record: &super::Record) -> TaskIds {
        let (_, prefix, next) = super::tasks::next_task_ids(cert_id, record);
        TaskIds {
            prefix,
            next,
            open: record
                .open_tasks()
                .map(|t| (t.title.clone(), t.id.clone()))
                .collect(),
        }
    }

    #[cfg(test)]
    pub(crate) fn assign_for_test(&mut self, title: &str) -> String {
        self.assign(title)
    }

    fn assign(&mut self, title: &str) -> String {
        if let Some((_, id)) = self.open.iter().find(|(t, _)| t == title) {
            return id.clone();
        }
        let id = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        self.open.push((title.to_owned(), id.clone()));
        id
    }
}

/// Services for one plugin call about one certificate.
pub struct CertServices {
    basic: BasicServices,
    keys: KeyFiles,
    /// The certificate's `[certificate.settings]`: the secret files a plugin may have read are
    /// the absolute paths among its values.
    settings: serde_json::Value,
    tasks: Mutex<(TaskIds, Vec<(String, TaskSpec)>)>,
    /// Where the plugin's mail goes, if anywhere.
    mail_out: Option<Arc<dyn MailOut>>,
    /// The certificate's `plugin_mail`: whether the mail may be sent (not only rendered).
    plugin_mail: bool,
}

impl std::fmt::Debug for CertServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertServices")
            .field("basic", &self.basic)
            .field("keys", &self.keys)
            .field("mail_out", &self.mail_out)
            .field("plugin_mail", &self.plugin_mail)
            .finish_non_exhaustive()
    }
}

impl CertServices {
    pub fn new(basic: BasicServices, keys: KeyFiles, ids: TaskIds) -> Self {
        CertServices {
            basic,
            keys,
            settings: serde_json::Value::Null,
            tasks: Mutex::new((ids, Vec::new())),
            mail_out: None,
            plugin_mail: false,
        }
    }

    /// Hands the plugin's mail to `mail_out`, which sends it when `plugin_mail` (the
    /// certificate's key of that name) is true and renders it for a person otherwise.
    pub fn with_mail(mut self, mail_out: Arc<dyn MailOut>, plugin_mail: bool) -> Self {
        self.mail_out = Some(mail_out);
        self.plugin_mail = plugin_mail;
        self
    }

    /// A plugin's mail: checked, then sent or rendered by the [`MailOut`]. See the module
    /// contract.
    fn send_mail(&self, mail: Mail) -> Result<MailOutcome, HostError> {
        let mail = crate::plugin_host::clean_mail(mail)?;
        let Some(mail_out) = &self.mail_out else {
            return Err(HostError::new(
                HostErrorKind::NotAvailable,
                "this certvaktd cannot send mail for plugins here (its mail service is not \
                 running): do what the mail was for by hand",
            ));
        };
        let cert_id = self.basic.cert_id();
        let recipients = mail.to.len() + mail.cc.len();
        // The subject passed clean_mail: one line, no control characters.
        let subject = mail.subject.clone();
        let outcome = mail_out.send(cert_id, self.plugin_mail, mail);
        match &outcome {
            Ok(MailOutcome::Queued { message_id }) => log::info!(
                cert_id = cert_id, message_id = message_id.as_str();
                "the plugin's mail \"{subject}\" to {recipients} recipient(s) is queued"
            ),
            Ok(MailOutcome::ForPerson { file_name, .. }) => log::info!(
                cert_id = cert_id, file = file_name.as_str(), plugin_mail = self.plugin_mail;
                "the plugin's mail \"{subject}\" is handed to a person to send, as {file_name}"
            ),
            Err(e) => log::warn!(
                cert_id = cert_id;
                "the plugin's mail \"{subject}\" was not sent: {e}"
            ),
        }
        outcome
    }

    fn run_command(&self, command: certvakt_plugin_api::RunCommand) -> HostResponse {
        let invalid =
            |message: String| HostResponse::Error(HostError::new(HostErrorKind::Invalid, message));
        if !command.argv.first().is_some_and(|p| p.starts_with('/')) {
            return invalid(format!(
                "{:?} does not start with a program's absolute path",
                command.argv
            ));
        }
        if let Some(key) = command.env.keys().find(|k| {
            !k.starts_with("CERTVAKT_")
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        }) {
            return invalid(format!(
                "environment variable {key:?}: a plugin's command gets CERTVAKT_* variables only"
            ));
        }
        let env = super::hooks::HookEnv {
            cert_id: self.basic.cert_id().to_owned(),
            extra: command.env.into_iter().collect(),
            ..super::hooks::HookEnv::default()
        };
        let timeout = std::time::Duration::from_millis(command.timeout_ms)
            .min(std::time::Duration::from_secs(MAX_COMMAND_SECS))
            .max(std::time::Duration::from_secs(1));
        match super::hooks::run(super::hooks::HookKind::Plugin, &command.argv, &env, timeout) {
            Ok(()) => HostResponse::RunCommand,
            Err(e) => HostResponse::Error(HostError::new(HostErrorKind::Failed, e.to_string())),
        }
    }

    /// Lets the plugin read the secret files `settings` name (see [`HostRequest::ReadSecret`]).
    pub fn with_settings(mut self, settings: serde_json::Value) -> Self {
        self.settings = settings;
        self
    }

    /// A secret file the certificate's settings name, read for the plugin. See the module
    /// contract.
    fn read_secret(&self, path: &str) -> HostResponse {
        let named = path.starts_with('/') && names_path(&self.settings, path);
        if !named {
            return error(
                HostErrorKind::Invalid,
                format!(
                    "{path:?} is not a path in this certificate's [certificate.settings]: a plugin reads only the secret files its settings name"
                ),
            );
        }
        let file = std::path::Path::new(path);
        match crate::bounded::read_secret(file) {
            Ok(bytes) => HostResponse::ReadSecret {
                bytes: bytes.to_vec(),
            },
            Err(e) => error(
                HostErrorKind::Failed,
                format!("cannot read {}", e.sentence(file)),
            ),
        }
    }

    /// The tasks the plugin opened since the last take, with the ids it was given.
    pub fn take_tasks(&self) -> Vec<(String, TaskSpec)> {
        std::mem::take(&mut self.tasks.lock().unwrap_or_else(|p| p.into_inner()).1)
    }

    /// `<plugin state>/keys/<name>.pem`, for a name of `[A-Za-z0-9._-]` not starting with `.`.
    fn plugin_key_path(&self, name: &str) -> Option<PathBuf> {
        let dir = self.keys.plugin_keys.as_ref()?;
        let valid = name.len() <= 64
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        valid.then(|| dir.join(format!("{name}.pem")))
    }

    /// Makes the plugin's key `name` if it does not exist (0600, atomically: a crash leaves
    /// the old file or none, never half a key), and answers its public half. Calls about
    /// several certificates run at once and share keys (an ACME account key): looking and
    /// making happen under one lock, so one key is made and every caller gets that one.
    fn plugin_key(&self, name: &str, algorithm: KeyAlgorithm) -> HostResponse {
        static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let Some(path) = self.plugin_key_path(name) else {
            return error(
                HostErrorKind::Invalid,
                format!("`{name}` is not a valid plugin key name (letters, digits, '.', '_', '-')"),
            );
        };
        let _making = MAKING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let existing = match crate::bounded::read(&path, crate::bounded::KEY_FILE_LIMIT) {
            Ok(bytes) => Some(zeroize::Zeroizing::new(bytes)),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                return error(
                    HostErrorKind::Failed,
                    format!("cannot read plugin key `{name}`: {e}"),
                );
            }
        };
        let (key, created) = match existing {
            Some(bytes) => match PrivateKey::from_bytes(&bytes) {
                Ok(key) => (key, false),
                Err(e) => {
                    return error(
                        HostErrorKind::Failed,
                        format!("plugin key `{name}` cannot be used: {e}"),
                    );
                }
            },
            None => {
                let key = match keys::generate(algorithm) {
                    Ok(key) => key,
                    Err(e) => return error(HostErrorKind::Failed, e.to_string()),
                };
                let written = path
                    .parent()
                    .map_or(Ok(()), |dir| {
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(dir)
                    })
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        crate::store::atomic::write_file(
                            &path,
                            key.to_pkcs8_pem().as_bytes(),
                            &crate::store::FileSpec::mode(0o600),
                        )
                        .map_err(|e| e.to_string())
                    });
                if let Err(e) = written {
                    return error(
                        HostErrorKind::Failed,
                        format!("cannot keep plugin key `{name}`: {e}"),
                    );
                }
                (key, true)
            }
        };
        if key.algorithm() != algorithm {
            return error(
                HostErrorKind::Invalid,
                format!(
                    "plugin key `{name}` exists as {}, not {}",
                    key.algorithm().as_str(),
                    algorithm.as_str()
                ),
            );
        }
        HostResponse::PluginKey {
            public_key: key.public_key_raw(),
            created,
        }
    }

    fn sign(&self, key: &KeyRef, algorithm: SignatureAlgorithm, data: &[u8]) -> HostResponse {
        let path = match key {
            KeyRef::Pending => self.keys.pending.clone(),
            KeyRef::Current => self.keys.current.clone(),
            KeyRef::Previous => self.keys.previous.clone(),
            KeyRef::Named(_) => None,
            KeyRef::Plugin(name) => self.plugin_key_path(name).filter(|p| p.exists()),
        };
        let Some(path) = path else {
            return error(
                HostErrorKind::Invalid,
                format!("there is no {} key to sign with", key_name(key)),
            );
        };
        let key = match crate::bounded::read(&path, crate::bounded::KEY_FILE_LIMIT)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| e.to_string())
            .and_then(|bytes| PrivateKey::from_bytes(&bytes).map_err(|e| e.to_string()))
        {
            Ok(key) => key,
            Err(e) => {
                return error(
                    HostErrorKind::Failed,
                    format!("the {} key cannot be used: {e}", key_name(key)),
                );
            }
        };
        let algorithm = match algorithm {
            SignatureAlgorithm::RsaPkcs1Sha256 => keys::SignatureAlgorithm::RsaPkcs1Sha256,
            SignatureAlgorithm::RsaPkcs1Sha384 => keys::SignatureAlgorithm::RsaPkcs1Sha384,
            SignatureAlgorithm::RsaPssSha256 => keys::SignatureAlgorithm::RsaPssSha256,
            SignatureAlgorithm::EcdsaP256Sha256 => keys::SignatureAlgorithm::EcdsaP256Sha256,
            SignatureAlgorithm::EcdsaP384Sha384 => keys::SignatureAlgorithm::EcdsaP384Sha384,
            SignatureAlgorithm::EcdsaP256Sha256Fixed => {
                keys::SignatureAlgorithm::EcdsaP256Sha256Fixed
            }
            SignatureAlgorithm::EcdsaP384Sha384Fixed => {
                keys::SignatureAlgorithm::EcdsaP384Sha384Fixed
            }
        };
        match keys::sign(&key, algorithm, data) {
            Ok(signature) => HostResponse::Sign { signature },
            Err(e) => error(HostErrorKind::Invalid, e.to_string()),
        }
    }
}

/// Whether `path` is one of the string values in `settings`, at any depth.
fn names_path(settings: &serde_json::Value, path: &str) -> bool {
    match settings {
        serde_json::Value::String(s) => s == path,
        serde_json::Value::Array(items) => items.iter().any(|v| names_path(v, path)),
        serde_json::Value::Object(map) => map.values().any(|v| names_path(v, path)),
        _ => false,
    }
}

fn key_name(key: &KeyRef) -> String {
    match key {
        KeyRef::Pending => "pending (new)".into(),
        KeyRef::Current => "current".into(),
        KeyRef::Previous => "previous".into(),
        KeyRef::Named(name) => format!("named `{name}` (named keys are not configured)"),
        KeyRef::Plugin(name) => format!("plugin key `{name}` (make it first with plugin_key)"),
    }
}

fn error(kind: HostErrorKind, message: String) -> HostResponse {
    HostResponse::Error(HostError::new(kind, message))
}

impl HostServices for CertServices {
    fn handle(&self, request: HostRequest) -> HostResponse {
        match request {
            HostRequest::OpenTask(mut spec) => {
                crate::plugin_host::clean_task(&mut spec);
                let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
                let task_id = tasks.0.assign(&spec.title);
                tasks.1.push((task_id.clone(), spec));
                HostResponse::OpenTask { task_id }
            }
            HostRequest::Sign(sign) => self.sign(&sign.key, sign.algorithm, &sign.data),
            HostRequest::PluginKey { name, algorithm } => self.plugin_key(&name, algorithm),
            HostRequest::RunCommand(command) => self.run_command(command),
            HostRequest::ReadSecret { path } => self.read_secret(&path),
            HostRequest::SendMail(mail) => self
                .send_mail(mail)
                .map_or_else(HostResponse::Error, HostResponse::SendMail),
            other => self.basic.handle(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certvakt_plugin_api::messages::SignRequest;

    #[test]
    fn a_plugin_key_is_made_once_kept_private_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join(".keys");
        let services = CertServices::new(
            BasicServices::new("acme", "web", dir.path().join("web")),
            KeyFiles {
                plugin_keys: Some(keys_dir.clone()),
                ..KeyFiles::default()
            },
            TaskIds::default(),
        );
        let ask = || {
            services.handle(HostRequest::PluginKey {
                name: "account".into(),
                algorithm: KeyAlgorithm::EcP256,
            })
        };
        let HostResponse::PluginKey {
            public_key,
            created,
        } = ask()
        else {
            panic!("no key");
        };
        assert!(created);
        assert_eq!(public_key.len(), 65, "uncompressed P-256 point");
        let HostResponse::PluginKey {
            public_key: again,
            created,
        } = ask()
        else {
            panic!("no key");
        };
        assert!(!created);
        assert_eq!(again, public_key, "the same key the second time");
        let file = keys_dir.join("account.pem");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&file).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        let HostResponse::Sign { signature } = services.handle(HostRequest::Sign(SignRequest {
            key: KeyRef::Plugin("account".into()),
            algorithm: SignatureAlgorithm::EcdsaP256Sha256Fixed,
            data: b"protected.payload".to_vec(),
        })) else {
            panic!("no signature");
        };
        let verifier = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &public_key,
        );
        assert!(verifier.verify(b"protected.payload", &signature).is_ok());

        // Another algorithm under the same name, a bad name, a key never made: refused.
        let other = services.handle(HostRequest::PluginKey {
            name: "account".into(),
            algorithm: KeyAlgorithm::EcP384,
        });
        assert!(matches!(other, HostResponse::Error(_)), "{other:?}");
        let bad = services.handle(HostRequest::PluginKey {
            name: "../escape".into(),
            algorithm: KeyAlgorithm::EcP256,
        });
        assert!(matches!(bad, HostResponse::Error(_)), "{bad:?}");
        let unknown = services.handle(HostRequest::Sign(SignRequest {
            key: KeyRef::Plugin("never-made".into()),
            algorithm: SignatureAlgorithm::EcdsaP256Sha256Fixed,
            data: vec![1],
        }));
        assert!(matches!(unknown, HostResponse::Error(_)), "{unknown:?}");
    }
}

#[cfg(test)]
mod plugin_key_race_tests {
    use super::*;

    /// Several certificates of one plugin renewing at once ask for the same shared key (an
    /// ACME account key) in the same moment: one key is made, and every caller gets its public
    /// half, the one on disk.
    #[test]
    fn calls_that_race_for_a_new_plugin_key_all_get_the_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join(".keys");
        let answers: Vec<(Vec<u8>, bool)> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..8)
                .map(|n| {
                    let keys_dir = keys_dir.clone();
                    let cert = dir.path().join(format!("site-{n}"));
                    scope.spawn(move || {
                        let services = CertServices::new(
                            BasicServices::new("acme", format!("site-{n}"), cert),
                            KeyFiles {
                                plugin_keys: Some(keys_dir),
                                ..KeyFiles::default()
                            },
                            TaskIds::default(),
                        );
                        match services.handle(HostRequest::PluginKey {
                            name: "account".into(),
                            algorithm: KeyAlgorithm::EcP256,
                        }) {
                            HostResponse::PluginKey {
                                public_key,
                                created,
                            } => (public_key, created),
                            other => panic!("call {n}: {other:?}"),
                        }
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let on_disk = PrivateKey::from_bytes(&std::fs::read(keys_dir.join("account.pem")).unwrap())
            .unwrap()
            .public_key_raw();
        assert!(
            answers.iter().all(|(public, _)| *public == on_disk),
            "a caller got a key that is not the one kept"
        );
        assert_eq!(answers.iter().filter(|(_, created)| *created).count(), 1);
    }
}

#[cfg(test)]
mod http01_tests {
    use std::sync::Arc;

    use super::*;
    use crate::plugin_host::challenges::Http01Responder;

    #[test]
    fn http01_publishing_goes_to_the_responder_and_says_when_it_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let publish = HostRequest::Http01Publish {
            token: "tok_en-1".into(),
            key_authorization: "tok_en-1.thumb".into(),
            webroot: None,
        };
        let off = CertServices::new(
            BasicServices::new("acme", "web", dir.path().join("a")),
            KeyFiles::default(),
            TaskIds::default(),
        );
        match off.handle(publish.clone()) {
            HostResponse::Error(e) => assert!(e.message.contains("http01_listen"), "{e:?}"),
            other => panic!("{other:?}"),
        }
        let responder = Arc::new(Http01Responder::new());
        let on = CertServices::new(
            BasicServices::new("acme", "web", dir.path().join("b")).with_http01(responder),
            KeyFiles::default(),
            TaskIds::default(),
        );
        assert_eq!(on.handle(publish), HostResponse::Http01Publish);
        assert_eq!(
            on.handle(HostRequest::Http01Withdraw {
                token: "tok_en-1".into(),
                webroot: None,
            }),
            HostResponse::Http01Withdraw
        );
    }

    #[test]
    fn a_webroot_file_is_written_whole_then_removed_and_odd_tokens_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        let services = CertServices::new(
            BasicServices::new("acme", "web", dir.path().join("state")),
            KeyFiles::default(),
            TaskIds::default(),
        );
        let publish = |token: &str| {
            services.handle(HostRequest::Http01Publish {
                token: token.into(),
                key_authorization: format!("{token}.thumb"),
                webroot: Some(www.display().to_string()),
            })
        };
        assert_eq!(publish("tok_EN-1"), HostResponse::Http01Publish);
        let file = www.join(".well-known/acme-challenge/tok_EN-1");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "tok_EN-1.thumb");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            services.handle(HostRequest::Http01Withdraw {
                token: "tok_EN-1".into(),
                webroot: Some(www.display().to_string()),
            }),
            HostResponse::Http01Withdraw
        );
        assert!(!file.exists());
        match publish("../../etc/x") {
            HostResponse::Error(e) => assert!(e.message.contains("base64url"), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod command_tests {
    use std::collections::BTreeMap;

    use super::*;
    use certvakt_plugin_api::RunCommand;

    fn services(dir: &std::path::Path) -> CertServices {
        CertServices::new(
            BasicServices::new("acme", "web", dir.join("state")),
            KeyFiles::default(),
            TaskIds::default(),
        )
    }

    fn command(argv: &[&str], env: &[(&str, &str)]) -> HostRequest {
        HostRequest::RunCommand(RunCommand {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            timeout_ms: 10_000,
        })
    }

    #[test]
    fn a_plugin_command_runs_like_a_hook_with_its_own_variables() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        let script = format!(
            "echo \"$CERTVAKT_HOOK $CERTVAKT_CERT_ID $CERTVAKT_ACME_TXT_NAME $1\" > {}",
            out.display()
        );
        let run = services(dir.path()).handle(command(
            &["/bin/sh", "-c", &script, "sh", "set"],
            &[("CERTVAKT_ACME_TXT_NAME", "_acme-challenge.apotek.example")],
        ));
        assert_eq!(run, HostResponse::RunCommand);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "plugin_command web _acme-challenge.apotek.example set"
        );
    }

    #[test]
    fn a_plugin_command_fails_with_its_last_line_and_odd_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(dir.path());
        match services.handle(command(
            &["/bin/sh", "-c", "echo zone locked >&2; exit 3"],
            &[],
        )) {
            HostResponse::Error(e) => {
                assert_eq!(e.kind, HostErrorKind::Failed);
                assert!(e.message.contains("zone locked"), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
        for (argv, env) in [
            (&["sh", "-c", "true"][..], &[][..]),
            (&["/bin/true"][..], &[("LD_PRELOAD", "/tmp/x.so")][..]),
        ] {
            match services.handle(command(argv, env)) {
                HostResponse::Error(e) => assert_eq!(e.kind, HostErrorKind::Invalid, "{e:?}"),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod mail_tests {
    use std::sync::Arc;

    use certvakt_plugin_api::MailAttachment;

    use super::*;
    use crate::config::{Config, ManagedCertificate, Origin};
    use crate::lifecycle::{CallToken, Engine, Record};

    /// A [`MailOut`] that keeps what it was given and answers as the notifier would.
    #[derive(Debug, Default)]
    struct Recorder {
        sent: Mutex<Vec<(String, bool, Mail)>>,
    }

    impl MailOut for Recorder {
        fn send(&self, cert_id: &str, allowed: bool, mail: Mail) -> Result<MailOutcome, HostError> {
            let mut sent = self.sent.lock().unwrap();
            sent.push((cert_id.to_owned(), allowed, mail));
            Ok(if allowed {
                MailOutcome::Queued {
                    message_id: format!("<{}@certvakt.test>", sent.len()),
                }
            } else {
                MailOutcome::ForPerson {
                    file_name: "mail.eml".into(),
                    eml: b"To: x\r\n\r\nbody".to_vec(),
                }
            })
        }
    }

    fn mail() -> Mail {
        Mail {
            to: vec!["efrikort.behorighet@region.example".into()],
            cc: vec!["support@cgi.example".into()],
            reply_to: None,
            subject: "Behörighet till eFrikort".into(),
            body: "Hej,\r\nvi ansöker om behörighet.\u{1b}\n".into(),
            attachments: vec![MailAttachment {
                name: "request.csr".into(),
                content_type: "application/pkcs10".into(),
                bytes: vec![1, 2, 3],
            }],
        }
    }

    fn certificate(id: &str, plugin_mail: bool) -> ManagedCertificate {
        let mut cert = ManagedCertificate::new(
            id,
            format!("/etc/certvakt/{id}/cert.pem").into(),
            "manual",
            Origin {
                file: "/etc/certvakt/certvakt.toml".into(),
                line: 1,
            },
        );
        cert.renewal.plugin_mail = plugin_mail;
        cert
    }

    /// The renewal engine's services for one step of `cert`, as a step gets them.
    fn services_of(engine: &Engine, cert: &ManagedCertificate) -> Arc<CertServices> {
        let (released, _) = tokio::sync::mpsc::unbounded_channel();
        let token = Arc::new(CallToken {
            id: cert.id.clone(),
            released,
        });
        engine
            .core
            .services(cert, &cert.plugin, &Record::default(), &token)
            .unwrap()
    }

    fn engine(state_dir: &std::path::Path, certificates: Vec<ManagedCertificate>) -> Engine {
        let mut config = Config::defaults();
        config.daemon.state_dir = state_dir.to_owned();
        config.certificates = certificates;
        Engine::new(
            Arc::new(config),
            Arc::default(),
            Arc::new(crate::metrics::Metrics::new(0).unwrap()),
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_plugins_mail_goes_to_the_mail_out_allowed_as_its_certificate_says() {
        let dir = tempfile::tempdir().unwrap();
        let (allowed, refused) = (certificate("efrikort", true), certificate("siths", false));
        let mut engine = engine(dir.path(), vec![allowed.clone(), refused.clone()]);
        let recorder = Arc::new(Recorder::default());
        engine.set_mail_out(recorder.clone());

        let answer = services_of(&engine, &allowed).handle(HostRequest::SendMail(mail()));
        assert_eq!(
            answer,
            HostResponse::SendMail(MailOutcome::Queued {
                message_id: "<1@certvakt.test>".into()
            })
        );
        let answer = services_of(&engine, &refused).handle(HostRequest::SendMail(mail()));
        assert!(
            matches!(
                answer,
                HostResponse::SendMail(MailOutcome::ForPerson { .. })
            ),
            "{answer:?}"
        );

        let sent = recorder.sent.lock().unwrap().clone();
        let routed: Vec<(&str, bool)> = sent.iter().map(|(id, a, _)| (id.as_str(), *a)).collect();
        assert_eq!(routed, [("efrikort", true), ("siths", false)]);
        // What reached the MailOut went through clean_mail.
        assert_eq!(sent[0].2.body, "Hej,\nvi ansöker om behörighet.\\u{1b}\n");
    }

    #[test]
    fn a_mail_breaking_a_rule_never_reaches_the_mail_out() {
        let dir = tempfile::tempdir().unwrap();
        let cert = certificate("efrikort", true);
        let mut engine = engine(dir.path(), vec![cert.clone()]);
        let recorder = Arc::new(Recorder::default());
        engine.set_mail_out(recorder.clone());
        let injected = Mail {
            subject: "Access\r\nBcc: everyone@evil.example".into(),
            ..mail()
        };
        match services_of(&engine, &cert).handle(HostRequest::SendMail(injected)) {
            HostResponse::Error(e) => {
                assert_eq!(e.kind, HostErrorKind::Invalid);
                assert!(e.message.contains("line break"), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(recorder.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn without_a_mail_out_a_plugins_mail_is_not_available() {
        let dir = tempfile::tempdir().unwrap();
        let cert = certificate("efrikort", true);
        let engine = engine(dir.path(), vec![cert.clone()]);
        match services_of(&engine, &cert).handle(HostRequest::SendMail(mail())) {
            HostResponse::Error(e) => {
                assert_eq!(e.kind, HostErrorKind::NotAvailable);
                assert!(e.message.contains("cannot send mail"), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
