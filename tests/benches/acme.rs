//! The ACME benchmark: time to obtain N certificates from pebble, certvakt (one daemon, the
//! orders in flight together) beside lego (one `lego run` per certificate, one after the
//! other, as people script it), in one run against the same kind of pebble.
//!
//! `scripts/bench` runs it with `--bench` (N = 100) and prints a Markdown table for docs/benchmarks.md.
//! Under `cargo test` the same code runs with N = 2, so the benchmark cannot rot; nothing here
//! asserts a timing. Both clients validate with http-01 for real (pebble dials their
//! responders on loopback) and make ECDSA P-256 keys.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use certvakt_testkit::harness::{self, Daemon, config_toml};
use certvakt_testkit::pebble::{Pebble, PebbleConfig};

/// How long one side may take for its certificates before the benchmark gives up: 100 under
/// `--bench`; the test run's 2 take seconds, and a stuck one must fail the run soon, not hold
/// it for a quarter of an hour.
fn limit(count: u32) -> Duration {
    if count > 10 {
        Duration::from_secs(900)
    } else {
        Duration::from_secs(120)
    }
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let count = if bench { 100 } else { 2 };
    let certvakt = certvakt_run(count)?;
    let (lego, lego_log) = lego_run(count)?;
    println!("\n| client | certificates | wall time | per certificate |\n|---|---|---|---|");
    for (name, wall) in [
        ("certvakt (concurrent orders)", certvakt),
        ("lego (sequential runs)", lego),
    ] {
        println!(
            "| {name} | {count} | {:.1} s | {:.0} ms |",
            wall.as_secs_f64(),
            wall.as_secs_f64() * 1000.0 / f64::from(count)
        );
    }
    println!("\nlego's own log of its first run, to see where its time goes:\n{lego_log}");
    Ok(())
}

fn name(i: u32) -> String {
    format!("site-{i}.apotek.test")
}

/// Starts the daemon with `count` certificates it has never had, and times until all are
/// installed.
fn certvakt_run(count: u32) -> Result<Duration> {
    let pebble = Pebble::start(PebbleConfig::default())?;
    let dir = tempfile::tempdir()?;
    let bins = harness::bins()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-acme"],
    )?;
    std::fs::write(dir.path().join("pebble-ca.pem"), pebble.listener_ca_pem())?;
    let mut body = format!(
        "[trust]\npebble = [\"{}\"]\n",
        dir.path().join("pebble-ca.pem").display()
    );
    for i in 0..count {
        body.push_str(&format!(
            r#"
[[certificate]]
id = "site-{i}"
cert = "{live}/site-{i}.pem"
key = "{live}/site-{i}.key"
plugin = "acme"
[certificate.settings]
directory = "{directory}"
trust = "pebble"
domains = ["{name}"]
agree_terms = true
"#,
            live = dir.path().join("live").display(),
            directory = pebble.directory_url(),
            name = name(i),
        ));
    }
    let text = config_toml(dir.path(), "127.0.0.1:0", &body).replace(
        "log_level = \"debug\"",
        &format!(
            "log_level = \"info\"\nhttp01_listen = \"127.0.0.1:{}\"",
            pebble.http01_port()
        ),
    );
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, text)?;

    let start = Instant::now();
    let daemon = Daemon::start(&bins, &config, &[])?;
    let live = dir.path().join("live");
    loop {
        let installed = (0..count)
            .filter(|i| live.join(format!("site-{i}.pem")).exists())
            .count();
        if installed == count as usize {
            break;
        }
        if start.elapsed() > limit(count) {
            bail!(
                "certvakt installed {installed} of {count} in {:?}\n{}",
                limit(count),
                daemon.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = start.elapsed();
    daemon.stop()?;
    Ok(wall)
}

/// Runs `lego run` once per certificate, one after the other; returns the time and the first
/// run's log.
fn lego_run(count: u32) -> Result<(Duration, String)> {
    let lego = which("lego")
        .context("lego is not installed: run scripts/install-test-deps (Debian package `lego`)")?;
    let pebble = Pebble::start(PebbleConfig::default())?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("pebble-ca.pem");
    std::fs::write(&ca, pebble.listener_ca_pem())?;
    let start = Instant::now();
    let mut first_log = String::new();
    for i in 0..count {
        let output = Command::new(&lego)
            .env("LEGO_CA_CERTIFICATES", &ca)
            .args(["--server", &pebble.directory_url()])
            .args(["--accept-tos", "--email", "it@apotek.test"])
            .args(["--key-type", "ec256"])
            .arg("--http")
            .args([
                "--http.port",
                &format!("127.0.0.1:{}", pebble.http01_port()),
            ])
            .arg("--path")
            .arg(dir.path().join("lego"))
            .args(["--domains", &name(i)])
            .arg("run")
            .stdin(Stdio::null())
            .output()
            .context("running lego")?;
        ensure!(
            output.status.success(),
            "lego run for {} failed: {}\n{}",
            name(i),
            String::from_utf8_lossy(&output.stderr),
            pebble.log_text()
        );
        if i == 0 {
            first_log = String::from_utf8_lossy(&output.stderr).into_owned();
        }
        if start.elapsed() > limit(count) {
            bail!(
                "lego took longer than {:?} for {i} certificates",
                limit(count)
            );
        }
    }
    let wall = start.elapsed();
    let issued = std::fs::read_dir(dir.path().join("lego/certificates"))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".apotek.test.crt")
        })
        .count();
    ensure!(
        issued == count as usize,
        "lego left {issued} certificates, not {count}"
    );
    Ok((wall, first_log))
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}
