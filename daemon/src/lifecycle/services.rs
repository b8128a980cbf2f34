//! The host services a plugin gets while the renewal engine calls it about one certificate.
//!
//! Contract:
//! - Log, clock and plugin state are [`BasicServices`]'.
//! - `open_task` collects the task; the engine writes its files to the outbox and records it
//!   when the call returns.
//! - `sign` signs with a key the plugin names by role — the pending key of the run, the
//!   current live key, the previous version's key — read from disk by the host for this one
//!   signature and dropped (zeroized) right after. The plugin never sees key bytes.
//! - `http` is [`BasicServices`]' too: the host's HTTP client, with the engine's identities.

use std::path::PathBuf;
use std::sync::Mutex;

use certvakt_plugin_api::messages::{HostRequest, HostResponse, KeyRef, SignatureAlgorithm};
use certvakt_plugin_api::{HostError, HostErrorKind, TaskSpec};

use crate::keys::{self, PrivateKey};
use crate::plugin_host::{BasicServices, HostServices};

/// Where the keys a plugin may name live.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    pub pending: Option<PathBuf>,
    pub current: Option<PathBuf>,
    pub previous: Option<PathBuf>,
}

/// Services for one plugin call about one certificate.
pub struct EngineServices {
    basic: BasicServices,
    keys: KeyFiles,
    tasks: Mutex<Vec<TaskSpec>>,
}

impl std::fmt::Debug for EngineServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineServices")
            .field("basic", &self.basic)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl EngineServices {
    pub fn new(basic: BasicServices, keys: KeyFiles) -> Self {
        EngineServices {
            basic,
            keys,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The tasks the plugin opened during the call.
    pub fn take_tasks(&self) -> Vec<TaskSpec> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn sign(&self, key: &KeyRef, algorithm: SignatureAlgorithm, data: &[u8]) -> HostResponse {
        let path = match key {
            KeyRef::Pending => self.keys.pending.as_ref(),
            KeyRef::Current => self.keys.current.as_ref(),
            KeyRef::Previous => self.keys.previous.as_ref(),
            KeyRef::Named(_) => None,
        };
        let Some(path) = path else {
            return error(
                HostErrorKind::Invalid,
                format!("there is no {} key to sign with", key_name(key)),
            );
        };
        let key = match std::fs::read(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| e.to_string())
            .and_then(|bytes| PrivateKey::from_bytes(&bytes).map_err(|e| e.to_string()))
        {
            Ok(key) => key,
            Err(e) => {
                return error(
                    HostErrorKind::Failed,
                    format!("the {} key cannot be used: {e}", key_name(key)),
                );
            }
        };
        let algorithm = match algorithm {
            SignatureAlgorithm::RsaPkcs1Sha256 => keys::SignatureAlgorithm::RsaPkcs1Sha256,
            SignatureAlgorithm::RsaPkcs1Sha384 => keys::SignatureAlgorithm::RsaPkcs1Sha384,
            SignatureAlgorithm::RsaPssSha256 => keys::SignatureAlgorithm::RsaPssSha256,
            SignatureAlgorithm::EcdsaP256Sha256 => keys::SignatureAlgorithm::EcdsaP256Sha256,
            SignatureAlgorithm::EcdsaP384Sha384 => keys::SignatureAlgorithm::EcdsaP384Sha384,
            SignatureAlgorithm::EcdsaP256Sha256Fixed => {
                keys::SignatureAlgorithm::EcdsaP256Sha256Fixed
            }
            SignatureAlgorithm::EcdsaP384Sha384Fixed => {
                keys::SignatureAlgorithm::EcdsaP384Sha384Fixed
            }
        };
        match keys::sign(&key, algorithm, data) {
            Ok(signature) => HostResponse::Sign { signature },
            Err(e) => error(HostErrorKind::Invalid, e.to_string()),
        }
    }
}

fn key_name(key: &KeyRef) -> String {
    match key {
        KeyRef::Pending => "pending (new)".into(),
        KeyRef::Current => "current".into(),
        KeyRef::Previous => "previous".into(),
        KeyRef::Named(name) => format!("named `{name}` (named keys are not configured)"),
    }
}

fn error(kind: HostErrorKind, message: String) -> HostResponse {
    HostResponse::Error(HostError::new(kind, message))
}

impl HostServices for EngineServices {
    fn handle(&self, request: HostRequest) -> HostResponse {
        match request {
            HostRequest::OpenTask(spec) => {
                let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
                tasks.push(spec);
                HostResponse::OpenTask {
                    task_id: format!("pending-{}", tasks.len()),
                }
            }
            HostRequest::Sign(sign) => self.sign(&sign.key, sign.algorithm, &sign.data),
            other => self.basic.handle(other),
        }
    }
}
