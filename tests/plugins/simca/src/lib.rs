//! Sim CA: a certvakt plugin for the testkit's simulated CA (`certvakt-simca`), so the tests
//! and the demo can renew certificates end to end through a real HTTPS API.
//!
//! The sim CA takes asynchronous orders over mutual TLS, as authorities with an API do:
//! `POST /orders {"csr_pem", "profile"}` answers `202 {"order", "retry_after"}`, and
//! `GET /orders/<id>` answers 202 until the order is issued, then `200 {"chain_pem"}`.
//! Errors are `{"error": "<sentence>"}`.
//!
//! - `issue` places the order and returns `Pending` with the order id in `state`, polling
//!   after the CA's `retry_after`. Called again with an order in `state` (a run resumed after
//!   a crash), it polls that order instead of placing a second one.
//! - `poll` asks about the order: `Issued` with the chain, or `Pending` again.
//! - A 5xx (or no answer) is [`ErrorKind::Temporary`](certvakt_plugin_api::ErrorKind): the
//!   daemon backs off and retries. A 4xx is `Permanent`, with the CA's own sentence.
//! - Every request goes through the host: the `trust` set checks the sim's server
//!   certificate, and `identity` is the client certificate presented.
//! - `register`, `verify` and `retire` are the trait's defaults: a CA has nothing to be told.
//!
//! Settings, with the files `certvakt-simca --dir DIR` writes configured in the daemon as
//! the trust set `simca` (`DIR/server-ca.pem`) and the client identity `simca-client`
//! (`DIR/client.fullchain.pem`, `DIR/client.key.pem`):
//!
//! ```toml
//! [certificate.settings]
//! url = "https://127.0.0.1:8443"      # the first line certvakt-simca prints
//! trust = "simca"
//! identity = "simca-client"           # or "current", "pending", "previous", "none"
//! profile = "tls"                     # or "oces3" (then key_type defaults to rsa-3072)
//! subject = [{ attribute = "CN", value = "apotek.example" }]
//! sans = ["DNS:apotek.example"]
//! key_type = "ec-p256"
//! ```

use certvakt_plugin_api::profile::{
    CsrProfile, ExtendedKeyUsage, KeyAlgorithm, KeyUsage, StringType, SubjectAltName,
    SubjectAttribute, oid,
};
use certvakt_plugin_api::{
    About, CertificateContext, ClientIdentity, Host, HttpRequest, HttpResponse, IssueOutcome,
    LogLevel, OrderContext, Plugin, PluginError, SettingDoc, SettingProblem, export_plugin,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[cfg(test)]
mod tests;

/// Poll interval when the CA does not say (`retry_after` missing).
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

/// The plugin; per-order data travels in `state`.
#[derive(Debug, Default)]
pub struct SimCaPlugin;

export_plugin!(SimCaPlugin);

/// A certificate's `[certificate.settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: String,
    trust: String,
    identity: Identity,
    #[serde(default)]
    profile: Profile,
    #[serde(default)]
    subject: Vec<SubjectEntry>,
    #[serde(default)]
    sans: Vec<String>,
    #[serde(default)]
    key_type: Option<String>,
}

/// `identity`: `"current"`, `"pending"`, `"previous"`, `"none"`, the name of a configured
/// client identity, or the API's own form (`{ type = "named", name = "…" }`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Identity {
    Name(String),
    Full(ClientIdentity),
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Profile {
    #[default]
    Tls,
    Oces3,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectEntry {
    attribute: String,
    value: String,
    #[serde(default)]
    printable: Option<bool>,
}

const ATTRIBUTES: [(&str, &str); 8] = [
    ("C", oid::COUNTRY),
    ("O", oid::ORGANIZATION),
    ("OU", oid::ORGANIZATIONAL_UNIT),
    ("CN", oid::COMMON_NAME),
    ("L", oid::LOCALITY),
    ("serialNumber", oid::SERIAL_NUMBER),
    ("organizationIdentifier", oid::ORGANIZATION_IDENTIFIER),
    ("emailAddress", oid::EMAIL_ADDRESS),
];

const KEY_TYPES: [KeyAlgorithm; 5] = [
    KeyAlgorithm::Rsa2048,
    KeyAlgorithm::Rsa3072,
    KeyAlgorithm::Rsa4096,
    KeyAlgorithm::EcP256,
    KeyAlgorithm::EcP384,
];

impl Identity {
    fn client_identity(&self) -> ClientIdentity {
        match self {
            Identity::Full(identity) => identity.clone(),
            Identity::Name(name) => match name.as_str() {
                "none" => ClientIdentity::None,
                "current" => ClientIdentity::Current,
                "pending" => ClientIdentity::Pending,
                "previous" => ClientIdentity::Previous,
                named => ClientIdentity::Named(named.to_owned()),
            },
        }
    }
}

impl Profile {
    fn as_str(self) -> &'static str {
        match self {
            Profile::Tls => "tls",
            Profile::Oces3 => "oces3",
        }
    }
}

