//! The reports the control socket answers with: status, list and show, made from the
//! published snapshots (the inventory, the configuration and the renewal engine's view) and
//! converted into the protocol's own types on the way.

use crate::config::Problem;
use crate::control::protocol::{
    Counts, Health, ListItem, Renewal, ShowReport, ShownEntry, SourceProblem, StatusReport,
};
use crate::inventory::{CertState, Entry, NordicIdentity};
use crate::lifecycle::EngineView;

use super::{View, warn_before};

pub(super) fn status_line(view: &View) -> String {
    let counts = counts(view, crate::now_unix());
    format!(
        "watching {} certificate(s): {} ok, {} expiring, {} expired, {} not yet valid; {} source problem(s)",
        view.inventory.entries.len(),
        counts.ok,
        counts.expiring,
        counts.expired,
        counts.not_yet_valid,
        counts.problems
    )
}

pub(super) fn counts(view: &View, now: i64) -> Counts {
    let warn = warn_before(&view.config);
    let mut counts = Counts {
        problems: view.inventory.problems.len(),
        ..Counts::default()
    };
    for entry in &view.inventory.entries {
        match entry.cert.state_at(now, warn) {
            CertState::Ok => counts.ok += 1,
            CertState::Expiring => counts.expiring += 1,
            CertState::Expired => counts.expired += 1,
            CertState::NotYetValid => counts.not_yet_valid += 1,
        }
    }
    counts
}

/// Health: expired, not yet valid and unreadable are critical; expiring, a failing renewal,
/// a task waiting for a person, a certificate whose plugin is missing, or a refused plugin
/// file are warnings.
pub(super) fn status_report(
    view: &View,
    started_at: i64,
    engine: &EngineView,
    plugins_refused: usize,
    outbox: &crate::notify::OutboxView,
) -> StatusReport {
    let now = crate::now_unix();
    let counts = counts(view, now);
    let renewal_trouble = engine
        .certificates
        .iter()
        .any(|c| c.failures > 0 || !c.open_tasks.is_empty() || !c.plugin_loaded);
    let health = if counts.expired + counts.not_yet_valid + counts.problems > 0 {
        Health::Critical
    } else if counts.expiring > 0
        || renewal_trouble
        || plugins_refused > 0
        || !outbox.undeliverable.is_empty()
        || outbox.problem.is_some()
    {
        Health::Warning
    } else {
        Health::Ok
    };
    let mut attention: Vec<ListItem> = list_items(view, now)
        .into_iter()
        .filter(|item| item.state != CertState::Ok.into())
        .collect();
    attention.sort_by_key(|item| item.not_after);
    StatusReport {
        version: crate::VERSION.to_owned(),
        pid: std::process::id(),
        started_at,
        now,
        config_files: view.config.files.clone(),
        config_loaded_at: view.config_loaded_at,
        last_reload_error: view.last_reload_error.clone(),
        scanned_at: view.inventory.scanned_at,
        socket: view.config.control.socket.clone(),
        metrics_listen: view.metrics_listen.clone(),
        warn_before_secs: warn_before(&view.config),
        health,
        counts,
        attention,
        problems: view
            .inventory
            .problems
            .iter()
            .map(SourceProblem::from)
            .collect(),
        renewals: engine.certificates.iter().map(Renewal::from).collect(),
        plugins_refused,
        notifications: notifications(outbox),
        removed: engine
            .removed
            .iter()
            .map(crate::control::protocol::RemovedCertificate::from)
            .collect(),
    }
}

pub(super) fn list_items(view: &View, now: i64) -> Vec<ListItem> {
    let warn = warn_before(&view.config);
    view.inventory
        .entries
        .iter()
        .map(|entry| ListItem {
            id: entry.id.clone(),
            source: (&entry.source).into(),
            path: entry.path.clone(),
            name: display_name(&entry.cert.subject),
            identity: entry.cert.identities.first().map(NordicIdentity::label),
            not_after: entry.cert.not_after,
            seconds_left: entry.cert.not_after - now,
            state: entry.cert.state_at(now, warn).into(),
        })
        .collect()
}

