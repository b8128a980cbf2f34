//! BER → DER for PKCS#12 input: Windows (CryptoAPI, certutil) and older Java keytool write
//! bundles with indefinite lengths (`0x80` … `00 00`) and constructed OCTET STRINGs (the
//! authSafe content split into chunks); p12-keystore reads DER only.
//!
//! Promises:
//! - [`to_der`] walks the TLV tree generically, with asn1-rs (x509-parser's) reading each
//!   header and writing each DER header: every length becomes definite and minimal, a
//!   constructed OCTET STRING or BIT STRING becomes one primitive string of its chunks,
//!   primitive contents are copied unchanged, everything else is re-encoded recursively. SET OF
//!   is kept in its order: DER would sort it, but nothing p12-keystore reads depends on the
//!   order, and the outer PFX that is walked has no SET at all.
//! - Input that is already DER comes back as the very same bytes (borrowed, not copied).
//! - The PKCS#12 MAC stays valid: it is computed over the content octets of the authSafe OCTET
//!   STRING, which for a chunked string are the chunks concatenated, exactly what the one
//!   primitive string of the output carries. For the same reason the bytes *inside* an OCTET
//!   STRING are never rewritten (they are MACed, or encrypted): only the envelope around them.
//! - Bounded: at most [`MAX_DEPTH`] nested constructed elements; the output is about the size
//!   of the input (which the callers' file-size caps bound), and each level copies it once.
//!   Anything that is not one complete BER element (cut off, trailing bytes, too deep, an
//!   end-of-contents where none belongs) gives `None`, and the caller hands the original bytes
//!   to p12-keystore, which says what is damaged as it did before.
//! - [`pkcs12_to_der`] goes one level further, *inside* the MACed content: Windows also writes
//!   the AuthenticatedSafe (and the SafeContents of its unencrypted parts) with BER, and
//!   computes the MAC over those BER bytes. Those are rewritten to DER too, but only after the
//!   MAC has been verified over the content octets exactly as they were in the file (RFC 7292
//!   §4, what OpenSSL checks), with the password; the rewritten bundle then carries a MAC
//!   computed anew over the DER content with the same algorithm, salt, iteration count and
//!   password, so p12-keystore's own check passes. A MAC that does not verify is
//!   [`Pkcs12Der::WrongMac`] (a wrong password, as p12-keystore would say for DER). Anything
//!   it cannot do (not a PFX, an unknown MAC digest, more than [`MAX_MAC_ITERATIONS`],
//!   unreadable inner BER) leaves the bundle as [`to_der`] made it, and p12-keystore says what
//!   is wrong. Encrypted parts are never touched: their plaintext is p12-keystore's business.

use std::borrow::Cow;

use aws_lc_rs::hmac;
use pkcs12::cms::cert::x509::der::asn1::{ObjectIdentifier, OctetString};
use pkcs12::cms::cert::x509::der::{Any, Decode, Encode};
use pkcs12::cms::content_info::ContentInfo;
use pkcs12::kdf::{Pkcs12KeyType, derive_key_utf8};
use pkcs12::{MacData, Pfx};
use x509_parser::asn1_rs::{Class, FromBer, Header, Length, Tag, ToDer};

/// How many constructed elements may nest. A PFX nests four deep around its authSafe octets;
/// the limit keeps a hostile file from recursing the stack away.
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not one BER element this module can rewrite; never shown to anyone (the
/// caller falls back to the original bytes).
#[derive(Debug)]
struct NotBer;

type Walk<'a> = Result<&'a [u8], NotBer>;

/// `bytes` as DER if they are one BER element, the same bytes if they already are DER, `None`
/// if they are not one complete BER element (see the module promises).
pub fn to_der(bytes: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut out = Vec::with_capacity(bytes.len());
    let rest = element(bytes, 1, &mut out).ok()?;
    if !rest.is_empty() {
        return None;
    }
    if out == bytes {
        Some(Cow::Borrowed(bytes))
    } else {
        Some(Cow::Owned(out))
    }
}

/// The most MAC iterations [`pkcs12_to_der`] computes (p12-keystore's own limit).
pub const MAX_MAC_ITERATIONS: i32 = 1_000_000;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA224: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.4");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// What [`pkcs12_to_der`] makes of a PKCS#12 file.
#[derive(Debug, PartialEq, Eq)]
pub enum Pkcs12Der<'a> {
    /// The bytes to hand to p12-keystore: DER wherever this module could make it so, else
    /// the file as it was.
    Bytes(Cow<'a, [u8]>),
    /// The MACed content had to be rewritten, and its MAC does not verify with the password
    /// over the file's own bytes: the wrong password (or a file changed after it was MACed,
    /// which OpenSSL cannot tell apart either).
    WrongMac,
}

/// A PKCS#12 file `bytes` as DER for p12-keystore, inside the MACed content too (see the
/// module promises); `password` verifies and re-computes the MAC when that content changes.
pub fn pkcs12_to_der<'a>(bytes: &'a [u8], password: &str) -> Pkcs12Der<'a> {
    let Some(outer) = to_der(bytes) else {
        return Pkcs12Der::Bytes(Cow::Borrowed(bytes));
    };
    match inner_to_der(&outer, password) {
        Inner::Unchanged => Pkcs12Der::Bytes(outer),
        Inner::Rewritten(der) => Pkcs12Der::Bytes(Cow::Owned(der)),
        Inner::WrongMac => Pkcs12Der::WrongMac,
    }
}

