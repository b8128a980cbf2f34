//! smtp: a real SMTP server for the mail channel's tests: Debian's `python3-aiosmtpd`, run by
//! `tests/src/smtp_sink.py` (built into the test kit, written out at start).
//!
//! Owns: [`SmtpSink`], [`SmtpOptions`], and what it received ([`ReceivedMail`], [`SmtpCommand`]).
//!
//! Promises:
//! - Listens on `127.0.0.1`, on a port picked free at start ([`SmtpSink::port`]), in one of
//!   three modes: plain, STARTTLS (optionally required before anything else) or TLS from the
//!   first byte, with the certificate the options give (from a [`crate::TestCa`]). With
//!   [`SmtpOptions::auth`] it takes AUTH PLAIN and LOGIN for that one user (only over TLS)
//!   and requires it before MAIL.
//! - Every accepted mail is kept in its folder as `N.eml` (as received) and `N.json`: the
//!   envelope, whether TLS was on, the authenticated user, the EHLO name, and the mail as
//!   Python's `email` package decodes it (subject, text body, attachments with SHA-256,
//!   Message-ID, headers): an independent decoder, what a mail client would see.
//!   [`SmtpSink::commands`] lists every EHLO, AUTH, MAIL and RCPT with whether TLS was on.
//! - [`SmtpSink::stop`] kills the server (its port refuses connections);
//!   [`SmtpSink::start_again`] brings it back on the same port and folder, mails kept.
//!   Dropping the sink kills the server and removes the folder.
//! - It runs `/usr/bin/python3` (the interpreter Debian's package installs into, whatever
//!   `python3` comes first in `PATH`). If that or aiosmtpd is missing, `start` fails and
//!   says to run `scripts/install-test-deps` (tests never skip).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::leaf::IssuedCert;

/// The server script, written into the sink's folder at start.
const SCRIPT: &str = include_str!("smtp_sink.py");

/// The interpreter: Debian's, where `python3-aiosmtpd` installs.
const PYTHON: &str = "/usr/bin/python3";

/// How long the server may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

const INSTALL_HINT: &str = "run scripts/install-test-deps (it installs python3-aiosmtpd)";

/// How the server protects connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMode {
    /// No TLS at all (no STARTTLS offered).
    Plain,
    /// Plain, STARTTLS offered.
    Starttls,
    /// TLS from the first byte.
    ImplicitTls,
}

/// What the server does. See the module documentation.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    pub mode: SmtpMode,
    /// Refuse everything but EHLO, NOOP, QUIT and STARTTLS until STARTTLS.
    pub require_starttls: bool,
    /// The server's certificate (TLS modes).
    pub certificate: Option<IssuedCert>,
    /// The one user and password AUTH accepts; AUTH is then required before MAIL.
    pub auth: Option<(String, String)>,
    /// AUTH mechanisms not offered (`PLAIN`, `LOGIN`).
    pub auth_exclude: Vec<String>,
    /// Replies to RCPT for some addresses instead of `250 OK` (e.g. `550 5.1.1 No such
    /// user`, `451 4.3.0 Try later`).
    pub rcpt_replies: BTreeMap<String, String>,
}

impl SmtpOptions {
    /// No TLS, no AUTH.
    pub fn plain() -> SmtpOptions {
        SmtpOptions {
            mode: SmtpMode::Plain,
            require_starttls: false,
            certificate: None,
            auth: None,
            auth_exclude: Vec::new(),
            rcpt_replies: BTreeMap::new(),
        }
    }

    /// STARTTLS with `certificate`, required before mail.
    pub fn starttls(certificate: &IssuedCert) -> SmtpOptions {
        SmtpOptions {
            mode: SmtpMode::Starttls,
            require_starttls: true,
            certificate: Some(certificate.clone()),
            ..SmtpOptions::plain()
        }
    }

