//! The ACME plugin's settings: one parser, used both to validate and to act.
//!
//! Contract:
//! - [`Settings::parse`] reads a certificate's `[certificate.settings]` (as JSON) and returns
//!   the settings or every problem at once, each naming its key (`domains[2]`) and, where it
//!   helps, what to write instead. `validate_settings` returns those problems; every other
//!   method refuses to act on settings with problems ([`Settings::for_call`]).
//! - Nothing here touches the network or the disk: whether the directory answers, the terms
//!   are agreed or the EAB key file is readable is found out when the plugin acts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use certvakt_plugin_api::duration::HumanDuration;
use certvakt_plugin_api::profile::KeyAlgorithm;
use certvakt_plugin_api::{PluginError, SettingDoc, SettingProblem};
use serde_json::{Map, Value};

/// Let's Encrypt's production directory (`directory = "letsencrypt"`).
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`directory = "letsencrypt-staging"`).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How the CA is shown that we control a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// http-01, answered by the daemon's own responder (`[daemon] http01_listen`).
    Http01Responder,
    /// http-01, answered by files written under a web server's document root.
    Http01Webroot(PathBuf),
    /// dns-01: a command publishes and removes the TXT record.
    Dns01 {
        hook: Vec<String>,
        /// Seconds between publishing the records and asking the CA to look.
        wait_secs: u64,
    },
}

impl Challenge {
    /// The ACME challenge type.
    pub fn kind(&self) -> &'static str {
        match self {
            Challenge::Http01Responder | Challenge::Http01Webroot(_) => "http-01",
            Challenge::Dns01 { .. } => "dns-01",
        }
    }
}

/// External account binding (RFC 8555 §7.3.4), for CAs that tie ACME accounts to a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalAccount {
    pub kid: String,
    /// A file holding the CA's HMAC key, base64url as the CA hands it out.
    pub hmac_key_file: PathBuf,
}

/// A certificate's ACME settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The directory URL.
    pub directory: String,
    /// A `[trust]` set for the ACME server's TLS certificate; `None`: the system roots.
    pub trust: Option<String>,
    /// The names to certify, lower case; the first is also the subject CN when it fits.
    pub domains: Vec<String>,
    pub contact: Vec<String>,
    pub agree_terms: bool,
    pub challenge: Challenge,
    pub key: KeyAlgorithm,
    pub account_key: KeyAlgorithm,
    pub preferred_chain: Option<String>,
    pub external_account: Option<ExternalAccount>,
    pub revoke_old: bool,
}

