//! The FMK and SOSI STS simulators over the wire: a pharmacy's system certificate (OCES3, from
//! a test CA), a self-signed system ID card (signed with `xmlsec1`, RSA-SHA256 as certvakt's
//! client signs it), the STS round trip, and the whitelisting operations in both versions.

use anyhow::{Context, Result, bail};
use roxmltree::Document;

use super::idcard;
use super::schemas::Schemas;
use super::*;
use crate::soapd::{PostOptions, post};
use crate::xmlsec::{self, text};
use certvakt_soap::read::{child, find};

const CVR: &str = "96908409";
const UUID: &str = "0443b8ae-dfd0-48c1-8af4-b9993cbce492";
const NEXT_UUID: &str = "7d2c9e41-5b3a-4f18-9c6d-0e8f1a2b3c4d";
const CREATE: &str = "CreateFocesWhitelisting";
const DELETE: &str = "DeleteFocesWhitelisting";
const GET: &str = "GetFocesWhitelistings";

/// The brief's §4.4 1.4.6 E6 Create example, verbatim.
const E6_CREATE_EXAMPLE: &str = r#"<e6:CreateFocesWhitelistingRequest
    xmlns:e6="http://www.dkma.dk/medicinecard/xml.schema/2015/06/01/E6"
    xmlns:mc="http://www.dkma.dk/medicinecard/xml.schema/2015/06/01">
  <e6:CreatedBy>
    <mc:Other>
      <mc:Name><mc:GivenName>Ane</mc:GivenName><mc:Surname>Apoteker</mc:Surname></mc:Name>
      <mc:PersonIdentifier source="CPR">2604276962</mc:PersonIdentifier>
    </mc:Other>
    <mc:Role>Apoteker</mc:Role>
    <mc:Organisation>
      <mc:Name>Svane apoteket</mc:Name>
      <mc:AddressLine>Brogade 111</mc:AddressLine>
      <mc:AddressLine>5412 Gl. Kogle</mc:AddressLine>
      <mc:Type>Apotek</mc:Type>
      <mc:Identifier source="EAN-Lokationsnummer">5790000171248</mc:Identifier>
    </mc:Organisation>
  </e6:CreatedBy>
  <e6:FocesWhitelisting>
    <e6:OrganisationIdentifier source="CVR">96908409</e6:OrganisationIdentifier>
    <e6:FocesId>0443b8ae-dfd0-48c1-8af4-b9993cbce492</e6:FocesId>
    <e6:CertHash>7FA65D27408F9B0A4A54F650D4D9E4A43941D0A1</e6:CertHash>
  </e6:FocesWhitelisting>
</e6:CreateFocesWhitelistingRequest>"#;

fn e6_modifier(element: &str, role: &str) -> String {
    format!(
        concat!(
            "<e6:{el}><mc:Other><mc:Name><mc:GivenName>Ane</mc:GivenName><mc:Surname>Apoteker</mc:Surname></mc:Name>",
            "<mc:PersonIdentifier source=\"CPR\">2604276962</mc:PersonIdentifier></mc:Other>",
            "<mc:Role>{role}</mc:Role><mc:Organisation><mc:Name>Svane apoteket</mc:Name>",
            "<mc:Type>Apotek</mc:Type><mc:Identifier source=\"EAN-Lokationsnummer\">5790000171248</mc:Identifier>",
            "</mc:Organisation></e6:{el}>"
        ),
        el = element,
        role = role
    )
}

fn v160_modifier(element: &str, role: &str) -> String {
    format!(
        concat!(
            "<mc160:{el}><mc160:Person><mc160:PersonIdentifier source=\"CPR\">2604276962</mc160:PersonIdentifier>",
            "<mc160:Name>Ane Apoteker</mc160:Name></mc160:Person><mc160:Role>{role}</mc160:Role>",
            "<mc160:Organisation><mc160:Identifier source=\"EAN-Lokationsnummer\">5790000171248</mc160:Identifier>",
            "<mc160:Type>Apotek</mc160:Type><mc160:Name>Svane apoteket</mc160:Name></mc160:Organisation></mc160:{el}>"
        ),
        el = element,
        role = role
    )
}

fn whitelisting(prefix: &str, cvr: &str, foces_id: &str, hash: Option<&str>) -> String {
    let hash = hash
        .map(|h| format!("<{prefix}:CertHash>{h}</{prefix}:CertHash>"))
        .unwrap_or_default();
    format!(
        "<{prefix}:FocesWhitelisting><{prefix}:OrganisationIdentifier source=\"CVR\">{cvr}</{prefix}:OrganisationIdentifier><{prefix}:FocesId>{foces_id}</{prefix}:FocesId>{hash}</{prefix}:FocesWhitelisting>"
    )
}

