//! The FMK `MedicineCard` endpoint: the three whitelisting operations in both interface
//! versions, checked in the order the module documentation of [`super`] lists, and answered
//! with real envelopes (brief §3–§5, §8, §9).

use certvakt_soap::read::child;
use quick_xml::escape::escape;
use roxmltree::{Document, Node};

use super::idcard::{self, IdCard};
use super::{
    Duplicate, Endpoint, FmkVersion, LoggedRequest, STS_ISSUER, Shared, Whitelisting, lock, ns,
};
use crate::soapd::{self, Fault, SoapReply, SoapRequest};
use crate::xmlsec::{self, text};

/// What FMK stores when a Create has no CertHash (brief §6).
pub(super) const UNKNOWN_HASH: &str = "Ukendt";

/// The three operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Create,
    Delete,
    Get,
}

impl Op {
    const ALL: [Op; 3] = [Op::Create, Op::Delete, Op::Get];

    pub(super) fn name(self) -> &'static str {
        match self {
            Op::Create => "CreateFocesWhitelisting",
            Op::Delete => "DeleteFocesWhitelisting",
            Op::Get => "GetFocesWhitelistings",
        }
    }

    fn request(self) -> String {
        format!("{}Request", self.name())
    }

    fn response(self) -> String {
        format!("{}Response", self.name())
    }

    /// The element naming who makes the change.
    fn modifier(self) -> Option<&'static str> {
        match self {
            Op::Create => Some("CreatedBy"),
            Op::Delete => Some("ModifiedBy"),
            Op::Get => None,
        }
    }
}

/// A refusal: the DGWS fault code and a sentence.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    pub code: &'static str,
    pub text: String,
}

fn refuse(code: &'static str, text: impl Into<String>) -> Refusal {
    Refusal {
        code,
        text: text.into(),
    }
}

/// The version and operation a `SOAPAction` names (quotes optional).
fn action(value: &str) -> Option<(FmkVersion, Op)> {
    let value = value.trim().trim_matches('"');
    for version in [FmkVersion::E6, FmkVersion::V160] {
        for op in Op::ALL {
            if value == version.soap_action(op.name()) {
                return Some((version, op));
            }
        }
    }
    None
}

/// The `medcom:Header` linking of the request, echoed in the answer.
#[derive(Debug, Default, Clone)]
struct Linking {
    flow_id: Option<String>,
    message_id: Option<String>,
}

/// A checked operation body.
#[derive(Debug, Clone)]
pub(super) struct Body {
    pub version: FmkVersion,
    pub op: Op,
    pub cvr: String,
    pub foces_id: Option<String>,
    pub cert_hash: Option<String>,
    pub created_by: String,
}

pub(super) fn handle(shared: &Shared, request: &SoapRequest) -> SoapReply {
    let soap_action = request.action().to_owned();
    let source = String::from_utf8_lossy(&request.body).into_owned();
    let mut body_root = String::new();
    let mut version = action(&soap_action).map_or(FmkVersion::E6, |(v, _)| v);
    let mut linking = Linking::default();
    let outcome = process(
        shared,
        &soap_action,
        &source,
        &mut body_root,
        &mut version,
        &mut linking,
    );
    let (reply, fault) = match outcome {
        Ok(body) => (
            SoapReply::xml(
                200,
                envelope(shared, &linking, "flow_finalized_succesfully", &body),
            ),
            None,
        ),
        Err(refusal) => (
            SoapReply::xml(
                500,
                fault(shared, version, &linking, &refusal, &soap_action),
            ),
            Some(refusal.code.to_owned()),
        ),
    };
    shared.log(LoggedRequest {
        endpoint: Endpoint::Fmk,
        soap_action,
        body_root,
        fault,
        by_owner: false,
    });
    reply
}

