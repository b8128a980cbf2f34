//! How the CLI shows the daemon's answers to people, and which exit code they mean.
//!
//! Contract: every function here is pure (no I/O, no clock: "now" comes from the report or the
//! caller), so the text and the exit codes can be tested with fixed numbers. Dates are UTC.
//! Tables are cut only to fit a terminal: with no width (stdout is a pipe or a file) every
//! cell is whole, so ids, paths, identities and UUIDs can be pasted into the next command.
//! On a terminal the free-text columns (NAME, IDENTITY, TITLE) give way first, then paths,
//! and an id only when the id alone is wider than the terminal. Key/value blocks show
//! everything.
//!
//! `status` starts with a verdict line a monitoring plugin can read ([`verdict`]).

use crate::control::protocol::{
    CertState, Completion, Health, KeyCheck, ListItem, NordicIdentity, PluginsReport, Renewal,
    Response, ShowReport, ShownEntry, SourceKind, SourceProblem, StatusReport, Task,
};

use serde::Serialize;

use super::Exit;
pub use crate::human_time::{format_date, format_left, format_span, format_time};

/// `2027-03-01 12:00:00 UTC (3m ago)`, relative to `now`.
fn format_time_ago(unix: i64, now: i64) -> String {
    let delta = now.saturating_sub(unix);
    if delta >= 0 {
        format!(
            "{} ({} ago)",
            format_time(unix),
            format_span(delta.unsigned_abs())
        )
    } else {
        format!(
            "{} (in {})",
            format_time(unix),
            format_span(delta.unsigned_abs())
        )
    }
}

/// A Nordic identity the way the authorities write it, short.
pub fn format_identity(identity: &NordicIdentity) -> String {
    identity.label()
}

fn kind_word(source: &SourceKind) -> &'static str {
    match source {
        SourceKind::Managed { .. } => "managed",
        SourceKind::Watched { .. } => "watched",
    }
}

/// Cuts `text` to `max` characters, keeping the start and marking the cut with `…`.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{keep}…")
}

/// Like [`shorten`], but keeps the end: for paths, whose file name says the most.
pub fn shorten_start(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let keep: String = text.chars().skip(count - max.saturating_sub(1)).collect();
    format!("…{keep}")
}

/// Left-aligned columns, two spaces apart; the last column is not padded. Nothing is cut.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = natural_widths(headers, rows);
    layout(headers, rows, &widths)
}

/// How a column gives way when a table is wider than the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Never shortened (short fixed words and numbers).
    Keep,
    /// Free text (a name, an identity, a title): shortened first, keeping its start.
    Text,
    /// A path: shortened after free text, keeping its end (the file name says the most).
    Path,
    /// An id (a watched certificate's id is its path): shortened last, and only when the id
    /// alone is wider than the terminal.
    Id,
}

/// The narrowest a free-text or path column becomes (or its header, if wider).
const MIN_TEXT: usize = 12;

/// Like [`table`], fitted to `width` columns when there is one (a terminal); `None` (a pipe,
/// a file) cuts nothing. `fits` says how each column gives way.
pub fn fitted_table(
    headers: &[&str],
    rows: &[Vec<String>],
    fits: &[Fit],
    width: Option<usize>,
) -> String {
    let natural = natural_widths(headers, rows);
    let Some(width) = width else {
        return layout(headers, rows, &natural);
    };
    let widths = fit_widths(headers, &natural, fits, width);
    let cut: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, cell)| {
                    let max = widths.get(i).copied().unwrap_or(usize::MAX);
                    match fits.get(i).copied().unwrap_or(Fit::Keep) {
                        Fit::Keep => cell.clone(),
                        Fit::Text => shorten(cell, max),
                        Fit::Path => shorten_start(cell, max),
                        Fit::Id if cell.starts_with('/') => shorten_start(cell, max),
                        Fit::Id => shorten(cell, max),
                    }
                })
                .collect()
        })
        .collect();
    layout(headers, &cut, &widths)
}

/// The column widths that fit `width`: free text gives way first (the widest column one
/// character at a time), then paths, then ids, each down to its minimum.
fn fit_widths(headers: &[&str], natural: &[usize], fits: &[Fit], width: usize) -> Vec<usize> {
    let mut widths = natural.to_vec();
    let gaps = 2 * widths.len().saturating_sub(1);
    let total = |w: &[usize]| w.iter().sum::<usize>() + gaps;
    for class in [Fit::Text, Fit::Path, Fit::Id] {
        let min = |i: usize| -> usize {
            let header = headers.get(i).map_or(0, |h| h.chars().count());
            match class {
                // An id is cut only when it alone does not fit the terminal.
                Fit::Id => natural[i].min(width).max(header),
                _ => MIN_TEXT.max(header).min(natural[i]),
            }
        };
        while total(&widths) > width {
            let widest = (0..widths.len())
                .filter(|&i| fits.get(i) == Some(&class) && widths[i] > min(i))
                .max_by_key(|&i| widths[i]);
            match widest {
                Some(i) => widths[i] -= 1,
                None => break,
            }
        }
    }
    widths
}

fn natural_widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    widths
}

fn layout(headers: &[&str], rows: &[Vec<String>], widths: &[usize]) -> String {
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The certificate table of `list` and of `status`'s attention section, fitted to `width`.
pub fn list_table(items: &[ListItem], width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            let state = if item.staged {
                "staged".to_owned()
            } else {
                item.state.as_str().to_owned()
            };
            vec![
                item.id.clone(),
                kind_word(&item.source).to_owned(),
                state,
                format_date(item.not_after),
                format_left(item.seconds_left),
                item.identity.clone().unwrap_or_else(|| "-".into()),
                item.name.clone(),
            ]
        })
        .collect();
    fitted_table(
        &["ID", "KIND", "STATE", "EXPIRES", "LEFT", "IDENTITY", "NAME"],
        &rows,
        &[
            Fit::Id,
            Fit::Keep,
            Fit::Keep,
            Fit::Keep,
            Fit::Keep,
            Fit::Text,
            Fit::Text,
        ],
        width,
    )
}

/// `list`.
pub fn render_list(items: &[ListItem], width: Option<usize>) -> String {
    if items.is_empty() {
        return "no certificates found\n".to_owned();
    }
    list_table(items, width)
}

fn push_field(out: &mut String, key: &str, value: &str) {
    let label = format!("{key}:");
    let mut lines = value.lines();
    out.push_str(&format!("  {label:<14}{}\n", lines.next().unwrap_or("")));
    // Continuation lines (a refused reload lists its problems) line up under the value.
    for line in lines {
        out.push_str(&format!("  {:<14}{line}\n", ""));
    }
}

fn health_word(health: Health) -> &'static str {
    match health {
        Health::Ok => "OK",
        Health::Warning => "WARNING",
        Health::Critical => "CRITICAL",
    }
}

fn render_problems(out: &mut String, problems: &[SourceProblem]) {
    for p in problems {
        // A watched file's id is its path: say it once.
        let place = if p.id == p.path {
            p.path.clone()
        } else {
            format!("{}  {}", p.id, p.path)
        };
        out.push_str(&format!(
            "  {place}  {}\n      {}\n",
            p.kind.as_str(),
            p.message
        ));
    }
}