/// Every setting, documented: what `describe` shows and what [`Settings::parse`] knows.
pub fn docs() -> Vec<SettingDoc> {
    vec![
        SettingDoc::required(
            "directory",
            "The CA's ACME directory URL, or \"letsencrypt\" / \"letsencrypt-staging\".",
        )
        .example("\"letsencrypt\""),
        SettingDoc::required(
            "domains",
            "The DNS names to certify (one certificate for all). \"*.name\" needs dns-01.",
        )
        .example("[\"apotek.example\", \"www.apotek.example\"]"),
        SettingDoc::optional(
            "contact",
            "Where the CA writes about the account (expiry, incidents): \"mailto:\" URLs.",
        )
        .example("[\"mailto:it@apotek.example\"]"),
        SettingDoc::optional(
            "agree_terms",
            "true once you have read and agree to the CA's terms of service; required by \
             CAs that publish terms (Let's Encrypt does). Default false.",
        )
        .example("true"),
        SettingDoc::optional("challenge", "\"http-01\" (default) or \"dns-01\".")
            .example("\"dns-01\""),
        SettingDoc::optional(
            "webroot",
            "http-01 only: write the challenge files under this document root \
             (DIR/.well-known/acme-challenge/) instead of answering on [daemon] http01_listen.",
        )
        .example("\"/var/www/html\""),
        SettingDoc::optional(
            "dns_hook",
            "dns-01 only (required there): the command that publishes a TXT record, as a \
             list. The daemon runs it like its hooks, as HOOK... set NAME VALUE and HOOK... \
             unset NAME VALUE, with CERTVAKT_ACME_ACTION, CERTVAKT_ACME_DOMAIN, \
             CERTVAKT_ACME_TXT_NAME and CERTVAKT_ACME_TXT_VALUE in its environment; exit 0 \
             means done.",
        )
        .example("[\"/usr/local/lib/certvakt/dns-hook\"]"),
        SettingDoc::optional(
            "dns_wait",
            "dns-01 only: how long the records need to reach every name server before the \
             CA may look, e.g. \"30s\", \"2m\", \"1m30s\" (units w d h m s, no bare \
             numbers). Default \"0s\".",
        )
        .example("\"60s\""),
        SettingDoc::optional(
            "key_type",
            "The certificate's key: ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096.",
        )
        .example("\"rsa-3072\""),
        SettingDoc::optional(
            "account_key_type",
            "The ACME account key: ec-p256 (default) or ec-p384. Changing it rolls the \
             account over to a new key (RFC 8555 §7.3.5); the account stays the same.",
        )
        .example("\"ec-p384\""),
        SettingDoc::optional(
            "trust",
            "A [trust] set to check the ACME server's TLS certificate with. Default: the \
             system's roots.",
        )
        .example("\"internal-ca\""),
        SettingDoc::optional(
            "preferred_chain",
            "The common name of the root (or top issuer) of the chain to install, when the CA \
             offers alternate chains. Default: the CA's default chain.",
        )
        .example("\"ISRG Root X1\""),
        SettingDoc::optional(
            "eab_kid",
            "External account binding: the key id the CA gave you (commercial ACME CAs).",
        )
        .example("\"kid-2f7c\""),
        SettingDoc::optional(
            "eab_hmac_key_file",
            "External account binding: a file (readable by certvakt only) holding the HMAC \
             key the CA gave you, base64url.",
        )
        .example("\"/etc/certvakt/acme-eab.key\""),
        SettingDoc::optional(
            "revoke_old",
            "true: revoke the replaced certificate (reason superseded) once the overlap is \
             over. Default false.",
        )
        .example("true"),
    ]
}

const KEY_TYPES: [KeyAlgorithm; 5] = [
    KeyAlgorithm::EcP256,
    KeyAlgorithm::EcP384,
    KeyAlgorithm::Rsa2048,
    KeyAlgorithm::Rsa3072,
    KeyAlgorithm::Rsa4096,
];

/// Collects problems while reading the table.
struct Reader<'a> {
    table: &'a Map<String, Value>,
    problems: Vec<SettingProblem>,
}

