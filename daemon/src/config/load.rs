//! Reading and merging the configuration files.
//!
//! Owns the file side of [`super::load`]: which files are read (the main file, then the
//! `*.toml` entries in `conf.d/` beside it, not hidden ones, in byte order of their names), how
//! they merge (section keys: a later file wins; `[[watch]]` and `[[certificate]]`: appended),
//! and the problems only the text can show: unreadable files, TOML syntax, unknown keys, wrong
//! types, missing required keys and values the typed [`Config`] cannot hold.
//!
//! Every file goes through [`crate::bounded`], like every other file the daemon is told about:
//! regular files only (a FIFO, socket, device or folder at the path, or a link to one, is
//! refused at once, never blocked on) and at most [`CONFIG_FILE_LIMIT`] bytes.
//!
//! Each table with fixed keys is described once (in `values`), as a list of [`Field`] rows ([`DAEMON`],
//! [`CONTROL`], [`METRICS`], [`WATCH`], [`CERTIFICATE`]): the key's name, an example line for
//! hints, whether every entry must have it, how its value is read and where it is stored. One
//! walk reads any table against its rows, so a new key is one new row: unknown keys and their
//! "did you mean" (nearest valid name by edit distance), missing required keys and
//! [`super::known_keys`] all come from the same rows.
//!
//! Each file is parsed into a spanned table and walked key by key, so one bad key or entry never
//! hides another; lines come from the byte offsets of the spans. Every accepted key's line is
//! recorded in [`Config::key_origins`]. An entry with a bad or missing key is still kept (with
//! an empty placeholder value) so that entry indices stay the ones the operator counts; the
//! placeholder never escapes, because such a load always ends in `Err`, and [`super::validate`]
//! problems about a key the loader already reported are dropped.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::routes;
use super::{Config, ManagedCertificate, Problem, Watch};
use crate::bounded::{self, CONFIG_FILE_LIMIT, ReadError};

use super::values::*;

/// See [`super::known_keys`].
pub(super) fn known_keys() -> Vec<(&'static str, &'static [&'static str])> {
    TOP_KEYS
        .iter()
        .map(|&table| {
            let keys: &'static [&'static str] = match table {
                "daemon" => &DAEMON_KEYS,
                "control" => &CONTROL_KEYS,
                "metrics" => &METRICS_KEYS,
                "watch" => &WATCH_KEYS,
                "certificate" => &CERTIFICATE_KEYS,
                "mail" => &routes::MAIL_KEYS,
                "notifications" => &routes::NOTIFICATIONS_KEYS,
                "notify" => &routes::NOTIFY_KEYS,
                _ => &[],
            };
            (table, keys)
        })
        .collect()
}

/// Reads `[metrics] web_config` into `config.metrics.web`; its problems name the web config
/// file and the key in it (a file that cannot be read: the line of `web_config`).
fn read_web_config(config: &mut Config) -> Vec<Problem> {
    let Some(path) = config.metrics.web_config.clone() else {
        return Vec::new();
    };
    match crate::web_config::read(&path) {
        Ok(web) => {
            config.metrics.web = Some(web);
            Vec::new()
        }
        Err(found) => {
            let origin = config.key_origins.get("metrics.web_config");
            found
                .into_iter()
                .map(|p| {
                    let whole_file = p.key.is_empty() && p.line.is_none();
                    Problem {
                        file: match origin {
                            Some(o) if whole_file => o.file.clone(),
                            _ => path.clone(),
                        },
                        line: if whole_file {
                            origin.map(|o| o.line)
                        } else {
                            p.line
                        },
                        key: if p.key.is_empty() {
                            "metrics.web_config".into()
                        } else {
                            p.key
                        },
                        message: p.message,
                        hint: p.hint,
                    }
                })
                .collect()
        }
    }
}