/// `status`: the verdict line, then the details, tables fitted to `width`.
pub fn render_status(report: &StatusReport, width: Option<usize>) -> String {
    let mut out = verdict(report);
    out.push('\n');
    let uptime = format_span(
        report
            .now
            .saturating_sub(report.started_at)
            .max(0)
            .unsigned_abs(),
    );
    push_field(
        &mut out,
        "daemon",
        &format!(
            "certvaktd {}, pid {}, up {uptime}",
            report.version, report.pid
        ),
    );
    let files = if report.config_files.is_empty() {
        "defaults (no file)".to_owned()
    } else {
        report
            .config_files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    push_field(&mut out, "config", &files);
    push_field(
        &mut out,
        "loaded",
        &format_time_ago(report.config_loaded_at, report.now),
    );
    if let Some(error) = &report.last_reload_error {
        push_field(&mut out, "reload error", error);
    }
    push_field(
        &mut out,
        "last scan",
        &format_time_ago(report.scanned_at, report.now),
    );
    push_field(&mut out, "socket", &report.socket.display().to_string());
    push_field(
        &mut out,
        "metrics",
        report.metrics_listen.as_deref().unwrap_or("off"),
    );
    push_field(
        &mut out,
        "warn before",
        &format_span(report.warn_before_secs),
    );
    let c = &report.counts;
    push_field(
        &mut out,
        "health",
        &format!(
            "{}: {} ok, {} expiring, {} expired, {} not yet valid; {} source problem(s)",
            health_word(report.health),
            c.ok,
            c.expiring,
            c.expired,
            c.not_yet_valid,
            c.problems
        ),
    );
    if c.first_issues > 0 || c.staged > 0 {
        push_field(
            &mut out,
            "under way",
            &format!(
                "{} first issue(s), {} renewed certificate(s) staged before their not-before",
                c.first_issues, c.staged
            ),
        );
    }
    let tasks = report.renewal_counts.tasks;
    if tasks > 0 {
        push_field(
            &mut out,
            "tasks",
            &format!("{tasks} waiting for a person (`certvakt tasks`)"),
        );
    }
    if report.plugins_refused > 0 {
        push_field(
            &mut out,
            "plugins",
            &format!(
                "{} plugin file(s) refused (`certvakt plugins`)",
                report.plugins_refused
            ),
        );
    }
    out.push_str(&super::runs::removed_lines(&report.removed));
    let n = &report.notifications;
    if n.routes > 0 || n.pending > 0 || !n.undeliverable.is_empty() || n.problem.is_some() {
        let mut line = format!("{} route(s)", n.routes);
        if n.pending > 0 {
            line.push_str(&format!(", {} being sent", n.pending));
            if let Some(at) = n.oldest_pending_at {
                line.push_str(&format!(
                    " (oldest queued {} ago)",
                    crate::human_time::format_span(report.now.saturating_sub(at).max(0) as u64)
                ));
            }
        }
        if !n.undeliverable.is_empty() {
            line.push_str(&format!(
                ", {} UNDELIVERABLE (`certvakt notify retry` once fixed)",
                n.undeliverable.len()
            ));
        }
        if let Some(at) = n.last_sent_at {
            line.push_str(&format!(
                ", last sent {}",
                crate::human_time::format_time(at)
            ));
        }
        push_field(&mut out, "notify", &line);
        if let Some(problem) = &n.problem {
            out.push_str(&format!("  {problem}\n"));
        }
        for u in &n.undeliverable {
            out.push_str(&format!(
                "  {} via {} ({} attempt(s)): {}\n",
                u.subject,
                u.route,
                u.attempts,
                u.last_error.as_deref().unwrap_or("(no error recorded)")
            ));
        }
    }
    if !report.renewals.is_empty() {
        out.push_str("\nRenewals:\n");
        out.push_str(&renewals_with_errors(&report.renewals, report.now, width));
        if report.renewals_more > 0 {
            let c = &report.renewal_counts;
            out.push_str(&if c.need_someone > report.renewals.len() {
                format!(
                    "  … and {} more, {} of {} in all needing a person: `certvakt renewals --trouble` lists those, `certvakt renewals` every one\n",
                    report.renewals_more, c.need_someone, c.renewals
                )
            } else {
                format!(
                    "  … and {} more, none needing a person: `certvakt renewals` lists every one\n",
                    report.renewals_more
                )
            });
        }
    }
    if !report.first_issues.is_empty() {
        out.push_str("\nFirst issues under way (no certificate file yet; not a problem):\n");
        for f in &report.first_issues {
            out.push_str(&format!(
                "  {}  {}  after step {}\n",
                f.id,
                f.path,
                f.step.as_str()
            ));
        }
    }
    if report.attention.is_empty() && report.problems.is_empty() {
        // A failing renewal or a waiting task is shown above: "nothing" would contradict it.
        let renewals_need_someone = tasks > 0
            || report.renewal_counts.failing > 0
            || report.renewals.iter().any(|r| r.last_error.is_some());
        out.push_str(if renewals_need_someone {
            "\nNo certificate file needs attention; the renewals above do.\n"
        } else {
            "\nNothing needs attention.\n"
        });
        return out;
    }
    if !report.attention.is_empty() {
        out.push_str("\nNeeds attention:\n");
        out.push_str(&list_table(&report.attention, width));
        if report.attention_more > 0 {
            out.push_str(&format!(
                "  … and {} more: `certvakt list --expiring --sort expiry` lists them all\n",
                report.attention_more
            ));
        }
    }
    if !report.problems.is_empty() {
        out.push_str("\nSource problems:\n");
        render_problems(&mut out, &report.problems);
        if report.problems_more > 0 {
            out.push_str(&format!(
                "  … and {} more source problem(s): the journal names them as they appear, `certvakt show PATH` tells each\n",
                report.problems_more
            ));
        }
    }
    out
}

fn key_check_word(check: KeyCheck) -> &'static str {
    match check {
        KeyCheck::NotConfigured => "no key configured",
        KeyCheck::Matches => "the key matches the certificate",
        KeyCheck::Mismatch => "MISMATCH: the configured key does not belong to this certificate",
        KeyCheck::Unreadable => "the configured key could not be read",
    }
}

fn render_entry(out: &mut String, shown: &ShownEntry) {
    let entry = shown;
    let cert = &entry.cert;
    out.push_str(&format!("{}\n", entry.id));
    push_field(
        out,
        "file",
        &format!(
            "{} ({}, certificate {} in the file)",
            entry.path.display(),
            entry.format,
            entry.index + 1
        ),
    );
    let source = match &entry.source {
        SourceKind::Managed { plugin, .. } => format!("managed, renewed by plugin {plugin}"),
        SourceKind::Watched { pattern } => format!("watched, pattern {pattern}"),
    };
    push_field(out, "source", &source);
    push_field(out, "subject", &cert.subject);
    push_field(out, "issuer", &cert.issuer);
    push_field(out, "serial", &cert.serial);
    push_field(
        out,
        "valid",
        &format!(
            "{} to {}",
            format_time(cert.not_before),
            format_time(cert.not_after)
        ),
    );
    let state = match shown.state {
        CertState::Expired => format!("expired ({})", format_left(shown.seconds_left)),
        CertState::NotYetValid => format!("not yet valid (from {})", format_time(cert.not_before)),
        CertState::Expiring => format!("expiring, {} left", format_left(shown.seconds_left)),
        CertState::Ok => format!("ok, {} left", format_left(shown.seconds_left)),
    };
    push_field(out, "state", &state);
    let key = match &cert.key.curve {
        Some(curve) => format!("{} {curve} ({} bits)", cert.key.algorithm, cert.key.bits),
        None => format!("{} {} bits", cert.key.algorithm, cert.key.bits),
    };
    push_field(out, "key", &key);
    push_field(out, "signature", &cert.signature_algorithm);
    push_field(out, "sha256", &cert.sha256);
    push_field(out, "sha1", &cert.sha1);
    let sans = if cert.sans.is_empty() {
        "none".to_owned()
    } else {
        cert.sans.join(", ")
    };
    push_field(out, "SANs", &sans);
    let identities = if cert.identities.is_empty() {
        "none".to_owned()
    } else {
        cert.identities
            .iter()
            .map(format_identity)
            .collect::<Vec<_>>()
            .join("\n")
    };
    push_field(out, "identities", &identities);
    // The key check only means something for the leaf of a managed certificate.
    if entry.index == 0 && matches!(entry.source, SourceKind::Managed { .. }) {
        push_field(out, "key check", key_check_word(entry.key_check));
    }
    let mut flags = Vec::new();
    if cert.is_ca {
        flags.push("CA");
    }
    if cert.self_signed {
        flags.push("self-signed");
    }
    if !flags.is_empty() {
        push_field(out, "flags", &flags.join(", "));
    }
}

