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

use std::borrow::Cow;

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
