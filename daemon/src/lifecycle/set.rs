//! Certificate sets: which of the certificates a CA delivered is which role of the set.
//!
//! Contract:
//! - A set is configured as roles ([`crate::config::ManagedCertificate::roles`]): the
//!   primary `authentication` (the `[[certificate]]`'s own files), and `encryption` and
//!   `signing` from `[certificate.set.<role>]`.
//! - The CA delivers one certificate per role, in files whose order and names say nothing
//!   (Buypass: two PKCS#12 files; Commfides: three). Each certificate goes to the role its
//!   key usage allows: `authentication` needs digitalSignature, `encryption` keyEncipherment
//!   or dataEncipherment, `signing` nonRepudiation. A certificate without a key usage
//!   extension fits every role.
//! - The assignment must be the only one that fits: too few or too many certificates, none
//!   that fits, or more than one way to fit is refused with a sentence naming each
//!   certificate's serial and usages. Nothing is guessed.

use crate::config::PRIMARY_ROLE;

use super::EngineError;

/// The key usages that decide a certificate's role (RFC 5280 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usages {
    /// `None`: the certificate has no key usage extension (every usage allowed).
    pub bits: Option<UsageBits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageBits {
    pub digital_signature: bool,
    pub non_repudiation: bool,
    pub key_encipherment: bool,
    pub data_encipherment: bool,
}

impl Usages {
    /// The key usage extension of a DER certificate; a certificate that does not parse has
    /// none (the checks that follow refuse it with the reason).
    pub fn of(der: &[u8]) -> Usages {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Usages::default();
        };
        let Ok(Some(usage)) = cert.key_usage() else {
            return Usages::default();
        };
        let ku = usage.value;
        Usages {
            bits: Some(UsageBits {
                digital_signature: ku.digital_signature(),
                non_repudiation: ku.non_repudiation(),
                key_encipherment: ku.key_encipherment(),
                data_encipherment: ku.data_encipherment(),
            }),
        }
    }

    /// Whether the certificate may serve `role`.
    pub fn fits(&self, role: &str) -> bool {
        let Some(b) = self.bits else {
            return true;
        };
        match role {
            PRIMARY_ROLE => b.digital_signature,
            "encryption" => b.key_encipherment || b.data_encipherment,
            "signing" => b.non_repudiation,
            _ => false,
        }
    }

    /// For messages: `digitalSignature, keyEncipherment`, or `no key usage extension`.
    pub fn describe(&self) -> String {
        let Some(b) = self.bits else {
            return "no key usage extension".into();
        };
        let names: Vec<&str> = [
            (b.digital_signature, "digitalSignature"),
            (b.non_repudiation, "nonRepudiation"),
            (b.key_encipherment, "keyEncipherment"),
            (b.data_encipherment, "dataEncipherment"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            "none of digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment".into()
        } else {
            names.join(", ")
        }
    }
}

/// What is known of one delivered certificate when assigning roles.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Its serial, for messages.
    pub serial: String,
    pub usages: Usages,
}

/// For each role of `roles`, in order, the index into `delivered` of its certificate.
pub fn assign(
    id: &str,
    roles: &[String],
    delivered: &[Delivered],
) -> Result<Vec<usize>, EngineError> {
    let listing = || {
        delivered
            .iter()
            .map(|d| format!("{} ({})", d.serial, d.usages.describe()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if delivered.len() != roles.len() {
        return Err(EngineError::Import(format!(
            "{id} is a set of {} certificates ({}), but {} came: {}; import every file of the set at once (`certvakt import {id} FILE1 FILE2 … --password-file FILE`)",
            roles.len(),
            roles.join(", "),
            delivered.len(),
            listing()
        )));
    }
    let mut fitting = Vec::new();
    permutations(delivered.len(), &mut |order: &[usize]| {
        if roles
            .iter()
            .zip(order)
            .all(|(role, &i)| delivered[i].usages.fits(role))
        {
            fitting.push(order.to_vec());
        }
    });
    match fitting.len() {
        1 => Ok(fitting.remove(0)),
        0 => Err(EngineError::Import(format!(
            "the certificates do not make up the set {id} needs ({}): {}",
            roles
                .iter()
                .map(|role| format!("{role} needs {}", needs(role)))
                .collect::<Vec<_>>()
                .join(", "),
            listing()
        ))),
        _ => Err(EngineError::Import(format!(
            "the certificates fit the roles of {id} ({}) in more than one way, so none is guessed: {}",
            roles.join(", "),
            listing()
        ))),
    }
}

/// What a role's certificate must allow, for messages.
fn needs(role: &str) -> &'static str {
    match role {
        PRIMARY_ROLE => "digitalSignature",
        "encryption" => "keyEncipherment or dataEncipherment",
        "signing" => "nonRepudiation",
        _ => "a role certvakt knows",
    }
}

/// Calls `visit` with every ordering of `0..n` (n is 1 to 3 in practice).
fn permutations(n: usize, visit: &mut dyn FnMut(&[usize])) {
    fn go(prefix: &mut Vec<usize>, n: usize, visit: &mut dyn FnMut(&[usize])) {
        if prefix.len() == n {
            visit(prefix);
            return;
        }
        for i in 0..n {
            if !prefix.contains(&i) {
                prefix.push(i);
                go(prefix, n, visit);
                prefix.pop();
            }
        }
    }
    go(&mut Vec::with_capacity(n), n, visit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(serial: &str, ds: bool, nr: bool, ke: bool, de: bool) -> Delivered {
        Delivered {
            serial: serial.into(),
            usages: Usages {
                bits: Some(UsageBits {
                    digital_signature: ds,
                    non_repudiation: nr,
                    key_encipherment: ke,
                    data_encipherment: de,
                }),
            },
        }
    }

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_buypass_pair_is_assigned_whatever_the_file_order() {
        let r = roles(&["authentication", "signing"]);
        let sign = cert("01:02", false, true, false, false);
        let auth = cert("01:01", true, false, true, false);
        assert_eq!(
            assign("nhn", &r, &[sign.clone(), auth.clone()]).unwrap(),
            vec![1, 0]
        );
        assert_eq!(assign("nhn", &r, &[auth, sign]).unwrap(), vec![0, 1]);
    }

    #[test]
    fn a_commfides_triple_is_assigned_by_usage() {
        let r = roles(&["authentication", "encryption", "signing"]);
        let d = [
            cert("e", false, false, true, true),
            cert("s", false, true, false, false),
            cert("a", true, false, false, false),
        ];
        assert_eq!(assign("nhn", &r, &d).unwrap(), vec![2, 0, 1]);
    }

    #[test]
    fn a_missing_role_or_a_wrong_count_is_refused_naming_the_certificates() {
        let r = roles(&["authentication", "signing"]);
        let two_auth = [
            cert("01:aa", true, false, true, false),
            cert("01:bb", true, false, true, false),
        ];
        let e = assign("nhn", &r, &two_auth).unwrap_err().to_string();
        assert!(
            e.contains("01:aa") && e.contains("signing needs nonRepudiation"),
            "{e}"
        );
        let e = assign("nhn", &r, &two_auth[..1]).unwrap_err().to_string();
        assert!(
            e.contains("set of 2 certificates") && e.contains("but 1 came"),
            "{e}"
        );
    }

    #[test]
    fn an_ambiguous_set_is_refused_not_guessed() {
        let r = roles(&["authentication", "signing"]);
        let both = [
            cert("x", true, true, false, false),
            cert("y", true, true, false, false),
        ];
        let e = assign("nhn", &r, &both).unwrap_err().to_string();
        assert!(e.contains("more than one way"), "{e}");
    }
}
