//! How the CLI shows the daemon's answers to people, and which exit code they mean.
//!
//! Contract: every function here is pure (no I/O, no clock: "now" comes from the report or the
//! caller), so the text and the exit codes can be tested with fixed numbers. Dates are UTC.
//! Long fields are shortened only inside tables; key/value blocks show everything.

use crate::control::protocol::{
    CertState, Completion, Health, KeyCheck, ListItem, NordicIdentity, PluginsReport, Renewal,
    ShowReport, ShownEntry, SourceKind, SourceProblem, StatusReport, Task,
};

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

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
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

const ID_WIDTH: usize = 40;
const IDENTITY_WIDTH: usize = 44;
const NAME_WIDTH: usize = 48;

/// The certificate table of `list` and of `status`'s attention section.
pub fn list_table(items: &[ListItem]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            // Watched ids are paths: keep their file name visible.
            let id = if item.id.starts_with('/') {
                shorten_start(&item.id, ID_WIDTH)
            } else {
                shorten(&item.id, ID_WIDTH)
            };
            vec![
                id,
                kind_word(&item.source).to_owned(),
                item.state.as_str().to_owned(),
                format_date(item.not_after),
                format_left(item.seconds_left),
                shorten(item.identity.as_deref().unwrap_or("-"), IDENTITY_WIDTH),
                shorten(&item.name, NAME_WIDTH),
            ]
        })
        .collect();
    table(
        &["ID", "KIND", "STATE", "EXPIRES", "LEFT", "IDENTITY", "NAME"],
        &rows,
    )
}

/// `list`.
pub fn render_list(items: &[ListItem]) -> String {
    if items.is_empty() {
        return "no certificates found\n".to_owned();
    }
    list_table(items)
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

/// `status`.
pub fn render_status(report: &StatusReport) -> String {
    let mut out = String::new();
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
    let tasks: usize = report.renewals.iter().map(|r| r.open_tasks.len()).sum();
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
        out.push_str(&renewal_table(&report.renewals, report.now));
        for r in report.renewals.iter().filter(|r| r.last_error.is_some()) {
            out.push_str(&format!(
                "  {}: {}\n",
                r.id,
                r.last_error.as_deref().unwrap_or_default()
            ));
        }
    }
    if report.attention.is_empty() && report.problems.is_empty() {
        // A failing renewal or a waiting task is shown above: "nothing" would contradict it.
        let renewals_need_someone =
            tasks > 0 || report.renewals.iter().any(|r| r.last_error.is_some());
        out.push_str(if renewals_need_someone {
            "\nNo certificate file needs attention; the renewals above do.\n"
        } else {
            "\nNothing needs attention.\n"
        });
        return out;
    }
    if !report.attention.is_empty() {
        out.push_str("\nNeeds attention:\n");
        out.push_str(&list_table(&report.attention));
    }
    if !report.problems.is_empty() {
        out.push_str("\nSource problems:\n");
        render_problems(&mut out, &report.problems);
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
    } else if c.expiring > 0 {
        Health::Warning
    } else {
        Health::Ok
    };
    exit_for_health(counted.max(report.health))
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
pub fn renewal_table(renewals: &[Renewal], now: i64) -> String {
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
    table(
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
    )
}

/// `certvakt tasks`.
pub fn render_tasks(tasks: &[Task], now: i64) -> String {
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
    table(
        &[
            "TASK",
            "CERTIFICATE",
            "STEP",
            "OPENED",
            "COMPLETES BY",
            "TITLE",
        ],
        &rows,
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
    use crate::control::protocol::{Counts, ProblemKind};
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
        }
    }

    #[test]
    fn list_table_has_every_column() {
        let long = format!("/etc/ssl/{}server.pem", "deep/".repeat(20));
        let text = render_list(&[
            item("fmk-prod", CertState::Ok, 412 * 86_400),
            item(&long, CertState::Expired, -2 * 86_400),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            format!(
                "{:<40}  KIND     STATE    EXPIRES     LEFT            IDENTITY         NAME",
                "ID"
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "{:<40}  watched  ok       2027-03-01  412d            DK CVR 12345678  apotek.example",
                "fmk-prod"
            )
        );
        // A long path keeps its end, cut to exactly the column width.
        let cut = shorten_start(&long, 40);
        assert_eq!(cut.chars().count(), 40);
        assert!(
            cut.starts_with('…') && cut.ends_with("/deep/server.pem"),
            "{cut}"
        );
        assert_eq!(
            lines[2],
            format!(
                "{cut}  watched  expired  2027-03-01  expired 2d ago  DK CVR 12345678  apotek.example"
            )
        );
        assert_eq!(render_list(&[]), "no certificates found\n");
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
        let text = render_status(&report);
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
        assert!(render_status(&report).ends_with("\nNothing needs attention.\n"));

        report.renewals = vec![Renewal {
            id: "shop".into(),
            plugin: "manual".into(),
            plugin_loaded: true,
            phase: None,
            next_at: None,
            failures: 2,
            last_error: Some("create temp file /srv/x: Read-only file system".into()),
            last_success: None,
            open_tasks: Vec::new(),
            suggested_window: None,
            notes: Vec::new(),
        }];
        let text = render_status(&report);
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
             \x20 sha256:       cc:dd\n\
             \x20 sha1:         aa:bb\n\
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
}
