//! The operator tasks, word for word.
//!
//! Contract:
//! - [`order`]: Buypass and Commfides have no ordering API, so a person orders the SEID 2.0
//!   virksomhetssertifikat set (Buypass: CertManager; Commfides: its portal) for the
//!   organisation number, before the date the certificate in use expires minus
//!   `order_margin`, and imports it (`certvakt import ID <files…> --password-file …`;
//!   completed by [`Completion::Import`]). With certvakt's own keys (Commfides,
//!   `key_source = "certvakt"`) the task carries one CSR per role: the primary's as
//!   [`TaskFileContent::Csr`], the others as text files `<role>.csr`.
//! - [`not_published`]: the CA has not published the new set to its directory within
//!   `publish_timeout`; certvakt keeps asking ([`Completion::Poll`]).
//! - [`not_promoted`]: AR did not make the future `E_DS` address current at `ValidFrom` and
//!   `fallback_write_current` is off: a person writes it in AR's web registry; certvakt sees it
//!   done by reading back ([`Completion::Poll`]).

use std::collections::BTreeMap;

use certvakt_plugin_api::{CertificateContext, Completion, TaskFile, TaskFileContent, TaskSpec};

use crate::settings::{Ca, KeySource, Settings};

/// Buypass's self-service portal.
pub const CERTMANAGER: &str = "https://certificates.buypass.com";
/// Commfides's page for enterprise certificates.
pub const COMMFIDES: &str = "https://www.commfides.com/virksomhetssertifikat/";
/// NHN's web registry for Adresseregisteret (personal login with HelseID).
pub const AR_WEB: &str = "https://register-web.nhn.no";

