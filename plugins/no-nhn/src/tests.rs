use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, CertificateInfo, CheckIssued, ErrorKind, HttpRequest, HttpResponse,
    PluginError, StepContext, StepOutcome,
};
use certvakt_testkit::{CaShape, IssuedCert, KeyType, LeafSpec, TestCa};
use rcgen::{KeyPair, KeyUsagePurpose};
use roxmltree::Document;
use serde_json::{Value, json};
use x509_parser::num_bigint::BigUint;

use crate::ar::{CERT_DETAILS, COMMON, CP, SEARCH_RESULT, SOAP12};
use crate::ldap::{self, SerialForm};
use crate::settings::Settings;
use crate::{NoNhn, RunState};

const ORGNR: &str = "931796003";
const HER: u32 = 8142987;
const SERVICE_HER: u32 = 8143060;
const EDI: &str = "meldingstjener-api@testedi.nhn.no";
const OLD_URL: &str = "ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%20G2?usercertificate;binary?sub?(|(certificateSerialNumber=1978614801669301597418371)(certificateSerialNumber=1978620698775221943443289))";

// ---------------------------------------------------------------------------------------------
// Certificates

fn rsa3072() -> Arc<KeyPair> {
    static KEY: OnceLock<Arc<KeyPair>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(KeyType::Rsa3072.generate().expect("an RSA key")))
        .clone()
}

fn ca(shape: CaShape) -> &'static TestCa {
    static CAS: OnceLock<Mutex<BTreeMap<String, &'static TestCa>>> = OnceLock::new();
    let mut cas = CAS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    cas.entry(format!("{shape:?}"))
        .or_insert_with(|| Box::leak(Box::new(TestCa::new(shape).expect("a CA"))))
}

fn seid2(usages: Vec<KeyUsagePurpose>) -> LeafSpec {
    LeafSpec::seid2(ORGNR, "KS-DIGITALE FELLESTJENESTER AS")
        .with_key(rsa3072())
        .key_usage(usages)
}

fn auth_usage() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ]
}

fn sign_usage() -> Vec<KeyUsagePurpose> {
    vec![KeyUsagePurpose::ContentCommitment]
}

fn issue(shape: CaShape, spec: &LeafSpec) -> IssuedCert {
    ca(shape).issue(spec).expect("issued")
}

fn info(issued: &IssuedCert) -> CertificateInfo {
    CertificateInfo {
        pem: issued.cert_pem.clone(),
        subject: String::new(),
        serial: String::new(),
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        identities: Vec::new(),
    }
}

/// A Buypass set: authentication (+ encryption) and signing.
struct BuypassSet {
    auth: IssuedCert,
    sign: IssuedCert,
}

impl BuypassSet {
    fn new() -> BuypassSet {
        BuypassSet {
            auth: issue(CaShape::BuypassSeid2, &seid2(auth_usage())),
            sign: issue(CaShape::BuypassSeid2, &seid2(sign_usage())),
        }
    }

    fn serial(cert: &IssuedCert) -> Vec<u8> {
        crate::cert::Cert::read(&cert.cert_pem, "test")
            .expect("readable")
            .serial
    }

    fn url(&self) -> String {
        ldap::url(
            "ldap.test4.buypass.no",
            "dc=Buypass,dc=no,CN=Buypass Class 3 Test4 CA G2",
            SerialForm::Decimal,
            &[&Self::serial(&self.auth), &Self::serial(&self.sign)],
        )
    }
}

fn now() -> i64 {
    certvakt_testkit::now_seconds().unix_timestamp()
}

fn password_file() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "no-nhn-test-{}-{}.pass",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, "s3cret\n").expect("written");
    path.to_string_lossy().into_owned()
}

fn settings_value() -> Value {
    json!({
        "ca": "buypass",
        "environment": "test",
        "organization_number": ORGNR,
        "her_id": HER,
        "service_her_ids": [SERVICE_HER],
        "username": "certvakt-ks",
        "password_file": password_file(),
    })
}

fn context(settings: Value, roles: &[&str]) -> CertificateContext {
    CertificateContext {
        certificate_id: "nhn".into(),
        settings,
        environment: "test".into(),
        current: None,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        current_set: BTreeMap::new(),
        role: None,
    }
}

fn step(settings: Value, set: &BuypassSet, state: Value) -> StepContext {
    StepContext {
        certificate: context(settings, &["authentication", "signing"]),
        new: Some(info(&set.auth)),
        new_set: BTreeMap::from([("signing".to_owned(), info(&set.sign))]),
        state,
    }
}

// ---------------------------------------------------------------------------------------------
// A fake Adresseregisteret, shaped like the real answers

#[derive(Debug, Default)]
struct Party {
    level_service: bool,
    /// The service has an E_DS address of its own (not the organisation's, inherited).
    own_ds: bool,
    current_ds: String,
    future: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct ArState {
    soap12: bool,
    parties: BTreeMap<u32, Party>,
    /// Whether the CA has published the new set (search finds it).
    published: bool,
    /// Whether AR makes a future address current at ValidFrom.
    promotes: bool,
    new_url: String,
    new_serials: (String, String),
    new_der: (Vec<u8>, Vec<u8>),
    /// The next update answers this (status, body) instead.
    update_fault: Option<(u16, String)>,
    /// Every request: (operation, body).
    requests: Vec<(String, String)>,
}

#[derive(Clone)]
struct FakeAr {
    state: Arc<Mutex<ArState>>,
    clock: Arc<AtomicI64>,
}

impl FakeAr {
    fn new(host: &FakeHost, set: &BuypassSet) -> FakeAr {
        let mut state = ArState {
            promotes: true,
            new_url: set.url(),
            new_serials: (
                BigUint::from_bytes_be(&BuypassSet::serial(&set.auth)).to_string(),
                BigUint::from_bytes_be(&BuypassSet::serial(&set.sign)).to_string(),
            ),
            new_der: (set.auth.cert_der.clone(), set.sign.cert_der.clone()),
            ..ArState::default()
        };
        state.parties.insert(
            HER,
            Party {
                current_ds: OLD_URL.into(),
                ..Party::default()
            },
        );
        state.parties.insert(
            SERVICE_HER,
            Party {
                level_service: true,
                current_ds: OLD_URL.into(),
                ..Party::default()
            },
        );
        let ar = FakeAr {
            state: Arc::new(Mutex::new(state)),
            clock: Arc::new(AtomicI64::new(now())),
        };
        host.set_now(ar.clock.load(Ordering::SeqCst));
        let responder = ar.clone();
        host.respond_http_with(move |request| responder.answer(request));
        ar
    }

