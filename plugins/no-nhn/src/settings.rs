//! The no-nhn plugin's settings: one parser, used to validate and to act.
//!
//! Contract:
//! - [`Settings::parse`] reads a certificate's `[certificate.settings]` (as JSON) and returns
//!   the settings or every problem at once, each naming its key (`service_her_ids[1]`) and,
//!   where it helps, what to write. `validate_settings` returns those problems; every other
//!   method refuses to act on settings with problems ([`Settings::for_call`]).
//! - Defaults that depend on the CA and the environment (AR's address, the LDAP host and base
//!   of the CA's directory, brief no-nhn.md §2.1 and §3) are resolved here, so the rest of the
//!   plugin reads one value. An explicit setting always wins: NHN and the CAs may move an
//!   address without a certvakt release.
//! - Nothing here touches the network or reads the password file.

use certvakt_plugin_api::duration::HumanDuration;
use certvakt_plugin_api::{PluginError, SettingDoc, SettingProblem};
use certvakt_plugin_common::settings::{SettingsReader, digits, https_url, refuse, text};
use serde_json::Value;

/// The issuer of the virksomhetssertifikat set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ca {
    Buypass,
    Commfides,
}

impl Ca {
    pub fn name(self) -> &'static str {
        match self {
            Ca::Buypass => "Buypass",
            Ca::Commfides => "Commfides",
        }
    }

    /// The roles of a set from this CA, the primary (`authentication`) first.
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Ca::Buypass => &["authentication", "signing"],
            Ca::Commfides => &["authentication", "encryption", "signing"],
        }
    }

    /// The role whose certificate (and key) is the encryption one: Buypass's authentication
    /// certificate is also its encryption certificate.
    pub fn encryption_role(self) -> &'static str {
        match self {
            Ca::Buypass => "authentication",
            Ca::Commfides => "encryption",
        }
    }
}

/// NHN's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }
}

/// How certvakt speaks to AR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// SOAP 1.1, `/v1/AR/Basic` (BasicHttpBinding): no WS-Addressing.
    Basic,
    /// SOAP 1.2 with WS-Addressing, `/v1/AR` (WSHttpBinding).
    Soap12,
}

/// Where the set's certificates are published: `ldap://<host>/<base>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapBase {
    /// A base DN, as written (spaces are percent-encoded when the URL is built).
    Fixed(String),
    /// Ask AR (`GetLdapSearchProviders`) and keep the one that resolves the new set.
    Lookup,
}

/// Who makes the set's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The CA (Buypass always; Commfides NCP+): the set arrives as PKCS#12 files.
    Ca,
    /// certvakt (Commfides with customer-generated keys): the order carries one CSR per role.
    Certvakt,
}

/// A certificate's no-nhn settings, checked, with the defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub ca: Ca,
    pub environment: Environment,
    /// The organisation number (organisasjonsnummer), 9 digits.
    pub organization_number: String,
    /// O and CN for a first order (no certificate in use to copy them from).
    pub organization_name: Option<String>,
    /// The organisation's HER-id, whose E_DS address certvakt writes.
    pub her_id: u32,
    /// Services with an E_DS of their own (not inherited), written with UpdateServiceDetails.
    pub service_her_ids: Vec<u32>,
    /// The NHN service account (tjenestekonto).
    pub username: String,
    pub password_file: String,
    pub binding: Binding,
    pub ar_endpoint: String,
    pub ar_trust: Option<String>,
    pub ldap_host: String,
    pub ldap_base: LdapBase,
    pub key_source: KeySource,
    pub minimum_rsa_bits: u64,
    pub order_margin: HumanDuration,
    pub publish_poll: HumanDuration,
    pub publish_timeout: HumanDuration,
    pub switch_after: HumanDuration,
    pub fallback_write_current: bool,
    pub legacy_decrypt_retention: HumanDuration,
    pub verify_url: Option<String>,
    pub verify_trust: Option<String>,
}

/// AR's address per environment and binding (brief §2.1; production `/Basic` by analogy).
/// The shortest `publish_poll`: a test service of one's own may be asked this often; NHN's
/// should be asked far less (the default is 15 minutes).
pub const MIN_PUBLISH_POLL_SECS: u64 = 5;

pub fn default_ar_endpoint(environment: Environment, binding: Binding) -> &'static str {
    match (environment, binding) {
        (Environment::Test, Binding::Basic) => "https://ws-web.test.nhn.no/v1/AR/Basic",
        (Environment::Test, Binding::Soap12) => "https://ws-web.test.nhn.no/v1/AR",
        (Environment::Production, Binding::Basic) => "https://ws.nhn.no/v1/AR/Basic",
        (Environment::Production, Binding::Soap12) => "https://ws.nhn.no/v1/AR",
    }
}

