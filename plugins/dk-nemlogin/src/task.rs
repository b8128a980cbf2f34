//! The operator tasks, word for word: NemLog-in Administration has no API, so a person
//! attaches and detaches the system user's certificates there, and certvakt proves each step
//! with a token request ([`crate::sts`]).
//!
//! Contract:
//! - Each task is in English, with the portal's Danish terms in quotes as the screens show
//!   them, names the system user by its EntityID and the environment, and completes by
//!   [`Completion::Poll`]: certvakt closes it itself once the STS answers as it should.
//! - [`attach`] (register, and verify when the STS refuses the installed certificate) carries
//!   the new certificate as `.cer` (DER) and a PEM copy, written from the certificate the
//!   plugin is given; [`detach`] (retire) carries the old certificate, to tell them apart.
//! - With `overlap = false` the attach task says the switch is a short planned outage.

use certvakt_plugin_api::{CertificateInfo, Completion, TaskFile, TaskFileContent, TaskSpec};
use certvakt_plugin_common::oces3;

use crate::settings::Settings;

/// NemLog-in Administration.
pub const PORTAL: &str = "https://administration.nemlog-in.dk";
/// The new certificate as NemLog-in takes it (DER).
pub const NEW_CER: &str = "new-certificate.cer";
/// The new certificate as PEM, in case the portal wants the text form.
pub const NEW_PEM: &str = "new-certificate.pem";
/// The old certificate (DER), in the retire task.
pub const OLD_CER: &str = "old-certificate.cer";

/// Why [`attach`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A renewal: the new certificate goes beside the old one.
    Renewal,
    /// No certificate in use: the system user may be new.
    First,
    /// The certificate is installed, but the STS refuses it.
    RefusedAfterInstall,
}

/// The task that attaches the new certificate to the system user and provisions it.
pub fn attach(
    id: &str,
    settings: &Settings,
    new: &CertificateInfo,
    new_der: &[u8],
    why: Why,
) -> TaskSpec {
    let env = settings.environment;
    let entity = &settings.entity_id;
    let provision = env.provision_link();
    let thumbprint = oces3::sha1_hex_upper(new_der);
    let mut steps = vec![format!(
        "Sign in to NemLog-in Administration ({PORTAL}) as the organisation's \
         \"Administrator for systembrugere\" (administrator of system users), with your own \
         employee login (MitID Erhverv)."
    )];
    if why == Why::First {
        steps.push(format!(
            "If the system user does not exist yet: choose \"Tilføj systembruger\" (add system \
             user) in the menu on the left, give it a name and a description, and enter the \
             EntityID {entity} in the {} column. If it exists, open it from the list of system \
             users (\"Stamdata\") by its EntityID {entity}.",
            env.danish()
        ));
    } else {
        steps.push(format!(
            "Open the system user with the EntityID {entity} from the list of system users \
             (\"Stamdata\")."
        ));
    }
    if settings.overlap && why != Why::First {
        steps.push(format!(
            "Add the attached {NEW_CER} to the system user's certificates for {} \
             ({env_en}). Keep the old certificate attached: the service still uses it until \
             certvakt has installed the new one, and certvakt says when to remove it.",
            env.danish(),
            env_en = env.as_str()
        ));
    } else if why == Why::First {
        steps.push(format!(
            "Add the attached {NEW_CER} to the system user's certificates for {} ({}).",
            env.danish(),
            env.as_str()
        ));
    } else {
        steps.push(format!(
            "This system user holds one certificate at a time (overlap = false), so the \
             switch is a short planned outage: from the moment you replace the certificate \
             until certvakt installs the new one, the service cannot get tokens. Choose a \
             quiet time, then replace the old certificate with the attached {NEW_CER} in the \
             system user's certificates for {} ({}).",
            env.danish(),
            env.as_str()
        ));
    }
    steps.push("Save with \"Gem tekniske oplysninger\" (save technical details).".to_owned());
    steps.push(format!(
        "Choose \"{provision}\". Nothing reaches the STS before this: every change to the \
         system user must be provisioned, and the page shows when {} was last provisioned.",
        env.danish()
    ));
    let access = format!(
        "choose \"Anmod om web service adgang\" (request web service access) in the menu on \
         the left, click the web service {}, tick the privileges {}, and choose \"Send \
         anmodning\" (send request). When the service owner has granted them, choose \
         \"{provision}\" again.",
        settings.web_service,
        settings.privileges.join(", ")
    );
    if why == Why::First {
        steps.push(format!("If the system user is new: {access}"));
    } else {
        steps.push(format!(
            "Only if the system user has no access to {} yet (it is new, or was made \
             again): {access}",
            settings.web_service
        ));
    }
    steps.push(format!(
        "That is all. certvakt asks the NemLog-in STS for a token with the new certificate \
         every {} seconds; when the STS issues one, certvakt {} and closes this task by \
         itself.",
        settings.poll_seconds,
        if why == Why::RefusedAfterInstall {
            "goes on"
        } else {
            "installs the certificate"
        }
    ));

    let opening = match why {
        Why::Renewal | Why::First => format!(
            "certvakt has the new certificate for {id}. NemLog-in Administration has no API, \
             so a person attaches it to the system user {entity} ({}):\n\n",
            env.as_str()
        ),
        Why::RefusedAfterInstall => format!(
            "certvakt has installed the new certificate for {id}, but the NemLog-in STS \
             refuses it (wst:FailedAuthentication): the system user {entity} ({}) does not \
             hold it, or the change was not provisioned. Attach it again:\n\n",
            env.as_str()
        ),
    };
    let mut instructions = opening;
    for (n, step) in steps.iter().enumerate() {
        instructions.push_str(&format!("{}. {step}\n", n + 1));
    }
    instructions.push_str(&format!(
        "\nThe new certificate: {}, serial {}, valid until {}, SHA-1 thumbprint {thumbprint}. \
         {NEW_CER} is the certificate in DER form, as NemLog-in takes it; {NEW_PEM} is the \
         same certificate as text, should the portal ask for that instead.\n\
         While the STS answers wst:FailedAuthentication, the certificate is not attached or \
         not provisioned yet: check both.\n",
        new.subject,
        new.serial,
        certvakt_soap::xs_datetime(new.not_after)
    ));
    TaskSpec {
        title: match why {
            Why::RefusedAfterInstall => {
                format!(
                    "Attach {id}'s installed certificate to NemLog-in system user {entity} again"
                )
            }
            _ => format!(
                "Attach {id}'s new certificate to NemLog-in system user {entity} and provision"
            ),
        },
        instructions,
        files: vec![
            TaskFile {
                name: NEW_CER.into(),
                content: TaskFileContent::CertificateDer,
            },
            TaskFile {
                name: NEW_PEM.into(),
                content: TaskFileContent::CertificatePem,
            },
        ],
        completes_by: Completion::Poll,
    }
}

