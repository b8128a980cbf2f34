//! Living under systemd: sd_notify messages, the watchdog, structured logs, clean exit.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use certvakt::control::protocol::ProblemKind;

use crate::common::Sample;

fn receive_until(socket: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = msg.lines().any(|l| l.starts_with(want));
                seen.push(msg);
                if found {
                    return Ok(());
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no {want} from the daemon; got {seen:?}")
}

#[test]
fn notifies_ready_status_watchdog_and_stopping_and_removes_its_socket() -> Result<()> {
    let notify_dir = tempfile::tempdir()?;
    let notify_path = notify_dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let path = notify_path.display().to_string();
    let s = Sample::start_with_env(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")])?;

    let mut seen = Vec::new();
    receive_until(&socket, "READY=1", &mut seen)?;
    let all = seen.join("\n");
    assert!(all.contains("STATUS=watching"), "{all}");
    receive_until(&socket, "WATCHDOG=1", &mut seen)?;

    let control = s.daemon.socket.clone();
    assert!(control.exists());
    let status = s.daemon.stop()?;
    assert!(status.success(), "exit {status}");
    receive_until(&socket, "STOPPING=1", &mut seen)?;
    assert!(
        !control.exists(),
        "the control socket is removed on a clean exit"
    );
    Ok(())
}

#[test]
fn log_lines_carry_the_certificate_id_as_a_field() -> Result<()> {
    let s = Sample::start()?;
    let expired = s
        .manifest
        .files
        .iter()
        .find(|f| f.expect == "expired" && f.path.starts_with(s.watched()))
        .map(|f| f.path.display().to_string())
        .unwrap_or_default();
    let log = s.daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("cert_id={expired}")))
        .unwrap_or_default();
    assert!(
        line.starts_with("<3>"),
        "expired is logged at error priority: {line:?}\n{log}"
    );
    assert!(
        line.contains("state=expired") && line.contains("has expired"),
        "{line}"
    );
    Ok(())
}

/// The daemon as another user: a file it may not read is a problem, and the rest goes on.
#[test]
fn an_unreadable_file_is_reported_when_the_daemon_runs_unprivileged() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;

    use certvakt_testkit::harness::{Daemon, bins, config_toml};
    use certvakt_testkit::{CaShape, LeafSpec, TestCa};

    if !crate::common::is_root() {
        bail!("this test starts certvaktd as uid 65534 and must run as root (CI does)");
    }
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs)?;
    std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755))?;
    let ca = TestCa::root_only(CaShape::Tls)?;
    for name in ["readable", "secret"] {
        let leaf = ca.issue(&LeafSpec::tls_server(&[format!(
            "{name}.apotek-test.example"
        )]))?;
        let path = certs.join(format!("{name}.pem"));
        std::fs::write(&path, &leaf.cert_pem)?;
        let mode = if name == "secret" { 0o000 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    let config = dir.path().join("certvakt.toml");
    let body = format!("[[watch]]\npaths = [\"{}/*.pem\"]\n", certs.display());
    std::fs::write(&config, config_toml(dir.path(), "", &body))?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644))?;
    let daemon = Daemon::start_wrapped(
        &bins()?,
        &config,
        &[],
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ],
    )?;
    let secret = certs.join("secret.pem").display().to_string();
    let readable = certs.join("readable.pem").display().to_string();
    let (code, status) = daemon.status()?;
    assert_eq!(code, 2);
    let problem = status
        .problems
        .iter()
        .find(|p| p.path == secret)
        .with_context(|| format!("no problem for {secret}: {status:#?}"))?;
    assert_eq!(problem.kind, ProblemKind::Unreadable, "{status:#?}");
    assert!(problem.message.contains("ermission denied"), "{problem:#?}");
    assert_eq!(crate::common::list_ids(&daemon)?, vec![readable]);
    Ok(())
}

/// The journal's native protocol, read from a socket the daemon takes for the journal's own
/// (in a private mount namespace, so the machine's journal is untouched).
#[test]
fn under_systemd_log_records_reach_the_journal_with_their_fields() -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;

    use certvakt_testkit::harness::{Daemon, bins};

    if !crate::common::is_root() {
        bail!("this test mounts a private /run/systemd/journal and must run as root (CI does)");
    }
    let journal_dir = tempfile::tempdir()?;
    let journal = UnixDatagram::bind(journal_dir.path().join("socket"))?;
    journal.set_read_timeout(Some(Duration::from_millis(200)))?;
    // Read from the start: a journal client blocks when the socket's queue is full.
    let records = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<(String, String)>>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (records, stop) = (records.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = journal.recv(&mut buf) {
                    if let Ok(mut r) = records.lock() {
                        r.push(journal_fields(&buf[..n]));
                    }
                }
            }
        })
    };
    std::fs::create_dir_all("/run/systemd/journal")?;

    let dir = tempfile::tempdir()?;
    let (config, manifest) =
        certvakt_testkit::harness::write_sample_daemon_dir(dir.path(), "127.0.0.1:0")?;
    // The daemon decides "I run under systemd" by JOURNAL_STREAM naming its stderr.
    let log = std::fs::File::create(dir.path().join("certvaktd.log"))?;
    let meta = log.metadata()?;
    drop(log);
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let script = format!(
        "mount --bind {} /run/systemd/journal && exec \"$@\"",
        journal_dir.path().display()
    );
    // Daemon::start_wrapped truncates the log file with File::create, which keeps its inode.
    let wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script.as_str(),
        "sh",
    ];
    let daemon =
        Daemon::start_wrapped(&bins()?, &config, &[("JOURNAL_STREAM", &stream)], &wrapper)?;
    let expired = manifest
        .files
        .iter()
        .find(|f| f.expect == "expired" && f.path.starts_with(manifest.dir.join("watched")))
        .map(|f| f.path.display().to_string())
        .unwrap_or_default();

    let found = certvakt_testkit::harness::eventually(
        Duration::from_secs(20),
        "the expired certificate's journal record",
        || {
            let records = records.lock().ok()?;
            records
                .iter()
                .find(|r| r.iter().any(|(k, v)| k == "CERT_ID" && *v == expired))
                .cloned()
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    let record = match found {
        Ok(record) => record,
        Err(err) => bail!("{err}; records: {:#?}", records.lock().map(|r| r.clone())),
    };
    let get = |key: &str| {
        record
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("PRIORITY"), Some("3"), "{record:?}");
    assert_eq!(get("STATE"), Some("expired"), "{record:?}");
    assert_eq!(get("PATH"), Some(expired.as_str()), "{record:?}");
    assert_eq!(get("SYSLOG_IDENTIFIER"), Some("certvaktd"), "{record:?}");
    assert!(
        get("MESSAGE").is_some_and(|m| m.starts_with("certificate has expired")),
        "{record:?}"
    );
    assert!(
        daemon.log_text().is_empty(),
        "under the journal nothing goes to stderr: {}",
        daemon.log_text()
    );
    Ok(())
}

/// Parses one datagram of the journal's native protocol: `KEY=value\n`, or for values that
/// may hold newlines `KEY\n` + 64-bit little-endian length + bytes + `\n`.
fn journal_fields(mut data: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while let Some(nl) = data.iter().position(|&b| b == b'\n') {
        let line = &data[..nl];
        data = &data[nl + 1..];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            continue;
        }
        let Some(len) = data.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
            break;
        };
        let len = u64::from_le_bytes(len) as usize;
        let Some(value) = data.get(8..8 + len) else {
            break;
        };
        fields.push((
            String::from_utf8_lossy(line).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        data = data.get(8 + len + 1..).unwrap_or_default();
    }
    fields
}