pub(super) fn show_report(
    view: &View,
    id: &str,
    now: i64,
    engine: &EngineView,
) -> Option<ShowReport> {
    let warn = warn_before(&view.config);
    let inv = &view.inventory;
    // The base id of a source: an entry id without its `#index`, or a path.
    let base = inv
        .entries
        .iter()
        .find(|e| e.id == id || e.path.as_os_str() == id)
        .map(|e| source_id(&e.id).to_owned())
        .or_else(|| {
            inv.problems
                .iter()
                .find(|p| p.id == id || p.path == id)
                .map(|p| p.id.clone())
        })
        .or_else(|| engine.get(id).map(|c| c.id.clone()))?;
    let mut entries: Vec<&Entry> = inv
        .entries
        .iter()
        .filter(|e| source_id(&e.id) == base)
        .collect();
    // The one asked for first, then the rest of its file in order.
    entries.sort_by_key(|e| (e.id != id, e.index));
    Some(ShowReport {
        id: id.to_owned(),
        entries: entries
            .into_iter()
            .map(|e| ShownEntry::new(e, e.cert.state_at(now, warn).into(), e.cert.not_after - now))
            .collect(),
        problems: inv
            .problems
            .iter()
            .filter(|p| p.id == base)
            .map(SourceProblem::from)
            .collect(),
        renewal: engine.get(&base).map(Renewal::from),
    })
}

/// The problems of a refused reload travel inside the error message (and `status`'s
/// `last_reload_error`); this renders them.
pub(super) fn problems_message(problems: &[Problem]) -> String {
    let mut out = format!(
        "the new configuration has {} problem(s); the running configuration stays in force:",
        problems.len()
    );
    for p in problems {
        out.push('\n');
        out.push_str(&p.to_string());
    }
    out
}

pub(super) fn source_id(entry_id: &str) -> &str {
    match entry_id.rsplit_once('#') {
        Some((base, index)) if index.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => entry_id,
    }
}

/// The subject's CN, or the whole subject when it has none.
pub(super) fn display_name(subject: &str) -> String {
    subject
        .split(", ")
        .find_map(|part| part.strip_prefix("CN="))
        .unwrap_or(subject)
        .to_owned()
}

/// The outbox, as the protocol shows it.
fn notifications(outbox: &crate::notify::OutboxView) -> crate::control::protocol::Notifications {
    crate::control::protocol::Notifications {
        routes: outbox.routes,
        pending: outbox.pending,
        oldest_pending_at: outbox.oldest_pending_at,
        undeliverable: outbox
            .undeliverable
            .iter()
            .map(|u| crate::control::protocol::UndeliveredNotification {
                route: u.route.clone(),
                event: u.event.clone(),
                subject: u.subject.clone(),
                queued_at: u.created_at,
                attempts: u.attempts,
                last_error: u.last_error.clone(),
            })
            .collect(),
        last_sent_at: outbox.last_sent_at,
        problem: outbox.problem.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ids_strip_only_numeric_suffixes() {
        assert_eq!(source_id("fmk-prod#1"), "fmk-prod");
        assert_eq!(source_id("/etc/ssl/a.pem#12"), "/etc/ssl/a.pem");
        assert_eq!(source_id("/etc/ssl/odd#name.pem"), "/etc/ssl/odd#name.pem");
        assert_eq!(source_id("fmk-prod"), "fmk-prod");
    }

    #[test]
    fn display_name_takes_the_cn() {
        assert_eq!(
            display_name("C=DK, O=Apotek // CVR:12345678, CN=Apotek system"),
            "Apotek system"
        );
        assert_eq!(display_name("O=No CN here"), "O=No CN here");
    }
}