/// The task that removes the replaced certificate from the system user after the overlap.
pub fn detach(id: &str, settings: &Settings, old: &CertificateInfo, old_der: &[u8]) -> TaskSpec {
    let env = settings.environment;
    let entity = &settings.entity_id;
    let provision = env.provision_link();
    let thumbprint = oces3::sha1_hex_upper(old_der);
    let steps = [
        format!(
            "Sign in to NemLog-in Administration ({PORTAL}) as the organisation's \
             \"Administrator for systembrugere\", with your own employee login."
        ),
        format!(
            "Open the system user with the EntityID {entity} from the list of system users \
             (\"Stamdata\")."
        ),
        format!(
            "Remove the old certificate from its certificates for {}: serial {}, valid until \
             {}, SHA-1 thumbprint {thumbprint} (attached as {OLD_CER}). Keep the new \
             certificate: the service uses it now.",
            env.danish(),
            old.serial,
            certvakt_soap::xs_datetime(old.not_after)
        ),
        "Save with \"Gem tekniske oplysninger\".".to_owned(),
        format!("Choose \"{provision}\": the removal reaches the STS only then."),
        format!(
            "That is all. certvakt asks the STS for a token with the old certificate every {} \
             seconds; when the STS refuses it, certvakt closes this task and the renewal is \
             complete.",
            settings.poll_seconds
        ),
    ];
    let mut instructions = format!(
        "The new certificate for {id} has been in use through the overlap. Remove the old \
         one from the NemLog-in system user {entity} ({}), so a copy of its key cannot be \
         used:\n\n",
        env.as_str()
    );
    for (n, step) in steps.iter().enumerate() {
        instructions.push_str(&format!("{}. {step}\n", n + 1));
    }
    TaskSpec {
        title: format!("Remove {id}'s old certificate from NemLog-in system user {entity}"),
        instructions,
        files: vec![TaskFile {
            name: OLD_CER.into(),
            content: TaskFileContent::PreviousCertificateDer,
        }],
        completes_by: Completion::Poll,
    }
}
