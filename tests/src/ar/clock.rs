//! The simulator clock: unix seconds that tests can set, shared by the directory (when a
//! published certificate becomes findable), the parties (when a future address becomes
//! current) and the message receiver (when its cache expires).
//!
//! Promises:
//! - By default it follows real time plus an offset (zero), so a simulator left alone behaves
//!   like the real service.
//! - [`Clock::set`] freezes it at a given time; [`Clock::advance`] moves it forward (frozen or
//!   not); [`Clock::follow_real_time`] unfreezes it with an offset. Clones share one clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// Marks "not frozen" in `frozen_at`.
const FOLLOWING: i64 = i64::MIN;

/// An injectable clock in unix seconds; clones share it.
#[derive(Debug, Clone)]
pub struct Clock {
    offset: Arc<AtomicI64>,
    frozen_at: Arc<AtomicI64>,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::real()
    }
}

impl Clock {
    /// Follows real time.
    pub fn real() -> Clock {
        Clock {
            offset: Arc::new(AtomicI64::new(0)),
            frozen_at: Arc::new(AtomicI64::new(FOLLOWING)),
        }
    }

    /// Frozen at `unix` seconds.
    pub fn frozen(unix: i64) -> Clock {
        let clock = Clock::real();
        clock.set(unix);
        clock
    }

    /// Now, in unix seconds.
    pub fn now(&self) -> i64 {
        match self.frozen_at.load(Ordering::SeqCst) {
            FOLLOWING => real_now() + self.offset.load(Ordering::SeqCst),
            frozen => frozen,
        }
    }

    /// Now, as a UTC time.
    pub fn now_utc(&self) -> OffsetDateTime {
        to_utc(self.now())
    }

    /// Freezes the clock at `unix` seconds.
    pub fn set(&self, unix: i64) {
        self.frozen_at.store(unix, Ordering::SeqCst);
    }

    /// Moves the clock `seconds` forward (backward when negative).
    pub fn advance(&self, seconds: i64) {
        match self.frozen_at.load(Ordering::SeqCst) {
            FOLLOWING => {
                self.offset.fetch_add(seconds, Ordering::SeqCst);
            }
            frozen => self.frozen_at.store(frozen + seconds, Ordering::SeqCst),
        }
    }

    /// Unfreezes the clock: it follows real time plus `offset_seconds`.
    pub fn follow_real_time(&self, offset_seconds: i64) {
        self.offset.store(offset_seconds, Ordering::SeqCst);
        self.frozen_at.store(FOLLOWING, Ordering::SeqCst);
    }
}

fn real_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `unix` seconds as a UTC time (clamped to what `time` can represent).
pub fn to_utc(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_told_and_clones_share_it() {
        let clock = Clock::frozen(1_000);
        let shared = clock.clone();
        assert_eq!(shared.now(), 1_000);
        clock.advance(60);
        assert_eq!(shared.now(), 1_060);
        shared.follow_real_time(3_600);
        let ahead = clock.now() - real_now();
        assert!((3_599..=3_601).contains(&ahead), "{ahead}");
    }
}
