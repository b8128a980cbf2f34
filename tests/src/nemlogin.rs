//! A NemLog-in STS simulator with the system-user registry that stands in for NemLog-in
//! Administration. It imitates `protocols/dk-nemlogin.md` §2–§6, built after its §8 blueprint.
//!
//! **Registry** (per [`Environment`]): web services (WSPs) with their privileges, and system
//! users (WSCs) with certificates and access requests. Every change edits a *draft*;
//! [`NemLoginSimulator::provision`] copies the draft to the live copy, as the portal's
//! "Provisioner til …" does, and the STS sees only the live copy (§2). Saving refuses an
//! EntityID that does not start with `https://wsc.` (§3), a duplicate EntityID, and a
//! certificate already attached to another system user (§1); a `.cer` upload is DER, or PEM
//! when [`NemLoginOptions::accept_pem_upload`] is set.
//!
//! **STS**: `POST /<environment>/SecurityTokenService.svc` (`integrationtest`, `production`),
//! HTTPS, no client certificate (the caller is identified by the message signature). It checks,
//! in this order (§8), and answers a SOAP 1.1 fault with the `wst:` code named (HTTP 500):
//! 1. SOAP 1.1 envelope and `SOAPAction` `…/ws-trust/200512/RST/Issue` → `wst:InvalidRequest`;
//! 2. a chunked body (when [`NemLoginOptions::refuse_chunked`]) → `wst:InvalidRequest`;
//! 3. `wsa:Action` = the Issue action, `wsa:MessageID` present and never seen before, `wsa:To`
//!    one of the three scenario URLs (trailing slash) → `wst:InvalidRequest`;
//! 4. one `ds:Signature` in `wsse:Security` whose references are exactly the `wsu:Id`s of
//!    `Action`, `MessageID`, `To`, `Timestamp`, the BST and `Body` (each ID unique in the
//!    document, so nothing can be wrapped), verified by `xmlsec1` with the key of the BST
//!    certificate → `wst:FailedAuthentication`;
//! 5. the timestamp (`Created` at most 5 minutes off, `Expires` after `Created` and after now)
//!    → `wst:InvalidTimeRange` / `wst:ExpiredData`; `Lifetime/Expires` without milliseconds →
//!    `wst:InvalidRequest`;
//! 6. the BST chains to [`NemLoginOptions::client_roots`] and is valid now →
//!    `wst:FailedAuthentication`; it equals `UseKey` → `wst:InvalidSecurityToken`;
//! 7. `AppliesTo` in the 2002/12 policy namespace, its address without a trailing slash →
//!    `wst:InvalidRequest`;
//! 8. the address is a registered web service → `wst:InvalidRequest`;
//! 9. the certificate belongs to a provisioned system user → `wst:FailedAuthentication`;
//! 10. the `Context` is new → `wst:InvalidRequest`.
//!
//! On success the RSTR has the quirks of §5–§6: `wsa:Action` echoes `…/RST/Issue`, the
//! timestamp and `Lifetime` carry milliseconds, `Context` is echoed, `AppliesTo` is 2002/12,
//! `Lifetime` is min(requested, 8 h), and `RequestedSecurityToken/saml:EncryptedAssertion`
//! holds an assertion signed by the STS (RSA-SHA256) and encrypted with `xmlsec1` for the
//! WSP's certificate (AES-256-CBC, key wrapped RSA-OAEP-MGF1P, recipient by
//! `X509IssuerSerial`): NameID = the EntityID, `CvrNumberIdentifier` from the certificate,
//! `Privileges_intermediate` = base64 of a `bpp:PrivilegeList` of the granted privileges. The
//! response itself is not signed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result, anyhow, bail};

use crate::ca::{CaShape, KeyType, TestCa};
use crate::leaf::{IssuedCert, LeafSpec};
use crate::soapd::{Handler, ServerIdentity, SoapRequest, SoapServer};

mod sts;
#[cfg(test)]
mod tests;

/// `SOAPAction` and `wsa:Action` of the request (and, a quirk, of the response).
pub const ISSUE_ACTION: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue";
/// The `wsa:To` values that select a scenario (trailing slash included).
pub const SCENARIOS: [&str; 3] = [
    "https://signature.sts.nemlog-in.dk/",
    "https://bootstrap.sts.nemlog-in.dk/",
    "https://local.sts.nemlog-in.dk/",
];
/// The token issuer (the signature scenario).
pub const STS_ENTITY_ID: &str = "https://signature.sts.nemlog-in.dk/";