/// See [`super::load`].
pub(super) fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let mut loader = Loader {
        config: Config::defaults(),
        report: Report::default(),
        order: Vec::new(),
    };
    loader.read(path, Role::Main);
    for dropin in loader.dropins(path) {
        loader.read(&dropin, Role::DropIn);
    }
    let Loader {
        mut config,
        report,
        order,
    } = loader;
    let Report {
        mut problems,
        origins,
    } = report;
    config.key_origins = origins;

    let reported: Vec<String> = problems
        .iter()
        .filter(|p| !p.key.is_empty())
        .map(|p| p.key.clone())
        .collect();
    problems.extend(
        super::validate(&config)
            .into_iter()
            .chain(super::routes::check_secret_files(&config))
            .filter(|p| !reported.iter().any(|r| covers(r, &p.key))),
    );
    problems.extend(read_web_config(&mut config));
    if problems.is_empty() {
        return Ok(config);
    }
    let rank = |file: &Path| order.iter().position(|f| f == file).unwrap_or(usize::MAX);
    problems.sort_by_key(|p| (rank(&p.file), p.line.unwrap_or(0)));
    Err(problems)
}

/// Whether a problem about `reported` already says what one about `key` would: the same key,
/// or `key` lies inside it (`certificate[1]` covers `certificate[1].id`).
fn covers(reported: &str, key: &str) -> bool {
    key.strip_prefix(reported)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Main,
    DropIn,
}

struct Loader {
    config: Config,
    report: Report,
    /// Every file and folder looked at, in reading order: problems are sorted by it.
    order: Vec<PathBuf>,
}