    fn with<T>(&self, f: impl FnOnce(&mut ArState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_now(&self, host: &FakeHost, unix: i64) {
        self.clock.store(unix, Ordering::SeqCst);
        host.set_now(unix);
    }

    fn operations(&self) -> Vec<String> {
        self.with(|s| s.requests.iter().map(|(op, _)| op.clone()).collect())
    }

    fn updates(&self) -> Vec<String> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|(op, _)| op.starts_with("Update"))
                .map(|(_, body)| body.clone())
                .collect()
        })
    }

    fn answer(&self, request: &HttpRequest) -> Option<HttpResponse> {
        if !request.url.starts_with("https://ws-web.test.nhn.no/v1/AR") {
            return None;
        }
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let expected = format!("Basic {}", STANDARD.encode("certvakt-ks:s3cret"));
        if header("Authorization").as_deref() != Some(expected.as_str()) {
            return Some(response(401, "Unauthorized".into()));
        }
        let action = header("SOAPAction")
            .or_else(|| {
                header("Content-Type")
                    .and_then(|c| c.split_once("action=").map(|(_, a)| a.to_owned()))
            })
            .unwrap_or_default();
        let operation = action
            .trim_matches('"')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let now = self.clock.load(Ordering::SeqCst);
        self.with(|s| {
            s.requests.push((operation.clone(), body.clone()));
            let doc = Document::parse(&body).expect("the request is XML");
            let param = |name: &str| {
                doc.descendants()
                    .find(|n| n.has_tag_name((CP, name)))
                    .and_then(|n| n.text())
                    .unwrap_or_default()
                    .to_owned()
            };
            s.promote(now);
            let answer = match operation.as_str() {
                "GetCommunicationPartyDetails" => {
                    let her: u32 = param("herId").parse().expect("a herId");
                    party_xml(her, s.parties.get(&her)?)
                }
                "SearchCertificatesByLdapUrl" => {
                    let url = param("ldapUrl");
                    let candidates = if s.published && url == s.new_url {
                        format!(
                            "{}{}",
                            candidate(&s.new_serials.0, true, false),
                            candidate(&s.new_serials.1, false, true)
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "<SearchCertificatesByLdapUrlResponse xmlns=\"{CP}\">\
                         <SearchCertificatesByLdapUrlResult xmlns:b=\"{SEARCH_RESULT}\">\
                         <b:ActualLdapUrl>{}</b:ActualLdapUrl>\
                         <b:MatchingCertificates>{candidates}</b:MatchingCertificates>\
                         </SearchCertificatesByLdapUrlResult></SearchCertificatesByLdapUrlResponse>",
                        xml_escape(&url)
                    )
                }
                "GetCertificateDetailsForEncryption"
                | "GetCertificateDetailsForValidatingSignature" => {
                    let her: u32 = param("herId").parse().expect("a herId");
                    let party = s.parties.get(&her)?;
                    let encryption = operation.ends_with("Encryption");
                    let der = if party.current_ds == s.new_url {
                        if encryption {
                            s.new_der.0.clone()
                        } else {
                            s.new_der.1.clone()
                        }
                    } else {
                        b"the old certificate".to_vec()
                    };
                    format!(
                        "<{operation}Response xmlns=\"{CP}\"><{operation}Result \
                         xmlns:b=\"{CERT_DETAILS}\"><b:Certificate>{}</b:Certificate>\
                         <b:LdapUrl>{}</b:LdapUrl></{operation}Result></{operation}Response>",
                        STANDARD.encode(der),
                        xml_escape(&party.current_ds)
                    )
                }
                "UpdateOrganizationDetails" | "UpdateServiceDetails" => {
                    if let Some((status, body)) = s.update_fault.take() {
                        return Some(response(status, body));
                    }
                    let her: u32 = param("HerId").parse().expect("a HerId");
                    let party = s.parties.get_mut(&her)?;
                    assert_eq!(
                        party.level_service,
                        operation == "UpdateServiceDetails",
                        "HER-id {her} is written with the operation of its level"
                    );
                    let addresses = |list: &str, item: &str| -> Vec<(String, String, String)> {
                        doc.descendants()
                            .filter(|n| n.has_tag_name((CP, list)))
                            .flat_map(|l| l.children().filter(move |c| c.has_tag_name((COMMON, item))))
                            .map(|a| {
                                let text = |name: &str| {
                                    a.children()
                                        .find(|c| c.has_tag_name((COMMON, name)))
                                        .and_then(|c| c.text())
                                        .unwrap_or_default()
                                        .to_owned()
                                };
                                (text("Address"), text("TypeCodeValue"), text("ValidFrom"))
                            })
                            .collect()
                    };
                    // Full replacement of the lists, as the simulator blueprint says.
                    if let Some((url, _, _)) = addresses("ElectronicAddresses", "ElectronicAddress")
                        .into_iter()
                        .find(|(_, t, _)| t == "E_DS")
                    {
                        party.current_ds = url;
                        party.own_ds = true;
                    }
                    party.future = addresses("FutureElectronicAddresses", "FutureElectronicAddress")
                        .into_iter()
                        .filter(|(_, t, _)| t == "E_DS")
                        .map(|(url, _, from)| (url, from))
                        .collect();
                    format!("<{operation}Response xmlns=\"{CP}\"/>")
                }
                other => panic!("the fake AR does not know {other}"),
            };
            Some(response(200, envelope(s.soap12, &answer)))
        })
    }
}

impl ArState {
    /// AR makes a future address current once its ValidFrom has passed.
    fn promote(&mut self, now: i64) {
        if !self.promotes {
            return;
        }
        for party in self.parties.values_mut() {
            let due: Vec<(String, String)> = party
                .future
                .iter()
                .filter(|(_, from)| crate::parse_xs_datetime(from).is_some_and(|t| t <= now))
                .cloned()
                .collect();
            for (url, _) in due {
                party.own_ds = true;
                party.current_ds = url.clone();
                party.future.retain(|(u, _)| *u != url);
            }
        }
    }
}

fn response(status: u16, body: String) -> HttpResponse {
    HttpResponse {
        status,
        headers: Vec::new(),
        body: body.into_bytes(),
    }
}

fn envelope(soap12: bool, body: &str) -> String {
    let ns = if soap12 {
        SOAP12
    } else {
        "http://schemas.xmlsoap.org/soap/envelope/"
    };
    format!("<s:Envelope xmlns:s=\"{ns}\"><s:Body>{body}</s:Body></s:Envelope>")
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;")
}

fn candidate(serial: &str, encryption: bool, signing: bool) -> String {
    format!(
        "<b:CertificateCandidate><b:CertificateSerialNumber>{serial}</b:CertificateSerialNumber>\
         <b:CnName>KS-DIGITALE FELLESTJENESTER AS</b:CnName><b:FallbackSource>None</b:FallbackSource>\
         <b:NotAfter><c:DateTime xmlns:c=\"http://schemas.datacontract.org/2004/07/System\">2029-01-01T00:00:00Z</c:DateTime></b:NotAfter>\
         <b:ValidForEncryption>{encryption}</b:ValidForEncryption>\
         <b:ValidForSigning>{signing}</b:ValidForSigning></b:CertificateCandidate>"
    )
}

fn code(code: &str, text: &str) -> String {
    format!(
        "<b:Type><b:Active>true</b:Active><b:CodeText>{text}</b:CodeText>\
         <b:CodeValue>{code}</b:CodeValue><b:LongDescription i:nil=\"true\"/><b:OID>9044</b:OID>\
         <b:SimpleType>type_adressekomponeneter</b:SimpleType></b:Type>"
    )
}

