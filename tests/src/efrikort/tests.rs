use std::process::Command;
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;

use super::*;
use crate::ca::{CaShape, TestCa};
use crate::leaf::{IssuedCert, LeafSpec};
use crate::siths::SithsOrganisation;
use crate::smtp::{SmtpOptions, SmtpSink};
use crate::soapd::{PostOptions, post};

const HSA_ID: &str = "SE2321000016-B7QX";
const STOCKHOLM: &str = "SE2321000016-39KJ";
const UPPSALA: &str = "SE162321000024-0001";
const PROBE: &str = "191212121212";

struct Fixture {
    siths: SithsCa,
    sim: EfrikortSim,
    client: IssuedCert,
}

fn fixture() -> Fixture {
    let siths = SithsCa::new(SithsOrganisation::new(
        "Vårdbolaget AB",
        "Stockholm",
        "SE2321000016-",
        &["vardbolaget.se"],
    ))
    .expect("siths");
    let client = siths
        .issue_current(HSA_ID, "journal.vardbolaget.se")
        .expect("client certificate");
    let mut config = EfrikortConfig::for_siths(&siths);
    config.regions = vec![
        Region::new(
            "Region Stockholm",
            STOCKHOLM,
            "efrikort@regionstockholm.example",
        ),
        Region::new("Region Uppsala", UPPSALA, "efrikort@regionuppsala.example"),
    ];
    let sim = EfrikortSim::start(config).expect("efrikort");
    Fixture { siths, sim, client }
}

fn body(principal: &str, person: &str, logical_address: Option<&str>) -> String {
    let header = logical_address
        .map(|a| {
            format!("<soapenv:Header><itr:LogicalAddress>{a}</itr:LogicalAddress></soapenv:Header>")
        })
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:itr=\"urn:riv:itintegration:registry:1\" \
         xmlns:urn=\"urn:riv:cgi:healthcare:efrikort:GetExtendedCardForPersonResponder:3\">\
         {header}<soapenv:Body><urn:GetExtendedCardForPerson>\
         <urn:carePrincipalId>{principal}</urn:carePrincipalId>\
         <urn:personId>{person}</urn:personId>\
         <urn:cardTypeId>CARE_VISIT</urn:cardTypeId>\
         </urn:GetExtendedCardForPerson></soapenv:Body></soapenv:Envelope>"
    )
}

fn call(
    fx: &Fixture,
    environment: Environment,
    identity: &IssuedCert,
    body: &str,
    action: &str,
) -> (u16, String) {
    post(
        &fx.sim.url(environment),
        &fx.sim.server_root_pem(),
        body,
        &PostOptions {
            soap_action: Some(action),
            chunked: false,
            identity: Some(identity),
        },
    )
    .expect("post")
}

fn action() -> String {
    format!("\"{SOAP_ACTION}\"")
}

/// The result code of a response, after validating its body element against the contract.
fn result_code(fx: &Fixture, answer: &str) -> (String, bool) {
    let doc = roxmltree::Document::parse(answer).expect("xml");
    let response = doc
        .descendants()
        .find(|n| n.has_tag_name((ns::RESPONDER, "GetExtendedCardForPersonResponse")))
        .expect("a response element");
    let standalone = xmlsec::standalone(answer, response).expect("standalone");
    xmlsec::validate(&fx.sim.shared.schemas.join(RESPONDER_XSD), &standalone)
        .expect("the response validates against the contract");
    let code = doc
        .descendants()
        .find(|n| n.has_tag_name((ns::CORE, "resultCode")))
        .and_then(|n| n.text())
        .expect("resultCode")
        .to_owned();
    let has_card = doc
        .descendants()
        .any(|n| n.has_tag_name((ns::CORE, "extendedCard")));
    (code, has_card)
}

