//! The SEID CAs' sets read back with x509-parser and OpenSSL, not with the kit's own idea of
//! what it wrote.

use std::path::Path;
use std::process::Command;

use x509_parser::extensions::{KeyUsage, ParsedExtension};
use x509_parser::prelude::*;

use rcgen::PublicKeyData;

use super::*;

const OID_ORG_ID: &str = "2.5.4.97";
const OID_SERIAL: &str = "2.5.4.5";
const OID_C: &str = "2.5.4.6";
const OID_O: &str = "2.5.4.10";
const OID_CN: &str = "2.5.4.3";
const OID_SN: &str = "2.5.4.4";
const OID_GN: &str = "2.5.4.42";

fn order() -> SetOrder {
    // RSA 2048 instead of the real 3072: the tests make many keys.
    SetOrder::new("100101696", "TESTVIRKSOMHET").key_type(KeyType::Rsa2048)
}

/// (OID, value) of a name in DER order.
fn name_attrs(name: &X509Name<'_>) -> Vec<(String, String)> {
    name.iter_attributes()
        .map(|a| {
            (
                a.attr_type().to_id_string(),
                a.as_str().expect("string attribute").to_string(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

struct Read {
    subject: Vec<(String, String)>,
    issuer: Vec<(String, String)>,
    serial_raw: Vec<u8>,
    serial_decimal: String,
    serial_hex: String,
    key_usage: KeyUsage,
    key_usage_critical: bool,
    policies: Vec<String>,
    has_eku: bool,
    not_before: i64,
    not_after: i64,
    key_bits: usize,
}

fn read(der: &[u8]) -> Read {
    let (rest, cert) = parse_x509_certificate(der).expect("certificate parses");
    assert!(rest.is_empty());
    let mut key_usage = None;
    let mut policies = Vec::new();
    let mut has_eku = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => key_usage = Some((*ku, ext.critical)),
            ParsedExtension::CertificatePolicies(p) => {
                policies = p.iter().map(|i| i.policy_id.to_id_string()).collect();
            }
            ParsedExtension::ExtendedKeyUsage(_) => has_eku = true,
            _ => {}
        }
    }
    let (key_usage, key_usage_critical) = key_usage.expect("a KeyUsage extension");
    let key_bits = match cert.public_key().parsed().expect("public key") {
        x509_parser::public_key::PublicKey::RSA(rsa) => rsa.key_size(),
        other => panic!("not RSA: {other:?}"),
    };
    Read {
        subject: name_attrs(cert.subject()),
        issuer: name_attrs(cert.issuer()),
        serial_raw: cert.raw_serial().to_vec(),
        serial_decimal: cert.serial.to_string(),
        serial_hex: cert.serial.to_str_radix(16),
        key_usage,
        key_usage_critical,
        policies,
        has_eku,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key_bits,
    }
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (scripts/install-test-deps)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl pkcs12` opens the file with the password and finds a key and `certs` certificates.
fn assert_openssl_reads(path: &Path, password: &str, certs: usize) {
    let pass = format!("pass:{password}");
    let path = path.to_str().expect("utf-8 path");
    let (ok, text) = openssl(&["pkcs12", "-info", "-noout", "-in", path, "-passin", &pass]);
    assert!(ok, "openssl pkcs12 -info {path}: {text}");
    assert!(text.contains("MAC: "), "{text}");
    let (ok, text) = openssl(&[
        "pkcs12",
        "-in",
        path,
        "-passin",
        &pass,
        "-nodes",
        "-out",
        "/dev/stdout",
    ]);
    assert!(ok, "{text}");
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), certs, "{text}");
    assert_eq!(text.matches("BEGIN PRIVATE KEY").count(), 1, "{text}");
    let (ok, text) = openssl(&[
        "pkcs12",
        "-info",
        "-noout",
        "-in",
        path,
        "-passin",
        "pass:wrong",
    ]);
    assert!(!ok, "a wrong password opened {path}: {text}");
}

/// `openssl verify` accepts `leaf_pem` under the set's root and intermediate.
fn assert_chain_verifies(dir: &Path, root_pem: &str, intermediate_pem: &str, leaf_pem: &str) {
    let root = dir.join("root.pem");
    let inter = dir.join("intermediate.pem");
    let leaf = dir.join("leaf.pem");
    std::fs::write(&root, root_pem).expect("write");
    std::fs::write(&inter, intermediate_pem).expect("write");
    std::fs::write(&leaf, leaf_pem).expect("write");
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().expect("utf-8"),
        "-untrusted",
        inter.to_str().expect("utf-8"),
        leaf.to_str().expect("utf-8"),
    ]);
    assert!(ok && text.contains(": OK"), "{text}");
}

#[test]
fn serial_spellings_follow_the_value() {
    // The Buypass profile's serials (no-nhn.md §1.2).
    let serial = SeidSerial::from_bytes(&[
        0x01, 0x8c, 0xba, 0x17, 0xf4, 0xf5, 0xb4, 0x02, 0x14, 0x7c, 0xa9,
    ])
    .expect("serial");
    assert_eq!(serial.decimal(), "1873489947888800148782249");
    assert_eq!(serial.hex(), "18cba17f4f5b402147ca9");
    assert_eq!(serial.bytes_hex(), "018cba17f4f5b402147ca9");
    // A DER leading zero is not part of the value.
    let high = SeidSerial::from_bytes(&[0x00, 0x8c, 0xbb]).expect("serial");
    assert_eq!(high.bytes(), &[0x8c, 0xbb]);
    assert_eq!(high.decimal(), "36027");
    assert!(SeidSerial::from_bytes(&[1; 17]).is_err());
    assert!(SeidSerial::from_bytes(&[]).is_err());
}

#[test]
fn a_buypass_set_is_two_p12_files_with_the_seid2_profile() {
    let ca = SeidCa::buypass().expect("ca");
    let set = ca.issue_set(&order()).expect("set");
    assert_eq!(set.certs.len(), 2);
    assert_eq!(
        set.files
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [
            "buypass-100101696-auth-enc.p12",
            "buypass-100101696-signing.p12"
        ]
    );
    let auth = read(
        &set.cert(SeidRole::AuthEncryption)
            .expect("auth")
            .issued
            .cert_der,
    );
    let sign = read(&set.cert(SeidRole::Signing).expect("sign").issued.cert_der);
    let subject = pairs(&[
        (OID_C, "NO"),
        (OID_O, "TESTVIRKSOMHET"),
        (OID_CN, "TESTVIRKSOMHET"),
        (OID_ORG_ID, "NTRNO-100101696"),
    ]);
    let issuer = pairs(&[
        (OID_C, "NO"),
        (OID_ORG_ID, "NTRNO-983163327"),
        (OID_O, "Buypass AS"),
        (OID_CN, "Buypass Class 3 Test4 CA G2 ST Business"),
    ]);
    for (cert, seid) in [(&auth, &set.certs[0]), (&sign, &set.certs[1])] {
        assert_eq!(cert.subject, subject);
        assert_eq!(cert.issuer, issuer);
        assert_eq!(cert.serial_raw.len(), 11, "{:02x?}", cert.serial_raw);
        assert_eq!(cert.serial_raw[0], 0x01);
        assert_eq!(seid.serial.bytes(), cert.serial_raw.as_slice());
        assert_eq!(seid.serial.decimal(), cert.serial_decimal);
        assert_eq!(seid.serial.hex(), cert.serial_hex);
        assert!(cert.key_usage_critical);
        assert!(!cert.has_eku);
        assert_eq!(cert.key_bits, 2048);
        assert_eq!(cert.not_after - cert.not_before, 3 * 365 * 86_400);
    }
    assert_ne!(auth.serial_raw, sign.serial_raw);
    assert_eq!(auth.not_before, sign.not_before);
    assert!(auth.key_usage.digital_signature() && auth.key_usage.key_encipherment());
    assert!(!auth.key_usage.non_repudiation() && !auth.key_usage.data_encipherment());
    assert!(sign.key_usage.non_repudiation());
    assert!(!sign.key_usage.digital_signature() && !sign.key_usage.key_encipherment());
    assert_eq!(auth.policies, [BUYPASS_TEST_POLICY, ETSI_NCP]);
    assert_eq!(sign.policies, [BUYPASS_TEST_POLICY, ETSI_QCP_L]);

    let dir = tempfile::tempdir().expect("tempdir");
    let paths = set.write_files(dir.path()).expect("write");
    for path in &paths {
        assert_openssl_reads(path, DEFAULT_SET_PASSWORD, 3);
    }
    for cert in &set.certs {
        assert_chain_verifies(
            dir.path(),
            &set.root_pem,
            &set.intermediate_pem,
            &cert.issued.cert_pem,
        );
    }
    assert!(set.trust_pem().contains(&set.root_pem));
    assert!(set.trust_pem().contains(&set.intermediate_pem));
}

#[test]
fn buypass_files_in_ber_and_legacy_form_open_in_openssl() {
    let ca = SeidCa::buypass().expect("ca");
    for form in [Pkcs12Form::Legacy, Pkcs12Form::Ber, Pkcs12Form::BerInside] {
        let set = ca
            .issue_set(&order().password("Hemmelig 123").form(form))
            .expect("set");
        let dir = tempfile::tempdir().expect("tempdir");
        for ((_, bytes), path) in set
            .files
            .iter()
            .zip(set.write_files(dir.path()).expect("write"))
        {
            match form {
                Pkcs12Form::Ber | Pkcs12Form::BerInside => {
                    assert_eq!(&bytes[..2], &[0x30, 0x80], "indefinite PFX")
                }
                _ => assert_ne!(bytes[1], 0x80),
            }
            assert_openssl_reads(&path, "Hemmelig 123", 3);
            let (_, text) = openssl(&[
                "pkcs12",
                "-info",
                "-noout",
                "-in",
                path.to_str().expect("utf-8"),
                "-passin",
                "pass:Hemmelig 123",
            ]);
            assert!(text.contains("MAC: sha1,"), "{form:?}: {text}");
            assert!(
                text.contains("Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC"),
                "{form:?}: {text}"
            );
        }
    }
}

#[test]
fn a_commfides_set_is_three_certificates_with_a_longer_lived_encryption_one() {
    let ca = SeidCa::commfides().expect("ca");
    let set = ca.issue_set(&order()).expect("set");
    assert_eq!(
        set.files
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [
            "commfides-100101696-authentication.p12",
            "commfides-100101696-encryption.p12",
            "commfides-100101696-signing.p12"
        ]
    );
    let issuer = pairs(&[
        (OID_C, "NO"),
        (OID_O, "Commfides Norge AS"),
        (OID_ORG_ID, "NTRNO-988312495"),
        (OID_CN, "Commfides Legal Person - G3 - TEST"),
    ]);
    let [auth, enc, sign] = [
        SeidRole::Authentication,
        SeidRole::Encryption,
        SeidRole::Signing,
    ]
    .map(|role| read(&set.cert(role).expect("role").issued.cert_der));
    for cert in [&auth, &enc, &sign] {
        assert_eq!(cert.issuer, issuer);
        assert_eq!(cert.serial_raw.len(), 11);
        assert_eq!(cert.serial_raw[0], 0x01);
        assert!(cert.key_usage_critical && !cert.has_eku);
        assert_eq!(cert.not_before, auth.not_before);
        assert_eq!(cert.subject, auth.subject);
    }
    assert!(auth.key_usage.digital_signature() && !auth.key_usage.key_encipherment());
    assert!(enc.key_usage.key_encipherment() && enc.key_usage.data_encipherment());
    assert!(!enc.key_usage.digital_signature());
    assert!(sign.key_usage.non_repudiation() && !sign.key_usage.digital_signature());
    assert_eq!(auth.policies, [COMMFIDES_TEST_AUTHENTICATION_POLICY]);
    assert_eq!(enc.policies, [COMMFIDES_TEST_ENCRYPTION_POLICY]);
    assert_eq!(sign.policies, [COMMFIDES_TEST_SIGNING_POLICY]);
    assert!(enc.not_after > auth.not_after && enc.not_after > sign.not_after);
    assert_eq!(auth.not_after, sign.not_after);
    for (cert, seid) in [&auth, &enc, &sign].into_iter().zip(&set.certs) {
        assert_eq!(seid.serial.hex(), cert.serial_hex);
        assert_eq!(
            seid.serial.hex().len(),
            21,
            "0x01 first: one digit, no padding"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for path in set.write_files(dir.path()).expect("write") {
        assert_openssl_reads(&path, DEFAULT_SET_PASSWORD, 3);
    }
}

#[test]
fn a_commfides_set_for_three_csrs_keeps_the_customer_keys() {
    let ca = SeidCa::commfides().expect("ca");
    let roles = [
        SeidRole::Authentication,
        SeidRole::Encryption,
        SeidRole::Signing,
    ];
    let keys = roles.map(|_| KeyType::EcP256.generate().expect("key"));
    let csrs: Vec<String> = keys
        .iter()
        .map(|key| {
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "what the customer asked");
            params
                .serialize_request(key)
                .expect("csr")
                .pem()
                .expect("pem")
        })
        .collect();
    let requests: Vec<(SeidRole, &str)> = roles
        .iter()
        .rev()
        .zip(csrs.iter().rev())
        .map(|(r, c)| (*r, c.as_str()))
        .collect();
    let set = ca.issue_from_csrs(&order(), &requests).expect("set");
    assert_eq!(set.files.len(), 3);
    assert!(set.files[1].0.ends_with("-encryption.pem"));
    let dir = tempfile::tempdir().expect("tempdir");
    set.write_files(dir.path()).expect("write");
    for (i, role) in roles.iter().enumerate() {
        let cert = set.cert(*role).expect("role");
        let (_, parsed) = parse_x509_certificate(&cert.cert_der).expect("parses");
        assert_eq!(
            parsed.public_key().raw,
            keys[i].subject_public_key_info().as_slice()
        );
        let read = read_any(&cert.cert_der);
        assert_eq!(
            read.0,
            pairs(&[
                (OID_C, "NO"),
                (OID_O, "TESTVIRKSOMHET"),
                (OID_CN, "TESTVIRKSOMHET"),
                (OID_ORG_ID, "NTRNO-100101696"),
            ])
        );
        assert_eq!(read.1.len(), 11);
        assert_eq!(read.2, role.policies(SeidVendor::Commfides));
        assert_eq!(
            cert.serial,
            SeidSerial::of_certificate(&cert.cert_der).expect("serial")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&set.files[i].0)).expect("file"),
            cert.chain_pem
        );
        assert_eq!(cert.chain_pem.matches("BEGIN CERTIFICATE").count(), 3);
        assert_chain_verifies(
            dir.path(),
            &set.root_pem,
            &set.intermediate_pem,
            &cert.cert_pem,
        );
    }
    // A missing CSR and a CSR order on the Buypass CA are refused.
    let err = ca
        .issue_from_csrs(&order(), &requests[..2])
        .expect_err("two CSRs");
    assert!(err.to_string().contains("Authentication"), "{err}");
    let buypass = SeidCa::buypass().expect("ca");
    assert!(buypass.issue_from_csrs(&order(), &requests).is_err());
}

/// Subject, raw serial and policies of any certificate (EC keys too).
fn read_any(der: &[u8]) -> (Vec<(String, String)>, Vec<u8>, Vec<String>) {
    let (_, cert) = parse_x509_certificate(der).expect("parses");
    let policies = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CertificatePolicies(p) => {
                Some(p.iter().map(|i| i.policy_id.to_id_string()).collect())
            }
            _ => None,
        })
        .unwrap_or_default();
    (
        name_attrs(cert.subject()),
        cert.raw_serial().to_vec(),
        policies,
    )
}

#[test]
fn flaws_make_the_wrong_sets_tests_need() {
    let ca = SeidCa::buypass().expect("ca");
    let sign = SeidRole::Signing;
    let auth = SeidRole::AuthEncryption;
    let set = |flaw: Flaw| {
        let set = ca.issue_set(&order().flaw(sign, flaw)).expect("set");
        let good = read(&set.cert(auth).expect("auth").issued.cert_der);
        let bad = read(&set.cert(sign).expect("sign").issued.cert_der);
        (set, good, bad)
    };
    let (_, good, bad) = set(Flaw::OtherOrgnr("999888777".into()));
    assert!(
        good.subject
            .contains(&(OID_ORG_ID.into(), "NTRNO-100101696".into()))
    );
    assert!(
        bad.subject
            .contains(&(OID_ORG_ID.into(), "NTRNO-999888777".into()))
    );

    let (set1, _, bad) = set(Flaw::Seid1Subject);
    assert_eq!(
        bad.subject,
        pairs(&[
            (OID_C, "NO"),
            (OID_O, "TESTVIRKSOMHET"),
            (OID_CN, "TESTVIRKSOMHET"),
            (OID_SERIAL, "100101696"),
        ])
    );
    assert_eq!(
        set1.cert(sign).expect("sign").issued.shape,
        LeafShape::Seid1
    );

    let (_, _, bad) = set(Flaw::KeyUsage(vec![KeyUsagePurpose::DigitalSignature]));
    assert!(bad.key_usage.digital_signature() && !bad.key_usage.non_repudiation());

    let (_, good, bad) = set(Flaw::Expired);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!(bad.not_after < now && good.not_after > now);

    let (_, _, bad) = set(Flaw::Personal {
        name: "Kari Nordmann".into(),
        serial_number: "123456789".into(),
    });
    assert_eq!(
        bad.subject,
        pairs(&[
            (OID_C, "NO"),
            (OID_SN, "Nordmann"),
            (OID_GN, "Kari"),
            (OID_CN, "Kari Nordmann"),
            (OID_SERIAL, "123456789"),
        ])
    );

    let (set1024, good, bad) = set(Flaw::Rsa1024);
    assert_eq!((good.key_bits, bad.key_bits), (2048, 1024));
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = set1024.write_files(dir.path()).expect("write");
    assert_openssl_reads(&paths[1], DEFAULT_SET_PASSWORD, 3);
}
