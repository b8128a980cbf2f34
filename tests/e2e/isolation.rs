//! Plugins in processes of their own: a plugin that panics, aborts, segfaults, loops, eats
//! memory, prints, reaches for a socket or a file, or exits, and a plugin file cut short by a
//! full disk. For each, the daemon stays up, answers, reports the right reason, and the
//! renewal goes on once the plugin behaves.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually};

use crate::common::{bins, stderr};

/// What each misbehaviour must be reported as, in the certificate's last error, and the
/// `reason` label it is counted under (`None`: not a crash of the process).
const ACTS: [(&str, &str, Option<&str>); 10] = [
    ("panic", "asked to panic", None),
    ("abort", "SIGABRT", Some("abort")),
    ("segfault", "SIGSEGV", Some("segfault")),
    ("loop", "its process was stopped", Some("deadline")),
    ("allocate", "SIGABRT", Some("abort")),
    ("socket", "SIGSYS", Some("forbidden_syscall")),
    ("write_file", "SIGSYS", Some("forbidden_syscall")),
    // Landlock: the process reads its own library and the system's shared libraries only.
    ("read_file", "read /etc/passwd: Permission denied", None),
    ("exit", "exited with status 0", Some("exit")),
    ("stdout", "", None),
];

/// The binaries, and a folder whose `plugins/` holds the hostile plugin.
fn with_hostile_plugin() -> Result<(harness::Bins, tempfile::TempDir)> {
    let bins = bins()?;
    let dir = tempfile::tempdir()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-hostile"],
    )?;
    Ok((bins, dir))
}

fn hostile_config(dir: &Path, act: impl Fn(&str) -> String) -> String {
    let mut body = String::new();
    for (name, _, _) in ACTS {
        body.push_str(&format!(
            "[[certificate]]\nid = \"{id}\"\ncert = \"{dir}/live/{id}.pem\"\nkey = \"{dir}/live/{id}.key\"\nplugin = \"hostile\"\n[certificate.settings]\nact = \"{act}\"\n\n",
            id = name.replace('_', "-"),
            dir = dir.display(),
            act = act(name),
        ));
    }
    config_toml(dir, "127.0.0.1:0", &body)
}

#[test]
fn a_misbehaving_plugin_never_takes_the_daemon_down_and_is_reported() -> Result<()> {
    let bins = bins()?;
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    harness::install_plugins(&bins, &plugins, &["certvakt-plugin-hostile"])?;
    // What a full disk during a package upgrade leaves behind: the first 5,000 bytes.
    let whole = std::fs::read(harness::plugin_library(&bins, "certvakt-plugin-hostile")?)?;
    let cut = plugins.join("damaged.so");
    std::fs::write(&cut, &whole[..5_000])?;
    std::fs::set_permissions(&cut, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let config = dir.path().join("certvakt.toml");
    std::fs::write(
        &config,
        hostile_config(dir.path(), |act: &str| act.to_owned()),
    )?;
    let daemon = Daemon::start(
        &bins,
        &config,
        &[(certvakt::lifecycle::DEADLINE_ENV, "2000")],
    )?;

    // The damaged file is refused with the reason; the good one is loaded.
    let (_, report) = daemon.plugins()?;
    ensure!(
        report
            .refused
            .iter()
            .any(|r| r.file.ends_with("damaged.so") && r.reason.contains("SIGBUS")),
        "{report:#?}"
    );
    ensure!(
        report.loaded.iter().any(|p| p.name == "hostile"),
        "{report:#?}"
    );

    for (act, expected, _) in ACTS {
        let id = act.replace('_', "-");
        let seen = eventually(
            Duration::from_secs(30),
            &format!("{act} to be reported"),
            || {
                let r = daemon.renewal(&id).ok()??;
                if expected.is_empty() {
                    // It printed and answered: the run went on to its order task.
                    return (r.open_tasks.len() == 1).then_some(());
                }
                r.last_error?.contains(expected).then_some(())
            },
        );
        if let Err(e) = seen {
            anyhow::bail!("{e}\n{}", daemon.log_text());
        }
    }
    // Through all of it the daemon answered and runs: the same process as at the start.
    let out = daemon.cli(&["status"])?;
    ensure!(out.status.code().is_some(), "{}", stderr(&out));
    let (_, metrics) = harness::http_get(&daemon.metrics_addr()?, "/metrics")?;
    for (_, _, reason) in ACTS {
        if let Some(reason) = reason {
            let series =
                format!("certvakt_plugin_crashes_total{{plugin=\"hostile\",reason=\"{reason}\"}}");
            // The series exists at 0 from the start: it must have been counted.
            ensure!(
                metrics.contains(&series) && !metrics.contains(&format!("{series} 0\n")),
                "{series} missing or 0:\n{metrics}"
            );
        }
    }
    ensure!(
        !Path::new("/tmp/certvakt-hostile-plugin-was-here").exists(),
        "the plugin wrote a file"
    );

    // The plugin behaves again (a fixed version, here its settings): every renewal goes on.
    std::fs::write(&config, hostile_config(dir.path(), |_| "none".into()))?;
    let out = daemon.cli(&["reload"])?;
    ensure!(out.status.success(), "reload: {}", stderr(&out));
    let all = eventually(
        Duration::from_secs(30),
        "every certificate's order task",
        || {
            let open = daemon.tasks().ok()?;
            (open.len() == ACTS.len()).then_some(())
        },
    );
    if let Err(e) = all {
        anyhow::bail!("{e}\n{}", daemon.log_text());
    }
    let pid = daemon.pid().context("daemon pid")?;
    ensure!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon is still the one started"
    );
    Ok(())
}

