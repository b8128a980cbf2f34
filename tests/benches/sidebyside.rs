//! Side by side with Debian's certmonger: the same N certificate files tracked by certmonger
//! (`getcert start-tracking`, monitoring only), by a certvakt daemon that watches them, and by
//! one that manages them with the `manual` plugin; memory, list and restart times, adding N,
//! idle wake-ups; measured in one run so the machine's noise falls on all three alike.
//!
//! `scripts/bench side-by-side` runs it with `--bench` (N = 200 and 1,000; a 30 s idle window;
//! 20 reloads; a /metrics scrape over 10,000 watched) and prints one Markdown table for
//! docs/benchmarks.md, after printing each measurement to stderr as it is made, one line each:
//! `sidebyside: N=200 watched: rss_idle = 11.3 MiB`. Under `cargo test` the same code runs
//! on N = 5 (idle 1 s, 3 reloads, 50 for the scrape), certmonger included, so neither the
//! benchmark nor its certmonger driver can rot; nothing asserts a time, only counts: each
//! tool lists every certificate it was given.
//!
//! The steps, alike for each tool: start with nothing (the base for the per-certificate
//! cost); start with N and measure idle RSS, the full list, wake-ups while idle; restart and
//! time the first answer and the full list; add N more in three reloads of N/3 (certmonger:
//! `start-tracking` calls) and measure RSS at 2N. certvakt then starts afresh with N and
//! reloads between 2N and N (the first reload, N → 2N, is the "add N" time). The pool is 2N
//! certificates, not more, because certmonger's `start-tracking` gets slower with every
//! request it holds (adding 1,000 to 1,000 takes minutes).
//!
//! Switches, for quick runs while changing the daemon:
//! - `--only certvakt` (or `SIDEBYSIDE_ONLY=certvakt`) skips certmonger;
//! - `SIDEBYSIDE_N=1000` (or `200,1000`) picks the N values.
//!
//! certmonger runs for real: its own D-Bus bus (`dbus-daemon` with a generated configuration,
//! a unix socket in a temporary folder, no service activation), certmonger in session-bus mode
//! (`-s`) with every state folder pointed into that temporary folder (it never touches
//! /var/lib/certmonger), and `getcert -s` as the client. `-R` (no renewal) keeps it monitoring
//! only, as certvakt's watched certificates are; each request gets a nickname (`-I`), or
//! certmonger makes up ids from the current second and waits for the next second for each
//! one. Every process started here is killed when the benchmark ends, failed or not.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use certvakt::control::protocol::Response;
use certvakt_testkit::harness::{self, Bins, config_toml};
use certvakt_testkit::{CertKeyPair, write_many, write_many_with_keys};

/// How many sets of certificate files each run writes: N to start with, then three that add
/// up to N (N/3, N/3 and the rest), added one by one or all at once.
const SETS: usize = 4;

/// The sizes of the sets for N.
fn set_sizes(n: usize) -> [usize; SETS] {
    [n, n / 3, n / 3, n - 2 * (n / 3)]
}

/// How many certificates the first `count` sets hold.
fn total(sets: &[Vec<CertKeyPair>], count: usize) -> usize {
    sets.iter().take(count).map(Vec::len).sum()
}

struct Sizes {
    ns: Vec<usize>,
    scrape: usize,
    idle: Duration,
    churn: usize,
    list_runs: usize,
    /// How long to wait for one step (a start, a full list, N adds) before giving up.
    limit: Duration,
    /// Wait for the managing daemon's plugin processes to end after their idle minute, and
    /// measure again (a minute and more, so not under `cargo test`).
    plugin_exit: bool,
    certmonger: bool,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mut sizes = if bench {
        Sizes {
            ns: vec![200, 1_000],
            scrape: 10_000,
            idle: Duration::from_secs(30),
            churn: 20,
            list_runs: 5,
            limit: Duration::from_secs(900),
            plugin_exit: true,
            certmonger: true,
        }
    } else {
        Sizes {
            ns: vec![5],
            scrape: 50,
            idle: Duration::from_secs(1),
            churn: 3,
            list_runs: 1,
            limit: Duration::from_secs(120),
            plugin_exit: false,
            certmonger: true,
        }
    };
    let only = match args.iter().position(|a| a == "--only") {
        Some(i) => Some(args.get(i + 1).cloned().unwrap_or_default()),
        None => std::env::var("SIDEBYSIDE_ONLY").ok(),
    };
    match only.as_deref() {
        None | Some("") => {}
        Some("certvakt") => sizes.certmonger = false,
        Some(other) => bail!(
            "--only / SIDEBYSIDE_ONLY is {other:?}; the one value it takes is \"certvakt\" (skip certmonger)"
        ),
    }
    if let Ok(text) = std::env::var("SIDEBYSIDE_N") {
        sizes.ns = text
            .split(',')
            .map(|n| {
                n.trim()
                    .replace('_', "")
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| {
                        format!("SIDEBYSIDE_N is {text:?}; write one or more certificate counts above 0, comma-separated, such as 1000 or 200,1000")
                    })
            })
            .collect::<Result<_>>()?;
    }

    let bins = harness::bins()?;
    let mut runs = Vec::new();
    for &n in &sizes.ns {
        let pool = tempfile::tempdir()?;
        let sets = set_sizes(n)
            .iter()
            .enumerate()
            .map(|(s, &size)| write_many_with_keys(&pool.path().join(format!("set-{s}")), size))
            .collect::<Result<Vec<_>>>()?;
        let certmonger = if sizes.certmonger {
            Some(certmonger_run(&sizes, n, &sets)?)
        } else {
            None
        };
        let (watched, watched_memory) = certvakt_run(&sizes, &bins, Kind::Watched, n, &sets)?;
        let (managed, managed_memory) = certvakt_run(&sizes, &bins, Kind::Managed, n, &sets)?;
        runs.push(Run {
            n,
            certmonger,
            watched,
            managed,
            watched_memory,
            managed_memory,
        });
    }
    let scrape = scrape_run(&sizes, &bins)?;
    print_table(&sizes, &runs, &scrape);
    Ok(())
}