/// A party as the real sample writes it (ar-GetCommunicationPartyDetails-organization-response).
fn party_xml(her: u32, party: &Party) -> String {
    let address = |url: &str, type_code: &str, text: &str, valid_from: Option<&str>| {
        let inherited =
            party.level_service && valid_from.is_none() && (type_code != "E_DS" || !party.own_ds);
        let element = if valid_from.is_some() {
            "FutureElectronicAddress"
        } else {
            "ElectronicAddress"
        };
        format!(
            "<b:{element}><b:Address>\n    {}\n</b:Address><b:Inherited>{inherited}</b:Inherited>\
             <b:LastChanged>2025-04-30T14:13:19.01</b:LastChanged>{}\
             <b:TypeCodeValue>{type_code}</b:TypeCodeValue>{}</b:{element}>",
            xml_escape(url),
            code(type_code, text),
            valid_from
                .map(|v| format!("<b:ValidFrom>{v}</b:ValidFrom>"))
                .unwrap_or_default()
        )
    };
    let future: String = party
        .future
        .iter()
        .map(|(url, from)| address(url, "E_DS", "Digital sertifikat", Some(from)))
        .collect();
    let kind = if party.level_service {
        "Service"
    } else {
        "Organization"
    };
    format!(
        "<GetCommunicationPartyDetailsResponse xmlns=\"{CP}\">\
         <GetCommunicationPartyDetailsResult i:type=\"{kind}\" \
         xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><Active>true</Active>\
         <DisplayName i:nil=\"true\"/>\
         <ElectronicAddresses xmlns:b=\"{COMMON}\">{}{}</ElectronicAddresses>\
         <FutureElectronicAddresses xmlns:b=\"{COMMON}\">{future}</FutureElectronicAddresses>\
         <HerId>{her}</HerId><Name>KS-DIGITALE FELLESTJENESTER AS</Name>\
         <PhysicalAddresses xmlns:b=\"{COMMON}\"><b:PhysicalAddress><b:City>OSLO</b:City>\
         <b:Country i:nil=\"true\"/><b:Description/><b:Inherited>{}</b:Inherited>\
         <b:PostalCode>161</b:PostalCode><b:StreetAddress>Haakon VIIs gate 9</b:StreetAddress>\
         <b:TypeCodeValue>RES</b:TypeCodeValue></b:PhysicalAddress></PhysicalAddresses>\
         <Type>{kind}</Type></GetCommunicationPartyDetailsResult>\
         </GetCommunicationPartyDetailsResponse>",
        address(
            EDI,
            "E_EDI",
            "EDI (Standardisert elektronisk melding)",
            None
        ),
        address(&party.current_ds, "E_DS", "Digital sertifikat", None),
        party.level_service,
    )
}

fn fault(detail: &str) -> String {
    envelope(
        false,
        &format!(
            "<s:Fault><faultcode>s:Client</faultcode><faultstring>fault</faultstring>\
             <detail>{detail}</detail></s:Fault>"
        ),
    )
}

fn register(host: &FakeHost, step: StepContext) -> Result<StepOutcome, PluginError> {
    host.register(&NoNhn, step)
}

fn state_of(outcome: &StepOutcome) -> Value {
    match outcome {
        StepOutcome::Done { state } | StepOutcome::Pending { state, .. } => state.clone(),
    }
}

fn run_state(outcome: &StepOutcome) -> RunState {
    serde_json::from_value(state_of(outcome)).expect("the run's state parses")
}

// ---------------------------------------------------------------------------------------------
// The LDAP URL

fn bytes_of(hex_colons: &str) -> Vec<u8> {
    hex_colons
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect()
}

fn decimal_bytes(decimal: &str) -> Vec<u8> {
    BigUint::parse_bytes(decimal.as_bytes(), 10)
        .expect("decimal")
        .to_bytes_be()
}

#[test]
fn the_url_is_built_exactly_as_ar_stores_it() {
    // brief §1.2: the real Buypass test set's serials; §2.3 shows the URL AR stores for them.
    let auth = bytes_of("01:8c:ba:17:f4:f5:b4:02:14:7c:a9");
    let sign = bytes_of("01:8c:bb:9b:5a:4d:0c:f5:9f:21:5f");
    assert_eq!(
        ldap::url(
            "ldap.test4.buypass.no",
            "dc=Buypass,dc=no,CN=Buypass Class 3 Test4 CA G2",
            SerialForm::Decimal,
            &[&auth, &sign]
        ),
        "ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%20G2\
         ?usercertificate;binary?sub?(|(certificateSerialNumber=1873489947888800148782249)\
         (certificateSerialNumber=1873517862702705029357919))"
    );
    // The real AR sample's address, from its two serials.
    let sample = include_str!(
        "../../../../shared/protocols/reference/no-nhn/samples/ar-GetCommunicationPartyDetails-organization-response.xml"
    );
    assert!(sample.contains(OLD_URL));
    assert_eq!(
        ldap::url(
            "ldap.test4.buypass.no",
            crate::settings::default_ldap_base(
                crate::settings::Ca::Buypass,
                crate::settings::Environment::Test
            ),
            SerialForm::of(crate::settings::Ca::Buypass),
            &[
                &decimal_bytes("1978614801669301597418371"),
                &decimal_bytes("1978620698775221943443289")
            ]
        ),
        OLD_URL
    );
    // Commfides: lowercase hex, no leading zeros (a DER serial may start with 00).
    assert_eq!(
        ldap::url(
            "ldap.test.commfides.com",
            "ou=Legal-Person-G3,dc=commfides,dc=com",
            SerialForm::of(crate::settings::Ca::Commfides),
            &[&[0x00, 0x9A, 0xBC, 0x01], &[0x0F, 0xFF]]
        ),
        "ldap://ldap.test.commfides.com/ou=Legal-Person-G3,dc=commfides,dc=com\
         ?usercertificate;binary?sub?(|(certificateSerialNumber=9abc01)(certificateSerialNumber=fff))"
    );
    assert!(ldap::same_serial("1873489947888800148782249", &auth));
    assert!(ldap::same_serial("01:8C:BA:17:F4:F5:B4:02:14:7C:A9", &auth));
    assert!(!ldap::same_serial("1873517862702705029357919", &auth));
    assert_eq!(
        ldap::split_base_url(
            "ldap://ldap.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20CA%20G2"
        ),
        Some((
            "ldap.buypass.no".to_owned(),
            "dc=Buypass,dc=no,CN=Buypass Class 3 CA G2".to_owned()
        ))
    );
}

// ---------------------------------------------------------------------------------------------
// Settings

