//! Reading and merging the configuration files.
//!
//! Owns the file side of [`super::load`]: which files are read (the main file, then the
//! regular `*.toml` files in `conf.d/` beside it, not hidden ones, in byte order of their
//! names), how they merge (section keys: a later file wins; `[[watch]]` and `[[certificate]]`:
//! appended), and the problems only the text can show: unreadable files, TOML syntax, unknown
//! keys, wrong types, missing required keys and values the typed [`Config`] cannot hold.
//!
//! Each file is parsed into a spanned table and walked key by key, so one bad key or entry never
//! hides another; lines come from the byte offsets of the spans. Every accepted key's line is
//! recorded in [`Config::key_origins`]. An entry with a bad or missing key is still kept (with
//! an empty placeholder value) so that entry indices stay the ones the operator counts; the
//! placeholder never escapes, because such a load always ends in `Err`, and [`super::validate`]
//! problems about a key the loader already reported are dropped.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::validate::{self, MAX_FILE_SIZE_LIMIT, Refusal};
use super::{Config, KeyPolicy, ManagedCertificate, Origin, Problem, Watch};
use crate::duration::HumanDuration;

const TOP_KEYS: &[&str] = &[
    "daemon",
    "control",
    "metrics",
    "trust",
    "watch",
    "certificate",
];
const DAEMON_KEYS: &[&str] = &[
    "state_dir",
    "plugin_dir",
    "warn_before",
    "log_level",
    "max_file_size",
    "retry_initial",
    "retry_max",
    "quiet_hours",
    "http01_listen",
];
const CONTROL_KEYS: &[&str] = &["socket", "admin_group", "read_group"];
const METRICS_KEYS: &[&str] = &["listen"];
const WATCH_KEYS: &[&str] = &["paths", "pkcs12_password_file"];
const CERTIFICATE_KEYS: &[&str] = &[
    "id",
    "cert",
    "key",
    "plugin",
    "pkcs12_password_file",
    "chain",
    "fullchain",
    "pkcs12",
    "renew_before",
    "key_type",
    "key_policy",
    "owner",
    "group",
    "key_mode",
    "cert_mode",
    "overlap",
    "issuer_trust",
    "pre_hook",
    "deploy_hook",
    "post_hook",
    "hook_timeout",
    "settings",
];

/// See [`super::known_keys`].
pub(super) fn known_keys() -> Vec<(&'static str, &'static [&'static str])> {
    TOP_KEYS
        .iter()
        .map(|&table| {
            let keys = match table {
                "daemon" => DAEMON_KEYS,
                "control" => CONTROL_KEYS,
                "metrics" => METRICS_KEYS,
                "watch" => WATCH_KEYS,
                "certificate" => CERTIFICATE_KEYS,
                _ => &[],
            };
            (table, keys)
        })
        .collect()
}

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

/// See [`super::load`].
pub(super) fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let mut loader = Loader {
        config: Config::defaults(),
        problems: Vec::new(),
        order: Vec::new(),
    };
    loader.read(path, Role::Main);
    for dropin in loader.dropins(path) {
        loader.read(&dropin, Role::DropIn);
    }
    let Loader {
        config,
        mut problems,
        order,
    } = loader;

    let reported: Vec<String> = problems
        .iter()
        .filter(|p| !p.key.is_empty())
        .map(|p| p.key.clone())
        .collect();
    problems.extend(
        validate::validate(&config)
            .into_iter()
            .filter(|p| !reported.iter().any(|r| covers(r, &p.key))),
    );
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

/// One file's text, for turning byte offsets into lines.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        line_at(self.text.as_bytes(), offset)
    }

    fn origin(&self, offset: usize) -> Origin {
        Origin {
            file: self.path.to_path_buf(),
            line: self.line(offset),
        }
    }
}

/// 1-based line of the byte at `offset` (offsets past the end count as the last line).
fn line_at(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// 1-based column (in characters) of the byte at `offset`.
fn column_at(text: &str, offset: usize) -> usize {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..end].chars().count() + 1
}

fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// A TOML value as JSON, for plugin settings (which plugins read as JSON). Date-times become
/// their TOML text; integers that do not fit an i64 become strings.
fn to_json(value: &DeValue<'_>) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        DeValue::String(s) => Json::String(s.to_string()),
        DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
            .map(Json::from)
            .unwrap_or_else(|_| Json::String(n.as_str().to_owned())),
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Json::String(f.as_str().to_owned()), Json::Number),
        DeValue::Boolean(b) => Json::Bool(*b),
        DeValue::Datetime(d) => Json::String(d.to_string()),
        DeValue::Array(items) => Json::Array(items.iter().map(|i| to_json(i.get_ref())).collect()),
        DeValue::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_json(v.get_ref())))
                .collect(),
        ),
    }
}

/// The valid key nearest to `name`, if it is at most two edits away (and closer than the
/// length of `name`, so `x` does not suggest `id`).
fn closest<'k>(name: &str, valid: &[&'k str]) -> Option<&'k str> {
    valid
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|&(distance, _)| distance <= 2 && distance < name.chars().count())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

struct Loader {
    config: Config,
    problems: Vec<Problem>,
    /// Every file and folder looked at, in reading order: problems are sorted by it.
    order: Vec<PathBuf>,
}

impl Loader {
    fn problem(
        &mut self,
        src: &Source<'_>,
        offset: usize,
        key: &str,
        message: String,
        hint: String,
    ) {
        self.problems.push(Problem {
            file: src.path.to_path_buf(),
            line: Some(src.line(offset)),
            key: key.to_owned(),
            message,
            hint,
        });
    }

    fn remember(&mut self, src: &Source<'_>, key: String, offset: usize) {
        self.config.key_origins.insert(key, src.origin(offset));
    }

