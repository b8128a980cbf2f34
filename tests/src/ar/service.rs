//! The HTTP and SOAP side of the AR service: outage, HTTP Basic, the two bindings' framing
//! (SOAP 1.1 with `SOAPAction`; SOAP 1.2 with WS-Addressing), WCF's member order, schema
//! validation, and the envelopes and faults of answers (steps 1–5 of the [`super`] list).
//! The operations themselves are in [`super::operations`].

use base64::Engine as _;
use quick_xml::escape::escape;

use super::ns::{self, CP, SOAP11, SOAP12, WSA};
use super::operations::{self, OpFault};
use super::{
    ACTION_PREFIX, BASIC_PATH, Binding, LoggedRequest, OPERATIONS, SOAP12_PATH, Shared, lock, wcf,
};
use crate::soapd::{SoapReply, SoapRequest};

/// The realm of the 401 challenge.
const REALM: &str = "ws-web.test.nhn.no";
/// The WS-Addressing action of protocol faults.
const WSA_FAULT_ACTION: &str = "http://www.w3.org/2005/08/addressing/soap/fault";

/// A refusal before the operation ran: a fault with WCF's dispatcher subcode.
struct ProtocolFault {
    /// Local name in the WCF dispatcher or WS-Addressing namespace.
    subcode: &'static str,
    /// Subcode in WS-Addressing (true) or the WCF dispatcher namespace (false).
    addressing: bool,
    text: String,
}

impl ProtocolFault {
    fn dispatcher(subcode: &'static str, text: String) -> ProtocolFault {
        ProtocolFault {
            subcode,
            addressing: false,
            text,
        }
    }
}

/// What a request gets back, before it is written for its binding.
enum Answer {
    Http(SoapReply),
    Protocol(ProtocolFault),
    Operation(OpFault),
    Ok(String),
}

pub(super) fn handle(shared: &Shared, request: &SoapRequest) -> SoapReply {
    let binding = match request.path.as_str() {
        BASIC_PATH => Binding::Basic,
        SOAP12_PATH => Binding::Soap12,
        other => return SoapReply::text(404, &format!("no service at {other}")),
    };
    let mut entry = LoggedRequest {
        operation: String::new(),
        binding,
        account: None,
        her_id: None,
        body: String::from_utf8_lossy(&request.body).into_owned(),
        status: 0,
        fault: None,
        dropped: Vec::new(),
    };
    let mut relates_to = None;
    let answer = process(shared, request, binding, &mut entry, &mut relates_to);
    let reply = write(binding, &entry.operation, relates_to.as_deref(), &answer);
    entry.status = reply.status;
    entry.fault = match &answer {
        Answer::Protocol(fault) => Some(format!("a:{}: {}", fault.subcode, fault.text)),
        Answer::Operation(fault) => Some(fault.summary()),
        Answer::Http(_) | Answer::Ok(_) => None,
    };
    shared.log(entry);
    reply
}

