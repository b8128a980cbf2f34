//! Semantic checks of the notification tables (`[mail]`, `[notifications]`, `[[notify]]`):
//! pure, like [`super::validate`], whose [`Validator`] places each problem.

use std::collections::HashMap;
use std::net::IpAddr;

use super::validate::{Validator, closest, is_valid_id, is_valid_plugin_name};
use super::{MailTls, Origin, Problem, RouteChannel};

/// Every problem of the notification tables of `v`'s configuration.
pub(super) fn validate(config: &super::Config) -> Vec<Problem> {
    let mut v = Validator {
        config,
        problems: Vec::new(),
    };
    v.mail();
    v.routes();
    v.problems
}

/// A webhook address: `https://`, or `http://` to this machine.
pub(super) fn webhook_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("\"{url}\" is not an address (no scheme)"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "\"{url}\" has a user name in it; put the secret in secret_file"
        ));
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => host,
        _ => authority,
    };
    if host.is_empty() {
        return Err(format!("\"{url}\" names no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback_host(host) => Ok(()),
        "http" => Err(format!(
            "\"{url}\" is plain http to another machine; the event would cross the network unprotected"
        )),
        other => Err(format!("\"{other}\" is not a scheme a webhook can use")),
    }
}

/// Whether `host` is this machine: `localhost` or a loopback address.
pub(super) fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A mail address as routes and `[mail] from` write it: `local@domain`, nothing around it.
/// (The mail channel parses it fully when sending; this catches what is plainly wrong.)
pub(super) fn mail_address(text: &str) -> Result<(), String> {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(format!("\"{text}\" is not a mail address (it has no @)"));
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c);
    if local.is_empty() || domain.is_empty() || !domain.contains('.') && domain != "localhost" {
        return Err(format!("\"{text}\" is not a whole mail address"));
    }
    if text.chars().any(bad) {
        return Err(format!(
            "\"{text}\" is not a plain mail address (write the address only, no name or brackets)"
        ));
    }
    Ok(())
}

