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

/// A secret file (the SMTP password, a webhook key) as an attempt reads it: bounded, one
/// trailing newline (`\n` or `\r\n`) dropped, in a buffer cleared when dropped. A file any
/// user can read is warned about (for `route`, or `[mail]`). `Err` is a sentence naming the
/// path and what is wrong, never the contents.
pub(crate) fn read_secret(path: &Path, route: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o007 != 0 {
            let shown = path.display().to_string();
            log::warn!(
                route = route, path = shown.as_str();
                "{shown} holds a secret and can be read by any user: chmod o-rwx it"
            );
        }
    }
    let mut bytes = Zeroizing::new(
        crate::bounded::read(path, crate::bounded::PASSWORD_FILE_LIMIT)
            .map_err(|e| e.sentence(path))?,
    );
    let newline = if bytes.ends_with(b"\r\n") {
        2
    } else {
        usize::from(bytes.ends_with(b"\n"))
    };
    let keep = bytes.len() - newline;
    bytes.truncate(keep);
    Ok(bytes)
}
