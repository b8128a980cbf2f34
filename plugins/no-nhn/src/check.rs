//! The import check (`check_issued`): does the new set fit what AR, the receivers and the
//! organisation need, beyond the daemon's own checks (key matches, chain to `issuer_trust`)?
//!
//! Contract, one sentence per objection, every objection at once:
//! - The set has the CA's roles (Buypass: authentication, signing; Commfides: authentication,
//!   encryption, signing).
//! - Every certificate is a SEID 2 enterprise certificate: `organizationIdentifier` present. A
//!   SEID 1 certificate (the number in `serialNumber`) is refused with the reason (SEID 1 is no
//!   longer issued); a personal certificate (a person's subject, with `serialNumber`) is
//!   refused as not an enterprise certificate.
//! - The organisation number (`NTRNO-<9 digits>`) is the configured one, and the one of the set
//!   being replaced.
//! - Each role has its key usage: authentication digitalSignature (for Buypass also
//!   keyEncipherment, as it is the encryption certificate too); encryption keyEncipherment or
//!   dataEncipherment (keyAgreement for an EC key); signing nonRepudiation.
//! - RSA keys have at least `minimum_rsa_bits`; EC keys (P-256, P-384) only from Commfides.
//! - Validity: not expired, and not starting more than a day from now.

use std::collections::BTreeMap;

use certvakt_plugin_api::{CertificateInfo, CheckIssued};

use crate::cert::{Cert, Key};
use crate::settings::{Ca, Settings};

/// A day: how far ahead a certificate's validity may start (clock skew, a CA that dates ahead).
const START_AHEAD_SECS: i64 = 86_400;

/// Every objection to `check`'s new set; empty when it fits.
pub fn objections(settings: &Settings, check: &CheckIssued, now: i64) -> Vec<String> {
    let mut out = Vec::new();
    let ca = settings.ca;
    let new = roles_of(&check.new, &check.new_set);
    let configured: Vec<&str> = if check.certificate.roles.is_empty() {
        new.keys().copied().collect()
    } else {
        check.certificate.roles.iter().map(String::as_str).collect()
    };
    let expected = ca.roles();
    let mut sorted_configured = configured.clone();
    sorted_configured.sort_unstable();
    let mut sorted_expected = expected.to_vec();
    sorted_expected.sort_unstable();
    if sorted_configured != sorted_expected {
        out.push(format!(
            "A {} virksomhetssertifikat set has the roles {}, but this certificate's set has {}: \
             configure the set's roles as {} (the [certificate.set.*] tables)",
            ca.name(),
            expected.join(", "),
            if configured.is_empty() {
                "none".to_owned()
            } else {
                configured.join(", ")
            },
            expected.join(", ")
        ));
    }
    let replaced: Vec<(String, Cert)> = roles_of_current(check)
        .into_iter()
        .filter_map(|(role, info)| {
            Cert::read(&info.pem, role)
                .ok()
                .map(|c| (role.to_owned(), c))
        })
        .collect();
    for (role, info) in &new {
        let what = format!("the new {role} certificate (serial {})", info.serial);
        let cert = match Cert::read(&info.pem, &what) {
            Ok(cert) => cert,
            Err(e) => {
                out.push(format!("{e}."));
                continue;
            }
        };
        profile(&mut out, settings, &what, &cert, &replaced);
        usage(&mut out, ca, role, &what, &cert);
        key(&mut out, settings, &what, &cert);
        if cert.not_after <= now {
            out.push(format!(
                "{what} expired on {}: import the set the CA issued just now",
                certvakt_soap::xs_datetime(cert.not_after)
            ));
        }
        if cert.not_before > now + START_AHEAD_SECS {
            out.push(format!(
                "{what} is not valid until {}, more than a day from now: receivers would refuse \
                 it (MUG-000011); import it closer to that time, or check the server's clock",
                certvakt_soap::xs_datetime(cert.not_before)
            ));
        }
    }
    out
}

/// The new set by role: the primary (`authentication`) and the others.
fn roles_of<'a>(
    primary: &'a CertificateInfo,
    others: &'a BTreeMap<String, CertificateInfo>,
) -> BTreeMap<&'a str, &'a CertificateInfo> {
    let mut set: BTreeMap<&str, &CertificateInfo> =
        others.iter().map(|(r, c)| (r.as_str(), c)).collect();
    set.insert("authentication", primary);
    set
}