enum Inner {
    Unchanged,
    Rewritten(Vec<u8>),
    WrongMac,
}

/// The DER PFX `pfx_der` with its authSafe content made DER and re-MACed, if it had BER.
fn inner_to_der(pfx_der: &[u8], password: &str) -> Inner {
    let Ok(mut pfx) = Pfx::from_der(pfx_der) else {
        return Inner::Unchanged;
    };
    if pfx.auth_safe.content_type != ID_DATA {
        return Inner::Unchanged;
    }
    let Ok(octets) = pfx.auth_safe.content.decode_as::<OctetString>() else {
        return Inner::Unchanged;
    };
    // The content octets as the file has them (chunks joined): what the MAC covers.
    let original = octets.as_bytes();
    let Some(normalised) = auth_safe_to_der(original) else {
        return Inner::Unchanged;
    };
    if let Some(mac) = &mut pfx.mac_data {
        match remac(mac, password, original, &normalised) {
            Remac::Done => {}
            Remac::WrongMac => return Inner::WrongMac,
            Remac::Unsupported => return Inner::Unchanged,
        }
    }
    let rewritten = OctetString::new(normalised)
        .and_then(|octets| Any::encode_from(&octets))
        .and_then(|content| {
            pfx.auth_safe.content = content;
            pfx.to_der()
        });
    match rewritten {
        Ok(der) => Inner::Rewritten(der),
        Err(_) => Inner::Unchanged,
    }
}

