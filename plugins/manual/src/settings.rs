//! The Manual CA's settings: one parser, used both to validate and to act.
//!
//! Contract:
//! - [`Settings::parse`] reads a certificate's `[certificate.settings]` (as JSON) and returns
//!   either the settings or every problem in them at once, each naming the setting (with its
//!   place in a list: `subject[2].attribute`, `sans[0]`) and, where it helps, what to write.
//!   `validate_settings` returns those problems; the other methods refuse to act on settings
//!   with problems ([`Settings::for_call`]). So `certvakt check-config` and a renewal can never
//!   disagree about what is valid.
//! - A setting left out is `None` where "left out" means something ([`Settings::subject`],
//!   [`Settings::sans`]: copy from the certificate being renewed), and its default otherwise.
//! - The checks are the ones the daemon's CSR writer applies (one value per attribute type,
//!   the PrintableString alphabet, `C` as two capitals, ASCII names), so a configuration that
//!   passes here makes a CSR.

use std::collections::BTreeMap;
use std::net::IpAddr;

use certvakt_plugin_api::profile::{
    ExtendedKeyUsage, KeyAlgorithm, KeyUsage, StringType, SubjectAltName, SubjectAttribute, oid,
};
use certvakt_plugin_api::{PluginError, SettingDoc, SettingProblem};
use serde_json::{Map, Value};

/// Subject attribute names the settings take, with their OIDs.
pub const ATTRIBUTES: [(&str, &str); 8] = [
    ("C", oid::COUNTRY),
    ("O", oid::ORGANIZATION),
    ("OU", oid::ORGANIZATIONAL_UNIT),
    ("CN", oid::COMMON_NAME),
    ("L", oid::LOCALITY),
    ("serialNumber", oid::SERIAL_NUMBER),
    ("organizationIdentifier", oid::ORGANIZATION_IDENTIFIER),
    ("emailAddress", oid::EMAIL_ADDRESS),
];

/// `key_type` values.
const KEY_TYPES: [KeyAlgorithm; 5] = [
    KeyAlgorithm::Rsa2048,
    KeyAlgorithm::Rsa3072,
    KeyAlgorithm::Rsa4096,
    KeyAlgorithm::EcP256,
    KeyAlgorithm::EcP384,
];

/// `key_usage` values, as RFC 5280 names them.
const KEY_USAGES: [(&str, KeyUsage); 5] = [
    ("digitalSignature", KeyUsage::DigitalSignature),
    ("nonRepudiation", KeyUsage::NonRepudiation),
    ("keyEncipherment", KeyUsage::KeyEncipherment),
    ("dataEncipherment", KeyUsage::DataEncipherment),
    ("keyAgreement", KeyUsage::KeyAgreement),
];

/// `extended_key_usage` values, as RFC 5280 names them.
const EXTENDED_KEY_USAGES: [(&str, ExtendedKeyUsage); 3] = [
    ("serverAuth", ExtendedKeyUsage::ServerAuth),
    ("clientAuth", ExtendedKeyUsage::ClientAuth),
    ("emailProtection", ExtendedKeyUsage::EmailProtection),
];

/// The SAN prefixes `sans` takes.
const SAN_PREFIXES: &str = "DNS:, IP:, email: or URI:";

/// A certificate's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `None`: not configured; a renewal keeps the current certificate's subject.
    pub subject: Option<Vec<SubjectAttribute>>,
    /// `None`: not configured; a renewal keeps the current certificate's names.
    pub sans: Option<Vec<SubjectAltName>>,
    pub key: KeyAlgorithm,
    pub key_usage: Vec<KeyUsage>,
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    pub ca_name: String,
    pub instructions: Option<String>,
    pub submit_url: Option<String>,
}