/// The CA's LDAP directory host per environment (brief §3).
pub fn default_ldap_host(ca: Ca, environment: Environment) -> &'static str {
    match (ca, environment) {
        (Ca::Buypass, Environment::Test) => "ldap.test4.buypass.no",
        (Ca::Buypass, Environment::Production) => "ldap.buypass.no",
        (Ca::Commfides, Environment::Test) => "ldap.test.commfides.com",
        (Ca::Commfides, Environment::Production) => "ldap.commfides.com",
    }
}

/// The base DN AR stores for SEID 2 sets of the CA (brief §3: Buypass's as in the real AR
/// sample, `CN=Buypass Class 3 [Test4 ]CA G2`, not the issuing CA's full name).
pub fn default_ldap_base(ca: Ca, environment: Environment) -> &'static str {
    match (ca, environment) {
        (Ca::Buypass, Environment::Test) => "dc=Buypass,dc=no,CN=Buypass Class 3 Test4 CA G2",
        (Ca::Buypass, Environment::Production) => "dc=Buypass,dc=no,CN=Buypass Class 3 CA G2",
        (Ca::Commfides, _) => "ou=Legal-Person-G3,dc=commfides,dc=com",
    }
}

/// Every setting, documented; the parser refuses keys not listed here.
pub fn docs() -> Vec<SettingDoc> {
    vec![
        SettingDoc::required("ca", "\"buypass\" or \"commfides\": who issues the virksomhetssertifikat set. A Buypass set has the roles authentication (also the encryption certificate) and signing; a Commfides set authentication, encryption and signing.")
            .example("\"buypass\""),
        SettingDoc::required("environment", "\"test\" or \"production\": NHN's environment, which chooses the default AR address and the CA's directory.")
            .example("\"production\""),
        SettingDoc::required("organization_number", "The organisation number (organisasjonsnummer, 9 digits); every certificate of the set must carry it as organizationIdentifier NTRNO-<number>.")
            .example("\"931796003\""),
        SettingDoc::optional("organization_name", "O and CN of the subject when there is no certificate in use to copy them from (a first order with certvakt's own keys).")
            .example("\"KS-DIGITALE FELLESTJENESTER AS\""),
        SettingDoc::required("her_id", "The organisation's HER-id in Adresseregisteret: its E_DS address is written with UpdateOrganizationDetails.")
            .example("8142987"),
        SettingDoc::optional("service_her_ids", "HER-ids of services that have an E_DS address of their own (not inherited from the organisation), written with UpdateServiceDetails. Default: none.")
            .example("[8143060]"),
        SettingDoc::required("username", "The NHN service account (tjenestekonto) that may update the organisation in AR.")
            .example("\"certvakt-ks\""),
        SettingDoc::required("password_file", "Absolute path of a file (mode 0600) holding the service account's password, alone; read through the daemon.")
            .example("\"/etc/certvakt/secrets/nhn-ar.pass\""),
        SettingDoc::optional("binding", "\"basic\" (default): SOAP 1.1 on /v1/AR/Basic; \"soap12\": SOAP 1.2 with WS-Addressing on /v1/AR.")
            .example("\"basic\""),
        SettingDoc::optional("ar_endpoint", "AR's address (https URL). Default by environment and binding: https://ws-web.test.nhn.no/v1/AR/Basic (test), https://ws.nhn.no/v1/AR/Basic (production), without /Basic for soap12.")
            .example("\"https://ws-web.test.nhn.no/v1/AR/Basic\""),
        SettingDoc::optional("ar_trust", "The [trust] set AR's TLS certificate must chain to; left out: the system's roots.")
            .example("\"nhn\""),
        SettingDoc::optional("ldap_host", "Host of the CA's LDAP directory in the E_DS URL. Default: ldap.buypass.no / ldap.test4.buypass.no, ldap.commfides.com / ldap.test.commfides.com.")
            .example("\"ldap.buypass.no\""),
        SettingDoc::optional("ldap_base", "Base DN in the E_DS URL, written with plain spaces (certvakt writes them as %20), or \"lookup\": ask AR (GetLdapSearchProviders) and keep the base that finds the new set. Default: dc=Buypass,dc=no,CN=Buypass Class 3 [Test4 ]CA G2, or ou=Legal-Person-G3,dc=commfides,dc=com.")
            .example("\"dc=Buypass,dc=no,CN=Buypass Class 3 CA G2\""),
        SettingDoc::optional("key_source", "\"ca\" (default): the CA makes the keys and the set arrives as PKCS#12 files; \"certvakt\" (Commfides only): certvakt makes a key and a CSR per role, and the order task carries the CSRs.")
            .example("\"ca\""),
        SettingDoc::optional("minimum_rsa_bits", "The smallest RSA key accepted on import (2048 to 16384; default 3072). Commfides sets may also have EC P-256 or P-384 keys.")
            .example("3072"),
        SettingDoc::optional("order_margin", "How long before the certificate in use expires the order task asks for the new set (default \"30d\").")
            .example("\"30d\""),
        SettingDoc::optional("publish_poll", "How often certvakt asks AR whether the CA has published the new set to its directory, and reads back after the switch (default \"15m\").")
            .example("\"15m\""),
        SettingDoc::optional("publish_timeout", "How long certvakt waits for the CA to publish before it opens a task (default \"2d\"); it keeps asking after that.")
            .example("\"2d\""),
        SettingDoc::optional("switch_after", "The switch time (ValidFrom of the new E_DS address), counted from the first write attempt (default \"1d\"). The new set is installed at that time.")
            .example("\"1d\""),
        SettingDoc::optional("fallback_write_current", "true: when AR has not made the future address current after ValidFrom, certvakt writes the current E_DS address itself. Default false: a person is asked to.")
            .example("false"),
        SettingDoc::optional("legacy_decrypt_retention", "How long after the switch the old encryption key stays readable for messages still encrypted to it (default \"30d\"); the run retires after that.")
            .example("\"30d\""),
        SettingDoc::optional("verify_url", "An https URL (e-resept, kjernejournal, …) certvakt calls once with the new set after the install; a TLS failure or HTTP 401/403 is an error. Left out: no call.")
            .example("\"https://pop.test.nhn.no/health\""),
        SettingDoc::optional("verify_trust", "The [trust] set verify_url's TLS certificate must chain to; left out: the system's roots.")
            .example("\"nhn\""),
    ]
}

