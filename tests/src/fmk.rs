//! An FMK (Fælles Medicinkort) simulator for FOCES whitelisting, with the SOSI STS that issues
//! the DGWS ID cards FMK accepts. It imitates the services in `protocols/dk-fmk.md`, built
//! after its §9 blueprint.
//!
//! One HTTPS server on loopback (mutual TLS: clients present a certificate chaining to
//! [`FmkOptions::client_roots`]) with two endpoints:
//!
//! | path | what |
//! |---|---|
//! | `POST /fmk12/ws/MedicineCard` | FMK `MedicineCard`, SOAP 1.1, interface 1.4.6 E6 and 1.6.0 side by side, selected by `SOAPAction` (brief §3): `CreateFocesWhitelisting`, `DeleteFocesWhitelisting`, `GetFocesWhitelistings` |
//! | `POST /sts/services/NewSecurityTokenService` | SOSI STS: a WS-Trust 2005/02 request with a self-signed system ID card in `wst:Claims` (brief §5.4) comes back signed by the STS, valid 24 h |
//!
//! FMK checks, in this order, and refuses with the DGWS fault code named (brief §9, §8):
//! 1. the `SOAPAction` is one of the six (quotes optional) and the body's root element is that
//!    operation's request → `syntax_error`;
//! 2. the body validates against the real FMK schemas with `xmllint --schema` (the E6 namespace
//!    trap of §4.1, the element orders of §4.3; in [`FmkOptions::foces_id_max_10`] mode a 1.6.0
//!    `FocesId` longer than 10 characters too) → `syntax_error`;
//! 3. `wsse:Security` with the ID card, `medcom:Header` (valid against `medcom.xsd`), and the E6
//!    `sdsd 2012/06 WhitelistingHeader` (valid against its schema) or the 1.6.0
//!    `FMKRequestHeader` → `missing_required_header` when absent or invalid;
//! 4. the ID card: issued by this STS (`saml:Issuer`) → `invalid_idcard`; its signature verifies
//!    with `xmlsec1` against the STS's certificate and nothing else → `invalid_signature`;
//!    `NotOnOrAfter` not passed → `expired_idcard`; `sosi:AuthenticationLevel` 3 →
//!    `invalid_idcard`;
//! 5. `RequestedRole` in the whitelisting header and the modifier's `Role` are `Apoteker`
//!    (also `Apoteksansat` when [`FmkOptions::relaxed_role`]); a system card may change
//!    whitelistings only when [`FmkOptions::system_cards_may_whitelist`] → `not_authorized`;
//! 6. `OrganisationIdentifier@source="CVR"`, 8 digits, equal to the card's
//!    `medcom:CareProviderID` → `not_authorized`;
//! 7. a fault set with [`FmkSimulator::set_fault`] for the operation;
//! 8. then it applies the operation: Create stores `{FocesId, CertHash or "Ukendt"}` (an
//!    existing CVR + FocesId as [`FmkOptions::on_duplicate`] says) and echoes the stored
//!    entry; Delete removes an entry matching CVR + FocesId (+ CertHash, "Ukendt" when absent,
//!    under [`FmkOptions::delete_matches_hash`]) → else `processing_problem`; Get lists them.
//!
//! Answers are whole SOAP 1.1 envelopes with a `medcom:Header` (`FlowStatus`
//! `flow_finalized_succesfully`, sic, or the fault code). Faults come with HTTP 500: 1.4.6 E6
//! as `soapenv:Fault` with `detail/medcom:FaultCode`, 1.6.0 with `detail/mc160:FMKDetail`
//! (`FaultCode`, `FaultText`, `FaultDetails/KeyValueSet`).
//!
//! The STS checks the card's own signature (`xmlsec1`; enveloped, exc-c14n, `#IDCard`; RSA-SHA1
//! or RSA-SHA256, SHA-1 or SHA-256 digests), that the certificate in its `KeyInfo` chains to the
//! client roots and is valid now, `sosi:OCESCertHash` = base64(SHA-1(certificate)),
//! `IDCardType` system with `AuthenticationLevel` 3, `CareProviderID` = the certificate's CVR,
//! and its own whitelist of callers ([`StsAllow`], brief §5.4 and §10.5). It refuses with a
//! SOAP fault (`wst:InvalidRequest` or `wst:FailedAuthentication`) sent with HTTP 200, as the
//! real STS sometimes does (§8), so a client must read the body.
//!
//! [`FmkSimulator::submit_as_owner`] stands for the pharmacy owner's own FMK client: a prepared
//! request body is validated and applied like a request, without an envelope or ID card.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result};

