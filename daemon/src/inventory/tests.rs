//! Inventory tests against certificates minted by the testkit, real published test
//! certificates, and broken files made on the spot.

use std::fs;
use std::path::{Path, PathBuf};

use certvakt_testkit::{CaShape, IssuedCert, KeyType, LeafSpec, TestCa, badfiles};
use sha2::{Digest, Sha256};

use super::*;

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/protocols/reference/certificates"
);

fn watched(pattern: &Path) -> Source {
    let pattern = pattern.display().to_string();
    Source {
        kind: SourceKind::Watched {
            pattern: pattern.clone(),
        },
        path: pattern,
        pkcs12_password_file: None,
    }
}

fn managed(id: &str, cert: &Path, key: Option<&Path>) -> Source {
    Source {
        kind: SourceKind::Managed {
            id: id.into(),
            plugin: "manual".into(),
            key: key.map(Path::to_path_buf),
        },
        path: cert.display().to_string(),
        pkcs12_password_file: None,
    }
}

fn with_password(mut source: Source, password_file: &Path) -> Source {
    source.pkcs12_password_file = Some(password_file.to_path_buf());
    source
}

fn tls(ca: &TestCa, name: &str) -> IssuedCert {
    ca.issue(&LeafSpec::tls_server(&[name])).expect("issue")
}

fn only(bytes: &[u8]) -> CertInfo {
    let (_, mut certs) = parse_certificates(bytes, None).expect("parses");
    assert_eq!(certs.len(), 1);
    certs.remove(0)
}

fn problem<'a>(inv: &'a Inventory, path: &Path) -> &'a SourceProblem {
    let path = path.display().to_string();
    inv.problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem for {path}: {:#?}", inv.problems))
}

fn entry<'a>(inv: &'a Inventory, id: &str) -> &'a Entry {
    inv.entries.iter().find(|e| e.id == id).unwrap_or_else(|| {
        panic!(
            "no entry {id}: {:?}",
            inv.entries.iter().map(|e| &e.id).collect::<Vec<_>>()
        )
    })
}

// ----- parsing: every shape of the testkit -----

/// CA, leaf, expected identities, key algorithm, bits, curve.
type ShapeCase = (
    CaShape,
    LeafSpec,
    Vec<NordicIdentity>,
    &'static str,
    u32,
    Option<&'static str>,
);

#[test]
fn every_national_shape_parses_with_its_identity_key_and_validity() {
    let cases: Vec<ShapeCase> = vec![
        (
            CaShape::Oces3,
            LeafSpec::oces3(
                "12345678",
                "0443b8ae-dfd0-48c1-8af4-b9993cbce492",
                "Test Apotek",
            ),
            vec![NordicIdentity::DkOces3 {
                cvr: "12345678".into(),
                uuid: Some("0443b8ae-dfd0-48c1-8af4-b9993cbce492".into()),
            }],
            "RSA",
            3072,
            None,
        ),
        (
            CaShape::Oces3,
            LeafSpec::oces2_function("30808460", "94731315", "Test Apotek FMK"),
            vec![NordicIdentity::DkOces2 {
                cvr: "30808460".into(),
                fid: Some("94731315".into()),
                uid: None,
                rid: None,
            }],
            "RSA",
            2048,
            None,
        ),
        (
            CaShape::Siths,
            LeafSpec::siths(
                "SE2321000016-39KJ",
                "Region Test",
                "efrikort.region-test.se",
            ),
            vec![NordicIdentity::SeHsaId {
                hsa_id: "SE2321000016-39KJ".into(),
            }],
            "EC",
            256,
            Some("P-256"),
        ),
        // An older service-style HSA-ID no pattern knows: SITHS issued it, so it is the
        // HSA-ID.
        (
            CaShape::Siths,
            LeafSpec::siths(
                "SE2321000016-SERVICES-FK1",
                "Region Test",
                "efrikort.region-test.se",
            ),
            vec![NordicIdentity::SeHsaId {
                hsa_id: "SE2321000016-SERVICES-FK1".into(),
            }],
            "EC",
            256,
            Some("P-256"),
        ),
        (
            CaShape::Dvv,
            LeafSpec::dvv("0245437-2", "Apteekki Testi Oy").server_name("kanta.apteekki-testi.fi"),
            vec![NordicIdentity::FiOrganisation {
                business_id: Some("0245437-2".into()),
                identifier: "NTRFI-0245437-2".into(),
            }],
            "RSA",
            2048,
            None,
        ),
        (
            CaShape::BuypassSeid2,
            LeafSpec::seid2("100101696", "TESTVIRKSOMHET").key_type(KeyType::EcP384),
            vec![NordicIdentity::NoOrgNumber {
                orgnr: "100101696".into(),
                seid: 2,
            }],
            "EC",
            384,
            Some("P-384"),
        ),
        (
            CaShape::BuypassSeid1,
            LeafSpec::seid1("983544622", "HELSEDIREKTORATET"),
            vec![NordicIdentity::NoOrgNumber {
                orgnr: "983544622".into(),
                seid: 1,
            }],
            "RSA",
            2048,
            None,
        ),
        (
            CaShape::Tls,
            LeafSpec::tls_server(&["www.example.test"]),
            vec![],
            "EC",
            256,
            Some("P-256"),
        ),
    ];
    for (shape, spec, identities, algorithm, bits, curve) in cases {
        let ca = TestCa::new(shape).expect("ca");
        let issued = ca.issue(&spec).expect("issue");
        let info = only(issued.cert_pem.as_bytes());
        assert_eq!(info.identities, identities, "{spec:?}");
        assert_eq!(info.key.algorithm, algorithm, "{spec:?}");
        assert_eq!(info.key.bits, bits, "{spec:?}");
        assert_eq!(info.key.curve.as_deref(), curve, "{spec:?}");
        assert_eq!(
            info.not_before,
            spec.not_before().unix_timestamp(),
            "{spec:?}"
        );
        assert_eq!(
            info.not_after,
            spec.not_after().unix_timestamp(),
            "{spec:?}"
        );
        assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
        assert!(!info.is_ca && !info.self_signed);
        assert!(
            info.issuer.contains(ca.issuer_name()),
            "{} / {}",
            info.issuer,
            ca.issuer_name()
        );
        assert_eq!(info.serial, issued.serial_hex().expect("serial"));
        // DER of the same certificate gives the same facts.
        let (format, der) = parse_certificates(&issued.cert_der, None).expect("der");
        assert_eq!((format.as_str(), der), ("der", vec![info]));
    }
}

