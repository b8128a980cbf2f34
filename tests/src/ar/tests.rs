//! The AR simulator over the wire: real SOAP bodies over HTTPS on both bindings, certificate
//! sets minted by the test kit's Buypass-like CA and published to the simulated directory.

use anyhow::{Context, Result};
use base64::Engine as _;
use rcgen::KeyUsagePurpose;
use x509_parser::num_bigint::BigUint;

use super::receiver::{self, MessageSender, SenderConfig};
use super::*;
use crate::ca::{CaShape, KeyType, TestCa};
use crate::leaf::{IssuedCert, LeafSpec};
use crate::soapd::{PostOptions, RawResponse, post_raw};

const ORG: i32 = 8142987;
/// A service that inherits the organisation's addresses.
const SERVICE: i32 = 8143040;
/// A service with an E_DS of its own.
const OWN_SERVICE: i32 = 8143041;
/// An organisation the account may not write.
const OTHER_ORG: i32 = 8150000;
const USER: &str = "certvakt-test";
const PASSWORD: &str = "hemmelig-passord";
/// 2026-11-01T00:00:00Z.
const T0: i64 = 1_793_491_200;

/// An encryption + signing pair from one CA, published or not.
struct CertSet {
    encryption: IssuedCert,
    signing: IssuedCert,
}

impl CertSet {
    /// Two SEID 2 certificates with the given 11-byte serials (given in decimal).
    fn mint(ca: &TestCa, serials: [&str; 2]) -> Result<CertSet> {
        let bytes = |decimal: &str| -> Result<Vec<u8>> {
            Ok(BigUint::parse_bytes(decimal.as_bytes(), 10)
                .context("a decimal serial")?
                .to_bytes_be())
        };
        let encryption = ca.issue(
            &LeafSpec::seid2("931796003", "KS-DIGITALE FELLESTJENESTER AS")
                .key_type(KeyType::Rsa2048)
                .key_usage(vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ])
                .serial(&bytes(serials[0])?),
        )?;
        let signing = ca.issue(
            &LeafSpec::seid2("931796003", "KS-DIGITALE FELLESTJENESTER AS")
                .key_type(KeyType::EcP256)
                .key_usage(vec![KeyUsagePurpose::ContentCommitment])
                .serial(&bytes(serials[1])?),
        )?;
        Ok(CertSet {
            encryption,
            signing,
        })
    }

    fn publish(&self, sim: &ArSim, visible_at: i64) -> Result<String> {
        let provider = LdapProvider::buypass_test4();
        let directory = sim.directory();
        let a = directory.publish_to(&provider, &self.encryption.cert_der, visible_at)?;
        let b = directory.publish_to(&provider, &self.signing.cert_der, visible_at)?;
        Ok(build_ldap_url(&provider.host, &provider.base, &[a, b]))
    }
}

/// The serials of the real AR sample (current set) and of the brief's future example.
const SAMPLE_SERIALS: [&str; 2] = ["1978614801669301597418371", "1978620698775221943443289"];
const NEXT_SERIALS: [&str; 2] = ["1873489947888800148782249", "1873517862702705029357919"];

struct Fixture {
    sim: ArSim,
    ca: TestCa,
    current: CertSet,
    current_url: String,
}

/// A simulator at T0 with the sample organisation (E_DS = the published current set), a
/// service that inherits and one with its own E_DS, and another organisation.
fn fixture() -> Result<Fixture> {
    let clock = Clock::frozen(T0);
    let sim = ArSim::start(ArConfig {
        accounts: vec![ServiceAccount::new(USER, PASSWORD, &[ORG, OWN_SERVICE])],
        clock: clock.clone(),
        ..ArConfig::default()
    })?;
    let ca = TestCa::new(CaShape::BuypassSeid2)?;
    let current = CertSet::mint(&ca, SAMPLE_SERIALS)?;
    let current_url = current.publish(&sim, T0 - 86_400)?;
    sim.parties().insert(
        Organization::new(ORG, "KS-DIGITALE FELLESTJENESTER AS", 931796003)
            .address(E_DS, &current_url)
            .service(Service::new(SERVICE, "Bedriftshelsetjeneste"))
            .service(Service::new(OWN_SERVICE, "Eget sertifikat").address(E_DS, &current_url)),
    );
    sim.parties().insert(Organization::new(
        OTHER_ORG,
        "ANNEN VIRKSOMHET AS",
        999999999,
    ));
    Ok(Fixture {
        sim,
        ca,
        current,
        current_url,
    })
}

/// How a test request is framed.
struct Call<'a> {
    binding: Binding,
    credentials: Option<(&'a str, &'a str)>,
    /// SOAP 1.2 WS-Addressing headers to leave out.
    omit: &'a [&'a str],
}