/// One N's measurements, per tool.
struct Run {
    n: usize,
    certmonger: Option<Column>,
    watched: Column,
    managed: Column,
    watched_memory: Vec<(String, u64)>,
    managed_memory: Vec<(String, u64)>,
}

/// What one tool measured at one N; RSS of the process and the processes below it.
#[derive(Default)]
struct Column {
    rss_empty: Mem,
    rss_idle: Mem,
    rss_added: Mem,
    /// Managed: RSS once the plugin processes started at start have ended after their idle
    /// minute.
    rss_quiet: Option<Mem>,
    /// RSS after the first and after the last of the reloads between N and 2N (certvakt).
    churn: Option<(Mem, Mem)>,
    list: Duration,
    restart_answer: Duration,
    restart_full: Duration,
    add_n: Duration,
    wakeups: u64,
}

fn say(n: usize, tool: &str, what: &str, value: &str) {
    eprintln!("sidebyside: N={n} {tool}: {what} = {value}");
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn dur(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Polls `check` with no pause longer than 2 ms (the times measured here go down to tens of
/// milliseconds), for at most `limit`.
fn until<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------- /proc readings

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| {
            format!(
                "no VmRSS line in /proc/{pid}/status: process {pid} has exited and is not reaped yet; \
                 if it is a certvaktd of this benchmark, something outside it stopped it \
                 (a `pkill certvaktd` elsewhere on the machine does)"
            )
        })
}

/// `Pss` of a process (from `/proc/PID/smaps_rollup`), in KiB.
fn pss_kib(pid: u32) -> Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Pss line in /proc/{pid}/smaps_rollup"))
}

