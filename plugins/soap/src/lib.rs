//! SOAP for certvakt's plugins: what the Danish, Swedish and Norwegian authorities speak.
//!
//! A plugin builds its messages, has the host sign them, sends them through the host's HTTP
//! client and reads the answers; it holds no key and opens no socket. This crate is the part
//! every SOAP authority shares:
//!
//! - [`ns`]: the namespaces, one name each.
//! - [`write`]: an XML writer (quick-xml: escaping and well-formedness are the writer's job).
//! - [`dsig`]: XML-DSig with exclusive canonicalisation; the plugin gets the bytes to sign,
//!   the host signs them with a [`KeyRef`](certvakt_plugin_api::KeyRef).
//! - [`read`]: envelopes, bodies and SOAP 1.1 faults read with a namespace-aware tree, and a
//!   signed element carried unchanged from one message to the next.
//! - [`call`]: one SOAP 1.1 request through the host, its failures sorted into what the daemon
//!   can act on (try again later, or not).
//! - [`xs_datetime`]: `xs:dateTime` in UTC, as every one of these services writes it.

pub mod call;
pub mod dsig;
pub mod ns;
pub mod read;
pub mod write;

#[cfg(test)]
mod tests;

/// `unix` seconds as `xs:dateTime` in UTC without fractions: `2026-11-22T15:11:37Z`.
pub fn xs_datetime(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&format)
        .unwrap_or_default()
}
