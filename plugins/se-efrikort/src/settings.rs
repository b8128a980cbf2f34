//! The se-efrikort plugin's settings: one parser, used to validate and to act.
//!
//! Contract:
//! - [`Settings::parse`] reads a certificate's `[certificate.settings]` (as JSON) and returns
//!   the settings or every problem at once, each naming its key (`regions[1].principal_hsa_id`)
//!   and, where it helps, what to write. `validate_settings` returns those problems; every other
//!   method refuses to act on settings with problems ([`Settings::for_call`]).
//! - The HSA-ID goes into the CSR's `serialNumber` as a PrintableString, as in the real SITHS
//!   certificates; a value outside that alphabet (`_`, `å`, …) is refused here with the reason,
//!   never encoded some other way ([`printable`]).
//! - Regions (vårdhuvudmän) are the operator's: certvakt ships no contact addresses, because
//!   most of eFrikort's published addresses are named people and change.
//! - Nothing here touches the network.

use certvakt_plugin_api::duration::HumanDuration;
use certvakt_plugin_api::profile::KeyAlgorithm;
use certvakt_plugin_api::{PluginError, SettingDoc, SettingProblem};
use certvakt_plugin_common::settings::{SettingsReader, https_url, refuse, text};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where eFrikort asks a copy of every access request to go.
pub const CGI_SUPPORT: &str = "support.efrikort@cgi.com";

/// The production address of `GetExtendedCardForPerson` (eFrikort's environment page).
pub const PRODUCTION_ENDPOINT: &str =
    "https://ws.efrikort.cgi.se/efrikortService/GetExtendedCardForPerson/1/rivtabp21";

/// The shortest `grant_poll`: a test service of one's own may be asked this often.
pub const MIN_GRANT_POLL_SECS: u64 = 5;

/// eFrikort's `HsaId` type: a string of at most 32 characters.
pub const HSA_ID_MAX: usize = 32;

/// The host's limit on recipients of one mail (`to` and `cc` together), minus CGI's copy.
const MAX_CONTACTS: usize = 9;

/// eFrikort's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Test,
    Production,
}

impl Environment {
    /// As written in the settings and the plugin's state.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }

    /// As eFrikort's access request names it ("Avser miljö för").
    pub fn label(self) -> &'static str {
        match self {
            Environment::Test => "TEST",
            Environment::Production => "PRODUKTION",
        }
    }
}

/// One region (vårdhuvudman) the system acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// As the region calls itself (`Region Uppsala`).
    pub name: String,
    /// Where the access request goes (the region's contact addresses).
    pub contact_addresses: Vec<String>,
    /// The region's HSA-ID as principal: `carePrincipalId` and `LogicalAddress` in eFrikort.
    pub principal_hsa_id: String,
}

/// A certificate's se-efrikort settings, checked, with the defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub hsa_id: String,
    pub fqdn: String,
    pub organization: String,
    pub locality: String,
    pub key_type: KeyAlgorithm,
    pub environment: Environment,
    pub regions: Vec<Region>,
    pub system_name: String,
    pub contact_name: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub care_providers: Vec<String>,
    pub support_address: String,
    pub endpoint: String,
    pub endpoint_trust: Option<String>,
    pub probe_person_id: Option<String>,
    pub probe_card_type_id: Option<String>,
    pub production_probe: bool,
    pub grant_poll: HumanDuration,
    pub verify_after_install: bool,
}

impl Settings {
    /// Whether the proof is a full `GetExtendedCardForPerson` call (always in TEST; in
    /// production only with `production_probe`), rather than the handshake and the WSDL.
    pub fn full_probe(&self) -> bool {
        self.environment == Environment::Test || self.production_probe
    }
}

