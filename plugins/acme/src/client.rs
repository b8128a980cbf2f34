//! The ACME client: directory, nonces, signed requests, problem documents, the account.
//!
//! Contract:
//! - Every request goes through [`Host::http`] with the configured trust set; nothing here
//!   opens a socket.
//! - [`Client::post`] signs with the account (`kid`) or the bare key (`jwk`), retries a
//!   `badNonce` refusal with the fresh nonce the refusal carries (RFC 8555 §6.5) up to
//!   [`NONCE_ATTEMPTS`] times, and keeps the newest nonce for the next request and, through
//!   [`CaCache`], for the next call.
//! - The directory is read once per [`DIRECTORY_TTL_SECS`] and kept in [`CaCache`], not at
//!   every call: a hundred orders polled every second would otherwise read it a hundred
//!   times a second.
//! - A refusal becomes a [`Failure`]: `Later` when the CA asks us to come back (rate limits,
//!   `Retry-After` on 429/503) — the caller turns it into a pending outcome, not an error;
//!   `NoAccount` when the CA does not know the account; `Gone` for a 404; otherwise a
//!   [`PluginError`] whose kind says whether to retry, naming the CA's problem type and detail.
//! - [`Client::account`] finds or creates the account for the configured key, and rolls the
//!   account over to a new key when `account_key_type` changed (RFC 8555 §7.3.5). The account
//!   key is the plugin's, one per directory and key type, shared by every certificate.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use certvakt_plugin_api::profile::KeyAlgorithm;
use certvakt_plugin_api::{Host, HostError, HttpRequest, HttpResponse, PluginError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::jws::{self, AccountKey};
use crate::settings::Settings;

/// How many times one request is sent again after `badNonce`.
pub const NONCE_ATTEMPTS: usize = 40;
/// How long to come back after a refusal that asks for it without saying when.
pub const DEFAULT_LATER_SECS: u64 = 60;
/// Longest wait a `Retry-After` is believed for (a broken header must not park a renewal).
const MAX_LATER_SECS: u64 = 24 * 3_600;
/// Nonces kept per directory between calls.
const POOL_SIZE: usize = 16;
/// How long a directory read is used before it is read again.
pub const DIRECTORY_TTL_SECS: i64 = 3_600;

/// Why a request did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The CA asks to be asked again later: rate limited, or busy with a `Retry-After`.
    Later {
        after_secs: u64,
        why: String,
    },
    /// The CA does not know the account the request was signed for.
    NoAccount(String),
    /// 404: the CA does not know the object (an order it forgot).
    Gone(String),
    Error(PluginError),
}

impl From<PluginError> for Failure {
    fn from(error: PluginError) -> Failure {
        Failure::Error(error)
    }
}

impl From<HostError> for Failure {
    fn from(error: HostError) -> Failure {
        Failure::Error(PluginError::from(error))
    }
}

impl Failure {
    /// As a plugin error, for callers that cannot wait or recover.
    pub fn into_error(self) -> PluginError {
        match self {
            Failure::Later { why, .. } => PluginError::temporary(why),
            Failure::NoAccount(why) | Failure::Gone(why) => PluginError::permanent(why),
            Failure::Error(error) => error,
        }
    }
}

/// What the plugin keeps between calls, per directory URL: nonces left over (saves a round
/// trip per call) and the directory itself, with when it was read.
#[derive(Debug, Default)]
pub struct CaCache {
    nonces: Mutex<HashMap<String, Vec<String>>>,
    directories: Mutex<HashMap<String, (Directory, i64)>>,
}

impl CaCache {
    fn directory(&self, url: &str, now: i64) -> Option<Directory> {
        let map = self
            .directories
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(url)
            .filter(|(_, read_at)| now - read_at < DIRECTORY_TTL_SECS)
            .map(|(directory, _)| directory.clone())
    }

    fn keep_directory(&self, url: &str, directory: &Directory, now: i64) {
        let mut map = self
            .directories
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(url.to_owned(), (directory.clone(), now));
    }

    fn take(&self, directory: &str) -> Option<String> {
        let mut map = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        map.get_mut(directory)?.pop()
    }

    fn give(&self, directory: &str, nonce: String) {
        let mut map = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        let list = map.entry(directory.to_owned()).or_default();
        if list.len() >= POOL_SIZE {
            list.remove(0);
        }
        list.push(nonce);
    }
}

