//! The NHN Adresseregisteret (AR) SOAP client: the operations certvakt uses (brief no-nhn.md
//! §2.2), in either binding, with HTTP Basic authentication by the service account.
//!
//! Contract:
//! - [`Binding::Basic`]: SOAP 1.1 envelope, `Content-Type: text/xml; charset=utf-8` and a quoted
//!   `SOAPAction`. [`Binding::Soap12`]: SOAP 1.2 envelope with `wsa:Action`, `wsa:MessageID`
//!   (`urn:uuid:`, random) and `wsa:To` (WS-Addressing 1.0), `Content-Type:
//!   application/soap+xml; charset=utf-8; action="…"`. The action is
//!   `http://register.nhn.no/CommunicationParty/ICommunicationPartyService/<Operation>`.
//! - Answers are read in either envelope namespace. What comes back becomes:
//!   - a `GenericFault` or `ValidationFault` (`http://register.nhn.no/Common`), whatever the
//!     HTTP status (WCF sends faults with 500): a permanent error naming the HER-id, the
//!     operation and AR's message, the fault's `ErrorCode` (or `ValidationFault`) as
//!     fault code; any other SOAP fault likewise, with its reason;
//!   - HTTP 401: a configuration error: the service account's name or password is wrong;
//!     HTTP 403: the account may not do this (a person asks NHN);
//!   - no answer, or 5xx / 429 without a fault: temporary ("AR is not answering; nothing was
//!     changed");
//!   - anything else that is not the operation's answer: a permanent error quoting its start.
//! - The password is read through the host once per client and only ever sent in the
//!   `Authorization` header; it is never logged or put in an error.
//! - Addresses are carried as AR wrote them ([`Element`]), so a read-modify-write copies every
//!   member (and its order) unchanged; [`update_body`] writes `OrganizationUpdate` /
//!   `ServiceUpdate` members in the schema's alphabetical order (WCF silently drops members
//!   out of order, §2.3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certvakt_plugin_api::{Host, HttpRequest, PluginError};
use certvakt_soap::call::snippet;
use certvakt_soap::ns;
use certvakt_soap::write::XmlWriter;
use roxmltree::{Document, Node};

use crate::settings::{Binding, Level, Settings};

/// The operations' namespace.
pub const CP: &str = "http://register.nhn.no/CommunicationParty";
/// Shared types: addresses, codes, faults.
pub const COMMON: &str = "http://register.nhn.no/Common";
/// `CertificateDetails`.
pub const CERT_DETAILS: &str = "http://register.nhn.no/CertificateDetails";
/// `CertificateSearchResult`, `LdapSearchProvider`.
pub const SEARCH_RESULT: &str = "http://register.nhn.no/CertificateSearchResult";
/// SOAP 1.2 envelope.
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// The address type of a certificate (LDAP URL) address.
pub const E_DS: &str = "E_DS";

/// `SOAPAction` / `wsa:Action` of `operation`.
pub fn action(operation: &str) -> String {
    format!("{CP}/ICommunicationPartyService/{operation}")
}

/// One element in the `Common` namespace as AR wrote it: name, `i:nil`, text, children in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub nil: bool,
    pub text: Option<String>,
    pub children: Vec<Element>,
}

impl Element {
    /// `node` and what is under it (elements only; text trimmed).
    pub fn from_node(node: Node<'_, '_>) -> Element {
        let children: Vec<Element> = node
            .children()
            .filter(Node::is_element)
            .map(Element::from_node)
            .collect();
        let text = if children.is_empty() {
            node.text().map(|t| t.trim().to_owned())
        } else {
            None
        };
        Element {
            name: node.tag_name().name().to_owned(),
            nil: node.attribute((ns::XSI, "nil")) == Some("true"),
            text,
            children,
        }
    }

    /// A leaf with text.
    pub fn leaf(name: &str, text: &str) -> Element {
        Element {
            name: name.to_owned(),
            nil: false,
            text: Some(text.to_owned()),
            children: Vec::new(),
        }
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).and_then(|c| c.text.as_deref())
    }

    /// Writes it with the `c:` prefix (the `Common` namespace).
    pub fn write(&self, w: &mut XmlWriter) {
        let name = format!("c:{}", self.name);
        let nil = [("i:nil", "true")];
        let attrs: &[(&str, &str)] = if self.nil { &nil } else { &[] };
        if !self.children.is_empty() {
            w.element(&name, attrs, |w| {
                for child in &self.children {
                    child.write(w);
                }
            });
        } else if let Some(text) = &self.text {
            w.text_element(&name, attrs, text);
        } else {
            w.empty(&name, attrs);
        }
    }
}