    /// TLS from the first byte with `certificate`.
    pub fn implicit_tls(certificate: &IssuedCert) -> SmtpOptions {
        SmtpOptions {
            mode: SmtpMode::ImplicitTls,
            certificate: Some(certificate.clone()),
            ..SmtpOptions::plain()
        }
    }

    /// AUTH PLAIN and LOGIN for `user` with `password`, required.
    pub fn auth(mut self, user: &str, password: &str) -> SmtpOptions {
        self.auth = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Does not offer the AUTH `mechanism` (`PLAIN` or `LOGIN`).
    pub fn without_auth_mechanism(mut self, mechanism: &str) -> SmtpOptions {
        self.auth_exclude.push(mechanism.to_owned());
        self
    }

    /// `reply` to `RCPT TO:<address>`.
    pub fn rcpt_reply(mut self, address: &str, reply: &str) -> SmtpOptions {
        self.rcpt_replies
            .insert(address.to_owned(), reply.to_owned());
        self
    }
}

/// One attachment as Python decoded it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReceivedAttachment {
    pub name: Option<String>,
    pub content_type: String,
    /// Lowercase hex SHA-256 of the decoded bytes.
    pub sha256: String,
    pub size: usize,
}

/// One mail the server accepted, as Python's `email` package decodes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedMail {
    /// 1, 2, … in the order accepted (across restarts).
    pub index: u64,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// Whether the mail came over TLS (STARTTLS or implicit).
    pub tls: bool,
    /// The user that logged in, if any did.
    pub auth_user: Option<String>,
    /// The client's EHLO name.
    pub hello: Option<String>,
    /// Decoded (RFC 2047 words undone).
    pub subject: String,
    /// With its angle brackets.
    pub message_id: String,
    /// The `text/plain` body, decoded, line ends `\n`.
    pub text: Option<String>,
    pub text_content_type: Option<String>,
    pub text_charset: Option<String>,
    pub attachments: Vec<ReceivedAttachment>,
    /// Some headers, decoded: From, To, Cc, Subject, Date, Message-ID, X-Certvakt-Event,
    /// MIME-Version, Content-Type.
    pub headers: BTreeMap<String, String>,
    /// The defects Python found parsing it (class names); empty for a well-formed mail.
    pub defects: Vec<String>,
    /// The bytes as received.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

/// One command the server saw.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SmtpCommand {
    /// `EHLO`, `AUTH`, `MAIL` or `RCPT`.
    pub verb: String,
    /// The EHLO name, the AUTH mechanism, the address.
    pub arg: Option<String>,
    pub tls: bool,
    /// AUTH: the user name given and whether it was accepted.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub success: Option<bool>,
}

/// The running server. See the module documentation.
#[derive(Debug)]
pub struct SmtpSink {
    dir: tempfile::TempDir,
    folder: PathBuf,
    port: u16,
    child: Option<Child>,
    /// While stopped: the port, bound but not listening, so connections to it are refused
    /// and no other test's server can take it meanwhile.
    held: Option<socket2::Socket>,
}

