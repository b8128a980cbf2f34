//! The control socket client used by the CLI.
//!
//! Contract:
//! - Synchronous and small on purpose: the CLI starts, asks one question and exits, so it needs
//!   no async runtime. Every read and write has a [`TIMEOUT`].
//! - [`Client::connect`] performs the hello exchange. The daemon's hello reply is read loosely:
//!   a daemon of another protocol version is recognised from the reply's `protocol` field even
//!   when the rest of its reply is not what this client knows, and becomes
//!   [`ClientError::VersionMismatch`], never a parse error.
//! - Every failure is a [`ClientError`] whose message tells the operator what to do.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::MAX_LINE;
use super::protocol::{
    Access, Hello, HelloBody, HelloReplyBody, ListItem, PROTOCOL_VERSION, Renewal, Request,
    Response,
};

/// How long the client waits for the daemon on any read or write.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket path.
    #[error(
        "certvaktd is not running: no control socket at {} (start it with `systemctl start certvakt`, or pass --socket)",
        path.display()
    )]
    NotRunning { path: PathBuf },
    /// The socket (or its directory) may not be opened by this user.
    #[error(
        "permission denied on the control socket {}: ask for membership of group certvakt (read) or certvakt-admin (change), or run as root",
        path.display()
    )]
    PermissionDenied { path: PathBuf },
    /// The daemon refused this peer in its hello reply; the sentence is the daemon's.
    #[error("{0}")]
    Refused(String),
    /// The daemon speaks another control protocol.
    #[error(
        "certvaktd speaks control protocol {daemon_protocol} (version {daemon_version}); this certvakt speaks {ours} (version {ours_version}): use the certvakt CLI of the same package version, or restart the daemon after an upgrade (`systemctl restart certvakt`)",
        ours = PROTOCOL_VERSION,
        ours_version = crate::VERSION
    )]
    VersionMismatch {
        daemon_protocol: u64,
        daemon_version: String,
    },
    /// The daemon turned the connection away before the hello (it is busy).
    #[error("{0}")]
    Unavailable(String),
    /// The daemon did not answer in time.
    #[error(
        "certvaktd did not answer on {} within {} s: see `journalctl -u certvakt`",
        path.display(),
        TIMEOUT.as_secs()
    )]
    Timeout { path: PathBuf },
    /// Any other I/O failure on the socket.
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The daemon sent something this client cannot read.
    #[error("certvaktd sent something this certvakt cannot read: {0}")]
    Protocol(String),
}

/// A connection to the daemon after a successful hello.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    path: PathBuf,
    access: Access,
    daemon_version: String,
}

