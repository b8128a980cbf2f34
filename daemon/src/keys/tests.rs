//! Keys, CSRs, signatures and PKCS#12, judged by the `openssl` command line tool wherever an
//! independent implementation can say whether the output is right.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aws_lc_rs::signature::{self as lc, UnparsedPublicKey, VerificationAlgorithm};
use certvakt_plugin_api::profile::{
    CsrProfile, ExtendedKeyUsage, KeyAlgorithm, KeyUsage, StringType, SubjectAltName,
    SubjectAttribute, oid,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::*;

// ---------------------------------------------------------------------------------------------
// The judge

/// Runs `openssl`, asserts it succeeded, and returns stdout and stderr together.
fn openssl(args: &[&str]) -> String {
    let (ok, text) = openssl_status(args);
    assert!(ok, "openssl {} failed:\n{text}", args.join(" "));
    text
}

fn openssl_status(args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "these tests use the openssl command line tool as an independent judge, and it \
             could not be run ({e}); install it (Debian/Ubuntu: apt-get install openssl)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read temp file")
}

/// The string type `openssl asn1parse` shows for the value after the `object` OID line.
fn asn1_value_after(asn1: &str, object: &str) -> String {
    let mut lines = asn1.lines();
    while let Some(line) = lines.next() {
        if line.contains("OBJECT") && line.trim_end().ends_with(&format!(":{object}")) {
            return lines.next().expect("a value after the OID").to_string();
        }
    }
    panic!("{object} not found in:\n{asn1}");
}

fn attr(oid: &str, value: &str, string_type: StringType) -> SubjectAttribute {
    SubjectAttribute {
        oid: oid.into(),
        value: value.into(),
        string_type,
    }
}

const OCES3_SERIAL: &str = "UI:DK-O:G:9f5c1c2e-4b7a-4e0e-9a53-2f1d7c3b8e61";

/// A Danish OCES3 system certificate (MitID Erhverv). countryName is left at the default
/// string type on purpose: it must come out as a PrintableString anyway.
fn oces3_profile() -> CsrProfile {
    CsrProfile {
        key: KeyAlgorithm::Rsa3072,
        subject: vec![
            attr(oid::COUNTRY, "DK", StringType::Utf8),
            attr(oid::ORGANIZATION, "Ærø Apotek ApS", StringType::Utf8),
            attr(
                oid::ORGANIZATION_IDENTIFIER,
                "NTRDK-12345678",
                StringType::Utf8,
            ),
            attr(oid::COMMON_NAME, "Ærø Apotek FMK", StringType::Utf8),
            attr(oid::SERIAL_NUMBER, OCES3_SERIAL, StringType::Printable),
        ],
        sans: vec![],
        key_usage: vec![KeyUsage::DigitalSignature],
        extended_key_usage: vec![],
    }
}

/// A Swedish SITHS function certificate: HSA-ID in serialNumber as a PrintableString.
fn siths_profile(key: KeyAlgorithm) -> CsrProfile {
    CsrProfile {
        key,
        subject: vec![
            attr(oid::COUNTRY, "SE", StringType::Printable),
            attr(oid::ORGANIZATION, "Region Exempel", StringType::Utf8),
            attr(
                oid::SERIAL_NUMBER,
                "SE2321000016-ABC1",
                StringType::Printable,
            ),
            attr(oid::COMMON_NAME, "eFrikort integration", StringType::Utf8),
        ],
        sans: vec![
            SubjectAltName::Dns("efrikort.example.se".into()),
            SubjectAltName::Ip("192.0.2.10".into()),
            SubjectAltName::Ip("2001:db8::1".into()),
            SubjectAltName::Email("drift@example.se".into()),
            SubjectAltName::Uri("https://example.se/efrikort".into()),
        ],
        key_usage: vec![KeyUsage::DigitalSignature, KeyUsage::NonRepudiation],
        extended_key_usage: vec![
            ExtendedKeyUsage::ClientAuth,
            ExtendedKeyUsage::ServerAuth,
            ExtendedKeyUsage::ClientAuth,
        ],
    }
}

/// A test CA made by openssl, and a leaf it issued for `key` from certvakt's own CSR.
struct Issued {
    dir: tempfile::TempDir,
    ca_der: Vec<u8>,
    leaf_der: Vec<u8>,
}