impl SmtpSink {
    /// Starts a server as `options` say, on a free port.
    pub fn start(options: SmtpOptions) -> Result<SmtpSink> {
        if !Path::new(PYTHON).exists() {
            bail!("{PYTHON} is missing, so the SMTP test server cannot run: {INSTALL_HINT}");
        }
        let dir = tempfile::tempdir().context("making the SMTP sink's folder")?;
        let folder = dir.path().join("mail");
        std::fs::create_dir(&folder)?;
        std::fs::write(dir.path().join("smtp_sink.py"), SCRIPT)?;
        let (cert, key) = match &options.certificate {
            Some(issued) => {
                let cert = dir.path().join("server.pem");
                let key = dir.path().join("server.key");
                std::fs::write(&cert, format!("{}{}", issued.cert_pem, issued.chain_pem))?;
                std::fs::write(&key, &issued.key_pem)?;
                (Some(cert), Some(key))
            }
            None if options.mode != SmtpMode::Plain => {
                bail!("an SMTP sink with TLS needs a certificate in its options")
            }
            None => (None, None),
        };
        let mode = match options.mode {
            SmtpMode::Plain => "plain",
            SmtpMode::Starttls => "starttls",
            SmtpMode::ImplicitTls => "tls",
        };
        let config = serde_json::json!({
            "port": 0,
            "folder": folder,
            "mode": mode,
            "require_starttls": options.require_starttls,
            "cert": cert,
            "key": key,
            "auth": options.auth.as_ref().map(|(user, password)| serde_json::json!({
                "user": user, "password": password,
            })),
            "auth_required": options.auth.is_some(),
            "auth_exclude": options.auth_exclude,
            "rcpt_replies": options.rcpt_replies,
        });
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        let mut sink = SmtpSink {
            dir,
            folder,
            port: 0,
            child: None,
            held: None,
        };
        sink.spawn()?;
        Ok(sink)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the mails are kept.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Every mail accepted so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.try_messages()
            .unwrap_or_else(|e| panic!("reading the SMTP sink's mails: {e:#}"))
    }

    fn try_messages(&self) -> Result<Vec<ReceivedMail>> {
        let mut mails = Vec::new();
        for entry in std::fs::read_dir(&self.folder)? {
            let path = entry?.path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| s.parse::<u64>().is_ok());
            if !is_record {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            let mut mail: ReceivedMail = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            mail.raw = std::fs::read(path.with_extension("eml"))?;
            mails.push(mail);
        }
        mails.sort_by_key(|m| m.index);
        Ok(mails)
    }