/// Every setting, documented: what `describe` shows and what [`Settings::parse`] knows.
pub fn docs() -> Vec<SettingDoc> {
    vec![
        SettingDoc::required(
            "ca_name",
            "Who issues the certificate, as the operator knows them; named in the task.",
        )
        .example("\"DVV (Digi- ja väestötietovirasto)\""),
        SettingDoc::optional(
            "subject",
            "The subject, in DN order: a list of { attribute, value, printable }. attribute is \
             C, O, OU, CN, L, serialNumber, organizationIdentifier, emailAddress or a dotted \
             OID; printable = true writes a PrintableString (default for C and serialNumber), \
             otherwise UTF8String. Left out: a renewal keeps the current subject.",
        )
        .example("[{ attribute = \"CN\", value = \"Hjørring Apotek\" }]"),
        SettingDoc::optional(
            "sans",
            "Subject alternative names: \"DNS:name\", \"IP:address\", \"email:address\", \
             \"URI:uri\". Left out: a renewal keeps the current names.",
        )
        .example("[\"DNS:apotek.example\"]"),
        SettingDoc::optional(
            "key_type",
            "rsa-2048, rsa-3072, rsa-4096, ec-p256 (default) or ec-p384.",
        )
        .example("\"rsa-3072\""),
        SettingDoc::optional(
            "key_usage",
            "Key usages to request: digitalSignature, nonRepudiation, keyEncipherment, \
             dataEncipherment, keyAgreement. Default: none (the CA applies its profile).",
        )
        .example("[\"digitalSignature\", \"keyEncipherment\"]"),
        SettingDoc::optional(
            "extended_key_usage",
            "Extended key usages to request: serverAuth, clientAuth, emailProtection. \
             Default: none.",
        )
        .example("[\"clientAuth\"]"),
        SettingDoc::optional(
            "instructions",
            "Extra text for the operator, shown as a step of the task (a contact, an order \
             reference, a contract number).",
        )
        .example("\"Order under contract 2024-117; the signatory is the pharmacy owner.\""),
        SettingDoc::optional(
            "submit_url",
            "The https:// page where the CSR is pasted or uploaded. Without it the task says \
             to send the CSR to the CA.",
        )
        .example("\"https://e-service.example/orders/new\""),
    ]
}

impl Settings {
    /// The settings, or every problem in them.
    pub fn parse(settings: &Value) -> Result<Settings, Vec<SettingProblem>> {
        let Some(table) = settings.as_object() else {
            return Err(vec![
                SettingProblem::new("", "the settings must be a table")
                    .with_hint("write them under [certificate.settings]"),
            ]);
        };
        let mut problems = Vec::new();
        let known: Vec<String> = docs().into_iter().map(|doc| doc.key).collect();
        for key in table.keys().filter(|key| !known.contains(key)) {
            problems.push(
                SettingProblem::new(key, "is not a setting of the manual plugin")
                    .with_hint(format!("the settings are: {}", known.join(", "))),
            );
        }

        let ca_name = match table.get("ca_name").map(|v| text(v, "ca_name")) {
            Some(Ok(name)) if !name.trim().is_empty() => name,
            Some(Err(problem)) => {
                problems.push(problem);
                String::new()
            }
            _ => {
                problems.push(
                    SettingProblem::new("ca_name", "is required: the task names who issues")
                        .with_hint("write ca_name = \"<the CA, as your colleagues know it>\""),
                );
                String::new()
            }
        };
        let subject = table
            .get("subject")
            .map(|value| subject(value, &mut problems));
        let sans = table.get("sans").map(|value| sans(value, &mut problems));
        if subject.as_ref().is_some_and(Vec::is_empty) && sans.as_ref().is_none_or(Vec::is_empty) {
            problems.push(
                SettingProblem::new("subject", "is empty and there are no sans: the CSR would name nothing")
                    .with_hint("give subject attributes, sans, or both (or leave subject out to keep the current certificate's)"),
            );
        }
        let key = match table.get("key_type") {
            None => KeyAlgorithm::EcP256,
            Some(value) => key_type(value).unwrap_or_else(|problem| {
                problems.push(problem);
                KeyAlgorithm::EcP256
            }),
        };
        let key_usage = names(table, "key_usage", &KEY_USAGES, &mut problems);
        let extended_key_usage = names(
            table,
            "extended_key_usage",
            &EXTENDED_KEY_USAGES,
            &mut problems,
        );
        let instructions = optional_text(table, "instructions", &mut problems);
        let submit_url = optional_text(table, "submit_url", &mut problems);
        if let Some(url) = &submit_url {
            if !url.starts_with("https://") || url.len() <= "https://".len() {
                problems.push(
                    SettingProblem::new("submit_url", format!("{url:?} is not an https:// URL"))
                        .with_hint("write the address of the CA's order page, https://…"),
                );
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Settings {
            subject,
            sans,
            key,
            key_usage,
            extended_key_usage,
            ca_name,
            instructions,
            submit_url,
        })
    }

    /// The settings for a plugin method, or a configuration error listing every problem
    /// (`check-config` would have shown them; this is the daemon acting anyway).
    pub fn for_call(settings: &Value) -> Result<Settings, PluginError> {
        Settings::parse(settings)
            .map_err(|problems| certvakt_plugin_common::settings::refuse("manual", &problems))
    }
}

fn text(value: &Value, key: &str) -> Result<String, SettingProblem> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| SettingProblem::new(key, format!("must be a string, not {value}")))
}