fn process(
    shared: &Shared,
    soap_action: &str,
    source: &str,
    body_root: &mut String,
    version_out: &mut FmkVersion,
    linking: &mut Linking,
) -> Result<String, Refusal> {
    let doc = soapd::parse_envelope(source).map_err(|e| refuse("syntax_error", e))?;
    let envelope = doc.root_element();
    let body =
        child(envelope, ns::SOAP, "Body").ok_or(refuse("syntax_error", "no soapenv:Body"))?;
    let operation = body.children().find(Node::is_element);
    if let Some(operation) = operation {
        body_root.push_str(operation.tag_name().name());
    }
    let header = child(envelope, ns::SOAP, "Header");
    if let Some(medcom) = header.and_then(|h| child(h, ns::MEDCOM, "Header")) {
        let linking_node = child(medcom, ns::MEDCOM, "Linking");
        linking.flow_id = linking_node
            .and_then(|l| child(l, ns::MEDCOM, "FlowID"))
            .map(text);
        linking.message_id = linking_node
            .and_then(|l| child(l, ns::MEDCOM, "MessageID"))
            .map(text);
    }

    // 1. SOAPAction and body root.
    let (version, op) = action(soap_action).ok_or_else(|| {
        refuse(
            "syntax_error",
            format!("unknown SOAPAction {soap_action:?}: this endpoint serves the FOCES whitelisting operations of FMK 1.4.6 E6 and 1.6.0"),
        )
    })?;
    *version_out = version;
    let operation = operation.ok_or(refuse("syntax_error", "the soapenv:Body is empty"))?;
    if !operation.has_tag_name((version.namespace(), op.request().as_str())) {
        return Err(refuse(
            "syntax_error",
            format!(
                "the body is {{{}}}{} but the SOAPAction {soap_action} expects {{{}}}{}",
                operation.tag_name().namespace().unwrap_or_default(),
                operation.tag_name().name(),
                version.namespace(),
                op.request()
            ),
        ));
    }

    // 2. The body against the schemas.
    let parsed = check_body(shared, version, op, source, operation)?;

    // 3. Headers.
    let header = header.ok_or(refuse("missing_required_header", "no soapenv:Header"))?;
    let security = child(header, ns::WSSE, "Security").ok_or(refuse(
        "missing_required_header",
        "no wsse:Security header (with the ID card)",
    ))?;
    let medcom = child(header, ns::MEDCOM, "Header")
        .ok_or(refuse("missing_required_header", "no medcom:Header"))?;
    // A header, as a document of its own, against its schema.
    let header_valid =
        |node: Node<'_, '_>, name: &str, validate: &dyn Fn(&str) -> anyhow::Result<()>| {
            xmlsec::standalone(source, node)
                .and_then(|alone| validate(&alone))
                .map_err(|e| {
                    refuse(
                        "missing_required_header",
                        format!("the {name} is not valid: {e}"),
                    )
                })
        };
    header_valid(medcom, "medcom:Header", &|alone| {
        shared.schemas.medcom_header(alone)
    })?;
    let requested_role = match version {
        FmkVersion::E6 => {
            let whitelisting = child(header, ns::SDSD2012, "WhitelistingHeader").ok_or(refuse(
                "missing_required_header",
                "no WhitelistingHeader ({http://www.sdsd.dk/dgws/2012/06}WhitelistingHeader is required by FMK 1.4.6 E6)",
            ))?;
            header_valid(whitelisting, "WhitelistingHeader", &|alone| {
                shared.schemas.whitelisting_header_e6(alone)
            })?;
            child(whitelisting, ns::SDSD2010, "RequestedRole").map(text)
        }
        FmkVersion::V160 => {
            let fmk_header = child(header, ns::MC160, "FMKRequestHeader").ok_or(refuse(
                "missing_required_header",
                "no FMKRequestHeader ({http://fmk-teknik.dk/160}FMKRequestHeader is required by FMK 1.6.0)",
            ))?;
            header_valid(fmk_header, "FMKRequestHeader", &|alone| {
                shared.schemas.body(FmkVersion::V160, alone)
            })?;
            child(fmk_header, ns::MC160, "WhitelistingHeader")
                .and_then(|w| child(w, ns::MC160, "RequestedRole"))
                .map(text)
        }
    };

    // 4. The ID card.
    let card = check_card(shared, &doc, source, security)?;

    // 5. Roles and the kind of card.
    let requested_role = requested_role.unwrap_or_default();
    if !role_allowed(shared, &requested_role) {
        return Err(refuse(
            "not_authorized",
            format!(
                "the WhitelistingHeader's RequestedRole is {requested_role:?}; FOCES whitelisting requires Apoteker"
            ),
        ));
    }
    if op != Op::Get {
        let card_type = card.attribute("sosi:IDCardType").unwrap_or_default();
        if card_type == "system" && !shared.options.system_cards_may_whitelist {
            return Err(refuse(
                "not_authorized",
                format!(
                    "{} needs the pharmacy owner (Apoteker) in person: a system ID card may not change FOCES whitelistings",
                    op.name()
                ),
            ));
        }
    }

    // 6. The CVR.
    let card_cvr = card.care_provider_cvr().unwrap_or_default();
    if parsed.cvr != card_cvr {
        return Err(refuse(
            "not_authorized",
            format!(
                "the CVR in the request ({}) differs from the ID card's CareProviderID ({card_cvr})",
                parsed.cvr
            ),
        ));
    }

    // 7. A fault the test asked for.
    let forced = lock(&shared.state).faults.get(op.name()).cloned();
    if let Some(code) = forced {
        let code = fault_code_static(&code);
        return Err(refuse(
            code,
            format!("{} failed ({code}, set by the test)", op.name()),
        ));
    }

    // 8. Apply.
    apply(shared, &parsed)
}

