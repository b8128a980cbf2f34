use std::io::{Read as _, Write as _};
use std::time::Duration as StdDuration;

use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData as _, RevocationReason, SanType};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::*;

use super::*;

fn rsa_2048() -> KeyPair {
    KeyType::Rsa2048.generate().expect("rsa key")
}

fn csr(key: &KeyPair, fqdn: Option<&str>, email: Option<&str>) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CountryName, "FI");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Helsingin Apteekki Oy");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "Helsingin VI apteekki");
    params
        .distinguished_name
        .push(DnType::CommonName, fqdn.unwrap_or("kanta-client"));
    if let Some(fqdn) = fqdn {
        params.subject_alt_names = vec![SanType::DnsName(fqdn.try_into().expect("dns"))];
    }
    if let Some(email) = email {
        params
            .subject_alt_names
            .push(SanType::Rfc822Name(email.try_into().expect("email")));
    }
    params
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("pem")
}

/// `GET` over plain HTTP; (status, body bytes).
fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).expect("read");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, raw[end + 4..].to_vec())
}

/// The serials on the CRL fetched from the server, after checking its signature and times.
fn fetched_crl_serials(dvv: &DvvCa) -> Vec<(Vec<u8>, Option<u8>)> {
    let path = dvv
        .crl_url()
        .split_once(&dvv.crl_addr().to_string())
        .expect("url has the address")
        .1
        .to_owned();
    let (status, der) = http_get(dvv.crl_addr(), &path);
    assert_eq!(status, 200);
    let (rest, crl) = parse_x509_crl(&der).expect("a DER CRL");
    assert!(rest.is_empty());
    let issuer_pem = ::pem::parse(dvv.ca().intermediate_pem().expect("intermediate")).expect("pem");
    let (_, issuer) = parse_x509_certificate(issuer_pem.contents()).expect("issuer");
    crl.verify_signature(issuer.public_key())
        .expect("the CRL is signed by the issuing CA");
    assert_eq!(crl.issuer(), issuer.subject());
    let this_update = crl.last_update().timestamp();
    let next_update = crl.next_update().expect("nextUpdate").timestamp();
    assert_eq!(next_update - this_update, 24 * 3600);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!((this_update - now).abs() < 60, "thisUpdate is now");
    crl.iter_revoked_certificates()
        .map(|r| {
            (
                r.raw_serial().to_vec(),
                r.reason_code().map(|(_, code)| code.0),
            )
        })
        .collect()
}

#[test]
fn a_server_certificate_from_a_csr_has_the_sote_profile() {
    let dvv = DvvCa::start(DvvConfig::default()).expect("dvv");
    let key = rsa_2048();
    let cert = dvv
        .issue(
            &csr(&key, Some("kanta.apteekki.fi"), None),
            SoteType::Server,
        )
        .expect("issued");
    assert_eq!(cert.serial.len(), 18);
    assert_eq!(cert.serial[0], 0x01);
    assert_eq!(cert.serial_hex().len(), 36);

    let (_, x509) = parse_x509_certificate(&cert.cert_der).expect("parse");
    assert_eq!(x509.raw_serial(), cert.serial.as_slice());
    assert_eq!(
        x509.issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok()),
        Some("TEST DVV Service Certificates")
    );
    // The CSR's subject is kept.
    let ou: Vec<&str> = x509
        .subject()
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .collect();
    assert_eq!(ou, ["Helsingin VI apteekki"]);
    assert_eq!(
        x509.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    let days =
        (x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 365);
    let eku = x509
        .extended_key_usage()
        .expect("eku")
        .expect("eku present")
        .value;
    assert!(eku.server_auth && eku.client_auth);
    let ku = x509.key_usage().expect("ku").expect("ku present").value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.non_repudiation());

    let mut crl_uris = Vec::new();
    for ext in x509.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name {
                            crl_uris.push(uri.to_string());
                        }
                    }
                }
            }
        }
    }
    assert_eq!(crl_uris, [dvv.crl_url().to_owned()]);
    assert!(dvv.crl_url().starts_with("http://127.0.0.1:"));

    // The chain: certificate, issuing CA, root.
    assert_eq!(::pem::parse_many(&cert.chain_pem).expect("pem").len(), 3);
}

