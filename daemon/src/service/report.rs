//! The reports the control socket answers with: status, list and show, made from the
//! published snapshots (the inventory, the configuration and the renewal engine's view) and
//! converted into the protocol's own types on the way.
//!
//! Two states a run in progress explains are warnings, not critical (see `EXIT_CODES_HELP`):
//! - a managed certificate whose file is missing while a run is in progress for it is a
//!   *first issue under way*, not a source problem;
//! - a managed certificate that is not valid yet while the run that installed it goes on
//!   (last step `installed` or `verified`: the engine installs an issued certificate at once,
//!   and keeps the previous version for rollback until it retires it after the overlap) is
//!   *staged before its not-before*, not counted in `not_yet_valid`.
//!
//! Outside a run both stay critical: nothing explains them.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Problem;
use crate::control::protocol::{
    Counts, FirstIssue, Health, IdentityFields, LIST_PAGE, ListItem, Renewal, RenewalCounts,
    STATUS_CAP, ShowReport, ShownEntry, SourceProblem, StatusReport,
};
use crate::inventory::{self, CertState, Entry, NordicIdentity};
use crate::lifecycle::{CertRenewal, EngineView, Phase};

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
    classify(view, &EngineView::default(), now).counts
}

/// What the inventory shows, read against the runs in progress.
struct Classified<'a> {
    counts: Counts,
    /// Problems that are not a first issue under way.
    problems: Vec<&'a inventory::SourceProblem>,
    first_issues: Vec<FirstIssue>,
    /// Source ids of managed certificates staged before their not-before.
    staged: BTreeSet<String>,
}

fn classify<'a>(view: &'a View, engine: &EngineView, now: i64) -> Classified<'a> {
    let warn = warn_before(&view.config);
    let running: BTreeMap<&str, Phase> = engine
        .certificates
        .iter()
        .filter_map(|c| c.phase.map(|phase| (c.id.as_str(), phase)))
        .collect();
    let mut classified = Classified {
        counts: Counts::default(),
        problems: Vec::new(),
        first_issues: Vec::new(),
        staged: BTreeSet::new(),
    };
    for problem in &view.inventory.problems {
        match running.get(problem.id.as_str()) {
            Some(phase) if problem.is_first_issue(|_| true) => {
                classified.first_issues.push(FirstIssue {
                    id: problem.id.clone(),
                    path: problem.path.clone(),
                    step: (*phase).into(),
                });
            }
            _ => classified.problems.push(problem),
        }
    }
    for entry in &view.inventory.entries {
        let state = entry.cert.state_at(now, warn);
        let c = &mut classified.counts;
        match state {
            CertState::Ok => c.ok += 1,
            CertState::Expiring => c.expiring += 1,
            CertState::Expired => c.expired += 1,
            CertState::NotYetValid if is_staged(entry, &running) => {
                c.staged += 1;
                classified.staged.insert(source_id(&entry.id).to_owned());
            }
            CertState::NotYetValid => c.not_yet_valid += 1,
        }
    }
    classified.counts.problems = classified.problems.len();
    classified.counts.first_issues = classified.first_issues.len();
    classified
}

/// A managed certificate not valid yet, installed by the run still in progress for it.
fn is_staged(entry: &Entry, running: &BTreeMap<&str, Phase>) -> bool {
    let inventory::SourceKind::Managed { id, .. } = entry.source.as_ref() else {
        return false;
    };
    matches!(
        running.get(id.as_str()),
        Some(Phase::Installed | Phase::Verified)
    )
}