/// A request body: Create, Delete or Get, either version.
fn body(version: FmkVersion, op: &str, cvr: &str, foces_id: &str, hash: Option<&str>) -> String {
    let (prefix, open) = match version {
        FmkVersion::E6 => (
            "e6",
            format!("xmlns:e6=\"{}\" xmlns:mc=\"{}\"", ns::E6, ns::MC20150601),
        ),
        FmkVersion::V160 => ("mc160", format!("xmlns:mc160=\"{}\"", ns::MC160)),
    };
    let modifier = |element: &str| match version {
        FmkVersion::E6 => e6_modifier(element, "Apoteker"),
        FmkVersion::V160 => v160_modifier(element, "Apoteker"),
    };
    let modifier_element = match op {
        CREATE => Some("CreatedBy"),
        DELETE => Some("ModifiedBy"),
        _ => None,
    };
    let inner = match modifier_element {
        Some(element) => format!(
            "{}{}",
            modifier(element),
            whitelisting(prefix, cvr, foces_id, hash)
        ),
        None => format!(
            "<{prefix}:OrganisationIdentifier source=\"CVR\">{cvr}</{prefix}:OrganisationIdentifier>"
        ),
    };
    format!("<{prefix}:{op}Request {open}>{inner}</{prefix}:{op}Request>")
}

fn medcom_header() -> String {
    format!(
        "<medcom:Header xmlns:medcom=\"{}\"><medcom:SecurityLevel>3</medcom:SecurityLevel><medcom:Linking><medcom:FlowID>flow-1</medcom:FlowID><medcom:MessageID>msg-1</medcom:MessageID></medcom:Linking><medcom:FlowStatus>flow_running</medcom:FlowStatus><medcom:Priority>RUTINE</medcom:Priority></medcom:Header>",
        ns::MEDCOM
    )
}

fn whitelisting_header(version: FmkVersion, role: &str) -> String {
    match version {
        FmkVersion::E6 => format!(
            concat!(
                "<sdsd:WhitelistingHeader xmlns:sdsd=\"{}\" xmlns:sdsd10=\"{}\">",
                "<sdsd10:SystemOwnerName>certvakt</sdsd10:SystemOwnerName><sdsd10:SystemName>certvakt</sdsd10:SystemName>",
                "<sdsd10:SystemVersion>0.1.0</sdsd10:SystemVersion><sdsd10:OrgResponsibleName>Svane apoteket</sdsd10:OrgResponsibleName>",
                "<sdsd10:OrgUsingName>Svane apoteket</sdsd10:OrgUsingName>",
                "<sdsd10:OrgUsingID NameFormat=\"medcom:locationnumber\">5790000171248</sdsd10:OrgUsingID>",
                "<sdsd10:RequestedRole>{}</sdsd10:RequestedRole></sdsd:WhitelistingHeader>"
            ),
            ns::SDSD2012,
            ns::SDSD2010,
            role
        ),
        FmkVersion::V160 => format!(
            concat!(
                "<mc160:FMKRequestHeader xmlns:mc160=\"{}\"><mc160:WhitelistingHeader>",
                "<mc160:SystemOwnerName>certvakt</mc160:SystemOwnerName><mc160:SystemName>certvakt</mc160:SystemName>",
                "<mc160:SystemVersion>0.1.0</mc160:SystemVersion><mc160:OrgResponsibleName>Svane apoteket</mc160:OrgResponsibleName>",
                "<mc160:OrgUsingName>Svane apoteket</mc160:OrgUsingName>",
                "<mc160:OrgUsingID NameFormat=\"medcom:locationnumber\">5790000171248</mc160:OrgUsingID>",
                "<mc160:RequestedRole>{}</mc160:RequestedRole></mc160:WhitelistingHeader></mc160:FMKRequestHeader>"
            ),
            ns::MC160,
            role
        ),
    }
}

/// A whole FMK request envelope.
fn fmk_envelope(card: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"{}\"><soapenv:Header><wsse:Security xmlns:wsse=\"{}\">{card}</wsse:Security>{}{extra_headers}</soapenv:Header><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>",
        ns::SOAP,
        ns::WSSE,
        medcom_header()
    )
}

/// A pharmacy with its OCES3 CA, system certificate and a running simulator.
struct Pharmacy {
    ca: TestCa,
    cert: IssuedCert,
    sim: FmkSimulator,
}

