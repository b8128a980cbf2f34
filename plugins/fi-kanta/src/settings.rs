//! The fi-kanta plugin's settings: one parser, used to validate and to act.
//!
//! Contract:
//! - [`Settings::parse`] reads a certificate's `[certificate.settings]` (as JSON) and returns
//!   the settings or every problem at once, each naming its key (`alt_names[1]`) and, where it
//!   helps, what to write. `validate_settings` returns those problems; every other method
//!   refuses to act on settings with problems ([`Settings::for_call`]).
//! - DVV's name rules (brief fi-kanta.md §2) are enforced here, before a key or a CSR is
//!   made: a domain name is required (no IP-only certificate), no e-mail address anywhere in
//!   the names, RSA 2048 or 4096 only. Each refusal says why DVV would refuse it.
//! - Nothing here touches the network.

use std::net::IpAddr;

use certvakt_plugin_api::duration::HumanDuration;
use certvakt_plugin_api::profile::KeyAlgorithm;
use certvakt_plugin_api::{PluginError, SettingDoc, SettingProblem};
use certvakt_plugin_common::settings::{SettingsReader, https_url, refuse, text};
use serde_json::Value;

/// The plugin's name, for messages.
const PLUGIN: &str = "fi-kanta";

/// The four kinds of sote service certificate DVV issues (brief §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateType {
    /// *Sote-palvelinvarmenne*: TLS between the organisation's server and Kanta; ≤ 1 year.
    Server,
    /// The same for Kanta's test environment.
    TestServer,
    /// *Sote-järjestelmäallekirjoitusvarmenne*: signs documents; ≤ 2 years.
    SystemSignature,
    /// The same for test.
    TestSystemSignature,
}

impl CertificateType {
    /// The setting's values, in the order documented.
    pub const NAMES: [&'static str; 4] = [
        "server",
        "test-server",
        "system-signature",
        "test-system-signature",
    ];

    pub fn parse(name: &str) -> Option<CertificateType> {
        match name {
            "server" => Some(CertificateType::Server),
            "test-server" => Some(CertificateType::TestServer),
            "system-signature" => Some(CertificateType::SystemSignature),
            "test-system-signature" => Some(CertificateType::TestSystemSignature),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CertificateType::Server => "server",
            CertificateType::TestServer => "test-server",
            CertificateType::SystemSignature => "system-signature",
            CertificateType::TestSystemSignature => "test-system-signature",
        }
    }

    /// What the e-service's form calls it, in English and Finnish.
    pub fn form_name(self) -> &'static str {
        match self {
            CertificateType::Server => "Sote server certificate (sote-palvelinvarmenne)",
            CertificateType::TestServer => {
                "Sote test server certificate (sote-testipalvelinvarmenne)"
            }
            CertificateType::SystemSignature => {
                "Sote system signature certificate (sote-järjestelmäallekirjoitusvarmenne)"
            }
            CertificateType::TestSystemSignature => {
                "Sote test system signature certificate \
                 (sote-testijärjestelmäallekirjoitusvarmenne)"
            }
        }
    }

    /// A server certificate (TLS) rather than a system-signature one.
    pub fn is_server(self) -> bool {
        matches!(self, CertificateType::Server | CertificateType::TestServer)
    }

    /// The longest validity DVV gives the type, in whole years: server certificates one
    /// (since 1 Sep 2020), system-signature certificates two.
    pub fn max_years(self) -> i64 {
        if self.is_server() { 1 } else { 2 }
    }
}

/// A name beside the FQDN in the certificate's SAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AltName {
    Dns(String),
    Ip(String),
}

/// The settings of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub certificate_type: CertificateType,
    /// `O`: the organisation's legal name.
    pub organization: String,
    /// `OU`: the organisation's long name in the Kela/THL code service.
    pub organizational_unit: String,
    /// `CN` and the first SAN dNSName.
    pub fqdn: String,
    /// Further SAN entries (DNS names, IP addresses beside the FQDN).
    pub alt_names: Vec<AltName>,
    /// The SOTE organisation OID, as the subject's `serialNumber` (brief §2: a hypothesis).
    pub sote_oid: Option<String>,
    pub key: KeyAlgorithm,
    /// Y-tunnus, for the form.
    pub business_id: Option<String>,
    /// The technical contact, for the form.
    pub technical_contact: Option<String>,
    pub processing_time: HumanDuration,
    pub correction_time: HumanDuration,
    pub renew_before: HumanDuration,
    pub verify_url: Option<String>,
    pub verify_trust: Option<String>,
    pub revoke_after: HumanDuration,
    pub revocation_reason: String,
    pub crl_poll: HumanDuration,
}