/// Every setting, documented; the parser refuses keys not listed here.
pub fn docs() -> Vec<SettingDoc> {
    vec![
        SettingDoc::required("hsa_id", "The system's HSA-ID (HSA-id), as in the SITHS function certificate's subject serialNumber. It goes into the CSR as a PrintableString (letters A-Z a-z, digits, space and ' ( ) + , - . / : = ?), at most 32 characters; eFrikort grants access per HSA-ID.")
            .example("\"SE5565594230-BCQ\""),
        SettingDoc::required("fqdn", "The system's fully qualified domain name: the certificate's CN and a SAN dNSName. The organisation must have proved it owns the domain to SITHS.")
            .example("\"efrikort.vardsystem.example.se\""),
        SettingDoc::required("organization", "O of the subject: the organisation the function certificate is issued to.")
            .example("\"Vårdsystem AB\""),
        SettingDoc::required("locality", "L of the subject (the organisation's town).")
            .example("\"Stockholm\""),
        SettingDoc::optional("key_type", "The key certvakt makes: \"rsa-2048\" (default), \"rsa-3072\", \"rsa-4096\", \"ec-p256\" or \"ec-p384\". Choose what the SITHS eID portal offers you.")
            .example("\"rsa-2048\""),
        SettingDoc::required("environment", "\"test\" or \"production\": eFrikort's environment this certificate is for (TEST or PRODUKTION in the access request). eFrikort grants PRODUKTION only after TEST: certvakt refuses a production request for an HSA-ID and region whose TEST grant it has not proved.")
            .example("\"test\""),
        SettingDoc::required("regions", "The regions (vårdhuvudmän) the system acts for, each a table { name, contact_addresses = [..], principal_hsa_id }: the access request goes to the contact addresses, and principal_hsa_id is the region's HSA-ID as carePrincipalId and LogicalAddress. certvakt ships none; eFrikort's page \"Anslutningsförfrågan\" lists them.")
            .example("[{ name = \"Region Uppsala\", contact_addresses = [\"efrikort@region.example.se\"], principal_hsa_id = \"SE162321000024-0001\" }]"),
        SettingDoc::required("system_name", "\"Namn på integrerande system\" in the access request: your system's or service's name.")
            .example("\"G-Medical\""),
        SettingDoc::required("contact_name", "\"Kontaktperson\" in the access request: a named person eFrikort's administration or the region may contact.")
            .example("\"Göthe Alfonso\""),
        SettingDoc::required("contact_email", "The contact person's e-mail address (also the access request's Reply-To).")
            .example("\"gothe@gmedical.se\""),
        SettingDoc::required("contact_phone", "The contact person's telephone number.")
            .example("\"+46 70 123 12 31\""),
        SettingDoc::optional("care_providers", "The care providers (vårdgivare) in the region that use the system, listed in the access request; the region wants to know. Default: none.")
            .example("[\"Vårdcentralen Norr\"]"),
        SettingDoc::optional("support_address", "CGI's support address, copied on every access request (default \"support.efrikort@cgi.com\").")
            .example("\"support.efrikort@cgi.com\""),
        SettingDoc::optional("endpoint", "The https URL of eFrikort's GetExtendedCardForPerson service (RIV-TA BP 2.1). Default in production: https://ws.efrikort.cgi.se/efrikortService/GetExtendedCardForPerson/1/rivtabp21; required in test (CGI gives the TEST address).")
            .example("\"https://ws.efrikort.cgi.se/efrikortService/GetExtendedCardForPerson/1/rivtabp21\""),
        SettingDoc::optional("endpoint_trust", "The [trust] set eFrikort's TLS certificate must chain to; left out: the system's roots.")
            .example("\"efrikort\""),
        SettingDoc::optional("probe_person_id", "The personal identity number (12 or 13 characters, no - or +) the proof call asks about: a test person in TEST. Required in test, and with production_probe.")
            .example("\"191212121212\""),
        SettingDoc::optional("probe_card_type_id", "The cardTypeId (frikortstyp, at most 36 characters) of the proof call. Required in test, and with production_probe.")
            .example("\"1\""),
        SettingDoc::optional("production_probe", "true: in production, prove the grant with the same GetExtendedCardForPerson call as in TEST (only with a safe probe_person_id that CGI agreed to). Default false: in production certvakt makes no lookups of real people; the proof is the TLS handshake with the certificate and GET <endpoint>?wsdl answering 200.")
            .example("false"),
        SettingDoc::optional("grant_poll", "How often certvakt tries the proof while an access request is open (default \"1h\", at least \"5s\").")
            .example("\"1h\""),
        SettingDoc::optional("verify_after_install", "true (default): after the install, the same proof with the installed certificate. false: no call after the install.")
            .example("true"),
    ]
}

