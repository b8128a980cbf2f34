//! `certvakt completion`: the shell completion scripts the packages install, made by the real
//! binary with no daemon running and no configuration file.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use clap::CommandFactory;

use crate::common::{bins, stderr, stdout};

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
    for command in certvakt::cli::Args::command().get_subcommands() {
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
