//! The kit's own tests: what it mints must look like the real certificates, read back with
//! x509-parser (not with the kit's own idea of what it wrote).

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

use x509_parser::asn1_rs::Tag;
use x509_parser::prelude::*;

use crate::badfiles;
use crate::{CaShape, IssuedCert, KeyType, LeafSpec, TestCa};

const OID_ORG_ID: &str = "2.5.4.97";
const OID_SERIAL: &str = "2.5.4.5";
const OID_C: &str = "2.5.4.6";
const OID_O: &str = "2.5.4.10";
const OID_OU: &str = "2.5.4.11";
const OID_CN: &str = "2.5.4.3";
const OID_L: &str = "2.5.4.7";

/// The subject as (OID, string tag, value) in DER order.
fn subject(issued: &IssuedCert) -> Vec<(String, Tag, String)> {
    let (_, cert) = parse_x509_certificate(&issued.cert_der).expect("minted certificate parses");
    cert.subject()
        .iter_attributes()
        .map(|a| {
            (
                a.attr_type().to_id_string(),
                a.attr_value().tag(),
                a.as_str().expect("string attribute").to_string(),
            )
        })
        .collect()
}

fn attr(oid: &str, tag: Tag, value: &str) -> (String, Tag, String) {
    (oid.to_string(), tag, value.to_string())
}

fn ec(spec: LeafSpec) -> LeafSpec {
    // Shapes default to RSA like the real ones; most tests only look at names, so EC is faster.
    spec.key_type(KeyType::EcP256)
}

#[test]
fn oces3_subject_is_laid_out_like_the_real_certificate() {
    let ca = TestCa::new(CaShape::Oces3).expect("ca");
    let c = ca
        .issue(&ec(LeafSpec::oces3(
            "33257872",
            "8d3fa047-c77e-47e4-bdd2-e91488610ce6",
            "NSP Test Service Consumer",
        )))
        .expect("issue");
    assert_eq!(
        subject(&c),
        vec![
            attr(OID_CN, Tag::Utf8String, "NSP Test Service Consumer"),
            attr(
                OID_SERIAL,
                Tag::PrintableString,
                "UI:DK-O:G:8d3fa047-c77e-47e4-bdd2-e91488610ce6"
            ),
            attr(OID_O, Tag::Utf8String, "NSP Test Service Consumer"),
            attr(OID_ORG_ID, Tag::Utf8String, "NTRDK-33257872"),
            attr(OID_C, Tag::PrintableString, "DK"),
        ]
    );
    let (_, cert) = parse_x509_certificate(&c.cert_der).expect("parse");
    assert_eq!(
        cert.issuer().to_string(),
        "CN=TEST Den Danske Stat OCES udstedende-CA 1, OU=Test - cti, O=Den Danske Stat, C=DK"
    );
    let bc = cert.basic_constraints().expect("bc").expect("present");
    assert!(bc.critical && !bc.value.ca);
    let ku = cert.key_usage().expect("ku").expect("present");
    assert!(
        ku.value.digital_signature() && ku.value.key_encipherment() && !ku.value.key_cert_sign()
    );
    // 3 years minus one second, as the real profile.
    assert_eq!(
        cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp(),
        3 * 365 * 86_400 - 1
    );
}

#[test]
fn oces3_defaults_to_rsa_3072() {
    assert_eq!(
        LeafSpec::oces3("1", "u", "n").key_type_value(),
        KeyType::Rsa3072
    );
    assert_eq!(LeafSpec::seid2("1", "n").key_type_value(), KeyType::Rsa3072);
    assert_eq!(LeafSpec::dvv("1", "n").key_type_value(), KeyType::Rsa2048);
    assert_eq!(
        LeafSpec::tls_server(&["a.example"]).key_type_value(),
        KeyType::EcP256
    );
}

#[test]
fn oces2_function_carries_cvr_and_fid() {
    let ca = TestCa::root_only(CaShape::Oces3).expect("ca");
    let c = ca
        .issue(&ec(LeafSpec::oces2_function(
            "30808460",
            "94731315",
            "TU GENEREL FOCES",
        )))
        .expect("issue");
    assert_eq!(
        subject(&c),
        vec![
            attr(OID_C, Tag::PrintableString, "DK"),
            attr(OID_O, Tag::Utf8String, "TU GENEREL FOCES // CVR:30808460"),
            attr(OID_CN, Tag::Utf8String, "TU GENEREL FOCES"),
            attr(
                OID_SERIAL,
                Tag::PrintableString,
                "CVR:30808460-FID:94731315"
            ),
        ]
    );
}

