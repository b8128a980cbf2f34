//! [`BasicServices`]: the host services a plugin gets today.
//!
//! Contract:
//! - One `BasicServices` serves the calls of one plugin about one certificate.
//! - `log` goes through the `log` crate (target `certvakt::plugin`) with `plugin` and
//!   `cert_id` fields set by the host, plus the plugin's own fields when their keys are
//!   `[a-z0-9_]` (at most 16, and never `plugin` or `cert_id`, so a plugin cannot pose as
//!   another); messages are capped at 2 KiB.
//! - `now` is the system clock, Unix seconds.
//! - `state_get`/`state_put` keep one JSON file per key, `<state_dir>/<key>.json`, with keys
//!   of `[A-Za-z0-9._-]` not starting with `.` (so a key can never name a path elsewhere or a
//!   temporary file). A put is atomic and durable: temporary file (mode 0600), fsync, rename,
//!   fsync of the folder; `null` removes the key. Values are at most 1 MiB.
//! - `open_task` keeps the task in memory ([`BasicServices::tasks`]) and returns an id
//!   `<cert_id>.<n>`; the renewal engine takes them from there.
//! - `http` is carried out by the [`HttpService`] given with [`BasicServices::with_http`]
//!   (TLS, client identities and trust sets are its business; see [`super::http`]), for this
//!   plugin and certificate. Without one it answers [`HostErrorKind::NotAvailable`].
//! - `sign` and `plugin_key` answer [`HostErrorKind::NotAvailable`]: keys are the renewal
//!   engine's services (`lifecycle::cert_services`), which wrap these. So does `send_mail`:
//!   whether a plugin may send mail is decided per certificate, by those services.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use certvakt_plugin_api::messages::{HostRequest, HostResponse, LogRecord};
use certvakt_plugin_api::{HostError, HostErrorKind, LogLevel, TaskSpec};
use serde_json::Value;

use super::HostServices;
use super::http::HttpService;

/// Largest state value a plugin may store.
pub const MAX_STATE_BYTES: usize = 1 << 20;
const MAX_MESSAGE_BYTES: usize = 2048;
const MAX_FIELDS: usize = 16;

/// A task a plugin opened through the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedTask {
    pub id: String,
    pub spec: TaskSpec,
}

