//! The operator tasks, word for word.
//!
//! Contract:
//! - [`application`]: DVV has no API, so a person applies for the certificate in DVV's
//!   e-service with certvakt's CSR (varmennepyyntö) and the exact form values, before a
//!   deadline that leaves DVV's processing time and one correction round before the
//!   certificate in use expires; completed by importing the certificate DVV e-mails
//!   ([`Completion::Import`]: `certvakt import`, or the inbox folder; DER or PEM).
//! - [`revocation`]: after the grace period, a person asks DVV to revoke the old certificate,
//!   with its serial in every form the e-service may want (hex with and without colons,
//!   decimal), the reason and the seed's steps. With a CRL to watch it completes by itself
//!   ([`Completion::Poll`]); without one (no distribution point in the certificate, or a host
//!   without the CRL service) a person confirms it ([`Completion::Confirm`]).
//! - Dates are UTC calendar dates (`2026-11-17`).

use certvakt_plugin_api::{CertificateContext, Completion, TaskFile, TaskFileContent, TaskSpec};

use crate::cert::Cert;
use crate::settings::{AltName, Settings};

/// DVV's page on ordering a service certificate (the e-service is reached from it).
pub const DVV_ORDER: &str = "https://dvv.fi/en/how-to-order-a-service-certificate";
/// DVV's page on revoking a service certificate.
pub const DVV_REVOKE: &str = "https://dvv.fi/en/revocation-of-a-service-certificate";