#[test]
fn siths_hsa_id_is_a_printable_string_and_the_fqdn_a_san() {
    let ca = TestCa::new(CaShape::Siths).expect("ca");
    let c = ca
        .issue(
            &LeafSpec::siths("SE2321000016-39KJ", "Inera AB", "kentor.ntjp.sjunet.org")
                .locality("Stockholm"),
        )
        .expect("issue");
    assert_eq!(
        subject(&c),
        vec![
            attr(OID_C, Tag::PrintableString, "SE"),
            attr(OID_L, Tag::Utf8String, "Stockholm"),
            attr(OID_O, Tag::Utf8String, "Inera AB"),
            attr(OID_CN, Tag::Utf8String, "kentor.ntjp.sjunet.org"),
            attr(OID_SERIAL, Tag::PrintableString, "SE2321000016-39KJ"),
        ]
    );
    let (_, cert) = parse_x509_certificate(&c.cert_der).expect("parse");
    let san = cert
        .subject_alternative_name()
        .expect("san")
        .expect("present");
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::DNSName("kentor.ntjp.sjunet.org")]
    );
    let eku = cert.extended_key_usage().expect("eku").expect("present");
    assert!(eku.value.server_auth && eku.value.client_auth);
    assert!(
        cert.issuer()
            .to_string()
            .contains("CN=TEST SITHS e-id Function CA v1")
    );
}

#[test]
fn siths_refuses_an_hsa_id_that_printable_string_cannot_hold() {
    let ca = TestCa::root_only(CaShape::Siths).expect("ca");
    let err = ca
        .issue(&LeafSpec::siths(
            "T_SERVICES_SE121212121212-121A",
            "Org",
            "x",
        ))
        .expect_err("underscore is not PrintableString");
    assert!(format!("{err:#}").contains("PrintableString"), "{err:#}");
}

#[test]
fn dvv_carries_the_business_id_as_ntrfi_and_the_hypothesised_parts() {
    let ca = TestCa::new(CaShape::Dvv).expect("ca");
    let c = ca
        .issue(
            &LeafSpec::dvv("0245437-2", "Apteekki Testi Oy")
                .key_type(KeyType::EcP256)
                .org_unit("Helsingin Testi apteekki")
                .sote_oid("1.2.246.10.12345678.10.0")
                .server_name("kanta.apteekki-testi.fi"),
        )
        .expect("issue");
    assert_eq!(
        subject(&c),
        vec![
            attr(OID_C, Tag::PrintableString, "FI"),
            attr(OID_O, Tag::Utf8String, "Apteekki Testi Oy"),
            attr(OID_OU, Tag::Utf8String, "Helsingin Testi apteekki"),
            attr(OID_ORG_ID, Tag::Utf8String, "NTRFI-0245437-2"),
            attr(OID_CN, Tag::Utf8String, "kanta.apteekki-testi.fi"),
            attr(OID_SERIAL, Tag::PrintableString, "1.2.246.10.12345678.10.0"),
        ]
    );
    let (_, cert) = parse_x509_certificate(&c.cert_der).expect("parse");
    assert!(
        cert.issuer()
            .to_string()
            .contains("CN=TEST DVV Service Certificates")
    );
    // Sote server certificates: at most one year.
    let v = cert.validity();
    assert!(v.not_after.timestamp() - v.not_before.timestamp() <= 366 * 86_400);
}

