//! Times and spans as people read them, in the CLI, the journal and operator messages:
//! dates in UTC (`2027-03-01`, `2027-03-01 12:00:00 UTC`), spans short (`412d`, `3d 4h`).

use time::OffsetDateTime;
use time::macros::format_description;

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
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(format_description!("[year]-[month]-[day]")).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// `2027-03-01 12:00:00 UTC`; the raw number if it is outside the calendar.
pub fn format_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
