//! Which control connections are served: places counted per uid, with a reserve for admins.
//!
//! Contract:
//! - A connection is counted only once its peer is known from the kernel's credentials: a
//!   stranger never holds a place that a served peer needs.
//! - While a peer's groups are looked up ([`Admission::check`]; root needs no lookup and skips
//!   this), the connection counts against its uid — at most `per_uid` for one uid, together with
//!   the uid's connections served with read access — and against `checking` in all.
//! - Served ([`Admission::admit`]): at most `total` connections. A peer with read access may not
//!   take the last `admin_reserve` of them, and one uid with read access holds at most `per_uid`;
//!   so neither a reader nor a stranger can ever keep root or the admin group out. Admins are
//!   limited by `total` alone: they are trusted to close what they open.
//! - A [`Checking`] or [`Slot`] gives its place back when dropped. [`Busy`] says why a peer is
//!   turned away: in a log line ([`fmt::Display`]) and in the sentence the peer reads
//!   ([`Busy::sentence`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::protocol::Access;

/// How many places there are; [`super::server`] documents the numbers it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quotas {
    /// Connections served at once, all peers together.
    pub total: usize,
    /// Of `total`, the places only root and the admin group may take.
    pub admin_reserve: usize,
    /// Connections of one uid without admin access, being checked or served.
    pub per_uid: usize,
    /// Connections whose peer's groups are being looked up at once.
    pub checking: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct PerUid {
    checking: usize,
    reading: usize,
}

#[derive(Debug, Default)]
struct Counts {
    served: usize,
    checking: usize,
    uids: HashMap<u32, PerUid>,
}

impl Counts {
    fn uid(&mut self, uid: u32) -> &mut PerUid {
        self.uids.entry(uid).or_default()
    }

    /// Forgets a uid that holds nothing, so the map never outgrows the connections.
    fn tidy(&mut self, uid: u32) {
        if let Some(counts) = self.uids.get(&uid) {
            if counts.checking == 0 && counts.reading == 0 {
                self.uids.remove(&uid);
            }
        }
    }
}

/// The places of one control server.
#[derive(Debug)]
pub(crate) struct Admission {
    quotas: Quotas,
    counts: Mutex<Counts>,
}

/// Why a connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// So many connections are being checked that this one cannot be.
    Checking { open: usize },
    /// This uid already holds as many connections as one uid without admin access may.
    Uid { uid: u32, held: usize },
    /// Every place but the admins' reserve is taken.
    Readers { open: usize },
    /// Every place is taken.
    Full { open: usize },
}

impl Busy {
    /// The sentence the turned-away peer reads.
    pub fn sentence(&self) -> String {
        match self {
            Busy::Checking { open } => format!(
                "certvaktd is busy: {open} new control connections are waiting for their credentials to be checked; try again in a moment"
            ),
            Busy::Uid { uid, held } => format!(
                "certvaktd is busy: uid {uid} already has {held} control connections open, the most one user without admin access may have; close one, or try again in a moment"
            ),
            Busy::Readers { open } => format!(
                "certvaktd is busy: {open} control connections are open, and the rest are kept for root and the admin group; try again in a moment"
            ),
            Busy::Full { open } => format!(
                "certvaktd is busy: {open} control connections are open; try again in a moment"
            ),
        }
    }
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Busy::Checking { open } => write!(f, "{open} connections are being checked already"),
            Busy::Uid { uid, held } => write!(f, "uid {uid} already holds {held} connections"),
            Busy::Readers { open } => write!(
                f,
                "{open} connections are open and the rest are kept for admins"
            ),
            Busy::Full { open } => write!(f, "{open} connections are open"),
        }
    }
}

/// A connection whose peer's groups are being looked up.
#[derive(Debug)]
pub(crate) struct Checking {
    admission: Arc<Admission>,
    uid: u32,
    /// False once [`Admission::admit`] has taken the place over.
    counted: bool,
}

impl Drop for Checking {
    fn drop(&mut self) {
        if self.counted {
            let mut counts = self.admission.lock();
            release_check(&mut counts, self.uid);
        }
    }
}

fn release_check(counts: &mut Counts, uid: u32) {
    counts.checking = counts.checking.saturating_sub(1);
    let per = counts.uid(uid);
    per.checking = per.checking.saturating_sub(1);
    counts.tidy(uid);
}

/// A served connection's place.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    uid: u32,
    reader: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.served = counts.served.saturating_sub(1);
        if self.reader {
            let per = counts.uid(self.uid);
            per.reading = per.reading.saturating_sub(1);
            counts.tidy(self.uid);
        }
    }
}