impl Loader {
    /// Reads one file and merges what it says into `self.config`.
    fn read(&mut self, path: &Path, role: Role) {
        self.order.push(path.to_path_buf());
        let bytes = match bounded::read(path, CONFIG_FILE_LIMIT) {
            Ok(bytes) => bytes,
            Err(e) => return self.unreadable(path, role, &e),
        };
        self.config.files.push(path.to_path_buf());
        // Not `bounded::read_to_string`: a UTF-8 problem is reported with its line.
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                self.report.problems.push(Problem {
                    file: path.to_path_buf(),
                    line: Some(line_at(e.as_bytes(), offset)),
                    key: String::new(),
                    message: "the file is not valid UTF-8".into(),
                    hint: "save it as UTF-8 text".into(),
                });
                return;
            }
        };
        let src = Source::new(path, &text);
        let (root, errors) = DeTable::parse_recoverable(&text);
        if errors.is_empty() {
            return self.root(&src, root.get_ref());
        }
        // What the parser recovered is a guess; only the syntax errors are reported for a file
        // that has them, never problems in the guess.
        let mut errors: Vec<(Option<usize>, String)> = errors
            .iter()
            .map(|e| (e.span().map(|s| s.start), e.message().to_owned()))
            .collect();
        errors.sort();
        errors.dedup();
        for (offset, message) in errors {
            let hint = if message.contains("duplicate key") {
                "each key may appear only once per table; remove one of them"
            } else {
                "fix the TOML syntax on this line; strings need double quotes, e.g. \
                 log_level = \"info\""
            };
            self.report.problems.push(Problem {
                file: path.to_path_buf(),
                line: offset.map(|o| src.line(o)),
                key: String::new(),
                message: match offset {
                    Some(o) => format!(
                        "TOML syntax error at column {}: {message}",
                        column_at(&text, o)
                    ),
                    None => format!("TOML syntax error: {message}"),
                },
                hint: hint.into(),
            });
        }
    }

    fn unreadable(&mut self, path: &Path, role: Role, e: &ReadError) {
        let denied = matches!(e, ReadError::Io(io) if io.kind() == io::ErrorKind::PermissionDenied);
        // `ReadError` reads as a sentence tail after the file ("is not a regular file ...").
        let why = match e {
            ReadError::Io(io) => io.to_string(),
            ReadError::NotFound => match std::fs::read_link(path) {
                Ok(target) => format!(
                    "it is a symbolic link to {}, which does not exist",
                    target.display()
                ),
                Err(_) => format!("it {e}"),
            },
            other => format!("it {other}"),
        };
        let too_large = matches!(e, ReadError::TooLarge { .. } | ReadError::Grew { .. });
        let (message, hint) = match role {
            Role::Main if e.is_not_found() => (
                "the configuration file does not exist".to_owned(),
                "create it (an empty file means all defaults), or pass --config with the path \
                 of the configuration file",
            ),
            Role::Main if denied => (
                "permission denied reading the configuration file".to_owned(),
                "make it readable by the user certvakt runs as (e.g. root:certvakt, mode 0640), \
                 or pass --config with another file",
            ),
            Role::Main => (
                format!("cannot read the configuration file: {why}"),
                if too_large {
                    "a configuration file is a few kilobytes: check that this is the right file, \
                     or pass --config with the path of the configuration file"
                } else {
                    "make it a readable regular file, or pass --config with the path of the \
                     configuration file"
                },
            ),
            Role::DropIn => (
                format!("cannot read this drop-in file: {why}"),
                if matches!(e, ReadError::NotRegular) {
                    "conf.d holds only regular *.toml files: move this one out of conf.d, or \
                     rename it so it does not end in .toml"
                } else if too_large {
                    "a drop-in is a few kilobytes: check what wrote it, or move it out of conf.d"
                } else {
                    "make it readable by the user certvakt runs as, or move it out of conf.d"
                },
            ),
        };
        self.report.problems.push(Problem {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message,
            hint: hint.into(),
        });
    }

    /// The drop-ins beside `main`, in byte order of their names. A missing folder is fine.
    /// Every entry named `*.toml` (hidden ones excepted) is listed whatever it is: [`Self::read`]
    /// refuses, with a problem naming it, one that is not a regular file (a folder, FIFO or
    /// device, or a link to one) rather than skip it silently.
    fn dropins(&mut self, main: &Path) -> Vec<PathBuf> {
        let Some(parent) = main.parent() else {
            return Vec::new();
        };
        let dir = parent.join("conf.d");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.folder_unreadable(&dir, &e);
                return Vec::new();
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.folder_unreadable(&dir, &e);
                    continue;
                }
            };
            let name = entry.file_name();
            let name = name.as_bytes();
            if !name.starts_with(b".") && name.ends_with(b".toml") {
                files.push(entry.path());
            }
        }
        files.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
        files
    }

    fn folder_unreadable(&mut self, dir: &Path, e: &io::Error) {
        if !self.order.iter().any(|p| p == dir) {
            self.order.push(dir.to_path_buf());
        }
        self.report.problems.push(Problem {
            file: dir.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read the drop-in folder: {e}"),
            hint: "make it a folder readable by the user certvakt runs as, or remove it".into(),
        });
    }

    fn root(&mut self, src: &Source<'_>, root: &DeTable<'_>) {
        let (report, config) = (&mut self.report, &mut self.config);
        for (k, v) in root.iter() {
            match k.get_ref().as_ref() {
                "daemon" => {
                    if let Some(table) = section(report, src, "daemon", v) {
                        report.walk(src, "daemon", "[daemon]", DAEMON, table, &mut config.daemon);
                    }
                }
                "control" => {
                    if let Some(table) = section(report, src, "control", v) {
                        let control = &mut config.control;
                        report.walk(src, "control", "[control]", CONTROL, table, control);
                    }
                }
                "metrics" => {
                    if let Some(table) = section(report, src, "metrics", v) {
                        let metrics = &mut config.metrics;
                        report.walk(src, "metrics", "[metrics]", METRICS, table, metrics);
                    }
                }
                "trust" => trust(report, config, src, v),
                "watch" => {
                    for (item, prefix) in entries(report, src, "watch", v, config.watch.len()) {
                        let header = item.span().start;
                        let mut watch = Watch {
                            paths: Vec::new(),
                            pkcs12_password_file: None,
                            origin: src.origin(header),
                        };
                        if let Some(table) = entry_table(report, src, &prefix, "watch", item) {
                            report.walk(src, &prefix, "[[watch]]", WATCH, table, &mut watch);
                            report.missing(src, header, &prefix, "watch", WATCH, table);
                        }
                        config.watch.push(watch);
                    }
                }
                "certificate" => {
                    let first = config.certificates.len();
                    for (item, prefix) in entries(report, src, "certificate", v, first) {
                        let header = item.span().start;
                        let origin = src.origin(header);
                        let mut cert = ManagedCertificate::new("", PathBuf::new(), "", origin);
                        if let Some(table) = entry_table(report, src, &prefix, "certificate", item)
                        {
                            let what = "[[certificate]]";
                            report.walk(src, &prefix, what, CERTIFICATE, table, &mut cert);
                            report.missing(src, header, &prefix, "certificate", CERTIFICATE, table);
                        }
                        config.certificates.push(cert);
                    }
                }
                "mail" => {
                    if let Some(table) = section(report, src, "mail", v) {
                        let mail = &mut config.mail;
                        report.walk(src, "mail", "[mail]", routes::MAIL, table, mail);
                    }
                }
                "notifications" => {
                    if let Some(table) = section(report, src, "notifications", v) {
                        let n = &mut config.notifications;
                        let what = "[notifications]";
                        report.walk(src, "notifications", what, routes::NOTIFICATIONS, table, n);
                    }
                }
                "notify" => {
                    let first = config.notify.len();
                    for (item, prefix) in entries(report, src, "notify", v, first) {
                        let header = item.span().start;
                        let index = config.notify.len();
                        let mut draft = routes::RouteDraft::default();
                        if let Some(table) = entry_table(report, src, &prefix, "notify", item) {
                            let fields = routes::NOTIFY;
                            report.walk(src, &prefix, "[[notify]]", fields, table, &mut draft);
                            report.missing(src, header, &prefix, "notify", fields, table);
                        }
                        let origin = src.origin(header);
                        if let Some(route) =
                            routes::finish(report, src, header, &prefix, index, draft, origin)
                        {
                            config.notify.push(route);
                        } else {
                            // Kept as a placeholder so later indices stay the operator's.
                            config
                                .notify
                                .push(routes::placeholder(index, src.origin(header)));
                        }
                    }
                }
                _ => report.unknown_top(src, k),
            }
        }
    }
}

