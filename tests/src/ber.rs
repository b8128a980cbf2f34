//! PKCS#12 bundles as Windows (CryptoAPI, certutil) and older Java keytool write them: BER,
//! made from a DER bundle (e.g. [`crate::IssuedCert::pkcs12_bytes`]).
//!
//! [`pkcs12_to_ber`] gives every constructed element outside the authSafe octets (the PFX,
//! the authSafe ContentInfo and its `[0]`, the MacData and what it holds) an indefinite
//! length, and splits the authSafe OCTET STRING into a constructed one of [`CHUNK`]-byte
//! pieces. The authSafe octets themselves stay as they are: the MAC is computed over them, so
//! the bundle still opens with its password, in OpenSSL too. The DER tree is read with
//! asn1-rs (x509-parser's); the BER bytes are written here.

use anyhow::{Context, Result, anyhow, ensure};
use x509_parser::asn1_rs::{Any, Class, FromDer, Header, Length, Tag, ToDer};

/// The size of the authSafe chunks (Windows writes 1000-byte pieces).
pub const CHUNK: usize = 1000;

/// The DER PKCS#12 `der` re-encoded as BER (see the module docs).
pub fn pkcs12_to_ber(der: &[u8]) -> Result<Vec<u8>> {
    let (rest, pfx) = Any::from_der(der).map_err(|e| anyhow!("the bundle is not DER: {e}"))?;
    ensure!(rest.is_empty(), "bytes after the bundle's PFX");
    ensure!(
        pfx.tag() == Tag::Sequence,
        "the bundle is not a PFX SEQUENCE"
    );
    let mut out = Vec::with_capacity(der.len() + 64);
    element(der, false, &mut out)?;
    Ok(out)
}

/// Writes the DER element at the start of `input` as BER; returns what follows it.
/// `in_content` says whether its parent is a ContentInfo's `[0]`.
fn element<'a>(input: &'a [u8], in_content: bool, out: &mut Vec<u8>) -> Result<&'a [u8]> {
    let (rest, any) = Any::from_der(input).map_err(|e| anyhow!("reading DER: {e}"))?;
    let raw = &input[..input.len() - rest.len()];
    let header = &any.header;
    if header.is_constructed() {
        write_header(out, header.class(), true, header.tag(), Length::Indefinite)?;
        let content_zero = header.class() == Class::ContextSpecific && header.tag() == Tag(0);
        let mut inner = any.data;
        while !inner.is_empty() {
            inner = element(inner, content_zero, out)?;
        }
        out.extend_from_slice(&[0, 0]);
    } else if in_content && header.class() == Class::Universal && header.tag() == Tag::OctetString {
        write_header(
            out,
            Class::Universal,
            true,
            Tag::OctetString,
            Length::Indefinite,
        )?;
        for chunk in any.data.chunks(CHUNK) {
            write_header(
                out,
                Class::Universal,
                false,
                Tag::OctetString,
                Length::Definite(chunk.len()),
            )?;
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&[0, 0]);
    } else {
        out.extend_from_slice(raw);
    }
    Ok(rest)
}

fn write_header(
    out: &mut Vec<u8>,
    class: Class,
    constructed: bool,
    tag: Tag,
    length: Length,
) -> Result<()> {
    Header::new(class, constructed, tag, length)
        .write_der_header(out)
        .context("writing a BER header")?;
    Ok(())
}