impl Settings {
    /// The settings, or every problem in them.
    pub fn parse(value: &Value) -> Result<Settings, Vec<SettingProblem>> {
        let mut r = SettingsReader::new(value, "se-efrikort", &docs())?;
        let hsa_id = r.required("hsa_id", hsa_id);
        let fqdn = r.required("fqdn", fqdn);
        let organization = r.required("organization", |v| text(v, 64));
        let locality = r.required("locality", |v| text(v, 128));
        let key_type = match r
            .one_of(
                "key_type",
                &["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"],
                "rsa-2048",
            )
            .as_str()
        {
            "rsa-3072" => KeyAlgorithm::Rsa3072,
            "rsa-4096" => KeyAlgorithm::Rsa4096,
            "ec-p256" => KeyAlgorithm::EcP256,
            "ec-p384" => KeyAlgorithm::EcP384,
            _ => KeyAlgorithm::Rsa2048,
        };
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
                    .with_hint("write environment = \"test\" (eFrikort grants TEST first)"),
            );
        }
        let mut problems = Vec::new();
        let regions = regions(value.get("regions"), &mut problems);
        for problem in problems {
            r.problem(problem);
        }
        let system_name = r.required("system_name", |v| text(v, 200));
        let contact_name = r.required("contact_name", |v| text(v, 200));
        let contact_email = r.required("contact_email", address);
        let contact_phone = r.required("contact_phone", |v| text(v, 50));
        let care_providers = r.list("care_providers", 100, |v| text(v, 200));
        let support_address = r
            .optional("support_address", address)
            .unwrap_or_else(|| CGI_SUPPORT.to_owned());
        let endpoint = r.optional("endpoint", https_url);
        let endpoint_trust = r.optional("endpoint_trust", |v| text(v, 100));
        let probe_person_id = r.optional("probe_person_id", person_id);
        let probe_card_type_id = r.optional("probe_card_type_id", |v| text(v, 36));
        let production_probe = r.flag("production_probe", false);
        let grant_poll = r.duration(
            "grant_poll",
            HumanDuration(std::time::Duration::from_secs(3600)),
        );
        if grant_poll.as_secs() < MIN_GRANT_POLL_SECS && value.get("grant_poll").is_some() {
            r.problem(
                SettingProblem::new(
                    "grant_poll",
                    format!("{grant_poll} is shorter than {MIN_GRANT_POLL_SECS} seconds"),
                )
                .with_hint(
                    "eFrikort is a shared national service: the default, every hour, is plenty",
                ),
            );
        }
        let verify_after_install = r.flag("verify_after_install", true);
        let Some(environment) = environment else {
            return Err(r.finish(()).err().unwrap_or_default());
        };
        let probe_needed = match environment {
            Environment::Test => Some("environment = \"test\""),
            Environment::Production if production_probe => Some("production_probe = true"),
            Environment::Production => None,
        };
        if let Some(why) = probe_needed {
            for (key, given, example) in [
                (
                    "probe_person_id",
                    value.get("probe_person_id").is_some(),
                    "probe_person_id = \"191212121212\"",
                ),
                (
                    "probe_card_type_id",
                    value.get("probe_card_type_id").is_some(),
                    "probe_card_type_id = \"1\"",
                ),
            ] {
                if !given {
                    r.problem(
                        SettingProblem::new(
                            key,
                            format!(
                                "is required with {why}: certvakt proves the grant with a \
                                 GetExtendedCardForPerson call that asks about this value"
                            ),
                        )
                        .with_hint(format!("write {example} (a test person CGI gave you)")),
                    );
                }
            }
        }
        let endpoint = match (endpoint, environment) {
            (Some(url), _) => url,
            (None, Environment::Production) => PRODUCTION_ENDPOINT.to_owned(),
            (None, Environment::Test) => {
                if value.get("endpoint").is_none() {
                    r.problem(
                        SettingProblem::new(
                            "endpoint",
                            "is required with environment = \"test\": eFrikort's TEST address \
                             is not published, CGI gives it with the TEST access",
                        )
                        .with_hint(
                            "write endpoint = \"https://…/GetExtendedCardForPerson/1/rivtabp21\"",
                        ),
                    );
                }
                String::new()
            }
        };
        r.finish(Settings {
            hsa_id,
            fqdn,
            organization,
            locality,
            key_type,
            environment,
            regions,
            system_name,
            contact_name,
            contact_email,
            contact_phone,
            care_providers,
            support_address,
            endpoint,
            endpoint_trust,
            probe_person_id,
            probe_card_type_id,
            production_probe,
            grant_poll,
            verify_after_install,
        })
    }

    /// The settings, or one configuration error listing every problem.
    pub fn for_call(value: &Value) -> Result<Settings, PluginError> {
        Settings::parse(value).map_err(|problems| refuse("se-efrikort", &problems))
    }
}

