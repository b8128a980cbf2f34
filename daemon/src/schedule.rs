//! When the daemon must next wake up on its own.
//!
//! A monitor has three moments per certificate at which its state changes without anything
//! happening on disk: it becomes valid (`not_before`), it enters the warning window
//! (`not_after - warn_before`), and it expires (`not_after`). [`next_wakeup`] returns the
//! earliest of those still in the future, so between them the daemon sleeps: no polling.
//!
//! For managed certificates it also says when a renewal is due ([`renewal_due`]: at two
//! thirds of the lifetime, or `renew_before` ahead of expiry if that is earlier, moved a
//! little earlier by a jitter fixed per certificate so that a fleet of servers does not renew
//! in the same second) and how long to wait after a failure ([`backoff`]: exponential,
//! capped, with jitter).

#[cfg(test)]
use crate::config::QuietWindow;
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

/// When a certificate valid from `not_before` to `not_after` is due for renewal.
///
/// Two thirds into its lifetime, or `renew_before` seconds before it expires, whichever is
/// earlier; then moved earlier by up to 1% of the lifetime (at most 6 hours), by an amount
/// fixed for `id`. Never before half the lifetime: a `renew_before` as long as the lifetime
/// (30 days on a 10-minute certificate) would otherwise renew every new certificate at once,
/// for ever.
///
/// No arithmetic here can wrap, whatever the times and however long `renew_before` is: a
/// `renew_before` beyond `i64::MAX` seconds means "as early as allowed", never "not at all".
pub fn renewal_due(id: &str, not_before: i64, not_after: i64, renew_before: Option<u64>) -> i64 {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    // In i128: `lifetime * 2` overflows an i64 for lifetimes past half its range.
    let two_thirds =
        i64::try_from(i128::from(not_before) + i128::from(lifetime) * 2 / 3).unwrap_or(not_after);
    let due = match renew_before {
        Some(before) => {
            two_thirds.min(not_after.saturating_sub(i64::try_from(before).unwrap_or(i64::MAX)))
        }
        None => two_thirds,
    };
    let spread = u64::try_from((lifetime / 100).min(6 * 3_600)).unwrap_or(0);
    let jitter = if spread > 0 {
        i64::try_from(stable_hash(id) % spread).unwrap_or(0)
    } else {
        0
    };
    due.saturating_sub(jitter)
        .max(not_before.saturating_add(lifetime / 2))
}

/// The time inside an authority's suggested window `[start, end)` at which `id` renews: the
/// same for the same id and window, spread evenly over the window across ids (RFC 9773 §4.2
/// asks for a random point; a stable one survives restarts without renewing twice).
pub fn in_window(id: &str, start: i64, end: i64) -> i64 {
    let width = u64::try_from(end.saturating_sub(start).max(1)).unwrap_or(1);
    start.saturating_add(i64::try_from(stable_hash(id) % width).unwrap_or(0))
}

/// Seconds to wait after the `failures`-th failure in a row (1-based): `initial` doubled per
/// failure, capped at `max`, then reduced by up to a fifth by a jitter drawn from `seed`, so
/// retries of many certificates do not arrive together.
pub fn backoff(failures: u32, initial: u64, max: u64, seed: u64) -> u64 {
    let exponent = failures.saturating_sub(1).min(32);
    let base = initial.saturating_mul(1u64 << exponent).min(max).max(1);
    let jitter = splitmix(seed ^ u64::from(failures)) % (base / 5 + 1);
    base - jitter
}

/// The first moment at or after `t` outside every quiet window. `offset_at` gives the local
/// time's offset from UTC, in seconds, at a moment (it changes with daylight saving).
pub fn after_quiet_hours(
    t: i64,
    windows: &[crate::config::QuietWindow],
    offset_at: impl Fn(i64) -> i64,
) -> i64 {
    let mut t = t;
    // Windows can touch each other; a few steps cover any sensible set.
    for _ in 0..8 {
        let local = t + offset_at(t);
        let minute = u32::try_from(local.rem_euclid(86_400) / 60).unwrap_or(0);
        let second = local.rem_euclid(60);
        let Some(wait) = windows.iter().filter_map(|w| w.remaining(minute)).max() else {
            return t;
        };
        t += i64::from(wait) * 60 - second;
    }
    t
}