#[test]
fn seid2_and_seid1_carry_the_organisation_number_where_the_real_ones_do() {
    let ca = TestCa::new(CaShape::BuypassSeid2).expect("ca");
    let c = ca
        .issue(&ec(LeafSpec::seid2("100101696", "TESTVIRKSOMHET")))
        .expect("issue");
    assert_eq!(
        subject(&c),
        vec![
            attr(OID_C, Tag::PrintableString, "NO"),
            attr(OID_O, Tag::Utf8String, "TESTVIRKSOMHET"),
            attr(OID_CN, Tag::Utf8String, "TESTVIRKSOMHET"),
            attr(OID_ORG_ID, Tag::Utf8String, "NTRNO-100101696"),
        ]
    );
    let (_, cert) = parse_x509_certificate(&c.cert_der).expect("parse");
    let issuer: Vec<(String, String)> = cert
        .issuer()
        .iter_attributes()
        .map(|a| {
            (
                a.attr_type().to_id_string(),
                a.as_str().expect("string").to_string(),
            )
        })
        .collect();
    let pair = |oid: &str, v: &str| (oid.to_string(), v.to_string());
    assert_eq!(
        issuer,
        vec![
            pair(OID_C, "NO"),
            pair(OID_ORG_ID, "NTRNO-983163327"),
            pair(OID_O, "Buypass AS"),
            pair(OID_CN, "TEST Buypass Class 3 CA G2 HT Business"),
        ]
    );

    let ca = TestCa::new(CaShape::BuypassSeid1).expect("ca");
    let c = ca
        .issue(&ec(
            LeafSpec::seid1("983544622", "HELSEDIREKTORATET").org_unit("IT")
        ))
        .expect("issue");
    assert_eq!(
        subject(&c),
        vec![
            attr(OID_C, Tag::PrintableString, "NO"),
            attr(OID_O, Tag::Utf8String, "HELSEDIREKTORATET"),
            attr(OID_OU, Tag::Utf8String, "IT"),
            attr(OID_CN, Tag::Utf8String, "HELSEDIREKTORATET"),
            attr(OID_SERIAL, Tag::PrintableString, "983544622"),
        ]
    );
}

#[test]
fn tls_server_names_become_sans() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let c = ca
        .issue(
            &LeafSpec::tls_server(&["www.example.test", "127.0.0.1"])
                .san("email:ops@example.test")
                .san("uri:https://example.test/"),
        )
        .expect("issue");
    let (_, cert) = parse_x509_certificate(&c.cert_der).expect("parse");
    assert_eq!(cert.subject().to_string(), "CN=www.example.test");
    let san = cert
        .subject_alternative_name()
        .expect("san")
        .expect("present");
    assert_eq!(
        san.value.general_names,
        vec![
            GeneralName::DNSName("www.example.test"),
            GeneralName::IPAddress(&[127, 0, 0, 1]),
            GeneralName::RFC822Name("ops@example.test"),
            GeneralName::URI("https://example.test/"),
        ]
    );
}

#[test]
fn validity_helpers_place_the_certificate_in_time() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let now = crate::now_seconds().unix_timestamp();
    let window = |spec: LeafSpec| {
        let c = ca.issue(&spec).expect("issue");
        let (_, cert) = parse_x509_certificate(&c.cert_der).expect("parse");
        (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        )
    };
    let names = ["t.example"];
    let (nb, na) = window(LeafSpec::tls_server(&names).expired_days_ago(3));
    assert!(na < now && (now - na - 3 * 86_400).abs() <= 2 && nb < na);
    let (nb, na) = window(LeafSpec::tls_server(&names).not_yet_valid_for_days(5));
    assert!(nb > now && (nb - now - 5 * 86_400).abs() <= 2 && na > nb);
    let (nb, na) = window(LeafSpec::tls_server(&names).expires_in_days(10));
    assert!(nb < now && (na - now - 10 * 86_400).abs() <= 2);
    let fixed_nb = ::time::macros::datetime!(2024-01-01 00:00:00 UTC);
    let fixed_na = ::time::macros::datetime!(2025-01-01 00:00:00 UTC);
    assert_eq!(
        window(LeafSpec::tls_server(&names).validity(fixed_nb, fixed_na)),
        (fixed_nb.unix_timestamp(), fixed_na.unix_timestamp())
    );
}

#[test]
fn key_types_are_what_was_asked() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    for key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let c = ca
            .issue(&LeafSpec::tls_server(&["k.example"]).key_type(key_type))
            .expect("issue");
        let (_, cert) = parse_x509_certificate(&c.cert_der).expect("parse");
        let spki = cert.public_key();
        match spki.parsed().expect("key") {
            x509_parser::public_key::PublicKey::RSA(rsa) => {
                assert_eq!(key_type.algorithm(), "RSA");
                let significant = rsa.modulus.iter().skip_while(|b| **b == 0).count();
                assert_eq!(significant * 8, key_type.bits() as usize);
            }
            x509_parser::public_key::PublicKey::EC(_) => {
                assert_eq!(key_type.algorithm(), "EC");
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .expect("curve");
                let expected = if key_type == KeyType::EcP256 {
                    "1.2.840.10045.3.1.7"
                } else {
                    "1.3.132.0.34"
                };
                assert_eq!(curve.to_id_string(), expected);
            }
            other => panic!("unexpected key {other:?}"),
        }
    }
}