#[test]
fn every_settings_problem_is_reported_at_once_and_defaults_follow_ca_and_environment() {
    let value = json!({
        "ca": "digdir",
        "organization_number": "12345678",
        "her_id": "abc",
        "service_her_ids": [8143060, -1],
        "password_file": "relative.pass",
        "binding": "soap13",
        "publish_poll": "4s",
        "colour": "red",
    });
    let problems = Settings::parse(&value).err().unwrap_or_default();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "colour",
        "ca",
        "environment",
        "organization_number",
        "her_id",
        "service_her_ids[1]",
        "username",
        "password_file",
        "binding",
        "publish_poll",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }

    let settings = Settings::parse(&settings_value()).expect("valid");
    assert_eq!(
        settings.ar_endpoint,
        "https://ws-web.test.nhn.no/v1/AR/Basic"
    );
    assert_eq!(settings.ldap_host, "ldap.test4.buypass.no");
    assert_eq!(settings.publish_poll.as_secs(), 900);
    assert_eq!(settings.publish_timeout.as_secs(), 2 * 86_400);
    assert_eq!(settings.switch_after.as_secs(), 86_400);
    assert_eq!(settings.legacy_decrypt_retention.as_secs(), 30 * 86_400);
    assert_eq!(settings.minimum_rsa_bits, 3072);
    assert!(!settings.fallback_write_current);

    let mut value = settings_value();
    value["ca"] = json!("commfides");
    value["environment"] = json!("production");
    value["binding"] = json!("soap12");
    let settings = Settings::parse(&value).expect("valid");
    assert_eq!(settings.ar_endpoint, "https://ws.nhn.no/v1/AR");
    assert_eq!(settings.ldap_host, "ldap.commfides.com");
    assert_eq!(
        settings.ldap_base,
        crate::settings::LdapBase::Fixed("ou=Legal-Person-G3,dc=commfides,dc=com".into())
    );

    let mut value = settings_value();
    value["key_source"] = json!("certvakt");
    let problems = Settings::parse(&value).err().unwrap_or_default();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("Buypass makes the keys"));
}

