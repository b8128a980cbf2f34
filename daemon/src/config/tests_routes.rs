//! `[mail]`, `[notifications]` and `[[notify]]`, loaded from real files.

use super::tests::{Dir, find, places};
use super::*;

const ROUTES: &str = r#"
[mail]
relay = "smtp.apotek.example"
port = 2587
username = "certvakt"
password_file = "/etc/certvakt/secrets/smtp.pass"
from = "certvakt@apotek.example"

[notifications]
remind_every = "12h"
failing_after = 2

[[certificate]]
id = "fmk-prod"
cert = "/etc/certvakt/fmk/cert.pem"
plugin = "dk-fmk"

[[notify]]
name = "it-desk"
channel = "mail"
to = ["it@apotek.example"]
cc = ["chef@apotek.example"]
certificates = ["fmk-prod"]

[[notify]]
name = "tickets"
channel = "webhook"
url = "https://hooks.example/certvakt"
secret_file = "/etc/certvakt/secrets/webhook.key"
events = ["task_opened", "renewal_completed"]

[[notify]]
channel = "command"
command = ["/usr/local/bin/page-it", "--team", "apotek"]
timeout = "10s"
plugins = ["dk-fmk"]
"#;

#[test]
fn routes_of_every_channel_load_with_their_defaults() {
    let dir = Dir::new();
    let smtp = dir.write("secrets/smtp.pass", "hunter2\n");
    let hook = dir.write("secrets/webhook.key", "0123456789abcdef\n");
    dir.write(
        "certvakt.toml",
        &ROUTES
            .replace(
                "/etc/certvakt/secrets/smtp.pass",
                &smtp.display().to_string(),
            )
            .replace(
                "/etc/certvakt/secrets/webhook.key",
                &hook.display().to_string(),
            ),
    );
    let config = dir.load_ok();
    assert_eq!(config.mail.relay.as_deref(), Some("smtp.apotek.example"));
    assert_eq!(config.mail.port(), 2587);
    assert_eq!(config.mail.tls, MailTls::Starttls);
    assert_eq!(config.notifications.remind_every.as_secs(), 12 * 3600);
    assert_eq!(config.notifications.failing_after, 2);
    assert_eq!(config.notifications.retry_for.as_secs(), 2 * 86_400);
    assert_eq!(config.notify.len(), 3);
    let desk = &config.notify[0];
    assert_eq!(desk.name, "it-desk");
    assert_eq!(desk.events, NotifyEvent::defaults());
    assert!(!desk.events.contains(&NotifyEvent::RenewalCompleted));
    assert!(
        !desk.events.contains(&NotifyEvent::Heartbeat),
        "asked for by name only"
    );
    assert_eq!(config.notifications.heartbeat_every.as_secs(), 86_400);
    assert_eq!(
        desk.channel,
        RouteChannel::Mail {
            to: vec!["it@apotek.example".into()],
            cc: vec!["chef@apotek.example".into()],
            from: None
        }
    );
    assert!(desk.wants(NotifyEvent::TaskOpened, Some(("fmk-prod", Some("dk-fmk")))));
    assert!(!desk.wants(NotifyEvent::TaskOpened, Some(("other", Some("dk-fmk")))));
    assert!(!desk.wants(NotifyEvent::PluginRefused, None));
    let tickets = &config.notify[1];
    assert_eq!(
        tickets.events,
        vec![NotifyEvent::TaskOpened, NotifyEvent::RenewalCompleted]
    );
    assert!(!tickets.wants(NotifyEvent::Expired, Some(("fmk-prod", None))));
    assert!(!tickets.wants(NotifyEvent::PluginRefused, None));
    let pager = &config.notify[2];
    assert_eq!(pager.name, "notify-2");
    assert!(pager.wants(
        NotifyEvent::RenewalFailing,
        Some(("fmk-prod", Some("dk-fmk")))
    ));
    assert!(!pager.wants(NotifyEvent::RenewalFailing, Some(("/etc/ssl/x.pem", None))));
    match &pager.channel {
        RouteChannel::Command { command, timeout } => {
            assert_eq!(command[0], "/usr/local/bin/page-it");
            assert_eq!(timeout.as_secs(), 10);
        }
        other => panic!("expected a command route, got {other:?}"),
    }
}

#[test]
fn route_mistakes_are_all_reported_with_their_lines() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[mail]
relay = "mail.example.net"
tls = "none"
from = "Certvakt <certvakt@apotek.example>"

