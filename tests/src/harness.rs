//! Driving the real `certvaktd` and the real `certvakt` CLI from tests and the demo.
//!
//! The binaries are the ones cargo built into the same target folder as the test or demo
//! binary (`target/<profile>/certvaktd`); the README's test command builds them first.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use certvakt::control::protocol::{
    ListItem, PluginsReport, Renewal, Response, ShowReport, StatusReport, Task,
};
use serde::de::DeserializeOwned;

/// The two binaries under test.
#[derive(Debug, Clone)]
pub struct Bins {
    pub certvaktd: PathBuf,
    pub certvakt: PathBuf,
}

/// Finds `certvaktd` and `certvakt` beside the running executable (`target/<profile>/` or
/// its `deps/` child).
pub fn bins() -> Result<Bins> {
    let exe = std::env::current_exe().context("current executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bins = Bins {
        certvaktd: dir.join("certvaktd"),
        certvakt: dir.join("certvakt"),
    };
    for bin in [&bins.certvaktd, &bins.certvakt] {
        if !bin.is_file() {
            bail!(
                "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test does)",
                bin.display()
            );
        }
    }
    Ok(bins)
}

/// Waits until `check` returns `Some`, polling every 20 ms, for at most `timeout`.
pub fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A configuration for a daemon whose files all live in `dir`.
pub fn config_toml(dir: &Path, metrics_listen: &str, body: &str) -> String {
    format!(
        r#"[daemon]
state_dir = "{dir}/state"
plugin_dir = "{dir}/plugins"
warn_before = "30d"
log_level = "debug"

[control]
socket = "{dir}/control.sock"

[metrics]
listen = "{metrics_listen}"

{body}
"#,
        dir = dir.display()
    )
}

/// A running `certvaktd`.
#[derive(Debug)]
pub struct Daemon {
    pub bins: Bins,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `certvaktd --config CONFIG` with stderr to `DIR/certvaktd.log`, and waits until
    /// its control socket answers. `env` is added to the daemon's environment.
    pub fn start(bins: &Bins, config: &Path, env: &[(&str, &str)]) -> Result<Daemon> {
        Self::start_wrapped(bins, config, env, &[])
    }

