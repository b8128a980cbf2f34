//! The channels a message leaves by. Each attempt either delivers or says why not, and
//! whether trying again could help.

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