/// The fault codes of the medcom `FlowStatus` list, as `'static` strings (others become
/// `processing_problem`).
fn fault_code_static(code: &str) -> &'static str {
    const CODES: [&str; 13] = [
        "syntax_error",
        "missing_required_header",
        "security_level_failed",
        "invalid_username_password",
        "invalid_signature",
        "invalid_idcard",
        "invalid_certificate",
        "expired_idcard",
        "not_authorized",
        "illegal_http_method",
        "processing_problem",
        "signature_not_supported",
        "flow_running",
    ];
    CODES
        .into_iter()
        .find(|c| *c == code)
        .unwrap_or("processing_problem")
}

fn role_allowed(shared: &Shared, role: &str) -> bool {
    role == "Apoteker" || (shared.options.relaxed_role && role == "Apoteksansat")
}

/// Step 4: the card in `wsse:Security`, issued and signed by this STS, current, level 3.
fn check_card(
    shared: &Shared,
    doc: &Document<'_>,
    source: &str,
    security: Node<'_, '_>,
) -> Result<IdCard, Refusal> {
    let node = idcard::locate(doc, security).map_err(|e| refuse("invalid_idcard", e))?;
    let card = idcard::parse(node).map_err(|e| refuse("invalid_idcard", e))?;
    if card.issuer != STS_ISSUER {
        return Err(refuse(
            "invalid_idcard",
            format!(
                "the ID card was issued by {:?}, not by the SOSI STS ({STS_ISSUER:?})",
                card.issuer
            ),
        ));
    }
    idcard::check_signature(source, node, &shared.sts_identity.cert_pem)
        .map_err(|e| refuse("invalid_signature", format!("the ID card's signature: {e}")))?;
    let now = idcard::now();
    match card.not_on_or_after {
        None => return Err(refuse("invalid_idcard", "the ID card has no NotOnOrAfter")),
        Some(end) if end <= now => {
            return Err(refuse(
                "expired_idcard",
                format!("the ID card expired at {end}"),
            ));
        }
        Some(_) => {}
    }
    if card
        .not_before
        .is_some_and(|start| start > now + time::Duration::minutes(5))
    {
        return Err(refuse("invalid_idcard", "the ID card is not valid yet"));
    }
    let level = card
        .attribute("sosi:AuthenticationLevel")
        .unwrap_or_default();
    if level != "3" {
        return Err(refuse(
            "invalid_idcard",
            format!("the ID card's AuthenticationLevel is {level:?}; this service requires 3"),
        ));
    }
    Ok(card)
}