/// The directory object (RFC 8555 §7.1.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    #[serde(default)]
    pub revoke_cert: Option<String>,
    #[serde(default)]
    pub key_change: Option<String>,
    /// ACME Renewal Information (RFC 9773), when the CA offers it.
    #[serde(default)]
    pub renewal_info: Option<String>,
    #[serde(default)]
    pub meta: Meta,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub terms_of_service: Option<String>,
    #[serde(default)]
    pub external_account_required: bool,
}

/// A problem document (RFC 7807 as RFC 8555 §6.7 uses it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Problem {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub subproblems: Vec<Problem>,
}

impl Problem {
    /// The type without the ACME namespace: `badNonce`, `rateLimited`, …
    pub fn short(&self) -> &str {
        self.kind
            .strip_prefix("urn:ietf:params:acme:error:")
            .unwrap_or(&self.kind)
    }

    /// One line: type, detail, and the subproblems' details.
    pub fn describe(&self) -> String {
        let mut text = format!("{}: {}", self.short(), self.detail);
        for sub in &self.subproblems {
            text.push_str(&format!("; {}: {}", sub.short(), sub.detail));
        }
        text
    }
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub response: HttpResponse,
    /// Seconds from `Retry-After`, if the CA sent one.
    pub retry_after: Option<u64>,
}

impl Answer {
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, PluginError> {
        serde_json::from_slice(&self.response.body).map_err(|e| {
            PluginError::permanent(format!(
                "the CA's {what} does not parse as ACME says it should: {e}"
            ))
        })
    }

    pub fn location(&self, what: &str) -> Result<String, PluginError> {
        self.response
            .header("location")
            .map(str::to_owned)
            .ok_or_else(|| {
                PluginError::permanent(format!("the CA answered {what} without a Location header"))
            })
    }

    /// The targets of `Link: <url>;rel="<rel>"` headers.
    pub fn links(&self, rel: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value) in &self.response.headers {
            if !name.eq_ignore_ascii_case("link") {
                continue;
            }
            for link in value.split(',') {
                let mut parts = link.split(';');
                let Some(target) = parts.next().map(str::trim) else {
                    continue;
                };
                let matches = parts.any(|p| {
                    let p = p.trim().replace(' ', "");
                    p == format!("rel=\"{rel}\"") || p == format!("rel={rel}")
                });
                if matches
                    && let Some(url) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>'))
                {
                    out.push(url.to_owned());
                }
            }
        }
        out
    }
}

/// Who signs a request.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// The bare key (`jwk` header): newAccount, and revocation by the certificate's key.
    Key(&'a AccountKey),
    /// The account (`kid` header).
    Account(&'a Account),
}

/// The account: its key and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub key: AccountKey,
    pub url: String,
}

/// What is kept per certificate about the account (host state `account`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct AccountRecord {
    directory: String,
    key_name: String,
    key_type: String,
    url: String,
    /// The contact the CA was last given for the account.
    #[serde(default)]
    contact: Vec<String>,
}

const ACCOUNT_STATE: &str = "account";

/// One call's conversation with the CA.
pub struct Client<'a> {
    pub host: Host<'a>,
    pub settings: &'a Settings,
    pub directory: Directory,
    cache: &'a CaCache,
    nonce: std::cell::RefCell<Option<String>>,
}

impl std::fmt::Debug for Client<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("directory", &self.settings.directory)
            .finish_non_exhaustive()
    }
}