impl Validator<'_> {
    /// A trust set name that `[trust]` must define.
    pub(super) fn trust_set(&mut self, key: &str, entry: Option<&Origin>, name: &str) {
        if self.config.trust.contains_key(name) {
            return;
        }
        let known: Vec<&str> = self.config.trust.keys().map(String::as_str).collect();
        self.report(
            key,
            entry,
            format!("names the trust set \"{name}\", which [trust] does not define"),
            if known.is_empty() {
                format!("add it: [trust] {name} = [\"/etc/certvakt/trust/{name}.pem\"]")
            } else {
                format!("write one of {}, or add it to [trust]", known.join(", "))
            },
        );
    }

    fn address(&mut self, key: &str, entry: Option<&Origin>, text: &str) {
        if let Err(message) = mail_address(text) {
            self.report(
                key,
                entry,
                message,
                "write an address like \"it@apotek.example\"".into(),
            );
        }
    }

    fn mail(&mut self) {
        let m = &self.config.mail;
        let Some(relay) = &m.relay else {
            let set = [
                ("mail.username", m.username.is_some()),
                ("mail.password_file", m.password_file.is_some()),
            ];
            for (key, _) in set.iter().filter(|(_, on)| *on) {
                self.report(
                    key,
                    None,
                    "is set, but [mail] names no relay".into(),
                    "add relay = \"smtp.example.dk\" to [mail], or remove this key".into(),
                );
            }
            return;
        };
        if relay.trim().is_empty() || relay.contains(char::is_whitespace) || relay.contains('/') {
            self.report(
                "mail.relay",
                None,
                format!("\"{relay}\" is not a host name or address"),
                "write the relay's host name, e.g. relay = \"smtp.example.dk\" (the port goes in port)"
                    .into(),
            );
        }
        if m.tls == MailTls::None && !is_loopback_host(relay) {
            self.report(
                "mail.tls",
                None,
                format!(
                    "tls = \"none\" sends mail in clear, and the relay {relay} is not on this machine"
                ),
                "use tls = \"starttls\" (port 587) or \"tls\" (port 465); \"none\" is for a relay \
                 on 127.0.0.1 only"
                    .into(),
            );
        }
        match (&m.username, &m.password_file) {
            (Some(_), None) => self.report(
                "mail.username",
                None,
                "a user name without password_file".into(),
                "add password_file = \"/etc/certvakt/secrets/smtp.pass\" (readable by certvakt only)"
                    .into(),
            ),
            (None, Some(_)) => self.report(
                "mail.password_file",
                None,
                "a password file without username".into(),
                "add username = \"...\" to [mail], or remove password_file".into(),
            ),
            (Some(_), Some(file)) => {
                self.absolute("mail.password_file", None, file, "/etc/certvakt/secrets/smtp.pass");
                if m.tls == MailTls::None {
                    self.report(
                        "mail.username",
                        None,
                        "the password would be sent without TLS (tls = \"none\")".into(),
                        "use tls = \"starttls\" or \"tls\", or a relay that needs no password".into(),
                    );
                }
            }
            (None, None) => {}
        }
        if let Some(from) = &m.from {
            self.address("mail.from", None, from);
        }
        if let Some(name) = &m.trust {
            self.trust_set("mail.trust", None, name);
        }
    }

    fn routes(&mut self) {
        let config = self.config;
        let mut names: HashMap<&str, usize> = HashMap::new();
        let ids: Vec<&str> = config.certificates.iter().map(|c| c.id.as_str()).collect();
        for (i, route) in config.notify.iter().enumerate() {
            let origin = Some(&route.origin);
            let key = |k: &str| format!("notify[{i}].{k}");
            if !is_valid_id(&route.name) {
                self.report(
                    &key("name"),
                    origin,
                    format!("\"{}\" is not a valid route name", route.name),
                    "use letters, digits, '.', '_' and '-' (at most 64), e.g. it-desk".into(),
                );
            } else if let Some(first) = names.insert(&route.name, i) {
                let place = self.describe_place(
                    &format!("notify[{first}].name"),
                    &config.notify[first].origin,
                );
                self.report(
                    &key("name"),
                    origin,
                    format!(
                        "the route name \"{}\" is used twice (first at {place})",
                        route.name
                    ),
                    "give each [[notify]] its own name".into(),
                );
            }
            for (j, id) in route.certificates.iter().enumerate() {
                if id.starts_with('/') || ids.contains(&id.as_str()) {
                    continue;
                }
                let hint = match closest(id, &ids) {
                    Some(s) => format!(
                        "did you mean \"{s}\"? Write a [[certificate]] id or a watched file's path"
                    ),
                    None => {
                        "write a [[certificate]] id, or the absolute path of a watched file".into()
                    }
                };
                self.report(
                    &format!("notify[{i}].certificates[{j}]"),
                    origin,
                    format!("\"{id}\" is no [[certificate]] id and no watched file's path"),
                    hint,
                );
            }
            for (j, plugin) in route.plugins.iter().enumerate() {
                if !is_valid_plugin_name(plugin) {
                    self.report(
                        &format!("notify[{i}].plugins[{j}]"),
                        origin,
                        format!("\"{plugin}\" is not a plugin name"),
                        "write plugin names as `certvakt plugins` shows them, e.g. dk-fmk".into(),
                    );
                }
            }
            match &route.channel {
                RouteChannel::Mail { to, cc, from } => {
                    if config.mail.relay.is_none() {
                        self.report(
                            &key("channel"),
                            origin,
                            "a mail route, but [mail] names no relay to send through".into(),
                            "add a [mail] section with relay = \"smtp.example.dk\"".into(),
                        );
                    }
                    if from.is_none() && config.mail.from.is_none() {
                        self.report(
                            &key("channel"),
                            origin,
                            "a mail route without a sender: neither from here nor [mail] from is set".into(),
                            "add from = \"certvakt@apotek.example\" to [mail]".into(),
                        );
                    }
                    if to.is_empty() {
                        self.report(
                            &key("to"),
                            origin,
                            "the list of recipients is empty".into(),
                            "write to = [\"it@apotek.example\"]".into(),
                        );
                    }
                    for (j, a) in to.iter().enumerate() {
                        self.address(&format!("notify[{i}].to[{j}]"), origin, a);
                    }
                    for (j, a) in cc.iter().enumerate() {
                        self.address(&format!("notify[{i}].cc[{j}]"), origin, a);
                    }
                    if let Some(from) = from {
                        self.address(&key("from"), origin, from);
                    }
                }
                RouteChannel::Webhook {
                    url,
                    secret_file,
                    trust,
                } => {
                    if let Err(message) = webhook_url(url) {
                        self.report(
                            &key("url"),
                            origin,
                            message,
                            "write an https:// address (http:// only to this machine), e.g. \
                             \"https://hooks.example/certvakt\""
                                .into(),
                        );
                    }
                    match secret_file {
                        Some(file) => self.absolute(
                            &key("secret_file"),
                            origin,
                            file,
                            "/etc/certvakt/secrets/webhook.key",
                        ),
                        None => self.report(
                            &key("url"),
                            origin,
                            "a webhook without secret_file: the receiver could not tell our posts from anyone's".into(),
                            "add secret_file = \"/etc/certvakt/secrets/webhook.key\" (a random key, shared with the receiver)".into(),
                        ),
                    }
                    if let Some(name) = trust {
                        self.trust_set(&key("trust"), origin, name);
                    }
                }
                RouteChannel::Command { timeout, .. } => {
                    if timeout.as_secs() == 0 {
                        self.report(
                            &key("timeout"),
                            origin,
                            "the timeout must be longer than zero".into(),
                            "write e.g. timeout = \"30s\"".into(),
                        );
                    }
                }
            }
        }
        let n = &config.notifications;
        for (k, d) in [
            ("remind_every", &n.remind_every),
            ("remind_often_every", &n.remind_often_every),
            ("retry_for", &n.retry_for),
            ("timeout", &n.timeout),
            ("heartbeat_every", &n.heartbeat_every),
        ] {
            if d.as_secs() == 0 {
                self.report(
                    &format!("notifications.{k}"),
                    None,
                    format!("{k} must be longer than zero"),
                    "write a duration such as \"4h\"".into(),
                );
            }
        }
        if n.remind_every.as_secs() > 0 && n.remind_every.as_secs() < 600 {
            self.report(
                "notifications.remind_every",
                None,
                "reminders more often than every 10 minutes would flood the person".into(),
                "write at least \"10m\"; \"1d\" is the default".into(),
            );
        }
        if n.heartbeat_every.as_secs() > 0 && n.heartbeat_every.as_secs() < 60 {
            self.report(
                "notifications.heartbeat_every",
                None,
                "a heartbeat more often than every minute would flood the receiver".into(),
                "write at least \"1m\"; \"1d\" is the default (a receiver then alarms after a day and a margin without one)".into(),
            );
        }
        if n.remind_often_every.as_secs() > 0 && n.remind_often_every.as_secs() < 600 {
            self.report(
                "notifications.remind_often_every",
                None,
                "reminders more often than every 10 minutes would flood the person".into(),
                "write at least \"10m\"; \"4h\" is the default".into(),
            );
        }
    }
}
