//! The access request (Anslutningsförfrågan) exactly as eFrikort's page asks for it.
//!
//! Contract:
//! - One mail per region: to the region's contact addresses, a copy to CGI's support
//!   (`support_address`, by default `support.efrikort@cgi.com`), Reply-To the contact person.
//! - Subject `Anslutningsförfrågan eFrikort`; the body is the page's template with its Swedish
//!   labels, filled in: system name, contact person (name, e-mail, telephone), environment
//!   (`TEST` or `PRODUKTION`), the region (vårdhuvudman) and the HSA-ID of the certificate
//!   ("Serialnumber på certifikat" — the subject's serialNumber, not the X.509 serial number),
//!   then the care providers (vårdgivare) that use the system, one a line.
//! - Plain UTF-8 text with å, ä and ö as they are (the host encodes the mail).

use certvakt_plugin_api::Mail;

use crate::settings::{Environment, Region, Settings};

/// The subject eFrikort asks for.
pub const SUBJECT: &str = "Anslutningsförfrågan eFrikort";

/// The access request for `hsa_id` in `environment` to `region`.
pub fn access_request(
    settings: &Settings,
    hsa_id: &str,
    environment: Environment,
    region: &Region,
) -> Mail {
    let mut body = format!(
        "Hej!\n\
         \n\
         Vi vill ha access till eFrikort för integration av följande system. Innan CGI tilldelar \
         behörighet måste CGI få ett skriftligt godkännande av regionen att anslutningen är ok.\n\
         \n\
         Namn på integrerande system: {system}\n\
         Kontaktperson: {name}, {email}, {phone}\n\
         Avser miljö för: {environment}\n\
         Avser vårdhuvudman (region/landsting): {region}\n\
         Serialnumber på certifikat: {hsa_id}\n",
        system = settings.system_name,
        name = settings.contact_name,
        email = settings.contact_email,
        phone = settings.contact_phone,
        environment = environment.label(),
        region = region.name,
    );
    if !settings.care_providers.is_empty() {
        body.push('\n');
        for provider in &settings.care_providers {
            body.push_str(provider);
            body.push('\n');
        }
    }
    Mail {
        to: region.contact_addresses.clone(),
        cc: vec![settings.support_address.clone()],
        reply_to: Some(settings.contact_email.clone()),
        subject: SUBJECT.to_owned(),
        body,
        attachments: Vec::new(),
    }
}
