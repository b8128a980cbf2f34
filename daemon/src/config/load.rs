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
//! Each table with fixed keys is described once, as a list of [`Field`] rows ([`DAEMON`],
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

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use certvakt_plugin_api::profile::KeyAlgorithm;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::validate::{self, MAX_FILE_SIZE_LIMIT, Refusal};
use super::{
    Config, ControlSection, DaemonSection, KeyPolicy, ManagedCertificate, MetricsSection, Origin,
    Problem, QuietWindow, Watch,
};
use crate::bounded::{self, CONFIG_FILE_LIMIT, ReadError};
use crate::duration::HumanDuration;

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

/// One key a table accepts. Written with [`field!`], one row per key.
struct Field<S> {
    name: &'static str,
    /// A whole example line (`state_dir = "/var/lib/certvakt"`), quoted by hints.
    example: &'static str,
    /// Whether every entry must write it (only `[[watch]]` and `[[certificate]]` have such).
    required: bool,
    /// Reads the value and stores it in the table's target; `false` when it was refused (the
    /// reader has reported why).
    apply: fn(&mut Report, &At<'_>, &Value<'_>, &mut S) -> bool,
}

/// A [`Field`] row, written like the line it reads:
/// `field!(name = "example value", reader => |target, value| store)`, or
/// `field!(required name = ...)`. The reader is a function `(report, at, value) -> Option<T>`
/// that reports a refusal itself.
macro_rules! field {
    (required $name:ident = $example:literal, $read:expr => |$s:ident, $v:ident| $store:expr) => {
        Field {
            required: true,
            ..field!($name = $example, $read => |$s, $v| $store)
        }
    };
    ($name:ident = $example:literal, $read:expr => |$s:ident, $v:ident| $store:expr) => {
        Field {
            name: stringify!($name),
            example: concat!(stringify!($name), " = ", $example),
            required: false,
            apply: |report, at, value, $s| match ($read)(report, at, value) {
                Some($v) => {
                    $store;
                    true
                }
                None => false,
            },
        }
    };
}

