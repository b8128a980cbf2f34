//! An eFrikort (CGI) RIV-TA endpoint: two-way TLS with SITHS function certificates, SOAP 1.1
//! per the real contract, and access granted per HSA-ID after an e-mailed request: what
//! certvakt's `se-efrikort` plugin verifies a renewed certificate against.
//!
//! Owns: [`EfrikortSim`] (two servers: TEST and PRODUKTION), [`EfrikortConfig`],
//! [`Environment`], [`Grant`], [`Region`], the request log ([`EfrikortRequest`],
//! [`Outcome`]) and the access-request approval ([`EfrikortSim::approve_access_request`]).
//!
//! Promises (`shared/protocols/se-efrikort.md` §2, §3, §6; the contract under
//! `reference/se-efrikort/`):
//! - Each environment is its own HTTPS server on loopback ([`EfrikortSim::url`]) with the
//!   real path `/efrikortService/GetExtendedCardForPerson/1/rivtabp21`. Both require a client
//!   certificate chaining to [`EfrikortConfig::client_roots`] (the SITHS test root): without
//!   one, or with another, the TLS handshake fails and nothing is logged.
//! - `GET <path>?wsdl` answers 200 with the contract's WSDL for any caller that passed the
//!   handshake (with or without an HSA-ID). Other paths → 404; other methods → 405.
//! - A `POST` is checked in this order; every refusal before step 6 is a SOAP 1.1 fault
//!   (technical error, HTTP 500, `faultcode` `soap:Client`):
//!   1. the caller's HSA-ID, the client certificate's subject `serialNumber` (2.5.4.5);
//!      none → fault, as the NTjP platform's VP002;
//!   2. `Content-Type` `text/xml` (else HTTP 415, no SOAP);
//!   3. `SOAPAction` = `urn:riv:cgi:healthcare:efrikort:GetExtendedCardForPersonResponder:3:GetExtendedCardForPerson`
//!      (quotes allowed);
//!   4. a SOAP 1.1 envelope with the `LogicalAddress` header (`urn:riv:itintegration:registry:1`;
//!      its value is logged, not used: eFrikort does not route on it);
//!   5. the body element `GetExtendedCardForPerson` validates against the real responder
//!      schema with `xmllint` (the fault carries xmllint's message);
//!   6. authorisation: a [`Grant`] for (HSA-ID, `carePrincipalId`, environment). Without one
//!      the answer is the normal response with `result/resultCode` = `ACCESSDENIED` (the
//!      contract's business result, HTTP 200, no fault); with one, `OK`, and for
//!      [`EfrikortConfig::probe_person_id`] an `extendedCard` (below the frikort limit).
//!      Every answer validates against the responder schema.
//! - [`EfrikortSim::requests`] logs every request that got past the handshake: environment,
//!   operation, caller HSA-ID, logical address, principal, person and [`Outcome`].
//! - [`EfrikortSim::approve_access_request`] plays the region and CGI for one mail from the
//!   SMTP sink: it accepts only the subject `Anslutningsförfrågan eFrikort`, recipients that
//!   include `support.efrikort@cgi.com` and the region's contact address, all five fields of
//!   the template with their Swedish labels (`Namn på integrerande system`, `Kontaktperson`,
//!   `Avser miljö för`, `Avser vårdhuvudman …`, `Serialnumber på certifikat`), an environment
//!   of `TEST` or `PRODUKTION`, a configured [`Region`], and (when given the SITHS CA) an
//!   HSA-ID that CA issued. A PRODUKTION request needs a TEST grant for the same HSA-ID
//!   first (the TEST-first rule). [`EfrikortSim::grant`] is the direct knob and checks
//!   nothing.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result, anyhow, bail, ensure};
use quick_xml::escape::escape;

use crate::siths::SithsCa;
use crate::smtp::ReceivedMail;
use crate::soapd::{Fault, Handler, ServerIdentity, SoapReply, SoapRequest, SoapServer};
use crate::xmlsec;