[[notify]]
name = "desk"
channel = "mail"
to = ["it-apotek.example"]
url = "https://hooks.example/x"
events = ["task_open", "expired"]

[[notify]]
name = "desk"
channel = "webhook"
url = "http://hooks.example/certvakt"
certificates = ["fmk-prd"]

[[notify]]
channel = "pager"
command = ["/bin/true"]

[[notify]]
channel = "command"
"#,
    );
    let problems = dir.load_err();
    let got = places(&problems);
    for expected in [
        ("mail.tls", Some(3)),
        ("mail.from", Some(4)),
        ("notify[0].url", Some(6)),
        ("notify[0].to[0]", Some(9)),
        ("notify[0].events[0]", Some(11)),
        ("notify[1].name", Some(14)),
        ("notify[1].url", Some(16)),
        ("notify[1].certificates[0]", Some(17)),
        ("notify[2].channel", Some(20)),
        ("notify[3].command", Some(23)),
    ] {
        assert!(
            got.contains(&expected),
            "missing {expected:?} in:\n{}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(
        find(&problems, "notify[0].events[0]").hint,
        "did you mean \"task_opened\"? Events: task_opened, task_reminder, renewal_failing, \
         expiring, expired, renewal_completed, plugin_refused, key_prestaged, heartbeat"
    );
    assert!(
        find(&problems, "notify[0].url")
            .message
            .contains("is for webhook routes")
    );
    assert!(
        find(&problems, "notify[1].url")
            .message
            .contains("plain http")
    );
    assert!(
        find(&problems, "notify[1].name")
            .message
            .contains("used twice")
    );
    // The route whose channel is unreadable says only that.
    assert!(
        !got.iter()
            .any(|(k, _)| k.starts_with("notify[2].") && *k != "notify[2].channel")
    );
}

#[test]
fn a_mail_route_needs_a_relay_and_a_sender() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        "[[notify]]\nchannel = \"mail\"\nto = [\"it@apotek.example\"]\n",
    );
    let problems = dir.load_err();
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("names no relay")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("without a sender")),
        "{messages:?}"
    );
    assert!(problems.iter().all(|p| p.line == Some(2)), "{problems:?}");
}

#[test]
fn secret_files_must_be_readable_and_not_empty() {
    let dir = Dir::new();
    let empty = dir.write("secrets/webhook.key", "\n");
    let missing = dir.dir.path().join("secrets/smtp.pass");
    dir.write(
        "certvakt.toml",
        &format!(
            "[mail]\nrelay = \"127.0.0.1\"\nusername = \"u\"\npassword_file = \"{}\"\nfrom = \"a@b.example\"\n\n\
             [[notify]]\nchannel = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nsecret_file = \"{}\"\n",
            missing.display(),
            empty.display()
        ),
    );
    let problems = dir.load_err();
    assert_eq!(
        places(&problems),
        vec![
            ("mail.password_file", Some(4)),
            ("notify[0].secret_file", Some(10))
        ]
    );
    assert!(
        problems[0].message.contains("cannot read the secret file"),
        "{problems:?}"
    );
    assert!(problems[1].message.contains("is empty"), "{problems:?}");
    dir.write("secrets/smtp.pass", "hunter2\n");
    dir.write("secrets/webhook.key", "0123456789abcdef\n");
    dir.load_ok();
}

#[test]
fn a_heartbeat_more_often_than_every_minute_is_refused() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        "[notifications]\nheartbeat_every = \"30s\"\n\n[[notify]]\nchannel = \"command\"\n\
         command = [\"/usr/local/bin/beat\"]\nevents = [\"heartbeat\"]\n",
    );
    let problems = dir.load_err();
    let problem = find(&problems, "notifications.heartbeat_every");
    assert!(problem.message.contains("flood the receiver"), "{problem}");
    dir.write(
        "certvakt.toml",
        "[notifications]\nheartbeat_every = \"5m\"\n\n[[notify]]\nchannel = \"command\"\n\
         command = [\"/usr/local/bin/beat\"]\nevents = [\"heartbeat\"]\n",
    );
    let config = dir.load_ok();
    assert_eq!(config.notifications.heartbeat_every.as_secs(), 300);
    assert_eq!(config.notify[0].events, vec![NotifyEvent::Heartbeat]);
    assert!(config.notify[0].wants(NotifyEvent::Heartbeat, None));
}
