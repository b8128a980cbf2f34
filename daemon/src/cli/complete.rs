//! Completion of certificate and task ids in the scripts `certvakt completion` writes.
//!
//! Contract:
//! - `certvakt __complete ids|tasks` (hidden) prints the daemon's certificate ids (watched and
//!   managed, a managed one before its first issue included), or its open task ids, one a
//!   line, sorted. A daemon that cannot be reached, refuses, or does not answer within
//!   [`DEADLINE`] gives nothing, with exit 0 and nothing on stderr: a TAB never shows an error
//!   and never hangs.
//! - Which arguments take ids is read from the clap definition ([`positions`]): the first
//!   positional of a subcommand whose value name is `ID` takes certificate ids, `TASK` task
//!   ids. A new subcommand with an `id` argument completes ids without a change here.
//! - The scripts are clap_complete's, plus ([`extend`]) for bash and zsh a wrapper function
//!   that answers those positions and hands every other one to clap's own function, and for
//!   fish one more `complete` rule per kind. The wrapper finds the subcommand path by skipping
//!   options and the values of the options that take one, and passes `--socket` and
//!   `--config` on, so the ids come from the daemon the command line names.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use super::Exit;
use crate::control::client::Client;
use crate::control::protocol::{Request, Response};

/// How long a TAB waits for the daemon.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// What `certvakt __complete` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Certificate ids (`certvakt list`, and the managed ones `status` names).
    Ids,
    /// Open operator task ids (`certvakt tasks`).
    Tasks,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Ids => "ids",
            Kind::Tasks => "tasks",
        }
    }
}

/// `certvakt __complete KIND`: the ids, one a line; nothing when the daemon does not answer.
pub fn print(kind: Kind, socket: PathBuf, out: &mut dyn Write) -> Exit {
    // The client's own timeout is 10 s; the request runs on a thread that is left behind (and
    // ends with the process) when the daemon is slower than a TAB may be.
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(fetch(kind, &socket));
    });
    if let Ok(ids) = receive.recv_timeout(DEADLINE) {
        for id in ids {
            let _ = writeln!(out, "{id}");
        }
    }
    Exit::Ok
}

/// The ids, sorted: for certificates, those `list` shows and the managed ones `renewals`
/// names (a managed certificate before its first issue has no file for `list` to show yet).
fn fetch(kind: Kind, socket: &std::path::Path) -> Vec<String> {
    let Ok(mut client) = Client::connect(socket) else {
        return Vec::new();
    };
    let mut ids = std::collections::BTreeSet::new();
    match kind {
        Kind::Ids => {
            if let Ok(Response::List { items, .. }) = super::list_all(&mut client) {
                ids.extend(items.into_iter().map(|i| i.id));
            }
            if let Ok(Response::Renewals { items, .. }) = super::renewals_all(&mut client) {
                ids.extend(items.into_iter().map(|r| r.id));
            }
        }
        Kind::Tasks => {
            if let Ok(Response::Tasks { tasks }) = client.request(&Request::Tasks) {
                ids.extend(tasks.into_iter().map(|t| t.id));
            }
        }
    }
    ids.into_iter().collect()
}

/// The subcommand paths (`["show"]`, `["task", "done"]`) whose first positional takes ids of
/// `Kind`, from the visible commands of `command`.
pub fn positions(command: &clap::Command) -> Vec<(Vec<String>, Kind)> {
    fn walk(command: &clap::Command, path: &mut Vec<String>, found: &mut Vec<(Vec<String>, Kind)>) {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            path.push(sub.get_name().to_owned());
            if let Some(kind) = sub.get_positionals().next().and_then(kind_of) {
                found.push((path.clone(), kind));
            }
            walk(sub, path, found);
            path.pop();
        }
    }
    let mut found = Vec::new();
    walk(command, &mut Vec::new(), &mut found);
    found
}