#[test]
fn fields_are_formatted_as_documented() {
    let ca = TestCa::with_key_type(CaShape::Tls, KeyType::Rsa2048).expect("ca");
    let issued = ca
        .issue(
            &LeafSpec::tls_server(&["www.example.test", "192.0.2.7", "2001:db8::1"])
                .san("email:ops@example.test")
                .san("uri:https://example.test/x")
                .serial(&[0x8c, 0x01, 0x02]),
        )
        .expect("issue");
    let info = only(issued.cert_pem.as_bytes());
    assert_eq!(
        info.sans,
        vec![
            "DNS:www.example.test",
            "IP:192.0.2.7",
            "IP:2001:db8::1",
            "email:ops@example.test",
            "URI:https://example.test/x",
        ]
    );
    // The DER has 00 8c 01 02 (sign byte); the number is 8c:01:02.
    assert_eq!(info.serial, "8c:01:02");
    assert_eq!(info.signature_algorithm, "sha256WithRSAEncryption");
    let sha256 = Sha256::digest(&issued.cert_der);
    let expected: Vec<String> = sha256.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(info.sha256.to_string(), expected.join(":"));
    assert_eq!(info.sha1.to_string().len(), 20 * 3 - 1);
    assert_eq!(info.subject, "CN=www.example.test");
    assert_eq!(
        info.issuer,
        "C=SE, O=certvakt test, CN=TEST certvakt Issuing CA"
    );

    // The issuing CA, read from the chain: a CA, not self-signed; the root is both.
    let (_, chain) = parse_certificates(issued.chain_pem.as_bytes(), None).expect("chain");
    assert!(chain[0].is_ca && !chain[0].self_signed);
    assert!(chain[1].is_ca && chain[1].self_signed);
    assert_eq!(chain[1].key.algorithm, "RSA");
}

#[test]
fn oces3_subject_prints_the_organization_identifier() {
    let ca = TestCa::new(CaShape::Oces3).expect("ca");
    let issued = ca
        .issue(
            &LeafSpec::oces3(
                "12345678",
                "0443b8ae-dfd0-48c1-8af4-b9993cbce492",
                "Test Apotek",
            )
            .key_type(KeyType::EcP256),
        )
        .expect("issue");
    let info = only(issued.cert_pem.as_bytes());
    assert!(info.subject.contains("NTRDK-12345678"), "{}", info.subject);
    assert!(
        info.subject
            .contains("UI:DK-O:G:0443b8ae-dfd0-48c1-8af4-b9993cbce492"),
        "{}",
        info.subject
    );
}

// ----- parsing: the real published certificates -----

#[test]
fn real_oces3_test_certificate() {
    let bytes = fs::read(format!(
        "{REFERENCE}/dk-oces3-nsp-test-service-consumer.pem"
    ))
    .expect("reference file");
    let (format, certs) = parse_certificates(&bytes, None).expect("parses");
    assert_eq!(format, "pem");
    assert_eq!(certs.len(), 1);
    let c = &certs[0];
    assert_eq!(
        c.identities,
        vec![NordicIdentity::DkOces3 {
            cvr: "33257872".into(),
            uuid: Some("8d3fa047-c77e-47e4-bdd2-e91488610ce6".into()),
        }]
    );
    assert_eq!(
        c.key,
        KeyInfo {
            algorithm: "RSA".into(),
            bits: 3072,
            curve: None
        }
    );
    assert_eq!(c.signature_algorithm, "RSASSA-PSS");
    assert_eq!(
        c.serial,
        "17:2e:21:d8:b4:f1:17:87:99:5b:62:c2:d6:46:b2:e1:73:36:1c:e9"
    );
    // Nov 29 09:30:25 2022 GMT → Nov 28 09:30:24 2025 GMT.
    assert_eq!(c.not_before, 1_669_714_225);
    assert_eq!(c.not_after, 1_764_322_224);
    assert!(
        c.issuer.contains("Den Danske Stat OCES udstedende-CA 1"),
        "{}",
        c.issuer
    );
    assert!(
        c.subject.contains("NSP Test Service Consumer"),
        "{}",
        c.subject
    );
    assert!(!c.is_ca && !c.self_signed);
    assert_eq!(c.state_at(c.not_after, 0), CertState::Expired);
}

#[test]
fn real_norwegian_seid1_certificates() {
    for (file, serial, cn) in [
        (
            "no-buypass-seid1-helsedirektoratet-encryption.der",
            "10:a2:dc:09:8e:eb:4f:c8:06:78",
            "TEST helsenorge.no tjenester",
        ),
        (
            "no-buypass-seid1-helsedirektoratet-signature.der",
            "1d:5b:e7:9f:34:c5:6e:4e:94:4e",
            "TEST - DDFL",
        ),
    ] {
        let bytes = fs::read(format!("{REFERENCE}/{file}")).expect("reference file");
        let (format, certs) = parse_certificates(&bytes, None).expect("parses");
        assert_eq!(format, "der", "{file}");
        let c = &certs[0];
        assert_eq!(
            c.identities,
            vec![NordicIdentity::NoOrgNumber {
                orgnr: "983544622".into(),
                seid: 1
            }],
            "{file}"
        );
        assert_eq!(c.serial, serial, "{file}");
        assert!(c.subject.contains(cn), "{}", c.subject);
        assert!(
            c.issuer.contains("Buypass Class 3 Test4 CA 3"),
            "{}",
            c.issuer
        );
        assert_eq!(c.key.algorithm, "RSA");
        assert_eq!(c.signature_algorithm, "sha256WithRSAEncryption");
    }
}

// ----- parsing: PEM, DER, PKCS#12 edge cases -----

#[test]
fn pem_with_mixed_blocks_in_any_order() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let a = tls(&ca, "a.example");
    let b = tls(&ca, "b.example");
    let text = format!(
        "Bag of things\n{}{}# comment between blocks\n-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n{}",
        a.key_pem, a.cert_pem, b.cert_pem
    );
    let (format, certs) = parse_certificates(text.as_bytes(), None).expect("parses");
    assert_eq!(format, "pem");
    assert_eq!(
        certs.iter().map(|c| c.subject.as_str()).collect::<Vec<_>>(),
        vec!["CN=a.example", "CN=b.example"]
    );
}

#[test]
fn pem_from_windows_tools_with_bom_and_crlf() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let c = tls(&ca, "w.example");
    let crlf = format!("\u{feff}{}", c.cert_pem.replace('\n', "\r\n"));
    let (format, certs) = parse_certificates(crlf.as_bytes(), None).expect("parses");
    assert_eq!(
        (format.as_str(), certs[0].subject.as_str()),
        ("pem", "CN=w.example")
    );
}