#[test]
fn ungranted_callers_get_accessdenied_and_granted_ones_a_card() {
    let fx = fixture();
    let request = body(STOCKHOLM, PROBE, Some(STOCKHOLM));
    let (status, answer) = call(&fx, Environment::Test, &fx.client, &request, &action());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        result_code(&fx, &answer),
        ("ACCESSDENIED".to_owned(), false)
    );
    assert!(!answer.contains("Fault"));

    fx.sim.grant(HSA_ID, STOCKHOLM, Environment::Test);
    let (status, answer) = call(&fx, Environment::Test, &fx.client, &request, &action());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(result_code(&fx, &answer), ("OK".to_owned(), true));
    // Another person: OK without a card.
    let (_, answer) = call(
        &fx,
        Environment::Test,
        &fx.client,
        &body(STOCKHOLM, "197001011234", Some(STOCKHOLM)),
        SOAP_ACTION,
    );
    assert_eq!(result_code(&fx, &answer), ("OK".to_owned(), false));
    // The grant is per principal and per environment.
    let (_, answer) = call(
        &fx,
        Environment::Test,
        &fx.client,
        &body(UPPSALA, PROBE, Some(UPPSALA)),
        &action(),
    );
    assert_eq!(result_code(&fx, &answer).0, "ACCESSDENIED");
    let (_, answer) = call(
        &fx,
        Environment::Produktion,
        &fx.client,
        &request,
        &action(),
    );
    assert_eq!(result_code(&fx, &answer).0, "ACCESSDENIED");

    let log = fx.sim.requests();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].outcome, Outcome::AccessDenied);
    assert_eq!(log[1].outcome, Outcome::Ok);
    assert_eq!(log[0].caller_hsa_id.as_deref(), Some(HSA_ID));
    assert_eq!(log[0].logical_address.as_deref(), Some(STOCKHOLM));
    assert_eq!(log[0].care_principal_id.as_deref(), Some(STOCKHOLM));
    assert_eq!(log[0].operation.as_deref(), Some(OPERATION));
    assert_eq!(log[4].environment, Environment::Produktion);
}

#[test]
fn broken_requests_are_soap_faults() {
    let fx = fixture();
    fx.sim.grant(HSA_ID, STOCKHOLM, Environment::Test);
    // personId longer than PersonIdValue's 13 characters: xmllint refuses it.
    let (status, answer) = call(
        &fx,
        Environment::Test,
        &fx.client,
        &body(STOCKHOLM, "19121212-1212X", Some(STOCKHOLM)),
        &action(),
    );
    assert_eq!(status, 500);
    assert!(answer.contains("faultcode>soap:Client"), "{answer}");
    assert!(answer.contains("does not validate"), "{answer}");
    assert!(answer.contains("personId"), "{answer}");
    // A missing element too.
    let missing = body(STOCKHOLM, PROBE, Some(STOCKHOLM))
        .replace("<urn:cardTypeId>CARE_VISIT</urn:cardTypeId>", "");
    let (status, answer) = call(&fx, Environment::Test, &fx.client, &missing, &action());
    assert_eq!(status, 500);
    assert!(answer.contains("cardTypeId"), "{answer}");

    let (status, answer) = call(
        &fx,
        Environment::Test,
        &fx.client,
        &body(STOCKHOLM, PROBE, None),
        &action(),
    );
    assert_eq!(status, 500);
    assert!(answer.contains("LogicalAddress"), "{answer}");

    let (status, answer) = call(
        &fx,
        Environment::Test,
        &fx.client,
        &body(STOCKHOLM, PROBE, Some(STOCKHOLM)),
        "\"urn:riv:cgi:healthcare:efrikort:GetCardForPersonResponder:3:GetCardForPerson\"",
    );
    assert_eq!(status, 500);
    assert!(answer.contains("is not urn:riv"), "{answer}");

    let outcomes: Vec<bool> = fx
        .sim
        .requests()
        .iter()
        .map(|r| matches!(r.outcome, Outcome::Fault(_)))
        .collect();
    assert_eq!(outcomes, [true, true, true, true]);
}

