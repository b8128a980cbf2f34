//! Who may use the control socket, decided by peer credentials, tested with a second uid;
//! and what an old or new client hears.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use certvakt_testkit::harness::{self, Daemon, config_toml};

use crate::common::{bins, stderr};

/// The uid the CLI runs as: `nobody` on Debian.
const OTHER_UID: u32 = 65534;

/// Three groups from /etc/group that have no listed members, so the only way in is the gid
/// the CLI runs with.
fn three_empty_groups() -> Result<Vec<(String, u32)>> {
    let text = std::fs::read_to_string("/etc/group")?;
    let groups: Vec<(String, u32)> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?.to_owned();
            let gid: u32 = parts.nth(1)?.parse().ok()?;
            let members = parts.next().unwrap_or_default();
            (gid != 0 && members.trim().is_empty()).then_some((name, gid))
        })
        .take(3)
        .collect();
    ensure!(
        groups.len() == 3,
        "need three member-less groups in /etc/group"
    );
    Ok(groups)
}

#[test]
fn read_group_may_look_admin_group_may_reload_others_are_refused() -> Result<()> {
    if !nix_is_root() {
        bail!("this test runs the CLI as uid {OTHER_UID} and must run as root (CI does)");
    }
    let groups = three_empty_groups()?;
    let (admin, read, other) = (&groups[0], &groups[1], &groups[2]);
    let dir = tempfile::tempdir()?;
    // The test folder must be reachable by the other uid (the socket itself is 0666).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let text = config_toml(dir.path(), "", "").replace(
        "[control]\n",
        &format!(
            "[control]\nadmin_group = \"{}\"\nread_group = \"{}\"\n",
            admin.0, read.0
        ),
    );
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, text)?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;

    let as_gid = |gid: u32, args: &[&str]| -> Result<std::process::Output> {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={OTHER_UID}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(&daemon.bins.certvakt)
            .arg("--socket")
            .arg(&daemon.socket)
            .args(args);
        cmd.output()
            .context("setpriv (util-linux) is needed; scripts/install-test-deps installs it")
    };

    // read group: may look, may not reload.
    let out = as_gid(read.1, &["status"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = as_gid(read.1, &["reload"])?;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("admin access"), "{}", stderr(&out));

    // admin group: may reload.
    let out = as_gid(admin.1, &["reload"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // anyone else: refused at the hello, with the groups to ask for.
    let out = as_gid(other.1, &["status"])?;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&read.0) && err.contains(&admin.0), "{err}");

    // root: everything.
    assert_eq!(daemon.cli(&["reload"])?.status.code(), Some(0));
    Ok(())
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn empty_daemon() -> Result<(tempfile::TempDir, Daemon)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, config_toml(dir.path(), "", ""))?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;
    Ok((dir, daemon))
}

#[test]
fn a_client_of_another_protocol_version_gets_a_sentence_not_a_parse_error() -> Result<()> {
    let (_dir, daemon) = empty_daemon()?;
    let mut stream = UnixStream::connect(&daemon.socket)?;
    stream.write_all(b"{\"hello\":{\"protocol\":999,\"version\":\"9.9.9\",\"program\":\"certvakt\",\"future\":true}}\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let reply: serde_json::Value = serde_json::from_str(&line)?;
    let ours = certvakt::control::protocol::PROTOCOL_VERSION;
    assert_eq!(reply["hello"]["protocol"], ours);
    let error = reply["hello"]["error"]
        .as_str()
        .context("an error sentence")?;
    assert!(
        error.contains(&format!("protocol {ours}")) && error.contains("999"),
        "{error}"
    );
    assert_eq!(reply["hello"]["access"], "none");
    Ok(())
}

#[test]
fn a_second_daemon_on_the_same_socket_refuses_to_start() -> Result<()> {
    let (dir, daemon) = empty_daemon()?;
    let out = Command::new(&daemon.bins.certvaktd)
        .arg("--config")
        .arg(dir.path().join("certvakt.toml"))
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already"), "{}", stderr(&out));
    // The first one is unharmed.
    assert_eq!(daemon.cli(&["status"])?.status.code(), Some(0));
    let _ = harness::bins()?;
    Ok(())
}
