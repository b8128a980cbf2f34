//! Human durations in configuration: `"30d"`, `"12h"`, `"90m"`, `"45s"`, `"2w"`, or a sum of
//! them (`"1d12h"`). Plain integers are not accepted: a bare number in a config file is a unit
//! mistake waiting to happen.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configured duration, printed back the way it is written in config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a duration: {reason} (write e.g. \"30d\", \"12h\", \"1d12h\", \"90m\", \"45s\"; units: w d h m s)"
)]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl HumanDuration {
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDurationError {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                'w' => 7 * 86_400,
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(err("unknown unit")),
            };
            if digits.is_empty() {
                return Err(err("a unit without a number"));
            }
            let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
            digits.clear();
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("too large"))?;
        }
        if !digits.is_empty() {
            return Err(err("a number without a unit"));
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

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(
            "30d".parse::<HumanDuration>().map(|d| d.as_secs()),
            Ok(30 * 86_400)
        );
        assert_eq!(
            "1d12h".parse::<HumanDuration>().map(|d| d.as_secs()),
            Ok(86_400 + 12 * 3_600)
        );
        assert_eq!(
            "2w".parse::<HumanDuration>().map(|d| d.as_secs()),
            Ok(14 * 86_400)
        );
        assert_eq!("45s".parse::<HumanDuration>().map(|d| d.as_secs()), Ok(45));
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units() {
        assert!("30".parse::<HumanDuration>().is_err());
        assert!("30y".parse::<HumanDuration>().is_err());
        assert!("d".parse::<HumanDuration>().is_err());
        assert!("".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn displays_round_trip() {
        for s in ["30d", "1d12h", "90m", "45s", "1d1h1m1s"] {
            let d: HumanDuration = s.parse().unwrap_or(HumanDuration(Duration::ZERO));
            let again: HumanDuration = d
                .to_string()
                .parse()
                .unwrap_or(HumanDuration(Duration::ZERO));
            assert_eq!(d, again, "{s}");
        }
    }
}