fn issue(key: &PrivateKey) -> Issued {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let profile = CsrProfile {
        key: key.algorithm(),
        subject: vec![attr(oid::COMMON_NAME, "leaf.example", StringType::Utf8)],
        sans: vec![SubjectAltName::Dns("leaf.example".into())],
        key_usage: vec![KeyUsage::DigitalSignature],
        extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
    };
    let request = csr(&profile, key).expect("csr");
    let csr_path = write(d, "leaf.csr", &request.pem);
    let (ca_key, ca_pem, leaf_pem) = (d.join("ca.key"), d.join("ca.pem"), d.join("leaf.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        p(&ca_key),
        "-subj",
        "/C=DK/O=certvakt test/CN=certvakt test CA",
        "-days",
        "2",
        "-out",
        p(&ca_pem),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        p(&csr_path),
        "-CA",
        p(&ca_pem),
        "-CAkey",
        p(&ca_key),
        "-set_serial",
        "7",
        "-days",
        "1",
        "-out",
        p(&leaf_pem),
    ]);
    let der = |pem: &Path| {
        let out = d.join("out.der");
        openssl(&["x509", "-in", p(pem), "-outform", "DER", "-out", p(&out)]);
        read(&out)
    };
    Issued {
        ca_der: der(&ca_pem),
        leaf_der: der(&leaf_pem),
        dir,
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

/// Generation, PKCS#8 round trip, and loading the PKCS#1/SEC1 forms openssl makes of it.
fn round_trip(algorithm: KeyAlgorithm) {
    let started = Instant::now();
    let key = generate(algorithm).expect("generate");
    eprintln!(
        "keys: generated {} in {:.2} ms",
        algorithm.as_str(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(key.algorithm(), algorithm);

    let pem = key.to_pkcs8_pem();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{}",
        algorithm.as_str()
    );
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
    let again = PrivateKey::from_pem(&pem).expect("PKCS#8 PEM back");
    assert_eq!(again.algorithm(), algorithm);
    assert_eq!(again.public_key_raw(), key.public_key_raw());
    assert_eq!(*again.to_pkcs8_der(), *key.to_pkcs8_der());
    let from_der = PrivateKey::from_der(&key.to_pkcs8_der()).expect("PKCS#8 DER back");
    assert_eq!(from_der.public_key_raw(), key.public_key_raw());

    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pkcs8 = write(d, "key.pem", &*pem);
    let text = openssl(&["pkey", "-in", p(&pkcs8), "-noout", "-text"]);
    let expected = match algorithm {
        KeyAlgorithm::Rsa2048 => "Private-Key: (2048 bit, 2 primes)",
        KeyAlgorithm::Rsa3072 => "Private-Key: (3072 bit, 2 primes)",
        KeyAlgorithm::Rsa4096 => "Private-Key: (4096 bit, 2 primes)",
        KeyAlgorithm::EcP256 => "ASN1 OID: prime256v1",
        KeyAlgorithm::EcP384 => "ASN1 OID: secp384r1",
    };
    assert!(text.contains(expected), "{expected} not in:\n{text}");

    // openssl's view of the public key is ours.
    let spki = d.join("pub.der");
    openssl(&[
        "pkey",
        "-in",
        p(&pkcs8),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        p(&spki),
    ]);
    let spki = read(&spki);
    let (_, spki) = SubjectPublicKeyInfo::from_der(&spki).expect("spki");
    assert_eq!(
        &*spki.subject_public_key.data,
        key.public_key_raw().as_slice()
    );

    // PKCS#1 / SEC1, PEM and DER.
    let traditional = openssl(&["pkey", "-in", p(&pkcs8), "-traditional"]);
    let label = if matches!(algorithm, KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384) {
        "-----BEGIN EC PRIVATE KEY-----"
    } else {
        "-----BEGIN RSA PRIVATE KEY-----"
    };
    assert!(
        traditional.starts_with(label),
        "{label}: {}",
        &traditional[..40]
    );
    let loaded = PrivateKey::from_pem(&traditional).expect("traditional PEM");
    assert_eq!(loaded.algorithm(), algorithm);
    assert_eq!(loaded.public_key_raw(), key.public_key_raw());
    assert!(
        loaded
            .to_pkcs8_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "written back as PKCS#8"
    );
    assert_eq!(
        loaded.to_pkcs8_der().as_slice(),
        key.to_pkcs8_der().as_slice(),
        "same PKCS#8 as before the trip through {label}"
    );
    let traditional_der = d.join("key.der");
    openssl(&[
        "pkey",
        "-in",
        p(&pkcs8),
        "-traditional",
        "-outform",
        "DER",
        "-out",
        p(&traditional_der),
    ]);
    let loaded = PrivateKey::from_der(&read(&traditional_der)).expect("traditional DER");
    assert_eq!(loaded.public_key_raw(), key.public_key_raw());
    let loaded = PrivateKey::from_bytes(&read(&traditional_der)).expect("DER as file bytes");
    assert_eq!(loaded.algorithm(), algorithm);
}

#[test]
fn rsa_2048_round_trips() {
    round_trip(KeyAlgorithm::Rsa2048);
}

#[test]
fn rsa_3072_round_trips() {
    round_trip(KeyAlgorithm::Rsa3072);
}

/// The only RSA-4096 generation in the suite (≈0.7 s).
#[test]
fn rsa_4096_round_trips() {
    round_trip(KeyAlgorithm::Rsa4096);
}

#[test]
fn ec_p256_round_trips() {
    round_trip(KeyAlgorithm::EcP256);
}

#[test]
fn ec_p384_round_trips() {
    round_trip(KeyAlgorithm::EcP384);
}

#[test]
fn keys_made_by_openssl_load() {
    for (args, algorithm) in [
        (
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ][..],
            KeyAlgorithm::Rsa2048,
        ),
        (
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ][..],
            KeyAlgorithm::EcP384,
        ),
        (
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"][..],
            KeyAlgorithm::EcP256,
        ),
    ] {
        let pem = openssl(args);
        let key = PrivateKey::from_pem(&pem).expect("openssl's key");
        assert_eq!(key.algorithm(), algorithm, "{}", args.join(" "));
        // A certificate before the key, as in combined files, is skipped.
        let combined = format!("{}{pem}", pem_certificates(&[issue(&key).leaf_der]));
        let key2 = PrivateKey::from_pem(&combined).expect("key after a certificate");
        assert_eq!(key2.public_key_raw(), key.public_key_raw());
    }
}

#[test]
fn unusable_key_files_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let encrypted_message = "the key file is encrypted; certvakt needs an unencrypted key file protected by its permissions";

    let plain = write(
        d,
        "plain.pem",
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]),
    );
    let pkcs8_encrypted = openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        p(&plain),
        "-passout",
        "pass:secret",
    ]);
    assert!(pkcs8_encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let legacy_encrypted = openssl(&[
        "pkey",
        "-in",
        p(&plain),
        "-traditional",
        "-aes128",
        "-passout",
        "pass:secret",
    ]);
    assert!(legacy_encrypted.contains("Proc-Type: 4,ENCRYPTED"));
    let der_out = d.join("enc.der");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        p(&plain),
        "-outform",
        "DER",
        "-passout",
        "pass:secret",
        "-out",
        p(&der_out),
    ]);
    for (what, result) in [
        ("PKCS#8 PEM", PrivateKey::from_pem(&pkcs8_encrypted)),
        ("legacy PEM", PrivateKey::from_pem(&legacy_encrypted)),
        ("PKCS#8 DER", PrivateKey::from_der(&read(&der_out))),
        ("DER file", PrivateKey::from_bytes(&read(&der_out))),
    ] {
        let err = result.expect_err(what);
        assert_eq!(err, KeyError::KeyFile(KeyFileProblem::Encrypted), "{what}");
        assert_eq!(err.to_string(), encrypted_message);
    }

    for (args, what) in [
        (&["genpkey", "-algorithm", "ED25519"][..], "an Ed25519 key"),
        (
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-521",
            ][..],
            "an EC P-521 key",
        ),
        (
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
            ][..],
            "an RSA key shorter than 2048 bits",
        ),
    ] {
        let err = PrivateKey::from_pem(&openssl(args)).expect_err(what);
        assert_eq!(
            err,
            KeyError::UnsupportedKey { what: what.into() },
            "{}",
            args.join(" ")
        );
        assert!(
            err.to_string().ends_with(
                "certvakt makes and uses RSA 2048, 3072 and 4096-bit and EC P-256 and P-384 keys only"
            ),
            "{err}"
        );
    }

    let cert_only =
        pem_certificates(&[issue(&generate(KeyAlgorithm::EcP256).expect("key")).ca_der]);
    assert_eq!(
        PrivateKey::from_pem(&cert_only).expect_err("certificate"),
        KeyError::KeyFile(KeyFileProblem::OtherBlocks(vec!["CERTIFICATE".into()]))
    );
    assert_eq!(
        PrivateKey::from_pem(&cert_only)
            .expect_err("certificate")
            .to_string(),
        "the key file holds no private key (only CERTIFICATE)"
    );
    assert_eq!(
        PrivateKey::from_pem("hello").expect_err("text"),
        KeyError::KeyFile(KeyFileProblem::NoKey)
    );
    assert_eq!(
        PrivateKey::from_der(b"\x30\x03\x02\x01\x00").expect_err("not a key"),
        KeyError::KeyFile(KeyFileProblem::NotAKey)
    );
    assert_eq!(
        PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n")
            .expect_err("damaged"),
        KeyError::KeyFile(KeyFileProblem::DamagedPem)
    );
}