impl Client {
    /// Connects to the socket at `path` and says hello.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| connect_error(e, path))?;
        let io_err = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
            path: path.to_owned(),
            access: Access::None,
            daemon_version: String::new(),
        };
        let hello = Hello {
            hello: HelloBody {
                protocol: PROTOCOL_VERSION,
                version: crate::VERSION.to_owned(),
                program: "certvakt".to_owned(),
            },
        };
        let sent = client.send(&hello);
        // A daemon that turns us away may close before our hello arrives; its one line is
        // still there to read and says more than "broken pipe".
        let line = match (client.read_line(), sent) {
            (Ok(line), _) => line,
            (Err(_), Err(send_error)) => return Err(send_error),
            (Err(read_error), Ok(())) => return Err(read_error),
        };
        let reply = read_hello_reply(&line)?;
        client.access = reply.access;
        client.daemon_version = reply.version;
        Ok(client)
    }

    /// What the daemon admitted this client to.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The daemon's package version, from its hello reply.
    pub fn daemon_version(&self) -> &str {
        &self.daemon_version
    }

    /// The socket path this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and reads its response (which may be [`Response::Error`]).
    pub fn request(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.send(request)?;
        let line = self.read_line()?;
        if let Some(page) = read_page(&line) {
            return Ok(page);
        }
        serde_json::from_str(&line).map_err(|e| {
            ClientError::Protocol(format!(
                "the answer to {} is not a response ({e})",
                request.name()
            ))
        })
    }

    fn send<T: serde::Serialize>(&mut self, value: &T) -> Result<(), ClientError> {
        let mut line =
            serde_json::to_string(value).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|e| self.io_error(e))
    }

    fn read_line(&mut self) -> Result<String, ClientError> {
        let mut buf = Vec::new();
        let limit = u64::try_from(MAX_LINE)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let n = Read::take(&mut self.reader, limit)
            .read_until(b'\n', &mut buf)
            .map_err(|e| self.io_error(e))?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "certvaktd closed the connection without an answer".into(),
            ));
        }
        if buf.last() != Some(&b'\n') {
            return Err(ClientError::Protocol(if buf.len() > MAX_LINE {
                format!("an answer longer than {MAX_LINE} bytes")
            } else {
                "certvaktd closed the connection in the middle of an answer".into()
            }));
        }
        String::from_utf8(buf)
            .map_err(|_| ClientError::Protocol("an answer that is not UTF-8".into()))
    }

    fn io_error(&self, e: io::Error) -> ClientError {
        match e.kind() {
            // A socket read timeout shows up as EAGAIN on Linux.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                path: self.path.clone(),
            },
            _ => ClientError::Io {
                path: self.path.clone(),
                source: e,
            },
        }
    }
}

