//! The proof that eFrikort grants a certificate access: one RIV-TA call, or in production the
//! TLS handshake and the WSDL.
//!
//! Contract:
//! - [`envelope`] writes `GetExtendedCardForPerson` as the contract says (RIV-TA BP 2.1,
//!   `cgi:healthcare:efrikort` 3.0): SOAP 1.1, document/literal; the header `LogicalAddress`
//!   in `urn:riv:itintegration:registry:1` (eFrikort does not route on it, RIV-TA wants it: the
//!   region's principal HSA-ID); the body element and its children `carePrincipalId`,
//!   `personId`, `cardTypeId`, in that order, in the responder namespace (the responder schema
//!   is `elementFormDefault="qualified"`). [`SOAP_ACTION`] is the WSDL's `soapAction`.
//! - [`prove`] sends it over mutual TLS with the given client identity and reads the answer:
//!   a SOAP fault, `resultCode` `ACCESSDENIED`, or HTTP 401/403 is [`Proof::Denied`]; any
//!   other `resultCode` is [`Proof::Granted`] (the service looked at the request, so the
//!   certificate has access). No answer at all is [`Proof::Unreachable`], for the caller to
//!   weigh. An answer that is neither SOAP nor a refusal is an error.
//! - [`prove_wsdl`] (production without a safe probe): `GET <endpoint>?wsdl`, 200 is
//!   [`Proof::Granted`]. It proves the handshake with the certificate, not the grant.
//! - The personal identity number asked about is never logged nor put in an error.

use certvakt_plugin_api::{ClientIdentity, Host, HttpRequest, PluginError};
use certvakt_soap::call::snippet;
use certvakt_soap::ns::SOAP11;
use certvakt_soap::read;
use certvakt_soap::write::XmlWriter;

use crate::settings::Settings;

/// RIV-TA's addressing header namespace.
pub const REGISTRY: &str = "urn:riv:itintegration:registry:1";
/// The contract's body namespace.
pub const RESPONDER: &str = "urn:riv:cgi:healthcare:efrikort:GetExtendedCardForPersonResponder:3";
/// eFrikort's core types (`ResultType`).
pub const CORE: &str = "urn:riv:cgi:healthcare:efrikort:3";
/// The WSDL's `soapAction` for the operation.
pub const SOAP_ACTION: &str =
    "urn:riv:cgi:healthcare:efrikort:GetExtendedCardForPersonResponder:3:GetExtendedCardForPerson";
/// The result code that means "no permission".
pub const ACCESS_DENIED: &str = "ACCESSDENIED";

/// What a proof found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// eFrikort served the request: the `resultCode` (or `HTTP 200` for the WSDL).
    Granted(String),
    /// eFrikort refused it: why, in its words.
    Denied(String),
    /// No answer (TLS failed, refused, timed out): the host's words.
    Unreachable(String),
}

/// The `GetExtendedCardForPerson` request.
pub fn envelope(
    logical_address: &str,
    care_principal_id: &str,
    person_id: &str,
    card_type_id: &str,
) -> Result<String, String> {
    let mut w = XmlWriter::new();
    w.element(
        "soapenv:Envelope",
        &[
            ("xmlns:soapenv", SOAP11),
            ("xmlns:itr", REGISTRY),
            ("xmlns:tjsr", RESPONDER),
        ],
        |w| {
            w.element("soapenv:Header", &[], |w| {
                w.text_element("itr:LogicalAddress", &[], logical_address);
            });
            w.element("soapenv:Body", &[], |w| {
                w.element("tjsr:GetExtendedCardForPerson", &[], |w| {
                    w.text_element("tjsr:carePrincipalId", &[], care_principal_id);
                    w.text_element("tjsr:personId", &[], person_id);
                    w.text_element("tjsr:cardTypeId", &[], card_type_id);
                });
            });
        },
    );
    w.finish()
}