/// An electronic address (current or future), as AR listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub element: Element,
}

impl Address {
    pub fn address(&self) -> &str {
        self.element.child_text("Address").unwrap_or_default()
    }

    /// `TypeCodeValue`, or the `Type` code's `CodeValue`.
    pub fn type_code(&self) -> &str {
        self.element
            .child_text("TypeCodeValue")
            .or_else(|| {
                self.element
                    .child("Type")
                    .and_then(|t| t.child_text("CodeValue"))
            })
            .unwrap_or_default()
    }

    pub fn inherited(&self) -> bool {
        self.element.child_text("Inherited") == Some("true")
    }

    pub fn valid_from(&self) -> Option<&str> {
        self.element.child_text("ValidFrom")
    }

    pub fn is_certificate(&self) -> bool {
        self.type_code() == E_DS
    }

    /// A new `E_DS` address for `url`: `Address`, the full `Type` code (AR's own, when an
    /// `E_DS` address shows it, else the code AR uses), `TypeCodeValue`, and `ValidFrom` for a
    /// future one. In the schema's order.
    pub fn certificate(url: &str, type_code: Option<&Element>, valid_from: Option<&str>) -> Self {
        let type_code = type_code.cloned().unwrap_or_else(|| Element {
            name: "Type".into(),
            nil: false,
            text: None,
            children: vec![
                Element::leaf("Active", "true"),
                Element::leaf("CodeText", "Digital sertifikat"),
                Element::leaf("CodeValue", E_DS),
                Element::leaf("OID", "9044"),
                Element::leaf("SimpleType", "type_adressekomponeneter"),
            ],
        });
        let mut children = vec![Element::leaf("Address", url), type_code];
        children.push(Element::leaf("TypeCodeValue", E_DS));
        let name = match valid_from {
            Some(at) => {
                children.push(Element::leaf("ValidFrom", at));
                "FutureElectronicAddress"
            }
            None => "ElectronicAddress",
        };
        Address {
            element: Element {
                name: name.into(),
                nil: false,
                text: None,
                children,
            },
        }
    }

    /// The same address as a current one (`ValidFrom` dropped).
    pub fn as_current(&self) -> Address {
        let mut element = self.element.clone();
        element.name = "ElectronicAddress".into();
        element.children.retain(|c| c.name != "ValidFrom");
        Address { element }
    }
}

/// A communication party (organisation or service) as `GetCommunicationPartyDetails` gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub her_id: u32,
    pub electronic: Vec<Address>,
    pub future: Vec<Address>,
    /// `PhysicalAddresses`' entries, copied unchanged into an update.
    pub physical: Vec<Element>,
}

impl Party {
    /// The party's own (not inherited) current `E_DS` address.
    pub fn current_certificate(&self) -> Option<&Address> {
        self.electronic
            .iter()
            .find(|a| a.is_certificate() && !a.inherited())
    }

    /// Any current `E_DS` address, inherited or not.
    pub fn any_certificate(&self) -> Option<&Address> {
        self.electronic.iter().find(|a| a.is_certificate())
    }

    pub fn future_certificate(&self, url: &str) -> Option<&Address> {
        self.future
            .iter()
            .find(|a| a.is_certificate() && a.address() == url)
    }
}

/// One certificate `SearchCertificatesByLdapUrl` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub serial: String,
    pub encryption: bool,
    pub signing: bool,
}

/// What `SearchCertificatesByLdapUrl` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    pub actual_url: Option<String>,
    pub candidates: Vec<Candidate>,
}

/// Which certificate `GetCertificateDetailsFor…` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Encryption,
    ValidatingSignature,
}

impl Purpose {
    pub fn operation(self) -> &'static str {
        match self {
            Purpose::Encryption => "GetCertificateDetailsForEncryption",
            Purpose::ValidatingSignature => "GetCertificateDetailsForValidatingSignature",
        }
    }
}

/// What `GetCertificateDetailsFor…` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub certificate_der: Option<Vec<u8>>,
    pub ldap_url: Option<String>,
}

/// An LDAP search provider AR knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub base_url: String,
    pub display_name: String,
}

