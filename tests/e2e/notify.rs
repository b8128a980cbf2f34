//! Notifications end to end: the real daemon with the real `manual` plugin opening an order
//! task, telling a real SMTP server (Python's aiosmtpd, with STARTTLS and AUTH; what arrives is
//! decoded by Python's `email` package) and a webhook receiver that checks the signature with
//! its own HMAC; driven by the real CLI. Reminders let a day pass with the notifier's test
//! clock (a `test-hooks` build only).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually, http_get};
use certvakt_testkit::smtp::{ReceivedMail, SmtpOptions, SmtpSink};
use certvakt_testkit::webhook::{WebhookReceiver, expected_signature};
use certvakt_testkit::{CaShape, IssuedCert, KeyType, LeafSpec, TestCa};

use crate::common::{WAIT, bins, stderr, stdout};
use crate::renewal::ManualSetup;

const USER: &str = "certvakt@apotek.example";
const PASSWORD: &str = "rød grøt med fløte";
const SECRET: &str = "delt hemmelighet æøå";
/// The CA's name in the task's title: the subject and body carry it.
const CA_NAME: &str = "Ålesund Sertifikat æ ø å ä ö";

/// A managed certificate whose renewal opens an order task at once, a relay, a webhook
/// receiver, and the daemon's configuration telling both.
struct Site {
    setup: ManualSetup,
    smtp: SmtpSink,
    hooks: WebhookReceiver,
    /// The notifier's test clock: seconds to add.
    clock: PathBuf,
    secret_file: PathBuf,
}

impl Site {
    /// `routes`: the `[[notify]]` entries (`{mail}`, `{webhook}` and `{secret}` are filled in).
    fn new(routes: &str) -> Result<Site> {
        let setup = ManualSetup::new()?;
        let ca = TestCa::new(CaShape::Tls)?;
        let server: IssuedCert =
            ca.issue(&LeafSpec::tls_server(&["localhost", "127.0.0.1"]).key_type(KeyType::EcP256))?;
        let smtp = SmtpSink::start(SmtpOptions::starttls(&server).auth(USER, PASSWORD))?;
        let hooks = WebhookReceiver::start(SECRET.as_bytes())?;
        let dir = setup.path();
        let relay_ca = dir.join("relay-ca.pem");
        std::fs::write(&relay_ca, ca.root_pem())?;
        let password_file = dir.join("smtp.pass");
        std::fs::write(&password_file, format!("{PASSWORD}\n"))?;
        let secret_file = dir.join("webhook.key");
        std::fs::write(&secret_file, SECRET)?;
        let clock = dir.join("clock");
        std::fs::write(&clock, "0")?;
        let mut config = std::fs::read_to_string(&setup.config)?
            .replace("ca_name = \"Test CA\"", &format!("ca_name = \"{CA_NAME}\""));
        config.push_str(&format!(
            r#"
[trust]
relay = ["{relay_ca}"]

[mail]
relay = "127.0.0.1"
port = {port}
tls = "starttls"
trust = "relay"
username = "{USER}"
password_file = "{password}"
from = "certvakt@apotek.example"

{routes}
"#,
            relay_ca = relay_ca.display(),
            port = smtp.port(),
            password = password_file.display(),
            routes = routes
                .replace("{webhook}", &hooks.url("/certvakt"))
                .replace("{secret}", &secret_file.display().to_string()),
        ));
        std::fs::write(&setup.config, config)?;
        Ok(Site {
            setup,
            smtp,
            hooks,
            clock,
            secret_file,
        })
    }

    fn start(&self) -> Result<Daemon> {
        let clock = self.clock.display().to_string();
        Daemon::start(
            &bins()?,
            &self.setup.config,
            &[("CERTVAKT_TEST_NOTIFY_CLOCK", clock.as_str())],
        )
    }

