//! XML-DSig signatures made through the host: exclusive canonicalisation (bergshamra-c14n),
//! SHA-256 digests, RSA-SHA256.
//!
//! Making a signature takes three steps, because the key stays with the host:
//!
//! 1. The plugin writes the whole message without the signature, each element to be signed
//!    carrying an id (`id="IDCard"`, `wsu:Id="ts"`).
//! 2. [`signed_info`] canonicalises each referenced element *in that document* and returns
//!    the canonical `ds:SignedInfo`: the exact bytes the key signs. The plugin has the host
//!    sign them (`Host::sign` with `RsaPkcs1Sha256`).
//! 3. [`signature`] wraps SignedInfo, the value and a `ds:KeyInfo` into `ds:Signature`, which
//!    the plugin writes into the message at its place, with no whitespace around it (an
//!    enveloped signature is removed again before digesting, so the rest must not change).
//!
//! SHA-256 and not the SHA-1 of older DGWS texts: the host's crypto library signs RSA with
//! SHA-256 and up only. Services that verify with a general XML-DSig library read the
//! algorithm from the signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bergshamra_c14n::C14nMode;
use bergshamra_xml::{NodeSet, XmlDocument};
use sha2::{Digest as _, Sha256};

use crate::ns;
use crate::write::XmlWriter;

/// Exclusive XML canonicalisation 1.0, without comments.
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The enveloped-signature transform.
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
/// SHA-256 digest method.
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// RSASSA-PKCS1-v1_5 with SHA-256.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// The `ValueType` of an X.509 v3 binary security token.
pub const X509V3: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";

/// One element to sign, by the value of its id attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference<'a> {
    pub id: &'a str,
    /// The signature will sit inside this element (the enveloped-signature transform).
    pub enveloped: bool,
}

impl<'a> Reference<'a> {
    /// An element elsewhere in the message (WS-Security: the body, the timestamp, …).
    pub fn detached(id: &'a str) -> Reference<'a> {
        Reference {
            id,
            enveloped: false,
        }
    }

    /// The element the signature goes into (a SAML assertion, an ID card).
    pub fn enveloped(id: &'a str) -> Reference<'a> {
        Reference {
            id,
            enveloped: true,
        }
    }
}

/// Why a signature could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsigError(pub String);

impl std::fmt::Display for DsigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot sign the message: {}", self.0)
    }
}

impl std::error::Error for DsigError {}

/// The canonical `ds:SignedInfo` over `references` in `document`, whose elements are found by
/// the attributes named in `id_attributes` (`"id"`, `"wsu:Id"`; `Id`, `ID` and `id` always
/// count). Every id must be found exactly once.
pub fn signed_info(
    document: &str,
    id_attributes: &[&str],
    references: &[Reference<'_>],
) -> Result<String, DsigError> {
    let error = |e: bergshamra_core::Error| DsigError(e.to_string());
    let mut doc = XmlDocument::parse(document.to_owned()).map_err(error)?;
    // `Id`, `ID` and `id` count already; naming one again would see each id twice.
    for attribute in id_attributes
        .iter()
        .filter(|a| !matches!(**a, "Id" | "ID" | "id"))
    {
        doc.add_id_attr(attribute);
    }
    let parsed = doc.parse_doc().map_err(error)?;
    let ids = doc.build_id_map(&parsed).map_err(error)?;
    let mut digests = Vec::with_capacity(references.len());
    for reference in references {
        let node = ids
            .get(reference.id)
            .copied()
            .ok_or_else(|| DsigError(format!("no element has the id `{}`", reference.id)))?;
        let subtree = NodeSet::tree_without_comments(node, &parsed);
        let canonical = bergshamra_c14n::canonicalize_doc(
            &parsed,
            C14nMode::Exclusive,
            Some(&subtree),
            &[] as &[&str],
        )
        .map_err(error)?;
        digests.push(STANDARD.encode(Sha256::digest(&canonical)));
    }

    let mut w = XmlWriter::new();
    w.element("ds:SignedInfo", &[("xmlns:ds", ns::DS)], |w| {
        w.empty("ds:CanonicalizationMethod", &[("Algorithm", EXC_C14N)]);
        w.empty("ds:SignatureMethod", &[("Algorithm", RSA_SHA256)]);
        for (reference, digest) in references.iter().zip(&digests) {
            let uri = format!("#{}", reference.id);
            w.element("ds:Reference", &[("URI", &uri)], |w| {
                w.element("ds:Transforms", &[], |w| {
                    if reference.enveloped {
                        w.empty("ds:Transform", &[("Algorithm", ENVELOPED)]);
                    }
                    w.empty("ds:Transform", &[("Algorithm", EXC_C14N)]);
                });
                w.empty("ds:DigestMethod", &[("Algorithm", SHA256)]);
                w.text_element("ds:DigestValue", &[], digest);
            });
        }
    });
    let written = w.finish().map_err(DsigError)?;
    // What is signed is the canonical form; writing that form into the message makes the
    // verifier's canonicalisation a no-op on it.
    let canonical =
        bergshamra_c14n::canonicalize(&written, C14nMode::Exclusive, None, &[] as &[&str])
            .map_err(error)?;
    String::from_utf8(canonical).map_err(|e| DsigError(e.to_string()))
}

/// The `ds:Signature` element: `signed_info` as [`signed_info`] returned it, the signature
/// `value` the host made over it, and `key_info` (XML for inside `ds:KeyInfo`, e.g.
/// [`key_info_x509`]). `id` is an attribute for the signature itself, e.g.
/// `("id", "OCESSignature")` in a DGWS ID card.
pub fn signature(
    signed_info: &str,
    value: &[u8],
    key_info: &str,
    id: Option<(&str, &str)>,
) -> Result<String, DsigError> {
    let mut attrs = vec![("xmlns:ds", ns::DS)];
    attrs.extend(id);
    let mut w = XmlWriter::new();
    w.element("ds:Signature", &attrs, |w| {
        w.raw(signed_info);
        w.text_element("ds:SignatureValue", &[], &STANDARD.encode(value));
        w.element("ds:KeyInfo", &[], |w| {
            w.raw(key_info);
        });
    });
    w.finish().map_err(DsigError)
}

/// `ds:KeyInfo` content carrying the signer's certificate (DER) itself.
pub fn key_info_x509(certificate_der: &[u8]) -> Result<String, DsigError> {
    let mut w = XmlWriter::new();
    w.element("ds:X509Data", &[("xmlns:ds", ns::DS)], |w| {
        w.text_element("ds:X509Certificate", &[], &STANDARD.encode(certificate_der));
    });
    w.finish().map_err(DsigError)
}

/// `ds:KeyInfo` content pointing at a `wsse:BinarySecurityToken` in the same message.
pub fn key_info_token_reference(token_id: &str) -> Result<String, DsigError> {
    let uri = format!("#{token_id}");
    let mut w = XmlWriter::new();
    w.element(
        "wsse:SecurityTokenReference",
        &[("xmlns:wsse", ns::WSSE)],
        |w| {
            w.empty("wsse:Reference", &[("URI", &uri), ("ValueType", X509V3)]);
        },
    );
    w.finish().map_err(DsigError)
}