/// The contract's path (production: `https://ws.efrikort.cgi.se/efrikortService/…`).
pub const CONTRACT_PATH: &str = "/efrikortService/GetExtendedCardForPerson/1/rivtabp21";
/// The operation served.
pub const OPERATION: &str = "GetExtendedCardForPerson";
/// Its `SOAPAction`, from the WSDL.
pub const SOAP_ACTION: &str =
    "urn:riv:cgi:healthcare:efrikort:GetExtendedCardForPersonResponder:3:GetExtendedCardForPerson";
/// The subject line of an access request.
pub const ACCESS_REQUEST_SUBJECT: &str = "Anslutningsförfrågan eFrikort";
/// CGI's support address, copied on every access request.
pub const CGI_SUPPORT: &str = "support.efrikort@cgi.com";

/// Namespaces of the wire format.
pub mod ns {
    pub const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    /// The `LogicalAddress` header.
    pub const REGISTRY: &str = "urn:riv:itintegration:registry:1";
    /// Request and response elements.
    pub const RESPONDER: &str =
        "urn:riv:cgi:healthcare:efrikort:GetExtendedCardForPersonResponder:3";
    /// Core types (`result`, `extendedCard`, …).
    pub const CORE: &str = "urn:riv:cgi:healthcare:efrikort:3";
}

const RESPONDER_XSD: &str =
    "interactions/GetExtendedCardForPersonInteraction/GetExtendedCardForPersonResponder_3.0.xsd";
const WSDL: &str = "interactions/GetExtendedCardForPersonInteraction/GetExtendedCardForPersonInteraction_3.0_RIVTABP21.wsdl";

/// An eFrikort environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Environment {
    Test,
    Produktion,
}

impl Environment {
    /// `TEST` or `PRODUKTION`, as the access-request mail writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "TEST",
            Environment::Produktion => "PRODUKTION",
        }
    }

    /// Reads `TEST` or `PRODUKTION` (any case, surrounding space ignored).
    pub fn parse(text: &str) -> Result<Environment> {
        match text.trim().to_ascii_uppercase().as_str() {
            "TEST" => Ok(Environment::Test),
            "PRODUKTION" => Ok(Environment::Produktion),
            other => bail!("{other:?} is not an eFrikort environment (TEST or PRODUKTION)"),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Access for one system (HSA-ID) to one principal's data in one environment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub hsa_id: String,
    /// The vårdhuvudman's HSA-ID (`carePrincipalId`).
    pub principal: String,
    pub environment: Environment,
}

/// A region (vårdhuvudman) as the approval flow knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// As written in the mail's `Avser vårdhuvudman` field (e.g. `Region Stockholm`).
    pub name: String,
    /// The principal HSA-ID (e.g. `SE2321000016-39KJ`).
    pub principal_hsa_id: String,
    /// The contact address the request must be sent to.
    pub contact: String,
}

impl Region {
    pub fn new(name: &str, principal_hsa_id: &str, contact: &str) -> Region {
        Region {
            name: name.to_owned(),
            principal_hsa_id: principal_hsa_id.to_owned(),
            contact: contact.to_owned(),
        }
    }
}

/// How an [`EfrikortSim`] starts.
#[derive(Debug, Clone)]
pub struct EfrikortConfig {
    /// Client certificate roots, DER (the SITHS test root: [`SithsCa::root_der`]).
    pub client_roots: Vec<Vec<u8>>,
    /// Regions for [`EfrikortSim::approve_access_request`].
    pub regions: Vec<Region>,
    /// The personal identity number that has a frikort (default `191212121212`, the
    /// Skatteverket test person).
    pub probe_person_id: String,
    /// The contract schemas. Default:
    /// `<crate>/../../shared/protocols/reference/se-efrikort/schemas`.
    pub schemas: Option<PathBuf>,
}

impl EfrikortConfig {
    /// Clients must chain to `siths`'s root; no regions.
    pub fn for_siths(siths: &SithsCa) -> EfrikortConfig {
        EfrikortConfig {
            client_roots: vec![siths.root_der()],
            regions: Vec::new(),
            probe_person_id: "191212121212".to_owned(),
            schemas: None,
        }
    }
}

