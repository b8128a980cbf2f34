//! XML tools the authority simulators share: XML signatures and encryption with `xmlsec1`,
//! schema validation with `xmllint --schema`, and small helpers on parsed documents (reading
//! and escaping otherwise come from `certvakt_soap::read` and quick-xml; checking signatures
//! never does).
//!
//! The simulators check signatures with another implementation than the one certvakt's
//! plugins use (the Debian `xmlsec1` tool, OpenSSL back end), so that a bug shared by the
//! client and the simulator cannot hide. `xmlsec1` is run in its normal mode with the key
//! given explicitly ([`verify`] loads the expected signer's certificate and disables every
//! other way of finding a key); what a signature covers is the caller's own check, because
//! `xmlsec1` only answers whether the references it found digest correctly.
//!
//! Install the tools with `scripts/install-test-deps` (packages `xmlsec1`, `libxml2-utils`).

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, anyhow, bail};

/// An attribute that `xmlsec1` must treat as an XML ID (`--id-attr`): attribute local name,
/// and the namespace and local name of the elements that carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdAttr {
    pub attr: &'static str,
    pub namespace: &'static str,
    pub element: &'static str,
}

/// Checks that `xmlsec1` and `xmllint` are installed; the error says how to install them.
pub fn require_tools() -> Result<()> {
    for (tool, package) in [("xmlsec1", "xmlsec1"), ("xmllint", "libxml2-utils")] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            bail!(
                "{tool} is not installed (Debian package {package}); run scripts/install-test-deps"
            );
        }
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> Result<Output> {
    command
        .output()
        .with_context(|| format!("running {what} (is it installed? scripts/install-test-deps)"))
}

/// The interesting lines of a tool's error output (libxml2 prints schema-import warnings that
/// say nothing about the document).
fn complaint(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains("parser warning") && !line.trim().is_empty())
        .collect();
    let mut joined = lines.join("; ");
    if joined.len() > 1200 {
        let mut cut = 1200;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        joined.truncate(cut);
        joined.push('…');
    }
    joined
}

fn id_args(command: &mut Command, ids: &[IdAttr]) {
    for id in ids {
        command
            .arg(format!("--id-attr:{}", id.attr))
            .arg(format!("{}:{}", id.namespace, id.element));
    }
}

/// Runs `xmlsec1 --<mode> --output <out>` with the arguments `args` adds, and returns what it
/// wrote to `out` without its XML declaration; `Err` says why `xmlsec1` could not.
fn produce(mode: &str, out: &Path, args: impl FnOnce(&mut Command)) -> Result<String> {
    let mut command = Command::new("xmlsec1");
    command.arg(format!("--{mode}")).arg("--output").arg(out);
    args(&mut command);
    let output = run(&mut command, &format!("xmlsec1 --{mode}"))?;
    if !output.status.success() {
        bail!("xmlsec1 could not {mode}: {}", complaint(&output));
    }
    let written =
        std::fs::read_to_string(out).with_context(|| format!("reading what xmlsec1 {mode}ed"))?;
    Ok(strip_declaration(&written).to_owned())
}

/// Verifies the XML signature selected by `signature_xpath` in `document` with the public key
/// of `signer_cert_pem` and nothing else (`KeyInfo` is ignored: a certificate inside the
/// document cannot substitute itself). `Err` says why it failed.
pub fn verify(
    document: &str,
    signature_xpath: &str,
    signer_cert_pem: &str,
    ids: &[IdAttr],
) -> Result<()> {
    let dir = tempfile::tempdir().context("a temporary directory for xmlsec1")?;
    let doc = dir.path().join("document.xml");
    let cert = dir.path().join("signer.pem");
    std::fs::write(&doc, document)?;
    std::fs::write(&cert, signer_cert_pem)?;
    let mut command = Command::new("xmlsec1");
    command
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(&cert)
        .arg("--enabled-key-data")
        .arg("key-name")
        .arg("--node-xpath")
        .arg(signature_xpath);
    id_args(&mut command, ids);
    command.arg(&doc);
    let output = run(&mut command, "xmlsec1 --verify")?;
    if output.status.success() {
        Ok(())
    } else {
        Err(anyhow!(
            "the signature does not verify: {}",
            complaint(&output)
        ))
    }
}