/// The table of `[name]`; anything else is reported.
fn section<'v, 'i>(
    report: &mut Report,
    src: &Source<'_>,
    name: &str,
    v: &'v Value<'i>,
) -> Option<&'v DeTable<'i>> {
    if let DeValue::Table(table) = v.get_ref() {
        return Some(table);
    }
    let message = match v.get_ref() {
        DeValue::Array(_) => format!("must be one [{name}] table, not a list [[{name}]]"),
        other => format!("must be a [{name}] table, not {}", describe(other)),
    };
    let hint = format!("write the settings below a single [{name}] header");
    report.problem(src, v.span().start, name, message, hint);
    None
}

/// The elements of `[[name]]`, each with its dotted key (`certificate[3]`, counted from
/// `first`, the number of entries earlier files had); anything but a list is reported.
fn entries<'v, 'i>(
    report: &mut Report,
    src: &Source<'_>,
    name: &str,
    v: &'v Value<'i>,
    first: usize,
) -> Vec<(&'v Value<'i>, String)> {
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (item, format!("{name}[{}]", first + i)))
            .collect(),
        DeValue::Table(_) => {
            report.problem(
                src,
                v.span().start,
                name,
                format!("[{name}] must be written [[{name}]], with double brackets"),
                format!("write [[{name}]]; each [[{name}]] header starts one more entry"),
            );
            Vec::new()
        }
        other => {
            report.problem(
                src,
                v.span().start,
                name,
                format!(
                    "must be a list of [[{name}]] entries, not {}",
                    describe(other)
                ),
                format!("write each entry below its own [[{name}]] header"),
            );
            Vec::new()
        }
    }
}

/// The table of one `[[name]]` element; anything else is reported against the element.
fn entry_table<'v, 'i>(
    report: &mut Report,
    src: &Source<'_>,
    prefix: &str,
    name: &str,
    item: &'v Value<'i>,
) -> Option<&'v DeTable<'i>> {
    if let DeValue::Table(table) = item.get_ref() {
        return Some(table);
    }
    report.problem(
        src,
        item.span().start,
        prefix,
        format!("must be a table, not {}", describe(item.get_ref())),
        format!("write each entry below its own [[{name}]] header"),
    );
    None
}