/// An AR session for one plugin call.
#[derive(Debug)]
pub struct Ar<'h, 'a> {
    host: &'h Host<'a>,
    settings: &'h Settings,
    authorization: Option<String>,
}

impl<'h, 'a> Ar<'h, 'a> {
    pub fn new(host: &'h Host<'a>, settings: &'h Settings) -> Self {
        Ar {
            host,
            settings,
            authorization: None,
        }
    }

    /// `GetCommunicationPartyDetails` for `her_id`.
    pub fn details(&mut self, her_id: u32) -> Result<Party, PluginError> {
        let operation = "GetCommunicationPartyDetails";
        let body = simple_body(operation, &[("herId", &her_id.to_string())])?;
        let text = self.call(operation, &body, Some(her_id))?;
        read_answer(&text, operation, Some(her_id), |result| {
            parse_party(result, her_id)
        })
    }

    /// `SearchCertificatesByLdapUrl` for `url`.
    pub fn search(&mut self, url: &str, her_id: u32) -> Result<SearchResult, PluginError> {
        let operation = "SearchCertificatesByLdapUrl";
        let body = simple_body(operation, &[("ldapUrl", url)])?;
        let text = self.call(operation, &body, Some(her_id))?;
        read_answer(&text, operation, Some(her_id), |result| {
            let candidates = find_all(result, SEARCH_RESULT, "CertificateCandidate")
                .map(|c| Candidate {
                    serial: text_of(c, SEARCH_RESULT, "CertificateSerialNumber")
                        .unwrap_or_default(),
                    encryption: text_of(c, SEARCH_RESULT, "ValidForEncryption").as_deref()
                        == Some("true"),
                    signing: text_of(c, SEARCH_RESULT, "ValidForSigning").as_deref()
                        == Some("true"),
                })
                .collect();
            Ok(SearchResult {
                actual_url: text_of(result, SEARCH_RESULT, "ActualLdapUrl"),
                candidates,
            })
        })
    }

    /// `GetLdapSearchProviders`.
    pub fn providers(&mut self) -> Result<Vec<Provider>, PluginError> {
        let operation = "GetLdapSearchProviders";
        let body = simple_body(operation, &[])?;
        let text = self.call(operation, &body, None)?;
        read_answer(&text, operation, None, |result| {
            Ok(find_all(result, SEARCH_RESULT, "LdapSearchProvider")
                .map(|p| Provider {
                    base_url: text_of(p, SEARCH_RESULT, "BaseUrl").unwrap_or_default(),
                    display_name: text_of(p, SEARCH_RESULT, "DisplayName").unwrap_or_default(),
                })
                .collect())
        })
    }

    /// `GetCertificateDetailsForEncryption` / `…ForValidatingSignature` for `her_id`.
    pub fn certificate(&mut self, her_id: u32, purpose: Purpose) -> Result<Details, PluginError> {
        let operation = purpose.operation();
        let body = simple_body(operation, &[("herId", &her_id.to_string())])?;
        let text = self.call(operation, &body, Some(her_id))?;
        read_answer(&text, operation, Some(her_id), |result| {
            let certificate_der = match text_of(result, CERT_DETAILS, "Certificate") {
                Some(b64) => {
                    let compact: String = b64.split_whitespace().collect();
                    Some(
                        STANDARD
                            .decode(compact.as_bytes())
                            .map_err(|e| format!("its Certificate is not base64 ({e})"))?,
                    )
                }
                None => None,
            };
            Ok(Details {
                certificate_der,
                ldap_url: text_of(result, CERT_DETAILS, "LdapUrl"),
            })
        })
    }

    /// `UpdateOrganizationDetails` / `UpdateServiceDetails` with the given addresses.
    pub fn update(&mut self, level: Level, party: &Party) -> Result<(), PluginError> {
        let operation = match level {
            Level::Organization => "UpdateOrganizationDetails",
            Level::Service => "UpdateServiceDetails",
        };
        let body = update_body(level, party).map_err(PluginError::permanent)?;
        self.call(operation, &body, Some(party.her_id))?;
        Ok(())
    }