/// The `regions` list: every table checked, every problem named by its place.
fn regions(value: Option<&Value>, problems: &mut Vec<SettingProblem>) -> Vec<Region> {
    let Some(value) = value else {
        problems.push(
            SettingProblem::new("regions", "is required: at least one region (vårdhuvudman)")
                .with_hint(
                    "write regions = [{ name = \"Region Uppsala\", contact_addresses = \
                     [\"…@regionuppsala.se\"], principal_hsa_id = \"SE162321000024-0001\" }] \
                     with the region's contact address from eFrikort's page \
                     \"Anslutningsförfrågan\"",
                ),
        );
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.push(SettingProblem::new(
            "regions",
            format!("must be a list of tables, not {value}"),
        ));
        return Vec::new();
    };
    if items.is_empty() {
        problems.push(SettingProblem::new(
            "regions",
            "is empty: at least one region (vårdhuvudman) is needed",
        ));
    }
    let mut out: Vec<Region> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let place = format!("regions[{n}]");
        let Some(table) = item.as_object() else {
            problems.push(SettingProblem::new(
                place,
                format!(
                    "must be a table {{ name, contact_addresses, principal_hsa_id }}, not {item}"
                ),
            ));
            continue;
        };
        for key in table.keys() {
            if !["name", "contact_addresses", "principal_hsa_id"].contains(&key.as_str()) {
                problems.push(
                    SettingProblem::new(format!("{place}.{key}"), "is not a setting of a region")
                        .with_hint("a region has name, contact_addresses and principal_hsa_id"),
                );
            }
        }
        let mut string =
            |key: &str, check: &dyn Fn(&str) -> Result<(), String>| match table.get(key) {
                None => {
                    problems.push(SettingProblem::new(format!("{place}.{key}"), "is required"));
                    None
                }
                Some(Value::String(s)) => match check(s.trim()) {
                    Ok(()) => Some(s.trim().to_owned()),
                    Err(message) => {
                        problems.push(SettingProblem::new(format!("{place}.{key}"), message));
                        None
                    }
                },
                Some(other) => {
                    problems.push(SettingProblem::new(
                        format!("{place}.{key}"),
                        format!("must be a string, not {other}"),
                    ));
                    None
                }
            };
        let name = string("name", &|v| text(v, 128));
        let principal = string("principal_hsa_id", &principal_hsa_id);
        let mut contacts = Vec::new();
        match table.get("contact_addresses") {
            None => problems.push(
                SettingProblem::new(format!("{place}.contact_addresses"), "is required")
                    .with_hint("the region's contact address(es) for eFrikort access requests"),
            ),
            Some(Value::Array(list)) if list.is_empty() => problems.push(SettingProblem::new(
                format!("{place}.contact_addresses"),
                "is empty: the access request needs the region's contact address",
            )),
            Some(Value::Array(list)) => {
                if list.len() > MAX_CONTACTS {
                    problems.push(SettingProblem::new(
                        format!("{place}.contact_addresses"),
                        format!(
                            "has {} addresses; a mail takes at most {MAX_CONTACTS} besides CGI's copy",
                            list.len()
                        ),
                    ));
                }
                for (m, entry) in list.iter().enumerate() {
                    let at = format!("{place}.contact_addresses[{m}]");
                    match entry.as_str().map(str::trim) {
                        Some(text) => match address(text) {
                            Ok(()) => contacts.push(text.to_owned()),
                            Err(message) => problems.push(SettingProblem::new(at, message)),
                        },
                        None => problems.push(SettingProblem::new(
                            at,
                            format!("must be a string, not {entry}"),
                        )),
                    }
                }
            }
            Some(other) => problems.push(SettingProblem::new(
                format!("{place}.contact_addresses"),
                format!("must be a list of e-mail addresses, not {other}"),
            )),
        }
        let (Some(name), Some(principal_hsa_id)) = (name, principal) else {
            continue;
        };
        if out.iter().any(|r| r.principal_hsa_id == principal_hsa_id) {
            problems.push(SettingProblem::new(
                format!("{place}.principal_hsa_id"),
                format!("{principal_hsa_id} is listed twice: one entry per region"),
            ));
            continue;
        }
        out.push(Region {
            name,
            contact_addresses: contacts,
            principal_hsa_id,
        });
    }
    out
}