/// One `GetExtendedCardForPerson` call for the region `principal` with `identity`.
pub fn prove(
    host: &Host<'_>,
    settings: &Settings,
    principal: &str,
    identity: ClientIdentity,
) -> Result<Proof, PluginError> {
    let (Some(person), Some(card_type)) = (
        settings.probe_person_id.as_deref(),
        settings.probe_card_type_id.as_deref(),
    ) else {
        return Err(PluginError::configuration(
            "the proof call needs probe_person_id and probe_card_type_id in \
             [certificate.settings]",
        ));
    };
    let body = envelope(principal, principal, person, card_type).map_err(PluginError::permanent)?;
    let mut request = HttpRequest::post(settings.endpoint.as_str(), body.into_bytes())
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{SOAP_ACTION}\""))
        .identity(identity);
    if let Some(trust) = &settings.endpoint_trust {
        request = request.trust(trust.as_str());
    }
    let response = match host.http(request) {
        Ok(response) => response,
        Err(e) => return Ok(Proof::Unreachable(e.message)),
    };
    let status = response.status;
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let Ok(doc) = read::parse(&text, "eFrikort's answer") else {
        return not_soap(settings, status, &text);
    };
    if read::body(&doc).is_err() {
        return not_soap(settings, status, &text);
    }
    if let Some(fault) = read::fault(&doc) {
        return Ok(Proof::Denied(format!(
            "SOAP fault {}: {}",
            fault.code, fault.string
        )));
    }
    let payload = read::payload(&doc).map_err(|e| {
        PluginError::permanent(format!(
            "eFrikort's answer from {} has no GetExtendedCardForPersonResponse: {e}",
            settings.endpoint
        ))
    })?;
    let Some(result) = read::find(payload, CORE, "result") else {
        return Err(PluginError::permanent(format!(
            "eFrikort's answer from {} (HTTP {status}) has no result/resultCode in {CORE}: is \
             endpoint the address of GetExtendedCardForPerson?",
            settings.endpoint
        )));
    };
    let code = read::child_text(result, CORE, "resultCode").unwrap_or("");
    let said = read::child_text(result, CORE, "resultText")
        .map(|t| format!("{code} ({t})"))
        .unwrap_or_else(|| code.to_owned());
    match code {
        "" => Err(PluginError::permanent(format!(
            "eFrikort's answer from {} has an empty resultCode",
            settings.endpoint
        ))),
        ACCESS_DENIED => Ok(Proof::Denied(said)),
        _ => Ok(Proof::Granted(said)),
    }
}

/// `GET <endpoint>?wsdl` with `identity`: the handshake and a 200.
pub fn prove_wsdl(
    host: &Host<'_>,
    settings: &Settings,
    identity: ClientIdentity,
) -> Result<Proof, PluginError> {
    let url = format!("{}?wsdl", settings.endpoint);
    let mut request = HttpRequest::get(url.as_str()).identity(identity);
    if let Some(trust) = &settings.endpoint_trust {
        request = request.trust(trust.as_str());
    }
    match host.http(request) {
        Err(e) => Ok(Proof::Unreachable(e.message)),
        Ok(response) if response.status == 200 => {
            Ok(Proof::Granted("HTTP 200 for the WSDL".into()))
        }
        Ok(response) if matches!(response.status, 401 | 403) => {
            Ok(Proof::Denied(format!("HTTP {} for {url}", response.status)))
        }
        Ok(response) if response.status >= 500 || response.status == 429 => {
            Err(PluginError::temporary(format!(
                "eFrikort answered HTTP {} for {url}; certvakt tries again later",
                response.status
            )))
        }
        Ok(response) => Err(PluginError::permanent(format!(
            "eFrikort answered HTTP {} for {url}, not its WSDL: check endpoint (the address of \
             GetExtendedCardForPerson, without ?wsdl)",
            response.status
        ))),
    }
}

/// An answer that is not a SOAP envelope: a refusal (401/403), the service busy, or wrong.
fn not_soap(settings: &Settings, status: u16, text: &str) -> Result<Proof, PluginError> {
    match status {
        401 | 403 => Ok(Proof::Denied(format!("HTTP {status}"))),
        s if s >= 500 || s == 429 => Err(PluginError::temporary(format!(
            "eFrikort answered HTTP {status}, not SOAP: {}; certvakt tries again later",
            snippet(text)
        ))),
        _ => Err(PluginError::permanent(format!(
            "eFrikort answered HTTP {status} at {}, not a SOAP envelope: {}. Check endpoint: it \
             is the address of GetExtendedCardForPerson",
            settings.endpoint,
            snippet(text)
        ))),
    }
}