/// The processes below `pid` (children, their children …), from the parent pid in each
/// `/proc/*/stat`. certvaktd runs each plugin in a process of its own, so a managed
/// certificate's memory is partly there.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the command name in parentheses: the state, then the parent pid. A zombie
        // (state Z: exited, not yet reaped) holds no memory and is left out.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let state = fields.next();
        if let Some(ppid) = fields.next().and_then(|v| v.parse::<u32>().ok()) {
            if state != Some("Z") {
                parents.push((child, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &(child, ppid) in &parents {
            if ppid == p {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

/// Resident memory of a process and of the processes below it, in KiB.
#[derive(Clone, Copy, Default)]
struct Mem {
    main: u64,
    children: u64,
    count: usize,
    /// PSS of all of them: pages they share (the plugin processes run the daemon's own
    /// binary) counted once, split between them.
    pss: u64,
}

impl Mem {
    fn total(&self) -> u64 {
        self.main + self.children
    }
}

impl std::fmt::Display for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count == 0 {
            write!(f, "{}", mib(self.main))
        } else {
            write!(
                f,
                "{} ({} + {} in {} child process{}; PSS of all {})",
                mib(self.total()),
                mib(self.main),
                mib(self.children),
                self.count,
                if self.count == 1 { "" } else { "es" },
                mib(self.pss)
            )
        }
    }
}

/// RSS of `pid` and its descendants (a child that exits meanwhile counts as nothing).
fn tree_rss(pid: u32) -> Result<Mem> {
    let mut mem = Mem {
        main: rss_kib(pid)?,
        pss: pss_kib(pid)?,
        ..Mem::default()
    };
    for child in descendants(pid) {
        if let (Ok(kib), Ok(pss)) = (rss_kib(child), pss_kib(child)) {
            mem.children += kib;
            mem.pss += pss;
            mem.count += 1;
        }
    }
    Ok(mem)
}

/// Context switches, voluntary and involuntary, of all threads of a process and of the
/// processes below it so far: each one is a time one of them was woken or preempted.
fn wakeups(pid: u32) -> Result<u64> {
    let mut total = 0;
    for p in std::iter::once(pid).chain(descendants(pid)) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            for line in status.lines() {
                if let Some(v) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    total += v.trim().parse::<u64>().context("a ctxt_switches count")?;
                }
            }
        }
    }
    Ok(total)
}

/// [`idle_wakeups`], printed as it is measured.
fn said_idle_wakeups(n: usize, tool: &str, pid: u32, idle: Duration) -> Result<u64> {
    let wakeups = idle_wakeups(pid, idle)?;
    say(
        n,
        tool,
        &format!("idle_wakeups_{}s", idle.as_secs()),
        &wakeups.to_string(),
    );
    Ok(wakeups)
}

/// Wake-ups of `pid` during `idle`, with nothing asked of it.
fn idle_wakeups(pid: u32, idle: Duration) -> Result<u64> {
    let before = wakeups(pid)?;
    std::thread::sleep(idle);
    Ok(wakeups(pid)?.saturating_sub(before))
}

/// Where a process's resident memory is, from `/proc/PID/smaps`: the executable, each shared
/// library by name, the heap, the main stack, thread stacks (anonymous read-write mappings
/// right above a guard page, as glibc lays them out), other anonymous memory (allocator
/// arenas, mmap'ed buffers), and the rest (vdso and such). KiB, largest first.
fn smaps_breakdown(pid: u32) -> Result<Vec<(String, u64)>> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut parts: BTreeMap<String, u64> = BTreeMap::new();
    // (start, end, perms, path) of the mapping before, for the guard page test.
    let mut previous: Option<(u64, String, String)> = None;
    let mut current: Option<String> = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        }) {
            let perms = fields.next().unwrap_or_default().to_string();
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            let after_guard = matches!(&previous, Some((prev_end, prev_perms, prev_path))
                if *prev_end == start && prev_perms == "---p" && prev_path.is_empty());
            let part = if Path::new(&path) == exe {
                "binary (certvaktd text and data)".to_string()
            } else if path.contains(".so") {
                let name = Path::new(&path)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or(path.clone());
                format!("library {name}")
            } else if path == "[heap]" {
                "heap ([heap], brk)".into()
            } else if path == "[stack]" {
                "main thread stack".into()
            } else if path.is_empty() && perms == "rw-p" && after_guard {
                "thread stacks".into()
            } else if path.is_empty() {
                "other anonymous (allocator arenas, mmap'ed buffers)".into()
            } else {
                format!("other ({path})")
            };
            previous = Some((end, perms, path));
            current = Some(part);
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if let Some(part) = &current {
                *parts.entry(part.clone()).or_default() += kib;
            }
        }
    }
    let mut parts: Vec<(String, u64)> = parts.into_iter().filter(|(_, k)| *k > 0).collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(parts)
}

// ---------------------------------------------------------------- certvakt

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Watched,
    Managed,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Watched => "watched",
            Kind::Managed => "managed",
        }
    }
}

/// A daemon this benchmark started (certvaktd, certmonger): its process and its log, which
/// says why it stopped if it did; killed when dropped.
struct Started {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Started {
    fn none(name: String, log: PathBuf) -> Started {
        Started {
            name,
            log,
            child: None,
        }
    }

    fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .with_context(|| format!("{} is not running", self.name))
    }