/// The kind of id a positional takes, by its value name (`ID`, `TASK`).
pub fn kind_of(arg: &clap::Arg) -> Option<Kind> {
    let name = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or_else(|| arg.get_id().as_str().to_uppercase(), |n| n.to_string());
    match name.as_str() {
        "ID" => Some(Kind::Ids),
        "TASK" => Some(Kind::Tasks),
        _ => None,
    }
}

/// Long and short spellings of every option that takes a value, anywhere in `command`:
/// the wrapper skips their values when it looks for the subcommand path.
fn options_with_values(command: &clap::Command) -> Vec<String> {
    fn walk(command: &clap::Command, found: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if arg.is_positional() || !arg.get_action().takes_values() {
                continue;
            }
            found.extend(arg.get_long().map(|l| format!("--{l}")));
            found.extend(arg.get_short().map(|s| format!("-{s}")));
        }
        for sub in command.get_subcommands() {
            walk(sub, found);
        }
    }
    let mut found = Vec::new();
    walk(command, &mut found);
    found.sort();
    found.dedup();
    found
}

/// The global options the wrapper passes on to `__complete` (where the daemon is).
const PASSED_ON: [&str; 2] = ["--socket", "--config"];

/// The bash `case` patterns of the paths of one kind (`show|"task show"`), or `None`.
fn case_patterns(positions: &[(Vec<String>, Kind)], kind: Kind) -> Option<String> {
    let patterns: Vec<String> = positions
        .iter()
        .filter(|(_, k)| *k == kind)
        .map(|(path, _)| format!("\"{}\"", path.join(" ")))
        .collect();
    (!patterns.is_empty()).then(|| patterns.join("|"))
}

/// `script` (clap_complete's for `shell`) with the id completion added.
pub fn extend(shell: super::Shell, command: &clap::Command, script: String) -> String {
    let positions = positions(command);
    let skip = options_with_values(command)
        .into_iter()
        .filter(|o| !PASSED_ON.contains(&o.as_str()))
        .collect::<Vec<_>>();
    let cases: String = [Kind::Ids, Kind::Tasks]
        .into_iter()
        .filter_map(|kind| {
            case_patterns(&positions, kind)
                .map(|p| format!("            {p}) kind={} ;;\n", kind.word()))
        })
        .collect();
    match shell {
        super::Shell::Bash => script + &bash(&cases, &skip),
        super::Shell::Zsh => zsh(script, &cases, &skip),
        super::Shell::Fish => script + &fish(&positions, &skip),
    }
}

fn bash(cases: &str, skip: &[String]) -> String {
    let skip = if skip.is_empty() {
        String::new()
    } else {
        format!(
            "            {})\n                [[ ${{COMP_WORDS[i+1]}} == = ]] && ((i++))\n                ((i++)) ;;\n",
            skip.join("|")
        )
    };
    format!(
        r#"
# Certificate and task ids for the arguments that take them, from the running daemon
# (`certvakt __complete`); every other word is completed by _certvakt above.
_certvakt_ids() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} path="" word kind="" i
    local -a passed=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        case $word in
            --socket|--config)
                if [[ ${{COMP_WORDS[i+1]}} == = ]]; then
                    passed+=("$word=${{COMP_WORDS[i+2]}}")
                    ((i += 2))
                else
                    passed+=("$word" "${{COMP_WORDS[i+1]}}")
                    ((i++))
                fi ;;
{skip}            -*|=) ;;
            *) path+="${{path:+ }}$word" ;;
        esac
    done
    if [[ $cur != -* ]]; then
        case $path in
{cases}        esac
    fi
    if [[ -n $kind ]]; then
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$("${{COMP_WORDS[0]}}" "${{passed[@]}}" __complete "$kind" 2>/dev/null)" -- "$cur"))
        return 0
    fi
    _certvakt "$@"
}}
eval "$(complete -p certvakt | sed 's/ -F _certvakt / -F _certvakt_ids /')"
"#
    )
}

/// The ending clap_complete writes for zsh, and the one with the wrapper.
const ZSH_ENDING: &str = r#"if [ "$funcstack[1]" = "_certvakt" ]; then
    _certvakt "$@"
