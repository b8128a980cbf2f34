//! PKCS#12 bundles as Windows (CryptoAPI, certutil) and older Java keytool write them: BER,
//! made from a DER bundle (e.g. [`crate::IssuedCert::pkcs12_bytes`]).
//!
//! [`pkcs12_to_ber`] gives every constructed element outside the authSafe octets (the PFX,
//! the authSafe ContentInfo and its `[0]`, the MacData and what it holds) an indefinite
//! length, and splits the authSafe OCTET STRING into a constructed one of [`CHUNK`]-byte
//! pieces. The authSafe octets themselves stay as they are: the MAC is computed over them, so
//! the bundle still opens with its password, in OpenSSL too. The DER tree is read with
//! asn1-rs (x509-parser's); the BER bytes are written here.
//!
//! [`pkcs12_to_ber_inside`] goes further, as Windows does: the MACed content itself, the
//! AuthenticatedSafe, is BER too (indefinite lengths; the SafeContents of its unencrypted
//! parts BER as well, in chunked OCTET STRINGs), and the MAC is computed anew over those BER
//! bytes with the bundle's password, salt and iteration count (RFC 7292 key derivation from
//! the `pkcs12` crate, HMAC from the `hmac` crate). Encrypted parts keep their ciphertext.

use anyhow::{Context, Result, anyhow, bail, ensure};
use hmac::{Hmac, KeyInit, Mac};
use pkcs12::cms::cert::x509::der::asn1::OctetString;
use pkcs12::cms::cert::x509::der::{self, Decode, Encode};
use pkcs12::kdf::{Pkcs12KeyType, derive_key_utf8};
use x509_parser::asn1_rs::{Any, Class, FromDer, Header, Length, Oid, Tag, ToDer};

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

/// The DER PKCS#12 `der` with BER also inside its MACed content, MACed anew with `password`
/// (see the module docs). The bundle's MAC must be HMAC-SHA1 or HMAC-SHA256.
pub fn pkcs12_to_ber_inside(der: &[u8], password: &str) -> Result<Vec<u8>> {
    let mut pfx =
        pkcs12::Pfx::from_der(der).map_err(|e| anyhow!("the bundle is not a PFX: {e}"))?;
    ensure!(
        pfx.auth_safe.content_type.to_string() == "1.2.840.113549.1.7.1",
        "the bundle's authSafe is not id-data"
    );
    let octets = pfx
        .auth_safe
        .content
        .decode_as::<OctetString>()
        .map_err(|e| anyhow!("the authSafe content is not an OCTET STRING: {e}"))?;
    let inner = auth_safe_to_ber(octets.as_bytes())?;
    let mac = pfx.mac_data.as_mut().context("the bundle has no MAC")?;
    let salt = mac.mac_salt.as_bytes().to_vec();
    let kind = Pkcs12KeyType::Mac;
    let digest = match mac.mac.algorithm.oid.to_string().as_str() {
        "1.3.14.3.2.26" => {
            let key = derive_key_utf8::<sha1::Sha1>(password, &salt, kind, mac.iterations, 20)?;
            let mut hmac = Hmac::<sha1::Sha1>::new_from_slice(&key)?;
            hmac.update(&inner);
            hmac.finalize().into_bytes().to_vec()
        }
        "2.16.840.1.101.3.4.2.1" => {
            let key = derive_key_utf8::<sha2::Sha256>(password, &salt, kind, mac.iterations, 32)?;
            let mut hmac = Hmac::<sha2::Sha256>::new_from_slice(&key)?;
            hmac.update(&inner);
            hmac.finalize().into_bytes().to_vec()
        }
        other => bail!("a MAC with digest {other} is not one this writer recomputes"),
    };
    mac.mac.digest = OctetString::new(digest)?;
    pfx.auth_safe.content = der::Any::encode_from(&OctetString::new(inner)?)?;
    pkcs12_to_ber(&pfx.to_der()?)
}

/// The DER AuthenticatedSafe `der` as BER: indefinite lengths, and each id-data part's
/// SafeContents BER in a chunked OCTET STRING.
fn auth_safe_to_ber(der: &[u8]) -> Result<Vec<u8>> {
    let (rest, safe) = Any::from_der(der).map_err(|e| anyhow!("the AuthenticatedSafe: {e}"))?;
    ensure!(
        rest.is_empty() && safe.tag() == Tag::Sequence,
        "the AuthenticatedSafe is not one SEQUENCE"
    );
    let id_data =
        Oid::from(&[1, 2, 840, 113549, 1, 7, 1]).map_err(|e| anyhow!("the id-data OID: {e:?}"))?;
    let mut out = Vec::with_capacity(der.len() + 256);
    write_header(
        &mut out,
        Class::Universal,
        true,
        Tag::Sequence,
        Length::Indefinite,
    )?;
    let mut input = safe.data;
    while !input.is_empty() {
        let (rest, info) = Any::from_der(input).map_err(|e| anyhow!("a ContentInfo: {e}"))?;
        let raw = &input[..input.len() - rest.len()];
        let (after_oid, oid) =
            Oid::from_der(info.data).map_err(|e| anyhow!("a ContentInfo's type: {e}"))?;
        if oid == id_data {
            let (_, zero) = Any::from_der(after_oid).map_err(|e| anyhow!("[0]: {e}"))?;
            let (_, string) = Any::from_der(zero.data).map_err(|e| anyhow!("content: {e}"))?;
            let mut contents = Vec::with_capacity(string.data.len() + 64);
            let rest = element(string.data, false, &mut contents)?;
            ensure!(rest.is_empty(), "bytes after a SafeContents");
            write_header(
                &mut out,
                Class::Universal,
                true,
                Tag::Sequence,
                Length::Indefinite,
            )?;
            out.extend_from_slice(&info.data[..info.data.len() - after_oid.len()]);
            write_header(
                &mut out,
                Class::ContextSpecific,
                true,
                Tag(0),
                Length::Indefinite,
            )?;
            write_header(
                &mut out,
                Class::Universal,
                true,
                Tag::OctetString,
                Length::Indefinite,
            )?;
            for chunk in contents.chunks(CHUNK) {
                let length = Length::Definite(chunk.len());
                write_header(&mut out, Class::Universal, false, Tag::OctetString, length)?;
                out.extend_from_slice(chunk);
            }
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        } else {
            element(raw, false, &mut out)?;
        }
        input = rest;
    }
    out.extend_from_slice(&[0, 0]);
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
