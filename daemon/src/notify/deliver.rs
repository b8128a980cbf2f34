//! One attempt to deliver: a queued message by its route's channel (or a plugin's mail to its
//! own recipients), and `certvakt notify test`, which sends straight through the routes.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::channels::{self, SendError};
use super::message::Message;
use super::outbox::Delivery;
use crate::config::{Config, NotifyEvent, NotifyRoute, RouteChannel};
use crate::plugin_host::HttpService;

/// One route's answer to `notify test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    pub route: String,
    pub channel: String,
    pub ok: bool,
    /// The relay's or receiver's answer, or why it failed.
    pub detail: String,
}

/// The Message-ID of a delivery (without the angle brackets).
fn message_id(delivery_id: &str, host: &str) -> String {
    format!("{delivery_id}@{host}")
}

/// One attempt to deliver `d`.
pub(super) async fn attempt(
    d: &Delivery,
    config: &Config,
    http: Option<Arc<HttpService>>,
    host: &str,
) -> Result<String, SendError> {
    let timeout = config.notifications.timeout.0;
    let from = config.mail.from.clone().unwrap_or_default();
    if let Some(envelope) = &d.envelope {
        let env = channels::mail::Envelope {
            from: &from,
            to: &envelope.to,
            cc: &envelope.cc,
            reply_to: envelope.reply_to.as_deref(),
        };
        return channels::mail::send(
            &config.mail,
            &config.trust,
            &d.message,
            &env,
            &message_id(&d.id, host),
            timeout,
        )
        .await;
    }
    let Some(route) = config.notify.iter().find(|r| r.name == d.route) else {
        return Err(SendError::Permanent(format!(
            "the route \"{}\" is no longer in the configuration",
            d.route
        )));
    };
    send_by(route, config, http, &d.message, &d.id, host, timeout).await
}

async fn send_by(
    route: &NotifyRoute,
    config: &Config,
    http: Option<Arc<HttpService>>,
    message: &Message,
    delivery_id: &str,
    host: &str,
    timeout: Duration,
) -> Result<String, SendError> {
    match &route.channel {
        RouteChannel::Mail { to, cc, from } => {
            let from = from
                .clone()
                .or_else(|| config.mail.from.clone())
                .unwrap_or_default();
            let env = channels::mail::Envelope {
                from: &from,
                to,
                cc,
                reply_to: None,
            };
            channels::mail::send(
                &config.mail,
                &config.trust,
                message,
                &env,
                &message_id(delivery_id, host),
                timeout,
            )
            .await
        }
        RouteChannel::Webhook {
            url,
            secret_file,
            trust,
        } => {
            let Some(http) = http else {
                return Err(SendError::Permanent(
                    "the daemon's HTTP client is not running".into(),
                ));
            };
            channels::webhook::send(
                http,
                url,
                secret_file.as_deref(),
                trust.as_deref(),
                message,
                &route.name,
                delivery_id,
                timeout,
            )
            .await
        }
        RouteChannel::Command { command, timeout } => {
            channels::command::send(command, timeout.0, message, &route.name, delivery_id).await
        }
    }
}

/// `certvakt notify test [ROUTE]`: a test message through each route (or the one named).
pub(super) async fn test(
    config: Arc<Config>,
    http: Option<Arc<HttpService>>,
    host: String,
    route: Option<String>,
) -> Result<Vec<TestResult>, String> {
    let routes: Vec<&NotifyRoute> = match &route {
        Some(name) => match config.notify.iter().find(|r| &r.name == name) {
            Some(r) => vec![r],
            None => {
                let names: Vec<&str> = config.notify.iter().map(|r| r.name.as_str()).collect();
                return Err(if names.is_empty() {
                    format!("no route \"{name}\": the configuration has no [[notify]] route")
                } else {
                    format!("no route \"{name}\"; the routes are: {}", names.join(", "))
                });
            }
        },
        None => config.notify.iter().collect(),
    };
    if routes.is_empty() {
        return Err(
            "the configuration has no [[notify]] route to test (see `man certvakt.toml`)".into(),
        );
    }
    let now = crate::now_unix();
    let mut results = Vec::new();
    let mut set = JoinSet::new();
    for (i, route) in routes.into_iter().enumerate() {
        let route = route.clone();
        let config = config.clone();
        let http = http.clone();
        let host = host.clone();
        set.spawn(async move {
            let message = test_message(&route.name, &host, now);
            let id = format!("{}.{}", message.id, route.name);
            let timeout = config.notifications.timeout.0;
            let result = tokio::time::timeout(
                timeout + Duration::from_secs(5),
                send_by(&route, &config, http, &message, &id, &host, timeout),
            )
            .await
            .unwrap_or_else(|_| Err(SendError::Transient("no answer in time".into())));
            (
                i,
                TestResult {
                    route: route.name.clone(),
                    channel: route.channel.as_str().to_owned(),
                    ok: result.is_ok(),
                    detail: match result {
                        Ok(answer) => answer,
                        Err(e) => e.to_string(),
                    },
                },
            )
        });
    }
    while let Some(done) = set.join_next().await {
        if let Ok(r) = done {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

fn test_message(route: &str, host: &str, now: i64) -> Message {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("test#{route}#{now}#{}", std::process::id()));
    Message {
        id: digest[..16].iter().map(|b| format!("{b:02x}")).collect(),
        event: NotifyEvent::Test,
        cert_id: None,
        task_id: None,
        plugin: None,
        created_at: now,
        deadline: None,
        subject: format!("[certvakt] Test message for route {route}"),
        body: format!(
            "This is a test message from certvakt on {host}, sent by `certvakt notify test`.\n\
             If you read this, route {route} works.\n"
        ),
        attachments: Vec::new(),
        details: serde_json::Map::new(),
    }
}
