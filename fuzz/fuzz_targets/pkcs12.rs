//! A PKCS#12 bundle with its password (the password on the first line): `certvakt import`,
//! the inbox, and a watched `.p12`.
#![no_main]

use certvakt_fuzz::show;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (password, bytes) = certvakt_fuzz::first_line(data, 64);
    match certvakt::keys::read_pkcs12(bytes, &password) {
        Ok(contents) => {
            assert!(
                !contents.leaf_der.is_empty(),
                "an opened bundle has its certificate"
            );
            show(format_args!(
                "read_pkcs12: key {}, chain of {}",
                contents.key.is_some(),
                contents.chain_der.len()
            ));
        }
        Err(e) => show(format_args!("read_pkcs12: {e}")),
    }
    match certvakt::inventory::parse_certificates(bytes, Some(&password)) {
        Ok((format, certs)) => show(format_args!("inventory: {format}, {}", certs.len())),
        Err((kind, message)) => show(format_args!("inventory: {kind:?} {message}")),
    }
});
