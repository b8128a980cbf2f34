//! A PKCS#12 bundle with its password (the password on the first line): `certvakt import`,
//! the inbox, and a watched `.p12`.
#![no_main]

use certvakt_fuzz::show;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (password, bytes) = certvakt_fuzz::first_line(data, 64);
    // The BER normaliser both readers call first: what it gives is DER, so it gives it back
    // unchanged and uncopied.
    if let Some(der) = certvakt::ber::to_der(bytes) {
        match certvakt::ber::to_der(&der) {
            Some(std::borrow::Cow::Borrowed(again)) => {
                assert_eq!(again, &*der, "DER comes back as the same bytes");
            }
            other => panic!("the normaliser's DER is not a fixed point: {other:?}"),
        }
        show(format_args!(
            "ber: {} bytes, {}",
            der.len(),
            if matches!(der, std::borrow::Cow::Borrowed(_)) {
                "already DER"
            } else {
                "rewritten"
            }
        ));
    }
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
