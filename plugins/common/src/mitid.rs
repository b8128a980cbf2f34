//! MitID Erhverv: the order of a renewed OCES3 certificate, as an operator task.
//!
//! MitID Erhverv makes the key itself and hands out the certificate as a password-protected
//! PKCS#12 file; there is no API. So `issue` answers with [`order_task`], completed by
//! importing that file. The daemon then checks the download against the certificate it
//! replaces (same CVR, the UUID kept or the change flagged, the key strength and key usages
//! of [`csr_profile`], the chain to the certificate's `issuer_trust` set, validity).
//!
//! A certificate can be renewed in MitID Erhverv only while it is still valid; after it has
//! expired, a new certificate must be ordered, which gets a new UUID, and every authority must
//! then be told about a new certificate. The task says so, with the date.

use certvakt_plugin_api::profile::{CsrProfile, KeyAlgorithm, KeyUsage};
use certvakt_plugin_api::{
    CertificateContext, Completion, IssueOutcome, OrderContext, PluginError, TaskFile,
    TaskFileContent, TaskSpec,
};

/// MitID Erhverv's address.
pub const PORTAL: &str = "https://erhvervsadministration.nemlog-in.dk";

/// How often the daemon asks about an order that is with a person (the import completes it
/// at once; the poll only keeps the run alive).
pub const ORDER_POLL_SECS: u64 = 3600;

/// `issue`'s answer: the order is the [`order_task`], and the run waits for the import.
pub fn ordered(order: OrderContext, purpose: &str, after: &str) -> IssueOutcome {
    IssueOutcome::Pending {
        poll_after_secs: ORDER_POLL_SECS,
        task: Some(order_task(&order.certificate, purpose, after)),
        state: order.state,
    }
}

/// `poll`'s answer: the order is still with a person; nothing to ask anyone.
pub fn still_ordered(order: OrderContext) -> IssueOutcome {
    IssueOutcome::Pending {
        poll_after_secs: ORDER_POLL_SECS,
        task: None,
        state: order.state,
    }
}

/// Name of the current certificate's file in the task.
pub const CURRENT_FILE: &str = "current-certificate.pem";

/// What the renewed certificate must look like: RSA 3072 (the OCES3 profile), with
/// `digitalSignature` and `keyEncipherment`; the subject of the certificate in use, exactly.
/// The daemon makes a CSR from it, which MitID Erhverv does not take: it makes its own key,
/// and the daemon holds the download to these requirements instead.
pub fn csr_profile(certificate: &CertificateContext) -> Result<CsrProfile, PluginError> {
    let Some(current) = certificate.current.as_ref() else {
        return Err(PluginError::needs_person(format!(
            "{} has no certificate yet: order the first one in MitID Erhverv ({PORTAL}) and \
             bring it in with `certvakt import {} <file.p12>`",
            certificate.certificate_id, certificate.certificate_id
        )));
    };
    Ok(CsrProfile {
        key: KeyAlgorithm::Rsa3072,
        subject: crate::current::subject(current)?,
        sans: Vec::new(),
        key_usage: vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
        extended_key_usage: Vec::new(),
    })
}

/// The operator task that orders the renewal. `purpose` says what the certificate is for, in
/// the words the operator knows (`FMK calls as Apotekersystem`); `after` is what happens
/// once it is imported, in one or two sentences.
pub fn order_task(certificate: &CertificateContext, purpose: &str, after: &str) -> TaskSpec {
    let id = &certificate.certificate_id;
    let current = certificate.current.as_ref();
    let name = current
        .and_then(|c| common_name(&c.subject))
        .unwrap_or("the certificate");
    let identity = current.and_then(crate::oces3::identity);
    let deadline = current.map(|c| date(c.not_after));
    let mut steps = vec![format!(
        "Sign in to MitID Erhverv ({PORTAL}) as a user administrator (brugeradministrator) of \
         the organisation{}.",
        identity
            .as_ref()
            .map(|i| format!(" with CVR {}", i.cvr))
            .unwrap_or_default()
    )];
    steps.push(format!(
        "Open Certifikater, find the certificate profile \"{name}\"{} and choose to renew \
         (forny) its certificate{}. Renewing keeps the certificate's UUID, which the \
         authorities know it by.",
        identity
            .as_ref()
            .map(|i| format!(" (its stamdata show UUID {})", i.uuid))
            .unwrap_or_default(),
        deadline
            .as_ref()
            .map(|d| format!(" before it expires on {d}"))
            .unwrap_or_default()
    ));
    steps.push(
        "Download the new certificate as a PKCS#12 file (.p12), protected by a password you \
         choose. Put the password alone in a text file only root can read \
         (`install -m 0600 /dev/null pass.txt`, then write it in)."
            .to_owned(),
    );
    steps.push(format!(
        "On this server, run\n\n    certvakt import {id} <file.p12> --password-file \
         pass.txt\n\n   then delete both files: certvakt keeps the key (mode 0600) and \
         installs the certificate."
    ));
    steps.push(after.to_owned());
    let mut instructions = format!(
        "The certificate for {purpose} ({id}) is due for renewal. MitID Erhverv has no API, so \
         a person renews it:\n\n"
    );
    for (n, step) in steps.iter().enumerate() {
        instructions.push_str(&format!("{}. {step}\n", n + 1));
    }
    if let Some(deadline) = &deadline {
        instructions.push_str(&format!(
            "\nIf {deadline} passes first, the certificate can no longer be renewed: order a \
             new certificate in the same profile instead. It gets a new UUID, and certvakt will \
             tell the authorities about a new certificate rather than a renewed one.\n"
        ));
    }
    let files = current
        .map(|c| TaskFile {
            name: CURRENT_FILE.into(),
            content: TaskFileContent::Text(c.pem.clone()),
        })
        .into_iter()
        .collect();
    TaskSpec {
        title: format!("Renew {id} in MitID Erhverv and import the .p12 file"),
        instructions,
        files,
        completes_by: Completion::Import,
    }
}

/// `CN=…` of an RFC 4514 subject as the daemon prints it.
fn common_name(subject: &str) -> Option<&str> {
    subject
        .split(',')
        .find_map(|part| part.trim().strip_prefix("CN="))
}

/// Unix seconds as a date, `2027-03-01`.
fn date(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{unix} (Unix time)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_795_000_000), "2026-11-18");
    }

    #[test]
    fn oces3_identity_comes_from_the_daemons_reading() {
        let info = certvakt_plugin_api::CertificateInfo {
            pem: String::new(),
            subject: String::new(),
            serial: "01".into(),
            not_before: 0,
            not_after: 0,
            identities: vec!["DK CVR 25450442 UUID 9b2e61d0-3c4f-4a8e-b5d7-1f0e2c3a4b5d".into()],
        };
        let id = crate::oces3::identity(&info);
        assert_eq!(id.as_ref().map(|i| i.cvr.as_str()), Some("25450442"));
        assert!(id.is_some_and(|i| i.same_uuid("9B2E61D0-3C4F-4A8E-B5D7-1F0E2C3A4B5D")));
    }

    #[test]
    fn the_common_name_is_read_from_the_subject() {
        assert_eq!(
            common_name("C=DK,organizationIdentifier=NTRDK-1,O=X,CN=Hjørring Apotek FMK"),
            Some("Hjørring Apotek FMK")
        );
        assert_eq!(common_name("C=DK"), None);
    }
}