else
    compdef _certvakt certvakt
fi
"#;

fn zsh(script: String, cases: &str, skip: &[String]) -> String {
    let skip = if skip.is_empty() {
        String::new()
    } else {
        format!("            ({}) (( i++ )) ;;\n", skip.join("|"))
    };
    let wrapper = format!(
        r#"# Certificate and task ids for the arguments that take them, from the running daemon
# (`certvakt __complete`); every other word is completed by _certvakt above.
_certvakt_ids() {{
    local cmdpath="" word kind=""
    local -a passed ids
    integer i
    for (( i = 2; i < CURRENT; i++ )); do
        word=${{words[i]}}
        case $word in
            (--socket|--config) passed+=($word ${{words[i+1]}}); (( i++ )) ;;
            (--socket=*|--config=*) passed+=($word) ;;
{skip}            (-*) ;;
            (*) cmdpath+="${{cmdpath:+ }}$word" ;;
        esac
    done
    if [[ ${{words[CURRENT]}} != -* ]]; then
        case $cmdpath in
{cases}        esac
    fi
    if [[ -n $kind ]]; then
        ids=(${{(f)"$(${{words[1]}} $passed __complete $kind 2>/dev/null)"}})
        compadd -a ids
        return
    fi
    _certvakt "$@"
}}

if [ "$funcstack[1]" = "_certvakt" ]; then
    compdef _certvakt_ids certvakt
    _certvakt_ids "$@"
else
    compdef _certvakt_ids certvakt
fi
"#
    );
    match script.rfind(ZSH_ENDING) {
        Some(at) => format!("{}{wrapper}", &script[..at]),
        // A clap_complete that ends differently: its script stands, without ids (the test of
        // this module fails on it).
        None => script,
    }
}