#[test]
fn describe_documents_every_setting_the_parser_reads() {
    let host = FakeHost::new();
    let description = host.describe(&NoNhn).expect("describe");
    assert_eq!(description.name, "no-nhn");
    let keys: Vec<&str> = description
        .settings
        .iter()
        .map(|d| d.key.as_str())
        .collect();
    for key in settings_value().as_object().expect("a table").keys() {
        assert!(keys.contains(&key.as_str()), "{key}");
    }
    for doc in &description.settings {
        assert!(doc.example.is_some(), "{} has an example", doc.key);
        let mut value = settings_value();
        if let Some(example) = &doc.example {
            let parsed: toml::Table =
                toml::from_str(&format!("v = {example}")).expect("a TOML value");
            value[&doc.key] = serde_json::to_value(&parsed["v"]).expect("json");
        }
        if doc.key == "key_source" || doc.key == "ca" {
            continue;
        }
        assert_eq!(
            Settings::parse(&value).err().unwrap_or_default(),
            vec![],
            "the example of {} is valid",
            doc.key
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The import check

fn check(set_new: (&IssuedCert, &IssuedCert), settings: Value) -> Vec<String> {
    let host = FakeHost::new();
    host.set_now(now());
    let check = CheckIssued {
        certificate: context(settings, &["authentication", "signing"]),
        new: info(set_new.0),
        new_set: BTreeMap::from([("signing".to_owned(), info(set_new.1))]),
        key_from_ca: true,
    };
    host.check_issued(&NoNhn, check)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_buypass_set_of_the_organisation_has_no_objections() {
    let set = BuypassSet::new();
    assert_eq!(
        check((&set.auth, &set.sign), settings_value()),
        Vec::<String>::new()
    );
}

#[test]
fn a_set_of_another_organisation_is_refused() {
    let set = BuypassSet::new();
    let mut settings = settings_value();
    settings["organization_number"] = json!("983163327");
    let objections = check((&set.auth, &set.sign), settings);
    assert_eq!(objections.len(), 2, "{objections:?}");
    assert!(
        objections[0].contains("organisation number 931796003"),
        "{objections:?}"
    );
    assert!(
        objections[0].contains("organization_number = \"983163327\""),
        "{objections:?}"
    );
}

#[test]
fn a_seid1_certificate_is_refused_because_seid1_is_no_longer_issued() {
    let set = BuypassSet::new();
    let seid1 = issue(
        CaShape::BuypassSeid1,
        &LeafSpec::seid1(ORGNR, "KS")
            .with_key(rsa3072())
            .key_usage(auth_usage()),
    );
    let objections = check((&seid1, &set.sign), settings_value());
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(objections[0].contains("SEID 1"), "{objections:?}");
    assert!(objections[0].contains("no longer issued"), "{objections:?}");
}

#[test]
fn a_personal_certificate_is_refused_as_not_an_enterprise_certificate() {
    let set = BuypassSet::new();
    let personal = issue(
        CaShape::BuypassSeid2,
        &seid2(auth_usage()).subject_serial_number("UN:NO-9578-4050-127091783"),
    );
    let objections = check((&personal, &set.sign), settings_value());
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(
        objections[0].contains("personal certificate"),
        "{objections:?}"
    );
    assert!(
        objections[0].contains("not an enterprise certificate"),
        "{objections:?}"
    );
}

#[test]
fn each_role_needs_its_key_usage() {
    let set = BuypassSet::new();
    // A Buypass authentication certificate is the encryption one too.
    let no_encipherment = issue(
        CaShape::BuypassSeid2,
        &seid2(vec![KeyUsagePurpose::DigitalSignature]),
    );
    let objections = check((&no_encipherment, &set.sign), settings_value());
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(objections[0].contains("keyEncipherment"), "{objections:?}");
    // The files swapped: the signing role holds the authentication certificate.
    let objections = check((&set.auth, &set.auth), settings_value());
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(
        objections[0].contains("the new signing certificate"),
        "{objections:?}"
    );
    assert!(objections[0].contains("nonRepudiation"), "{objections:?}");
}

#[test]
fn weak_keys_and_ec_keys_from_buypass_are_refused() {
    let set = BuypassSet::new();
    let weak = issue(
        CaShape::BuypassSeid2,
        &LeafSpec::seid2(ORGNR, "KS")
            .key_type(KeyType::Rsa2048)
            .key_usage(sign_usage()),
    );
    let objections = check((&set.auth, &weak), settings_value());
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(
        objections[0].contains("RSA key of 2048 bits"),
        "{objections:?}"
    );
    let mut settings = settings_value();
    settings["minimum_rsa_bits"] = json!(2048);
    assert_eq!(check((&set.auth, &weak), settings), Vec::<String>::new());

    let ec = issue(
        CaShape::BuypassSeid2,
        &LeafSpec::seid2(ORGNR, "KS")
            .key_type(KeyType::EcP256)
            .key_usage(sign_usage()),
    );
    let objections = check((&set.auth, &ec), settings_value());
    assert_eq!(objections.len(), 1, "{objections:?}");
    assert!(objections[0].contains("EC key"), "{objections:?}");
}

#[test]
fn an_expired_or_far_future_certificate_is_refused() {
    let set = BuypassSet::new();
    let expired = issue(
        CaShape::BuypassSeid2,
        &seid2(sign_usage()).expired_days_ago(1),
    );
    let objections = check((&set.auth, &expired), settings_value());
    assert!(
        objections.iter().any(|o| o.contains("expired")),
        "{objections:?}"
    );
    let later = issue(
        CaShape::BuypassSeid2,
        &seid2(sign_usage()).not_yet_valid_for_days(3),
    );
    let objections = check((&set.auth, &later), settings_value());
    assert!(
        objections.iter().any(|o| o.contains("more than a day")),
        "{objections:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Register

#[test]
fn register_waits_for_publication_writes_a_future_address_and_is_done_after_the_read_back() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    let settings = settings_value();
    let start = now();

    // 1. Not published yet: pending, nothing written.
    let outcome = register(&host, step(settings.clone(), &set, Value::Null)).expect("pending");
    let StepOutcome::Pending {
        poll_after_secs,
        task,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!((*poll_after_secs, task.is_none()), (900, true));
    assert_eq!(
        ar.operations(),
        [
            "GetCommunicationPartyDetails",
            "GetCommunicationPartyDetails",
            "SearchCertificatesByLdapUrl"
        ]
    );
    assert!(ar.updates().is_empty());

    // 2. Published: written as a future address for the switch time, pending until then.
    ar.with(|s| s.published = true);
    ar.set_now(&host, start + 900);
    let outcome = register(&host, step(settings.clone(), &set, state_of(&outcome))).expect("ok");
    let StepOutcome::Pending {
        poll_after_secs, ..
    } = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(*poll_after_secs, 86_400);
    let state = run_state(&outcome);
    let switch_at = start + 900 + 86_400;
    assert_eq!(state.switch_at, Some(switch_at));
    assert_eq!(state.url.as_deref(), Some(set.url().as_str()));
    assert_eq!(ar.updates().len(), 2, "{:?}", ar.operations());
    let valid_from = certvakt_soap::xs_datetime(switch_at);
    ar.with(|s| {
        for party in s.parties.values() {
            assert_eq!(party.current_ds, OLD_URL, "the current address is kept");
            assert_eq!(party.future, vec![(set.url(), valid_from.clone())]);
        }
    });
    assert_eq!(
        state_of(&outcome)["parties"][HER.to_string()],
        json!({"level": "organization", "written": "future", "valid_from": valid_from, "confirmed": false})
    );

    // 3. Asked again before the switch: no second write.
    ar.set_now(&host, start + 1800);
    let outcome = register(&host, step(settings.clone(), &set, state_of(&outcome))).expect("ok");
    assert!(
        matches!(outcome, StepOutcome::Pending { .. }),
        "{outcome:?}"
    );
    assert_eq!(ar.updates().len(), 2, "written once");
    assert_eq!(
        run_state(&outcome).switch_at,
        Some(switch_at),
        "the same switch time"
    );

    // 4. After the switch AR gives the new set: done.
    ar.set_now(&host, switch_at + 1);
    let outcome = register(&host, step(settings, &set, state_of(&outcome))).expect("done");
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    let state = run_state(&outcome);
    assert!(state.parties.values().all(|p| p.confirmed), "{state:?}");
    assert_eq!(ar.updates().len(), 2);
}

#[test]
fn a_write_whose_answer_was_lost_is_not_written_again() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    ar.with(|s| s.published = true);
    let outcome = register(&host, step(settings_value(), &set, Value::Null)).expect("ok");
    assert_eq!(ar.updates().len(), 2);
    let switch_at = run_state(&outcome).switch_at;
    // The daemon lost the outcome: the run's state is still null.
    ar.set_now(&host, now() + 3600);
    let again = register(&host, step(settings_value(), &set, Value::Null)).expect("ok");
    assert_eq!(
        ar.updates().len(),
        2,
        "AR lists the future address: nothing written"
    );
    assert_eq!(
        run_state(&again).switch_at,
        switch_at,
        "AR's ValidFrom is adopted"
    );
}

#[test]
fn the_publish_timeout_opens_a_task_once() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    let start = now();
    let outcome = register(&host, step(settings_value(), &set, Value::Null)).expect("pending");
    ar.set_now(&host, start + 2 * 86_400);
    let outcome = register(&host, step(settings_value(), &set, state_of(&outcome))).expect("ok");
    let StepOutcome::Pending {
        task: Some(task), ..
    } = &outcome
    else {
        panic!("a task: {outcome:?}");
    };
    assert!(
        task.title.contains("Buypass has not published"),
        "{}",
        task.title
    );
    assert!(
        task.instructions.contains(&set.url()),
        "{}",
        task.instructions
    );
    let outcome = register(&host, step(settings_value(), &set, state_of(&outcome))).expect("ok");
    assert!(
        matches!(&outcome, StepOutcome::Pending { task: None, .. }),
        "opened once: {outcome:?}"
    );
    assert!(ar.updates().is_empty());
}

/// Runs register until the switch time has passed by more than `publish_poll`.
fn past_the_switch(settings: Value, promotes: bool) -> (FakeHost, FakeAr, BuypassSet, StepOutcome) {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    ar.with(|s| {
        s.published = true;
        s.promotes = promotes;
    });
    let outcome = register(&host, step(settings.clone(), &set, Value::Null)).expect("ok");
    let switch_at = run_state(&outcome).switch_at.expect("a switch time");
    ar.set_now(&host, switch_at + 901);
    let outcome = register(&host, step(settings, &set, state_of(&outcome)));
    (host, ar, set, outcome.unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn an_address_ar_did_not_promote_is_a_task_without_the_fallback() {
    let (host, ar, set, outcome) = past_the_switch(settings_value(), false);
    let StepOutcome::Pending {
        task: Some(task), ..
    } = &outcome
    else {
        panic!("a task: {outcome:?}");
    };
    assert!(
        task.title.contains(&format!("HER-id {HER}")),
        "{}",
        task.title
    );
    assert!(task.instructions.contains(&set.url()));
    // The service's task is opened beside it.
    assert_eq!(host.tasks().len(), 1);
    assert_eq!(ar.updates().len(), 2, "certvakt wrote no current address");
    ar.with(|s| assert!(s.parties.values().all(|p| p.current_ds == OLD_URL)));
    // A person makes it current: the next read-back closes the step.
    ar.with(|s| {
        for party in s.parties.values_mut() {
            party.current_ds = s.new_url.clone();
        }
    });
    let done = register(&host, step(settings_value(), &set, state_of(&outcome))).expect("ok");
    assert!(matches!(done, StepOutcome::Done { .. }), "{done:?}");
}

#[test]
fn with_the_fallback_certvakt_writes_the_current_address_and_reads_back() {
    let mut settings = settings_value();
    settings["fallback_write_current"] = json!(true);
    let (_host, ar, set, outcome) = past_the_switch(settings, false);
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    let updates = ar.updates();
    assert_eq!(
        updates.len(),
        4,
        "a future write and a current write per HER-id"
    );
    assert!(updates[2].contains(&xml_escape(&set.url())));
    ar.with(|s| {
        for party in s.parties.values() {
            assert_eq!(party.current_ds, set.url());
            assert!(party.future.is_empty(), "the unpromoted entry is gone");
        }
    });
    assert!(
        run_state(&outcome)
            .parties
            .values()
            .all(|p| p.written == Some(crate::Written::Current) && p.confirmed)
    );
}

#[test]
fn the_update_body_has_the_schema_order_and_keeps_every_address() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    ar.with(|s| s.published = true);
    register(&host, step(settings_value(), &set, Value::Null)).expect("ok");
    let (op, body) = ar.with(|s| {
        s.requests
            .iter()
            .find(|(op, _)| op == "UpdateOrganizationDetails")
            .cloned()
            .expect("an update")
    });
    assert_eq!(op, "UpdateOrganizationDetails");
    let envelope = Document::parse(&body).expect("XML");
    let org = envelope
        .descendants()
        .find(|n| n.has_tag_name((CP, "org")))
        .expect("org");
    let names = |node: roxmltree::Node<'_, '_>| -> Vec<String> {
        node.children()
            .filter(|c| c.is_element())
            .map(|c| c.tag_name().name().to_owned())
            .collect()
    };
    assert_eq!(
        names(org),
        [
            "ElectronicAddresses",
            "FutureElectronicAddresses",
            "HerId",
            "PhysicalAddresses"
        ]
    );
    let current: Vec<_> = org
        .descendants()
        .filter(|n| n.has_tag_name((COMMON, "ElectronicAddress")))
        .collect();
    assert_eq!(current.len(), 2, "E_EDI and the old E_DS, unchanged");
    assert_eq!(
        names(current[0]),
        [
            "Address",
            "Inherited",
            "LastChanged",
            "Type",
            "TypeCodeValue"
        ]
    );
    let future = org
        .descendants()
        .find(|n| n.has_tag_name((COMMON, "FutureElectronicAddress")))
        .expect("the future address");
    assert_eq!(
        names(future),
        ["Address", "Type", "TypeCodeValue", "ValidFrom"]
    );
    let type_code = future
        .children()
        .find(|c| c.has_tag_name((COMMON, "Type")))
        .expect("Type");
    assert_eq!(
        names(type_code),
        [
            "Active",
            "CodeText",
            "CodeValue",
            "LongDescription",
            "OID",
            "SimpleType"
        ]
    );
    let text = |node: roxmltree::Node<'_, '_>, name: &str| {
        node.children()
            .find(|c| c.has_tag_name((COMMON, name)))
            .and_then(|c| c.text())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(text(future, "Address"), set.url());
    assert_eq!(text(future, "TypeCodeValue"), "E_DS");
    assert_eq!(text(type_code, "CodeValue"), "E_DS");
    assert_eq!(text(type_code, "OID"), "9044");
    assert_eq!(text(current[0], "Address"), EDI);
    assert_eq!(text(current[1], "Address"), OLD_URL);
    // The service's own addresses only: its inherited ones are the organisation's.
    let service = ar.with(|s| {
        s.requests
            .iter()
            .find(|(op, _)| op == "UpdateServiceDetails")
            .map(|(_, body)| body.clone())
            .expect("a service update")
    });
    let doc = Document::parse(&service).expect("XML");
    let t = doc
        .descendants()
        .find(|n| n.has_tag_name((CP, "t")))
        .expect("t");
    assert_eq!(
        names(t),
        ["ElectronicAddresses", "FutureElectronicAddresses", "HerId"]
    );
}

#[test]
fn a_wrong_password_is_a_configuration_error_about_the_service_account() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    FakeAr::new(&host, &set);
    let mut settings = settings_value();
    settings["username"] = json!("someone-else");
    let err = register(&host, step(settings, &set, Value::Null)).expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert!(err.message.contains("tjenestekonto"), "{err}");
    assert!(err.message.contains("name or password is wrong"), "{err}");
    assert!(!err.message.contains("s3cret"), "{err}");
}

#[test]
fn a_generic_fault_names_the_her_id_the_operation_and_ars_message() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    ar.with(|s| {
        s.published = true;
        s.update_fault = Some((
            500,
            fault(&format!(
                "<GenericFault xmlns=\"{COMMON}\"><ErrorCode>AR-403</ErrorCode>\
                 <Message>Brukeren har ikke tilgang til å endre denne aktøren</Message></GenericFault>"
            )),
        ));
    });
    let err = register(&host, step(settings_value(), &set, Value::Null)).expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.fault_code.as_deref(), Some("AR-403"));
    for part in [
        "UpdateOrganizationDetails",
        &format!("HER-id {HER}"),
        "Brukeren har ikke tilgang",
    ] {
        assert!(err.message.contains(part), "{part}: {err}");
    }
}

#[test]
fn a_validation_fault_names_what_ar_refused() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    ar.with(|s| {
        s.published = true;
        s.update_fault = Some((
            500,
            fault(&format!(
                "<ValidationFault xmlns=\"{COMMON}\"><Errors><ValidationError>\
                 <DisplayName>Adresse</DisplayName><Message>Ugyldig LDAP-URL</Message>\
                 <PropertyName>Address</PropertyName><Value>ldap://x</Value></ValidationError>\
                 </Errors><HasErrors>true</HasErrors></ValidationFault>"
            )),
        ));
    });
    let err = register(&host, step(settings_value(), &set, Value::Null)).expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.fault_code.as_deref(), Some("ValidationFault"));
    assert!(err.message.contains("Address: Ugyldig LDAP-URL"), "{err}");
    assert!(err.message.contains(&format!("HER-id {HER}")), "{err}");
}

#[test]
fn ar_not_answering_is_temporary_and_nothing_is_written() {
    let set = BuypassSet::new();
    let busy = FakeHost::new();
    busy.set_now(now());
    busy.respond_http_with(|_| Some(response(503, "<html>Service Unavailable</html>".into())));
    let err = register(&busy, step(settings_value(), &set, Value::Null)).expect_err("temporary");
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(err.message.contains("AR is not answering"), "{err}");
    assert!(err.message.contains("nothing was changed"), "{err}");
    assert_eq!(busy.http_requests().len(), 1, "it stops at the first call");
    // No answer at all (connection refused): the same.
    let down = FakeHost::new();
    down.set_now(now());
    let err = register(&down, step(settings_value(), &set, Value::Null)).expect_err("temporary");
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(err.message.contains("nothing was changed"), "{err}");
    // AR answers reads but not the write: temporary, and the write is retried next time.
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    ar.with(|s| {
        s.published = true;
        s.update_fault = Some((503, "Service Unavailable".into()));
    });
    let err = register(&host, step(settings_value(), &set, Value::Null)).expect_err("temporary");
    assert_eq!(err.kind, ErrorKind::Temporary);
    ar.with(|s| assert!(s.parties.values().all(|p| p.future.is_empty())));
}

#[test]
fn the_soap12_binding_sends_ws_addressing_headers() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    ar.with(|s| s.soap12 = true);
    let mut settings = settings_value();
    settings["binding"] = json!("soap12");
    register(&host, step(settings, &set, Value::Null)).expect("pending");
    let request = host.http_requests().into_iter().next().expect("a request");
    assert_eq!(request.url, "https://ws-web.test.nhn.no/v1/AR");
    let action = "http://register.nhn.no/CommunicationParty/ICommunicationPartyService/GetCommunicationPartyDetails";
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("Content-Type").as_deref(),
        Some(format!("application/soap+xml; charset=utf-8; action=\"{action}\"").as_str())
    );
    assert_eq!(header("SOAPAction"), None);
    let body = String::from_utf8(request.body).expect("UTF-8");
    let doc = Document::parse(&body).expect("XML");
    assert!(doc.root_element().has_tag_name((SOAP12, "Envelope")));
    let wsa = "http://www.w3.org/2005/08/addressing";
    let text = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name((wsa, name)))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(text("Action"), action);
    assert_eq!(text("To"), "https://ws-web.test.nhn.no/v1/AR");
    let id = text("MessageID");
    assert!(id.starts_with("urn:uuid:") && id.len() == 45, "{id}");
    // The basic binding: SOAP 1.1 with a quoted SOAPAction, no WS-Addressing.
    let host = FakeHost::new();
    FakeAr::new(&host, &set);
    register(&host, step(settings_value(), &set, Value::Null)).expect("pending");
    let request = host.http_requests().into_iter().next().expect("a request");
    assert!(
        request
            .headers
            .contains(&("SOAPAction".into(), format!("\"{action}\"")))
    );
    assert!(
        request
            .headers
            .contains(&("Content-Type".into(), "text/xml; charset=utf-8".into()))
    );
    assert!(!String::from_utf8_lossy(&request.body).contains(wsa));
}

