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
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually};

use crate::common::{WAIT, bins, is_root, list_ids, stderr};

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
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        let _ = self.child.wait();
        let said = |prefix: &str| {
            rest.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .with_context(|| format!("certvakt-hold said {rest:?}"))
        };
        let closed = said("closed ")?
            .parse()
            .with_context(|| format!("certvakt-hold said {rest:?}"))?;
        Ok((closed, said("first: ")?.to_owned()))
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
            "{{\"hello\":{{\"protocol\":{},\"version\":\"{}\",\"program\":\"e2e\"}}}}\n",
            certvakt::control::protocol::PROTOCOL_VERSION,
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
        "{{\"hello\":{{\"protocol\":{},\"version\":\"{}\",\"program\":\"e2e\"}}}}\n",
        certvakt::control::protocol::PROTOCOL_VERSION,
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

/// A daemon over the sample set with `/metrics` on loopback, limited to 1,024 open files (the
/// soft limit systemd gives a service by default), and `extra` certificate files in a watched
/// folder of their own.
fn limited_sample_daemon(
    extra: usize,
) -> Result<(tempfile::TempDir, certvakt_testkit::Manifest, Daemon)> {
    let dir = tempfile::Builder::new().prefix("certvakt-e2e.").tempdir()?;
    let (config, manifest) = harness::write_sample_daemon_dir(dir.path(), "127.0.0.1:0")?;
    if extra > 0 {
        let many = dir.path().join("many");
        certvakt_testkit::write_many(&many, extra)?;
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(&format!(
            "\n[[watch]]\npaths = [\"{}/*.pem\"]\n",
            many.display()
        ));
        std::fs::write(&config, text)?;
    }
    let daemon =
        Daemon::start_wrapped(&bins()?, &config, &[], &["prlimit", "--nofile=1024", "--"])?;
    Ok((dir, manifest, daemon))
}

#[test]
fn a_flood_of_connections_to_metrics_leaves_the_inventory_whole() -> Result<()> {
    let (_dir, manifest, daemon) = limited_sample_daemon(0)?;
    let addr = daemon.metrics_addr()?;
    let before = list_ids(&daemon)?;
    ensure!(before.len() > 5, "{before:?}");
    let log_before = log_lines(&daemon).len();

    // 1,100 connections that send nothing, kept open (reopened when closed) by two processes.
    let (first, a) = Holder::start(None, &["tcp", &addr, "550", "--refill", "--hold", "60"])?;
    let (second, b) = Holder::start(None, &["tcp", &addr, "550", "--refill", "--hold", "60"])?;
    ensure!(a + b > 1024, "only {} connections", a + b);

    // A certificate arrives meanwhile: the rescan must open its folder and the file.
    let source = manifest
        .files
        .iter()
        .find(|f| {
            f.kind == "cert_pem"
                && f.expect == "ok"
                && f.path.starts_with(manifest.dir.join("watched"))
        })
        .context("a valid watched PEM in the sample set")?;
    let arrived = manifest.dir.join("watched").join("zz-arrived.pem");
    std::fs::copy(&source.path, &arrived)?;
    let arrived_id = arrived.display().to_string();
    // The daemon still answers, found the new one, and lost none of the others.
    let seen = eventually(
        WAIT,
        "the rescan to find the new certificate and keep the others",
        || {
            let ids = list_ids(&daemon).ok()?;
            (ids.contains(&arrived_id) && before.iter().all(|id| ids.contains(id))).then_some(ids)
        },
    );
    drop((first, second));
    if let Err(e) = seen {
        let ids = list_ids(&daemon).unwrap_or_default();
        bail!("{e}; now listed: {ids:#?}");
    }

    // After the flood the endpoint answers, with the new certificate in it.
    let (code, text) = eventually(WAIT, "/metrics to answer", || {
        harness::http_get(&addr, "/metrics").ok()
    })?;
    assert_eq!(code, 200);
    assert!(text.contains(&arrived_id), "{text}");
    // And the flood cost a few log lines, not one per connection.
    let lines = log_lines(&daemon);
    let about_flood = lines[log_before..]
        .iter()
        .filter(|l| l.contains("server=metrics"))
        .count();
    assert!(about_flood <= 10, "{}", lines[log_before..].join("\n"));
    Ok(())
}

