use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use crate::dsig::{self, Reference};
use crate::ns;
use crate::read;
use crate::write::XmlWriter;

fn envelope(signature: Option<&str>) -> String {
    let mut w = XmlWriter::new();
    w.element(
        "soapenv:Envelope",
        &[
            ("xmlns:soapenv", ns::SOAP11),
            ("xmlns:saml", ns::SAML2),
            ("xmlns:wsu", ns::WSU),
        ],
        |w| {
            w.element("soapenv:Header", &[], |w| {
                w.element("saml:Assertion", &[("id", "IDCard")], |w| {
                    w.text_element("saml:Issuer", &[], "Apotek & Co <test>");
                    if let Some(signature) = signature {
                        w.raw(signature);
                    }
                });
            });
            w.element("soapenv:Body", &[("wsu:Id", "body")], |w| {
                w.text_element("x:Op", &[("xmlns:x", "urn:x")], "1");
            });
        },
    );
    w.finish().unwrap_or_default()
}

#[test]
fn signed_info_digests_the_canonical_subtree() {
    let unsigned = envelope(None);
    let info = dsig::signed_info(
        &unsigned,
        &["wsu:Id"],
        &[Reference::enveloped("IDCard"), Reference::detached("body")],
    )
    .unwrap_or_default();
    // The body in exclusive canonical form: only the namespaces its elements use, declared
    // where first used; attributes in order; no empty-element shorthand.
    let body = format!(
        r#"<soapenv:Body xmlns:soapenv="{}" xmlns:wsu="{}" wsu:Id="body"><x:Op xmlns:x="urn:x">1</x:Op></soapenv:Body>"#,
        ns::SOAP11,
        ns::WSU
    );
    let expected = STANDARD.encode(Sha256::digest(body.as_bytes()));
    assert!(info.contains(&expected), "{info}");
    assert!(info.starts_with(&format!(r#"<ds:SignedInfo xmlns:ds="{}">"#, ns::DS)));
    assert!(info.contains(dsig::ENVELOPED));
    assert_eq!(info.matches("<ds:Reference ").count(), 2);
    assert!(
        !info.contains("/>"),
        "canonical form has no empty-element tags: {info}"
    );
}

#[test]
fn a_missing_or_repeated_id_is_refused() {
    let unsigned = envelope(None);
    let missing = dsig::signed_info(&unsigned, &[], &[Reference::detached("nowhere")]);
    assert!(missing.is_err_and(|e| e.0.contains("`nowhere`")));
    let twice = unsigned.replace(r#"wsu:Id="body""#, r#"wsu:Id="IDCard""#);
    assert!(dsig::signed_info(&twice, &["wsu:Id"], &[Reference::detached("IDCard")]).is_err());
}

#[test]
fn the_signature_reads_back_and_the_enveloped_digest_is_unchanged() {
    let unsigned = envelope(None);
    let info = dsig::signed_info(&unsigned, &["id"], &[Reference::enveloped("IDCard")])
        .unwrap_or_default();
    assert!(
        !info.is_empty(),
        "naming a default id attribute again is harmless"
    );
    let key_info = dsig::key_info_x509(b"not really DER").unwrap_or_default();
    let signature = dsig::signature(&info, b"value", &key_info, Some(("id", "OCESSignature")))
        .unwrap_or_default();
    let signed = envelope(Some(&signature));
    let doc = read::parse(&signed, "the signed message");
    let Ok(doc) = doc else {
        panic!("{doc:?}");
    };
    let value = read::find(doc.root_element(), ns::DS, "SignatureValue").and_then(|n| n.text());
    assert_eq!(value, Some(STANDARD.encode(b"value").as_str()));
    assert!(read::find(doc.root_element(), ns::DS, "X509Certificate").is_some());
}

#[test]
fn standalone_carries_inherited_namespaces_and_keeps_its_own() {
    let source = format!(
        r#"<a:Root xmlns:a="urn:a" xmlns:saml="{saml}" xmlns:ds="{ds}"><saml:Assertion xmlns:saml="{saml}" id="X"><ds:Sig/><b:c xmlns:b="urn:b"/></saml:Assertion></a:Root>"#,
        saml = ns::SAML2,
        ds = ns::DS
    );
    let Ok(doc) = read::parse(&source, "source") else {
        panic!("source");
    };
    let Some(assertion) = read::find(doc.root_element(), ns::SAML2, "Assertion") else {
        panic!("assertion");
    };
    let alone = read::standalone(&source, assertion).unwrap_or_default();
    assert_eq!(alone.matches("xmlns:saml=").count(), 1, "{alone}");
    assert!(
        alone.contains(&format!(r#"xmlns:ds="{}""#, ns::DS)),
        "{alone}"
    );
    assert!(read::parse(&alone, "standalone").is_ok(), "{alone}");
}

#[test]
fn faults_are_read_with_their_detail() {
    let text = format!(
        r#"<S:Envelope xmlns:S="{}" xmlns:wst="{}"><S:Body><S:Fault><faultcode>wst:FailedAuthentication</faultcode><faultstring>no</faultstring><detail><m:FaultCode xmlns:m="urn:m">not_authorized</m:FaultCode></detail></S:Fault></S:Body></S:Envelope>"#,
        ns::SOAP11,
        ns::WST_13
    );
    let Ok(doc) = read::parse(&text, "fault") else {
        panic!("fault");
    };
    let Some(fault) = read::fault(&doc) else {
        panic!("no fault read");
    };
    assert_eq!(fault.code_local, "FailedAuthentication");
    assert_eq!(fault.code_namespace.as_deref(), Some(ns::WST_13));
    assert_eq!(fault.string, "no");
    assert_eq!(fault.detail("FaultCode"), Some("not_authorized"));
}