/// `[trust]`: set names the operator chooses, each a list of PEM files.
fn trust(report: &mut Report, config: &mut Config, src: &Source<'_>, v: &Value<'_>) {
    let Some(table) = section(report, src, "trust", v) else {
        return;
    };
    for (k, v) in table.iter() {
        let name = k.get_ref().to_string();
        let key = format!("trust.{name}");
        let example = format!("{name} = [\"/etc/certvakt/trust/{name}.pem\"]");
        let at = At {
            src,
            key: &key,
            example: &example,
        };
        if let Some(files) = strings(report, &at, v) {
            config
                .trust
                .insert(name, files.into_iter().map(PathBuf::from).collect());
            report.remember(src, key, k.span().start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuietWindow;

    #[test]
    fn lines_and_columns_are_one_based() {
        let text = "a\nbc\né = 1\n";
        assert_eq!(line_at(text.as_bytes(), 0), 1);
        assert_eq!(line_at(text.as_bytes(), 2), 2);
        assert_eq!(line_at(text.as_bytes(), 5), 3);
        assert_eq!(line_at(text.as_bytes(), 1000), 4);
        assert_eq!(column_at(text, 3), 2);
        // After the two-byte é, the column counts characters, not bytes.
        assert_eq!(column_at(text, 7), 2);
        // A file's Source finds the same line as counting from the start, at every offset.
        let path = std::path::Path::new("/etc/certvakt/certvakt.toml");
        for text in [text, "", "\n", "x", "\n\nab\n", "no newline at the end"] {
            let src = Source::new(path, text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    src.line(offset),
                    line_at(text.as_bytes(), offset),
                    "{text:?} {offset}"
                );
            }
        }
    }

    #[test]
    fn suggestions_are_close_only() {
        assert_eq!(closest("read_grop", &CONTROL_KEYS), Some("read_group"));
        assert_eq!(closest("sockets", &CONTROL_KEYS), Some("socket"));
        assert_eq!(closest("x", &CERTIFICATE_KEYS), None);
        assert_eq!(closest("listen_address", &METRICS_KEYS), None);
        assert_eq!(closest("deamon", TOP_KEYS), Some("daemon"));
    }

    #[test]
    fn covers_keys_inside_only() {
        assert!(covers("certificate[1]", "certificate[1].id"));
        assert!(covers("watch[0].paths", "watch[0].paths[2]"));
        assert!(covers("metrics.listen", "metrics.listen"));
        assert!(!covers("certificate[1]", "certificate[10].id"));
        assert!(!covers("daemon.state", "daemon.state_dir"));
    }

    /// The example lines of `fields`, one per line below `header`.
    fn examples<S>(header: &str, fields: &[Field<S>]) -> String {
        let lines: Vec<&str> = fields.iter().map(|f| f.example).collect();
        format!("{header}\n{}\n", lines.join("\n"))
    }

    #[test]
    fn every_row_is_read_and_its_example_is_a_valid_value() {
        // Every key of every table, written as its own hint's example, in one file: it loads
        // without a problem and each key lands on its own line. A row whose example or reader
        // is wrong, or that stores nothing, fails here.
        let text = [
            examples("[daemon]", DAEMON),
            examples("[control]", CONTROL),
            examples("[metrics]", METRICS),
            "[trust]\noces3 = [\"/etc/certvakt/trust/oces3.pem\"]\n".to_owned(),
            "smtp-ca = [\"/etc/certvakt/trust/smtp.pem\"]\n".to_owned(),
            "hooks-ca = [\"/etc/certvakt/trust/hooks.pem\"]\n".to_owned(),
            examples("[[watch]]", WATCH),
            examples("[[certificate]]", CERTIFICATE),
            examples("[mail]", routes::MAIL),
            examples("[notifications]", routes::NOTIFICATIONS),
        ]
        .concat();
        // One route per channel, each with the keys its channel takes (the common ones in the
        // first).
        let route = |keys: &[&str]| {
            let lines: Vec<&str> = routes::NOTIFY
                .iter()
                .filter(|f| keys.contains(&f.name))
                .map(|f| f.example)
                .collect();
            format!("[[notify]]\n{}\n", lines.join("\n"))
        };
        let text = [
            text,
            route(&[
                "name",
                "channel",
                "events",
                "certificates",
                "plugins",
                "to",
                "cc",
                "from",
            ]),
            route(&["url", "secret_file", "trust"])
                .replace("[[notify]]\n", "[[notify]]\nchannel = \"webhook\"\n"),
            route(&["command", "timeout"])
                .replace("[[notify]]\n", "[[notify]]\nchannel = \"command\"\n"),
        ]
        .concat();
        let dir = tempfile::tempdir().expect("tempdir");
        // The secret files the examples name must be there to be read.
        let mut text = text;
        for secret in ["smtp.pass", "webhook.key"] {
            let path = dir.path().join(secret);
            std::fs::write(&path, "s3cret\n").expect("write");
            text = text.replace(
                &format!("/etc/certvakt/secrets/{secret}"),
                &path.display().to_string(),
            );
        }
        // So must the web config (an empty one: plain HTTP, no users).
        let web = dir.path().join("web-config.yml");
        std::fs::write(&web, "").expect("write");
        text = text.replace("/etc/certvakt/web-config.yml", &web.display().to_string());
        let main = dir.path().join("certvakt.toml");
        std::fs::write(&main, &text).expect("write");
        let config = match load(&main) {
            Ok(config) => config,
            Err(problems) => panic!("{problems:#?}\n{text}"),
        };
        for (table, keys) in known_keys() {
            for key in keys {
                let dotted = match (table, *key) {
                    ("notify", "url" | "secret_file" | "trust") => format!("notify[1].{key}"),
                    ("notify", "command" | "timeout") => format!("notify[2].{key}"),
                    ("watch" | "certificate" | "notify", _) => format!("{table}[0].{key}"),
                    _ => format!("{table}.{key}"),
                };
                let line = config.key_origins.get(&dotted).map(|o| o.line);
                let expected = text
                    .lines()
                    .position(|l| l.starts_with(&format!("{key} = ")))
                    .map(|i| i + 1);
                assert!(line.is_some(), "{dotted} was not accepted:\n{text}");
                // Keys that two tables share (pkcs12_password_file) match the first; the rest
                // must sit on the line their example was written on.
                if !matches!(
                    (table, *key),
                    (_, "pkcs12_password_file")
                        | ("notify", "from" | "trust" | "timeout")
                        | ("notifications", "timeout")
                ) {
                    assert_eq!(line, expected, "{dotted}");
                }
            }
        }
        // Where each row stores its value (the other load tests cover the rest).
        let d = &config.daemon;
        assert_eq!(
            (d.retry_initial.as_secs(), d.retry_max.as_secs()),
            (300, 12 * 3600)
        );
        assert_eq!(
            d.quiet_hours,
            [QuietWindow {
                start: 480,
                end: 1050
            }]
        );
        assert_eq!(d.http01_listen, "0.0.0.0:80".parse().ok());
        let watch = &config.watch[0];
        assert!(watch.pkcs12_password_file.is_some());
        let r = &config.certificates[0].renewal;
        assert_eq!(
            (r.owner.as_deref(), r.group.as_deref()),
            (Some("root"), Some("root"))
        );
        assert_eq!((r.key_mode, r.cert_mode), (0o640, 0o640));
        assert_eq!(
            r.fullchain.as_deref(),
            Some(Path::new("/etc/certvakt/fmk/fullchain.pem"))
        );
        assert_eq!(r.hook_timeout.as_secs(), 120);
        assert_eq!(r.overlap.as_secs(), 7 * 86_400);
        assert!(r.plugin_mail);
        assert_eq!(r.settings.value()["cvr"], "25450442");
        let reload = ["/usr/bin/systemctl", "reload", "nginx"]
            .map(String::from)
            .to_vec();
        assert_eq!(r.pre_hook.as_ref(), Some(&reload));
        assert_eq!(r.post_hook.as_ref(), Some(&reload));
    }
}