impl<'a> Client<'a> {
    /// A client for the configured directory, read now or kept from an earlier call.
    pub fn new(
        host: Host<'a>,
        settings: &'a Settings,
        cache: &'a CaCache,
    ) -> Result<Client<'a>, Failure> {
        let now = host.now()?;
        let directory = match cache.directory(&settings.directory, now) {
            Some(directory) => directory,
            None => {
                let directory = read_directory(host, settings)?;
                cache.keep_directory(&settings.directory, &directory, now);
                directory
            }
        };
        Ok(Client {
            host,
            settings,
            directory,
            cache,
            nonce: std::cell::RefCell::new(None),
        })
    }

    fn fresh_nonce(&self) -> Result<String, Failure> {
        if let Some(nonce) = self.nonce.borrow_mut().take() {
            return Ok(nonce);
        }
        if let Some(nonce) = self.cache.take(&self.settings.directory) {
            return Ok(nonce);
        }
        let url = &self.directory.new_nonce;
        let response = self
            .host
            .http(request(self.settings, HttpRequest::new("HEAD", url)))?;
        match response.header("replay-nonce") {
            Some(nonce) if response.status < 300 => Ok(nonce.to_owned()),
            _ => Err(refusal(&self.host, url, &response, "a new nonce")),
        }
    }

    fn keep_nonce(&self, response: &HttpResponse) {
        if let Some(nonce) = response.header("replay-nonce") {
            *self.nonce.borrow_mut() = Some(nonce.to_owned());
        }
    }

    /// Signs `payload` (`None`: POST-as-GET) for `url` and sends it; retries `badNonce`.
    pub fn post(
        &self,
        url: &str,
        payload: Option<&Value>,
        signer: Signer<'_>,
    ) -> Result<Answer, Failure> {
        self.post_with(url, payload, signer, &[])
    }

    /// [`Client::post`] with extra request headers (`Accept` for certificate chains).
    pub fn post_with(
        &self,
        url: &str,
        payload: Option<&Value>,
        signer: Signer<'_>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, Failure> {
        let mut rejected = 0;
        loop {
            let nonce = self.fresh_nonce()?;
            let mut protected = Map::new();
            protected.insert("nonce".into(), json!(nonce));
            protected.insert("url".into(), json!(url));
            let key = match signer {
                Signer::Key(key) => {
                    protected.insert("jwk".into(), key.jwk.clone());
                    key
                }
                Signer::Account(account) => {
                    protected.insert("kid".into(), json!(account.url));
                    &account.key
                }
            };
            let body = key.sign(&self.host, protected, payload)?;
            let mut http = HttpRequest::post(url, body.to_string())
                .header("content-type", "application/jose+json");
            for (name, value) in headers {
                http = http.header(*name, *value);
            }
            let response = self.host.http(request(self.settings, http))?;
            self.keep_nonce(&response);
            if response.status < 400 {
                let retry_after = retry_after(&self.host, &response);
                return Ok(Answer {
                    response,
                    retry_after,
                });
            }
            let problem = problem(&response);
            if problem.short() == "badNonce" && rejected + 1 < NONCE_ATTEMPTS {
                rejected += 1;
                continue;
            }
            return Err(refusal(&self.host, url, &response, "the request"));
        }
    }

    /// Gives the last nonce back to the cache for the next call.
    pub fn finish(&self) {
        if let Some(nonce) = self.nonce.borrow_mut().take() {
            self.cache.give(&self.settings.directory, nonce);
        }
    }

    /// The account for this directory and key type: cached, found, rolled over or created.
    pub fn account(&self) -> Result<Account, Failure> {
        let settings = self.settings;
        let key_name = key_name(&settings.directory, settings.account_key);
        let key = AccountKey::load(&self.host, &key_name, settings.account_key)?;
        let record = self
            .remembered()?
            .filter(|r: &AccountRecord| r.directory == settings.directory);
        if let Some(record) = &record
            && record.key_name == key_name
        {
            let account = Account {
                key,
                url: record.url.clone(),
            };
            if record.contact != settings.contact {
                self.update_contact(&account)?;
            }
            return Ok(account);
        }
        // Known to the CA under this key already (another certificate made or rolled it)?
        match self.post(
            &self.directory.new_account,
            Some(&json!({"onlyReturnExisting": true})),
            Signer::Key(&key),
        ) {
            Ok(answer) => {
                let account = Account {
                    url: answer.location("the account lookup")?,
                    key,
                };
                // Found, not made here: its contact may be another certificate's.
                if settings.contact.is_empty() {
                    self.remember(&account)?;
                } else {
                    self.update_contact(&account)?;
                }
                return Ok(account);
            }
            Err(Failure::NoAccount(_)) => {}
            Err(other) => return Err(other),
        }
        if let Some(old) = record {
            match self.roll_over(&old, &key) {
                Ok(account) => {
                    if old.contact != settings.contact {
                        self.update_contact(&account)?;
                    }
                    return Ok(account);
                }
                Err(Failure::NoAccount(_)) => {
                    self.host.warn(format!(
                        "the CA no longer knows the account {}; registering a new one",
                        old.url
                    ));
                }
                Err(other) => return Err(other),
            }
        }
        self.create(key)
    }

    /// The account record a previous call remembered. The record only saves a lookup: the
    /// account is the key's, and the CA finds it by the key. So a record that does not parse
    /// is reported and the account looked up again (and remembered anew), rather than
    /// stopping the run.
    fn remembered(&self) -> Result<Option<AccountRecord>, Failure> {
        let value = self.host.state_get(ACCOUNT_STATE)?.unwrap_or(Value::Null);
        match certvakt_plugin_common::state::parse::<Option<AccountRecord>>(&value) {
            Ok(record) => Ok(record),
            Err(unreadable) => {
                self.host.log_with(
                    certvakt_plugin_api::LogLevel::Warn,
                    format!(
                        "the ACME account record certvakt keeps does not parse \
                         ({unreadable}): it was written by another version of the acme plugin, \
                         or it is damaged. Asking the CA for the account of this key again"
                    ),
                    &[],
                );
                Ok(None)
            }
        }
    }

    fn remember(&self, account: &Account) -> Result<(), Failure> {
        let record = AccountRecord {
            directory: self.settings.directory.clone(),
            key_name: account.key.name.clone(),
            key_type: account.key.algorithm.as_str().to_owned(),
            url: account.url.clone(),
            contact: self.settings.contact.clone(),
        };
        let value = serde_json::to_value(record).unwrap_or(Value::Null);
        self.host.state_put(ACCOUNT_STATE, value)?;
        Ok(())
    }

    /// Gives the CA the configured contact for the account (RFC 8555 §7.3.2).
    fn update_contact(&self, account: &Account) -> Result<(), Failure> {
        let contact = &self.settings.contact;
        self.post(
            &account.url,
            Some(&json!({ "contact": contact })),
            Signer::Account(account),
        )?;
        self.host.log_with(
            certvakt_plugin_api::LogLevel::Info,
            format!(
                "updated the ACME account's contact to {}",
                contact.join(", ")
            ),
            &[("account", &account.url)],
        );
        self.remember(account)
    }

    /// Forgets the cached account (the CA said it does not know it).
    pub fn forget_account(&self) -> Result<(), Failure> {
        self.host.state_put(ACCOUNT_STATE, Value::Null)?;
        Ok(())
    }

    /// Registers a new account for `key`: terms, contact, external account binding.
    fn create(&self, key: AccountKey) -> Result<Account, Failure> {
        let settings = self.settings;
        let meta = &self.directory.meta;
        if let Some(terms) = &meta.terms_of_service
            && !settings.agree_terms
        {
            return Err(PluginError::configuration(format!(
                "the CA asks new accounts to agree to its terms of service at {terms}; read them, \
                 then set agree_terms = true in [certificate.settings]"
            ))
            .into());
        }
        let mut payload = json!({
            "termsOfServiceAgreed": settings.agree_terms,
            "contact": settings.contact,
        });
        match (&settings.external_account, meta.external_account_required) {
            (Some(eab), _) => {
                // The host reads it (this process may not open files) and warns when any user
                // may read it.
                let path = eab.hmac_key_file.display().to_string();
                let bytes = self.host.read_secret(&path).map_err(|e| {
                    PluginError::configuration(format!(
                        "cannot read the external account binding key {path}: {}",
                        e.message
                    ))
                })?;
                let secret = String::from_utf8(bytes).map_err(|_| {
                    PluginError::configuration(format!(
                        "the external account binding key {path} is not text (base64url)"
                    ))
                })?;
                payload["externalAccountBinding"] = jws::external_account_binding(
                    &eab.kid,
                    &secret,
                    &self.directory.new_account,
                    &key.jwk,
                )?;
            }
            (None, true) => {
                return Err(PluginError::configuration(
                    "the CA accepts accounts only with an external account binding; set eab_kid \
                     and eab_hmac_key_file to what the CA gave you",
                )
                .into());
            }
            (None, false) => {}
        }
        let answer = self.post(
            &self.directory.new_account,
            Some(&payload),
            Signer::Key(&key),
        )?;
        let account = Account {
            url: answer.location("the new account")?,
            key,
        };
        self.host.log_with(
            certvakt_plugin_api::LogLevel::Info,
            "registered an ACME account",
            &[
                ("account", &account.url),
                ("directory", &settings.directory),
            ],
        );
        self.remember(&account)?;
        Ok(account)
    }

    /// Moves the account in `old` to `new_key` (RFC 8555 §7.3.5).
    fn roll_over(&self, old: &AccountRecord, new_key: &AccountKey) -> Result<Account, Failure> {
        let Some(url) = self.directory.key_change.clone() else {
            return Err(PluginError::configuration(format!(
                "account_key_type changed, but the CA offers no key change; set it back to {}",
                old.key_type
            ))
            .into());
        };
        let algorithm = match old.key_type.as_str() {
            "ec-p384" => KeyAlgorithm::EcP384,
            _ => KeyAlgorithm::EcP256,
        };
        let old_key = AccountKey::load(&self.host, &old.key_name, algorithm)?;
        let mut inner_protected = Map::new();
        inner_protected.insert("jwk".into(), new_key.jwk.clone());
        inner_protected.insert("url".into(), json!(url));
        let inner = new_key.sign(
            &self.host,
            inner_protected,
            Some(&json!({"account": old.url, "oldKey": old_key.jwk})),
        )?;
        let old_account = Account {
            key: old_key,
            url: old.url.clone(),
        };
        self.post(&url, Some(&inner), Signer::Account(&old_account))?;
        let account = Account {
            key: new_key.clone(),
            url: old.url.clone(),
        };
        self.host.log_with(
            certvakt_plugin_api::LogLevel::Info,
            "rolled the ACME account over to a new key",
            &[
                ("account", &account.url),
                ("old_key", &old.key_name),
                ("new_key", &new_key.name),
            ],
        );
        self.remember(&account)?;
        Ok(account)
    }
}