fn optional_text(
    table: &Map<String, Value>,
    key: &str,
    problems: &mut Vec<SettingProblem>,
) -> Option<String> {
    match text(table.get(key)?, key) {
        Ok(text) => Some(text),
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

fn list<'v>(value: &'v Value, key: &str, problems: &mut Vec<SettingProblem>) -> &'v [Value] {
    match value.as_array() {
        Some(items) => items,
        None => {
            problems.push(SettingProblem::new(
                key,
                format!("must be a list, not {value}"),
            ));
            &[]
        }
    }
}

fn key_type(value: &Value) -> Result<KeyAlgorithm, SettingProblem> {
    let name = value.as_str().unwrap_or_default();
    KEY_TYPES
        .into_iter()
        .find(|key| key.as_str() == name)
        .ok_or_else(|| {
            let all: Vec<&str> = KEY_TYPES.iter().map(|key| key.as_str()).collect();
            SettingProblem::new("key_type", format!("{value} is not a key type"))
                .with_hint(format!("write one of {}", all.join(", ")))
        })
}

/// A list of names from `table` (RFC 5280 spelling; case, `_` and `-` do not matter).
fn names<T: Copy>(
    table: &Map<String, Value>,
    key: &str,
    known: &[(&str, T)],
    problems: &mut Vec<SettingProblem>,
) -> Vec<T> {
    let Some(value) = table.get(key) else {
        return Vec::new();
    };
    let fold = |name: &str| name.replace(['_', '-'], "").to_ascii_lowercase();
    let mut found = Vec::new();
    for (i, item) in list(value, key, problems).iter().enumerate() {
        let name = item.as_str().unwrap_or_default();
        match known.iter().find(|(known, _)| fold(known) == fold(name)) {
            Some((_, usage)) => found.push(*usage),
            None => {
                let all: Vec<&str> = known.iter().map(|(name, _)| *name).collect();
                problems.push(
                    SettingProblem::new(format!("{key}[{i}]"), format!("{item} is not known"))
                        .with_hint(format!("write one of {}", all.join(", "))),
                );
            }
        }
    }
    found
}

fn subject(value: &Value, problems: &mut Vec<SettingProblem>) -> Vec<SubjectAttribute> {
    let mut subject = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, item) in list(value, "subject", problems).iter().enumerate() {
        let key = format!("subject[{i}]");
        let Some(entry) = item.as_object() else {
            problems.push(
                SettingProblem::new(&key, format!("must be a table, not {item}"))
                    .with_hint("write { attribute = \"CN\", value = \"…\" }"),
            );
            continue;
        };
        for unknown in entry
            .keys()
            .filter(|k| !["attribute", "value", "printable"].contains(&k.as_str()))
        {
            problems.push(
                SettingProblem::new(format!("{key}.{unknown}"), "is not known")
                    .with_hint("a subject entry has attribute, value and printable"),
            );
        }
        match attribute(&key, entry) {
            Ok(attribute) => {
                if let Some(first) = seen.insert(attribute.oid.clone(), i) {
                    problems.push(
                        SettingProblem::new(
                            &key,
                            format!("repeats the attribute of subject[{first}]"),
                        )
                        .with_hint("certvakt writes one value per attribute type; keep one"),
                    );
                }
                subject.push(attribute);
            }
            Err(problem) => problems.push(problem),
        }
    }
    subject
}