#[test]
fn pem_cut_off_or_without_certificate() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let c = tls(&ca, "t.example");
    let cut = &c.cert_pem[..c.cert_pem.len() / 2];
    let (kind, message) = parse_certificates(cut.as_bytes(), None).expect_err("cut");
    assert_eq!(kind, ProblemKind::Malformed);
    assert!(message.contains("cut off"), "{message}");

    // A good certificate followed by a cut-off one: the file is damaged, not half-read.
    let half = format!("{}{}", c.cert_pem, cut);
    assert_eq!(
        parse_certificates(half.as_bytes(), None)
            .expect_err("half")
            .0,
        ProblemKind::Malformed
    );

    let (kind, message) = parse_certificates(c.key_pem.as_bytes(), None).expect_err("key only");
    assert_eq!(kind, ProblemKind::NotCertificate);
    assert!(
        message.starts_with("holds a private key but no certificate"),
        "{message}"
    );

    let rsa = ca
        .issue(&LeafSpec::tls_server(&["r.example"]).key_type(KeyType::Rsa2048))
        .expect("rsa");
    let pkcs1 = rsa.key_traditional_pem().expect("pkcs1");
    assert_eq!(
        parse_certificates(pkcs1.as_bytes(), None)
            .expect_err("pkcs1")
            .0,
        ProblemKind::NotCertificate
    );
}

#[test]
fn der_cut_short_garbage_and_der_keys() {
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let c = tls(&ca, "d.example");
    let (kind, message) =
        parse_certificates(&c.cert_der[..c.cert_der.len() - 40], None).expect_err("cut");
    assert_eq!(kind, ProblemKind::Malformed);
    assert!(message.contains("DER certificate"), "{message}");

    let (kind, message) = parse_certificates(&c.key_pkcs8_der, None).expect_err("der key");
    assert_eq!(kind, ProblemKind::NotCertificate);
    assert!(message.contains("private key"), "{message}");

    let (kind, _) = parse_certificates(b"\xa7\x01\x02garbage\xff", None).expect_err("garbage");
    assert_eq!(kind, ProblemKind::NotCertificate);

    // Trailing newline after DER (mail clients add one) is fine; two DER certificates too.
    let mut padded = c.cert_der.clone();
    padded.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_certificates(&padded, None).expect("padded").1.len(),
        1
    );
    let mut two = c.cert_der.clone();
    two.extend_from_slice(&ca.root_der());
    assert_eq!(parse_certificates(&two, None).expect("two").1.len(), 2);

    // A certificate whose DER ends in a byte that looks like padding is not trimmed: mint
    // until the last signature byte is 0x00 or a whitespace byte (about 1 in 40).
    let padded_end = (0..2000)
        .map(|i| tls(&ca, &format!("p{i}.example")))
        .find(|c| {
            c.cert_der
                .last()
                .is_some_and(|b| *b == 0 || b.is_ascii_whitespace())
        })
        .expect("one in 2000 ends in such a byte");
    assert_eq!(
        parse_certificates(&padded_end.cert_der, None)
            .expect("whole")
            .1
            .len(),
        1
    );
}

#[test]
fn pkcs12_with_right_wrong_and_missing_password() {
    let ca = TestCa::new(CaShape::Oces3).expect("ca");
    let c = ca
        .issue(
            &LeafSpec::oces3(
                "12345678",
                "0443b8ae-dfd0-48c1-8af4-b9993cbce492",
                "P12 Apotek",
            )
            .key_type(KeyType::EcP256),
        )
        .expect("issue");
    let bytes = c.pkcs12_bytes("hemmelig").expect("p12");

    let (format, certs) = parse_certificates(&bytes, Some("hemmelig")).expect("opens");
    assert_eq!(format, "pkcs12");
    assert_eq!(certs.len(), 3);
    assert!(matches!(
        certs[0].identities.as_slice(),
        [NordicIdentity::DkOces3 { .. }]
    ));
    assert!(!certs[0].is_ca && certs[1].is_ca && certs[2].self_signed);

    let (kind, message) = parse_certificates(&bytes, Some("forkert")).expect_err("wrong");
    assert_eq!(kind, ProblemKind::Pkcs12Password);
    assert!(message.contains("does not open"), "{message}");

    let (kind, message) = parse_certificates(&bytes, None).expect_err("missing");
    assert_eq!(kind, ProblemKind::Pkcs12Password);
    assert!(message.contains("pkcs12_password_file"), "{message}");

    // A bundle made with the empty password opens without one.
    let open = c.pkcs12_bytes("").expect("p12");
    assert_eq!(
        parse_certificates(&open, None)
            .expect("empty password")
            .1
            .len(),
        3
    );

    let cut = &bytes[..bytes.len() / 2];
    assert_eq!(
        parse_certificates(cut, Some("hemmelig"))
            .expect_err("cut")
            .0,
        ProblemKind::Malformed
    );
}

#[test]
fn pkcs12_with_ber_inside_its_mac_is_parsed_with_its_password() {
    let ca = TestCa::new(CaShape::BuypassSeid2).expect("ca");
    let c = ca
        .issue(&LeafSpec::seid2("100101696", "TESTVIRKSOMHET").key_type(KeyType::EcP256))
        .expect("issue");
    let der = c.pkcs12_bytes("passord").expect("p12");
    let ber = certvakt_testkit::ber::pkcs12_to_ber_inside(&der, "passord").expect("ber");
    let (_, from_der) = parse_certificates(&der, Some("passord")).expect("DER");
    let (format, from_ber) = parse_certificates(&ber, Some("passord")).expect("BER inside");
    assert_eq!(format, "pkcs12");
    assert_eq!(from_ber.len(), 3);
    assert_eq!(from_ber, from_der);

    let (kind, message) = parse_certificates(&ber, Some("ikke-passord")).expect_err("wrong");
    assert_eq!(kind, ProblemKind::Pkcs12Password);
    assert!(message.contains("does not open"), "{message}");
    let (kind, message) = parse_certificates(&ber, None).expect_err("missing");
    assert_eq!(kind, ProblemKind::Pkcs12Password);
    assert!(message.contains("pkcs12_password_file"), "{message}");
    let (kind, _) = parse_certificates(&ber[..ber.len() / 2], Some("passord")).expect_err("cut");
    assert_eq!(kind, ProblemKind::Malformed);
}

