//! The sim CA over the wire: a real TLS client (tokio-rustls + hyper) on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DnType, DnValue, KeyPair, PublicKeyData as _};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{SimCa, SimCaConfig};
use crate::ca::{CaShape, KeyType, TestCa};
use crate::harness::eventually;
use crate::leaf::{IssuedCert, LeafSpec};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn sim(issue_after: Duration) -> SimCa {
    SimCa::start(
        loopback(),
        SimCaConfig {
            issue_after,
            validity: Duration::from_secs(10 * 60),
            ..SimCaConfig::default()
        },
    )
    .unwrap()
}

/// What a client presents: its certificate chain (leaf first, no root) and PKCS#8 key, DER.
struct Identity {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
}

impl Identity {
    fn of(issued: &IssuedCert) -> Identity {
        let intermediates = &issued.chain_der[..issued.chain_der.len() - 1];
        Identity {
            chain: std::iter::once(&issued.cert_der)
                .chain(intermediates)
                .cloned()
                .collect(),
            key: issued.key_pkcs8_der.clone(),
        }
    }
}

/// One request over a fresh mutual-TLS connection, as a client of the sim would make it.
fn call(
    sim: &SimCa,
    identity: Option<&Identity>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        let server_ca = pem::parse(sim.server_ca_pem())?;
        roots.add(CertificateDer::from(server_ca.contents().to_vec()))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            Some(identity) => {
                let chain = identity.chain.iter().cloned().map(CertificateDer::from);
                let key = PrivatePkcs8KeyDer::from(identity.key.clone());
                builder.with_client_auth_cert(chain.collect(), PrivateKeyDer::Pkcs8(key))?
            }
            None => builder.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(sim.addr()).await?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1")?, tcp)
            .await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let driving = tokio::spawn(connection);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let sent = sender.send_request(request).await;
        let response = match sent {
            Ok(response) => response,
            // The connection's own error says why (a TLS alert, say): prefer it.
            Err(e) => {
                let why = match driving.await {
                    Ok(Err(connection)) => format!("{connection:?}"),
                    _ => String::new(),
                };
                return Err(anyhow!("request failed: {e:?} {why}"));
            }
        };
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let json = serde_json::from_slice(&bytes)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&bytes)))?;
        Ok((status, json))
    })
}

