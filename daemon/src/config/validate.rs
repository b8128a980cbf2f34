//! Semantic checks: what a well-typed configuration may still get wrong.
//!
//! Everything here is pure (no file system, no user or group lookups) so `check-config`, the
//! daemon and the tests see the same verdicts. Besides [`validate`] over a whole [`Config`], it
//! owns the parsing of the few values whose type cannot hold a bad value ([`listen_address`],
//! [`log_level`], [`key_algorithm`], [`key_policy`], [`file_mode`]); the loader calls those so
//! the rules live in one place.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{Config, KeyPolicy, ManagedCertificate, Origin, Problem, StartTls};

/// Largest accepted `max_file_size`: 64 MiB.
pub(super) const MAX_FILE_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// The accepted `log_level` values, in order of verbosity.
pub(super) const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Why a value was refused: one sentence of what is wrong, one of what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub message: String,
    pub hint: String,
}

/// `metrics.listen`: `""` turns the endpoint off, otherwise an IP socket address.
pub(super) fn listen_address(text: &str) -> Result<Option<SocketAddr>, Refusal> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    let example = "write an IP address and port, e.g. \"127.0.0.1:9617\" or \"[::1]:9617\", \
                   or \"\" to turn the metrics endpoint off";
    let refuse = |message: String| {
        Err(Refusal {
            message,
            hint: example.to_owned(),
        })
    };
    if let Ok(ip) = text.parse::<IpAddr>() {
        return refuse(match ip {
            IpAddr::V4(_) => format!("\"{text}\" has no port"),
            IpAddr::V6(_) => format!(
                "\"{text}\" reads as an IPv6 address without a port: with a port, an IPv6 \
                 address needs brackets, e.g. \"[::1]:9617\""
            ),
        });
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return refuse(format!("\"{text}\" has no port"));
    };
    if host.contains(':') && !host.starts_with('[') {
        return refuse(format!(
            "\"{text}\" is not an address: an IPv6 address needs brackets, e.g. \"[::1]:9617\""
        ));
    }
    if port.parse::<u16>().is_err() {
        return refuse(format!("\"{port}\" in \"{text}\" is not a port (1-65535)"));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return refuse(format!("\"{text}\" is not a valid socket address"));
    }
    Err(Refusal {
        message: format!("\"{host}\" is a host name; the metrics endpoint needs an IP address"),
        hint: format!(
            "write an IP address, e.g. \"127.0.0.1:{port}\" for loopback (host names are not \
             resolved, so the address cannot change behind the daemon's back)"
        ),
    })
}

/// `daemon.log_level`: one of [`LOG_LEVELS`] (ASCII case ignored).
pub(super) fn log_level(text: &str) -> Result<log::LevelFilter, Refusal> {
    let level = match text.to_ascii_lowercase().as_str() {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => {
            return Err(Refusal {
                message: format!("\"{text}\" is not a log level"),
                hint: format!("write one of: {}", LOG_LEVELS.join(", ")),
            });
        }
    };
    Ok(level)
}

/// `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`
pub(super) fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    id.len() <= 64
        && first.is_ascii_alphanumeric()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `[a-z0-9][a-z0-9-]{0,63}`
pub(super) fn is_valid_plugin_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    name.len() <= 64 && allowed(first) && chars.all(|c| allowed(c) || c == '-')
}

/// A group name that `getgrnam` could plausibly know: not empty, at most 256 bytes, no
/// whitespace or control characters, none of `: , / \` (separators in `/etc/group` and paths),
/// not starting with `-`, and not all digits (that would read as a gid).
pub(super) fn is_valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && !name.chars().all(|c| c.is_ascii_digit())
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | ',' | '/' | '\\'))
}

/// See [`super::validate`].
pub(super) fn validate(config: &Config) -> Vec<Problem> {
    let mut v = Validator {
        config,
        problems: Vec::new(),
    };
    v.daemon();
    v.control();
    v.trust();
    v.watches();
    v.certificates();
    v.problems
}

