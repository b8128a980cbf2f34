//! `certvakt-simca`: the simulated CA (`certvakt_testkit::simca`) as a process, for the demo
//! and for trying certvakt's renewal by hand.
//!
//! Usage: `certvakt-simca --dir DIR [--listen ADDR] [--issue-after SECS] [--validity-minutes N]
//! [--shape NAME] [--quiet]`. Writes into DIR: `url`, `server-ca.pem` (the trust set for the
//! daemon), `client.{cert,key,chain,fullchain}.pem` (a client identity for the daemon),
//! `client-ca.pem` and `issuing-ca.pem`; prints the URL on the first line of stdout, then
//! serves until SIGINT or SIGTERM, one line per request on stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use certvakt_testkit::CaShape;
use certvakt_testkit::simca::{SimCa, SimCaConfig};

const USAGE: &str = "usage: certvakt-simca --dir DIR [--listen 127.0.0.1:8443] [--issue-after 5] \
                     [--validity-minutes 60] [--shape tls|oces3|siths|dvv|buypass|commfides] [--quiet]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("certvakt-simca: {err:#}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut dir: Option<PathBuf> = None;
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8443));
    let mut config = SimCaConfig {
        issue_after: Duration::from_secs(5),
        validity: Duration::from_secs(60 * 60),
        log_requests: true,
        ..SimCaConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => dir = Some(value()?.into()),
            "--listen" => {
                let text = value()?;
                listen = text.parse().with_context(|| {
                    format!("--listen {text:?} is not an address like 127.0.0.1:8443")
                })?;
            }
            "--issue-after" => {
                let text = value()?;
                let secs: u64 = text.parse().with_context(|| {
                    format!("--issue-after {text:?} is not a number of seconds")
                })?;
                config.issue_after = Duration::from_secs(secs);
            }
            "--validity-minutes" => {
                let text = value()?;
                let minutes: u64 = text.parse().with_context(|| {
                    format!("--validity-minutes {text:?} is not a number of minutes")
                })?;
                if minutes == 0 {
                    bail!("--validity-minutes must be at least 1");
                }
                config.validity = Duration::from_secs(minutes * 60);
            }
            "--shape" => config.shape = shape(&value()?)?,
            "--quiet" => config.log_requests = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let dir = dir.context("--dir is required: where to write the CA and client files")?;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let sim = SimCa::start(listen, config.clone()).with_context(|| {
        format!("starting the sim CA on {listen} (pass --listen 127.0.0.1:0 for any free port)")
    })?;
    let files = sim.write_files(&dir)?;
    println!("{}", sim.url());
    println!(
        "certvakt-simca: issuing as {:?}, after {}s, valid {} min\n  \
         trust (server CA):  {}\n  \
         client identity:    {} + {}\n  \
         client CA:          {}\n  \
         issuing CA chain:   {}",
        config.shape,
        config.issue_after.as_secs(),
        config.validity.as_secs() / 60,
        files.server_ca.display(),
        files.client.fullchain.display(),
        files.client.key.display(),
        files.client_ca.display(),
        files.issuing_ca.display(),
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(sim);
    Ok(())
}

fn shape(name: &str) -> Result<CaShape> {
    Ok(match name {
        "tls" => CaShape::Tls,
        "oces3" => CaShape::Oces3,
        "siths" => CaShape::Siths,
        "dvv" => CaShape::Dvv,
        "buypass" => CaShape::BuypassSeid2,
        "commfides" => CaShape::Commfides,
        other => {
            bail!("--shape {other:?} is not one of tls, oces3, siths, dvv, buypass, commfides")
        }
    })
}
