//! Shared set-up for the end-to-end tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use certvakt::control::protocol::ProblemKind;
use certvakt_testkit::Manifest;
use certvakt_testkit::harness::{self, Bins, Daemon};
use tempfile::TempDir;

pub const WAIT: Duration = Duration::from_secs(20);

/// A daemon over the sample set, in its own temporary folder.
pub struct Sample {
    pub dir: TempDir,
    pub manifest: Manifest,
    pub daemon: Daemon,
}

impl Sample {
    pub fn start() -> Result<Sample> {
        Self::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> Result<Sample> {
        let dir = tempfile::Builder::new().prefix("certvakt-e2e.").tempdir()?;
        let (config, manifest) = harness::write_sample_daemon_dir(dir.path(), "127.0.0.1:0")?;
        let daemon = Daemon::start(&bins()?, &config, env)?;
        Ok(Sample {
            dir,
            manifest,
            daemon,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn watched(&self) -> PathBuf {
        self.manifest.dir.join("watched")
    }
}

pub fn bins() -> Result<Bins> {
    harness::bins()
}

/// The ids in `certvakt --json list`.
pub fn list_ids(daemon: &Daemon) -> Result<Vec<String>> {
    Ok(daemon.list()?.into_iter().map(|item| item.id).collect())
}

/// The problems in `certvakt --json status`, as (id, kind).
pub fn problems(daemon: &Daemon) -> Result<Vec<(String, ProblemKind)>> {
    let (_, status) = daemon.status()?;
    Ok(status
        .problems
        .into_iter()
        .map(|p| (p.id, p.kind))
        .collect())
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether the key file belongs to the (first) certificate of the certificate file.
pub fn pair_matches(cert: &Path, key: &Path) -> Result<bool> {
    let cert_der = certvakt::keys::parse_certificate_chain(&std::fs::read(cert)?)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} holds no certificate", cert.display()))?;
    let key = certvakt::keys::PrivateKey::from_bytes(&std::fs::read(key)?)?;
    Ok(certvakt::keys::cert_matches_key(&cert_der, &key)?)
}

/// Waits up to `timeout` for `check` on a daemon renewing `id`; on a timeout the error shows
/// the renewal's status, what the authority saw (`seen`), and the daemon's log.
pub fn wait_renewal<T>(
    daemon: Option<&Daemon>,
    id: &str,
    timeout: Duration,
    what: &str,
    seen: impl Fn() -> String,
    check: impl FnMut() -> Option<T>,
) -> Result<T> {
    match harness::eventually(timeout, what, check) {
        Ok(value) => Ok(value),
        Err(e) => anyhow::bail!(
            "{e}\nstatus: {:#?}\nthe authority saw: {}\n{}",
            daemon.and_then(|d| d.renewal(id).ok().flatten()),
            seen(),
            daemon.map(Daemon::log_text).unwrap_or_default()
        ),
    }
}

/// The open task whose title contains `needle`, if there is one.
pub fn task_titled(
    daemon: Option<&Daemon>,
    needle: &str,
) -> Option<certvakt::control::protocol::Task> {
    daemon?
        .tasks()
        .ok()?
        .into_iter()
        .find(|t| t.title.contains(needle))
}
