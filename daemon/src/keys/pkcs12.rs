//! PKCS#12 bundles: writing one for a service, reading one an authority delivered (MitID
//! Erhverv, Buypass and Commfides hand out the key that way).

use p12_keystore::error::Error as P12Error;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12Archive,
    PrivateKeyChain,
};
use sha1::{Digest, Sha1};
use x509_parser::certificate::X509Certificate;
use zeroize::Zeroizing;

use super::private_key::PrivateKey;
use super::{KeyError, cert_matches_key, parse_certificate, spki_bits};

/// What a PKCS#12 bundle holds.
#[derive(Debug)]
pub struct Pkcs12Contents {
    /// The bundle's private key; `None` for a bundle of certificates only.
    pub key: Option<PrivateKey>,
    /// The key's certificate (DER).
    pub leaf_der: Vec<u8>,
    /// The other certificates (DER): the leaf's issuers upwards as far as the bundle has them,
    /// then any others in bundle order.
    pub chain_der: Vec<Vec<u8>>,
}

/// Writes `key`, its certificate and the chain (issuer first, root last or absent) as one
/// PKCS#12 bundle. Keys and certificates are encrypted with PBES2 (PBKDF2-HMAC-SHA256,
/// AES-256-CBC, 10,000 iterations) and the bundle is MACed with HMAC-SHA256. The key bag is
/// named `friendly_name` (Java's alias) and paired with the leaf by a localKeyId (the SHA-1 of
/// the leaf, as OpenSSL makes it). Refuses a leaf that does not belong to the key.
pub fn write_pkcs12(
    key: &PrivateKey,
    leaf_der: &[u8],
    chain_der: &[Vec<u8>],
    password: &str,
    friendly_name: &str,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if !cert_matches_key(leaf_der, key)? {
        return Err(KeyError::CertificateKeyMismatch);
    }
    let write_failed = |e: P12Error| KeyError::Pkcs12Write(e.to_string());
    let p12_key = p12_keystore::PrivateKey::from_der(key.pkcs8()).map_err(write_failed)?;
    let mut certs = Vec::with_capacity(1 + chain_der.len());
    certs.push(Certificate::from_der(leaf_der).map_err(write_failed)?);
    for (n, der) in chain_der.iter().enumerate() {
        let cert = Certificate::from_der(der).map_err(|e| KeyError::Certificate {
            problem: format!("number {} of the chain is damaged ({e})", n + 1),
        })?;
        certs.push(cert);
    }
    let local_key_id = Sha1::digest(leaf_der).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        friendly_name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, p12_key, certs)),
    );
    let bytes = store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .write()
        .map_err(write_failed)?;
    Ok(Zeroizing::new(bytes))
}

/// Opens a PKCS#12 bundle: its one private key (if any), the key's certificate and the rest
/// of the chain. The leaf is the certificate paired with the key by localKeyId, or, in bundles
/// without that attribute, the one with the key's public key; a key that belongs to none of
/// the certificates is an error. Without a key, the leaf is the first certificate that is not
/// a CA. Legacy bundles (3DES, RC2) are read too, and so are bundles written with BER
/// (Windows, older Java), also inside the MACed content, through
/// [`crate::ber::pkcs12_to_der`].
pub fn read_pkcs12(bytes: &[u8], password: &str) -> Result<Pkcs12Contents, KeyError> {
    // Input the normaliser cannot read goes to p12-keystore as it is, which says what is wrong.
    let der = match crate::ber::pkcs12_to_der(bytes, password) {
        crate::ber::Pkcs12Der::Bytes(der) => der,
        crate::ber::Pkcs12Der::WrongMac => return Err(KeyError::Pkcs12Password),
    };
    let archive = Pkcs12Archive::from_pkcs12(&der, password).map_err(|e| match e {
        P12Error::MacError(_) | P12Error::UnpadError | P12Error::Pkcs5Error(_) => {
            KeyError::Pkcs12Password
        }
        other => KeyError::Pkcs12Damaged(other.to_string()),
    })?;
    let Pkcs12Archive { keys, certs, .. } = archive;
    if keys.len() > 1 {
        return Err(KeyError::Pkcs12SeveralKeys(keys.len()));
    }
    let mut ders: Vec<Vec<u8>> = Vec::with_capacity(certs.len());
    for bag in &certs {
        let der = bag.cert.as_der();
        if !ders.iter().any(|d| d == der) {
            ders.push(der.to_vec());
        }
    }
    let parsed = ders
        .iter()
        .map(|der| parse_certificate(der))
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        return Err(KeyError::Pkcs12NoCertificate);
    }

    let (key, leaf) = match keys.into_iter().next() {
        Some(bag) => {
            let key = PrivateKey::from_der(bag.key.as_der()).map_err(|e| match e {
                KeyError::KeyFile(_) => {
                    KeyError::Pkcs12Damaged("its private key cannot be read".into())
                }
                other => other,
            })?;
            let paired = bag.local_key_id.as_ref().and_then(|id| {
                certs
                    .iter()
                    .find(|c| c.local_key_id.as_deref() == Some(id.as_ref()))
                    .and_then(|c| ders.iter().position(|d| d == c.cert.as_der()))
            });
            let public_key = key.public_key();
            let leaf = match paired {
                Some(leaf) => leaf,
                None => parsed
                    .iter()
                    .position(|cert| spki_bits(cert) == public_key)
                    .unwrap_or(0),
            };
            if spki_bits(&parsed[leaf]) != public_key {
                return Err(KeyError::Pkcs12KeyMismatch {
                    subject: parsed[leaf].subject().to_string(),
                });
            }
            (Some(key), leaf)
        }
        None => {
            let leaf = parsed.iter().position(|cert| !cert.is_ca()).unwrap_or(0);
            (None, leaf)
        }
    };

    let order = chain_order(&parsed, leaf);
    drop(parsed);
    let mut ders: Vec<Option<Vec<u8>>> = ders.into_iter().map(Some).collect();
    let mut take = |i: usize| ders.get_mut(i).and_then(Option::take).unwrap_or_default();
    let leaf_der = take(leaf);
    let chain_der = order.into_iter().map(&mut take).collect();
    Ok(Pkcs12Contents {
        key,
        leaf_der,
        chain_der,
    })
}

/// Indices of the certificates other than `leaf`: its issuers upwards (by name) as far as
/// they are present, then the rest in their original order.
fn chain_order(certs: &[X509Certificate<'_>], leaf: usize) -> Vec<usize> {
    let mut used = vec![false; certs.len()];
    used[leaf] = true;
    let mut order = Vec::with_capacity(certs.len().saturating_sub(1));
    let mut current = leaf;
    loop {
        let issuer = certs[current].issuer().as_raw();
        if certs[current].subject().as_raw() == issuer {
            break;
        }
        let next = (0..certs.len()).find(|&i| !used[i] && certs[i].subject().as_raw() == issuer);
        let Some(next) = next else {
            break;
        };
        used[next] = true;
        order.push(next);
        current = next;
    }
    order.extend((0..certs.len()).filter(|&i| !used[i]));
    order
}