impl Default for Call<'_> {
    fn default() -> Self {
        Call {
            binding: Binding::Basic,
            credentials: Some((USER, PASSWORD)),
            omit: &[],
        }
    }
}

fn call(sim: &ArSim, how: &Call<'_>, operation: &str, body: &str) -> Result<RawResponse> {
    let action = format!("{ACTION_PREFIX}{operation}");
    let authorization = how.credentials.map(|(user, password)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    });
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization));
    }
    match how.binding {
        Binding::Basic => {
            let envelope = format!(
                "<s:Envelope xmlns:s=\"{}\"><s:Body>{body}</s:Body></s:Envelope>",
                ns::SOAP11
            );
            let quoted = format!("\"{action}\"");
            post_raw(
                &sim.url_basic(),
                &sim.server_root_pem(),
                &envelope,
                &PostOptions {
                    soap_action: Some(&quoted),
                    ..PostOptions::default()
                },
                &headers,
            )
        }
        Binding::Soap12 => {
            let mut header = String::new();
            let fields = [
                ("Action", action.clone()),
                ("MessageID", format!("urn:uuid:{operation}-{}", body.len())),
                ("To", "https://ws-web.test.nhn.no/v1/AR".to_owned()),
            ];
            for (name, value) in fields {
                if !how.omit.contains(&name) {
                    header.push_str(&format!("<a:{name}>{value}</a:{name}>"));
                }
            }
            let envelope = format!(
                "<s:Envelope xmlns:s=\"{}\" xmlns:a=\"{}\"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>",
                ns::SOAP12,
                ns::WSA
            );
            let content_type = format!("application/soap+xml; charset=utf-8; action=\"{action}\"");
            headers.push(("Content-Type", &content_type));
            post_raw(
                &sim.url_soap12(),
                &sim.server_root_pem(),
                &envelope,
                &PostOptions::default(),
                &headers,
            )
        }
    }
}

/// Calls and expects HTTP 200; returns the body element, checked against the schema.
fn ok(sim: &ArSim, how: &Call<'_>, operation: &str, body: &str) -> Result<String> {
    let response = call(sim, how, operation, body)?;
    assert_eq!(response.status, 200, "{operation}: {}", response.body);
    let doc = roxmltree::Document::parse(&response.body)?;
    let element = doc
        .descendants()
        .find(|n| n.has_tag_name((ns::CP, format!("{operation}Response").as_str())))
        .with_context(|| format!("no {operation}Response in {}", response.body))?;
    let alone = crate::xmlsec::standalone(&response.body, element)?;
    sim.shared
        .schemas
        .validate(&alone)
        .with_context(|| format!("the simulator's own {operation} answer: {alone}"))?;
    Ok(alone)
}

/// What a fault said.
#[derive(Debug)]
struct FaultSeen {
    status: u16,
    /// `GenericFault`, `ValidationFault`, or the protocol subcode (`DeserializationFailed`).
    kind: String,
    /// ErrorCode (GenericFault) or empty.
    code: String,
    /// The reason text and every detail message.
    text: String,
}