#[test]
fn key_material_stays_out_of_debug_and_errors() {
    let key = generate(KeyAlgorithm::EcP256).expect("key");
    assert_eq!(format!("{key:?}"), "PrivateKey { algorithm: EcP256, .. }");
    let contents = Pkcs12Contents {
        key: Some(key),
        leaf_der: vec![],
        chain_der: vec![],
    };
    let debug = format!("{contents:?}");
    assert!(
        debug.contains("key: Some(PrivateKey { algorithm: EcP256, .. })"),
        "{debug}"
    );

    fn send_sync<T: Send + Sync>() {}
    send_sync::<PrivateKey>();
}

// ---------------------------------------------------------------------------------------------
// CSRs

#[test]
fn oces3_csr_is_what_openssl_expects() {
    let key = generate(KeyAlgorithm::Rsa3072).expect("key");
    let request = csr(&oces3_profile(), &key).expect("csr");
    assert!(
        request
            .pem
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----\n")
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "oces3.csr", &request.pem);
    let verify = openssl(&["req", "-in", p(&path), "-verify", "-noout"]);
    assert!(verify.contains("verify OK"), "{verify}");

    let text = openssl(&[
        "req",
        "-in",
        p(&path),
        "-noout",
        "-text",
        "-nameopt",
        "utf8",
    ]);
    for expected in [
        "Signature Algorithm: sha256WithRSAEncryption",
        "Public-Key: (3072 bit)",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        // In the profile's order, UTF-8 intact.
        &format!(
            "Subject: C=DK, O=Ærø Apotek ApS, organizationIdentifier=NTRDK-12345678, CN=Ærø Apotek FMK, serialNumber={OCES3_SERIAL}"
        ),
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains("Subject Alternative Name"), "{text}");
    assert!(!text.contains("Extended Key Usage"), "{text}");

    let asn1 = openssl(&["asn1parse", "-in", p(&path)]);
    let org_id = asn1_value_after(&asn1, "organizationIdentifier");
    assert!(
        org_id.contains("UTF8STRING") && org_id.ends_with(":NTRDK-12345678"),
        "{org_id}"
    );
    let country = asn1_value_after(&asn1, "countryName");
    assert!(
        country.contains("PRINTABLESTRING") && country.ends_with(":DK"),
        "{country}"
    );
    let serial = asn1_value_after(&asn1, "serialNumber");
    assert!(
        serial.contains("PRINTABLESTRING") && serial.ends_with(OCES3_SERIAL),
        "{serial}"
    );
    assert!(asn1_value_after(&asn1, "organizationName").contains("UTF8STRING"));

    // The subject's public key is the key's, and the attributes are in the profile's order.
    let (_, parsed) = X509CertificationRequest::from_der(&request.der).expect("parse");
    let info = &parsed.certification_request_info;
    assert_eq!(
        &*info.subject_pki.subject_public_key.data,
        key.public_key_raw().as_slice()
    );
    let oids: Vec<String> = info
        .subject
        .iter_attributes()
        .map(|a| a.attr_type().to_id_string())
        .collect();
    assert_eq!(
        oids,
        ["2.5.4.6", "2.5.4.10", "2.5.4.97", "2.5.4.3", "2.5.4.5"]
    );
}

#[test]
fn siths_csr_carries_sans_and_eku() {
    let key = generate(KeyAlgorithm::EcP256).expect("key");
    let request = csr(&siths_profile(KeyAlgorithm::EcP256), &key).expect("csr");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "siths.csr", &request.pem);
    let verify = openssl(&["req", "-in", p(&path), "-verify", "-noout"]);
    assert!(verify.contains("verify OK"), "{verify}");

    let text = openssl(&["req", "-in", p(&path), "-noout", "-text"]);
    for expected in [
        "Signature Algorithm: ecdsa-with-SHA256",
        "ASN1 OID: prime256v1",
        "Subject: C = SE, O = Region Exempel, serialNumber = SE2321000016-ABC1, CN = eFrikort integration",
        "X509v3 Subject Alternative Name:",
        "DNS:efrikort.example.se, IP Address:192.0.2.10, IP Address:2001:DB8:0:0:0:0:0:1, email:drift@example.se, URI:https://example.se/efrikort",
        "X509v3 Key Usage: critical",
        "Digital Signature, Non Repudiation",
        "X509v3 Extended Key Usage:",
        // Asked twice in the profile, written once.
        "TLS Web Client Authentication, TLS Web Server Authentication\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    let asn1 = openssl(&["asn1parse", "-in", p(&path)]);
    let serial = asn1_value_after(&asn1, "serialNumber");
    assert!(
        serial.contains("PRINTABLESTRING") && serial.ends_with(":SE2321000016-ABC1"),
        "{serial}"
    );
}