impl Settings {
    /// The settings, or every problem found in them.
    fn parse(settings: &Value) -> Result<Settings, Vec<SettingProblem>> {
        let parsed: Settings = serde_json::from_value(settings.clone()).map_err(|e| {
            vec![SettingProblem::new("", e.to_string()).with_hint(
                "the settings are url, trust, identity, profile, subject, sans, key_type",
            )]
        })?;
        let mut problems = Vec::new();
        if !parsed.url.starts_with("https://") {
            problems.push(
                SettingProblem::new("url", format!("{:?} is not an https:// URL", parsed.url))
                    .with_hint("write the URL certvakt-simca printed, https://127.0.0.1:<port>"),
            );
        }
        if parsed.trust.is_empty() {
            problems.push(SettingProblem::new(
                "trust",
                "names no trust set for the sim CA's server certificate",
            ));
        }
        if let Err(problem) = parsed.key() {
            problems.push(problem);
        }
        for (i, entry) in parsed.subject.iter().enumerate() {
            if let Err(problem) = entry.attribute() {
                problems.push(SettingProblem::new(format!("subject[{i}]"), problem));
            }
        }
        for (i, san) in parsed.sans.iter().enumerate() {
            if let Err(problem) = san_of(san) {
                problems.push(
                    SettingProblem::new(format!("sans[{i}]"), problem)
                        .with_hint("start it with DNS:, IP:, email: or URI:"),
                );
            }
        }
        if parsed.subject.is_empty() && parsed.sans.is_empty() {
            problems.push(SettingProblem::new(
                "subject",
                "is empty and there are no sans: the CSR would name nothing",
            ));
        }
        if problems.is_empty() {
            Ok(parsed)
        } else {
            Err(problems)
        }
    }

    fn for_call(settings: &Value) -> Result<Settings, PluginError> {
        Settings::parse(settings).map_err(|problems| {
            let list: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect();
            PluginError::configuration(format!("simca settings: {}", list.join("; ")))
        })
    }

    /// `key_type`, defaulting to what the profile's CA takes (OCES3: RSA 3072).
    fn key(&self) -> Result<KeyAlgorithm, SettingProblem> {
        let Some(name) = &self.key_type else {
            return Ok(match self.profile {
                Profile::Tls => KeyAlgorithm::EcP256,
                Profile::Oces3 => KeyAlgorithm::Rsa3072,
            });
        };
        KEY_TYPES
            .into_iter()
            .find(|key| key.as_str() == name)
            .ok_or_else(|| {
                SettingProblem::new("key_type", format!("{name:?} is not a key type"))
                    .with_hint("rsa-2048, rsa-3072, rsa-4096, ec-p256 or ec-p384")
            })
    }

    /// A request to the sim CA with the configured trust set and client identity.
    fn request(&self, method: &str, path: &str) -> HttpRequest {
        HttpRequest::new(method, format!("{}{path}", self.url.trim_end_matches('/')))
            .header("content-type", "application/json")
            .trust(&self.trust)
            .identity(self.identity.client_identity())
    }
}

impl SubjectEntry {
    fn attribute(&self) -> Result<SubjectAttribute, String> {
        let oid = ATTRIBUTES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&self.attribute))
            .map(|(_, oid)| (*oid).to_owned())
            .or_else(|| {
                let dotted = self
                    .attribute
                    .split('.')
                    .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
                (dotted && self.attribute.contains('.')).then(|| self.attribute.clone())
            })
            .ok_or_else(|| format!("{:?} is not an attribute name or OID", self.attribute))?;
        if self.value.is_empty() {
            return Err(format!("{} has no value", self.attribute));
        }
        let printable = self
            .printable
            .unwrap_or(oid == oid::COUNTRY || oid == oid::SERIAL_NUMBER);
        Ok(SubjectAttribute {
            oid,
            value: self.value.clone(),
            string_type: if printable {
                StringType::Printable
            } else {
                StringType::Utf8
            },
        })
    }
}

fn san_of(entry: &str) -> Result<SubjectAltName, String> {
    let (prefix, value) = entry
        .split_once(':')
        .filter(|(_, value)| !value.is_empty())
        .ok_or_else(|| format!("{entry:?} is not TYPE:value"))?;
    let value = value.to_owned();
    match prefix.to_ascii_lowercase().as_str() {
        "dns" => Ok(SubjectAltName::Dns(value)),
        "ip" => Ok(SubjectAltName::Ip(value)),
        "email" => Ok(SubjectAltName::Email(value)),
        "uri" => Ok(SubjectAltName::Uri(value)),
        _ => Err(format!("{entry:?} has an unknown type prefix")),
    }
}

