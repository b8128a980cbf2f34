//! Configuration: loading the TOML files and validating what they say.
//!
//! Contract:
//! - [`load`] reads the main file and then every `*.toml` file (hidden ones excepted) in the
//!   `conf.d/` folder beside it, in byte order of the names; a missing `conf.d/` is fine. Each
//!   is read like every file the daemon is told about ([`crate::bounded`]): a regular file of
//!   at most [`crate::bounded::CONFIG_FILE_LIMIT`] bytes. A FIFO, device, socket or folder at
//!   the path (or a link to one), or a larger file, is a problem naming it, found at once:
//!   loading never blocks and never reads more than the cap.
//!   Tables merge key by key (a later file wins); `[[watch]]` and `[[certificate]]` entries
//!   append, and their indices (`certificate[2]`) count across all files in that order. Every
//!   entry and every key written in a file remembers the file and line it came from
//!   ([`Origin`], [`Config::key_origins`]); keys not written anywhere take
//!   [`Config::defaults`].
//! - Durations are the SDK's ([`crate::duration`]): one syntax for the daemon and the plugins,
//!   and none longer than 100 years, so no arithmetic on a configured duration can wrap.
//! - Loading never stops at the first problem: syntax errors, unknown keys, wrong types and
//!   semantic problems (duplicate ids, relative paths, a bad listen address, ...) are all
//!   collected and returned together as [`Problem`]s, each naming file, line, key, what is wrong
//!   and what to do. An `Ok` configuration has no problems at all.
//! - [`validate`] is a pure function over an already loaded [`Config`]; `check-config`,
//!   `ExecStartPre` and SIGHUP all go through [`load`], which calls it.

#[macro_use]
mod values;
mod load;
mod routes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_routes;
#[cfg(test)]
mod tests_set;
mod validate;
pub(crate) use validate::closest;
mod validate_notify;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::duration::HumanDuration;

/// The default main configuration file.
pub const DEFAULT_PATH: &str = "/etc/certvakt/certvakt.toml";

