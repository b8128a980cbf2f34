//! The channels a message leaves by. Each attempt either delivers or says why not, and
//! whether trying again could help.
//!
//! - [`mail`]: SMTP through the `[mail]` relay (STARTTLS or TLS over rustls, AUTH).
//! - [`webhook`]: a signed JSON POST through the host's HTTP client.
//! - [`command`]: a local program, the webhook's JSON on its stdin.

use std::path::Path;

use zeroize::Zeroizing;

pub mod command;
pub mod mail;
pub mod webhook;

#[cfg(test)]
mod tests;

/// Why an attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later: the relay or receiver is down, busy or slow.
    #[error("{0}")]
    Transient(String),
    /// Trying again cannot help until the configuration changes (the relay refused the
    /// address, the receiver refused the signature).
    #[error("{0}")]
    Permanent(String),
}

/// This machine's host name (EHLO, the webhook's `host`); `localhost` when it has none.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A secret file (the SMTP password, a webhook key) as an attempt reads it: through
/// [`crate::bounded::read_secret`], one trailing line end dropped. `Err` is a sentence naming
/// the path and what is wrong, never the contents.
pub(crate) fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let bytes = crate::bounded::read_secret(path).map_err(|e| e.sentence(path))?;
    Ok(Zeroizing::new(
        crate::bounded::without_line_end(&bytes).to_vec(),
    ))
}
