//! The manual pages in packaging/man: they pass the checks a Debian package's pages must pass,
//! and they document every command and option the real command lines accept and every key the
//! configuration loader accepts, so a new one cannot ship undocumented.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use clap::CommandFactory;

use crate::common::stderr;

const PAGES: &[&str] = &["certvakt.1", "certvaktd.8", "certvakt.toml.5"];

fn page_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/man")
        .join(name)
}

/// Runs a checker whose only acceptable answer is silence on stderr and exit 0.
fn silent(cmd: &mut Command, what: &str, package: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{what} is not installed (Debian package {package})"))?;
    ensure!(
        out.status.success() && out.stderr.is_empty(),
        "{what} complains (exit {:?}):\n{}",
        out.status.code(),
        stderr(&out)
    );
    Ok(())
}

#[test]
fn the_pages_pass_man_and_groff_without_warnings() -> Result<()> {
    for name in PAGES {
        let path = page_path(name);
        ensure!(path.is_file(), "{} is missing", path.display());
        // What lintian runs over every manual page of a package.
        silent(
            Command::new("man")
                .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
                .arg(&path)
                .env("LC_ALL", "C.UTF-8")
                .env("MANROFFSEQ", "")
                .env("MANWIDTH", "80")
                .stdout(std::process::Stdio::null()),
            &format!("man --warnings on {name}"),
            "man-db",
        )?;
        silent(
            Command::new("groff").args(["-man", "-ww", "-z"]).arg(&path),
            &format!("groff -ww on {name}"),
            "groff-base",
        )?;
    }
    Ok(())
}

/// One `.SH` or `.SS` section of a page, as plain text.
#[derive(Debug, Default)]
struct Section {
    heading: String,
    /// The `.TP` entries: the tag line and the paragraph under it.
    entries: Vec<(String, String)>,
    text: String,
}

/// A manual page, cut into sections, with the roff markup the pages use removed.
#[derive(Debug)]
struct Page {
    name: String,
    sections: Vec<Section>,
}

impl Page {
    fn read(name: &str) -> Result<Page> {
        let path = page_path(name);
        let source = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut sections = vec![Section::default()];
        let mut tag_next = false;
        for line in source.lines() {
            let (request, rest) = match line.strip_prefix('.') {
                Some(macro_line) => {
                    let (request, rest) = macro_line.split_once(' ').unwrap_or((macro_line, ""));
                    (Some(request), rest)
                }
                None => (None, line),
            };
            let text = match request {
                Some("SH" | "SS") => {
                    sections.push(Section {
                        heading: plain(&words(rest).join(" ")),
                        ..Section::default()
                    });
                    tag_next = false;
                    continue;
                }
                Some("TP" | "TQ") => {
                    tag_next = true;
                    continue;
                }
                Some("B" | "I") => plain(&words(rest).join(" ")),
                Some("BR" | "RB" | "BI" | "IB" | "IR" | "RI") => plain(&words(rest).concat()),
                Some(_) => continue,
                None => plain(rest),
            };
            let section = sections.last_mut().context("no section")?;
            if tag_next {
                section.entries.push((text.clone(), String::new()));
                tag_next = false;
            } else if let Some((_, body)) = section.entries.last_mut() {
                body.push_str(&text);
                body.push(' ');
            }
            section.text.push_str(&text);
            section.text.push(' ');
        }
        Ok(Page {
            name: name.to_owned(),
            sections,
        })
    }

    /// The first section whose heading contains `heading`.
    fn section(&self, heading: &str) -> &Section {
        self.sections
            .iter()
            .find(|s| s.heading.contains(heading))
            .unwrap_or_else(|| panic!("{} has no section {heading:?}", self.name))
    }

    fn text(&self) -> String {
        self.sections.iter().map(|s| s.text.as_str()).collect()
    }
}

/// The arguments of a macro line, quotes removed.
fn words(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            chars.next();
            out.push(chars.by_ref().take_while(|&c| c != '"').collect());
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|&&c| c != ' ') {
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    out
}