fn pharmacy(options: FmkOptions) -> Result<Pharmacy> {
    let ca = TestCa::new(CaShape::Oces3)?;
    let cert =
        ca.issue(&LeafSpec::oces3(CVR, UUID, "Svane Apotek FMK").key_type(KeyType::Rsa2048))?;
    let sim = FmkSimulator::start(FmkOptions {
        client_roots: vec![ca.root_der()],
        ..options
    })?;
    Ok(Pharmacy { ca, cert, sim })
}

/// The system ID card as certvakt's client makes it: signed by the certificate itself,
/// RSA-SHA256 over `#IDCard`.
fn self_signed_card(cert: &IssuedCert, care_provider_cvr: &str) -> Result<String> {
    use base64::Engine as _;
    use sha1::{Digest as _, Sha1};
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(&cert.cert_der));
    let now = idcard::now();
    let stamp = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let template = format!(
        concat!(
            "<saml:Assertion xmlns:saml=\"{saml}\" xmlns:ds=\"{ds}\" IssueInstant=\"{now}\" Version=\"2.0\" id=\"IDCard\">",
            "<saml:Issuer>certvakt</saml:Issuer><saml:Subject><saml:NameID Format=\"medcom:cvrnumber\">{cvr}</saml:NameID>",
            "<saml:SubjectConfirmation><saml:ConfirmationMethod>urn:oasis:names:tc:SAML:2.0:cm:holder-of-key</saml:ConfirmationMethod>",
            "<saml:SubjectConfirmationData><ds:KeyInfo><ds:KeyName>OCESSignature</ds:KeyName></ds:KeyInfo></saml:SubjectConfirmationData>",
            "</saml:SubjectConfirmation></saml:Subject>",
            "<saml:Conditions NotBefore=\"{now}\" NotOnOrAfter=\"{end}\"/>",
            "<saml:AttributeStatement id=\"IDCardData\">",
            "<saml:Attribute Name=\"sosi:IDCardID\"><saml:AttributeValue>card-1</saml:AttributeValue></saml:Attribute>",
            "<saml:Attribute Name=\"sosi:IDCardVersion\"><saml:AttributeValue>1.0.1</saml:AttributeValue></saml:Attribute>",
            "<saml:Attribute Name=\"sosi:IDCardType\"><saml:AttributeValue>system</saml:AttributeValue></saml:Attribute>",
            "<saml:Attribute Name=\"sosi:AuthenticationLevel\"><saml:AttributeValue>3</saml:AttributeValue></saml:Attribute>",
            "<saml:Attribute Name=\"sosi:OCESCertHash\"><saml:AttributeValue>{hash}</saml:AttributeValue></saml:Attribute>",
            "</saml:AttributeStatement><saml:AttributeStatement id=\"SystemLog\">",
            "<saml:Attribute Name=\"medcom:ITSystemName\"><saml:AttributeValue>certvakt</saml:AttributeValue></saml:Attribute>",
            "<saml:Attribute Name=\"medcom:CareProviderID\" NameFormat=\"medcom:cvrnumber\"><saml:AttributeValue>{cvr}</saml:AttributeValue></saml:Attribute>",
            "<saml:Attribute Name=\"medcom:CareProviderName\"><saml:AttributeValue>Svane apoteket</saml:AttributeValue></saml:Attribute>",
            "</saml:AttributeStatement>{signature}</saml:Assertion>"
        ),
        saml = ns::SAML,
        ds = ns::DS,
        now = stamp(now - time::Duration::minutes(1)),
        end = stamp(now + time::Duration::hours(24)),
        cvr = care_provider_cvr,
        hash = hash,
        signature = idcard::signature_template(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2001/04/xmlenc#sha256"
        ),
    );
    xmlsec::sign(&template, &cert.key_pem, &cert.cert_pem, &idcard::ID_ATTRS)
}

fn sts_envelope(card: &str) -> String {
    format!(
        concat!(
            "<soapenv:Envelope xmlns:soapenv=\"{soap}\" xmlns:wst=\"{wst}\" xmlns:wsa=\"{wsa}\" xmlns:wsse=\"{wsse}\" xmlns:wsu=\"{wsu}\">",
            "<soapenv:Header><wsse:Security><wsu:Timestamp><wsu:Created>2026-01-01T00:00:00Z</wsu:Created></wsu:Timestamp></wsse:Security></soapenv:Header>",
            "<soapenv:Body><wst:RequestSecurityToken Context=\"www.sosi.dk\"><wst:TokenType>urn:oasis:names:tc:SAML:2.0:assertion:</wst:TokenType>",
            "<wst:RequestType>http://schemas.xmlsoap.org/ws/2005/02/trust/Issue</wst:RequestType>",
            "<wst:Claims>{card}</wst:Claims><wst:Issuer><wsa:Address>certvakt</wsa:Address></wst:Issuer>",
            "</wst:RequestSecurityToken></soapenv:Body></soapenv:Envelope>"
        ),
        soap = ns::SOAP,
        wst = ns::WST,
        wsa = ns::WSA,
        wsse = ns::WSSE,
        wsu = ns::WSU,
        card = card
    )
}