#[test]
fn chain_is_intermediate_then_root_and_serials_are_unique() {
    let ca = TestCa::new(CaShape::Commfides).expect("ca");
    let spec = LeafSpec::tls_server(&["c.example"]);
    let a = ca.issue(&spec).expect("a");
    let b = ca.issue(&spec).expect("b");
    assert_eq!(a.chain_der.len(), 2);
    let (_, leaf) = parse_x509_certificate(&a.cert_der).expect("leaf");
    let (_, intermediate) = parse_x509_certificate(&a.chain_der[0]).expect("intermediate");
    let (_, root) = parse_x509_certificate(&a.chain_der[1]).expect("root");
    assert_eq!(leaf.issuer().as_raw(), intermediate.subject().as_raw());
    assert_eq!(intermediate.issuer().as_raw(), root.subject().as_raw());
    assert_eq!(root.issuer().as_raw(), root.subject().as_raw());
    assert!(intermediate.is_ca() && root.is_ca() && !leaf.is_ca());
    assert_ne!(
        a.serial_hex().expect("serial"),
        b.serial_hex().expect("serial")
    );
    assert_eq!(a.serial_hex().expect("serial").len(), 16 * 3 - 1);
    assert_eq!(a.fullchain_pem().matches("BEGIN CERTIFICATE").count(), 3);

    let root_only = TestCa::root_only(CaShape::Tls).expect("ca");
    assert_eq!(root_only.issue(&spec).expect("issue").chain_der.len(), 1);
}

#[test]
fn written_files_have_the_right_content_and_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(CaShape::Tls).expect("ca");
    let c = ca
        .issue(&LeafSpec::tls_server(&["w.example"]))
        .expect("issue");
    let paths = c.write_pem(dir.path(), "web").expect("write");
    assert_eq!(paths.cert, dir.path().join("web.cert.pem"));
    assert_eq!(
        std::fs::read_to_string(&paths.cert).expect("cert"),
        c.cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(&paths.fullchain).expect("fullchain"),
        c.fullchain_pem()
    );
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&paths.key), 0o600);
    assert!(
        std::fs::read_to_string(&paths.key)
            .expect("key")
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let der = c.write_der(dir.path(), "web").expect("der");
    assert_eq!(std::fs::read(der).expect("der"), c.cert_der);

    let p12 = c
        .write_pkcs12(&dir.path().join("web.p12"), "s3cret")
        .expect("p12");
    assert_eq!(
        std::fs::read_to_string(&p12.password_file).expect("pass"),
        "s3cret\n"
    );
    assert_eq!(mode(&p12.password_file), 0o600);
    let bytes = std::fs::read(&p12.bundle).expect("bundle");
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, "s3cret").expect("opens");
    assert_eq!(archive.certs.len(), 3);
    assert_eq!(archive.keys.len(), 1);
    assert!(
        archive
            .certs
            .iter()
            .any(|bag| bag.cert.as_der() == c.cert_der)
    );
    assert!(p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, "wrong").is_err());
}

#[test]
fn traditional_key_forms_hold_the_same_key() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    for key_type in [KeyType::EcP256, KeyType::Rsa2048] {
        let c = ca
            .issue(&LeafSpec::tls_server(&["k.example"]).key_type(key_type))
            .expect("issue");
        let pem = c.key_traditional_pem().expect("traditional");
        let label = if key_type == KeyType::Rsa2048 {
            "RSA PRIVATE KEY"
        } else {
            "EC PRIVATE KEY"
        };
        assert!(
            pem.starts_with(&format!("-----BEGIN {label}-----")),
            "{label}"
        );
        let again = rcgen::KeyPair::from_pem(&pem).expect("rcgen reads it");
        let original = c.key_pair().expect("pkcs8");
        assert_eq!(again.public_key_raw(), original.public_key_raw());
    }
}

#[test]
fn reuse_key_of_keeps_the_public_key() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let first = ca
        .issue(&LeafSpec::tls_server(&["r.example"]))
        .expect("first");
    let second = ca
        .issue(
            &LeafSpec::tls_server(&["r.example"])
                .reuse_key_of(&first)
                .expect("reuse"),
        )
        .expect("second");
    let spki = |c: &IssuedCert| {
        let (_, cert) = parse_x509_certificate(&c.cert_der).expect("parse");
        cert.public_key().raw.to_vec()
    };
    assert_eq!(spki(&first), spki(&second));
    assert_ne!(first.cert_der, second.cert_der);
}