/// The smallest `renew_before`: three weeks (brief §3).
pub const MIN_RENEW_BEFORE_SECS: u64 = 21 * 86_400;
/// The shortest `crl_poll`: a test CA of one's own may be asked this often; DVV's CRL should
/// be asked far less (the default is an hour).
pub const MIN_CRL_POLL_SECS: u64 = 5;
/// The reason written into the revocation request unless `revocation_reason` says otherwise.
pub const DEFAULT_REVOCATION_REASON: &str =
    "superseded: the certificate has been replaced by a new one and is no longer needed";

/// Every setting, documented (`certvakt plugins`, and the reader's list of known keys).
pub fn docs() -> Vec<SettingDoc> {
    vec![
        SettingDoc::required("certificate_type", "Which sote certificate DVV issues: \"server\" (sote-palvelinvarmenne, at most 1 year), \"test-server\", \"system-signature\" (järjestelmäallekirjoitusvarmenne, at most 2 years) or \"test-system-signature\". Sets the key usages asked for and the validity limit checked on import.")
            .example("\"server\""),
        SettingDoc::required("organization", "O: the organisation's legal name, as in the SOTE organisation register.")
            .example("\"Helsingin Yliopiston Apteekki\""),
        SettingDoc::required("organizational_unit", "OU: the organisation's long name exactly as registered in the national code service of Kela and THL (e.g. \"Helsingin VI apteekki\"); DVV sends an application back when it differs.")
            .example("\"Helsingin VI apteekki\""),
        SettingDoc::required("fqdn", "CN and the first SAN dNSName: the server's fully qualified domain name. Not an IP address (DVV issues no IP-only certificates since 15 Sep 2023) and not an e-mail address.")
            .example("\"kanta.apteekki.example.fi\""),
        SettingDoc::optional("alt_names", "Further SAN entries: DNS names, or IP addresses beside the FQDN. No e-mail addresses. Default: none.")
            .example("[\"kanta2.apteekki.example.fi\"]"),
        SettingDoc::optional("sote_oid", "The organisation's SOTE organisation OID from THL's register, written as the subject's serialNumber (PrintableString). Where DVV wants it is not confirmed (fi-kanta.md §2); leave it out unless DVV asked for it. When set, the import check requires it.")
            .example("\"1.2.246.10.1234567.10.0\""),
        SettingDoc::optional("key_type", "\"rsa-2048\" (default) or \"rsa-4096\": DVV takes RSA keys of these sizes only.")
            .example("\"rsa-4096\""),
        SettingDoc::optional("business_id", "The organisation's Y-tunnus (business ID, 1234567-8), shown in the application task. Default: not shown.")
            .example("\"0201256-6\""),
        SettingDoc::optional("technical_contact", "The technical contact named in the application (name and e-mail), shown in the application task; DVV also delivers the certificate to this address. Default: not shown.")
            .example("\"Maija Meikäläinen <it@apteekki.example.fi>\""),
        SettingDoc::optional("processing_time", "How long DVV takes to process an application (its target is about a week). Default \"7d\".")
            .example("\"7d\""),
        SettingDoc::optional("correction_time", "Time for one round of corrections when DVV returns the application. Default \"7d\". processing_time + correction_time is the lead time in the task's deadline and in the renewal window.")
            .example("\"7d\""),
        SettingDoc::optional("renew_before", "How long before the certificate in use expires the new one must be in hand; at least \"21d\". The suggested renewal window starts at expiry − (processing_time + correction_time + renew_before). Default \"30d\". (The plugin's own; the [[certificate]] renew_before is the fallback schedule when no window is suggested.)")
            .example("\"30d\""),
        SettingDoc::optional("verify_url", "An https URL of a Kanta endpoint certvakt calls once after the install, with the new certificate as the client certificate; a TLS failure or HTTP 401/403 is an error. Left out: no call.")
            .example("\"https://kanta-test.example.fi/health\""),
        SettingDoc::optional("verify_trust", "The [trust] set verify_url's TLS certificate must chain to; left out: the system's roots.")
            .example("\"kanta\""),
        SettingDoc::optional("revoke_after", "The grace period after the new certificate was installed and verified before the old one's revocation is asked for (revocation cannot be undone). Default \"7d\".")
            .example("\"7d\""),
        SettingDoc::optional("revocation_reason", "The reason written into the revocation request. Default: \"superseded: the certificate has been replaced by a new one and is no longer needed\".")
            .example("\"superseded\""),
        SettingDoc::optional("crl_poll", "How often certvakt reads the old certificate's CRL (sulkulista) after the revocation request, until its serial is on it; at least \"5s\" (go below an hour only against a test CA of your own). Default \"1h\".")
            .example("\"1h\""),
    ]
}