/// Where a value was written: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One thing wrong with the configuration. Displayed as
/// `FILE:LINE: KEY: MESSAGE` followed by an indented `hint: ...` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file the problem is in (the main file when it is about the whole configuration).
    pub file: PathBuf,
    /// 1-based line, when the problem has a place.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `certificate[2].plugin` or `metrics.listen`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.key, self.message)?;
        }
        if !self.hint.is_empty() {
            write!(f, "\n    hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// A loaded, validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub daemon: DaemonSection,
    pub control: ControlSection,
    pub metrics: MetricsSection,
    /// `[trust]`: named trust anchor sets (PEM files) that plugins name for their HTTPS
    /// requests, e.g. `fmk-test = ["/etc/certvakt/trust/fmk-test-ca.pem"]`.
    pub trust: BTreeMap<String, Vec<PathBuf>>,
    pub watch: Vec<Watch>,
    pub certificates: Vec<ManagedCertificate>,
    /// `[mail]`: the SMTP relay mail routes (and plugins' own mail) go through.
    pub mail: MailSection,
    /// `[notifications]`: when reminders and failure notices are due, how long to retry.
    pub notifications: NotificationsSection,
    /// `[[notify]]`: where events go.
    pub notify: Vec<NotifyRoute>,
    /// Every file that was read, main file first, in the order merged.
    pub files: Vec<PathBuf>,
    /// Where each key that was written in a file came from, keyed by the same dotted path as
    /// [`Problem::key`] (`metrics.listen`, `certificate[2].cert`, `watch[0].paths[1]`). Keys
    /// left at their default have no entry. Lets [`validate`] point at lines. Emptied by
    /// [`Config::in_force`] once the daemon runs with it: only loading and checking point
    /// at lines, and with a thousand certificates it is most of the configuration's memory.
    #[serde(skip)]
    pub key_origins: BTreeMap<String, Origin>,
}

impl Config {
    /// The configuration as the daemon keeps it while in force: without what only loading
    /// and checking need (`key_origins`).
    pub fn in_force(mut self) -> Config {
        self.key_origins = BTreeMap::new();
        self
    }
}

/// `[daemon]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonSection {
    /// `state_dir`, default `/var/lib/certvakt`.
    pub state_dir: PathBuf,
    /// `plugin_dir`, default `/usr/lib/certvakt/plugins`.
    pub plugin_dir: PathBuf,
    /// `warn_before`, default `30d`: a certificate that expires within this is reported as
    /// expiring (status `warning`, `certvakt status` exit code 1).
    pub warn_before: HumanDuration,
    /// `log_level`: one of error, warn, info, debug, trace. Default `info`.
    pub log_level: log::LevelFilter,
    /// `max_file_size`, default 1 MiB: larger certificate files are refused unread.
    pub max_file_size: u64,
    /// `retry_initial` (default `"1m"`) and `retry_max` (default `"6h"`): after a failed
    /// renewal step the engine waits `retry_initial`, doubling per failure up to `retry_max`.
    pub retry_initial: HumanDuration,
    pub retry_max: HumanDuration,
    /// `quiet_hours`: local-time windows (`"08:00-17:30"`, may wrap midnight) in which no
    /// renewal starts and nothing is installed; default none.
    pub quiet_hours: Vec<QuietWindow>,
    /// `http01_listen`: where the responder for ACME http-01 challenges listens (e.g.
    /// `"0.0.0.0:80"`); default `""`, off.
    pub http01_listen: Option<SocketAddr>,
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlSection {
    /// `socket`, default `/run/certvakt/control.sock`.
    pub socket: PathBuf,
    /// `admin_group`, default `certvakt-admin`: members may change things.
    pub admin_group: String,
    /// `read_group`, default `certvakt`: members may only look.
    pub read_group: String,
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsSection {
    /// `listen`, default `127.0.0.1:9617`; `""` disables the endpoint (then `None`). Port 0
    /// lets the kernel pick a free port, which `certvakt status` shows (for tests and demos).
    pub listen: Option<SocketAddr>,
    /// `web_config`: the exporter toolkit's web config file (TLS, basic auth); none: plain
    /// HTTP for everyone who can connect.
    pub web_config: Option<PathBuf>,
    /// That file, read and checked when the configuration was loaded.
    #[serde(skip)]
    pub web: Option<crate::web_config::WebConfig>,
}

/// The default metrics address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9617";

/// One `[[watch]]` entry: files that are only monitored, never renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watch {
    /// Absolute paths or glob patterns (`*`, `?`, `[...]`).
    pub paths: Vec<String>,
    /// File holding the password for PKCS#12 files matched by this entry.
    pub pkcs12_password_file: Option<PathBuf>,
    pub origin: Origin,
}

/// One `[[certificate]]` entry: a certificate certvakt manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagedCertificate {
    /// Unique id: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
    pub id: String,
    /// The live certificate file (PEM, DER or PKCS#12).
    pub cert: PathBuf,
    /// The live private key, checked to belong to `cert`.
    pub key: Option<PathBuf>,
    /// The plugin that renews it (e.g. `dk-fmk`).
    pub plugin: String,
    /// Password file when `cert` is PKCS#12, and for the `pkcs12` output.
    pub pkcs12_password_file: Option<PathBuf>,
    /// How it is renewed and where the results go.
    pub renewal: Renewal,
    pub origin: Origin,
}

impl ManagedCertificate {
    /// An entry with the required keys and every optional one at its default.
    pub fn new(id: &str, cert: PathBuf, plugin: &str, origin: Origin) -> ManagedCertificate {
        ManagedCertificate {
            id: id.to_owned(),
            cert,
            key: None,
            plugin: plugin.to_owned(),
            pkcs12_password_file: None,
            renewal: Renewal::default(),
            origin,
        }
    }

    /// Whether `other` is configured the same, wherever in which file it is written.
    pub fn same_settings(&self, other: &ManagedCertificate) -> bool {
        let ManagedCertificate {
            id,
            cert,
            key,
            plugin,
            pkcs12_password_file,
            renewal,
            origin: _,
        } = self;
        *id == other.id
            && *cert == other.cert
            && *key == other.key
            && *plugin == other.plugin
            && *pkcs12_password_file == other.pkcs12_password_file
            && *renewal == other.renewal
    }
}