#[test]
fn the_wsdl_is_served_to_any_valid_client_and_strangers_fail_the_handshake() {
    let fx = fixture();
    let wsdl_url = format!("{}?wsdl", fx.sim.url(Environment::Produktion));
    let answer =
        crate::soapd::get(&wsdl_url, &fx.sim.server_root_pem(), Some(&fx.client)).expect("wsdl");
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .body
            .contains("GetExtendedCardForPersonResponderService")
    );
    assert!(answer.body.contains(SOAP_ACTION));

    // A SITHS certificate without an HSA-ID: the WSDL yes, a call no.
    let anonymous = fx
        .siths
        .ca()
        .issue(
            &LeafSpec::tls_server(&["anonymous.vardbolaget.se"])
                .extended_key_usage(vec![ExtendedKeyUsagePurpose::ClientAuth]),
        )
        .expect("anonymous");
    let answer =
        crate::soapd::get(&wsdl_url, &fx.sim.server_root_pem(), Some(&anonymous)).expect("wsdl");
    assert_eq!(answer.status, 200);
    let (status, answer) = call(
        &fx,
        Environment::Test,
        &anonymous,
        &body(STOCKHOLM, PROBE, Some(STOCKHOLM)),
        &action(),
    );
    assert_eq!(status, 500);
    assert!(answer.contains("VP002"), "{answer}");

    // Not SITHS, or no certificate at all: no TLS.
    let stranger_ca = TestCa::new(CaShape::Siths).expect("another SITHS-named CA");
    let stranger = stranger_ca
        .issue(&LeafSpec::siths(
            HSA_ID,
            "Vårdbolaget AB",
            "journal.vardbolaget.se",
        ))
        .expect("stranger");
    assert!(crate::soapd::get(&wsdl_url, &fx.sim.server_root_pem(), Some(&stranger)).is_err());
    assert!(crate::soapd::get(&wsdl_url, &fx.sim.server_root_pem(), None).is_err());

    let log = fx.sim.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].outcome, Outcome::Wsdl);
    assert_eq!(log[0].caller_hsa_id.as_deref(), Some(HSA_ID));
    assert_eq!(log[1].caller_hsa_id, None);
}

fn send_mail(sink: &SmtpSink, to: &[&str], cc: &[&str], subject: &str, text: &str) {
    let script = r#"
import smtplib, sys
from email.message import EmailMessage
port, to, cc, subject, text = sys.argv[1:6]
m = EmailMessage()
m["From"] = "drift@vardbolaget.se"
m["To"] = to
if cc:
    m["Cc"] = cc
m["Subject"] = subject
m.set_content(text)
with smtplib.SMTP("127.0.0.1", int(port)) as s:
    s.send_message(m)
"#;
    let status = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(sink.port().to_string())
        .arg(to.join(", "))
        .arg(cc.join(", "))
        .arg(subject)
        .arg(text)
        .status()
        .expect("python3");
    assert!(status.success());
}

fn request_text(environment: &str, region: &str, hsa_id: &str) -> String {
    format!(
        "Hej!\n\nVi vill ha access till eFrikort för integration av följande system. Innan CGI \
         tilldelar behörighet måste CGI få ett skriftligt godkännande av regionen att \
         anslutningen är ok.\n\nNamn på integrerande system: Journalia\n\
         Kontaktperson: Göthe Alfonso, gothe@vardbolaget.se, +46 70 123 12 31\n\
         Avser miljö för: {environment}\n\
         Avser vårdhuvudman (region/landsting): {region}\n\
         Serialnumber på certifikat: {hsa_id}\n\nVårdcentralen Norr\n"
    )
}