    /// Waits for `n` mails; on a timeout the error shows the daemon's log.
    fn mails(&self, daemon: &Daemon, n: usize) -> Result<Vec<ReceivedMail>> {
        self.smtp
            .wait_for(n, WAIT)
            .with_context(|| format!("waiting for {n} mail(s)\n{}", daemon.log_text()))
    }
}

const MAIL_ROUTE: &str = r#"
[[notify]]
name = "it-desk"
channel = "mail"
to = ["it@apotek.example"]
cc = ["apoteker@apotek.example"]
"#;

const WEBHOOK_ROUTE: &str = r#"
[[notify]]
name = "tickets"
channel = "webhook"
url = "{webhook}"
secret_file = "{secret}"
"#;

fn open_task(daemon: &Daemon) -> Result<certvakt::control::protocol::Task> {
    eventually(WAIT, "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })
}

/// The value of the one sample of `metric` with all of `labels` in `/metrics`.
fn metric(daemon: &Daemon, metric: &str, labels: &[&str]) -> Result<Option<f64>> {
    let (code, body) = http_get(&daemon.metrics_addr()?, "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    Ok(body
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok()))
}

#[test]
fn a_task_arrives_by_mail_and_webhook_once_then_a_reminder_a_day_later() -> Result<()> {
    let site = Site::new(&format!("{MAIL_ROUTE}{WEBHOOK_ROUTE}"))?;
    let daemon = site.start()?;
    let task = open_task(&daemon)?;

    let mails = site.mails(&daemon, 1)?;
    let mail = &mails[0];
    // What a mail client shows, as Python decodes it.
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
    assert!(mail.tls, "the mail went in clear");
    assert_eq!(mail.auth_user.as_deref(), Some(USER));
    assert_eq!(mail.mail_from, "certvakt@apotek.example");
    assert_eq!(
        mail.rcpt_tos,
        ["it@apotek.example", "apoteker@apotek.example"]
    );
    assert_eq!(
        mail.subject,
        format!("[certvakt] Action needed: web — {}", task.title)
    );
    assert!(mail.subject.contains(CA_NAME), "{}", mail.subject);
    let text = mail.text.as_deref().context("no text body")?;
    assert_eq!(mail.text_charset.as_deref(), Some("utf-8"));
    assert!(text.contains(&task.title), "{text}");
    assert!(text.contains(task.instructions.trim()), "{text}");
    assert!(text.contains("certvakt import web"), "{text}");
    assert!(text.contains(&format!("Task: {}", task.id)), "{text}");
    let names: Vec<&str> = mail
        .attachments
        .iter()
        .filter_map(|a| a.name.as_deref())
        .collect();
    let csr = task
        .files
        .iter()
        .filter_map(|f| f.file_name()?.to_str())
        .find(|n| n.ends_with(".csr") || n.contains("csr"))
        .context("the task has no CSR file")?;
    assert!(
        names.contains(&csr),
        "attachments {names:?}, task files {:?}",
        task.files
    );
    assert!(!names.contains(&"instructions.txt"), "{names:?}");
    assert_eq!(
        mail.headers.get("X-Certvakt-Event").map(String::as_str),
        Some("task_opened")
    );

    // The webhook: signed with the shared secret, the schema's fields, the same event id.
    let hook = eventually(WAIT, "the webhook", || {
        site.hooks.accepted().into_iter().next()
    })?;
    assert_eq!(
        hook.headers.get("x-certvakt-signature"),
        Some(&expected_signature(SECRET.as_bytes(), &hook.body))
    );
    assert_eq!(hook.json["schema"], 1);
    assert_eq!(hook.json["event"], "task_opened");
    assert_eq!(hook.json["cert_id"], "web");
    assert_eq!(hook.json["task_id"], task.id.as_str());
    assert_eq!(hook.json["route"], "tickets");
    let delivery = hook.json["delivery_id"].as_str().context("delivery_id")?;
    assert_eq!(
        hook.headers.get("idempotency-key").map(String::as_str),
        Some(delivery)
    );
    let event_id = hook.json["id"].as_str().context("id")?;
    assert!(
        mail.message_id
            .starts_with(&format!("<{event_id}.it-desk@")),
        "{} vs {event_id}",
        mail.message_id
    );

    // Looking again and again tells nothing new.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(site.smtp.messages().len(), 1);
    assert_eq!(site.hooks.accepted().len(), 1);
    assert_eq!(
        metric(
            &daemon,
            "certvakt_notifications_total",
            &[
                "channel=\"mail\"",
                "event=\"task_opened\"",
                "result=\"sent\""
            ]
        )?,
        Some(1.0)
    );

    // A day later the task is still open: a reminder, by both routes.
    std::fs::write(&site.clock, "90000")?;
    let mails = site.mails(&daemon, 2)?;
    let reminder = &mails[1];
    assert_eq!(
        reminder.subject,
        format!("[certvakt] Reminder: web — {}", task.title)
    );
    assert!(
        reminder
            .text
            .as_deref()
            .is_some_and(|t| t.contains("Reminder 1")),
        "{:?}",
        reminder.text
    );
    assert_ne!(reminder.message_id, mail.message_id);
    eventually(WAIT, "the webhook's reminder", || {
        (site.hooks.accepted().len() == 2).then_some(())
    })?;
    assert_eq!(site.hooks.accepted()[1].json["event"], "task_reminder");
    // The receiver has the post before the daemon has its answer: the outbox empties after.
    let status = eventually(WAIT, "the outbox to be empty", || {
        daemon
            .status()
            .ok()
            .map(|(_, status)| status)
            .filter(|status| status.notifications.pending == 0)
    })?;
    assert_eq!(status.notifications.routes, 2);
    assert!(status.notifications.last_sent_at.is_some());
    Ok(())
}