/// Signs a template: `template` holds a `ds:Signature` with empty `DigestValue` and
/// `SignatureValue` (and, if wanted, an empty `ds:X509Certificate`, which `xmlsec1` fills in
/// with `cert_pem`). `key_pem` is the private key (PKCS#8 or traditional PEM).
pub fn sign(template: &str, key_pem: &str, cert_pem: &str, ids: &[IdAttr]) -> Result<String> {
    let dir = tempfile::tempdir().context("a temporary directory for xmlsec1")?;
    let doc = dir.path().join("template.xml");
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let out = dir.path().join("signed.xml");
    std::fs::write(&doc, template)?;
    write_private(&key, key_pem)?;
    std::fs::write(&cert, cert_pem)?;
    produce("sign", &out, |command| {
        command
            .arg("--privkey-pem")
            .arg(format!("{},{}", key.display(), cert.display()));
        id_args(command, ids);
        command.arg(&doc);
    })
}

/// Encrypts the XML document `plain` (its root element, whole) for the holder of
/// `recipient_cert_pem`: AES-256-CBC content encryption with a fresh session key, the key
/// wrapped with RSA-OAEP-MGF1P, the recipient named by `X509IssuerSerial`. Returns the
/// `xenc:EncryptedData` element (with its `ds:KeyInfo/xenc:EncryptedKey`).
pub fn encrypt_for(plain: &str, recipient_cert_pem: &str) -> Result<String> {
    const TEMPLATE: &str = concat!(
        r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" "#,
        r#"Type="http://www.w3.org/2001/04/xmlenc#Element">"#,
        r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc"/>"#,
        r#"<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">"#,
        r#"<xenc:EncryptedKey>"#,
        r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p">"#,
        r#"<ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/>"#,
        r#"</xenc:EncryptionMethod>"#,
        r#"<ds:KeyInfo><ds:X509Data><ds:X509IssuerSerial/></ds:X509Data></ds:KeyInfo>"#,
        r#"<xenc:CipherData><xenc:CipherValue/></xenc:CipherData>"#,
        r#"</xenc:EncryptedKey>"#,
        r#"</ds:KeyInfo>"#,
        r#"<xenc:CipherData><xenc:CipherValue/></xenc:CipherData>"#,
        r#"</xenc:EncryptedData>"#,
    );
    let dir = tempfile::tempdir().context("a temporary directory for xmlsec1")?;
    let template = dir.path().join("template.xml");
    let data = dir.path().join("plain.xml");
    let cert = dir.path().join("recipient.pem");
    let out = dir.path().join("encrypted.xml");
    std::fs::write(&template, TEMPLATE)?;
    std::fs::write(&data, plain)?;
    std::fs::write(&cert, recipient_cert_pem)?;
    produce("encrypt", &out, |command| {
        command
            .arg("--pubkey-cert-pem")
            .arg(&cert)
            .arg("--session-key")
            .arg("aes-256")
            .arg("--xml-data")
            .arg(&data)
            .arg(&template);
    })
}

/// Decrypts a document whose root is (or contains) an `xenc:EncryptedData` made by
/// [`encrypt_for`], with the recipient's private key. Returns the plain XML.
pub fn decrypt(encrypted: &str, key_pem: &str) -> Result<String> {
    let dir = tempfile::tempdir().context("a temporary directory for xmlsec1")?;
    let doc = dir.path().join("encrypted.xml");
    let key = dir.path().join("key.pem");
    let out = dir.path().join("plain.xml");
    std::fs::write(&doc, encrypted)?;
    write_private(&key, key_pem)?;
    produce("decrypt", &out, |command| {
        command.arg("--privkey-pem").arg(&key).arg(&doc);
    })
}