/// Step 2 (and the body rules of steps 5, 6): schema, FocesId length in the old-server mode,
/// the modifier's role, the CVR's form.
pub(super) fn check_body(
    shared: &Shared,
    version: FmkVersion,
    op: Op,
    source: &str,
    operation: Node<'_, '_>,
) -> Result<Body, Refusal> {
    xmlsec::standalone(source, operation)
        .and_then(|alone| shared.schemas.body(version, &alone))
        .map_err(|e| {
            refuse(
                "syntax_error",
                format!("the {} does not validate: {e}", op.request()),
            )
        })?;
    let space = version.namespace();
    let (identifier, whitelisting) = match op {
        Op::Get => (child(operation, space, "OrganisationIdentifier"), None),
        Op::Create | Op::Delete => {
            let w = child(operation, space, "FocesWhitelisting");
            (w.and_then(|w| child(w, space, "OrganisationIdentifier")), w)
        }
    };
    let identifier = identifier.ok_or(refuse("syntax_error", "no OrganisationIdentifier"))?;
    let foces_id = whitelisting
        .and_then(|w| child(w, space, "FocesId"))
        .map(text);
    let cert_hash = whitelisting
        .and_then(|w| child(w, space, "CertHash"))
        .map(text);
    let too_long = foces_id
        .as_ref()
        .filter(|id| id.chars().count() > 10)
        .filter(|_| shared.options.foces_id_max_10 && version == FmkVersion::V160);
    if let Some(id) = too_long {
        return Err(refuse(
            "syntax_error",
            format!(
                "the {} does not validate: Element '{{{space}}}FocesId': [facet 'maxLength'] The value has a length of '{}'; this exceeds the allowed maximum length of '10'.",
                op.request(),
                id.chars().count()
            ),
        ));
    }
    let mut created_by = String::new();
    if let Some(modifier_name) = op.modifier() {
        let modifier = child(operation, space, modifier_name)
            .ok_or(refuse("syntax_error", format!("no {modifier_name}")))?;
        let types = match version {
            FmkVersion::E6 => ns::MC20150601,
            FmkVersion::V160 => ns::MC160,
        };
        let role = child(modifier, types, "Role").map(text).unwrap_or_default();
        if !role_allowed(shared, &role) {
            return Err(refuse(
                "not_authorized",
                format!(
                    "the {modifier_name} Role is {role:?}; only the pharmacy owner (Apoteker) may change FOCES whitelistings"
                ),
            ));
        }
        created_by = modifier_name_of(modifier, types, version);
    }
    let source_attr = identifier.attribute("source").unwrap_or_default();
    let cvr = text(identifier);
    if source_attr != "CVR" {
        return Err(refuse(
            "not_authorized",
            format!("OrganisationIdentifier source is {source_attr:?}; only CVR is supported"),
        ));
    }
    if cvr.len() != 8 || !cvr.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse(
            "not_authorized",
            format!("the CVR {cvr:?} is not 8 digits"),
        ));
    }
    Ok(Body {
        version,
        op,
        cvr,
        foces_id,
        cert_hash,
        created_by,
    })
}