    /// Reads one file and merges what it says into `self.config`.
    fn read(&mut self, path: &Path, role: Role) {
        self.order.push(path.to_path_buf());
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => return self.unreadable(path, role, &e),
        };
        self.config.files.push(path.to_path_buf());
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                self.problems.push(Problem {
                    file: path.to_path_buf(),
                    line: Some(line_at(e.as_bytes(), offset)),
                    key: String::new(),
                    message: "the file is not valid UTF-8".into(),
                    hint: "save it as UTF-8 text".into(),
                });
                return;
            }
        };
        let src = Source { path, text: &text };
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
            self.problems.push(Problem {
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

    fn unreadable(&mut self, path: &Path, role: Role, e: &io::Error) {
        let (message, hint) = match (role, e.kind()) {
            (Role::Main, io::ErrorKind::NotFound) => (
                "the configuration file does not exist".to_owned(),
                "create it (an empty file means all defaults), or pass --config with the path \
                 of the configuration file",
            ),
            (Role::Main, io::ErrorKind::PermissionDenied) => (
                "permission denied reading the configuration file".to_owned(),
                "make it readable by the user certvakt runs as (e.g. root:certvakt, mode 0640), \
                 or pass --config with another file",
            ),
            (Role::Main, _) => (
                format!("cannot read the configuration file: {e}"),
                "make it a readable regular file, or pass --config with the path of the \
                 configuration file",
            ),
            (Role::DropIn, _) => (
                format!("cannot read this drop-in file: {e}"),
                "make it readable by the user certvakt runs as, or move it out of conf.d",
            ),
        };
        self.problems.push(Problem {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message,
            hint: hint.into(),
        });
    }

    /// The drop-ins beside `main`, in byte order of their names. A missing folder is fine.
    fn dropins(&mut self, main: &Path) -> Vec<PathBuf> {
        let Some(parent) = main.parent() else {
            return Vec::new();
        };
        let dir = parent.join("conf.d");
        let entries = match fs::read_dir(&dir) {
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
            if name.starts_with(b".") || !name.ends_with(b".toml") {
                continue;
            }
            let path = entry.path();
            match fs::metadata(&path) {
                Ok(meta) if !meta.is_file() => {} // a folder or device named *.toml
                // A dangling symlink is reported when reading it fails.
                Ok(_) | Err(_) => files.push(path),
            }
        }
        files.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
        files
    }

    fn folder_unreadable(&mut self, dir: &Path, e: &io::Error) {
        if !self.order.iter().any(|p| p == dir) {
            self.order.push(dir.to_path_buf());
        }
        self.problems.push(Problem {
            file: dir.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read the drop-in folder: {e}"),
            hint: "make it a folder readable by the user certvakt runs as, or remove it".into(),
        });
    }

    fn root(&mut self, src: &Source<'_>, root: &DeTable<'_>) {
        for (k, v) in root.iter() {
            match k.get_ref().as_ref() {
                "daemon" => self.daemon(src, v),
                "control" => self.control(src, v),
                "metrics" => self.metrics(src, v),
                "trust" => self.trust(src, v),
                "watch" => self.entries(src, "watch", v, Self::watch),
                "certificate" => self.entries(src, "certificate", v, Self::certificate),
                _ => self.unknown_top(src, k),
            }
        }
    }

    fn unknown_top(&mut self, src: &Source<'_>, k: &Key<'_>) {
        let name: &str = k.get_ref();
        let sections = [
            ("[daemon]", DAEMON_KEYS),
            ("[control]", CONTROL_KEYS),
            ("[metrics]", METRICS_KEYS),
        ];
        let hint = if let Some(suggestion) = closest(name, TOP_KEYS) {
            format!(
                "did you mean \"{suggestion}\"? Valid sections: {}",
                TOP_KEYS.join(", ")
            )
        } else if let Some((section, _)) = sections.iter().find(|(_, keys)| keys.contains(&name)) {
            format!("\"{name}\" belongs in {section}: move it below the {section} header")
        } else {
            format!(
                "remove it or fix its name; valid sections: {}",
                TOP_KEYS.join(", ")
            )
        };
        self.problem(
            src,
            k.span().start,
            name,
            format!("unknown section or key \"{name}\""),
            hint,
        );
    }

    fn unknown(
        &mut self,
        src: &Source<'_>,
        k: &Key<'_>,
        prefix: &str,
        table: &str,
        valid: &[&str],
    ) {
        let name: &str = k.get_ref();
        let list = valid.join(", ");
        let hint = match closest(name, valid) {
            Some(suggestion) => {
                format!("did you mean \"{suggestion}\"? Valid keys in {table}: {list}")
            }
            None => format!("remove it or fix its name; valid keys in {table}: {list}"),
        };
        self.problem(
            src,
            k.span().start,
            &format!("{prefix}.{name}"),
            format!("unknown key \"{name}\" in {table}"),
            hint,
        );
    }

    fn section<'v, 'i>(
        &mut self,
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
        self.problem(src, v.span().start, name, message, hint);
        None
    }

    fn string(
        &mut self,
        src: &Source<'_>,
        key: &str,
        v: &Value<'_>,
        example: &str,
    ) -> Option<String> {
        if let DeValue::String(s) = v.get_ref() {
            return Some(s.to_string());
        }
        self.problem(
            src,
            v.span().start,
            key,
            format!("must be a string, not {}", describe(v.get_ref())),
            format!("write it in double quotes, e.g. {example}"),
        );
        None
    }

    fn path(
        &mut self,
        src: &Source<'_>,
        key: &str,
        v: &Value<'_>,
        example: &str,
    ) -> Option<PathBuf> {
        self.string(src, key, v, example).map(PathBuf::from)
    }

    /// A list of strings; an element of the wrong type is reported and kept as `""` so the
    /// indices of the others stay right.
    fn strings(
        &mut self,
        src: &Source<'_>,
        key: &str,
        v: &Value<'_>,
        example: &str,
    ) -> Option<Vec<String>> {
        let DeValue::Array(items) = v.get_ref() else {
            let hint = match v.get_ref() {
                DeValue::String(s) => {
                    let name = key.rsplit('.').next().unwrap_or(key);
                    format!("write a list, even for one entry: {name} = [\"{s}\"]")
                }
                _ => format!("write a list of strings, e.g. {example}"),
            };
            let message = format!("must be a list of strings, not {}", describe(v.get_ref()));
            self.problem(src, v.span().start, key, message, hint);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (j, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{j}]");
            if let DeValue::String(s) = item.get_ref() {
                out.push(s.to_string());
                self.remember(src, item_key, item.span().start);
                continue;
            }
            self.problem(
                src,
                item.span().start,
                &item_key,
                format!("must be a string, not {}", describe(item.get_ref())),
                "write each entry in double quotes".into(),
            );
            out.push(String::new());
        }
        Some(out)
    }

    fn refused(&mut self, src: &Source<'_>, key: &str, v: &Value<'_>, refusal: Refusal) {
        self.problem(src, v.span().start, key, refusal.message, refusal.hint);
    }

    fn daemon(&mut self, src: &Source<'_>, v: &Value<'_>) {
        let Some(table) = self.section(src, "daemon", v) else {
            return;
        };
        for (k, v) in table.iter() {
            let key = format!("daemon.{}", k.get_ref());
            let at = k.span().start;
            match k.get_ref().as_ref() {
                "state_dir" => {
                    if let Some(p) = self.path(src, &key, v, "state_dir = \"/var/lib/certvakt\"") {
                        self.config.daemon.state_dir = p;
                        self.remember(src, key, at);
                    }
                }
                "plugin_dir" => {
                    let example = "plugin_dir = \"/usr/lib/certvakt/plugins\"";
                    if let Some(p) = self.path(src, &key, v, example) {
                        self.config.daemon.plugin_dir = p;
                        self.remember(src, key, at);
                    }
                }
                "warn_before" => {
                    let Some(text) = self.string(src, &key, v, "warn_before = \"30d\"") else {
                        continue;
                    };
                    match text.parse::<HumanDuration>() {
                        Ok(duration) => {
                            self.config.daemon.warn_before = duration;
                            self.remember(src, key, at);
                        }
                        Err(e) => {
                            let refusal = Refusal {
                                message: e.to_string(),
                                hint: "write how long before expiry to warn, e.g. \
                                       warn_before = \"30d\""
                                    .into(),
                            };
                            self.refused(src, &key, v, refusal);
                        }
                    }
                }
                "log_level" => {
                    let Some(text) = self.string(src, &key, v, "log_level = \"info\"") else {
                        continue;
                    };
                    match validate::log_level(&text) {
                        Ok(level) => {
                            self.config.daemon.log_level = level;
                            self.remember(src, key, at);
                        }
                        Err(refusal) => self.refused(src, &key, v, refusal),
                    }
                }
                "max_file_size" => self.max_file_size(src, key, at, v),
                "http01_listen" => {
                    let Some(text) = self.string(src, &key, v, "http01_listen = \"0.0.0.0:80\"")
                    else {
                        continue;
                    };
                    match validate::listen_address(&text) {
                        Ok(listen) => {
                            self.config.daemon.http01_listen = listen;
                            self.remember(src, key, at);
                        }
                        Err(refusal) => self.refused(src, &key, v, refusal),
                    }
                }
                "quiet_hours" => {
                    let example = "quiet_hours = [\"08:00-17:30\"]";
                    if let Some(windows) = self.strings(src, &key, v, example) {
                        let mut parsed = Vec::new();
                        for (j, text) in windows.iter().enumerate() {
                            match text.parse::<super::QuietWindow>() {
                                Ok(w) => parsed.push(w),
                                Err(message) => self.problem(
                                    src,
                                    v.span().start,
                                    &format!("{key}[{j}]"),
                                    message,
                                    "write local times as \"HH:MM-HH:MM\", e.g. \"08:00-17:30\" or \"22:00-06:00\"".into(),
                                ),
                            }
                        }
                        self.config.daemon.quiet_hours = parsed;
                        self.remember(src, key, at);
                    }
                }
                "retry_initial" | "retry_max" => {
                    let example = format!("{} = \"5m\"", k.get_ref());
                    if let Some(d) = self.duration(src, &key, v, &example) {
                        if k.get_ref().as_ref() == "retry_initial" {
                            self.config.daemon.retry_initial = d;
                        } else {
                            self.config.daemon.retry_max = d;
                        }
                        self.remember(src, key, at);
                    }
                }
                _ => self.unknown(src, k, "daemon", "[daemon]", DAEMON_KEYS),
            }
        }
    }

    fn max_file_size(&mut self, src: &Source<'_>, key: String, at: usize, v: &Value<'_>) {
        let hint = || {
            format!(
                "write a size in bytes between 1 and {MAX_FILE_SIZE_LIMIT} (64 MiB), e.g. \
                 max_file_size = 1048576"
            )
        };
        let DeValue::Integer(n) = v.get_ref() else {
            let message = format!("must be a number of bytes, not {}", describe(v.get_ref()));
            return self.problem(src, v.span().start, &key, message, hint());
        };
        // The range itself is checked by `validate`; here only what a u64 cannot hold.
        match u64::from_str_radix(n.as_str(), n.radix()) {
            Ok(size) => {
                self.config.daemon.max_file_size = size;
                self.remember(src, key, at);
            }
            Err(_) => {
                let message = format!("{n} is outside 1..={MAX_FILE_SIZE_LIMIT} bytes");
                self.problem(src, v.span().start, &key, message, hint());
            }
        }
    }

    fn control(&mut self, src: &Source<'_>, v: &Value<'_>) {
        let Some(table) = self.section(src, "control", v) else {
            return;
        };
        for (k, v) in table.iter() {
            let key = format!("control.{}", k.get_ref());
            let at = k.span().start;
            match k.get_ref().as_ref() {
                "socket" => {
                    let example = "socket = \"/run/certvakt/control.sock\"";
                    if let Some(p) = self.path(src, &key, v, example) {
                        self.config.control.socket = p;
                        self.remember(src, key, at);
                    }
                }
                "admin_group" => {
                    let example = "admin_group = \"certvakt-admin\"";
                    if let Some(s) = self.string(src, &key, v, example) {
                        self.config.control.admin_group = s;
                        self.remember(src, key, at);
                    }
                }
                "read_group" => {
                    if let Some(s) = self.string(src, &key, v, "read_group = \"certvakt\"") {
                        self.config.control.read_group = s;
                        self.remember(src, key, at);
                    }
                }
                _ => self.unknown(src, k, "control", "[control]", CONTROL_KEYS),
            }
        }
    }

    fn metrics(&mut self, src: &Source<'_>, v: &Value<'_>) {
        let Some(table) = self.section(src, "metrics", v) else {
            return;
        };
        for (k, v) in table.iter() {
            let key = format!("metrics.{}", k.get_ref());
            let at = k.span().start;
            match k.get_ref().as_ref() {
                "listen" => {
                    let Some(text) = self.string(src, &key, v, "listen = \"127.0.0.1:9617\"")
                    else {
                        continue;
                    };
                    match validate::listen_address(&text) {
                        Ok(listen) => {
                            self.config.metrics.listen = listen;
                            self.remember(src, key, at);
                        }
                        Err(refusal) => self.refused(src, &key, v, refusal),
                    }
                }
                _ => self.unknown(src, k, "metrics", "[metrics]", METRICS_KEYS),
            }
        }
    }

    /// `[trust]`: named sets of trust anchor files, `name = ["/path/ca.pem", ...]`.
    fn trust(&mut self, src: &Source<'_>, v: &Value<'_>) {
        let Some(table) = self.section(src, "trust", v) else {
            return;
        };
        for (k, v) in table.iter() {
            let name = k.get_ref().to_string();
            let key = format!("trust.{name}");
            let at = k.span().start;
            let example = format!("{name} = [\"/etc/certvakt/trust/{name}.pem\"]");
            if let Some(files) = self.strings(src, &key, v, &example) {
                self.config
                    .trust
                    .insert(name, files.into_iter().map(PathBuf::from).collect());
                self.remember(src, key, at);
            }
        }
    }

    /// `[[watch]]` or `[[certificate]]`: a list whose elements `each` reads.
    fn entries(
        &mut self,
        src: &Source<'_>,
        name: &str,
        v: &Value<'_>,
        each: fn(&mut Self, &Source<'_>, &Value<'_>),
    ) {
        match v.get_ref() {
            DeValue::Array(items) => {
                for item in items.iter() {
                    each(self, src, item);
                }
            }
            DeValue::Table(_) => self.problem(
                src,
                v.span().start,
                name,
                format!("[{name}] must be written [[{name}]], with double brackets"),
                format!("write [[{name}]]; each [[{name}]] header starts one more entry"),
            ),
            other => self.problem(
                src,
                v.span().start,
                name,
                format!(
                    "must be a list of [[{name}]] entries, not {}",
                    describe(other)
                ),
                format!("write each entry below its own [[{name}]] header"),
            ),
        }
    }

    /// The table of one `[[name]]` element; anything else is reported against the element.
    fn entry_table<'v, 'i>(
        &mut self,
        src: &Source<'_>,
        prefix: &str,
        name: &str,
        item: &'v Value<'i>,
    ) -> Option<&'v DeTable<'i>> {
        if let DeValue::Table(table) = item.get_ref() {
            return Some(table);
        }
        self.problem(
            src,
            item.span().start,
            prefix,
            format!("must be a table, not {}", describe(item.get_ref())),
            format!("write each entry below its own [[{name}]] header"),
        );
        None
    }

    fn missing(&mut self, src: &Source<'_>, header: usize, key: String, name: &str, example: &str) {
        let message = format!(
            "this [[{name}]] has no {}",
            key.rsplit('.').next().unwrap_or("")
        );
        let hint = format!("add {example} below this [[{name}]] header");
        self.problem(src, header, &key, message, hint);
    }

    fn watch(&mut self, src: &Source<'_>, item: &Value<'_>) {
        let prefix = format!("watch[{}]", self.config.watch.len());
        let header = item.span().start;
        let mut watch = Watch {
            paths: Vec::new(),
            pkcs12_password_file: None,
            origin: src.origin(header),
        };
        if let Some(table) = self.entry_table(src, &prefix, "watch", item) {
            for (k, v) in table.iter() {
                let key = format!("{prefix}.{}", k.get_ref());
                let at = k.span().start;
                match k.get_ref().as_ref() {
                    "paths" => {
                        let example = "paths = [\"/etc/ssl/private/*.pem\"]";
                        if let Some(paths) = self.strings(src, &key, v, example) {
                            watch.paths = paths;
                            self.remember(src, key, at);
                        }
                    }
                    "pkcs12_password_file" => {
                        let example =
                            "pkcs12_password_file = \"/etc/certvakt/secrets/keystore.pass\"";
                        if let Some(p) = self.path(src, &key, v, example) {
                            watch.pkcs12_password_file = Some(p);
                            self.remember(src, key, at);
                        }
                    }
                    _ => self.unknown(src, k, &prefix, "[[watch]]", WATCH_KEYS),
                }
            }
            if !table.contains_key("paths") {
                let example = "paths = [\"/etc/ssl/private/*.pem\"]";
                self.missing(src, header, format!("{prefix}.paths"), "watch", example);
            }
        }
        self.config.watch.push(watch);
    }

    /// A string parsed by `parse`; a refusal is reported against the value.
    fn parsed<T>(
        &mut self,
        src: &Source<'_>,
        key: &str,
        v: &Value<'_>,
        example: &str,
        parse: impl FnOnce(&str) -> Result<T, Refusal>,
    ) -> Option<T> {
        let text = self.string(src, key, v, example)?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(refusal) => {
                self.refused(src, key, v, refusal);
                None
            }
        }
    }

    fn duration(
        &mut self,
        src: &Source<'_>,
        key: &str,
        v: &Value<'_>,
        example: &str,
    ) -> Option<HumanDuration> {
        self.parsed(src, key, v, example, |text| {
            text.parse::<HumanDuration>().map_err(|e| Refusal {
                message: e.to_string(),
                hint: format!("write a duration, e.g. {example}"),
            })
        })
    }

    /// A command line: a non-empty list of strings whose first is an absolute program path.
    fn command(
        &mut self,
        src: &Source<'_>,
        key: &str,
        v: &Value<'_>,
        example: &str,
    ) -> Option<Vec<String>> {
        let argv = self.strings(src, key, v, example)?;
        if argv.first().is_some_and(|p| p.starts_with('/')) {
            return Some(argv);
        }
        self.problem(
            src,
            v.span().start,
            key,
            "must start with the program's absolute path".into(),
            format!(
                "write the program and its arguments as a list, e.g. {example} (no shell is \
                 involved; for shell syntax use [\"/bin/sh\", \"-c\", \"...\"])"
            ),
        );
        None
    }

    /// The optional renewal keys of a `[[certificate]]`. Returns whether `name` was taken.
    fn renewal_key(
        &mut self,
        src: &Source<'_>,
        key: &str,
        name: &str,
        v: &Value<'_>,
        cert: &mut ManagedCertificate,
    ) -> bool {
        let r = &mut cert.renewal;
        match name {
            "chain" | "fullchain" | "pkcs12" => {
                let example = format!("{name} = \"/etc/certvakt/fmk/{name}.pem\"");
                let Some(path) = self.path(src, key, v, &example) else {
                    return false;
                };
                match name {
                    "chain" => r.chain = Some(path),
                    "fullchain" => r.fullchain = Some(path),
                    _ => r.pkcs12 = Some(path),
                }
            }
            "renew_before" | "overlap" | "hook_timeout" => {
                let example = format!("{name} = \"30d\"");
                let Some(d) = self.duration(src, key, v, &example) else {
                    return false;
                };
                match name {
                    "renew_before" => r.renew_before = Some(d),
                    "overlap" => r.overlap = d,
                    _ => r.hook_timeout = d,
                }
            }
            "key_type" => {
                let Some(alg) = self.parsed(
                    src,
                    key,
                    v,
                    "key_type = \"rsa-3072\"",
                    validate::key_algorithm,
                ) else {
                    return false;
                };
                r.key_type = Some(alg);
            }
            "key_policy" => {
                let parse = |text: &str| match text {
                    "new" => Ok(KeyPolicy::New),
                    "reuse" => Ok(KeyPolicy::Reuse),
                    _ => Err(Refusal {
                        message: format!("\"{text}\" is not a key policy"),
                        hint: "write key_policy = \"new\" (a new key every renewal) or \"reuse\""
                            .into(),
                    }),
                };
                let Some(policy) = self.parsed(src, key, v, "key_policy = \"new\"", parse) else {
                    return false;
                };
                r.key_policy = policy;
            }
            "issuer_trust" => {
                let Some(text) = self.string(src, key, v, "issuer_trust = \"oces3\"") else {
                    return false;
                };
                r.issuer_trust = Some(text);
            }
            "owner" | "group" => {
                let example = format!("{name} = \"root\"");
                let Some(text) = self.string(src, key, v, &example) else {
                    return false;
                };
                match name {
                    "owner" => r.owner = Some(text),
                    _ => r.group = Some(text),
                }
            }
            "key_mode" | "cert_mode" => {
                let example = format!("{name} = \"0640\"");
                let Some(mode) = self.parsed(src, key, v, &example, validate::file_mode) else {
                    return false;
                };
                match name {
                    "key_mode" => r.key_mode = mode,
                    _ => r.cert_mode = mode,
                }
            }
            "pre_hook" | "deploy_hook" | "post_hook" => {
                let example = format!("{name} = [\"/usr/bin/systemctl\", \"reload\", \"nginx\"]");
                let Some(argv) = self.command(src, key, v, &example) else {
                    return false;
                };
                match name {
                    "pre_hook" => r.pre_hook = Some(argv),
                    "deploy_hook" => r.deploy_hook = Some(argv),
                    _ => r.post_hook = Some(argv),
                }
            }
            "settings" => {
                if !matches!(v.get_ref(), DeValue::Table(_)) {
                    self.problem(
                        src,
                        v.span().start,
                        key,
                        format!("must be a table, not {}", describe(v.get_ref())),
                        "write the plugin's settings below a [certificate.settings] header, \
                         after this [[certificate]]'s other keys"
                            .into(),
                    );
                    return false;
                }
                r.settings = to_json(v.get_ref());
            }
            _ => return false,
        }
        true
    }

    fn certificate(&mut self, src: &Source<'_>, item: &Value<'_>) {
        let prefix = format!("certificate[{}]", self.config.certificates.len());
        let header = item.span().start;
        let mut cert = ManagedCertificate::new("", PathBuf::new(), "", src.origin(header));
        if let Some(table) = self.entry_table(src, &prefix, "certificate", item) {
            for (k, v) in table.iter() {
                let key = format!("{prefix}.{}", k.get_ref());
                let at = k.span().start;
                match k.get_ref().as_ref() {
                    "id" => {
                        if let Some(s) = self.string(src, &key, v, "id = \"fmk-prod\"") {
                            cert.id = s;
                            self.remember(src, key, at);
                        }
                    }
                    "cert" => {
                        let example = "cert = \"/etc/certvakt/fmk/cert.pem\"";
                        if let Some(p) = self.path(src, &key, v, example) {
                            cert.cert = p;
                            self.remember(src, key, at);
                        }
                    }
                    "key" => {
                        let example = "key = \"/etc/certvakt/fmk/key.pem\"";
                        if let Some(p) = self.path(src, &key, v, example) {
                            cert.key = Some(p);
                            self.remember(src, key, at);
                        }
                    }
                    "plugin" => {
                        if let Some(s) = self.string(src, &key, v, "plugin = \"dk-fmk\"") {
                            cert.plugin = s;
                            self.remember(src, key, at);
                        }
                    }
                    "pkcs12_password_file" => {
                        let example = "pkcs12_password_file = \"/etc/certvakt/secrets/fmk.pass\"";
                        if let Some(p) = self.path(src, &key, v, example) {
                            cert.pkcs12_password_file = Some(p);
                            self.remember(src, key, at);
                        }
                    }
                    name if CERTIFICATE_KEYS.contains(&name) => {
                        if self.renewal_key(src, &key, name, v, &mut cert) {
                            self.remember(src, key, at);
                        }
                    }
                    _ => self.unknown(src, k, &prefix, "[[certificate]]", CERTIFICATE_KEYS),
                }
            }
            let required = [
                ("id", "id = \"fmk-prod\""),
                ("cert", "cert = \"/etc/certvakt/fmk/cert.pem\""),
                ("plugin", "plugin = \"dk-fmk\""),
            ];
            for (name, example) in required {
                if !table.contains_key(name) {
                    let key = format!("{prefix}.{name}");
                    self.missing(src, header, key, "certificate", example);
                }
            }
        }
        self.config.certificates.push(cert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn suggestions_are_close_only() {
        assert_eq!(edit_distance("read_grop", "read_group"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("read_grop", CONTROL_KEYS), Some("read_group"));
        assert_eq!(closest("sockets", CONTROL_KEYS), Some("socket"));
        assert_eq!(closest("x", CERTIFICATE_KEYS), None);
        assert_eq!(closest("listen_address", METRICS_KEYS), None);
    }

    #[test]
    fn covers_keys_inside_only() {
        assert!(covers("certificate[1]", "certificate[1].id"));
        assert!(covers("watch[0].paths", "watch[0].paths[2]"));
        assert!(covers("metrics.listen", "metrics.listen"));
        assert!(!covers("certificate[1]", "certificate[10].id"));
        assert!(!covers("daemon.state", "daemon.state_dir"));
    }
}