#[test]
fn pkcs12_written_with_ber_is_listed_with_its_password_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(CaShape::BuypassSeid2).expect("ca");
    let c = ca
        .issue(&LeafSpec::seid2("100101696", "TESTVIRKSOMHET").key_type(KeyType::EcP256))
        .expect("issue");
    let der = c.pkcs12_bytes("passord").expect("p12");
    let ber = certvakt_testkit::ber::pkcs12_to_ber(&der).expect("ber");
    let bundle = dir.path().join("windows.p12");
    fs::write(&bundle, &ber).expect("write");
    let password_file = dir.path().join("windows.pass");
    fs::write(&password_file, "passord\n").expect("write");
    let wrong = dir.path().join("wrong.pass");
    fs::write(&wrong, "ikke-passord\n").expect("write");
    let cut = dir.path().join("cut.p12");
    fs::write(&cut, &ber[..ber.len() - 2]).expect("write");

    let mut scanner = Scanner::default();
    let inv = scanner.scan(&[
        with_password(managed("nhn", &bundle, None), &password_file),
        with_password(managed("nhn-wrong", &bundle, None), &wrong),
        with_password(managed("nhn-cut", &cut, None), &password_file),
    ]);

    // The same certificates as the DER bundle's, in the same order.
    let (_, from_der) = parse_certificates(&der, Some("passord")).expect("DER");
    assert_eq!(from_der.len(), 3);
    let ids = ["nhn", "nhn#1", "nhn#2"];
    for (id, want) in ids.iter().zip(&from_der) {
        let e = entry(&inv, id);
        assert_eq!(e.format, "pkcs12");
        assert_eq!(&*e.cert, want, "{id}");
    }
    assert_eq!(
        entry(&inv, "nhn").cert.identities,
        vec![NordicIdentity::NoOrgNumber {
            orgnr: "100101696".into(),
            seid: 2
        }]
    );

    let of = |id: &str| {
        inv.problems
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("no problem for {id}: {:#?}", inv.problems))
    };
    assert_eq!(of("nhn-wrong").kind, ProblemKind::Pkcs12Password);
    assert!(of("nhn-wrong").message.contains("does not open"));
    assert_eq!(of("nhn-cut").kind, ProblemKind::Malformed);
    assert!(
        of("nhn-cut")
            .message
            .contains("is a damaged PKCS#12 bundle"),
        "{}",
        of("nhn-cut").message
    );
}

// ----- scanning -----

#[test]
fn chain_file_gives_indexed_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(CaShape::Siths).expect("ca");
    let c = ca
        .issue(&LeafSpec::siths(
            "SE2321000016-39KJ",
            "Region Test",
            "x.region-test.se",
        ))
        .expect("issue");
    let paths = c.write_pem(dir.path(), "siths").expect("write");

    let mut scanner = Scanner::new(DEFAULT_MAX_FILE_SIZE);
    let inv = scanner.scan(&[
        managed("efrikort", &paths.fullchain, None),
        watched(&paths.fullchain.with_file_name("*.chain.pem")),
    ]);
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    let ids: Vec<&str> = inv.entries.iter().map(|e| e.id.as_str()).collect();
    let chain = paths.chain.display().to_string();
    assert_eq!(
        ids,
        vec![
            "efrikort".to_string(),
            "efrikort#1".into(),
            "efrikort#2".into(),
            chain.clone(),
            format!("{chain}#1")
        ]
    );
    let second = entry(&inv, "efrikort#1");
    assert_eq!(second.index, 1);
    assert_eq!(second.format, "pem");
    assert_eq!(second.path, paths.fullchain);
    assert!(
        second
            .cert
            .subject
            .contains("TEST SITHS e-id Function CA v1")
    );
    assert_eq!(entry(&inv, "efrikort").key_check, KeyCheck::NotConfigured);
    assert_eq!((inv.files_seen, inv.files_parsed), (2, 2));
}

#[test]
fn pkcs12_sources_with_password_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(CaShape::BuypassSeid2).expect("ca");
    let c = ca
        .issue(&LeafSpec::seid2("100101696", "TESTVIRKSOMHET").key_type(KeyType::EcP256))
        .expect("issue");
    let p12 = c
        .write_pkcs12(&dir.path().join("nhn.p12"), "passord")
        .expect("p12");
    let wrong = dir.path().join("wrong.pass");
    fs::write(&wrong, "ikke-passord\n").expect("write");
    let missing = dir.path().join("missing.pass");

    let mut scanner = Scanner::default();
    let inv = scanner.scan(&[
        with_password(managed("nhn", &p12.bundle, None), &p12.password_file),
        with_password(managed("nhn-wrong", &p12.bundle, None), &wrong),
        managed("nhn-none", &p12.bundle, None),
        with_password(managed("nhn-missing", &p12.bundle, None), &missing),
    ]);

    let ok = entry(&inv, "nhn");
    assert_eq!(ok.format, "pkcs12");
    assert_eq!(
        ok.cert.identities,
        vec![NordicIdentity::NoOrgNumber {
            orgnr: "100101696".into(),
            seid: 2
        }]
    );
    assert_eq!(entry(&inv, "nhn#2").index, 2);

    let by_id = |id: &str| {
        inv.problems
            .iter()
            .filter(|p| p.id == id)
            .collect::<Vec<_>>()
    };
    let wrong_p = by_id("nhn-wrong");
    assert_eq!(wrong_p.len(), 1);
    assert_eq!(wrong_p[0].kind, ProblemKind::Pkcs12Password);
    assert!(
        wrong_p[0].message.contains(&format!(
            "the password in {} does not open",
            wrong.display()
        )),
        "{}",
        wrong_p[0].message
    );
    assert!(
        wrong_p[0]
            .message
            .starts_with(&p12.bundle.display().to_string())
    );

    let none = by_id("nhn-none");
    assert_eq!(none[0].kind, ProblemKind::Pkcs12Password);
    assert!(
        none[0].message.contains("set pkcs12_password_file"),
        "{}",
        none[0].message
    );

    // The missing password file is a problem of its own, and the bundle says why it is shut.
    let mut missing_p = by_id("nhn-missing");
    missing_p.sort_by_key(|p| p.kind);
    assert_eq!(
        missing_p.iter().map(|p| p.kind).collect::<Vec<_>>(),
        vec![ProblemKind::Missing, ProblemKind::Pkcs12Password]
    );
    assert_eq!(missing_p[0].path, missing.display().to_string());
    assert!(
        missing_p[1].message.contains("could not be read"),
        "{}",
        missing_p[1].message
    );
}