fn fault(sim: &ArSim, how: &Call<'_>, operation: &str, body: &str) -> Result<FaultSeen> {
    let response = call(sim, how, operation, body)?;
    let doc = roxmltree::Document::parse(&response.body)
        .with_context(|| format!("HTTP {}: {}", response.status, response.body))?;
    let text_of = |local: &str| {
        doc.descendants()
            .filter(|n| n.tag_name().name() == local)
            .map(crate::xmlsec::text)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let detail = ["GenericFault", "ValidationFault"]
        .into_iter()
        .find(|name| {
            doc.descendants()
                .any(|n| n.has_tag_name((ns::COMMON, *name)))
        });
    let kind = match detail {
        Some(name) => name.to_owned(),
        None => {
            let code = match how.binding {
                Binding::Basic => text_of("faultcode"),
                Binding::Soap12 => doc
                    .descendants()
                    .find(|n| n.has_tag_name((ns::SOAP12, "Subcode")))
                    .map(crate::xmlsec::text)
                    .unwrap_or_default(),
            };
            code.rsplit(':').next().unwrap_or_default().to_owned()
        }
    };
    Ok(FaultSeen {
        status: response.status,
        kind,
        code: text_of("ErrorCode"),
        text: [text_of("faultstring"), text_of("Text"), text_of("Message")].join(" | "),
    })
}

fn her_id_body(operation: &str, her_id: i32) -> String {
    format!(
        "<{operation} xmlns=\"{}\"><herId>{her_id}</herId></{operation}>",
        ns::CP
    )
}

fn e_ds(address: &str) -> String {
    format!(
        "<c:ElectronicAddress><c:Address>{}</c:Address><c:Type><c:Active>true</c:Active><c:CodeText>Digital sertifikat</c:CodeText><c:CodeValue>E_DS</c:CodeValue><c:OID>9044</c:OID><c:SimpleType>type_adressekomponeneter</c:SimpleType></c:Type><c:TypeCodeValue>E_DS</c:TypeCodeValue></c:ElectronicAddress>",
        quick_xml::escape::escape(address)
    )
}

fn e_edi() -> String {
    "<c:ElectronicAddress><c:Address>meldingstjener-api@testedi.nhn.no</c:Address><c:TypeCodeValue>E_EDI</c:TypeCodeValue></c:ElectronicAddress>".to_owned()
}

/// An `UpdateOrganizationDetails` (or, with `service`, `UpdateServiceDetails`) body with the
/// members in the contract's order.
fn update_body(service: bool, her_id: i32, current: Option<&str>, future: Option<&str>) -> String {
    let (operation, member) = if service {
        ("UpdateServiceDetails", "t")
    } else {
        ("UpdateOrganizationDetails", "org")
    };
    let current = current
        .map(|c| format!("<ElectronicAddresses>{c}</ElectronicAddresses>"))
        .unwrap_or_default();
    let future = future
        .map(|f| format!("<FutureElectronicAddresses>{f}</FutureElectronicAddresses>"))
        .unwrap_or_default();
    format!(
        "<{operation} xmlns=\"{}\" xmlns:c=\"{}\"><{member}>{current}{future}<HerId>{her_id}</HerId></{member}></{operation}>",
        ns::CP,
        ns::COMMON
    )
}

fn certificate_for(sim: &ArSim, how: &Call<'_>, her_id: i32, encryption: bool) -> Result<Vec<u8>> {
    let operation = if encryption {
        "GetCertificateDetailsForEncryption"
    } else {
        "GetCertificateDetailsForValidatingSignature"
    };
    let answer = ok(sim, how, operation, &her_id_body(operation, her_id))?;
    let doc = roxmltree::Document::parse(&answer)?;
    let certificate = doc
        .descendants()
        .find(|n| n.has_tag_name((ns::CERTIFICATE_DETAILS, "Certificate")))
        .map(crate::xmlsec::text)
        .context("no Certificate")?;
    Ok(base64::engine::general_purpose::STANDARD.decode(certificate)?)
}

const SOAP12: Call<'static> = Call {
    binding: Binding::Soap12,
    credentials: Some((USER, PASSWORD)),
    omit: &[],
};

#[test]
fn both_bindings_answer_party_details_as_the_real_sample_and_valid_against_the_schema() -> Result<()>
{
    let f = fixture()?;
    for how in [Call::default(), SOAP12] {
        let answer = ok(
            &f.sim,
            &how,
            "GetCommunicationPartyDetails",
            &her_id_body("GetCommunicationPartyDetails", ORG),
        )?;
        let doc = roxmltree::Document::parse(&answer)?;
        let result = doc
            .descendants()
            .find(|n| n.tag_name().name() == "GetCommunicationPartyDetailsResult")
            .context("no result")?;
        assert_eq!(result.attribute((ns::XSI, "type")), Some("Organization"));
        let ds = doc
            .descendants()
            .find(|n| {
                n.has_tag_name((ns::COMMON, "ElectronicAddress"))
                    && n.descendants().any(|d| d.text() == Some("E_DS"))
            })
            .context("no E_DS")?;
        let field = |name: &str| {
            ds.descendants()
                .find(|n| n.has_tag_name((ns::COMMON, name)))
                .map(crate::xmlsec::text)
                .unwrap_or_default()
        };
        assert_eq!(field("Address"), f.current_url);
        assert_eq!(field("Inherited"), "false");
        assert_eq!(field("CodeText"), "Digital sertifikat");
        assert_eq!(field("OID"), "9044");
        assert_eq!(field("SimpleType"), "type_adressekomponeneter");
        assert!(answer.contains("E_EDI"), "the mailbox too: {answer}");
        // The services are listed; the inheriting one shows the organisation's E_DS inherited.
        let service = doc
            .descendants()
            .find(|n| {
                n.tag_name().name() == "Service"
                    && n.children().any(|c| {
                        c.tag_name().name() == "HerId" && c.text() == Some(&SERVICE.to_string())
                    })
            })
            .context("no inheriting service")?;
        let inherited: Vec<String> = service
            .descendants()
            .filter(|n| n.has_tag_name((ns::COMMON, "Inherited")))
            .map(crate::xmlsec::text)
            .collect();
        assert_eq!(inherited, ["true", "true"]);
    }
    // SOAP 1.2 answers relate to the request.
    let response = call(
        &f.sim,
        &SOAP12,
        "GetCommunicationPartyDetails",
        &her_id_body("GetCommunicationPartyDetails", SERVICE),
    )?;
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/soap+xml")),
        "{:?}",
        response.headers
    );
    assert!(response.body.contains(&format!(
        "<a:Action s:mustUnderstand=\"1\">{ACTION_PREFIX}GetCommunicationPartyDetailsResponse</a:Action>"
    )));
    assert!(
        response
            .body
            .contains("<a:RelatesTo>urn:uuid:GetCommunicationPartyDetails-")
    );
    assert!(
        response.body.contains("i:type=\"Service\""),
        "{}",
        response.body
    );

    let unknown = fault(
        &f.sim,
        &Call::default(),
        "GetCommunicationPartyDetails",
        &her_id_body("GetCommunicationPartyDetails", 1),
    )?;
    assert_eq!(
        (unknown.status, unknown.kind.as_str()),
        (500, "GenericFault")
    );
    assert_eq!(unknown.code, "NotFound");
    Ok(())
}