/// The valid name nearest to `name`, if it is at most two edits away (and closer than the
/// length of `name`, so `x` does not suggest `id`).
pub(crate) fn closest<'k>(name: &str, valid: &[&'k str]) -> Option<&'k str> {
    valid
        .iter()
        .map(|candidate| (strsim::levenshtein(name, candidate), *candidate))
        .filter(|&(distance, _)| distance <= 2 && distance < name.chars().count())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

pub(super) struct Validator<'a> {
    pub(super) config: &'a Config,
    pub(super) problems: Vec<Problem>,
}

impl Validator<'_> {
    /// Where `key` was written; else where its entry starts; else the main file, no line.
    pub(super) fn place(&self, key: &str, entry: Option<&Origin>) -> (PathBuf, Option<usize>) {
        if let Some(origin) = self.config.key_origins.get(key).or(entry) {
            return (origin.file.clone(), Some(origin.line));
        }
        let main = self.config.files.first().cloned().unwrap_or_default();
        (main, None)
    }

    /// `FILE:LINE` of `key` (or of its entry) for messages that name a second place.
    pub(super) fn describe_place(&self, key: &str, entry: &Origin) -> String {
        self.config
            .key_origins
            .get(key)
            .unwrap_or(entry)
            .to_string()
    }

    pub(super) fn report(
        &mut self,
        key: &str,
        entry: Option<&Origin>,
        message: String,
        hint: String,
    ) {
        let (file, line) = self.place(key, entry);
        self.problems.push(Problem {
            file,
            line,
            key: key.to_owned(),
            message,
            hint,
        });
    }

    pub(super) fn absolute(
        &mut self,
        key: &str,
        entry: Option<&Origin>,
        path: &Path,
        example: &str,
    ) {
        if path.as_os_str().is_empty() {
            let hint = format!("write an absolute path, e.g. \"{example}\"");
            self.report(key, entry, "the path is empty".into(), hint);
        } else if !path.is_absolute() {
            self.report(
                key,
                entry,
                format!("\"{}\" is not an absolute path", path.display()),
                format!(
                    "write an absolute path, e.g. \"{example}\" (relative paths are not resolved \
                     against the configuration folder)"
                ),
            );
        }
    }

    fn group(&mut self, key: &str, name: &str, example: &str) {
        if is_valid_group_name(name) {
            return;
        }
        let message = if name.is_empty() {
            "the group name is empty".to_owned()
        } else {
            format!("\"{name}\" does not look like a group name")
        };
        let hint = format!(
            "write the name of an existing system group, e.g. \"{example}\" (no spaces, ':', ',', \
             '/', not only digits)"
        );
        self.report(key, None, message, hint);
    }

    fn daemon(&mut self) {
        let d = &self.config.daemon;
        self.absolute("daemon.state_dir", None, &d.state_dir, "/var/lib/certvakt");
        self.absolute(
            "daemon.plugin_dir",
            None,
            &d.plugin_dir,
            "/usr/lib/certvakt/plugins",
        );
        if d.warn_before.as_secs() == 0 {
            self.report(
                "daemon.warn_before",
                None,
                "warn_before must be longer than zero".into(),
                "write how long before expiry to warn, e.g. \"30d\"".into(),
            );
        }
        if d.log_level == log::LevelFilter::Off {
            self.report(
                "daemon.log_level",
                None,
                "\"off\" is not a log level certvakt accepts".into(),
                format!("write one of: {}", LOG_LEVELS.join(", ")),
            );
        }
        if !(1..=MAX_FILE_SIZE_LIMIT).contains(&d.max_file_size) {
            self.report(
                "daemon.max_file_size",
                None,
                format!(
                    "{} is outside 1..={MAX_FILE_SIZE_LIMIT} bytes",
                    d.max_file_size
                ),
                "write a size in bytes between 1 and 67108864 (64 MiB), e.g. 1048576".into(),
            );
        }
    }

    fn control(&mut self) {
        let c = &self.config.control;
        self.absolute(
            "control.socket",
            None,
            &c.socket,
            "/run/certvakt/control.sock",
        );
        self.group("control.admin_group", &c.admin_group, "certvakt-admin");
        self.group("control.read_group", &c.read_group, "certvakt");
    }

    fn trust(&mut self) {
        let config = self.config;
        for (name, files) in &config.trust {
            let key = format!("trust.{name}");
            if !is_valid_plugin_name(name) && !is_valid_id(name) {
                self.report(
                    &key,
                    None,
                    format!("\"{name}\" is not a valid trust set name"),
                    "use letters, digits, '.', '_' and '-', e.g. fmk-test".into(),
                );
            }
            if files.is_empty() {
                self.report(
                    &key,
                    None,
                    "the trust set lists no file".into(),
                    "list the PEM files of the CAs to trust, or remove the set".into(),
                );
            }
            for (j, file) in files.iter().enumerate() {
                self.absolute(
                    &format!("{key}[{j}]"),
                    None,
                    file,
                    "/etc/certvakt/trust/ca.pem",
                );
            }
        }
    }

    fn watches(&mut self) {
        let config = self.config;
        for (i, watch) in config.watch.iter().enumerate() {
            let origin = Some(&watch.origin);
            if watch.paths.is_empty() {
                self.report(
                    &format!("watch[{i}].paths"),
                    origin,
                    "the list of paths is empty, so this [[watch]] watches nothing".into(),
                    "add paths, e.g. paths = [\"/etc/ssl/private/*.pem\"], or remove the entry"
                        .into(),
                );
            }
            for (j, pattern) in watch.paths.iter().enumerate() {
                let key = format!("watch[{i}].paths[{j}]");
                self.absolute(&key, origin, Path::new(pattern), "/etc/ssl/private/*.pem");
                if let Err(e) = glob::Pattern::new(pattern) {
                    self.report(
                        &key,
                        origin,
                        format!("\"{pattern}\" is not a valid pattern: {}", e.msg),
                        "use * and ? as wildcards and close every [...] class; write [[] for a \
                         literal ["
                            .into(),
                    );
                }
            }
            if let Some(file) = &watch.pkcs12_password_file {
                let key = format!("watch[{i}].pkcs12_password_file");
                self.absolute(&key, origin, file, "/etc/certvakt/secrets/keystore.pass");
            }
        }
    }

    fn certificates(&mut self) {
        let config = self.config;
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut certs: HashMap<&Path, usize> = HashMap::new();
        for (i, cert) in config.certificates.iter().enumerate() {
            let origin = Some(&cert.origin);
            let id_key = format!("certificate[{i}].id");
            if !is_valid_id(&cert.id) {
                let message = if cert.id.is_empty() {
                    "the id is empty".to_owned()
                } else {
                    format!("\"{}\" is not a valid id", cert.id)
                };
                self.report(
                    &id_key,
                    origin,
                    message,
                    "start with a letter or digit, then up to 63 letters, digits, '.', '_' or \
                     '-', e.g. \"fmk-prod\""
                        .into(),
                );
            } else if let Some(&first) = ids.get(cert.id.as_str()) {
                let there = &config.certificates[first];
                let place = self.describe_place(&format!("certificate[{first}].id"), &there.origin);
                self.report(
                    &id_key,
                    origin,
                    format!(
                        "duplicate id \"{}\": also defined at {place} (certificate[{first}])",
                        cert.id
                    ),
                    "give every [[certificate]] its own id".into(),
                );
            } else {
                ids.insert(&cert.id, i);
            }

            if !is_valid_plugin_name(&cert.plugin) {
                let lower = cert.plugin.to_ascii_lowercase();
                let hint = if is_valid_plugin_name(&lower) {
                    format!("plugin names are lower case: write \"{lower}\"")
                } else {
                    "write the plugin's name: lower-case letters, digits and '-', e.g. \"dk-fmk\" \
                     (`certvakt plugins` lists the installed ones)"
                        .to_owned()
                };
                let message = if cert.plugin.is_empty() {
                    "the plugin name is empty".to_owned()
                } else {
                    format!("\"{}\" is not a valid plugin name", cert.plugin)
                };
                self.report(&format!("certificate[{i}].plugin"), origin, message, hint);
            }

            let cert_key = format!("certificate[{i}].cert");
            self.absolute(&cert_key, origin, &cert.cert, "/etc/certvakt/fmk/cert.pem");
            if !cert.cert.as_os_str().is_empty() {
                if let Some(&first) = certs.get(cert.cert.as_path()) {
                    let there = &config.certificates[first];
                    let place =
                        self.describe_place(&format!("certificate[{first}].cert"), &there.origin);
                    self.report(
                        &cert_key,
                        origin,
                        format!(
                            "\"{}\" is also the cert of certificate[{first}] \"{}\" at {place}",
                            cert.cert.display(),
                            there.id
                        ),
                        "each managed certificate needs its own file; remove one of the two \
                         entries or point it at its own file"
                            .into(),
                    );
                } else {
                    certs.insert(&cert.cert, i);
                }
            }

            if let Some(key) = &cert.key {
                let key_key = format!("certificate[{i}].key");
                self.absolute(&key_key, origin, key, "/etc/certvakt/fmk/key.pem");
                if *key == cert.cert && !key.as_os_str().is_empty() {
                    self.report(
                        &key_key,
                        origin,
                        "key is the same file as cert".into(),
                        "point key at the private key file; if the key is inside the cert file \
                         (a PKCS#12 bundle), leave key out"
                            .into(),
                    );
                }
            }
            if let Some(file) = &cert.pkcs12_password_file {
                let key = format!("certificate[{i}].pkcs12_password_file");
                self.absolute(&key, origin, file, "/etc/certvakt/secrets/fmk.pass");
            }
            if let Some(name) = &cert.renewal.issuer_trust
                && !config.trust.contains_key(name)
            {
                let known: Vec<&str> = config.trust.keys().map(String::as_str).collect();
                self.report(
                    &format!("certificate[{i}].issuer_trust"),
                    origin,
                    format!("names the trust set \"{name}\", which [trust] does not define"),
                    if known.is_empty() {
                        format!("add it: [trust] {name} = [\"/etc/certvakt/trust/{name}.pem\"]")
                    } else {
                        format!("write one of {}, or add it to [trust]", known.join(", "))
                    },
                );
            }
            self.renewal(i, cert);
        }
    }

    /// A certificate set's files (`[certificate.set.<role>]`, `legacy_cert`, `legacy_key`):
    /// absolute, each path used once across the whole set, legacy files in pairs, and a
    /// PKCS#12 output only with a password.
    fn set(&mut self, i: usize, cert: &ManagedCertificate) {
        let origin = Some(&cert.origin);
        let r = &cert.renewal;
        let mut files: Vec<(String, &Path)> = vec![(format!("certificate[{i}].cert"), &cert.cert)];
        for (name, path) in [
            ("key", &cert.key),
            ("chain", &r.chain),
            ("fullchain", &r.fullchain),
            ("pkcs12", &r.pkcs12),
            ("legacy_cert", &r.legacy_cert),
            ("legacy_key", &r.legacy_key),
        ] {
            if let Some(path) = path {
                files.push((format!("certificate[{i}].{name}"), path.as_path()));
            }
        }
        let mut pairs = vec![(format!("certificate[{i}]"), &r.legacy_cert, &r.legacy_key)];
        if !r.set.is_empty() && r.key_policy == KeyPolicy::Prestage {
            self.report(
                &format!("certificate[{i}].key_policy"),
                origin,
                "key_policy = \"prestage\" is for a single certificate, not a set".into(),
                "write key_policy = \"rotate\" (the default) or \"reuse\" for a set".into(),
            );
        }
        for (role, m) in &r.set {
            let at = format!("certificate[{i}].set.{role}");
            files.push((format!("{at}.cert"), m.cert.as_path()));
            for (name, path) in [
                ("key", &m.key),
                ("chain", &m.chain),
                ("fullchain", &m.fullchain),
                ("pkcs12", &m.pkcs12),
                ("legacy_cert", &m.legacy_cert),
                ("legacy_key", &m.legacy_key),
            ] {
                if let Some(path) = path {
                    files.push((format!("{at}.{name}"), path.as_path()));
                }
            }
            pairs.push((at.clone(), &m.legacy_cert, &m.legacy_key));
            if m.pkcs12.is_some() && cert.pkcs12_password_file.is_none() {
                self.report(
                    &format!("{at}.pkcs12"),
                    origin,
                    "a PKCS#12 output needs a password".into(),
                    "add pkcs12_password_file = \"/etc/certvakt/secrets/<id>.pass\" to the \
                     [[certificate]] (one password for every bundle of the set)"
                        .into(),
                );
            }
        }
        for (at, legacy_cert, legacy_key) in pairs {
            if legacy_cert.is_some() != legacy_key.is_some() {
                self.report(
                    &format!("{at}.legacy_key"),
                    origin,
                    "legacy_cert and legacy_key go together: the old certificate is of no use \
                     to a message system without its key, nor the key without it"
                        .into(),
                    "write both, or neither".into(),
                );
            }
        }
        // The single certificate's own files are checked in `renewal`; here what a set or a
        // legacy pair adds.
        let added = |key: &str| key.contains(".set.") || key.contains(".legacy_");
        for (n, (key, path)) in files.iter().enumerate() {
            if !added(key) {
                continue;
            }
            self.absolute(key, origin, path, "/etc/certvakt/nhn/signing.pem");
            if let Some((first, _)) = files[..n].iter().find(|(_, p)| p == path) {
                self.report(
                    key,
                    origin,
                    format!("{} is already the file of {first}", path.display()),
                    "give every file of the set its own path".into(),
                );
            }
        }
    }

    /// The renewal keys of one `[[certificate]]`.
    fn renewal(&mut self, i: usize, cert: &ManagedCertificate) {
        let origin = Some(&cert.origin);
        let r = &cert.renewal;
        if r.verify.as_ref().is_some_and(|v| v.endpoints.is_empty()) {
            // verify_window or rollback_on_failed_verify without an endpoint to probe.
            let key = ["verify_window", "rollback_on_failed_verify", "verify"]
                .map(|name| format!("certificate[{i}].{name}"))
                .into_iter()
                .find(|key| self.config.key_origins.contains_key(key))
                .unwrap_or_else(|| format!("certificate[{i}].verify"));
            self.report(
                &key,
                origin,
                "there is no [[certificate.verify]] endpoint, so nothing is verified".into(),
                "add a [[certificate.verify]] table with the address of the service that \
                 serves this certificate, e.g. address = \"127.0.0.1:443\", or remove the key"
                    .into(),
            );
        }
        let outputs = [
            ("chain", &r.chain),
            ("fullchain", &r.fullchain),
            ("pkcs12", &r.pkcs12),
        ];
        for (name, path) in outputs {
            let Some(path) = path else { continue };
            let key = format!("certificate[{i}].{name}");
            self.absolute(&key, origin, path, "/etc/certvakt/fmk/chain.pem");
            if *path == cert.cert || Some(path) == cert.key.as_ref() {
                self.report(
                    &key,
                    origin,
                    format!("{name} is the same file as cert or key"),
                    format!("give {name} its own file"),
                );
            }
        }
        self.set(i, cert);
        if r.pkcs12.is_some() && cert.pkcs12_password_file.is_none() {
            self.report(
                &format!("certificate[{i}].pkcs12"),
                origin,
                "a PKCS#12 output needs a password".into(),
                "add pkcs12_password_file = \"/etc/certvakt/secrets/<id>.pass\" (a file \
                 holding the password, readable by certvakt only)"
                    .into(),
            );
        }
        if r.key_mode & 0o007 != 0 || r.key_mode & 0o020 != 0 {
            self.report(
                &format!("certificate[{i}].key_mode"),
                origin,
                format!(
                    "{:04o} lets other users read or change the private key",
                    r.key_mode
                ),
                "write key_mode = \"0600\", or \"0640\" with group = the group of the \
                 service that reads the key"
                    .into(),
            );
        }
        let read_group = &self.config.control.read_group;
        if r.key_mode & 0o040 != 0 && r.group.as_ref().is_none_or(|g| g == read_group) {
            let whose = match &r.group {
                Some(group) => format!("group {group}"),
                None => "certvaktd's own group".into(),
            };
            self.report(
                &format!("certificate[{i}].key_mode"),
                origin,
                format!(
                    "{:04o} makes the private key readable by {whose}, and the control socket lets \
                     the read group `{read_group}` look: everyone allowed to run `certvakt status` \
                     could read the key",
                    r.key_mode
                ),
                format!(
                    "write group = the group of the service that reads the key (not \
                     `{read_group}`), or key_mode = \"0600\""
                ),
            );
        }
        if r.renew_before.is_some_and(|d| d.as_secs() == 0) {
            self.report(
                &format!("certificate[{i}].renew_before"),
                origin,
                "renew_before is zero: the certificate would be renewed only once it expired"
                    .into(),
                "write how long before expiry to renew at the latest, e.g. renew_before = \"30d\""
                    .into(),
            );
        }
        for (name, hook) in [
            ("pre_hook", &r.pre_hook),
            ("deploy_hook", &r.deploy_hook),
            ("post_hook", &r.post_hook),
        ] {
            if hook.as_ref().is_some_and(Vec::is_empty) {
                self.report(
                    &format!("certificate[{i}].{name}"),
                    origin,
                    format!("{name} is an empty command"),
                    format!("remove {name}, or write the program and its arguments"),
                );
            }
        }
    }
}