/// The modifier's name: 1.4.6 `Other/Name` (given, middle, surname), 1.6.0 `Person/Name`.
fn modifier_name_of(modifier: Node<'_, '_>, types: &str, version: FmkVersion) -> String {
    match version {
        FmkVersion::E6 => modifier
            .children()
            .filter(Node::is_element)
            .find_map(|person| child(person, types, "Name"))
            .map(|name| {
                ["GivenName", "MiddleName", "Surname"]
                    .iter()
                    .filter_map(|part| child(name, types, part).map(text))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        FmkVersion::V160 => modifier
            .children()
            .filter(Node::is_element)
            .find_map(|person| child(person, types, "Name"))
            .map(text)
            .unwrap_or_default(),
    }
}

/// Step 8: changes the state and returns the response body element.
pub(super) fn apply(shared: &Shared, body: &Body) -> Result<String, Refusal> {
    let mut state = lock(&shared.state);
    let list = state.whitelistings.entry(body.cvr.clone()).or_default();
    let echoed: Vec<Whitelisting> = match body.op {
        Op::Get => list.clone(),
        Op::Create => {
            let foces_id = body.foces_id.clone().unwrap_or_default();
            let cert_hash = body
                .cert_hash
                .clone()
                .unwrap_or_else(|| UNKNOWN_HASH.to_owned());
            let fresh = Whitelisting {
                foces_id: foces_id.clone(),
                cert_hash: cert_hash.clone(),
                created_by: body.created_by.clone(),
                version: body.version,
            };
            match list.iter_mut().find(|w| w.foces_id == foces_id) {
                None => {
                    list.push(fresh.clone());
                    vec![fresh]
                }
                Some(existing) => match shared.options.on_duplicate {
                    Duplicate::Error => {
                        return Err(refuse(
                            "processing_problem",
                            format!(
                                "FocesWhitelisting already exists for CVR {} and FocesId {foces_id}",
                                body.cvr
                            ),
                        ));
                    }
                    Duplicate::UpdateHash => {
                        existing.cert_hash = cert_hash;
                        vec![existing.clone()]
                    }
                    Duplicate::AddSecond => {
                        list.push(fresh.clone());
                        vec![fresh]
                    }
                },
            }
        }
        Op::Delete => {
            let foces_id = body.foces_id.clone().unwrap_or_default();
            let hash = body.cert_hash.as_deref().unwrap_or(UNKNOWN_HASH);
            let position = list.iter().position(|w| {
                w.foces_id == foces_id
                    && (!shared.options.delete_matches_hash || w.cert_hash == hash)
            });
            match position {
                Some(at) => vec![list.remove(at)],
                None => {
                    return Err(refuse(
                        "processing_problem",
                        format!(
                            "no such FocesWhitelisting for CVR {} and FocesId {foces_id}{}",
                            body.cvr,
                            if shared.options.delete_matches_hash {
                                format!(" with CertHash {hash}")
                            } else {
                                String::new()
                            }
                        ),
                    ));
                }
            }
        }
    };
    if list.is_empty() {
        state.whitelistings.remove(&body.cvr);
    }
    Ok(response_body(body.version, body.op, &body.cvr, &echoed))
}

/// `…Response` with the entries, every element in the version's body namespace (§4.1).
fn response_body(version: FmkVersion, op: Op, cvr: &str, entries: &[Whitelisting]) -> String {
    let (prefix, space) = match version {
        FmkVersion::E6 => ("e6", ns::E6),
        FmkVersion::V160 => ("mc160", ns::MC160),
    };
    let mut xml = format!("<{prefix}:{} xmlns:{prefix}=\"{space}\">", op.response());
    for entry in entries {
        xml.push_str(&format!(
            "<{prefix}:FocesWhitelisting><{prefix}:OrganisationIdentifier source=\"CVR\">{}</{prefix}:OrganisationIdentifier><{prefix}:FocesId>{}</{prefix}:FocesId><{prefix}:CertHash>{}</{prefix}:CertHash></{prefix}:FocesWhitelisting>",
            escape(cvr),
            escape(&entry.foces_id),
            escape(&entry.cert_hash)
        ));
    }
    xml.push_str(&format!("</{prefix}:{}>", op.response()));
    xml
}

fn medcom_header(shared: &Shared, linking: &Linking, flow_status: &str) -> String {
    let mut xml = format!(
        "<medcom:Header xmlns:medcom=\"{}\"><medcom:SecurityLevel>3</medcom:SecurityLevel><medcom:Linking>",
        ns::MEDCOM
    );
    if let Some(flow) = &linking.flow_id {
        xml.push_str(&format!("<medcom:FlowID>{}</medcom:FlowID>", escape(flow)));
    }
    xml.push_str(&format!(
        "<medcom:MessageID>{}</medcom:MessageID>",
        shared.message_id()
    ));
    if let Some(id) = &linking.message_id {
        xml.push_str(&format!(
            "<medcom:InResponseToMessageID>{}</medcom:InResponseToMessageID>",
            escape(id)
        ));
    }
    xml.push_str(&format!(
        "</medcom:Linking><medcom:FlowStatus>{flow_status}</medcom:FlowStatus></medcom:Header>"
    ));
    xml
}

fn envelope(shared: &Shared, linking: &Linking, flow_status: &str, body: &str) -> String {
    soapd::envelope(
        "soapenv",
        &[],
        Some(&medcom_header(shared, linking, flow_status)),
        body,
    )
}

/// A DGWS fault: `soapenv:Client` for the caller's mistakes, `soapenv:Server` for
/// `processing_problem`; the detail per version (§8).
fn fault(
    shared: &Shared,
    version: FmkVersion,
    linking: &Linking,
    refusal: &Refusal,
    soap_action: &str,
) -> String {
    let side = if refusal.code == "processing_problem" {
        "soapenv:Server"
    } else {
        "soapenv:Client"
    };
    let detail = match version {
        FmkVersion::E6 => format!(
            "<medcom:FaultCode xmlns:medcom=\"{}\">{}</medcom:FaultCode>",
            ns::MEDCOM,
            refusal.code
        ),
        FmkVersion::V160 => format!(
            "<mc160:FMKDetail xmlns:mc160=\"{}\"><mc160:FaultCode>{}</mc160:FaultCode><mc160:FaultText>{}</mc160:FaultText><mc160:FaultDetails><mc160:KeyValueSet><mc160:Key>SOAPAction</mc160:Key><mc160:Value>{}</mc160:Value></mc160:KeyValueSet></mc160:FaultDetails></mc160:FMKDetail>",
            ns::MC160,
            refusal.code,
            escape(&refusal.text),
            escape(if soap_action.is_empty() {
                "(none)"
            } else {
                soap_action
            })
        ),
    };
    let fault = Fault {
        code: side,
        text: &refusal.text,
        lang: None,
        detail: Some(&detail),
    };
    envelope(
        shared,
        linking,
        refusal.code,
        &fault.element("soapenv", &[]),
    )
}

/// The owner's own client: a bare operation element, validated and applied.
pub(super) fn submit_as_owner(shared: &Shared, body_xml: &str) -> anyhow::Result<String> {
    let doc = Document::parse(body_xml)
        .map_err(|e| anyhow::anyhow!("the body is not well-formed XML: {e}"))?;
    let root = doc.root_element();
    let found = [FmkVersion::E6, FmkVersion::V160]
        .into_iter()
        .find_map(|version| {
            Op::ALL
                .into_iter()
                .find(|op| root.has_tag_name((version.namespace(), op.request().as_str())))
                .map(|op| (version, op))
        });
    let Some((version, op)) = found else {
        anyhow::bail!(
            "the body {{{}}}{} is not a FOCES whitelisting request",
            root.tag_name().namespace().unwrap_or_default(),
            root.tag_name().name()
        );
    };
    let result =
        check_body(shared, version, op, body_xml, root).and_then(|body| apply(shared, &body));
    let fault = result.as_ref().err().map(|r| r.code.to_owned());
    shared.log(LoggedRequest {
        endpoint: Endpoint::Fmk,
        soap_action: version.soap_action(op.name()),
        body_root: op.request(),
        fault,
        by_owner: true,
    });
    result.map_err(|r| anyhow::anyhow!("FMK refused the request ({}): {}", r.code, r.text))
}