#[test]
fn wrong_or_missing_credentials_get_401_with_a_basic_challenge() -> Result<()> {
    let f = fixture()?;
    let body = her_id_body("GetCommunicationPartyDetails", ORG);
    for binding in [Binding::Basic, Binding::Soap12] {
        for credentials in [Some((USER, "feil")), Some(("ukjent", PASSWORD)), None] {
            let how = Call {
                binding,
                credentials,
                omit: &[],
            };
            let response = call(&f.sim, &how, "GetCommunicationPartyDetails", &body)?;
            assert_eq!(response.status, 401, "{credentials:?}: {}", response.body);
            assert!(
                response
                    .header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Basic ")),
                "{:?}",
                response.headers
            );
        }
    }
    let log = f.sim.requests();
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|r| r.status == 401 && r.account.is_none()));
    Ok(())
}

#[test]
fn a_write_without_the_right_is_a_generic_fault_and_changes_nothing() -> Result<()> {
    let f = fixture()?;
    let next = CertSet::mint(&f.ca, NEXT_SERIALS)?;
    let url = next.publish(&f.sim, T0)?;
    for how in [Call::default(), SOAP12] {
        for (service, her_id) in [(false, OTHER_ORG), (true, SERVICE)] {
            let operation = if service {
                "UpdateServiceDetails"
            } else {
                "UpdateOrganizationDetails"
            };
            let seen = fault(
                &f.sim,
                &how,
                operation,
                &update_body(service, her_id, Some(&e_ds(&url)), None),
            )?;
            assert_eq!(
                (seen.status, seen.kind.as_str()),
                (500, "GenericFault"),
                "{seen:?}"
            );
            assert_eq!(seen.code, "AccessDenied");
            assert!(seen.text.contains(&her_id.to_string()), "{seen:?}");
        }
    }
    assert_eq!(f.sim.parties().current_address(OTHER_ORG, E_DS), None);
    assert_eq!(
        f.sim.parties().current_address(SERVICE, E_DS).as_deref(),
        Some(f.current_url.as_str()),
        "still inherited"
    );
    let last = f.sim.requests().pop().context("logged")?;
    assert_eq!(last.account.as_deref(), Some(USER));
    assert_eq!(last.her_id, Some(SERVICE));
    assert!(
        last.fault
            .is_some_and(|f| f.starts_with("GenericFault AccessDenied"))
    );
    Ok(())
}

