//! The DGWS ID card (brief §5.4): a SAML 2.0 `saml:Assertion id="IDCard"` with an enveloped
//! `ds:Signature` over `#IDCard`. Reading one, checking its signature with `xmlsec1`, and the
//! STS's issuing of a card signed by itself.

use certvakt_soap::read::{child, children};
use quick_xml::escape::escape;
use roxmltree::{Document, Node};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ns;
use crate::leaf::IssuedCert;
use crate::xmlsec::{self, IdAttr, text, utc_seconds};

/// `id` is the card's XML ID (lowercase, as DGWS has it).
pub(super) const ID_ATTRS: [IdAttr; 1] = [IdAttr {
    attr: "id",
    namespace: ns::SAML,
    element: "Assertion",
}];

/// Selects the card's own signature.
pub(super) const SIGNATURE_XPATH: &str = "//*[local-name()='Assertion' and namespace-uri()='urn:oasis:names:tc:SAML:2.0:assertion'][@id='IDCard']/*[local-name()='Signature' and namespace-uri()='http://www.w3.org/2000/09/xmldsig#']";

const SIGNATURE_METHODS: [&str; 2] = [
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
];
const DIGEST_METHODS: [&str; 2] = [
    "http://www.w3.org/2000/09/xmldsig#sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256",
];
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// One `saml:Attribute`.
#[derive(Debug, Clone)]
pub(super) struct Attribute {
    pub name: String,
    pub name_format: Option<String>,
    pub values: Vec<String>,
}

/// One `saml:AttributeStatement` (`IDCardData`, `UserLog`, `SystemLog`).
#[derive(Debug, Clone)]
pub(super) struct Statement {
    pub id: Option<String>,
    pub attributes: Vec<Attribute>,
}

/// What a card says.
#[derive(Debug, Clone)]
pub(super) struct IdCard {
    pub issuer: String,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub not_before: Option<OffsetDateTime>,
    pub not_on_or_after: Option<OffsetDateTime>,
    pub statements: Vec<Statement>,
    /// The certificates in the signature's `KeyInfo/X509Data`, DER, in document order.
    pub certificates: Vec<Vec<u8>>,
}

impl IdCard {
    /// The first value of the attribute `name` in any statement.
    pub(super) fn attribute(&self, name: &str) -> Option<&str> {
        self.find(name)
            .and_then(|a| a.values.first())
            .map(String::as_str)
    }

    fn find(&self, name: &str) -> Option<&Attribute> {
        self.statements
            .iter()
            .flat_map(|s| &s.attributes)
            .find(|a| a.name == name)
    }

    /// `medcom:CareProviderID` when its `NameFormat` is `medcom:cvrnumber`.
    pub(super) fn care_provider_cvr(&self) -> Option<&str> {
        self.find("medcom:CareProviderID")
            .filter(|a| a.name_format.as_deref() == Some("medcom:cvrnumber"))
            .and_then(|a| a.values.first())
            .map(String::as_str)
    }
}

/// The only element of the document with `id="IDCard"`, which must be a `saml:Assertion`
/// inside `scope`. Two elements with that ID are refused: a signature could then be checked on
/// one card while the other is read.
pub(super) fn locate<'a, 'input>(
    doc: &'a Document<'input>,
    scope: Node<'a, 'input>,
) -> Result<Node<'a, 'input>, String> {
    let mut carrying = doc
        .descendants()
        .filter(|n| n.is_element() && n.attribute("id") == Some("IDCard"));
    let first = carrying.next();
    if carrying.next().is_some() {
        return Err("more than one element has id=\"IDCard\"".into());
    }
    let card = first.ok_or("no ID card (saml:Assertion id=\"IDCard\")")?;
    if !card.has_tag_name((ns::SAML, "Assertion")) {
        return Err("the element with id=\"IDCard\" is not a saml:Assertion".into());
    }
    if !card.ancestors().any(|a| a == scope) {
        return Err("the ID card is not where it belongs".into());
    }
    Ok(card)
}

fn instant(value: Option<&str>) -> Result<Option<OffsetDateTime>, String> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|e| format!("the time {v:?} is not xs:dateTime: {e}"))
        })
        .transpose()
}

