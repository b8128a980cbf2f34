//! A helsenorge-like message sender (`protocols/no-nhn.md` §4, §5): it looks a receiver's
//! encryption certificate up in AR, caches it per HER-id, and encrypts messages to the cached
//! certificate. Tests use it to show that after an `E_DS` change senders keep encrypting to
//! the old certificate until their cache expires, so the old decryption key must be kept.
//!
//! Promises:
//! - A lookup is `GetCertificateDetailsForEncryption` over HTTPS on AR's SOAP 1.1 binding, with
//!   HTTP Basic; a fault or non-200 answer is an error carrying AR's message.
//! - The answer is cached per HER-id for [`SenderConfig::cache_seconds`], measured on the
//!   simulator clock; [`MessageSender::lookups`] counts the lookups that went to AR.
//! - The certificate must have keyEncipherment (as Helsenorge.Messaging checks) and an RSA key.
//! - A message is sealed as: 2-byte big-endian length of the wrapped key, the 32-byte content
//!   key wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256), a 12-byte nonce, then the message under
//!   AES-256-GCM (tag appended). [`decrypt`] opens it with a PKCS#8 PEM private key, and fails
//!   with any other key.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::ACTION_PREFIX;
use super::clock::Clock;
use super::lock;
use super::ns::{CERTIFICATE_DETAILS, CP, SOAP11};
use crate::soapd::{PostOptions, post_raw};

/// Where and how a [`MessageSender`] asks AR. Its `Debug` leaves the password out.
#[derive(Clone)]
pub struct SenderConfig {
    /// AR's SOAP 1.1 endpoint (`ArSim::url_basic`).
    pub url_basic: String,
    /// The TLS root to trust (`ArSim::server_root_pem`).
    pub server_root_pem: String,
    pub username: String,
    pub password: String,
    /// How long a looked-up certificate is used before asking AR again (Helsenorge.Messaging's
    /// `CachingInterval`).
    pub cache_seconds: i64,
    /// The simulator clock (`ArSim::clock`).
    pub clock: Clock,
}

impl std::fmt::Debug for SenderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderConfig")
            .field("url_basic", &self.url_basic)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("cache_seconds", &self.cache_seconds)
            .finish_non_exhaustive()
    }
}

/// A sender with its certificate cache.
#[derive(Debug)]
pub struct MessageSender {
    config: SenderConfig,
    /// HER-id → (looked up at, certificate DER).
    cache: Mutex<BTreeMap<i32, (i64, Vec<u8>)>>,
    lookups: Mutex<usize>,
}

impl MessageSender {
    pub fn new(config: SenderConfig) -> MessageSender {
        MessageSender {
            config,
            cache: Mutex::new(BTreeMap::new()),
            lookups: Mutex::new(0),
        }
    }

    /// How many lookups went to AR so far.
    pub fn lookups(&self) -> usize {
        *lock(&self.lookups)
    }

    /// The encryption certificate of `her_id` (DER): cached while fresh, else from AR.
    pub fn encryption_certificate(&self, her_id: i32) -> Result<Vec<u8>> {
        let now = self.config.clock.now();
        if let Some((at, der)) = lock(&self.cache).get(&her_id)
            && now < at + self.config.cache_seconds
        {
            return Ok(der.clone());
        }
        let der = self.look_up(her_id)?;
        lock(&self.cache).insert(her_id, (now, der.clone()));
        Ok(der)
    }

    /// Encrypts `message` to the (cached) encryption certificate of `her_id`.
    pub fn send(&self, her_id: i32, message: &[u8]) -> Result<Vec<u8>> {
        let der = self.encryption_certificate(her_id)?;
        encrypt(&der, message).with_context(|| format!("encrypting to HER-id {her_id}"))
    }

