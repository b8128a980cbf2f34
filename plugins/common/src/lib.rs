//! What several certvakt plugins share.
//!
//! - [`current`]: what a renewal keeps from the certificate it replaces (its subject and names,
//!   exactly: OIDs, string types, DER order).
//! - [`oces3`]: the CVR number and UUID of a Danish OCES3 certificate, and its thumbprints.
//! - [`mitid`]: MitID Erhverv, where Danish organisation certificates come from: it has no
//!   ordering API, so the order is an operator task, and the renewal comes back as a PKCS#12
//!   download that `certvakt import` takes in.
//! - [`settings`]: reading `[certificate.settings]` with every problem reported at once.
//! - [`state`]: reading a renewal run's state back: `null` is the start, anything else must
//!   parse or the step stops with an error that names what did not.

pub mod current;
pub mod mitid;
pub mod oces3;
pub mod settings;
pub mod state;
