//! Namespaces, each with the prefix certvakt writes it with (the prefix is cosmetic; readers
//! match the namespace).

/// SOAP 1.1 envelope.
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// WS-Security 1.0 extension (`wsse`).
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Security 1.0 utility (`wsu`: `Id`, `Timestamp`).
pub const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// XML-DSig (`ds`).
pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// SAML 2.0 assertions (`saml`).
pub const SAML2: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// WS-Trust 2005/02, as the Danish SOSI STS speaks it (`wst`).
pub const WST_2005_02: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust";
/// WS-Trust 1.3 (2005/12), as the NemLog-in STS speaks it (`wst`).
pub const WST_13: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
/// WS-Addressing 2004/08 (`wsa`), in SOSI messages.
pub const WSA_2004_08: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
/// WS-Addressing 1.0 (`wsa`), in OIO WS-Trust messages.
pub const WSA_10: &str = "http://www.w3.org/2005/08/addressing";
/// WS-Policy 2002/12 (`wsp`): the namespace NemLog-in's STS wants `AppliesTo` in.
pub const WSP_2002_12: &str = "http://schemas.xmlsoap.org/ws/2002/12/policy";
/// DGWS (`medcom`).
pub const MEDCOM: &str = "http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd";
/// SOSI (`sosi`): the ID card's attribute names.
pub const SOSI: &str = "http://www.sosi.dk/sosi/2006/04/sosi-1.0.xsd";
/// XML Schema instance (`xsi`).
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
