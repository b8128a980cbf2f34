//! An NHN Adresseregisteret (AR) simulator, with the CAs' LDAP certificate directories it
//! resolves `E_DS` addresses against. It imitates `protocols/no-nhn.md` §2–§4, built after its
//! §7 blueprint, and refuses what the real service would refuse.
//!
//! - [`directory`]: the in-process CA directories keyed by (host, base, serial), with the
//!   publication delay, and the `E_DS` LDAP URL parser and builder.
//! - [`parties`]: organisations and services by HER-id with their current and future
//!   electronic addresses (promotion at `ValidFrom`, inheritance of the organisation's).
//! - [`clock`]: the injectable simulator clock everything here reads.
//! - [`receiver`]: a helsenorge-like message sender that looks certificates up in AR, caches
//!   them, and encrypts to the cached one.
//!
//! **Server.** [`ArSim::start`] serves HTTPS on loopback (its own thread; no client
//! certificate; the TLS root is [`ArSim::server_root_pem`]) with two bindings of
//! `ICommunicationPartyService` (2025 contract):
//!
//! | path | binding |
//! |---|---|
//! | `POST /v1/AR/Basic` | SOAP 1.1, `text/xml`, `SOAPAction: "…/ICommunicationPartyService/<Op>"` |
//! | `POST /v1/AR` | SOAP 1.2 + WS-Addressing 1.0, `application/soap+xml; action="…"`, headers `wsa:Action`, `wsa:MessageID`, `wsa:To` (ending in `/v1/AR`) required; answers carry `wsa:Action` and `wsa:RelatesTo` |
//!
//! Every request is checked in this order (each refusal is logged, see [`ArSim::requests`]):
//! 1. AR down ([`ArSim::set_down`], [`ArSim::set_down_until`]) → HTTP 503, no SOAP;
//! 2. HTTP Basic against [`ArConfig::accounts`]: missing or wrong → HTTP 401 with
//!    `WWW-Authenticate: Basic`;
//! 3. the binding: content type (else HTTP 415), envelope version, the action (`SOAPAction` or
//!    `wsa:Action`, which must agree with the content type's `action`) naming one of the
//!    operations below, the WS-Addressing headers on `/v1/AR`, and the body element matching
//!    the action → a SOAP fault (`a:ActionNotSupported`, `a:MessageAddressingHeaderRequired`,
//!    `a:DeserializationFailed`, HTTP 500);
//! 4. WCF's member order ([`ArConfig::wcf_drop_out_of_order`], default on): a member of
//!    `OrganizationUpdate`, `ServiceUpdate`, `ElectronicAddress`, `FutureElectronicAddress`,
//!    `Code`, `Period` or `PhysicalAddress` that arrives after a member that follows it
//!    alphabetically (§2.3) is silently dropped, as WCF's DataContractSerializer does; the
//!    dropped paths are logged. With the knob off, xmllint refuses them in step 5;
//! 5. the (remaining) body element validates against the real 2025 schemas (`xmllint`) →
//!    `a:DeserializationFailed` naming xmllint's message;
//! 6. the operation, whose faults are the WSDL's: `GenericFault` {`ErrorCode`, `Message`} and
//!    `ValidationFault` {`Errors`/`ValidationError`*, `HasErrors`}, namespace
//!    `http://register.nhn.no/Common`, in a SOAP 1.1 `detail` / SOAP 1.2 `Detail` (HTTP 500).
//!
//! Operations:
//! - `GetCommunicationPartyDetails` (`herId`): the Organization (with its Services) or the
//!   Service, with `ElectronicAddresses` (each with `Address`, `Inherited`, `LastChanged`, the
//!   `Type` code as in the real sample, `TypeCodeValue`) and `FutureElectronicAddresses`
//!   (`ValidFrom`); unknown HER-id → `GenericFault` `NotFound`.
//! - `UpdateOrganizationDetails` (`org`) / `UpdateServiceDetails` (`t`): the account must have
//!   the HER-id in [`ServiceAccount::may_write`] → else `GenericFault` `AccessDenied`; the
//!   HER-id must be an organisation / a service → else `GenericFault` `NotFound`. Each address
//!   needs a type (`TypeCodeValue`, or `Type/CodeValue`; equal when both) and an address, at
//!   most one current address per type, a `ValidFrom` on future addresses, and every `E_DS`
//!   (current or future) must parse and resolve now to published, visible certificates →
//!   else `ValidationFault` naming the URL. A list that is sent replaces the stored list
//!   (merged by type instead with [`ArConfig::merge_addresses`]); an omitted list is left
//!   unchanged. A zoneless `ValidFrom` is read as UTC.
//! - `SearchCertificatesByLdapUrl` (`ldapUrl`): `ActualLdapUrl` (the URL in AR's spelling) and
//!   the visible certificates it names as `CertificateCandidate`s (`ValidForEncryption` =
//!   keyEncipherment, `ValidForSigning` = nonRepudiation, `FallbackSource` `None`); a malformed
//!   URL or an unknown directory → `ValidationFault`.
//! - `GetCertificateDetailsForEncryption` / `…ForValidatingSignature` (`herId`): from the
//!   party's current `E_DS` (after promotion; inherited on a service) the first visible
//!   certificate with keyEncipherment / nonRepudiation, as `Certificate` (base64 DER) and
//!   `LdapUrl` (the stored `E_DS` address); none → `GenericFault` `NotFound`.
//! - `GetLdapSearchProviders`: the configured directories as `LdapSearchProvider`
//!   {`BaseUrl` `ldap://host/base`, `DisplayName`, `DistinguishedName` = the base}.
//!
//! Times in answers are UTC with a `Z` (the real service writes local time without a zone).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Result;