#[test]
fn a_relay_that_is_down_delays_the_mail_across_a_kill_9_and_it_arrives_once() -> Result<()> {
    let mut site = Site::new(MAIL_ROUTE)?;
    site.smtp.stop();
    let daemon = site.start()?;
    let task = open_task(&daemon)?;
    // Tried, failed, kept.
    eventually(WAIT, "a failed attempt", || {
        daemon
            .log_text()
            .contains("notification not sent yet (attempt 1)")
            .then_some(())
    })
    .with_context(|| daemon.log_text())?;
    let (code, status) = daemon.status()?;
    assert_eq!(
        status.notifications.pending, 1,
        "{:?}",
        status.notifications
    );
    assert!(status.notifications.oldest_pending_at.is_some());
    assert!(code >= 1, "a task is open: at least a warning");
    let outbox = site.setup.path().join("state/notify/outbox.json");
    let saved = std::fs::read_to_string(&outbox)?;
    assert!(
        saved.contains(&task.id),
        "the outbox does not hold the task's message"
    );

    daemon.signal("KILL")?;
    drop(daemon);
    site.smtp.start_again()?;
    let daemon = site.start()?;
    let mails = site.mails(&daemon, 1)?;
    assert!(
        mails[0].subject.contains(&task.title),
        "{}",
        mails[0].subject
    );
    // Once: no second copy from the restarted daemon's looks, nor from the old attempts.
    std::thread::sleep(Duration::from_secs(6));
    let mails = site.smtp.messages();
    assert_eq!(
        mails.len(),
        1,
        "{:?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let (_, status) = daemon.status()?;
    assert_eq!(
        status.notifications.pending, 0,
        "{:?}",
        status.notifications
    );
    Ok(())
}

#[test]
fn a_wrong_webhook_secret_is_refused_shown_undeliverable_and_sent_once_fixed() -> Result<()> {
    let site = Site::new(WEBHOOK_ROUTE)?;
    std::fs::write(&site.secret_file, "not the shared secret")?;
    let daemon = site.start()?;
    open_task(&daemon)?;
    let status = eventually(WAIT, "the delivery to be given up", || {
        let (_, status) = daemon.status().ok()?;
        (!status.notifications.undeliverable.is_empty()).then_some(status)
    })?;
    let undelivered = &status.notifications.undeliverable[0];
    assert_eq!(undelivered.route, "tickets");
    assert_eq!(undelivered.event, "task_opened");
    let error = undelivered.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("401"), "{error}");
    assert!(site.hooks.refused() >= 1);
    assert!(site.hooks.accepted().is_empty());
    let out = daemon.cli(&["status"])?;
    assert!(stdout(&out).contains("UNDELIVERABLE"), "{}", stdout(&out));
    assert_eq!(
        metric(
            &daemon,
            "certvakt_notifications_queued",
            &["state=\"undeliverable\""]
        )?,
        Some(1.0)
    );

    std::fs::write(&site.secret_file, SECRET)?;
    let out = daemon.cli(&["notify", "retry"])?;
    ensure!(out.status.success(), "notify retry: {}", stderr(&out));
    assert!(
        stdout(&out).starts_with("1 undeliverable"),
        "{}",
        stdout(&out)
    );
    let hook = eventually(WAIT, "the webhook", || {
        site.hooks.accepted().into_iter().next()
    })?;
    assert_eq!(hook.json["event"], "task_opened");
    assert_eq!(
        hook.headers.get("x-certvakt-signature"),
        Some(&expected_signature(SECRET.as_bytes(), &hook.body))
    );
    eventually(WAIT, "the outbox to empty", || {
        let (_, status) = daemon.status().ok()?;
        (status.notifications.undeliverable.is_empty() && status.notifications.pending == 0)
            .then_some(())
    })?;
    Ok(())
}