#[test]
fn system_signature_types_last_two_years_and_sign() {
    let dvv = DvvCa::start(DvvConfig::default()).expect("dvv");
    let key = rsa_2048();
    for sote_type in [SoteType::SystemSignature, SoteType::TestSystemSignature] {
        // No DNS name needed for a signature certificate.
        let cert = dvv
            .issue(&csr(&key, None, None), sote_type)
            .expect("issued");
        let (_, x509) = parse_x509_certificate(&cert.cert_der).expect("parse");
        let days = (x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 730, "{sote_type:?}");
        let ku = x509.key_usage().expect("ku").expect("ku present").value;
        assert!(ku.non_repudiation() && !ku.key_encipherment());
        assert!(x509.extended_key_usage().expect("eku").is_none());
    }
    let test_server = dvv
        .issue(
            &csr(&key, Some("test.apteekki.fi"), None),
            SoteType::TestServer,
        )
        .expect("test server");
    assert_eq!(
        test_server.not_after - test_server.not_before,
        Duration::days(365)
    );
    // Serials differ and all are long.
    let serials: Vec<Vec<u8>> = dvv.issued().into_iter().map(|c| c.serial).collect();
    assert_eq!(serials.len(), 3);
    assert!(serials.iter().all(|s| s.len() == 18 && s[0] == 1));
    assert!(serials[0] != serials[1] && serials[1] != serials[2]);
}

#[test]
fn the_ca_refuses_what_dvv_refuses() {
    let dvv = DvvCa::start(DvvConfig::default()).expect("dvv");
    let rsa = rsa_2048();
    let no_dns = dvv
        .issue(&csr(&rsa, None, None), SoteType::Server)
        .expect_err("no dns name");
    assert!(no_dns.to_string().contains("no SAN dNSName"), "{no_dns}");
    let email = dvv
        .issue(
            &csr(&rsa, Some("kanta.apteekki.fi"), Some("it@apteekki.fi")),
            SoteType::TestServer,
        )
        .expect_err("email");
    assert!(email.to_string().contains("e-mail address"), "{email}");
    let ec = KeyType::EcP256.generate().expect("ec");
    let not_rsa = dvv
        .issue(&csr(&ec, Some("kanta.apteekki.fi"), None), SoteType::Server)
        .expect_err("ec key");
    assert!(not_rsa.to_string().contains("not RSA"), "{not_rsa}");
    let garbage = dvv
        .issue(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            SoteType::Server,
        )
        .expect_err("garbage");
    assert!(garbage.to_string().contains("refuses the CSR"), "{garbage}");
    assert!(dvv.issued().is_empty());
}

#[test]
fn a_revocation_reaches_the_served_crl_only_after_the_delay() {
    let dvv = DvvCa::start(DvvConfig {
        revocation_delay: StdDuration::from_millis(600),
        ..DvvConfig::default()
    })
    .expect("dvv");
    let key = rsa_2048();
    let old = dvv
        .issue(
            &csr(&key, Some("kanta.apteekki.fi"), None),
            SoteType::Server,
        )
        .expect("old");
    let new = dvv
        .issue(
            &csr(&key, Some("kanta.apteekki.fi"), None),
            SoteType::Server,
        )
        .expect("new");
    assert!(fetched_crl_serials(&dvv).is_empty());
    let first = dvv.crl_der().expect("crl");

    dvv.revoke(&old.serial, RevocationReason::Superseded)
        .expect("revoke");
    // Not yet published: the very same CRL is served.
    assert!(fetched_crl_serials(&dvv).is_empty());
    assert_eq!(dvv.crl_der().expect("crl"), first);

    std::thread::sleep(StdDuration::from_millis(800));
    let listed = fetched_crl_serials(&dvv);
    assert_eq!(
        listed,
        [(old.serial.clone(), Some(RevocationReason::Superseded as u8))]
    );
    let second = dvv.crl_der().expect("crl");
    let (_, second) = parse_x509_crl(&second).expect("crl");
    let (_, first) = parse_x509_crl(&first).expect("crl");
    assert!(second.crl_number() > first.crl_number());
    assert!(!listed.iter().any(|(s, _)| *s == new.serial));
    assert_eq!(dvv.crl_fetches(), 3);

    let again = dvv
        .revoke(&old.serial, RevocationReason::KeyCompromise)
        .expect_err("twice");
    assert!(again.to_string().contains("already revoked"), "{again}");
    let unknown = dvv
        .revoke(&[1, 2, 3], RevocationReason::Superseded)
        .expect_err("unknown");
    assert!(
        unknown
            .to_string()
            .contains("no certificate with serial 010203")
    );

    // Immediate revocation once the delay is set to zero.
    dvv.set_revocation_delay(StdDuration::ZERO);
    dvv.revoke(&new.serial, RevocationReason::CessationOfOperation)
        .expect("revoke new");
    assert_eq!(fetched_crl_serials(&dvv).len(), 2);

    let (status, _) = http_get(dvv.crl_addr(), "/other.crl");
    assert_eq!(status, 404);
}
