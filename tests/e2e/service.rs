//! Living under systemd: sd_notify messages, the watchdog, structured logs, clean exit.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

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