/// The pre-staged key: what to publish before the next renewal (a DANE record, a pin).
fn render_next_key(out: &mut String, next: &crate::lifecycle::run::NextKey, running: bool) {
    let when = if running {
        "the run in progress uses it"
    } else {
        "the next renewal uses it"
    };
    push_field(
        out,
        "next key",
        &format!(
            "{}, made {}; {when}",
            next.algorithm.as_str(),
            format_time(next.made_at)
        ),
    );
    push_field(out, "SPKI SHA-256", &next.spki_sha256);
    push_field(out, "TLSA record", &format!("3 1 1 {}", next.spki_sha256));
    push_field(out, "SPKI", &next.spki);
}

/// `show ID`.
pub fn render_show(report: &ShowReport) -> String {
    let mut out = String::new();
    for (i, shown) in report.entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_entry(&mut out, shown);
    }
    if report.entries.is_empty() {
        out.push_str(&format!("{}: no certificate could be read\n", report.id));
    }
    if !report.problems.is_empty() {
        out.push_str("\nProblems:\n");
        render_problems(&mut out, &report.problems);
    }
    if let Some(r) = &report.renewal {
        out.push_str("\nRenewal:\n");
        push_field(&mut out, "plugin", &plugin_text(r));
        push_field(&mut out, "step", &step_text(r));
        push_field(&mut out, "next", &r.next_at.map_or("-".into(), format_time));
        for note in &r.notes {
            push_field(&mut out, "note", note);
        }
        if let Some((start, end)) = r.suggested_window {
            push_field(
                &mut out,
                "CA's window",
                &format!("{} to {}", format_time(start), format_time(end)),
            );
        }
        if let Some(at) = r.last_success {
            push_field(&mut out, "last renewed", &format_time(at));
        }
        if let Some(next) = &r.next_key {
            render_next_key(&mut out, next, r.phase.is_some());
        }
        if r.failures > 0 {
            push_field(
                &mut out,
                "failing",
                &format!(
                    "{} time(s): {}",
                    r.failures,
                    r.last_error.as_deref().unwrap_or("")
                ),
            );
        }
        for task in &r.open_tasks {
            push_field(&mut out, "task", &format!("{}: {}", task.id, task.title));
        }
    }
    out
}

fn exit_for_health(health: Health) -> Exit {
    match health {
        Health::Ok => Exit::Ok,
        Health::Warning => Exit::Warning,
        Health::Critical => Exit::Critical,
    }
}

/// `status`'s exit code: the worse of the daemon's own verdict and what the counts say.
pub fn exit_for_status(report: &StatusReport) -> Exit {
    let c = &report.counts;
    let counted = if c.expired > 0 || c.not_yet_valid > 0 || c.problems > 0 {
        Health::Critical
    } else if c.expiring + c.staged + c.first_issues > 0 {
        Health::Warning
    } else {
        Health::Ok
    };
    exit_for_health(counted.max(report.health))
}

/// How many ids a verdict names before "and N more".
const VERDICT_IDS: usize = 3;

/// `status`'s first line, as a Nagios/Icinga plugin writes it: the level (the same as the exit
/// code), the worst things by name, then ` | ` and the performance data (`label=value`).
///
/// `OK: 14 certificates, nothing needs attention | certificates=14 ok=14 …`
/// `WARNING: 2 expiring (web, fmk); 1 task waiting | …`
/// `CRITICAL: 1 expired (/etc/ssl/x.pem); 1 expiring (web) | …`
pub fn verdict(report: &StatusReport) -> String {
    let c = &report.counts;
    let ids_in = |state: CertState, staged: bool| -> Vec<&str> {
        report
            .attention
            .iter()
            .filter(|i| i.state == state && i.staged == staged)
            .map(|i| i.id.as_str())
            .collect()
    };
    // Counted over every renewal; named from those `status` lists (the ones that need a
    // person come first).
    let rc = &report.renewal_counts;
    let failing: Vec<&str> = report
        .renewals
        .iter()
        .filter(|r| r.failures > 0)
        .map(|r| r.id.as_str())
        .collect();
    let not_loaded: Vec<&str> = report
        .renewals
        .iter()
        .filter(|r| !r.plugin_loaded)
        .map(|r| r.id.as_str())
        .collect();
    let tasks: Vec<&str> = report
        .renewals
        .iter()
        .flat_map(|r| r.open_tasks.iter().map(|t| t.cert_id.as_str()))
        .collect();
    let first: Vec<String> = report
        .first_issues
        .iter()
        .map(|f| format!("{}: step {}", f.id, f.step.as_str()))
        .collect();
    let problems: Vec<&str> = report.problems.iter().map(|p| p.id.as_str()).collect();
    let undeliverable = report.notifications.undeliverable.len();

    let mut parts: Vec<String> = Vec::new();
    let mut say = |count: usize, what: &str, ids: &[&str]| {
        if count > 0 {
            parts.push(format!("{count} {what}{}", named(ids, count)));
        }
    };
    // Critical first, then warnings, each as the exit code counts them.
    say(c.expired, "expired", &ids_in(CertState::Expired, false));
    say(
        c.not_yet_valid,
        "not yet valid",
        &ids_in(CertState::NotYetValid, false),
    );
    say(c.problems, "source problem(s)", &problems);
    say(c.expiring, "expiring", &ids_in(CertState::Expiring, false));
    say(
        c.staged,
        "staged before its not-before",
        &ids_in(CertState::NotYetValid, true),
    );
    let first_ids: Vec<&str> = first.iter().map(String::as_str).collect();
    say(c.first_issues, "first issue(s) under way", &first_ids);
    say(
        rc.failing.max(failing.len()),
        "failing renewal(s)",
        &failing,
    );
    say(rc.tasks.max(tasks.len()), "task(s) waiting", &tasks);
    say(
        rc.plugin_not_loaded.max(not_loaded.len()),
        "without their plugin",
        &not_loaded,
    );
    say(report.plugins_refused, "plugin file(s) refused", &[]);
    let removed: Vec<&str> = report.removed.iter().map(|r| r.id.as_str()).collect();
    say(
        removed.len(),
        "removed from the configuration, still holding a run (`certvakt forget`)",
        &removed,
    );
    say(undeliverable, "notification(s) undeliverable", &[]);
    if report.notifications.problem.is_some() {
        parts.push("the notification outbox has a problem".into());
    }
    let level = exit_for_status(report);
    let total = c.ok + c.expiring + c.expired + c.not_yet_valid + c.staged;
    let text = match (level, parts.is_empty()) {
        (Exit::Ok, _) => format!("{total} certificate(s), nothing needs attention"),
        (_, true) => "certvaktd reports trouble; see below".to_owned(),
        (_, false) => parts.join("; "),
    };
    let word = match level {
        Exit::Ok => "OK",
        Exit::Warning => "WARNING",
        _ => "CRITICAL",
    };
    format!(
        "{word}: {text} | certificates={total} ok={} expiring={} expired={} not_yet_valid={} \
         staged={} problems={} first_issues={} tasks={} failing_renewals={} \
         plugins_not_loaded={} plugins_refused={} removed={} undeliverable={undeliverable}",
        c.ok,
        c.expiring,
        c.expired,
        c.not_yet_valid,
        c.staged,
        c.problems,
        c.first_issues,
        rc.tasks.max(tasks.len()),
        rc.failing.max(failing.len()),
        rc.plugin_not_loaded.max(not_loaded.len()),
        report.plugins_refused,
        report.removed.len(),
    )
}