#[test]
fn each_bad_file_has_its_problem_and_good_files_are_still_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("certs");
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let good1 = tls(&ca, "good1.example");
    let good2 = tls(&ca, "good2.example");
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join("a-good.pem"), &good1.cert_pem).expect("write");
    fs::write(d.join("z-good.pem"), &good2.cert_pem).expect("write");
    let limit = 64 * 1024;

    let empty = badfiles::write_empty(&d.join("empty.pem")).expect("empty");
    let garbage = badfiles::write_garbage(&d.join("garbage.pem"), 300).expect("garbage");
    let truncated = badfiles::write_truncated_pem(&d.join("truncated.pem"), &good1.cert_pem)
        .expect("truncated");
    let key_only =
        badfiles::write_key_only_pem(&d.join("key-only.pem"), &good1.key_pem).expect("key");
    let cut_der = badfiles::write_truncated_der(&d.join("cut.pem"), &good1.cert_der).expect("cut");
    let directory = badfiles::make_directory(&d.join("directory.pem")).expect("dir");
    let (loop_a, loop_b) =
        badfiles::make_symlink_loop(&d.join("loop-a.pem"), &d.join("loop-b.pem")).expect("loop");
    let dangling = badfiles::make_dangling_symlink(&d.join("dangling.pem")).expect("dangling");
    let huge = badfiles::write_huge(&d.join("huge.pem"), limit + 1).expect("huge");
    let unreadable =
        badfiles::write_unreadable(&d.join("unreadable.pem"), good1.cert_pem.as_bytes())
            .expect("unreadable");
    fs::write(d.join(".hidden.pem"), "not scanned").expect("hidden");
    let missing = dir.path().join("missing.pem");
    let no_match = dir.path().join("nothing-here/*.pem");

    let mut scanner = Scanner::new(limit);
    let inv = scanner.scan(&[
        watched(&d.join("*.pem")),
        watched(&missing),
        watched(&no_match),
    ]);

    let good: Vec<&str> = inv
        .entries
        .iter()
        .map(|e| e.cert.subject.as_str())
        .collect();
    let permissions_bite = badfiles::permissions_bite(dir.path());
    if permissions_bite {
        assert_eq!(good, vec!["CN=good1.example", "CN=good2.example"]);
    } else {
        // As root the mode-000 file is read like any other.
        assert_eq!(
            good,
            vec!["CN=good1.example", "CN=good1.example", "CN=good2.example"]
        );
    }

    let expect = [
        (&empty, ProblemKind::NotCertificate, "is empty"),
        (&garbage, ProblemKind::NotCertificate, "neither"),
        (&truncated, ProblemKind::Malformed, "cut off"),
        (
            &key_only,
            ProblemKind::NotCertificate,
            "holds a private key but no certificate",
        ),
        (&cut_der, ProblemKind::Malformed, "DER certificate"),
        (&directory, ProblemKind::IsDirectory, "is a directory"),
        (&loop_a, ProblemKind::SymlinkLoop, "symbolic link loop"),
        (&loop_b, ProblemKind::SymlinkLoop, "symbolic link loop"),
        (
            &dangling,
            ProblemKind::Missing,
            "symbolic link to a file that does not exist",
        ),
        (
            &huge,
            ProblemKind::TooLarge,
            "larger than max_file_size (65536 bytes)",
        ),
        (&missing, ProblemKind::Missing, "does not exist"),
    ];
    for (path, kind, words) in expect {
        let p = problem(&inv, path);
        assert_eq!(p.kind, kind, "{}: {}", path.display(), p.message);
        assert!(p.message.contains(words), "{}", p.message);
        assert!(
            p.message.starts_with(&path.display().to_string()),
            "{}",
            p.message
        );
        assert_eq!(p.id, path.display().to_string());
    }
    let nm = problem(&inv, &no_match);
    assert_eq!(nm.kind, ProblemKind::NoMatch);
    assert!(nm.message.contains("matches no file"), "{}", nm.message);
    if permissions_bite {
        let p = problem(&inv, &unreadable);
        assert_eq!(p.kind, ProblemKind::Unreadable);
        assert!(p.message.contains("Permission denied"), "{}", p.message);
    }
    assert!(
        !inv.problems.iter().any(|p| p.path.contains(".hidden")),
        "{:#?}",
        inv.problems
    );
    // The huge file and the directory were never read.
    let expected_problems = if permissions_bite { 13 } else { 12 };
    assert_eq!(inv.problems.len(), expected_problems, "{:#?}", inv.problems);
}

#[test]
fn managed_file_is_not_reported_twice_by_a_watch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let c = tls(&ca, "m.example");
    let paths = c.write_pem(dir.path(), "m").expect("write");
    let mut scanner = Scanner::default();
    let inv = scanner.scan(&[
        watched(&dir.path().join("*.cert.pem")),
        managed("m", &paths.cert, Some(&paths.key)),
        watched(&dir.path().join("m.*.pem")),
    ]);
    let ids: Vec<&str> = inv.entries.iter().map(|e| e.id.as_str()).collect();
    let chain = paths.chain.display().to_string();
    let fullchain = paths.fullchain.display().to_string();
    // The key file matched by `m.*.pem` is a NotCertificate problem, reported once.
    // Root-only CA: the chain file holds the root, the full chain the leaf and the root.
    assert_eq!(
        ids,
        vec![
            "m",
            chain.as_str(),
            fullchain.as_str(),
            &format!("{fullchain}#1")
        ]
    );
    assert_eq!(inv.problems.len(), 1, "{:#?}", inv.problems);
    assert_eq!(inv.problems[0].kind, ProblemKind::NotCertificate);
    assert_eq!(entry(&inv, "m").key_check, KeyCheck::Matches);
}

// ----- key check -----

#[test]
fn key_check_matches_in_every_key_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    for key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let c = ca
            .issue(&LeafSpec::tls_server(&["k.example"]).key_type(key_type))
            .expect("issue");
        let cert = dir.path().join("k.pem");
        fs::write(&cert, &c.cert_pem).expect("cert");
        let (label, traditional_der) = c.key_traditional_der().expect("traditional");
        let forms: Vec<(&str, Vec<u8>)> = vec![
            ("pkcs8.pem", c.key_pem.clone().into_bytes()),
            (
                "traditional.pem",
                c.key_traditional_pem().expect("pem").into_bytes(),
            ),
            ("pkcs8.der", c.key_pkcs8_der.clone()),
            ("traditional.der", traditional_der),
            // Key and certificate in one file, key second.
            (
                "combined.pem",
                format!("{}{}", c.cert_pem, c.key_pem).into_bytes(),
            ),
        ];
        for (name, bytes) in forms {
            let key = dir.path().join(name);
            fs::write(&key, bytes).expect("key");
            let inv = Scanner::default().scan(&[managed("k", &cert, Some(&key))]);
            assert!(
                inv.problems.is_empty(),
                "{key_type:?} {label} {name}: {:#?}",
                inv.problems
            );
            assert_eq!(
                inv.entries[0].key_check,
                KeyCheck::Matches,
                "{key_type:?} {name}"
            );
        }
    }
}

