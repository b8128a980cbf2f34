//! The communication parties AR holds: organisations by HER-id, each with services that have
//! HER-ids of their own, and their electronic addresses (`protocols/no-nhn.md` §2.3, §4).
//!
//! Promises:
//! - Each party has current `ElectronicAddresses` (at most one per type) and
//!   `FutureElectronicAddresses` (each with a `ValidFrom`).
//! - A future address becomes current once the simulator clock reaches its `ValidFrom`: every
//!   read promotes first (it replaces the current address of its type, `LastChanged` =
//!   `ValidFrom`), so what a reader sees never depends on when the last write was.
//! - A service shows the organisation's address of every type it has none of its own, marked
//!   `inherited` ([`Parties::effective_addresses`]); its own addresses win.
//! - Parties are seeded from code with [`Organization`] / [`Service`] builders; every seeded
//!   organisation gets an `E_EDI` mailbox address unless the builder sets another.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::clock::Clock;
use super::lock;

/// The address type of a certificate pointer.
pub const E_DS: &str = "E_DS";
/// The address type of the message mailbox.
pub const E_EDI: &str = "E_EDI";

/// A current electronic address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `TypeCodeValue` (`E_DS`, `E_EDI`, …).
    pub type_code: String,
    pub address: String,
    /// Simulator time of the last change.
    pub last_changed: i64,
}

/// A scheduled electronic address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FutureAddress {
    pub type_code: String,
    pub address: String,
    pub last_changed: i64,
    /// Simulator time from which it is the current address of its type.
    pub valid_from: i64,
}

/// An address as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownAddress {
    pub address: Address,
    /// Taken from the organisation (only on services).
    pub inherited: bool,
}

/// A service of an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub her_id: i32,
    pub name: String,
    pub addresses: Vec<Address>,
    pub future_addresses: Vec<FutureAddress>,
}

impl Service {
    /// A service without addresses of its own (it inherits all).
    pub fn new(her_id: i32, name: &str) -> Service {
        Service {
            her_id,
            name: name.to_owned(),
            addresses: Vec::new(),
            future_addresses: Vec::new(),
        }
    }

    /// With its own current address of `type_code` (replacing one of that type).
    pub fn address(mut self, type_code: &str, address: &str) -> Service {
        set_address(&mut self.addresses, type_code, address, 0);
        self
    }
}

/// An organisation with its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub her_id: i32,
    pub name: String,
    /// The 9-digit organisation number.
    pub organization_number: i32,
    pub addresses: Vec<Address>,
    pub future_addresses: Vec<FutureAddress>,
    pub services: Vec<Service>,
}

impl Organization {
    /// An organisation with the mailbox `E_EDI` = `meldingstjener-api@testedi.nhn.no` (as in
    /// the real sample) and no certificate address yet.
    pub fn new(her_id: i32, name: &str, organization_number: i32) -> Organization {
        Organization {
            her_id,
            name: name.to_owned(),
            organization_number,
            addresses: vec![Address {
                type_code: E_EDI.to_owned(),
                address: "meldingstjener-api@testedi.nhn.no".to_owned(),
                last_changed: 0,
            }],
            future_addresses: Vec::new(),
            services: Vec::new(),
        }
    }

    /// With a current address of `type_code` (replacing one of that type).
    pub fn address(mut self, type_code: &str, address: &str) -> Organization {
        set_address(&mut self.addresses, type_code, address, 0);
        self
    }

    /// With a future address of `type_code`, current from `valid_from`.
    pub fn future_address(mut self, type_code: &str, address: &str, valid_from: i64) -> Self {
        self.future_addresses.push(FutureAddress {
            type_code: type_code.to_owned(),
            address: address.to_owned(),
            last_changed: 0,
            valid_from,
        });
        self
    }

    /// With `service`.
    pub fn service(mut self, service: Service) -> Organization {
        self.services.push(service);
        self
    }
}

fn set_address(list: &mut Vec<Address>, type_code: &str, address: &str, at: i64) {
    let new = Address {
        type_code: type_code.to_owned(),
        address: address.to_owned(),
        last_changed: at,
    };
    match list.iter_mut().find(|a| a.type_code == type_code) {
        Some(existing) => *existing = new,
        None => list.push(new),
    }
}

