//! Does the configured private key belong to the certificate?
//!
//! Owns deriving a private key's public half and comparing it with the certificate's
//! subjectPublicKey bits. Reading the key file (PEM `PRIVATE KEY` / `RSA PRIVATE KEY` /
//! `EC PRIVATE KEY`, or DER of any of them) is [`crate::keys`]' reader, shared so both say the
//! same about a key file; this check accepts more kinds of key than `keys` uses (P-521,
//! Ed25519, any RSA size), since it only watches.
//!
//! Promises:
//! - Key material never leaves this module: verdicts are [`KeyVerdict`] values and fixed
//!   sentences; library error texts (which could quote input) are not passed on.
//! - The file bytes and the decoded DER are zeroed when dropped. (rcgen/aws-lc hold their own
//!   copy while the key is parsed; aws-lc clears it when freeing.)
//! - Encrypted keys (`ENCRYPTED PRIVATE KEY`, `Proc-Type: 4,ENCRYPTED`, encrypted PKCS#8 DER)
//!   are reported as such: the service that uses the key needs it unencrypted too, so certvakt
//!   does not ask for a passphrase.

use crate::keys::private_key_der;

/// The outcome of a key check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// The key's public half equals the certificate's.
    Matches,
    /// A valid key, but another one.
    Mismatch,
    /// The key could not be read or parsed: the tail of a sentence that starts with the key
    /// file's path (`"is encrypted; …"`).
    Unreadable(String),
}

/// Compares the private key in `key_bytes` with `cert_public_key` (the certificate's raw
/// subjectPublicKey bits). `key_bytes` is zeroed by the caller's `Zeroizing` buffer.
pub fn check_key(key_bytes: &[u8], cert_public_key: &[u8]) -> KeyVerdict {
    let der = match private_key_der(key_bytes) {
        Ok(der) => der,
        Err(problem) => return KeyVerdict::Unreadable(problem.to_string()),
    };
    let key = match likely_ec_key(der.as_slice(), cert_public_key)
        .map_or_else(|| rcgen::KeyPair::try_from(der.as_slice()), Ok)
    {
        Ok(key) => key,
        Err(_) => {
            return KeyVerdict::Unreadable(
                "is not a private key certvakt can read (RSA, EC P-256/P-384/P-521 or Ed25519, unencrypted)".into(),
            );
        }
    };
    if key.public_key_raw() == cert_public_key {
        KeyVerdict::Matches
    } else {
        KeyVerdict::Mismatch
    }
}

/// The key read as the EC curve the certificate's public key has, when that is P-256 or
/// P-384 (an uncompressed point of 65 or 97 bytes) and the key is PKCS#8. Reading a key
/// without naming its kind tries each kind in turn, and each try of aws-lc computes the
/// public point again: three scalar multiplications for a P-256 key where one will do.
/// `None` (not such a key, or not of that curve) leaves it to the general reading; a key
/// read here is still compared with the certificate's public key in full.
fn likely_ec_key(der: &[u8], cert_public_key: &[u8]) -> Option<rcgen::KeyPair> {
    let alg = match (cert_public_key.len(), cert_public_key.first()) {
        (65, Some(4)) => &rcgen::PKCS_ECDSA_P256_SHA256,
        (97, Some(4)) => &rcgen::PKCS_ECDSA_P384_SHA384,
        _ => return None,
    };
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(der);
    rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, alg).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_key() {
        for bytes in [
            &b"hello"[..],
            b"",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(check_key(bytes, b"x"), KeyVerdict::Unreadable(_)),
                "{bytes:?}"
            );
        }
        let KeyVerdict::Unreadable(why) = check_key(b"\x30\x03\x02\x01\x00", b"x") else {
            panic!("a three-byte sequence is no key");
        };
        assert!(why.starts_with("is not a private key"), "{why}");
    }

    #[test]
    fn encrypted_keys_are_named() {
        let pkcs8 =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        for bytes in [&pkcs8[..], &legacy[..]] {
            let KeyVerdict::Unreadable(why) = check_key(bytes, b"x") else {
                panic!("encrypted");
            };
            assert!(why.starts_with("is encrypted"), "{why}");
        }
    }

    #[test]
    fn ec_keys_read_by_their_curve_still_match_only_their_own_certificate() {
        use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
        let p256 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let other_p256 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let p384 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let ed = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let pem = |k: &KeyPair| k.serialize_pem().into_bytes();
        assert_eq!(
            check_key(&pem(&p256), p256.public_key_raw()),
            KeyVerdict::Matches
        );
        assert_eq!(
            check_key(&pem(&p384), p384.public_key_raw()),
            KeyVerdict::Matches
        );
        assert_eq!(
            check_key(&pem(&ed), ed.public_key_raw()),
            KeyVerdict::Matches
        );
        // Same curve, another key; another curve or kind than the certificate's.
        assert_eq!(
            check_key(&pem(&other_p256), p256.public_key_raw()),
            KeyVerdict::Mismatch
        );
        assert_eq!(
            check_key(&pem(&p384), p256.public_key_raw()),
            KeyVerdict::Mismatch
        );
        assert_eq!(
            check_key(&pem(&ed), p256.public_key_raw()),
            KeyVerdict::Mismatch
        );
        assert_eq!(
            check_key(&pem(&p256), p384.public_key_raw()),
            KeyVerdict::Mismatch
        );
    }
}