impl Settings {
    /// The settings, or every problem in them.
    pub fn parse(value: &Value) -> Result<Settings, Vec<SettingProblem>> {
        let mut r = SettingsReader::new(value, PLUGIN, &docs())?;
        let certificate_type =
            r.required("certificate_type", |v| match CertificateType::parse(v) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "must be one of {}, not \"{v}\"",
                    CertificateType::NAMES
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        let organization = r.required("organization", name_text);
        let organizational_unit = r.required("organizational_unit", name_text);
        let fqdn = r.required("fqdn", fqdn);
        let alt_names = r
            .list("alt_names", 20, |v| alt_name(v).map(|_| ()))
            .iter()
            .filter_map(|v| alt_name(v).ok())
            .collect();
        let sote_oid = r.optional("sote_oid", dotted_oid);
        let key = r.optional("key_type", |v| match v {
            "rsa-2048" | "rsa-4096" => Ok(()),
            other => Err(format!(
                "must be \"rsa-2048\" or \"rsa-4096\", not \"{other}\": DVV takes RSA keys of \
                 2048 or 4096 bits only"
            )),
        });
        let key = match key.as_deref() {
            Some("rsa-4096") => KeyAlgorithm::Rsa4096,
            _ => KeyAlgorithm::Rsa2048,
        };
        let business_id = r.optional("business_id", business_id);
        let technical_contact = r.optional("technical_contact", |v| text(v, 200));
        let day = |days: u64| HumanDuration(std::time::Duration::from_secs(days * 86_400));
        let processing_time = r.duration("processing_time", day(7));
        let correction_time = r.duration("correction_time", day(7));
        let renew_before = r.duration("renew_before", day(30));
        if renew_before.as_secs() < MIN_RENEW_BEFORE_SECS {
            r.problem(
                SettingProblem::new(
                    "renew_before",
                    format!(
                        "is {renew_before}: the new certificate must be in hand at least three \
                         weeks before the old one expires (DVV's week of processing and a \
                         correction round can run late)"
                    ),
                )
                .with_hint("write renew_before = \"21d\" or more"),
            );
        }
        let verify_url = r.optional("verify_url", https_url);
        let verify_trust = r.optional("verify_trust", |v| text(v, 100));
        let revoke_after = r.duration("revoke_after", day(7));
        let revocation_reason = r
            .optional("revocation_reason", |v| text(v, 300))
            .unwrap_or_else(|| DEFAULT_REVOCATION_REASON.to_owned());
        let crl_poll = r.duration(
            "crl_poll",
            HumanDuration(std::time::Duration::from_secs(3600)),
        );
        if crl_poll.as_secs() < MIN_CRL_POLL_SECS {
            r.problem(
                SettingProblem::new(
                    "crl_poll",
                    format!(
                        "is {crl_poll}: a CRL is not read more often than every {MIN_CRL_POLL_SECS} seconds"
                    ),
                )
                .with_hint(
                    "write crl_poll = \"1h\" for DVV (its CRL changes a few times a day); \
                     seconds only against a test CA of your own",
                ),
            );
        }
        let Some(certificate_type) = CertificateType::parse(&certificate_type) else {
            return Err(r.finish(()).err().unwrap_or_default());
        };
        r.finish(Settings {
            certificate_type,
            organization,
            organizational_unit,
            fqdn: fqdn.trim_end_matches('.').to_ascii_lowercase(),
            alt_names,
            sote_oid,
            key,
            business_id,
            technical_contact,
            processing_time,
            correction_time,
            renew_before,
            verify_url,
            verify_trust,
            revoke_after,
            revocation_reason,
            crl_poll,
        })
    }

    /// The settings, or a configuration error listing every problem.
    pub fn for_call(value: &Value) -> Result<Settings, PluginError> {
        Settings::parse(value).map_err(|problems| refuse(PLUGIN, &problems))
    }

    /// DVV's processing plus one correction round.
    pub fn lead_time_secs(&self) -> i64 {
        self.processing_time
            .as_secs_i64()
            .saturating_add(self.correction_time.as_secs_i64())
    }

    /// Every DNS name the certificate must carry: the FQDN first.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names = vec![self.fqdn.clone()];
        for name in &self.alt_names {
            if let AltName::Dns(dns) = name
                && !names.contains(dns)
            {
                names.push(dns.clone());
            }
        }
        names
    }

