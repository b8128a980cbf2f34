//! The two records of what is live: `current.json` (the installed version and the one a
//! rollback goes back to) and `install.json` (an install under way, to be finished by
//! `recover`). Read by installs and by `retire`, which must never remove either version.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::atomic;
use super::{LivePaths, Ownership, Result, VersionId};

pub(super) const CURRENT_FILE: &str = "current.json";
pub(super) const INTENT_FILE: &str = "install.json";

/// `current.json`: what is live and what a rollback goes back to.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CurrentRecord {
    pub(crate) current: Option<VersionId>,
    pub(crate) previous: Option<VersionId>,
}

/// `install.json`: an install that has passed phase 1 and must be finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Intent {
    pub(crate) version: VersionId,
    /// What `previous` becomes once the install is recorded; fixed when the install starts, so
    /// redoing it after a crash records the same thing.
    pub(crate) previous: Option<VersionId>,
    pub(crate) targets: LivePaths,
    pub(crate) ownership: Ownership,
}

pub(crate) fn read_current(cert_dir: &Path) -> Result<CurrentRecord> {
    Ok(atomic::read_json_opt(&cert_dir.join(CURRENT_FILE))?.unwrap_or_default())
}

pub(crate) fn read_intent(cert_dir: &Path) -> Result<Option<Intent>> {
    atomic::read_json_opt(&cert_dir.join(INTENT_FILE))
}