// ---------------------------------------------------------------------------------------------
// Verify, retire, order

#[test]
fn retire_waits_for_the_legacy_decryption_period_after_the_switch() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let switch_at = now();
    let state = json!({"switch_at": switch_at});
    host.set_now(switch_at + 29 * 86_400);
    let outcome = host
        .retire(&NoNhn, step(settings_value(), &set, state.clone()))
        .expect("pending");
    let StepOutcome::Pending {
        poll_after_secs, ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(poll_after_secs, 86_400);
    host.set_now(switch_at + 30 * 86_400);
    let outcome = host
        .retire(&NoNhn, step(settings_value(), &set, state))
        .expect("done");
    assert!(matches!(outcome, StepOutcome::Done { .. }), "{outcome:?}");
    assert!(host.http_requests().is_empty(), "nothing to withdraw in AR");
}

#[test]
fn verify_calls_verify_url_with_the_new_set_and_refusals_are_errors() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let outcome = host
        .verify(&NoNhn, step(settings_value(), &set, Value::Null))
        .expect("done");
    assert!(matches!(outcome, StepOutcome::Done { .. }));
    assert!(host.http_requests().is_empty());

    let mut settings = settings_value();
    settings["verify_url"] = json!("https://pop.test.nhn.no/health");
    settings["verify_trust"] = json!("nhn");
    host.respond_http(
        "GET",
        "https://pop.test.nhn.no/health",
        response(200, String::new()),
    );
    let outcome = host
        .verify(&NoNhn, step(settings.clone(), &set, Value::Null))
        .expect("done");
    assert!(matches!(outcome, StepOutcome::Done { .. }));
    let request = &host.http_requests()[0];
    assert_eq!(
        request.identity,
        certvakt_plugin_api::ClientIdentity::Current
    );
    assert_eq!(request.trust.as_deref(), Some("nhn"));

    host.respond_http(
        "GET",
        "https://pop.test.nhn.no/health",
        response(403, String::new()),
    );
    let err = host
        .verify(&NoNhn, step(settings, &set, Value::Null))
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::NeedsPerson);
    assert!(
        err.message.contains("https://pop.test.nhn.no/health"),
        "{err}"
    );
}