/// Reads a card (no signature check).
pub(super) fn parse(card: Node<'_, '_>) -> Result<IdCard, String> {
    let issuer = child(card, ns::SAML, "Issuer")
        .map(text)
        .ok_or("the ID card has no saml:Issuer")?;
    let subject = child(card, ns::SAML, "Subject").ok_or("the ID card has no saml:Subject")?;
    let name_id = child(subject, ns::SAML, "NameID").ok_or("the ID card has no saml:NameID")?;
    let conditions =
        child(card, ns::SAML, "Conditions").ok_or("the ID card has no saml:Conditions")?;
    let statements = children(card, ns::SAML, "AttributeStatement")
        .map(|statement| Statement {
            id: statement.attribute("id").map(str::to_owned),
            attributes: children(statement, ns::SAML, "Attribute")
                .map(|attribute| Attribute {
                    name: attribute.attribute("Name").unwrap_or_default().to_owned(),
                    name_format: attribute.attribute("NameFormat").map(str::to_owned),
                    values: children(attribute, ns::SAML, "AttributeValue")
                        .map(text)
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let mut certificates = Vec::new();
    if let Some(data) = child(card, ns::DS, "Signature")
        .and_then(|s| child(s, ns::DS, "KeyInfo"))
        .and_then(|k| child(k, ns::DS, "X509Data"))
    {
        for cert in children(data, ns::DS, "X509Certificate") {
            let b64: String = text(cert).split_whitespace().collect();
            use base64::Engine as _;
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("ds:X509Certificate is not base64: {e}"))?;
            certificates.push(der);
        }
    }
    Ok(IdCard {
        issuer,
        name_id: text(name_id),
        name_id_format: name_id.attribute("Format").map(str::to_owned),
        not_before: instant(conditions.attribute("NotBefore"))?,
        not_on_or_after: instant(conditions.attribute("NotOnOrAfter"))?,
        statements,
        certificates,
    })
}

/// Checks the card's signature: the shape DGWS prescribes (one reference, to `#IDCard`,
/// enveloped, exc-c14n, RSA-SHA1/SHA256) checked here, the cryptography by `xmlsec1` with
/// `signer_cert_pem`'s key alone. `source` is the whole document the card sits in.
pub(super) fn check_signature(
    source: &str,
    card: Node<'_, '_>,
    signer_cert_pem: &str,
) -> Result<(), String> {
    let signature = child(card, ns::DS, "Signature").ok_or("the ID card is not signed")?;
    let signed_info =
        child(signature, ns::DS, "SignedInfo").ok_or("the signature has no SignedInfo")?;
    let method = child(signed_info, ns::DS, "SignatureMethod")
        .and_then(|m| m.attribute("Algorithm"))
        .unwrap_or_default();
    if !SIGNATURE_METHODS.contains(&method) {
        return Err(format!(
            "signature method {method:?} is not RSA-SHA1 or RSA-SHA256"
        ));
    }
    let c14n = child(signed_info, ns::DS, "CanonicalizationMethod")
        .and_then(|m| m.attribute("Algorithm"))
        .unwrap_or_default();
    if c14n != EXC_C14N {
        return Err(format!("canonicalization {c14n:?} is not exclusive c14n"));
    }
    let references: Vec<Node<'_, '_>> = children(signed_info, ns::DS, "Reference").collect();
    let [reference] = references.as_slice() else {
        return Err(format!(
            "the signature has {} references; DGWS signs exactly one, #IDCard",
            references.len()
        ));
    };
    if reference.attribute("URI") != Some("#IDCard") {
        return Err("the signature's reference is not #IDCard".into());
    }
    let transforms: Vec<&str> = child(*reference, ns::DS, "Transforms")
        .map(|t| {
            children(t, ns::DS, "Transform")
                .filter_map(|t| t.attribute("Algorithm"))
                .collect()
        })
        .unwrap_or_default();
    if !transforms.contains(&ENVELOPED) {
        return Err("the reference has no enveloped-signature transform".into());
    }
    let digest = child(*reference, ns::DS, "DigestMethod")
        .and_then(|m| m.attribute("Algorithm"))
        .unwrap_or_default();
    if !DIGEST_METHODS.contains(&digest) {
        return Err(format!("digest method {digest:?} is not SHA-1 or SHA-256"));
    }
    xmlsec::verify(source, SIGNATURE_XPATH, signer_cert_pem, &ID_ATTRS).map_err(|e| e.to_string())
}

/// The card the STS returns: a copy of `card` (subject and attribute statements) issued by
/// `issuer`, valid from `not_before` to `not_on_or_after`, signed by `signer` with `xmlsec1`
/// (RSA-SHA256/SHA-256 when `sha256`, else RSA-SHA1/SHA-1 as the real STS), the signer's
/// certificate in `KeyInfo`. `saml` and `ds` are declared on the assertion itself.
pub(super) fn issue(
    card: &IdCard,
    issuer: &str,
    not_before: OffsetDateTime,
    not_on_or_after: OffsetDateTime,
    signer: &IssuedCert,
    sha256: bool,
) -> anyhow::Result<String> {
    let mut xml = format!(
        "<saml:Assertion xmlns:saml=\"{}\" xmlns:ds=\"{}\" IssueInstant=\"{}\" Version=\"2.0\" id=\"IDCard\">",
        ns::SAML,
        ns::DS,
        utc_seconds(not_before)
    );
    xml.push_str(&format!("<saml:Issuer>{}</saml:Issuer>", escape(issuer)));
    xml.push_str("<saml:Subject>");
    match &card.name_id_format {
        Some(format) => xml.push_str(&format!(
            "<saml:NameID Format=\"{}\">{}</saml:NameID>",
            escape(format),
            escape(&card.name_id)
        )),
        None => xml.push_str(&format!(
            "<saml:NameID>{}</saml:NameID>",
            escape(&card.name_id)
        )),
    }
    xml.push_str(concat!(
        "<saml:SubjectConfirmation>",
        "<saml:ConfirmationMethod>urn:oasis:names:tc:SAML:2.0:cm:holder-of-key</saml:ConfirmationMethod>",
        "<saml:SubjectConfirmationData><ds:KeyInfo><ds:KeyName>OCESSignature</ds:KeyName></ds:KeyInfo></saml:SubjectConfirmationData>",
        "</saml:SubjectConfirmation></saml:Subject>"
    ));
    xml.push_str(&format!(
        "<saml:Conditions NotBefore=\"{}\" NotOnOrAfter=\"{}\"/>",
        utc_seconds(not_before),
        utc_seconds(not_on_or_after)
    ));
    for statement in &card.statements {
        match &statement.id {
            Some(id) => xml.push_str(&format!("<saml:AttributeStatement id=\"{}\">", escape(id))),
            None => xml.push_str("<saml:AttributeStatement>"),
        }
        for attribute in &statement.attributes {
            xml.push_str(&format!(
                "<saml:Attribute Name=\"{}\"",
                escape(&attribute.name)
            ));
            if let Some(format) = &attribute.name_format {
                xml.push_str(&format!(" NameFormat=\"{}\"", escape(format)));
            }
            xml.push('>');
            for value in &attribute.values {
                xml.push_str(&format!(
                    "<saml:AttributeValue>{}</saml:AttributeValue>",
                    escape(value)
                ));
            }
            xml.push_str("</saml:Attribute>");
        }
        xml.push_str("</saml:AttributeStatement>");
    }
    let (signature_method, digest_method) = if sha256 {
        (SIGNATURE_METHODS[1], DIGEST_METHODS[1])
    } else {
        (SIGNATURE_METHODS[0], DIGEST_METHODS[0])
    };
    xml.push_str(&signature_template(signature_method, digest_method));
    xml.push_str("</saml:Assertion>");
    xmlsec::sign(&xml, &signer.key_pem, &signer.cert_pem, &ID_ATTRS)
}

/// The DGWS `ds:Signature id="OCESSignature"` template over `#IDCard`, certificate in
/// `KeyInfo` (filled in by `xmlsec1`).
pub(super) fn signature_template(signature_method: &str, digest_method: &str) -> String {
    format!(
        concat!(
            "<ds:Signature id=\"OCESSignature\"><ds:SignedInfo>",
            "<ds:CanonicalizationMethod Algorithm=\"{c14n}\"/>",
            "<ds:SignatureMethod Algorithm=\"{sig}\"/>",
            "<ds:Reference URI=\"#IDCard\"><ds:Transforms>",
            "<ds:Transform Algorithm=\"{env}\"/><ds:Transform Algorithm=\"{c14n}\"/>",
            "</ds:Transforms><ds:DigestMethod Algorithm=\"{dig}\"/><ds:DigestValue/></ds:Reference>",
            "</ds:SignedInfo><ds:SignatureValue/>",
            "<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo>",
            "</ds:Signature>"
        ),
        c14n = EXC_C14N,
        sig = signature_method,
        env = ENVELOPED,
        dig = digest_method
    )
}

/// Now, for checks and stamps.
pub(super) fn now() -> OffsetDateTime {
    crate::ca::now_seconds()
}