fn csr(params: CertificateParams, key: &KeyPair) -> String {
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn tls_csr(key: &KeyPair) -> String {
    let mut params = CertificateParams::new(vec!["apotek.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "apotek.example");
    csr(params, key)
}

fn order(csr_pem: &str, profile: &str) -> Option<Value> {
    Some(json!({ "csr_pem": csr_pem, "profile": profile }))
}

#[test]
fn an_order_is_pending_then_issued_for_the_csr_key() {
    let sim = sim(Duration::from_millis(400));
    let client = &Identity::of(sim.client_identity());
    let key = KeyPair::generate().unwrap();

    let (status, placed) = call(
        &sim,
        Some(client),
        "POST",
        "/orders",
        order(&tls_csr(&key), "tls"),
    )
    .unwrap();
    assert_eq!(status, 202, "{placed}");
    let id = placed["order"].as_str().unwrap().to_owned();
    assert_eq!(id, "SIM-1");
    assert_eq!(placed["retry_after"], 1);

    let path = format!("/orders/{id}");
    let (status, pending) = call(&sim, Some(client), "GET", &path, None).unwrap();
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["status"], "pending");

    let issued = eventually(
        Duration::from_secs(10),
        "the order to be issued",
        || match call(&sim, Some(client), "GET", &path, None).unwrap() {
            (200, body) => Some(body),
            _ => None,
        },
    )
    .unwrap();
    let chain = pem::parse_many(issued["chain_pem"].as_str().unwrap()).unwrap();
    assert_eq!(chain.len(), 2, "the certificate and the issuing CA");
    let (_, leaf) = X509Certificate::from_der(chain[0].contents()).unwrap();
    let (_, issuing) = X509Certificate::from_der(chain[1].contents()).unwrap();
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    leaf.verify_signature(Some(issuing.public_key())).unwrap();
    assert_eq!(
        leaf.issuer().to_string(),
        issuing.subject().to_string(),
        "signed by the issuing CA"
    );
    assert!(
        issuing
            .subject()
            .to_string()
            .contains("TEST certvakt Issuing CA"),
        "{}",
        issuing.subject()
    );
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert_eq!(lifetime, 600, "the configured validity");
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let sans = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        format!("{:?}", sans.general_names),
        "[DNSName(\"apotek.example\")]"
    );

    // Asking again gives the same certificate.
    let (status, again) = call(&sim, Some(client), "GET", &path, None).unwrap();
    assert_eq!((status, &again["chain_pem"]), (200, &issued["chain_pem"]));

    let seen = sim.requests();
    assert_eq!(seen[0].method, "POST");
    assert!(
        seen[0]
            .client
            .as_deref()
            .unwrap()
            .contains("certvakt sim client"),
        "{seen:?}"
    );
    assert_eq!(sim.orders_placed(), 1);
}

#[test]
fn a_client_without_a_certificate_is_refused_in_the_handshake() {
    let sim = sim(Duration::ZERO);
    let key = KeyPair::generate().unwrap();
    let err = call(&sim, None, "POST", "/orders", order(&tls_csr(&key), "tls")).unwrap_err();
    assert!(
        format!("{err:#}").contains("CertificateRequired"),
        "{err:#}"
    );
    let refusals = eventually(Duration::from_secs(5), "the refusal", || {
        Some(sim.tls_refusals()).filter(|r| !r.is_empty())
    })
    .unwrap();
    assert!(refusals[0].contains("certificate"), "{refusals:?}");
    assert!(sim.requests().is_empty());
    assert_eq!(sim.orders_placed(), 0);
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let sim = sim(Duration::ZERO);
    // Another issuer's names. (A CA with the client CA's names but another key fails on the
    // signature instead, with a DecryptError alert: a refusal too.)
    let stranger = TestCa::new(CaShape::Siths)
        .unwrap()
        .issue(
            &LeafSpec::siths("SE2321000016-39KJ", "Region Stranger", "Stranger")
                .key_type(KeyType::EcP256),
        )
        .unwrap();
    let err = call(
        &sim,
        Some(&Identity::of(&stranger)),
        "GET",
        "/orders/SIM-1",
        None,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("UnknownCA"), "{err:#}");
    assert!(sim.requests().is_empty());
}

#[test]
fn a_certificate_the_sim_issued_may_authenticate_a_renewal() {
    let sim = sim(Duration::ZERO);
    let client = &Identity::of(sim.client_identity());
    let key = KeyPair::generate().unwrap();
    let (_, placed) = call(
        &sim,
        Some(client),
        "POST",
        "/orders",
        order(&tls_csr(&key), "tls"),
    )
    .unwrap();
    let path = format!("/orders/{}", placed["order"].as_str().unwrap());
    let (status, issued) = call(&sim, Some(client), "GET", &path, None).unwrap();
    assert_eq!(status, 200, "{issued}");

    let chain = pem::parse_many(issued["chain_pem"].as_str().unwrap()).unwrap();
    let current = Identity {
        chain: chain.iter().map(|c| c.contents().to_vec()).collect(),
        key: key.serialize_der(),
    };
    let (status, again) = call(&sim, Some(&current), "GET", &path, None).unwrap();
    assert_eq!(status, 200, "{again}");
    assert!(
        sim.requests()[2]
            .client
            .as_deref()
            .unwrap()
            .contains("apotek.example")
    );
}

#[test]
fn bad_csrs_are_refused_with_400_and_a_reason() {
    let sim = sim(Duration::ZERO);
    let client = &Identity::of(sim.client_identity());
    let ec_key = KeyPair::generate().unwrap();
    let mut no_sans = CertificateParams::default();
    no_sans
        .distinguished_name
        .push(DnType::CommonName, "no names");
    let tampered = {
        let good = pem::parse(tls_csr(&ec_key)).unwrap();
        let mut der = good.contents().to_vec();
        // Inside the subject's CN value: the signature no longer covers what is there.
        let at = der.windows(4).position(|w| w == b"apot").unwrap();
        der[at] = b'X';
        pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der))
    };
    let cases = [
        (json!({ "csr_pem": "hello" }), "csr_pem is not PEM"),
        (
            json!({ "csr_pem": sim.server_ca_pem() }),
            "not a \"CERTIFICATE REQUEST\"",
        ),
        (json!({ "csr_pem": tampered }), "signature does not verify"),
        (
            json!({ "csr_pem": csr(no_sans, &ec_key) }),
            "at least one DNS or IP subject alternative name",
        ),
        (
            json!({ "csr_pem": tls_csr(&ec_key), "profile": "oces3" }),
            "organizationIdentifier=NTRDK-",
        ),
        (
            json!({ "csr_pem": tls_csr(&ec_key), "profile": "ev" }),
            "unknown profile \"ev\"",
        ),
        (json!({ "csr": "x" }), "the body must be JSON"),
    ];
    for (body, expected) in cases {
        let (status, answer) =
            call(&sim, Some(client), "POST", "/orders", Some(body.clone())).unwrap();
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(expected), "{body}: {error}");
    }
    assert_eq!(sim.orders_placed(), 0);
}