#[test]
fn text_from_a_plugin_reaches_logs_and_terminals_without_control_characters() -> Result<()> {
    let (bins, dir) = with_hostile_plugin()?;
    let body = format!(
        "[[certificate]]\nid = \"forger\"\ncert = \"{dir}/live/forger.pem\"\nplugin = \"hostile\"\n[certificate.settings]\nact = \"none\"\ntitle = \"Order it\\n<0>forged emergency line \\u001b[31mred\\u001b[0m\"\n",
        dir = dir.path().display()
    );
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:0", &body))?;
    let daemon = Daemon::start(&bins, &config, &[])?;
    let task = eventually(Duration::from_secs(20), "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })?;
    let title = task.title.as_str();
    ensure!(
        !title.contains('\n') && !title.contains('\u{1b}') && title.contains("forged"),
        "{title:?}"
    );
    let out = daemon.cli(&["tasks"])?;
    ensure!(
        !out.stdout.contains(&0x1b),
        "an escape reached the terminal"
    );
    let out = daemon.cli(&["task", "show", &task.id])?;
    ensure!(
        !out.stdout.contains(&0x1b),
        "an escape reached the terminal"
    );
    let log = daemon.log_text();
    ensure!(
        !log.lines().any(|l| l.starts_with("<0>forged")),
        "a forged log line:\n{log}"
    );
    ensure!(log.contains("forged emergency line"), "{log}");
    Ok(())
}

/// The daemon's plugin processes: pids whose parent is `daemon`, with their state letter.
fn plugin_processes(daemon: u32) -> Vec<(u32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: the name may hold spaces, so split after ")".
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid: u32 = rest.next()?.parse().ok()?;
            (ppid == daemon).then_some((pid, state))
        })
        .collect()
}

#[test]
fn a_plugin_process_that_ends_while_idle_is_reaped_at_once() -> Result<()> {
    let (bins, dir) = with_hostile_plugin()?;
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, hostile_config(dir.path(), |_| "none".into()))?;
    let daemon = Daemon::start(&bins, &config, &[])?;
    let pid = daemon.pid().context("daemon pid")?;
    // The settings checks and first steps leave idle plugin processes behind.
    let idle = eventually(Duration::from_secs(30), "idle plugin processes", || {
        let open = daemon.tasks().ok()?;
        let children = plugin_processes(pid);
        (open.len() == ACTS.len() && !children.is_empty()).then_some(children)
    })?;
    // One ends while idle, as at the end of its idle minute (here killed): the daemon reaps
    // it when it ends, not at the plugin's next call, so no zombie is left.
    let (victim, _) = idle[0];
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()?;
    ensure!(killed.success(), "kill -KILL {victim}: {killed}");
    let reaped = eventually(Duration::from_secs(10), "the ended process reaped", || {
        (!plugin_processes(pid).iter().any(|&(p, _)| p == victim)).then_some(())
    });
    if reaped.is_err() {
        anyhow::bail!(
            "process {victim} is still there: {:?}\n{}",
            plugin_processes(pid),
            daemon.log_text()
        );
    }
    // The others are still idle and serve the next calls.
    let out = daemon.cli(&["status"])?;
    ensure!(out.status.code().is_some(), "{}", stderr(&out));
    Ok(())
}