fn call(p: &Pharmacy, url: &str, action: &str, envelope: &str) -> Result<(u16, String)> {
    let quoted = format!("\"{action}\"");
    post(
        url,
        &p.sim.server_root_pem(),
        envelope,
        &PostOptions {
            soap_action: Some(&quoted),
            identity: Some(&p.cert),
            ..PostOptions::default()
        },
    )
}

/// Sends `card` to the STS in a `RequestSecurityToken` (with an empty `SOAPAction`).
fn sts_call(p: &Pharmacy, card: &str) -> Result<(u16, String)> {
    call(p, &p.sim.sts_url(), "", &sts_envelope(card))
}

/// The STS's card for the pharmacy's certificate, as the text to put in `wsse:Security`.
fn sts_card(p: &Pharmacy) -> Result<String> {
    let card = self_signed_card(&p.cert, CVR)?;
    let (status, answer) = sts_call(p, &card)?;
    assert_eq!(status, 200, "{answer}");
    let doc = Document::parse(&answer)?;
    let rstr = find(doc.root_element(), ns::WST, "RequestSecurityTokenResponse")
        .with_context(|| format!("no RSTR in {answer}"))?;
    assert_eq!(rstr.attribute("Context"), Some("www.sosi.dk"));
    let status_code = find(rstr, ns::WST, "Code").map(text);
    assert_eq!(
        status_code.as_deref(),
        Some("http://schemas.xmlsoap.org/ws/2005/02/trust/status/valid")
    );
    let assertion = child(rstr, ns::WST, "RequestedSecurityToken")
        .and_then(|t| child(t, ns::SAML, "Assertion"))
        .context("no card in the RSTR")?;
    xmlsec::standalone(&answer, assertion)
}

/// The DGWS fault code of an FMK answer (either version), if it is a fault.
fn fault_code(answer: &str) -> Option<String> {
    let doc = Document::parse(answer).ok()?;
    doc.descendants()
        .find(|n| {
            n.has_tag_name((ns::MEDCOM, "FaultCode")) || n.has_tag_name((ns::MC160, "FaultCode"))
        })
        .map(text)
}

fn expect_fault(answer: (u16, String), code: &str) -> Result<String> {
    let (status, text) = answer;
    if status != 500 || fault_code(&text).as_deref() != Some(code) {
        bail!("expected HTTP 500 with fault {code}, got {status}: {text}");
    }
    Ok(text)
}

/// A pharmacy's FMK calls in one interface version, with the STS's card and a whitelisting
/// header requesting `Apoteker`.
struct Session<'a> {
    p: &'a Pharmacy,
    version: FmkVersion,
    card: String,
    headers: String,
}