/// Reads the directory object at the configured URL.
fn read_directory(host: Host<'_>, settings: &Settings) -> Result<Directory, Failure> {
    let response = host.http(request(settings, HttpRequest::get(&settings.directory)))?;
    if response.status != 200 {
        return Err(refusal(
            &host,
            &settings.directory,
            &response,
            "the directory",
        ));
    }
    let directory: Directory = serde_json::from_slice(&response.body).map_err(|e| {
        PluginError::configuration(format!(
            "{} does not look like an ACME directory ({e}); check the directory setting",
            settings.directory
        ))
    })?;
    Ok(directory)
}

/// The plugin key's name for an account at `directory` with a key of `algorithm`.
pub fn key_name(directory: &str, algorithm: KeyAlgorithm) -> String {
    let digest = Sha256::digest(directory.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("account-{hex}-{}", algorithm.as_str())
}

/// Adds the configured trust set.
pub fn request(settings: &Settings, mut request: HttpRequest) -> HttpRequest {
    if let Some(trust) = &settings.trust {
        request = request.trust(trust.clone());
    }
    request
}

fn problem(response: &HttpResponse) -> Problem {
    serde_json::from_slice(&response.body).unwrap_or_default()
}

/// Seconds to wait, from `Retry-After` (delta-seconds or an HTTP date).
pub fn retry_after(host: &Host<'_>, response: &HttpResponse) -> Option<u64> {
    let value = response.header("retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.min(MAX_LATER_SECS));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let now = u64::try_from(host.now().ok()?).ok()?;
    Some(at.saturating_sub(now).min(MAX_LATER_SECS))
}

/// A refused request as a [`Failure`], in the CA's own words.
pub fn refusal(host: &Host<'_>, url: &str, response: &HttpResponse, what: &str) -> Failure {
    let problem = problem(response);
    let status = response.status;
    let said = if problem.kind.is_empty() {
        let body = String::from_utf8_lossy(&response.body);
        let body: String = body.chars().take(200).collect();
        format!("HTTP {status} {}", body.trim())
    } else {
        format!("HTTP {status} {}", problem.describe())
    };
    let message = format!("the ACME server refused {what} ({url}): {said}");
    let later = retry_after(host, response);
    match problem.short() {
        "rateLimited" => Failure::Later {
            after_secs: later.unwrap_or(3_600),
            why: message,
        },
        "accountDoesNotExist" => Failure::NoAccount(message),
        "userActionRequired" => Failure::Error(PluginError::needs_person(format!(
            "{message}; the CA needs a person to act{}",
            problem
                .instance
                .map(|i| format!(" at {i}"))
                .unwrap_or_default()
        ))),
        "externalAccountRequired" | "invalidContact" | "unsupportedContact" => Failure::Error(
            PluginError::configuration(message).with_fault_code(problem.short().to_owned()),
        ),
        _ if status == 404 => Failure::Gone(message),
        _ if status == 429 || (status == 503 && later.is_some()) => Failure::Later {
            after_secs: later.unwrap_or(DEFAULT_LATER_SECS),
            why: message,
        },
        "serverInternal" | "badNonce" => Failure::Error(
            PluginError::temporary(message).with_fault_code(problem.short().to_owned()),
        ),
        _ if status >= 500 => Failure::Error(PluginError::temporary(message)),
        kind if !kind.is_empty() => {
            Failure::Error(PluginError::permanent(message).with_fault_code(kind.to_owned()))
        }
        _ => Failure::Error(PluginError::permanent(message)),
    }
}