    /// Like [`Daemon::start`], with `wrapper` put in front of the daemon's command line: a
    /// program that sets something up and then `exec`s the rest (`setpriv --reuid=…`,
    /// `unshare -m …`), so the daemon keeps the wrapper's pid.
    pub fn start_wrapped(
        bins: &Bins,
        config: &Path,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Result<Daemon> {
        let dir = config.parent().context("config has a folder")?;
        let log = dir.join("certvaktd.log");
        let socket = dir.join("control.sock");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&bins.certvaktd);
                cmd
            }
            None => Command::new(&bins.certvaktd),
        };
        let child = cmd
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {} {wrapper:?}", bins.certvaktd.display()))?;
        let mut daemon = Daemon {
            bins: bins.clone(),
            config: config.to_path_buf(),
            socket,
            log,
            child: Some(child),
        };
        let ready = eventually(
            Duration::from_secs(30),
            "the control socket to answer",
            || {
                if let Some(child) = daemon.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Some(Err(anyhow!("certvaktd exited early with {status}")));
                    }
                }
                let out = daemon.cli(&["status", "--json"]).ok()?;
                // 0, 1, 2 are health verdicts: the daemon answered.
                matches!(out.status.code(), Some(0..=2)).then_some(Ok(()))
            },
        );
        match ready.and_then(|r| r) {
            Ok(()) => Ok(daemon),
            Err(err) => Err(err.context(format!("daemon log:\n{}", daemon.log_text()))),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs the CLI against this daemon's socket.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        self.cli_command(args)
            .output()
            .with_context(|| format!("running certvakt {args:?}"))
    }

    /// The CLI command, to add uid/gid or environment before running it.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bins.certvakt);
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd.env_remove("CERTVAKT_SOCKET");
        cmd
    }

    /// Runs `certvakt --json ARGS` and parses stdout; returns exit code and JSON.
    pub fn cli_json(&self, args: &[&str]) -> Result<(i32, serde_json::Value)> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.cli(&full)?;
        let code = out.status.code().unwrap_or(-1);
        let value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "certvakt {full:?} exited {code}; stdout is not JSON: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok((code, value))
    }

    /// Runs `certvakt --json ARGS` and reads stdout as `T`, one of the control protocol's
    /// own types (`certvakt::control::protocol`: [`Response`], or a report such as
    /// [`StatusReport`], which ignores the `response` tag): exit code and answer. A field the
    /// answer lacks is an error naming it, where an untyped read would see an empty value.
    pub fn cli_typed<T: DeserializeOwned>(&self, args: &[&str]) -> Result<(i32, T)> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.cli(&full)?;
        let code = out.status.code().unwrap_or(-1);
        let value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "certvakt {full:?} exited {code}; stdout is not a {}: {}\nstderr: {}",
                std::any::type_name::<T>(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok((code, value))
    }

    /// `certvakt --json status`: exit code and report.
    pub fn status(&self) -> Result<(i32, StatusReport)> {
        self.cli_typed(&["status"])
    }

    /// The renewal of `id` in `status`, if it is a managed certificate.
    pub fn renewal(&self, id: &str) -> Result<Option<Renewal>> {
        let (_, status) = self.status()?;
        Ok(status.renewals.into_iter().find(|r| r.id == id))
    }

    /// `certvakt --json list`.
    pub fn list(&self) -> Result<Vec<ListItem>> {
        match self.cli_typed(&["list"])? {
            (0, Response::List { items, .. }) => Ok(items),
            (code, other) => bail!("list exited {code} with {other:?}"),
        }
    }

    /// `certvakt --json show ID`: exit code and report.
    pub fn show(&self, id: &str) -> Result<(i32, ShowReport)> {
        match self.cli_typed(&["show", id])? {
            (code, Response::Show(report)) => Ok((code, report)),
            (code, other) => bail!("show {id} exited {code} with {other:?}"),
        }
    }

    /// `certvakt --json tasks`: the open operator tasks.
    pub fn tasks(&self) -> Result<Vec<Task>> {
        match self.cli_typed(&["tasks"])? {
            (0, Response::Tasks { tasks }) => Ok(tasks),
            (code, other) => bail!("tasks exited {code} with {other:?}"),
        }
    }

    /// `certvakt --json plugins`: exit code and report.
    pub fn plugins(&self) -> Result<(i32, PluginsReport)> {
        match self.cli_typed(&["plugins"])? {
            (code, Response::Plugins(report)) => Ok((code, report)),
            (code, other) => bail!("plugins exited {code} with {other:?}"),
        }
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, `"KILL"`) with kill(1).
    pub fn signal(&self, name: &str) -> Result<()> {
        let pid = self.pid().context("daemon already stopped")?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{name} {pid} failed");
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> Result<ExitStatus> {
        self.signal("TERM")?;
        let mut child = self.child.take().context("daemon already stopped")?;
        let status = eventually(Duration::from_secs(20), "certvaktd to exit", || {
            child.try_wait().ok().flatten()
        })?;
        Ok(status)
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The metrics endpoint's address, from `status`.
    pub fn metrics_addr(&self) -> Result<String> {
        let (_, status) = self.status()?;
        status
            .metrics_listen
            .context("status has no metrics_listen")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET path` over plain HTTP/1.1 on loopback; returns status code and body.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    use std::io::Write as _;
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .context("HTTP response without header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("HTTP status line")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The `[[watch]]` and `[[certificate]]` entries for a sample set.
pub fn sample_config_body(manifest: &crate::Manifest) -> String {
    let quote = |s: &str| format!("{s:?}");
    let patterns: Vec<String> = manifest.watch_patterns.iter().map(|p| quote(p)).collect();
    let mut body = format!(
        "[[watch]]\npaths = [{}]\npkcs12_password_file = {}\n",
        patterns.join(", "),
        quote(&manifest.pkcs12_password_file.display().to_string())
    );
    for m in &manifest.managed {
        body.push_str(&format!(
            "\n[[certificate]]\nid = {}\ncert = {}\nkey = {}\nplugin = {}\n",
            quote(&m.id),
            quote(&m.cert.display().to_string()),
            quote(&m.key.display().to_string()),
            quote(&m.plugin)
        ));
    }
    body
}

/// Writes a sample set under `dir/certs` and a configuration `dir/certvakt.toml` over it.
pub fn write_sample_daemon_dir(
    dir: &Path,
    metrics_listen: &str,
) -> Result<(PathBuf, crate::Manifest)> {
    let manifest = crate::write_sample_set(&dir.join("certs"))?;
    let config = dir.join("certvakt.toml");
    std::fs::write(
        &config,
        config_toml(dir, metrics_listen, &sample_config_body(&manifest)),
    )?;
    Ok((config, manifest))
}

/// A plugin cdylib built into the same target folder as the binaries
/// (`lib<crate_name>.so`, `-` becoming `_`).
pub fn plugin_library(bins: &Bins, crate_name: &str) -> Result<PathBuf> {
    let file = format!("lib{}.so", crate_name.replace('-', "_"));
    let path = bins
        .certvaktd
        .parent()
        .context("binaries have a folder")?
        .join(&file);
    if !path.is_file() {
        bail!(
            "{} is missing: build the workspace first (`cargo build --workspace`, as scripts/test does)",
            path.display()
        );
    }
    Ok(path)
}

/// Copies plugin libraries into `dir` (created 0755) with mode 0644, as a package installs them.
pub fn install_plugins(bins: &Bins, dir: &Path, crate_names: &[&str]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for name in crate_names {
        let from = plugin_library(bins, name)?;
        let to = dir.join(from.file_name().context("library file name")?);
        std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}