impl<'a> Session<'a> {
    fn open(p: &'a Pharmacy, version: FmkVersion) -> Result<Session<'a>> {
        Ok(Session {
            p,
            version,
            card: sts_card(p)?,
            headers: whitelisting_header(version, "Apoteker"),
        })
    }

    /// The request body of `op` in this version.
    fn body(&self, op: &str, cvr: &str, foces_id: &str, hash: Option<&str>) -> String {
        body(self.version, op, cvr, foces_id, hash)
    }

    /// Sends `body` with the `SOAPAction` of `op`, this card and header.
    fn send(&self, op: &str, body: &str) -> Result<(u16, String)> {
        self.send_with(&self.card, &self.headers, op, body)
    }

    /// Sends `body` with the `SOAPAction` of `op`, another card or header.
    fn send_with(&self, card: &str, headers: &str, op: &str, body: &str) -> Result<(u16, String)> {
        call(
            self.p,
            &self.p.sim.fmk_url(),
            &self.version.soap_action(op),
            &fmk_envelope(card, headers, body),
        )
    }

    /// Sends `body` as `op`, expects HTTP 200, and returns the answer.
    fn accepted(&self, op: &str, body: &str) -> Result<String> {
        let (status, answer) = self.send(op, body)?;
        assert_eq!(status, 200, "{answer}");
        Ok(answer)
    }

    /// Sends `body` as `op`, expects HTTP 500 with the DGWS fault `code`, and returns the
    /// answer.
    fn refused(&self, op: &str, body: &str, code: &str) -> Result<String> {
        expect_fault(self.send(op, body)?, code)
    }
}

fn schemas() -> Result<Schemas> {
    Schemas::prepare(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/protocols/reference/dk-fmk/fmk-schemas"),
    )
}

#[test]
fn the_briefs_examples_and_the_simulators_answers_validate() -> Result<()> {
    let schemas = schemas()?;
    schemas.body(FmkVersion::E6, E6_CREATE_EXAMPLE)?;
    let v160 = body(FmkVersion::V160, CREATE, CVR, UUID, Some("AB"));
    schemas.body(FmkVersion::V160, &v160)?;
    // The namespace trap (§4.1): the whitelisting's children in the 2015/06/01 namespace.
    let trapped = E6_CREATE_EXAMPLE.replace(
        "<e6:OrganisationIdentifier source=\"CVR\">96908409</e6:OrganisationIdentifier>",
        "<mc:OrganisationIdentifier source=\"CVR\">96908409</mc:OrganisationIdentifier>",
    );
    assert_ne!(trapped, E6_CREATE_EXAMPLE);
    let err = schemas
        .body(FmkVersion::E6, &trapped)
        .expect_err("namespace trap");
    assert!(err.to_string().contains("OrganisationIdentifier"), "{err}");
    // The 1.6.0 Organisation order is the reverse of 1.4.6.
    let reordered = v160.replace(
        "<mc160:Type>Apotek</mc160:Type><mc160:Name>Svane apoteket</mc160:Name>",
        "<mc160:Name>Svane apoteket</mc160:Name><mc160:Type>Apotek</mc160:Type>",
    );
    assert_ne!(reordered, v160);
    assert!(schemas.body(FmkVersion::V160, &reordered).is_err());
    // Headers.
    schemas.medcom_header(&medcom_header())?;
    schemas.whitelisting_header_e6(&whitelisting_header(FmkVersion::E6, "Apoteker"))?;
    schemas.body(
        FmkVersion::V160,
        &whitelisting_header(FmkVersion::V160, "Apoteker"),
    )?;
    Ok(())
}

#[test]
fn create_get_delete_round_trip_in_1_4_6_e6() -> Result<()> {
    let p = pharmacy(FmkOptions::default())?;
    let s = Session::open(&p, FmkVersion::E6)?;
    let schemas = schemas()?;

    let answer = s.accepted(CREATE, &s.body(CREATE, CVR, UUID, None))?;
    let doc = Document::parse(&answer)?;
    let root = doc.root_element();
    let flow = find(root, ns::MEDCOM, "FlowStatus").map(text);
    assert_eq!(flow.as_deref(), Some("flow_finalized_succesfully"));
    let in_response = find(root, ns::MEDCOM, "InResponseToMessageID").map(text);
    assert_eq!(in_response.as_deref(), Some("msg-1"));
    let response =
        find(root, ns::E6, "CreateFocesWhitelistingResponse").context("no response element")?;
    schemas.body(FmkVersion::E6, &xmlsec::standalone(&answer, response)?)?;
    assert!(
        answer.contains("<e6:CertHash>Ukendt</e6:CertHash>"),
        "{answer}"
    );
    assert_eq!(
        p.sim.whitelistings(CVR),
        vec![Whitelisting {
            foces_id: UUID.into(),
            cert_hash: "Ukendt".into(),
            created_by: "Ane Apoteker".into(),
            version: FmkVersion::E6,
        }]
    );

    p.sim.insert_whitelisting(CVR, NEXT_UUID, Some("ABCDEF"));
    let answer = s.accepted(GET, &s.body(GET, CVR, "", None))?;
    let doc = Document::parse(&answer)?;
    let listed: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name((ns::E6, "FocesId")))
        .map(text)
        .collect();
    assert_eq!(listed, vec![UUID.to_owned(), NEXT_UUID.to_owned()]);

    // Delete must name the stored hash ("Ukendt" for the first entry).
    let wrong = s.body(DELETE, CVR, NEXT_UUID, Some("0000"));
    let text_of = s.refused(DELETE, &wrong, "processing_problem")?;
    assert!(text_of.contains("no such FocesWhitelisting"), "{text_of}");
    s.accepted(DELETE, &s.body(DELETE, CVR, NEXT_UUID, Some("ABCDEF")))?;
    assert_eq!(p.sim.whitelistings(CVR).len(), 1);
    assert_eq!(p.sim.whitelistings(CVR)[0].foces_id, UUID);