/// The AuthenticatedSafe `octets` with DER inside the unencrypted parts' SafeContents too;
/// `None` if it already is DER throughout or cannot be read.
fn auth_safe_to_der(octets: &[u8]) -> Option<Vec<u8>> {
    let safe = to_der(octets)?;
    let mut changed = matches!(safe, Cow::Owned(_));
    let mut infos = Vec::<ContentInfo>::from_der(&safe).ok()?;
    for info in &mut infos {
        if info.content_type != ID_DATA {
            continue;
        }
        let Ok(contents) = info.content.decode_as::<OctetString>() else {
            continue;
        };
        if let Some(Cow::Owned(der)) = to_der(contents.as_bytes()) {
            info.content = Any::encode_from(&OctetString::new(der).ok()?).ok()?;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    infos.to_der().ok()
}

enum Remac {
    Done,
    WrongMac,
    Unsupported,
}

/// Verifies `mac` over `original` with `password`, then replaces its digest with the MAC over
/// `normalised` (same digest, salt and iterations).
fn remac(mac: &mut MacData, password: &str, original: &[u8], normalised: &[u8]) -> Remac {
    let iterations = mac.iterations;
    if !(1..=MAX_MAC_ITERATIONS).contains(&iterations) {
        return Remac::Unsupported;
    }
    let salt = mac.mac_salt.as_bytes();
    let oid = mac.mac.algorithm.oid;
    let kind = Pkcs12KeyType::Mac;
    // RFC 7292 Appendix B: the key is as long as the digest's output.
    let derived = if oid == ID_SHA1 {
        derive_key_utf8::<sha1::Sha1>(password, salt, kind, iterations, 20)
            .map(|k| (hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, k))
    } else if oid == ID_SHA224 {
        derive_key_utf8::<sha2::Sha224>(password, salt, kind, iterations, 28)
            .map(|k| (hmac::HMAC_SHA224, k))
    } else if oid == ID_SHA256 {
        derive_key_utf8::<sha2::Sha256>(password, salt, kind, iterations, 32)
            .map(|k| (hmac::HMAC_SHA256, k))
    } else if oid == ID_SHA384 {
        derive_key_utf8::<sha2::Sha384>(password, salt, kind, iterations, 48)
            .map(|k| (hmac::HMAC_SHA384, k))
    } else if oid == ID_SHA512 {
        derive_key_utf8::<sha2::Sha512>(password, salt, kind, iterations, 64)
            .map(|k| (hmac::HMAC_SHA512, k))
    } else {
        return Remac::Unsupported;
    };
    let Ok((algorithm, key)) = derived else {
        return Remac::Unsupported;
    };
    let key = hmac::Key::new(algorithm, &zeroize::Zeroizing::new(key));
    if hmac::verify(&key, original, mac.mac.digest.as_bytes()).is_err() {
        return Remac::WrongMac;
    }
    match OctetString::new(hmac::sign(&key, normalised).as_ref()) {
        Ok(digest) => {
            mac.mac.digest = digest;
            Remac::Done
        }
        Err(_) => Remac::Unsupported,
    }
}

/// Writes the element at the start of `input` as DER to `out`; returns what follows it.
fn element<'a>(input: &'a [u8], depth: usize, out: &mut Vec<u8>) -> Walk<'a> {
    let (after, header) = Header::from_ber(input).map_err(|_| NotBer)?;
    if header.class() == Class::Universal && header.tag() == Tag::EndOfContent {
        return Err(NotBer);
    }
    if !header.is_constructed() {
        // asn1-rs refuses an indefinite length on a primitive element.
        let (content, rest) = definite(after, header.length())?;
        write_header(out, &header, false, header.tag(), content.len())?;
        out.extend_from_slice(content);
        return Ok(rest);
    }
    if depth > MAX_DEPTH {
        return Err(NotBer);
    }
    let string = header.class() == Class::Universal
        && matches!(header.tag(), Tag::OctetString | Tag::BitString);
    let mut body = Vec::new();
    let rest = if string {
        let mut chunks = Chunks::default();
        let rest = children(after, header.length(), |child| {
            string_chunk(child, header.tag(), depth + 1, &mut chunks)
        })?;
        chunks.finish(header.tag(), &mut body);
        write_header(out, &header, false, header.tag(), body.len())?;
        rest
    } else {
        let rest = children(after, header.length(), |child| {
            element(child, depth + 1, &mut body)
        })?;
        write_header(out, &header, true, header.tag(), body.len())?;
        rest
    };
    out.extend_from_slice(&body);
    Ok(rest)
}

/// The contents of a definite-length element and what follows it.
fn definite(after: &[u8], length: Length) -> Result<(&[u8], &[u8]), NotBer> {
    match length {
        Length::Definite(n) if n <= after.len() => Ok(after.split_at(n)),
        _ => Err(NotBer),
    }
}

/// Feeds each element inside a constructed element's contents (which start at `after`) to
/// `each`; returns what follows the constructed element.
fn children<'a>(
    after: &'a [u8],
    length: Length,
    mut each: impl FnMut(&'a [u8]) -> Walk<'a>,
) -> Walk<'a> {
    match length {
        Length::Definite(_) => {
            let (mut content, rest) = definite(after, length)?;
            while !content.is_empty() {
                content = each(content)?;
            }
            Ok(rest)
        }
        Length::Indefinite => {
            let mut input = after;
            loop {
                if let Some(rest) = input.strip_prefix(&[0, 0]) {
                    return Ok(rest);
                }
                if input.is_empty() {
                    return Err(NotBer);
                }
                input = each(input)?;
            }
        }
    }
}

/// The pieces of a constructed OCTET STRING or BIT STRING.
#[derive(Default)]
struct Chunks {
    data: Vec<u8>,
    /// A BIT STRING chunk's unused bits; only the last chunk may have any.
    unused: u8,
}

impl Chunks {
    fn finish(self, tag: Tag, body: &mut Vec<u8>) {
        if tag == Tag::BitString {
            body.push(self.unused);
        }
        body.extend_from_slice(&self.data);
    }
}

