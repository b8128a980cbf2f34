//! JSON Web Signatures as ACME uses them (RFC 8555 §6.2, RFC 7515 flattened form).
//!
//! The account key never leaves the host: [`AccountKey`] holds its name and public half, and
//! signing is a [`Host::sign`] call with [`KeyRef::Plugin`]. ECDSA signatures come back as the
//! fixed-size r‖s JWS wants. External account binding is the one MAC made here, with a key
//! the operator put in a file.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certvakt_plugin_api::profile::KeyAlgorithm;
use certvakt_plugin_api::{Host, KeyRef, PluginError, SignatureAlgorithm};
use hmac::{KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// base64url without padding, as JOSE writes everything.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An ACME account key kept by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKey {
    /// The host's name for it (`KeyRef::Plugin(name)`).
    pub name: String,
    pub algorithm: KeyAlgorithm,
    /// The public key as a JWK (RFC 7517).
    pub jwk: Value,
}

impl AccountKey {
    /// The key called `name`, made by the host the first time.
    pub fn load(
        host: &Host<'_>,
        name: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<AccountKey, PluginError> {
        let (public, created) = host.plugin_key(name, algorithm)?;
        if created {
            host.info(format!(
                "made a new ACME account key {name} ({})",
                algorithm.as_str()
            ));
        }
        let jwk = ec_jwk(algorithm, &public)?;
        Ok(AccountKey {
            name: name.to_owned(),
            algorithm,
            jwk,
        })
    }

    /// `ES256` or `ES384`.
    pub fn alg(&self) -> &'static str {
        match self.algorithm {
            KeyAlgorithm::EcP384 => "ES384",
            _ => "ES256",
        }
    }

    /// The RFC 7638 thumbprint: base64url SHA-256 of the JWK's required members in
    /// lexicographic order, without white space.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["crv"].as_str().unwrap_or_default(),
            self.jwk["x"].as_str().unwrap_or_default(),
            self.jwk["y"].as_str().unwrap_or_default(),
        );
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    /// `token.thumbprint` (RFC 8555 §8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint())
    }

    /// A flattened JWS over `payload` (`None`: the empty payload of a POST-as-GET) with the
    /// given protected header members (alg is added).
    pub fn sign(
        &self,
        host: &Host<'_>,
        mut protected: serde_json::Map<String, Value>,
        payload: Option<&Value>,
    ) -> Result<Value, PluginError> {
        protected.insert("alg".into(), json!(self.alg()));
        let protected = b64(Value::Object(protected).to_string().as_bytes());
        let payload = match payload {
            Some(value) => b64(value.to_string().as_bytes()),
            None => String::new(),
        };
        let algorithm = match self.algorithm {
            KeyAlgorithm::EcP384 => SignatureAlgorithm::EcdsaP384Sha384Fixed,
            _ => SignatureAlgorithm::EcdsaP256Sha256Fixed,
        };
        let signature = host.sign(
            KeyRef::Plugin(self.name.clone()),
            algorithm,
            format!("{protected}.{payload}").as_bytes(),
        )?;
        Ok(json!({
            "protected": protected,
            "payload": payload,
            "signature": b64(&signature),
        }))
    }
}

/// The JWK of an uncompressed EC point (`04 || x || y`), as the host hands out public keys.
fn ec_jwk(algorithm: KeyAlgorithm, point: &[u8]) -> Result<Value, PluginError> {
    let (crv, size) = match algorithm {
        KeyAlgorithm::EcP256 => ("P-256", 32),
        KeyAlgorithm::EcP384 => ("P-384", 48),
        other => {
            return Err(PluginError::configuration(format!(
                "account keys are ec-p256 or ec-p384, not {}",
                other.as_str()
            )));
        }
    };
    match point.split_first() {
        Some((0x04, xy)) if xy.len() == 2 * size => {
            let (x, y) = xy.split_at(size);
            Ok(json!({"crv": crv, "kty": "EC", "x": b64(x), "y": b64(y)}))
        }
        _ => Err(PluginError::permanent(format!(
            "the host gave a {}-byte public key for an {crv} account key; expected an \
             uncompressed point of {} bytes",
            point.len(),
            1 + 2 * size
        ))),
    }
}