#[test]
fn key_of_another_certificate_is_a_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(CaShape::Oces3).expect("ca");
    let spec = LeafSpec::oces3("12345678", "0443b8ae-dfd0-48c1-8af4-b9993cbce492", "FMK")
        .key_type(KeyType::EcP256);
    let old = ca
        .issue(&spec)
        .expect("old")
        .write_pem(dir.path(), "old")
        .expect("write");
    let new = ca
        .issue(&spec)
        .expect("new")
        .write_pem(dir.path(), "new")
        .expect("write");
    let mut scanner = Scanner::default();
    let inv = scanner.scan(&[managed("fmk-prod", &new.cert, Some(&old.key))]);
    assert_eq!(inv.entries.len(), 1);
    assert_eq!(inv.entries[0].key_check, KeyCheck::Mismatch);
    assert_eq!(inv.problems.len(), 1);
    let p = &inv.problems[0];
    assert_eq!(p.kind, ProblemKind::KeyMismatch);
    assert_eq!(p.id, "fmk-prod");
    assert_eq!(p.path, old.key.display().to_string());
    assert_eq!(
        p.message,
        format!(
            "key {} does not belong to certificate {} (fmk-prod); the pair must be restored before the service using it can start",
            old.key.display(),
            new.cert.display()
        )
    );
    // Only the first certificate of a managed file is checked against the key.
    let inv = scanner.scan(&[managed("fmk-prod", &new.fullchain, Some(&new.key))]);
    assert_eq!(
        inv.entries.iter().map(|e| e.key_check).collect::<Vec<_>>(),
        vec![
            KeyCheck::Matches,
            KeyCheck::NotConfigured,
            KeyCheck::NotConfigured
        ]
    );
}

/// Flips every saved verdict, so a scan that uses a saved check (instead of reading the
/// key) shows it.
fn flipped(checks: Vec<SavedKeyCheck>) -> Vec<SavedKeyCheck> {
    let mut value = serde_json::to_value(checks).expect("to json");
    for check in value.as_array_mut().expect("array") {
        let matches = check["matches"].as_bool().expect("matches");
        check["matches"] = (!matches).into();
    }
    serde_json::from_value(value).expect("from json")
}

#[test]
fn saved_key_checks_spare_reading_keys_until_a_file_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(CaShape::Oces3).expect("ca");
    let spec = LeafSpec::tls_server(&["a.example"]).key_type(KeyType::EcP256);
    let a = ca
        .issue(&spec)
        .expect("a")
        .write_pem(dir.path(), "a")
        .expect("write");
    let b = ca
        .issue(&spec)
        .expect("b")
        .write_pem(dir.path(), "b")
        .expect("write");
    let sources = [managed("a", &a.cert, Some(&a.key))];

    let mut first = Scanner::default();
    assert_eq!(first.saved_key_checks(), None, "nothing checked yet");
    assert_eq!(
        entry(&first.scan(&sources), "a").key_check,
        KeyCheck::Matches
    );
    let saved = first
        .saved_key_checks()
        .expect("a new verdict is to be saved");
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].path, a.key);
    // No key material in what is saved: only the path, the stamp and a digest.
    let text = serde_json::to_string(&saved).expect("json");
    let key_pem = fs::read_to_string(&a.key).expect("key");
    let key_body = key_pem.lines().nth(1).expect("a line of base64");
    assert!(!text.contains(key_body), "{text}");
    first.scan(&sources);
    assert_eq!(
        first.saved_key_checks(),
        None,
        "nothing changed, nothing to save"
    );

    // A new scanner given the saved checks (flipped, to see them used) reads no key.
    let mut next = Scanner::default();
    next.restore_key_checks(flipped(saved.clone()));
    assert_eq!(
        entry(&next.scan(&sources), "a").key_check,
        KeyCheck::Mismatch
    );
    assert_eq!(next.saved_key_checks(), None, "restored, not changed");

    // Another certificate with the same key path: the saved check is not about it.
    let mut other_cert = Scanner::default();
    other_cert.restore_key_checks(flipped(saved.clone()));
    let inv = other_cert.scan(&[managed("a", &b.cert, Some(&a.key))]);
    assert_eq!(
        entry(&inv, "a").key_check,
        KeyCheck::Mismatch,
        "read: b's cert, a's key"
    );
    let inv = other_cert.scan(&[managed("a", &a.cert, Some(&a.key))]);
    assert_eq!(
        entry(&inv, "a").key_check,
        KeyCheck::Matches,
        "read again, not the saved one"
    );

    // The key file rewritten (same content, new stamp): read again.
    fs::write(&a.key, fs::read(&a.key).expect("read")).expect("rewrite");
    let mut after_write = Scanner::default();
    after_write.restore_key_checks(flipped(saved));
    assert_eq!(
        entry(&after_write.scan(&sources), "a").key_check,
        KeyCheck::Matches
    );
    let resaved = after_write
        .saved_key_checks()
        .expect("read again, so saved again");
    assert_eq!(resaved.len(), 1);

    // An unreadable key is never saved, and its old verdict leaves the saved checks.
    fs::write(&a.key, "not a key").expect("spoil");
    let inv = after_write.scan(&sources);
    assert_eq!(entry(&inv, "a").key_check, KeyCheck::Unreadable);
    assert_eq!(after_write.saved_key_checks(), Some(Vec::new()));
    // Nothing saved is about a key no longer configured: dropping it changes nothing.
    after_write.scan(&[managed("a", &a.cert, None)]);
    assert_eq!(after_write.saved_key_checks(), None);

    // A saved check about a key no longer configured is dropped at the next scan.
    let mut dropped = Scanner::default();
    dropped.restore_key_checks(resaved);
    dropped.scan(&[managed("a", &a.cert, None)]);
    assert_eq!(dropped.saved_key_checks(), Some(Vec::new()));
}

#[test]
fn unreadable_keys_are_reported_without_their_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let c = tls(&ca, "u.example");
    let paths = c.write_pem(dir.path(), "u").expect("write");
    let encrypted = dir.path().join("encrypted.pem");
    fs::write(&encrypted, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n").expect("write");
    let garbage = badfiles::write_garbage(&dir.path().join("garbage.key"), 200).expect("garbage");
    let missing = dir.path().join("missing.key");
    let key_body: String = c.key_pem.lines().nth(1).expect("a base64 line").to_string();

    for (key, words) in [
        (&encrypted, "is encrypted"),
        (&garbage, "holds no private key"),
        (&missing, "does not exist"),
        (&paths.cert, "holds no private key"),
    ] {
        let inv = Scanner::default().scan(&[managed("u", &paths.cert, Some(key))]);
        assert_eq!(
            inv.entries[0].key_check,
            KeyCheck::Unreadable,
            "{}",
            key.display()
        );
        assert_eq!(inv.problems.len(), 1);
        let p = &inv.problems[0];
        assert_eq!(p.kind, ProblemKind::KeyUnreadable);
        assert!(
            p.message.starts_with(&format!("key {} ", key.display())),
            "{}",
            p.message
        );
        assert!(p.message.contains(words), "{}", p.message);
        assert!(!p.message.contains(&key_body));
    }
}

// ----- cache -----

