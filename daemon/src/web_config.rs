//! The `/metrics` web config: optional TLS and basic authentication, in the file format of the
//! Prometheus exporter toolkit (`[metrics] web_config = "/etc/certvakt/web-config.yml"`).
//!
//! Contract:
//! - [`read`] parses the YAML file (serde_norway) into a [`WebConfig`] and checks everything
//!   that can be checked before serving: unknown keys and the toolkit's keys certvakt does not
//!   support are refused by name, `client_auth_type` must be one certvakt implements, every
//!   password must be a bcrypt hash, and the certificate, key and client CA files must load
//!   into a rustls server configuration. Each refusal is a [`WebProblem`] naming the key (and
//!   the line, when the YAML parser knows it). check-config and a reload see the same verdict.
//! - Relative file names are relative to the web config file's folder, as in the toolkit.
//! - [`Access`] is what a running server applies: the TLS acceptor (rustls with the aws-lc-rs
//!   provider) and the users. A password is checked with bcrypt once; after that, the SHA-256
//!   of a password that was verified is kept per user and compared in constant time, so a
//!   scrape every 15 seconds does not pay a bcrypt cost each time. Unknown users cost a bcrypt
//!   check too (against a configured hash), so timing does not tell which names exist. At
//!   most [`BCRYPT_AT_ONCE`] checks run at once, on the blocking pool.
//! - [`WebState`] holds the current [`Access`]; a reload swaps in a new one only when it was
//!   built without error, so a bad file leaves the previous settings serving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine as _;
use hyper::header::{AUTHORIZATION, HeaderMap};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::Digest as _;
use tokio::sync::Semaphore;

/// Largest web config file read.
const MAX_FILE: u64 = 64 * 1024;
/// bcrypt checks that may run at once (each takes tens of milliseconds of CPU).
pub const BCRYPT_AT_ONCE: usize = 2;

/// The file as written (the exporter toolkit's names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
}

/// Whether and how clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert` (the default).
    None,
    /// `VerifyClientCertIfGiven`: a certificate is optional, but verified when given.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`.
    Require,
}

/// TLS for the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
}

/// A checked web config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User name to bcrypt hash.
    pub users: BTreeMap<String, String>,
}

/// One thing wrong with a web config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebProblem {
    pub line: Option<usize>,
    /// The key in the file, dotted (`tls_server_config.client_auth_type`); empty for the
    /// whole file.
    pub key: String,
    pub message: String,
    pub hint: String,
}

/// The toolkit's keys certvakt does not implement: named as such rather than as unknown.
const UNSUPPORTED: [&str; 11] = [
    "http_server_config",
    "rate_limit",
    "cert",
    "key",
    "client_ca",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
];