/// What a request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `resultCode` OK.
    Ok,
    /// `resultCode` ACCESSDENIED.
    AccessDenied,
    /// The WSDL was served.
    Wsdl,
    /// A SOAP fault with this `faultstring`.
    Fault(String),
    /// A plain HTTP refusal (404, 405, 415) with this text.
    Http(u16, String),
}

/// One request past the TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfrikortRequest {
    pub environment: Environment,
    pub method: String,
    pub path: String,
    /// `GetExtendedCardForPerson` once the SOAPAction named it.
    pub operation: Option<String>,
    /// The client certificate's subject `serialNumber`.
    pub caller_hsa_id: Option<String>,
    pub logical_address: Option<String>,
    pub care_principal_id: Option<String>,
    pub person_id: Option<String>,
    pub outcome: Outcome,
}

struct State {
    grants: Vec<Grant>,
    log: Vec<EfrikortRequest>,
}

struct Shared {
    schemas: PathBuf,
    wsdl: String,
    probe_person_id: String,
    regions: Vec<Region>,
    state: Mutex<State>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running endpoint: one server per environment. Dropping it stops both.
pub struct EfrikortSim {
    shared: Arc<Shared>,
    identity: ServerIdentity,
    test: SoapServer,
    produktion: SoapServer,
}

impl fmt::Debug for EfrikortSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EfrikortSim")
            .field("test", &self.test.base_url())
            .field("produktion", &self.produktion.base_url())
            .finish_non_exhaustive()
    }
}