/// ` (a, b, c and 2 more)`, or nothing for no ids.
/// `count` is how many there are in all: `status` may list fewer than it counts.
fn named(ids: &[&str], count: usize) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let shown = ids.iter().take(VERDICT_IDS).copied().collect::<Vec<_>>();
    let more = count.max(ids.len()) - shown.len();
    let shown = shown.join(", ");
    match more {
        0 => format!(" ({shown})"),
        more => format!(" ({shown} and {more} more)"),
    }
}

/// Which source `list --source` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFilter {
    Managed,
    Watched,
}

/// How `list --sort` orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// The daemon's order: configuration order, then file order.
    #[default]
    Inventory,
    Id,
    /// Soonest expiry first.
    Expiry,
    /// Worst first (expired, not yet valid, expiring, ok), then soonest expiry.
    State,
}

/// `list`'s filters and order; the daemon sends everything and the CLI picks.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Matched against the whole id (a watched certificate's id is its path).
    pub glob: Option<glob::Pattern>,
    /// Only certificates that are expiring, expired or not yet valid.
    pub expiring: bool,
    /// Only managed certificates renewed by this plugin.
    pub plugin: Option<String>,
    pub source: Option<SourceFilter>,
    pub sort: SortKey,
}

impl ListQuery {
    fn keeps(&self, item: &ListItem) -> bool {
        let glob = self.glob.as_ref().is_none_or(|g| g.matches(&item.id));
        let expiring = !self.expiring || item.state != CertState::Ok;
        let plugin = self.plugin.as_deref().is_none_or(
            |name| matches!(&item.source, SourceKind::Managed { plugin, .. } if plugin == name),
        );
        let source = match self.source {
            None => true,
            Some(SourceFilter::Managed) => matches!(item.source, SourceKind::Managed { .. }),
            Some(SourceFilter::Watched) => matches!(item.source, SourceKind::Watched { .. }),
        };
        glob && expiring && plugin && source
    }

    /// The items kept, in the order asked for.
    pub fn apply(&self, items: Vec<ListItem>) -> Vec<ListItem> {
        let mut kept: Vec<ListItem> = items.into_iter().filter(|i| self.keeps(i)).collect();
        match self.sort {
            SortKey::Inventory => {}
            SortKey::Id => kept.sort_by(|a, b| a.id.cmp(&b.id)),
            SortKey::Expiry => kept.sort_by_key(|i| i.not_after),
            SortKey::State => kept.sort_by_key(|i| (state_rank(i.state), i.not_after)),
        }
        kept
    }
}

fn state_rank(state: CertState) -> u8 {
    match state {
        CertState::Expired => 0,
        CertState::NotYetValid => 1,
        CertState::Expiring => 2,
        CertState::Ok => 3,
    }
}

/// The schema name and version `--json` output of each versioned response carries.
pub fn json_schema(response: &Response) -> Option<&'static str> {
    match response {
        Response::List { .. } => Some("certvakt.list/1"),
        Response::Status(_) => Some("certvakt.status/2"),
        Response::Show(_) => Some("certvakt.show/1"),
        _ => None,
    }
}

/// The `--json` output: the daemon's response as it is, and for `list`, `status` and `show`
/// (documented in docs/cli.md, "JSON output") the `schema` first.
#[derive(Debug, Serialize)]
pub struct JsonOutput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<&'static str>,
    #[serde(flatten)]
    pub response: &'a Response,
}

/// [`JsonOutput`] of `response`.
pub fn json_output(response: &Response) -> JsonOutput<'_> {
    JsonOutput {
        schema: json_schema(response),
        response,
    }
}

/// `show`'s exit code: the certificate asked for (the first entry) and its source's problems;
/// the rest of its chain does not count.
pub fn exit_for_show(report: &ShowReport) -> Exit {
    if !report.problems.is_empty() {
        return Exit::Critical;
    }
    match report.entries.first().map(|e| e.state) {
        Some(CertState::Expired | CertState::NotYetValid) => Exit::Critical,
        Some(CertState::Expiring) => Exit::Warning,
        Some(CertState::Ok) => Exit::Ok,
        // Nothing readable under the id and no problem to say why: not a healthy certificate.
        None => Exit::Critical,
    }
}

fn plugin_text(r: &Renewal) -> String {
    if r.plugin_loaded {
        r.plugin.clone()
    } else {
        format!("{} (NOT LOADED: not renewed)", r.plugin)
    }
}

fn step_text(r: &Renewal) -> String {
    match r.phase {
        Some(phase) => format!("{} (renewal in progress)", phase.as_str()),
        None => "idle".into(),
    }
}

/// One line per managed certificate: plugin, step, next action, failures, last renewal.
/// The renewal table, then each renewal's last error on a line of its own.
fn renewals_with_errors(renewals: &[Renewal], now: i64, width: Option<usize>) -> String {
    let mut out = renewal_table(renewals, now, width);
    for r in renewals.iter().filter(|r| r.last_error.is_some()) {
        out.push_str(&format!(
            "  {}: {}\n",
            r.id,
            r.last_error.as_deref().unwrap_or_default()
        ));
    }
    out
}

/// `certvakt renewals`: every managed certificate's renewal.
pub fn render_renewals(renewals: &[Renewal], width: Option<usize>) -> String {
    if renewals.is_empty() {
        return "No managed certificate (or none matches).\n".into();
    }
    renewals_with_errors(renewals, crate::now_unix(), width)
}

pub fn renewal_table(renewals: &[Renewal], now: i64, width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = renewals
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                plugin_text(r),
                r.phase.map_or("idle".into(), |p| p.as_str().to_owned()),
                r.next_at.map_or("-".into(), |at| {
                    if at <= now {
                        "now".into()
                    } else {
                        format!("in {}", format_span((at - now).unsigned_abs()))
                    }
                }),
                r.failures.to_string(),
                r.open_tasks.len().to_string(),
                r.last_success.map_or("never".into(), format_date),
            ]
        })
        .collect();
    fitted_table(
        &[
            "ID",
            "PLUGIN",
            "STEP",
            "NEXT",
            "FAILURES",
            "TASKS",
            "LAST RENEWED",
        ],
        &rows,
        &[
            Fit::Id,
            Fit::Text,
            Fit::Keep,
            Fit::Keep,
            Fit::Keep,
            Fit::Keep,
            Fit::Keep,
        ],
        width,
    )
}

/// `certvakt tasks`, fitted to `width`.
pub fn render_tasks(tasks: &[Task], now: i64, width: Option<usize>) -> String {
    if tasks.is_empty() {
        return "No task is waiting for a person.\n".into();
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.cert_id.clone(),
                t.phase.as_str().to_owned(),
                format!("{} ago", format_span((now - t.opened_at).unsigned_abs())),
                completion_word(t.completes_by).to_owned(),
                t.title.clone(),
            ]
        })
        .collect();
    fitted_table(
        &[
            "TASK",
            "CERTIFICATE",
            "STEP",
            "OPENED",
            "COMPLETES BY",
            "TITLE",
        ],
        &rows,
        &[Fit::Id, Fit::Id, Fit::Keep, Fit::Keep, Fit::Keep, Fit::Text],
        width,
    )
}

fn completion_word(c: Completion) -> &'static str {
    match c {
        Completion::Import => "import",
        Completion::Confirm => "task done",
        Completion::Poll => "itself",
    }
}

