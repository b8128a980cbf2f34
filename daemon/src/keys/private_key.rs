//! [`PrivateKey`]: generating keys, reading key files, and the PKCS#8 forms they are written in.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self as lc, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use certvakt_plugin_api::profile::KeyAlgorithm;
use x509_parser::asn1_rs::{Any, FromDer, Tag};
use x509_parser::pem::Pem;
use zeroize::Zeroizing;

use super::{KeyError, KeyFileProblem, pem_encode_secret};

/// A private key certvakt can use: RSA 2048/3072/4096 or EC P-256/P-384.
///
/// Holds the key as PKCS#8 DER (cleared when dropped), its public half, and aws-lc's parsed
/// form for signing. Not `Clone`: every copy of a key is one more place it lives; share it with
/// an `Arc` instead.
pub struct PrivateKey {
    algorithm: KeyAlgorithm,
    pkcs8: Zeroizing<Vec<u8>>,
    public_key: Vec<u8>,
    pair: Pair,
}

/// aws-lc's parsed key. ECDSA keys are parsed for DER (ASN.1) signatures.
pub(super) enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// Generates a new key with aws-lc (the same calls rcgen's `KeyPair::generate_rsa_for` and
/// `generate_for` make, minus rcgen's copy of the key that is not cleared on drop).
pub fn generate(algorithm: KeyAlgorithm) -> Result<PrivateKey, KeyError> {
    let rsa = |size| match RsaKeyPair::generate(size) {
        Ok(pair) => PrivateKey::from_rsa(pair, KeyError::Generate(algorithm)),
        Err(_) => Err(KeyError::Generate(algorithm)),
    };
    let ec = |curve| match EcdsaKeyPair::generate(curve) {
        Ok(pair) => PrivateKey::from_ec(algorithm, pair, KeyError::Generate(algorithm)),
        Err(_) => Err(KeyError::Generate(algorithm)),
    };
    match algorithm {
        KeyAlgorithm::Rsa2048 => rsa(KeySize::Rsa2048),
        KeyAlgorithm::Rsa3072 => rsa(KeySize::Rsa3072),
        KeyAlgorithm::Rsa4096 => rsa(KeySize::Rsa4096),
        KeyAlgorithm::EcP256 => ec(&lc::ECDSA_P256_SHA256_ASN1_SIGNING),
        KeyAlgorithm::EcP384 => ec(&lc::ECDSA_P384_SHA384_ASN1_SIGNING),
    }
}