/// FNV-1a: stable across runs and builds (unlike the std hasher), so a certificate's jitter
/// does not change with every restart.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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

    #[test]
    fn renewal_is_due_at_two_thirds_or_renew_before_whichever_is_earlier() {
        let day = 86_400;
        // 3-year certificate, no renew_before: two thirds in, minus at most 6 h of jitter.
        let (nb, na) = (0, 3 * 365 * day);
        let due = renewal_due("fmk-prod", nb, na, None);
        assert!(
            due <= 2 * 365 * day && due >= 2 * 365 * day - 6 * 3_600,
            "{due}"
        );
        // renew_before 400 days is earlier than two thirds (365 days before expiry).
        let due = renewal_due("fmk-prod", nb, na, Some(400 * day as u64));
        assert!(
            due <= na - 400 * day && due >= na - 400 * day - 6 * 3_600,
            "{due}"
        );
        // The jitter is fixed per id, and different ids spread.
        assert_eq!(
            renewal_due("a", nb, na, None),
            renewal_due("a", nb, na, None)
        );
        assert_ne!(
            renewal_due("a", nb, na, None),
            renewal_due("b", nb, na, None)
        );
        // A 10-minute certificate: 1% jitter (6 s at most).
        let due = renewal_due("short", 1_000, 1_600, None);
        assert!((1_394..=1_400).contains(&due), "{due}");
        assert_eq!(renewal_due("x", 1_000, 1_000, None), 1_000);
        // renew_before longer than the lifetime: half-way, not at once.
        assert_eq!(renewal_due("short", 1_000, 1_600, Some(30 * 86_400)), 1_300);
    }

    #[test]
    fn durations_and_times_at_the_ends_of_their_range_never_wrap() {
        // A renew_before past i64::MAX seconds is the longest one, not none at all.
        assert_eq!(renewal_due("short", 1_000, 1_600, Some(u64::MAX)), 1_300);
        assert_eq!(renewal_due("short", 1_000, 1_600, Some(1 << 63)), 1_300);
        // Lifetimes that overflow `lifetime * 2`, and windows wider than an i64.
        let due = renewal_due("a", i64::MIN, i64::MAX, None);
        assert!((i64::MIN / 2..=i64::MAX / 2).contains(&due), "{due}");
        let due = renewal_due("a", 0, i64::MAX, Some(u64::MAX));
        assert_eq!(due, i64::MAX / 2);
        let t = in_window("a", i64::MIN, i64::MAX);
        assert!(t < i64::MAX, "{t}");
        assert_eq!(in_window("a", i64::MAX, i64::MIN), i64::MAX);
        let far = Inventory {
            entries: vec![entry(0, i64::MAX)],
            ..Inventory::default()
        };
        assert_eq!(next_transition(&far, 10, u64::MAX), Some(i64::MAX));
    }

    #[test]
    fn a_suggested_window_gives_each_id_a_stable_time_inside_it() {
        let (start, end) = (1_000_000, 1_086_400);
        let times: Vec<i64> = (0..200)
            .map(|i| in_window(&format!("cert-{i}"), start, end))
            .collect();
        assert!(times.iter().all(|t| (start..end).contains(t)), "{times:?}");
        assert_eq!(in_window("cert-7", start, end), times[7], "stable");
        // Spread over the window, not bunched at one end.
        let early = times.iter().filter(|t| **t < start + 43_200).count();
        assert!(
            (60..140).contains(&early),
            "{early} of 200 in the first half"
        );
        // A window of one second, or a reversed one, still gives its start.
        assert_eq!(in_window("x", 5, 6), 5);
        assert_eq!(in_window("x", 5, 5), 5);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_downwards() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n, 60, 3_600, 7)).collect();
        for (n, wait) in waits.iter().enumerate() {
            let base = (60u64 << n).min(3_600);
            assert!(
                *wait <= base && *wait >= base - base / 5,
                "failure {}: {wait}",
                n + 1
            );
        }
        assert!(waits[11] <= 3_600);
        assert_eq!(backoff(3, 60, 3_600, 7), backoff(3, 60, 3_600, 7));
        assert_eq!(backoff(0, 0, 0, 1), 1);
    }

    #[test]
    fn quiet_hours_push_a_moment_to_the_end_of_the_window() {
        let w: Vec<QuietWindow> = ["08:00-17:30", "22:00-06:00"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let utc = |_| 0;
        let day = 20_000 * 86_400;
        let at = |h: i64, m: i64| day + h * 3_600 + m * 60;
        assert_eq!(after_quiet_hours(at(7, 59), &w, utc), at(7, 59));
        assert_eq!(after_quiet_hours(at(8, 0), &w, utc), at(17, 30));
        assert_eq!(after_quiet_hours(at(12, 15) + 20, &w, utc), at(17, 30));
        assert_eq!(after_quiet_hours(at(23, 0), &w, utc), at(30, 0));
        assert_eq!(after_quiet_hours(at(3, 0), &w, utc), at(6, 0));
        // Copenhagen in winter: 08:00 local is 07:00 UTC.
        let cet = |_| 3_600;
        assert_eq!(after_quiet_hours(at(7, 0), &w, cet), at(16, 30));
        assert!("25:00-01:00".parse::<QuietWindow>().is_err());
        assert!("08:00-08:00".parse::<QuietWindow>().is_err());
        assert!("8-17".parse::<QuietWindow>().is_err());
    }
}
