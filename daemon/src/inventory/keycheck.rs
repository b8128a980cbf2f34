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
    let key = match rcgen::KeyPair::try_from(der.as_slice()) {
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
}
