//! The notification tables: `[mail]` (the relay), `[notifications]` (when reminders are due,
//! how long to retry) and `[[notify]]` routes (which events go where).
//!
//! A route is read into a [`RouteDraft`] holding every key any channel takes; [`finish`]
//! turns it into a [`NotifyRoute`] once its `channel` is known, reporting a key that belongs
//! to another channel and a channel's missing required key at the route's header.

use toml::de::DeValue;

use super::validate::Refusal;
use super::values::{At, Field, Report, Source, Value, closest, describe, duration, names, parsed};
use super::values::{command, path, string, strings};
use super::{
    MailSection, MailTls, NotificationsSection, NotifyEvent, NotifyRoute, Origin, RouteChannel,
};
use crate::duration::HumanDuration;

/// `[mail]`
pub(super) const MAIL: &[Field<MailSection>] = &[
    field!(relay = r#""smtp.example.dk""#, string => |m, v| m.relay = Some(v)),
    field!(port = "587", port => |m, v| m.port = Some(v)),
    field!(tls = r#""starttls""#, mail_tls => |m, v| m.tls = v),
    field!(username = r#""certvakt@apotek.example""#, string => |m, v| m.username = Some(v)),
    field!(password_file = r#""/etc/certvakt/secrets/smtp.pass""#, path
        => |m, v| m.password_file = Some(v)),
    field!(from = r#""certvakt@apotek.example""#, string => |m, v| m.from = Some(v)),
    field!(trust = r#""smtp-ca""#, string => |m, v| m.trust = Some(v)),
    field!(hello_name = r#""apotek-srv1.example""#, string => |m, v| m.hello_name = Some(v)),
];

/// `[notifications]`
pub(super) const NOTIFICATIONS: &[Field<NotificationsSection>] = &[
    field!(remind_every = r#""1d""#, duration => |n, v| n.remind_every = v),
    field!(remind_often_within = r#""7d""#, duration => |n, v| n.remind_often_within = v),
    field!(remind_often_every = r#""4h""#, duration => |n, v| n.remind_often_every = v),
    field!(failing_after = "3", count => |n, v| n.failing_after = v),
    field!(failing_within = r#""14d""#, duration => |n, v| n.failing_within = v),
    field!(retry_for = r#""2d""#, duration => |n, v| n.retry_for = v),
    field!(timeout = r#""30s""#, duration => |n, v| n.timeout = v),
    field!(heartbeat_every = r#""1d""#, duration => |n, v| n.heartbeat_every = v),
];

/// A `[[notify]]` entry as written, before its channel decides which keys it may have.
#[derive(Debug, Default)]
pub(super) struct RouteDraft {
    name: Option<String>,
    events: Option<Vec<NotifyEvent>>,
    certificates: Vec<String>,
    plugins: Vec<String>,
    channel: Option<Channel>,
    to: Option<Vec<String>>,
    cc: Option<Vec<String>>,
    from: Option<String>,
    url: Option<String>,
    secret_file: Option<std::path::PathBuf>,
    trust: Option<String>,
    command: Option<Vec<String>>,
    timeout: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Mail,
    Webhook,
    Command,
}

/// `[[notify]]`
pub(super) const NOTIFY: &[Field<RouteDraft>] = &[
    field!(name = r#""it-desk""#, string => |r, v| r.name = Some(v)),
    field!(required channel = r#""mail""#, channel => |r, v| r.channel = Some(v)),
    field!(events = r#"["task_opened", "task_reminder", "renewal_failing"]"#, events
        => |r, v| r.events = Some(v)),
    field!(certificates = r#"["fmk-prod"]"#, strings => |r, v| r.certificates = v),
    field!(plugins = r#"["dk-fmk"]"#, strings => |r, v| r.plugins = v),
    field!(to = r#"["it@apotek.example"]"#, strings => |r, v| r.to = Some(v)),
    field!(cc = r#"["chef@apotek.example"]"#, strings => |r, v| r.cc = Some(v)),
    field!(from = r#""certvakt@apotek.example""#, string => |r, v| r.from = Some(v)),
    field!(url = r#""https://hooks.example/certvakt""#, string => |r, v| r.url = Some(v)),
    field!(secret_file = r#""/etc/certvakt/secrets/webhook.key""#, path
        => |r, v| r.secret_file = Some(v)),
    field!(trust = r#""hooks-ca""#, string => |r, v| r.trust = Some(v)),
    field!(command = r#"["/usr/local/bin/page-it", "--team", "apotek"]"#, command
        => |r, v| r.command = Some(v)),
    field!(timeout = r#""30s""#, duration => |r, v| r.timeout = Some(v)),
];

pub(super) static MAIL_KEYS: [&str; MAIL.len()] = names(MAIL);
pub(super) static NOTIFICATIONS_KEYS: [&str; NOTIFICATIONS.len()] = names(NOTIFICATIONS);
pub(super) static NOTIFY_KEYS: [&str; NOTIFY.len()] = names(NOTIFY);

/// Which keys belong to which channel (the others are common).
const CHANNEL_KEYS: [(&str, Channel); 7] = [
    ("to", Channel::Mail),
    ("cc", Channel::Mail),
    ("from", Channel::Mail),
    ("url", Channel::Webhook),
    ("secret_file", Channel::Webhook),
    ("trust", Channel::Webhook),
    ("command", Channel::Command),
];

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Mail => "mail",
            Channel::Webhook => "webhook",
            Channel::Command => "command",
        }
    }
}

/// Turns the draft of `[[notify]]` number `index` into a route, reporting what its channel
/// lacks or does not take. `None` when the channel itself is missing or bad (already reported).
pub(super) fn finish(
    report: &mut Report,
    src: &Source<'_>,
    header: usize,
    prefix: &str,
    index: usize,
    draft: RouteDraft,
    origin: Origin,
) -> Option<NotifyRoute> {
    let channel = draft.channel?;
    let present = |key: &str| match key {
        "to" => draft.to.is_some(),
        "cc" => draft.cc.is_some(),
        "from" => draft.from.is_some(),
        "url" => draft.url.is_some(),
        "secret_file" => draft.secret_file.is_some(),
        "trust" => draft.trust.is_some(),
        "command" => draft.command.is_some(),
        _ => false,
    };
    for (key, owner) in CHANNEL_KEYS {
        if owner != channel && present(key) {
            report.problem(
                src,
                header,
                &format!("{prefix}.{key}"),
                format!(
                    "{key} is for {} routes, and this one has channel = \"{}\"",
                    owner.as_str(),
                    channel.as_str()
                ),
                format!(
                    "remove {key}, or make it a route of its own with channel = \"{}\"",
                    owner.as_str()
                ),
            );
        }
    }
    let required = match channel {
        Channel::Mail => ("to", r#"to = ["it@apotek.example"]"#),
        Channel::Webhook => ("url", r#"url = "https://hooks.example/certvakt""#),
        Channel::Command => ("command", r#"command = ["/usr/local/bin/page-it"]"#),
    };
    if !present(required.0) {
        report.problem(
            src,
            header,
            &format!("{prefix}.{}", required.0),
            format!("this {} route has no {}", channel.as_str(), required.0),
            format!("add {} below this [[notify]] header", required.1),
        );
    }
    if draft.timeout.is_some() && channel != Channel::Command {
        report.problem(
            src,
            header,
            &format!("{prefix}.timeout"),
            "timeout is for command routes; mail and webhook attempts take [notifications] timeout"
                .into(),
            "remove it, or set timeout in [notifications]".into(),
        );
    }
    let channel = match channel {
        Channel::Mail => RouteChannel::Mail {
            to: draft.to.unwrap_or_default(),
            cc: draft.cc.unwrap_or_default(),
            from: draft.from,
        },
        Channel::Webhook => RouteChannel::Webhook {
            url: draft.url.unwrap_or_default(),
            secret_file: draft.secret_file,
            trust: draft.trust,
        },
        Channel::Command => RouteChannel::Command {
            command: draft.command.unwrap_or_default(),
            timeout: draft
                .timeout
                .unwrap_or(HumanDuration(std::time::Duration::from_secs(30))),
        },
    };
    // A route with a problem is still kept (the load fails), so later indices stay right.
    Some(NotifyRoute {
        name: draft.name.unwrap_or_else(|| format!("notify-{index}")),
        events: draft.events.unwrap_or_else(NotifyEvent::defaults),
        certificates: draft.certificates,
        plugins: draft.plugins,
        channel,
        origin,
    })
}

/// What stands for a route whose channel could not be read (the load fails anyway).
pub(super) fn placeholder(index: usize, origin: Origin) -> NotifyRoute {
    NotifyRoute {
        name: format!("notify-{index}"),
        events: Vec::new(),
        certificates: Vec::new(),
        plugins: Vec::new(),
        channel: RouteChannel::Command {
            command: Vec::new(),
            timeout: HumanDuration(std::time::Duration::from_secs(30)),
        },
        origin,
    }
}

// The readers of the rows above.

fn port(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<u16> {
    if let DeValue::Integer(n) = v.get_ref()
        && let Ok(port) = u16::from_str_radix(n.as_str(), n.radix())
        && port > 0
    {
        return Some(port);
    }
    r.refuse(
        at,
        v,
        format!("must be a port number from 1 to 65535, not {}", shown(v)),
        format!("write the relay's port, e.g. {}", at.example),
    );
    None
}

fn count(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<u32> {
    if let DeValue::Integer(n) = v.get_ref()
        && let Ok(count) = u32::from_str_radix(n.as_str(), n.radix())
        && count > 0
    {
        return Some(count);
    }
    r.refuse(
        at,
        v,
        format!("must be a whole number of at least 1, not {}", shown(v)),
        format!("write how many failures in a row, e.g. {}", at.example),
    );
    None
}

fn shown(v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::Integer(n) => n.as_str().to_owned(),
        other => describe(other).to_owned(),
    }
}

fn mail_tls(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<MailTls> {
    parsed(r, at, v, |text| match text {
        "starttls" => Ok(MailTls::Starttls),
        "tls" => Ok(MailTls::Tls),
        "none" => Ok(MailTls::None),
        _ => Err(Refusal {
            message: format!("\"{text}\" is not a way to reach a mail relay"),
            hint: "write \"starttls\" (port 587), \"tls\" (port 465), or \"none\" (a relay on \
                   this machine only)"
                .into(),
        }),
    })
}

fn channel(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Channel> {
    parsed(r, at, v, |text| match text {
        "mail" => Ok(Channel::Mail),
        "webhook" => Ok(Channel::Webhook),
        "command" => Ok(Channel::Command),
        _ => Err(Refusal {
            message: format!("\"{text}\" is not a channel"),
            hint: "write channel = \"mail\", \"webhook\" or \"command\"".into(),
        }),
    })
}

/// Event names; each unknown one is reported with the nearest valid name.
fn events(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Vec<NotifyEvent>> {
    let names = strings(r, at, v)?;
    let valid: Vec<&str> = NotifyEvent::ROUTABLE.iter().map(|e| e.as_str()).collect();
    let mut out = Vec::new();
    let mut fine = true;
    for (j, name) in names.iter().enumerate() {
        if let Some(event) = NotifyEvent::ROUTABLE.iter().find(|e| e.as_str() == name) {
            if !out.contains(event) {
                out.push(*event);
            }
            continue;
        }
        fine = false;
        let hint = match closest(name, &valid) {
            Some(s) => format!("did you mean \"{s}\"? Events: {}", valid.join(", ")),
            None => format!("name events from: {}", valid.join(", ")),
        };
        r.problem(
            at.src,
            v.span().start,
            &format!("{}[{j}]", at.key),
            format!("\"{name}\" is not an event"),
            hint,
        );
    }
    if fine && out.is_empty() {
        r.refuse(
            at,
            v,
            "the list of events is empty, so this route is told nothing".into(),
            format!(
                "name the events it wants, e.g. {}, or leave events out for all but renewal_completed and heartbeat",
                at.example
            ),
        );
        return None;
    }
    fine.then_some(out)
}

/// The secret files the notification tables name (`[mail] password_file`, each webhook's
/// `secret_file`): each must be a readable, non-empty regular file. Not part of the pure
/// [`super::validate`]; [`super::load`] runs it after it, so `check-config`, the start and
/// every reload report an unreadable secret with the configuration's other problems.
pub(super) fn check_secret_files(config: &super::Config) -> Vec<super::Problem> {
    let mut files: Vec<(String, &std::path::Path, Option<&Origin>)> = Vec::new();
    if let Some(file) = &config.mail.password_file {
        files.push(("mail.password_file".into(), file, None));
    }
    for (i, route) in config.notify.iter().enumerate() {
        if let RouteChannel::Webhook {
            secret_file: Some(file),
            ..
        } = &route.channel
        {
            files.push((
                format!("notify[{i}].secret_file"),
                file,
                Some(&route.origin),
            ));
        }
    }
    let mut problems = Vec::new();
    for (key, file, entry) in files {
        let message = match crate::bounded::read(file, crate::bounded::PASSWORD_FILE_LIMIT) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
                format!("the secret file {} is empty", file.display())
            }
            Ok(_) => continue,
            Err(e) => format!("cannot read the secret file: {}", e.sentence(file)),
        };
        let origin = config.key_origins.get(&key).or(entry);
        problems.push(super::Problem {
            file: origin
                .map(|o| o.file.clone())
                .or_else(|| config.files.first().cloned())
                .unwrap_or_default(),
            line: origin.map(|o| o.line),
            key,
            message,
            hint: "write the secret into the file, owned by root, group certvakt, mode 0640".into(),
        });
    }
    problems
}