    let roots: Vec<(Endpoint, String, Option<String>)> = p
        .sim
        .requests()
        .into_iter()
        .map(|r| (r.endpoint, r.body_root, r.fault))
        .collect();
    assert_eq!(
        roots,
        vec![
            (Endpoint::Sts, "RequestSecurityToken".into(), None),
            (Endpoint::Fmk, "CreateFocesWhitelistingRequest".into(), None),
            (Endpoint::Fmk, "GetFocesWhitelistingsRequest".into(), None),
            (
                Endpoint::Fmk,
                "DeleteFocesWhitelistingRequest".into(),
                Some("processing_problem".into())
            ),
            (Endpoint::Fmk, "DeleteFocesWhitelistingRequest".into(), None),
        ]
    );
    Ok(())
}

#[test]
fn a_duplicate_create_and_a_foreign_cvr_are_refused() -> Result<()> {
    let p = pharmacy(FmkOptions::default())?;
    let s = Session::open(&p, FmkVersion::E6)?;
    let create = s.body(CREATE, CVR, UUID, Some("AA"));
    s.accepted(CREATE, &create)?;
    let answer = s.refused(CREATE, &create, "processing_problem")?;
    assert!(
        answer.contains(&format!(
            "FocesWhitelisting already exists for CVR {CVR} and FocesId {UUID}"
        )),
        "{answer}"
    );
    assert!(
        answer.contains("<faultcode>soapenv:Server</faultcode>"),
        "{answer}"
    );

    let foreign = s.body(CREATE, "12345678", UUID, None);
    let answer = s.refused(CREATE, &foreign, "not_authorized")?;
    assert!(answer.contains("differs"), "{answer}");
    assert_eq!(p.sim.whitelistings("12345678"), Vec::new());
    assert_eq!(p.sim.whitelistings(CVR).len(), 1);
    Ok(())
}

#[test]
fn a_duplicate_may_update_the_hash_by_option() -> Result<()> {
    let p = pharmacy(FmkOptions {
        on_duplicate: Duplicate::UpdateHash,
        ..FmkOptions::default()
    })?;
    let s = Session::open(&p, FmkVersion::E6)?;
    for hash in ["AA", "BB"] {
        s.accepted(CREATE, &s.body(CREATE, CVR, UUID, Some(hash)))?;
    }
    let stored = p.sim.whitelistings(CVR);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].cert_hash, "BB");
    Ok(())
}

#[test]
fn headers_and_id_cards_are_checked() -> Result<()> {
    let p = pharmacy(FmkOptions::default())?;
    let s = Session::open(&p, FmkVersion::E6)?;
    let (card, headers) = (s.card.as_str(), s.headers.as_str());
    let create = s.body(CREATE, CVR, UUID, None);

    // A card the STS did not sign: the pharmacy's own.
    let own = self_signed_card(&p.cert, CVR)?;
    // A card from the STS, changed afterwards.
    let tampered = card.replace("Svane apoteket", "Ravn apoteket");
    assert_ne!(tampered, card);
    // A card signed by the STS whose 24 hours are over.
    let doc = Document::parse(card)?;
    let parsed = idcard::parse(doc.root_element()).map_err(anyhow::Error::msg)?;
    let now = idcard::now();
    let expired = idcard::issue(
        &parsed,
        STS_ISSUER,
        now - time::Duration::hours(25),
        now - time::Duration::hours(1),
        &p.sim.shared.sts_identity,
        false,
    )?;
    // The wrong role in the header, then in the body.
    let nurse = whitelisting_header(FmkVersion::E6, "Apoteksansat");
    let clerk = create.replace(
        "<mc:Role>Apoteker</mc:Role>",
        "<mc:Role>Apoteksansat</mc:Role>",
    );
    assert_ne!(clerk, create);

    // What is wrong; the card, header, operation (SOAPAction) and body sent; the fault; what
    // the answer says.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a [&'a str],
    );
    #[rustfmt::skip]
    let cases: [Case<'_>; 7] = [
        ("no WhitelistingHeader", card, "", CREATE, &create, "missing_required_header",
            &["WhitelistingHeader", "<medcom:FlowStatus>missing_required_header</medcom:FlowStatus>"]),
        ("the pharmacy's own card", &own, headers, CREATE, &create, "invalid_idcard", &[]),
        ("a changed card", &tampered, headers, CREATE, &create, "invalid_signature", &[]),
        ("an expired card", &expired, headers, CREATE, &create, "expired_idcard", &[]),
        ("the header's role", card, &nurse, CREATE, &create, "not_authorized", &[]),
        ("the body's role", card, headers, CREATE, &clerk, "not_authorized", &[]),
        // The body's root does not match the SOAPAction.
        ("another operation", card, headers, DELETE, &create, "syntax_error", &[]),
    ];
    for (what, card, headers, op, body, code, says) in cases {
        let answer = expect_fault(s.send_with(card, headers, op, body)?, code)
            .with_context(|| what.to_owned())?;
        for said in says {
            assert!(answer.contains(said), "{what}: {answer}");
        }
    }
    assert!(p.sim.whitelistings(CVR).is_empty());

    // And the real thing passes.
    s.accepted(CREATE, &create)?;
    Ok(())
}