use crate::soapd::{Handler, ServerIdentity, SoapRequest, SoapServer};

pub mod clock;
pub mod directory;
mod operations;
pub mod parties;
pub mod receiver;
mod schemas;
mod service;
#[cfg(test)]
mod tests;
mod wcf;

pub use clock::Clock;
pub use directory::{
    Directory, DirectoryEntry, LdapProvider, LdapUrl, Lookup, SerialEncoding, build_ldap_url,
};
pub use parties::{
    Address, E_DS, E_EDI, FutureAddress, Organization, Parties, Party, Service, ShownAddress,
};

/// The path of the SOAP 1.1 binding.
pub const BASIC_PATH: &str = "/v1/AR/Basic";
/// The path of the SOAP 1.2 + WS-Addressing binding.
pub const SOAP12_PATH: &str = "/v1/AR";
/// `SOAPAction` / `wsa:Action` = this + the operation name.
pub const ACTION_PREFIX: &str =
    "http://register.nhn.no/CommunicationParty/ICommunicationPartyService/";

/// The operations served.
pub const OPERATIONS: [&str; 7] = [
    "GetCommunicationPartyDetails",
    "UpdateOrganizationDetails",
    "UpdateServiceDetails",
    "SearchCertificatesByLdapUrl",
    "GetCertificateDetailsForEncryption",
    "GetCertificateDetailsForValidatingSignature",
    "GetLdapSearchProviders",
];

/// Namespaces of the wire format.
pub mod ns {
    pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
    pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
    pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
    /// Operations and party types.
    pub const CP: &str = "http://register.nhn.no/CommunicationParty";
    /// Shared types, faults.
    pub const COMMON: &str = "http://register.nhn.no/Common";
    pub const CERTIFICATE_DETAILS: &str = "http://register.nhn.no/CertificateDetails";
    pub const SEARCH_RESULT: &str = "http://register.nhn.no/CertificateSearchResult";
    pub const SYSTEM: &str = "http://schemas.datacontract.org/2004/07/System";
    /// WCF's dispatcher fault codes (`DeserializationFailed`, `ActionNotSupported`).
    pub const WCF_DISPATCHER: &str =
        "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher";
}

/// An NHN service account (tjenestekonto) and the parties it may write. Its `Debug` leaves
/// the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub username: String,
    pub password: String,
    /// HER-ids (organisations or services) it may update.
    pub may_write: Vec<i32>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("may_write", &self.may_write)
            .finish()
    }
}

impl ServiceAccount {
    pub fn new(username: &str, password: &str, may_write: &[i32]) -> ServiceAccount {
        ServiceAccount {
            username: username.to_owned(),
            password: password.to_owned(),
            may_write: may_write.to_vec(),
        }
    }
}

/// How an [`ArSim`] starts.
#[derive(Debug, Clone)]
pub struct ArConfig {
    pub accounts: Vec<ServiceAccount>,
    /// The CA directories (default: Buypass test4 and Commfides test).
    pub providers: Vec<LdapProvider>,
    /// Parties to seed.
    pub parties: Vec<Organization>,
    /// The simulator clock (default: real time).
    pub clock: Clock,
    /// Drop out-of-order members silently, as WCF does (default true).
    pub wcf_drop_out_of_order: bool,
    /// Merge a received address list into the stored one by type instead of replacing it
    /// (default false).
    pub merge_addresses: bool,
    /// The 2025 WSDL. Default:
    /// `<crate>/../../shared/protocols/reference/no-nhn/adresseregisteret/fiks-nhn-client/nhn-adresseregisteret-sok.wsdl`.
    pub wsdl: Option<PathBuf>,
}

impl Default for ArConfig {
    fn default() -> ArConfig {
        ArConfig {
            accounts: Vec::new(),
            providers: vec![
                LdapProvider::buypass_test4(),
                LdapProvider::commfides_test(),
            ],
            parties: Vec::new(),
            clock: Clock::real(),
            wcf_drop_out_of_order: true,
            merge_addresses: false,
            wsdl: None,
        }
    }
}

/// Which binding a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `/v1/AR/Basic`, SOAP 1.1.
    Basic,
    /// `/v1/AR`, SOAP 1.2 + WS-Addressing.
    Soap12,
}