/// The certificates of `new` configured exactly as in `old` (origins aside: an entry moved
/// down by one added above it is the same), when nothing else a renewal depends on changed
/// (`[daemon]`, `[trust]`, `[mail]`) and no certificate was removed (a plugin's settings may
/// name another certificate, as a client identity). Otherwise none.
pub fn unchanged_certificates(old: &Config, new: &Config) -> BTreeSet<String> {
    let mut unchanged = BTreeSet::new();
    if old.daemon != new.daemon || old.trust != new.trust || old.mail != new.mail {
        return unchanged;
    }
    let new_by_id: std::collections::HashMap<&str, &ManagedCertificate> = new
        .certificates
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    for before in &old.certificates {
        let Some(now) = new_by_id.get(before.id.as_str()) else {
            return BTreeSet::new();
        };
        if before.same_settings(now) {
            unchanged.insert(before.id.clone());
        }
    }
    unchanged
}

/// An endpoint that serves a managed certificate, probed after each install
/// (`[[certificate.verify]]`): the verified deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyEndpoint {
    /// `address`: `host:port` (a name, an IPv4 address, or `[IPv6]`).
    pub address: String,
    /// `sni`: the name sent in the TLS handshake; default: the host, when it is a name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `starttls`: the plain-text protocol spoken before TLS; default: TLS from the first byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starttls: Option<StartTls>,
}

/// A certificate's verified deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyDeploy {
    /// `[[certificate.verify]]`: endpoints that must serve the new certificate after the
    /// install and the deploy hook (the `verified` step waits for them).
    pub endpoints: Vec<VerifyEndpoint>,
    /// `verify_window` (default `"2m"`): how long the endpoints may take to serve the new
    /// certificate (services reload asynchronously); probed again every few seconds.
    pub window: HumanDuration,
    /// `rollback_on_failed_verify` (default `false`): when an endpoint still serves another
    /// certificate after the window, put the previous version back (and run the deploy hook
    /// for it) instead of leaving the new one installed.
    pub rollback: bool,
}

impl Default for VerifyDeploy {
    fn default() -> VerifyDeploy {
        VerifyDeploy {
            endpoints: Vec::new(),
            window: HumanDuration(std::time::Duration::from_secs(120)),
            rollback: false,
        }
    }
}

impl Renewal {
    /// The verified deploy, when endpoints are configured.
    pub fn verify_deploy(&self) -> Option<&VerifyDeploy> {
        self.verify.as_deref().filter(|v| !v.endpoints.is_empty())
    }

    /// The verified deploy's settings, made (with the defaults) when a key sets one.
    pub(crate) fn verify_mut(&mut self) -> &mut VerifyDeploy {
        self.verify.get_or_insert_with(Box::default)
    }
}

/// The STARTTLS dialogues a verified deploy can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    /// SMTP, RFC 3207 (ports 25 and 587).
    Smtp,
    /// IMAP, RFC 3501 (port 143).
    Imap,
    /// LDAP's StartTLS extended operation, RFC 4511 (port 389).
    Ldap,
}

impl StartTls {
    pub fn as_str(self) -> &'static str {
        match self {
            StartTls::Smtp => "smtp",
            StartTls::Imap => "imap",
            StartTls::Ldap => "ldap",
        }
    }
}

impl VerifyEndpoint {
    /// The host part of `address` (brackets of an IPv6 address removed).
    pub fn host(&self) -> &str {
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host);
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The TLS server name: `sni`, else the host (an IP address sends no SNI).
    pub fn server_name(&self) -> Result<rustls::pki_types::ServerName<'static>, String> {
        let name = self.sni.as_deref().unwrap_or_else(|| self.host());
        rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|_| format!("`{name}` is not a DNS name or an IP address"))
    }

    /// How it is shown: `host:port`, with the SNI name and STARTTLS protocol when set.
    pub fn describe(&self) -> String {
        let mut text = self.address.clone();
        if let Some(sni) = &self.sni {
            text.push_str(&format!(" (SNI {sni})"));
        }
        if let Some(starttls) = self.starttls {
            text.push_str(&format!(" (STARTTLS {})", starttls.as_str()));
        }
        text
    }
}

/// When a renewal gets a new key (`key_policy`): the plugin API's, which plugins also name.
pub use certvakt_plugin_api::profile::KeyPolicy;