/// `[daemon]`
const DAEMON: &[Field<DaemonSection>] = &[
    field!(state_dir = r#""/var/lib/certvakt""#, path => |d, v| d.state_dir = v),
    field!(plugin_dir = r#""/usr/lib/certvakt/plugins""#, path => |d, v| d.plugin_dir = v),
    field!(warn_before = r#""30d""#, warn_before => |d, v| d.warn_before = v),
    field!(log_level = r#""info""#, log_level => |d, v| d.log_level = v),
    field!(max_file_size = "1048576", max_file_size => |d, v| d.max_file_size = v),
    field!(retry_initial = r#""5m""#, duration => |d, v| d.retry_initial = v),
    field!(retry_max = r#""12h""#, duration => |d, v| d.retry_max = v),
    field!(quiet_hours = r#"["08:00-17:30"]"#, quiet_hours => |d, v| d.quiet_hours = v),
    field!(http01_listen = r#""0.0.0.0:80""#, listen_address => |d, v| d.http01_listen = v),
];

/// `[control]`
const CONTROL: &[Field<ControlSection>] = &[
    field!(socket = r#""/run/certvakt/control.sock""#, path => |c, v| c.socket = v),
    field!(admin_group = r#""certvakt-admin""#, string => |c, v| c.admin_group = v),
    field!(read_group = r#""certvakt""#, string => |c, v| c.read_group = v),
];

/// `[metrics]`
const METRICS: &[Field<MetricsSection>] =
    &[field!(listen = r#""127.0.0.1:9617""#, listen_address => |m, v| m.listen = v)];

/// `[[watch]]`
const WATCH: &[Field<Watch>] = &[
    field!(required paths = r#"["/etc/ssl/private/*.pem"]"#, strings => |w, v| w.paths = v),
    field!(pkcs12_password_file = r#""/etc/certvakt/secrets/keystore.pass""#, path
        => |w, v| w.pkcs12_password_file = Some(v)),
];

/// `[[certificate]]`
const CERTIFICATE: &[Field<ManagedCertificate>] = &[
    field!(required id = r#""fmk-prod""#, string => |c, v| c.id = v),
    field!(required cert = r#""/etc/certvakt/fmk/cert.pem""#, path => |c, v| c.cert = v),
    field!(key = r#""/etc/certvakt/fmk/key.pem""#, path => |c, v| c.key = Some(v)),
    field!(required plugin = r#""dk-fmk""#, string => |c, v| c.plugin = v),
    field!(pkcs12_password_file = r#""/etc/certvakt/secrets/fmk.pass""#, path
        => |c, v| c.pkcs12_password_file = Some(v)),
    field!(chain = r#""/etc/certvakt/fmk/chain.pem""#, path
        => |c, v| c.renewal.chain = Some(v)),
    field!(fullchain = r#""/etc/certvakt/fmk/fullchain.pem""#, path
        => |c, v| c.renewal.fullchain = Some(v)),
    field!(pkcs12 = r#""/etc/certvakt/fmk/keystore.p12""#, path
        => |c, v| c.renewal.pkcs12 = Some(v)),
    field!(renew_before = r#""30d""#, duration => |c, v| c.renewal.renew_before = Some(v)),
    field!(key_type = r#""rsa-3072""#, key_type => |c, v| c.renewal.key_type = Some(v)),
    field!(key_policy = r#""new""#, key_policy => |c, v| c.renewal.key_policy = v),
    field!(owner = r#""root""#, string => |c, v| c.renewal.owner = Some(v)),
    field!(group = r#""root""#, string => |c, v| c.renewal.group = Some(v)),
    field!(key_mode = r#""0640""#, file_mode => |c, v| c.renewal.key_mode = v),
    field!(cert_mode = r#""0640""#, file_mode => |c, v| c.renewal.cert_mode = v),
    field!(overlap = r#""7d""#, duration => |c, v| c.renewal.overlap = v),
    field!(issuer_trust = r#""oces3""#, string => |c, v| c.renewal.issuer_trust = Some(v)),
    field!(pre_hook = r#"["/usr/bin/systemctl", "reload", "nginx"]"#, command
        => |c, v| c.renewal.pre_hook = Some(v)),
    field!(deploy_hook = r#"["/usr/bin/systemctl", "reload", "nginx"]"#, command
        => |c, v| c.renewal.deploy_hook = Some(v)),
    field!(post_hook = r#"["/usr/bin/systemctl", "reload", "nginx"]"#, command
        => |c, v| c.renewal.post_hook = Some(v)),
    field!(hook_timeout = r#""2m""#, duration => |c, v| c.renewal.hook_timeout = v),
    field!(settings = r#"{ cvr = "25450442" }"#, settings => |c, v| c.renewal.settings = v),
];

/// The names of `fields`, in order (`N` is `fields.len()`): for hints and
/// [`super::known_keys`], which need them as `'static` lists.
const fn names<S, const N: usize>(fields: &[Field<S>]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = fields[i].name;
        i += 1;
    }
    out
}

static DAEMON_KEYS: [&str; DAEMON.len()] = names(DAEMON);
static CONTROL_KEYS: [&str; CONTROL.len()] = names(CONTROL);
static METRICS_KEYS: [&str; METRICS.len()] = names(METRICS);
static WATCH_KEYS: [&str; WATCH.len()] = names(WATCH);
static CERTIFICATE_KEYS: [&str; CERTIFICATE.len()] = names(CERTIFICATE);

/// The top-level tables, in the order [`super::known_keys`] lists them.
const TOP_KEYS: &[&str] = &[
    "daemon",
    "control",
    "metrics",
    "trust",
    "watch",
    "certificate",
];

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
                _ => &[],
            };
            (table, keys)
        })
        .collect()
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
        .map(|candidate| (strsim::levenshtein(name, candidate), *candidate))
        .filter(|&(distance, _)| distance <= 2 && distance < name.chars().count())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// What reading found besides the values: every problem, and the line of every accepted key.
#[derive(Default)]
struct Report {
    problems: Vec<Problem>,
    origins: BTreeMap<String, Origin>,
}

/// The value being read: its file, its dotted key and the example line its hints quote.
struct At<'a> {
    src: &'a Source<'a>,
    key: &'a str,
    example: &'a str,
}

impl At<'_> {
    /// The key's last part (`paths` of `watch[0].paths`).
    fn name(&self) -> &str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }
}

impl Report {
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

    /// A problem with the value at `at`, on the value's line.
    fn refuse(&mut self, at: &At<'_>, v: &Value<'_>, message: String, hint: String) {
        self.problem(at.src, v.span().start, at.key, message, hint);
    }

    fn remember(&mut self, src: &Source<'_>, key: String, offset: usize) {
        self.origins.insert(key, src.origin(offset));
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

    fn unknown_top(&mut self, src: &Source<'_>, k: &Key<'_>) {
        let name: &str = k.get_ref();
        let sections: [(&str, &[&str]); 3] = [
            ("[daemon]", &DAEMON_KEYS),
            ("[control]", &CONTROL_KEYS),
            ("[metrics]", &METRICS_KEYS),
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

    /// Reads `table` against its rows into `target`: each known key through its [`Field`],
    /// each unknown one reported with the nearest valid name. `prefix` is the table's dotted
    /// key (`daemon`, `certificate[2]`), `what` the way it is written (`[[certificate]]`).
    fn walk<S>(
        &mut self,
        src: &Source<'_>,
        prefix: &str,
        what: &str,
        fields: &[Field<S>],
        table: &DeTable<'_>,
        target: &mut S,
    ) {
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            let Some(field) = fields.iter().find(|f| f.name == name) else {
                let valid: Vec<&str> = fields.iter().map(|f| f.name).collect();
                self.unknown(src, k, prefix, what, &valid);
                continue;
            };
            let key = format!("{prefix}.{name}");
            let at = At {
                src,
                key: &key,
                example: field.example,
            };
            if (field.apply)(self, &at, v, target) {
                self.remember(src, key, k.span().start);
            }
        }
    }

    /// The required keys of a `[[name]]` entry that `table` lacks, reported at its header.
    fn missing<S>(
        &mut self,
        src: &Source<'_>,
        header: usize,
        prefix: &str,
        name: &str,
        fields: &[Field<S>],
        table: &DeTable<'_>,
    ) {
        for field in fields.iter().filter(|f| f.required) {
            if !table.contains_key(field.name) {
                self.problem(
                    src,
                    header,
                    &format!("{prefix}.{}", field.name),
                    format!("this [[{name}]] has no {}", field.name),
                    format!("add {} below this [[{name}]] header", field.example),
                );
            }
        }
    }
}

// The readers of the field rows: each returns the value, or reports why not and returns None.

fn string(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<String> {
    if let DeValue::String(s) = v.get_ref() {
        return Some(s.to_string());
    }
    r.refuse(
        at,
        v,
        format!("must be a string, not {}", describe(v.get_ref())),
        format!("write it in double quotes, e.g. {}", at.example),
    );
    None
}

fn path(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<PathBuf> {
    string(r, at, v).map(PathBuf::from)
}

/// A list of strings; an element of the wrong type is reported and kept as `""` so the
/// indices of the others stay right.
fn strings(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Vec<String>> {
    let DeValue::Array(items) = v.get_ref() else {
        let hint = match v.get_ref() {
            DeValue::String(s) => {
                format!(
                    "write a list, even for one entry: {} = [\"{s}\"]",
                    at.name()
                )
            }
            _ => format!("write a list of strings, e.g. {}", at.example),
        };
        let message = format!("must be a list of strings, not {}", describe(v.get_ref()));
        r.refuse(at, v, message, hint);
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let item_key = format!("{}[{j}]", at.key);
        if let DeValue::String(s) = item.get_ref() {
            out.push(s.to_string());
            r.remember(at.src, item_key, item.span().start);
            continue;
        }
        r.problem(
            at.src,
            item.span().start,
            &item_key,
            format!("must be a string, not {}", describe(item.get_ref())),
            "write each entry in double quotes".into(),
        );
        out.push(String::new());
    }
    Some(out)
}

/// A string parsed by `parse`; a refusal is reported against the value.
fn parsed<T>(
    r: &mut Report,
    at: &At<'_>,
    v: &Value<'_>,
    parse: impl FnOnce(&str) -> Result<T, Refusal>,
) -> Option<T> {
    let text = string(r, at, v)?;
    match parse(&text) {
        Ok(value) => Some(value),
        Err(refusal) => {
            r.refuse(at, v, refusal.message, refusal.hint);
            None
        }
    }
}

/// A duration in the SDK's syntax: bounded, so no later arithmetic on it can wrap.
fn duration_or(r: &mut Report, at: &At<'_>, v: &Value<'_>, hint: &str) -> Option<HumanDuration> {
    parsed(r, at, v, |text| {
        text.parse::<HumanDuration>().map_err(|e| Refusal {
            message: e.to_string(),
            hint: hint.to_owned(),
        })
    })
}

fn duration(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<HumanDuration> {
    duration_or(r, at, v, &format!("write a duration, e.g. {}", at.example))
}

fn warn_before(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<HumanDuration> {
    let hint = format!("write how long before expiry to warn, e.g. {}", at.example);
    duration_or(r, at, v, &hint)
}

fn log_level(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<log::LevelFilter> {
    parsed(r, at, v, validate::log_level)
}

fn listen_address(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Option<SocketAddr>> {
    parsed(r, at, v, validate::listen_address)
}

fn key_type(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<KeyAlgorithm> {
    parsed(r, at, v, validate::key_algorithm)
}

fn key_policy(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<KeyPolicy> {
    parsed(r, at, v, validate::key_policy)
}

fn file_mode(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<u32> {
    parsed(r, at, v, validate::file_mode)
}

fn max_file_size(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<u64> {
    let hint = || {
        format!(
            "write a size in bytes between 1 and {MAX_FILE_SIZE_LIMIT} (64 MiB), e.g. {}",
            at.example
        )
    };
    let DeValue::Integer(n) = v.get_ref() else {
        let message = format!("must be a number of bytes, not {}", describe(v.get_ref()));
        r.refuse(at, v, message, hint());
        return None;
    };
    // The range itself is checked by `validate`; here only what a u64 cannot hold.
    match u64::from_str_radix(n.as_str(), n.radix()) {
        Ok(size) => Some(size),
        Err(_) => {
            let message = format!("{n} is outside 1..={MAX_FILE_SIZE_LIMIT} bytes");
            r.refuse(at, v, message, hint());
            None
        }
    }
}

/// Local-time windows; each bad one is reported (the good ones are kept).
fn quiet_hours(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Vec<QuietWindow>> {
    let windows = strings(r, at, v)?;
    let mut parsed = Vec::new();
    for (j, text) in windows.iter().enumerate() {
        match text.parse::<QuietWindow>() {
            Ok(w) => parsed.push(w),
            Err(message) => r.problem(
                at.src,
                v.span().start,
                &format!("{}[{j}]", at.key),
                message,
                "write local times as \"HH:MM-HH:MM\", e.g. \"08:00-17:30\" or \"22:00-06:00\""
                    .into(),
            ),
        }
    }
    Some(parsed)
}

/// A command line: a non-empty list of strings whose first is an absolute program path.
fn command(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Vec<String>> {
    let argv = strings(r, at, v)?;
    if argv.first().is_some_and(|p| p.starts_with('/')) {
        return Some(argv);
    }
    r.refuse(
        at,
        v,
        "must start with the program's absolute path".into(),
        format!(
            "write the program and its arguments as a list, e.g. {} (no shell is involved; for \
             shell syntax use [\"/bin/sh\", \"-c\", \"...\"])",
            at.example
        ),
    );
    None
}

/// `[certificate.settings]`: the plugin's own table, handed to it as JSON.
fn settings(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<serde_json::Value> {
    if matches!(v.get_ref(), DeValue::Table(_)) {
        return Some(to_json(v.get_ref()));
    }
    r.refuse(
        at,
        v,
        format!("must be a table, not {}", describe(v.get_ref())),
        "write the plugin's settings below a [certificate.settings] header, after this \
         [[certificate]]'s other keys"
            .into(),
    );
    None
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
            examples("[[watch]]", WATCH),
            examples("[[certificate]]", CERTIFICATE),
        ]
        .concat();
        let dir = tempfile::tempdir().expect("tempdir");
        let main = dir.path().join("certvakt.toml");
        std::fs::write(&main, &text).expect("write");
        let config = match load(&main) {
            Ok(config) => config,
            Err(problems) => panic!("{problems:#?}\n{text}"),
        };
        for (table, keys) in known_keys() {
            for key in keys {
                let dotted = match table {
                    "watch" | "certificate" => format!("{table}[0].{key}"),
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
                if !matches!(*key, "pkcs12_password_file") {
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
        assert_eq!(r.settings["cvr"], "25450442");
        let reload = ["/usr/bin/systemctl", "reload", "nginx"]
            .map(String::from)
            .to_vec();
        assert_eq!(r.pre_hook.as_ref(), Some(&reload));
        assert_eq!(r.post_hook.as_ref(), Some(&reload));
    }
}