/// Health: expired, not yet valid and unreadable are critical; expiring, a failing renewal,
/// a task waiting for a person, a certificate whose plugin is missing, a refused plugin
/// file, a first issue under way or a certificate staged before its not-before are warnings.
pub(super) fn status_report(
    view: &View,
    started_at: i64,
    engine: &EngineView,
    plugins_refused: usize,
    outbox: &crate::notify::OutboxView,
) -> StatusReport {
    let now = crate::now_unix();
    let classified = classify(view, engine, now);
    let counts = classified.counts.clone();
    let renewal_trouble = engine
        .certificates
        .iter()
        .any(|c| c.failures > 0 || !c.open_tasks.is_empty() || !c.plugin_loaded);
    let health = if counts.expired + counts.not_yet_valid + counts.problems > 0 {
        Health::Critical
    } else if counts.expiring + counts.staged + counts.first_issues > 0
        || renewal_trouble
        || plugins_refused > 0
        || !engine.removed.is_empty()
        || !outbox.undeliverable.is_empty()
        || outbox.problem.is_some()
    {
        Health::Warning
    } else {
        Health::Ok
    };
    // Only what needs attention is made into items; `status` lists at most STATUS_CAP.
    let warn = warn_before(&view.config);
    let mut attention: Vec<ListItem> = view
        .inventory
        .entries
        .iter()
        .filter(|entry| entry.cert.state_at(now, warn) != CertState::Ok)
        .map(|entry| {
            let mut item = list_item(entry, now, warn);
            if let crate::control::protocol::SourceKind::Managed { id, .. } = &item.source {
                item.staged = item.state == CertState::NotYetValid.into()
                    && classified.staged.contains(id.as_str());
            }
            item
        })
        .collect();
    attention.sort_by_key(|item| item.not_after);
    let attention_more = attention.len().saturating_sub(STATUS_CAP);
    attention.truncate(STATUS_CAP);
    let problems_more = classified.problems.len().saturating_sub(STATUS_CAP);
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
        problems: classified
            .problems
            .iter()
            .take(STATUS_CAP)
            .map(|p| SourceProblem::from(*p))
            .collect(),
        attention_more,
        problems_more,
        renewals: renewals_worth_seeing(&engine.certificates)
            .map(Renewal::from)
            .collect(),
        renewals_more: engine.certificates.len().saturating_sub(STATUS_CAP),
        renewal_counts: renewal_counts(&engine.certificates),
        plugins_refused,
        notifications: notifications(outbox),
        removed: engine
            .removed
            .iter()
            .map(crate::control::protocol::RemovedCertificate::from)
            .collect(),
        first_issues: classified.first_issues,
    }
}

/// The renewals `status` lists: all of them up to [`STATUS_CAP`]; past that, those that need
/// a person first (a failure, a task, a missing plugin), then those with a run in progress,
/// then the soonest next step. In configuration order either way.
fn renewals_worth_seeing(all: &[CertRenewal]) -> impl Iterator<Item = &CertRenewal> {
    let mut keep = vec![all.len() <= STATUS_CAP; all.len()];
    if all.len() > STATUS_CAP {
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.sort_by_key(|&i| {
            let r = &all[i];
            let class = match (needs_someone(r), r.phase.is_some()) {
                (true, _) => 0,
                (false, true) => 1,
                (false, false) => 2,
            };
            (class, r.next_at.unwrap_or(i64::MAX), i)
        });
        for &i in order.iter().take(STATUS_CAP) {
            keep[i] = true;
        }
    }
    all.iter().zip(keep).filter(|(_, k)| *k).map(|(r, _)| r)
}

/// A failure, a task waiting, or no plugin to renew it.
fn needs_someone(r: &CertRenewal) -> bool {
    r.failures > 0 || !r.open_tasks.is_empty() || !r.plugin_loaded
}

fn renewal_counts(all: &[CertRenewal]) -> RenewalCounts {
    RenewalCounts {
        renewals: all.len(),
        in_progress: all.iter().filter(|r| r.phase.is_some()).count(),
        failing: all.iter().filter(|r| r.failures > 0).count(),
        tasks: all.iter().map(|r| r.open_tasks.len()).sum(),
        plugin_not_loaded: all.iter().filter(|r| !r.plugin_loaded).count(),
        need_someone: all.iter().filter(|r| needs_someone(r)).count(),
    }
}

/// One page of `renewals`: from `offset`, at most `limit` (and [`LIST_PAGE`]) renewals.
pub(super) fn renewals_page(
    engine: &EngineView,
    offset: usize,
    limit: Option<usize>,
) -> crate::control::protocol::Response {
    let limit = limit.unwrap_or(LIST_PAGE).min(LIST_PAGE);
    crate::control::protocol::Response::Renewals {
        items: engine
            .certificates
            .iter()
            .skip(offset)
            .take(limit)
            .map(Renewal::from)
            .collect(),
        total: engine.certificates.len(),
    }
}