/// `key_type`: the names of [`KeyAlgorithm`](certvakt_plugin_api::profile::KeyAlgorithm).
pub(super) fn key_algorithm(
    text: &str,
) -> Result<certvakt_plugin_api::profile::KeyAlgorithm, Refusal> {
    use certvakt_plugin_api::profile::KeyAlgorithm as K;
    [K::Rsa2048, K::Rsa3072, K::Rsa4096, K::EcP256, K::EcP384]
        .into_iter()
        .find(|k| k.as_str() == text)
        .ok_or_else(|| Refusal {
            message: format!("\"{text}\" is not a key type"),
            hint: "write one of rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384".into(),
        })
}

/// `[[certificate.verify]] address`: `host:port`, the port a number 1..=65535 and the host a
/// name or an IP address (IPv6 in brackets).
pub(super) fn endpoint_address(text: &str) -> Result<String, Refusal> {
    let refusal = |message: String| {
        Refusal {
        message,
        hint: "write the host and port the service listens on, e.g. address = \"127.0.0.1:443\", \"mail.apotek.dk:25\" or \"[::1]:8443\"".into(),
    }
    };
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(refusal(format!("\"{text}\" has no port")));
    };
    if !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return Err(refusal(format!(
            "\"{port}\" in \"{text}\" is not a port (1-65535)"
        )));
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let valid = match bare {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            host.parse::<std::net::Ipv4Addr>().is_ok()
                || rustls::pki_types::DnsName::try_from(host).is_ok()
        }
    };
    if !valid {
        return Err(refusal(format!(
            "\"{host}\" in \"{text}\" is not a host name or an IP address (an IPv6 address goes in brackets)"
        )));
    }
    Ok(text.to_owned())
}