    fn authorization(&mut self) -> Result<String, PluginError> {
        if let Some(value) = &self.authorization {
            return Ok(value.clone());
        }
        let path = &self.settings.password_file;
        let bytes = self.host.read_secret(path).map_err(|e| {
            PluginError::configuration(format!(
                "cannot read the NHN service account's password from password_file {path}: {}",
                e.message
            ))
        })?;
        let password = String::from_utf8(bytes).map_err(|_| {
            PluginError::configuration(format!(
                "password_file {path} is not UTF-8 text; write the service account's password \
                 alone in it"
            ))
        })?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(PluginError::configuration(format!(
                "password_file {path} is empty; write the service account's password in it"
            )));
        }
        let value = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{password}", self.settings.username))
        );
        self.authorization = Some(value.clone());
        Ok(value)
    }

    /// Sends one operation; the answer's text, or the error it means.
    fn call(
        &mut self,
        operation: &str,
        body: &str,
        her_id: Option<u32>,
    ) -> Result<String, PluginError> {
        let authorization = self.authorization()?;
        let url = &self.settings.ar_endpoint;
        let action = action(operation);
        let (envelope, content_type, soap_action) = match self.settings.binding {
            Binding::Basic => (
                envelope11(body)?,
                "text/xml; charset=utf-8".to_owned(),
                Some(format!("\"{action}\"")),
            ),
            Binding::Soap12 => (
                envelope12(body, &action, url, &uuid_v4()?)?,
                format!("application/soap+xml; charset=utf-8; action=\"{action}\""),
                None,
            ),
        };
        let mut request = HttpRequest::post(url.as_str(), envelope.into_bytes())
            .header("Content-Type", content_type)
            .header("Authorization", authorization)
            .timeout_ms(60_000);
        if let Some(soap_action) = soap_action {
            request = request.header("SOAPAction", soap_action);
        }
        if let Some(trust) = &self.settings.ar_trust {
            request = request.trust(trust.as_str());
        }
        let whom = whom(operation, her_id);
        let response = self.host.http(request).map_err(|e| {
            PluginError::temporary(format!(
                "AR is not answering {whom} at {url} ({}); nothing was changed, and certvakt \
                 reads AR again before it writes anything",
                e.message
            ))
        })?;
        let status = response.status;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        if let Some(fault) = read_fault(&text) {
            return Err(fault.into_error(operation, her_id));
        }
        match status {
            200..=299 => Ok(text),
            401 => Err(PluginError::configuration(format!(
                "AR refused the NHN service account (tjenestekonto) \"{}\" (HTTP 401) {whom}: \
                 its name or password is wrong. Check username and the password in \
                 password_file",
                self.settings.username
            ))
            .with_fault_code("http_401")),
            403 => Err(PluginError::needs_person(format!(
                "AR does not let the NHN service account \"{}\" do this (HTTP 403) {whom}: ask \
                 NHN to give the account the right to update the organisation's addresses",
                self.settings.username
            ))
            .with_fault_code("http_403")),
            429 | 500..=599 => Err(PluginError::temporary(format!(
                "AR is not answering {whom} (HTTP {status}); nothing was changed, and certvakt \
                 tries again later"
            ))),
            _ => Err(PluginError::permanent(format!(
                "AR answered HTTP {status} {whom}: {}",
                snippet(&text)
            ))),
        }
    }
}

fn whom(operation: &str, her_id: Option<u32>) -> String {
    match her_id {
        Some(id) => format!("to {operation} for HER-id {id}"),
        None => format!("to {operation}"),
    }
}

/// A fault AR sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArFault {
    /// `GenericFault`'s `ErrorCode`, or `ValidationFault`, or the SOAP fault code.
    pub code: String,
    pub message: String,
}

impl ArFault {
    pub fn into_error(self, operation: &str, her_id: Option<u32>) -> PluginError {
        let target = her_id
            .map(|id| format!(" for HER-id {id}"))
            .unwrap_or_default();
        PluginError::permanent(format!(
            "AR refused {operation}{target}: {}. Nothing more was written; correct what AR \
             names (or ask NHN), then `certvakt renew <id>` tries again",
            self.message
        ))
        .with_fault_code(self.code)
    }
}