#[test]
fn rescans_read_only_changed_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let mut files = Vec::new();
    for i in 0..5 {
        let path = dir.path().join(format!("c{i}.pem"));
        fs::write(&path, tls(&ca, &format!("c{i}.example")).cert_pem).expect("write");
        files.push(path);
    }
    let p12 = tls(&ca, "p.example")
        .write_pkcs12(&dir.path().join("p.p12"), "pw")
        .expect("p12");
    let key_pair = tls(&ca, "k.example")
        .write_pem(&dir.path().join("managed"), "k")
        .expect("pem");
    let sources = vec![
        with_password(watched(&dir.path().join("*.p12")), &p12.password_file),
        watched(&dir.path().join("c*.pem")),
        managed("k", &key_pair.cert, Some(&key_pair.key)),
    ];

    let mut scanner = Scanner::default();
    let first = scanner.scan(&sources);
    assert_eq!((first.files_seen, first.files_parsed), (7, 7));
    assert!(first.problems.is_empty(), "{:#?}", first.problems);

    let second = scanner.scan(&sources);
    assert_eq!((second.files_seen, second.files_parsed), (7, 0));
    assert_eq!(second.entries, first.entries);

    // Rewrite one file with other content: exactly that one is read again.
    fs::write(&files[2], tls(&ca, "changed.example").cert_pem).expect("rewrite");
    let third = scanner.scan(&sources);
    assert_eq!((third.files_seen, third.files_parsed), (7, 1));
    assert!(
        third
            .entries
            .iter()
            .any(|e| e.cert.subject == "CN=changed.example")
    );

    // A new password file (same path, other content) re-reads the bundle that uses it.
    fs::write(&p12.password_file, "wrong\n").expect("password");
    let fourth = scanner.scan(&sources);
    assert_eq!(fourth.files_parsed, 1);
    assert_eq!(fourth.problems.len(), 1);
    assert_eq!(fourth.problems[0].kind, ProblemKind::Pkcs12Password);

    // Deleted files leave the cache and the inventory.
    fs::remove_file(&files[0]).expect("rm");
    let fifth = scanner.scan(&sources);
    assert_eq!((fifth.files_seen, fifth.files_parsed), (6, 0));
    assert!(!fifth.entries.iter().any(|e| e.path == files[0]));
    assert!(!scanner.paths_in_use().contains(&files[0]));
    assert!(scanner.paths_in_use().contains(&key_pair.key));
    assert!(scanner.paths_in_use().contains(&p12.password_file));
    assert!(fifth.scanned_at >= first.scanned_at && fifth.scanned_at > 1_700_000_000);
}

#[test]
fn many_files_scan_in_parallel_and_agree_with_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = certvakt_testkit::write_many(dir.path(), 200).expect("many");
    let mut scanner = Scanner::default();
    let inv = scanner.scan(&[watched(&dir.path().join("*.pem"))]);
    assert_eq!((inv.entries.len(), inv.files_parsed), (200, 200));
    assert!(inv.problems.is_empty());
    // Entries stay in file order, whatever thread parsed them.
    let in_order: Vec<PathBuf> = inv.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(in_order, paths);
    let single = only(&fs::read(&paths[137]).expect("read"));
    assert_eq!(*inv.entries[137].cert, single);
}

#[test]
fn max_file_size_change_drops_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let path = dir.path().join("c.pem");
    fs::write(&path, tls(&ca, "s.example").cert_pem).expect("write");
    let sources = [watched(&path)];
    let mut scanner = Scanner::new(100);
    assert_eq!(
        scanner.scan(&sources).problems[0].kind,
        ProblemKind::TooLarge
    );
    scanner.set_max_file_size(DEFAULT_MAX_FILE_SIZE);
    let inv = scanner.scan(&sources);
    assert_eq!((inv.entries.len(), inv.files_parsed), (1, 1));
}

// ----- a scan short of open files -----

/// Names the test a child process of this test binary is to run (see [`in_child_process`]).
const CHILD: &str = "CERTVAKT_TEST_CHILD";

/// Runs `test` (its full name) again in a child process of this test binary, alone, with
/// [`CHILD`] naming it, and checks that it passed there; true only in that child, where the
/// test does its work. For tests that change what belongs to the whole process (its limit of
/// open files) and must not disturb the tests running beside them.
fn in_child_process(test: &str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("run the test in a child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed in its child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// While alive, this process cannot open one more file (`EMFILE`): its soft limit of open
/// files is the lowest free descriptor. Restores the limit when dropped.
struct NoMoreOpenFiles {
    soft: u64,
    hard: u64,
}

impl NoMoreOpenFiles {
    fn now() -> NoMoreOpenFiles {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        use std::os::fd::AsRawFd as _;
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let lowest_free = fs::File::open("/dev/null").expect("open").as_raw_fd();
        let lowest_free = u64::try_from(lowest_free).expect("a descriptor");
        setrlimit(Resource::RLIMIT_NOFILE, lowest_free, hard).expect("setrlimit");
        assert!(fs::File::open("/dev/null").is_err(), "the limit holds");
        NoMoreOpenFiles { soft, hard }
    }
}

impl Drop for NoMoreOpenFiles {
    fn drop(&mut self) {
        let _ = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            self.soft,
            self.hard,
        );
    }
}

fn ids(inv: &Inventory) -> Vec<&str> {
    inv.entries.iter().map(|e| e.id.as_str()).collect()
}

#[test]
fn a_scan_short_of_open_files_keeps_what_it_knew_and_says_so() {
    if !in_child_process(
        "inventory::tests::a_scan_short_of_open_files_keeps_what_it_knew_and_says_so",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::root_only(CaShape::Tls).expect("ca");
    let folder = dir.path().join("watched");
    fs::create_dir(&folder).expect("mkdir");
    for i in 0..3 {
        let name = format!("c{i}.example");
        fs::write(folder.join(format!("c{i}.pem")), tls(&ca, &name).cert_pem).expect("write");
    }
    let pair = tls(&ca, "k.example")
        .write_pem(&dir.path().join("managed"), "k")
        .expect("pem");
    let sources = vec![
        watched(&folder.join("*.pem")),
        managed("k", &pair.cert, Some(&pair.key)),
    ];
    let mut scanner = Scanner::default();
    let first = scanner.scan(&sources);
    assert_eq!(first.entries.len(), 4, "{:#?}", first.problems);
    assert!(first.problems.is_empty() && first.is_complete());

    // Files change and a new one arrives while the daemon cannot open anything.
    fs::write(folder.join("c1.pem"), tls(&ca, "changed.example").cert_pem).expect("write");
    fs::write(folder.join("c9.pem"), tls(&ca, "new.example").cert_pem).expect("write");
    let cert = fs::read(&pair.cert).expect("read");
    let key = fs::read(&pair.key).expect("read");
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&pair.cert, &cert).expect("rewrite");
    fs::write(&pair.key, &key).expect("rewrite");
    let short = {
        let _limit = NoMoreOpenFiles::now();
        scanner.scan(&sources)
    };
    // Everything the first scan found is still there, as it was, the key's verdict too.
    assert_eq!(ids(&short), ids(&first));
    assert_eq!(short.entries, first.entries);
    assert_eq!(entry(&short, "k").key_check, KeyCheck::Matches);
    // One problem per source says why, and no "unreadable" one sends anyone to fix access.
    let kinds: Vec<ProblemKind> = short.problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [ProblemKind::ScanIncomplete, ProblemKind::ScanIncomplete],
        "{:#?}",
        short.problems
    );
    for p in &short.problems {
        assert!(
            p.message
                .starts_with("scan incomplete: too many open files")
                && p.message.contains("what the last scan found there is kept")
                && !p.message.contains("access"),
            "{}",
            p.message
        );
    }
    assert_eq!(
        problem(&short, &folder.join("*.pem")).id,
        folder.join("*.pem").display().to_string()
    );
    assert_eq!(problem(&short, &pair.cert).id, "k");
    assert!(!short.is_complete());

    // With files to open again, the next scan sees everything as it is now.
    let after = scanner.scan(&sources);
    assert!(after.problems.is_empty(), "{:#?}", after.problems);
    assert!(after.is_complete());
    assert_eq!(after.entries.len(), 5);
    assert!(
        after
            .entries
            .iter()
            .any(|e| e.cert.subject == "CN=changed.example")
    );
    assert!(
        after
            .entries
            .iter()
            .any(|e| e.cert.subject == "CN=new.example")
    );
}

