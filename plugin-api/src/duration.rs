//! Durations as people write them in configuration: `"30d"`, `"12h"`, `"90m"`, `"45s"`,
//! `"2w"`, or a sum of them (`"1d12h"`, `"1m30s"`). One syntax for the daemon and every plugin.
//!
//! Contract:
//! - Units are `w` (weeks), `d`, `h`, `m` and `s`; each number is whole and carries its unit;
//!   the parts add up. Whitespace around the whole is ignored, inside it is not.
//! - A bare number is refused: in a configuration file it is a unit mistake waiting to happen.
//! - Nothing longer than [`HumanDuration::MAX`] (100 years) is accepted, so a parsed duration
//!   always fits an `i64` of seconds with room to add it to, or subtract it from, any time
//!   certvakt handles; callers never wrap.
//! - Pure: no I/O. The refusal says what is wrong and what to write instead.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest accepted duration, in seconds: 100 years of 365.25 days.
pub const MAX_SECS: u64 = MAX_DAYS * 86_400;
const MAX_DAYS: u64 = 36_525;

/// A configured duration, printed back the way it is written in configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// Not in the duration syntax.
    #[error(
        "`{input}` is not a duration: {reason} (write e.g. \"30d\", \"12h\", \"1d12h\", \"90m\", \"45s\"; units: w d h m s)"
    )]
    Malformed { input: String, reason: &'static str },
    /// Longer than [`HumanDuration::MAX`].
    #[error(
        "`{input}` is longer than 100 years ({max}d), the longest duration certvakt accepts",
        max = MAX_DAYS
    )]
    TooLong { input: String },
}

impl HumanDuration {
    /// The longest duration [`FromStr`] accepts: 100 years (`"36525d"`).
    pub const MAX: HumanDuration = HumanDuration(Duration::from_secs(MAX_SECS));

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Whole seconds as an `i64`, for arithmetic with Unix times. Saturates for a duration
    /// built by hand beyond `i64::MAX` seconds; a parsed one is far below that.
    pub fn as_secs_i64(self) -> i64 {
        i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX)
    }
}

impl FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let malformed = |reason| ParseDurationError::Malformed {
            input: input.to_owned(),
            reason,
        };
        let too_long = || ParseDurationError::TooLong {
            input: input.to_owned(),
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(malformed("it is empty"));
        }
        let mut total: u64 = 0;
        let mut digits = 0..0;
        for (at, c) in text.char_indices() {
            if c.is_ascii_digit() {
                if digits.is_empty() {
                    digits = at..at;
                }
                digits.end = at + 1;
                continue;
            }
            let unit: u64 = match c {
                'w' => 7 * 86_400,
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(malformed("unknown unit")),
            };
            if digits.is_empty() {
                return Err(malformed("a unit without a number"));
            }
            // Only digits are left in the range, so a failure can only be a number too large
            // for a u64, which is far past the limit anyway.
            let n: u64 = text[digits.clone()].parse().map_err(|_| too_long())?;
            digits = 0..0;
            total = n
                .checked_mul(unit)
                .and_then(|part| total.checked_add(part))
                .filter(|&sum| sum <= MAX_SECS)
                .ok_or_else(too_long)?;
        }
        if !digits.is_empty() {
            return Err(malformed("a number without a unit"));
        }
        Ok(HumanDuration(Duration::from_secs(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Result<u64, ParseDurationError> {
        text.parse::<HumanDuration>().map(|d| d.as_secs())
    }

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(secs("30d"), Ok(30 * 86_400));
        assert_eq!(secs("1d12h"), Ok(86_400 + 12 * 3_600));
        assert_eq!(secs("2w"), Ok(14 * 86_400));
        assert_eq!(secs("45s"), Ok(45));
        assert_eq!(secs("1m30s"), Ok(90));
        assert_eq!(secs(" 0s "), Ok(0));
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units() {
        for text in ["30", "30y", "d", "", "1 h", "1.5h", "-1s", "1m30"] {
            assert!(
                matches!(secs(text), Err(ParseDurationError::Malformed { .. })),
                "{text}: {:?}",
                secs(text)
            );
        }
        assert_eq!(
            secs("30").map_err(|e| e.to_string()),
            Err(
                "`30` is not a duration: a number without a unit (write e.g. \"30d\", \"12h\", \
                 \"1d12h\", \"90m\", \"45s\"; units: w d h m s)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn nothing_longer_than_100_years_is_accepted() {
        // 2^63 seconds wraps to a negative number in an i64 of seconds.
        for text in [
            "9223372036854775808s",
            "18446744073709551615s",
            "99999999999999999999999s",
            "36526d",
            "36525d1s",
            "5218w",
            "2562047788015215w",
        ] {
            assert_eq!(
                secs(text).map_err(|e| e.to_string()),
                Err(format!(
                    "`{text}` is longer than 100 years (36525d), the longest duration \
                     certvakt accepts"
                )),
            );
        }
        assert_eq!(secs("36525d"), Ok(MAX_SECS));
        assert_eq!(secs("36524d23h59m59s"), Ok(MAX_SECS - 1));
        assert_eq!(secs("5217w"), Ok(5_217 * 7 * 86_400));
        assert_eq!(HumanDuration::MAX.as_secs_i64(), 3_155_760_000);
        assert_eq!(HumanDuration(Duration::MAX).as_secs_i64(), i64::MAX);
    }

    #[test]
    fn displays_round_trip() {
        for s in ["30d", "1d12h", "90m", "45s", "1d1h1m1s", "36525d"] {
            let d: HumanDuration = s.parse().unwrap_or(HumanDuration(Duration::ZERO));
            let again: HumanDuration = d
                .to_string()
                .parse()
                .unwrap_or(HumanDuration(Duration::ZERO));
            assert_eq!(d, again, "{s}");
        }
    }

    #[test]
    fn serde_reads_and_writes_the_text() {
        let d: HumanDuration =
            serde_json::from_str("\"1m30s\"").unwrap_or(HumanDuration(Duration::ZERO));
        assert_eq!(d.as_secs(), 90);
        assert_eq!(serde_json::to_string(&d).ok().as_deref(), Some("\"1m30s\""));
        assert!(serde_json::from_str::<HumanDuration>("\"200000d\"").is_err());
    }
}