#[test]
fn bad_files_are_broken_in_the_promised_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let c = ca
        .issue(&LeafSpec::tls_server(&["b.example"]))
        .expect("issue");

    let p = badfiles::write_empty(&d.join("empty.pem")).expect("empty");
    assert_eq!(std::fs::metadata(p).expect("meta").len(), 0);

    let p = badfiles::write_garbage(&d.join("garbage.bin"), 500).expect("garbage");
    let bytes = std::fs::read(p).expect("read");
    assert_eq!(bytes.len(), 500);
    assert!(bytes[0] != b'-' && bytes[0] != 0x30);

    let p = badfiles::write_truncated_pem(&d.join("trunc.pem"), &c.cert_pem).expect("trunc");
    let text = std::fs::read_to_string(p).expect("read");
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n") && !text.contains("-----END"));
    assert!(text.len() > 100);

    let p = badfiles::write_key_only_pem(&d.join("key.pem"), &c.key_pem).expect("key only");
    assert!(
        !std::fs::read_to_string(p)
            .expect("read")
            .contains("CERTIFICATE")
    );

    let p = badfiles::write_truncated_der(&d.join("cut.der"), &c.cert_der).expect("cut");
    assert!(parse_x509_certificate(&std::fs::read(p).expect("read")).is_err());

    let p = badfiles::make_directory(&d.join("dir.pem")).expect("dir");
    assert!(p.is_dir());

    let (a, _) = badfiles::make_symlink_loop(&d.join("a.pem"), &d.join("b.pem")).expect("loop");
    let err = std::fs::read(&a).expect_err("loop");
    assert_eq!(err.raw_os_error(), Some(40), "ELOOP: {err}");

    let p = badfiles::make_dangling_symlink(&d.join("dangling.pem")).expect("dangling");
    assert_eq!(
        std::fs::read(p).expect_err("dangling").kind(),
        std::io::ErrorKind::NotFound
    );

    let p = badfiles::write_huge(&d.join("huge.pem"), 5 * 1024 * 1024 + 1).expect("huge");
    assert_eq!(
        std::fs::metadata(p).expect("meta").len(),
        5 * 1024 * 1024 + 1
    );

    let p = badfiles::write_unreadable(&d.join("secret.pem"), c.cert_pem.as_bytes())
        .expect("unreadable");
    assert_eq!(
        std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
        0
    );
    assert_eq!(std::fs::read(&p).is_err(), badfiles::permissions_bite(d));
}

#[test]
fn write_many_writes_distinct_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = crate::write_many(dir.path(), 40).expect("many");
    assert_eq!(paths.len(), 40);
    let mut serials = HashSet::new();
    let mut names = HashSet::new();
    for p in &paths {
        let pem = std::fs::read(p).expect("read");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
        let cert = pem.parse_x509().expect("cert");
        serials.insert(cert.raw_serial().to_vec());
        names.insert(cert.subject().to_string());
    }
    assert_eq!(serials.len(), 40);
    assert_eq!(names.len(), 40);
}

#[test]
fn sample_set_manifest_describes_files_that_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = crate::write_sample_set(dir.path()).expect("sample");
    for f in &manifest.files {
        assert!(
            std::fs::symlink_metadata(&f.path).is_ok(),
            "{}",
            f.path.display()
        );
    }
    for expect in [
        "ok",
        "expiring",
        "expired",
        "not_yet_valid",
        "malformed",
        "not_certificate",
    ] {
        assert!(
            manifest.files.iter().any(|f| f.expect == expect),
            "{expect}"
        );
    }
    for kind in [
        "cert_pem",
        "cert_der",
        "chain_pem",
        "pkcs12",
        "password",
        "broken",
    ] {
        assert!(manifest.files.iter().any(|f| f.kind == kind), "{kind}");
    }
    let shapes: HashSet<_> = manifest
        .files
        .iter()
        .filter_map(|f| f.shape.clone())
        .collect();
    for shape in [
        "oces3",
        "oces2_function",
        "siths",
        "dvv",
        "seid2",
        "seid1",
        "tls_server",
    ] {
        assert!(shapes.contains(shape), "{shape}");
    }
    assert_eq!(manifest.managed.len(), 5);
    for m in &manifest.managed {
        assert!(m.cert.is_file() && m.key.is_file(), "{}", m.id);
    }
    let json = serde_json::to_value(&manifest).expect("json");
    assert!(
        json["files"]
            .as_array()
            .is_some_and(|f| f.len() == manifest.files.len())
    );
    let password = std::fs::read_to_string(&manifest.pkcs12_password_file).expect("password");
    assert_eq!(password.trim_end(), crate::SAMPLE_PKCS12_PASSWORD);
}
