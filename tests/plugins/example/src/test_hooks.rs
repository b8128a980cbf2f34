//! The test hooks, for certvakt's own tests of the plugin host and the renewal engine; a
//! certificate without `test_*` settings meets none of this.
//!
//! Contract:
//! - `test_panic_in = "<method>"`: that method panics.
//! - `test_delay_ms = N`: every call sleeps N ms, and logs when it starts and ends the sleep
//!   (`test_delay_ms: <method> of <id> sleeps N ms` / `… slept N ms`).
//! - `test_task_in = "<method>"`: that method opens a task through the host, logs the id the
//!   host answered (`test_task_in: <method> of <id> opened task <task id>`), then goes on as
//!   usual.
//! - `test_mail_in = "<method>"`: that method asks the host to send an access request by mail
//!   (to `access@region.example`, in Swedish, with an attachment) and logs the outcome
//!   (`test_mail_in: <method> of <id>: queued <message id>`); when the host hands it to the
//!   person instead, opens a task carrying the `.eml` file
//!   (`…: for the person as <file>`).
//! - `test_fail_in = "<method>"`: that method fails with a temporary error, after the hooks
//!   above.
//! - While any hook is set, each call counts itself per certificate in this process, from its
//!   start to its return, and logs `overlap: …` when another call about the same certificate
//!   is still running: the daemon promises at most one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use certvakt_plugin_api::{
    CertificateContext, Completion, Host, Mail, MailAttachment, MailOutcome, PluginError, TaskFile,
    TaskFileContent, TaskSpec,
};

use crate::Settings;

/// How many calls about each certificate are running in this process.
static CALLS_IN_FLIGHT: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// Runs the hooks `settings` ask for, at the start of a call to `method`; answers the count
/// of this call, to be held until it returns.
pub(crate) fn before_call(
    host: &Host<'_>,
    certificate: &CertificateContext,
    method: &str,
    settings: &Settings,
) -> Result<Option<InFlight>, PluginError> {
    let hooked = settings.test_panic_in.is_some()
        || settings.test_delay_ms > 0
        || settings.test_task_in.is_some()
        || settings.test_mail_in.is_some()
        || settings.test_fail_in.is_some();
    if !hooked {
        return Ok(None);
    }
    let id = &certificate.certificate_id;
    let call = InFlight::enter(host, id, method);
    if settings.test_panic_in.as_deref() == Some(method) {
        panic!("test_panic_in asked {method} to panic");
    }
    if settings.test_delay_ms > 0 {
        let ms = settings.test_delay_ms;
        host.info(format!("test_delay_ms: {method} of {id} sleeps {ms} ms"));
        std::thread::sleep(Duration::from_millis(ms));
        host.info(format!("test_delay_ms: {method} of {id} slept {ms} ms"));
    }
    if settings.test_task_in.as_deref() == Some(method) {
        let task_id = host.open_task(TaskSpec {
            title: format!("Test task opened in {method}"),
            instructions: "Opened by the test_task_in hook; nothing to do.".into(),
            files: Vec::new(),
            completes_by: Completion::Confirm,
        })?;
        host.info(format!(
            "test_task_in: {method} of {id} opened task {task_id}"
        ));
    }
    if settings.test_mail_in.as_deref() == Some(method) {
        send_access_request(host, id, method)?;
    }
    if settings.test_fail_in.as_deref() == Some(method) {
        return Err(PluginError::temporary(format!(
            "test_fail_in asked {method} to fail"
        )));
    }
    Ok(Some(call))
}

/// The access request an authority wants by mail, as the Swedish eFrikort plugin will send it.
fn send_access_request(host: &Host<'_>, id: &str, method: &str) -> Result<(), PluginError> {
    let mail = Mail {
        to: vec!["access@region.example".into()],
        cc: vec!["support@cgi.example".into()],
        reply_to: Some("it@apotek.example".into()),
        subject: format!("Ansökan om behörighet för {id} — Region Västra Götaland"),
        body: format!(
            "Hej!\n\nVi ansöker om behörighet till eFrikort för {id}.\nMed vänliga hälsningar,\nÅsa Öberg\n"
        ),
        attachments: vec![MailAttachment {
            name: "ansokan.txt".into(),
            content_type: "text/plain".into(),
            bytes: "HSA-id: SE2321000016-39KJ\n".as_bytes().to_vec(),
        }],
    };
    match host.send_mail(mail)? {
        MailOutcome::Queued { message_id } => {
            host.info(format!(
                "test_mail_in: {method} of {id}: queued {message_id}"
            ));
        }
        MailOutcome::ForPerson { file_name, eml } => {
            host.open_task(TaskSpec {
                title: "Send the access request to the region".into(),
                instructions: format!("Open {file_name} in your mail program and send it."),
                files: vec![TaskFile {
                    name: file_name.clone(),
                    content: TaskFileContent::Base64(eml),
                }],
                completes_by: Completion::Confirm,
            })?;
            host.info(format!(
                "test_mail_in: {method} of {id}: for the person as {file_name}"
            ));
        }
    }
    Ok(())
}

/// One call counted in [`CALLS_IN_FLIGHT`], until dropped (by a panic's unwinding too).
#[derive(Debug)]
pub(crate) struct InFlight(String);

impl InFlight {
    fn enter(host: &Host<'_>, id: &str, method: &str) -> InFlight {
        let others = {
            let mut calls = CALLS_IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
            let running = calls.entry(id.to_owned()).or_default();
            *running += 1;
            *running - 1
        };
        if others > 0 {
            host.warn(format!(
                "overlap: {method} of {id} started while {others} other call(s) about it run"
            ));
        }
        InFlight(id.to_owned())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut calls = CALLS_IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = calls.get_mut(&self.0) {
            *running = running.saturating_sub(1);
        }
    }
}