/// A NemLog-in environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Environment {
    IntegrationTest,
    Production,
}

impl Environment {
    /// The path segment of its STS.
    pub fn path(self) -> &'static str {
        match self {
            Environment::IntegrationTest => "integrationtest",
            Environment::Production => "production",
        }
    }

    fn index(self) -> usize {
        match self {
            Environment::IntegrationTest => 0,
            Environment::Production => 1,
        }
    }
}

/// How a [`NemLoginSimulator`] behaves.
#[derive(Debug, Clone)]
pub struct NemLoginOptions {
    /// DER certificates a BST must chain to (the OCES3 test root; issuing CAs listed here act as
    /// anchors too).
    pub client_roots: Vec<Vec<u8>>,
    /// DER issuing CAs used to build a BST's chain (a BST carries only the leaf).
    pub client_intermediates: Vec<Vec<u8>>,
    /// Refuse a chunked request body (the production load balancer's habit). Default true.
    pub refuse_chunked: bool,
    /// Accept PEM inside a `.cer` upload, not only DER. Default false.
    pub accept_pem_upload: bool,
}

impl Default for NemLoginOptions {
    fn default() -> NemLoginOptions {
        NemLoginOptions {
            client_roots: Vec::new(),
            client_intermediates: Vec::new(),
            refuse_chunked: true,
            accept_pem_upload: false,
        }
    }
}

/// A token the STS issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub env: Environment,
    pub entity_id: String,
    pub applies_to: String,
    pub cvr: String,
    pub privileges: Vec<String>,
}

/// A registered web service (WSP).
#[derive(Clone)]
struct WebService {
    name: String,
    entity_id: String,
    cert_pem: String,
    /// The private key when the simulator made the certificate (to decrypt tokens in tests).
    key_pem: Option<String>,
    privileges: Vec<String>,
}

/// An access request of a system user to a web service.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Access {
    privileges: Vec<String>,
    granted: bool,
}

#[derive(Debug, Clone, Default)]
struct SystemUser {
    name: String,
    certificates: Vec<Vec<u8>>,
    /// By web service EntityID.
    access: BTreeMap<String, Access>,
}

#[derive(Clone, Default)]
struct Registry {
    services: Vec<WebService>,
    draft: BTreeMap<String, SystemUser>,
    live: BTreeMap<String, SystemUser>,
    provisioned_at: Option<time::OffsetDateTime>,
}

impl Registry {
    fn service(&self, name_or_entity: &str) -> Option<&WebService> {
        self.services
            .iter()
            .find(|s| s.name == name_or_entity || s.entity_id == name_or_entity)
    }
}

#[derive(Default)]
struct State {
    registries: [Registry; 2],
    down: bool,
    tokens: Vec<IssuedToken>,
    faults: Vec<String>,
    message_ids: BTreeSet<String>,
    contexts: BTreeSet<String>,
}

struct Shared {
    options: NemLoginOptions,
    signer: IssuedCert,
    state: Mutex<State>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running STS and its registry. Dropping it stops the server.
pub struct NemLoginSimulator {
    shared: Arc<Shared>,
    identity: ServerIdentity,
    wsp_ca: TestCa,
    server: SoapServer,
}

impl std::fmt::Debug for NemLoginSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NemLoginSimulator")
            .field("url", &self.server.base_url())
            .finish_non_exhaustive()
    }
}

impl NemLoginSimulator {
    /// Starts the STS on a free loopback port, with empty registries.
    pub fn start(options: NemLoginOptions) -> Result<NemLoginSimulator> {
        crate::xmlsec::require_tools()?;
        let wsp_ca = TestCa::new(CaShape::Oces3)?;
        let signer = wsp_ca
            .issue(
                &LeafSpec::oces3(
                    "34051178",
                    "2f9a7c1e-4b6d-4e3a-9c8b-5d1e0f2a3b4c",
                    "NemLog-in STS simulator",
                )
                .key_type(KeyType::Rsa2048),
            )
            .context("the STS's signing certificate")?;
        let identity = ServerIdentity::loopback()?;
        let shared = Arc::new(Shared {
            options,
            signer,
            state: Mutex::new(State::default()),
        });
        let serving = Arc::clone(&shared);
        let handler: Handler =
            Arc::new(move |request: SoapRequest| sts::handle(&serving, &request));
        let server = SoapServer::start("certvakt-nemlogin-sim", &identity, &[], handler)?;
        Ok(NemLoginSimulator {
            shared,
            identity,
            wsp_ca,
            server,
        })
    }