use crate::ca::{CaShape, KeyType, TestCa};
use crate::leaf::{IssuedCert, LeafSpec};
use crate::soapd::{Handler, ServerIdentity, SoapReply, SoapRequest, SoapServer};

mod idcard;
mod medicinecard;
mod schemas;
mod sts;
#[cfg(test)]
mod tests;

/// The path of the FMK endpoint.
pub const FMK_PATH: &str = "/fmk12/ws/MedicineCard";
/// The path of the SOSI STS endpoint.
pub const STS_PATH: &str = "/sts/services/NewSecurityTokenService";
/// The `saml:Issuer` of the cards the simulated STS signs.
pub const STS_ISSUER: &str = "certvakt SOSI STS simulator";

/// Namespaces of the wire formats.
pub mod ns {
    pub use crate::soapd::ns::{DS, SAML, SOAP, WSSE, WSU};
    pub const MEDCOM: &str = "http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd";
    pub const SOSI: &str = "http://www.sosi.dk/sosi/2006/04/sosi-1.0.xsd";
    pub const WST: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust";
    pub const WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
    pub const E6: &str = "http://www.dkma.dk/medicinecard/xml.schema/2015/06/01/E6";
    pub const MC20150601: &str = "http://www.dkma.dk/medicinecard/xml.schema/2015/06/01";
    pub const MC160: &str = "http://fmk-teknik.dk/160";
    pub const SDSD2012: &str = "http://www.sdsd.dk/dgws/2012/06";
    pub const SDSD2010: &str = "http://www.sdsd.dk/dgws/2010/08";
}

/// The FMK interface version a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FmkVersion {
    /// FMK 1.4.6 "E6" (`…/2015/06/01/E6`).
    E6,
    /// FMK 1.6.0 (`http://fmk-teknik.dk/160`).
    V160,
}

impl FmkVersion {
    /// The body namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            FmkVersion::E6 => ns::E6,
            FmkVersion::V160 => ns::MC160,
        }
    }

    /// The `SOAPAction` of `operation` (e.g. `CreateFocesWhitelisting`) in this version.
    pub fn soap_action(self, operation: &str) -> String {
        format!("{}#{operation}", self.namespace())
    }
}

/// What Create does for a CVR + FocesId that is already whitelisted (brief §10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplicate {
    /// Fault `processing_problem`: "FocesWhitelisting already exists for CVR … and FocesId …".
    #[default]
    Error,
    /// Replace the stored CertHash and echo the entry.
    UpdateHash,
    /// Store a second entry.
    AddSecond,
}

/// The SOSI STS's own whitelist of calling certificates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StsAllow {
    /// Any certificate chaining to the client roots.
    #[default]
    Any,
    /// Certificates whose OCES3 UUID (`serialNumber UI:DK-O:G:<uuid>`) is listed
    /// (case-insensitive): a renewal keeping the UUID stays allowed.
    Uuids(Vec<String>),
    /// Certificates whose SHA-1 or SHA-256 thumbprint (hex, any case, `:` allowed) is listed: a
    /// renewal is refused until its new thumbprint is added.
    Thumbprints(Vec<String>),
}

