//! `certvakt-demo`: certvaktd over a generated sample set, with the CLI and metrics to look at.
//!
//! Usage: `certvakt-demo [--once] [--dir DIR] [--listen ADDR]`. Without `--dir` a temporary
//! folder is made and removed at the end. `--once` prints what the demo shows and stops the
//! daemon (the test suite runs it that way); otherwise it runs until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use certvakt_testkit::harness::{self, Daemon};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("certvakt-demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut once = false;
    let mut dir: Option<PathBuf> = None;
    let mut listen = "127.0.0.1:9617".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--once" => once = true,
            "--dir" => dir = Some(args.next().context("--dir needs a folder")?.into()),
            "--listen" => listen = args.next().context("--listen needs an address")?,
            "-h" | "--help" => {
                println!("usage: certvakt-demo [--once] [--dir DIR] [--listen 127.0.0.1:9617]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }

    let temp;
    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("certvakt-demo.")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let (config, manifest) = harness::write_sample_daemon_dir(&dir, &listen)?;
    let bins = harness::bins()?;
    let daemon = Daemon::start(&bins, &config, &[]).with_context(|| {
        format!("starting certvaktd (is {listen} free? pass --listen 127.0.0.1:0)")
    })?;
    let metrics = daemon.metrics_addr()?;
    let cli = format!(
        "{} --socket {}",
        bins.certvakt.display(),
        daemon.socket.display()
    );

    let status = daemon.cli(&["status"])?;
    println!("{}", String::from_utf8_lossy(&status.stdout));
    println!(
        "certvakt demo: certvaktd (pid {}) is watching {} sample files in {}\n",
        daemon.pid().unwrap_or(0),
        manifest.files.len(),
        manifest.dir.display()
    );
    println!("  look:      {cli} status");
    println!("             {cli} list");
    println!("             {cli} show dk-fmk");
    println!("  metrics:   curl -s http://{metrics}/metrics | grep ^certvakt_");
    println!("  config:    {}", config.display());
    println!("             (edit it, then: {cli} reload)");
    println!(
        "  try:       cp {}/watched/*.pem /tmp/ and drop a new file into {}/watched/",
        manifest.dir.display(),
        manifest.dir.display()
    );
    println!("  log:       {}", daemon.log.display());
    if once {
        let (code, _) = harness::http_get(&metrics, "/metrics")?;
        println!("\n  /metrics answered HTTP {code}; stopping (--once).");
        let status = daemon.stop()?;
        if !status.success() {
            bail!("certvaktd exited with {status}");
        }
        return Ok(());
    }
    println!("\n  Ctrl-C stops the daemon and removes the folder.");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\nstopping certvaktd ...");
    let status = daemon.stop()?;
    println!("certvaktd exited: {status}");
    Ok(())
}