/// The renewal keys of a `[[certificate]]`; every one is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renewal {
    /// `chain`: where to write the issuing chain (PEM).
    pub chain: Option<PathBuf>,
    /// `fullchain`: where to write certificate + chain (PEM).
    pub fullchain: Option<PathBuf>,
    /// `pkcs12`: where to write a PKCS#12 bundle (needs `pkcs12_password_file`).
    pub pkcs12: Option<PathBuf>,
    /// `renew_before`: renew this long before expiry at the latest. Renewal starts at 2/3 of
    /// the lifetime or at this point, whichever is earlier.
    pub renew_before: Option<HumanDuration>,
    /// `key_type`: overrides the plugin's choice (`rsa-2048`, `rsa-3072`, `rsa-4096`,
    /// `ec-p256`, `ec-p384`).
    pub key_type: Option<certvakt_plugin_api::profile::KeyAlgorithm>,
    /// `key_policy`: `rotate` (default; `new` is its older name), `reuse` or `prestage`.
    pub key_policy: KeyPolicy,
    /// `owner` and `group` of the written files (names); default: the daemon's.
    pub owner: Option<String>,
    pub group: Option<String>,
    /// `key_mode` (default `"0600"`) and `cert_mode` (default `"0644"`), octal strings.
    pub key_mode: u32,
    pub cert_mode: u32,
    /// `overlap`: how long the old certificate stays registered after the new one is in
    /// place, for authorities that need both (default 0).
    pub overlap: HumanDuration,
    /// `issuer_trust`: a `[trust]` set every issued or imported certificate must chain to
    /// (e.g. the OCES3 roots), checked before anything is staged. Default: not checked.
    pub issuer_trust: Option<String>,
    /// `pre_hook`, `deploy_hook`, `post_hook`: commands (program with absolute path, then
    /// arguments) run before installing, after a successful install, and always at the end.
    pub pre_hook: Option<Vec<String>>,
    pub deploy_hook: Option<Vec<String>>,
    pub post_hook: Option<Vec<String>>,
    /// `hook_timeout` (default `"60s"`).
    pub hook_timeout: HumanDuration,
    /// `plugin_mail` (default `false`): whether the plugin's mail to the authority (an access
    /// request, a note to support) goes out through `[mail]`; otherwise it is handed to a
    /// person as an `.eml` file in the plugin's task.
    pub plugin_mail: bool,
    /// `[certificate.settings]`: the plugin's own settings, checked by the plugin.
    pub settings: PluginSettings,
    /// The verified deploy: `[[certificate.verify]]`, `verify_window`,
    /// `rollback_on_failed_verify`. Boxed: most certificates have none.
    pub verify: Option<Box<VerifyDeploy>>,
    /// `legacy_cert` and `legacy_key`: where the certificate and key of the version replaced
    /// by the last install stay readable until the run retires (a message system still
    /// decrypting what senders encrypted to the old certificate). Written at each install,
    /// removed when the run is over.
    pub legacy_cert: Option<PathBuf>,
    pub legacy_key: Option<PathBuf>,
    /// `[certificate.set.<role>]`: the other certificates of a set (Norwegian enterprise
    /// certificates come as two or three), renewed, checked, installed and rolled back with
    /// this one as one version. Empty for a single certificate; this entry's own files are
    /// then the set's primary role, `authentication`.
    pub set: std::collections::BTreeMap<String, SetMember>,
}

/// A certificate's `[certificate.settings]`, kept as compact JSON text and parsed when a
/// plugin is called: a parsed map costs a whole B-tree node (over 600 bytes) per certificate
/// even for one key, and a thousand certificates are read far more often than their plugins
/// are called. Two are equal when their JSON is (object keys are sorted, so the text is one
/// per value).
#[derive(Clone, PartialEq, Eq)]
pub struct PluginSettings(Box<str>);

impl PluginSettings {
    pub fn new(value: &serde_json::Value) -> PluginSettings {
        // A `Value` always serialises (its keys are strings).
        PluginSettings(value.to_string().into_boxed_str())
    }