impl EfrikortSim {
    /// Starts both environments on free loopback ports.
    pub fn start(config: EfrikortConfig) -> Result<EfrikortSim> {
        xmlsec::require_tools()?;
        ensure!(
            !config.client_roots.is_empty(),
            "the eFrikort simulator needs client roots (the SITHS test root) for two-way TLS"
        );
        let schemas = config.schemas.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/protocols/reference/se-efrikort/schemas")
        });
        let wsdl = std::fs::read_to_string(schemas.join(WSDL)).with_context(|| {
            format!(
                "the eFrikort WSDL is not under {} (expected shared/protocols/reference/\
                 se-efrikort/schemas beside the repository; set EfrikortConfig::schemas)",
                schemas.display()
            )
        })?;
        let shared = Arc::new(Shared {
            schemas,
            wsdl,
            probe_person_id: config.probe_person_id.clone(),
            regions: config.regions.clone(),
            state: Mutex::new(State {
                grants: Vec::new(),
                log: Vec::new(),
            }),
        });
        let identity = ServerIdentity::loopback()?;
        let server = |environment: Environment| -> Result<SoapServer> {
            let serving = Arc::clone(&shared);
            let handler: Handler = Arc::new(move |request| serving.handle(environment, request));
            SoapServer::start(
                &format!("efrikort-{}", environment.as_str().to_ascii_lowercase()),
                &identity,
                &config.client_roots,
                handler,
            )
        };
        let test = server(Environment::Test)?;
        let produktion = server(Environment::Produktion)?;
        Ok(EfrikortSim {
            shared,
            identity,
            test,
            produktion,
        })
    }

    /// `https://127.0.0.1:PORT/efrikortService/GetExtendedCardForPerson/1/rivtabp21` of
    /// `environment`.
    pub fn url(&self, environment: Environment) -> String {
        let server = match environment {
            Environment::Test => &self.test,
            Environment::Produktion => &self.produktion,
        };
        format!("{}{CONTRACT_PATH}", server.base_url())
    }

    /// The root of the servers' TLS certificate, PEM (the trust store for eFrikort).
    pub fn server_root_pem(&self) -> String {
        self.identity.ca.root_pem()
    }

    /// Grants `hsa_id` access to `principal`'s data in `environment` (no checks; idempotent).
    pub fn grant(&self, hsa_id: &str, principal: &str, environment: Environment) {
        let grant = Grant {
            hsa_id: hsa_id.to_owned(),
            principal: principal.to_owned(),
            environment,
        };
        let mut state = lock(&self.shared.state);
        if !state.grants.contains(&grant) {
            state.grants.push(grant);
        }
    }

    /// Every grant, in the order given.
    pub fn grants(&self) -> Vec<Grant> {
        lock(&self.shared.state).grants.clone()
    }

    /// Every request past the TLS handshake, oldest first.
    pub fn requests(&self) -> Vec<EfrikortRequest> {
        lock(&self.shared.state).log.clone()
    }

    /// Approves an access-request mail as the region and CGI would, and grants it (see the
    /// module docs for what is checked). With `issuer`, the HSA-ID must be one it issued.
    pub fn approve_access_request(
        &self,
        mail: &ReceivedMail,
        issuer: Option<&SithsCa>,
    ) -> Result<Grant> {
        let request = AccessRequest::read(mail)?;
        let region = self
            .shared
            .regions
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(&request.region))
            .ok_or_else(|| {
                anyhow!(
                    "the access request names the vårdhuvudman {:?}, which is not a configured \
                     region ({})",
                    request.region,
                    self.shared
                        .regions
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let recipients: Vec<String> = mail
            .rcpt_tos
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .collect();
        for needed in [CGI_SUPPORT, region.contact.as_str()] {
            ensure!(
                recipients.contains(&needed.to_ascii_lowercase()),
                "the access request was not sent to {needed} (recipients: {}); send it to the \
                 region's contact with a copy to {CGI_SUPPORT}",
                mail.rcpt_tos.join(", ")
            );
        }
        if let Some(issuer) = issuer {
            ensure!(
                issuer.issued_hsa_ids().contains(&request.hsa_id),
                "the access request's \"Serialnumber på certifikat\" {:?} is not the HSA-ID of a \
                 SITHS certificate (the value is the certificate subject's SERIALNUMBER, not \
                 the certificate's serial number)",
                request.hsa_id
            );
        }
        if request.environment == Environment::Produktion {
            let tested = self.grants().iter().any(|g| {
                g.hsa_id == request.hsa_id
                    && g.principal == region.principal_hsa_id
                    && g.environment == Environment::Test
            });
            ensure!(
                tested,
                "CGI grants PRODUKTION to {} for {} only after access to TEST and tests there; \
                 request TEST first",
                request.hsa_id,
                region.name
            );
        }
        self.grant(
            &request.hsa_id,
            &region.principal_hsa_id,
            request.environment,
        );
        Ok(Grant {
            hsa_id: request.hsa_id,
            principal: region.principal_hsa_id.clone(),
            environment: request.environment,
        })
    }
}

/// The fields of an access-request mail.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AccessRequest {
    environment: Environment,
    region: String,
    hsa_id: String,
}

impl AccessRequest {
    fn read(mail: &ReceivedMail) -> Result<AccessRequest> {
        ensure!(
            mail.subject.trim() == ACCESS_REQUEST_SUBJECT,
            "mail {} is not an eFrikort access request: its subject is {:?}, not {:?}",
            mail.index,
            mail.subject,
            ACCESS_REQUEST_SUBJECT
        );
        let text = mail
            .text
            .as_deref()
            .ok_or_else(|| anyhow!("the access request (mail {}) has no text body", mail.index))?;
        let field = |label: &str| -> Result<String> {
            let value = text
                .lines()
                .find_map(|line| {
                    let line = line.trim();
                    line.strip_prefix(label)
                        .and_then(|rest| rest.split_once(':').map(|(_, v)| v.trim().to_owned()))
                })
                .filter(|v| !v.is_empty());
            value.ok_or_else(|| {
                anyhow!(
                    "the access request (mail {}) has no \"{label}:\" line with a value",
                    mail.index
                )
            })
        };
        field("Namn på integrerande system")?;
        field("Kontaktperson")?;
        let environment = Environment::parse(&field("Avser miljö för")?)
            .context("the access request's \"Avser miljö för\"")?;
        // The template says "Avser vårdhuvudman (region/landsting):", the example
        // "Avser vårdhuvudman:".
        let region = field("Avser vårdhuvudman")?;
        let hsa_id = field("Serialnumber på certifikat")?;
        Ok(AccessRequest {
            environment,
            region,
            hsa_id,
        })
    }
}