    /// Every EHLO, AUTH, MAIL and RCPT seen so far, in order.
    pub fn commands(&self) -> Vec<SmtpCommand> {
        let path = self.folder.join("commands.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("parsing {} line {l:?}: {e}", path.display()))
            })
            .collect()
    }

    /// Waits until at least `n` mails were accepted; all of them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<ReceivedMail>> {
        let started = Instant::now();
        loop {
            let mails = self.try_messages()?;
            if mails.len() >= n {
                return Ok(mails);
            }
            if started.elapsed() > timeout {
                bail!(
                    "the SMTP sink got {} mails within {timeout:?}, not {n}",
                    mails.len()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills the server; its port refuses connections until [`SmtpSink::start_again`], and
    /// stays ours: it is held bound (not listening), so another server started meanwhile by
    /// a test running beside this one cannot take it and answer in the sink's place.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.held = hold_port(self.port);
        }
    }

    /// Starts the server again on the same port and folder (mails kept, numbering goes on).
    pub fn start_again(&mut self) -> Result<()> {
        self.stop();
        self.held = None;
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("config.json"))?)?;
        config["port"] = self.port.into();
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        // The old listener is gone with its process; a bind can still lose a short race.
        let started = Instant::now();
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() < Duration::from_secs(5) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs the script and reads the port it listens on.
    fn spawn(&mut self) -> Result<()> {
        let log = self.dir.path().join("sink.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut child = Command::new(PYTHON)
            .arg(self.dir.path().join("smtp_sink.py"))
            .arg(self.dir.path().join("config.json"))
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {PYTHON} for the SMTP sink; {INSTALL_HINT}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("the SMTP sink's stdout is not piped"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let line = line.trim();
        if let Some(port) = line.strip_prefix("PORT ") {
            self.port = port
                .parse()
                .with_context(|| format!("the SMTP sink printed {line:?}"))?;
            self.child = Some(child);
            return Ok(());
        }
        let _ = child.kill();
        let _ = child.wait();
        if line == "MISSING aiosmtpd" {
            bail!(
                "python3-aiosmtpd is not installed, so the SMTP test server cannot run: {INSTALL_HINT}"
            );
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the SMTP sink did not start listening within {READY_TIMEOUT:?} (it printed {line:?}); its log:\n{}",
            tail.join("\n")
        )
    }
}

/// Binds 127.0.0.1:`port` without listening (address reuse on, as the server's own socket
/// had it): connections get a reset, and no one else can bind the port.
fn hold_port(port: u16) -> Option<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket.set_reuse_address(true).ok()?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    socket.bind(&address.into()).ok()?;
    Some(socket)
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Gone for good: the port is not held.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::TcpStream;

    use super::*;

    /// Speaks SMTP by hand: each command, then the reply's last line.
    fn dialogue(port: u16, commands: &[&str]) -> Vec<String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut read_reply = || loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            // "250-…" continues, "250 …" ends a reply.
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line.trim_end().to_owned();
            }
        };
        let mut replies = vec![read_reply()];
        for command in commands {
            writer.write_all(command.as_bytes()).unwrap();
            writer.write_all(b"\r\n").unwrap();
            replies.push(read_reply());
        }
        replies
    }

    const MAIL: &str = "From: a@example.org\r\nTo: b@example.org\r\nSubject: =?utf-8?b?w6bDuMOl?=\r\nMessage-ID: <1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbl=C3=A5b=C3=A6r\r\n.";

    #[test]
    fn keeps_and_decodes_mails_and_survives_a_restart_on_its_port() {
        let mut sink = SmtpSink::start(SmtpOptions::plain()).unwrap();
        let port = sink.port();
        let replies = dialogue(
            port,
            &[
                "EHLO client.example",
                "MAIL FROM:<a@example.org>",
                "RCPT TO:<b@example.org>",
                "DATA",
                MAIL,
                "QUIT",
            ],
        );
        assert!(replies[0].starts_with("220"), "{replies:?}");
        assert_eq!(replies[5], "250 2.0.0 Ok: queued as sink-1");
        let mails = sink.wait_for(1, Duration::from_secs(10)).unwrap();
        assert_eq!(mails[0].subject, "æøå");
        assert_eq!(mails[0].text.as_deref(), Some("blåbær\n"));
        assert_eq!(mails[0].message_id, "<1@example.org>");
        assert_eq!(mails[0].rcpt_tos, ["b@example.org"]);
        assert_eq!(mails[0].hello.as_deref(), Some("client.example"));
        assert!(!mails[0].tls);
        assert!(mails[0].raw.ends_with(b"bl=C3=A5b=C3=A6r\r\n"));

        sink.stop();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        sink.start_again().unwrap();
        assert_eq!(sink.port(), port);
        let replies = dialogue(
            port,
            &[
                "EHLO client.example",
                "MAIL FROM:<a@example.org>",
                "RCPT TO:<b@example.org>",
                "DATA",
                MAIL,
            ],
        );
        assert_eq!(replies[5], "250 2.0.0 Ok: queued as sink-2");
        let mails = sink.wait_for(2, Duration::from_secs(10)).unwrap();
        assert_eq!(mails.iter().map(|m| m.index).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn requires_auth_and_offers_it_only_over_tls() {
        let ca = crate::TestCa::new(crate::CaShape::Tls).unwrap();
        let cert = ca
            .issue(&crate::LeafSpec::tls_server(&["localhost", "127.0.0.1"]))
            .unwrap();
        let sink = SmtpSink::start(SmtpOptions::starttls(&cert).auth("u", "p")).unwrap();
        let replies = dialogue(
            sink.port(),
            &[
                "EHLO client.example",
                "AUTH PLAIN AHUAcA==",
                "MAIL FROM:<a@example.org>",
            ],
        );
        // No AUTH in clear, no mail before STARTTLS.
        assert!(
            replies[2].starts_with("530") || replies[2].starts_with("538"),
            "{replies:?}"
        );
        assert!(replies[3].starts_with("530"), "{replies:?}");
        assert!(sink.messages().is_empty());
    }
}