impl<'a> Reader<'a> {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(SettingProblem::new(key, message));
    }

    fn hint(&mut self, key: impl Into<String>, message: impl Into<String>, hint: &str) {
        self.problems
            .push(SettingProblem::new(key, message).with_hint(hint));
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.table.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::String(_) => {
                self.problem(key, "is empty");
                None
            }
            other => {
                self.problem(key, format!("must be a string, not {}", kind(other)));
                None
            }
        }
    }

    fn bool(&mut self, key: &str) -> bool {
        match self.table.get(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.problem(key, format!("must be true or false, not {}", kind(other)));
                false
            }
        }
    }

    fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        match self.table.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) => out.push(s.trim().to_owned()),
                        None => self.problem(
                            format!("{key}[{i}]"),
                            format!("must be a string, not {}", kind(item)),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    key,
                    format!("must be a list of strings, not {}", kind(other)),
                );
                None
            }
        }
    }

    fn key_type(&mut self, key: &str, allowed: &[KeyAlgorithm]) -> KeyAlgorithm {
        let Some(name) = self.string(key) else {
            return KeyAlgorithm::EcP256;
        };
        match allowed.iter().find(|k| k.as_str() == name) {
            Some(k) => *k,
            None => {
                let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
                self.hint(
                    key,
                    format!("{name:?} is not a key type this plugin makes"),
                    &format!("write one of {}", names.join(", ")),
                );
                KeyAlgorithm::EcP256
            }
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

impl Settings {
    /// The settings, or every problem in them.
    pub fn parse(settings: &Value) -> Result<Settings, Vec<SettingProblem>> {
        let empty = Map::new();
        let table = match settings {
            Value::Object(table) => table,
            Value::Null => &empty,
            _ => {
                return Err(vec![
                    SettingProblem::new("", "the settings must be a table")
                        .with_hint("write them under [certificate.settings]"),
                ]);
            }
        };
        let mut r = Reader {
            table,
            problems: Vec::new(),
        };
        let known: BTreeMap<String, ()> = docs().into_iter().map(|d| (d.key, ())).collect();
        for key in table.keys() {
            if !known.contains_key(key) {
                let names: Vec<&str> = known.keys().map(String::as_str).collect();
                r.hint(
                    key.clone(),
                    "is not a setting of the acme plugin",
                    &format!("the settings are {}", names.join(", ")),
                );
            }
        }

        let directory = match r.string("directory").as_deref() {
            None if !table.contains_key("directory") => {
                r.hint(
                    "directory",
                    "is required: the CA's ACME directory URL",
                    "for example directory = \"letsencrypt\" or \"https://acme.example/directory\"",
                );
                String::new()
            }
            None => String::new(),
            Some("letsencrypt") => LETSENCRYPT.to_owned(),
            Some("letsencrypt-staging") => LETSENCRYPT_STAGING.to_owned(),
            Some(url) if url.starts_with("https://") => url.to_owned(),
            Some(url) => {
                r.hint(
                    "directory",
                    format!("{url:?} is not an https:// URL"),
                    "ACME runs over HTTPS: give the directory URL the CA publishes",
                );
                String::new()
            }
        };

        let challenge_name = r.string("challenge").unwrap_or_else(|| "http-01".into());
        let webroot = r.string("webroot");
        let hook = r.strings("dns_hook");
        // The SDK's duration syntax, the daemon's own: `"90s"`, `"1m30s"`, at most 100 years.
        let wait_secs = match r.string("dns_wait") {
            None => 0,
            Some(text) => match text.parse::<HumanDuration>() {
                Ok(wait) => wait.as_secs(),
                Err(e) => {
                    r.hint(
                        "dns_wait",
                        e.to_string(),
                        "write how long to wait with a unit, like \"30s\", \"2m\" or \"1m30s\"",
                    );
                    0
                }
            },
        };
        let challenge = match challenge_name.as_str() {
            "http-01" => {
                if hook.is_some() {
                    r.hint(
                        "dns_hook",
                        "is for dns-01, but challenge is http-01",
                        "remove it, or set challenge = \"dns-01\"",
                    );
                }
                match webroot {
                    Some(dir) if dir.starts_with('/') => Challenge::Http01Webroot(dir.into()),
                    Some(dir) => {
                        r.problem("webroot", format!("{dir:?} must be an absolute path"));
                        Challenge::Http01Responder
                    }
                    None => Challenge::Http01Responder,
                }
            }
            "dns-01" => {
                if webroot.is_some() {
                    r.hint(
                        "webroot",
                        "is for http-01, but challenge is dns-01",
                        "remove it, or set challenge = \"http-01\"",
                    );
                }
                match hook {
                    Some(hook) if hook.first().is_some_and(|p| p.starts_with('/')) => {
                        Challenge::Dns01 { hook, wait_secs }
                    }
                    Some(_) => {
                        r.hint(
                            "dns_hook",
                            "must start with the hook program's absolute path",
                            "for example dns_hook = [\"/usr/local/lib/certvakt/dns-hook\"]",
                        );
                        Challenge::Http01Responder
                    }
                    None => {
                        r.hint(
                            "dns_hook",
                            "is required for dns-01: certvakt needs a command that publishes the TXT record",
                            "see the acme plugin's README for the hook's contract",
                        );
                        Challenge::Http01Responder
                    }
                }
            }
            other => {
                r.hint(
                    "challenge",
                    format!("{other:?} is not a challenge type this plugin answers"),
                    "write \"http-01\" or \"dns-01\"",
                );
                Challenge::Http01Responder
            }
        };

        let mut domains = Vec::new();
        match r.strings("domains") {
            None if !table.contains_key("domains") => r.hint(
                "domains",
                "is required: the names to certify",
                "for example domains = [\"apotek.example\"]",
            ),
            None => {}
            Some(list) if list.is_empty() => r.problem("domains", "names no domain"),
            Some(list) => {
                for (i, name) in list.iter().enumerate() {
                    let name = name.to_ascii_lowercase();
                    if let Err(why) = check_domain(&name) {
                        r.problem(format!("domains[{i}]"), format!("{name:?} {why}"));
                    } else if name.starts_with("*.") && challenge_name == "http-01" {
                        r.hint(
                            format!("domains[{i}]"),
                            format!(
                                "{name:?} is a wildcard, which ACME CAs validate only with dns-01"
                            ),
                            "set challenge = \"dns-01\" and a dns_hook",
                        );
                    } else if domains.contains(&name) {
                        r.problem(format!("domains[{i}]"), format!("{name:?} is listed twice"));
                    } else {
                        domains.push(name);
                    }
                }
            }
        }

        let contact = r.strings("contact").unwrap_or_default();
        for (i, c) in contact.iter().enumerate() {
            let valid = c
                .strip_prefix("mailto:")
                .is_some_and(|m| m.contains('@') && !m.contains(',') && !m.contains(' '));
            if !valid {
                r.hint(
                    format!("contact[{i}]"),
                    format!("{c:?} is not a mailto: URL with one address"),
                    "write \"mailto:it@apotek.example\"",
                );
            }
        }
        let agree_terms = r.bool("agree_terms");
        let key = r.key_type("key_type", &KEY_TYPES);
        let account_key = r.key_type(
            "account_key_type",
            &[KeyAlgorithm::EcP256, KeyAlgorithm::EcP384],
        );
        let trust = r.string("trust");
        let preferred_chain = r.string("preferred_chain");
        let external_account = match (r.string("eab_kid"), r.string("eab_hmac_key_file")) {
            (Some(kid), Some(file)) if file.starts_with('/') => Some(ExternalAccount {
                kid,
                hmac_key_file: file.into(),
            }),
            (Some(_), Some(file)) => {
                r.problem(
                    "eab_hmac_key_file",
                    format!("{file:?} must be an absolute path"),
                );
                None
            }
            (Some(_), None) => {
                r.hint(
                    "eab_hmac_key_file",
                    "is required with eab_kid",
                    "put the HMAC key the CA gave you in a file only certvakt can read, and name it here",
                );
                None
            }
            (None, Some(_)) => {
                r.hint(
                    "eab_kid",
                    "is required with eab_hmac_key_file",
                    "write the key id the CA gave you",
                );
                None
            }
            (None, None) => None,
        };
        let revoke_old = r.bool("revoke_old");

        if r.problems.is_empty() {
            Ok(Settings {
                directory,
                trust,
                domains,
                contact,
                agree_terms,
                challenge,
                key,
                account_key,
                preferred_chain,
                external_account,
                revoke_old,
            })
        } else {
            Err(r.problems)
        }
    }

    /// The settings, or a configuration error listing every problem: for the methods that act.
    pub fn for_call(settings: &Value) -> Result<Settings, PluginError> {
        Settings::parse(settings).map_err(|problems| {
            let list: Vec<String> = problems
                .iter()
                .map(|p| {
                    if p.key.is_empty() {
                        p.message.clone()
                    } else {
                        format!("{}: {}", p.key, p.message)
                    }
                })
                .collect();
            PluginError::configuration(format!(
                "the acme settings have problems (certvakt check-config shows them all): {}",
                list.join("; ")
            ))
        })
    }
}

/// Why `name` is not a DNS name a public CA certifies (lower case already).
fn check_domain(name: &str) -> Result<(), &'static str> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.len() > 253 {
        return Err("is longer than 253 characters");
    }
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; this plugin certifies DNS names");
    }
    let labels: Vec<&str> = bare.split('.').collect();
    if labels.len() < 2 {
        return Err("is not a fully qualified name (it needs a dot)");
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return Err("has an empty label or one longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(
                "holds characters other than letters, digits, hyphens and dots (write IDNs as xn--)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label that starts or ends with a hyphen");
        }
    }
    Ok(())
}