// ----- configuration -----

#[test]
fn sources_come_from_the_configuration_in_order() {
    use crate::config::{Config, ManagedCertificate, Origin, Watch};
    let origin = Origin {
        file: PathBuf::from("/etc/certvakt/certvakt.toml"),
        line: 1,
    };
    let mut config = Config::defaults();
    config.watch.push(Watch {
        paths: vec!["/etc/ssl/certs/*.pem".into(), "/etc/pki/nhn.p12".into()],
        pkcs12_password_file: Some(PathBuf::from("/etc/certvakt/nhn.pass")),
        origin: origin.clone(),
    });
    config.certificates.push(ManagedCertificate {
        id: "fmk-prod".into(),
        cert: PathBuf::from("/etc/certvakt/fmk/cert.pem"),
        key: Some(PathBuf::from("/etc/certvakt/fmk/key.pem")),
        plugin: "dk-fmk".into(),
        pkcs12_password_file: None,
        origin,
        renewal: Default::default(),
    });
    let sources = sources_from_config(&config);
    assert_eq!(
        sources,
        vec![
            Source {
                kind: SourceKind::Managed {
                    id: "fmk-prod".into(),
                    plugin: "dk-fmk".into(),
                    key: Some(PathBuf::from("/etc/certvakt/fmk/key.pem")),
                },
                path: "/etc/certvakt/fmk/cert.pem".into(),
                pkcs12_password_file: None,
            },
            Source {
                kind: SourceKind::Watched {
                    pattern: "/etc/ssl/certs/*.pem".into()
                },
                path: "/etc/ssl/certs/*.pem".into(),
                pkcs12_password_file: Some(PathBuf::from("/etc/certvakt/nhn.pass")),
            },
            Source {
                kind: SourceKind::Watched {
                    pattern: "/etc/pki/nhn.p12".into()
                },
                path: "/etc/pki/nhn.p12".into(),
                pkcs12_password_file: Some(PathBuf::from("/etc/certvakt/nhn.pass")),
            },
        ]
    );
}

#[test]
fn the_sample_set_scans_as_its_manifest_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = certvakt_testkit::write_sample_set(dir.path()).expect("sample");
    let mut sources: Vec<Source> = manifest
        .watch_patterns
        .iter()
        .map(|p| with_password(watched(Path::new(p)), &manifest.pkcs12_password_file))
        .collect();
    for m in &manifest.managed {
        sources.push(managed(&m.id, &m.cert, Some(&m.key)));
    }
    let inv = Scanner::default().scan(&sources);
    let now = crate::now_unix();
    for f in manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with(dir.path().join("watched")))
    {
        let path = f.path.display().to_string();
        if f.kind == "broken" {
            let p = problem(&inv, &f.path);
            assert_eq!(p.kind.as_str(), f.expect, "{path}");
        } else if f.kind != "password" {
            let e = entry(&inv, &path);
            assert_eq!(
                e.cert.state_at(now, 30 * 86_400).as_str(),
                f.expect,
                "{path}"
            );
            assert_eq!(
                inv.entries.iter().filter(|e| e.path == f.path).count(),
                f.certificates,
                "{path}"
            );
        }
    }
    for m in &manifest.managed {
        assert_eq!(entry(&inv, &m.id).key_check, KeyCheck::Matches, "{}", m.id);
    }
    assert_eq!(inv.problems.len(), 3, "{:#?}", inv.problems);
}

#[test]
fn many_keys_checked_together_give_the_same_verdicts_as_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(CaShape::Tls).expect("ca");
    let n = 2 * super::scan::PARALLEL_THRESHOLD;
    let pairs: Vec<_> = (0..n)
        .map(|i| {
            let key_type = match i {
                0 => KeyType::Rsa2048,
                i if i % 3 == 0 => KeyType::EcP384,
                _ => KeyType::EcP256,
            };
            ca.issue(&LeafSpec::tls_server(&[&format!("k{i}.example")]).key_type(key_type))
                .expect("issue")
                .write_pem(dir.path(), &format!("k{i}"))
                .expect("write")
        })
        .collect();
    // Two keys swapped (a mismatch each), one key that is a FIFO (never read: named).
    let fifo = dir.path().join("fifo.key");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let key_of = |i: usize| match i {
        1 => pairs[2].key.clone(),
        2 => pairs[1].key.clone(),
        5 => fifo.clone(),
        i => pairs[i].key.clone(),
    };
    let sources: Vec<Source> = (0..n)
        .map(|i| managed(&format!("c{i}"), &pairs[i].cert, Some(&key_of(i))))
        .collect();
    let mut scanner = Scanner::default();
    let together = scanner.scan(&sources);
    let one_by_one: Vec<KeyCheck> = (0..n)
        .map(|i| Scanner::default().scan(&sources[i..=i]).entries[0].key_check)
        .collect();
    let checks: Vec<KeyCheck> = together.entries.iter().map(|e| e.key_check).collect();
    assert_eq!(checks, one_by_one);
    assert_eq!(checks[1], KeyCheck::Mismatch);
    assert_eq!(checks[2], KeyCheck::Mismatch);
    assert_eq!(checks[5], KeyCheck::Unreadable);
    assert_eq!(
        checks.iter().filter(|c| **c == KeyCheck::Matches).count(),
        n - 3
    );
    // A rescan of unchanged files reads no key again and says the same.
    let again = scanner.scan(&sources);
    assert_eq!(
        again
            .entries
            .iter()
            .map(|e| e.key_check)
            .collect::<Vec<_>>(),
        checks
    );
}