#[test]
fn notify_test_sends_through_each_route_and_says_which_failed() -> Result<()> {
    let broken = r#"
[[notify]]
name = "nowhere"
channel = "webhook"
url = "http://127.0.0.1:9/certvakt"
secret_file = "{secret}"
"#;
    let site = Site::new(&format!("{MAIL_ROUTE}{WEBHOOK_ROUTE}{broken}"))?;
    let daemon = site.start()?;
    // Not waiting for the task's own mail: count the test mails by subject.
    let out = daemon.cli(&["notify", "test"])?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("ok     it-desk (mail): 250"), "{text}");
    assert!(lines[1].starts_with("ok     tickets (webhook):"), "{text}");
    assert!(lines[2].starts_with("FAILED nowhere (webhook):"), "{text}");
    let test_mail = eventually(WAIT, "the test mail", || {
        site.smtp
            .messages()
            .into_iter()
            .find(|m| m.subject == "[certvakt] Test message for route it-desk")
    })?;
    assert_eq!(
        test_mail
            .headers
            .get("X-Certvakt-Event")
            .map(String::as_str),
        Some("test")
    );
    assert!(
        site.hooks
            .accepted()
            .iter()
            .any(|h| h.json["event"] == "test"),
    );

    // One route by name; an unknown one is named with the routes there are.
    let out = daemon.cli(&["notify", "test", "it-desk"])?;
    ensure!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    let out = daemon.cli(&["notify", "test", "it-dsk"])?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no route \"it-dsk\"; the routes are: it-desk, tickets, nowhere"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn check_config_names_a_bad_route_and_an_unreadable_secret() -> Result<()> {
    let site = Site::new(&format!(
        "{WEBHOOK_ROUTE}\n[[notify]]\nchannel = \"mail\"\nto = [\"it@apotek.example\"]\nevents = [\"task_open\"]\n"
    ))?;
    std::fs::remove_file(&site.secret_file)?;
    let bins = bins()?;
    let out = std::process::Command::new(&bins.certvaktd)
        .args(["check-config", "--config"])
        .arg(&site.setup.config)
        .output()?;
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("notify[1].events[0]: \"task_open\" is not an event"),
        "{text}"
    );
    assert!(text.contains("did you mean \"task_opened\""), "{text}");
    if !text.contains("notify[0].secret_file") {
        bail!("the missing secret file is not named:\n{text}");
    }
    Ok(())
}

