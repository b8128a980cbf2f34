//! Rendering the answers about runs: `history`, `renew --dry-run`, and the certificates
//! removed from the configuration whose run is kept (a section of `status`).
//!
//! Contract: plain text for a person; ids, serials and paths are never cut (scripts use
//! `--json`, which prints the daemon's answer as it is). Times are local, as elsewhere in the
//! CLI.

use crate::control::protocol::{DryRunReport, HistoryEntry, RemovedCertificate};
use crate::human_time::format_time;

/// `certvakt history ID`: one block per ended run, newest first.
pub fn render_history(id: &str, entries: &[HistoryEntry]) -> String {
    if entries.is_empty() {
        return format!(
            "{id}: no run has ended yet (the history lists completed, cancelled and forgotten runs, and rollbacks)\n"
        );
    }
    let mut out = String::new();
    for entry in entries {
        let run = entry
            .run
            .map_or_else(|| "-".to_owned(), |n| format!("run {n}"));
        out.push_str(&format!(
            "{run}  {}  {}\n",
            entry.outcome.as_str().replace('_', " "),
            format_time(entry.finished_at)
        ));
        let mut field = |name: &str, value: String| {
            out.push_str(&format!("  {name:<9} {value}\n"));
        };
        if let Some(started) = entry.started_at {
            field("started", format_time(started));
        }
        field("ended", format_time(entry.finished_at));
        if let Some(reason) = &entry.reason {
            field("reason", reason.replace('_', " "));
        }
        if let Some(plugin) = &entry.plugin {
            field("plugin", plugin.clone());
        }
        if let Some(step) = entry.step {
            field("step", phase_name(step));
        }
        field(
            "serial",
            format!(
                "{} -> {}",
                entry.old_serial.as_deref().unwrap_or("(none)"),
                entry.new_serial.as_deref().unwrap_or("(none)")
            ),
        );
        if let Some(version) = entry.version {
            field("version", version.to_string());
        }
        if !entry.tasks.is_empty() {
            field("tasks", entry.tasks.join(", "));
        }
        if let Some(error) = &entry.error {
            field("error", error.clone());
        }
        for note in &entry.notes {
            field("note", note.clone());
        }
    }
    out
}

/// `certvakt renew ID --dry-run`.
pub fn render_dry_run(report: &DryRunReport) -> String {
    let mut out = format!(
        "dry run for {} (nothing was changed: no state, key or task)\n",
        report.id
    );
    let mut field = |name: &str, value: &str| {
        out.push_str(&format!("{name:<8} {value}\n"));
    };
    field(
        "due",
        &format!("{}: {}", if report.due { "yes" } else { "no" }, report.why),
    );
    field(
        "plugin",
        &format!("{} ({})", report.plugin, report.plugin_summary),
    );
    field("key", &report.key);
    if !report.subject.is_empty() {
        field("subject", &report.subject.join(", "));
    }
    if !report.sans.is_empty() {
        field("sans", &report.sans.join(", "));
    }
    field(
        "hooks",
        &if report.hooks.is_empty() {
            "none configured".to_owned()
        } else {
            report.hooks.join("; ")
        },
    );
    field("tasks", &report.tasks);
    out.push_str("steps:\n");
    for (n, step) in report.steps.iter().enumerate() {
        out.push_str(&format!("  {}. {:<13} {}\n", n + 1, step.step, step.what));
    }
    out
}

/// The `status` lines for certificates removed from the configuration with a kept run.
pub fn removed_lines(removed: &[RemovedCertificate]) -> String {
    let mut out = String::new();
    for r in removed {
        let mut held = Vec::new();
        if r.pending_keys > 0 {
            held.push(format!("{} pending key(s)", r.pending_keys));
        }
        if !r.open_tasks.is_empty() {
            held.push(format!("open task(s) {}", r.open_tasks.join(", ")));
        }
        if let Some(step) = r.step {
            held.push(format!("a run after step {}", phase_name(step)));
        }
        out.push_str(&format!(
            "removed  {}: removed from the configuration, still holding {}: `certvakt forget {}` to discard\n",
            r.id,
            held.join(", "),
            r.id
        ));
    }
    out
}

fn phase_name(phase: crate::control::protocol::Phase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{DryRunStep, Outcome, Phase};

    #[test]
    fn history_shows_every_field_uncut_newest_first_as_given() {
        let long_serial = "7f".repeat(20);
        let entries = vec![
            HistoryEntry {
                run: Some(2),
                outcome: Outcome::Cancelled,
                reason: Some("requested".into()),
                started_at: Some(1_800_000_000),
                finished_at: 1_800_000_600,
                plugin: Some("manual".into()),
                step: Some(Phase::Ordered),
                old_serial: Some(long_serial.clone()),
                new_serial: None,
                version: None,
                notes: Vec::new(),
                error: Some("the CA did not answer".into()),
                tasks: vec!["shop-2-1".into()],
            },
            HistoryEntry {
                run: Some(1),
                outcome: Outcome::Completed,
                reason: Some("first_issue".into()),
                started_at: Some(1_700_000_000),
                finished_at: 1_700_000_100,
                plugin: None,
                step: Some(Phase::Retired),
                old_serial: None,
                new_serial: Some(long_serial.clone()),
                version: Some(1),
                notes: vec!["new UUID".into()],
                error: None,
                tasks: Vec::new(),
            },
        ];
        let text = render_history("shop", &entries);
        let cancelled = text.find("run 2  cancelled").expect("run 2");
        let completed = text.find("run 1  completed").expect("run 1");
        assert!(cancelled < completed, "{text}");
        assert!(text.contains(&format!("{long_serial} -> (none)")), "{text}");
        assert!(text.contains("shop-2-1"), "{text}");
        assert!(text.contains("the CA did not answer"), "{text}");
        assert!(text.contains("first issue"), "{text}");
        assert!(render_history("shop", &[]).contains("no run has ended"));
    }

    #[test]
    fn dry_run_and_removed_lines_say_what_and_what_to_do() {
        let report = DryRunReport {
            id: "shop".into(),
            plugin: "manual".into(),
            plugin_summary: "An operator orders by hand.".into(),
            due: false,
            due_at: Some(1_800_000_000),
            why: "not due until later".into(),
            step: None,
            steps: vec![DryRunStep {
                step: "key_generated".into(),
                what: "make the key".into(),
            }],
            key: "a new ec-p256 key".into(),
            subject: vec!["CN=shop.example".into()],
            sans: vec!["DNS:shop.example".into()],
            hooks: Vec::new(),
            tasks: "the plugin decides at the issue step".into(),
        };
        let text = render_dry_run(&report);
        for part in [
            "nothing was changed",
            "no: not due until later",
            "a new ec-p256 key",
            "CN=shop.example",
            "DNS:shop.example",
            "1. key_generated",
            "none configured",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let removed = removed_lines(&[RemovedCertificate {
            id: "old-shop".into(),
            step: Some(Phase::Ordered),
            pending_keys: 1,
            open_tasks: vec!["old-shop-1-1".into()],
        }]);
        assert!(
            removed.contains("removed from the configuration, still holding 1 pending key(s), open task(s) old-shop-1-1"),
            "{removed}"
        );
        assert!(
            removed.contains("`certvakt forget old-shop` to discard"),
            "{removed}"
        );
    }
}