/// What a request carried, for the log.
#[derive(Default)]
struct Seen {
    operation: Option<String>,
    caller_hsa_id: Option<String>,
    logical_address: Option<String>,
    care_principal_id: Option<String>,
    person_id: Option<String>,
}

impl Shared {
    fn handle(&self, environment: Environment, request: SoapRequest) -> SoapReply {
        let mut seen = Seen::default();
        let (outcome, reply) = self.answer(environment, &request, &mut seen);
        lock(&self.state).log.push(EfrikortRequest {
            environment,
            method: request.method.clone(),
            path: request.path.clone(),
            operation: seen.operation,
            caller_hsa_id: seen.caller_hsa_id,
            logical_address: seen.logical_address,
            care_principal_id: seen.care_principal_id,
            person_id: seen.person_id,
            outcome,
        });
        reply
    }

    fn answer(
        &self,
        environment: Environment,
        request: &SoapRequest,
        seen: &mut Seen,
    ) -> (Outcome, SoapReply) {
        let http = |status: u16, text: String| {
            (
                Outcome::Http(status, text.clone()),
                SoapReply::text(status, &text),
            )
        };
        if request.path != CONTRACT_PATH {
            return http(
                404,
                format!(
                    "no eFrikort contract at {}; this simulator serves {CONTRACT_PATH}",
                    request.path
                ),
            );
        }
        seen.caller_hsa_id = request
            .client_chain
            .first()
            .and_then(|leaf| subject_serial_number(leaf));
        if request.method == "GET" {
            let wants_wsdl = request
                .query
                .as_deref()
                .is_some_and(|q| q.eq_ignore_ascii_case("wsdl"));
            if wants_wsdl {
                return (Outcome::Wsdl, SoapReply::xml(200, self.wsdl.clone()));
            }
            return http(405, format!("GET {CONTRACT_PATH} serves only ?wsdl"));
        }
        if request.method != "POST" {
            return http(405, format!("{} is not served here", request.method));
        }
        let Some(caller) = seen.caller_hsa_id.clone() else {
            return fault(
                "VP002 the client certificate has no subject serialNumber (HSA-ID); eFrikort \
                 identifies callers by it",
            );
        };
        let content_type = request.content_type.as_deref().unwrap_or_default();
        if !content_type.to_ascii_lowercase().starts_with("text/xml") {
            return http(
                415,
                format!("SOAP 1.1 needs Content-Type text/xml, not {content_type:?}"),
            );
        }
        if request.action() != SOAP_ACTION {
            return fault(&format!(
                "the SOAPAction {:?} is not {SOAP_ACTION} (the only operation at this address)",
                request.action()
            ));
        }
        seen.operation = Some(OPERATION.to_owned());
        let source = String::from_utf8_lossy(&request.body).into_owned();
        let doc = match crate::soapd::parse_envelope(&source) {
            Ok(doc) => doc,
            Err(e) => return fault(&e),
        };
        let root = doc.root_element();
        let logical_address = child(root, ns::SOAP, "Header")
            .and_then(|header| child(header, ns::REGISTRY, "LogicalAddress"));
        let Some(logical_address) = logical_address else {
            return fault(&format!(
                "the SOAP header LogicalAddress ({}) is missing; RIV-TA requires it (its value \
                 is not used)",
                ns::REGISTRY
            ));
        };
        seen.logical_address = Some(xmlsec::text(logical_address));
        let operation = child(root, ns::SOAP, "Body")
            .and_then(|body| body.children().find(roxmltree::Node::is_element));
        let Some(operation) = operation.filter(|n| n.has_tag_name((ns::RESPONDER, OPERATION)))
        else {
            return fault(&format!(
                "the SOAP body does not hold {{{}}}{OPERATION}",
                ns::RESPONDER
            ));
        };
        let value = |name: &str| child(operation, ns::RESPONDER, name).map(xmlsec::text);
        seen.care_principal_id = value("carePrincipalId");
        seen.person_id = value("personId");
        let validated = xmlsec::standalone(&source, operation).and_then(|standalone| {
            xmlsec::validate(&self.schemas.join(RESPONDER_XSD), &standalone)
        });
        if let Err(e) = validated {
            return fault(&format!(
                "the request does not validate against GetExtendedCardForPersonResponder_3.0.xsd: {e:#}"
            ));
        }
        let principal = seen.care_principal_id.clone().unwrap_or_default();
        let person = seen.person_id.clone().unwrap_or_default();
        let card_type = value("cardTypeId").unwrap_or_default();
        let granted = lock(&self.state).grants.iter().any(|g| {
            g.hsa_id == caller && g.principal == principal && g.environment == environment
        });
        if !granted {
            let text = format!(
                "Behörighet saknas: {caller} har ingen behörighet till vårdhuvudman {principal} i \
                 {environment}"
            );
            return (
                Outcome::AccessDenied,
                SoapReply::xml(200, response("ACCESSDENIED", &text, None)),
            );
        }
        let card = (person == self.probe_person_id).then(|| card(&person, &card_type, &principal));
        (
            Outcome::Ok,
            SoapReply::xml(200, response("OK", "", card.as_deref())),
        )
    }
}

