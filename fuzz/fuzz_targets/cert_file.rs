//! A certificate file: PEM, DER (or PKCS#12 without a password), as the inventory, the
//! renewal engine and `certvakt import` read it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = certvakt::certfile::looks_like_pkcs12(data);
    let ders = certvakt::certfile::certificate_ders(data);
    let chain = certvakt::keys::parse_certificate_chain(data);
    assert_eq!(ders.is_ok(), chain.is_ok(), "certfile and keys agree");
    if let Ok(ders) = ders {
        // What the engine writes back reads again as the same certificates.
        let pem = certvakt::keys::pem_certificates(&ders);
        let again = certvakt::certfile::certificate_ders(pem.as_bytes())
            .expect("written certificates read again");
        assert_eq!(again, ders);
    }
    if let Ok((_, certs)) = certvakt::inventory::parse_certificates(data, None) {
        assert!(!certs.is_empty(), "a readable file has a certificate");
    }
});