#[test]
fn a_plugins_mail_goes_once_when_allowed_and_to_the_person_as_a_file_otherwise() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-example"],
    )?;
    let smtp = SmtpSink::start(SmtpOptions::plain())?;
    let live = dir.path().join("live");
    // `allowed` sends its access request and then fails, so the step (and the request) is
    // tried again every second; `by-hand` may not send mail.
    let body = format!(
        r#"
[mail]
relay = "127.0.0.1"
port = {port}
tls = "none"
from = "certvakt@apotek.example"

[[certificate]]
id = "allowed"
cert = "{live}/allowed.pem"
plugin = "example"
plugin_mail = true
[certificate.settings]
common_name = "allowed.apotek.example"
organisation = "Hjørring Apotek"
test_mail_in = "issue"
test_fail_in = "issue"

[[certificate]]
id = "by-hand"
cert = "{live}/by-hand.pem"
plugin = "example"
[certificate.settings]
common_name = "by-hand.apotek.example"
organisation = "Hjørring Apotek"
test_mail_in = "issue"
"#,
        port = smtp.port(),
        live = live.display(),
    );
    let text = config_toml(dir.path(), "127.0.0.1:0", &body).replace(
        "log_level = \"debug\"",
        "log_level = \"debug\"\nretry_initial = \"1s\"\nretry_max = \"2s\"",
    );
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, text)?;
    let daemon = Daemon::start(&bins, &config, &[])?;

    // The request was asked for three times: one mail, the same id each time.
    let queued = eventually(WAIT, "three tries of allowed's issue", || {
        let ids: Vec<String> = daemon
            .log_text()
            .lines()
            .filter_map(|l| l.split("test_mail_in: issue of allowed: queued ").nth(1))
            .map(str::to_owned)
            .collect();
        (ids.len() >= 3).then_some(ids)
    })
    .with_context(|| daemon.log_text())?;
    assert!(queued.iter().all(|id| id == &queued[0]), "{queued:?}");
    let mails = smtp.wait_for(1, WAIT)?;
    std::thread::sleep(Duration::from_secs(3));
    let mails_now = smtp.messages();
    assert_eq!(
        mails_now.len(),
        1,
        "{:?}",
        mails_now.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let mail = &mails[0];
    assert_eq!(
        mail.subject,
        "Ansökan om behörighet för allowed — Region Västra Götaland"
    );
    assert_eq!(
        mail.rcpt_tos,
        ["access@region.example", "support@cgi.example"]
    );
    assert!(
        mail.text
            .as_deref()
            .is_some_and(|t| t.contains("Åsa Öberg")),
        "{:?}",
        mail.text
    );
    assert_eq!(
        mail.attachments
            .iter()
            .filter_map(|a| a.name.as_deref())
            .collect::<Vec<_>>(),
        ["ansokan.txt"]
    );
    assert_eq!(
        mail.headers.get("X-Certvakt-Event").map(String::as_str),
        Some("plugin_mail")
    );
    // Answers go to the pharmacy's IT, as the plugin asked.
    let raw = String::from_utf8_lossy(&mail.raw);
    assert!(raw.contains("\r\nReply-To: it@apotek.example\r\n"), "{raw}");

    // Not allowed: a task carries the mail, ready to send, and the relay got nothing.
    let task = eventually(WAIT, "by-hand's task", || {
        daemon
            .tasks()
            .ok()?
            .into_iter()
            .find(|t| t.cert_id == "by-hand" && t.title.contains("access request"))
    })?;
    let eml = task
        .files
        .iter()
        .find(|f| f.to_string_lossy().ends_with(".eml"))
        .with_context(|| format!("no .eml among {:?}", task.files))?;
    let eml = std::fs::read_to_string(eml)?;
    assert!(eml.contains("To: access@region.example"), "{eml}");
    assert!(eml.contains("Reply-To: it@apotek.example"), "{eml}");
    assert!(eml.contains("ansokan.txt"), "{eml}");
    assert!(
        smtp.messages()
            .iter()
            .all(|m| !m.subject.contains("by-hand")),
        "by-hand's mail went out"
    );
    Ok(())
}