#[test]
fn p384_csr_is_signed_with_sha384() {
    let key = generate(KeyAlgorithm::EcP384).expect("key");
    let mut profile = siths_profile(KeyAlgorithm::EcP384);
    profile.subject.push(attr(
        oid::EMAIL_ADDRESS,
        "drift@example.se",
        StringType::Utf8,
    ));
    let request = csr(&profile, &key).expect("csr");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "p384.csr", &request.pem);
    let verify = openssl(&["req", "-in", p(&path), "-verify", "-noout"]);
    assert!(verify.contains("verify OK"), "{verify}");
    let text = openssl(&["req", "-in", p(&path), "-noout", "-text"]);
    assert!(
        text.contains("Signature Algorithm: ecdsa-with-SHA384"),
        "{text}"
    );
    assert!(text.contains("ASN1 OID: secp384r1"), "{text}");
    let asn1 = openssl(&["asn1parse", "-in", p(&path)]);
    let email = asn1_value_after(&asn1, "emailAddress");
    assert!(
        email.contains("IA5STRING") && email.ends_with(":drift@example.se"),
        "{email}"
    );
}

#[test]
fn csr_refuses_what_it_cannot_write_faithfully() {
    let key = generate(KeyAlgorithm::EcP256).expect("key");

    let mismatch = csr(&siths_profile(KeyAlgorithm::Rsa2048), &key).expect_err("mismatch");
    assert_eq!(
        mismatch,
        KeyError::ProfileKeyMismatch {
            profile: KeyAlgorithm::Rsa2048,
            key: KeyAlgorithm::EcP256
        }
    );
    assert_eq!(
        mismatch.to_string(),
        "the CSR profile asks for a rsa-2048 key but the key is ec-p256; generate a new key for this profile"
    );

    let with = |change: &dyn Fn(&mut CsrProfile)| {
        let mut profile = siths_profile(KeyAlgorithm::EcP256);
        change(&mut profile);
        csr(&profile, &key).expect_err("refused")
    };

    let not_printable = with(&|pr| pr.subject[2].value = "SE2321000016_ABC1".into());
    assert_eq!(
        not_printable,
        KeyError::NotPrintable {
            attribute: "serialNumber (2.5.4.5)".into(),
            value: "SE2321000016_ABC1".into(),
            character: '_'
        }
    );
    assert!(
        not_printable
            .to_string()
            .starts_with("subject attribute serialNumber (2.5.4.5) = \"SE2321000016_ABC1\" cannot be a PrintableString: '_' is not in its alphabet"),
        "{not_printable}"
    );
    // Refused on the first character outside the alphabet, naming the attribute.
    let accented = with(&|pr| {
        pr.subject[1] = attr(oid::ORGANIZATION, "Västra Götaland", StringType::Printable)
    });
    assert!(
        matches!(
            &accented,
            KeyError::NotPrintable { attribute, character: 'ä', .. } if attribute == "O (2.5.4.10)"
        ),
        "{accented:?}"
    );

    assert_eq!(
        with(&|pr| pr
            .subject
            .push(attr(oid::COMMON_NAME, "second", StringType::Utf8))),
        KeyError::DuplicateAttribute {
            attribute: "CN (2.5.4.3)".into()
        }
    );
    assert_eq!(
        with(&|pr| pr.subject[0].oid = "2.5.4.x".into()),
        KeyError::BadOid {
            oid: "2.5.4.x".into()
        }
    );
    assert_eq!(
        with(&|pr| pr.subject[0].oid = "5.1".into()),
        KeyError::BadOid { oid: "5.1".into() }
    );
    assert!(matches!(
        with(&|pr| pr.subject[0].value = "se".into()),
        KeyError::BadAttribute { ref attribute, .. } if attribute == "C (2.5.4.6)"
    ));
    assert!(matches!(
        with(&|pr| pr.subject[3].value = String::new()),
        KeyError::BadAttribute { problem, .. } if problem.starts_with("is empty")
    ));
    assert_eq!(
        with(&|pr| pr.sans[1] = SubjectAltName::Ip("300.1.1.1".into())),
        KeyError::BadSan {
            san: "IP:300.1.1.1".into(),
            problem: "is not an IP address (like 192.0.2.10 or 2001:db8::1)"
        }
    );
    assert!(matches!(
        with(&|pr| pr.sans[0] = SubjectAltName::Dns("apotek-ærø.dk".into())),
        KeyError::BadSan { ref san, .. } if san == "DNS:apotek-ærø.dk"
    ));
    assert_eq!(
        with(&|pr| {
            pr.subject.clear();
            pr.sans.clear();
        }),
        KeyError::EmptyCsr
    );
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[test]
fn signatures_verify_and_wrong_algorithms_are_refused() {
    let data = b"<ds:SignedInfo>certvakt</ds:SignedInfo>";
    let rsa = generate(KeyAlgorithm::Rsa2048).expect("rsa");
    let p256 = generate(KeyAlgorithm::EcP256).expect("p256");
    let p384 = generate(KeyAlgorithm::EcP384).expect("p384");
    let cases: [(
        &PrivateKey,
        SignatureAlgorithm,
        &'static dyn VerificationAlgorithm,
        Option<usize>,
    ); 7] = [
        (
            &rsa,
            SignatureAlgorithm::RsaPkcs1Sha256,
            &lc::RSA_PKCS1_2048_8192_SHA256,
            Some(256),
        ),
        (
            &rsa,
            SignatureAlgorithm::RsaPkcs1Sha384,
            &lc::RSA_PKCS1_2048_8192_SHA384,
            Some(256),
        ),
        (
            &rsa,
            SignatureAlgorithm::RsaPssSha256,
            &lc::RSA_PSS_2048_8192_SHA256,
            Some(256),
        ),
        (
            &p256,
            SignatureAlgorithm::EcdsaP256Sha256,
            &lc::ECDSA_P256_SHA256_ASN1,
            None,
        ),
        (
            &p256,
            SignatureAlgorithm::EcdsaP256Sha256Fixed,
            &lc::ECDSA_P256_SHA256_FIXED,
            Some(64),
        ),
        (
            &p384,
            SignatureAlgorithm::EcdsaP384Sha384,
            &lc::ECDSA_P384_SHA384_ASN1,
            None,
        ),
        (
            &p384,
            SignatureAlgorithm::EcdsaP384Sha384Fixed,
            &lc::ECDSA_P384_SHA384_FIXED,
            Some(96),
        ),
    ];
    for (key, algorithm, verification, length) in cases {
        let signature = sign(key, algorithm, data).expect("sign");
        match length {
            Some(length) => assert_eq!(signature.len(), length, "{algorithm}"),
            // DER: SEQUENCE { INTEGER r, INTEGER s }.
            None => assert_eq!(&signature[..1], &[0x30], "{algorithm}"),
        }
        let public_key = key.public_key_raw();
        let verifier = UnparsedPublicKey::new(verification, &public_key);
        assert!(verifier.verify(data, &signature).is_ok(), "{algorithm}");
        assert!(
            verifier.verify(b"something else", &signature).is_err(),
            "{algorithm} must not verify other data"
        );
        for other in [&rsa, &p256, &p384] {
            if !algorithm.fits(other.algorithm()) {
                let err = sign(other, algorithm, data).expect_err("does not fit");
                assert_eq!(
                    err,
                    KeyError::SignatureKeyMismatch {
                        algorithm,
                        key: other.algorithm()
                    }
                );
            }
        }
    }
    assert_eq!(
        sign(&p256, SignatureAlgorithm::EcdsaP384Sha384, data)
            .expect_err("wrong curve")
            .to_string(),
        "ECDSA P-384 SHA-384 signatures need an EC P-384 key, but the key is ec-p256"
    );
}

#[test]
fn openssl_verifies_the_signatures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let data_path = write(d, "data.bin", b"<wsse:Security>certvakt</wsse:Security>");
    let data = read(&data_path);
    let rsa = generate(KeyAlgorithm::Rsa2048).expect("rsa");
    let p256 = generate(KeyAlgorithm::EcP256).expect("p256");
    let p384 = generate(KeyAlgorithm::EcP384).expect("p384");

    let verify = |key: &PrivateKey, algorithm, digest: &str, sigopts: &[&str]| {
        let key_path = write(d, "key.pem", &*key.to_pkcs8_pem());
        let pub_path = d.join("pub.pem");
        openssl(&["pkey", "-in", p(&key_path), "-pubout", "-out", p(&pub_path)]);
        let sig_path = write(d, "sig.bin", sign(key, algorithm, &data).expect("sign"));
        let mut args = vec!["dgst", digest, "-verify", p(&pub_path)];
        for opt in sigopts {
            args.extend(["-sigopt", opt]);
        }
        args.extend(["-signature", p(&sig_path), p(&data_path)]);
        openssl_status(&args)
    };

    let (ok, text) = verify(
        &rsa,
        SignatureAlgorithm::RsaPssSha256,
        "-sha256",
        &[
            "rsa_padding_mode:pss",
            "rsa_pss_saltlen:32",
            "rsa_mgf1_md:sha256",
        ],
    );
    assert!(ok && text.contains("Verified OK"), "RSA-PSS: {text}");
    // The salt really is 32 bytes: openssl insists on what it is told.
    let (ok, text) = verify(
        &rsa,
        SignatureAlgorithm::RsaPssSha256,
        "-sha256",
        &["rsa_padding_mode:pss", "rsa_pss_saltlen:20"],
    );
    assert!(
        !ok && text.contains("Verification failure"),
        "salt 20: {text}"
    );

    let (ok, text) = verify(&rsa, SignatureAlgorithm::RsaPkcs1Sha384, "-sha384", &[]);
    assert!(
        ok && text.contains("Verified OK"),
        "RSA PKCS#1 SHA-384: {text}"
    );
    // openssl's ECDSA signatures are DER, so it verifies the DER variants as they are.
    let (ok, text) = verify(&p256, SignatureAlgorithm::EcdsaP256Sha256, "-sha256", &[]);
    assert!(ok && text.contains("Verified OK"), "ECDSA P-256: {text}");
    let (ok, text) = verify(&p384, SignatureAlgorithm::EcdsaP384Sha384, "-sha384", &[]);
    assert!(ok && text.contains("Verified OK"), "ECDSA P-384: {text}");
}

