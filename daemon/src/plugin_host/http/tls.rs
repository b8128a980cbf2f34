//! TLS for [`super::HttpService`]: building and caching rustls client configurations, and
//! saying in words why a handshake failed.
//!
//! System roots (for requests that name no trust set) come from rustls-native-certs, loaded
//! once per cache: on Linux it reads the bundle OpenSSL would (`/etc/ssl/certs/ca-certificates.crt`
//! on Debian, `/etc/pki/tls/certs/ca-bundle.crt` on RHEL, found by openssl-probe) and the
//! certificate folder, and honours `SSL_CERT_FILE`/`SSL_CERT_DIR`. Reading the Debian bundle
//! ourselves would be a few lines less to build, but certvakt ships as an rpm too, and
//! operators expect the OpenSSL variables to work; rustls-native-certs costs openssl-probe only.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use certvakt_plugin_api::ClientIdentity;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsConnector;

use super::{ClientCredentials, HttpError, IdentitySource, Target, TrustSource};
use crate::keys::{self, PrivateKey};

/// What a TLS error message needs to know about the request.
#[derive(Debug, Clone)]
pub(super) struct Context {
    pub cert_id: String,
    pub identity: ClientIdentity,
    pub trust: Option<String>,
}

impl Context {
    fn trust_text(&self) -> String {
        match &self.trust {
            Some(name) => format!("trust set `{name}`"),
            None => "the system's root certificates (the request names no trust set)".into(),
        }
    }
}

/// `none`, `current`, `pending`, `previous`, or the configured name, in backticks.
pub(super) fn identity_text(identity: &ClientIdentity) -> String {
    match identity {
        ClientIdentity::None => "`none`".into(),
        ClientIdentity::Pending => "`pending`".into(),
        ClientIdentity::Current => "`current`".into(),
        ClientIdentity::Previous => "`previous`".into(),
        ClientIdentity::Named(name) => format!("`{name}`"),
    }
}

/// The name the server's certificate must carry: a DNS name or an IP address.
pub(super) fn server_name(target: &Target) -> Result<ServerName<'static>, HttpError> {
    if let Some(ip) = target.ip {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(target.host.clone()).map_err(|_| {
        HttpError::Refused(format!(
            "{target}: {} is not a valid DNS name for TLS",
            target.host
        ))
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    /// Empty without a client identity: such configurations are the same for every
    /// certificate.
    cert_id: String,
    identity: ClientIdentity,
    trust: Option<String>,
}

struct Cached {
    /// SHA-256 over the trust bundle and the client chain the configuration was built from.
    fingerprint: Vec<u8>,
    connector: TlsConnector,
}

/// Client configurations by (certificate, identity, trust set), and the system roots.
#[derive(Default)]
pub(super) struct ClientCache {
    system_roots: Mutex<Option<Arc<RootCertStore>>>,
    clients: Mutex<HashMap<CacheKey, Cached>>,
}

impl ClientCache {
    /// How many configurations are cached.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The connector for this identity and trust set: the cached one while the sources give
    /// the same chain and bundle, else a new one. Blocks (reads files through the sources).
    pub(super) fn connector(
        &self,
        identities: &dyn IdentitySource,
        trust_source: &dyn TrustSource,
        cert_id: &str,
        identity: &ClientIdentity,
        trust: Option<&str>,
    ) -> Result<TlsConnector, HttpError> {
        let bundle = match trust {
            Some(name) => Some(read_trust_set(trust_source, name)?),
            None => None,
        };
        let credentials = match identity {
            ClientIdentity::None => None,
            identity => Some(read_identity(identities, cert_id, identity)?),
        };
        let mut hasher = Sha256::new();
        hasher.update(bundle.as_deref().unwrap_or("system roots"));
        hasher.update([0]);
        if let Some(credentials) = &credentials {
            hasher.update(&credentials.chain_pem);
        }
        let fingerprint = hasher.finalize().to_vec();
        let key = CacheKey {
            cert_id: if credentials.is_some() {
                cert_id.to_owned()
            } else {
                String::new()
            },
            identity: identity.clone(),
            trust: trust.map(str::to_owned),
        };
        if let Some(cached) = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|cached| cached.fingerprint == fingerprint)
        {
            return Ok(cached.connector.clone());
        }

        let roots = match (trust, &bundle) {
            (Some(name), Some(bundle)) => Arc::new(trust_store(name, bundle)?),
            _ => self.system_roots()?,
        };
        let config = client_config(roots, credentials.as_ref(), cert_id, identity)?;
        let connector = TlsConnector::from(Arc::new(config));
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key,
                Cached {
                    fingerprint,
                    connector: connector.clone(),
                },
            );
        Ok(connector)
    }

    fn system_roots(&self) -> Result<Arc<RootCertStore>, HttpError> {
        let mut cached = self.system_roots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(roots) = cached.as_ref() {
            return Ok(roots.clone());
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(load_system_roots());
        if ignored > 0 {
            log::debug!(added = added, ignored = ignored; "system root certificates loaded, some unusable as trust anchors");
        }
        if roots.is_empty() {
            return Err(HttpError::Setup(
                "the request names no trust set and no system root certificates were found; install the ca-certificates package, set SSL_CERT_FILE, or have the plugin name a trust set".into(),
            ));
        }
        let roots = Arc::new(roots);
        *cached = Some(roots.clone());
        Ok(roots)
    }
}

/// The system's root certificates, read now (see the module documentation for where from);
/// files that cannot be read are logged. Plugin HTTP and the mail relay both trust these
/// when they name no trust set.
pub(crate) fn load_system_roots() -> Vec<CertificateDer<'static>> {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        log::warn!(error = error.to_string().as_str(); "some system root certificates could not be read");
    }
    loaded.certs
}

