//! The daemon's attack surface, tried from outside as a local attacker would: many connections
//! to the control socket from an unprivileged uid, overlong request lines, and floods of
//! connections and slow clients on `/metrics`. Every flood is bounded in count and time; no
//! test asserts a speed.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use certvakt_testkit::harness::{Daemon, config_toml};

use crate::common::{bins, is_root, stderr};

/// The uid of the local attacker: `nobody`.
const ATTACKER_UID: u32 = 65534;

/// A running `certvakt-hold`; killed when dropped.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    /// Starts `certvakt-hold ARGS`, as `uid` (and its own gid) when given, and waits for its
    /// `connected` line; returns it with how many connections it holds.
    fn start(uid: Option<u32>, args: &[&str]) -> Result<(Holder, usize)> {
        let hold = env!("CARGO_BIN_EXE_certvakt-hold");
        let mut cmd = match uid {
            Some(uid) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(hold);
                cmd
            }
            None => Command::new(hold),
        };
        cmd.args(args);
        Holder::start_command(cmd)
    }

    /// [`Holder::start`] with the whole command given.
    fn start_command(mut cmd: Command) -> Result<(Holder, usize)> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting certvakt-hold (setpriv from util-linux runs it as another user)")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut holder = Holder {
            child,
            stdin,
            stdout,
        };
        let line = holder.line()?;
        let connected = line
            .strip_prefix("connected ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("certvakt-hold said {line:?}"))?;
        Ok((holder, connected))
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        ensure!(!line.is_empty(), "certvakt-hold ended without a word");
        Ok(line.trim_end().to_owned())
    }

    /// Lets go of the connections (or waits until the other side closed them all, with
    /// `--until-closed`); returns how many the other side had closed, and what came back on
    /// the first connection (as a Rust string literal).
    fn finish(mut self) -> Result<(usize, String)> {
        drop(self.stdin.take());
        let closed = self.line()?;
        let first = self.line()?;
        let _ = self.child.wait();
        let closed = closed
            .strip_prefix("closed ")
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("certvakt-hold said {closed:?}"))?;
        let first = first
            .strip_prefix("first: ")
            .with_context(|| format!("certvakt-hold said {first:?}"))?;
        Ok((closed, first.to_owned()))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon with nothing to watch, in a folder other users can reach.
fn open_daemon() -> Result<(tempfile::TempDir, Daemon)> {
    let dir = tempfile::tempdir()?;
    // The attacker must reach the socket (the socket itself is 0666).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, config_toml(dir.path(), "", ""))?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;
    Ok((dir, daemon))
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/PID/status")
}

fn log_lines(daemon: &Daemon) -> Vec<String> {
    daemon.log_text().lines().map(str::to_owned).collect()
}

