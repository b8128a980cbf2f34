//! `certvakt completion`: the shell completion scripts the packages install, made by the real
//! binary with no daemon running and no configuration file.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use clap::CommandFactory;

use certvakt_testkit::harness::{self, eventually};

use crate::common::{WAIT, bins, stderr, stdout};

/// The commands the packaged scripts must offer; the CLI's own list is added to it.
const COMMANDS: &[&str] = &[
    "status",
    "list",
    "show",
    "reload",
    "check-config",
    "renew",
    "rollback",
    "tasks",
    "task",
    "import",
    "plugins",
    "completion",
];

/// Every command to look for: [`COMMANDS`] and whatever else the CLI defines.
fn commands() -> Vec<String> {
    let mut all: Vec<String> = COMMANDS.iter().map(|c| (*c).to_owned()).collect();
    for command in certvakt::cli::Args::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
    {
        let name = command.get_name().to_owned();
        if !all.contains(&name) {
            all.push(name);
        }
    }
    all
}

/// `certvakt completion SHELL`, pointed at a socket and a configuration that do not exist.
fn script(shell: &str) -> Result<String> {
    let out = Command::new(bins()?.certvakt)
        .args([
            "--socket",
            "/nonexistent/certvakt/control.sock",
            "--config",
            "/nonexistent/certvakt/certvakt.toml",
            "completion",
            shell,
        ])
        .env_remove(certvakt::cli::SOCKET_ENV)
        .output()?;
    ensure!(
        out.status.code() == Some(0),
        "certvakt completion {shell} exited {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    ensure!(
        out.stderr.is_empty(),
        "certvakt completion {shell} wrote to stderr: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    ensure!(
        !text.trim().is_empty(),
        "certvakt completion {shell} is empty"
    );
    Ok(text)
}

/// Whether `word` occurs in `text` on its own, not as part of a longer name (`task` inside
/// `tasks` does not count).
fn contains_word(text: &str, word: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(part) && !after.is_some_and(part)
    })
}

