use rcgen::{CertificateParams, KeyPair, PublicKeyData as _};
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::*;

const HSA_ID: &str = "SE2321000016-B7QX";

fn organisation() -> SithsOrganisation {
    SithsOrganisation::new(
        "Region Testland",
        "Stockholm",
        "SE2321000016-",
        &["vard.regiontestland.se", "testland.example"],
    )
}

/// A CSR whose own subject says something else than what the CA will put in.
fn csr(key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "whatever the requester wrote");
    params
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("pem")
}

/// (short name, string tag, value) of every subject attribute, in DER order.
fn subject_attrs(cert_der: &[u8]) -> Vec<(String, Tag, String)> {
    let (_, cert) = parse_x509_certificate(cert_der).expect("parse");
    let mut out = Vec::new();
    for rdn in cert.subject().iter() {
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let name = match oid.as_str() {
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.10" => "O",
                "2.5.4.3" => "CN",
                "2.5.4.5" => "serialNumber",
                other => other,
            };
            out.push((
                name.to_owned(),
                attr.attr_value().tag(),
                attr.as_str().expect("string").to_owned(),
            ));
        }
    }
    out
}

fn check_profile(cert_der: &[u8], hsa_id: &str, fqdn: &str) {
    let attrs = subject_attrs(cert_der);
    let expected = [
        ("C", Tag::PrintableString, "SE"),
        ("L", Tag::Utf8String, "Stockholm"),
        ("O", Tag::Utf8String, "Region Testland"),
        ("CN", Tag::Utf8String, fqdn),
        ("serialNumber", Tag::PrintableString, hsa_id),
    ];
    let expected: Vec<(String, Tag, String)> = expected
        .iter()
        .map(|(n, t, v)| ((*n).to_owned(), *t, (*v).to_owned()))
        .collect();
    assert_eq!(attrs, expected);
    let (_, cert) = parse_x509_certificate(cert_der).expect("parse");
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("san")
        .expect("san present")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, [format!("dns:{fqdn}")]);
    let eku = cert
        .extended_key_usage()
        .expect("eku")
        .expect("eku present")
        .value;
    assert!(eku.client_auth && eku.server_auth);
    assert_eq!(
        cert.issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok()),
        Some("TEST SITHS e-id Function CA v1")
    );
    assert!(!cert.is_ca());
}

#[test]
fn an_order_from_the_inbox_becomes_a_function_certificate() {
    let siths = SithsCa::new(organisation()).expect("ca");
    let key = KeyType::EcP256.generate().expect("key");
    let fqdn = "efrikort-klient.vard.regiontestland.se";
    let id = siths.submit(&csr(&key), HSA_ID, fqdn).expect("submitted");
    assert_eq!(siths.orders().len(), 1);
    assert_eq!(siths.orders()[0].hsa_id, HSA_ID);

    let cert = siths.issue(id).expect("issued");
    check_profile(&cert.cert_der, HSA_ID, fqdn);
    let (_, x509) = parse_x509_certificate(&cert.cert_der).expect("parse");
    assert_eq!(
        x509.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    assert_eq!(cert.not_after - cert.not_before, Duration::days(VALID_DAYS));
    let chain = ::pem::parse_many(&cert.chain_pem).expect("pem");
    assert_eq!(chain.len(), 3);
    let (_, root) = parse_x509_certificate(chain[2].contents()).expect("root");
    assert_eq!(
        root.subject().to_string(),
        "C=SE, O=Inera AB, CN=TEST SITHS e-id Root CA v2"
    );

    assert!(siths.orders().is_empty());
    let again = siths.issue(id).expect_err("issued twice");
    assert!(
        again.to_string().contains("no order SITHS-000001"),
        "{again}"
    );
    assert_eq!(siths.issued_hsa_ids(), [HSA_ID]);
}

#[test]
fn the_inbox_refuses_foreign_domains_and_bad_hsa_ids() {
    let siths = SithsCa::new(organisation()).expect("ca");
    let key = KeyType::EcP256.generate().expect("key");
    let csr = csr(&key);

    let foreign = siths
        .submit(&csr, HSA_ID, "efrikort.other-region.se")
        .expect_err("foreign fqdn");
    let text = foreign.to_string();
    assert!(text.contains("\"efrikort.other-region.se\""), "{text}");
    assert!(
        text.contains("not in a domain Region Testland has validated"),
        "{text}"
    );
    // A look-alike suffix is not a subdomain.
    assert!(siths.submit(&csr, HSA_ID, "eviltestland.example").is_err());
    // The validated domain itself and a subdomain are fine.
    assert!(siths.submit(&csr, HSA_ID, "testland.example").is_ok());

    let underscore = siths
        .submit(&csr, "T_SERVICES_SE121212121212-121A", "a.testland.example")
        .expect_err("underscore");
    assert!(
        underscore.to_string().contains("PrintableString"),
        "{underscore}"
    );
    let other_branch = siths
        .submit(&csr, "SE5565594230-BCQ", "a.testland.example")
        .expect_err("other branch");
    assert!(
        other_branch
            .to_string()
            .contains("branch of the HSA service tree"),
        "{other_branch}"
    );
    let long = siths
        .submit(
            &csr,
            &format!("SE2321000016-{}", "X".repeat(30)),
            "a.testland.example",
        )
        .expect_err("too long");
    assert!(long.to_string().contains("1 to 32 characters"), "{long}");
    let garbage = siths
        .submit("not a csr", HSA_ID, "a.testland.example")
        .expect_err("garbage");
    assert!(
        garbage.to_string().contains("CSR cannot be read"),
        "{garbage}"
    );
    assert_eq!(siths.orders().len(), 1);
}

#[test]
fn the_current_certificate_has_the_same_profile_and_a_key() {
    let siths = SithsCa::new(organisation()).expect("ca");
    let fqdn = "journal.vard.regiontestland.se";
    let current = siths.issue_current(HSA_ID, fqdn).expect("current");
    check_profile(&current.cert_der, HSA_ID, fqdn);
    assert!(current.not_before < now_seconds() - Duration::days(29));
    assert!(current.key_pair().is_ok());
    assert!(siths.issue_current(HSA_ID, "journal.elsewhere.se").is_err());
}