/// The fault in `text`, if it is a SOAP 1.1 or 1.2 envelope holding one.
pub fn read_fault(text: &str) -> Option<ArFault> {
    let doc = Document::parse(text).ok()?;
    let body = envelope_body(&doc).ok()?;
    let fault = body
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "Fault")?;
    if let Some(generic) = find(fault, COMMON, "GenericFault") {
        let code = text_of(generic, COMMON, "ErrorCode").unwrap_or_else(|| "GenericFault".into());
        let message = text_of(generic, COMMON, "Message").unwrap_or_default();
        return Some(ArFault {
            message: format!("{message} (GenericFault {code})"),
            code,
        });
    }
    if let Some(validation) = find(fault, COMMON, "ValidationFault") {
        let errors: Vec<String> = find_all(validation, COMMON, "ValidationError")
            .map(|e| {
                let property = text_of(e, COMMON, "PropertyName")
                    .or_else(|| text_of(e, COMMON, "DisplayName"))
                    .unwrap_or_else(|| "?".into());
                let message = text_of(e, COMMON, "Message").unwrap_or_default();
                match text_of(e, COMMON, "Value") {
                    Some(value) => format!("{property}: {message} (value \"{value}\")"),
                    None => format!("{property}: {message}"),
                }
            })
            .collect();
        return Some(ArFault {
            code: "ValidationFault".into(),
            message: format!("ValidationFault: {}", errors.join("; ")),
        });
    }
    // A plain SOAP fault: 1.1 faultstring, or 1.2 Reason/Text.
    let reason = fault
        .descendants()
        .find(|d| d.is_element() && matches!(d.tag_name().name(), "faultstring" | "Text"))
        .and_then(|d| d.text())
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| "a SOAP fault without a reason".into());
    Some(ArFault {
        code: "SoapFault".into(),
        message: reason,
    })
}

/// The `Body` of a SOAP 1.1 or 1.2 envelope.
pub fn envelope_body<'a, 'i>(doc: &'a Document<'i>) -> Result<Node<'a, 'i>, String> {
    let envelope = doc.root_element();
    let soap = [ns::SOAP11, SOAP12]
        .into_iter()
        .find(|n| envelope.has_tag_name((*n, "Envelope")))
        .ok_or_else(|| {
            format!(
                "not a SOAP envelope (the root element is {})",
                envelope.tag_name().name()
            )
        })?;
    envelope
        .children()
        .find(|c| c.is_element() && c.has_tag_name((soap, "Body")))
        .ok_or_else(|| "the envelope has no Body".to_owned())
}

/// Reads `<operation>Result` in the answer `text` with `read`.
fn read_answer<T>(
    text: &str,
    operation: &str,
    her_id: Option<u32>,
    read: impl FnOnce(Node<'_, '_>) -> Result<T, String>,
) -> Result<T, PluginError> {
    let fail = |why: String| {
        PluginError::permanent(format!(
            "AR's answer {} is not what the 2025 WSDL describes: {why}: {}",
            whom(operation, her_id),
            snippet(text)
        ))
    };
    let doc = Document::parse(text).map_err(|e| fail(format!("not XML ({e})")))?;
    let body = envelope_body(&doc).map_err(fail)?;
    let response = format!("{operation}Response");
    let result = format!("{operation}Result");
    let answer = body
        .children()
        .find(|c| c.is_element() && c.has_tag_name((CP, response.as_str())))
        .ok_or_else(|| fail(format!("no {response}")))?;
    let result = answer
        .children()
        .find(|c| c.is_element() && c.has_tag_name((CP, result.as_str())))
        .ok_or_else(|| fail(format!("no {result}")))?;
    read(result).map_err(fail)
}

fn parse_party(result: Node<'_, '_>, her_id: u32) -> Result<Party, String> {
    let listed = text_of(result, CP, "HerId");
    if listed.as_deref() != Some(her_id.to_string().as_str()) {
        return Err(format!(
            "it describes HER-id {}, not {her_id}",
            listed.unwrap_or_else(|| "(none)".into())
        ));
    }
    let list = |name: &str, item: &str| -> Vec<Element> {
        result
            .children()
            .find(|c| c.is_element() && c.has_tag_name((CP, name)))
            .map(|l| {
                l.children()
                    .filter(|c| c.is_element() && c.has_tag_name((COMMON, item)))
                    .map(Element::from_node)
                    .collect()
            })
            .unwrap_or_default()
    };
    let addresses = |name: &str, item: &str| -> Vec<Address> {
        list(name, item)
            .into_iter()
            .map(|element| Address { element })
            .collect()
    };
    Ok(Party {
        her_id,
        electronic: addresses("ElectronicAddresses", "ElectronicAddress"),
        future: addresses("FutureElectronicAddresses", "FutureElectronicAddress"),
        physical: list("PhysicalAddresses", "PhysicalAddress"),
    })
}

