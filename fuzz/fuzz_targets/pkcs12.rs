//! A PKCS#12 bundle with its password (the password on the first line): `certvakt import`,
//! the inbox, and a watched `.p12`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (password, bytes) = certvakt_fuzz::first_line(data, 64);
    if let Ok(contents) = certvakt::keys::read_pkcs12(bytes, &password) {
        assert!(
            !contents.leaf_der.is_empty(),
            "an opened bundle has its certificate"
        );
    }
    let _ = certvakt::inventory::parse_certificates(bytes, Some(&password));
});