#[test]
fn a_stranger_with_hundreds_of_connections_neither_locks_root_out_nor_floods_the_log() -> Result<()>
{
    if !is_root() {
        bail!("this test connects as uid {ATTACKER_UID} and must run as root (CI does)");
    }
    let (_dir, daemon) = open_daemon()?;
    let socket = daemon.socket.display().to_string();
    let before = log_lines(&daemon).len();

    // 200 connections of a user in neither group, held open and never written to.
    let (holder, connected) = Holder::start(
        Some(ATTACKER_UID),
        &["unix", &socket, "200", "--until-closed", "--hold", "30"],
    )?;
    assert_eq!(connected, 200);

    // Root is served while they are connected.
    let out = daemon.cli(&["status"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Every one of the stranger's connections was closed by the daemon: none holds a place.
    assert_eq!(holder.finish()?.0, 200);

    // And they cost a line or two in the log, not one per connection.
    let lines = log_lines(&daemon);
    let about_stranger: Vec<&String> = lines[before..]
        .iter()
        .filter(|l| l.contains(&format!("uid {ATTACKER_UID} ")))
        .collect();
    assert!(
        !about_stranger.is_empty() && about_stranger.len() <= 3,
        "{about_stranger:#?}"
    );
    assert!(
        lines.len() - before <= 20,
        "{} lines for 200 refused connections:\n{}",
        lines.len() - before,
        lines[before..].join("\n")
    );
    Ok(())
}

/// Opens a control connection as the test's own user (root: admin) and says hello.
fn hello(socket: &Path) -> Result<(UnixStream, BufReader<UnixStream>)> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    writer.write_all(
        format!(
            "{{\"hello\":{{\"protocol\":1,\"version\":\"{}\",\"program\":\"e2e\"}}}}\n",
            env!("CARGO_PKG_VERSION")
        )
        .as_bytes(),
    )?;
    let mut reply = String::new();
    reader.read_line(&mut reply)?;
    ensure!(reply.contains("\"access\":\"admin\""), "{reply}");
    Ok((writer, reader))
}

#[test]
fn an_overlong_request_is_refused_with_a_sentence() -> Result<()> {
    let (_dir, daemon) = open_daemon()?;
    let line = format!(
        "{{\"request\":\"import\",\"id\":\"x\",\"data\":\"{}\"}}\n",
        "A".repeat(2 * 1024 * 1024)
    );
    // The answer, and whether the daemon hung up after it.
    let answer = |socket: &Path| -> Result<(String, bool)> {
        let (mut writer, mut reader) = hello(socket)?;
        writer.write_all(line.as_bytes())?;
        let mut answer = String::new();
        reader.read_line(&mut answer)?;
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut rest = Vec::new();
        let closed = reader.read_to_end(&mut rest).is_ok() && rest.is_empty();
        Ok((answer, closed))
    };
    let (first, closed) = answer(&daemon.socket)?;
    let value: serde_json::Value = serde_json::from_str(&first)?;
    assert_eq!(value["response"], "error", "{first}");
    assert_eq!(value["code"], "bad_request", "{first}");
    let message = value["message"].as_str().context("message")?;
    assert!(
        message.starts_with("the request is longer than ")
            && message.ends_with("; the connection is closed"),
        "{message}"
    );
    assert!(closed, "the daemon kept the connection open");
    // The daemon is still there for the next one.
    assert_eq!(daemon.cli(&["status"])?.status.code(), Some(0));

    Ok(())
}

/// A group from /etc/group that lists no members, so that the only way into it is the gid a
/// process runs with.
fn a_member_less_group() -> Result<(String, u32)> {
    let text = std::fs::read_to_string("/etc/group")?;
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?.to_owned();
            let gid: u32 = parts.nth(1)?.parse().ok()?;
            let members = parts.next().unwrap_or_default();
            (gid != 0 && gid != ATTACKER_UID && members.trim().is_empty()).then_some((name, gid))
        })
        .next()
        .context("need a member-less group in /etc/group")
}

#[test]
fn a_reader_sending_huge_lines_on_many_connections_pins_no_memory() -> Result<()> {
    if !is_root() {
        bail!("this test connects as uid {ATTACKER_UID} and must run as root (CI does)");
    }
    let (read_group, read_gid) = a_member_less_group()?;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let config = dir.path().join("certvakt.toml");
    std::fs::write(
        &config,
        config_toml(dir.path(), "", "").replace(
            "[control]\n",
            &format!("[control]\nread_group = \"{read_group}\"\n"),
        ),
    )?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;
    let pid = daemon.pid().context("pid")?;
    let baseline = rss_kib(pid)?;

    // A reader's 64 connections, each a hello and then a 2 MiB line: 128 MiB in all.
    let hello = format!(
        "{{\"hello\":{{\"protocol\":1,\"version\":\"{}\",\"program\":\"e2e\"}}}}\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={ATTACKER_UID}"))
        .arg(format!("--regid={read_gid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_certvakt-hold"))
        .args([
            "unix",
            &daemon.socket.display().to_string(),
            "64",
            "--send",
            &hello,
            "--long-line",
            "2097152",
            "--until-closed",
            "--hold",
            "30",
        ]);
    let (holder, connected) = Holder::start_command(cmd)?;
    assert_eq!(connected, 64);
    let (closed, first) = holder.finish()?;
    // The first was let in, read, and refused after the reader's budget; the others were
    // turned away (one uid without admin access holds a few connections at most). None is
    // left open.
    assert!(
        first.contains("\\\"access\\\":\\\"read\\\"") && first.contains("longer than 65536 bytes"),
        "{first}"
    );
    assert_eq!(closed, 64, "{first}");
    let after = rss_kib(pid)?;
    assert!(
        after < baseline + 8 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB after 64 lines of 2 MiB from a reader"
    );
    // Root is still served.
    assert_eq!(daemon.cli(&["status"])?.status.code(), Some(0));
    Ok(())
}
