//! [`FakeHost`]: test a [`Plugin`] without the daemon.
//!
//! Contract:
//! - [`FakeHost::call`] (and the typed helpers [`FakeHost::issue`] etc.) run a plugin method
//!   the way the daemon does: the request encoded to JSON, [`dispatch`] decoding it, the
//!   plugin's host calls going through a real [`HostTable`](crate::abi::HostTable) as JSON both ways, the response
//!   decoded again. So a test exercises the plugin's codec too; only `dlopen` is left out.
//! - The fake answers host calls from memory: it records log lines, tasks, signing and HTTP
//!   requests; keeps state in a map; answers `now` from a settable clock (default
//!   [`FakeHost::DEFAULT_NOW`]); signs with a canned signature (default
//!   [`FakeHost::DEFAULT_SIGNATURE`]); answers HTTP from canned responses matched by method
//!   and URL, and with a [`HostErrorKind::Failed`] error for anything not canned. A responder
//!   ([`FakeHost::respond_http_with`]) is asked first, for services that answer many requests
//!   on one URL (a SOAP endpoint with many operations): it sees the whole request.
//! - `send_mail` records each distinct mail once ([`FakeHost::mails`]) and answers
//!   [`MailOutcome::Queued`] with the id `<mail-N@fakehost.invalid>`, or, after
//!   [`FakeHost::set_mail_for_person`], [`MailOutcome::ForPerson`] with `mail-N.eml` (a plain
//!   rendering of the headers and the body, attachments named). The same mail asked again gets
//!   the same answer and is not recorded again, as the daemon does not send it twice. The
//!   fake does not check the host's rules for a mail (recipients, sizes, names).
//! - `crl_status` answers from CRLs canned with [`FakeHost::respond_crl`], and with a
//!   [`HostErrorKind::Failed`] error for a URL with nothing canned.
//! - Any host service can be made to fail with [`FakeHost::fail`], to test error paths.
//! - No I/O, no threads, no clock: tests are deterministic.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use crate::abi::{HostCallHandler, LocalHostTable};
use crate::host::Host;
use crate::messages::{
    CertificateContext, CheckIssued, CrlStatus, Description, HostError, HostErrorKind, HostRequest,
    HostResponse, HttpRequest, HttpResponse, IssueOutcome, LogRecord, Mail, MailOutcome,
    OrderContext, PluginError, PluginRequest, PluginResponse, RenewalWindow, RunCommand,
    SettingProblem, SignRequest, StepContext, StepOutcome, TaskSpec, ValidateSettings,
};
use crate::plugin::{Plugin, dispatch};
use crate::profile::CsrProfile;

/// An in-memory host for plugin tests.
#[derive(Debug, Default)]
pub struct FakeHost {
    inner: Mutex<Fake>,
}

#[derive(Debug, Default)]
struct Fake {
    now: Option<i64>,
    signature: Option<Vec<u8>>,
    logs: Vec<LogRecord>,
    tasks: Vec<(String, TaskSpec)>,
    state: BTreeMap<String, Value>,
    http: Vec<(String, String, HttpResponse)>,
    responders: Vec<Responder>,
    http_requests: Vec<HttpRequest>,
    sign_requests: Vec<SignRequest>,
    plugin_keys: std::collections::BTreeSet<String>,
    http01: std::collections::BTreeMap<String, String>,
    commands: Vec<RunCommand>,
    mails: Vec<Mail>,
    mail_for_person: bool,
    crls: BTreeMap<String, CrlStatus>,
    failures: BTreeMap<String, HostError>,
}

/// A function answering HTTP requests in a test ([`FakeHost::respond_http_with`]).
type RespondFn = dyn Fn(&HttpRequest) -> Option<HttpResponse> + Send + Sync;