#[test]
fn a_route_removed_by_a_reload_takes_its_undelivered_messages_with_it() -> Result<()> {
    let site = Site::new(WEBHOOK_ROUTE)?;
    std::fs::write(&site.secret_file, "not the shared secret")?;
    let daemon = site.start()?;
    open_task(&daemon)?;
    eventually(WAIT, "the delivery to be given up", || {
        let (_, status) = daemon.status().ok()?;
        (!status.notifications.undeliverable.is_empty()).then_some(())
    })?;
    let config = std::fs::read_to_string(&site.setup.config)?;
    let route = WEBHOOK_ROUTE
        .replace("{webhook}", &site.hooks.url("/certvakt"))
        .replace("{secret}", &site.secret_file.display().to_string());
    ensure!(
        config.contains(route.trim()),
        "the route is not in the configuration"
    );
    std::fs::write(&site.setup.config, config.replace(route.trim(), ""))?;
    let out = daemon.cli(&["reload"])?;
    ensure!(out.status.success(), "reload: {}", stderr(&out));
    let status = eventually(WAIT, "the outbox to forget the route", || {
        let (_, status) = daemon.status().ok()?;
        status
            .notifications
            .undeliverable
            .is_empty()
            .then_some(status)
    })?;
    assert_eq!(status.notifications.routes, 0);
    assert_eq!(status.notifications.pending, 0);
    assert!(
        daemon
            .log_text()
            .contains("route tickets is no longer configured; its undelivered message is dropped"),
        "{}",
        daemon.log_text()
    );
    Ok(())
}

/// A route that names only `heartbeat`, every hour: one at the start, the next when the
/// notifier's clock has moved an hour on, none again right after a restart; and nothing else
/// reaches it (the task the certificate's renewal opens goes elsewhere).
#[test]
fn a_heartbeat_comes_at_start_then_every_heartbeat_every_and_not_twice_across_a_restart()
-> Result<()> {
    let site = Site::new(&format!(
        "[notifications]\nheartbeat_every = \"1h\"\n{}events = [\"heartbeat\"]\n",
        WEBHOOK_ROUTE
    ))?;
    let daemon = site.start()?;
    let beats = |n: usize| {
        eventually(WAIT, &format!("{n} heartbeat(s)"), || {
            let hooks = site.hooks.accepted();
            (hooks.len() >= n).then_some(hooks)
        })
    };
    let first = beats(1)?;
    let beat = &first[0].json;
    assert_eq!(beat["event"], "heartbeat", "{beat:#}");
    assert!(beat["cert_id"].is_null(), "{beat:#}");
    let created = beat["created_at"].as_i64().context("created_at")?;
    assert_eq!(beat["details"]["every_secs"], 3600, "{beat:#}");
    assert_eq!(
        beat["details"]["next_by"].as_i64(),
        Some(created + 3600),
        "{beat:#}"
    );
    assert_eq!(beat["details"]["managed"], 1, "{beat:#}");
    assert!(
        beat["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("[certvakt] Heartbeat from ")),
        "{beat:#}"
    );
    // The task opened meanwhile is not this route's.
    open_task(&daemon)?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        site.hooks.accepted().len(),
        1,
        "{:#?}",
        site.hooks.accepted()
    );

    // An hour on (the test clock): the second, with an id of its own.
    std::fs::write(&site.clock, "3601")?;
    let second = beats(2)?;
    assert_eq!(second[1].json["event"], "heartbeat");
    assert_ne!(second[1].json["id"], beat["id"]);

    // A restart within the hour sends none: the outbox remembers the last.
    drop(daemon);
    let daemon = site.start()?;
    eventually(WAIT, "the restarted daemon to answer", || {
        daemon.status().ok()
    })?;
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(site.hooks.accepted().len(), 2, "{}", daemon.log_text());
    Ok(())
}