/// Host services for one plugin and one certificate.
#[derive(Debug)]
pub struct BasicServices {
    plugin: String,
    cert_id: String,
    state_dir: PathBuf,
    tasks: Mutex<Vec<OpenedTask>>,
    next_task: AtomicU64,
    http: Option<Arc<HttpService>>,
    http01: Option<Arc<super::challenges::Http01Responder>>,
    /// Held for as long as these services live: a caller that hands out a token learns that
    /// every call holding these services has returned when the last holder drops it.
    token: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl BasicServices {
    /// Services for `plugin`'s calls about `cert_id`, keeping its state in `state_dir`
    /// (created, mode 0700, on the first write).
    pub fn new(
        plugin: impl Into<String>,
        cert_id: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> BasicServices {
        BasicServices {
            plugin: plugin.into(),
            cert_id: cert_id.into(),
            state_dir: state_dir.into(),
            tasks: Mutex::new(Vec::new()),
            next_task: AtomicU64::new(1),
            http: None,
            http01: None,
            token: None,
        }
    }

    /// Answers the plugin's HTTP requests with `http` (shared by all services of the daemon).
    pub fn with_http(mut self, http: Arc<HttpService>) -> BasicServices {
        self.http = Some(http);
        self
    }

    /// Holds `token` for as long as these services live (see the field).
    pub fn with_token(mut self, token: Arc<dyn std::any::Any + Send + Sync>) -> BasicServices {
        self.token = Some(token);
        self
    }

    /// Answers http-01 publish/withdraw with `responder`.
    pub fn with_http01(
        mut self,
        responder: Arc<super::challenges::Http01Responder>,
    ) -> BasicServices {
        self.http01 = Some(responder);
        self
    }

    /// The certificate these services are for.
    pub fn cert_id(&self) -> &str {
        &self.cert_id
    }

    /// Every task opened so far.
    pub fn tasks(&self) -> Vec<OpenedTask> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the tasks opened so far, leaving none.
    pub fn take_tasks(&self) -> Vec<OpenedTask> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn log(&self, record: LogRecord) {
        let level = match record.level {
            LogLevel::Error => log::Level::Error,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Info => log::Level::Info,
            LogLevel::Debug => log::Level::Debug,
            LogLevel::Trace => log::Level::Trace,
        };
        if level > log::max_level() {
            return;
        }
        // Plugin text reaches the journal and terminals: no control characters (a newline and
        // `<0>` would forge a line of another priority on stderr).
        let values: Vec<(String, String)> = record
            .fields
            .iter()
            .filter(|(key, _)| valid_field_key(key))
            .take(MAX_FIELDS)
            .map(|(key, value)| (key.clone(), super::sanitise(value)))
            .collect();
        let mut fields: Vec<(&str, &str)> =
            vec![("plugin", &self.plugin), ("cert_id", &self.cert_id)];
        fields.extend(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let message = super::sanitise(truncate(&record.message, MAX_MESSAGE_BYTES));
        log::logger().log(
            &log::Record::builder()
                .level(level)
                .target("certvakt::plugin")
                .key_values(&fields)
                .args(format_args!("{message}"))
                .build(),
        );
    }

    fn open_task(&self, mut spec: TaskSpec) -> String {
        super::clean_task(&mut spec);
        let id = format!(
            "{}.{}",
            self.cert_id,
            self.next_task.fetch_add(1, Ordering::Relaxed)
        );
        log::info!(
            plugin = self.plugin.as_str(), cert_id = self.cert_id.as_str(), task_id = id.as_str();
            "plugin opened an operator task: {}", spec.title
        );
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(OpenedTask {
                id: id.clone(),
                spec,
            });
        id
    }

    fn state_path(&self, key: &str) -> Result<PathBuf, HostError> {
        let valid = !key.is_empty()
            && key.len() <= 128
            && !key.starts_with('.')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(HostError::new(
                HostErrorKind::Invalid,
                format!(
                    "state key {key:?} is not allowed: use 1 to 128 of A-Z a-z 0-9 . _ - , not starting with '.'"
                ),
            ));
        }
        Ok(self.state_dir.join(format!("{key}.json")))
    }

    fn state_get(&self, key: &str) -> Result<Option<Value>, HostError> {
        let path = self.state_path(key)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(&path, "cannot read", &e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            HostError::new(
                HostErrorKind::Failed,
                format!("state file {} is not JSON: {e}", path.display()),
            )
        })
    }

    fn state_put(&self, key: &str, value: &Value) -> Result<(), HostError> {
        let path = self.state_path(key)?;
        if value.is_null() {
            return match std::fs::remove_file(&path) {
                Ok(()) => sync_dir(&self.state_dir)
                    .map_err(|e| failed(&self.state_dir, "cannot sync", &e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(failed(&path, "cannot remove", &e)),
            };
        }
        let bytes = serde_json::to_vec(value)
            .map_err(|e| HostError::new(HostErrorKind::Invalid, format!("cannot encode: {e}")))?;
        if bytes.len() > MAX_STATE_BYTES {
            return Err(HostError::new(
                HostErrorKind::Invalid,
                format!(
                    "state value {key:?} is {} bytes; at most {MAX_STATE_BYTES} are kept",
                    bytes.len()
                ),
            ));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.state_dir)
            .map_err(|e| failed(&self.state_dir, "cannot create", &e))?;
        write_atomically(&self.state_dir, &path, key, &bytes)
    }
}

impl HostServices for BasicServices {
    fn handle(&self, request: HostRequest) -> HostResponse {
        let answer = match request {
            HostRequest::Log(record) => {
                self.log(record);
                Ok(HostResponse::Log)
            }
            HostRequest::Now => Ok(HostResponse::Now {
                unix_seconds: crate::now_unix(),
            }),
            HostRequest::StateGet { key } => self
                .state_get(&key)
                .map(|value| HostResponse::StateGet { value }),
            HostRequest::StatePut { key, value } => self
                .state_put(&key, &value)
                .map(|()| HostResponse::StatePut),
            HostRequest::OpenTask(spec) => Ok(HostResponse::OpenTask {
                task_id: self.open_task(spec),
            }),
            HostRequest::Http01Publish {
                token,
                key_authorization,
                webroot: Some(webroot),
            } => super::challenges::write_webroot(&webroot, &token, &key_authorization)
                .map(|()| HostResponse::Http01Publish)
                .map_err(|e| HostError::new(HostErrorKind::Failed, e)),
            HostRequest::Http01Publish {
                token,
                key_authorization,
                webroot: None,
            } => match &self.http01 {
                Some(responder) => responder
                    .publish(&token, &key_authorization)
                    .map(|()| HostResponse::Http01Publish)
                    .map_err(|e| HostError::new(HostErrorKind::Invalid, e)),
                None => Err(HostError::new(
                    HostErrorKind::NotAvailable,
                    "the http-01 responder is off: set [daemon] http01_listen (e.g. \"0.0.0.0:80\")",
                )),
            },
            HostRequest::Http01Withdraw {
                token,
                webroot: Some(webroot),
            } => super::challenges::remove_webroot(&webroot, &token)
                .map(|()| HostResponse::Http01Withdraw)
                .map_err(|e| HostError::new(HostErrorKind::Failed, e)),
            HostRequest::Http01Withdraw {
                token,
                webroot: None,
            } => {
                if let Some(responder) = &self.http01 {
                    responder.withdraw(&token);
                }
                Ok(HostResponse::Http01Withdraw)
            }
            HostRequest::RunCommand(_) => Err(HostError::new(
                HostErrorKind::NotAvailable,
                "commands are not run here: the renewal engine's services run them",
            )),
            HostRequest::ReadSecret { .. } => Err(HostError::new(
                HostErrorKind::NotAvailable,
                "secret files are not read here: the renewal engine's services read them",
            )),
            HostRequest::SendMail(_) => Err(HostError::new(
                HostErrorKind::NotAvailable,
                "mail is not sent here: the daemon sends a plugin's mail only during a renewal \
                 step of a certificate whose plugin_mail allows it",
            )),
            HostRequest::Sign(_) | HostRequest::PluginKey { .. } => Err(HostError::new(
                HostErrorKind::NotAvailable,
                "keys are not available here: the renewal engine's services offer them",
            )),
            HostRequest::CrlStatus { url, serial } => match &self.http {
                Some(http) => http
                    .crl_status(&self.plugin, &self.cert_id, &url, &serial)
                    .map(HostResponse::CrlStatus),
                None => Err(HostError::new(
                    HostErrorKind::NotAvailable,
                    "CRLs are not fetched here: the renewal engine's services offer it",
                )),
            },
            HostRequest::Http(request) => match &self.http {
                Some(http) => http
                    .handle(&self.plugin, &self.cert_id, request)
                    .map(HostResponse::Http),
                None => Err(HostError::new(
                    HostErrorKind::NotAvailable,
                    "HTTP is not available here: the renewal engine's services offer it",
                )),
            },
        };
        answer.unwrap_or_else(HostResponse::Error)
    }
}

/// Temporary file beside the target, fsync, rename over it, fsync the folder. The temporary
/// name starts with `.`, which no key may, and is unique per write, so concurrent writers
/// never share one.
fn write_atomically(dir: &Path, path: &Path, key: &str, bytes: &[u8]) -> Result<(), HostError> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{key}.{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(failed(path, "cannot write", &e));
    }
    sync_dir(dir).map_err(|e| failed(dir, "cannot sync", &e))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn failed(path: &Path, what: &str, error: &std::io::Error) -> HostError {
    HostError::new(
        HostErrorKind::Failed,
        format!("{what} {}: {error}", path.display()),
    )
}

fn valid_field_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 32
        && key != "plugin"
        && key != "cert_id"
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// At most `max` bytes, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use certvakt_plugin_api::{Completion, HttpRequest, KeyRef, SignatureAlgorithm};
    use std::os::unix::fs::PermissionsExt;

    fn services(dir: &Path) -> BasicServices {
        BasicServices::new("example", "apotek-prod", dir.join("state"))
    }

    #[test]
    fn state_is_kept_in_private_files_and_removed_by_null() {
        let temp = tempfile::tempdir().unwrap();
        let services = services(temp.path());
        let get = |key: &str| services.handle(HostRequest::StateGet { key: key.into() });
        assert_eq!(get("order"), HostResponse::StateGet { value: None });

        let put = HostRequest::StatePut {
            key: "order".into(),
            value: serde_json::json!({"id": "A-7"}),
        };
        assert_eq!(services.handle(put), HostResponse::StatePut);
        let file = temp.path().join("state/order.json");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), r#"{"id":"A-7"}"#);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&temp.path().join("state")), 0o700);
        assert_eq!(
            get("order"),
            HostResponse::StateGet {
                value: Some(serde_json::json!({"id": "A-7"}))
            }
        );

        let remove = HostRequest::StatePut {
            key: "order".into(),
            value: Value::Null,
        };
        assert_eq!(services.handle(remove), HostResponse::StatePut);
        assert!(!file.exists());
        let leftovers: Vec<_> = std::fs::read_dir(temp.path().join("state"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn state_keys_cannot_leave_the_folder() {
        let temp = tempfile::tempdir().unwrap();
        let services = services(temp.path());
        for key in ["../escape", "a/b", ".hidden", "", "ø"] {
            let answer = services.handle(HostRequest::StatePut {
                key: key.into(),
                value: serde_json::json!(1),
            });
            let HostResponse::Error(error) = answer else {
                panic!("{key:?} was accepted");
            };
            assert_eq!(error.kind, HostErrorKind::Invalid, "{key:?}");
        }
        assert!(!temp.path().join("state").exists());
        assert!(!temp.path().join("escape.json").exists());
    }

    #[test]
    fn tasks_are_kept_and_numbered() {
        let temp = tempfile::tempdir().unwrap();
        let services = services(temp.path());
        let spec = TaskSpec {
            title: "Approve".into(),
            instructions: "Click approve.".into(),
            files: vec![],
            completes_by: Completion::Confirm,
        };
        for expected in ["apotek-prod.1", "apotek-prod.2"] {
            assert_eq!(
                services.handle(HostRequest::OpenTask(spec.clone())),
                HostResponse::OpenTask {
                    task_id: expected.into()
                }
            );
        }
        assert_eq!(services.take_tasks().len(), 2);
        assert!(services.tasks().is_empty());
    }

    #[test]
    fn signing_and_http_say_they_are_not_available_yet() {
        let temp = tempfile::tempdir().unwrap();
        let services = services(temp.path());
        let sign = HostRequest::Sign(certvakt_plugin_api::messages::SignRequest {
            key: KeyRef::Pending,
            algorithm: SignatureAlgorithm::EcdsaP256Sha256,
            data: vec![1],
        });
        let http = HostRequest::Http(HttpRequest::get("https://example.test/"));
        for request in [sign, http] {
            let HostResponse::Error(error) = services.handle(request) else {
                panic!("expected an error");
            };
            assert_eq!(error.kind, HostErrorKind::NotAvailable);
            assert!(error.message.contains("not available"), "{}", error.message);
        }
    }

    #[test]
    fn mail_is_refused_without_a_certificate() {
        let temp = tempfile::tempdir().unwrap();
        let mail = certvakt_plugin_api::Mail {
            to: vec!["registrator@region.example".into()],
            cc: Vec::new(),
            reply_to: None,
            subject: "Access".into(),
            body: "Hello".into(),
            attachments: Vec::new(),
        };
        let HostResponse::Error(error) = services(temp.path()).handle(HostRequest::SendMail(mail))
        else {
            panic!("expected an error");
        };
        assert_eq!(error.kind, HostErrorKind::NotAvailable);
        assert!(
            error.message.starts_with("mail is not sent here"),
            "{error:?}"
        );
    }

    #[test]
    fn now_is_the_system_clock() {
        let temp = tempfile::tempdir().unwrap();
        let before = crate::now_unix();
        let HostResponse::Now { unix_seconds } = services(temp.path()).handle(HostRequest::Now)
        else {
            panic!("expected now");
        };
        assert!(unix_seconds >= before && unix_seconds <= crate::now_unix());
    }

    #[test]
    fn plugin_log_fields_are_filtered() {
        assert!(valid_field_key("order_id"));
        assert!(!valid_field_key("cert_id"));
        assert!(!valid_field_key("PLUGIN"));
        assert!(!valid_field_key("a b"));
        assert_eq!(truncate("æøå", 3), "æ");
    }
}