    fn look_up(&self, her_id: i32) -> Result<Vec<u8>> {
        *lock(&self.lookups) += 1;
        let operation = "GetCertificateDetailsForEncryption";
        let body = format!(
            "<s:Envelope xmlns:s=\"{SOAP11}\"><s:Body><{operation} xmlns=\"{CP}\"><herId>{her_id}</herId></{operation}></s:Body></s:Envelope>"
        );
        let action = format!("\"{ACTION_PREFIX}{operation}\"");
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.config.username, self.config.password));
        let authorization = format!("Basic {credentials}");
        let response = post_raw(
            &self.config.url_basic,
            &self.config.server_root_pem,
            &body,
            &PostOptions {
                soap_action: Some(&action),
                ..PostOptions::default()
            },
            &[("Authorization", &authorization)],
        )
        .with_context(|| format!("asking AR at {} for HER-id {her_id}", self.config.url_basic))?;
        let doc = roxmltree::Document::parse(&response.body).map_err(|e| {
            anyhow!(
                "AR answered HTTP {} with no XML for HER-id {her_id}: {e}",
                response.status
            )
        })?;
        if response.status != 200 {
            let reason = doc
                .descendants()
                .find(|n| n.tag_name().name() == "faultstring")
                .map(crate::xmlsec::text)
                .unwrap_or_default();
            bail!(
                "AR refused {operation} for HER-id {her_id} (HTTP {}): {reason}",
                response.status
            );
        }
        let certificate = doc
            .descendants()
            .find(|n| n.has_tag_name((CERTIFICATE_DETAILS, "Certificate")))
            .map(crate::xmlsec::text)
            .ok_or_else(|| anyhow!("AR's answer for HER-id {her_id} has no Certificate"))?;
        base64::engine::general_purpose::STANDARD
            .decode(certificate)
            .with_context(|| format!("AR's Certificate for HER-id {her_id} is not base64"))
    }
}

/// Seals `message` for the certificate `cert_der` (see the module documentation).
pub fn encrypt(cert_der: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| anyhow!("the certificate does not parse: {e}"))?;
    let may_encrypt = matches!(cert.key_usage(), Ok(Some(ku)) if ku.value.key_encipherment());
    if !may_encrypt {
        bail!("the certificate has no keyEncipherment key usage; it is not for encryption");
    }
    let public = PublicEncryptingKey::from_der(cert.public_key().raw)
        .map_err(|e| anyhow!("the certificate's key is not an RSA encryption key: {e}"))?;
    let public = OaepPublicEncryptingKey::new(public)
        .map_err(|_| anyhow!("the certificate's RSA key cannot do OAEP"))?;
    let mut content_key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut content_key).map_err(|_| anyhow!("no random content key"))?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow!("no random nonce"))?;
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let wrapped = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &content_key, &mut wrapped, None)
        .map_err(|_| anyhow!("RSA-OAEP wrapping of the content key failed"))?;
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &content_key).map_err(|_| anyhow!("AES key"))?,
    );
    let mut sealed = message.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut sealed,
    )
    .map_err(|_| anyhow!("AES-256-GCM sealing failed"))?;
    let length = u16::try_from(wrapped.len()).context("the wrapped key is too long")?;
    let mut out = Vec::with_capacity(2 + wrapped.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(wrapped);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`encrypt`] sealed, with the PKCS#8 PEM private key `key_pem`. `Err` when the
/// key is not the one it was sealed for (or the data is damaged).
pub fn decrypt(key_pem: &str, ciphertext: &[u8]) -> Result<Vec<u8>> {
    let block = pem::parse(key_pem).context("the private key is not PEM")?;
    let private = PrivateDecryptingKey::from_pkcs8(block.contents())
        .map_err(|e| anyhow!("the private key is not an RSA PKCS#8 key: {e}"))?;
    let private = OaepPrivateDecryptingKey::new(private)
        .map_err(|_| anyhow!("the RSA key cannot do OAEP"))?;
    let (length, rest) = ciphertext
        .split_at_checked(2)
        .ok_or_else(|| anyhow!("the message is truncated (no key length)"))?;
    let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
    let (wrapped, rest) = rest
        .split_at_checked(length)
        .ok_or_else(|| anyhow!("the message is truncated (in the wrapped key)"))?;
    let (nonce, sealed) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or_else(|| anyhow!("the message is truncated (in the nonce)"))?;
    let mut content_key = vec![0u8; private.min_output_size()];
    let content_key = private
        .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut content_key, None)
        .map_err(|_| anyhow!("this private key does not unwrap the content key"))?;
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, content_key).map_err(|_| anyhow!("the content key"))?,
    );
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow!("the nonce"))?;
    let mut buffer = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::empty(), &mut buffer)
        .map_err(|_| anyhow!("the message does not authenticate under the content key"))?;
    Ok(plain.to_vec())
}