    /// The settings as the plugin reads them.
    pub fn value(&self) -> serde_json::Value {
        // Written by `new` from a `Value`, so it parses.
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl Default for PluginSettings {
    fn default() -> PluginSettings {
        PluginSettings("{}".into())
    }
}

impl fmt::Debug for PluginSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PluginSettings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

/// The roles a set may name beside its primary role ([`PRIMARY_ROLE`]).
pub const SET_ROLES: &[&str] = &["encryption", "signing"];
/// The role of a set's primary certificate: the `[[certificate]]`'s own files.
pub const PRIMARY_ROLE: &str = "authentication";

/// One more certificate of a set, `[certificate.set.<role>]`: where its files go. Every
/// key means what the same key of the `[[certificate]]` means.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SetMember {
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
    pub chain: Option<PathBuf>,
    pub fullchain: Option<PathBuf>,
    pub pkcs12: Option<PathBuf>,
    pub legacy_cert: Option<PathBuf>,
    pub legacy_key: Option<PathBuf>,
}

impl ManagedCertificate {
    /// The set's roles, the primary first; empty for a single certificate.
    pub fn roles(&self) -> Vec<String> {
        if self.renewal.set.is_empty() {
            return Vec::new();
        }
        std::iter::once(PRIMARY_ROLE.to_owned())
            .chain(self.renewal.set.keys().cloned())
            .collect()
    }
}

impl Default for Renewal {
    fn default() -> Renewal {
        Renewal {
            chain: None,
            fullchain: None,
            pkcs12: None,
            renew_before: None,
            key_type: None,
            key_policy: KeyPolicy::Rotate,
            owner: None,
            group: None,
            key_mode: 0o600,
            cert_mode: 0o644,
            overlap: HumanDuration(std::time::Duration::ZERO),
            issuer_trust: None,
            pre_hook: None,
            deploy_hook: None,
            post_hook: None,
            hook_timeout: HumanDuration(std::time::Duration::from_secs(60)),
            plugin_mail: false,
            settings: PluginSettings::default(),
            verify: None,
            legacy_cert: None,
            legacy_key: None,
            set: std::collections::BTreeMap::new(),
        }
    }
}

impl Config {
    /// The configuration used when no file exists yet: all defaults, nothing watched.
    pub fn defaults() -> Config {
        Config {
            daemon: DaemonSection {
                state_dir: PathBuf::from("/var/lib/certvakt"),
                plugin_dir: PathBuf::from("/usr/lib/certvakt/plugins"),
                warn_before: HumanDuration(std::time::Duration::from_secs(30 * 86_400)),
                log_level: log::LevelFilter::Info,
                max_file_size: 1024 * 1024,
                retry_initial: HumanDuration(std::time::Duration::from_secs(60)),
                retry_max: HumanDuration(std::time::Duration::from_secs(6 * 3_600)),
                quiet_hours: Vec::new(),
                http01_listen: None,
            },
            control: ControlSection {
                socket: PathBuf::from("/run/certvakt/control.sock"),
                admin_group: "certvakt-admin".into(),
                read_group: "certvakt".into(),
            },
            metrics: MetricsSection {
                listen: DEFAULT_METRICS_LISTEN.parse().ok(),
                web_config: None,
                web: None,
            },
            trust: BTreeMap::new(),
            watch: Vec::new(),
            certificates: Vec::new(),
            mail: MailSection::default(),
            notifications: NotificationsSection::default(),
            notify: Vec::new(),
            files: Vec::new(),
            key_origins: BTreeMap::new(),
        }
    }

    /// One line for `check-config` and the journal: what this configuration covers.
    pub fn summary(&self) -> String {
        let patterns: usize = self.watch.iter().map(|w| w.paths.len()).sum();
        format!(
            "{} file(s) read; {} managed certificate(s), {} watch pattern(s); socket {}; metrics {}",
            self.files.len(),
            self.certificates.len(),
            patterns,
            self.control.socket.display(),
            self.metrics
                .listen
                .map(|a| a.to_string())
                .unwrap_or_else(|| "off".into()),
        )
    }
}

/// An event a `[[notify]]` route can be told of.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A step needs a person: the task's title, instructions, deadline and files.
    TaskOpened,
    /// A task is still open: again every `remind_every`, more often near the deadline.
    TaskReminder,
    /// A renewal keeps failing (`failing_after` failures, or any failure within
    /// `failing_within` of expiry).
    RenewalFailing,
    /// A certificate nothing renews entered `warn_before`.
    Expiring,
    /// A certificate expired.
    Expired,
    /// A renewal completed (off unless a route names it).
    RenewalCompleted,
    /// A plugin file was refused at start.
    PluginRefused,
    /// A plugin's own mail to an authority, sent for it (never routed; listed for the
    /// metrics' `event` label).
    PluginMail,
    /// A key was pre-staged for a certificate's next renewal (`key_policy = "prestage"`): its
    /// hash, to publish before it is used.
    KeyPrestaged,
    /// certvakt is alive: every `heartbeat_every`, for a receiver that alarms when it stops
    /// (off unless a route names it).
    Heartbeat,
    /// `certvakt notify test`.
    Test,
}

