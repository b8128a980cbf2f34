//! A private key file (PKCS#8, PKCS#1, SEC1; PEM or DER): a managed certificate's `key`.
#![no_main]

use certvakt::keys::PrivateKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = PrivateKey::from_bytes(data) {
        // What a renewal writes reads back as the same key.
        let again = PrivateKey::from_pem(&key.to_pkcs8_pem()).expect("a written key reads again");
        assert_eq!(again.algorithm(), key.algorithm());
        assert_eq!(again.public_key_raw(), key.public_key_raw());
    }
    let _ = certvakt::inventory::check_key(data, b"");
});