/// Roff text as a reader sees it: font changes dropped, `\-` a hyphen, `\e` a backslash.
fn plain(text: &str) -> String {
    let mut out = text.replace("\\-", "-").replace("\\e", "\\");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        out = out.replace(font, "");
    }
    out.replace("\\&", "").replace("\\(em", "--")
}

/// The value names of an argument as the help shows them (`ID`, `PATH`).
fn value_names(arg: &clap::Arg) -> Vec<String> {
    match arg.get_value_names() {
        Some(names) => names.iter().map(|n| n.to_string()).collect(),
        None => vec![arg.get_id().as_str().to_uppercase()],
    }
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_num_args().is_none_or(|n| n.takes_values())
        && !matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue
                | clap::ArgAction::SetFalse
                | clap::ArgAction::Count
                | clap::ArgAction::Help
                | clap::ArgAction::HelpShort
                | clap::ArgAction::HelpLong
                | clap::ArgAction::Version
        )
}

/// The commands that take no further command, as word paths (`["task", "show"]`).
fn leaves(command: &clap::Command, path: &[String], out: &mut Vec<(Vec<String>, clap::Command)>) {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub_path = path.to_vec();
        sub_path.push(sub.get_name().to_owned());
        if sub.has_subcommands() {
            leaves(sub, &sub_path, out);
        } else {
            out.push((sub_path, sub.clone()));
        }
    }
}

/// The page documents `command`: every option of the program in OPTIONS, every command in
/// COMMANDS (and in the SYNOPSIS) with its arguments and options in its entry's tag, and no
/// command that does not exist.
fn check_command_line(page: &Page, command: &clap::Command) {
    let options = page.section("OPTIONS");
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long() else {
            panic!(
                "{}: {} takes an argument that is not an option",
                page.name,
                command.get_name()
            );
        };
        let long = format!("--{long}");
        let entry = options
            .entries
            .iter()
            .find(|(tag, _)| tag.split([' ', ',']).any(|word| word == long));
        let Some((tag, _)) = entry else {
            panic!("{}: OPTIONS has no entry for {long}", page.name);
        };
        if takes_value(arg) {
            for name in value_names(arg) {
                assert!(
                    tag.contains(&name),
                    "{}: the entry for {long} does not name its value {name}: {tag:?}",
                    page.name
                );
            }
        }
    }

    let commands = page.section("COMMANDS");
    let synopsis = page.section("SYNOPSIS");
    let whole = page.text();
    let mut all = Vec::new();
    leaves(command, &[], &mut all);
    assert!(
        !all.is_empty(),
        "{}: the command line has no commands",
        command.get_name()
    );
    for (path, sub) in &all {
        let name = path.join(" ");
        assert!(
            synopsis.text.contains(&name),
            "{}: SYNOPSIS lacks {name}",
            page.name
        );
        let entry = commands
            .entries
            .iter()
            .find(|(tag, _)| *tag == name || tag.starts_with(&format!("{name} ")));
        let Some((tag, body)) = entry else {
            panic!("{}: COMMANDS has no entry for {name}", page.name);
        };
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                let long = format!("--{long}");
                assert!(
                    tag.split([' ', '[', ']']).any(|word| word == long),
                    "{}: the entry for {name} lacks {long}: {tag:?}",
                    page.name
                );
            }
            if !arg.is_positional() && !takes_value(arg) {
                continue;
            }
            for value in value_names(arg) {
                assert!(
                    tag.split([' ', '[', ']']).any(|word| word == value),
                    "{}: the entry for {name} does not name {value}: {tag:?}",
                    page.name
                );
            }
            // A fixed set of values (`completion`'s shells) is listed in the entry.
            for possible in arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
            {
                assert!(
                    body.split([' ', ',', '.'])
                        .any(|word| word == possible.get_name()),
                    "{}: the entry for {name} does not name the value {}",
                    page.name,
                    possible.get_name()
                );
            }
        }
    }
    // Options of commands that only group others (`task`) are documented somewhere.
    for parent in command.get_subcommands().filter(|s| s.has_subcommands()) {
        for arg in parent.get_arguments().filter_map(|a| a.get_long()) {
            assert!(
                whole.contains(&format!("--{arg}")),
                "{}: --{arg} of {} is not documented",
                page.name,
                parent.get_name()
            );
        }
    }
    // And nothing is documented that is not there.
    for (tag, _) in &commands.entries {
        assert!(
            all.iter().any(|(path, _)| {
                let name = path.join(" ");
                *tag == name || tag.starts_with(&format!("{name} "))
            }),
            "{}: COMMANDS documents {tag:?}, which {} does not have",
            page.name,
            command.get_name()
        );
    }
}