#[test]
fn an_unpublished_serial_is_a_validation_fault_until_the_ca_publishes_it() -> Result<()> {
    let f = fixture()?;
    let next = CertSet::mint(&f.ca, NEXT_SERIALS)?;
    // The CA publishes with a delay of ten minutes.
    let url = next.publish(&f.sim, T0 + 600)?;
    let search = |how: &Call<'_>| -> Result<String> {
        ok(
            &f.sim,
            how,
            "SearchCertificatesByLdapUrl",
            &format!(
                "<SearchCertificatesByLdapUrl xmlns=\"{}\"><ldapUrl>{}</ldapUrl></SearchCertificatesByLdapUrl>",
                ns::CP,
                quick_xml::escape::escape(&url)
            ),
        )
    };
    let before = search(&Call::default())?;
    assert!(!before.contains("CertificateCandidate"), "{before}");
    let seen = fault(
        &f.sim,
        &Call::default(),
        "UpdateOrganizationDetails",
        &update_body(
            false,
            ORG,
            Some(&format!("{}{}", e_ds(&url), e_edi())),
            None,
        ),
    )?;
    assert_eq!(seen.kind, "ValidationFault", "{seen:?}");
    assert!(
        seen.text.contains(&url) && seen.text.contains("not (yet) published"),
        "{seen:?}"
    );
    assert_eq!(
        f.sim.parties().current_address(ORG, E_DS).as_deref(),
        Some(f.current_url.as_str())
    );

    f.sim.clock().advance(600);
    let after = search(&SOAP12)?;
    let doc = roxmltree::Document::parse(&after)?;
    let candidates: Vec<(String, String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name((ns::SEARCH_RESULT, "CertificateCandidate")))
        .map(|c| {
            let get = |name: &str| {
                c.children()
                    .find(|n| n.has_tag_name((ns::SEARCH_RESULT, name)))
                    .map(crate::xmlsec::text)
                    .unwrap_or_default()
            };
            (
                get("CertificateSerialNumber"),
                get("ValidForEncryption"),
                get("ValidForSigning"),
            )
        })
        .collect();
    assert_eq!(
        candidates,
        [
            (
                NEXT_SERIALS[0].to_owned(),
                "true".to_owned(),
                "false".to_owned()
            ),
            (
                NEXT_SERIALS[1].to_owned(),
                "false".to_owned(),
                "true".to_owned()
            ),
        ]
    );
    assert!(after.contains(&format!(
        "<b:ActualLdapUrl>{}</b:ActualLdapUrl>",
        quick_xml::escape::escape(&url)
    )));

    ok(
        &f.sim,
        &Call::default(),
        "UpdateOrganizationDetails",
        &update_body(
            false,
            ORG,
            Some(&format!("{}{}", e_ds(&url), e_edi())),
            None,
        ),
    )?;
    assert_eq!(
        f.sim.parties().current_address(ORG, E_DS).as_deref(),
        Some(url.as_str())
    );
    // Read-back picks by key usage: keyEncipherment for encryption, nonRepudiation for
    // signatures.
    for how in [Call::default(), SOAP12] {
        assert_eq!(
            certificate_for(&f.sim, &how, ORG, true)?,
            next.encryption.cert_der
        );
        assert_eq!(
            certificate_for(&f.sim, &how, ORG, false)?,
            next.signing.cert_der
        );
    }

    // An unknown serial and a malformed URL are validation faults too, naming the URL.
    let unknown = build_ldap_url(
        "ldap.test4.buypass.no",
        &LdapProvider::buypass_test4().base,
        &["12345"],
    );
    let malformed = url.replace("%20", " ");
    for (bad, expected) in [(&unknown, "does not have"), (&malformed, "raw space")] {
        let seen = fault(
            &f.sim,
            &SOAP12,
            "UpdateOrganizationDetails",
            &update_body(false, ORG, Some(&e_ds(bad)), None),
        )?;
        assert_eq!(seen.kind, "ValidationFault", "{seen:?}");
        assert!(seen.text.contains(expected), "{seen:?}");
        assert!(
            seen.text.contains("ldap://ldap.test4.buypass.no"),
            "{seen:?}"
        );
    }
    Ok(())
}

#[test]
fn the_protocol_briefs_example_body_is_accepted_and_its_future_address_promoted_at_valid_from()
-> Result<()> {
    let f = fixture()?;
    let next = CertSet::mint(&f.ca, NEXT_SERIALS)?;
    next.publish(&f.sim, T0)?;
    // The example of no-nhn.md §2.3, verbatim.
    let example = r#"<UpdateOrganizationDetails xmlns="http://register.nhn.no/CommunicationParty"
                           xmlns:c="http://register.nhn.no/Common">
  <org>
    <ElectronicAddresses>
      <c:ElectronicAddress>
        <c:Address>ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%20G2?usercertificate;binary?sub?(|(certificateSerialNumber=1978614801669301597418371)(certificateSerialNumber=1978620698775221943443289))</c:Address>
        <c:TypeCodeValue>E_DS</c:TypeCodeValue>
      </c:ElectronicAddress>
      <c:ElectronicAddress>
        <c:Address>meldingstjener-api@testedi.nhn.no</c:Address>
        <c:TypeCodeValue>E_EDI</c:TypeCodeValue>
      </c:ElectronicAddress>
    </ElectronicAddresses>
    <FutureElectronicAddresses>
      <c:FutureElectronicAddress>
        <c:Address>ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%20G2?usercertificate;binary?sub?(|(certificateSerialNumber=1873489947888800148782249)(certificateSerialNumber=1873517862702705029357919))</c:Address>
        <c:TypeCodeValue>E_DS</c:TypeCodeValue>
        <c:ValidFrom>2026-12-01T06:00:00</c:ValidFrom>
      </c:FutureElectronicAddress>
    </FutureElectronicAddresses>
    <HerId>8142987</HerId>
  </org>
</UpdateOrganizationDetails>"#;
    ok(&f.sim, &SOAP12, "UpdateOrganizationDetails", example)?;
    assert_eq!(
        f.sim.requests().pop().context("logged")?.dropped,
        Vec::<String>::new()
    );
    let future = f.sim.parties().future_addresses(ORG).context("the org")?;
    assert_eq!(future.len(), 1);
    assert_eq!(
        future[0].valid_from, 1_796_104_800,
        "2026-12-01T06:00:00 read as UTC"
    );
    let details = ok(
        &f.sim,
        &Call::default(),
        "GetCommunicationPartyDetails",
        &her_id_body("GetCommunicationPartyDetails", ORG),
    )?;
    assert!(
        details.contains("<b:ValidFrom>2026-12-01T06:00:00Z</b:ValidFrom>"),
        "{details}"
    );

    // Until ValidFrom the organisation, and the service inheriting from it, still give the
    // current set; from ValidFrom on, the new one.
    f.sim.clock().set(1_796_104_800 - 1);
    assert_eq!(
        certificate_for(&f.sim, &Call::default(), ORG, true)?,
        f.current.encryption.cert_der
    );
    assert_eq!(
        certificate_for(&f.sim, &Call::default(), SERVICE, true)?,
        f.current.encryption.cert_der
    );
    f.sim.clock().advance(1);
    assert_eq!(
        certificate_for(&f.sim, &Call::default(), ORG, true)?,
        next.encryption.cert_der
    );
    assert_eq!(
        certificate_for(&f.sim, &SOAP12, SERVICE, false)?,
        next.signing.cert_der
    );
    assert_eq!(
        f.sim.parties().future_addresses(ORG).map(|f| f.len()),
        Some(0)
    );
    // The service with its own E_DS keeps it.
    assert_eq!(
        certificate_for(&f.sim, &SOAP12, OWN_SERVICE, true)?,
        f.current.encryption.cert_der
    );
    Ok(())
}

