//! The import check (`check_issued`): does the new SITHS function certificate fit what
//! eFrikort needs, beyond the daemon's own checks (the key matches the pending key always; the
//! chain to the SITHS trust set with `issuer_trust`)?
//!
//! Contract, one sentence per objection, every objection at once:
//! - The HSA-ID (subject `serialNumber`, a PrintableString) is the configured `hsa_id`, which
//!   is the HSA-ID of the certificate it replaces unless the operator changed `hsa_id` on
//!   purpose (then register asks eFrikort for access for the new one).
//! - CN is the configured `fqdn`, and the SAN dNSNames include it.
//! - The extended key usage includes clientAuth: eFrikort is called over mutual TLS.
//! - Validity: not expired, and not starting more than a day from now.

use certvakt_plugin_api::CheckIssued;

use crate::cert::Cert;
use crate::settings::Settings;

/// A day: how far ahead a certificate's validity may start (clock skew, a CA that dates ahead).
const START_AHEAD_SECS: i64 = 86_400;

/// Every objection to `check`'s new certificate; empty when it fits.
pub fn objections(settings: &Settings, check: &CheckIssued, now: i64) -> Vec<String> {
    let what = format!("the new certificate (serial {})", check.new.serial);
    let cert = match Cert::read(&check.new.pem, &what) {
        Ok(cert) => cert,
        Err(e) => return vec![format!("{e}.")],
    };
    let replaced = check
        .certificate
        .current
        .as_ref()
        .and_then(|c| Cert::read(&c.pem, "the certificate in use").ok())
        .and_then(|c| c.hsa_id);
    let mut out = Vec::new();
    match &cert.hsa_id {
        None => out.push(format!(
            "{what} has no serialNumber in its subject, so it carries no HSA-ID: it is not a \
             SITHS function certificate. Order a function certificate (funktionscertifikat) \
             for HSA-ID {}",
            settings.hsa_id
        )),
        Some(hsa) if *hsa != settings.hsa_id => {
            let keeps = match &replaced {
                Some(old) if *old == settings.hsa_id => format!(
                    "; the certificate it replaces has {old} too, and a renewal keeps the HSA-ID \
                     (eFrikort grants access per HSA-ID). To move to a new HSA-ID on purpose, \
                     change hsa_id first: certvakt then asks eFrikort for access for it"
                ),
                _ => String::new(),
            };
            out.push(format!(
                "{what} is for HSA-ID {hsa}, but the settings say hsa_id = \"{}\"{keeps}",
                settings.hsa_id
            ));
        }
        Some(_) if !cert.hsa_id_printable => out.push(format!(
            "{what} carries the HSA-ID in serialNumber in another string type than \
             PrintableString, unlike SITHS function certificates: eFrikort may not read it. \
             Order it again through the SITHS eID portal"
        )),
        Some(_) => {}
    }
    if cert.common_name.as_deref() != Some(settings.fqdn.as_str()) {
        out.push(format!(
            "{what} has CN {}, but the CSR asked for CN = {} (fqdn): order it again with the \
             attached CSR, or correct fqdn",
            cert.common_name
                .as_deref()
                .map(|cn| format!("\"{cn}\""))
                .unwrap_or_else(|| "none".to_owned()),
            settings.fqdn
        ));
    }
    if !cert
        .dns_names
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&settings.fqdn))
    {
        out.push(format!(
            "{what} does not name {} among its subject alternative names (it has {}): the CSR \
             asked for it as a dNSName",
            settings.fqdn,
            if cert.dns_names.is_empty() {
                "none".to_owned()
            } else {
                cert.dns_names.join(", ")
            }
        ));
    }
    match cert.client_auth {
        Some(true) => {}
        Some(false) => out.push(format!(
            "{what} lacks the extended key usage clientAuth: eFrikort is called over mutual \
             TLS and would refuse it. Choose a function certificate for client authentication \
             in the SITHS eID portal"
        )),
        None => out.push(format!(
            "{what} has no extended key usage extension, so it does not say clientAuth: eFrikort \
             is called over mutual TLS. Choose a function certificate for client \
             authentication in the SITHS eID portal"
        )),
    }
    if cert.not_after <= now {
        out.push(format!(
            "{what} expired on {}: import the certificate SITHS issued just now",
            certvakt_soap::xs_datetime(cert.not_after)
        ));
    }
    if cert.not_before > now + START_AHEAD_SECS {
        out.push(format!(
            "{what} is not valid until {}, more than a day from now: import it closer to that \
             time, or check the server's clock",
            certvakt_soap::xs_datetime(cert.not_before)
        ));
    }
    out
}