fn provider() -> Arc<CryptoProvider> {
    // Explicitly aws-lc-rs, not the process default: nothing else may choose for the daemon.
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_trust_set(source: &dyn TrustSource, name: &str) -> Result<String, HttpError> {
    match source.trust_set(name) {
        Ok(Some(bundle)) => Ok(bundle),
        Ok(None) => Err(HttpError::Unknown(format!(
            "no trust set named `{name}` is configured; add it to the daemon's trust sets or correct the plugin's setting"
        ))),
        Err(e) => Err(HttpError::Setup(format!("trust set `{name}`: {e}"))),
    }
}

fn read_identity(
    source: &dyn IdentitySource,
    cert_id: &str,
    identity: &ClientIdentity,
) -> Result<ClientCredentials, HttpError> {
    match source.client_identity(cert_id, identity) {
        Ok(Some(credentials)) => Ok(credentials),
        Ok(None) => Err(HttpError::Unknown(format!(
            "certificate {cert_id} has no client identity {}",
            identity_text(identity)
        ))),
        Err(e) => Err(HttpError::Setup(format!(
            "client identity {} of certificate {cert_id}: {e}",
            identity_text(identity)
        ))),
    }
}

/// Every certificate of the bundle as a trust anchor; one that cannot be is an error, not
/// silently left out, so the operator learns which.
fn trust_store(name: &str, bundle: &str) -> Result<RootCertStore, HttpError> {
    let setup = |what: String| HttpError::Setup(format!("trust set `{name}` {what}"));
    let ders = keys::parse_certificate_chain(bundle.as_bytes())
        .map_err(|e| setup(format!("cannot be used: {e}")))?;
    let mut roots = RootCertStore::empty();
    for (i, der) in ders.into_iter().enumerate() {
        roots.add(CertificateDer::from(der)).map_err(|e| {
            setup(format!(
                "has a certificate (number {}) that cannot be a trust anchor: {e}",
                i + 1
            ))
        })?;
    }
    Ok(roots)
}

fn client_config(
    roots: Arc<RootCertStore>,
    credentials: Option<&ClientCredentials>,
    cert_id: &str,
    identity: &ClientIdentity,
) -> Result<ClientConfig, HttpError> {
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| HttpError::Setup(format!("cannot set up server certificate checks: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Setup(format!("cannot set up TLS: {e}")))?
        .with_webpki_verifier(verifier);
    let mut config = match credentials {
        None => builder.with_no_client_auth(),
        Some(credentials) => {
            let certified = certified_key(credentials, cert_id, identity)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The chain and a signing key in aws-lc. The key's DER only ever lives in the zeroizing
/// buffer of [`PrivateKey`] and is lent to aws-lc, never copied into rustls' own buffers.
fn certified_key(
    credentials: &ClientCredentials,
    cert_id: &str,
    identity: &ClientIdentity,
) -> Result<CertifiedKey, HttpError> {
    let setup = |what: String| {
        HttpError::Setup(format!(
            "client identity {} of certificate {cert_id}: {what}",
            identity_text(identity)
        ))
    };
    let chain = keys::parse_certificate_chain(credentials.chain_pem.as_bytes())
        .map_err(|e| setup(e.to_string()))?;
    let key =
        PrivateKey::from_bytes(credentials.key_pem.as_bytes()).map_err(|e| setup(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(setup("the chain holds no certificate".into()));
    };
    if !keys::cert_matches_key(leaf, &key).map_err(|e| setup(e.to_string()))? {
        return Err(setup(
            "the first certificate of the chain does not belong to the private key; the chain must start with the identity's own certificate".into(),
        ));
    }
    let pkcs8 = key.to_pkcs8_der();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_slice()));
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| setup(format!("the key cannot sign TLS handshakes: {e}")))?;
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    Ok(CertifiedKey::new(chain, signing_key))
}

/// The rustls error inside an error chain. tokio-rustls and hyper wrap it in `io::Error`,
/// whose `source()` skips the wrapped error itself, so those are opened by hand. The mail
/// channel finds its handshake errors with it too.
pub(crate) fn find_rustls_error<'a>(
    error: &'a (dyn StdError + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        current = error.source();
    }
    None
}

/// Why the handshake failed, from tokio-rustls' `io::Error`.
pub(super) fn explain_io(error: &std::io::Error, context: &Context) -> String {
    if let Some(tls) = find_rustls_error(error) {
        return explain(tls, context);
    }
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake".into()
        }
        _ => error.to_string(),
    }
}