/// One chunk of a constructed string of type `tag`: a primitive string of the same type, or
/// again a constructed one (X.690 8.7.3, 8.6.4).
fn string_chunk<'a>(input: &'a [u8], tag: Tag, depth: usize, chunks: &mut Chunks) -> Walk<'a> {
    let (after, header) = Header::from_ber(input).map_err(|_| NotBer)?;
    if header.class() != Class::Universal || header.tag() != tag {
        return Err(NotBer);
    }
    if header.is_constructed() {
        if depth > MAX_DEPTH {
            return Err(NotBer);
        }
        return children(after, header.length(), |child| {
            string_chunk(child, tag, depth + 1, chunks)
        });
    }
    let (content, rest) = definite(after, header.length())?;
    if tag == Tag::BitString {
        let (&unused, bits) = content.split_first().ok_or(NotBer)?;
        if chunks.unused != 0 || unused > 7 || (bits.is_empty() && unused != 0) {
            return Err(NotBer);
        }
        chunks.unused = unused;
        chunks.data.extend_from_slice(bits);
    } else {
        chunks.data.extend_from_slice(content);
    }
    Ok(rest)
}

fn write_header(
    out: &mut Vec<u8>,
    header: &Header<'_>,
    constructed: bool,
    tag: Tag,
    len: usize,
) -> Result<(), NotBer> {
    Header::new(header.class(), constructed, tag, Length::Definite(len))
        .write_der_header(out)
        .map(drop)
        .map_err(|_| NotBer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::asn1_rs::{Any, FromDer};

    fn der(bytes: &[u8]) -> Vec<u8> {
        to_der(bytes).expect("BER").into_owned()
    }

    /// Every element of `bytes`, recursively, parses as DER (definite, minimal lengths).
    fn is_der(bytes: &[u8]) -> bool {
        fn walk(mut input: &[u8]) -> bool {
            while !input.is_empty() {
                let Ok((rest, any)) = Any::from_der(input) else {
                    return false;
                };
                if any.header.is_constructed() && !walk(any.data) {
                    return false;
                }
                input = rest;
            }
            true
        }
        walk(bytes)
    }

    /// A DER bundle made by `openssl pkcs12 -export` with `args`, password `password`.
    fn openssl_p12(dir: &std::path::Path, password: &str, args: &[&str]) -> Vec<u8> {
        let ca = certvakt_testkit::TestCa::new(certvakt_testkit::CaShape::Tls).expect("ca");
        let issued = ca
            .issue(&certvakt_testkit::LeafSpec::tls_server(&["mac.example"]))
            .expect("issue");
        let paths = issued.write_pem(dir, "leaf").expect("pem");
        let out = dir.join("out.p12");
        let passout = format!("pass:{password}");
        let mut all = vec![
            "pkcs12".as_ref(),
            "-export".as_ref(),
            "-inkey".as_ref(),
            paths.key.as_os_str(),
            "-in".as_ref(),
            paths.fullchain.as_os_str(),
            "-passout".as_ref(),
            passout.as_ref(),
            "-out".as_ref(),
            out.as_os_str(),
        ];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        let status = std::process::Command::new("openssl")
            .args(all)
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl pkcs12 -export {args:?}");
        std::fs::read(out).expect("read")
    }

    #[test]
    fn the_mac_check_agrees_with_openssl_for_every_digest() {
        // OpenSSL's MACs are the test vectors: computed by OpenSSL over its own DER content,
        // they verify here with the password and with no other, and re-computing them over
        // the same bytes gives the same digest.
        let dir = tempfile::tempdir().expect("tempdir");
        for macalg in ["sha1", "sha224", "sha256", "sha384", "sha512"] {
            let p12 = openssl_p12(dir.path(), "Vinter-2026", &["-macalg", macalg]);
            let pfx = Pfx::from_der(&p12).expect("PFX");
            let octets = pfx
                .auth_safe
                .content
                .decode_as::<OctetString>()
                .expect("octets");
            let original = octets.as_bytes();
            let mut mac = pfx.mac_data.expect("a MAC");
            let before = mac.mac.digest.clone();
            for wrong in ["Vinter-2025", ""] {
                assert!(
                    matches!(
                        remac(&mut mac.clone(), wrong, original, original),
                        Remac::WrongMac
                    ),
                    "{macalg} with {wrong:?}"
                );
            }
            assert!(
                matches!(
                    remac(&mut mac, "Vinter-2026", original, original),
                    Remac::Done
                ),
                "{macalg}"
            );
            assert_eq!(mac.mac.digest, before, "{macalg}");
        }
        // A digest this module does not know, and too many iterations, are left to
        // p12-keystore (which refuses them itself).
        let p12 = openssl_p12(dir.path(), "x", &["-macalg", "sha512-224"]);
        let pfx = Pfx::from_der(&p12).expect("PFX");
        let octets = pfx
            .auth_safe
            .content
            .decode_as::<OctetString>()
            .expect("octets");
        let mut mac = pfx.mac_data.expect("a MAC");
        let original = octets.as_bytes();
        assert!(matches!(
            remac(&mut mac.clone(), "x", original, original),
            Remac::Unsupported
        ));
        mac.mac.algorithm.oid = ID_SHA256;
        mac.iterations = MAX_MAC_ITERATIONS + 1;
        assert!(matches!(
            remac(&mut mac, "x", original, original),
            Remac::Unsupported
        ));
    }

    #[test]
    fn ber_inside_the_mac_becomes_der_with_a_mac_p12_keystore_accepts() {
        let ca = certvakt_testkit::TestCa::new(certvakt_testkit::CaShape::Tls).expect("ca");
        let issued = ca
            .issue(&certvakt_testkit::LeafSpec::tls_server(&["inside.example"]))
            .expect("issue");
        let der = issued.pkcs12_bytes("passord").expect("p12");
        // DER, and BER only outside the MACed content, stay what to_der makes of them.
        assert_eq!(
            pkcs12_to_der(&der, "passord"),
            Pkcs12Der::Bytes(Cow::Borrowed(&der[..]))
        );
        let outside = certvakt_testkit::ber::pkcs12_to_ber(&der).expect("ber");
        assert_eq!(
            pkcs12_to_der(&outside, "passord"),
            Pkcs12Der::Bytes(Cow::Owned(der.clone()))
        );
        // Inside: the AuthenticatedSafe and the SafeContents in it are DER afterwards, and
        // p12-keystore verifies the new MAC.
        let inside = certvakt_testkit::ber::pkcs12_to_ber_inside(&der, "passord").expect("ber");
        let outer = to_der(&inside).expect("BER");
        let pfx = Pfx::from_der(&outer).expect("PFX");
        let octets = pfx
            .auth_safe
            .content
            .decode_as::<OctetString>()
            .expect("octets");
        assert!(!is_der(octets.as_bytes()), "the test bundle has BER inside");
        let Pkcs12Der::Bytes(fixed) = pkcs12_to_der(&inside, "passord") else {
            panic!("the right password");
        };
        assert!(is_der(&fixed));
        let pfx = Pfx::from_der(&fixed).expect("PFX");
        let octets = pfx
            .auth_safe
            .content
            .decode_as::<OctetString>()
            .expect("octets");
        assert!(is_der(octets.as_bytes()));
        for info in Vec::<ContentInfo>::from_der(octets.as_bytes()).expect("infos") {
            if info.content_type == ID_DATA {
                let contents = info.content.decode_as::<OctetString>().expect("contents");
                assert!(is_der(contents.as_bytes()));
            }
        }
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&fixed, "passord").expect("read");
        assert_eq!(archive.keys.len(), 1);
        assert_eq!(pkcs12_to_der(&inside, "feil"), Pkcs12Der::WrongMac);
        // Without a MAC there is nothing to check or renew.
        let mut pfx = Pfx::from_der(&outer).expect("PFX");
        pfx.mac_data = None;
        let unmaced = pfx.to_der().expect("DER");
        let Pkcs12Der::Bytes(fixed) = pkcs12_to_der(&unmaced, "any") else {
            panic!("no MAC to fail");
        };
        assert!(is_der(&fixed));
        assert!(Pfx::from_der(&fixed).expect("PFX").mac_data.is_none());
    }

    #[test]
    fn der_comes_back_as_the_same_bytes_uncopied() {
        let ca = certvakt_testkit::TestCa::new(certvakt_testkit::CaShape::Tls).expect("ca");
        let issued = ca
            .issue(&certvakt_testkit::LeafSpec::tls_server(&["der.example"]))
            .expect("issue");
        for bytes in [
            issued.pkcs12_bytes("x").expect("p12"),
            issued.cert_der.clone(),
            b"\x30\x00".to_vec(),
        ] {
            assert!(is_der(&bytes));
            let out = to_der(&bytes).expect("DER is BER too");
            assert!(matches!(out, Cow::Borrowed(_)), "copied");
            assert_eq!(&*out, bytes.as_slice());
        }
    }

    #[test]
    fn nested_indefinite_lengths_and_chunked_strings_become_der() {
        // SEQUENCE (indefinite) {
        //   SEQUENCE (indefinite) { INTEGER 5 }
        //   OCTET STRING (constructed, indefinite) { aa bb, OCTET STRING (constructed) { cc } }
        //   [0] (indefinite) { NULL }
        // }
        let ber = b"\x30\x80\
            \x30\x80\x02\x01\x05\x00\x00\
            \x24\x80\x04\x02\xaa\xbb\x24\x03\x04\x01\xcc\x00\x00\
            \xa0\x80\x05\x00\x00\x00\
            \x00\x00";
        let out = der(ber);
        assert!(is_der(&out), "{out:02x?}");
        assert_eq!(
            out,
            b"\x30\x0e\x30\x03\x02\x01\x05\x04\x03\xaa\xbb\xcc\xa0\x02\x05\x00"
        );
        // Long lengths: a 70,000-byte string in 1000-byte chunks, and a non-minimal length.
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut ber = b"\x30\x80\x24\x80".to_vec();
        for chunk in data.chunks(1000) {
            ber.extend_from_slice(&[0x04, 0x82]);
            ber.extend_from_slice(&u16::try_from(chunk.len()).expect("len").to_be_bytes());
            ber.extend_from_slice(chunk);
        }
        ber.extend_from_slice(b"\x00\x00\x02\x81\x01\x07\x00\x00");
        let out = der(&ber);
        assert!(is_der(&out));
        let (rest, seq) = Any::from_der(&out).expect("sequence");
        assert!(rest.is_empty());
        let (rest, string) = Any::from_der(seq.data).expect("string");
        assert_eq!(string.tag(), Tag::OctetString);
        assert_eq!(string.data, data.as_slice());
        assert_eq!(rest, b"\x02\x01\x07");
    }

    #[test]
    fn a_chunked_bit_string_keeps_the_last_chunks_unused_bits() {
        let out = der(b"\x23\x80\x03\x02\x00\xaa\x03\x02\x04\xb0\x00\x00");
        assert_eq!(out, b"\x03\x03\x04\xaa\xb0");
        // Only the last chunk may leave bits unused.
        assert!(to_der(b"\x23\x80\x03\x02\x04\xa0\x03\x02\x00\xb0\x00\x00").is_none());
    }

    #[test]
    fn what_is_not_one_complete_ber_element_is_refused() {
        let good = b"\x30\x80\x24\x80\x04\x02\xaa\xbb\x00\x00\x00\x00";
        assert!(to_der(good).is_some());
        for n in 0..good.len() {
            assert!(to_der(&good[..n]).is_none(), "cut at {n}");
        }
        let mut trailing = good.to_vec();
        trailing.push(0x0a);
        assert!(to_der(&trailing).is_none(), "trailing bytes");
        for bad in [
            // A chunk of another type inside a constructed OCTET STRING.
            &b"\x24\x80\x02\x01\x05\x00\x00"[..],
            // An end-of-contents inside a definite length.
            b"\x30\x02\x00\x00",
            // A definite length beyond the input.
            b"\x30\x05\x02\x01\x05",
            // An indefinite length on a primitive element.
            b"\x04\x80\xaa\x00\x00",
            b"",
            b"hello world",
        ] {
            assert!(to_der(bad).is_none(), "{bad:02x?}");
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let nested = |depth: usize, indefinite: bool| {
            let mut bytes = Vec::new();
            if indefinite {
                bytes.extend(std::iter::repeat_n([0x30, 0x80], depth).flatten());
                bytes.extend(std::iter::repeat_n([0x00, 0x00], depth).flatten());
            } else {
                // Definite lengths from the inside out; each level adds two bytes.
                for level in 0..depth {
                    bytes.splice(0..0, [0x30, u8::try_from(2 * level).expect("short")]);
                }
            }
            bytes
        };
        for indefinite in [true, false] {
            let at_limit = nested(MAX_DEPTH, indefinite);
            assert!(to_der(&at_limit).is_some(), "{MAX_DEPTH} levels are fine");
            assert!(to_der(&nested(MAX_DEPTH + 1, indefinite)).is_none());
        }
        // A constructed string nests as deep as it likes only up to the same limit.
        let mut bomb: Vec<u8> = std::iter::repeat_n([0x24, 0x80], MAX_DEPTH + 1)
            .flatten()
            .collect();
        bomb.extend(std::iter::repeat_n([0x00, 0x00], MAX_DEPTH + 1).flatten());
        assert!(to_der(&bomb).is_none());
        // And a million levels neither overflow the stack nor take long.
        let mut huge: Vec<u8> = std::iter::repeat_n([0x30, 0x80], 1_000_000)
            .flatten()
            .collect();
        huge.extend(std::iter::repeat_n([0x00, 0x00], 1_000_000).flatten());
        assert!(to_der(&huge).is_none());
    }
}