fn fish(positions: &[(Vec<String>, Kind)], skip: &[String]) -> String {
    let paths = |kind: Kind| -> String {
        positions
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(path, _)| format!("'{}'", path.join(" ")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let skip = skip.join(" ");
    format!(
        r#"
# Certificate and task ids for the arguments that take them, from the running daemon
# (`certvakt __complete`).
function __certvakt_ids_wanted --argument-names kind
    set -l words (commandline -opc)
    set -l skip {skip}
    set -l cmdpath
    set -l i 2
    while test $i -le (count $words)
        set -l word $words[$i]
        if contains -- $word --socket --config $skip
            set i (math $i + 1)
        else if not string match -q -- '-*' $word
            set -a cmdpath $word
        end
        set i (math $i + 1)
    end
    set -l current (commandline -ct)
    string match -q -- '-*' "$current"; and return 1
    switch $kind
        case ids
            contains -- "$cmdpath" {ids}
        case tasks
            contains -- "$cmdpath" {tasks}
    end
end
function __certvakt_ids --argument-names kind
    set -l words (commandline -opc)
    set -l passed
    for i in (seq 2 (count $words))
        if contains -- $words[$i] --socket --config
            set -a passed $words[$i] $words[(math $i + 1)]
        else if string match -q -r -- '^--(socket|config)=' $words[$i]
            set -a passed $words[$i]
        end
    end
    $words[1] $passed __complete $kind 2>/dev/null
end
complete -c certvakt -n '__certvakt_ids_wanted ids' -f -a '(__certvakt_ids ids)'
complete -c certvakt -n '__certvakt_ids_wanted tasks' -f -a '(__certvakt_ids tasks)'
"#,
        ids = paths(Kind::Ids),
        tasks = paths(Kind::Tasks),
    )
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;
    use crate::cli::{Args, Shell};

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        assert_eq!(crate::cli::completion(shell, &mut out), Exit::Ok);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn the_id_arguments_are_found_in_the_clap_definition() {
        let found = positions(&Args::command());
        let path = |p: &str| p.split(' ').map(str::to_owned).collect::<Vec<_>>();
        for id in [
            "show", "renew", "rollback", "import", "history", "cancel", "forget",
        ] {
            assert!(found.contains(&(path(id), Kind::Ids)), "{id}: {found:?}");
        }
        for task in ["task show", "task done"] {
            assert!(
                found.contains(&(path(task), Kind::Tasks)),
                "{task}: {found:?}"
            );
        }
        assert!(
            !found
                .iter()
                .any(|(p, _)| p[0] == "__complete" || p[0] == "completion"),
            "{found:?}"
        );
    }

    /// The scripts complete only a subcommand's first positional: an `ID` or `TASK` argument
    /// anywhere else would not be completed, so there must be none.
    #[test]
    fn every_id_argument_is_its_subcommands_first_positional() {
        fn walk(command: &clap::Command, path: &str) {
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                for arg in sub.get_positionals().skip(1) {
                    assert!(kind_of(arg).is_none(), "{sub_path} <{}>", arg.get_id());
                }
                walk(sub, &sub_path);
            }
        }
        walk(&Args::command(), "certvakt");
    }

    /// The line of `script` that contains `marker`.
    fn line_with<'s>(script: &'s str, marker: &str) -> &'s str {
        script
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no line with {marker:?} in:\n{script}"))
    }

    #[test]
    fn each_script_asks_the_daemon_for_ids_at_those_arguments() {
        let ids = [
            "show", "renew", "rollback", "import", "history", "cancel", "forget",
        ];
        let tasks = ["task show", "task done"];

        let bash = script(Shell::Bash);
        assert!(bash.contains("_certvakt_ids() {"), "{bash}");
        let zsh = script(Shell::Zsh);
        assert!(zsh.contains("_certvakt_ids() {"), "{zsh}");
        assert!(!zsh.contains(ZSH_ENDING), "clap's ending is replaced");
        assert!(
            zsh.trim_end()
                .ends_with("compdef _certvakt_ids certvakt\nfi"),
            "{zsh}"
        );
        for script in [&bash, &zsh] {
            let (id_line, task_line) = (
                line_with(script, "kind=ids ;;"),
                line_with(script, "kind=tasks ;;"),
            );
            for path in ids {
                assert!(
                    id_line.contains(&format!("\"{path}\"")),
                    "{path}: {id_line}"
                );
            }
            for path in tasks {
                assert!(
                    task_line.contains(&format!("\"{path}\"")),
                    "{path}: {task_line}"
                );
            }
            // The values of options are no subcommand names.
            let skip = script
                .lines()
                .find(|l| l.contains("--password-file") && l.contains('|'))
                .unwrap_or_else(|| panic!("no pattern of options with values in:\n{script}"));
            assert!(skip.contains("--timeout"), "{skip}");
        }

        let fish = script(Shell::Fish);
        let (id_line, task_line) = (
            line_with(&fish, "contains -- \"$cmdpath\" 'show'"),
            line_with(&fish, "contains -- \"$cmdpath\" 'task show'"),
        );
        for path in ids {
            assert!(id_line.contains(&format!("'{path}'")), "{path}: {id_line}");
        }
        assert!(task_line.contains("'task done'"), "{task_line}");
        assert!(
            fish.contains(
                "complete -c certvakt -n '__certvakt_ids_wanted tasks' -f -a '(__certvakt_ids tasks)'"
            ),
            "{fish}"
        );
    }

    #[test]
    fn no_daemon_is_no_ids_and_no_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut out = Vec::new();
        let exit = print(Kind::Ids, dir.path().join("missing.sock"), &mut out);
        assert_eq!(exit, Exit::Ok);
        assert!(out.is_empty());
    }

    #[test]
    fn a_daemon_that_does_not_answer_is_given_up_on_after_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("silent.sock");
        // Accepts the connection (the backlog does) and never answers the hello.
        let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        assert_eq!(print(Kind::Tasks, path, &mut out), Exit::Ok);
        let took = started.elapsed();
        assert!(out.is_empty());
        assert!(took >= DEADLINE && took < DEADLINE * 2, "{took:?}");
    }
}
