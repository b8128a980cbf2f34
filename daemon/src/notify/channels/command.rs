//! The command channel: a local program, run by [`crate::program`] on a blocking thread.
//!
//! Contract:
//! - The route's `command` runs as hooks do (no shell, clean environment, own process group,
//!   killed at the route's `timeout`), with `CERTVAKT_NOTIFY_EVENT`, `CERTVAKT_NOTIFY_ID`
//!   (the delivery id, the same on every attempt), `CERTVAKT_NOTIFY_ROUTE`,
//!   `CERTVAKT_CERT_ID`, `CERTVAKT_TASK_ID`, `CERTVAKT_SUBJECT` and `CERTVAKT_DEADLINE` (Unix
//!   seconds) set, each empty when absent, and the webhook's JSON ([`super::webhook::payload`])
//!   on stdin.
//! - Exit status 0 delivers. A program that cannot be started is [`SendError::Permanent`]; a
//!   non-zero exit or a timeout is [`SendError::Transient`], with the end of its output.
//! - Its output goes to the journal a line at a time (fields `route`, `notify_id`).

use std::time::Duration;

use super::SendError;
use crate::notify::message::Message;
use crate::program::{Exit, Program};

/// How much of the program's output goes into an error.
const OUTPUT_EXCERPT: usize = 1000;

/// One attempt to deliver `msg` by running `argv`. See the module documentation.
pub async fn send(
    argv: &[String],
    timeout: Duration,
    msg: &Message,
    route: &str,
    delivery_id: &str,
) -> Result<String, SendError> {
    let Some(name) = argv.first().cloned() else {
        return Err(SendError::Permanent(format!(
            "Route `{route}` has an empty `command`; name an absolute program and its arguments."
        )));
    };
    let argv = argv.to_vec();
    // Environment values cannot hold NUL; a subject never should.
    let var = |value: Option<&str>| value.unwrap_or_default().replace('\0', " ");
    let env = vec![
        (
            "CERTVAKT_NOTIFY_EVENT".to_owned(),
            msg.event.as_str().to_owned(),
        ),
        ("CERTVAKT_NOTIFY_ID".to_owned(), var(Some(delivery_id))),
        ("CERTVAKT_NOTIFY_ROUTE".to_owned(), var(Some(route))),
        ("CERTVAKT_CERT_ID".to_owned(), var(msg.cert_id.as_deref())),
        ("CERTVAKT_TASK_ID".to_owned(), var(msg.task_id.as_deref())),
        ("CERTVAKT_SUBJECT".to_owned(), var(Some(&msg.subject))),
        (
            "CERTVAKT_DEADLINE".to_owned(),
            msg.deadline.map(|d| d.to_string()).unwrap_or_default(),
        ),
    ];
    let stdin = super::webhook::payload(msg, route, delivery_id, crate::now_unix());
    let fields = vec![
        ("route", route.to_owned()),
        ("notify_id", delivery_id.to_owned()),
    ];
    let finished = tokio::task::spawn_blocking(move || {
        crate::program::run(&Program {
            argv: &argv,
            env,
            stdin: Some(stdin),
            timeout,
            log_target: module_path!(),
            log_fields: fields,
        })
    })
    .await
    .map_err(|e| {
        SendError::Transient(format!(
            "The command of route `{route}` ({name}) did not run to its end: its task ended early ({e})."
        ))
    })?
    .map_err(|e| {
        SendError::Permanent(format!(
            "The command of route `{route}` ({name}) could not be started: {e}. Check the route's `command` (an absolute path to an executable program)."
        ))
    })?;
    match finished.exit {
        Exit::Status(status) if status.success() => Ok(format!("{name} exited with {status}")),
        Exit::Status(status) => Err(SendError::Transient(format!(
            "The command of route `{route}` ({name}) exited with {status}{}; it will be tried again.",
            excerpt(&finished.output)
        ))),
        Exit::TimedOut => Err(SendError::Transient(format!(
            "The command of route `{route}` ({name}) did not finish within {} s and was killed{}; it will be tried again.",
            timeout.as_secs_f64(),
            excerpt(&finished.output)
        ))),
    }
}

/// `: <the end of the output>`, one line, sanitised, or nothing.
fn excerpt(output: &str) -> String {
    let output = output.trim();
    if output.is_empty() {
        return String::new();
    }
    let start = output
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| output.len() - i <= OUTPUT_EXCERPT)
        .unwrap_or(output.len());
    let cut = if start > 0 { "…" } else { "" };
    format!(": {cut}{}", crate::plugin_host::sanitise(&output[start..]))
}