#[test]
fn out_of_order_members_are_dropped_silently_and_refused_with_the_knob_off() -> Result<()> {
    let f = fixture()?;
    let next = CertSet::mint(&f.ca, NEXT_SERIALS)?;
    let url = next.publish(&f.sim, T0)?;
    // HerId before ElectronicAddresses: WCF reads HerId, then ignores the addresses.
    let body = update_body(false, ORG, Some(&e_ds(&url)), None)
        .replace(&format!("<HerId>{ORG}</HerId>"), "")
        .replace("<org>", &format!("<org><HerId>{ORG}</HerId>"));
    ok(&f.sim, &Call::default(), "UpdateOrganizationDetails", &body)?;
    let logged = f.sim.requests().pop().context("logged")?;
    assert_eq!(logged.dropped, ["org/ElectronicAddresses"]);
    assert_eq!(logged.fault, None);
    assert_eq!(
        f.sim.parties().current_address(ORG, E_DS).as_deref(),
        Some(f.current_url.as_str()),
        "the write was lost without a fault: only a read-back shows it"
    );
    // Inside an address: TypeCodeValue before Address drops the Address, and then the address
    // has none, which AR refuses.
    let swapped = format!(
        "<c:ElectronicAddress><c:TypeCodeValue>E_DS</c:TypeCodeValue><c:Address>{}</c:Address></c:ElectronicAddress>",
        quick_xml::escape::escape(&url)
    );
    let seen = fault(
        &f.sim,
        &SOAP12,
        "UpdateOrganizationDetails",
        &update_body(false, ORG, Some(&swapped), None),
    )?;
    assert_eq!(seen.kind, "ValidationFault", "{seen:?}");
    assert_eq!(
        f.sim.requests().pop().context("logged")?.dropped,
        ["org/ElectronicAddresses/ElectronicAddress[0]/Address"]
    );

    f.sim.set_wcf_drop_out_of_order(false);
    let seen = fault(&f.sim, &Call::default(), "UpdateOrganizationDetails", &body)?;
    assert_eq!(
        (seen.status, seen.kind.as_str()),
        (500, "DeserializationFailed"),
        "{seen:?}"
    );
    assert!(
        seen.text.contains("ElectronicAddresses") && seen.text.contains("not expected"),
        "{seen:?}"
    );
    assert_eq!(
        f.sim.parties().current_address(ORG, E_DS).as_deref(),
        Some(f.current_url.as_str())
    );
    Ok(())
}