#[test]
fn a_1_6_0_uuid_passes_and_an_old_1_6_0_server_refuses_it() -> Result<()> {
    let new = pharmacy(FmkOptions::default())?;
    let s = Session::open(&new, FmkVersion::V160)?;
    let create = s.body(CREATE, CVR, UUID, Some("AB12"));
    let answer = s.accepted(CREATE, &create)?;
    assert!(
        answer.contains(&format!("<mc160:FocesId>{UUID}</mc160:FocesId>")),
        "{answer}"
    );
    assert_eq!(new.sim.whitelistings(CVR)[0].version, FmkVersion::V160);
    assert_eq!(new.sim.whitelistings(CVR)[0].created_by, "Ane Apoteker");

    let old = pharmacy(FmkOptions {
        foces_id_max_10: true,
        ..FmkOptions::default()
    })?;
    let s = Session::open(&old, FmkVersion::V160)?;
    let answer = s.refused(CREATE, &create, "syntax_error")?;
    // The 1.6.0 fault detail is FMKDetail, valid against its schema.
    let doc = Document::parse(&answer)?;
    let detail = find(doc.root_element(), ns::MC160, "FMKDetail").context("no FMKDetail")?;
    schemas()?.body(FmkVersion::V160, &xmlsec::standalone(&answer, detail)?)?;
    assert!(answer.contains("maxLength"), "{answer}");
    assert!(old.sim.whitelistings(CVR).is_empty());
    // An OCES2-era FID still fits.
    s.accepted(CREATE, &s.body(CREATE, CVR, "94731315", None))?;
    Ok(())
}

#[test]
fn system_cards_and_forced_faults_by_option() -> Result<()> {
    let p = pharmacy(FmkOptions {
        system_cards_may_whitelist: false,
        ..FmkOptions::default()
    })?;
    let s = Session::open(&p, FmkVersion::E6)?;
    let create = s.body(CREATE, CVR, UUID, None);
    let answer = s.refused(CREATE, &create, "not_authorized")?;
    assert!(answer.contains("owner"), "{answer}");
    // Reading is still allowed.
    let get = s.body(GET, CVR, "", None);
    s.accepted(GET, &get)?;

    p.sim.set_fault(GET, Some("processing_problem"));
    s.refused(GET, &get, "processing_problem")?;
    p.sim.set_fault(GET, None);
    s.accepted(GET, &get)?;
    Ok(())
}

#[test]
fn the_owner_submits_a_prepared_body() -> Result<()> {
    let p = pharmacy(FmkOptions {
        system_cards_may_whitelist: false,
        ..FmkOptions::default()
    })?;
    let answer = p.sim.submit_as_owner(E6_CREATE_EXAMPLE)?;
    assert!(
        answer.contains("CreateFocesWhitelistingResponse"),
        "{answer}"
    );
    assert_eq!(
        p.sim.whitelistings(CVR)[0].cert_hash,
        "7FA65D27408F9B0A4A54F650D4D9E4A43941D0A1"
    );
    let invalid = E6_CREATE_EXAMPLE
        .replace("<e6:FocesId>", "<e6:FocesID>")
        .replace("</e6:FocesId>", "</e6:FocesID>");
    let err = p.sim.submit_as_owner(&invalid).expect_err("invalid body");
    assert!(err.to_string().contains("syntax_error"), "{err}");
    let err = p.sim.submit_as_owner("<not-xml").expect_err("not XML");
    assert!(err.to_string().contains("well-formed"), "{err}");
    let delete = body(
        FmkVersion::V160,
        DELETE,
        CVR,
        UUID,
        Some("7FA65D27408F9B0A4A54F650D4D9E4A43941D0A1"),
    );
    p.sim.submit_as_owner(&delete)?;
    assert!(p.sim.whitelistings(CVR).is_empty());
    Ok(())
}

