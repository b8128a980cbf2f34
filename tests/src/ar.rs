//! An NHN Adresseregisteret (AR) simulator, with the CAs' LDAP certificate directories it
//! resolves `E_DS` addresses against. It imitates `protocols/no-nhn.md` §2–§4, built after its
//! §7 blueprint.
//!
//! - [`directory`]: the in-process CA directories keyed by (host, base, serial), with the
//!   publication delay, and the `E_DS` LDAP URL parser and builder.
//! - [`clock`]: the injectable simulator clock everything here reads.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod clock;
pub mod directory;

pub use clock::Clock;
pub use directory::{
    Directory, DirectoryEntry, LdapProvider, LdapUrl, Lookup, SerialEncoding, build_ldap_url,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