/// How an [`FmkSimulator`] behaves.
#[derive(Debug, Clone)]
pub struct FmkOptions {
    /// DER certificates the clients' TLS and ID-card certificates must chain to (the OCES3
    /// test root; issuing CAs may be listed too, they then act as anchors).
    pub client_roots: Vec<Vec<u8>>,
    /// DER issuing CAs for ID-card certificates (a card carries only its leaf); the issuing
    /// CAs a client sends in its TLS handshake are used as well.
    pub client_intermediates: Vec<Vec<u8>>,
    /// A system ID card may create and delete whitelistings (brief §5.5). Default true; false
    /// answers `not_authorized` ("needs the owner").
    pub system_cards_may_whitelist: bool,
    pub on_duplicate: Duplicate,
    /// Delete matches on CertHash too. Default true.
    pub delete_matches_hash: bool,
    /// A 1.6.0 server from before 2026-07: `FocesId` at most 10 characters. Default false.
    pub foces_id_max_10: bool,
    /// Accept the role `Apoteksansat` besides `Apoteker`. Default false.
    pub relaxed_role: bool,
    /// The STS signs the cards it issues with RSA-SHA256 instead of RSA-SHA1 (the real STS:
    /// RSA-SHA1). Default false.
    pub sts_signs_sha256: bool,
    /// The `fmk-schemas` tree (the folder holding `etc/schemas`). Default:
    /// `<crate>/../../shared/protocols/reference/dk-fmk/fmk-schemas`.
    pub schema_root: Option<PathBuf>,
}

impl Default for FmkOptions {
    fn default() -> FmkOptions {
        FmkOptions {
            client_roots: Vec::new(),
            client_intermediates: Vec::new(),
            system_cards_may_whitelist: true,
            on_duplicate: Duplicate::Error,
            delete_matches_hash: true,
            foces_id_max_10: false,
            relaxed_role: false,
            sts_signs_sha256: false,
            schema_root: None,
        }
    }
}

/// One stored whitelisting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whitelisting {
    pub foces_id: String,
    /// As sent, or `Ukendt` when the request had none.
    pub cert_hash: String,
    /// The modifier's name: given name and surname (1.4.6) or the name (1.6.0).
    pub created_by: String,
    /// The interface the entry was created through.
    pub version: FmkVersion,
}

/// Which endpoint a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Fmk,
    Sts,
}

/// One request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub endpoint: Endpoint,
    /// The `SOAPAction` without its quotes (empty when absent).
    pub soap_action: String,
    /// The local name of the body's root element (empty when there was none).
    pub body_root: String,
    /// The fault code answered, if any.
    pub fault: Option<String>,
    /// Sent by the pharmacy owner's own client ([`FmkSimulator::submit_as_owner`]), not by
    /// certvakt.
    pub by_owner: bool,
}

/// What the two endpoints share.
struct Shared {
    options: FmkOptions,
    schemas: schemas::Schemas,
    sts_identity: IssuedCert,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    whitelistings: BTreeMap<String, Vec<Whitelisting>>,
    log: Vec<LoggedRequest>,
    faults: BTreeMap<String, String>,
    sts_down: bool,
    sts_allow: StsAllow,
    messages: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running FMK and SOSI STS simulators. Dropping it stops both.
pub struct FmkSimulator {
    shared: Arc<Shared>,
    server_identity: ServerIdentity,
    sts_ca: TestCa,
    server: SoapServer,
}

impl std::fmt::Debug for FmkSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FmkSimulator")
            .field("url", &self.server.base_url())
            .finish_non_exhaustive()
    }
}