#[test]
fn the_order_is_a_task_with_one_csr_per_role_for_commfides_keys() {
    let host = FakeHost::new();
    let mut settings = settings_value();
    settings["ca"] = json!("commfides");
    settings["key_source"] = json!("certvakt");
    let order = certvakt_plugin_api::OrderContext {
        certificate: context(
            settings.clone(),
            &["authentication", "encryption", "signing"],
        ),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
        csr_set: BTreeMap::from([
            ("encryption".to_owned(), "ENC CSR".to_owned()),
            ("signing".to_owned(), "SIGN CSR".to_owned()),
        ]),
        state: Value::Null,
    };
    let outcome = host.issue(&NoNhn, order).expect("pending");
    let certvakt_plugin_api::IssueOutcome::Pending {
        task: Some(task), ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(task.completes_by, certvakt_plugin_api::Completion::Import);
    let files: Vec<(&str, &certvakt_plugin_api::TaskFileContent)> = task
        .files
        .iter()
        .map(|f| (f.name.as_str(), &f.content))
        .collect();
    assert_eq!(
        files,
        [
            (
                "authentication.csr",
                &certvakt_plugin_api::TaskFileContent::Csr
            ),
            (
                "encryption.csr",
                &certvakt_plugin_api::TaskFileContent::Text("ENC CSR".into())
            ),
            (
                "signing.csr",
                &certvakt_plugin_api::TaskFileContent::Text("SIGN CSR".into())
            ),
        ]
    );
    assert!(task.instructions.contains(ORGNR));
    assert!(task.instructions.contains("SEID 2.0 virksomhetssertifikat"));

    // The profile per role.
    let mut ctx = context(
        settings.clone(),
        &["authentication", "encryption", "signing"],
    );
    ctx.settings["organization_name"] = json!("KS-DIGITALE FELLESTJENESTER AS");
    ctx.role = Some("signing".into());
    let profile = host.csr_profile(&NoNhn, ctx.clone()).expect("a profile");
    assert_eq!(
        profile.key,
        certvakt_plugin_api::profile::KeyAlgorithm::Rsa3072
    );
    assert_eq!(
        profile.key_usage,
        [certvakt_plugin_api::profile::KeyUsage::NonRepudiation]
    );
    let subject: Vec<(&str, &str)> = profile
        .subject
        .iter()
        .map(|a| (a.oid.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(
        subject,
        [
            ("2.5.4.6", "NO"),
            ("2.5.4.10", "KS-DIGITALE FELLESTJENESTER AS"),
            ("2.5.4.3", "KS-DIGITALE FELLESTJENESTER AS"),
            ("2.5.4.97", "NTRNO-931796003"),
        ]
    );
    ctx.role = Some("encryption".into());
    let profile = host.csr_profile(&NoNhn, ctx).expect("a profile");
    assert_eq!(
        profile.key_usage,
        [
            certvakt_plugin_api::profile::KeyUsage::KeyEncipherment,
            certvakt_plugin_api::profile::KeyUsage::DataEncipherment
        ]
    );
}

#[test]
fn the_readme_examples_are_valid_settings() {
    let readme = include_str!("../README.md");
    let mut checked = 0;
    for block in readme.split("```toml").skip(1) {
        let Some((toml_text, _)) = block.split_once("```") else {
            continue;
        };
        let doc: toml::Table = toml::from_str(toml_text)
            .unwrap_or_else(|e| panic!("a README TOML block does not parse: {e}\n{toml_text}"));
        let certificates = doc.get("certificate").and_then(|c| c.as_array());
        for certificate in certificates.into_iter().flatten() {
            if certificate.get("plugin").and_then(|p| p.as_str()) != Some("no-nhn") {
                continue;
            }
            let settings = certificate
                .get("settings")
                .cloned()
                .unwrap_or(toml::Value::Table(toml::Table::new()));
            let value = serde_json::to_value(settings).unwrap_or_default();
            let parsed = Settings::parse(&value).unwrap_or_else(|p| panic!("{p:?}\n{toml_text}"));
            // The set's roles are the CA's.
            let mut roles: Vec<&str> = certificate
                .get("set")
                .and_then(|s| s.as_table())
                .map(|s| s.keys().map(String::as_str).collect())
                .unwrap_or_default();
            roles.insert(0, "authentication");
            assert_eq!(roles, parsed.ca.roles(), "{toml_text}");
            assert!(certificate.get("issuer_trust").is_some(), "{toml_text}");
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the README shows a Buypass and a Commfides set ({checked})"
    );
}

#[test]
fn the_real_ar_sample_is_read_address_by_address() {
    let sample = include_str!(
        "../../../../shared/protocols/reference/no-nhn/samples/ar-GetCommunicationPartyDetails-organization-response.xml"
    );
    let fake = FakeHost::new();
    fake.respond_http_with(move |_| Some(response(200, sample.to_owned())));
    let table = certvakt_plugin_api::abi::LocalHostTable::new(&fake);
    let host = certvakt_plugin_api::Host::new(table.table());
    let mut value = settings_value();
    value["binding"] = json!("soap12");
    let settings = Settings::parse(&value).expect("valid");
    let mut ar = crate::ar::Ar::new(&host, &settings);
    let party = ar.details(HER).expect("the sample reads");
    let addresses: Vec<(&str, &str, bool)> = party
        .electronic
        .iter()
        .map(|a| (a.type_code(), a.address(), a.inherited()))
        .collect();
    // The organisation's own two addresses; the services' (nested) ones are not mixed in.
    assert_eq!(addresses, [("E_EDI", EDI, false), ("E_DS", OLD_URL, false)]);
    assert!(party.future.is_empty());
    assert_eq!(party.physical.len(), 2);
    assert_eq!(
        party.current_certificate().map(|a| a.address()),
        Some(OLD_URL)
    );
    // Another HER-id's answer is not taken for this one.
    let err = ar.details(SERVICE_HER).expect_err("another party");
    assert!(err.message.contains("not 8143060"), "{err}");
}

#[test]
fn a_commfides_set_is_found_by_hex_serials_and_its_encryption_certificate() {
    let auth = issue(
        CaShape::Commfides,
        &seid2(vec![KeyUsagePurpose::DigitalSignature]),
    );
    let enc = issue(
        CaShape::Commfides,
        &seid2(vec![
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::DataEncipherment,
        ]),
    );
    let sign = issue(CaShape::Commfides, &seid2(sign_usage()));
    let url = ldap::url(
        "ldap.test.commfides.com",
        "ou=Legal-Person-G3,dc=commfides,dc=com",
        SerialForm::LowerHex,
        &[&BuypassSet::serial(&enc), &BuypassSet::serial(&sign)],
    );
    let host = FakeHost::new();
    // The fake AR knows the set by the encryption and signing certificates.
    let as_set = BuypassSet {
        auth: enc.clone(),
        sign: sign.clone(),
    };
    let ar = FakeAr::new(&host, &as_set);
    ar.with(|s| {
        s.published = true;
        s.new_url = url.clone();
    });
    let mut settings = settings_value();
    settings["ca"] = json!("commfides");
    settings["service_her_ids"] = json!([]);
    let step = StepContext {
        certificate: context(settings, &["authentication", "encryption", "signing"]),
        new: Some(info(&auth)),
        new_set: BTreeMap::from([
            ("encryption".to_owned(), info(&enc)),
            ("signing".to_owned(), info(&sign)),
        ]),
        state: Value::Null,
    };
    let outcome = register(&host, step).expect("written");
    assert_eq!(run_state(&outcome).url.as_deref(), Some(url.as_str()));
    assert!(url.contains(&format!(
        "(certificateSerialNumber={})",
        BigUint::from_bytes_be(&BuypassSet::serial(&enc)).to_str_radix(16)
    )));
    ar.with(|s| assert_eq!(s.parties[&HER].future[0].0, url));
}

#[test]
fn a_looked_up_base_is_kept_when_it_finds_the_set() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let ar = FakeAr::new(&host, &set);
    ar.with(|s| s.published = true);
    // GetLdapSearchProviders lists two bases on the Buypass test host and one elsewhere.
    let providers = format!(
        "<GetLdapSearchProvidersResponse xmlns=\"{CP}\"><GetLdapSearchProvidersResult \
         xmlns:b=\"{SEARCH_RESULT}\">\
         <b:LdapSearchProvider><b:BaseUrl>ldap://ldap.commfides.com/ou=Legal-Person-G3,dc=commfides,dc=com</b:BaseUrl><b:DisplayName>Commfides</b:DisplayName></b:LdapSearchProvider>\
         <b:LdapSearchProvider><b:BaseUrl>ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%203</b:BaseUrl><b:DisplayName>Buypass SEID 1</b:DisplayName></b:LdapSearchProvider>\
         <b:LdapSearchProvider><b:BaseUrl>ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%20G2</b:BaseUrl><b:DisplayName>Buypass</b:DisplayName></b:LdapSearchProvider>\
         </GetLdapSearchProvidersResult></GetLdapSearchProvidersResponse>"
    );
    // The fake AR does not answer GetLdapSearchProviders: a host whose responder answers it
    // and hands every other request to the same fake AR.
    let looked_up = FakeHost::new();
    looked_up.set_now(now());
    let inner = ar.clone();
    looked_up.respond_http_with(move |request| {
        let action = request
            .headers
            .iter()
            .find(|(n, _)| n == "SOAPAction")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if action.ends_with("GetLdapSearchProviders\"") {
            Some(response(200, envelope(false, &providers)))
        } else {
            inner.answer(request)
        }
    });
    let mut settings = settings_value();
    settings["ldap_base"] = json!("lookup");
    let outcome = register(&looked_up, step(settings, &set, Value::Null)).expect("written");
    assert_eq!(run_state(&outcome).url.as_deref(), Some(set.url().as_str()));
    let searched: Vec<String> = ar.with(|s| {
        s.requests
            .iter()
            .filter(|(op, _)| op == "SearchCertificatesByLdapUrl")
            .map(|(_, body)| body.clone())
            .collect()
    });
    assert_eq!(
        searched.len(),
        2,
        "the SEID 1 base first, then the one that finds the set"
    );
    assert_eq!(ar.updates().len(), 2);
}

#[test]
fn verify_names_the_url_when_the_tls_connection_fails() {
    let set = BuypassSet::new();
    let host = FakeHost::new();
    let mut settings = settings_value();
    settings["verify_url"] = json!("https://kjernejournal.test.nhn.no/");
    let err = host
        .verify(&NoNhn, step(settings, &set, Value::Null))
        .expect_err("no answer");
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(
        err.message.contains("https://kjernejournal.test.nhn.no/"),
        "{err}"
    );
}

#[test]
fn message_ids_are_random_version_4_uuids() {
    let a = crate::ar::uuid_v4().expect("random bytes");
    let b = crate::ar::uuid_v4().expect("random bytes");
    assert_ne!(a, b);
    let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 4, "{a}");
    assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{a}");
    assert_eq!(parsed.hyphenated().to_string(), a);
}
