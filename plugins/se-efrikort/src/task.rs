//! The operator tasks, word for word.
//!
//! Contract:
//! - [`order`]: SITHS has no ordering API, so a person orders the function certificate
//!   (funktionscertifikat) in the SITHS eID portal (or through the organisation's ombud) with
//!   the attached CSR, and imports what SITHS issues (`certvakt import`, or the inbox;
//!   [`Completion::Import`]). The task says what to choose and what the certificate must show.
//! - [`access`]: the access request (Anslutningsförfrågan) per region, with what happened to
//!   each mail: sent by certvakt (`plugin_mail = true`), or attached as an `.eml` file for the
//!   person to send. certvakt proves the grant itself, so the task completes by
//!   [`Completion::Poll`].

use certvakt_plugin_api::{
    CertificateContext, Completion, MailOutcome, TaskFile, TaskFileContent, TaskSpec,
};

use crate::settings::{Environment, Region, Settings};

/// The SITHS eID portal (it replaced SITHS Admin in January 2024).
pub const PORTAL: &str = "https://portal.siths.se/";

/// The task that orders the new function certificate.
pub fn order(certificate: &CertificateContext, settings: &Settings) -> TaskSpec {
    let id = &certificate.certificate_id;
    let before = certificate
        .current
        .as_ref()
        .map(|c| format!(" before {}", date(c.not_after)))
        .unwrap_or_default();
    let environment = match settings.environment {
        Environment::Test => {
            "a TEST SITHS function certificate (TEST SITHS e-id Function CA v1), as eFrikort's \
             TEST environment takes"
        }
        Environment::Production => {
            "a production SITHS function certificate (SITHS e-id Function CA v1)"
        }
    };
    let instructions = format!(
        "SITHS has no ordering API: the function certificate (funktionscertifikat) is ordered \
         in the SITHS eID portal with the CSR certvakt made. The private key stays with \
         certvakt.\n\
         \n\
         1. Sign in to the SITHS eID portal ({PORTAL}) as a person allowed to issue function \
         certificates for {organization} — or, without a direct connection to SITHS, send the \
         CSR to your ombud (the agent that issues for you).\n\
         2. Order {environment}{before}, for client authentication (two-way TLS), from the \
         attached request.csr (key {key}). Choose:\n\
         \x20  - HSA-ID (serialNumber): {hsa}\n\
         \x20  - CN and DNS name (SAN): {fqdn}\n\
         \x20  - O = {organization}, L = {locality}, C = SE\n\
         3. Download the issued certificate (PEM or DER) and import it:\n\
         \x20  certvakt import {id} <file>\n\
         \x20  or drop the file into the certificate's inbox folder.\n\
         \n\
         certvakt checks the HSA-ID, CN and DNS name, clientAuth and the validity before it uses \
         the certificate; if eFrikort has not granted this HSA-ID access yet, it then prepares \
         the access request (Anslutningsförfrågan).",
        organization = settings.organization,
        locality = settings.locality,
        key = settings.key_type.as_str(),
        hsa = settings.hsa_id,
        fqdn = settings.fqdn,
    );
    TaskSpec {
        title: format!(
            "Order the SITHS function certificate for {} (HSA-ID {}) and import it",
            settings.fqdn, settings.hsa_id
        ),
        instructions,
        files: vec![TaskFile {
            name: "request.csr".into(),
            content: TaskFileContent::Csr,
        }],
        completes_by: Completion::Import,
    }
}

/// The task of an open access request: each region and what happened to its mail.
pub fn access(
    certificate_id: &str,
    settings: &Settings,
    hsa_id: &str,
    sent: &[(&Region, MailOutcome)],
) -> TaskSpec {
    let environment = settings.environment.label();
    let names: Vec<&str> = sent.iter().map(|(r, _)| r.name.as_str()).collect();
    let mut lines = vec![format!(
        "eFrikort has not granted HSA-ID {hsa_id} access in {environment} for {}. Access is \
         asked for by e-mail (Anslutningsförfrågan) to each region's contact address with a \
         copy to CGI ({}); CGI grants it after the region's written approval.",
        names.join(", "),
        settings.support_address
    )];
    lines.push(String::new());
    let mut files = Vec::new();
    for (region, outcome) in sent {
        let to = region.contact_addresses.join(", ");
        match outcome {
            MailOutcome::Queued { message_id } => lines.push(format!(
                "- {}: certvakt sent the request to {to} (Message-ID {message_id}).",
                region.name
            )),
            MailOutcome::ForPerson { file_name, eml } => {
                lines.push(format!(
                    "- {}: send the attached {file_name} (to {to}, copy to {}) from your mail \
                     program. certvakt does not send mail for this certificate (plugin_mail is \
                     off).",
                    region.name, settings.support_address
                ));
                files.push(TaskFile {
                    name: file_name.clone(),
                    content: TaskFileContent::Base64(eml.clone()),
                });
            }
        }
    }
    lines.push(String::new());
    lines.push(format!(
        "Follow up with the region if it does not answer. certvakt checks every {} whether \
         eFrikort accepts the new certificate ({}), and goes on by itself once it does: the new \
         certificate is installed only then, the one in use stays until. Nothing to mark done; \
         `certvakt show {certificate_id}` shows the last answer.",
        settings.grant_poll,
        if settings.full_probe() {
            "a GetExtendedCardForPerson call; ACCESSDENIED means not yet"
        } else {
            "the TLS handshake and the service's WSDL"
        }
    ));
    TaskSpec {
        title: format!(
            "Ask eFrikort for {environment} access for HSA-ID {hsa_id} (Anslutningsförfrågan): {}",
            names.join(", ")
        ),
        instructions: lines.join("\n"),
        files,
        completes_by: Completion::Poll,
    }
}

/// A Unix time as a date, `2026-12-01`.
fn date(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}