// ---------------------------------------------------------------------------------------------
// Certificates and PKCS#12

#[test]
fn certificates_are_matched_to_keys() {
    let key = generate(KeyAlgorithm::EcP256).expect("key");
    let other = generate(KeyAlgorithm::EcP256).expect("other");
    let issued = issue(&key);
    assert_eq!(cert_matches_key(&issued.leaf_der, &key), Ok(true));
    assert_eq!(cert_matches_key(&issued.leaf_der, &other), Ok(false));
    assert_eq!(cert_matches_key(&issued.ca_der, &key), Ok(false));
    let damaged = cert_matches_key(&issued.leaf_der[..100], &key).expect_err("cut off");
    assert!(
        matches!(&damaged, KeyError::Certificate { problem } if problem.starts_with("is damaged")),
        "{damaged:?}"
    );
}

#[test]
fn pkcs12_is_read_by_openssl_and_by_us() {
    let key = generate(KeyAlgorithm::Rsa2048).expect("key");
    let issued = issue(&key);
    let d = issued.dir.path();
    let password = "Sommer-2025";
    let bundle = write_pkcs12(
        &key,
        &issued.leaf_der,
        std::slice::from_ref(&issued.ca_der),
        password,
        "certvakt-dk-fmk",
    )
    .expect("write");
    let path = write(d, "bundle.p12", &*bundle);
    let passin = format!("pass:{password}");

    let info = openssl(&[
        "pkcs12",
        "-in",
        p(&path),
        "-info",
        "-nokeys",
        "-passin",
        &passin,
    ]);
    for expected in [
        "MAC: sha256",
        "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC",
        "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC",
        "subject=CN = leaf.example",
        "subject=C = DK, O = certvakt test, CN = certvakt test CA",
    ] {
        assert!(info.contains(expected), "{expected:?} not in:\n{info}");
    }
    // openssl gets the very key out of it.
    let key_pem = openssl(&[
        "pkcs12",
        "-in",
        p(&path),
        "-nocerts",
        "-nodes",
        "-passin",
        &passin,
    ]);
    let out = PrivateKey::from_pem(&key_pem).expect("key from openssl");
    // The key bag carries the friendly name (Java's alias) and the leaf's localKeyID.
    assert!(
        key_pem.contains("friendlyName: certvakt-dk-fmk"),
        "{}",
        key_pem.lines().take(4).collect::<Vec<_>>().join("\n")
    );
    let key_id = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("localKeyID:"))
            .map(str::to_string)
    };
    assert!(key_id(&key_pem).is_some());
    assert_eq!(key_id(&key_pem), key_id(&info), "key and leaf are paired");
    assert_eq!(out.public_key_raw(), key.public_key_raw());
    let (ok, text) = openssl_status(&[
        "pkcs12",
        "-in",
        p(&path),
        "-info",
        "-nokeys",
        "-passin",
        "pass:wrong",
    ]);
    assert!(!ok, "openssl must refuse the wrong password: {text}");

    let contents = read_pkcs12(&bundle, password).expect("read");
    assert_eq!(
        contents.key.as_ref().map(PrivateKey::public_key_raw),
        Some(key.public_key_raw())
    );
    assert_eq!(contents.leaf_der, issued.leaf_der);
    assert_eq!(contents.chain_der, vec![issued.ca_der.clone()]);

    assert_eq!(
        read_pkcs12(&bundle, "sommer-2025").expect_err("wrong password"),
        KeyError::Pkcs12Password
    );
    assert!(matches!(
        read_pkcs12(b"\x30\x03\x02\x01\x03", password).expect_err("damaged"),
        KeyError::Pkcs12Damaged(_)
    ));

    let other = generate(KeyAlgorithm::EcP256).expect("other");
    assert_eq!(
        write_pkcs12(&other, &issued.leaf_der, &[], password, "x").expect_err("mismatch"),
        KeyError::CertificateKeyMismatch
    );
}