#[test]
fn an_approved_access_request_mail_grants_access() {
    let fx = fixture();
    let sink = SmtpSink::start(SmtpOptions::plain()).expect("smtp sink");
    let region = "efrikort@regionstockholm.example";
    let mails = [
        // 1: PRODUKTION before TEST.
        (
            vec![region],
            vec![CGI_SUPPORT],
            request_text("PRODUKTION", "Region Stockholm", HSA_ID),
        ),
        // 2: no copy to CGI.
        (
            vec![region],
            vec![],
            request_text("TEST", "Region Stockholm", HSA_ID),
        ),
        // 3: the certificate's serial number instead of the HSA-ID.
        (
            vec![region],
            vec![CGI_SUPPORT],
            request_text("TEST", "Region Stockholm", "4c0a0b0c0d"),
        ),
        // 4: right.
        (
            vec![region],
            vec![CGI_SUPPORT],
            request_text("TEST", "Region Stockholm", HSA_ID),
        ),
        // 5: right, now PRODUKTION.
        (
            vec![region],
            vec![CGI_SUPPORT],
            request_text("PRODUKTION", "Region Stockholm", HSA_ID),
        ),
        // 6: an environment that does not exist.
        (
            vec![region],
            vec![CGI_SUPPORT],
            request_text("STAGING", "Region Stockholm", HSA_ID),
        ),
    ];
    for (to, cc, text) in &mails {
        send_mail(&sink, to, cc, ACCESS_REQUEST_SUBJECT, text);
    }
    let received = sink
        .wait_for(mails.len(), Duration::from_secs(20))
        .expect("mails");
    let approve = |i: usize| fx.sim.approve_access_request(&received[i], Some(&fx.siths));

    let prod_first = approve(0).expect_err("TEST first");
    assert!(
        prod_first.to_string().contains("request TEST first"),
        "{prod_first}"
    );
    let no_cc = approve(1).expect_err("no cc");
    assert!(no_cc.to_string().contains(CGI_SUPPORT), "{no_cc}");
    let serial = approve(2).expect_err("serial");
    assert!(serial.to_string().contains("not the HSA-ID"), "{serial}");
    let staging = approve(5).expect_err("staging");
    assert!(format!("{staging:#}").contains("STAGING"), "{staging:#}");
    assert!(fx.sim.grants().is_empty());

    let test = approve(3).expect("TEST granted");
    assert_eq!(
        test,
        Grant {
            hsa_id: HSA_ID.to_owned(),
            principal: STOCKHOLM.to_owned(),
            environment: Environment::Test,
        }
    );
    let (_, answer) = call(
        &fx,
        Environment::Test,
        &fx.client,
        &body(STOCKHOLM, PROBE, Some(STOCKHOLM)),
        &action(),
    );
    assert_eq!(result_code(&fx, &answer).0, "OK");
    let prod = approve(4).expect("PRODUKTION granted");
    assert_eq!(prod.environment, Environment::Produktion);
    assert_eq!(fx.sim.grants().len(), 2);

    // Not an access request at all.
    send_mail(
        &sink,
        &[region],
        &[CGI_SUPPORT],
        "Hej",
        "Avser miljö för: TEST\n",
    );
    let received = sink
        .wait_for(mails.len() + 1, Duration::from_secs(20))
        .expect("mails");
    let other = fx
        .sim
        .approve_access_request(&received[mails.len()], None)
        .expect_err("subject");
    assert!(
        other.to_string().contains("not an eFrikort access request"),
        "{other}"
    );
}

#[test]
fn a_renewed_certificate_with_the_same_hsa_id_keeps_its_access() {
    let fx = fixture();
    fx.sim.grant(HSA_ID, STOCKHOLM, Environment::Test);
    // The renewal: a new key and CSR through the SITHS order inbox.
    let key = crate::ca::KeyType::EcP256.generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "journal.vardbolaget.se");
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let order = fx
        .siths
        .submit(&csr, HSA_ID, "journal.vardbolaget.se")
        .expect("order");
    let renewed = fx
        .siths
        .issue(order)
        .expect("issued")
        .with_key(&key.serialize_der())
        .expect("with its key");
    assert_ne!(renewed.cert_der, fx.client.cert_der);
    let (status, answer) = call(
        &fx,
        Environment::Test,
        &renewed,
        &body(STOCKHOLM, PROBE, Some(STOCKHOLM)),
        &action(),
    );
    assert_eq!(status, 200);
    assert_eq!(result_code(&fx, &answer), ("OK".to_owned(), true));

    // A new HSA-ID needs a new grant.
    let order = fx
        .siths
        .submit(&csr, "SE2321000016-NEW1", "journal.vardbolaget.se")
        .expect("order");
    let other = fx
        .siths
        .issue(order)
        .expect("issued")
        .with_key(&key.serialize_der())
        .expect("with its key");
    let (_, answer) = call(
        &fx,
        Environment::Test,
        &other,
        &body(STOCKHOLM, PROBE, Some(STOCKHOLM)),
        &action(),
    );
    assert_eq!(result_code(&fx, &answer).0, "ACCESSDENIED");
    let wrong_key = crate::ca::KeyType::EcP256.generate().expect("key");
    let order = fx
        .siths
        .submit(&csr, HSA_ID, "journal.vardbolaget.se")
        .expect("order");
    let refused = fx
        .siths
        .issue(order)
        .expect("issued")
        .with_key(&wrong_key.serialize_der())
        .expect_err("wrong key");
    assert!(refused.to_string().contains("not the key"), "{refused}");
}