/// Whether `c` is in the PrintableString alphabet (X.680 §41.4).
pub fn is_printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

/// A value the CSR can carry as a PrintableString; the error names the first character that
/// cannot be, and why that matters.
pub fn printable(value: &str) -> Result<(), String> {
    match value.chars().find(|c| !is_printable(*c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "\"{value}\" has the character '{c}', which a PrintableString cannot hold; a SITHS \
             function certificate carries the HSA-ID in serialNumber as a PrintableString \
             (letters A-Z a-z, digits, space and ' ( ) + , - . / : = ?). Write the HSA-ID exactly \
             as the SITHS eID portal shows it (a value like T_SERVICES_… is a placeholder, not \
             an HSA-ID)"
        )),
    }
}

/// The system's HSA-ID: not empty, at most [`HSA_ID_MAX`], PrintableString.
pub fn hsa_id(value: &str) -> Result<(), String> {
    text(value, HSA_ID_MAX)?;
    printable(value)
}

/// A region's HSA-ID: not empty, at most [`HSA_ID_MAX`], no spaces (it travels as XML text).
fn principal_hsa_id(value: &str) -> Result<(), String> {
    text(value, HSA_ID_MAX)?;
    if value.contains(char::is_whitespace) {
        return Err(format!("\"{value}\" is not an HSA-ID (it has a space)"));
    }
    Ok(())
}

/// A host name with at least one dot.
fn fqdn(value: &str) -> Result<(), String> {
    text(value, 253)?;
    let labels_ok = value.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    if labels_ok && value.contains('.') {
        Ok(())
    } else {
        Err(format!(
            "must be a fully qualified domain name (like efrikort.vardsystem.example.se), not \
             \"{value}\""
        ))
    }
}

/// A plain `local@domain` address, as the host's mail rules take it.
pub fn address(value: &str) -> Result<(), String> {
    let plain = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !value.contains(|c: char| c.is_whitespace() || "<>,;\"()[]\\".contains(c))
        }
        None => false,
    };
    if plain {
        Ok(())
    } else {
        Err(format!(
            "must be a plain e-mail address (like efrikort@region.example.se), not \"{value}\""
        ))
    }
}

/// A personal identity number as eFrikort's `PersonIdValue`: at most 13 letters and digits.
fn person_id(value: &str) -> Result<(), String> {
    if !value.is_empty()
        && value.chars().count() <= 13
        && value.chars().all(|c| c.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(
            "must be a personal identity number of 12 or 13 letters and digits, without - or + \
             (eFrikort's PersonIdValue)"
                .into(),
        )
    }
}
