//! Log lines that a peer can cause, rate-limited per peer.
//!
//! Contract:
//! - [`LogLimit::admit`] lets at most one line per key (a uid, a listener) through per
//!   interval; the lines in between are counted, and the next line let through says how many
//!   were left out ([`left_out`]). So a peer that opens thousands of connections costs one line
//!   per interval, not one per connection, and journald's own rate limit never has to drop the
//!   daemon's real messages because of it.
//! - Memory is bounded: at most [`MAX_KEYS`] keys are remembered. When that many are, keys
//!   quiet for a whole interval are forgotten; when all are still busy, a line for yet another
//!   key is left out and counted with the next line let through for any key.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Keys remembered at most (each costs a few dozen bytes).
pub const MAX_KEYS: usize = 1024;

/// One key's window.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When the last line for this key was let through.
    written: Instant,
    /// Lines left out since then.
    left_out: u64,
}

#[derive(Debug)]
struct State<K> {
    windows: HashMap<K, Window>,
    /// Lines left out because no key could be remembered for them.
    overflow: u64,
}

/// At most one line per key per interval.
#[derive(Debug)]
pub struct LogLimit<K> {
    interval: Duration,
    state: Mutex<State<K>>,
}

impl<K: Hash + Eq + Clone> LogLimit<K> {
    pub fn new(interval: Duration) -> LogLimit<K> {
        LogLimit {
            interval,
            state: Mutex::new(State {
                windows: HashMap::new(),
                overflow: 0,
            }),
        }
    }

    /// The interval of this limit.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether a line for `key` may be written now: `Some(n)` with the number of lines left
    /// out since the last one (for [`left_out`]), `None` when this one is to be left out.
    pub fn admit(&self, key: &K) -> Option<u64> {
        self.admit_at(key, Instant::now())
    }

    /// [`LogLimit::admit`] at a given moment.
    pub fn admit_at(&self, key: &K, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let interval = self.interval;
        let elapsed = |w: &Window| now.saturating_duration_since(w.written);
        if let Some(window) = state.windows.get_mut(key) {
            if elapsed(window) < interval {
                window.left_out += 1;
                return None;
            }
            let left = window.left_out;
            *window = Window {
                written: now,
                left_out: 0,
            };
            return Some(left + std::mem::take(&mut state.overflow));
        }
        if state.windows.len() >= MAX_KEYS {
            state.windows.retain(|_, w| elapsed(w) < interval);
            if state.windows.len() >= MAX_KEYS {
                state.overflow += 1;
                return None;
            }
        }
        state.windows.insert(
            key.clone(),
            Window {
                written: now,
                left_out: 0,
            },
        );
        Some(std::mem::take(&mut state.overflow))
    }
}

/// The tail a line let through carries when others were left out before it: empty, or
/// ` (N more like it left out)`.
pub fn left_out(count: u64) -> String {
    match count {
        0 => String::new(),
        1 => " (1 more line like it left out)".to_owned(),
        n => format!(" ({n} more lines like it left out)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval_with_the_count_of_the_rest() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limit.admit_at(&1000u32, start), Some(0));
        for i in 1..200 {
            assert_eq!(
                limit.admit_at(&1000u32, start + Duration::from_millis(i * 10)),
                None
            );
        }
        // Another key is not held back by the first.
        assert_eq!(
            limit.admit_at(&0u32, start + Duration::from_secs(1)),
            Some(0)
        );
        // Once the interval has passed, the next line says how many were left out.
        assert_eq!(
            limit.admit_at(&1000u32, start + Duration::from_secs(10)),
            Some(199)
        );
        assert_eq!(
            limit.admit_at(&1000u32, start + Duration::from_secs(21)),
            Some(0)
        );
    }

    #[test]
    fn memory_is_bounded_and_overflow_is_counted() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        for key in 0..MAX_KEYS {
            assert_eq!(limit.admit_at(&key, start), Some(0));
        }
        // Every key is busy: a new one is left out and counted.
        assert_eq!(limit.admit_at(&MAX_KEYS, start), None);
        assert_eq!(limit.admit_at(&(MAX_KEYS + 1), start), None);
        // After the interval, quiet keys are forgotten and the overflow is reported.
        let later = start + Duration::from_secs(11);
        assert_eq!(limit.admit_at(&MAX_KEYS, later), Some(2));
        let state = limit.state.lock().expect("lock");
        assert!(state.windows.len() <= MAX_KEYS);
    }

    #[test]
    fn left_out_reads_as_a_sentence_tail() {
        assert_eq!(left_out(0), "");
        assert_eq!(left_out(1), " (1 more line like it left out)");
        assert_eq!(left_out(57), " (57 more lines like it left out)");
    }
}