/// A rustls error as the end of "TLS handshake with HOST:PORT failed: …".
pub(super) fn explain(error: &rustls::Error, context: &Context) -> String {
    match error {
        rustls::Error::InvalidCertificate(problem) => certificate_problem(problem, context),
        rustls::Error::AlertReceived(alert) => alert_problem(*alert, context),
        rustls::Error::NoApplicationProtocol => {
            "the server speaks no HTTP/1.1 over TLS (no common ALPN protocol)".into()
        }
        other => other.to_string(),
    }
}

fn certificate_problem(problem: &CertificateError, context: &Context) -> String {
    match problem {
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not trusted by {}",
            context.trust_text()
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (or this machine's clock is wrong)".into()
        }
        CertificateError::NotValidForName => {
            "the server's certificate is not valid for the name in the URL".into()
        }
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the server's certificate is not valid for the name in the URL; it names {}",
            presented.join(", ")
        ),
        CertificateError::Revoked => "the server's certificate is revoked".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not meant for TLS servers (extended key usage)".into()
        }
        other => format!("the server's certificate was refused: {other}"),
    }
}

fn alert_problem(alert: AlertDescription, context: &Context) -> String {
    let refused_client = matches!(
        alert,
        AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::HandshakeFailure
    );
    match (&context.identity, refused_client) {
        (ClientIdentity::None, true) if alert == AlertDescription::CertificateRequired => {
            "the server requires a client certificate and the request presented none (client identity `none`)".into()
        }
        (ClientIdentity::None, true) => format!(
            "the server refused the handshake (alert {alert:?}); the request presented no client certificate (client identity `none`), which the server may require"
        ),
        (identity, true) => format!(
            "the server refused client identity {} of certificate {} (alert {alert:?})",
            identity_text(identity),
            context.cert_id
        ),
        (_, false) => format!("the server sent the alert {alert:?}"),
    }
}