impl PrivateKey {
    /// Reads a PEM key: PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`; the first key block counts, other blocks are skipped.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        Self::from_bytes(pem.as_bytes())
    }

    /// Reads a key file's contents, PEM (as [`PrivateKey::from_pem`]) or DER (as
    /// [`PrivateKey::from_der`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let der = private_key_der(bytes)?;
        Self::from_der(&der)
    }

    /// Reads a DER key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        if is_encrypted_pkcs8(der) {
            return Err(KeyFileProblem::Encrypted.into());
        }
        let not_a_key = || KeyError::KeyFile(KeyFileProblem::NotAKey);
        let pkcs8_rsa = match RsaKeyPair::from_pkcs8(der) {
            Ok(pair) => return Self::from_rsa(pair, not_a_key()),
            Err(rejected) => rejected,
        };
        let curves: [(KeyAlgorithm, &'static EcdsaSigningAlgorithm); 2] = [
            (KeyAlgorithm::EcP256, &lc::ECDSA_P256_SHA256_ASN1_SIGNING),
            (KeyAlgorithm::EcP384, &lc::ECDSA_P384_SHA384_ASN1_SIGNING),
        ];
        for (algorithm, curve) in curves {
            // Accepts both PKCS#8 and SEC1 for the given curve.
            if let Ok(pair) = EcdsaKeyPair::from_private_key_der(curve, der) {
                return Self::from_ec(algorithm, pair, not_a_key());
            }
        }
        let pkcs1_rsa = match RsaKeyPair::from_der(der) {
            Ok(pair) => return Self::from_rsa(pair, not_a_key()),
            Err(rejected) => rejected,
        };
        Err(unsupported(der, &[pkcs8_rsa, pkcs1_rsa]))
    }

    /// The key's algorithm and size.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key as it appears in the subjectPublicKey BIT STRING of a certificate or
    /// CSR: the RSAPublicKey DER for RSA, the uncompressed point for EC.
    pub fn public_key_raw(&self) -> Vec<u8> {
        self.public_key.clone()
    }

    /// The public key's SubjectPublicKeyInfo (DER), as a certificate for this key carries it:
    /// what a TLSA `3 1 1` record or an HPKP-style pin hashes.
    pub fn spki_der(&self) -> Result<Vec<u8>, KeyError> {
        let der = match &self.pair {
            Pair::Rsa(pair) => pair.public_key().as_der(),
            Pair::Ec(pair) => pair.public_key().as_der(),
        };
        der.map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::KeyFile(KeyFileProblem::NotAKey))
    }

    /// The key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        self.pkcs8.clone()
    }

    /// The key as a PEM `PRIVATE KEY` block (PKCS#8), LF line endings.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        pem_encode_secret("PRIVATE KEY", &self.pkcs8)
    }

    pub(super) fn pair(&self) -> &Pair {
        &self.pair
    }

    pub(super) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub(super) fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// `on_error` is returned if aws-lc cannot serialise the key it just made or parsed.
    fn from_rsa(pair: RsaKeyPair, on_error: KeyError) -> Result<Self, KeyError> {
        let algorithm = match pair.public_modulus_len() * 8 {
            2048 => KeyAlgorithm::Rsa2048,
            3072 => KeyAlgorithm::Rsa3072,
            4096 => KeyAlgorithm::Rsa4096,
            bits => {
                return Err(KeyError::UnsupportedKey {
                    what: format!("an RSA {bits}-bit key"),
                });
            }
        };
        let Ok(pkcs8) = pair.as_der() else {
            return Err(on_error);
        };
        Ok(Self {
            algorithm,
            pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
            public_key: pair.public_key().as_ref().to_vec(),
            pair: Pair::Rsa(pair),
        })
    }

    fn from_ec(
        algorithm: KeyAlgorithm,
        pair: EcdsaKeyPair,
        on_error: KeyError,
    ) -> Result<Self, KeyError> {
        let Ok(pkcs8) = pair.to_pkcs8v1() else {
            return Err(on_error);
        };
        Ok(Self {
            algorithm,
            pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
            public_key: pair.public_key().as_ref().to_vec(),
            pair: Pair::Ec(pair),
        })
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The DER of the first private key in `bytes` (PEM or DER), unparsed. Shared with the
/// inventory's key check, which accepts more kinds of key than [`PrivateKey`].
pub(crate) fn private_key_der(bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyFileProblem> {
    if !crate::certfile::is_pem(bytes) {
        if bytes.first() != Some(&0x30) {
            return Err(KeyFileProblem::NoKey);
        }
        if is_encrypted_pkcs8(bytes) {
            return Err(KeyFileProblem::Encrypted);
        }
        return Ok(Zeroizing::new(bytes.to_vec()));
    }
    if bytes.windows(22).any(|w| w == b"Proc-Type: 4,ENCRYPTED") {
        return Err(KeyFileProblem::Encrypted);
    }
    let mut labels = Vec::new();
    for block in Pem::iter_from_buffer(bytes) {
        let Ok(pem) = block else {
            return Err(KeyFileProblem::DamagedPem);
        };
        let contents = Zeroizing::new(pem.contents);
        match pem.label.as_str() {
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => return Ok(contents),
            "ENCRYPTED PRIVATE KEY" => return Err(KeyFileProblem::Encrypted),
            other => labels.push(other.to_string()),
        }
    }
    Err(KeyFileProblem::OtherBlocks(labels))
}

/// `EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }`; every
/// unencrypted key form starts its SEQUENCE with an INTEGER instead.
fn is_encrypted_pkcs8(der: &[u8]) -> bool {
    let Ok((_, outer)) = Any::from_der(der) else {
        return false;
    };
    if outer.tag() != Tag::Sequence {
        return false;
    }
    let Ok((rest, algorithm)) = Any::from_der(outer.data) else {
        return false;
    };
    let Ok((_, data)) = Any::from_der(rest) else {
        return false;
    };
    algorithm.tag() == Tag::Sequence && data.tag() == Tag::OctetString
}

/// Names what an unusable key is, where that is cheap to find out.
fn unsupported(der: &[u8], rsa_rejections: &[KeyRejected]) -> KeyError {
    let what = if Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok() {
        "an Ed25519 key"
    } else if EcdsaKeyPair::from_private_key_der(&lc::ECDSA_P521_SHA512_ASN1_SIGNING, der).is_ok() {
        "an EC P-521 key"
    } else if rsa_rejections
        .iter()
        .any(|r| r.description_() == "TooSmall")
    {
        "an RSA key shorter than 2048 bits"
    } else if rsa_rejections
        .iter()
        .any(|r| r.description_() == "TooLarge")
    {
        "an RSA key longer than 8192 bits"
    } else {
        return KeyError::KeyFile(KeyFileProblem::NotAKey);
    };
    KeyError::UnsupportedKey { what: what.into() }
}