impl Admission {
    pub fn new(quotas: Quotas) -> Arc<Admission> {
        Arc::new(Admission {
            quotas,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection of `uid` while its groups are looked up.
    pub fn check(self: &Arc<Self>, uid: u32) -> Result<Checking, Busy> {
        let mut counts = self.lock();
        let per = counts.uids.get(&uid).copied().unwrap_or_default();
        if per.checking + per.reading >= self.quotas.per_uid {
            return Err(Busy::Uid {
                uid,
                held: per.checking + per.reading,
            });
        }
        if counts.checking >= self.quotas.checking {
            return Err(Busy::Checking {
                open: counts.checking,
            });
        }
        counts.checking += 1;
        counts.uid(uid).checking += 1;
        Ok(Checking {
            admission: self.clone(),
            uid,
            counted: true,
        })
    }

    /// Serves a connection of `uid` with `access` (never [`Access::None`]), taking over the
    /// place of its check if it had one.
    pub fn admit(
        self: &Arc<Self>,
        checked: Option<Checking>,
        uid: u32,
        access: Access,
    ) -> Result<Slot, Busy> {
        let mut counts = self.lock();
        if let Some(mut checked) = checked {
            if checked.counted {
                checked.counted = false;
                release_check(&mut counts, checked.uid);
            }
        }
        let reader = access != Access::Admin;
        if reader {
            let open_to_readers = self.quotas.total.saturating_sub(self.quotas.admin_reserve);
            if counts.served >= open_to_readers {
                return Err(if counts.served >= self.quotas.total {
                    Busy::Full {
                        open: counts.served,
                    }
                } else {
                    Busy::Readers {
                        open: counts.served,
                    }
                });
            }
            let held = counts.uids.get(&uid).map_or(0, |p| p.checking + p.reading);
            if held >= self.quotas.per_uid {
                return Err(Busy::Uid { uid, held });
            }
            counts.uid(uid).reading += 1;
        } else if counts.served >= self.quotas.total {
            return Err(Busy::Full {
                open: counts.served,
            });
        }
        counts.served += 1;
        Ok(Slot {
            admission: self.clone(),
            uid,
            reader,
        })
    }

    /// Connections served now (for tests and logs).
    #[cfg(test)]
    pub fn served(&self) -> usize {
        self.lock().served
    }

    /// Uids remembered now (for tests: none once every connection is gone).
    #[cfg(test)]
    fn uids_remembered(&self) -> usize {
        self.lock().uids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas() -> Quotas {
        Quotas {
            total: 6,
            admin_reserve: 2,
            per_uid: 3,
            checking: 4,
        }
    }

    #[test]
    fn readers_never_take_the_admin_reserve() {
        let admission = Admission::new(quotas());
        let mut held = Vec::new();
        // Four readers of four uids fill what readers may have.
        for uid in 1000..1004 {
            let check = admission.check(uid).expect("check");
            held.push(
                admission
                    .admit(Some(check), uid, Access::Read)
                    .expect("reader"),
            );
        }
        let check = admission.check(1004).expect("check");
        assert_eq!(
            admission.admit(Some(check), 1004, Access::Read).err(),
            Some(Busy::Readers { open: 4 })
        );
        // Root and an admin still get in, up to the total.
        held.push(admission.admit(None, 0, Access::Admin).expect("root"));
        let check = admission.check(1005).expect("check");
        held.push(
            admission
                .admit(Some(check), 1005, Access::Admin)
                .expect("admin"),
        );
        assert_eq!(
            admission.admit(None, 0, Access::Admin).err(),
            Some(Busy::Full { open: 6 })
        );
        drop(held);
        assert_eq!(admission.served(), 0);
        assert_eq!(admission.uids_remembered(), 0);
    }

    #[test]
    fn one_uid_holds_at_most_per_uid_checking_or_reading() {
        let admission = Admission::new(quotas());
        let first = admission.check(1000).expect("check");
        let reading = admission
            .admit(Some(first), 1000, Access::Read)
            .expect("reader");
        let second = admission.check(1000).expect("check");
        let third = admission.check(1000).expect("check");
        assert_eq!(
            admission.check(1000).err(),
            Some(Busy::Uid { uid: 1000, held: 3 })
        );
        // Another uid is not held back by the first.
        let other = admission.check(1001).expect("another uid");
        // A check that ends (refused, or the peer left) gives its place back.
        drop(second);
        let again = admission.check(1000).expect("place given back");
        // A check that turns out admin moves out of the uid's count.
        let admin = admission
            .admit(Some(third), 1000, Access::Admin)
            .expect("admin");
        let more = admission
            .check(1000)
            .expect("the admin's place is not the uid's");
        drop((reading, again, other, admin, more));
        assert_eq!(admission.served(), 0);
        assert_eq!(admission.uids_remembered(), 0);
    }

    #[test]
    fn checks_in_flight_are_bounded() {
        let admission = Admission::new(quotas());
        let checks: Vec<Checking> = (1000..1004)
            .map(|uid| admission.check(uid).expect("check"))
            .collect();
        assert_eq!(
            admission.check(2000).err(),
            Some(Busy::Checking { open: 4 })
        );
        drop(checks);
        assert!(admission.check(2000).is_ok());
    }

    #[test]
    fn sentences_say_what_to_do() {
        assert_eq!(
            Busy::Full { open: 64 }.sentence(),
            "certvaktd is busy: 64 control connections are open; try again in a moment"
        );
        assert!(
            Busy::Uid { uid: 1000, held: 8 }
                .sentence()
                .contains("uid 1000 already has 8 control connections open")
        );
        assert!(
            Busy::Readers { open: 48 }
                .sentence()
                .contains("kept for root and the admin group")
        );
    }
}
