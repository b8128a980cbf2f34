//! When the daemon must next wake up on its own.
//!
//! A monitor has three moments per certificate at which its state changes without anything
//! happening on disk: it becomes valid (`not_before`), it enters the warning window
//! (`not_after - warn_before`), and it expires (`not_after`). [`next_wakeup`] returns the
//! earliest of those still in the future, so between them the daemon sleeps: no polling.

use crate::inventory::Inventory;

/// A safety rescan at least this often (seconds), for file systems where inotify misses
/// changes (NFS, some FUSE mounts). Cheap: unchanged files are only `stat`ed.
pub const SAFETY_RESCAN_SECS: i64 = 6 * 3_600;

/// The next moment after `now` at which any certificate changes state, if any.
pub fn next_transition(inventory: &Inventory, now: i64, warn_before: u64) -> Option<i64> {
    let warn = i64::try_from(warn_before).unwrap_or(i64::MAX);
    inventory
        .entries
        .iter()
        .flat_map(|e| {
            [
                e.cert.not_before,
                e.cert.not_after.saturating_sub(warn),
                e.cert.not_after,
            ]
        })
        .filter(|&t| t > now)
        .min()
}

/// When to wake up next: the next transition, but no later than the safety rescan.
pub fn next_wakeup(inventory: &Inventory, now: i64, warn_before: u64) -> i64 {
    let safety = now + SAFETY_RESCAN_SECS;
    next_transition(inventory, now, warn_before).map_or(safety, |t| t.min(safety))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Entry;

    fn entry(not_before: i64, not_after: i64) -> Entry {
        let mut entry = crate::inventory::example_entry();
        let cert = std::sync::Arc::make_mut(&mut entry.cert);
        cert.not_before = not_before;
        cert.not_after = not_after;
        entry
    }

    #[test]
    fn picks_the_earliest_future_transition() {
        let inv = Inventory {
            entries: vec![entry(0, 10_000), entry(500, 20_000)],
            ..Inventory::default()
        };
        // now=100: transitions are 0, 9000, 10000, 500, 19000, 20000 -> next is 500.
        assert_eq!(next_transition(&inv, 100, 1_000), Some(500));
        assert_eq!(next_transition(&inv, 500, 1_000), Some(9_000));
        assert_eq!(next_transition(&inv, 9_000, 1_000), Some(10_000));
        assert_eq!(next_transition(&inv, 20_000, 1_000), None);
    }

    #[test]
    fn sleeps_until_the_safety_rescan_when_nothing_is_due() {
        let inv = Inventory::default();
        assert_eq!(next_wakeup(&inv, 1_000, 0), 1_000 + SAFETY_RESCAN_SECS);
        let far = Inventory {
            entries: vec![entry(0, 1_000_000_000)],
            ..Inventory::default()
        };
        assert_eq!(next_wakeup(&far, 1_000, 0), 1_000 + SAFETY_RESCAN_SECS);
    }
}