fn process(
    shared: &Shared,
    request: &SoapRequest,
    binding: Binding,
    entry: &mut LoggedRequest,
    relates_to: &mut Option<String>,
) -> Answer {
    let knobs = shared.knobs();
    let now = shared.clock.now();
    if knobs.down || knobs.down_until.is_some_and(|until| now < until) {
        return Answer::Http(SoapReply::text(
            503,
            "The service is unavailable (the AR simulator is set down).",
        ));
    }
    if request.method != "POST" {
        return Answer::Http(SoapReply::text(405, "only POST is served here"));
    }
    let Some(account) = authenticate(shared, request.authorization.as_deref()) else {
        return Answer::Http(
            SoapReply::text(
                401,
                "401 - Unauthorized: Access is denied due to invalid credentials.",
            )
            .with_header("WWW-Authenticate", &format!("Basic realm=\"{REALM}\"")),
        );
    };
    entry.account = Some(account.username.clone());
    let content_type = request.content_type.as_deref().unwrap_or_default();
    let (expected_type, envelope_ns) = match binding {
        Binding::Basic => ("text/xml", SOAP11),
        Binding::Soap12 => ("application/soap+xml", SOAP12),
    };
    if !content_type.to_ascii_lowercase().starts_with(expected_type) {
        return Answer::Http(SoapReply::text(
            415,
            &format!(
                "Cannot process the message because the content type '{content_type}' was not \
                 the expected type '{expected_type}; charset=utf-8'."
            ),
        ));
    }
    let Ok(source) = std::str::from_utf8(&request.body) else {
        return Answer::Protocol(ProtocolFault::dispatcher(
            "DeserializationFailed",
            "The request body is not UTF-8.".to_owned(),
        ));
    };
    let doc = match roxmltree::Document::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            return Answer::Protocol(ProtocolFault::dispatcher(
                "DeserializationFailed",
                format!("The request is not well-formed XML: {e}"),
            ));
        }
    };
    let root = doc.root_element();
    if !root.has_tag_name((envelope_ns, "Envelope")) {
        return Answer::Protocol(ProtocolFault::dispatcher(
            "VersionMismatch",
            format!(
                "The envelope is not a {envelope_ns} Envelope (this endpoint speaks {}).",
                match binding {
                    Binding::Basic => "SOAP 1.1",
                    Binding::Soap12 => "SOAP 1.2",
                }
            ),
        ));
    }
    let action = match binding {
        Binding::Basic => request.action().to_owned(),
        Binding::Soap12 => match addressing(root, content_type, relates_to) {
            Ok(action) => action,
            Err(fault) => return Answer::Protocol(fault),
        },
    };
    let Some(operation) = action
        .strip_prefix(ACTION_PREFIX)
        .filter(|op| OPERATIONS.contains(op))
    else {
        return Answer::Protocol(ProtocolFault::dispatcher(
            "ActionNotSupported",
            format!(
                "The message with Action '{action}' cannot be processed at the receiver: it is \
                 none of {ACTION_PREFIX}{{{}}}.",
                OPERATIONS.join(", ")
            ),
        ));
    };
    entry.operation = operation.to_owned();
    let body_element = root
        .children()
        .find(|n| n.has_tag_name((envelope_ns, "Body")))
        .and_then(|body| body.children().find(roxmltree::Node::is_element));
    if !body_element.is_some_and(|e| e.has_tag_name((CP, operation))) {
        return Answer::Protocol(ProtocolFault::dispatcher(
            "DeserializationFailed",
            format!("The body must hold one {{{CP}}}{operation} element for the action {action}."),
        ));
    }
    let (kept, dropped) = if knobs.wcf_drop_out_of_order {
        match wcf::prune(source, envelope_ns) {
            Ok(pruned) => pruned,
            Err(e) => {
                return Answer::Protocol(ProtocolFault::dispatcher(
                    "DeserializationFailed",
                    format!("{e:#}"),
                ));
            }
        }
    } else {
        (source.to_owned(), Vec::new())
    };
    entry.dropped = dropped;
    match run(shared, &account, operation, &kept, envelope_ns, entry) {
        Ok(Ok(xml)) => Answer::Ok(xml),
        Ok(Err(fault)) => Answer::Operation(fault),
        Err(fault) => Answer::Protocol(fault),
    }
}

/// Validates the operation element of `source` and runs it.
fn run(
    shared: &Shared,
    account: &super::ServiceAccount,
    operation: &str,
    source: &str,
    envelope_ns: &str,
    entry: &mut LoggedRequest,
) -> Result<Result<String, OpFault>, ProtocolFault> {
    let invalid = |text: String| ProtocolFault::dispatcher("DeserializationFailed", text);
    let doc = roxmltree::Document::parse(source)
        .map_err(|e| invalid(format!("The request is not well-formed XML: {e}")))?;
    let element = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name((envelope_ns, "Body")))
        .and_then(|body| body.children().find(roxmltree::Node::is_element))
        .ok_or_else(|| invalid("The body holds no element.".to_owned()))?;
    let alone =
        crate::xmlsec::standalone(source, element).map_err(|e| invalid(format!("{e:#}")))?;
    shared.schemas.validate(&alone).map_err(|e| {
        invalid(format!(
            "The formatter threw an exception while trying to deserialize the message: the \
             {operation} element does not validate against the AR schema: {e:#}"
        ))
    })?;
    Ok(operations::run(shared, account, operation, element, entry))
}

/// The account whose `Authorization: Basic` credentials match.
fn authenticate(shared: &Shared, header: Option<&str>) -> Option<super::ServiceAccount> {
    let encoded = header?.trim().strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    lock(&shared.state)
        .accounts
        .iter()
        .find(|a| a.username == username && a.password == password)
        .cloned()
}