/// `certvakt task show ID`.
pub fn render_task(task: &Task) -> String {
    let mut out = format!("{}\n", task.title);
    push_field(&mut out, "task", &task.id);
    push_field(&mut out, "certificate", &task.cert_id);
    push_field(&mut out, "step", task.phase.as_str());
    push_field(&mut out, "opened", &format_time(task.opened_at));
    let how = match task.completes_by {
        Completion::Import => format!("certvakt import {} <file>", task.cert_id),
        Completion::Confirm => format!("certvakt task done {}", task.id),
        Completion::Poll => "by itself, when the authority shows it done".into(),
    };
    push_field(&mut out, "when done", &how);
    let files: Vec<String> = task.files.iter().map(|f| f.display().to_string()).collect();
    push_field(&mut out, "files", &files.join("\n"));
    out.push('\n');
    out.push_str(&task.instructions);
    if !task.instructions.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// `certvakt plugins`.
pub fn render_plugins(report: &PluginsReport) -> String {
    let mut out = String::new();
    push_field(
        &mut out,
        "plugin dir",
        &report.plugin_dir.display().to_string(),
    );
    if report.loaded.is_empty() {
        out.push_str("\nNo plugin is loaded.\n");
    } else {
        out.push('\n');
        let rows: Vec<Vec<String>> = report
            .loaded
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.version.clone(),
                    p.api_version.clone(),
                    p.certificates.join(", "),
                    p.file.display().to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["PLUGIN", "VERSION", "API", "CERTIFICATES", "FILE"],
            &rows,
        ));
    }
    if !report.refused.is_empty() {
        out.push_str("\nRefused:\n");
        for r in &report.refused {
            out.push_str(&format!("  {}: {}\n", r.file.display(), r.reason));
        }
    }
    out
}