    /// `https://127.0.0.1:PORT/<environment>/SecurityTokenService.svc`.
    pub fn sts_url(&self, env: Environment) -> String {
        format!(
            "{}/{}/SecurityTokenService.svc",
            self.server.base_url(),
            env.path()
        )
    }

    /// The root of the server's TLS certificate, PEM.
    pub fn server_root_pem(&self) -> String {
        self.identity.ca.root_pem()
    }

    /// The certificate the STS signs assertions with, PEM.
    pub fn sts_certificate_pem(&self) -> String {
        self.shared.signer.cert_pem.clone()
    }

    /// Registers a web service (WSP) NemLog-in knows, e.g. `Smdb_Sts_Dev` with entity ID
    /// `https://smdb.example` and privilege `urn:dk:smdb:prod:indberetter`. Without a
    /// certificate (DER) the simulator makes one (RSA) and keeps its key ([`Self::wsp_key_pem`]).
    pub fn add_web_service(
        &self,
        env: Environment,
        name: &str,
        entity_id: &str,
        wsp_cert_der: Option<Vec<u8>>,
        privileges: &[&str],
    ) {
        let (cert_pem, key_pem) = match wsp_cert_der {
            Some(der) => (pem::encode(&pem::Pem::new("CERTIFICATE", der)), None),
            None => match self.wsp_ca.issue(
                &LeafSpec::oces3("34051178", &wsp_uuid(entity_id), name).key_type(KeyType::Rsa2048),
            ) {
                Ok(cert) => (cert.cert_pem, Some(cert.key_pem)),
                Err(_) => (String::new(), None),
            },
        };
        let mut state = lock(&self.shared.state);
        let registry = &mut state.registries[env.index()];
        registry.services.retain(|s| s.entity_id != entity_id);
        registry.services.push(WebService {
            name: name.to_owned(),
            entity_id: entity_id.to_owned(),
            cert_pem,
            key_pem,
            privileges: privileges.iter().map(|p| (*p).to_owned()).collect(),
        });
    }

    /// The private key of a web service whose certificate the simulator made, PEM.
    pub fn wsp_key_pem(&self, env: Environment, entity_id: &str) -> Option<String> {
        lock(&self.shared.state).registries[env.index()]
            .service(entity_id)
            .and_then(|s| s.key_pem.clone())
    }

    /// Adds a system user (draft). Refuses an EntityID not starting with `https://wsc.` and
    /// one already in use.
    pub fn add_system_user(&self, env: Environment, name: &str, entity_id: &str) -> Result<()> {
        if !entity_id.starts_with("https://wsc.") {
            bail!(
                "EntityID {entity_id:?} is refused: a system user's EntityID must start with https://wsc."
            );
        }
        let mut state = lock(&self.shared.state);
        let registry = &mut state.registries[env.index()];
        if registry.draft.contains_key(entity_id) {
            bail!("EntityID {entity_id:?} is already in use");
        }
        registry.draft.insert(
            entity_id.to_owned(),
            SystemUser {
                name: name.to_owned(),
                ..SystemUser::default()
            },
        );
        Ok(())
    }

