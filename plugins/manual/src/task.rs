//! The operator task that carries a manual order: exact steps and the files they need.
//!
//! Contract:
//! - The task names the certificate id and the CA in its title, and its steps say where the
//!   CSR goes (`submit_url`, or to the CA however it takes orders), the exact
//!   `certvakt import <id> <file>` command and the inbox alternative, and what happens then.
//!   The operator's own `instructions` come as a step of their own, before the import.
//! - Files: `request.csr` (filled in by the daemon), and `current-certificate.pem` when there
//!   is a certificate in use (some CAs ask which one is being renewed).
//! - It completes by import: the daemon closes it when the certificate is taken in.

use certvakt_plugin_api::{CertificateContext, Completion, TaskFile, TaskFileContent, TaskSpec};

use crate::settings::Settings;

/// Name of the CSR file in the task.
pub const CSR_FILE: &str = "request.csr";
/// Name of the current certificate's file in the task, when there is one.
pub const CURRENT_FILE: &str = "current-certificate.pem";

/// The task for ordering `certificate` from the CA the settings name.
pub fn order(certificate: &CertificateContext, settings: &Settings) -> TaskSpec {
    let id = &certificate.certificate_id;
    let ca = &settings.ca_name;
    let mut steps = match &settings.submit_url {
        Some(url) => vec![
            format!(
                "Open {url} and sign in as someone allowed to order certificates from {ca} for \
                 the organisation."
            ),
            format!(
                "Paste the whole of {CSR_FILE} (attached; from -----BEGIN CERTIFICATE \
                 REQUEST----- to -----END CERTIFICATE REQUEST-----, both lines included) into \
                 the order form, or upload the file, and send the order."
            ),
        ],
        None => vec![format!(
            "Send {CSR_FILE} (attached) to {ca} the way {ca} takes certificate orders (its \
             portal, or its order desk by e-mail), and ask for the certificate as a PEM or DER \
             file, with the issuing CA certificates if they come with it."
        )],
    };
    steps.push(format!(
        "Do not let {ca} make a new key for you: the certificate must be for the key in \
         {CSR_FILE}, which certvakt made and keeps on this server."
    ));
    if let Some(extra) = &settings.instructions {
        steps.push(extra.trim().to_owned());
    }
    steps.push(format!(
        "When {ca} sends the certificate, save it as a file on this server and run\n\n    \
         certvakt import {id} <file>\n\n   or copy the file into the inbox folder of {id} \
         (certs/{id}/inbox/ in certvakt's state directory, /var/lib/certvakt by default)."
    ));
    steps.push(format!(
        "That is all: certvakt checks that the certificate belongs to the new key, installs \
         it, and closes this task. `certvakt show {id}` shows how the renewal goes on."
    ));

    let mut instructions = format!(
        "certvakt has made a new key for {id} and a certificate signing request (CSR) for it. \
         {ca} has no API, so a person orders the certificate:\n\n"
    );
    for (n, step) in steps.iter().enumerate() {
        instructions.push_str(&format!("{}. {step}\n", n + 1));
    }
    let mut files = vec![TaskFile {
        name: CSR_FILE.into(),
        content: TaskFileContent::Csr,
    }];
    if let Some(current) = &certificate.current {
        instructions.push_str(&format!(
            "\n{CURRENT_FILE} (attached) is the certificate in use now (serial {}), for a CA \
             that asks which certificate is being renewed.\n",
            current.serial
        ));
        files.push(TaskFile {
            name: CURRENT_FILE.into(),
            content: TaskFileContent::Text(current.pem.clone()),
        });
    }
    TaskSpec {
        title: format!("Order a new certificate for {id} from {ca}"),
        instructions,
        files,
        completes_by: Completion::Import,
    }
}