/// The first child element of `parent` named {`namespace`}`name`.
fn child<'a, 'input>(
    parent: roxmltree::Node<'a, 'input>,
    namespace: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    parent
        .children()
        .find(|n| n.has_tag_name((namespace, name)))
}

fn fault(text: &str) -> (Outcome, SoapReply) {
    let element = Fault {
        code: "soap:Client",
        text,
        lang: None,
        detail: None,
    }
    .element("soap", &[]);
    (
        Outcome::Fault(text.to_owned()),
        SoapReply::xml(500, crate::soapd::envelope("soap", &[], None, &element)),
    )
}

/// The `GetExtendedCardForPersonResponse` envelope.
fn response(code: &str, text: &str, card: Option<&str>) -> String {
    let text = if text.is_empty() {
        String::new()
    } else {
        format!("<c:resultText>{}</c:resultText>", escape(text))
    };
    let body = format!(
        "<r:GetExtendedCardForPersonResponse><r:getExtendedCardResultType><c:result>\
         <c:resultCode>{code}</c:resultCode>{text}</c:result>{}</r:getExtendedCardResultType>\
         </r:GetExtendedCardForPersonResponse>",
        card.unwrap_or_default()
    );
    crate::soapd::envelope(
        "soap",
        &[("r", ns::RESPONDER), ("c", ns::CORE)],
        None,
        &body,
    )
}

/// A frikort below the limit, for the probe person.
fn card(person: &str, card_type: &str, principal: &str) -> String {
    let (person, card_type, principal) = (escape(person), escape(card_type), escape(principal));
    format!(
        "<c:extendedCard><c:card>\
         <c:cardSystemId>6f1c2a7e-0b7d-4c51-9a57-2f0e3c1d9b11</c:cardSystemId>\
         <c:cardType><c:id>{card_type}</c:id><c:name>Öppen sjukvård</c:name></c:cardType>\
         <c:persons><c:id>{person}</c:id><c:readConsent>true</c:readConsent></c:persons>\
         <c:startDate>2026-01-15</c:startDate>\
         <c:currentAmount>1150.0</c:currentAmount><c:amountToLimit>250.0</c:amountToLimit>\
         <c:cardId>FK-000123</c:cardId>\
         <c:carePrincipal><c:id>{principal}</c:id><c:name>{principal}</c:name></c:carePrincipal>\
         <c:status>BELOW_LIMIT</c:status>\
         </c:card></c:extendedCard>"
    )
}

/// The subject `serialNumber` (2.5.4.5) of a DER certificate.
fn subject_serial_number(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let oid = x509_parser::oid_registry::OID_X509_SERIALNUMBER;
    cert.subject()
        .iter_by_oid(&oid)
        .next()
        .and_then(|attr| attr.as_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