/// One subject entry: `{ attribute, value, printable? }`.
fn attribute(key: &str, entry: &Map<String, Value>) -> Result<SubjectAttribute, SettingProblem> {
    let name = entry.get("attribute").and_then(Value::as_str).unwrap_or("");
    let value = entry.get("value").and_then(Value::as_str).unwrap_or("");
    let oid = attribute_oid(name).ok_or_else(|| {
        let all: Vec<&str> = ATTRIBUTES.iter().map(|(name, _)| *name).collect();
        SettingProblem::new(
            format!("{key}.attribute"),
            format!("{name:?} is not an attribute name or a dotted OID"),
        )
        .with_hint(format!(
            "write one of {}, or an OID like 2.5.4.5",
            all.join(", ")
        ))
    })?;
    if value.is_empty() {
        return Err(SettingProblem::new(
            format!("{key}.value"),
            format!("{name} needs a value (a string)"),
        ));
    }
    // X.520 makes countryName and serialNumber PrintableStrings; the rest default to UTF8.
    let printable = match entry.get("printable") {
        None => oid == oid::COUNTRY || oid == oid::SERIAL_NUMBER,
        Some(Value::Bool(printable)) => *printable,
        Some(other) => {
            return Err(SettingProblem::new(
                format!("{key}.printable"),
                format!("must be true or false, not {other}"),
            ));
        }
    };
    let bad_value = |message: String, hint: &str| {
        Err(SettingProblem::new(format!("{key}.value"), message).with_hint(hint))
    };
    if oid == oid::COUNTRY && !(value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase())) {
        return bad_value(
            format!("{value:?} is not a country code"),
            "write two capital letters: DK, SE, FI, NO",
        );
    }
    if oid == oid::EMAIL_ADDRESS && !value.is_ascii() {
        return bad_value(
            format!("{value:?} is not ASCII"),
            "an emailAddress is an IA5String",
        );
    }
    if printable {
        if let Some(c) = value.chars().find(|c| !is_printable(*c)) {
            return bad_value(
                format!("{value:?} has {c:?}, which a PrintableString cannot hold"),
                "write printable = false to make it a UTF8String, if the CA accepts that",
            );
        }
    }
    Ok(SubjectAttribute {
        oid: oid.to_owned(),
        value: value.to_owned(),
        string_type: if printable {
            StringType::Printable
        } else {
            StringType::Utf8
        },
    })
}

/// The OID for an attribute name (`CN`, `cn`) or a dotted OID as given.
pub fn attribute_oid(name: &str) -> Option<&str> {
    if let Some((_, oid)) = ATTRIBUTES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
    {
        return Some(oid);
    }
    let arcs: Vec<&str> = name.split('.').collect();
    let numeric = arcs
        .iter()
        .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    let first_ok = matches!(arcs.first(), Some(&"0" | &"1" | &"2"));
    (numeric && first_ok && arcs.len() >= 2).then_some(name)
}

/// The PrintableString alphabet (X.680 §41.4).
fn is_printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

fn sans(value: &Value, problems: &mut Vec<SettingProblem>) -> Vec<SubjectAltName> {
    let mut sans = Vec::new();
    for (i, item) in list(value, "sans", problems).iter().enumerate() {
        let Some(entry) = item.as_str() else {
            problems.push(
                SettingProblem::new(
                    format!("sans[{i}]"),
                    format!("must be a string, not {item}"),
                )
                .with_hint("write it like \"DNS:apotek.example\""),
            );
            continue;
        };
        match san(entry) {
            Ok(san) => sans.push(san),
            Err((message, hint)) => {
                problems.push(SettingProblem::new(format!("sans[{i}]"), message).with_hint(hint))
            }
        }
    }
    sans
}

/// One `sans` entry: `DNS:…`, `IP:…`, `email:…`, `URI:…` (the prefix in any case).
fn san(entry: &str) -> Result<SubjectAltName, (String, String)> {
    let Some((prefix, value)) = entry.split_once(':') else {
        return Err((
            format!("{entry:?} has no type prefix"),
            format!("start it with {SAN_PREFIXES}"),
        ));
    };
    let bad = |problem: &str, hint: &str| Err((format!("{entry:?} {problem}"), hint.to_owned()));
    if value.is_empty() {
        return bad("has nothing after the prefix", "write the name after it");
    }
    match prefix.to_ascii_lowercase().as_str() {
        "dns" if !value.is_ascii() => bad(
            "is not ASCII",
            "write an internationalised domain name in its xn-- (punycode) form",
        ),
        "dns" => Ok(SubjectAltName::Dns(value.to_owned())),
        "ip" if value.parse::<IpAddr>().is_err() => bad(
            "is not an IP address",
            "write it like IP:192.0.2.10 or IP:2001:db8::1",
        ),
        "ip" => Ok(SubjectAltName::Ip(value.to_owned())),
        "email" if !value.is_ascii() || !value.contains('@') => bad(
            "is not an ASCII e-mail address",
            "write it like email:it@apotek.example",
        ),
        "email" => Ok(SubjectAltName::Email(value.to_owned())),
        "uri" if !value.is_ascii() || !value.contains(':') => bad(
            "is not an ASCII URI",
            "write it like URI:https://apotek.example/, percent-encoded",
        ),
        "uri" => Ok(SubjectAltName::Uri(value.to_owned())),
        _ => bad(
            "has an unknown type prefix",
            &format!("start it with {SAN_PREFIXES}"),
        ),
    }
}