struct Responder(Box<RespondFn>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl FakeHost {
    /// What `now` answers until [`FakeHost::set_now`]: 2026-01-01T00:00:00Z.
    pub const DEFAULT_NOW: i64 = 1_767_225_600;
    /// What `sign` answers until [`FakeHost::set_signature`].
    pub const DEFAULT_SIGNATURE: &'static [u8] = b"fake-signature";

    pub fn new() -> FakeHost {
        FakeHost::default()
    }

    fn lock(&self) -> MutexGuard<'_, Fake> {
        // A test that panicked while holding the lock has failed already; keep answering.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the clock `now` answers with.
    pub fn set_now(&self, unix_seconds: i64) {
        self.lock().now = Some(unix_seconds);
    }

    /// Sets the signature `sign` answers with.
    pub fn set_signature(&self, signature: impl Into<Vec<u8>>) {
        self.lock().signature = Some(signature.into());
    }

    /// Cans what the CRL at `url` says: for `serial` (hex, any form) when given, else for any
    /// serial asked about there. A later one for the same key replaces it.
    pub fn respond_crl(&self, url: &str, serial: Option<&str>, status: CrlStatus) {
        let key = match serial {
            Some(serial) => format!("{url} {}", normalise_serial(serial)),
            None => url.to_owned(),
        };
        self.lock().crls.insert(key, status);
    }

    /// Cans the response to an HTTP request with this method and exact URL (a later one for
    /// the same request replaces it).
    pub fn respond_http(&self, method: &str, url: &str, response: HttpResponse) {
        let mut fake = self.lock();
        fake.http
            .retain(|(m, u, _)| !(m.eq_ignore_ascii_case(method) && u == url));
        fake.http
            .push((method.to_owned(), url.to_owned(), response));
    }

    /// Adds a responder asked before the canned responses: `Some` answers the request, `None`
    /// passes it on (to the next responder, then to the canned responses). Responders are asked
    /// in the order added; they run while the fake is locked, so they must not call it.
    pub fn respond_http_with(
        &self,
        responder: impl Fn(&HttpRequest) -> Option<HttpResponse> + Send + Sync + 'static,
    ) {
        self.lock().responders.push(Responder(Box::new(responder)));
    }

    /// Makes a host service (by method name, e.g. `"http"`: one of
    /// [`HostRequest::METHODS`]) answer with `error`.
    ///
    /// # Panics
    /// When `host_method` is not a host method: a misspelt name would otherwise fail nothing.
    pub fn fail(&self, host_method: &str, error: HostError) {
        assert!(
            HostRequest::METHODS.contains(&host_method),
            "FakeHost::fail: {host_method:?} is not a host method (one of {:?})",
            HostRequest::METHODS
        );
        self.lock().failures.insert(host_method.to_owned(), error);
    }

    /// Stores a state value, as if a previous call had.
    pub fn put_state(&self, key: &str, value: Value) {
        self.lock().state.insert(key.to_owned(), value);
    }

    /// A stored state value.
    pub fn state(&self, key: &str) -> Option<Value> {
        self.lock().state.get(key).cloned()
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.lock().logs.clone()
    }

    /// Every task opened so far, with its id (`task-1`, `task-2`, …).
    pub fn tasks(&self) -> Vec<(String, TaskSpec)> {
        self.lock().tasks.clone()
    }

    /// Every HTTP request so far.
    pub fn http_requests(&self) -> Vec<HttpRequest> {
        self.lock().http_requests.clone()
    }

    /// Every command the plugin asked the host to run (each "exits 0"; make one fail with
    /// [`FakeHost::fail`]`("run_command", …)`).
    pub fn commands(&self) -> Vec<RunCommand> {
        self.lock().commands.clone()
    }

    /// The http-01 challenges published and not withdrawn: token (or `webroot/token`) ->
    /// key authorization.
    pub fn http01(&self) -> std::collections::BTreeMap<String, String> {
        self.lock().http01.clone()
    }

    /// Makes `send_mail` answer [`MailOutcome::ForPerson`] (`true`: as a host whose operator
    /// did not allow this certificate's plugin to send mail) or [`MailOutcome::Queued`]
    /// (`false`, the default).
    pub fn set_mail_for_person(&self, for_person: bool) {
        self.lock().mail_for_person = for_person;
    }

    /// Every distinct mail the plugin asked the host to send, in the order first asked.
    pub fn mails(&self) -> Vec<Mail> {
        self.lock().mails.clone()
    }

    /// Every signing request so far.
    pub fn sign_requests(&self) -> Vec<SignRequest> {
        self.lock().sign_requests.clone()
    }

    /// Answers one host request from memory (what the plugin's host calls reach).
    pub fn handle(&self, request: HostRequest) -> HostResponse {
        let mut fake = self.lock();
        if let Some(error) = fake.failures.get(request.method()) {
            return HostResponse::Error(error.clone());
        }
        match request {
            HostRequest::Log(record) => {
                fake.logs.push(record);
                HostResponse::Log
            }
            HostRequest::Now => HostResponse::Now {
                unix_seconds: fake.now.unwrap_or(FakeHost::DEFAULT_NOW),
            },
            HostRequest::StateGet { key } => HostResponse::StateGet {
                value: fake.state.get(&key).cloned(),
            },
            HostRequest::StatePut { key, value } => {
                if value.is_null() {
                    fake.state.remove(&key);
                } else {
                    fake.state.insert(key, value);
                }
                HostResponse::StatePut
            }
            HostRequest::OpenTask(task) => {
                let task_id = format!("task-{}", fake.tasks.len() + 1);
                fake.tasks.push((task_id.clone(), task));
                HostResponse::OpenTask { task_id }
            }
            HostRequest::Sign(sign) => {
                fake.sign_requests.push(sign);
                let signature = fake
                    .signature
                    .clone()
                    .unwrap_or_else(|| FakeHost::DEFAULT_SIGNATURE.to_vec());
                HostResponse::Sign { signature }
            }
            HostRequest::CrlStatus { url, serial } => {
                let key = format!("{url} {}", normalise_serial(&serial));
                match fake.crls.get(&key).or_else(|| fake.crls.get(&url)) {
                    Some(status) => HostResponse::CrlStatus(status.clone()),
                    None => HostResponse::Error(HostError::new(
                        HostErrorKind::Failed,
                        format!("FakeHost has no CRL at {url}"),
                    )),
                }
            }
            HostRequest::Http(http) => {
                let answered = fake.responders.iter().find_map(|r| (r.0)(&http));
                let canned = answered.or_else(|| {
                    fake.http
                        .iter()
                        .find(|(m, u, _)| m.eq_ignore_ascii_case(&http.method) && *u == http.url)
                        .map(|(_, _, response)| response.clone())
                });
                let answer = match canned {
                    Some(response) => HostResponse::Http(response),
                    None => HostResponse::Error(HostError::new(
                        HostErrorKind::Failed,
                        format!("FakeHost has no response for {} {}", http.method, http.url),
                    )),
                };
                fake.http_requests.push(http);
                answer
            }
            HostRequest::Http01Publish {
                token,
                key_authorization,
                webroot,
            } => {
                fake.http01.insert(
                    webroot.map_or(token.clone(), |w| format!("{w}/{token}")),
                    key_authorization,
                );
                HostResponse::Http01Publish
            }
            HostRequest::Http01Withdraw { token, webroot } => {
                fake.http01
                    .remove(&webroot.map_or(token.clone(), |w| format!("{w}/{token}")));
                HostResponse::Http01Withdraw
            }
            HostRequest::RunCommand(command) => {
                fake.commands.push(command);
                HostResponse::RunCommand
            }
            // The fake reads the file as it is (the daemon also checks that the settings name
            // it and caps its size).
            HostRequest::ReadSecret { path } => match std::fs::read(&path) {
                Ok(bytes) => HostResponse::ReadSecret { bytes },
                Err(e) => HostResponse::Error(HostError::new(
                    HostErrorKind::Failed,
                    format!("cannot read {path}: {e}"),
                )),
            },
            HostRequest::SendMail(mail) => {
                // The same mail again is the same message: not recorded (sent) twice.
                let number = match fake.mails.iter().position(|m| *m == mail) {
                    Some(index) => index + 1,
                    None => {
                        fake.mails.push(mail.clone());
                        fake.mails.len()
                    }
                };
                let outcome = if fake.mail_for_person {
                    MailOutcome::ForPerson {
                        file_name: format!("mail-{number}.eml"),
                        eml: render_eml(&mail).into_bytes(),
                    }
                } else {
                    MailOutcome::Queued {
                        message_id: format!("<mail-{number}@fakehost.invalid>"),
                    }
                };
                HostResponse::SendMail(outcome)
            }
            HostRequest::PluginKey { name, .. } => {
                // A fixed, fake public point per name: enough for a plugin to build its JWK and
                // to see that the same name gives the same key.
                let created = fake.plugin_keys.insert(name.clone());
                let mut public_key = vec![4u8];
                public_key.extend(name.bytes().cycle().take(64));
                HostResponse::PluginKey {
                    public_key,
                    created,
                }
            }
        }
    }

    /// Runs one plugin method through the real encoding, as the daemon would.
    pub fn call<P: Plugin>(&self, plugin: &P, request: &PluginRequest) -> PluginResponse {
        let params = match request.encode_params() {
            Ok(params) => params,
            Err(e) => {
                return PluginResponse::Error(PluginError::permanent(format!(
                    "cannot encode the {} request: {e}",
                    request.method()
                )));
            }
        };
        let table = LocalHostTable::new(self);
        let host = Host::new(table.table());
        let answer = dispatch(plugin, request.method(), &params, &host);
        serde_json::from_slice(&answer).unwrap_or_else(|e| {
            PluginResponse::Error(PluginError::permanent(format!(
                "the plugin's answer to {} does not decode: {e}",
                request.method()
            )))
        })
    }

    pub fn describe<P: Plugin>(&self, plugin: &P) -> Result<Description, PluginError> {
        match self.call(plugin, &PluginRequest::Describe) {
            PluginResponse::Describe(description) => Ok(description),
            other => Err(unexpected("describe", other)),
        }
    }

    pub fn validate_settings<P: Plugin>(
        &self,
        plugin: &P,
        settings: Value,
    ) -> Result<Vec<SettingProblem>, PluginError> {
        let request = PluginRequest::ValidateSettings(ValidateSettings { settings });
        match self.call(plugin, &request) {
            PluginResponse::ValidateSettings(problems) => Ok(problems),
            other => Err(unexpected("validate_settings", other)),
        }
    }

    pub fn csr_profile<P: Plugin>(
        &self,
        plugin: &P,
        certificate: CertificateContext,
    ) -> Result<CsrProfile, PluginError> {
        match self.call(plugin, &PluginRequest::CsrProfile(certificate)) {
            PluginResponse::CsrProfile(profile) => Ok(profile),
            other => Err(unexpected("csr_profile", other)),
        }
    }

    pub fn issue<P: Plugin>(
        &self,
        plugin: &P,
        order: OrderContext,
    ) -> Result<IssueOutcome, PluginError> {
        match self.call(plugin, &PluginRequest::Issue(order)) {
            PluginResponse::Issue(outcome) => Ok(outcome),
            other => Err(unexpected("issue", other)),
        }
    }

    pub fn poll<P: Plugin>(
        &self,
        plugin: &P,
        order: OrderContext,
    ) -> Result<IssueOutcome, PluginError> {
        match self.call(plugin, &PluginRequest::Poll(order)) {
            PluginResponse::Poll(outcome) => Ok(outcome),
            other => Err(unexpected("poll", other)),
        }
    }

    pub fn register<P: Plugin>(
        &self,
        plugin: &P,
        step: StepContext,
    ) -> Result<StepOutcome, PluginError> {
        match self.call(plugin, &PluginRequest::Register(step)) {
            PluginResponse::Register(outcome) => Ok(outcome),
            other => Err(unexpected("register", other)),
        }
    }

    pub fn verify<P: Plugin>(
        &self,
        plugin: &P,
        step: StepContext,
    ) -> Result<StepOutcome, PluginError> {
        match self.call(plugin, &PluginRequest::Verify(step)) {
            PluginResponse::Verify(outcome) => Ok(outcome),
            other => Err(unexpected("verify", other)),
        }
    }

    pub fn retire<P: Plugin>(
        &self,
        plugin: &P,
        step: StepContext,
    ) -> Result<StepOutcome, PluginError> {
        match self.call(plugin, &PluginRequest::Retire(step)) {
            PluginResponse::Retire(outcome) => Ok(outcome),
            other => Err(unexpected("retire", other)),
        }
    }

    pub fn check_issued<P: Plugin>(
        &self,
        plugin: &P,
        check: CheckIssued,
    ) -> Result<Vec<String>, PluginError> {
        match self.call(plugin, &PluginRequest::CheckIssued(check)) {
            PluginResponse::CheckIssued(objections) => Ok(objections),
            other => Err(unexpected("check_issued", other)),
        }
    }

    pub fn renewal_window<P: Plugin>(
        &self,
        plugin: &P,
        certificate: CertificateContext,
    ) -> Result<Option<RenewalWindow>, PluginError> {
        match self.call(plugin, &PluginRequest::RenewalWindow(certificate)) {
            PluginResponse::RenewalWindow(window) => Ok(window),
            other => Err(unexpected("renewal_window", other)),
        }
    }
}

/// A serial as the fake keys it: lower-case hex without separators or leading zeros.
fn normalise_serial(serial: &str) -> String {
    let hex: String = serial
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// A plain rendering of `mail` for [`MailOutcome::ForPerson`]: headers, a blank line, the
/// body, and a line naming each attachment. Enough to see what a person would get; not MIME.
fn render_eml(mail: &Mail) -> String {
    let mut eml = format!("To: {}\r\n", mail.to.join(", "));
    if !mail.cc.is_empty() {
        eml.push_str(&format!("Cc: {}\r\n", mail.cc.join(", ")));
    }
    if let Some(reply_to) = &mail.reply_to {
        eml.push_str(&format!("Reply-To: {reply_to}\r\n"));
    }
    eml.push_str(&format!("Subject: {}\r\n\r\n{}", mail.subject, mail.body));
    for attachment in &mail.attachments {
        eml.push_str(&format!(
            "\r\n[attachment {} ({}, {} bytes)]",
            attachment.name,
            attachment.content_type,
            attachment.bytes.len()
        ));
    }
    eml
}

/// The plugin's error as is; an answer to another method as a permanent error naming both.
fn unexpected(method: &str, response: PluginResponse) -> PluginError {
    match response {
        PluginResponse::Error(error) => error,
        other => PluginError::permanent(format!(
            "the plugin answered {} to a {method} request",
            other.method()
        )),
    }
}

impl HostCallHandler for FakeHost {
    fn host_call(&self, method: &str, params: &[u8]) -> Vec<u8> {
        let response = match HostRequest::decode(method, params) {
            Ok(request) => self.handle(request),
            Err(e) => HostResponse::Error(HostError::new(HostErrorKind::Invalid, e.to_string())),
        };
        serde_json::to_vec(&response).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::MailAttachment;

    fn mail(subject: &str) -> Mail {
        Mail {
            to: vec!["registrator@region.example".into()],
            cc: vec!["support@cgi.example".into()],
            reply_to: Some("it@vardcentral.example".into()),
            subject: subject.into(),
            body: "Hej".into(),
            attachments: vec![MailAttachment {
                name: "request.csr".into(),
                content_type: "application/pkcs10".into(),
                bytes: vec![1, 2, 3],
            }],
        }
    }

    #[test]
    fn a_responder_answers_before_the_canned_responses_and_may_pass() {
        let fake = FakeHost::new();
        let canned = |status| HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        };
        fake.respond_http("POST", "https://ar.example/v1/AR", canned(200));
        fake.respond_http_with(move |request: &HttpRequest| {
            (request.body == b"fault").then(|| HttpResponse {
                status: 500,
                headers: Vec::new(),
                body: b"answered".to_vec(),
            })
        });
        let table = LocalHostTable::new(&fake);
        let host = Host::new(table.table());
        let answered = host
            .http(HttpRequest::post("https://ar.example/v1/AR", "fault"))
            .unwrap();
        assert_eq!(
            (answered.status, answered.body),
            (500, b"answered".to_vec())
        );
        let passed = host
            .http(HttpRequest::post("https://ar.example/v1/AR", "other"))
            .unwrap();
        assert_eq!(passed.status, 200);
        assert_eq!(fake.http_requests().len(), 2);
    }

    #[test]
    fn mails_are_recorded_once_and_queued_or_handed_to_a_person() {
        let fake = FakeHost::new();
        let table = LocalHostTable::new(&fake);
        let host = Host::new(table.table());
        assert_eq!(
            host.send_mail(mail("one")).unwrap(),
            MailOutcome::Queued {
                message_id: "<mail-1@fakehost.invalid>".into()
            }
        );
        // A retried step asks again for the same mail: the same answer, not a second mail.
        assert_eq!(
            host.send_mail(mail("one")).unwrap(),
            MailOutcome::Queued {
                message_id: "<mail-1@fakehost.invalid>".into()
            }
        );
        fake.set_mail_for_person(true);
        let MailOutcome::ForPerson { file_name, eml } = host.send_mail(mail("two")).unwrap() else {
            panic!("expected the mail for a person");
        };
        assert_eq!(file_name, "mail-2.eml");
        let eml = String::from_utf8(eml).unwrap();
        assert!(
            eml.starts_with(
                "To: registrator@region.example\r\nCc: support@cgi.example\r\n\
                 Reply-To: it@vardcentral.example\r\nSubject: two\r\n\r\nHej"
            ),
            "{eml}"
        );
        assert!(eml.contains("request.csr"), "{eml}");
        assert_eq!(fake.mails(), vec![mail("one"), mail("two")]);

        fake.fail(
            "send_mail",
            HostError::new(HostErrorKind::NotAvailable, "no relay"),
        );
        let err = host.send_mail(mail("three")).unwrap_err();
        assert_eq!(err.kind, HostErrorKind::NotAvailable);
        assert_eq!(fake.mails().len(), 2);
    }
}