fn connect_error(e: io::Error, path: &Path) -> ClientError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
            path: path.to_owned(),
        },
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            path: path.to_owned(),
        },
        _ => ClientError::Io {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// A page of `list` or `renewals`, read straight into its items; `None` for any other
/// answer (or one this cannot read), which then goes the general way. [`Response`] is
/// internally tagged, so serde would first copy a whole answer into a tree of its own and
/// then read that: for a page of 2,000 certificates that took more time than the rest of
/// the command.
pub(crate) fn read_page(line: &str) -> Option<Response> {
    #[derive(serde::Deserialize)]
    struct Page<T> {
        items: Vec<T>,
        #[serde(default)]
        total: usize,
        #[serde(default)]
        scanned_at: i64,
    }
    // The daemon writes the tag first.
    if line.starts_with(r#"{"response":"list","#) {
        let page: Page<ListItem> = serde_json::from_str(line).ok()?;
        Some(Response::List {
            items: page.items,
            total: page.total,
            scanned_at: page.scanned_at,
        })
    } else if line.starts_with(r#"{"response":"renewals","#) {
        let page: Page<Renewal> = serde_json::from_str(line).ok()?;
        Some(Response::Renewals {
            items: page.items,
            total: page.total,
        })
    } else {
        None
    }
}

/// Interprets the daemon's first line. Only `hello.protocol` is trusted before the protocol is
/// known to match; the rest of the reply is read afterwards.
fn read_hello_reply(line: &str) -> Result<HelloReplyBody, ClientError> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| ClientError::Protocol(format!("the hello reply is not JSON ({e})")))?;
    let Some(hello) = value.get("hello") else {
        // Turned away before any hello (the daemon is busy): that arrives as an error response.
        if let Ok(Response::Error { message, .. }) = serde_json::from_value::<Response>(value) {
            return Err(ClientError::Unavailable(message));
        }
        return Err(ClientError::Protocol(
            "the first line is not a hello reply".into(),
        ));
    };
    let protocol = hello
        .get("protocol")
        .and_then(Value::as_u64)
        .ok_or_else(|| ClientError::Protocol("the hello reply names no protocol".into()))?;
    if protocol != u64::from(PROTOCOL_VERSION) {
        let daemon_version = hello
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        return Err(ClientError::VersionMismatch {
            daemon_protocol: protocol,
            daemon_version,
        });
    }
    let reply: HelloReplyBody = serde_json::from_value(hello.clone())
        .map_err(|e| ClientError::Protocol(format!("unreadable hello reply ({e})")))?;
    if let Some(error) = reply.error {
        return Err(ClientError::Refused(error));
    }
    if reply.access == Access::None {
        return Err(ClientError::Refused(
            "certvaktd admitted this connection with no access".into(),
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn reads_a_good_hello_reply() {
        let reply = read_hello_reply(&format!(
            r#"{{"hello":{{"protocol":{PROTOCOL_VERSION},"version":"0.1.0","access":"read"}}}}"#
        ));
        let reply = reply.expect("accepted");
        assert_eq!(reply.access, Access::Read);
        assert_eq!(reply.version, "0.1.0");
    }

    #[test]
    fn a_newer_daemon_is_a_version_mismatch_even_with_unknown_fields() {
        let line = r#"{"hello":{"protocol":7,"version":"3.0.0","access":{"tier":"admin"},"features":["x"]},"extra":1}"#;
        let err = read_hello_reply(line).expect_err("mismatch");
        let ClientError::VersionMismatch {
            daemon_protocol,
            daemon_version,
        } = &err
        else {
            panic!("expected a version mismatch, got {err:?}");
        };
        assert_eq!(*daemon_protocol, 7);
        assert_eq!(daemon_version, "3.0.0");
        assert_eq!(
            err.to_string(),
            format!(
                "certvaktd speaks control protocol 7 (version 3.0.0); this certvakt speaks {PROTOCOL_VERSION} (version {}): use the certvakt CLI of the same package version, or restart the daemon after an upgrade (`systemctl restart certvakt`)",
                crate::VERSION
            )
        );
    }

    #[test]
    fn hello_errors_become_refusals_and_garbage_a_protocol_error() {
        let err = read_hello_reply(
            &format!(
                r#"{{"hello":{{"protocol":{PROTOCOL_VERSION},"version":"0.1.0","access":"none","error":"uid 5 may not"}}}}"#
            ),
        )
        .expect_err("refused");
        assert!(
            matches!(&err, ClientError::Refused(m) if m == "uid 5 may not"),
            "{err:?}"
        );
        let err = read_hello_reply("HTTP/1.1 400 Bad Request").expect_err("garbage");
        assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
        let err = read_hello_reply(r#"{"response":"error","code":"internal","message":"busy"}"#)
            .expect_err("busy");
        assert!(
            matches!(&err, ClientError::Unavailable(m) if m == "busy"),
            "{err:?}"
        );
    }

    #[test]
    fn missing_socket_means_not_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let err = Client::connect(&path).expect_err("nothing there");
        assert!(
            matches!(&err, ClientError::NotRunning { path: p } if *p == path),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "certvaktd is not running: no control socket at {} (start it with `systemctl start certvakt`, or pass --socket)",
                path.display()
            )
        );
        // A stale socket file with no listener is the same situation.
        drop(UnixListener::bind(&path).expect("bind"));
        let err = Client::connect(&path).expect_err("stale");
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    }

    #[test]
    fn an_old_daemon_with_another_protocol_is_recognised_over_the_wire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let daemon = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut hello = String::new();
            reader.read_line(&mut hello).expect("hello");
            let mut writer = stream;
            writer
                .write_all(b"{\"hello\":{\"protocol\":0,\"version\":\"0.0.9\",\"mood\":\"old\"}}\n")
                .expect("reply");
            hello
        });
        let err = Client::connect(&path).expect_err("mismatch");
        assert!(
            matches!(&err, ClientError::VersionMismatch { daemon_protocol: 0, daemon_version } if daemon_version == "0.0.9"),
            "{err:?}"
        );
        let hello = daemon.join().expect("fake daemon");
        let hello: Hello = serde_json::from_str(&hello).expect("our hello is a Hello");
        assert_eq!(hello.hello.protocol, PROTOCOL_VERSION);
        assert_eq!(hello.hello.version, crate::VERSION);
        assert_eq!(hello.hello.program, "certvakt");
    }
}