impl NotifyEvent {
    /// The events a route may name, in the order documented.
    pub const ROUTABLE: [NotifyEvent; 9] = [
        NotifyEvent::TaskOpened,
        NotifyEvent::TaskReminder,
        NotifyEvent::RenewalFailing,
        NotifyEvent::Expiring,
        NotifyEvent::Expired,
        NotifyEvent::RenewalCompleted,
        NotifyEvent::PluginRefused,
        NotifyEvent::KeyPrestaged,
        NotifyEvent::Heartbeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::TaskOpened => "task_opened",
            NotifyEvent::TaskReminder => "task_reminder",
            NotifyEvent::RenewalFailing => "renewal_failing",
            NotifyEvent::Expiring => "expiring",
            NotifyEvent::Expired => "expired",
            NotifyEvent::RenewalCompleted => "renewal_completed",
            NotifyEvent::PluginRefused => "plugin_refused",
            NotifyEvent::PluginMail => "plugin_mail",
            NotifyEvent::KeyPrestaged => "key_prestaged",
            NotifyEvent::Heartbeat => "heartbeat",
            NotifyEvent::Test => "test",
        }
    }

    /// What a route gets when it names no `events`: all but `renewal_completed` and
    /// `heartbeat`, which a route asks for by name.
    pub fn defaults() -> Vec<NotifyEvent> {
        NotifyEvent::ROUTABLE
            .into_iter()
            .filter(|e| !matches!(e, NotifyEvent::RenewalCompleted | NotifyEvent::Heartbeat))
            .collect()
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the connection to the mail relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587; the default).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only to a relay on a loopback address.
    None,
}

impl MailTls {
    pub fn as_str(self) -> &'static str {
        match self {
            MailTls::Starttls => "starttls",
            MailTls::Tls => "tls",
            MailTls::None => "none",
        }
    }

    /// The usual port of the mode.
    pub fn default_port(self) -> u16 {
        match self {
            MailTls::Starttls => 587,
            MailTls::Tls => 465,
            MailTls::None => 25,
        }
    }
}

/// `[mail]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MailSection {
    /// `relay`: the SMTP server's host name or address; unset, no mail is sent.
    pub relay: Option<String>,
    /// `port`: default by `tls` (587, 465, 25).
    pub port: Option<u16>,
    /// `tls`: `starttls` (default), `tls` or `none` (loopback relays only).
    pub tls: MailTls,
    /// `username` and `password_file`: SMTP AUTH (PLAIN or LOGIN), only over TLS.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// `from`: the sender address of every mail (a route may name its own).
    pub from: Option<String>,
    /// `trust`: a `[trust]` set for the relay's certificate; default the system's roots.
    pub trust: Option<String>,
    /// `hello_name`: the name in EHLO; default the machine's host name.
    pub hello_name: Option<String>,
}

impl MailSection {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

/// `[notifications]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationsSection {
    /// `remind_every` (default `"1d"`): how often an open task is brought up again.
    pub remind_every: HumanDuration,
    /// `remind_often_within` (default `"7d"`) and `remind_often_every` (default `"4h"`):
    /// reminders come this often once the certificate expires within that long.
    pub remind_often_within: HumanDuration,
    pub remind_often_every: HumanDuration,
    /// `failing_after` (default 3): a renewal that failed this many times in a row is told.
    pub failing_after: u32,
    /// `failing_within` (default `"14d"`): any failure is told once the certificate expires
    /// within this long.
    pub failing_within: HumanDuration,
    /// `retry_for` (default `"2d"`): how long a message is retried before it counts as
    /// undeliverable (it stays in `certvakt status` and the metrics).
    pub retry_for: HumanDuration,
    /// `timeout` (default `"30s"`): one attempt to send, connect to last byte.
    pub timeout: HumanDuration,
    /// `heartbeat_every` (default `"1d"`): how often the `heartbeat` event is sent to the
    /// routes that name it.
    pub heartbeat_every: HumanDuration,
}

impl Default for NotificationsSection {
    fn default() -> NotificationsSection {
        let d = |secs| HumanDuration(std::time::Duration::from_secs(secs));
        NotificationsSection {
            remind_every: d(86_400),
            remind_often_within: d(7 * 86_400),
            remind_often_every: d(4 * 3_600),
            failing_after: 3,
            failing_within: d(14 * 86_400),
            retry_for: d(2 * 86_400),
            timeout: d(30),
            heartbeat_every: d(86_400),
        }
    }
}

