//! The monitor's benchmark: inventory of 10,000 files cold, daemon RSS with 1,000 watched
//! certificates, and `certvakt list` latency over 1,000.
//!
//! `scripts/bench` runs it in release mode and prints a Markdown table (docs/benchmarks.md keeps the
//! latest one). Under `cargo test` it runs the same code on small numbers, so the benchmark
//! cannot rot; nothing here asserts a timing.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use certvakt::inventory::{Scanner, Source, SourceKind};
use certvakt_testkit::harness::{self, Daemon, config_toml};

struct Sizes {
    /// Drop the page cache before each cold scan (root only; never under `cargo test`).
    drop_cache: bool,
    scan_files: usize,
    scan_rounds: usize,
    daemon_certs: usize,
    list_runs: usize,
    renewal_cycles: usize,
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes = if bench {
        Sizes {
            drop_cache: true,
            scan_files: 10_000,
            scan_rounds: 5,
            daemon_certs: 1_000,
            list_runs: 50,
            renewal_cycles: 10,
        }
    } else {
        Sizes {
            drop_cache: false,
            scan_files: 200,
            scan_rounds: 1,
            daemon_certs: 50,
            list_runs: 3,
            renewal_cycles: 1,
        }
    };
    let mut rows = Vec::new();
    inventory(&sizes, &mut rows)?;
    daemon(&sizes, &mut rows)?;
    renewal(&sizes, &mut rows)?;
    println!("\n| measurement | result | target |\n|---|---|---|");
    for (what, result, target) in rows {
        println!("| {what} | {result} | {target} |");
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn inventory(sizes: &Sizes, rows: &mut Vec<(String, String, String)>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    certvakt_testkit::write_many(dir.path(), sizes.scan_files)?;
    let sources = [Source {
        kind: SourceKind::Watched {
            pattern: format!("{}/*.pem", dir.path().display()),
        },
        path: format!("{}/*.pem", dir.path().display()),
        pkcs12_password_file: None,
    }];
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..sizes.scan_rounds {
        let dropped = sizes.drop_cache && drop_page_cache();
        let mut scanner = Scanner::new(1024 * 1024);
        let start = Instant::now();
        let inv = scanner.scan(&sources);
        cold.push((start.elapsed(), dropped));
        ensure!(
            inv.entries.len() == sizes.scan_files,
            "scanned {} entries",
            inv.entries.len()
        );
        let start = Instant::now();
        let again = scanner.scan(&sources);
        warm.push(start.elapsed());
        ensure!(again.files_parsed == 0, "a warm rescan parses nothing");
    }
    let n = sizes.scan_files;
    let page_cache_dropped = cold.iter().all(|(_, dropped)| *dropped);
    rows.push((
        format!(
            "inventory of {n} certificate files, cold (median of {}; {})",
            sizes.scan_rounds,
            if page_cache_dropped {
                "page cache dropped before each"
            } else {
                "files in the page cache"
            }
        ),
        ms(median(cold.into_iter().map(|(d, _)| d).collect())),
        "≤ 1 s".into(),
    ));
    rows.push((
        format!("rescan of {n} unchanged files (stat only)"),
        ms(median(warm)),
        "-".into(),
    ));
    Ok(())
}

/// Drops the kernel's page cache when allowed (root), so "cold" includes reading the disk.
fn drop_page_cache() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// A field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`) or, for `Pss:` and
/// `Private_Dirty:`, of `/proc/PID/smaps_rollup`; in KiB.
fn rss_kib(pid: u32, field: &str) -> Result<u64> {
    let file = if field.starts_with("Vm") || field.starts_with("Rss") {
        "status"
    } else {
        "smaps_rollup"
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/{file}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/{file}"))
}

fn daemon(sizes: &Sizes, rows: &mut Vec<(String, String, String)>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    certvakt_testkit::write_many(&certs, sizes.daemon_certs)?;
    let config = dir.path().join("certvakt.toml");
    let body = format!("[[watch]]\npaths = [\"{}/*.pem\"]\n", certs.display());
    std::fs::write(
        &config,
        config_toml(dir.path(), "127.0.0.1:0", &body)
            .replace("log_level = \"debug\"", "log_level = \"info\""),
    )?;
    let bins = harness::bins()?;
    let d = Daemon::start(&bins, &config, &[])?;
    let pid = d.pid().context("pid")?;
    let n = sizes.daemon_certs;
    ensure!(certvakt_count(&d)? == n, "daemon sees {n} certificates");
    let rss_idle = rss_kib(pid, "VmRSS:")?;
    let binary = std::fs::metadata(&bins.certvaktd)?.len();

    let mut human = Vec::new();
    let mut json = Vec::new();
    for _ in 0..sizes.list_runs {
        let start = Instant::now();
        let out = d.cli(&["list"])?;
        human.push(start.elapsed());
        ensure!(
            out.status.success() && out.stdout.len() > n * 40,
            "list printed the table"
        );
        let start = Instant::now();
        let out = d.cli(&["--json", "list"])?;
        json.push(start.elapsed());
        ensure!(out.status.success(), "json list");
    }
    let (_, metrics) = harness::http_get(&d.metrics_addr()?, "/metrics")?;
    ensure!(metrics.contains("certvakt_certificate_not_after_timestamp_seconds"));
    let rss_after = rss_kib(pid, "VmRSS:")?;
    let hwm = rss_kib(pid, "VmHWM:")?;
    let pss = rss_kib(pid, "Pss:")?;
    let anon = rss_kib(pid, "RssAnon:")?;
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    rows.push((
        format!("daemon RSS, {n} watched certificates, idle after start"),
        mib(rss_idle),
        "≤ 6 MiB".into(),
    ));
    rows.push((
        format!(
            "daemon RSS after {} list calls and a scrape (peak {})",
            2 * sizes.list_runs,
            mib(hwm)
        ),
        mib(rss_after),
        "≤ 6 MiB".into(),
    ));
    rows.push((
        "of which: PSS (shared libraries counted by share) / anonymous (heap, stacks)".into(),
        format!("{} / {}", mib(pss), mib(anon)),
        "-".into(),
    ));
    rows.push((
        format!(
            "`certvakt list` over {n}, table, whole process (median of {})",
            sizes.list_runs
        ),
        ms(median(human)),
        "≤ 20 ms".into(),
    ));
    rows.push((
        format!(
            "`certvakt --json list` over {n}, whole process (median of {})",
            sizes.list_runs
        ),
        ms(median(json)),
        "≤ 20 ms".into(),
    ));
    rows.push((
        "certvaktd binary size".into(),
        mib(binary / 1024),
        "-".into(),
    ));
    let status = d.stop()?;
    ensure!(status.success(), "daemon exit {status}");
    Ok(())
}

fn certvakt_count(d: &Daemon) -> Result<usize> {
    Ok(d.list()?.len())
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks).
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Duration::from_millis(ticks * 10))
}

/// A renewal cycle end to end (key, CSR, order over mutual TLS, poll, checks, stage,
/// install, hooks none) against the simulated CA; and the memory two loaded plugins cost.
fn renewal(sizes: &Sizes, rows: &mut Vec<(String, String, String)>) -> Result<()> {
    use certvakt_testkit::simca::{SimCa, SimCaConfig};

    let bins = harness::bins()?;
    let dir = tempfile::tempdir()?;
    // Without plugins first: the same daemon, for the plugin RSS difference.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare)?;
    std::fs::write(bare.join("certvakt.toml"), config_toml(&bare, "", ""))?;
    let rss_bare = {
        let d = Daemon::start(&bins, &bare.join("certvakt.toml"), &[])?;
        let rss = rss_kib(d.pid().context("pid")?, "VmRSS:")?;
        d.stop()?;
        rss
    };

    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-manual", "certvakt-plugin-simca"],
    )?;
    let sim = SimCa::start(
        "127.0.0.1:0".parse()?,
        SimCaConfig {
            issue_after: Duration::ZERO,
            validity: Duration::from_secs(3_600),
            ..SimCaConfig::default()
        },
    )?;
    let files = sim.write_files(&dir.path().join("sim"))?;
    let body = format!(
        r#"[trust]
simca = ["{ca}"]
[[certificate]]
id = "client"
cert = "{cc}"
key = "{ck}"
plugin = "manual"
[certificate.settings]
ca_name = "sim"
[[certificate]]
id = "web"
cert = "{d}/live/web.pem"
key = "{d}/live/web.key"
plugin = "simca"
[certificate.settings]
url = "{url}"
trust = "simca"
identity = "client"
sans = ["DNS:bench.example"]
"#,
        ca = files.server_ca.display(),
        cc = files.client.fullchain.display(),
        ck = files.client.key.display(),
        d = dir.path().display(),
        url = sim.url(),
    );
    let config = dir.path().join("certvakt.toml");
    std::fs::write(
        &config,
        config_toml(dir.path(), "127.0.0.1:0", &body)
            .replace("log_level = \"debug\"", "log_level = \"info\""),
    )?;
    let d = Daemon::start(&bins, &config, &[])?;
    let pid = d.pid().context("pid")?;
    let runs = |d: &Daemon| -> Result<u64> {
        let (_, m) = harness::http_get(&d.metrics_addr()?, "/metrics")?;
        Ok(m.lines()
            .find(|l| l.starts_with("certvakt_renewals_total{id=\"web\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    };
    harness::eventually(Duration::from_secs(60), "the first issue", || {
        (runs(&d).ok()? >= 1).then_some(())
    })?;
    let rss_plugins = rss_kib(pid, "VmRSS:")?;
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for n in 0..sizes.renewal_cycles {
        let (start, cpu_start) = (Instant::now(), cpu_time(pid)?);
        let out = d.cli(&["renew", "web", "--force"])?;
        ensure!(out.status.success(), "renew --force");
        let want = n as u64 + 2;
        harness::eventually(Duration::from_secs(60), "a renewal", || {
            (runs(&d).ok()? >= want).then_some(())
        })?;
        wall.push(start.elapsed());
        cpu.push(cpu_time(pid)?.saturating_sub(cpu_start));
    }
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    rows.push((
        format!("renewal cycle against the simulated CA, wall time (median of {}; includes its 1 s poll interval)", sizes.renewal_cycles),
        ms(median(wall)),
        "-".into(),
    ));
    rows.push((
        format!(
            "renewal cycle, daemon CPU time (median of {}; EC P-256 key, 10 ms clock ticks)",
            sizes.renewal_cycles
        ),
        ms(median(cpu)),
        "-".into(),
    ));
    rows.push((
        "daemon RSS without plugins / with manual + simca loaded and one renewal done".into(),
        format!("{} / {}", mib(rss_bare), mib(rss_plugins)),
        "-".into(),
    ));
    d.stop()?;
    Ok(())
}