    /// Fails when the daemon has exited, with its log.
    fn alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited with {status}; its log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// SIGTERM, and waits for the exit; the exit status is returned.
    fn stop(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let pid = self.pid()?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM {pid} failed");
        match self.child.take() {
            Some(mut child) => Ok(Some(child.wait()?)),
            None => Ok(None),
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `certvaktd` started by this benchmark; killed when dropped.
struct Certvaktd {
    bins: Bins,
    dir: PathBuf,
    process: Started,
}

impl Certvaktd {
    /// Starts the daemon on `DIR/certvakt.toml` and returns at once, without waiting for it.
    fn spawn(bins: &Bins, dir: &Path) -> Result<Certvaktd> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("certvaktd.log"))?;
        let child = Command::new(&bins.certvaktd)
            .arg("--config")
            .arg(dir.join("certvakt.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bins.certvaktd.display()))?;
        let mut process = Started::none(
            format!("certvaktd in {}", dir.display()),
            dir.join("certvaktd.log"),
        );
        process.child = Some(child);
        Ok(Certvaktd {
            bins: bins.clone(),
            dir: dir.to_path_buf(),
            process,
        })
    }

    fn pid(&self) -> Result<u32> {
        self.process.pid()
    }

    fn cli(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bins.certvakt)
            .arg("--socket")
            .arg(self.dir.join("control.sock"))
            .args(args)
            .env_remove("CERTVAKT_SOCKET")
            .output()
            .with_context(|| format!("running certvakt {args:?}"))
    }

    fn alive(&mut self) -> Result<()> {
        self.process.alive()
    }

    /// Whether `status` gets an answer: exit codes 0, 1 and 2 are health verdicts; anything
    /// else (3 is "cannot connect") is not an answer yet.
    fn answers(&mut self) -> Result<bool> {
        self.alive()?;
        Ok(matches!(
            self.cli(&["--json", "status"])?.status.code(),
            Some(0..=2)
        ))
    }

    /// How many certificates `list` shows, or `None` when it gets no list (yet).
    fn listed(&mut self) -> Result<Option<usize>> {
        self.alive()?;
        let out = self.cli(&["--json", "list"])?;
        if !out.status.success() {
            return Ok(None);
        }
        match serde_json::from_slice::<Response>(&out.stdout) {
            Ok(Response::List { items, .. }) => Ok(Some(items.len())),
            _ => Ok(None),
        }
    }

    fn wait_answer(&mut self, limit: Duration) -> Result<()> {
        until(limit, "certvaktd to answer `status`", || {
            Ok(self.answers()?.then_some(()))
        })
    }

    fn wait_listed(&mut self, limit: Duration, want: usize) -> Result<()> {
        until(limit, &format!("`certvakt list` to show {want}"), || {
            Ok((self.listed()? == Some(want)).then_some(()))
        })
    }

    /// SIGTERM, and waits for the exit, which must be clean.
    fn stop(&mut self) -> Result<()> {
        if let Some(status) = self.process.stop()? {
            ensure!(
                status.success(),
                "certvaktd in {} exited with {status} on SIGTERM",
                self.dir.display()
            );
        }
        Ok(())
    }
}

/// Writes `DIR/certvakt.toml` over the first `count` sets: one `[[watch]]` per set, or one
/// `[[certificate]]` with the `manual` plugin per certificate.
fn write_config(dir: &Path, kind: Kind, sets: &[Vec<CertKeyPair>], count: usize) -> Result<()> {
    let mut body = String::new();
    for (s, set) in sets.iter().take(count).enumerate() {
        match kind {
            Kind::Watched => {
                let folder = set
                    .first()
                    .and_then(|p| p.cert.parent())
                    .context("a set has files")?;
                body.push_str(&format!(
                    "[[watch]]\npaths = [{:?}]\n\n",
                    format!("{}/*.pem", folder.display())
                ));
            }
            Kind::Managed => {
                for (i, pair) in set.iter().enumerate() {
                    // A certificate that exists already needs only `ca_name`
                    // (plugins/manual/README.md); none is due, so the plugin stays idle.
                    body.push_str(&format!(
                        "[[certificate]]\nid = \"s{s}-{i:05}\"\ncert = {:?}\nkey = {:?}\nplugin = \"manual\"\n[certificate.settings]\nca_name = \"Bench CA\"\n\n",
                        pair.cert.display().to_string(),
                        pair.key.display().to_string(),
                    ));
                }
            }
        }
    }
    // A notification route, as a site would have one: nothing is due, so nothing is sent,
    // and idleness is measured with the notifier in place.
    let secret = dir.join("webhook.key");
    std::fs::write(&secret, "bench-webhook-secret\n")?;
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    body.push_str(&format!(
        "[[notify]]\nname = \"ops\"\nchannel = \"webhook\"\nurl = \"http://127.0.0.1:9/certvakt\"\nsecret_file = {:?}\n\n",
        secret.display().to_string()
    ));
    let text = config_toml(dir, "127.0.0.1:0", &body)
        .replace("log_level = \"debug\"", "log_level = \"info\"");
    std::fs::write(dir.join("certvakt.toml"), text)?;
    Ok(())
}

fn reload(d: &Certvaktd) -> Result<()> {
    let out = d.cli(&["reload"])?;
    ensure!(
        out.status.success(),
        "certvakt reload exited {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Lets a daemon settle after a start or reload before its RSS is read.
const SETTLE: Duration = Duration::from_secs(1);

/// One kind of certvakt daemon over the first set, then adding the others; returns the
/// column and the memory breakdown at idle after start.
fn certvakt_run(
    sizes: &Sizes,
    bins: &Bins,
    kind: Kind,
    n: usize,
    sets: &[Vec<CertKeyPair>],
) -> Result<(Column, Vec<(String, u64)>)> {
    let tool = kind.name();
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    if kind == Kind::Managed {
        harness::install_plugins(bins, &dir.join("plugins"), &["certvakt-plugin-manual"])?;
    }
    let mut col = Column::default();

    // Nothing configured (the manual plugin loaded for `managed`): the base the
    // per-certificate cost is counted from.
    write_config(dir, kind, sets, 0)?;
    let mut d = Certvaktd::spawn(bins, dir)?;
    d.wait_answer(sizes.limit)?;
    std::thread::sleep(SETTLE);
    col.rss_empty = tree_rss(d.pid()?)?;
    say(n, tool, "rss_empty", &col.rss_empty.to_string());
    d.stop()?;

    write_config(dir, kind, sets, 1)?;
    let mut d = Certvaktd::spawn(bins, dir)?;
    d.wait_listed(sizes.limit, n)?;
    std::thread::sleep(SETTLE);
    let pid = d.pid()?;
    col.rss_idle = tree_rss(pid)?;
    say(n, tool, "rss_idle", &col.rss_idle.to_string());
    let mut memory = smaps_breakdown(pid)?;
    if col.rss_idle.count > 0 {
        memory.push((
            format!(
                "the {} plugin process{} (`certvaktd plugin-host`), all of their RSS",
                col.rss_idle.count,
                if col.rss_idle.count == 1 { "" } else { "es" }
            ),
            col.rss_idle.children,
        ));
    }

    let mut lists = Vec::new();
    for _ in 0..sizes.list_runs {
        let start = Instant::now();
        let out = d.cli(&["list"])?;
        lists.push(start.elapsed());
        let rows = out.stdout.iter().filter(|b| **b == b'\n').count();
        ensure!(
            out.status.success() && rows >= n,
            "`certvakt list` ({tool}) exited {:?} with {rows} lines for {n} certificates",
            out.status.code()
        );
    }
    col.list = median(lists);
    say(n, tool, "list", &dur(col.list));

    col.wakeups = said_idle_wakeups(n, tool, pid, sizes.idle)?;

    if kind == Kind::Managed && sizes.plugin_exit {
        until(
            Duration::from_secs(120),
            "the idle plugin processes to exit",
            || {
                // A daemon that died leaves no descendants either: say so, with its log.
                d.alive()?;
                Ok(descendants(pid).is_empty().then_some(()))
            },
        )?;
        std::thread::sleep(SETTLE);
        d.alive()?;
        let quiet = tree_rss(pid)?;
        say(
            n,
            tool,
            "rss_after_plugin_processes_exit",
            &quiet.to_string(),
        );
        col.rss_quiet = Some(quiet);
    }

    d.stop()?;
    let start = Instant::now();
    let mut d = Certvaktd::spawn(bins, dir)?;
    d.wait_answer(sizes.limit)?;
    col.restart_answer = start.elapsed();
    d.wait_listed(sizes.limit, n)?;
    col.restart_full = start.elapsed();
    say(n, tool, "restart_first_answer", &dur(col.restart_answer));
    say(n, tool, "restart_full_list", &dur(col.restart_full));

    for count in 2..=SETS {
        write_config(dir, kind, sets, count)?;
        reload(&d)?;
        d.wait_listed(sizes.limit, total(sets, count))?;
    }
    std::thread::sleep(SETTLE);
    col.rss_added = tree_rss(d.pid()?)?;
    say(n, tool, "rss_after_3_reloads", &col.rss_added.to_string());
    d.stop()?;

    // A fresh daemon over N, then reloads alternating 2N and N; the first one is "add N".
    write_config(dir, kind, sets, 1)?;
    let mut d = Certvaktd::spawn(bins, dir)?;
    d.wait_listed(sizes.limit, n)?;
    let mut first = Mem::default();
    let mut last = Mem::default();
    for round in 1..=sizes.churn {
        let count = if round % 2 == 1 { SETS } else { 1 };
        write_config(dir, kind, sets, count)?;
        let start = Instant::now();
        reload(&d)?;
        d.wait_listed(sizes.limit, total(sets, count))?;
        if round == 1 {
            col.add_n = start.elapsed();
            say(n, tool, "add_n", &dur(col.add_n));
        }
        last = tree_rss(d.pid()?)?;
        if round == 1 {
            first = last;
        }
        say(
            n,
            tool,
            &format!("rss_after_reload_{round}_of_{}", sizes.churn),
            &last.to_string(),
        );
    }
    col.churn = Some((first, last));
    d.stop()?;
    Ok((col, memory))
}

/// The /metrics scrape over many watched certificates: time and RSS before and after.
fn scrape_run(sizes: &Sizes, bins: &Bins) -> Result<(Duration, u64, u64)> {
    let n = sizes.scrape;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    write_many(&dir.join("set-0"), n)?;
    let body = format!(
        "[[watch]]\npaths = [{:?}]\n",
        format!("{}/set-0/*.pem", dir.display())
    );
    std::fs::write(
        dir.join("certvakt.toml"),
        config_toml(dir, "127.0.0.1:0", &body)
            .replace("log_level = \"debug\"", "log_level = \"info\""),
    )?;
    let mut d = Certvaktd::spawn(bins, dir)?;
    d.wait_listed(sizes.limit, n)?;
    std::thread::sleep(SETTLE);
    let pid = d.pid()?;
    let before = rss_kib(pid)?;
    let out = d.cli(&["--json", "status"])?;
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("`certvakt --json status` printed no JSON")?;
    let addr = status["metrics_listen"]
        .as_str()
        .context("status has no metrics_listen")?
        .to_string();
    let start = Instant::now();
    let (code, metrics) = harness::http_get(&addr, "/metrics")?;
    let took = start.elapsed();
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("certvakt_certificate_not_after_timestamp_seconds{"))
        .count();
    ensure!(
        code == 200 && series == n,
        "/metrics answered {code} with {series} not-after series for {n} watched certificates"
    );
    let after = rss_kib(pid)?;
    say(n, "watched", "scrape", &dur(took));
    say(n, "watched", "rss_before_scrape", &mib(before));
    say(n, "watched", "rss_after_scrape", &mib(after));
    d.stop()?;
    Ok((took, before, after))
}

// ---------------------------------------------------------------- certmonger

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn missing(program: &str, package: &str) -> String {
    format!(
        "{program} is not installed: run scripts/install-test-deps (Debian package `{package}`), or skip certmonger with --only certvakt"
    )
}

/// A private D-Bus bus on a unix socket in `dir`; killed when dropped.
struct Bus {
    child: Child,
    address: String,
}

impl Bus {
    fn start(dir: &Path) -> Result<Bus> {
        let program =
            which("dbus-daemon").with_context(|| missing("dbus-daemon", "dbus-daemon"))?;
        // A session-type bus: anyone of this uid may own names and talk to anyone, and no
        // <servicedir>, so nothing is started on demand (a `getcert` before certmonger is up
        // gets an error, not an activated certmonger).
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.display()
            ),
        )?;
        let mut child = Command::new(program)
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("dbus-daemon.log"))?)
            .spawn()
            .context("starting dbus-daemon")?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut line)?;
        }
        let address = line.trim().to_string();
        if !address.starts_with("unix:") {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "dbus-daemon printed no bus address (got {address:?}); its log:\n{}",
                std::fs::read_to_string(dir.join("dbus-daemon.log")).unwrap_or_default()
            );
        }
        Ok(Bus { child, address })
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// certmonger on the private bus, its state in `dir`; killed when dropped.
struct Certmonger {
    program: PathBuf,
    getcert: PathBuf,
    dir: PathBuf,
    bus: String,
    process: Started,
}

