//! Does the configured private key belong to the certificate?
//!
//! Owns reading a private key file (PEM `PRIVATE KEY` / `RSA PRIVATE KEY` / `EC PRIVATE KEY`,
//! or DER of any of them), deriving its public half and comparing it with the certificate's
//! subjectPublicKey bits.
//!
//! Promises:
//! - Key material never leaves this module: verdicts are [`KeyVerdict`] values and fixed
//!   sentences; library error texts (which could quote input) are not passed on.
//! - The file bytes and the decoded DER are zeroed when dropped. (rcgen/aws-lc hold their own
//!   copy while the key is parsed; aws-lc clears it when freeing.)
//! - Encrypted keys (`ENCRYPTED PRIVATE KEY`, `Proc-Type: 4,ENCRYPTED`) are reported as such:
//!   the service that uses the key needs it unencrypted too, so certvakt does not ask for a
//!   passphrase.

use x509_parser::pem::Pem;
use zeroize::Zeroizing;

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
    let der = match key_der(key_bytes) {
        Ok(der) => der,
        Err(why) => return KeyVerdict::Unreadable(why),
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

/// The DER of the first private key in `bytes` (PEM or DER).
fn key_der(bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if !is_pem {
        if bytes.first() == Some(&0x30) {
            return Ok(Zeroizing::new(bytes.to_vec()));
        }
        return Err("holds no private key (expected PEM PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY, or DER)".into());
    }
    if bytes.windows(22).any(|w| w == b"Proc-Type: 4,ENCRYPTED") {
        return Err(encrypted());
    }
    let mut labels = Vec::new();
    for block in Pem::iter_from_buffer(bytes) {
        let Ok(pem) = block else {
            return Err("is damaged (a PEM block is cut off or not valid base64)".into());
        };
        let contents = Zeroizing::new(pem.contents);
        match pem.label.as_str() {
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => return Ok(contents),
            "ENCRYPTED PRIVATE KEY" => return Err(encrypted()),
            other => labels.push(other.to_string()),
        }
    }
    if labels.is_empty() {
        Err("holds no private key".into())
    } else {
        Err(format!("holds no private key (only {})", labels.join(", ")))
    }
}

fn encrypted() -> String {
    "is encrypted; the service using it needs it unencrypted too, so give certvakt that file".into()
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