/// Reads and checks the web config at `path`.
pub fn read(path: &Path) -> Result<WebConfig, Vec<WebProblem>> {
    let problem = |line, key: &str, message: String, hint: &str| WebProblem {
        line,
        key: key.to_owned(),
        message,
        hint: hint.to_owned(),
    };
    let bytes = crate::bounded::read(path, MAX_FILE).map_err(|e| {
        vec![problem(
            None,
            "",
            format!("cannot read the web config: {}", e.sentence(path)),
            "write the file (see certvakt.toml(5), [metrics] web_config), or remove web_config",
        )]
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let file: File = if text.trim().is_empty() {
        File {
            tls_server_config: None,
            basic_auth_users: None,
        }
    } else {
        let de = serde_norway::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|err| {
            let key = match err.path().to_string() {
                root if root == "." => String::new(),
                key => key,
            };
            let inner = err.inner();
            let line = inner.location().map(|l| l.line());
            let text = inner.to_string();
            // serde_norway appends " at line L column C"; the line is reported on its own.
            let message = text.split(" at line ").next().unwrap_or(&text);
            // It may start with the path of the table (`tls_server_config: ...`): the key
            // says that already.
            let message = match message.split_once(": ") {
                Some((path, rest)) if !path.contains(' ') => rest,
                _ => message,
            }
            .to_owned();
            let unsupported = UNSUPPORTED
                .iter()
                .find(|k| message.starts_with(&format!("unknown field `{k}`")));
            vec![match unsupported {
                Some(k) => problem(
                    line,
                    &key,
                    format!("`{k}` is part of the exporter toolkit's format, but certvakt does not support it"),
                    "remove it; certvakt supports tls_server_config (cert_file, key_file, client_auth_type, client_ca_file) and basic_auth_users",
                ),
                None => problem(
                    line,
                    &key,
                    message,
                    "certvakt reads tls_server_config (cert_file, key_file, client_auth_type, client_ca_file) and basic_auth_users (name: bcrypt hash)",
                ),
            }]
        })?
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut problems = Vec::new();
    let mut users = BTreeMap::new();
    for (name, hash) in file.basic_auth_users.unwrap_or_default() {
        let key = format!("basic_auth_users.{name}");
        if name.is_empty() || name.contains(':') {
            problems.push(problem(
                None,
                &key,
                format!("\"{name}\" cannot be a user name (empty, or with a colon)"),
                "use a name without a colon",
            ));
        } else if hash.parse::<bcrypt::HashParts>().is_err() {
            problems.push(problem(
                None,
                &key,
                format!("the password of \"{name}\" is not a bcrypt hash"),
                "write the hash, not the password: e.g. `htpasswd -nBC 10 \"\" | tr -d ':\\n'`",
            ));
        } else {
            users.insert(name, hash);
        }
    }
    let tls = match file.tls_server_config {
        None => None,
        Some(t) => match tls_settings(t, dir) {
            Ok(settings) => {
                if let Err(e) = server_config(&settings) {
                    problems.push(e);
                }
                Some(settings)
            }
            Err(mut found) => {
                problems.append(&mut found);
                None
            }
        },
    };
    if problems.is_empty() {
        Ok(WebConfig { tls, users })
    } else {
        Err(problems)
    }
}

fn tls_settings(t: TlsFile, dir: &Path) -> Result<TlsSettings, Vec<WebProblem>> {
    let mut problems = Vec::new();
    let mut missing = |key: &str| {
        problems.push(WebProblem {
            line: None,
            key: format!("tls_server_config.{key}"),
            message: format!("tls_server_config needs {key}"),
            hint: "name the PEM files of the server's certificate (cert_file) and key (key_file)"
                .into(),
        });
    };
    let cert_file = t.cert_file.map(|p| dir.join(p));
    let key_file = t.key_file.map(|p| dir.join(p));
    if cert_file.is_none() {
        missing("cert_file");
    }
    if key_file.is_none() {
        missing("key_file");
    }
    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("NoClientCert") => ClientAuth::None,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::Require,
        Some(other) => {
            let message = if matches!(other, "RequestClientCert" | "RequireAnyClientCert") {
                format!(
                    "{other} accepts client certificates without verifying them; certvakt does not support it"
                )
            } else {
                format!("\"{other}\" is not a client_auth_type")
            };
            problems.push(WebProblem {
                line: None,
                key: "tls_server_config.client_auth_type".into(),
                message,
                hint: "write NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                    .into(),
            });
            ClientAuth::None
        }
    };
    let client_ca_file = t.client_ca_file.map(|p| dir.join(p));
    if client_auth != ClientAuth::None && client_ca_file.is_none() {
        problems.push(WebProblem {
            line: None,
            key: "tls_server_config.client_ca_file".into(),
            message: "client certificates are verified, but no client_ca_file says against what"
                .into(),
            hint: "name the PEM file of the CA certificates that issue the clients' certificates"
                .into(),
        });
    }
    match (cert_file, key_file) {
        (Some(cert_file), Some(key_file)) if problems.is_empty() => Ok(TlsSettings {
            cert_file,
            key_file,
            client_auth,
            client_ca_file,
        }),
        _ => Err(problems),
    }
}

/// The rustls server configuration `settings` describe, read from their files now.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, WebProblem> {
    let fail = |key: &str, message: String, hint: &str| WebProblem {
        line: None,
        key: format!("tls_server_config.{key}"),
        message,
        hint: hint.to_owned(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            fail(
                "cert_file",
                format!(
                    "cannot read certificates from {}: {e}",
                    settings.cert_file.display()
                ),
                "name a PEM file with the server certificate first, then its chain",
            )
        })?;
    if certs.is_empty() {
        return Err(fail(
            "cert_file",
            format!("{} holds no certificate", settings.cert_file.display()),
            "name a PEM file with the server certificate first, then its chain",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|e| {
        fail(
            "key_file",
            format!("cannot read a private key from {}: {e}", settings.key_file.display()),
            "name the PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1), readable by the certvakt user",
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("cert_file", format!("TLS setup failed: {e}"), "report this"))?;
    let builder = match (&settings.client_auth, &settings.client_ca_file) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ca_file)) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(ca_file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    fail(
                        "client_ca_file",
                        format!(
                            "cannot read CA certificates from {}: {e}",
                            ca_file.display()
                        ),
                        "name a PEM file of CA certificates",
                    )
                })?;
            let (added, _) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(fail(
                    "client_ca_file",
                    format!("{} holds no usable CA certificate", ca_file.display()),
                    "name a PEM file of CA certificates",
                ));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if *auth == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| {
                fail(
                    "client_ca_file",
                    format!("cannot verify clients against {}: {e}", ca_file.display()),
                    "name a PEM file of CA certificates",
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        fail(
            "key_file",
            format!(
                "{} and {} do not make a certificate and key pair: {e}",
                settings.cert_file.display(),
                settings.key_file.display()
            ),
            "name the key that belongs to the certificate",
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a running server applies to each connection and request.
pub struct Access {
    tls: Option<tokio_rustls::TlsAcceptor>,
    users: BTreeMap<String, String>,
    /// Per user, the SHA-256 of the password last verified with bcrypt.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    bcrypt_slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Whether a request may have its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No or wrong credentials: 401 with `WWW-Authenticate: Basic`.
    Denied,
}

impl Access {
    /// Plain HTTP, no authentication.
    pub fn open() -> Access {
        Access {
            tls: None,
            users: BTreeMap::new(),
            verified: Mutex::new(HashMap::new()),
            bcrypt_slots: Arc::new(Semaphore::new(BCRYPT_AT_ONCE)),
        }
    }

    /// What `config` says, with the TLS files read now.
    pub fn new(config: &WebConfig) -> Result<Access, WebProblem> {
        let tls = match &config.tls {
            Some(settings) => Some(tokio_rustls::TlsAcceptor::from(server_config(settings)?)),
            None => None,
        };
        Ok(Access {
            tls,
            users: config.users.clone(),
            ..Access::open()
        })
    }

    /// The TLS acceptor, when the endpoint speaks TLS.
    pub fn tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.clone()
    }

    /// Checks the request's basic-auth credentials (everyone is allowed when no user is
    /// configured).
    pub async fn check(&self, headers: &HeaderMap) -> Verdict {
        let Some(any_hash) = self.users.values().next() else {
            return Verdict::Allowed;
        };
        let Some((user, password)) = basic_credentials(headers) else {
            return Verdict::Denied;
        };
        let digest: [u8; 32] = sha2::Sha256::digest(password.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&user)
            .copied();
        let hit = cached.is_some_and(|known| {
            aws_lc_rs::constant_time::verify_slices_are_equal(&known, &digest).is_ok()
        });
        if hit {
            return Verdict::Allowed;
        }
        let known_user = self.users.contains_key(&user);
        // An unknown user is checked against some hash too: same cost, same timing.
        let hash = self.users.get(&user).unwrap_or(any_hash).clone();
        let Ok(_slot) = self.bcrypt_slots.clone().acquire_owned().await else {
            return Verdict::Denied;
        };
        let password = zeroize::Zeroizing::new(password);
        let matches = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if matches && known_user {
            self.verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(user, digest);
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The [`Access`] in force, swapped whole at a reload.
#[derive(Debug)]
pub struct WebState {
    current: RwLock<Arc<Access>>,
}

impl WebState {
    pub fn new(access: Access) -> WebState {
        WebState {
            current: RwLock::new(Arc::new(access)),
        }
    }

    pub fn current(&self) -> Arc<Access> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, access: Access) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(access);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A self-signed server certificate and key in `dir`.
    fn server_files(dir: &Path) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (
            write(dir, "server.pem", &cert.pem()),
            write(dir, "server.key", &key.serialize_pem()),
        )
    }

    #[test]
    fn a_full_file_reads_with_relative_paths_from_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        server_files(dir.path());
        std::fs::copy(dir.path().join("server.pem"), dir.path().join("ca.pem")).unwrap();
        let hash = bcrypt::hash("secret", 4).unwrap();
        let path = write(
            dir.path(),
            "web.yml",
            &format!(
                "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
                 client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n\
                 basic_auth_users:\n  prometheus: {hash}\n"
            ),
        );
        let config = read(&path).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, dir.path().join("server.pem"));
        assert_eq!(tls.client_auth, ClientAuth::VerifyIfGiven);
        assert_eq!(config.users["prometheus"], hash);
    }

    #[test]
    fn unknown_unsupported_and_bad_values_are_named_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let one = |text: &str| -> WebProblem {
            let path = write(dir.path(), "web.yml", text);
            let problems = read(&path).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:#?}");
            problems.into_iter().next().unwrap()
        };
        let p = one("tls_server_config:\n  cert_file: a\n  key_file: b\n  cert_fiel: c\n");
        assert_eq!(p.key, "tls_server_config.cert_fiel");
        assert_eq!(p.line, Some(4));
        assert!(p.message.contains("unknown field `cert_fiel`"), "{p:?}");
        let p = one("http_server_config:\n  http2: false\n");
        assert!(
            p.message
                .contains("`http_server_config` is part of the exporter toolkit's format"),
            "{p:?}"
        );
        let p = one(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
        );
        assert_eq!(p.key, "tls_server_config.client_auth_type");
        assert!(p.message.contains("without verifying"), "{p:?}");
        let p = one(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
        );
        assert_eq!(p.key, "tls_server_config.client_ca_file");
        let p = one("basic_auth_users:\n  prometheus: hunter2\n");
        assert_eq!(p.key, "basic_auth_users.prometheus");
        assert!(p.message.contains("not a bcrypt hash"), "{p:?}");
        let p = one("tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n");
        assert_eq!(p.key, "tls_server_config.cert_file");
        assert!(p.message.contains("missing.pem"), "{p:?}");
        // A key that is not the certificate's.
        let (cert, _) = server_files(dir.path());
        let other = rcgen::KeyPair::generate().unwrap();
        write(dir.path(), "other.key", &other.serialize_pem());
        let p = one(&format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: other.key\n",
            cert.display()
        ));
        assert_eq!(p.key, "tls_server_config.key_file");
        assert!(
            p.message.contains("do not make a certificate and key pair"),
            "{p:?}"
        );
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert(AUTHORIZATION, format!("Basic {value}").parse().unwrap());
        headers
    }

    #[tokio::test(flavor = "current_thread")]
    async fn passwords_are_checked_with_bcrypt_once_then_from_the_cache() {
        let access = Access::new(&WebConfig {
            tls: None,
            users: BTreeMap::from([("prometheus".to_owned(), bcrypt::hash("secret", 4).unwrap())]),
        })
        .unwrap();
        assert_eq!(access.check(&HeaderMap::new()).await, Verdict::Denied);
        assert_eq!(
            access.check(&basic("prometheus", "wrong")).await,
            Verdict::Denied
        );
        assert_eq!(
            access.check(&basic("nobody", "secret")).await,
            Verdict::Denied
        );
        assert!(access.verified.lock().unwrap().is_empty());
        assert_eq!(
            access.check(&basic("prometheus", "secret")).await,
            Verdict::Allowed
        );
        let cached = access.verified.lock().unwrap()["prometheus"];
        assert_eq!(cached, <[u8; 32]>::from(sha2::Sha256::digest(b"secret")));
        // From the cache now, and a wrong password still fails (no caching of failures).
        assert_eq!(
            access.check(&basic("prometheus", "secret")).await,
            Verdict::Allowed
        );
        assert_eq!(
            access.check(&basic("prometheus", "secreT")).await,
            Verdict::Denied
        );
        // No users: open.
        assert_eq!(
            Access::open().check(&HeaderMap::new()).await,
            Verdict::Allowed
        );
    }
}