/// A Unix time as a UTC date.
pub fn date(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// The form values, one `label: value` per line, as the application task lists them.
pub fn form_values(settings: &Settings) -> String {
    let mut lines = vec![
        format!(
            "Certificate type: {}",
            settings.certificate_type.form_name()
        ),
        format!("Organisation (O): {}", settings.organization),
        format!(
            "Organisational unit (OU; the long name in the Kela/THL code service): {}",
            settings.organizational_unit
        ),
        format!("Server name (CN, FQDN): {}", settings.fqdn),
    ];
    let alt: Vec<String> = settings
        .alt_names
        .iter()
        .map(|n| match n {
            AltName::Dns(name) => name.clone(),
            AltName::Ip(ip) => format!("{ip} (IP address)"),
        })
        .collect();
    lines.push(format!(
        "Subject alternative names (SAN): {}",
        std::iter::once(settings.fqdn.clone())
            .chain(alt)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(oid) = &settings.sote_oid {
        lines.push(format!(
            "SOTE organisation OID (subject serialNumber): {oid}"
        ));
    }
    if let Some(id) = &settings.business_id {
        lines.push(format!("Business ID (Y-tunnus): {id}"));
    }
    if let Some(contact) = &settings.technical_contact {
        lines.push(format!("Technical contact: {contact}"));
    }
    lines.push(format!(
        "Key: {} (made by certvakt; the private key never leaves this server)",
        match settings.key {
            certvakt_plugin_api::profile::KeyAlgorithm::Rsa4096 => "RSA 4096",
            _ => "RSA 2048",
        }
    ));
    lines.join("\n")
}

/// When the application must be sent at the latest: the certificate in use's expiry minus
/// DVV's processing time and a correction round; `None` for a first certificate.
pub fn submit_by(certificate: &CertificateContext, settings: &Settings) -> Option<i64> {
    certificate
        .current
        .as_ref()
        .map(|c| c.not_after.saturating_sub(settings.lead_time_secs()))
}

/// The task that applies for the new certificate.
pub fn application(certificate: &CertificateContext, settings: &Settings, now: i64) -> TaskSpec {
    let id = &certificate.certificate_id;
    let kind = settings.certificate_type.form_name();
    let deadline = match (submit_by(certificate, settings), &certificate.current) {
        (Some(by), Some(current)) if by > now => format!(
            "Send the application by {} at the latest: the certificate in use expires on {}, \
             DVV takes about {} to process an application, and one round of corrections \
             takes about {} more.",
            date(by),
            date(current.not_after),
            settings.processing_time,
            settings.correction_time
        ),
        (Some(_), Some(current)) => format!(
            "Send the application today: the certificate in use expires on {}, sooner than \
             DVV's processing time ({}) and a round of corrections ({}) allow. Ask DVV to \
             hurry if you can.",
            date(current.not_after),
            settings.processing_time,
            settings.correction_time
        ),
        _ => format!(
            "There is no certificate in use yet: send the application as soon as you can. DVV \
             takes about {} to process it.",
            settings.processing_time
        ),
    };
    let expected = date(now.saturating_add(settings.processing_time.as_secs_i64()));
    let instructions = format!(
        "certvakt made a new key and a certificate request (varmennepyyntö, CSR) for {id}. \
         DVV (Digi- ja väestötietovirasto) issues sote service certificates only through its \
         e-service, and every renewal is a new application: there is no \"renew\" action, and \
         nothing links the new certificate to the old one.\n\n\
         {deadline}\n\n\
         1. Sign in to DVV's e-service with strong authentication, as a user of the \
         organisation's customer account (see {DVV_ORDER}).\n\
         2. Start a new application for a {kind}.\n\
         3. Fill in the form with exactly these values (also in form-values.txt):\n\n\
         {values}\n\n\
         4. Attach the certificate request request.csr (in this task's folder), or name the \
         technical contact, who is e-mailed a link to upload it. Do not make a CSR of your \
         own: certvakt holds the key for this one.\n\
         5. Send the application and follow its processing steps in the e-service (expected \
         around {expected}). If DVV returns it for corrections, correct the form and send it \
         again with the same request.csr.\n\
         6. DVV e-mails the certificate, as DER and as PEM, to the organisation's technical \
         shared mailbox and to the technical contact. Import either file: `certvakt import \
         {id} <file>`, or drop it into the certificate's inbox folder. certvakt checks it \
         against its key and this application (type and validity, O, OU, CN, names) before \
         anything is installed.",
        values = indent(&form_values(settings)),
    );
    TaskSpec {
        title: format!(
            "Apply for the new {kind} for {} in DVV's e-service",
            settings.fqdn
        ),
        instructions,
        files: vec![
            TaskFile {
                name: "request.csr".into(),
                content: TaskFileContent::Csr,
            },
            TaskFile {
                name: "form-values.txt".into(),
                content: TaskFileContent::Text(format!("{}\n", form_values(settings))),
            },
        ],
        completes_by: Completion::Import,
    }
}

/// How the revocation task completes, and what it says about that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watch {
    /// certvakt reads the CRL at this URL every `crl_poll`.
    Crl(String),
    /// A person confirms; the reason certvakt cannot see it.
    Confirm(String),
}

/// The task that asks for the old certificate's revocation.
pub fn revocation(
    certificate_id: &str,
    settings: &Settings,
    old: &Cert,
    old_subject: &str,
    new_serial: Option<&str>,
    watch: &Watch,
) -> TaskSpec {
    let serial = &old.serial;
    let not_the_new = new_serial
        .map(|s| format!(" (the new certificate's serial is {s}: never that one)"))
        .unwrap_or_default();
    let completion = match watch {
        Watch::Crl(url) => format!(
            "certvakt then reads the CRL (sulkulista) named in the old certificate, {url}, \
             every {}, and closes this task by itself once the serial is on it.",
            settings.crl_poll
        ),
        Watch::Confirm(why) => format!(
            "certvakt cannot see the revocation itself ({why}): when DVV's confirmation e-mail \
             has arrived, mark this task done. (If nobody does, certvakt ends the run when the \
             old certificate expires on {}.)",
            date(old.not_after)
        ),
    };
    let instructions = format!(
        "The new certificate of {certificate_id} ({fqdn}) is installed and works, and the \
         grace period (revoke_after = {grace}) is over. The old certificate is no longer \
         needed, and DVV's rules say a service certificate that is no longer needed must be \
         revoked. A revoked certificate cannot be taken back into use: check that you revoke \
         the OLD certificate{not_the_new}.\n\n\
         Old certificate:\n\
         \x20 Subject: {old_subject}\n\
         \x20 Valid: {from} to {until}\n\
         \x20 Serial number (hex): {hex}\n\
         \x20 Serial number (hex with colons): {colons}\n\
         \x20 Serial number (decimal): {decimal}\n\
         Reason for the revocation: {reason}\n\n\
         In DVV's e-service (see {DVV_REVOKE}):\n\
         1. Log in to the e-service.\n\
         2. Find the decision for this certificate in the list \"Granted permits and \
         unfinished matters\" (\"Beviljade tillstånd och ofullbordade ärenden\").\n\
         3. Click the arrow next to \"Open decision\" and choose \"Make a revocation request \
         for the certificate\" (\"Tee varmenteen sulkupyyntö\").\n\
         4. Enter the certificate's serial number (in the form the field accepts: one of the \
         three above), check the data shown, give the reason, and send the request.\n\
         5. DVV confirms the revocation by e-mail; the certificate is revoked within 24 hours \
         of the request.\n\n\
         {completion}",
        fqdn = settings.fqdn,
        grace = settings.revoke_after,
        from = date(old.not_before),
        until = date(old.not_after),
        hex = serial.hex(),
        colons = serial.hex_colons(),
        decimal = serial.decimal(),
        reason = settings.revocation_reason,
    );
    TaskSpec {
        title: format!(
            "Request the revocation of {certificate_id}'s old certificate (serial {}) in DVV's \
             e-service",
            serial.hex()
        ),
        instructions,
        files: vec![TaskFile {
            name: "old-certificate.der".into(),
            content: TaskFileContent::PreviousCertificateDer,
        }],
        completes_by: match watch {
            Watch::Crl(_) => Completion::Poll,
            Watch::Confirm(_) => Completion::Confirm,
        },
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