#[test]
fn the_sts_refuses_bad_cards_and_unlisted_callers_with_http_200() -> Result<()> {
    let p = pharmacy(FmkOptions::default())?;
    let card = self_signed_card(&p.cert, CVR)?;

    let tampered = card.replace(
        "<saml:AttributeValue>3</saml:AttributeValue>",
        "<saml:AttributeValue>4</saml:AttributeValue>",
    );
    assert_ne!(tampered, card);
    let (status, answer) = sts_call(&p, &tampered)?;
    assert_eq!(status, 200);
    assert!(
        answer.contains("<faultcode>wst:FailedAuthentication</faultcode>"),
        "{answer}"
    );

    let wrong_cvr = self_signed_card(&p.cert, "12345678")?;
    let (_, answer) = sts_call(&p, &wrong_cvr)?;
    assert!(
        answer.contains("<faultcode>wst:InvalidRequest</faultcode>"),
        "{answer}"
    );
    assert!(answer.contains("CareProviderID"), "{answer}");

    // A certificate from another CA (the TLS client stays the pharmacy's).
    let stranger_ca = TestCa::new(CaShape::Oces3)?;
    let stranger =
        stranger_ca.issue(&LeafSpec::oces3(CVR, UUID, "Stranger").key_type(KeyType::Rsa2048))?;
    let (_, answer) = sts_call(&p, &self_signed_card(&stranger, CVR)?)?;
    assert!(answer.contains("wst:FailedAuthentication"), "{answer}");

    // The STS's own whitelist: by thumbprint a renewal is a stranger, by UUID it is not.
    let renewed =
        p.ca.issue(&LeafSpec::oces3(CVR, UUID, "Svane Apotek FMK").key_type(KeyType::Rsa2048))?;
    let renewed_card = self_signed_card(&renewed, CVR)?;
    use sha1::{Digest as _, Sha1};
    let print: String = Sha1::digest(&p.cert.cert_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    p.sim.allow_sts_callers(StsAllow::Thumbprints(vec![print]));
    let (_, answer) = sts_call(&p, &card)?;
    assert!(answer.contains("RequestSecurityTokenResponse"), "{answer}");
    let (_, answer) = sts_call(&p, &renewed_card)?;
    assert!(
        answer.contains("is not whitelisted for the SOSI STS"),
        "{answer}"
    );
    p.sim
        .allow_sts_callers(StsAllow::Uuids(vec![UUID.to_uppercase()]));
    let (_, answer) = sts_call(&p, &renewed_card)?;
    assert!(answer.contains("RequestSecurityTokenResponse"), "{answer}");

    p.sim.set_sts_down(true);
    let (status, _) = sts_call(&p, &card)?;
    assert_eq!(status, 503);
    let faults: Vec<Option<String>> = p.sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        vec![
            Some("wst:FailedAuthentication".into()),
            Some("wst:InvalidRequest".into()),
            Some("wst:FailedAuthentication".into()),
            None,
            Some("wst:FailedAuthentication".into()),
            None,
            Some("unavailable".into()),
        ]
    );
    Ok(())
}

#[test]
fn the_sts_card_is_signed_by_the_sts_alone() -> Result<()> {
    let p = pharmacy(FmkOptions::default())?;
    let card = sts_card(&p)?;
    let doc = Document::parse(&card)?;
    let root = doc.root_element();
    assert_eq!(root.attribute("id"), Some("IDCard"));
    let parsed = idcard::parse(root).map_err(anyhow::Error::msg)?;
    assert_eq!(parsed.issuer, STS_ISSUER);
    assert_eq!(parsed.care_provider_cvr(), Some(CVR));
    assert_eq!(parsed.attribute("sosi:IDCardType"), Some("system"));
    let lifetime = parsed
        .not_on_or_after
        .zip(parsed.not_before)
        .map(|(b, a)| b - a);
    assert_eq!(lifetime, Some(time::Duration::hours(24)));
    idcard::check_signature(&card, root, &p.sim.sts_certificate_pem())
        .map_err(anyhow::Error::msg)?;
    assert!(idcard::check_signature(&card, root, &p.cert.cert_pem).is_err());
    Ok(())
}

#[test]
fn a_client_without_a_certificate_is_not_served() -> Result<()> {
    let p = pharmacy(FmkOptions::default())?;
    let result = post(
        &p.sim.fmk_url(),
        &p.sim.server_root_pem(),
        "<x/>",
        &PostOptions::default(),
    );
    match result {
        Err(_) => {}
        Ok((status, body)) => bail!("served without a client certificate: {status} {body}"),
    }
    assert!(p.sim.requests().is_empty());
    Ok(())
}