impl Settings {
    /// The settings, or every problem in them.
    pub fn parse(value: &Value) -> Result<Settings, Vec<SettingProblem>> {
        let mut r = SettingsReader::new(value, "no-nhn", &docs())?;
        let ca = match r.one_of("ca", &["buypass", "commfides"], "").as_str() {
            "buypass" => Some(Ca::Buypass),
            "commfides" => Some(Ca::Commfides),
            _ => None,
        };
        if value.get("ca").is_none() {
            r.problem(
                SettingProblem::new("ca", "is required")
                    .with_hint("write ca = \"buypass\" or \"commfides\""),
            );
        }
        let environment = match r
            .one_of("environment", &["test", "production"], "")
            .as_str()
        {
            "test" => Some(Environment::Test),
            "production" => Some(Environment::Production),
            _ => None,
        };
        if value.get("environment").is_none() {
            r.problem(
                SettingProblem::new("environment", "is required")
                    .with_hint("write environment = \"production\" or \"test\""),
            );
        }
        let organization_number = r.required("organization_number", |v| digits(v, 9));
        let organization_name = r.optional("organization_name", |v| text(v, 200));
        let her_id = match value.get("her_id") {
            None => {
                r.problem(
                    SettingProblem::new("her_id", "is required")
                        .with_hint("write her_id = 8142987 (the organisation's HER-id in AR)"),
                );
                0
            }
            Some(v) => parse_her_id(v).unwrap_or_else(|message| {
                r.problem(SettingProblem::new("her_id", message));
                0
            }),
        };
        let mut service_her_ids = Vec::new();
        match value.get("service_her_ids") {
            None => {}
            Some(Value::Array(items)) => {
                for (n, item) in items.iter().enumerate() {
                    match parse_her_id(item) {
                        Ok(id) if id == her_id || service_her_ids.contains(&id) => {
                            r.problem(SettingProblem::new(
                                format!("service_her_ids[{n}]"),
                                format!("HER-id {id} is listed twice (or is her_id itself)"),
                            ));
                        }
                        Ok(id) => service_her_ids.push(id),
                        Err(message) => r.problem(SettingProblem::new(
                            format!("service_her_ids[{n}]"),
                            message,
                        )),
                    }
                }
            }
            Some(other) => r.problem(SettingProblem::new(
                "service_her_ids",
                format!("must be a list of HER-ids, not {other}"),
            )),
        }
        let username = r.required("username", |v| text(v, 200));
        let password_file = r.required("password_file", absolute_path);
        let binding = match r.one_of("binding", &["basic", "soap12"], "basic").as_str() {
            "soap12" => Binding::Soap12,
            _ => Binding::Basic,
        };
        let ar_endpoint = r.optional("ar_endpoint", https_url);
        let ar_trust = r.optional("ar_trust", |v| text(v, 100));
        let ldap_host = r.optional("ldap_host", host_name);
        let ldap_base = r.optional("ldap_base", base_dn);
        let key_source = match r.one_of("key_source", &["ca", "certvakt"], "ca").as_str() {
            "certvakt" => KeySource::Certvakt,
            _ => KeySource::Ca,
        };
        if key_source == KeySource::Certvakt && ca == Some(Ca::Buypass) {
            r.problem(
                SettingProblem::new(
                    "key_source",
                    "Buypass makes the keys of its virksomhetssertifikat itself and takes no CSR",
                )
                .with_hint("leave key_source out (or write \"ca\") for a Buypass set"),
            );
        }
        let minimum_rsa_bits = r.number("minimum_rsa_bits", 2048..=16_384, 3072);
        let order_margin = r.duration("order_margin", days(30));
        let publish_poll = r.duration("publish_poll", secs(15 * 60));
        let publish_timeout = r.duration("publish_timeout", days(2));
        let switch_after = r.duration("switch_after", days(1));
        let fallback_write_current = r.flag("fallback_write_current", false);
        let legacy_decrypt_retention = r.duration("legacy_decrypt_retention", days(30));
        for (key, duration) in [("publish_poll", publish_poll)] {
            if duration.as_secs() < MIN_PUBLISH_POLL_SECS {
                r.problem(
                    SettingProblem::new(
                        key,
                        format!("{duration} is shorter than {MIN_PUBLISH_POLL_SECS} seconds"),
                    )
                    .with_hint(
                        "AR is a shared service: the default, every 15 minutes, is plenty; \
                         ask more often only against a test service of your own",
                    ),
                );
            }
        }
        let verify_url = r.optional("verify_url", https_url);
        let verify_trust = r.optional("verify_trust", |v| text(v, 100));
        let (Some(ca), Some(environment)) = (ca, environment) else {
            return Err(r.finish(()).err().unwrap_or_default());
        };
        let ldap_base = match ldap_base.as_deref() {
            Some("lookup") => LdapBase::Lookup,
            Some(base) => LdapBase::Fixed(base.to_owned()),
            None => LdapBase::Fixed(default_ldap_base(ca, environment).to_owned()),
        };
        r.finish(Settings {
            ca,
            environment,
            organization_number,
            organization_name,
            her_id,
            service_her_ids,
            username,
            password_file,
            binding,
            ar_endpoint: ar_endpoint
                .unwrap_or_else(|| default_ar_endpoint(environment, binding).to_owned()),
            ar_trust,
            ldap_host: ldap_host.unwrap_or_else(|| default_ldap_host(ca, environment).to_owned()),
            ldap_base,
            key_source,
            minimum_rsa_bits,
            order_margin,
            publish_poll,
            publish_timeout,
            switch_after,
            fallback_write_current,
            legacy_decrypt_retention,
            verify_url,
            verify_trust,
        })
    }