/// Runs `program args... file`; `Ok(None)` when the program is not installed.
fn syntax_check(program: &str, args: &[&str], file: &Path) -> Result<Option<String>> {
    match Command::new(program).args(args).arg(file).output() {
        Ok(out) => {
            ensure!(
                out.status.success() && out.stderr.is_empty(),
                "{program} {} rejects the script (exit {:?}): {}",
                args.join(" "),
                out.status.code(),
                stderr(&out)
            );
            Ok(Some(stdout(&out)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("running {program}")),
    }
}

#[test]
fn every_script_names_every_command_and_option() -> Result<()> {
    let commands = commands();
    for shell in ["bash", "zsh", "fish"] {
        let text = script(shell)?;
        for command in &commands {
            assert!(
                contains_word(&text, command),
                "the {shell} script lacks the command {command}"
            );
        }
        assert!(
            contains_word(&text, "done"),
            "the {shell} script lacks done"
        );
        for option in ["socket", "config", "json", "force", "password-file"] {
            // fish names a long option `-l NAME`, the others `--NAME`.
            let written = if shell == "fish" {
                format!("-l {option}")
            } else {
                format!("--{option}")
            };
            assert!(
                contains_word(&text, &written),
                "the {shell} script lacks {written}"
            );
        }
    }
    Ok(())
}

#[test]
fn the_scripts_parse_in_their_shells() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (shell, program, args) in [
        ("bash", "bash", &["-n"][..]),
        ("zsh", "zsh", &["-n"][..]),
        ("fish", "fish", &["--no-execute"][..]),
    ] {
        let file = dir.path().join(format!("certvakt.{shell}"));
        std::fs::write(&file, script(shell)?)?;
        match syntax_check(program, args, &file)? {
            Some(_) => {}
            // bash is part of every system the tests run on; the others are optional.
            None if shell == "bash" => anyhow::bail!("bash is not installed"),
            None => eprintln!("{program} is not installed: its script's syntax is not checked"),
        }
    }
    Ok(())
}

/// The bash script completes what the CLI accepts: the commands, the shells, the task
/// actions, and a subcommand's options.
#[test]
fn bash_completes_commands_and_arguments() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("certvakt.bash");
    std::fs::write(&file, script("bash")?)?;
    let driver = r#"
set -u
source "$1"
function=$(complete -p certvakt | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
[ -n "$function" ] || { echo "no completion function registered for certvakt" >&2; exit 1; }
offer() {
    COMP_WORDS=("$@")
    COMP_CWORD=$(( $# - 1 ))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    "$function" certvakt "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    echo "${COMPREPLY[*]}"
}
offer certvakt ""
offer certvakt completion ""
offer certvakt task ""
offer certvakt import fmk-prod /tmp/x.p12 --pass
offer certvakt renew fmk-prod --f
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(driver)
        .arg("driver")
        .arg(&file)
        .output()?;
    ensure!(
        out.status.success() && out.stderr.is_empty(),
        "completing with the bash script failed (exit {:?}): {}",
        out.status.code(),
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    for command in commands() {
        assert!(
            lines[0].contains(&command.as_str()),
            "`certvakt ` does not offer {command}: {:?}",
            lines[0]
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        assert!(lines[1].contains(&shell), "{:?}", lines[1]);
    }
    assert!(!lines[1].contains(&"powershell"), "{:?}", lines[1]);
    for action in ["show", "done"] {
        assert!(lines[2].contains(&action), "{:?}", lines[2]);
    }
    assert_eq!(lines[3], ["--password-file"]);
    assert_eq!(lines[4], ["--force"]);
    Ok(())
}

/// With a daemon running, the bash script offers its certificate ids where an `ID` goes and its
/// open task ids where a `TASK` goes, asking the daemon the command line names (`--socket`);
/// with no daemon there, it offers nothing and says nothing.
#[test]
fn bash_completes_certificate_and_task_ids_from_the_running_daemon() -> Result<()> {
    let bins = bins()?;
    let dir = tempfile::tempdir()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-manual"],
    )?;
    // Two first issues: each opens an order task at once.
    let mut body = String::new();
    for id in ["web-shop", "intranet"] {
        body += &format!(
            "[[certificate]]\nid = \"{id}\"\ncert = \"{}\"\nplugin = \"manual\"\n\
             [certificate.settings]\nca_name = \"the CA\"\nsans = [\"DNS:{id}.example\"]\n\n",
            dir.path().join(format!("{id}.pem")).display()
        );
    }
    let config = dir.path().join("certvakt.toml");
    std::fs::write(
        &config,
        harness::config_toml(dir.path(), "127.0.0.1:0", &body),
    )?;
    let daemon = harness::Daemon::start(&bins, &config, &[])?;
    let tasks = eventually(WAIT, "both order tasks", || {
        let tasks = daemon.tasks().ok()?;
        (tasks.len() == 2).then_some(tasks)
    })?;
    let mut task_ids: Vec<String> = tasks.into_iter().map(|t| t.id).collect();
    task_ids.sort();

    let file = dir.path().join("certvakt.bash");
    std::fs::write(&file, script("bash")?)?;
    let driver = r#"
set -u
source "$1"
socket=$2
function=$(complete -p certvakt | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
offer() {
    COMP_WORDS=("$@")
    COMP_CWORD=$(( $# - 1 ))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    "$function" certvakt "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf '%s\n' "${COMPREPLY[*]}" | tr ' ' '\n' | sort | tr '\n' ' '
    echo
}
offer certvakt --socket "$socket" show ""
offer certvakt --socket "$socket" renew --force w
offer certvakt --socket "$socket" rollback ""
offer certvakt --socket "$socket" import ""
offer certvakt --socket "$socket" task show ""
offer certvakt --socket "$socket" task done ""
offer certvakt --socket "$socket" renew web-shop --f
offer certvakt --socket "$socket.gone" show ""
"#;
    let path = format!(
        "{}:{}",
        bins.certvakt
            .parent()
            .context("the bins' folder")?
            .display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(driver)
        .arg("driver")
        .arg(&file)
        .arg(&daemon.socket)
        .env("PATH", path)
        .env_remove(certvakt::cli::SOCKET_ENV)
        .output()?;
    ensure!(
        out.status.success() && out.stderr.is_empty(),
        "completing with the bash script failed (exit {:?}): {}",
        out.status.code(),
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 8, "{text}");
    let ids = ["intranet", "web-shop"];
    assert_eq!(lines[0], ids, "show");
    assert_eq!(lines[1], ["web-shop"], "renew --force w");
    assert_eq!(lines[2], ids, "rollback");
    assert_eq!(lines[3], ids, "import");
    assert_eq!(lines[4], task_ids, "task show");
    assert_eq!(lines[5], task_ids, "task done");
    assert_eq!(lines[6], ["--force"], "an option after the id is clap's");
    assert!(lines[7].is_empty(), "no daemon there: {:?}", lines[7]);
    Ok(())
}
