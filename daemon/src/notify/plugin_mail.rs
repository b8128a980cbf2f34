//! A plugin's own mail (an access request to an authority): sent through the outbox when the
//! operator allowed it for the certificate (`plugin_mail = true`) and a relay is configured;
//! otherwise rendered as an `.eml` file for the plugin's task, for the person to send.
//!
//! Contract: the same mail (same certificate, recipients, subject, body and attachments) has
//! the same id, so asking again sends nothing twice; the answer `Queued` is given only once
//! the mail is in the outbox on disk.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use certvakt_plugin_api::{HostError, HostErrorKind, Mail, MailOutcome};

use super::channels::host_name;
use super::channels::mail::{Envelope as MailEnvelope, render};
use super::message::{Attachment, Message};
use super::outbox::Envelope;
use super::sender::{Notifier, Request};
use crate::config::{Config, NotifyEvent};

/// How long a plugin call waits for its mail to be on disk.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// The notifier's side of the host's `send_mail`.
#[derive(Debug)]
pub struct PluginMailer {
    notifier: Notifier,
    config: Arc<RwLock<Arc<Config>>>,
    host: String,
}

impl PluginMailer {
    pub fn new(notifier: Notifier, config: Arc<RwLock<Arc<Config>>>) -> PluginMailer {
        PluginMailer {
            notifier,
            config,
            host: host_name(),
        }
    }
}

fn failed(message: String) -> HostError {
    HostError::new(HostErrorKind::Failed, message)
}

/// The mail as a message: its id is a digest of everything it says.
fn message(cert_id: &str, mail: &Mail) -> Message {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for part in [cert_id, &mail.subject, &mail.body] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for a in mail.to.iter().chain(mail.cc.iter()) {
        h.update(a.as_bytes());
        h.update([1]);
    }
    for a in &mail.attachments {
        h.update(a.name.as_bytes());
        h.update(&a.bytes);
        h.update([2]);
    }
    let id: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Message {
        id,
        event: NotifyEvent::PluginMail,
        cert_id: Some(cert_id.to_owned()),
        task_id: None,
        plugin: None,
        created_at: crate::now_unix(),
        deadline: None,
        subject: mail.subject.clone(),
        body: mail.body.clone(),
        attachments: mail
            .attachments
            .iter()
            .map(|a| Attachment {
                name: a.name.clone(),
                content_type: a.content_type.clone(),
                bytes: a.bytes.clone(),
            })
            .collect(),
        details: serde_json::Map::new(),
    }
}

impl crate::plugin_host::MailOut for PluginMailer {
    fn send(&self, cert_id: &str, allowed: bool, mail: Mail) -> Result<MailOutcome, HostError> {
        let config = match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let message = message(cert_id, &mail);
        let can_send = config.mail.relay.is_some() && config.mail.from.is_some();
        if allowed && can_send {
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            self.notifier
                .ask(Request::PluginMail {
                    message: Box::new(message),
                    envelope: Envelope {
                        to: mail.to.clone(),
                        cc: mail.cc.clone(),
                        reply_to: mail.reply_to.clone(),
                    },
                    reply,
                })
                .map_err(failed)?;
            return match answer.recv_timeout(QUEUE_WAIT) {
                Ok(Ok(id)) => {
                    log::info!(cert_id = cert_id; "a plugin's mail to {} is queued: {}", mail.to.join(", "), mail.subject);
                    Ok(MailOutcome::Queued { message_id: id })
                }
                Ok(Err(e)) => Err(failed(format!("the mail could not be queued: {e}"))),
                Err(_) => Err(failed(
                    "the notifier did not take the mail in time; the step is retried".into(),
                )),
            };
        }
        let from = config
            .mail
            .from
            .clone()
            .unwrap_or_else(|| format!("certvakt@{}", self.host));
        let envelope = MailEnvelope {
            from: &from,
            to: &mail.to,
            cc: &mail.cc,
            reply_to: mail.reply_to.as_deref(),
        };
        let eml = render(
            &message,
            &envelope,
            &format!("{}@{}", message.id, self.host),
        )
        .map_err(|e| HostError::new(HostErrorKind::Invalid, e.to_string()))?;
        let to = mail
            .to
            .first()
            .map(|a| a.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "-"))
            .unwrap_or_else(|| "mail".into());
        let why = if allowed {
            "no [mail] relay with a from address is configured"
        } else {
            "plugin_mail is not set for this certificate"
        };
        log::info!(cert_id = cert_id; "a plugin's mail to {} goes to the person as a file ({why})", mail.to.join(", "));
        Ok(MailOutcome::ForPerson {
            file_name: format!("mail-to-{to}.eml"),
            eml,
        })
    }
}