#[test]
fn a_schema_invalid_body_is_refused_naming_xmllints_message() -> Result<()> {
    let f = fixture()?;
    for how in [Call::default(), SOAP12] {
        let seen = fault(
            &f.sim,
            &how,
            "GetCommunicationPartyDetails",
            &format!(
                "<GetCommunicationPartyDetails xmlns=\"{}\"><herId>åtte</herId></GetCommunicationPartyDetails>",
                ns::CP
            ),
        )?;
        assert_eq!(
            (seen.status, seen.kind.as_str()),
            (500, "DeserializationFailed"),
            "{seen:?}"
        );
        assert!(
            seen.text.contains("herId") && seen.text.contains("xs:int"),
            "{seen:?}"
        );
        // An element in the wrong namespace (Common instead of CommunicationParty).
        let seen = fault(
            &f.sim,
            &how,
            "UpdateOrganizationDetails",
            &update_body(false, ORG, None, None)
                .replace("<HerId>", "<c:HerId>")
                .replace("</HerId>", "</c:HerId>"),
        )?;
        assert_eq!(seen.kind, "DeserializationFailed", "{seen:?}");
        assert!(seen.text.contains("HerId"), "{seen:?}");
    }
    // The body element must be the action's.
    let seen = fault(
        &f.sim,
        &Call::default(),
        "GetCertificateDetailsForEncryption",
        &her_id_body("GetCommunicationPartyDetails", ORG),
    )?;
    assert_eq!(seen.kind, "DeserializationFailed", "{seen:?}");
    Ok(())
}

#[test]
fn soap12_without_the_addressing_headers_is_refused() -> Result<()> {
    let f = fixture()?;
    for missing in ["Action", "MessageID", "To"] {
        let how = Call {
            omit: &[missing],
            ..SOAP12
        };
        let seen = fault(
            &f.sim,
            &how,
            "GetCommunicationPartyDetails",
            &her_id_body("GetCommunicationPartyDetails", ORG),
        )?;
        assert_eq!(
            (seen.status, seen.kind.as_str()),
            (500, "MessageAddressingHeaderRequired"),
            "{missing}: {seen:?}"
        );
        assert!(seen.text.contains(&format!("wsa:{missing}")), "{seen:?}");
    }
    // A SOAP 1.1 envelope on the SOAP 1.2 endpoint, and an unknown action on the 1.1 one.
    let response = post_raw(
        &f.sim.url_soap12(),
        &f.sim.server_root_pem(),
        &format!(
            "<s:Envelope xmlns:s=\"{}\"><s:Body/></s:Envelope>",
            ns::SOAP11
        ),
        &PostOptions::default(),
        &[
            ("Content-Type", "application/soap+xml; charset=utf-8"),
            (
                "Authorization",
                &format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
                ),
            ),
        ],
    )?;
    assert_eq!(response.status, 500);
    assert!(
        response.body.contains("VersionMismatch"),
        "{}",
        response.body
    );
    let seen = fault(&f.sim, &Call::default(), "DeleteEverything", "<x/>")?;
    assert_eq!(seen.kind, "ActionNotSupported", "{seen:?}");
    Ok(())
}

#[test]
fn services_inherit_unless_they_have_their_own_and_lists_replace_or_merge() -> Result<()> {
    let f = fixture()?;
    let next = CertSet::mint(&f.ca, NEXT_SERIALS)?;
    let url = next.publish(&f.sim, T0)?;
    // The service's own E_DS changes; the organisation and the inheriting service keep theirs.
    ok(
        &f.sim,
        &SOAP12,
        "UpdateServiceDetails",
        &update_body(true, OWN_SERVICE, Some(&e_ds(&url)), None),
    )?;
    assert_eq!(
        certificate_for(&f.sim, &SOAP12, OWN_SERVICE, true)?,
        next.encryption.cert_der
    );
    assert_eq!(
        certificate_for(&f.sim, &SOAP12, SERVICE, true)?,
        f.current.encryption.cert_der
    );
    assert_eq!(
        certificate_for(&f.sim, &SOAP12, ORG, true)?,
        f.current.encryption.cert_der
    );
    // UpdateServiceDetails on an organisation is refused.
    f.sim.add_account(ServiceAccount::new(
        USER,
        PASSWORD,
        &[ORG, OWN_SERVICE, SERVICE],
    ));
    let seen = fault(
        &f.sim,
        &Call::default(),
        "UpdateServiceDetails",
        &update_body(true, ORG, Some(&e_ds(&url)), None),
    )?;
    assert_eq!(
        (seen.kind.as_str(), seen.code.as_str()),
        ("GenericFault", "NotFound"),
        "{seen:?}"
    );

    // A list sent replaces the stored one: the organisation's E_EDI is gone...
    ok(
        &f.sim,
        &Call::default(),
        "UpdateOrganizationDetails",
        &update_body(false, ORG, Some(&e_ds(&url)), None),
    )?;
    assert_eq!(f.sim.parties().current_address(ORG, E_EDI), None);
    // ...an omitted list is left alone...
    ok(
        &f.sim,
        &Call::default(),
        "UpdateOrganizationDetails",
        &update_body(false, ORG, None, None),
    )?;
    assert_eq!(
        f.sim.parties().current_address(ORG, E_DS).as_deref(),
        Some(url.as_str())
    );
    // ...and with merge_addresses a list is merged by type.
    f.sim.set_merge_addresses(true);
    ok(
        &f.sim,
        &Call::default(),
        "UpdateOrganizationDetails",
        &update_body(false, ORG, Some(&e_edi()), None),
    )?;
    assert!(f.sim.parties().current_address(ORG, E_EDI).is_some());
    assert_eq!(
        f.sim.parties().current_address(ORG, E_DS).as_deref(),
        Some(url.as_str())
    );
    // The inheriting service now shows the organisation's new E_DS.
    assert_eq!(
        certificate_for(&f.sim, &SOAP12, SERVICE, false)?,
        next.signing.cert_der
    );
    Ok(())
}

