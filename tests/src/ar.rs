//! An NHN Adresseregisteret (AR) simulator, with the CAs' LDAP certificate directories it
//! resolves `E_DS` addresses against. It imitates `protocols/no-nhn.md` §2–§4, built after its
//! §7 blueprint.
//!
//! - [`directory`]: the in-process CA directories keyed by (host, base, serial), with the
//!   publication delay, and the `E_DS` LDAP URL parser and builder.
//! - [`parties`]: organisations and services by HER-id with their current and future
//!   electronic addresses (promotion at `ValidFrom`, inheritance of the organisation's).
//! - [`clock`]: the injectable simulator clock everything here reads.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod clock;
pub mod directory;
pub mod parties;

pub use clock::Clock;
pub use directory::{
    Directory, DirectoryEntry, LdapProvider, LdapUrl, Lookup, SerialEncoding, build_ldap_url,
};
pub use parties::{
    Address, E_DS, E_EDI, FutureAddress, Organization, Parties, Party, Service, ShownAddress,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