#[test]
fn pkcs12_from_openssl_and_a_mismatched_bundle() {
    let key = generate(KeyAlgorithm::EcP384).expect("key");
    let issued = issue(&key);
    let d = issued.dir.path();
    // As an authority's portal would make it; OpenSSL 3 defaults (AES-256, SHA-256 MAC).
    let p12_path = openssl_bundle(&key, &issued, "openssl.p12", "Buypass", "levering", &[]);
    let contents = read_pkcs12(&read(&p12_path), "levering").expect("read");
    let loaded = contents.key.expect("the bundle has a key");
    assert_eq!(loaded.algorithm(), KeyAlgorithm::EcP384);
    assert_eq!(loaded.public_key_raw(), key.public_key_raw());
    assert_eq!(contents.leaf_der, issued.leaf_der);
    assert_eq!(contents.chain_der, vec![issued.ca_der.clone()]);

    // Certificates only.
    let certs_only = d.join("certs.p12");
    openssl(&[
        "pkcs12",
        "-export",
        "-nokeys",
        "-in",
        p(&d.join("leaf.crt")),
        "-certfile",
        p(&d.join("ca.crt")),
        "-passout",
        "pass:x",
        "-out",
        p(&certs_only),
    ]);
    let contents = read_pkcs12(&read(&certs_only), "x").expect("read");
    assert!(contents.key.is_none());
    assert_eq!(contents.leaf_der, issued.leaf_der);
    assert_eq!(contents.chain_der, vec![issued.ca_der.clone()]);

    // A key with someone else's certificate, paired by localKeyId (openssl refuses to make
    // such a bundle, p12-keystore does not ask).
    let stranger = generate(KeyAlgorithm::EcP384).expect("stranger");
    let chain = p12_keystore::PrivateKeyChain::new(
        b"id".to_vec(),
        p12_keystore::PrivateKey::from_der(&stranger.to_pkcs8_der()).expect("p12 key"),
        [p12_keystore::Certificate::from_der(&issued.leaf_der).expect("p12 cert")],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("wrong", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    let mismatched = store.writer("x").write().expect("write");
    let err = read_pkcs12(&mismatched, "x").expect_err("mismatch");
    assert_eq!(
        err,
        KeyError::Pkcs12KeyMismatch {
            subject: "CN=leaf.example".into()
        }
    );
}

/// `read_pkcs12`'s result compared with the DER bundle's (the key by its public key).
fn same_contents(a: &Pkcs12Contents, b: &Pkcs12Contents) -> bool {
    a.key.as_ref().map(PrivateKey::public_key_raw) == b.key.as_ref().map(PrivateKey::public_key_raw)
        && a.leaf_der == b.leaf_der
        && a.chain_der == b.chain_der
}

#[test]
fn pkcs12_written_with_ber_as_windows_does_is_read() {
    let key = generate(KeyAlgorithm::Rsa2048).expect("key");
    let issued = issue(&key);
    let d = issued.dir.path();
    let password = "Vinter-2026";
    let der = write_pkcs12(
        &key,
        &issued.leaf_der,
        std::slice::from_ref(&issued.ca_der),
        password,
        "Buypass",
    )
    .expect("write");
    let ber = certvakt_testkit::ber::pkcs12_to_ber(&der).expect("ber");
    assert_ne!(ber, *der);
    let path = write(d, "windows.p12", &ber);

    // It is BER, and OpenSSL opens it with its password (and verifies the MAC) ...
    let asn1 = openssl(&["asn1parse", "-inform", "DER", "-in", p(&path)]);
    assert!(
        asn1.lines().next().is_some_and(|l| l.contains("l=inf")),
        "{asn1}"
    );
    assert!(asn1.contains("cons: OCTET STRING"), "{asn1}");
    let chunks = asn1.matches("prim: OCTET STRING").count();
    assert!(chunks >= 3, "the authSafe is in 1000-byte chunks:\n{asn1}");
    let passin = format!("pass:{password}");
    let info = openssl(&[
        "pkcs12",
        "-in",
        p(&path),
        "-nokeys",
        "-info",
        "-passin",
        &passin,
    ]);
    assert!(info.contains("MAC: sha256"), "{info}");
    assert!(info.contains("subject=CN = leaf.example"), "{info}");
    let (ok, text) = openssl_status(&[
        "pkcs12",
        "-in",
        p(&path),
        "-nokeys",
        "-info",
        "-passin",
        "pass:Sommer-2025",
    ]);
    assert!(!ok, "openssl must refuse the wrong password: {text}");

    // ... and so do we: the same key, leaf and chain as from the DER bundle.
    let from_der = read_pkcs12(&der, password).expect("DER");
    let from_ber = read_pkcs12(&ber, password).expect("BER");
    assert!(from_ber.key.is_some());
    assert!(same_contents(&from_ber, &from_der), "{from_ber:?}");
    assert_eq!(from_ber.leaf_der, issued.leaf_der);
    assert_eq!(from_ber.chain_der, vec![issued.ca_der.clone()]);
    // The envelope was all that changed: normalised, it is the DER bundle again.
    assert_eq!(crate::ber::to_der(&ber).as_deref(), Some(&der[..]));

    assert_eq!(
        read_pkcs12(&ber, "Sommer-2025").expect_err("wrong password"),
        KeyError::Pkcs12Password
    );
    // The MAC is checked over the joined chunks: a flipped byte in the middle of one fails it.
    let first_chunk = ber
        .windows(6)
        .position(|w| w == b"\x24\x80\x04\x82\x03\xe8")
        .expect("a constructed OCTET STRING of 1000-byte chunks")
        + 6;
    let mut tampered = ber.clone();
    tampered[first_chunk + 500] ^= 0x01;
    assert!(crate::ber::to_der(&tampered).is_some(), "still BER");
    assert_eq!(
        read_pkcs12(&tampered, password).expect_err("tampered"),
        KeyError::Pkcs12Password
    );
    for cut in [ber.len() / 2, ber.len() - 2, 40] {
        let err = read_pkcs12(&ber[..cut], password).expect_err("cut off");
        assert!(
            matches!(err, KeyError::Pkcs12Damaged(_)),
            "cut at {cut}: {err:?}"
        );
    }
}

#[test]
fn pkcs12_with_ber_inside_its_mac_as_windows_writes_it_is_read() {
    let key = generate(KeyAlgorithm::Rsa2048).expect("key");
    let issued = issue(&key);
    let d = issued.dir.path();
    let password = "Vinter-2026";
    // Ours (PBES2, HMAC-SHA256) and OpenSSL's legacy one (RC2-40, 3DES, HMAC-SHA1).
    let ours = write_pkcs12(
        &key,
        &issued.leaf_der,
        std::slice::from_ref(&issued.ca_der),
        password,
        "Buypass",
    )
    .expect("write")
    .to_vec();
    let legacy = read(&openssl_bundle(
        &key,
        &issued,
        "legacy.p12",
        "Commfides",
        password,
        &["-legacy"],
    ));
    for (n, der) in [ours, legacy].into_iter().enumerate() {
        let ber = certvakt_testkit::ber::pkcs12_to_ber_inside(&der, password).expect("ber");
        let path = write(d, &format!("inside-{n}.p12"), &ber);

        // The MACed content is BER (the authSafe's first chunk starts an indefinite
        // SEQUENCE), and OpenSSL verifies its MAC over those bytes and reads it ...
        let chunk = ber
            .windows(3)
            .position(|w| w == b"\x24\x80\x04")
            .expect("a chunked authSafe")
            + 3;
        let length_bytes = if ber[chunk] & 0x80 == 0 {
            1
        } else {
            1 + usize::from(ber[chunk] & 0x7f)
        };
        assert_eq!(&ber[chunk + length_bytes..][..2], b"\x30\x80");
        let passin = format!("pass:{password}");
        let mut args = vec![
            "pkcs12",
            "-in",
            p(&path),
            "-nokeys",
            "-info",
            "-passin",
            &passin,
        ];
        if n == 1 {
            args.push("-legacy");
        }
        let info = openssl(&args);
        assert!(info.contains("subject=CN = leaf.example"), "{info}");
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == passin { "pass:Sommer-2025" } else { a })
            .collect();
        let (ok, text) = openssl_status(&args);
        assert!(!ok, "openssl must refuse the wrong password: {text}");

        // ... and so do we, with the same contents as from the DER bundle.
        let from_der = read_pkcs12(&der, password).expect("DER");
        let from_ber = read_pkcs12(&ber, password).expect("BER inside the MAC");
        assert!(from_ber.key.is_some());
        assert!(same_contents(&from_ber, &from_der), "{from_ber:?}");
        assert_eq!(from_ber.leaf_der, issued.leaf_der);
        assert_eq!(from_ber.chain_der, vec![issued.ca_der.clone()]);

        assert_eq!(
            read_pkcs12(&ber, "Sommer-2025").expect_err("wrong password"),
            KeyError::Pkcs12Password
        );
        assert_eq!(
            read_pkcs12(&ber, "").expect_err("no password"),
            KeyError::Pkcs12Password
        );
        // The MAC covers the file's own bytes: one flipped in the last content chunk (past the
        // BER headers, in ciphertext or a certificate) fails it as OpenSSL's check would.
        // (A byte of the outer BER envelope would make the file damaged instead: skip those.)
        let (at, tampered) = (100..ber.len() - 150)
            .rev()
            .map(|at| {
                let mut tampered = ber.clone();
                tampered[at] ^= 0x01;
                (at, tampered)
            })
            .find(|(_, tampered)| crate::ber::to_der(tampered).is_some())
            .expect("a content byte");
        assert_eq!(
            read_pkcs12(&tampered, password).expect_err("tampered"),
            KeyError::Pkcs12Password,
            "flipped at {at} of {}",
            ber.len()
        );
        for cut in [ber.len() / 2, ber.len() - 2, 40] {
            let err = read_pkcs12(&ber[..cut], password).expect_err("cut off");
            assert!(
                matches!(err, KeyError::Pkcs12Damaged(_)),
                "cut at {cut}: {err:?}"
            );
        }
    }
}

#[test]
fn pkcs12_from_openssls_legacy_path_is_read_der_and_ber() {
    let key = generate(KeyAlgorithm::Rsa2048).expect("key");
    let issued = issue(&key);
    // What OpenSSL 1.x wrote by default: 3DES for the key, RC2-40 for the certificates, a
    // SHA-1 MAC (OpenSSL 3 needs its legacy provider for RC2).
    let p12_path = openssl_bundle(
        &key,
        &issued,
        "legacy.p12",
        "Commfides",
        "gammel",
        &["-legacy"],
    );
    let info = openssl(&[
        "pkcs12",
        "-legacy",
        "-in",
        p(&p12_path),
        "-nokeys",
        "-info",
        "-passin",
        "pass:gammel",
    ]);
    assert!(info.contains("MAC: sha1"), "{info}");
    assert!(info.contains("pbeWithSHA1And40BitRC2-CBC"), "{info}");
    assert!(info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{info}");

    let der = read(&p12_path);
    let ber = certvakt_testkit::ber::pkcs12_to_ber(&der).expect("ber");
    for bytes in [&der, &ber] {
        let contents = read_pkcs12(bytes, "gammel").expect("read");
        assert_eq!(
            contents.key.as_ref().map(PrivateKey::public_key_raw),
            Some(key.public_key_raw())
        );
        assert_eq!(contents.leaf_der, issued.leaf_der);
        assert_eq!(contents.chain_der, vec![issued.ca_der.clone()]);
        assert_eq!(
            read_pkcs12(bytes, "ny").expect_err("wrong password"),
            KeyError::Pkcs12Password
        );
    }
}

#[test]
fn certificate_chains_are_read_from_pem_and_der() {
    let key = generate(KeyAlgorithm::EcP256).expect("key");
    let issued = issue(&key);
    let chain = vec![issued.leaf_der.clone(), issued.ca_der.clone()];
    let pem = pem_certificates(&chain);
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----\n").count(), 2);
    assert_eq!(parse_certificate_chain(pem.as_bytes()), Ok(chain.clone()));

    // openssl reads what we write.
    let path = write(issued.dir.path(), "chain.pem", &pem);
    let subject = openssl(&["x509", "-in", p(&path), "-noout", "-subject"]);
    assert_eq!(subject.trim(), "subject=CN = leaf.example");

    // Text and a key between the blocks are skipped.
    let mixed = format!(
        "Issued by the test CA\n{}{}{}",
        pem_certificates(&chain[..1]),
        &*key.to_pkcs8_pem(),
        pem_certificates(&chain[1..])
    );
    assert_eq!(parse_certificate_chain(mixed.as_bytes()), Ok(chain.clone()));
    assert_eq!(
        parse_certificate_chain(&issued.leaf_der),
        Ok(vec![issued.leaf_der.clone()])
    );

    let problem = |bytes: &[u8]| match parse_certificate_chain(bytes) {
        Err(KeyError::Certificate { problem }) => problem,
        other => panic!("expected a certificate problem, got {other:?}"),
    };
    assert!(problem(b"").starts_with("file is empty"));
    assert!(
        problem(key.to_pkcs8_pem().as_bytes())
            .starts_with("file holds a private key but no certificate")
    );
    let bundle = write_pkcs12(&key, &issued.leaf_der, &[], "x", "leaf").expect("bundle");
    assert!(problem(&bundle).starts_with("file is a PKCS#12 bundle"));
    assert!(problem(&issued.leaf_der[..200]).contains("damaged"));
}

/// `openssl pkcs12 -export` of `key`, its certificate and the CA as `file` in the issued
/// folder, with `extra` options (e.g. `-legacy`).
fn openssl_bundle(
    key: &PrivateKey,
    issued: &Issued,
    file: &str,
    name: &str,
    password: &str,
    extra: &[&str],
) -> std::path::PathBuf {
    let d = issued.dir.path();
    let key_path = write(d, "key.pem", &*key.to_pkcs8_pem());
    let leaf_path = write(
        d,
        "leaf.crt",
        pem_certificates(std::slice::from_ref(&issued.leaf_der)),
    );
    let ca_path = write(
        d,
        "ca.crt",
        pem_certificates(std::slice::from_ref(&issued.ca_der)),
    );
    let p12_path = d.join(file);
    let passout = format!("pass:{password}");
    let mut args = vec!["pkcs12", "-export"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "-inkey",
        p(&key_path),
        "-in",
        p(&leaf_path),
        "-certfile",
        p(&ca_path),
        "-name",
        name,
        "-passout",
        &passout,
        "-out",
        p(&p12_path),
    ]);
    openssl(&args);
    p12_path
}

#[test]
fn the_spki_is_the_one_a_csr_for_the_key_carries() {
    for algorithm in [
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
        KeyAlgorithm::Rsa2048,
    ] {
        let key = generate(algorithm).expect("key");
        let request = csr(&siths_profile(algorithm), &key).expect("csr");
        let (_, parsed) = X509CertificationRequest::from_der(&request.der).expect("parse");
        let spki = key.spki_der().expect("spki");
        assert_eq!(
            parsed.certification_request_info.subject_pki.raw,
            spki.as_slice(),
            "{algorithm:?}"
        );
        let (_, read) = SubjectPublicKeyInfo::from_der(&spki).expect("a SubjectPublicKeyInfo");
        assert_eq!(
            &*read.subject_public_key.data,
            key.public_key_raw().as_slice()
        );
    }
}