#[test]
fn search_providers_are_listed_and_ar_can_be_down() -> Result<()> {
    let f = fixture()?;
    let answer = ok(
        &f.sim,
        &Call::default(),
        "GetLdapSearchProviders",
        &format!("<GetLdapSearchProviders xmlns=\"{}\"/>", ns::CP),
    )?;
    assert!(answer.contains(
        "<b:BaseUrl>ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%20G2</b:BaseUrl>"
    ), "{answer}");
    assert!(
        answer.contains(
            "<b:DistinguishedName>ou=Legal-Person-G3,dc=commfides,dc=com</b:DistinguishedName>"
        ),
        "{answer}"
    );

    let body = her_id_body("GetCommunicationPartyDetails", ORG);
    f.sim.set_down(true);
    assert_eq!(
        call(
            &f.sim,
            &Call::default(),
            "GetCommunicationPartyDetails",
            &body
        )?
        .status,
        503
    );
    f.sim.set_down(false);
    f.sim.set_down_until(Some(T0 + 60));
    assert_eq!(
        call(&f.sim, &SOAP12, "GetCommunicationPartyDetails", &body)?.status,
        503
    );
    f.sim.clock().advance(60);
    assert_eq!(
        call(&f.sim, &SOAP12, "GetCommunicationPartyDetails", &body)?.status,
        200
    );
    Ok(())
}

#[test]
fn a_sender_keeps_encrypting_to_the_cached_certificate_until_its_cache_expires() -> Result<()> {
    let f = fixture()?;
    let next = CertSet::mint(&f.ca, NEXT_SERIALS)?;
    let url = next.publish(&f.sim, T0)?;
    let sender = MessageSender::new(SenderConfig {
        url_basic: f.sim.url_basic(),
        server_root_pem: f.sim.server_root_pem(),
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
        cache_seconds: 3_600,
        clock: f.sim.clock(),
    });
    let old_key = &f.current.encryption.key_pem;
    let new_key = &next.encryption.key_pem;
    let sealed = sender.send(ORG, b"resept 1")?;
    assert_eq!(receiver::decrypt(old_key, &sealed)?, b"resept 1");
    assert!(receiver::decrypt(new_key, &sealed).is_err());

    // The address changes now; the sender's cache is 30 minutes old when it sends again.
    ok(
        &f.sim,
        &Call::default(),
        "UpdateOrganizationDetails",
        &update_body(
            false,
            ORG,
            Some(&format!("{}{}", e_ds(&url), e_edi())),
            None,
        ),
    )?;
    f.sim.clock().advance(1_800);
    let sealed = sender.send(ORG, b"resept 2")?;
    assert_eq!(
        receiver::decrypt(old_key, &sealed)?,
        b"resept 2",
        "still the old certificate"
    );
    assert!(receiver::decrypt(new_key, &sealed).is_err());
    assert_eq!(sender.lookups(), 1);

    f.sim.clock().advance(1_800);
    let sealed = sender.send(ORG, b"resept 3")?;
    assert_eq!(
        receiver::decrypt(new_key, &sealed)?,
        b"resept 3",
        "the cache expired"
    );
    assert!(receiver::decrypt(old_key, &sealed).is_err());
    assert_eq!(sender.lookups(), 2);

    // A party without an E_DS is an error naming AR's reason; a signing-only certificate
    // cannot be encrypted to.
    let error = format!("{:#}", sender.send(OTHER_ORG, b"x").expect_err("no E_DS"));
    assert!(error.contains("no E_DS"), "{error}");
    assert!(receiver::encrypt(&next.signing.cert_der, b"x").is_err());
    Ok(())
}

#[test]
fn passwords_stay_out_of_debug_output() {
    let account = ServiceAccount::new(USER, PASSWORD, &[ORG]);
    let config = ArConfig {
        accounts: vec![account.clone()],
        ..ArConfig::default()
    };
    let sender = SenderConfig {
        url_basic: "https://127.0.0.1:1/v1/AR/Basic".to_owned(),
        server_root_pem: String::new(),
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
        cache_seconds: 60,
        clock: Clock::real(),
    };
    for shown in [
        format!("{account:?}"),
        format!("{config:?}"),
        format!("{sender:?}"),
    ] {
        assert!(shown.contains(USER), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
}