#[test]
fn clients_that_never_read_their_metrics_do_not_grow_the_daemon() -> Result<()> {
    // 1,000 more certificates: a /metrics answer of about half a megabyte.
    let (_dir, _manifest, daemon) = limited_sample_daemon(1000)?;
    let addr = daemon.metrics_addr()?;
    let pid = daemon.pid().context("pid")?;
    let (code, text) = harness::http_get(&addr, "/metrics")?;
    assert_eq!(code, 200);
    ensure!(text.len() > 256 * 1024, "{} bytes", text.len());
    let baseline = rss_kib(pid)?;

    // 300 clients, each asking 20 times over one connection and never reading an answer.
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let (holder, connected) = Holder::start(
        None,
        &[
            "tcp", &addr, "300", "--send", &request, "--repeat", "20", "--hold", "60",
        ],
    )?;
    ensure!(connected == 300, "{connected} connected");
    // Watched for ten seconds: the daemon's memory stays within a few answers of where it was.
    let mut peak = baseline;
    for _ in 0..100 {
        peak = peak.max(rss_kib(pid)?);
        if peak > baseline + 24 * 1024 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(holder);
    assert!(
        peak <= baseline + 24 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB with 300 clients that never read"
    );
    // The endpoint still answers.
    let (code, _) = eventually(WAIT, "/metrics to answer", || {
        harness::http_get(&addr, "/metrics").ok()
    })?;
    assert_eq!(code, 200);
    Ok(())
}

/// Sets the soft limit of open files of the running process `pid` with prlimit(1).
fn set_open_files_limit(pid: u32, soft: u32) -> Result<()> {
    let out = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={soft}:"))
        .output()
        .context("prlimit (util-linux)")?;
    ensure!(out.status.success(), "prlimit: {}", stderr(&out));
    Ok(())
}

#[test]
fn a_rescan_short_of_open_files_keeps_every_certificate_and_is_retried_soon() -> Result<()> {
    let (_dir, manifest, daemon) = limited_sample_daemon(0)?;
    let pid = daemon.pid().context("pid")?;
    let before = list_ids(&daemon)?;
    ensure!(before.len() > 5, "{before:?}");
    let log_before = log_lines(&daemon).len();

    // From now on the daemon cannot open a single file more (its descriptors 0, 1 and 2
    // alone are more than the limit), and a certificate arrives: the rescan cannot read
    // the watched folder.
    set_open_files_limit(pid, 3)?;
    let source = manifest
        .files
        .iter()
        .find(|f| {
            f.kind == "cert_pem"
                && f.expect == "ok"
                && f.path.starts_with(manifest.dir.join("watched"))
        })
        .context("a valid watched PEM in the sample set")?;
    let arrived = manifest.dir.join("watched").join("zz-arrived.pem");
    std::fs::copy(&source.path, &arrived)?;
    let said = eventually(WAIT, "the rescan to say it is incomplete", || {
        log_lines(&daemon)[log_before..]
            .iter()
            .find(|l| l.contains("scan incomplete: too many open files"))
            .cloned()
    });
    set_open_files_limit(pid, 1024)?;
    if let Err(e) = said {
        bail!("{e}:\n{}", log_lines(&daemon)[log_before..].join("\n"));
    }

    // With nothing changed on disk since, the daemon scans again soon, and finds the new
    // certificate beside every one it knew.
    let arrived_id = arrived.display().to_string();
    eventually(WAIT, "the retried scan to find everything", || {
        let ids = list_ids(&daemon).ok()?;
        (ids.contains(&arrived_id) && before.iter().all(|id| ids.contains(id))).then_some(())
    })?;
    // Nothing was ever taken for lost or for a matter of permissions.
    let lines = log_lines(&daemon);
    for line in &lines[log_before..] {
        assert!(
            !line.contains("no longer found") && !line.contains("give the certvakt service user"),
            "{}",
            lines[log_before..].join("\n")
        );
    }
    Ok(())
}