/// Validates `document` against the schema file `schema` with `xmllint --noout --schema`.
/// `Err` carries libxml2's validity errors (with the temporary file name as `document.xml`).
pub fn validate(schema: &Path, document: &str) -> Result<()> {
    let dir = tempfile::tempdir().context("a temporary directory for xmllint")?;
    let doc = dir.path().join("document.xml");
    std::fs::write(&doc, document)?;
    let output = run(
        Command::new("xmllint")
            .arg("--noout")
            .arg("--nonet")
            .arg("--schema")
            .arg(schema)
            .arg(&doc),
        "xmllint --schema",
    )?;
    if output.status.success() {
        return Ok(());
    }
    let text = complaint(&output).replace(&format!("{}", doc.display()), "document.xml");
    match output.status.code() {
        Some(3) => Err(anyhow!("{text}")),
        _ => Err(anyhow!(
            "xmllint could not use the schema {}: {text}",
            schema.display()
        )),
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// `text` without a leading `<?xml …?>` declaration (and the whitespace after it).
pub fn strip_declaration(text: &str) -> &str {
    let trimmed = text.trim_start();
    match trimmed.find("?>") {
        Some(end) if trimmed.starts_with("<?xml") => trimmed[end + 2..].trim_start(),
        _ => trimmed,
    }
}

/// The element `node` of the document `source` as a document of its own: its exact text, with
/// the namespace declarations it inherits from its ancestors added to its start tag, so that it
/// validates (and canonicalises) as it did in place ([`certvakt_soap::read::standalone`]).
pub fn standalone(source: &str, node: roxmltree::Node<'_, '_>) -> Result<String> {
    certvakt_soap::read::standalone(source, node).map_err(anyhow::Error::msg)
}

/// The trimmed text content of `node` (all descendant text joined).
pub fn text(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(roxmltree::Node::is_text)
        .filter_map(|t| t.text())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `t` in UTC as `xs:dateTime` to the second: `yyyy-MM-ddTHH:mm:ssZ`.
pub fn utc_seconds(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `t` in UTC as `xs:dateTime` with milliseconds: `yyyy-MM-ddTHH:mm:ss.fffZ`.
pub fn utc_millis(t: time::OffsetDateTime) -> String {
    let mut stamp = utc_seconds(t);
    stamp.insert_str(
        stamp.len() - 1,
        &format!(".{:03}", t.to_offset(time::UtcOffset::UTC).millisecond()),
    );
    stamp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_carries_the_inherited_namespaces() -> Result<()> {
        let source = r#"<a:Env xmlns:a="urn:a" xmlns:b="urn:b"><a:Body><b:Op x="1>2" xmlns:c="urn:c"><c:In/></b:Op></a:Body></a:Env>"#;
        let doc = roxmltree::Document::parse(source)?;
        let op = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Op")
            .context("no Op")?;
        let alone = standalone(source, op)?;
        let reparsed = roxmltree::Document::parse(&alone)?;
        let root = reparsed.root_element();
        assert!(root.has_tag_name(("urn:b", "Op")));
        assert_eq!(root.attribute("x"), Some("1>2"));
        assert!(certvakt_soap::read::child(root, "urn:c", "In").is_some());
        assert!(!alone.contains("xmlns:c=\"urn:c\" xmlns:c"), "{alone}");
        Ok(())
    }

    #[test]
    fn a_signature_verifies_only_with_the_signers_key() -> Result<()> {
        use crate::ca::{CaShape, KeyType, TestCa};
        use crate::leaf::LeafSpec;
        let ca = TestCa::new(CaShape::Tls)?;
        let signer =
            ca.issue(&LeafSpec::tls_server(&["signer.test"]).key_type(KeyType::Rsa2048))?;
        let other = ca.issue(&LeafSpec::tls_server(&["other.test"]).key_type(KeyType::Rsa2048))?;
        let ids = [IdAttr {
            attr: "id",
            namespace: "urn:t",
            element: "Doc",
        }];
        let template = concat!(
            r#"<t:Doc xmlns:t="urn:t" id="d"><t:V>1</t:V>"#,
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
            r##"<ds:Reference URI="#d"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
            r#"<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/>"#,
            r#"<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo>"#,
            r#"</ds:Signature></t:Doc>"#,
        );
        let signed = sign(template, &signer.key_pem, &signer.cert_pem, &ids)?;
        let xpath = "//*[local-name()='Signature']";
        verify(&signed, xpath, &signer.cert_pem, &ids)?;
        assert!(verify(&signed, xpath, &other.cert_pem, &ids).is_err());
        let tampered = signed.replace("<t:V>1</t:V>", "<t:V>2</t:V>");
        assert_ne!(tampered, signed);
        assert!(verify(&tampered, xpath, &signer.cert_pem, &ids).is_err());
        Ok(())
    }
}