impl FmkSimulator {
    /// Starts both endpoints on a free loopback port.
    pub fn start(options: FmkOptions) -> Result<FmkSimulator> {
        crate::xmlsec::require_tools()?;
        let schema_root = options.schema_root.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/protocols/reference/dk-fmk/fmk-schemas")
        });
        let schemas = schemas::Schemas::prepare(&schema_root)?;
        let sts_ca = TestCa::new(CaShape::Oces3)?;
        let sts_identity = sts_ca
            .issue(
                &LeafSpec::oces3(
                    "33257872",
                    "6a1f3c2e-9d4b-4e8a-b1c7-2f5d8e9a0b3c",
                    "SOSI STS simulator",
                )
                .key_type(KeyType::Rsa2048),
            )
            .context("the STS's signing certificate")?;
        let server_identity = ServerIdentity::loopback()?;
        let shared = Arc::new(Shared {
            options,
            schemas,
            sts_identity,
            state: Mutex::new(State::default()),
        });
        let serving = Arc::clone(&shared);
        let handler: Handler = Arc::new(move |request: SoapRequest| route(&serving, &request));
        let server = SoapServer::start(
            "certvakt-fmk-sim",
            &server_identity,
            &shared.options.client_roots,
            handler,
        )?;
        Ok(FmkSimulator {
            shared,
            server_identity,
            sts_ca,
            server,
        })
    }

    /// `https://127.0.0.1:PORT/fmk12/ws/MedicineCard`.
    pub fn fmk_url(&self) -> String {
        format!("{}{FMK_PATH}", self.server.base_url())
    }

    /// `https://127.0.0.1:PORT/sts/services/NewSecurityTokenService`.
    pub fn sts_url(&self) -> String {
        format!("{}{STS_PATH}", self.server.base_url())
    }

    /// The root of both endpoints' TLS certificate, PEM.
    pub fn server_root_pem(&self) -> String {
        self.server_identity.ca.root_pem()
    }

    /// The certificate the STS signs ID cards with, PEM (what FMK trusts).
    pub fn sts_certificate_pem(&self) -> String {
        self.shared.sts_identity.cert_pem.clone()
    }

    /// The root above the STS's signing certificate, PEM.
    pub fn sts_root_pem(&self) -> String {
        self.sts_ca.root_pem()
    }

    /// The whitelistings stored for `cvr`, oldest first.
    pub fn whitelistings(&self, cvr: &str) -> Vec<Whitelisting> {
        lock(&self.shared.state)
            .whitelistings
            .get(cvr)
            .cloned()
            .unwrap_or_default()
    }

    /// Stores a whitelisting directly (state for a test to start from), as if created through
    /// 1.4.6 E6 by "Seed Data".
    pub fn insert_whitelisting(&self, cvr: &str, foces_id: &str, cert_hash: Option<&str>) {
        lock(&self.shared.state)
            .whitelistings
            .entry(cvr.to_owned())
            .or_default()
            .push(Whitelisting {
                foces_id: foces_id.to_owned(),
                cert_hash: cert_hash.unwrap_or(medicinecard::UNKNOWN_HASH).to_owned(),
                created_by: "Seed Data".to_owned(),
                version: FmkVersion::E6,
            });
    }

    /// The pharmacy owner sends a prepared request body (the operation element alone, either
    /// version) through their own FMK client: it is validated like a request body (schema,
    /// role, CVR, FocesId) and applied. Returns the response body element; `Err` with the
    /// reason when refused.
    pub fn submit_as_owner(&self, body_xml: &str) -> Result<String> {
        medicinecard::submit_as_owner(&self.shared, body_xml)
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.state).log.clone()
    }

    /// Makes every following call of `operation` (e.g. `CreateFocesWhitelisting`, either
    /// version) answer the fault `fault_code` until called again with `None`.
    pub fn set_fault(&self, operation: &str, fault_code: Option<&str>) {
        let mut state = lock(&self.shared.state);
        match fault_code {
            Some(code) => {
                state.faults.insert(operation.to_owned(), code.to_owned());
            }
            None => {
                state.faults.remove(operation);
            }
        }
    }

    /// While down, the STS answers every request with HTTP 503 and no SOAP body.
    pub fn set_sts_down(&self, down: bool) {
        lock(&self.shared.state).sts_down = down;
    }

    /// The SOSI STS's whitelist of calling certificates.
    pub fn allow_sts_callers(&self, allow: StsAllow) {
        lock(&self.shared.state).sts_allow = allow;
    }
}

fn route(shared: &Shared, request: &SoapRequest) -> SoapReply {
    if request.method != "POST" {
        return SoapReply::text(405, "only POST is served here");
    }
    match request.path.as_str() {
        FMK_PATH => medicinecard::handle(shared, request),
        STS_PATH => sts::handle(shared, request),
        other => SoapReply::text(404, &format!("no service at {other}")),
    }
}

impl Shared {
    fn log(&self, entry: LoggedRequest) {
        lock(&self.state).log.push(entry);
    }

    /// A fresh message ID for a `medcom:Header`.
    fn message_id(&self) -> String {
        let n = {
            let mut state = lock(&self.state);
            state.messages += 1;
            state.messages
        };
        use sha2::{Digest as _, Sha256};
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let digest = Sha256::digest(format!("{n}/{nanos}").as_bytes());
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&digest[..16])
    }
}