    /// Every IP address the certificate carries beside its names.
    pub fn ip_addresses(&self) -> Vec<IpAddr> {
        self.alt_names
            .iter()
            .filter_map(|n| match n {
                AltName::Ip(ip) => ip.parse().ok(),
                AltName::Dns(_) => None,
            })
            .collect()
    }
}

/// O and OU: text, and not an e-mail address.
fn name_text(value: &str) -> Result<(), String> {
    text(value, 64)?;
    if looks_like_email(value) {
        return Err(no_email(value));
    }
    Ok(())
}

fn looks_like_email(value: &str) -> bool {
    value.contains('@')
}

fn no_email(value: &str) -> String {
    format!(
        "\"{value}\" is an e-mail address: DVV no longer issues server certificates that \
         contain an e-mail address (since 15 Sep 2023); the technical contact's address \
         belongs in technical_contact"
    )
}

/// The certificate's main name: a domain name, never an IP address or an e-mail address.
fn fqdn(value: &str) -> Result<(), String> {
    if looks_like_email(value) {
        return Err(no_email(value));
    }
    if value.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "\"{value}\" is an IP address: DVV no longer issues (sote) server certificates \
             based only on an IP address (since 15 Sep 2023); write the server's domain name \
             here, and the IP address in alt_names beside it if it must be in the certificate"
        ));
    }
    dns_name(value)
}

/// A SAN entry beside the FQDN: a DNS name or an IP address.
fn alt_name(value: &str) -> Result<AltName, String> {
    if looks_like_email(value) {
        return Err(no_email(value));
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(AltName::Ip(ip.to_string()));
    }
    dns_name(value)?;
    Ok(AltName::Dns(
        value.trim_end_matches('.').to_ascii_lowercase(),
    ))
}

/// A fully qualified domain name: at least two labels of letters, digits and hyphens.
fn dns_name(value: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "\"{value}\" is not a fully qualified domain name (like kanta.apteekki.example.fi: \
             labels of letters, digits and hyphens, separated by dots)"
        ))
    };
    let labels: Vec<&str> = value.trim_end_matches('.').split('.').collect();
    if value.len() > 253 || labels.len() < 2 {
        return bad();
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if labels.iter().all(label_ok) {
        Ok(())
    } else {
        bad()
    }
}

/// A dotted OID: at least two arcs of digits, the first 0, 1 or 2.
fn dotted_oid(value: &str) -> Result<(), String> {
    let arcs: Vec<&str> = value.split('.').collect();
    let ok = arcs.len() >= 2
        && arcs
            .iter()
            .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
        && matches!(arcs[0], "0" | "1" | "2");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{value}\" is not an OID: write the SOTE organisation OID from THL's register in \
             dotted form (like 1.2.246.10.1234567.10.0)"
        ))
    }
}

/// A Y-tunnus: seven digits, a hyphen, a check digit.
fn business_id(value: &str) -> Result<(), String> {
    let ok = value.len() == 9
        && value.as_bytes()[7] == b'-'
        && value
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 7 || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{value}\" is not a Y-tunnus (business ID): write seven digits, a hyphen and the \
             check digit, like 0201256-6"
        ))
    }
}