/// One request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The operation (empty when the request did not get that far).
    pub operation: String,
    pub binding: Binding,
    /// The authenticated account (None before or without authentication).
    pub account: Option<String>,
    /// The HER-id the request named, if any.
    pub her_id: Option<i32>,
    /// The raw body as received.
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The fault answered (`GenericFault AccessDenied: …`, `ValidationFault: …`,
    /// `a:DeserializationFailed: …`), if any.
    pub fault: Option<String>,
    /// Members dropped for arriving out of order (paths like `org/ElectronicAddresses`).
    pub dropped: Vec<String>,
}

/// Settings that tests change while the server runs.
#[derive(Debug, Clone)]
struct Knobs {
    wcf_drop_out_of_order: bool,
    merge_addresses: bool,
    down: bool,
    down_until: Option<i64>,
}

struct State {
    accounts: Vec<ServiceAccount>,
    knobs: Knobs,
    log: Vec<LoggedRequest>,
}

struct Shared {
    clock: Clock,
    directory: Directory,
    parties: Parties,
    schemas: schemas::Schemas,
    state: Mutex<State>,
}

impl Shared {
    fn knobs(&self) -> Knobs {
        lock(&self.state).knobs.clone()
    }

    fn log(&self, entry: LoggedRequest) {
        lock(&self.state).log.push(entry);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running AR simulator. Dropping it stops the server.
pub struct ArSim {
    shared: Arc<Shared>,
    identity: ServerIdentity,
    server: SoapServer,
}

impl std::fmt::Debug for ArSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArSim")
            .field("url", &self.server.base_url())
            .finish_non_exhaustive()
    }
}

impl ArSim {
    /// Starts both bindings on a free loopback port.
    pub fn start(config: ArConfig) -> Result<ArSim> {
        crate::xmlsec::require_tools()?;
        let wsdl = config.wsdl.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
                "../../shared/protocols/reference/no-nhn/adresseregisteret/fiks-nhn-client/nhn-adresseregisteret-sok.wsdl",
            )
        });
        let schemas = schemas::Schemas::prepare(&wsdl)?;
        let directory = Directory::new(config.providers.clone(), config.clock.clone());
        let parties = Parties::new(config.clock.clone());
        for organization in config.parties {
            parties.insert(organization);
        }
        let shared = Arc::new(Shared {
            clock: config.clock.clone(),
            directory,
            parties,
            schemas,
            state: Mutex::new(State {
                accounts: config.accounts,
                knobs: Knobs {
                    wcf_drop_out_of_order: config.wcf_drop_out_of_order,
                    merge_addresses: config.merge_addresses,
                    down: false,
                    down_until: None,
                },
                log: Vec::new(),
            }),
        });
        let identity = ServerIdentity::loopback()?;
        let serving = Arc::clone(&shared);
        let handler: Handler =
            Arc::new(move |request: SoapRequest| service::handle(&serving, &request));
        let server = SoapServer::start("certvakt-ar-sim", &identity, &[], handler)?;
        Ok(ArSim {
            shared,
            identity,
            server,
        })
    }

    /// `https://127.0.0.1:PORT/v1/AR/Basic` (SOAP 1.1).
    pub fn url_basic(&self) -> String {
        format!("{}{BASIC_PATH}", self.server.base_url())
    }

    /// `https://127.0.0.1:PORT/v1/AR` (SOAP 1.2 + WS-Addressing).
    pub fn url_soap12(&self) -> String {
        format!("{}{SOAP12_PATH}", self.server.base_url())
    }

    /// The root of the server's TLS certificate, PEM (what a client must trust).
    pub fn server_root_pem(&self) -> String {
        self.identity.ca.root_pem()
    }

    /// The simulator clock (shared: setting it moves the server's time).
    pub fn clock(&self) -> Clock {
        self.shared.clock.clone()
    }

    /// The CA directories (shared: publish certificates here).
    pub fn directory(&self) -> Directory {
        self.shared.directory.clone()
    }

    /// The parties (shared: inspect or seed).
    pub fn parties(&self) -> Parties {
        self.shared.parties.clone()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.state).log.clone()
    }

    /// Adds (or replaces, by username) a service account.
    pub fn add_account(&self, account: ServiceAccount) {
        let mut state = lock(&self.shared.state);
        state.accounts.retain(|a| a.username != account.username);
        state.accounts.push(account);
    }

    /// Drop out-of-order members silently (true, WCF) or let the schema refuse them (false).
    pub fn set_wcf_drop_out_of_order(&self, on: bool) {
        lock(&self.shared.state).knobs.wcf_drop_out_of_order = on;
    }

    /// Merge received address lists by type (true) or replace the stored lists (false).
    pub fn set_merge_addresses(&self, on: bool) {
        lock(&self.shared.state).knobs.merge_addresses = on;
    }

    /// While down, every request gets HTTP 503.
    pub fn set_down(&self, down: bool) {
        lock(&self.shared.state).knobs.down = down;
    }

    /// Down until the simulator clock reaches `until` (None: not down by time).
    pub fn set_down_until(&self, until: Option<i64>) {
        lock(&self.shared.state).knobs.down_until = until;
    }
}
