//! The channels against real peers on loopback: an SMTP server (aiosmtpd, decoding with
//! Python's `email` package), an HTTP receiver that checks signatures, and real programs.
//! Nothing is mocked. Every test runs like the daemon: a current-thread runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certvakt_testkit::smtp::{SmtpOptions, SmtpSink};
use certvakt_testkit::webhook::{WebhookReceiver, expected_signature};
use certvakt_testkit::{CaShape, IssuedCert, KeyType, LeafSpec, TestCa};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::runtime::Handle;

use super::mail::Envelope;
use super::{SendError, command, mail, webhook};
use crate::config::{MailSection, MailTls, NotifyEvent};
use crate::metrics::Metrics;
use crate::notify::message::{Attachment, Message, content_type};
use crate::plugin_host::http::{HttpService, NoIdentities, TrustFiles};

const SUBJECT: &str = "Fornyelse: æ ø å ä ö — Ålesund";
const BODY: &str = "Hei!\n\nCertifikatet for Hjørring Apotek udløber om 14 dage.\nFørst: åbn MitID Erhverv og forny «FMK system».\n";
const USER: &str = "certvakt@apotek.example";
const PASSWORD: &str = "korrekt hest batteri stift";
const TIMEOUT: Duration = Duration::from_secs(20);

fn message() -> Message {
    let mut details = serde_json::Map::new();
    details.insert("failures".into(), json!(3));
    Message {
        id: "0123456789abcdef0123456789abcdef".into(),
        event: NotifyEvent::TaskOpened,
        cert_id: Some("fmk-prod".into()),
        task_id: Some("t-0042".into()),
        plugin: Some("dk-fmk".into()),
        created_at: 1_780_000_000,
        deadline: Some(1_790_000_000),
        subject: SUBJECT.into(),
        body: BODY.into(),
        attachments: vec![
            Attachment {
                name: "fmk-prod.csr".into(),
                content_type: content_type("fmk-prod.csr").into(),
                bytes: (0..=255u8).cycle().take(3000).collect(),
            },
            Attachment {
                name: "vejledning.txt".into(),
                content_type: content_type("vejledning.txt").into(),
                bytes: "Trin 1: log ind på MitID Erhverv.\n".as_bytes().to_vec(),
            },
        ],
        details,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The relay's certificate from one CA, a trust set of that CA (`relay-ca`) and of another
/// (`other`), and a password file.
struct MailFixture {
    server: IssuedCert,
    trust: BTreeMap<String, Vec<PathBuf>>,
    password_file: PathBuf,
    dir: tempfile::TempDir,
}

impl MailFixture {
    fn new() -> MailFixture {
        let ca = TestCa::new(CaShape::Tls).unwrap();
        let server = ca
            .issue(&LeafSpec::tls_server(&["localhost", "127.0.0.1"]).key_type(KeyType::EcP256))
            .unwrap();
        let other = TestCa::new(CaShape::Siths).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let relay_ca = dir.path().join("relay-ca.pem");
        std::fs::write(&relay_ca, ca.root_pem()).unwrap();
        let other_ca = dir.path().join("other.pem");
        std::fs::write(&other_ca, other.root_pem()).unwrap();
        let password_file = dir.path().join("smtp.pass");
        // As `echo` writes it: the newline is not part of the password.
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let trust = BTreeMap::from([
            ("relay-ca".to_owned(), vec![relay_ca]),
            ("other".to_owned(), vec![other_ca]),
        ]);
        MailFixture {
            server,
            trust,
            password_file,
            dir,
        }
    }

    fn section(&self, sink: &SmtpSink, tls: MailTls) -> MailSection {
        MailSection {
            relay: Some("127.0.0.1".into()),
            port: Some(sink.port()),
            tls,
            username: None,
            password_file: None,
            from: Some("certvakt@apotek.example".into()),
            trust: Some("relay-ca".into()),
            hello_name: Some("certvakt.apotek.example".into()),
        }
    }

    fn with_auth(&self, mut section: MailSection) -> MailSection {
        section.username = Some(USER.into());
        section.password_file = Some(self.password_file.clone());
        section
    }
}

const TO: [&str; 2] = [
    "it@apotek.example",
    "Driftsansvarlig <drift@apotek.example>",
];
const CC: [&str; 1] = ["Leverandør Å/S <lev@example.dk>"];

fn recipients() -> (Vec<String>, Vec<String>) {
    (
        TO.iter().map(|s| s.to_string()).collect(),
        CC.iter().map(|s| s.to_string()).collect(),
    )
}

async fn send_mail(section: &MailSection, fixture: &MailFixture) -> Result<String, SendError> {
    let (to, cc) = recipients();
    let envelope = Envelope {
        from: "Certvakt på apotek <certvakt@apotek.example>",
        to: &to,
        cc: &cc,
        reply_to: None,
    };
    mail::send(
        section,
        &fixture.trust,
        &message(),
        &envelope,
        "0123456789abcdef0123456789abcdef.route-it@certvakt.apotek.example",
        TIMEOUT,
    )
    .await
}

fn permanent(result: Result<String, SendError>) -> String {
    match result {
        Err(SendError::Permanent(text)) => text,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn transient(result: Result<String, SendError>) -> String {
    match result {
        Err(SendError::Transient(text)) => text,
        other => panic!("expected a transient error, got {other:?}"),
    }
}

// -------------------------------------------------------------------------------------------
// Mail

#[tokio::test(flavor = "current_thread")]
async fn mail_over_starttls_with_auth_arrives_as_a_mail_client_decodes_it() {
    let fixture = MailFixture::new();
    let sink =
        SmtpSink::start(SmtpOptions::starttls(&fixture.server).auth(USER, PASSWORD)).unwrap();
    let section = fixture.with_auth(fixture.section(&sink, MailTls::Starttls));

    let answer = send_mail(&section, &fixture).await.unwrap();
    assert!(answer.starts_with("250 "), "{answer}");
    assert!(answer.contains("queued as sink-1"), "{answer}");

    let mails = sink.wait_for(1, TIMEOUT).unwrap();
    assert_eq!(mails.len(), 1);
    let got = &mails[0];
    assert!(got.tls, "the mail must have come over TLS");
    assert_eq!(got.auth_user.as_deref(), Some(USER));
    assert_eq!(got.hello.as_deref(), Some("certvakt.apotek.example"));
    assert_eq!(got.mail_from, "certvakt@apotek.example");
    assert_eq!(
        got.rcpt_tos,
        [
            "it@apotek.example",
            "drift@apotek.example",
            "lev@example.dk"
        ]
    );
    assert_eq!(got.subject, SUBJECT);
    assert_eq!(got.text.as_deref(), Some(BODY));
    assert_eq!(got.text_content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.text_charset.as_deref(), Some("utf-8"));
    assert_eq!(
        got.message_id,
        "<0123456789abcdef0123456789abcdef.route-it@certvakt.apotek.example>"
    );
    assert_eq!(
        got.headers.get("X-Certvakt-Event").map(String::as_str),
        Some("task_opened")
    );
    assert_eq!(
        got.headers.get("From").map(String::as_str),
        Some("Certvakt på apotek <certvakt@apotek.example>")
    );
    assert!(
        got.headers
            .get("Cc")
            .is_some_and(|cc| cc == "Leverandør Å/S <lev@example.dk>"),
        "{:?}",
        got.headers
    );
    // The Date is the event's time.
    assert!(
        got.headers
            .get("Date")
            .is_some_and(|d| d.contains("28 May 2026")),
        "{:?}",
        got.headers
    );
    assert!(got.defects.is_empty(), "{:?}", got.defects);
    let msg = message();
    assert_eq!(got.attachments.len(), 2);
    for (received, sent) in got.attachments.iter().zip(&msg.attachments) {
        assert_eq!(received.name.as_deref(), Some(sent.name.as_str()));
        assert_eq!(received.sha256, sha256_hex(&sent.bytes));
        assert_eq!(received.size, sent.bytes.len());
    }
    assert_eq!(got.attachments[0].content_type, "application/pkcs10");
    assert_eq!(got.attachments[1].content_type, "text/plain");
    // 7-bit on the wire: every non-ASCII character was encoded.
    assert!(got.raw.is_ascii());

    // AUTH and MAIL only ever went over TLS.
    let commands = sink.commands();
    assert!(
        commands
            .iter()
            .any(|c| c.verb == "AUTH" && c.tls && c.success == Some(true)),
        "{commands:?}"
    );
    assert!(
        commands.iter().filter(|c| c.verb != "EHLO").all(|c| c.tls),
        "{commands:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn mail_over_implicit_tls_arrives() {
    let fixture = MailFixture::new();
    let sink =
        SmtpSink::start(SmtpOptions::implicit_tls(&fixture.server).auth(USER, PASSWORD)).unwrap();
    let section = fixture.with_auth(fixture.section(&sink, MailTls::Tls));
    let answer = send_mail(&section, &fixture).await.unwrap();
    assert!(answer.starts_with("250 "), "{answer}");
    let mails = sink.wait_for(1, TIMEOUT).unwrap();
    assert!(mails[0].tls);
    assert_eq!(mails[0].auth_user.as_deref(), Some(USER));
    assert_eq!(mails[0].subject, SUBJECT);
    assert!(sink.commands().iter().all(|c| c.tls));
}

#[tokio::test(flavor = "current_thread")]
async fn auth_login_where_plain_is_not_offered() {
    let fixture = MailFixture::new();
    let sink = SmtpSink::start(
        SmtpOptions::starttls(&fixture.server)
            .auth(USER, PASSWORD)
            .without_auth_mechanism("PLAIN"),
    )
    .unwrap();
    let section = fixture.with_auth(fixture.section(&sink, MailTls::Starttls));
    send_mail(&section, &fixture).await.unwrap();
    let mails = sink.wait_for(1, TIMEOUT).unwrap();
    assert_eq!(mails[0].auth_user.as_deref(), Some(USER));
    let auth: Vec<_> = sink
        .commands()
        .into_iter()
        .filter(|c| c.verb == "AUTH")
        .collect();
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert_eq!(auth[0].arg.as_deref(), Some("LOGIN"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_relay_without_starttls_gets_nothing_in_clear() {
    let fixture = MailFixture::new();
    let sink = SmtpSink::start(SmtpOptions::plain()).unwrap();
    let section = fixture.with_auth(fixture.section(&sink, MailTls::Starttls));
    let text = permanent(send_mail(&section, &fixture).await);
    assert!(text.contains("does not offer STARTTLS"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", sink.port())),
        "{text}"
    );
    assert!(sink.messages().is_empty());
    let commands = sink.commands();
    assert!(
        commands.iter().all(|c| c.verb == "EHLO"),
        "only EHLO may have been sent in clear: {commands:?}"
    );
    assert!(!commands.is_empty(), "the relay was not even greeted");
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_password_is_permanent_and_never_shown() {
    let fixture = MailFixture::new();
    let sink =
        SmtpSink::start(SmtpOptions::starttls(&fixture.server).auth(USER, "another")).unwrap();
    let section = fixture.with_auth(fixture.section(&sink, MailTls::Starttls));
    let text = permanent(send_mail(&section, &fixture).await);
    assert!(text.contains("535"), "{text}");
    assert!(text.contains("logging in (AUTH)"), "{text}");
    assert!(text.contains("password_file"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("korrekt"), "{text}");
    assert!(sink.messages().is_empty());
    let commands = sink.commands();
    assert!(
        commands
            .iter()
            .any(|c| c.verb == "AUTH" && c.user.as_deref() == Some(USER) && c.tls),
        "{commands:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_relay_that_is_down_is_transient_and_taken_up_again() {
    let fixture = MailFixture::new();
    let mut sink =
        SmtpSink::start(SmtpOptions::starttls(&fixture.server).auth(USER, PASSWORD)).unwrap();
    let section = fixture.with_auth(fixture.section(&sink, MailTls::Starttls));
    sink.stop();
    let text = transient(send_mail(&section, &fixture).await);
    assert!(
        text.contains(&format!("127.0.0.1:{}", sink.port())),
        "{text}"
    );
    assert!(text.contains("could not be reached"), "{text}");

    sink.start_again().unwrap();
    send_mail(&section, &fixture).await.unwrap();
    assert_eq!(sink.wait_for(1, TIMEOUT).unwrap().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn refused_and_deferred_recipients() {
    let fixture = MailFixture::new();
    let sink = SmtpSink::start(
        SmtpOptions::starttls(&fixture.server)
            .rcpt_reply("it@apotek.example", "550 5.1.1 No such user here"),
    )
    .unwrap();
    let section = fixture.section(&sink, MailTls::Starttls);
    let text = permanent(send_mail(&section, &fixture).await);
    assert!(text.contains("550"), "{text}");
    assert!(text.contains("No such user"), "{text}");

    let sink = SmtpSink::start(
        SmtpOptions::starttls(&fixture.server)
            .rcpt_reply("drift@apotek.example", "451 4.3.0 Mailbox busy, try later"),
    )
    .unwrap();
    let section = fixture.section(&sink, MailTls::Starttls);
    let text = transient(send_mail(&section, &fixture).await);
    assert!(text.contains("451"), "{text}");
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn no_tls_only_to_a_loopback_relay_and_never_with_a_password() {
    let fixture = MailFixture::new();
    // A loopback relay without TLS takes the mail.
    let sink = SmtpSink::start(SmtpOptions::plain()).unwrap();
    let mut section = fixture.section(&sink, MailTls::None);
    section.relay = Some("localhost".into());
    send_mail(&section, &fixture).await.unwrap();
    let mails = sink.wait_for(1, TIMEOUT).unwrap();
    assert!(!mails[0].tls);
    assert_eq!(mails[0].subject, SUBJECT);

    // Anything else is refused before a name is resolved or a connection made.
    for relay in ["192.0.2.25", "mail.apotek.example", "[2001:db8::25]"] {
        let mut section = section.clone();
        section.relay = Some(relay.into());
        let started = Instant::now();
        let text = permanent(send_mail(&section, &fixture).await);
        assert!(text.contains("tls = \"none\""), "{text}");
        assert!(text.contains(relay), "{text}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    // A password never goes in clear, not even to loopback.
    let section = fixture.with_auth(section);
    let text = permanent(send_mail(&section, &fixture).await);
    assert!(text.contains("only over TLS"), "{text}");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn an_untrusted_relay_certificate_is_permanent_and_names_the_trust() {
    let fixture = MailFixture::new();
    let sink =
        SmtpSink::start(SmtpOptions::starttls(&fixture.server).auth(USER, PASSWORD)).unwrap();
    let mut section = fixture.with_auth(fixture.section(&sink, MailTls::Starttls));
    section.trust = Some("other".into());
    let text = permanent(send_mail(&section, &fixture).await);
    assert!(text.contains("trust set `other`"), "{text}");
    assert!(text.contains("not trusted"), "{text}");
    assert!(sink.messages().is_empty());
    assert!(
        !sink.commands().iter().any(|c| c.verb == "AUTH"),
        "no password may be offered to an untrusted relay"
    );

    // The right set, the relay named by its DNS name: delivered.
    let mut section = fixture.with_auth(fixture.section(&sink, MailTls::Starttls));
    section.relay = Some("localhost".into());
    send_mail(&section, &fixture).await.unwrap();

    // An unknown trust set is a configuration error.
    section.trust = Some("nonesuch".into());
    let text = permanent(send_mail(&section, &fixture).await);
    assert!(text.contains("`nonesuch`"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_relay_or_password_file_is_permanent() {
    let fixture = MailFixture::new();
    let section = MailSection::default();
    let text = permanent(send_mail(&section, &fixture).await);
    assert!(text.contains("set `relay`"), "{text}");

    let sink =
        SmtpSink::start(SmtpOptions::starttls(&fixture.server).auth(USER, PASSWORD)).unwrap();
    let mut section = fixture.with_auth(fixture.section(&sink, MailTls::Starttls));
    section.password_file = Some(fixture.dir.path().join("missing.pass"));
    let text = permanent(send_mail(&section, &fixture).await);
    assert!(text.contains("missing.pass"), "{text}");
    assert!(
        sink.commands().is_empty(),
        "nothing may be sent without the password"
    );
}

#[test]
fn render_refuses_bad_addresses_by_name() {
    let to = vec!["it@apotek.example".to_owned(), "not an address".to_owned()];
    let envelope = Envelope {
        from: "certvakt@apotek.example",
        to: &to,
        cc: &[],
        reply_to: None,
    };
    let text = match mail::render(&message(), &envelope, "x@y") {
        Err(SendError::Permanent(text)) => text,
        other => panic!("{other:?}"),
    };
    assert!(text.contains("\"not an address\""), "{text}");
    assert!(text.contains("`to`"), "{text}");

    let to = vec!["it@apotek.example".to_owned()];
    let envelope = Envelope {
        from: "nobody",
        to: &to,
        cc: &[],
        reply_to: None,
    };
    let text = match mail::render(&message(), &envelope, "x@y") {
        Err(SendError::Permanent(text)) => text,
        other => panic!("{other:?}"),
    };
    assert!(text.contains("\"nobody\""), "{text}");

    let envelope = Envelope {
        from: "certvakt@apotek.example",
        to: &[],
        cc: &[],
        reply_to: None,
    };
    assert!(matches!(
        mail::render(&message(), &envelope, "x@y"),
        Err(SendError::Permanent(_))
    ));
}

#[test]
fn render_is_the_same_mail_at_every_attempt_but_its_boundaries() {
    let to = vec!["it@apotek.example".to_owned()];
    let envelope = Envelope {
        from: "certvakt@apotek.example",
        to: &to,
        cc: &[],
        reply_to: None,
    };
    let mut msg = message();
    msg.attachments.clear();
    let first = mail::render(&msg, &envelope, "abc@host.example").unwrap();
    let second = mail::render(&msg, &envelope, "abc@host.example").unwrap();
    assert_eq!(first, second);
    let text = String::from_utf8(first).unwrap();
    assert!(
        text.contains("Message-ID: <abc@host.example>\r\n"),
        "{text}"
    );
    assert!(text.contains("X-Certvakt-Event: task_opened\r\n"), "{text}");
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(text.is_ascii());
}

// -------------------------------------------------------------------------------------------
// Webhook

fn http_service() -> Arc<HttpService> {
    Arc::new(HttpService::new(
        Handle::current(),
        Arc::new(NoIdentities),
        Arc::new(TrustFiles::new()),
        Arc::new(Metrics::new(0).unwrap()),
    ))
}

fn secret_file(dir: &Path, secret: &str) -> PathBuf {
    let path = dir.join("hook.secret");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

#[test]
fn signature_is_hmac_sha256_as_rfc_4231_test_case_2() {
    assert_eq!(
        webhook::signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn payload_follows_schema_1() {
    let body = webhook::payload(&message(), "it-hook", "d-0001", 1_780_000_100);
    let value: Value = serde_json::from_slice(&body).unwrap();
    let object = value.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = vec![
        "schema",
        "id",
        "delivery_id",
        "route",
        "event",
        "host",
        "created_at",
        "sent_at",
        "cert_id",
        "task_id",
        "plugin",
        "deadline",
        "subject",
        "body",
        "attachments",
        "details",
    ];
    expected.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(value["schema"], 1);
    assert_eq!(value["id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(value["delivery_id"], "d-0001");
    assert_eq!(value["route"], "it-hook");
    assert_eq!(value["event"], "task_opened");
    assert_eq!(value["host"], super::host_name());
    assert_eq!(value["created_at"], 1_780_000_000);
    assert_eq!(value["sent_at"], 1_780_000_100);
    assert_eq!(value["cert_id"], "fmk-prod");
    assert_eq!(value["deadline"], 1_790_000_000);
    assert_eq!(value["subject"], SUBJECT);
    assert_eq!(value["body"], BODY);
    assert_eq!(value["details"], json!({"failures": 3}));
    assert_eq!(value["attachments"][1]["name"], "vejledning.txt");
    assert_eq!(
        value["attachments"][1]["content_type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        value["attachments"][1]["base64"],
        "VHJpbiAxOiBsb2cgaW5kIHDDpSBNaXRJRCBFcmh2ZXJ2Lgo="
    );

    // Absent values are null, not missing.
    let mut bare = message();
    bare.cert_id = None;
    bare.task_id = None;
    bare.plugin = None;
    bare.deadline = None;
    bare.attachments.clear();
    bare.details.clear();
    let value: Value = serde_json::from_slice(&webhook::payload(&bare, "r", "d", 0)).unwrap();
    for key in ["cert_id", "task_id", "plugin", "deadline"] {
        assert_eq!(value.get(key), Some(&Value::Null), "{key}");
    }
    assert_eq!(value["attachments"], json!([]));
    assert_eq!(value["details"], json!({}));
}

#[tokio::test(flavor = "current_thread")]
async fn a_signed_webhook_is_accepted_with_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start(b"s3cret-key").unwrap();
    let secret = secret_file(dir.path(), "s3cret-key");
    let answer = webhook::send(
        http_service(),
        &receiver.url("/hooks/certvakt?token=abc"),
        Some(&secret),
        None,
        &message(),
        "it-hook",
        "d-0001",
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(answer, "HTTP 204");
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1);
    let hook = &accepted[0];
    assert_eq!(hook.path, "/hooks/certvakt");
    assert_eq!(hook.headers["content-type"], "application/json");
    assert_eq!(hook.headers["x-certvakt-event"], "task_opened");
    assert_eq!(hook.headers["idempotency-key"], "d-0001");
    assert_eq!(
        hook.headers["x-certvakt-signature"],
        expected_signature(b"s3cret-key", &hook.body)
    );
    assert_eq!(hook.json["schema"], 1);
    assert_eq!(hook.json["delivery_id"], "d-0001");
    assert_eq!(hook.json["route"], "it-hook");
    assert_eq!(hook.json["subject"], SUBJECT);
    assert!(hook.json["sent_at"].as_i64().unwrap() >= crate::now_unix() - 60);
    assert_eq!(receiver.refused(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_webhook_signed_with_another_secret_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start(b"the receiver's secret").unwrap();
    let secret = secret_file(dir.path(), "not the same");
    let result = webhook::send(
        http_service(),
        &receiver.url("/hook?token=hidden"),
        Some(&secret),
        None,
        &message(),
        "it-hook",
        "d-0002",
        TIMEOUT,
    )
    .await;
    let text = permanent(result);
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("does not match"), "{text}");
    assert!(text.contains("`it-hook`"), "{text}");
    assert!(
        !text.contains("hidden"),
        "the query may hold a token: {text}"
    );
    assert_eq!(receiver.refused(), 1);
    assert!(receiver.accepted().is_empty());

    // Without a secret there is no signature at all: refused the same way.
    let text = permanent(
        webhook::send(
            http_service(),
            &receiver.url("/hook"),
            None,
            None,
            &message(),
            "it-hook",
            "d-0002",
            TIMEOUT,
        )
        .await,
    );
    assert!(text.contains("HTTP 401"), "{text}");
    assert_eq!(receiver.refused(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_or_absent_receiver_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start(b"key").unwrap();
    let secret = secret_file(dir.path(), "key");
    receiver.fail_next(1);
    let send = |url: String| {
        let secret = secret.clone();
        async move {
            webhook::send(
                http_service(),
                &url,
                Some(&secret),
                None,
                &message(),
                "it-hook",
                "d-0003",
                TIMEOUT,
            )
            .await
        }
    };
    let text = transient(send(receiver.url("/hook")).await);
    assert!(text.contains("HTTP 503"), "{text}");
    assert!(text.contains("busy, try later"), "{text}");
    assert_eq!(receiver.failed(), 1);
    // The next attempt, same delivery id, goes through.
    assert_eq!(send(receiver.url("/hook")).await.unwrap(), "HTTP 204");
    assert_eq!(receiver.accepted()[0].headers["idempotency-key"], "d-0003");

    // Nobody listening.
    let port = receiver.port();
    drop(receiver);
    let text = transient(send(format!("http://127.0.0.1:{port}/hook")).await);
    assert!(text.contains("`it-hook`"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_webhook_the_host_refuses_is_permanent() {
    let text = permanent(
        webhook::send(
            http_service(),
            "http://192.0.2.1/hook",
            None,
            None,
            &message(),
            "it-hook",
            "d-0004",
            TIMEOUT,
        )
        .await,
    );
    assert!(text.contains("`url`"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let text = permanent(
        webhook::send(
            http_service(),
            "http://127.0.0.1:9/hook",
            Some(&dir.path().join("missing.secret")),
            None,
            &message(),
            "it-hook",
            "d-0004",
            TIMEOUT,
        )
        .await,
    );
    assert!(text.contains("missing.secret"), "{text}");
}

// -------------------------------------------------------------------------------------------
// Command

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

#[tokio::test(flavor = "current_thread")]
async fn a_command_gets_its_environment_and_the_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let stdin_file = dir.path().join("stdin.json");
    let script = format!(
        "env | grep '^CERTVAKT_' | sort > {}; cat > {}; echo delivered",
        env_file.display(),
        stdin_file.display()
    );
    let answer = command::send(&sh(&script), TIMEOUT, &message(), "ops-cmd", "d-0005")
        .await
        .unwrap();
    assert!(answer.contains("exit status: 0"), "{answer}");
    let env = std::fs::read_to_string(&env_file).unwrap();
    let expected = [
        "CERTVAKT_CERT_ID=fmk-prod".to_owned(),
        "CERTVAKT_DEADLINE=1790000000".to_owned(),
        "CERTVAKT_NOTIFY_EVENT=task_opened".to_owned(),
        "CERTVAKT_NOTIFY_ID=d-0005".to_owned(),
        "CERTVAKT_NOTIFY_ROUTE=ops-cmd".to_owned(),
        format!("CERTVAKT_SUBJECT={SUBJECT}"),
        "CERTVAKT_TASK_ID=t-0042".to_owned(),
    ];
    assert_eq!(env.lines().collect::<Vec<_>>(), expected);
    let json: Value = serde_json::from_slice(&std::fs::read(&stdin_file).unwrap()).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["route"], "ops-cmd");
    assert_eq!(json["delivery_id"], "d-0005");
    assert_eq!(json["body"], BODY);

    // Absent values are empty variables.
    let mut bare = message();
    bare.cert_id = None;
    bare.task_id = None;
    bare.deadline = None;
    command::send(&sh(&script), TIMEOUT, &bare, "ops-cmd", "d-0006")
        .await
        .unwrap();
    let env = std::fs::read_to_string(&env_file).unwrap();
    for name in ["CERTVAKT_CERT_ID", "CERTVAKT_TASK_ID", "CERTVAKT_DEADLINE"] {
        assert!(env.lines().any(|l| l == format!("{name}=")), "{env}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_or_slow_command_is_transient_and_a_missing_one_permanent() {
    let text = transient(
        command::send(
            &sh("echo 'ticket system down' >&2; exit 3"),
            TIMEOUT,
            &message(),
            "ops-cmd",
            "d-0007",
        )
        .await,
    );
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("ticket system down"), "{text}");
    assert!(text.contains("`ops-cmd`"), "{text}");

    let started = Instant::now();
    let text = transient(
        command::send(
            &sh("sleep 30"),
            Duration::from_millis(300),
            &message(),
            "ops-cmd",
            "d-0008",
        )
        .await,
    );
    assert!(text.contains("was killed"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let text = permanent(
        command::send(
            &["/nonexistent/notify-ops".to_owned()],
            TIMEOUT,
            &message(),
            "ops-cmd",
            "d-0009",
        )
        .await,
    );
    assert!(text.contains("could not be started"), "{text}");
    assert!(text.contains("/nonexistent/notify-ops"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_relay_that_never_answers_is_transient_at_the_timeout() {
    let fixture = MailFixture::new();
    // Connections are taken by the kernel's backlog, and nobody ever says a word.
    let silent = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let section = MailSection {
        relay: Some("127.0.0.1".into()),
        port: Some(silent.local_addr().unwrap().port()),
        trust: Some("relay-ca".into()),
        ..MailSection::default()
    };
    let (to, cc) = recipients();
    let envelope = Envelope {
        from: "certvakt@apotek.example",
        to: &to,
        cc: &cc,
        reply_to: None,
    };
    let started = Instant::now();
    let result = mail::send(
        &section,
        &fixture.trust,
        &message(),
        &envelope,
        "a@b.example",
        Duration::from_millis(500),
    )
    .await;
    let text = transient(result);
    assert!(
        text.contains("did not take the mail within 0.5 s"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "current_thread")]
async fn a_pem_chain_with_bare_line_feeds_arrives_whole() {
    // A certificate chain as the task folder holds it: ASCII, LF line ends, over 1000 bytes.
    // Sent as-is it would be one line of several kilobytes, which relays refuse.
    let fixture = MailFixture::new();
    let sink = SmtpSink::start(SmtpOptions::plain()).unwrap();
    let section = fixture.section(&sink, MailTls::None);
    let pem: String = (0..3)
        .map(|_| {
            let body: String = (0..20).map(|i| format!("{:064}\n", i)).collect();
            format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
        })
        .collect();
    assert!(pem.len() > 3000 && !pem.contains('\r'));
    let mut msg = message();
    msg.attachments = vec![Attachment {
        name: "current-certificate.pem".into(),
        content_type: content_type("current-certificate.pem").into(),
        bytes: pem.clone().into_bytes(),
    }];
    let (to, cc) = recipients();
    let envelope = Envelope {
        from: "certvakt@apotek.example",
        to: &to,
        cc: &cc,
        reply_to: None,
    };
    mail::send(
        &section,
        &fixture.trust,
        &msg,
        &envelope,
        "pem@certvakt.example",
        TIMEOUT,
    )
    .await
    .unwrap();
    let mails = sink.wait_for(1, TIMEOUT).unwrap();
    let attached = &mails[0].attachments[0];
    assert_eq!(attached.name.as_deref(), Some("current-certificate.pem"));
    assert_eq!(attached.sha256, sha256_hex(pem.as_bytes()));
}