/// `[[certificate.verify]] sni`: a DNS name.
pub(super) fn sni_name(text: &str) -> Result<String, Refusal> {
    match rustls::pki_types::DnsName::try_from(text) {
        Ok(_) => Ok(text.to_owned()),
        Err(_) => Err(Refusal {
            message: format!("\"{text}\" is not a DNS name"),
            hint:
                "write the name the service's certificate is for, e.g. sni = \"apotek.example.dk\""
                    .into(),
        }),
    }
}

/// `[[certificate.verify]] starttls`: `smtp`, `imap` or `ldap`.
pub(super) fn starttls(text: &str) -> Result<StartTls, Refusal> {
    match text {
        "smtp" => Ok(StartTls::Smtp),
        "imap" => Ok(StartTls::Imap),
        "ldap" => Ok(StartTls::Ldap),
        _ => Err(Refusal {
            message: format!("\"{text}\" is not a STARTTLS protocol certvakt speaks"),
            hint:
                "write starttls = \"smtp\", \"imap\" or \"ldap\", or leave it out for TLS from the first byte"
                    .into(),
        }),
    }
}

/// `key_policy`: `rotate` (or its older name `new`), `reuse` or `prestage`.
pub(super) fn key_policy(text: &str) -> Result<KeyPolicy, Refusal> {
    match text {
        "rotate" | "new" => Ok(KeyPolicy::Rotate),
        "reuse" => Ok(KeyPolicy::Reuse),
        "prestage" => Ok(KeyPolicy::Prestage),
        _ => Err(Refusal {
            message: format!("\"{text}\" is not a key policy"),
            hint: "write key_policy = \"rotate\" (a new key at every renewal), \"reuse\" (keep \
                   the key) or \"prestage\" (make the next key right after a renewal, to publish \
                   its hash in advance)"
                .into(),
        }),
    }
}

