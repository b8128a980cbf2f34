//! What eFrikort has granted, kept in the plugin's state for the certificate
//! (`host.state_put("grants", …)`), so that the next renewal knows what is new.
//!
//! Contract:
//! - A grant is keyed by (system HSA-ID, region's principal HSA-ID, environment) — the
//!   protocol notes' reading of how CGI grants access. It records when and how it was known:
//!   `proven` (a proof with the new or the installed certificate succeeded) or `in_use` (the
//!   first renewal certvakt runs for a certificate already in use with the same HSA-ID takes
//!   its access as given).
//! - [`Grants::load`] reads the state; a value that does not parse stops the step with an error
//!   that says what to do, never read as "nothing granted" (which would send access requests
//!   to regions again).
//! - Nothing personal is stored: HSA-IDs, region names and times only.

use certvakt_plugin_api::{Host, PluginError};
use certvakt_plugin_common::state;
use serde::{Deserialize, Serialize};

use crate::settings::Environment;

/// The plugin state key.
pub const KEY: &str = "grants";

/// How a grant became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    Proven,
    InUse,
}

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub hsa_id: String,
    pub principal_hsa_id: String,
    pub environment: Environment,
    /// The region's name when it was recorded.
    pub region: String,
    pub how: How,
    /// Unix seconds.
    pub at: i64,
}

/// Every grant recorded for the certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    #[serde(default)]
    pub grants: Vec<Grant>,
}

impl Grants {
    /// The recorded grants (none when nothing is stored).
    pub fn load(host: &Host<'_>, certificate_id: &str) -> Result<Grants, PluginError> {
        let value = host.state_get(KEY)?.unwrap_or(serde_json::Value::Null);
        state::parse(&value).map_err(|unreadable| {
            PluginError::permanent(format!(
                "se-efrikort cannot read the eFrikort grants it keeps for {certificate_id} \
                 (plugin state \"{KEY}\", {unreadable}); certvakt stops rather than send access \
                 requests again. Note which regions granted which HSA-ID, then stop certvaktd, \
                 remove \"{KEY}\" from the plugin state of {certificate_id} and start it again: \
                 certvakt then proves the grants afresh"
            ))
        })
    }

    /// Whether (HSA-ID, principal, environment) is granted.
    pub fn has(&self, hsa_id: &str, principal: &str, environment: Environment) -> bool {
        self.grants.iter().any(|g| {
            g.hsa_id == hsa_id && g.principal_hsa_id == principal && g.environment == environment
        })
    }

    /// Whether any grant is recorded for the HSA-ID in the environment.
    pub fn any_for(&self, hsa_id: &str, environment: Environment) -> bool {
        self.grants
            .iter()
            .any(|g| g.hsa_id == hsa_id && g.environment == environment)
    }

    /// Records a grant (once) and stores the grants.
    pub fn record(&mut self, host: &Host<'_>, grant: Grant) -> Result<(), PluginError> {
        if !self.has(&grant.hsa_id, &grant.principal_hsa_id, grant.environment) {
            self.grants.push(grant);
        }
        self.store(host)
    }

    fn store(&self, host: &Host<'_>) -> Result<(), PluginError> {
        let value = serde_json::to_value(self).map_err(|e| {
            PluginError::permanent(format!("cannot write the eFrikort grants: {e}"))
        })?;
        host.state_put(KEY, value)?;
        Ok(())
    }
}
