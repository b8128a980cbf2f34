//! The values of the configuration's keys: how each kind of value is read from the TOML (with
//! its span, for the line), and the report that collects every problem and the line of every
//! accepted key. The loader ([`super::load`]) walks the tables; the readers here are what its
//! field rows name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certvakt_plugin_api::profile::KeyAlgorithm;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

pub(super) use super::validate::closest;
use super::validate::{self, MAX_FILE_SIZE_LIMIT, Refusal};
use super::{
    ControlSection, DaemonSection, KeyPolicy, ManagedCertificate, MetricsSection, Origin,
    PRIMARY_ROLE, Problem, QuietWindow, SET_ROLES, SetMember, StartTls, VerifyEndpoint, Watch,
};
use crate::duration::HumanDuration;

pub(super) type Value<'i> = Spanned<DeValue<'i>>;
pub(super) type Key<'i> = Spanned<DeString<'i>>;

/// One key a table accepts. Written with [`field!`], one row per key.
pub(super) struct Field<S> {
    pub(super) name: &'static str,
    /// A whole example line (`state_dir = "/var/lib/certvakt"`), quoted by hints.
    pub(super) example: &'static str,
    /// Whether every entry must write it (only `[[watch]]` and `[[certificate]]` have such).
    pub(super) required: bool,
    /// Reads the value and stores it in the table's target; `false` when it was refused (the
    /// reader has reported why).
    pub(super) apply: fn(&mut Report, &At<'_>, &Value<'_>, &mut S) -> bool,
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
pub(super) const DAEMON: &[Field<DaemonSection>] = &[
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
pub(super) const CONTROL: &[Field<ControlSection>] = &[
    field!(socket = r#""/run/certvakt/control.sock""#, path => |c, v| c.socket = v),
    field!(admin_group = r#""certvakt-admin""#, string => |c, v| c.admin_group = v),
    field!(read_group = r#""certvakt""#, string => |c, v| c.read_group = v),
];

/// `[metrics]`
pub(super) const METRICS: &[Field<MetricsSection>] = &[
    field!(listen = r#""127.0.0.1:9617""#, listen_address => |m, v| m.listen = v),
    field!(web_config = r#""/etc/certvakt/web-config.yml""#, path
        => |m, v| m.web_config = Some(v)),
];

/// `[[watch]]`
pub(super) const WATCH: &[Field<Watch>] = &[
    field!(required paths = r#"["/etc/ssl/private/*.pem"]"#, strings => |w, v| w.paths = v),
    field!(pkcs12_password_file = r#""/etc/certvakt/secrets/keystore.pass""#, path
        => |w, v| w.pkcs12_password_file = Some(v)),
];

/// `[[certificate]]`
pub(super) const CERTIFICATE: &[Field<ManagedCertificate>] = &[
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
    field!(plugin_mail = "true", boolean => |c, v| c.renewal.plugin_mail = v),
    field!(settings = r#"{ cvr = "25450442" }"#, settings => |c, v| c.renewal.settings = v),
    field!(legacy_cert = r#""/etc/certvakt/nhn/legacy-cert.pem""#, path
        => |c, v| c.renewal.legacy_cert = Some(v)),
    field!(legacy_key = r#""/etc/certvakt/nhn/legacy-key.pem""#, path
        => |c, v| c.renewal.legacy_key = Some(v)),
    field!(set = r#"{ signing = { cert = "/etc/certvakt/nhn/signing.pem" } }"#, set
        => |c, v| c.renewal.set = v),
    field!(verify = r#"[{ address = "127.0.0.1:443", sni = "apotek.example.dk" }]"#, verify
        => |c, v| c.renewal.verify_mut().endpoints = v),
    field!(verify_window = r#""2m""#, verify_window => |c, v| c.renewal.verify_mut().window = v),
    field!(rollback_on_failed_verify = "true", boolean
        => |c, v| c.renewal.verify_mut().rollback = v),
];

/// `[[certificate.verify]]`
pub(super) const VERIFY_ENDPOINT: &[Field<VerifyEndpoint>] = &[
    field!(required address = r#""127.0.0.1:443""#, parsed_address => |e, v| e.address = v),
    field!(sni = r#""apotek.example.dk""#, sni => |e, v| e.sni = Some(v)),
    field!(starttls = r#""smtp""#, starttls => |e, v| e.starttls = Some(v)),
];

/// `[certificate.set.<role>]`
pub(super) const SET_MEMBER: &[Field<SetMember>] = &[
    field!(required cert = r#""/etc/certvakt/nhn/signing.pem""#, path => |m, v| m.cert = v),
    field!(key = r#""/etc/certvakt/nhn/signing.key""#, path => |m, v| m.key = Some(v)),
    field!(chain = r#""/etc/certvakt/nhn/signing-chain.pem""#, path => |m, v| m.chain = Some(v)),
    field!(fullchain = r#""/etc/certvakt/nhn/signing-full.pem""#, path
        => |m, v| m.fullchain = Some(v)),
    field!(pkcs12 = r#""/etc/certvakt/nhn/signing.p12""#, path => |m, v| m.pkcs12 = Some(v)),
    field!(legacy_cert = r#""/etc/certvakt/nhn/legacy-encryption.pem""#, path
        => |m, v| m.legacy_cert = Some(v)),
    field!(legacy_key = r#""/etc/certvakt/nhn/legacy-encryption.key""#, path
        => |m, v| m.legacy_key = Some(v)),
];

/// The names of `fields`, in order (`N` is `fields.len()`): for hints and
/// [`super::known_keys`], which need them as `'static` lists.
pub(super) const fn names<S, const N: usize>(fields: &[Field<S>]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = fields[i].name;
        i += 1;
    }
    out
}

pub(super) static DAEMON_KEYS: [&str; DAEMON.len()] = names(DAEMON);
pub(super) static CONTROL_KEYS: [&str; CONTROL.len()] = names(CONTROL);
pub(super) static METRICS_KEYS: [&str; METRICS.len()] = names(METRICS);
pub(super) static WATCH_KEYS: [&str; WATCH.len()] = names(WATCH);
pub(super) static CERTIFICATE_KEYS: [&str; CERTIFICATE.len()] = names(CERTIFICATE);

/// The top-level tables, in the order [`super::known_keys`] lists them.
pub(super) const TOP_KEYS: &[&str] = &[
    "daemon",
    "control",
    "metrics",
    "trust",
    "watch",
    "certificate",
    "mail",
    "notifications",
    "notify",
];

/// One file's text, for turning byte offsets into lines. The offsets where lines start are
/// found once, so naming the line of every key of a 20,000-entry file stays linear.
pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    /// Byte offset of each line end (`\n`), ascending.
    line_ends: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Source<'a> {
        let line_ends = text
            .bytes()
            .enumerate()
            .filter_map(|(i, b)| (b == b'\n').then_some(i))
            .collect();
        Source {
            path,
            text,
            line_ends,
        }
    }

    /// The same as [`line_at`] over the whole text, in O(log lines).
    pub(super) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.line_ends.partition_point(|&newline| newline < end) + 1
    }

    pub(super) fn origin(&self, offset: usize) -> Origin {
        Origin {
            file: self.path.to_path_buf(),
            line: self.line(offset),
        }
    }
}

/// 1-based line of the byte at `offset` (offsets past the end count as the last line).
pub(super) fn line_at(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// 1-based column (in characters) of the byte at `offset`.
pub(super) fn column_at(text: &str, offset: usize) -> usize {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..end].chars().count() + 1
}

pub(super) fn describe(value: &DeValue<'_>) -> &'static str {
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
pub(super) fn to_json(value: &DeValue<'_>) -> serde_json::Value {
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

/// What reading found besides the values: every problem, and the line of every accepted key.
#[derive(Default)]
pub(super) struct Report {
    pub(super) problems: Vec<Problem>,
    pub(super) origins: BTreeMap<String, Origin>,
}

/// The value being read: its file, its dotted key and the example line its hints quote.
pub(super) struct At<'a> {
    pub(super) src: &'a Source<'a>,
    pub(super) key: &'a str,
    pub(super) example: &'a str,
}

impl At<'_> {
    /// The key's last part (`paths` of `watch[0].paths`).
    pub(super) fn name(&self) -> &str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }
}

impl Report {
    pub(super) fn problem(
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
    pub(super) fn refuse(&mut self, at: &At<'_>, v: &Value<'_>, message: String, hint: String) {
        self.problem(at.src, v.span().start, at.key, message, hint);
    }

    pub(super) fn remember(&mut self, src: &Source<'_>, key: String, offset: usize) {
        self.origins.insert(key, src.origin(offset));
    }

    pub(super) fn unknown(
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

    pub(super) fn unknown_top(&mut self, src: &Source<'_>, k: &Key<'_>) {
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
    pub(super) fn walk<S>(
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
    pub(super) fn missing<S>(
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

pub(super) fn string(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<String> {
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

/// `true` or `false`, unquoted.
pub(super) fn boolean(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<bool> {
    let hint = match v.get_ref() {
        DeValue::Boolean(b) => return Some(*b),
        DeValue::String(s) if matches!(&**s, "true" | "false") => {
            format!("write it without quotes: {} = {s}", at.name())
        }
        _ => format!("write true or false, e.g. {}", at.example),
    };
    r.refuse(
        at,
        v,
        format!("must be true or false, not {}", describe(v.get_ref())),
        hint,
    );
    None
}

pub(super) fn path(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<PathBuf> {
    string(r, at, v).map(PathBuf::from)
}

/// A list of strings; an element of the wrong type is reported and kept as `""` so the
/// indices of the others stay right.
pub(super) fn strings(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Vec<String>> {
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
pub(super) fn parsed<T>(
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
pub(super) fn duration_or(
    r: &mut Report,
    at: &At<'_>,
    v: &Value<'_>,
    hint: &str,
) -> Option<HumanDuration> {
    parsed(r, at, v, |text| {
        text.parse::<HumanDuration>().map_err(|e| Refusal {
            message: e.to_string(),
            hint: hint.to_owned(),
        })
    })
}

pub(super) fn duration(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<HumanDuration> {
    duration_or(r, at, v, &format!("write a duration, e.g. {}", at.example))
}

pub(super) fn warn_before(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<HumanDuration> {
    let hint = format!("write how long before expiry to warn, e.g. {}", at.example);
    duration_or(r, at, v, &hint)
}

pub(super) fn log_level(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<log::LevelFilter> {
    parsed(r, at, v, validate::log_level)
}

pub(super) fn listen_address(
    r: &mut Report,
    at: &At<'_>,
    v: &Value<'_>,
) -> Option<Option<SocketAddr>> {
    parsed(r, at, v, validate::listen_address)
}

pub(super) fn key_type(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<KeyAlgorithm> {
    parsed(r, at, v, validate::key_algorithm)
}

pub(super) fn parsed_address(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<String> {
    parsed(r, at, v, validate::endpoint_address)
}

pub(super) fn sni(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<String> {
    parsed(r, at, v, validate::sni_name)
}

pub(super) fn starttls(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<StartTls> {
    parsed(r, at, v, validate::starttls)
}

/// `verify_window`: 1 second to 1 hour (a service that takes longer to reload is not going to).
pub(super) fn verify_window(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<HumanDuration> {
    let hint = "write how long the endpoints may take to serve the new certificate, from \"1s\" to \"1h\", e.g. verify_window = \"2m\"";
    let window = duration_or(r, at, v, hint)?;
    if (1..=3_600).contains(&window.as_secs()) {
        return Some(window);
    }
    r.refuse(at, v, format!("{window} is outside 1s..1h"), hint.into());
    None
}

/// `[[certificate.verify]]` tables: each read with [`VERIFY_ENDPOINT`]'s rows.
pub(super) fn verify(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Vec<VerifyEndpoint>> {
    let hint = "write each endpoint below its own [[certificate.verify]] header, after this \
                [[certificate]]'s other keys, e.g. address = \"127.0.0.1:443\"";
    let DeValue::Array(items) = v.get_ref() else {
        r.refuse(
            at,
            v,
            format!("must be a list of tables, not {}", describe(v.get_ref())),
            hint.into(),
        );
        return None;
    };
    let mut endpoints = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let key = format!("{}[{j}]", at.key);
        let mut endpoint = VerifyEndpoint {
            address: String::new(),
            sni: None,
            starttls: None,
        };
        let entry = Entry {
            key: &key,
            what: "[[certificate.verify]]",
            hint: hint.into(),
        };
        if entry.read(r, at.src, item, VERIFY_ENDPOINT, &mut endpoint) {
            endpoints.push(endpoint);
        }
    }
    Some(endpoints)
}

pub(super) fn key_policy(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<KeyPolicy> {
    parsed(r, at, v, validate::key_policy)
}

pub(super) fn file_mode(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<u32> {
    parsed(r, at, v, validate::file_mode)
}

pub(super) fn max_file_size(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<u64> {
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
pub(super) fn quiet_hours(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Vec<QuietWindow>> {
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
pub(super) fn command(r: &mut Report, at: &At<'_>, v: &Value<'_>) -> Option<Vec<String>> {
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
/// `[certificate.set.<role>]` tables: one per role of [`SET_ROLES`], each read with
/// [`SET_MEMBER`]'s rows.
pub(super) fn set(
    r: &mut Report,
    at: &At<'_>,
    v: &Value<'_>,
) -> Option<BTreeMap<String, SetMember>> {
    let DeValue::Table(table) = v.get_ref() else {
        r.refuse(
            at,
            v,
            format!("must be a table, not {}", describe(v.get_ref())),
            "write each further certificate of the set below its own header, e.g. \
             [certificate.set.signing], after this [[certificate]]'s other keys"
                .into(),
        );
        return None;
    };
    // Every role read whole is kept, so the checks after loading see it too.
    let mut members = BTreeMap::new();
    for (k, item) in table.iter() {
        let role: &str = k.get_ref();
        let key = format!("{}.{role}", at.key);
        if !SET_ROLES.contains(&role) {
            r.problem(
                at.src,
                k.span().start,
                &key,
                format!("`{role}` is not a role of a certificate set"),
                format!(
                    "write one of {} (the [[certificate]]'s own files are the `{PRIMARY_ROLE}` role)",
                    SET_ROLES.join(", ")
                ),
            );
            continue;
        }
        let mut member = SetMember::default();
        let entry = Entry {
            key: &key,
            what: &format!("[certificate.set.{role}]"),
            hint: format!("write the role's files below a [certificate.set.{role}] header"),
        };
        if entry.read(r, at.src, item, SET_MEMBER, &mut member) {
            members.insert(role.to_owned(), member);
        }
    }
    Some(members)
}

/// One table of a `[[certificate]]`'s own (`[certificate.set.<role>]`,
/// `[[certificate.verify]]`), read with its rows.
struct Entry<'a> {
    /// Its dotted key, `certificate[0].verify[1]`.
    key: &'a str,
    /// How it is written, `[[certificate.verify]]`.
    what: &'a str,
    /// What to write when it is not a table.
    hint: String,
}

impl Entry<'_> {
    /// Reads `item` into `target`: a table, its keys through `rows`, and every required row
    /// present. Whether it read without a problem (each one found is reported).
    fn read<S>(
        self,
        r: &mut Report,
        src: &Source<'_>,
        item: &Value<'_>,
        rows: &[Field<S>],
        target: &mut S,
    ) -> bool {
        let Entry { key, what, hint } = self;
        let DeValue::Table(fields) = item.get_ref() else {
            let message = format!("must be a table, not {}", describe(item.get_ref()));
            r.problem(src, item.span().start, key, message, hint);
            return false;
        };
        let before = r.problems.len();
        r.walk(src, key, what, rows, fields, target);
        for row in rows
            .iter()
            .filter(|f| f.required && !fields.contains_key(f.name))
        {
            r.problem(
                src,
                item.span().start,
                &format!("{key}.{}", row.name),
                format!("this {what} has no {}", row.name),
                format!("add {} below the {what} header", row.example),
            );
        }
        r.problems.len() == before
    }
}

pub(super) fn settings(
    r: &mut Report,
    at: &At<'_>,
    v: &Value<'_>,
) -> Option<super::PluginSettings> {
    if matches!(v.get_ref(), DeValue::Table(_)) {
        return Some(super::PluginSettings::new(&to_json(v.get_ref())));
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
