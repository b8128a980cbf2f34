//! What the notifier looks at: the published inventory and the renewal engine's view, made
//! into a [`Snapshot`] (no file is read).

use std::sync::{Arc, RwLock};

use certvakt_plugin_api::Completion;

use super::View;
use crate::config::NotifyEvent;
use crate::inventory::SourceKind;
use crate::lifecycle::EngineView;
use crate::notify::derive::{Managed, NextKeyFacts, OpenTask, Seen, Snapshot};
use crate::plugin_host::Registry;

/// The notifier's look: reads the latest snapshots each time it is called.
pub(super) fn look(
    view: Arc<RwLock<Arc<View>>>,
    engine: Arc<RwLock<EngineView>>,
    plugins: Arc<Registry>,
    host: String,
) -> crate::notify::sender::Look {
    Box::new(move || {
        let view = match view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let engine = match engine.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        Some(snapshot(&view, &engine, &plugins, &host, now()))
    })
}

/// The environment variable of the notifier's test clock: a file holding seconds to add to
/// the time the notifier sees, so an end-to-end test can let a day pass for reminders.
/// Honoured only with the `test-hooks` feature, which packages never have.
pub const CLOCK_ENV: &str = "CERTVAKT_TEST_NOTIFY_CLOCK";

/// Whether the test clock is in use (the notifier then looks every two seconds, as the
/// time may move without the daemon being told).
pub(super) fn test_clock_set() -> bool {
    cfg!(feature = "test-hooks") && std::env::var_os(CLOCK_ENV).is_some()
}

#[cfg(feature = "test-hooks")]
fn now() -> i64 {
    let skew = std::env::var_os(CLOCK_ENV)
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0);
    crate::now_unix() + skew
}

#[cfg(not(feature = "test-hooks"))]
fn now() -> i64 {
    crate::now_unix()
}

fn snapshot(
    view: &View,
    engine: &EngineView,
    plugins: &Registry,
    host: &str,
    now: i64,
) -> Snapshot {
    let leaf = |id: &str| {
        view.inventory
            .entries
            .iter()
            .find(|e| e.index == 0 && e.id == id)
    };
    let managed = engine
        .certificates
        .iter()
        .map(|c| {
            let entry = leaf(&c.id);
            Managed {
                id: c.id.clone(),
                plugin: c.plugin.clone(),
                plugin_loaded: c.plugin_loaded,
                failures: c.failures,
                last_error: c.last_error.clone(),
                last_success: c.last_success,
                not_after: entry.map(|e| e.cert.not_after),
                subject: entry.map(|e| e.cert.subject.clone()),
                next_key: c.next_key.as_ref().map(|n| NextKeyFacts {
                    algorithm: n.algorithm.as_str().to_owned(),
                    spki_sha256: n.spki_sha256.clone(),
                    spki: n.spki.clone(),
                }),
                tasks: c
                    .open_tasks
                    .iter()
                    .map(|t| OpenTask {
                        id: t.id.clone(),
                        title: t.title.clone(),
                        instructions: t.instructions.clone(),
                        when_done: match t.completes_by {
                            Completion::Import => format!(
                                "import the new certificate: `certvakt import {} FILE`, or drop the file into its inbox",
                                c.id
                            ),
                            Completion::Confirm => format!("`certvakt task done {}`", t.id),
                            Completion::Poll => "nothing: certvakt notices by itself".into(),
                        },
                        opened_at: t.opened_at,
                        files: t.files.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    let certificates = view
        .inventory
        .entries
        .iter()
        .filter(|e| e.index == 0)
        .map(|e| {
            let (renewed, plugin) = match e.source.as_ref() {
                SourceKind::Managed { plugin, .. } => {
                    (plugins.get(plugin).is_some(), Some(plugin.clone()))
                }
                SourceKind::Watched { .. } => (false, None),
            };
            Seen {
                id: e.id.clone(),
                path: e.path.clone(),
                subject: e.cert.subject.clone(),
                serial: e.cert.serial.clone(),
                sha256: e.cert.sha256.to_string(),
                not_after: e.cert.not_after,
                renewed,
                plugin,
            }
        })
        .collect();
    Snapshot {
        now,
        managed,
        certificates,
        refused_plugins: plugins
            .refused
            .iter()
            .map(|r| (r.file.display().to_string(), r.reason.to_string()))
            .collect(),
        warn_before: view.config.daemon.warn_before.as_secs() as i64,
        host: host.to_owned(),
        heartbeat: view
            .config
            .notify
            .iter()
            .any(|route| route.events.contains(&NotifyEvent::Heartbeat)),
    }
}
