//! Times and spans as people read them, in the CLI, the journal and operator messages:
//! dates in UTC (`2027-03-01`, `2027-03-01 12:00:00 UTC`), spans short (`412d`, `3d 4h`).

//!
//! Calendar formatting is jiff's (the crate quiet hours already use): one time crate.

use jiff::Timestamp;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// A span of time, short: `412d` (a week or more), `3d 4h`, `5h 12m`, `7m`, `42s`.
pub fn format_span(secs: u64) -> String {
    let (days, hours, minutes) = (secs / DAY, secs % DAY / HOUR, secs % HOUR / MINUTE);
    match secs {
        s if s >= 7 * DAY => format!("{days}d"),
        s if s >= DAY && hours == 0 => format!("{days}d"),
        s if s >= DAY => format!("{days}d {hours}h"),
        s if s >= HOUR && minutes == 0 => format!("{hours}h"),
        s if s >= HOUR => format!("{hours}h {minutes}m"),
        s if s >= MINUTE => format!("{minutes}m"),
        s => format!("{s}s"),
    }
}

/// Time left before expiry: `412d`, `3d 4h`, or `expired 2d ago` once it is negative.
pub fn format_left(seconds_left: i64) -> String {
    match seconds_left {
        0 => "expired just now".to_owned(),
        s if s > 0 => format_span(s.unsigned_abs()),
        s => format!("expired {} ago", format_span(s.unsigned_abs())),
    }
}

/// `2027-03-01` (UTC); the raw number if it is outside the calendar.
pub fn format_date(unix: i64) -> String {
    format_utc(unix, "%Y-%m-%d")
}

/// `2027-03-01 12:00:00 UTC`; the raw number if it is outside the calendar.
pub fn format_time(unix: i64) -> String {
    format_utc(unix, "%Y-%m-%d %H:%M:%S UTC")
}

/// jiff formats a timestamp in UTC; years beyond 9999 (and before -9999) are outside its
/// range, and are shown as the number they are.
fn format_utc(unix: i64, format: &str) -> String {
    match Timestamp::from_second(unix) {
        Ok(t) => t.strftime(format).to_string(),
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_utc_with_four_digit_years() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(
            format_time(1_803_859_200 + 3_661),
            "2027-03-01 01:01:01 UTC"
        );
        assert_eq!(format_time(-1), "1969-12-31 23:59:59 UTC");
        // Year 9999 is in the calendar; year 10000 is not.
        assert_eq!(format_date(253_402_207_200), "9999-12-30");
        assert_eq!(format_date(253_402_300_800), "253402300800");
        assert_eq!(format_time(i64::MIN), i64::MIN.to_string());
    }
}