/// The body of an `Update…Details` request for `party`: its own current addresses, its
/// future addresses, `HerId`, and its own physical addresses, in the schema's order.
/// Inherited addresses (a service's view of its organisation's) are not the party's own and
/// are not written.
pub fn update_body(level: Level, party: &Party) -> Result<String, String> {
    let (operation, parameter) = match level {
        Level::Organization => ("UpdateOrganizationDetails", "org"),
        Level::Service => ("UpdateServiceDetails", "t"),
    };
    let own = |e: &&Element| e.child_text("Inherited") != Some("true");
    let mut w = XmlWriter::new();
    w.element(
        operation,
        &[("xmlns", CP), ("xmlns:c", COMMON), ("xmlns:i", ns::XSI)],
        |w| {
            w.element(parameter, &[], |w| {
                // OrganizationUpdate: BusinessType, DisplayName, ElectronicAddresses,
                // FutureElectronicAddresses, HerId, PhysicalAddresses, Valid. ServiceUpdate:
                // Description, ElectronicAddresses, FutureElectronicAddresses, HerId,
                // LocationDescription, PhysicalAddresses, … The members written here come in
                // the same order in both.
                w.element("ElectronicAddresses", &[], |w| {
                    for address in party.electronic.iter().map(|a| &a.element).filter(own) {
                        address.write(w);
                    }
                });
                w.element("FutureElectronicAddresses", &[], |w| {
                    for address in party.future.iter().map(|a| &a.element).filter(own) {
                        address.write(w);
                    }
                });
                w.text_element("HerId", &[], &party.her_id.to_string());
                let physical: Vec<&Element> = party.physical.iter().filter(own).collect();
                if !physical.is_empty() {
                    w.element("PhysicalAddresses", &[], |w| {
                        for address in physical {
                            address.write(w);
                        }
                    });
                }
            });
        },
    );
    w.finish()
}

/// `<operation xmlns=CP><name>value</name>…</operation>`.
fn simple_body(operation: &str, parameters: &[(&str, &str)]) -> Result<String, PluginError> {
    let mut w = XmlWriter::new();
    w.element(operation, &[("xmlns", CP)], |w| {
        for (name, value) in parameters {
            w.text_element(name, &[], value);
        }
    });
    w.finish().map_err(PluginError::permanent)
}

fn envelope11(body: &str) -> Result<String, PluginError> {
    let mut w = XmlWriter::new();
    w.element("s:Envelope", &[("xmlns:s", ns::SOAP11)], |w| {
        w.element("s:Body", &[], |w| {
            w.raw(body);
        });
    });
    w.finish().map_err(PluginError::permanent)
}

fn envelope12(body: &str, action: &str, to: &str, uuid: &str) -> Result<String, PluginError> {
    let mut w = XmlWriter::new();
    w.element(
        "s:Envelope",
        &[("xmlns:s", SOAP12), ("xmlns:a", ns::WSA_10)],
        |w| {
            w.element("s:Header", &[], |w| {
                w.text_element("a:Action", &[("s:mustUnderstand", "1")], action);
                w.text_element("a:MessageID", &[], &format!("urn:uuid:{uuid}"));
                w.text_element("a:To", &[("s:mustUnderstand", "1")], to);
            });
            w.element("s:Body", &[], |w| {
                w.raw(body);
            });
        },
    );
    w.finish().map_err(PluginError::permanent)
}

/// A random (version 4) UUID.
pub(crate) fn uuid_v4() -> Result<String, PluginError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        PluginError::temporary(format!("the system's random number generator failed: {e}"))
    })?;
    // The crate sets the version (4) and variant bits over the random bytes.
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string())
}

fn find<'a, 'i>(node: Node<'a, 'i>, ns: &str, local: &str) -> Option<Node<'a, 'i>> {
    node.descendants()
        .find(|d| d.is_element() && d.has_tag_name((ns, local)))
}

fn find_all<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a
where
    'i: 'a,
{
    node.descendants()
        .filter(move |d| d.is_element() && d.has_tag_name((ns, local)))
}

/// The trimmed text of the first `{ns}local` under `node`, unless empty or `i:nil`.
fn text_of(node: Node<'_, '_>, ns: &str, local: &str) -> Option<String> {
    let found = find(node, ns, local)?;
    if found.attribute((ns::XSI, "nil")) == Some("true") {
        return None;
    }
    found
        .text()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}