/// One page of `list`: from `offset`, at most `limit` (and [`LIST_PAGE`]) items.
pub(super) fn list_page(
    view: &View,
    now: i64,
    offset: usize,
    limit: Option<usize>,
) -> crate::control::protocol::Response {
    let warn = warn_before(&view.config);
    let entries = &view.inventory.entries;
    let limit = limit.unwrap_or(LIST_PAGE).min(LIST_PAGE);
    crate::control::protocol::Response::List {
        items: entries
            .iter()
            .skip(offset)
            .take(limit)
            .map(|entry| list_item(entry, now, warn))
            .collect(),
        total: entries.len(),
        scanned_at: view.inventory.scanned_at,
    }
}

fn list_item(entry: &Entry, now: i64, warn: u64) -> ListItem {
    ListItem {
        id: entry.id.clone(),
        source: entry.source.as_ref().into(),
        path: entry.path.clone(),
        name: display_name(&entry.cert.subject),
        identity: entry.cert.identities.first().map(NordicIdentity::label),
        not_after: entry.cert.not_after,
        seconds_left: entry.cert.not_after - now,
        state: entry.cert.state_at(now, warn).into(),
        identity_fields: entry.cert.identities.first().map(|identity| {
            IdentityFields::from(&crate::control::protocol::NordicIdentity::from(identity))
        }),
        staged: false,
    }
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
    use std::sync::Arc;

    fn renewal(id: &str, phase: Option<Phase>) -> crate::lifecycle::CertRenewal {
        crate::lifecycle::CertRenewal {
            id: id.into(),
            plugin: "manual".into(),
            plugin_loaded: true,
            phase,
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

    fn missing(id: &str, managed: bool) -> inventory::SourceProblem {
        let source = if managed {
            inventory::SourceKind::Managed {
                id: id.into(),
                plugin: "manual".into(),
                key: None,
            }
        } else {
            inventory::SourceKind::Watched { pattern: id.into() }
        };
        inventory::SourceProblem {
            id: id.into(),
            source,
            path: format!("/etc/certvakt/certs/{id}.pem"),
            kind: inventory::ProblemKind::Missing,
            message: "does not exist".into(),
        }
    }

    /// A view with the example managed certificate `fmk-prod`, valid from `not_before`, and
    /// the problems given.
    fn view(not_before: i64, problems: Vec<inventory::SourceProblem>) -> View {
        let mut entry = crate::inventory::example_entry();
        let mut cert = (*entry.cert).clone();
        cert.not_before = not_before;
        entry.cert = Arc::new(cert);
        View {
            config: Arc::new(crate::config::Config::defaults()),
            inventory: Arc::new(inventory::Inventory {
                entries: vec![entry],
                problems,
                ..inventory::Inventory::default()
            }),
            config_loaded_at: 0,
            last_reload_error: None,
            metrics_listen: None,
        }
    }

    #[test]
    fn list_answers_a_page_at_most() {
        let example = crate::inventory::example_entry();
        let n = LIST_PAGE + 5;
        let mut view = view(0, Vec::new());
        view.inventory = Arc::new(inventory::Inventory {
            entries: (0..n)
                .map(|i| {
                    let mut entry = example.clone();
                    entry.id = format!("/srv/certs/{i}.pem");
                    entry
                })
                .collect(),
            scanned_at: 77,
            ..inventory::Inventory::default()
        });
        let page = |offset, limit| match list_page(&view, 0, offset, limit) {
            crate::control::protocol::Response::List {
                items,
                total,
                scanned_at,
            } => (
                items.first().map(|i| i.id.clone()),
                items.len(),
                total,
                scanned_at,
            ),
            other => panic!("{other:?}"),
        };
        // No limit, or a larger one, is still one page.
        assert_eq!(
            page(0, None),
            (Some("/srv/certs/0.pem".into()), LIST_PAGE, n, 77)
        );
        assert_eq!(page(0, Some(n)).1, LIST_PAGE);
        assert_eq!(page(0, Some(3)).1, 3);
        assert_eq!(
            page(LIST_PAGE, None),
            (Some(format!("/srv/certs/{LIST_PAGE}.pem")), 5, n, 77)
        );
        assert_eq!(page(n + 10, None), (None, 0, n, 77));
    }

    #[test]
    fn status_stays_small_whatever_the_inventory() {
        // 2 × STATUS_CAP + 7 expired watched certificates and as many missing files.
        let n = 2 * STATUS_CAP + 7;
        let example = crate::inventory::example_entry();
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let mut entry = example.clone();
                entry.id = format!("/srv/certs/{i}.pem");
                entry.source = Arc::new(inventory::SourceKind::Watched {
                    pattern: "/srv/certs/*.pem".into(),
                });
                let mut cert = (*entry.cert).clone();
                // Expired, the later ones longer ago: the soonest expiry comes first.
                cert.not_after = 1_000_000 - i as i64;
                entry.cert = Arc::new(cert);
                entry
            })
            .collect();
        let problems = (0..n).map(|i| missing(&format!("w{i}"), false)).collect();
        let mut view = view(0, problems);
        view.inventory = Arc::new(inventory::Inventory {
            entries,
            problems: view.inventory.problems.clone(),
            ..inventory::Inventory::default()
        });
        let engine = EngineView {
            certificates: Vec::new(),
            removed: Vec::new(),
        };
        let report = status_report(&view, 0, &engine, 0, &crate::notify::OutboxView::default());
        assert_eq!((report.counts.expired, report.counts.problems), (n, n));
        assert_eq!(report.attention.len(), STATUS_CAP);
        assert_eq!(report.attention_more, n - STATUS_CAP);
        assert_eq!(report.problems.len(), STATUS_CAP);
        assert_eq!(report.problems_more, n - STATUS_CAP);
        // The ones kept are the soonest expiry, in order.
        assert_eq!(report.attention[0].not_after, 1_000_000 - (n as i64 - 1));
        assert!(
            report
                .attention
                .windows(2)
                .all(|w| w[0].not_after <= w[1].not_after)
        );
        let text = crate::cli::render::render_status(&report, None);
        assert!(
            text.contains(&format!(
                "… and {} more: `certvakt list --expiring",
                n - STATUS_CAP
            )),
            "{text}"
        );
    }

    /// `status` over an inventory of one certificate and these renewals, and the engine's view.
    fn status_of_renewals(certificates: Vec<CertRenewal>) -> (StatusReport, EngineView) {
        let engine = EngineView {
            certificates,
            removed: Vec::new(),
        };
        let report = status_report(
            &view(0, Vec::new()),
            0,
            &engine,
            0,
            &crate::notify::OutboxView::default(),
        );
        (report, engine)
    }

    #[test]
    fn status_lists_at_most_status_cap_renewals_those_needing_a_person_first() {
        // 2 × STATUS_CAP + 7 idle renewals, the later ones due sooner; near the end, one
        // failing, one with a task, one without its plugin, one with a run in progress.
        let n = 2 * STATUS_CAP + 7;
        let mut certificates: Vec<CertRenewal> = (0..n)
            .map(|i| {
                let mut r = renewal(&format!("c{i:03}"), None);
                r.next_at = Some(2_000_000_000 - i as i64);
                r
            })
            .collect();
        certificates[n - 9].failures = 2;
        certificates[n - 9].last_error = Some("the CA said no".into());
        certificates[n - 8].open_tasks = vec![crate::lifecycle::Task {
            id: "t1".into(),
            cert_id: certificates[n - 8].id.clone(),
            phase: Phase::Ordered,
            title: "order".into(),
            instructions: String::new(),
            files: Vec::new(),
            completes_by: certvakt_plugin_api::Completion::Import,
            opened_at: 0,
            closed_at: None,
        }];
        certificates[n - 7].plugin_loaded = false;
        certificates[3].phase = Some(Phase::Ordered);
        let (report, engine) = status_of_renewals(certificates);
        assert_eq!(report.renewals.len(), STATUS_CAP);
        assert_eq!(report.renewals_more, n - STATUS_CAP);
        assert_eq!(
            report.renewal_counts,
            RenewalCounts {
                renewals: n,
                in_progress: 1,
                failing: 1,
                tasks: 1,
                plugin_not_loaded: 1,
                need_someone: 3,
            }
        );
        let ids: Vec<&str> = report.renewals.iter().map(|r| r.id.as_str()).collect();
        // The three that need a person, then the run in progress, then the soonest next
        // steps (the last ones) — in configuration order.
        for wanted in [n - 9, n - 8, n - 7, 3] {
            assert!(
                ids.contains(&format!("c{wanted:03}").as_str()),
                "{wanted}: {ids:?}"
            );
        }
        assert!(!ids.contains(&"c000"), "the latest next step is left out");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "configuration order: {ids:?}"
        );

        let text = crate::cli::render::render_status(&report, None);
        assert!(
            text.contains(&format!(
                "… and {} more, none needing a person: `certvakt renewals` lists every one",
                n - STATUS_CAP
            )),
            "{text}"
        );
        assert!(
            text.starts_with("WARNING: 1 failing renewal(s) (c198); 1 task(s) waiting (c199); 1 without their plugin (c200)"),
            "{text}"
        );

        // `renewals` pages through every one, in configuration order.
        let page = |offset, limit| match renewals_page(&engine, offset, limit) {
            crate::control::protocol::Response::Renewals { items, total } => {
                (items.first().map(|r| r.id.clone()), items.len(), total)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(page(0, None), (Some("c000".into()), n, n));
        assert_eq!(page(5, Some(2)), (Some("c005".into()), 2, n));
        assert_eq!(page(n, None), (None, 0, n));
    }

    #[test]
    fn with_few_renewals_status_lists_every_one() {
        let (report, _) = status_of_renewals(
            (0..STATUS_CAP)
                .map(|i| renewal(&format!("c{i:03}"), None))
                .collect(),
        );
        assert_eq!(report.renewals.len(), STATUS_CAP);
        assert_eq!(report.renewals_more, 0);
        let text = crate::cli::render::render_status(&report, None);
        assert!(!text.contains("more,"), "{text}");
    }

    #[test]
    fn a_missing_managed_file_with_a_run_in_progress_is_a_first_issue() {
        let now = 1_780_000_000;
        let view = view(
            now - 86_400,
            vec![
                missing("shop", true),
                missing("lab", true),
                missing("/srv/x.pem", false),
            ],
        );
        let engine = EngineView {
            certificates: vec![
                renewal("shop", Some(Phase::Ordered)),
                renewal("lab", None),
                renewal("/srv/x.pem", Some(Phase::Ordered)),
            ],
            removed: Vec::new(),
        };
        let classified = classify(&view, &engine, now);
        assert_eq!(
            classified.first_issues,
            [FirstIssue {
                id: "shop".into(),
                path: "/etc/certvakt/certs/shop.pem".into(),
                step: Phase::Ordered.into(),
            }]
        );
        // No run for lab: its missing file is a problem; a watched file is never a first issue.
        let ids: Vec<&str> = classified.problems.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["lab", "/srv/x.pem"]);
        assert_eq!(
            (classified.counts.problems, classified.counts.first_issues),
            (2, 1)
        );
    }

    #[test]
    fn a_certificate_not_yet_valid_is_staged_only_while_the_run_that_installed_it_goes_on() {
        let now = 1_780_000_000;
        let view = view(now + 3_600, Vec::new());
        for (phase, staged) in [
            (Some(Phase::Installed), true),
            (Some(Phase::Verified), true),
            (Some(Phase::Registered), false),
            (None, false),
        ] {
            let engine = EngineView {
                certificates: vec![renewal("fmk-prod", phase)],
                removed: Vec::new(),
            };
            let c = classify(&view, &engine, now);
            assert_eq!(
                (c.counts.staged, c.counts.not_yet_valid),
                if staged { (1, 0) } else { (0, 1) },
                "{phase:?}"
            );
            assert_eq!(c.staged.contains("fmk-prod"), staged, "{phase:?}");
        }
    }

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
