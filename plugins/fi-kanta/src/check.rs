//! The import check (`check_issued`): does the certificate DVV e-mailed fit what was applied
//! for?
//!
//! Contract:
//! - [`objections`] returns one sentence per problem, empty when the certificate fits:
//!   - the validity the type allows (brief §1): a server certificate at most one year, a
//!     system-signature certificate at most two, each year counted as 366 days (a leap day)
//!     and a day of slack on top ([`max_validity_secs`]);
//!   - the names: `C=FI`, `O` = `organization`, `OU` = `organizational_unit`, `CN` = `fqdn`,
//!     every configured DNS name and IP address in the SAN, no e-mail address anywhere;
//!   - the SOTE OID as the subject's `serialNumber`, when `sote_oid` is configured;
//!   - an RSA key of 2048 or 4096 bits.
//! - The serial is read as an arbitrary-length integer and never judged.
//! - That the key is the one certvakt made, and that the chain leads to DVV's roots, are the
//!   daemon's checks (`issuer_trust`), made before this one.

use certvakt_plugin_api::profile::oid;

use crate::cert::Cert;
use crate::settings::Settings;

const DAY: i64 = 86_400;

/// The longest validity accepted for the settings' type, in seconds.
pub fn max_validity_secs(settings: &Settings) -> i64 {
    settings.certificate_type.max_years() * 366 * DAY + DAY
}

/// Every objection to `cert` (the new certificate).
pub fn objections(settings: &Settings, cert: &Cert) -> Vec<String> {
    let mut out = Vec::new();
    let kind = settings.certificate_type.form_name();

    let lifetime = cert.not_after - cert.not_before;
    if lifetime > max_validity_secs(settings) {
        out.push(format!(
            "the certificate is valid for {} days, but a {kind} is valid for at most {} \
             year(s): this is not the type applied for (certificate_type = \"{}\"), or DVV \
             made a mistake; ask DVV, or correct certificate_type",
            lifetime / DAY,
            settings.certificate_type.max_years(),
            settings.certificate_type.as_str()
        ));
    }

    let mut expect =
        |what: &str, oid: &str, wanted: &str, setting: &str, same: fn(&str, &str) -> bool| {
            let found = cert.attribute(oid);
            if !found.iter().any(|v| same(v, wanted)) {
                out.push(format!(
                "the subject's {what} is {}, but the application said \"{wanted}\" ({setting}): \
                 import the certificate issued for this application, or correct {setting}",
                if found.is_empty() {
                    "missing".to_owned()
                } else {
                    found
                        .iter()
                        .map(|v| format!("\"{v}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
            }
        };
    let exact = |a: &str, b: &str| a.trim() == b.trim();
    let host = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    expect("country (C)", oid::COUNTRY, "FI", "always FI", exact);
    expect(
        "organisation (O)",
        oid::ORGANIZATION,
        &settings.organization,
        "organization",
        exact,
    );
    expect(
        "organisational unit (OU)",
        oid::ORGANIZATIONAL_UNIT,
        &settings.organizational_unit,
        "organizational_unit",
        exact,
    );
    expect(
        "common name (CN)",
        oid::COMMON_NAME,
        &settings.fqdn,
        "fqdn",
        host,
    );
    if let Some(sote_oid) = &settings.sote_oid {
        expect(
            "serialNumber (the SOTE organisation OID)",
            oid::SERIAL_NUMBER,
            sote_oid,
            "sote_oid",
            exact,
        );
    }

    let missing: Vec<String> = settings
        .dns_names()
        .into_iter()
        .filter(|name| !cert.dns_names.iter().any(|d| d.eq_ignore_ascii_case(name)))
        .chain(
            settings
                .ip_addresses()
                .into_iter()
                .filter(|ip| !cert.ip_addresses.contains(ip))
                .map(|ip| ip.to_string()),
        )
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "the certificate's subject alternative names lack {} (fqdn / alt_names): import \
             the certificate issued for this application, or correct the settings",
            missing.join(", ")
        ));
    }

    let emails: Vec<&str> = cert
        .email_addresses
        .iter()
        .map(String::as_str)
        .chain(cert.subject_emails())
        .collect();
    if !emails.is_empty() {
        out.push(format!(
            "the certificate contains the e-mail address(es) {}: DVV no longer issues server \
             certificates with e-mail addresses, so this is not the certificate applied for",
            emails.join(", ")
        ));
    }

    match (cert.key.0.as_str(), cert.key.1) {
        ("RSA", 2048 | 4096) => {}
        (algorithm, bits) => out.push(format!(
            "the certificate's key is {algorithm} {bits}: DVV issues sote certificates for RSA \
             keys of 2048 or 4096 bits; apply again with a key certvakt made (key_type)"
        )),
    }
    out
}