#[test]
fn an_oces3_order_needs_an_rsa_key_of_3072_bits_and_keeps_the_subject() {
    let sim = sim(Duration::ZERO);
    let client = &Identity::of(sim.client_identity());
    let oces3_params = || {
        let mut params = CertificateParams::default();
        let dn = &mut params.distinguished_name;
        dn.push(DnType::CommonName, "Hjørring Apotek");
        dn.push(
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            DnValue::PrintableString(
                "UI:DK-O:G:2c1d3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6"
                    .try_into()
                    .unwrap(),
            ),
        );
        dn.push(
            DnType::CustomDnType(vec![2, 5, 4, 97]),
            DnValue::Utf8String("NTRDK-25450442".into()),
        );
        dn.push(
            DnType::CountryName,
            DnValue::PrintableString("DK".try_into().unwrap()),
        );
        params
    };
    let ec_key = KeyPair::generate().unwrap();
    let (status, answer) = call(
        &sim,
        Some(client),
        "POST",
        "/orders",
        order(&csr(oces3_params(), &ec_key), "oces3"),
    )
    .unwrap();
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("RSA key"),
        "{answer}"
    );

    let rsa_key = KeyType::Rsa3072.generate().unwrap();
    let (status, placed) = call(
        &sim,
        Some(client),
        "POST",
        "/orders",
        order(&csr(oces3_params(), &rsa_key), "oces3"),
    )
    .unwrap();
    assert_eq!(status, 202, "{placed}");
    let path = format!("/orders/{}", placed["order"].as_str().unwrap());
    let (status, issued) = call(&sim, Some(client), "GET", &path, None).unwrap();
    assert_eq!(status, 200, "{issued}");
    let chain = pem::parse_many(issued["chain_pem"].as_str().unwrap()).unwrap();
    let (_, leaf) = X509Certificate::from_der(chain[0].contents()).unwrap();
    assert_eq!(
        leaf.subject().to_string(),
        "CN=Hjørring Apotek, serialNumber=UI:DK-O:G:2c1d3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6, \
         OID(2.5.4.97)=NTRDK-25450442, C=DK"
    );
    assert!(leaf.extended_key_usage().unwrap().is_none());
    let usage = leaf.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature() && usage.key_encipherment());
}

#[test]
fn unknown_orders_and_paths_are_404_and_wrong_methods_405() {
    let sim = sim(Duration::ZERO);
    let client = &Identity::of(sim.client_identity());
    let (status, answer) = call(&sim, Some(client), "GET", "/orders/SIM-9", None).unwrap();
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().unwrap().contains("SIM-9"));
    let (status, _) = call(&sim, Some(client), "GET", "/", None).unwrap();
    assert_eq!(status, 404);
    let (status, _) = call(&sim, Some(client), "GET", "/orders", None).unwrap();
    assert_eq!(status, 405);
    let (status, _) = call(&sim, Some(client), "DELETE", "/orders/SIM-1", None).unwrap();
    assert_eq!(status, 405);
}

#[test]
fn the_failure_switch_answers_503_the_given_number_of_times() {
    let sim = sim(Duration::ZERO);
    let client = &Identity::of(sim.client_identity());
    let key = KeyPair::generate().unwrap();
    sim.fail_next(2);
    for _ in 0..2 {
        let (status, answer) = call(
            &sim,
            Some(client),
            "POST",
            "/orders",
            order(&tls_csr(&key), "tls"),
        )
        .unwrap();
        assert_eq!(status, 503);
        assert!(answer["error"].as_str().unwrap().contains("unavailable"));
    }
    let (status, answer) = call(
        &sim,
        Some(client),
        "POST",
        "/orders",
        order(&tls_csr(&key), "tls"),
    )
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["order"], "SIM-1");
}

#[test]
fn write_files_writes_what_a_daemon_needs() {
    let sim = sim(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let files = sim.write_files(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&files.url).unwrap(),
        format!("{}\n", sim.url())
    );
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    assert_eq!(
        std::fs::read_to_string(&files.server_ca).unwrap(),
        sim.server_ca_pem()
    );
    assert_eq!(
        std::fs::read_to_string(&files.issuing_ca).unwrap(),
        sim.issuing_ca_pem()
    );
    let key = std::fs::read_to_string(&files.client.key).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let fullchain = std::fs::read_to_string(&files.client.fullchain).unwrap();
    assert_eq!(pem::parse_many(fullchain).unwrap().len(), 3);
}