impl Plugin for SimCaPlugin {
    const NAME: &'static str = "simca";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "Sim CA: orders certificates from certvakt-simca, the testkit's simulated \
                      CA, over HTTPS with mutual TLS. For tests and the demo."
                .into(),
            settings: vec![
                SettingDoc::required("url", "The sim CA's base URL, as certvakt-simca prints it.")
                    .example("\"https://127.0.0.1:8443\""),
                SettingDoc::required(
                    "trust",
                    "The trust set that holds the sim CA's server-ca.pem.",
                )
                .example("\"simca\""),
                SettingDoc::required(
                    "identity",
                    "The client certificate to present: a configured identity's name, \
                     \"current\", \"pending\", \"previous\" or \"none\".",
                )
                .example("\"simca-client\""),
                SettingDoc::optional("profile", "\"tls\" (default) or \"oces3\".")
                    .example("\"tls\""),
                SettingDoc::optional(
                    "subject",
                    "List of { attribute, value, printable? }, as the manual plugin takes it.",
                )
                .example("[{ attribute = \"CN\", value = \"apotek.example\" }]"),
                SettingDoc::optional(
                    "sans",
                    "\"DNS:…\", \"IP:…\", \"email:…\", \"URI:…\"; the tls profile needs one.",
                )
                .example("[\"DNS:apotek.example\"]"),
                SettingDoc::optional(
                    "key_type",
                    "rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384; default ec-p256 (tls) or \
                     rsa-3072 (oces3).",
                )
                .example("\"ec-p256\""),
            ],
            key_policies: Vec::new(),
        }
    }

    fn validate_settings(&self, settings: &Value) -> Vec<SettingProblem> {
        Settings::parse(settings).err().unwrap_or_default()
    }

    fn csr_profile(
        &self,
        _host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<CsrProfile, PluginError> {
        let settings = Settings::for_call(&certificate.settings)?;
        let key = settings
            .key()
            .map_err(|problem| PluginError::configuration(problem.message))?;
        let subject = settings
            .subject
            .iter()
            .map(SubjectEntry::attribute)
            .collect::<Result<Vec<_>, _>>()
            .map_err(PluginError::configuration)?;
        let sans = settings
            .sans
            .iter()
            .map(|san| san_of(san))
            .collect::<Result<Vec<_>, _>>()
            .map_err(PluginError::configuration)?;
        let (key_usage, extended_key_usage) = match settings.profile {
            Profile::Tls => (
                vec![KeyUsage::DigitalSignature],
                vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth],
            ),
            Profile::Oces3 => (
                vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
                Vec::new(),
            ),
        };
        Ok(CsrProfile {
            key,
            subject,
            sans,
            key_usage,
            extended_key_usage,
        })
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        // A resumed run may call issue again: poll the order already placed.
        if order.state["order"].is_string() {
            return self.poll(host, order);
        }
        let settings = Settings::for_call(&order.certificate.settings)?;
        let body = json!({ "csr_pem": order.csr_pem, "profile": settings.profile.as_str() });
        let response = host.http(settings.request("POST", "/orders").body(body.to_string()))?;
        if response.status != 202 {
            return Err(refused("take the order", &response));
        }
        let answer = json_body(&response)?;
        let Some(id) = answer["order"].as_str() else {
            return Err(PluginError::temporary(
                "the sim CA's answer to the order has no order id",
            ));
        };
        host.log_with(LogLevel::Info, "order placed", &[("order", id)]);
        Ok(IssueOutcome::Pending {
            poll_after_secs: retry_after(&response, &answer),
            task: None,
            state: json!({ "order": id }),
        })
    }

    fn poll(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(&order.certificate.settings)?;
        let Some(id) = order.state["order"].as_str() else {
            return Err(PluginError::permanent(
                "poll without an order id in the state: the order was never placed",
            ));
        };
        let response = host.http(settings.request("GET", &format!("/orders/{id}")))?;
        match response.status {
            200 => {
                let answer = json_body(&response)?;
                match answer["chain_pem"].as_str() {
                    Some(chain_pem) => Ok(IssueOutcome::Issued {
                        chain_pem: chain_pem.to_owned(),
                    }),
                    None => Err(PluginError::temporary(format!(
                        "the sim CA says order {id} is issued but sends no chain_pem"
                    ))),
                }
            }
            202 => {
                let answer = json_body(&response)?;
                Ok(IssueOutcome::Pending {
                    poll_after_secs: retry_after(&response, &answer),
                    task: None,
                    state: order.state,
                })
            }
            _ => Err(refused(&format!("report on order {id}"), &response)),
        }
    }
}

fn json_body(response: &HttpResponse) -> Result<Value, PluginError> {
    serde_json::from_slice(&response.body)
        .map_err(|e| PluginError::temporary(format!("the sim CA's answer is not JSON: {e}")))
}

/// The CA's `retry_after` (body, then header), else [`DEFAULT_RETRY_AFTER_SECS`].
fn retry_after(response: &HttpResponse, answer: &Value) -> u64 {
    answer["retry_after"]
        .as_u64()
        .or_else(|| response.header("retry-after")?.trim().parse().ok())
        .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
}

/// A refusal: 5xx is the CA's trouble (retry later), anything else is the order's (do not).
fn refused(what: &str, response: &HttpResponse) -> PluginError {
    let said = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|body| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&response.body).into_owned());
    let message = format!(
        "the sim CA did not {what}: HTTP {}: {said}",
        response.status
    );
    match response.status {
        500.. => PluginError::temporary(message),
        _ => PluginError::permanent(message),
    }
}
