//! [`Host`]: what a plugin method may ask of the daemon while it runs.
//!
//! Contract:
//! - A `Host` is only valid during the plugin call it was handed to; it cannot be kept.
//! - Every method is one [`HostRequest`] encoded as JSON, sent through the host table, and
//!   one [`HostResponse`] decoded back; a host error, an answer that does not decode, or an
//!   answer to another method becomes a [`HostError`].
//! - Logging never fails the caller: a log line the host cannot take is dropped.
//!
//! A plugin has its own copy of std, tokio and `log` (it is a separate shared library), so
//! `log::info!` inside a plugin goes nowhere and a tokio `Handle` is not found: log through
//! [`Host::log`], and reach the network only through [`Host::http`] (and mail through
//! [`Host::send_mail`]).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::abi::HostTable;
use crate::messages::{
    CrlStatus, HostError, HostErrorKind, HostRequest, HostResponse, HttpRequest, HttpResponse,
    KeyRef, LogLevel, LogRecord, Mail, MailOutcome, SignRequest, SignatureAlgorithm, TaskSpec,
};

/// The daemon's services, for the duration of one plugin call.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    table: &'a HostTable,
}

impl<'a> Host<'a> {
    /// A handle over a host table: one the host passed to this call, or one built by
    /// [`LocalHostTable::new`](crate::abi::LocalHostTable::new) (as [`crate::testing::FakeHost`] does).
    pub fn new(table: &'a HostTable) -> Host<'a> {
        Host { table }
    }

    /// Sends any host request and returns the host's answer, errors included as `Err`.
    pub fn request(&self, request: &HostRequest) -> Result<HostResponse, HostError> {
        let params = request.encode_params().map_err(|e| {
            HostError::new(
                HostErrorKind::Invalid,
                format!("cannot encode {}: {e}", request.method()),
            )
        })?;
        let answer = self.table.call(request.method(), &params);
        let response: HostResponse = serde_json::from_slice(&answer).map_err(|e| {
            HostError::new(
                HostErrorKind::Failed,
                format!(
                    "the host's answer to {} does not decode: {e}",
                    request.method()
                ),
            )
        })?;
        match response {
            HostResponse::Error(error) => Err(error),
            response if response.method() == request.method() => Ok(response),
            other => Err(HostError::new(
                HostErrorKind::Failed,
                format!(
                    "the host answered {} to a {} request",
                    other.method(),
                    request.method()
                ),
            )),
        }
    }

    /// Writes a log line; the host adds the plugin's name and the certificate id.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.log_with(level, message, &[]);
    }

    /// Writes a log line with structured fields (keys of `[a-z0-9_]`).
    pub fn log_with(&self, level: LogLevel, message: impl Into<String>, fields: &[(&str, &str)]) {
        let fields: BTreeMap<String, String> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let record = LogRecord {
            level,
            message: message.into(),
            fields,
        };
        // A log line is not worth failing a renewal over.
        let _ = self.request(&HostRequest::Log(record));
    }

