//! Signing data with a [`PrivateKey`] for the protocols plugins speak.

use std::fmt;

use aws_lc_rs::error::Unspecified;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self as lc, EcdsaKeyPair, EcdsaSigningAlgorithm, RsaEncoding, RsaKeyPair,
};
use certvakt_plugin_api::profile::KeyAlgorithm;

use super::KeyError;
use super::private_key::{Pair, PrivateKey};

/// A signature scheme: padding or encoding, and hash. The data is hashed by [`sign`].
///
/// ECDSA comes in two encodings of the pair (r, s):
/// - DER, `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (variable length): what
///   X.509, CMS, TLS and `openssl dgst -sign` use.
/// - fixed, r‖s, each left-padded to the curve's size (64 bytes for P-256, 96 for P-384): what
///   an XML-DSig `SignatureValue` holds (RFC 6931 §2.3.6, so WS-Security too) and what JWS
///   (ES256/ES384) holds. The `…Fixed` variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (XML-DSig `rsa-sha256`, JWS RS256).
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (XML-DSig `rsa-sha384`, JWS RS384).
    RsaPkcs1Sha384,
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256, 32-byte salt, trailer 0xbc (JWS PS256).
    RsaPssSha256,
    /// ECDSA on P-256 with SHA-256, DER-encoded signature.
    EcdsaP256Sha256,
    /// ECDSA on P-256 with SHA-256, fixed r‖s signature (64 bytes).
    EcdsaP256Sha256Fixed,
    /// ECDSA on P-384 with SHA-384, DER-encoded signature.
    EcdsaP384Sha384,
    /// ECDSA on P-384 with SHA-384, fixed r‖s signature (96 bytes).
    EcdsaP384Sha384Fixed,
}

impl SignatureAlgorithm {
    /// A name for messages, e.g. `RSA-PSS SHA-256`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha256 => "RSA PKCS#1 v1.5 SHA-256",
            SignatureAlgorithm::RsaPkcs1Sha384 => "RSA PKCS#1 v1.5 SHA-384",
            SignatureAlgorithm::RsaPssSha256 => "RSA-PSS SHA-256",
            SignatureAlgorithm::EcdsaP256Sha256 => "ECDSA P-256 SHA-256",
            SignatureAlgorithm::EcdsaP256Sha256Fixed => "ECDSA P-256 SHA-256 (r||s)",
            SignatureAlgorithm::EcdsaP384Sha384 => "ECDSA P-384 SHA-384",
            SignatureAlgorithm::EcdsaP384Sha384Fixed => "ECDSA P-384 SHA-384 (r||s)",
        }
    }

    /// Whether a key of this algorithm can make such signatures.
    pub fn fits(self, key: KeyAlgorithm) -> bool {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha256
            | SignatureAlgorithm::RsaPkcs1Sha384
            | SignatureAlgorithm::RsaPssSha256 => matches!(
                key,
                KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
            ),
            SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::EcdsaP256Sha256Fixed => {
                key == KeyAlgorithm::EcP256
            }
            SignatureAlgorithm::EcdsaP384Sha384 | SignatureAlgorithm::EcdsaP384Sha384Fixed => {
                key == KeyAlgorithm::EcP384
            }
        }
    }

    /// The key it needs, for messages.
    pub(super) fn key_description(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha256
            | SignatureAlgorithm::RsaPkcs1Sha384
            | SignatureAlgorithm::RsaPssSha256 => "an RSA key",
            SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::EcdsaP256Sha256Fixed => {
                "an EC P-256 key"
            }
            SignatureAlgorithm::EcdsaP384Sha384 | SignatureAlgorithm::EcdsaP384Sha384Fixed => {
                "an EC P-384 key"
            }
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Signs `data` (hashing it with the algorithm's hash) with aws-lc. RSA signatures are as long
/// as the modulus; ECDSA signatures are DER or fixed r‖s as [`SignatureAlgorithm`] says. An
/// algorithm that does not fit the key is refused, never substituted.
pub fn sign(
    key: &PrivateKey,
    algorithm: SignatureAlgorithm,
    data: &[u8],
) -> Result<Vec<u8>, KeyError> {
    if !algorithm.fits(key.algorithm()) {
        return Err(KeyError::SignatureKeyMismatch {
            algorithm,
            key: key.algorithm(),
        });
    }
    let rng = SystemRandom::new();
    let signed = match (key.pair(), algorithm) {
        (Pair::Rsa(pair), SignatureAlgorithm::RsaPkcs1Sha256) => {
            sign_rsa(pair, &lc::RSA_PKCS1_SHA256, &rng, data)
        }
        (Pair::Rsa(pair), SignatureAlgorithm::RsaPkcs1Sha384) => {
            sign_rsa(pair, &lc::RSA_PKCS1_SHA384, &rng, data)
        }
        // Salt length = digest length (32) and MGF1 with the same hash: aws-lc's defaults.
        (Pair::Rsa(pair), SignatureAlgorithm::RsaPssSha256) => {
            sign_rsa(pair, &lc::RSA_PSS_SHA256, &rng, data)
        }
        (
            Pair::Ec(pair),
            SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::EcdsaP384Sha384,
        ) => pair.sign(&rng, data).map(|sig| sig.as_ref().to_vec()),
        // aws-lc binds the signature encoding to the key object, and the stored one signs DER.
        (Pair::Ec(_), SignatureAlgorithm::EcdsaP256Sha256Fixed) => sign_ecdsa_fixed(
            &lc::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.pkcs8(),
            &rng,
            data,
        ),
        (Pair::Ec(_), SignatureAlgorithm::EcdsaP384Sha384Fixed) => sign_ecdsa_fixed(
            &lc::ECDSA_P384_SHA384_FIXED_SIGNING,
            key.pkcs8(),
            &rng,
            data,
        ),
        // Ruled out by `fits` above.
        (Pair::Rsa(_) | Pair::Ec(_), _) => Err(Unspecified),
    };
    signed.map_err(|_| KeyError::Sign(algorithm))
}

fn sign_rsa(
    pair: &RsaKeyPair,
    encoding: &'static dyn RsaEncoding,
    rng: &SystemRandom,
    data: &[u8],
) -> Result<Vec<u8>, Unspecified> {
    let mut signature = vec![0; pair.public_modulus_len()];
    pair.sign(encoding, rng, data, &mut signature)?;
    Ok(signature)
}

fn sign_ecdsa_fixed(
    algorithm: &'static EcdsaSigningAlgorithm,
    pkcs8: &[u8],
    rng: &SystemRandom,
    data: &[u8],
) -> Result<Vec<u8>, Unspecified> {
    let pair = EcdsaKeyPair::from_pkcs8(algorithm, pkcs8).map_err(|_| Unspecified)?;
    Ok(pair.sign(rng, data)?.as_ref().to_vec())
}