#[test]
fn certvakt_1_documents_every_command_option_and_exit_code() -> Result<()> {
    let page = Page::read("certvakt.1")?;
    check_command_line(&page, &certvakt::cli::Args::command());

    let exit_status = page.section("EXIT STATUS");
    let codes: Vec<&str> = certvakt::cli::EXIT_CODES_HELP
        .lines()
        .filter_map(|line| line.strip_prefix("  ")?.split_whitespace().next())
        .filter(|word| word.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(codes.len() >= 9, "{codes:?}");
    for code in codes {
        assert!(
            exit_status.entries.iter().any(|(tag, _)| tag == code),
            "certvakt.1: EXIT STATUS lacks {code}"
        );
    }
    let environment = page.section("ENVIRONMENT");
    assert!(
        environment
            .entries
            .iter()
            .any(|(tag, _)| tag == certvakt::cli::SOCKET_ENV),
        "certvakt.1: ENVIRONMENT lacks {}",
        certvakt::cli::SOCKET_ENV
    );
    let text = page.text();
    for path in [
        certvakt::cli::DEFAULT_SOCKET,
        certvakt::config::DEFAULT_PATH,
    ] {
        assert!(text.contains(path), "certvakt.1 does not name {path}");
    }
    Ok(())
}

#[test]
fn certvaktd_8_documents_every_command_and_option() -> Result<()> {
    let page = Page::read("certvaktd.8")?;
    check_command_line(&page, &certvakt::daemon_cli::Args::command());
    let signals = page.section("SIGNALS");
    for signal in ["SIGHUP", "SIGTERM", "SIGINT"] {
        assert!(
            signals
                .entries
                .iter()
                .any(|(tag, _)| tag.split([' ', ',']).any(|w| w == signal)),
            "certvaktd.8: SIGNALS lacks {signal}"
        );
    }
    let exit_status = page.section("EXIT STATUS");
    let code = certvakt::daemon_cli::EXIT_CONFIG.to_string();
    assert!(
        exit_status.entries.iter().any(|(tag, _)| *tag == code),
        "certvaktd.8: EXIT STATUS lacks {code}"
    );
    Ok(())
}

#[test]
fn certvakt_toml_5_documents_every_key_the_loader_accepts() -> Result<()> {
    let page = Page::read("certvakt.toml.5")?;
    let tables = certvakt::config::known_keys();
    assert!(tables.len() >= 6, "{tables:?}");
    for (table, keys) in tables {
        // `[daemon]` also finds `[[watch]]`'s heading; `[certificate.settings]` is a key.
        let section = page.section(&format!("[{table}]"));
        for key in keys {
            assert!(
                section
                    .entries
                    .iter()
                    .any(|(tag, _)| tag.split_whitespace().next() == Some(key)),
                "certvakt.toml.5: section {:?} has no entry for the key {key}",
                section.heading
            );
            assert!(
                section
                    .entries
                    .iter()
                    .filter(|(tag, _)| tag.split_whitespace().next() == Some(key))
                    .all(|(_, body)| !body.trim().is_empty()),
                "certvakt.toml.5: the entry for {table}.{key} says nothing"
            );
        }
        // Every entry of a table with fixed keys is one of them: no stale or misspelt key.
        if !keys.is_empty() {
            for (tag, _) in &section.entries {
                let first = tag.split_whitespace().next().unwrap_or_default();
                assert!(
                    keys.contains(&first),
                    "certvakt.toml.5: section {:?} documents {first:?}, which the loader does \
                     not accept in [{table}]",
                    section.heading
                );
            }
        }
    }
    // Plugin settings are documented by reference to each plugin's own page.
    let text = page.text();
    for plugin in [
        "acme",
        "manual",
        "dk-fmk",
        "dk-nemlogin",
        "no-nhn",
        "se-efrikort",
        "fi-kanta",
    ] {
        assert!(
            text.contains(&format!("{plugin}.md")),
            "certvakt.toml.5 does not point to the {plugin} plugin's documentation"
        );
        assert!(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../plugins")
                .join(plugin)
                .join("README.md")
                .is_file(),
            "plugins/{plugin}/README.md, which the package installs as {plugin}.md, is missing"
        );
    }
    Ok(())
}

#[test]
fn the_pages_refer_to_each_other() -> Result<()> {
    for name in PAGES {
        let page = Page::read(name)?;
        let see_also = &page.section("SEE ALSO").text;
        let mut expected: Vec<String> = PAGES
            .iter()
            .filter(|other| *other != name)
            .map(|other| {
                let (stem, section) = other.rsplit_once('.').unwrap_or((other, ""));
                format!("{stem}({section})")
            })
            .collect();
        expected.push("systemd.service(5)".into());
        expected.push("journalctl(1)".into());
        for reference in expected {
            assert!(
                see_also.contains(&reference),
                "{name}: SEE ALSO lacks {reference}: {see_also:?}"
            );
        }
    }
    Ok(())
}

/// The exit codes are one set, said the same way in `certvakt --help`, certvakt(1) and the
/// reference page of the command (docs/cli.md): each place lists the same codes, and each code's entry names the same cases.
#[test]
fn the_exit_codes_agree_in_help_man_page_and_docs() -> Result<()> {
    // What each code's entry must name, in every place (lower-cased, markup removed).
    let cases: &[(&str, &[&str])] = &[
        ("0", &["ok"]),
        (
            "1",
            &[
                "warn_before",
                "open task",
                "plugin is not loaded",
                "refused plugin file",
                "notification",
                "notify test",
                "renew --wait",
            ],
        ),
        ("2", &["expired", "not yet valid", "first issue"]),
        ("3", &["cannot be reached", "protocol", "--timeout"]),
        ("4", &["not allowed to connect", "admin access"]),
        ("5", &["show", "rollback", "import", "task done"]),
        ("6", &["check-config", "reload"]),
        (
            "7",
            &["import", "rollback", "plugin is not loaded", "task done"],
        ),
        ("64", &["usage error"]),
    ];
    let help: Vec<(String, String)> = {
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in certvakt::cli::EXIT_CODES_HELP.lines() {
            let Some(rest) = line.strip_prefix("  ") else {
                continue;
            };
            let first = rest.split_whitespace().next().unwrap_or_default();
            if !first.is_empty() && first.chars().all(|c| c.is_ascii_digit()) {
                entries.push((first.to_owned(), rest[first.len()..].to_owned()));
            } else if let Some((_, body)) = entries.last_mut() {
                body.push(' ');
                body.push_str(rest.trim());
            }
        }
        entries
    };
    let man: Vec<(String, String)> = Page::read("certvakt.1")?
        .section("EXIT STATUS")
        .entries
        .clone();
    let docs_text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md"))?;
    let docs: Vec<(String, String)> = docs_text
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| ")?.split(" | ");
            let code = cells.next()?;
            let body = cells.next()?;
            (code.chars().all(|c| c.is_ascii_digit()) && !code.is_empty())
                .then(|| (code.to_owned(), body.trim_end_matches(" |").to_owned()))
        })
        .collect();
    for (place, entries) in [
        ("--help", &help),
        ("certvakt.1", &man),
        ("docs/cli.md", &docs),
    ] {
        let codes: Vec<&str> = entries.iter().map(|(c, _)| c.as_str()).collect();
        let expected: Vec<&str> = cases.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, expected, "{place} lists other exit codes");
        for ((code, body), (_, words)) in entries.iter().zip(cases) {
            let body = body.to_lowercase().replace(['`', '\\'], "");
            for word in *words {
                assert!(
                    body.contains(word),
                    "{place}: exit code {code} does not mention {word:?}: {body}"
                );
            }
        }
    }
    Ok(())
}