fn roles_of_current(check: &CheckIssued) -> BTreeMap<&str, &CertificateInfo> {
    let mut set: BTreeMap<&str, &CertificateInfo> = check
        .certificate
        .current_set
        .iter()
        .map(|(r, c)| (r.as_str(), c))
        .collect();
    if let Some(current) = &check.certificate.current {
        set.insert("authentication", current);
    }
    set
}

/// SEID 2 enterprise profile and the organisation number.
fn profile(
    out: &mut Vec<String>,
    settings: &Settings,
    what: &str,
    cert: &Cert,
    replaced: &[(String, Cert)],
) {
    if let Some(number) = cert.seid1_number() {
        out.push(format!(
            "{what} is a SEID 1 certificate (organisation number {number} in serialNumber, no \
             organizationIdentifier). SEID 1 certificates are no longer issued (the last expired \
             on 31 May 2025) and receivers expect SEID 2: order a SEID 2.0 virksomhetssertifikat"
        ));
        return;
    }
    if cert.serial_number_attribute.is_some() || cert.person_names {
        out.push(format!(
            "{what} has a person's subject (with serialNumber{}): it is a personal certificate, \
             not an enterprise certificate (virksomhetssertifikat). Import the organisation's \
             SEID 2.0 virksomhetssertifikat",
            if cert.person_names {
                ", given name or surname"
            } else {
                ""
            }
        ));
        return;
    }
    let Some(number) = cert.organization_number() else {
        out.push(format!(
            "{what} is not a SEID 2 enterprise certificate: its subject has no \
             organizationIdentifier NTRNO-<organisation number>{}",
            cert.organization_identifier
                .as_deref()
                .map(|v| format!(" (it has \"{v}\")"))
                .unwrap_or_default()
        ));
        return;
    };
    if number != settings.organization_number {
        out.push(format!(
            "{what} is for organisation number {number}, but the settings say \
             organization_number = \"{}\": import the set of organisation {}, or correct \
             organization_number",
            settings.organization_number, settings.organization_number
        ));
    }
    for (role, old) in replaced {
        if let Some(old_number) = old.organization_number() {
            if old_number != number {
                out.push(format!(
                    "{what} is for organisation number {number}, but the {role} certificate it \
                     replaces is for {old_number}: a renewal keeps the organisation number"
                ));
            }
        }
    }
}

fn usage(out: &mut Vec<String>, ca: Ca, role: &str, what: &str, cert: &Cert) {
    let Some(u) = cert.usage else {
        out.push(format!("{what} has no key usage extension"));
        return;
    };
    let ec = matches!(cert.key, Key::Ec { .. });
    let (fits, needs) = match (role, ca) {
        ("authentication", Ca::Buypass) => (
            u.digital_signature && u.key_encipherment,
            "digitalSignature and keyEncipherment (a Buypass authentication certificate is \
             also the encryption certificate)",
        ),
        ("authentication", Ca::Commfides) => (u.digital_signature, "digitalSignature"),
        ("encryption", _) if ec => (
            u.key_agreement || u.key_encipherment || u.data_encipherment,
            "keyAgreement (an EC key), keyEncipherment or dataEncipherment",
        ),
        ("encryption", _) => (
            u.key_encipherment || u.data_encipherment,
            "keyEncipherment or dataEncipherment",
        ),
        ("signing", _) => (u.non_repudiation, "nonRepudiation"),
        _ => return,
    };
    if !fits {
        out.push(format!(
            "{what} lacks the key usage its role needs: {needs}. Receivers pick the set's \
             certificates by key usage; check that each file was imported under its role"
        ));
    }
}

fn key(out: &mut Vec<String>, settings: &Settings, what: &str, cert: &Cert) {
    match cert.key {
        Key::Rsa { bits } if (bits as u64) < settings.minimum_rsa_bits => out.push(format!(
            "{what} has an RSA key of {bits} bits; at least {} are required \
             (minimum_rsa_bits)",
            settings.minimum_rsa_bits
        )),
        Key::Rsa { .. } => {}
        Key::Ec { bits } if settings.ca == Ca::Commfides && (bits == 256 || bits == 384) => {}
        Key::Ec { bits } => out.push(format!(
            "{what} has an EC key of {bits} bits; {} sets take RSA of at least {} bits{}",
            settings.ca.name(),
            settings.minimum_rsa_bits,
            if settings.ca == Ca::Commfides {
                " or EC P-256 / P-384"
            } else {
                ""
            }
        )),
        Key::Other => out.push(format!("{what} has a key that is neither RSA nor EC")),
    }
}