/// The task that orders the new set.
pub fn order(
    certificate: &CertificateContext,
    settings: &Settings,
    csr_set: &BTreeMap<String, String>,
) -> TaskSpec {
    let id = &certificate.certificate_id;
    let orgnr = &settings.organization_number;
    let deadline = certificate
        .current
        .as_ref()
        .map(|c| date(c.not_after - settings.order_margin.as_secs_i64()));
    let before = deadline
        .as_ref()
        .map(|d| format!(" before {d}"))
        .unwrap_or_default();
    let with_csr = settings.key_source == KeySource::Certvakt;
    let roles = settings.ca.roles();
    let mut steps = Vec::new();
    match settings.ca {
        Ca::Buypass => {
            steps.push(format!(
                "Sign in to Buypass CertManager ({CERTMANAGER}) as a person allowed to order \
                 for organisation number {orgnr}."
            ));
            steps.push(format!(
                "Order (or renew) a SEID 2.0 virksomhetssertifikat (enterprise certificate, \
                 soft token) for organisation number {orgnr}{before}. Buypass delivers two \
                 PKCS#12 files: authentication + encryption, and signing, and sends the \
                 password by SMS and letter."
            ));
        }
        Ca::Commfides => {
            steps.push(format!(
                "Sign in to Commfides ({COMMFIDES}) as a person allowed to order for \
                 organisation number {orgnr}."
            ));
            if with_csr {
                steps.push(format!(
                    "Order a SEID 2.0 virksomhetssertifikat (enterprise certificate) with \
                     customer-generated keys for organisation number {orgnr}{before}, and \
                     upload the attached CSRs, one per certificate: {}.",
                    roles
                        .iter()
                        .map(|r| format!("{r}.csr for the {r} certificate"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            } else {
                steps.push(format!(
                    "Order a SEID 2.0 virksomhetssertifikat (enterprise certificate) for \
                     organisation number {orgnr}{before}. Commfides delivers three PKCS#12 \
                     files: authentication, encryption and signing."
                ));
            }
        }
    }
    let files_by_role: Vec<String> = roles
        .iter()
        .map(|r| {
            if with_csr {
                format!("{r}.pem")
            } else {
                format!("{r}.p12")
            }
        })
        .collect();
    if with_csr {
        steps.push(format!(
            "Download the issued certificates (PEM) and, on this server, run\n\n    \
             certvakt import {id} {}\n\n   in this order: {}.",
            files_by_role.join(" "),
            roles.join(", ")
        ));
    } else {
        steps.push(format!(
            "Put the PKCS#12 password alone in a text file only root can read (`install -m \
             0600 /dev/null pass.txt`, then write it in). On this server, run\n\n    certvakt \
             import {id} {} --password-file pass.txt\n\n   with the files in this order: {}; \
             then delete the files: certvakt keeps the keys (mode 0600).",
            files_by_role.join(" "),
            roles.join(", ")
        ));
    }
    steps.push(format!(
        "That is all. certvakt checks the set (organisation number {orgnr}, SEID 2, key usage \
         per certificate, key strength, validity), waits until {} has published it to its \
         directory, writes the new E_DS address to Adresseregisteret (HER-id {}) with a \
         switch time, installs the set at that time and keeps the old encryption key for \
         messages still on their way.",
        settings.ca.name(),
        settings
            .her_ids()
            .iter()
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut instructions = format!(
        "The virksomhetssertifikat set for {id} (organisation number {orgnr}, {} {}) is due \
         for renewal. {} has no ordering API, so a person orders it:\n\n",
        settings.ca.name(),
        settings.environment.as_str(),
        settings.ca.name()
    );
    for (n, step) in steps.iter().enumerate() {
        instructions.push_str(&format!("{}. {step}\n", n + 1));
    }
    let mut files = Vec::new();
    if with_csr {
        files.push(TaskFile {
            name: "authentication.csr".into(),
            content: TaskFileContent::Csr,
        });
        for (role, csr) in csr_set {
            files.push(TaskFile {
                name: format!("{role}.csr"),
                content: TaskFileContent::Text(csr.clone()),
            });
        }
    }
    if let Some(current) = &certificate.current {
        files.push(TaskFile {
            name: "current-authentication.pem".into(),
            content: TaskFileContent::Text(current.pem.clone()),
        });
    }
    TaskSpec {
        title: format!(
            "Order {id}'s SEID 2.0 virksomhetssertifikat set from {} and import it",
            settings.ca.name()
        ),
        instructions,
        files,
        completes_by: Completion::Import,
    }
}

/// The CA has not published the new set within `publish_timeout`.
pub fn not_published(id: &str, settings: &Settings, url: &str) -> TaskSpec {
    TaskSpec {
        title: format!(
            "{} has not published {id}'s new certificates to its directory",
            settings.ca.name()
        ),
        instructions: format!(
            "certvakt has had the new virksomhetssertifikat set for {id} for {} and asks \
             Adresseregisteret every {} whether it finds the set at\n\n    {url}\n\nIt does not \
             yet: {} has not published the certificates to its LDAP directory (or the \
             directory's host or base in the settings, ldap_host and ldap_base, is not where \
             it publishes). certvakt writes nothing to AR until the set is found.\n\n\
             1. Ask {} whether the certificates with these serial numbers are published, and \
             where.\n\
             2. If the host or base differs, correct ldap_host / ldap_base (or write ldap_base \
             = \"lookup\") and `certvakt reload`.\n\
             3. That is all: certvakt closes this task when AR finds the set.\n",
            settings.publish_timeout,
            settings.publish_poll,
            settings.ca.name(),
            settings.ca.name()
        ),
        files: Vec::new(),
        completes_by: Completion::Poll,
    }
}

/// AR did not make the future `E_DS` address current at `ValidFrom`.
pub fn not_promoted(id: &str, her_id: u32, url: &str, valid_from: &str) -> TaskSpec {
    TaskSpec {
        title: format!(
            "Make {id}'s new E_DS address current in Adresseregisteret for HER-id {her_id}"
        ),
        instructions: format!(
            "certvakt wrote the new E_DS address (the LDAP URL of the new virksomhetssertifikat \
             set) for HER-id {her_id} as a future address valid from {valid_from}. That time \
             has passed, but AR still gives the old certificates for HER-id {her_id}, so the \
             future address was not made current. certvakt does not write the current address \
             itself (fallback_write_current = false).\n\n\
             1. Sign in to NHN's registry ({AR_WEB}) with your personal login (HelseID).\n\
             2. Open HER-id {her_id} and set its electronic address of type \"Digital \
             sertifikat\" (E_DS) to exactly:\n\n    {url}\n\n\
             3. Keep every other address as it is.\n\
             4. That is all: certvakt reads AR back and closes this task when AR gives the new \
             certificates; the new set is installed then. (Or set fallback_write_current = \
             true to let certvakt write it.)\n"
        ),
        files: Vec::new(),
        completes_by: Completion::Poll,
    }
}

/// Unix seconds as a date, `2027-03-01`.
pub fn date(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{unix} (Unix time)"))
}