/// Moves every future address due at `now` into `current`.
fn promote(current: &mut Vec<Address>, future: &mut Vec<FutureAddress>, now: i64) {
    future.sort_by_key(|f| f.valid_from);
    let (due, later): (Vec<FutureAddress>, Vec<FutureAddress>) =
        future.drain(..).partition(|f| f.valid_from <= now);
    *future = later;
    for f in due {
        set_address(current, &f.type_code, &f.address, f.valid_from);
    }
}

/// What kind of party a HER-id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    Organization(Organization),
    /// A service and the organisation it belongs to.
    Service(Service, Organization),
}

/// The registry of parties; clones share it.
#[derive(Clone)]
pub struct Parties {
    clock: Clock,
    organizations: Arc<Mutex<BTreeMap<i32, Organization>>>,
    /// Whether future addresses become current at `ValidFrom` (default true); off, the
    /// simulator is an AR that stores them and never promotes them (open question 2 of the
    /// protocol brief).
    promote: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Parties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parties")
            .field("organizations", &lock(&self.organizations).len())
            .finish_non_exhaustive()
    }
}

impl Parties {
    /// No parties, on `clock`.
    pub fn new(clock: Clock) -> Parties {
        Parties {
            clock,
            organizations: Arc::new(Mutex::new(BTreeMap::new())),
            promote: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Whether future addresses become current at `ValidFrom` from now on.
    pub fn set_promote_future(&self, on: bool) {
        self.promote.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Adds (or replaces) an organisation with its services. Addresses seeded without a
    /// `last_changed` (0) are stamped with the simulator's now.
    pub fn insert(&self, mut organization: Organization) {
        let now = self.clock.now();
        let stamp = |addresses: &mut Vec<Address>, future: &mut Vec<FutureAddress>| {
            for a in addresses.iter_mut().filter(|a| a.last_changed == 0) {
                a.last_changed = now;
            }
            for f in future.iter_mut().filter(|f| f.last_changed == 0) {
                f.last_changed = now;
            }
        };
        stamp(
            &mut organization.addresses,
            &mut organization.future_addresses,
        );
        for service in &mut organization.services {
            stamp(&mut service.addresses, &mut service.future_addresses);
        }
        lock(&self.organizations).insert(organization.her_id, organization);
    }

    /// Runs `f` on the registry after promoting every due future address.
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<i32, Organization>) -> R) -> R {
        let now = self.clock.now();
        let mut organizations = lock(&self.organizations);
        let promoting = self.promote.load(std::sync::atomic::Ordering::SeqCst);
        for org in organizations.values_mut().filter(|_| promoting) {
            promote(&mut org.addresses, &mut org.future_addresses, now);
            for service in &mut org.services {
                promote(&mut service.addresses, &mut service.future_addresses, now);
            }
        }
        f(&mut organizations)
    }

    /// The party `her_id` names, as stored (after promotion).
    pub fn get(&self, her_id: i32) -> Option<Party> {
        self.with(|orgs| {
            if let Some(org) = orgs.get(&her_id) {
                return Some(Party::Organization(org.clone()));
            }
            orgs.values().find_map(|org| {
                org.services
                    .iter()
                    .find(|s| s.her_id == her_id)
                    .map(|s| Party::Service(s.clone(), org.clone()))
            })
        })
    }

    /// The organisation `her_id`, if it is one.
    pub fn organization(&self, her_id: i32) -> Option<Organization> {
        match self.get(her_id)? {
            Party::Organization(org) => Some(org),
            Party::Service(..) => None,
        }
    }

    /// The current addresses of `her_id` as a reader sees them: own first, then (on a service)
    /// the organisation's of the types it lacks, marked inherited.
    pub fn effective_addresses(&self, her_id: i32) -> Option<Vec<ShownAddress>> {
        Some(match self.get(her_id)? {
            Party::Organization(org) => shown(&org.addresses, false),
            Party::Service(service, org) => {
                let mut list = shown(&service.addresses, false);
                for address in &org.addresses {
                    if !service
                        .addresses
                        .iter()
                        .any(|a| a.type_code == address.type_code)
                    {
                        list.push(ShownAddress {
                            address: address.clone(),
                            inherited: true,
                        });
                    }
                }
                list
            }
        })
    }

    /// The current address of `type_code` of `her_id` (own or inherited).
    pub fn current_address(&self, her_id: i32, type_code: &str) -> Option<String> {
        self.effective_addresses(her_id)?
            .into_iter()
            .find(|a| a.address.type_code == type_code)
            .map(|a| a.address.address)
    }

    /// The future addresses of `her_id` itself (not inherited).
    pub fn future_addresses(&self, her_id: i32) -> Option<Vec<FutureAddress>> {
        Some(match self.get(her_id)? {
            Party::Organization(org) => org.future_addresses,
            Party::Service(service, _) => service.future_addresses,
        })
    }

    /// Sets the current address of `type_code` of party `her_id` (seeding; no checks).
    /// `false` when there is no such party.
    pub fn set_address(&self, her_id: i32, type_code: &str, address: &str) -> bool {
        let now = self.clock.now();
        self.edit(her_id, |current, _| {
            set_address(current, type_code, address, now)
        })
    }

    /// Runs `f` on the own current and future lists of party `her_id` (after promotion);
    /// `false` when there is no such party.
    pub(crate) fn edit(
        &self,
        her_id: i32,
        f: impl FnOnce(&mut Vec<Address>, &mut Vec<FutureAddress>),
    ) -> bool {
        self.with(|orgs| {
            if let Some(org) = orgs.get_mut(&her_id) {
                f(&mut org.addresses, &mut org.future_addresses);
                return true;
            }
            for org in orgs.values_mut() {
                if let Some(service) = org.services.iter_mut().find(|s| s.her_id == her_id) {
                    f(&mut service.addresses, &mut service.future_addresses);
                    return true;
                }
            }
            false
        })
    }
}

fn shown(list: &[Address], inherited: bool) -> Vec<ShownAddress> {
    list.iter()
        .map(|address| ShownAddress {
            address: address.clone(),
            inherited,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_address_is_promoted_at_valid_from_and_services_inherit() {
        let clock = Clock::frozen(10_000);
        let parties = Parties::new(clock.clone());
        parties.insert(
            Organization::new(8142987, "KS-DIGITALE FELLESTJENESTER AS", 931796003)
                .address(E_DS, "ldap://old")
                .future_address(E_DS, "ldap://new", 10_100)
                .service(Service::new(8143040, "Bedriftshelsetjeneste"))
                .service(Service::new(8143041, "Eget sertifikat").address(E_DS, "ldap://own")),
        );
        assert_eq!(
            parties.current_address(8142987, E_DS).as_deref(),
            Some("ldap://old")
        );
        let inherited = parties.effective_addresses(8143040).expect("the service");
        assert!(inherited.iter().all(|a| a.inherited), "{inherited:?}");
        assert_eq!(inherited.len(), 2, "E_EDI and E_DS");
        assert_eq!(
            parties.current_address(8143041, E_DS).as_deref(),
            Some("ldap://own")
        );

        clock.advance(99);
        assert_eq!(
            parties.current_address(8143040, E_DS).as_deref(),
            Some("ldap://old")
        );
        clock.advance(1);
        assert_eq!(
            parties.current_address(8143040, E_DS).as_deref(),
            Some("ldap://new")
        );
        assert_eq!(
            parties.current_address(8143041, E_DS).as_deref(),
            Some("ldap://own")
        );
        let org = parties.organization(8142987).expect("the organisation");
        assert!(org.future_addresses.is_empty());
        let ds = org
            .addresses
            .iter()
            .find(|a| a.type_code == E_DS)
            .expect("E_DS");
        assert_eq!(ds.last_changed, 10_100);
        assert!(parties.get(1).is_none());
        assert!(
            parties.organization(8143040).is_none(),
            "a service is no organisation"
        );
    }
}