    pub fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message);
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message);
    }

    /// The host's clock, in seconds since the Unix epoch (fakeable in tests, unlike
    /// `SystemTime::now`).
    pub fn now(&self) -> Result<i64, HostError> {
        match self.request(&HostRequest::Now)? {
            HostResponse::Now { unix_seconds } => Ok(unix_seconds),
            other => Err(unexpected(&other)),
        }
    }

    /// A value the plugin stored for this certificate, if any. Keys are `[A-Za-z0-9._-]`.
    pub fn state_get(&self, key: &str) -> Result<Option<Value>, HostError> {
        match self.request(&HostRequest::StateGet { key: key.into() })? {
            HostResponse::StateGet { value } => Ok(value),
            other => Err(unexpected(&other)),
        }
    }

    /// Stores a value durably for this certificate; `Value::Null` removes it.
    pub fn state_put(&self, key: &str, value: Value) -> Result<(), HostError> {
        match self.request(&HostRequest::StatePut {
            key: key.into(),
            value,
        })? {
            HostResponse::StatePut => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Opens an operator task now and returns its id. (To pause a step until a person acts,
    /// return the task in a `Pending` outcome instead.)
    pub fn open_task(&self, task: TaskSpec) -> Result<String, HostError> {
        match self.request(&HostRequest::OpenTask(task))? {
            HostResponse::OpenTask { task_id } => Ok(task_id),
            other => Err(unexpected(&other)),
        }
    }

    /// Makes (the first time) and keeps a key for this plugin under `name`, e.g. an ACME
    /// account key; returns its public half and whether it was made now. Sign with it through
    /// [`Host::sign`] and [`KeyRef::Plugin`].
    pub fn plugin_key(
        &self,
        name: &str,
        algorithm: crate::profile::KeyAlgorithm,
    ) -> Result<(Vec<u8>, bool), HostError> {
        let request = HostRequest::PluginKey {
            name: name.into(),
            algorithm,
        };
        match self.request(&request)? {
            HostResponse::PluginKey {
                public_key,
                created,
            } => Ok((public_key, created)),
            other => Err(unexpected(&other)),
        }
    }

    /// Has the host answer the ACME http-01 challenge `token`: on its responder
    /// (`GET /.well-known/acme-challenge/<token>` on `[daemon] http01_listen`), or, with
    /// `webroot`, as the file `<webroot>/.well-known/acme-challenge/<token>` (0644).
    pub fn http01_publish(
        &self,
        token: &str,
        key_authorization: &str,
        webroot: Option<&str>,
    ) -> Result<(), HostError> {
        let request = HostRequest::Http01Publish {
            token: token.into(),
            key_authorization: key_authorization.into(),
            webroot: webroot.map(str::to_owned),
        };
        match self.request(&request)? {
            HostResponse::Http01Publish => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Stops answering `token` (where [`Host::http01_publish`] put it).
    pub fn http01_withdraw(&self, token: &str, webroot: Option<&str>) -> Result<(), HostError> {
        match self.request(&HostRequest::Http01Withdraw {
            token: token.into(),
            webroot: webroot.map(str::to_owned),
        })? {
            HostResponse::Http01Withdraw => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a command the certificate's settings name (a dns-01 hook, say) the way the daemon
    /// runs its own hooks: no shell, a clean environment plus `env` (keys `CERTVAKT_*`), its
    /// output to the journal, killed with what it started after `timeout`. `Ok` when it
    /// exits 0; otherwise the error names the command and quotes its last line of output.
    pub fn run_command(
        &self,
        argv: &[String],
        env: &[(&str, &str)],
        timeout: std::time::Duration,
    ) -> Result<(), HostError> {
        let request = HostRequest::RunCommand(crate::messages::RunCommand {
            argv: argv.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
        match self.request(&request)? {
            HostResponse::RunCommand => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// The bytes of a secret file that the certificate's settings name (the host reads it:
    /// the plugin's process may not open files). A path that is not a value of the settings
    /// is refused.
    pub fn read_secret(&self, path: &str) -> Result<Vec<u8>, HostError> {
        let request = HostRequest::ReadSecret {
            path: path.to_owned(),
        };
        match self.request(&request)? {
            HostResponse::ReadSecret { bytes } => Ok(bytes),
            other => Err(unexpected(&other)),
        }
    }

    /// Signs `data` with one of the certificate's keys; the host hashes it.
    pub fn sign(
        &self,
        key: KeyRef,
        algorithm: SignatureAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        let request = HostRequest::Sign(SignRequest {
            key,
            algorithm,
            data: data.to_vec(),
        });
        match self.request(&request)? {
            HostResponse::Sign { signature } => Ok(signature),
            other => Err(unexpected(&other)),
        }
    }

    /// Has the host send `mail` (to an authority: an access request, a note to support).
    /// With the operator's leave for this certificate (`plugin_mail = true`) it goes out
    /// through the operator's relay and the answer is [`MailOutcome::Queued`]; without it the
    /// answer is [`MailOutcome::ForPerson`], the mail as an `.eml` file: attach it to the task
    /// you open (a [`TaskFile`](crate::TaskFile) with
    /// [`TaskFileContent::Base64`](crate::TaskFileContent::Base64)) so the person sends it.
    /// Asking again for the same mail (a retried step) does not send it twice. A mail that
    /// breaks the host's rules (see [`Mail`]) is refused with [`HostErrorKind::Invalid`]; a
    /// host that cannot send mail answers [`HostErrorKind::NotAvailable`].
    pub fn send_mail(&self, mail: Mail) -> Result<MailOutcome, HostError> {
        match self.request(&HostRequest::SendMail(mail))? {
            HostResponse::SendMail(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    /// Makes an HTTP(S) request through the host. Any status is `Ok`; `Err` means no answer.
    pub fn http(&self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        match self.request(&HostRequest::Http(request))? {
            HostResponse::Http(response) => Ok(response),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether `serial` (hex) is on the CRL at `url`, fetched and read by the host now.
    pub fn crl_status(&self, url: &str, serial: &str) -> Result<CrlStatus, HostError> {
        let request = HostRequest::CrlStatus {
            url: url.to_owned(),
            serial: serial.to_owned(),
        };
        match self.request(&request)? {
            HostResponse::CrlStatus(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(response: &HostResponse) -> HostError {
    HostError::new(
        HostErrorKind::Failed,
        format!("unexpected host answer {}", response.method()),
    )
}