/// `certvakt notify test`: one line per route.
pub fn render_notify_test(results: &[crate::control::protocol::NotifyTestResult]) -> String {
    let mut out = String::new();
    for r in results {
        out.push_str(&format!(
            "{} {} ({}): {}\n",
            if r.ok { "ok    " } else { "FAILED" },
            r.route,
            r.channel,
            r.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{Counts, IdentityFields, ProblemKind};
    use std::path::PathBuf;

    #[test]
    fn spans_are_short_and_floor() {
        assert_eq!(format_span(0), "0s");
        assert_eq!(format_span(59), "59s");
        assert_eq!(format_span(60), "1m");
        assert_eq!(format_span(3_599), "59m");
        assert_eq!(format_span(3_600), "1h");
        assert_eq!(format_span(5 * 3_600 + 12 * 60 + 30), "5h 12m");
        assert_eq!(format_span(86_400), "1d");
        assert_eq!(format_span(3 * 86_400 + 4 * 3_600 + 59 * 60), "3d 4h");
        assert_eq!(format_span(7 * 86_400 - 1), "6d 23h");
        assert_eq!(format_span(7 * 86_400), "7d");
        assert_eq!(format_span(412 * 86_400 + 23 * 3_600), "412d");
    }

    #[test]
    fn left_says_expired_once_negative() {
        assert_eq!(format_left(412 * 86_400 + 100), "412d");
        assert_eq!(format_left(3 * 86_400 + 4 * 3_600), "3d 4h");
        assert_eq!(format_left(0), "expired just now");
        assert_eq!(format_left(-2 * 86_400 - 5), "expired 2d ago");
        assert_eq!(format_left(-90), "expired 1m ago");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(format_date(1_803_859_200), "2027-03-01");
        assert_eq!(format_date(1_803_945_599), "2027-03-01");
        assert_eq!(
            format_time(1_803_859_200 + 3_661),
            "2027-03-01 01:01:01 UTC"
        );
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn identities_read_like_the_authorities_write_them() {
        let dk = NordicIdentity::DkOces3 {
            cvr: "12345678".into(),
            uuid: Some("0b6a1c8e".into()),
        };
        assert_eq!(format_identity(&dk), "DK CVR 12345678 UUID 0b6a1c8e");
        let dk2 = NordicIdentity::DkOces2 {
            cvr: "12345678".into(),
            fid: Some("1234".into()),
            uid: None,
            rid: None,
        };
        assert_eq!(format_identity(&dk2), "DK CVR 12345678 FID 1234 (OCES2)");
        let se = NordicIdentity::SeHsaId {
            hsa_id: "SE2321000016-39KJ".into(),
        };
        assert_eq!(format_identity(&se), "SE HSA-ID SE2321000016-39KJ");
        let no = NordicIdentity::NoOrgNumber {
            orgnr: "123456789".into(),
            seid: 2,
        };
        assert_eq!(format_identity(&no), "NO org 123456789 (SEID 2)");
        let fi = NordicIdentity::FiOrganisation {
            business_id: Some("1234567-8".into()),
            identifier: "1234567-8".into(),
        };
        assert_eq!(format_identity(&fi), "FI Y-tunnus 1234567-8");
    }

    #[test]
    fn tables_align_and_shorten_only_long_fields() {
        let text = table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(text, "A    BB  C\nxxx  y   z\n");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abcd", 4), "abcd");
        assert_eq!(
            shorten_start("/etc/ssl/certs/server.pem", 12),
            "…/server.pem"
        );
    }

    fn item(id: &str, state: CertState, seconds_left: i64) -> ListItem {
        ListItem {
            id: id.into(),
            source: SourceKind::Watched {
                pattern: "/etc/ssl/*.pem".into(),
            },
            path: PathBuf::from(id),
            name: "apotek.example".into(),
            identity: Some("DK CVR 12345678".into()),
            not_after: 1_803_859_200,
            seconds_left,
            state,
            identity_fields: None,
            staged: false,
        }
    }

    #[test]
    fn list_table_has_every_column() {
        let text = render_list(
            &[
                item("fmk-prod", CertState::Ok, 412 * 86_400),
                item("/etc/ssl/old.pem", CertState::Expired, -2 * 86_400),
            ],
            None,
        );
        assert_eq!(
            text,
            "ID                KIND     STATE    EXPIRES     LEFT            IDENTITY         NAME\n\
             fmk-prod          watched  ok       2027-03-01  412d            DK CVR 12345678  apotek.example\n\
             /etc/ssl/old.pem  watched  expired  2027-03-01  expired 2d ago  DK CVR 12345678  apotek.example\n"
        );
        assert_eq!(render_list(&[], None), "no certificates found\n");
    }

    fn long_item() -> ListItem {
        ListItem {
            identity: Some("DK CVR 12345678 UUID 0b6a1c8e-4a4e-4b8e-9d2c-2f4f3a1d5e60".into()),
            name: "Apotek Nord, receptserver for Region Hovedstaden".into(),
            ..item(
                &format!("/etc/ssl/{}server.pem", "deep/".repeat(12)),
                CertState::Ok,
                412 * 86_400,
            )
        }
    }

    #[test]
    fn without_a_terminal_nothing_is_cut() {
        let long = long_item();
        let text = render_list(std::slice::from_ref(&long), None);
        let row = text.lines().nth(1).expect("a row");
        assert!(row.starts_with(&format!("{}  watched", long.id)), "{row}");
        assert!(
            row.contains(long.identity.as_deref().expect("identity")),
            "{row}"
        );
        assert!(row.ends_with(&long.name), "{row}");
        assert!(!text.contains('…'), "{text}");
    }

    #[test]
    fn on_a_terminal_free_text_gives_way_before_the_id() {
        let long = long_item();
        let id_len = long.id.chars().count();
        // Wide enough for the whole id and the fixed columns, not for the free text.
        let width = id_len + 2 + "watched  ok     2027-03-01  412d".len() + 2 + 12 + 2 + 12;
        let text = render_list(std::slice::from_ref(&long), Some(width));
        for line in text.lines() {
            assert!(
                line.chars().count() <= width,
                "{line:?} is wider than {width}"
            );
        }
        let row = text.lines().nth(1).expect("a row");
        assert!(
            row.starts_with(&format!("{}  ", long.id)),
            "the id is whole: {row}"
        );
        assert!(row.contains("DK CVR 1234…"), "{row}");
        assert!(row.ends_with("Apotek Nord…"), "{row}");
        // A terminal wide enough for everything cuts nothing.
        assert_eq!(
            render_list(std::slice::from_ref(&long), Some(1_000)),
            render_list(std::slice::from_ref(&long), None)
        );
    }

    #[test]
    fn an_id_is_cut_only_when_it_alone_is_wider_than_the_terminal() {
        let long = long_item();
        let text = render_list(std::slice::from_ref(&long), Some(40));
        let row = text.lines().nth(1).expect("a row");
        let id_cell = row.split("  ").next().expect("id cell");
        assert_eq!(id_cell.chars().count(), 40, "{row}");
        assert!(
            id_cell.starts_with('…') && id_cell.ends_with("/deep/server.pem"),
            "{id_cell}"
        );
        // Ids that are not paths keep their start.
        let plain = fitted_table(
            &["ID", "TITLE"],
            &[vec!["x".repeat(30), "t".into()]],
            &[Fit::Id, Fit::Text],
            Some(20),
        );
        assert_eq!(
            plain.lines().nth(1),
            Some(format!("{}…  t", "x".repeat(19)).as_str())
        );
    }

    #[test]
    fn renewals_and_tasks_fit_the_same_way() {
        let id = "a-certificate-with-a-long-id-for-the-regional-pharmacy";
        let task = Task {
            id: "t-0123456789abcdef".into(),
            cert_id: id.into(),
            phase: crate::control::protocol::Phase::Ordered,
            step: crate::control::protocol::Phase::Ordered,
            opened_at: 1_800_000_000,
            completes_by: Completion::Import,
            title: "Upload the certificate request to the authority's self-service portal".into(),
            files: Vec::new(),
            instructions: String::new(),
            closed_at: None,
        };
        let piped = render_tasks(std::slice::from_ref(&task), 1_800_000_060, None);
        assert!(piped.contains(&task.title) && piped.contains(id), "{piped}");
        let fitted = render_tasks(std::slice::from_ref(&task), 1_800_000_060, Some(120));
        for line in fitted.lines() {
            assert!(line.chars().count() <= 120, "{line:?}");
        }
        assert!(fitted.contains(id) && fitted.contains(&task.id), "{fitted}");
        assert!(fitted.contains("Upload the"), "{fitted}");
        assert!(
            !fitted.contains(&task.title),
            "the title gives way: {fitted}"
        );
    }

    fn status(counts: Counts, health: Health) -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            pid: 4242,
            started_at: 1_800_000_000,
            now: 1_800_000_000 + 3 * 86_400 + 4 * 3_600,
            config_files: vec![
                PathBuf::from("/etc/certvakt/certvakt.toml"),
                PathBuf::from("/etc/certvakt/conf.d/10-fmk.toml"),
            ],
            config_loaded_at: 1_800_000_000,
            last_reload_error: None,
            scanned_at: 1_800_000_000 + 3 * 86_400 + 4 * 3_600 - 120,
            socket: PathBuf::from("/run/certvakt/control.sock"),
            metrics_listen: Some("127.0.0.1:9617".into()),
            warn_before_secs: 30 * 86_400,
            health,
            counts,
            attention: vec![],
            problems: vec![],
            renewals: Vec::new(),
            plugins_refused: 0,
            notifications: Default::default(),
            removed: Vec::new(),
            first_issues: Vec::new(),
            attention_more: 0,
            renewals_more: 0,
            renewal_counts: Default::default(),
            problems_more: 0,
        }
    }

    #[test]
    fn status_exit_codes_follow_the_counts_and_health() {
        let ok = Counts {
            ok: 5,
            ..Counts::default()
        };
        assert_eq!(exit_for_status(&status(ok.clone(), Health::Ok)), Exit::Ok);
        let expiring = Counts {
            expiring: 1,
            ..ok.clone()
        };
        assert_eq!(
            exit_for_status(&status(expiring.clone(), Health::Warning)),
            Exit::Warning
        );
        let expired = Counts {
            expired: 1,
            ..expiring.clone()
        };
        assert_eq!(
            exit_for_status(&status(expired, Health::Critical)),
            Exit::Critical
        );
        let not_yet = Counts {
            not_yet_valid: 1,
            ..ok.clone()
        };
        assert_eq!(
            exit_for_status(&status(not_yet, Health::Ok)),
            Exit::Critical
        );
        let problem = Counts {
            problems: 2,
            ..ok.clone()
        };
        assert_eq!(
            exit_for_status(&status(problem, Health::Ok)),
            Exit::Critical
        );
        // The daemon's own verdict counts even when the counts look fine.
        assert_eq!(exit_for_status(&status(ok, Health::Warning)), Exit::Warning);
        assert_eq!(Exit::Critical.code(), 2);
    }

    #[test]
    fn status_text_has_header_counts_and_attention() {
        let mut report = status(
            Counts {
                ok: 1,
                expired: 1,
                problems: 1,
                ..Counts::default()
            },
            Health::Critical,
        );
        report.last_reload_error =
            Some("the new configuration has 1 problem(s):\n/etc/x.toml:3: bad".into());
        report.attention = vec![item("fmk-prod", CertState::Expired, -3_600)];
        report.problems = vec![SourceProblem {
            id: "/etc/ssl/*.pem".into(),
            source: SourceKind::Watched {
                pattern: "/etc/ssl/*.pem".into(),
            },
            path: "/etc/ssl/*.pem".into(),
            kind: ProblemKind::NoMatch,
            message: "no file matches /etc/ssl/*.pem".into(),
        }];
        let text = render_status(&report, None);
        let (verdict_line, text) = text.split_once('\n').expect("a verdict line");
        assert!(
            verdict_line.starts_with(
                "CRITICAL: 1 expired (fmk-prod); 1 source problem(s) (/etc/ssl/*.pem) | "
            ),
            "{verdict_line}"
        );
        let expected_head = "  daemon:       certvaktd 0.1.0, pid 4242, up 3d 4h\n\
                             \x20 config:       /etc/certvakt/certvakt.toml\n\
                             \x20               /etc/certvakt/conf.d/10-fmk.toml\n\
                             \x20 loaded:       2027-01-15 08:00:00 UTC (3d 4h ago)\n\
                             \x20 reload error: the new configuration has 1 problem(s):\n\
                             \x20               /etc/x.toml:3: bad\n\
                             \x20 last scan:    2027-01-18 11:58:00 UTC (2m ago)\n\
                             \x20 socket:       /run/certvakt/control.sock\n\
                             \x20 metrics:      127.0.0.1:9617\n\
                             \x20 warn before:  30d\n\
                             \x20 health:       CRITICAL: 1 ok, 0 expiring, 1 expired, 0 not yet valid; 1 source problem(s)\n\
                             \nNeeds attention:\n";
        assert_eq!(&text[..expected_head.len().min(text.len())], expected_head);
        assert!(text.contains("fmk-prod  watched  expired  2027-03-01  expired 1h ago  DK CVR 12345678  apotek.example\n"), "{text}");
        assert!(
            text.ends_with("\nSource problems:\n  /etc/ssl/*.pem  no_match\n      no file matches /etc/ssl/*.pem\n"),
            "{text}"
        );
    }

    #[test]
    fn status_says_nothing_needs_attention_only_when_no_renewal_does() {
        let mut report = status(
            Counts {
                ok: 1,
                ..Counts::default()
            },
            Health::Ok,
        );
        assert!(render_status(&report, None).ends_with("\nNothing needs attention.\n"));

        report.renewals = vec![Renewal {
            id: "shop".into(),
            plugin: "manual".into(),
            plugin_loaded: true,
            phase: None,
            step: None,
            next_at: None,
            failures: 2,
            last_error: Some("create temp file /srv/x: Read-only file system".into()),
            last_success: None,
            open_tasks: Vec::new(),
            suggested_window: None,
            notes: Vec::new(),
            next_key: None,
        }];
        let text = render_status(&report, None);
        assert!(text.contains("  shop: create temp file /srv/x"), "{text}");
        assert!(
            text.ends_with("\nNo certificate file needs attention; the renewals above do.\n"),
            "{text}"
        );
    }

    fn shown(state: CertState, seconds_left: i64) -> ShownEntry {
        ShownEntry::new(&crate::inventory::example_entry(), state, seconds_left)
    }

    #[test]
    fn show_text_and_exit_codes() {
        let report = ShowReport {
            id: "fmk-prod".into(),
            entries: vec![shown(CertState::Ok, 412 * 86_400)],
            problems: vec![],
            renewal: None,
        };
        let text = render_show(&report);
        assert_eq!(
            text,
            "fmk-prod\n\
             \x20 file:         /etc/certvakt/fmk.pem (pem, certificate 1 in the file)\n\
             \x20 source:       managed, renewed by plugin dk-fmk\n\
             \x20 subject:      CN=Apotek, organizationIdentifier=NTRDK-12345678\n\
             \x20 issuer:       CN=Den Danske Stat OCES udstedende-CA 1\n\
             \x20 serial:       01:02:03\n\
             \x20 valid:        2025-03-01 00:00:00 UTC to 2027-03-01 00:00:00 UTC\n\
             \x20 state:        ok, 412d left\n\
             \x20 key:          RSA 3072 bits\n\
             \x20 signature:    sha256WithRSAEncryption\n\
             \x20 sha256:       cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc:cc\n\
             \x20 sha1:         aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa\n\
             \x20 SANs:         none\n\
             \x20 identities:   DK CVR 12345678\n\
             \x20 key check:    the key matches the certificate\n"
        );
        assert_eq!(exit_for_show(&report), Exit::Ok);

        let expiring = ShowReport {
            entries: vec![shown(CertState::Expiring, 3 * 86_400)],
            ..report.clone()
        };
        assert_eq!(exit_for_show(&expiring), Exit::Warning);
        // Only the certificate asked for counts, not the rest of its file.
        let chain = ShowReport {
            entries: vec![
                shown(CertState::Ok, 86_400 * 100),
                shown(CertState::Expired, -5),
            ],
            ..report.clone()
        };
        assert_eq!(exit_for_show(&chain), Exit::Ok);
        let expired = ShowReport {
            entries: vec![shown(CertState::Expired, -5)],
            ..report.clone()
        };
        assert_eq!(exit_for_show(&expired), Exit::Critical);
        let with_problem = ShowReport {
            problems: vec![SourceProblem {
                id: "fmk-prod".into(),
                source: report.entries[0].source.clone(),
                path: "/etc/certvakt/fmk.key".into(),
                kind: ProblemKind::KeyMismatch,
                message: "the key does not belong".into(),
            }],
            ..report
        };
        assert_eq!(exit_for_show(&with_problem), Exit::Critical);
    }

    fn renewal(id: &str) -> Renewal {
        Renewal {
            id: id.into(),
            plugin: "manual".into(),
            plugin_loaded: true,
            phase: None,
            step: None,
            next_at: None,
            failures: 0,
            last_error: None,
            last_success: None,
            open_tasks: Vec::new(),
            suggested_window: None,
            notes: Vec::new(),
            next_key: None,
        }
    }

    fn perf(line: &str) -> std::collections::BTreeMap<String, u64> {
        let (_, data) = line
            .split_once(" | ")
            .expect("performance data after ` | `");
        data.split(' ')
            .map(|pair| {
                let (label, value) = pair.split_once('=').expect("label=value");
                (label.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    #[test]
    fn the_verdict_is_ok_with_performance_data() {
        let report = status(
            Counts {
                ok: 14,
                ..Counts::default()
            },
            Health::Ok,
        );
        let line = verdict(&report);
        assert!(
            line.starts_with("OK: 14 certificate(s), nothing needs attention | certificates=14 ok=14 expiring=0 expired=0 not_yet_valid=0 "),
            "{line}"
        );
        let data = perf(&line);
        for label in [
            "certificates",
            "expiring",
            "expired",
            "not_yet_valid",
            "problems",
            "tasks",
            "failing_renewals",
            "first_issues",
            "staged",
        ] {
            assert!(data.contains_key(label), "{label} missing in {line}");
        }
        assert!(data.keys().all(|l| !l.contains(' ')));
        assert_eq!(exit_for_status(&report), Exit::Ok);
        assert!(render_status(&report, None).starts_with(&format!("{line}\n  daemon:")));
    }

    #[test]
    fn a_removed_certificate_still_holding_a_run_is_a_warning_that_names_it() {
        let mut report = status(
            Counts {
                ok: 3,
                ..Counts::default()
            },
            Health::Warning,
        );
        report.removed = vec![crate::control::protocol::RemovedCertificate {
            id: "old-shop".into(),
            step: None,
            pending_keys: 1,
            open_tasks: Vec::new(),
        }];
        let line = verdict(&report);
        assert!(
            line.starts_with(
                "WARNING: 1 removed from the configuration, still holding a run (`certvakt forget`) (old-shop) |"
            ),
            "{line}"
        );
        assert_eq!(perf(&line).get("removed"), Some(&1), "{line}");
        assert_eq!(exit_for_status(&report), Exit::Warning);
    }

    #[test]
    fn the_verdict_names_a_few_ids_then_how_many_more() {
        let mut report = status(
            Counts {
                ok: 2,
                expiring: 5,
                ..Counts::default()
            },
            Health::Warning,
        );
        report.attention = ["web", "fmk", "shop", "lab", "hr"]
            .iter()
            .map(|id| item(id, CertState::Expiring, 86_400))
            .collect();
        let mut waiting = renewal("fmk");
        waiting.open_tasks = vec![Task {
            id: "t-1".into(),
            cert_id: "fmk".into(),
            phase: crate::control::protocol::Phase::Ordered,
            step: crate::control::protocol::Phase::Ordered,
            title: "Upload".into(),
            instructions: String::new(),
            files: Vec::new(),
            completes_by: Completion::Import,
            opened_at: 0,
            closed_at: None,
        }];
        report.renewals = vec![waiting, renewal("web")];
        let line = verdict(&report);
        assert!(
            line.starts_with(
                "WARNING: 5 expiring (web, fmk, shop and 2 more); 1 task(s) waiting (fmk) | "
            ),
            "{line}"
        );
        let data = perf(&line);
        assert_eq!(data["expiring"], 5);
        assert_eq!(data["tasks"], 1);
        assert_eq!(data["certificates"], 7);
        assert_eq!(exit_for_status(&report), Exit::Warning);
    }

    #[test]
    fn the_verdict_puts_critical_things_first() {
        let mut report = status(
            Counts {
                expired: 1,
                expiring: 1,
                ..Counts::default()
            },
            Health::Critical,
        );
        report.attention = vec![
            item("web", CertState::Expiring, 86_400),
            item("/etc/ssl/x.pem", CertState::Expired, -60),
        ];
        let mut failing = renewal("web");
        failing.failures = 3;
        report.renewals = vec![failing];
        let line = verdict(&report);
        assert!(
            line.starts_with("CRITICAL: 1 expired (/etc/ssl/x.pem); 1 expiring (web); 1 failing renewal(s) (web) | "),
            "{line}"
        );
        assert_eq!(perf(&line)["failing_renewals"], 1);
        assert_eq!(exit_for_status(&report), Exit::Critical);
    }

    #[test]
    fn a_first_issue_under_way_and_a_staged_certificate_are_warnings() {
        let mut report = status(
            Counts {
                ok: 1,
                first_issues: 1,
                staged: 1,
                ..Counts::default()
            },
            Health::Warning,
        );
        report.first_issues = vec![crate::control::protocol::FirstIssue {
            id: "shop".into(),
            path: "/etc/certvakt/certs/shop.pem".into(),
            step: crate::control::protocol::Phase::Ordered,
        }];
        report.attention = vec![ListItem {
            staged: true,
            ..item("nemlogin", CertState::NotYetValid, 400 * 86_400)
        }];
        assert_eq!(exit_for_status(&report), Exit::Warning);
        let line = verdict(&report);
        assert!(
            line.starts_with("WARNING: 1 staged before its not-before (nemlogin); 1 first issue(s) under way (shop: step ordered) | "),
            "{line}"
        );
        let data = perf(&line);
        assert_eq!(
            (data["staged"], data["first_issues"], data["problems"]),
            (1, 1, 0)
        );
        let text = render_status(&report, None);
        assert!(text.contains("\nFirst issues under way (no certificate file yet; not a problem):\n  shop  /etc/certvakt/certs/shop.pem  after step ordered\n"), "{text}");
        assert!(text.contains("nemlogin  watched  staged"), "{text}");
        // The same certificate not explained by a run is critical.
        report.counts.staged = 0;
        report.counts.not_yet_valid = 1;
        assert_eq!(exit_for_status(&report), Exit::Critical);
    }

    fn managed_item(id: &str, plugin: &str, state: CertState, not_after: i64) -> ListItem {
        ListItem {
            source: SourceKind::Managed {
                id: id.into(),
                plugin: plugin.into(),
                key: None,
            },
            not_after,
            ..item(id, state, not_after - 1_800_000_000)
        }
    }

    #[test]
    fn list_filters_and_sorts() {
        let items = vec![
            managed_item("fmk-prod", "dk-fmk", CertState::Ok, 1_900_000_000),
            managed_item("fmk-test", "dk-fmk", CertState::Expiring, 1_800_100_000),
            managed_item("nhn", "no-nhn", CertState::Expired, 1_700_000_000),
            ListItem {
                not_after: 1_850_000_000,
                ..item("/etc/ssl/web.pem", CertState::NotYetValid, 10)
            },
        ];
        let ids = |query: ListQuery| -> Vec<String> {
            query
                .apply(items.clone())
                .into_iter()
                .map(|i| i.id)
                .collect()
        };
        assert_eq!(
            ids(ListQuery::default()),
            ["fmk-prod", "fmk-test", "nhn", "/etc/ssl/web.pem"]
        );
        let glob = |g: &str| ListQuery {
            glob: Some(glob::Pattern::new(g).expect("pattern")),
            ..ListQuery::default()
        };
        assert_eq!(ids(glob("fmk-*")), ["fmk-prod", "fmk-test"]);
        assert_eq!(ids(glob("/etc/ssl/*.pem")), ["/etc/ssl/web.pem"]);
        assert_eq!(
            ids(ListQuery {
                expiring: true,
                ..ListQuery::default()
            }),
            ["fmk-test", "nhn", "/etc/ssl/web.pem"]
        );
        assert_eq!(
            ids(ListQuery {
                plugin: Some("dk-fmk".into()),
                ..ListQuery::default()
            }),
            ["fmk-prod", "fmk-test"]
        );
        assert_eq!(
            ids(ListQuery {
                source: Some(SourceFilter::Watched),
                ..ListQuery::default()
            }),
            ["/etc/ssl/web.pem"]
        );
        assert_eq!(
            ids(ListQuery {
                source: Some(SourceFilter::Managed),
                expiring: true,
                ..ListQuery::default()
            }),
            ["fmk-test", "nhn"]
        );
        assert_eq!(
            ids(ListQuery {
                sort: SortKey::Id,
                ..ListQuery::default()
            }),
            ["/etc/ssl/web.pem", "fmk-prod", "fmk-test", "nhn"]
        );
        assert_eq!(
            ids(ListQuery {
                sort: SortKey::Expiry,
                ..ListQuery::default()
            }),
            ["nhn", "fmk-test", "/etc/ssl/web.pem", "fmk-prod"]
        );
        assert_eq!(
            ids(ListQuery {
                sort: SortKey::State,
                ..ListQuery::default()
            }),
            ["nhn", "/etc/ssl/web.pem", "fmk-test", "fmk-prod"]
        );
    }

    fn json(response: &Response) -> serde_json::Value {
        serde_json::to_value(json_output(response)).expect("json")
    }

    #[test]
    fn json_output_is_versioned_with_identity_fields_and_steps() {
        let mut listed = item("fmk-prod", CertState::Ok, 10);
        listed.identity_fields = Some(IdentityFields::from(&NordicIdentity::DkOces3 {
            cvr: "12345678".into(),
            uuid: Some("0b6a1c8e".into()),
        }));
        let list = json(&Response::List {
            items: vec![listed],
            total: 1,
            scanned_at: 0,
        });
        assert_eq!(list["schema"], "certvakt.list/1");
        assert_eq!(list["response"], "list");
        assert_eq!(
            list["items"][0]["identity_fields"],
            serde_json::json!({"kind": "dk_oces3", "country": "DK", "number": "12345678", "uuid": "0b6a1c8e", "label": "DK CVR 12345678 UUID 0b6a1c8e"})
        );

        // The schema comes first, then the daemon's answer in its own order.
        let text = serde_json::to_string_pretty(&json_output(&Response::List {
            items: vec![],
            total: 0,
            scanned_at: 0,
        }))
        .expect("json");
        assert!(
            text.starts_with(
                "{\n  \"schema\": \"certvakt.list/1\",\n  \"response\": \"list\",\n  \"items\": []"
            ),
            "{text}"
        );

        let mut report = status(Counts::default(), Health::Ok);
        // `step` is the engine's phase, as the daemon converts it.
        let running = Renewal::from(&crate::lifecycle::CertRenewal {
            id: "fmk-prod".into(),
            plugin: "dk-fmk".into(),
            plugin_loaded: true,
            phase: Some(crate::lifecycle::Phase::Ordered),
            next_at: None,
            failures: 0,
            last_error: None,
            last_success: None,
            open_tasks: Vec::new(),
            suggested_window: None,
            notes: Vec::new(),
            next_key: None,
        });
        report.renewals = vec![running, renewal("idle")];
        let status = json(&Response::Status(Box::new(report)));
        assert_eq!(status["schema"], "certvakt.status/2");
        assert_eq!(status["renewals"][0]["step"], "ordered");
        assert_eq!(status["renewals"][0]["phase"], "ordered");
        assert_eq!(status["renewals"][1]["step"], serde_json::Value::Null);
        assert!(
            status["renewals"][1]
                .as_object()
                .expect("object")
                .contains_key("step")
        );

        let show = ShowReport {
            id: "fmk-prod".into(),
            entries: vec![shown(CertState::Ok, 10)],
            problems: vec![],
            renewal: Some(renewal("fmk-prod")),
        };
        let shown_json = json(&Response::Show(show));
        assert_eq!(shown_json["schema"], "certvakt.show/1");
        assert_eq!(
            shown_json["entries"][0]["identity_fields"][0]["number"],
            "12345678"
        );
        assert_eq!(
            shown_json["entries"][0]["identity_fields"][0]["country"],
            "DK"
        );
        assert!(
            shown_json["renewal"]
                .as_object()
                .expect("renewal")
                .contains_key("step")
        );

        // Other answers are the daemon's, unchanged.
        let plain = json(&Response::NotifyRetry { queued: 2 });
        assert_eq!(
            plain,
            serde_json::json!({"response": "notify_retry", "queued": 2})
        );
    }
}