impl Certmonger {
    fn new(dir: &Path, bus: &Bus) -> Result<Certmonger> {
        let program = which("certmonger").with_context(|| missing("certmonger", "certmonger"))?;
        let getcert = which("getcert").with_context(|| missing("getcert", "certmonger"))?;
        for sub in ["requests", "cas", "local", "tmp", "config", "home"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(Certmonger {
            program,
            getcert,
            dir: dir.to_path_buf(),
            bus: bus.address.clone(),
            process: Started::none("certmonger".into(), dir.join("certmonger.log")),
        })
    }

    /// Everything certmonger and getcert would otherwise read or write under /var/lib,
    /// /etc and $HOME, pointed into the temporary folder.
    fn env(&self, cmd: &mut Command) {
        let d = &self.dir;
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("CERTMONGER_REQUESTS_DIR", d.join("requests"))
            .env("CERTMONGER_CAS_DIR", d.join("cas"))
            .env("CERTMONGER_LOCAL_CA_DIR", d.join("local"))
            .env("CERTMONGER_TMPDIR", d.join("tmp"))
            .env("CERTMONGER_CONFIG_DIR", d.join("config"))
            .env("CERTMONGER_SYSTEM_LOCK_FILE", d.join("lock"))
            .env("HOME", d.join("home"))
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    }

    /// Starts certmonger in the foreground (`-n`, so it stays our child) on the session bus
    /// (`-s`, which is the private bus); returns at once.
    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("certmonger.log"))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(["-s", "-n"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.env(&mut cmd);
        self.process.child = Some(cmd.spawn().context("starting certmonger")?);
        Ok(())
    }

    fn pid(&self) -> Result<u32> {
        self.process.pid()
    }

    fn getcert(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(&self.getcert);
        cmd.arg(args.first().copied().unwrap_or_default())
            .arg("-s")
            .args(args.iter().skip(1))
            .stdin(Stdio::null());
        self.env(&mut cmd);
        cmd.output()
            .with_context(|| format!("running getcert {args:?}"))
    }

    fn alive(&mut self) -> Result<()> {
        self.process.alive()
    }

    /// How many requests `getcert list` shows, or `None` when certmonger does not answer.
    fn listed(&mut self) -> Result<Option<usize>> {
        self.alive()?;
        let out = self.getcert(&["list"])?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(Some(
            text.lines()
                .filter(|l| l.starts_with("Request ID '"))
                .count(),
        ))
    }

    fn wait_listed(&mut self, limit: Duration, want: usize) -> Result<()> {
        until(limit, &format!("`getcert list` to show {want}"), || {
            Ok((self.listed()? == Some(want)).then_some(()))
        })
    }

    /// `getcert start-tracking` for each pair of a set: monitoring only (`-R`), a nickname
    /// per request (`-I`).
    fn track(&self, set: usize, pairs: &[CertKeyPair]) -> Result<()> {
        for (i, pair) in pairs.iter().enumerate() {
            let id = format!("s{set}-{i:05}");
            let cert = pair.cert.display().to_string();
            let key = pair.key.display().to_string();
            let out =
                self.getcert(&["start-tracking", "-R", "-I", &id, "-f", &cert, "-k", &key])?;
            ensure!(
                out.status.success(),
                "getcert start-tracking for {cert} exited {:?}: {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.process.stop().map(drop)
    }
}

/// certmonger over the same sets: empty, N tracked, restarted with N, then N more added in
/// three steps.
fn certmonger_run(sizes: &Sizes, n: usize, sets: &[Vec<CertKeyPair>]) -> Result<Column> {
    let tool = "certmonger";
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let bus = Bus::start(dir)?;
    let mut cm = Certmonger::new(dir, &bus)?;
    let mut col = Column::default();

    cm.spawn()?;
    cm.wait_listed(sizes.limit, 0)?;
    std::thread::sleep(SETTLE);
    col.rss_empty = tree_rss(cm.pid()?)?;
    say(n, tool, "rss_empty", &col.rss_empty.to_string());
    let start = Instant::now();
    cm.track(0, &sets[0])?;
    cm.wait_listed(sizes.limit, n)?;
    say(n, tool, "first_n_tracked", &dur(start.elapsed()));

    // "Idle after start" as for certvakt: a start with N already tracked.
    cm.stop()?;
    let start = Instant::now();
    cm.spawn()?;
    let answered = until(sizes.limit, "certmonger to answer `getcert list`", || {
        Ok(cm.listed()?.map(|_| start.elapsed()))
    })?;
    cm.wait_listed(sizes.limit, n)?;
    col.restart_answer = answered;
    col.restart_full = start.elapsed();
    say(n, tool, "restart_first_answer", &dur(col.restart_answer));
    say(n, tool, "restart_full_list", &dur(col.restart_full));
    std::thread::sleep(SETTLE);
    let pid = cm.pid()?;
    col.rss_idle = tree_rss(pid)?;
    say(n, tool, "rss_idle", &col.rss_idle.to_string());
    say(n, tool, "dbus_daemon_rss", &mib(rss_kib(bus.child.id())?));

    let mut lists = Vec::new();
    for _ in 0..sizes.list_runs {
        let start = Instant::now();
        let listed = cm.listed()?;
        lists.push(start.elapsed());
        ensure!(
            listed == Some(n),
            "`getcert list` showed {listed:?} of {n} requests"
        );
    }
    col.list = median(lists);
    say(n, tool, "list", &dur(col.list));

    col.wakeups = said_idle_wakeups(n, tool, pid, sizes.idle)?;

    // Adding N in three steps is adding N: certmonger has no reload, only one call each.
    let start = Instant::now();
    for (s, set) in sets.iter().enumerate().skip(1) {
        cm.track(s, set)?;
        cm.wait_listed(sizes.limit, total(sets, s + 1))?;
    }
    col.add_n = start.elapsed();
    say(n, tool, "add_n", &dur(col.add_n));
    std::thread::sleep(SETTLE);
    col.rss_added = tree_rss(pid)?;
    say(n, tool, "rss_after_3_reloads", &col.rss_added.to_string());
    cm.stop()?;
    drop(bus);
    Ok(col)
}

// ---------------------------------------------------------------- the table

/// certvakt's figure over certmonger's: "0.67×" from a tenth up, "1/330" below, where two
/// decimals would round to nothing.
fn ratio(certvakt: f64, certmonger: Option<f64>) -> String {
    match certmonger {
        Some(c) if c > 0.0 && certvakt > 0.0 => {
            let r = certvakt / c;
            if r >= 0.1 {
                format!(" ({r:.2}×)")
            } else {
                format!(" (1/{:.0})", 1.0 / r)
            }
        }
        _ => String::new(),
    }
}

/// Per certificate, from the main process alone: certvaktd's plugin processes are a pool of
/// at most eight whatever N is, so counting them would charge a fixed cost to N.
fn per_cert(col: &Column, n: usize) -> String {
    let bytes = (col.rss_idle.main as f64 - col.rss_empty.main as f64) * 1024.0 / n as f64;
    format!("{bytes:.0} B")
}

fn print_table(sizes: &Sizes, runs: &[Run], scrape: &(Duration, u64, u64)) {
    let skipped = "skipped (--only certvakt)";
    println!(
        "\n| measure | N | certmonger | certvakt, watched | certvakt, managed (`manual`) |\n|---|---|---|---|---|"
    );
    for run in runs {
        let n = run.n;
        let cm = run.certmonger.as_ref();
        let (w, m) = (&run.watched, &run.managed);
        let rss_row = |what: &str, get: &dyn Fn(&Column) -> Mem| {
            let base = cm.map(|c| get(c).total() as f64);
            println!(
                "| {what} | {n} | {} | {}{} | {}{} |",
                cm.map(|c| get(c).to_string()).unwrap_or(skipped.into()),
                get(w),
                ratio(get(w).total() as f64, base),
                get(m),
                ratio(get(m).total() as f64, base),
            );
        };
        let time_row = |what: &str, get: &dyn Fn(&Column) -> Duration| {
            let base = cm.map(|c| get(c).as_secs_f64());
            println!(
                "| {what} | {n} | {} | {}{} | {}{} |",
                cm.map(|c| dur(get(c))).unwrap_or(skipped.into()),
                dur(get(w)),
                ratio(get(w).as_secs_f64(), base),
                dur(get(m)),
                ratio(get(m).as_secs_f64(), base),
            );
        };
        rss_row("RSS, idle after start", &|c| c.rss_idle);
        if let Some(quiet) = m.rss_quiet {
            println!(
                "| RSS once the idle plugin processes have exited (a minute without calls) | {n} | – | – | {quiet}{} |",
                ratio(quiet.total() as f64, cm.map(|c| c.rss_idle.total() as f64))
            );
        }
        rss_row("RSS with nothing tracked", &|c| c.rss_empty);
        println!(
            "| RSS per certificate, (RSS with N − RSS with 0) / N, main process | {n} | {} | {} | {} |",
            cm.map(|c| per_cert(c, n)).unwrap_or(skipped.into()),
            per_cert(w, n),
            per_cert(m, n)
        );
        rss_row(
            "RSS after three reloads that add N/3 each (2N; certmonger: N start-tracking calls)",
            &|c| c.rss_added,
        );
        let churn = |c: &Column| {
            c.churn
                .map(|(first, last)| format!("{first} → {last}"))
                .unwrap_or_default()
        };
        println!(
            "| RSS after {} reloads alternating 2N and N, first → last | {n} | – | {} | {} |",
            sizes.churn,
            churn(w),
            churn(m)
        );
        time_row(
            &format!(
                "full list (`getcert list` / `certvakt list`, whole process, median of {})",
                sizes.list_runs
            ),
            &|c| c.list,
        );
        time_row(
            "restart → first answer (`getcert list` / `certvakt status`)",
            &|c| c.restart_answer,
        );
        time_row("restart → full list", &|c| c.restart_full);
        time_row(
            "add N (one reload N → 2N, until listed; certmonger: N start-tracking calls, until listed)",
            &|c| c.add_n,
        );
        println!(
            "| idle {} s: wake-ups (context switches, all threads) | {n} | {} | {} | {} |",
            sizes.idle.as_secs(),
            cm.map(|c| c.wakeups.to_string()).unwrap_or(skipped.into()),
            w.wakeups,
            m.wakeups
        );
    }
    let (took, before, after) = scrape;
    println!(
        "| /metrics scrape; RSS before → after | {} | – | {}; {} → {} | – |",
        sizes.scrape,
        dur(*took),
        mib(*before),
        mib(*after)
    );

    if let Some(run) = runs.last() {
        for (kind, parts) in [
            ("watched", &run.watched_memory),
            ("managed", &run.managed_memory),
        ] {
            let total: u64 = parts.iter().map(|(_, k)| k).sum();
            println!(
                "\nWhere the memory goes: certvaktd, {} {kind}, idle after start (/proc/PID/smaps, Rss; {} in all)\n",
                run.n,
                mib(total)
            );
            println!("| part | RSS |\n|---|---|");
            for (part, kib) in parts {
                println!("| {part} | {kib} KiB |");
            }
        }
    }
}