/// The `externalAccountBinding` member of a newAccount request (RFC 8555 §7.3.4): the
/// account's JWK, MACed with the CA's key.
pub fn external_account_binding(
    kid: &str,
    hmac_key_b64url: &str,
    new_account_url: &str,
    jwk: &Value,
) -> Result<Value, PluginError> {
    let trimmed = hmac_key_b64url.trim().trim_end_matches('=');
    let key = URL_SAFE_NO_PAD.decode(trimmed).map_err(|e| {
        PluginError::configuration(format!(
            "the external account binding key is not base64url ({e}); paste the key exactly as the CA gave it"
        ))
    })?;
    let protected = b64(json!({"alg": "HS256", "kid": kid, "url": new_account_url})
        .to_string()
        .as_bytes());
    let payload = b64(jwk.to_string().as_bytes());
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).map_err(|e| {
        PluginError::configuration(format!("the external account binding key is unusable: {e}"))
    })?;
    mac.update(format!("{protected}.{payload}").as_bytes());
    let tag = mac.finalize().into_bytes();
    Ok(json!({"protected": protected, "payload": payload, "signature": b64(&tag)}))
}

/// The dns-01 TXT value for a key authorisation: base64url SHA-256 (RFC 8555 §8.4).
pub fn dns01_value(key_authorization: &str) -> String {
    b64(&Sha256::digest(key_authorization.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_rfc_7638_over_the_ec_members() {
        // RFC 7638 §3.1 computes over RSA members; for EC the members are crv, kty, x, y.
        // Checked against an independent computation of the same canonical string.
        let key = AccountKey {
            name: "k".into(),
            algorithm: KeyAlgorithm::EcP256,
            jwk: json!({"kty": "EC", "crv": "P-256", "x": "AAA", "y": "BBB"}),
        };
        let expected = b64(&Sha256::digest(
            br#"{"crv":"P-256","kty":"EC","x":"AAA","y":"BBB"}"#,
        ));
        assert_eq!(key.thumbprint(), expected);
        assert_eq!(key.key_authorization("tok"), format!("tok.{expected}"));
    }

    #[test]
    fn jwk_comes_from_an_uncompressed_point() {
        let mut point = vec![4u8];
        point.extend([1u8; 32]);
        point.extend([2u8; 32]);
        let jwk = ec_jwk(KeyAlgorithm::EcP256, &point).unwrap();
        assert_eq!(jwk["x"], b64(&[1u8; 32]));
        assert_eq!(jwk["y"], b64(&[2u8; 32]));
        assert!(ec_jwk(KeyAlgorithm::EcP384, &point).is_err());
        assert!(ec_jwk(KeyAlgorithm::Rsa2048, &point).is_err());
    }

    #[test]
    fn eab_is_an_hs256_jws_over_the_account_key() {
        let jwk = json!({"crv": "P-256", "kty": "EC", "x": "AAA", "y": "BBB"});
        let key = b64(b"0123456789abcdef0123456789abcdef");
        let eab = external_account_binding("kid-1", &key, "https://ca/new-acct", &jwk).unwrap();
        let protected: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(eab["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            protected,
            json!({"alg": "HS256", "kid": "kid-1", "url": "https://ca/new-acct"})
        );
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(
            format!(
                "{}.{}",
                eab["protected"].as_str().unwrap(),
                eab["payload"].as_str().unwrap()
            )
            .as_bytes(),
        );
        assert_eq!(eab["signature"], b64(&mac.finalize().into_bytes()));
        assert!(external_account_binding("k", "not base64!", "u", &jwk).is_err());
    }
}
