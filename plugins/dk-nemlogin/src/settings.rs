//! The dk-nemlogin plugin's settings: one parser, used to validate and to act.
//!
//! Contract:
//! - [`Settings::parse`] reads a certificate's `[certificate.settings]` (as JSON) and returns
//!   the settings or every problem at once, each naming its key (`privileges[1]`) and, where it
//!   helps, why and what to write. `validate_settings` returns those problems; every other
//!   method refuses to act on settings with problems ([`Settings::for_call`]).
//! - Two rules come from NemLog-in itself and are refused here, with the reason, rather than
//!   left for the portal or the STS to refuse later: the EntityID starts with `https://wsc.`
//!   (the SMDB guide for municipalities), and `applies_to` has no trailing slash (the STS
//!   compares it as a string).
//! - Nothing here touches the network: whether the STS answers, and whether it knows the
//!   system user, is found out when the plugin acts.

use certvakt_plugin_api::{PluginError, SettingDoc, SettingProblem};
use certvakt_plugin_common::settings::{SettingsReader, digits, https_url, refuse, text};
use serde_json::Value;

/// What an EntityID of a system user must start with.
pub const WSC_PREFIX: &str = "https://wsc.";

/// The SMDB guide's words on the prefix, quoted in the problem (seed: "Kommune-vejledning for
/// leverandørens adgang til indsendelse af data").
pub const WSC_RULE: &str = "Bemærk at EntityID skal starte med \u{201d}https://wsc.\u{201d} - \
                            ellers vil det blive afvist";

/// The NemLog-in environment the system user is provisioned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    IntegrationTest,
    Production,
}

impl Environment {
    /// As the setting writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::IntegrationTest => "integrationtest",
            Environment::Production => "production",
        }
    }

    /// The portal's link that provisions this environment.
    pub fn provision_link(self) -> &'static str {
        match self {
            Environment::IntegrationTest => "Provisioner til integrationstest",
            Environment::Production => "Provisioner til produktion",
        }
    }

    /// The environment in the portal's words.
    pub fn danish(self) -> &'static str {
        match self {
            Environment::IntegrationTest => "integrationstest",
            Environment::Production => "produktion",
        }
    }
}

/// A certificate's dk-nemlogin settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The system user's EntityID (`https://wsc.…`).
    pub entity_id: String,
    pub environment: Environment,
    /// The organisation's CVR number, 8 digits: the certificate's must be the same.
    pub cvr: String,
    /// The web service the system user has access to, by its name in NemLog-in.
    pub web_service: String,
    /// The privileges (URNs) the system user has for `web_service`.
    pub privileges: Vec<String>,
    /// The web service's entity ID, sent as `AppliesTo`; no trailing slash.
    pub applies_to: String,
    /// The STS's address.
    pub sts_endpoint: String,
    /// A `[trust]` set for the STS's TLS certificate; `None`: the system's roots.
    pub sts_trust: Option<String>,
    /// Whether the system user may hold the old and the new certificate at once.
    pub overlap: bool,
    /// Seconds between the checks of an open task.
    pub poll_seconds: u64,
}

/// Every setting, documented: what `describe` shows and what [`Settings::parse`] knows.
pub fn docs() -> Vec<SettingDoc> {
    vec![
        SettingDoc::required(
            "entity_id",
            "The system user's EntityID, as registered in NemLog-in Administration; it must \
             start with https://wsc. (NemLog-in rejects any other).",
        )
        .example("\"https://wsc.odense.smdb.dk\""),
        SettingDoc::required(
            "environment",
            "The NemLog-in environment the system user is provisioned to: \"integrationtest\" \
             or \"production\". Use a different certificate for each.",
        )
        .example("\"production\""),
        SettingDoc::required(
            "cvr",
            "The organisation's CVR number (8 digits); the certificate's CVR must be the same.",
        )
        .example("\"29189846\""),
        SettingDoc::required(
            "web_service",
            "The web service the system user reports to, by its name in NemLog-in (\"Anmod om \
             web service adgang\").",
        )
        .example("\"Smdb_Sts_Dev\""),
        SettingDoc::required(
            "privileges",
            "The privileges (URNs) the system user has, or asks for, on web_service.",
        )
        .example("[\"urn:dk:smdb:prod:indberetter\", \"urn:dk:smdb:prod:sundhedsfaglig\"]"),
        SettingDoc::required(
            "applies_to",
            "The web service's entity ID, sent to the STS as AppliesTo, exactly as NemLog-in \
             registered it and without a trailing slash (the STS compares strings).",
        )
        .example("\"https://smdb.example.dk/ws\""),
        SettingDoc::required(
            "sts_endpoint",
            "The NemLog-in STS's address (https URL) for the environment.",
        )
        .example(
            "\"https://SecureTokenService.test-devtest4-nemlog-in.dk/SecurityTokenService.svc\"",
        ),
        SettingDoc::optional(
            "sts_trust",
            "A [trust] set the STS's TLS certificate must chain to; left out: the system's \
             roots.",
        )
        .example("\"nemlogin-sts\""),
        SettingDoc::optional(
            "overlap",
            "true (default): the system user holds the old and the new certificate at once, \
             so the switch has no outage. false: it holds one at a time; the switch is a short \
             planned outage (attach the new certificate, provision, certvakt installs).",
        )
        .example("true"),
        SettingDoc::optional(
            "poll_seconds",
            "How often certvakt asks the STS whether an open task is done (5 to 86400; \
             default 300).",
        )
        .example("300"),
    ]
}

