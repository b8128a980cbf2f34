//! `certvakt-gen`: writes test certificates to disk.
//!
//! - `certvakt-gen sample DIR`: the demo set (one of each national shape, the edge cases in
//!   time, a chain, a PKCS#12 bundle, managed pairs, broken files); prints the JSON manifest.
//! - `certvakt-gen many DIR N`: N distinct certificate PEM files for benchmarks; prints how
//!   many and how long it took on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: certvakt-gen sample DIR\n       certvakt-gen many DIR N";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["sample", dir] => sample(PathBuf::from(dir)),
        ["many", dir, n] => match n.parse::<usize>() {
            Ok(n) => many(PathBuf::from(dir), n),
            Err(_) => Err(anyhow::anyhow!("N must be a number, not {n:?}\n{USAGE}")),
        },
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certvakt-gen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn sample(dir: PathBuf) -> anyhow::Result<()> {
    let manifest = certvakt_testkit::write_sample_set(&dir)?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(())
}

fn many(dir: PathBuf, n: usize) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let paths = certvakt_testkit::write_many(&dir, n)?;
    eprintln!(
        "wrote {} certificates to {} in {:.2?}",
        paths.len(),
        dir.display(),
        started.elapsed()
    );
    Ok(())
}