/// Checks the WS-Addressing headers of a SOAP 1.2 request; returns `wsa:Action` and sets the
/// `wsa:MessageID` to answer with.
fn addressing(
    root: roxmltree::Node<'_, '_>,
    content_type: &str,
    relates_to: &mut Option<String>,
) -> Result<String, ProtocolFault> {
    let header = root.children().find(|n| n.has_tag_name((SOAP12, "Header")));
    let get = |name: &str| {
        header
            .and_then(|h| h.children().find(|n| n.has_tag_name((WSA, name))))
            .map(crate::xmlsec::text)
            .filter(|v| !v.is_empty())
    };
    let missing = |name: &str| ProtocolFault {
        subcode: "MessageAddressingHeaderRequired",
        addressing: true,
        text: format!(
            "A required header representing a Message Addressing Property is not present: \
             wsa:{name} (namespace {WSA}) must be in the SOAP 1.2 Header."
        ),
    };
    let message_id = get("MessageID").ok_or_else(|| missing("MessageID"))?;
    *relates_to = Some(message_id);
    let action = get("Action").ok_or_else(|| missing("Action"))?;
    let to = get("To").ok_or_else(|| missing("To"))?;
    if !to.trim_end_matches('/').ends_with(SOAP12_PATH) {
        return Err(ProtocolFault {
            subcode: "DestinationUnreachable",
            addressing: true,
            text: format!(
                "The message with To '{to}' cannot be processed at the receiver: it is not \
                 this endpoint (…{SOAP12_PATH})."
            ),
        });
    }
    if let Some(declared) = content_type_action(content_type)
        && declared != action
    {
        return Err(ProtocolFault::dispatcher(
            "ActionMismatch",
            format!(
                "The action parameter of the content type ({declared}) differs from wsa:Action \
                 ({action})."
            ),
        ));
    }
    Ok(action)
}

/// The `action` parameter of an `application/soap+xml` content type.
fn content_type_action(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("action")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The answer written for `binding`.
fn write(
    binding: Binding,
    operation: &str,
    relates_to: Option<&str>,
    answer: &Answer,
) -> SoapReply {
    let (status, action, body) = match answer {
        Answer::Http(reply) => return reply.clone(),
        Answer::Ok(xml) => (
            200,
            format!("{ACTION_PREFIX}{operation}Response"),
            xml.clone(),
        ),
        Answer::Protocol(fault) => {
            let namespace = if fault.addressing {
                WSA
            } else {
                ns::WCF_DISPATCHER
            };
            let body = fault_element(binding, fault.subcode, namespace, &fault.text, None);
            (500, WSA_FAULT_ACTION.to_owned(), body)
        }
        Answer::Operation(fault) => {
            let body = fault_element(binding, "", "", &fault.reason(), Some(&fault.detail()));
            (
                500,
                format!("{ACTION_PREFIX}{operation}{}Fault", fault.name()),
                body,
            )
        }
    };
    match binding {
        Binding::Basic => SoapReply::xml(
            status,
            format!("<s:Envelope xmlns:s=\"{SOAP11}\"><s:Body>{body}</s:Body></s:Envelope>"),
        ),
        Binding::Soap12 => {
            let relates = relates_to
                .map(|id| format!("<a:RelatesTo>{}</a:RelatesTo>", escape(id)))
                .unwrap_or_default();
            SoapReply {
                status,
                content_type: "application/soap+xml; charset=utf-8",
                body: format!(
                    "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA}\"><s:Header>\
                     <a:Action s:mustUnderstand=\"1\">{}</a:Action>{relates}</s:Header>\
                     <s:Body>{body}</s:Body></s:Envelope>",
                    escape(&action)
                ),
                headers: Vec::new(),
            }
        }
    }
}

/// A `Fault` for `binding`: with a subcode (protocol faults) or as WCF writes a
/// `FaultException<T>` (`s:Client` / `s:Sender`, the detail element).
fn fault_element(
    binding: Binding,
    subcode: &str,
    subcode_ns: &str,
    text: &str,
    detail: Option<&str>,
) -> String {
    let text = escape(text);
    match binding {
        Binding::Basic => {
            let code = if subcode.is_empty() {
                "s:Client".to_owned()
            } else {
                format!("a:{subcode}")
            };
            let declare = if subcode.is_empty() {
                String::new()
            } else {
                format!(" xmlns:a=\"{subcode_ns}\"")
            };
            let detail = detail
                .map(|d| format!("<detail>{d}</detail>"))
                .unwrap_or_default();
            format!(
                "<s:Fault{declare}><faultcode>{code}</faultcode><faultstring xml:lang=\"en-US\">{text}</faultstring>{detail}</s:Fault>"
            )
        }
        Binding::Soap12 => {
            let sub = if subcode.is_empty() {
                String::new()
            } else {
                format!(
                    "<s:Subcode><s:Value xmlns:d=\"{subcode_ns}\">d:{subcode}</s:Value></s:Subcode>"
                )
            };
            let detail = detail
                .map(|d| format!("<s:Detail>{d}</s:Detail>"))
                .unwrap_or_default();
            format!(
                "<s:Fault><s:Code><s:Value>s:Sender</s:Value>{sub}</s:Code><s:Reason><s:Text xml:lang=\"en-US\">{text}</s:Text></s:Reason>{detail}</s:Fault>"
            )
        }
    }
}