    /// The settings, or a configuration error listing every problem.
    pub fn for_call(value: &Value) -> Result<Settings, PluginError> {
        Settings::parse(value).map_err(|problems| refuse("no-nhn", &problems))
    }

    /// Every HER-id certvakt writes: the organisation first, then its services.
    pub fn her_ids(&self) -> Vec<(u32, Level)> {
        std::iter::once((self.her_id, Level::Organization))
            .chain(self.service_her_ids.iter().map(|id| (*id, Level::Service)))
            .collect()
    }
}

/// Where an E_DS address is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// `UpdateOrganizationDetails` (`org`).
    Organization,
    /// `UpdateServiceDetails` (`t`).
    Service,
}

fn days(n: u64) -> HumanDuration {
    secs(n * 86_400)
}

fn secs(n: u64) -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(n))
}

/// A HER-id: a positive whole number that fits AR's `xs:int` (a string of digits is taken too).
fn parse_her_id(value: &Value) -> Result<u32, String> {
    let number = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok()
        }
        _ => None,
    };
    number
        .filter(|n| (1..=i32::MAX as u64).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("must be a HER-id (a whole number, like 8142987), not {value}"))
}

fn absolute_path(value: &str) -> Result<(), String> {
    text(value, 4096)?;
    if value.starts_with('/') {
        Ok(())
    } else {
        Err(format!("must be an absolute path, not \"{value}\""))
    }
}

fn host_name(value: &str) -> Result<(), String> {
    text(value, 253)?;
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
    {
        Ok(())
    } else {
        Err(format!(
            "must be a host name (like ldap.buypass.no), not \"{value}\""
        ))
    }
}

fn base_dn(value: &str) -> Result<(), String> {
    text(value, 500)?;
    if value == "lookup" {
        return Ok(());
    }
    if value.contains(['?', '/', '(', ')', '|']) || !value.contains('=') {
        return Err(format!(
            "must be a base DN (like dc=Buypass,dc=no,CN=Buypass Class 3 CA G2) or \"lookup\", \
             not \"{value}\""
        ));
    }
    Ok(())
}
