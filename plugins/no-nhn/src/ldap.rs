//! The `E_DS` address: an LDAP URL naming the set's certificates in the CA's directory,
//! built exactly as Adresseregisteret stores it (brief no-nhn.md §3).
//!
//! Contract:
//! - [`url`] gives `ldap://<host>/<base>?usercertificate;binary?sub?(|(certificateSerialNumber=<s1>)(certificateSerialNumber=<s2>))`:
//!   spaces in the base as `%20`, nothing else escaped, and the filter's `|` **not** escaped
//!   (against RFC 4516, but what AR stores). Read-back compares strings exactly, so the form
//!   is fixed here and nowhere else.
//! - Serials are written as each CA's directory looks them up ([`SerialForm`]): decimal for
//!   Buypass, lowercase hexadecimal without leading zeros for Commfides.
//! - The encryption certificate's serial comes first, then the signing certificate's, as in
//!   AR's own records.

use x509_parser::num_bigint::BigUint;

use crate::settings::Ca;

/// How a CA's directory writes certificate serial numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialForm {
    Decimal,
    LowerHex,
}

impl SerialForm {
    pub fn of(ca: Ca) -> SerialForm {
        match ca {
            Ca::Buypass => SerialForm::Decimal,
            Ca::Commfides => SerialForm::LowerHex,
        }
    }

    /// `serial` (big-endian bytes, as in the certificate) in this form.
    pub fn write(self, serial: &[u8]) -> String {
        let n = BigUint::from_bytes_be(serial);
        match self {
            SerialForm::Decimal => n.to_str_radix(10),
            SerialForm::LowerHex => n.to_str_radix(16),
        }
    }
}

/// The LDAP URL AR stores for a set published at `host`/`base`, naming `serials` (big-endian
/// bytes, encryption certificate first).
pub fn url(host: &str, base: &str, form: SerialForm, serials: &[&[u8]]) -> String {
    let filter: String = serials
        .iter()
        .map(|s| format!("(certificateSerialNumber={})", form.write(s)))
        .collect();
    format!(
        "ldap://{host}/{}?usercertificate;binary?sub?(|{filter})",
        base.replace(' ', "%20")
    )
}

/// Splits an LDAP base URL as AR's `GetLdapSearchProviders` gives it (`ldap://host/base`)
/// into host and base (spaces restored), or `None` when it is not one.
pub fn split_base_url(base_url: &str) -> Option<(String, String)> {
    let rest = base_url.trim().strip_prefix("ldap://")?;
    let (host, base) = rest.split_once('/')?;
    let base = base
        .split('?')
        .next()
        .unwrap_or_default()
        .replace("%20", " ");
    if host.is_empty() || base.is_empty() {
        return None;
    }
    Some((host.to_owned(), base))
}

/// Whether `written` (a serial as AR lists it: decimal, hex, with or without colons and
/// leading zeros) is `serial`.
pub fn same_serial(written: &str, serial: &[u8]) -> bool {
    let written = written.trim();
    let wanted = BigUint::from_bytes_be(serial);
    let hex: String = written.chars().filter(|c| *c != ':' && *c != ' ').collect();
    let as_decimal = written
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| BigUint::parse_bytes(written.as_bytes(), 10))
        .flatten();
    let as_hex = BigUint::parse_bytes(hex.as_bytes(), 16);
    as_decimal.as_ref() == Some(&wanted) || as_hex.as_ref() == Some(&wanted)
}