/// `key_mode` / `cert_mode`: an octal string of permission bits, `"0600"` .. `"0777"`.
pub(super) fn file_mode(text: &str) -> Result<u32, Refusal> {
    let refusal = || Refusal {
        message: format!("\"{text}\" is not a file mode"),
        hint: "write the permission bits in octal, in quotes, e.g. key_mode = \"0600\"".into(),
    };
    let digits = text
        .strip_prefix('0')
        .filter(|d| !d.is_empty())
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 3 {
        return Err(refusal());
    }
    u32::from_str_radix(digits, 8).map_err(|_| refusal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ManagedCertificate, Watch};

    fn origin(line: usize) -> Origin {
        Origin {
            file: PathBuf::from("/etc/certvakt/certvakt.toml"),
            line,
        }
    }

    fn cert(id: &str, cert: &str, plugin: &str, line: usize) -> ManagedCertificate {
        ManagedCertificate::new(id, cert.into(), plugin, origin(line))
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&Config::defaults()), Vec::<Problem>::new());
    }

    #[test]
    fn reports_every_certificate_problem_at_its_entry() {
        let mut config = Config::defaults();
        config.files = vec![PathBuf::from("/etc/certvakt/certvakt.toml")];
        config.certificates = vec![
            cert("fmk-prod", "/etc/a.pem", "dk-fmk", 3),
            cert("fmk-prod", "/etc/a.pem", "DK-FMK", 9),
            cert("-bad", "rel/c.pem", "dk fmk", 15),
        ];
        config.certificates[2].key = Some("rel/c.pem".into());
        let problems = validate(&config);
        assert_eq!(
            keys(&problems),
            [
                "certificate[1].id",
                "certificate[1].plugin",
                "certificate[1].cert",
                "certificate[2].id",
                "certificate[2].plugin",
                "certificate[2].cert",
                "certificate[2].key",
                "certificate[2].key",
            ]
        );
        assert_eq!(problems[0].line, Some(9));
        assert!(
            problems[0]
                .message
                .contains("also defined at /etc/certvakt/certvakt.toml:3"),
            "{}",
            problems[0]
        );
        assert_eq!(
            problems[1].hint,
            "plugin names are lower case: write \"dk-fmk\""
        );
        assert!(
            problems[2].message.contains("certificate[0] \"fmk-prod\""),
            "{}",
            problems[2]
        );
        assert_eq!(problems[6].message, "\"rel/c.pem\" is not an absolute path");
        assert_eq!(problems[7].message, "key is the same file as cert");
    }

    #[test]
    fn key_origins_beat_entry_origins() {
        let mut config = Config::defaults();
        config.certificates = vec![cert("a", "relative.pem", "acme", 3)];
        config
            .key_origins
            .insert("certificate[0].cert".into(), origin(5));
        let problems = validate(&config);
        assert_eq!(keys(&problems), ["certificate[0].cert"]);
        assert_eq!(problems[0].line, Some(5));
    }

    #[test]
    fn section_problems_without_origin_have_no_line() {
        let mut config = Config::defaults();
        config.files = vec![PathBuf::from("/etc/certvakt/certvakt.toml")];
        config.daemon.state_dir = "state".into();
        config.daemon.max_file_size = 0;
        config.daemon.warn_before = crate::duration::HumanDuration(std::time::Duration::ZERO);
        config.control.admin_group = String::new();
        config.control.read_group = "certvakt readers".into();
        let problems = validate(&config);
        assert_eq!(
            keys(&problems),
            [
                "daemon.state_dir",
                "daemon.warn_before",
                "daemon.max_file_size",
                "control.admin_group",
                "control.read_group",
            ]
        );
        assert!(problems.iter().all(|p| p.line.is_none()));
        assert!(
            problems
                .iter()
                .all(|p| p.file == Path::new("/etc/certvakt/certvakt.toml"))
        );
    }

    #[test]
    fn watch_patterns_must_be_absolute_globs() {
        let mut config = Config::defaults();
        config.watch = vec![
            Watch {
                paths: vec![
                    "/etc/ssl/*.pem".into(),
                    "/etc/ssl/[ab.pem".into(),
                    "x/*.pem".into(),
                ],
                pkcs12_password_file: Some("pass".into()),
                origin: origin(7),
            },
            Watch {
                paths: Vec::new(),
                pkcs12_password_file: None,
                origin: origin(12),
            },
        ];
        let problems = validate(&config);
        assert_eq!(
            keys(&problems),
            [
                "watch[0].paths[1]",
                "watch[0].paths[2]",
                "watch[0].pkcs12_password_file",
                "watch[1].paths",
            ]
        );
        assert_eq!(problems[3].line, Some(12));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address(""), Ok(None));
        assert_eq!(
            listen_address("127.0.0.1:9617"),
            Ok("127.0.0.1:9617".parse::<SocketAddr>().ok())
        );
        assert_eq!(listen_address("[::1]:9617"), Ok("[::1]:9617".parse().ok()));
        let refused = |s: &str| {
            listen_address(s)
                .err()
                .map(|r| r.message)
                .unwrap_or_default()
        };
        assert_eq!(
            refused("localhost:9617"),
            "\"localhost\" is a host name; the metrics endpoint needs an IP address"
        );
        assert_eq!(refused("127.0.0.1"), "\"127.0.0.1\" has no port");
        assert_eq!(
            refused("127.0.0.1:http"),
            "\"http\" in \"127.0.0.1:http\" is not a port (1-65535)"
        );
        assert!(refused("::1:9617").contains("needs brackets"));
        assert!(refused("fe80::1%eth0:9617").contains("needs brackets"));
        assert_eq!(refused("localhost"), "\"localhost\" has no port");
    }

    #[test]
    fn names() {
        assert!(is_valid_id("fmk-prod"));
        assert!(is_valid_id("A.b_c-1"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(".hidden"));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(is_valid_plugin_name("dk-fmk"));
        assert!(!is_valid_plugin_name("dk_fmk"));
        assert!(!is_valid_plugin_name("-x"));
        assert!(is_valid_group_name("certvakt-admin"));
        assert!(!is_valid_group_name("1000"));
        assert!(!is_valid_group_name("a:b"));
        assert_eq!(log_level("DEBUG"), Ok(log::LevelFilter::Debug));
        assert!(log_level("off").is_err());
    }
}