    /// Uploads a `.cer` to a system user (draft): DER, or PEM when allowed. Refuses a
    /// certificate already attached to another system user.
    pub fn attach_certificate(&self, env: Environment, entity_id: &str, cer: &[u8]) -> Result<()> {
        let der = if cer.starts_with(b"-----BEGIN") {
            if !self.shared.options.accept_pem_upload {
                bail!("the .cer file is PEM; the upload takes DER");
            }
            pem::parse(cer)
                .context("the .cer file is not PEM")?
                .into_contents()
        } else {
            cer.to_vec()
        };
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow!("the .cer file is not a certificate: {e}"))?;
        let mut state = lock(&self.shared.state);
        let registry = &mut state.registries[env.index()];
        if let Some((other, _)) = registry
            .draft
            .iter()
            .find(|(id, user)| id.as_str() != entity_id && user.certificates.contains(&der))
        {
            bail!("the certificate is already attached to the system user {other}");
        }
        let user = registry
            .draft
            .get_mut(entity_id)
            .with_context(|| format!("no system user {entity_id}"))?;
        if !user.certificates.contains(&der) {
            user.certificates.push(der);
        }
        Ok(())
    }

    /// Removes a certificate (DER) from a system user (draft).
    pub fn detach_certificate(
        &self,
        env: Environment,
        entity_id: &str,
        cert_der: &[u8],
    ) -> Result<()> {
        let mut state = lock(&self.shared.state);
        let user = state.registries[env.index()]
            .draft
            .get_mut(entity_id)
            .with_context(|| format!("no system user {entity_id}"))?;
        let before = user.certificates.len();
        user.certificates.retain(|c| c != cert_der);
        if user.certificates.len() == before {
            bail!("that certificate is not attached to {entity_id}");
        }
        Ok(())
    }

    /// Asks for access to a web service (name or entity ID) with some of its privileges (draft,
    /// state "requested").
    pub fn request_access(
        &self,
        env: Environment,
        entity_id: &str,
        service: &str,
        privileges: &[&str],
    ) -> Result<()> {
        let mut state = lock(&self.shared.state);
        let registry = &mut state.registries[env.index()];
        let known = registry
            .service(service)
            .with_context(|| format!("NemLog-in knows no web service {service}"))?;
        let service_id = known.entity_id.clone();
        for privilege in privileges {
            if !known.privileges.iter().any(|p| p == privilege) {
                bail!("{service} offers no privilege {privilege}");
            }
        }
        let user = registry
            .draft
            .get_mut(entity_id)
            .with_context(|| format!("no system user {entity_id}"))?;
        user.access.insert(
            service_id,
            Access {
                privileges: privileges.iter().map(|p| (*p).to_owned()).collect(),
                granted: false,
            },
        );
        Ok(())
    }

    /// The service owner grants a requested access (draft).
    pub fn grant(&self, env: Environment, entity_id: &str, service: &str) -> Result<()> {
        let mut state = lock(&self.shared.state);
        let registry = &mut state.registries[env.index()];
        let service_id = registry
            .service(service)
            .map(|s| s.entity_id.clone())
            .with_context(|| format!("NemLog-in knows no web service {service}"))?;
        let access = registry
            .draft
            .get_mut(entity_id)
            .and_then(|u| u.access.get_mut(&service_id))
            .with_context(|| format!("{entity_id} has not asked for access to {service}"))?;
        access.granted = true;
        Ok(())
    }

    /// Copies the draft to the live copy the STS uses ("Provisioner til …").
    pub fn provision(&self, env: Environment) {
        let mut state = lock(&self.shared.state);
        let registry = &mut state.registries[env.index()];
        registry.live = registry.draft.clone();
        registry.provisioned_at = Some(time::OffsetDateTime::now_utc());
    }

    /// The system users of `env` as saved (draft): `(EntityID, name)`.
    pub fn system_users(&self, env: Environment) -> Vec<(String, String)> {
        lock(&self.shared.state).registries[env.index()]
            .draft
            .iter()
            .map(|(id, user)| (id.clone(), user.name.clone()))
            .collect()
    }

    /// The certificates (DER) the STS accepts for a system user in `env` (the provisioned copy).
    pub fn provisioned_certificates(&self, env: Environment, entity_id: &str) -> Vec<Vec<u8>> {
        lock(&self.shared.state).registries[env.index()]
            .live
            .get(entity_id)
            .map(|user| user.certificates.clone())
            .unwrap_or_default()
    }

    /// While down, every request is answered HTTP 503 with no SOAP body.
    pub fn set_down(&self, down: bool) {
        lock(&self.shared.state).down = down;
    }

    /// Every token issued, oldest first.
    pub fn tokens_issued(&self) -> Vec<IssuedToken> {
        lock(&self.shared.state).tokens.clone()
    }

    /// The `wst:` fault codes answered, in order.
    pub fn faults(&self) -> Vec<String> {
        lock(&self.shared.state).faults.clone()
    }
}

/// A stable UUID-shaped name for a generated WSP certificate.
fn wsp_uuid(entity_id: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let d = Sha256::digest(entity_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&d[..16]);
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}