impl Settings {
    /// The settings, or every problem in them.
    pub fn parse(value: &Value) -> Result<Settings, Vec<SettingProblem>> {
        let mut r = SettingsReader::new(value, "dk-nemlogin", &docs())?;
        let entity_id = r.required("entity_id", entity_id);
        let environment = match r
            .one_of("environment", &["integrationtest", "production"], "")
            .as_str()
        {
            "integrationtest" => Some(Environment::IntegrationTest),
            "production" => Some(Environment::Production),
            _ => None,
        };
        if value.get("environment").is_none() {
            r.problem(
                SettingProblem::new("environment", "is required")
                    .with_hint("write environment = \"production\" or \"integrationtest\""),
            );
        }
        let cvr = r.required("cvr", |v| digits(v, 8));
        let web_service = r.required("web_service", |v| text(v, 200));
        let privileges = r.list("privileges", 20, privilege);
        match value.get("privileges") {
            None => r.problem(
                SettingProblem::new("privileges", "is required")
                    .with_hint("write privileges = [\"urn:dk:smdb:prod:indberetter\"]"),
            ),
            Some(Value::Array(items)) if items.is_empty() => r.problem(
                SettingProblem::new("privileges", "names no privilege")
                    .with_hint("write the URNs of the privileges the system user has"),
            ),
            Some(_) => {}
        }
        let applies_to = r.required("applies_to", applies_to);
        let sts_endpoint = r.required("sts_endpoint", https_url);
        let sts_trust = r.optional("sts_trust", |v| text(v, 100));
        let overlap = r.flag("overlap", true);
        let poll_seconds = r.number("poll_seconds", 5..=86_400, 300);
        r.finish(Settings {
            entity_id,
            environment: environment.unwrap_or(Environment::Production),
            cvr,
            web_service,
            privileges,
            applies_to,
            sts_endpoint,
            sts_trust,
            overlap,
            poll_seconds,
        })
    }

    /// The settings, or a configuration error listing every problem.
    pub fn for_call(value: &Value) -> Result<Settings, PluginError> {
        Settings::parse(value).map_err(|problems| refuse("dk-nemlogin", &problems))
    }
}

fn entity_id(value: &str) -> Result<(), String> {
    text(value, 500)?;
    if value.contains(char::is_whitespace) {
        return Err(format!(
            "\"{value}\" has a space in it; an EntityID is one URL"
        ));
    }
    if !value.starts_with(WSC_PREFIX) || value.len() == WSC_PREFIX.len() {
        return Err(format!(
            "\"{value}\" does not start with {WSC_PREFIX}, and NemLog-in rejects a system \
             user's EntityID that does not. The SMDB guide for municipalities says: \
             \u{201c}{WSC_RULE}\u{201d} (the EntityID must start with https://wsc., or it is \
             rejected). Write the EntityID the system user has, for example \
             https://wsc.odense.smdb.dk (https://wsc.<municipality>.<it-system>.dk)"
        ));
    }
    Ok(())
}

fn applies_to(value: &str) -> Result<(), String> {
    text(value, 500)?;
    if value.contains(char::is_whitespace) {
        return Err(format!(
            "\"{value}\" has a space in it; an entity ID is one URI"
        ));
    }
    let scheme = value.split_once(':').map(|(scheme, _)| scheme);
    if !scheme.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(format!(
            "\"{value}\" is not an entity ID (a URI such as https://… or urn:…)"
        ));
    }
    if value.ends_with('/') {
        return Err(format!(
            "\"{value}\" ends with a slash. The NemLog-in STS compares AppliesTo with the web \
             service's registered entity ID as a string, so a trailing slash makes it a \
             different, unknown service: write \"{}\"",
            value.trim_end_matches('/')
        ));
    }
    Ok(())
}

fn privilege(value: &str) -> Result<(), String> {
    text(value, 300)?;
    if !value.starts_with("urn:") || value.contains(char::is_whitespace) {
        return Err(format!(
            "\"{value}\" is not a privilege URN (like urn:dk:smdb:prod:indberetter)"
        ));
    }
    Ok(())
}