/// One `[[notify]]` route: which events, about which certificates, go where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyRoute {
    /// `name`: unique, `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`; default `notify-<index>`.
    pub name: String,
    /// `events`: default all but `renewal_completed`.
    pub events: Vec<NotifyEvent>,
    /// `certificates`: ids (`[[certificate]]` ids, or watched files' paths); empty: all.
    pub certificates: Vec<String>,
    /// `plugins`: only certificates renewed by these plugins; empty: all.
    pub plugins: Vec<String>,
    pub channel: RouteChannel,
    pub origin: Origin,
}

impl NotifyRoute {
    /// Whether an event about `cert` (its id and plugin, when it has them) goes this way.
    pub fn wants(&self, event: NotifyEvent, cert: Option<(&str, Option<&str>)>) -> bool {
        if event == NotifyEvent::Test {
            return true;
        }
        if !self.events.contains(&event) {
            return false;
        }
        let Some((id, plugin)) = cert else {
            // Not about a certificate (a refused plugin): only routes not narrowed to some.
            return self.certificates.is_empty() && self.plugins.is_empty();
        };
        (self.certificates.is_empty() || self.certificates.iter().any(|c| c == id))
            && (self.plugins.is_empty()
                || plugin.is_some_and(|p| self.plugins.iter().any(|x| x == p)))
    }
}

/// Where a route sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum RouteChannel {
    /// `channel = "mail"`: `to` (required), `cc`, `from` (default `[mail] from`).
    Mail {
        to: Vec<String>,
        cc: Vec<String>,
        from: Option<String>,
    },
    /// `channel = "webhook"`: `url` (https, or http to loopback), `secret_file` (the HMAC
    /// key), `trust` (a `[trust]` set for the receiver's certificate).
    Webhook {
        url: String,
        secret_file: Option<PathBuf>,
        trust: Option<String>,
    },
    /// `channel = "command"`: `command` (absolute program, then arguments), `timeout`.
    Command {
        command: Vec<String>,
        timeout: HumanDuration,
    },
}

impl RouteChannel {
    pub fn as_str(&self) -> &'static str {
        match self {
            RouteChannel::Mail { .. } => "mail",
            RouteChannel::Webhook { .. } => "webhook",
            RouteChannel::Command { .. } => "command",
        }
    }
}

/// Reads `path` and the `conf.d/*.toml` drop-ins beside it, merges and validates them.
///
/// `Err` holds every problem of every file, ordered by file (main first) and line.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    load::load(path)
}

/// Every table of the configuration file with the keys the loader accepts in it, in the
/// loader's order: `daemon`, `control`, `metrics`, `trust` (whose keys are names the operator
/// chooses, so its list is empty), `watch` and `certificate` (`settings` included). The
/// documentation tests check the manual page against it.
pub fn known_keys() -> Vec<(&'static str, &'static [&'static str])> {
    load::known_keys()
}

/// Semantic checks of a loaded configuration; returns every problem found.
///
/// Pure: no file system, no user or group lookups. Problems point at the lines recorded in
/// [`Config::key_origins`] and the entries' origins; a key without a recorded line is reported
/// against the main file without a line.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = validate::validate(config);
    problems.extend(validate_notify::validate(config));
    problems
}

/// A daily window of local time, `start` to `end` in minutes after midnight; `end` before
/// `start` wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QuietWindow {
    pub start: u32,
    pub end: u32,
}

impl std::str::FromStr for QuietWindow {
    type Err = String;

    fn from_str(text: &str) -> Result<QuietWindow, String> {
        let minute = |part: &str| -> Option<u32> {
            let (h, m) = part.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && m.to_string().len() <= 2).then_some(h * 60 + m)
        };
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("\"{text}\" is not a window of time"))?;
        match (minute(a), minute(b)) {
            (Some(start), Some(end)) if start != end => Ok(QuietWindow { start, end }),
            (Some(_), Some(_)) => Err(format!("\"{text}\" starts where it ends")),
            _ => Err(format!("\"{text}\" is not a window of time")),
        }
    }
}

impl QuietWindow {
    /// Minutes from `minute` (of the day) to the window's end, if `minute` is inside it.
    pub fn remaining(self, minute: u32) -> Option<u32> {
        let inside = if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        };
        inside.then(|| (self.end + 24 * 60 - minute) % (24 * 60))
    }
}
