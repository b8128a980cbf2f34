//! The control protocol, pinned: the JSON of every [`Response`] variant (and of the requests
//! and hellos) in `src/control/golden/`, one file per variant, recorded for the
//! [`PROTOCOL_VERSION`] written in `golden/protocol_version`.
//!
//! The CLI's `--json` prints these responses as they are, so they are a documented interface:
//! a response that serialises differently fails here and says to bump [`PROTOCOL_VERSION`].
//! `UPDATE_GOLDEN=1` rewrites the files only together with a bump (the recorded version must
//! be older than [`PROTOCOL_VERSION`]), so regenerating without one fails too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::*;
use crate::inventory::{self, KeyCheck, example_entry};
use crate::lifecycle::{self, CertRenewal, Phase};
use certvakt_plugin_api::Completion;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const BUMP: &str = "bump PROTOCOL_VERSION in daemon/src/control/protocol.rs (a certvakt CLI and \
     a certvaktd of different protocol versions refuse each other with a clear message) and \
     record the new form with UPDATE_GOLDEN=1 cargo test -p certvakt --lib control::golden";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/control/golden")
}

// ---------------------------------------------------------------------------------------------
// The samples: every variant, with its optional parts both present and absent where that
// changes the form. They are made of the daemon's own types and converted, as the daemon
// does: the files were first written from those types before the protocol had its own, so
// they also show that the conversion changed no byte.

fn managed() -> inventory::SourceKind {
    inventory::SourceKind::Managed {
        id: "fmk-prod".into(),
        plugin: "dk-fmk".into(),
        key: Some("/etc/certvakt/certs/fmk.key".into()),
    }
}

fn watched() -> inventory::SourceKind {
    inventory::SourceKind::Watched {
        pattern: "/etc/ssl/*.pem".into(),
    }
}

fn list_item(
    id: &str,
    source: inventory::SourceKind,
    state: inventory::CertState,
    seconds_left: i64,
) -> ListItem {
    ListItem {
        id: id.into(),
        source: (&source).into(),
        path: PathBuf::from("/etc/certvakt/certs/fmk.pem"),
        name: "Apotek system".into(),
        identity: Some("DK CVR 25450442".into()),
        not_after: 1_803_859_200,
        seconds_left,
        state: state.into(),
        identity_fields: Some(IdentityFields::from(&NordicIdentity::DkOces3 {
            cvr: "25450442".into(),
            uuid: None,
        })),
        staged: false,
    }
}

fn problems() -> Vec<SourceProblem> {
    inventory::ProblemKind::ALL
        .iter()
        .enumerate()
        .map(|(i, kind)| inventory::SourceProblem {
            id: if i % 2 == 0 {
                "fmk-prod".into()
            } else {
                "/etc/ssl/*.pem".into()
            },
            source: if i % 2 == 0 { managed() } else { watched() },
            path: "/etc/certvakt/certs/fmk.pem".into(),
            kind: *kind,
            message: format!("{} (what to do)", kind.as_str()),
        })
        .map(|problem| SourceProblem::from(&problem))
        .collect()
}

fn task(
    n: usize,
    phase: Phase,
    completes_by: Completion,
    closed_at: Option<i64>,
) -> lifecycle::Task {
    lifecycle::Task {
        id: format!("fmk-prod-3-{n}"),
        cert_id: "fmk-prod".into(),
        phase,
        title: "Order the renewed FOCES certificate in MitID Erhverv".into(),
        instructions: "1. Sign in.\n2. Upload request.csr.\n".into(),
        files: vec![PathBuf::from(
            "/var/lib/certvakt/certs/fmk-prod/outbox/request.csr",
        )],
        completes_by,
        opened_at: 1_800_000_000,
        closed_at,
    }
}

fn tasks() -> Vec<lifecycle::Task> {
    vec![
        task(1, Phase::Ordered, Completion::Import, None),
        task(2, Phase::Registered, Completion::Confirm, None),
        task(3, Phase::Retired, Completion::Poll, Some(1_800_000_600)),
    ]
}

fn renewals() -> Vec<Renewal> {
    let busy = CertRenewal {
        id: "fmk-prod".into(),
        plugin: "dk-fmk".into(),
        plugin_loaded: true,
        phase: Some(Phase::Ordered),
        next_at: Some(1_800_003_600),
        failures: 2,
        last_error: Some("plugin dk-fmk issue: temporary: FMK did not answer".into()),
        last_success: Some(1_770_000_000),
        open_tasks: tasks(),
        suggested_window: Some((1_800_000_000, 1_800_086_400)),
        notes: vec!["the new certificate has a new UUID".into()],
        next_key: None,
    };
    let idle = CertRenewal {
        id: "shop".into(),
        plugin: "acme".into(),
        plugin_loaded: false,
        phase: None,
        next_at: None,
        failures: 0,
        last_error: None,
        last_success: None,
        open_tasks: Vec::new(),
        suggested_window: None,
        notes: Vec::new(),
        next_key: None,
    };
    // Every step a run can be at.
    let at_every_step: Vec<CertRenewal> = Phase::ALL
        .iter()
        .map(|phase| CertRenewal {
            id: format!("at-{}", phase.as_str()),
            phase: Some(*phase),
            ..idle.clone()
        })
        .collect();
    [vec![busy, idle], at_every_step]
        .concat()
        .iter()
        .map(Renewal::from)
        .collect()
}

fn status() -> StatusReport {
    StatusReport {
        version: "0.1.0".into(),
        pid: 4242,
        started_at: 1_800_000_000,
        now: 1_800_000_060,
        config_files: vec![
            PathBuf::from("/etc/certvakt/certvakt.toml"),
            PathBuf::from("/etc/certvakt/conf.d/10-fmk.toml"),
        ],
        config_loaded_at: 1_800_000_000,
        last_reload_error: Some("the new configuration has 1 problem(s)".into()),
        scanned_at: 1_800_000_030,
        socket: PathBuf::from("/run/certvakt/control.sock"),
        metrics_listen: Some("127.0.0.1:9617".into()),
        warn_before_secs: 2_592_000,
        health: Health::Critical,
        counts: Counts {
            ok: 5,
            expiring: 1,
            expired: 1,
            not_yet_valid: 1,
            problems: 11,
            first_issues: 1,
            staged: 1,
        },
        attention: vec![
            list_item(
                "fmk-prod",
                managed(),
                inventory::CertState::Expiring,
                86_400,
            ),
            list_item(
                "/etc/ssl/old.pem",
                watched(),
                inventory::CertState::Expired,
                -3_600,
            ),
            list_item(
                "/etc/ssl/new.pem",
                watched(),
                inventory::CertState::NotYetValid,
                9_000_000,
            ),
            ListItem {
                staged: true,
                identity_fields: Some(IdentityFields::from(&NordicIdentity::DkOces3 {
                    cvr: "25450442".into(),
                    uuid: Some("0b6a1c8e-4a4e-4b8e-9d2c-2f4f3a1d5e60".into()),
                })),
                ..list_item(
                    "nemlogin",
                    managed(),
                    inventory::CertState::NotYetValid,
                    31_000_000,
                )
            },
        ],
        problems: problems(),
        renewals: renewals(),
        plugins_refused: 1,
        notifications: Notifications {
            routes: 2,
            pending: 1,
            oldest_pending_at: Some(1_795_999_000),
            undeliverable: vec![UndeliveredNotification {
                route: "tickets".into(),
                event: "task_opened".into(),
                subject: "[certvakt] Action needed: fmk-prod — Forny certifikatet".into(),
                queued_at: 1_795_000_000,
                attempts: 14,
                last_error: Some("HTTP 404 from tickets.example".into()),
            }],
            last_sent_at: Some(1_795_999_500),
            problem: None,
        },
        removed: vec![RemovedCertificate {
            id: "old-shop".into(),
            step: Some(Phase::Ordered.into()),
            pending_keys: 1,
            open_tasks: vec!["old-shop-2-1".into()],
        }],
        first_issues: vec![FirstIssue {
            id: "shop".into(),
            path: "/etc/certvakt/certs/shop.pem".into(),
            step: Phase::Ordered.into(),
        }],
        attention_more: 250,
        problems_more: 3,
        renewals_more: 140,
        renewal_counts: RenewalCounts {
            renewals: 142,
            in_progress: 1,
            failing: 1,
            tasks: 1,
            plugin_not_loaded: 0,
            need_someone: 1,
        },
    }
}

fn quiet_status() -> StatusReport {
    StatusReport {
        last_reload_error: None,
        metrics_listen: None,
        health: Health::Ok,
        counts: Counts::default(),
        attention: Vec::new(),
        problems: Vec::new(),
        renewals: Vec::new(),
        plugins_refused: 0,
        notifications: Notifications::default(),
        removed: Vec::new(),
        first_issues: Vec::new(),
        attention_more: 0,
        problems_more: 0,
        renewals_more: 0,
        renewal_counts: RenewalCounts::default(),
        ..status()
    }
}

fn show() -> ShowReport {
    let leaf = example_entry();
    let mut leaf_cert = (*leaf.cert).clone();
    leaf_cert.sans = vec!["DNS:apotek.example".into(), "IP:192.0.2.7".into()];
    leaf_cert.identities = vec![
        inventory::NordicIdentity::DkOces3 {
            cvr: "25450442".into(),
            uuid: Some("8d3fa047-1f1c-4a5e-9c3b-2b8a4c6d7e8f".into()),
        },
        inventory::NordicIdentity::DkOces2 {
            cvr: "25450442".into(),
            fid: Some("1234".into()),
            uid: None,
            rid: None,
        },
        inventory::NordicIdentity::SeHsaId {
            hsa_id: "SE2321000016-39KJ".into(),
        },
        inventory::NordicIdentity::NoOrgNumber {
            orgnr: "983544622".into(),
            seid: 2,
        },
        inventory::NordicIdentity::FiOrganisation {
            business_id: Some("1234567-1".into()),
            identifier: "NTRFI-1234567-1".into(),
        },
    ];
    let mut ca_cert = (*leaf.cert).clone();
    ca_cert.key.algorithm = "EC".into();
    ca_cert.key.bits = 256;
    ca_cert.key.curve = Some("P-256".into());
    ca_cert.is_ca = true;
    ca_cert.self_signed = true;
    let entry = |index: usize, key_check: KeyCheck, cert: &crate::inventory::CertInfo| {
        let mut entry = leaf.clone();
        entry.id = if index == 0 {
            "fmk-prod".into()
        } else {
            format!("fmk-prod#{index}")
        };
        entry.index = index;
        entry.key_check = key_check;
        entry.cert = std::sync::Arc::new(cert.clone());
        entry
    };
    ShowReport {
        id: "fmk-prod".into(),
        entries: vec![
            ShownEntry::new(
                &entry(0, KeyCheck::Matches, &leaf_cert),
                CertState::Ok,
                35_000_000,
            ),
            ShownEntry::new(
                &entry(1, KeyCheck::NotConfigured, &ca_cert),
                CertState::Expiring,
                86_400,
            ),
            ShownEntry::new(
                &entry(2, KeyCheck::Mismatch, &ca_cert),
                CertState::Expired,
                -60,
            ),
            ShownEntry::new(
                &entry(3, KeyCheck::Unreadable, &ca_cert),
                CertState::NotYetValid,
                90_000_000,
            ),
        ],
        problems: problems().into_iter().take(1).collect(),
        renewal: renewals().into_iter().next(),
    }
}

fn watched_show() -> ShowReport {
    let mut entry = example_entry();
    entry.id = "/etc/ssl/old.pem".into();
    entry.source = std::sync::Arc::new(watched());
    entry.key_check = KeyCheck::NotConfigured;
    ShowReport {
        id: "/etc/ssl/old.pem".into(),
        entries: vec![ShownEntry::new(&entry, CertState::Expired, -3_600)],
        problems: Vec::new(),
        renewal: None,
    }
}

fn plugins() -> PluginsReport {
    PluginsReport {
        plugin_dir: PathBuf::from("/usr/lib/certvakt/plugins"),
        loaded: vec![PluginInfo {
            name: "dk-fmk".into(),
            version: "0.1.0".into(),
            api_version: "1.0.0".into(),
            file: PathBuf::from("/usr/lib/certvakt/plugins/libcertvakt_plugin_dk_fmk.so"),
            certificates: vec!["fmk-prod".into()],
        }],
        refused: vec![RefusedPlugin {
            file: PathBuf::from("/usr/lib/certvakt/plugins/old.so"),
            reason: "was built for plugin ABI version 2".into(),
        }],
    }
}

fn message(text: &str) -> String {
    text.to_owned()
}

/// Every response variant's samples, by the variant's name (its `response` tag).
fn responses() -> Vec<(&'static str, Vec<Response>)> {
    vec![
        (
            "status",
            vec![
                Response::Status(Box::new(status())),
                Response::Status(Box::new(quiet_status())),
            ],
        ),
        (
            "renewals",
            vec![
                Response::Renewals {
                    items: renewals(),
                    total: 2,
                },
                Response::Renewals {
                    items: Vec::new(),
                    total: 0,
                },
            ],
        ),
        (
            "list",
            vec![
                Response::List {
                    items: vec![
                        list_item("fmk-prod", managed(), inventory::CertState::Ok, 35_000_000),
                        list_item(
                            "/etc/ssl/old.pem",
                            watched(),
                            inventory::CertState::Expired,
                            -3_600,
                        ),
                    ],
                    total: 4_102,
                    scanned_at: 1_800_000_030,
                },
                Response::List {
                    items: Vec::new(),
                    total: 0,
                    scanned_at: 0,
                },
            ],
        ),
        (
            "show",
            vec![Response::Show(show()), Response::Show(watched_show())],
        ),
        (
            "reload",
            vec![Response::Reload(ReloadReport {
                summary: "2 file(s) read; 3 managed certificate(s)".into(),
                certificates: 12,
                problems: 1,
            })],
        ),
        (
            "renew",
            vec![Response::Renew {
                message: message("renewal of fmk-prod started"),
            }],
        ),
        (
            "rollback",
            vec![Response::Rollback {
                message: message("fmk-prod is back at version 3"),
            }],
        ),
        (
            "tasks",
            vec![
                Response::Tasks {
                    tasks: tasks().iter().map(Task::from).collect(),
                },
                Response::Tasks { tasks: Vec::new() },
            ],
        ),
        (
            "task_show",
            vec![Response::TaskShow {
                task: (&tasks()[0]).into(),
            }],
        ),
        (
            "task_done",
            vec![Response::TaskDone {
                message: message("task fmk-prod-3-2 is done"),
            }],
        ),
        (
            "import",
            vec![Response::Import {
                message: message("fmk-prod: the certificate is accepted"),
            }],
        ),
        ("plugins", vec![Response::Plugins(plugins())]),
        (
            "notify_test",
            vec![Response::NotifyTest {
                results: vec![
                    NotifyTestResult {
                        route: "it-desk".into(),
                        channel: "mail".into(),
                        ok: true,
                        detail: "250 2.0.0 Ok: queued as 4F2A".into(),
                    },
                    NotifyTestResult {
                        route: "tickets".into(),
                        channel: "webhook".into(),
                        ok: false,
                        detail: "https://tickets.example/hooks answered HTTP 401".into(),
                    },
                ],
            }],
        ),
        ("notify_retry", vec![Response::NotifyRetry { queued: 1 }]),
        (
            "history",
            vec![
                history(),
                Response::History {
                    id: "shop".into(),
                    entries: Vec::new(),
                },
            ],
        ),
        ("renew_dry_run", vec![Response::RenewDryRun(dry_run())]),
        (
            "cancel",
            vec![Response::Cancel {
                message: message("renewal of fmk-prod (run 3) cancelled after step ordered"),
            }],
        ),
        (
            "forget",
            vec![Response::Forget {
                message: message(
                    "forgot old-shop: its renewal state and 1 pending key(s) are removed",
                ),
            }],
        ),
        (
            "error",
            [
                ErrorCode::BadRequest,
                ErrorCode::Forbidden,
                ErrorCode::NotFound,
                ErrorCode::InvalidConfig,
                ErrorCode::Internal,
                ErrorCode::Refused,
            ]
            .into_iter()
            .map(|code| Response::Error {
                code,
                message: format!("{code:?} happened"),
            })
            .collect(),
        ),
    ]
}

fn requests() -> Vec<Request> {
    vec![
        Request::Status,
        Request::List {
            offset: 0,
            limit: None,
        },
        Request::List {
            offset: 2_000,
            limit: Some(2_000),
        },
        Request::Renewals {
            offset: 0,
            limit: None,
        },
        Request::Renewals {
            offset: 2_000,
            limit: Some(2_000),
        },
        Request::Show {
            id: "fmk-prod".into(),
        },
        Request::Reload,
        Request::Renew {
            id: "fmk-prod".into(),
            force: true,
        },
        Request::Rollback {
            id: "fmk-prod".into(),
        },
        Request::Tasks,
        Request::TaskShow {
            id: "fmk-prod-3-1".into(),
        },
        Request::TaskDone {
            id: "fmk-prod-3-1".into(),
        },
        Request::Import {
            more: Vec::new(),
            id: "fmk-prod".into(),
            data: "MIIB".into(),
            password: Some("secret".into()),
        },
        Request::Import {
            more: Vec::new(),
            id: "fmk-prod".into(),
            data: "MIIB".into(),
            password: None,
        },
        Request::Import {
            id: "virksomhet".into(),
            data: "MIIB".into(),
            password: Some("secret".into()),
            more: vec!["MIIC".into()],
        },
        Request::Plugins,
        Request::NotifyTest { route: None },
        Request::NotifyTest {
            route: Some("it-desk".into()),
        },
        Request::NotifyRetry,
        Request::History {
            id: "fmk-prod".into(),
            limit: Some(5),
        },
        Request::History {
            id: "fmk-prod".into(),
            limit: None,
        },
        Request::RenewDryRun {
            id: "fmk-prod".into(),
        },
        Request::Cancel {
            id: "fmk-prod".into(),
        },
        Request::Forget {
            id: "old-shop".into(),
        },
    ]
}

/// `history`: every outcome, from the daemon's own entries (an old line without outcome and
/// plugin included).
fn history() -> Response {
    use lifecycle::{HistoryEntry as E, Outcome as O, Reason};
    let completed = E {
        run: Some(3),
        outcome: O::Completed,
        reason: Some(Reason::Scheduled),
        started_at: Some(1_800_000_000),
        finished_at: 1_800_086_400,
        plugin: Some("dk-fmk".into()),
        phase: Some(Phase::Retired),
        old_serial: Some("0a1b".into()),
        new_serial: Some("0c2d".into()),
        version: Some(crate::store::VersionId(4)),
        notes: vec!["the new certificate has a new UUID".into()],
        error: None,
        tasks: Vec::new(),
    };
    let cancelled = E {
        run: Some(4),
        outcome: O::Cancelled,
        reason: Some(Reason::Requested),
        phase: Some(Phase::Ordered),
        new_serial: None,
        version: None,
        notes: Vec::new(),
        error: Some("plugin dk-fmk issue: temporary: FMK did not answer".into()),
        tasks: vec!["fmk-prod-4-1".into()],
        ..completed.clone()
    };
    let rolled_back = E {
        run: None,
        outcome: O::RolledBack,
        reason: None,
        started_at: None,
        phase: None,
        old_serial: None,
        new_serial: None,
        version: Some(crate::store::VersionId(3)),
        notes: Vec::new(),
        error: None,
        tasks: Vec::new(),
        ..completed.clone()
    };
    let forgotten = E {
        outcome: O::Forgotten,
        plugin: None,
        ..cancelled.clone()
    };
    let old: E = serde_json::from_value(serde_json::json!({"run": 1, "reason": "first_issue",
        "started_at": 1_700_000_000, "finished_at": 1_700_000_100, "old_serial": null,
        "new_serial": "01", "version": 1, "notes": []}))
    .expect("an entry from before outcomes were recorded");
    Response::History {
        id: "fmk-prod".into(),
        entries: [forgotten, rolled_back, cancelled, completed, old]
            .iter()
            .map(HistoryEntry::from)
            .collect(),
    }
}

fn dry_run() -> DryRunReport {
    (&lifecycle::DryRun {
        id: "fmk-prod".into(),
        plugin: "dk-fmk".into(),
        plugin_summary: "FMK via MitID Erhverv: the operator orders, certvakt registers".into(),
        due: false,
        due_at: Some(1_800_000_000),
        why: "not due until 2027-01-15 10:00 (`renew --force` starts one now)".into(),
        run_phase: None,
        steps: vec![
            lifecycle::DryStep {
                step: "key_generated".into(),
                what: "make the key and the CSR".into(),
            },
            lifecycle::DryStep {
                step: "ordered".into(),
                what: "ask the dk-fmk plugin to issue".into(),
            },
        ],
        key: "a new rsa-3072 key".into(),
        subject: vec!["CN=Apotek system".into(), "O=Apotek A/S".into()],
        sans: vec!["DNS:apotek.example".into()],
        hooks: vec!["deploy_hook: /usr/bin/systemctl reload nginx".into()],
        tasks: "the plugin decides at the issue step whether a person must act".into(),
    })
        .into()
}

/// The hellos both ways, and a refusal.
fn hellos() -> (Vec<Hello>, Vec<HelloReply>) {
    let hello = Hello {
        hello: HelloBody {
            protocol: 1,
            version: "0.1.0".into(),
            program: "certvakt".into(),
        },
    };
    let admitted = HelloReply {
        hello: HelloReplyBody {
            protocol: 1,
            version: "0.1.0".into(),
            access: Access::Admin,
            error: None,
        },
    };
    let read = HelloReply {
        hello: HelloReplyBody {
            access: Access::Read,
            ..admitted.hello.clone()
        },
    };
    let refused = HelloReply {
        hello: HelloReplyBody {
            access: Access::None,
            error: Some("not allowed: join group certvakt".into()),
            ..admitted.hello.clone()
        },
    };
    (vec![hello], vec![admitted, read, refused])
}

/// `check-config --json`: a valid configuration and one with problems.
fn check_config() -> Vec<CheckConfigReport> {
    let problem = crate::config::Problem {
        file: PathBuf::from("/etc/certvakt/certvakt.toml"),
        line: Some(7),
        key: "control.read_grop".into(),
        message: "unknown key \"read_grop\" in [control]".into(),
        hint: "did you mean \"read_group\"?".into(),
    };
    let whole = crate::config::Problem {
        line: None,
        key: String::new(),
        ..problem.clone()
    };
    vec![
        CheckConfigReport {
            ok: true,
            problems: Vec::new(),
            summary: Some("1 file(s) read; 3 managed certificate(s)".into()),
        },
        CheckConfigReport {
            ok: false,
            problems: [problem, whole].iter().map(ConfigProblem::from).collect(),
            summary: None,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Comparing and recording.

/// The text of a golden file: the samples as a pretty JSON array.
fn render<T: Serialize>(samples: &[T]) -> Result<String> {
    Ok(serde_json::to_string_pretty(samples)? + "\n")
}

/// Every golden file: name and text.
fn files() -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for (name, samples) in responses() {
        files.push((format!("{name}.json"), render(&samples)?));
    }
    files.push(("requests.json".into(), render(&requests())?));
    let (hello, replies) = hellos();
    files.push(("hello.json".into(), render(&hello)?));
    files.push(("hello_reply.json".into(), render(&replies)?));
    files.push(("check_config.json".into(), render(&check_config())?));
    Ok(files)
}

const VERSION_FILE: &str = "protocol_version";

fn recorded_version(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(VERSION_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn every_response_crosses_as_its_golden_file_records() -> Result<()> {
    let dir = golden_dir();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0");
    let recorded = recorded_version(&dir);
    let mut changed = Vec::new();
    for (name, text) in files()? {
        match std::fs::read_to_string(dir.join(&name)) {
            Ok(old) if old == text => {}
            Ok(old) => changed.push((name, first_difference(&old, &text), text)),
            Err(_) => changed.push((name, "(no file yet)".into(), text)),
        }
    }
    let bumped = recorded.is_none_or(|v| v < PROTOCOL_VERSION);
    if changed.is_empty() && recorded == Some(PROTOCOL_VERSION) {
        return Ok(());
    }
    if update && bumped {
        std::fs::create_dir_all(&dir)?;
        for (name, _, text) in &changed {
            std::fs::write(dir.join(name), text)?;
        }
        std::fs::write(dir.join(VERSION_FILE), format!("{PROTOCOL_VERSION}\n"))?;
        return Ok(());
    }
    if changed.is_empty() {
        return Err(format!(
            "PROTOCOL_VERSION is {PROTOCOL_VERSION}, but {} records protocol {recorded:?}: \
             record the files for {PROTOCOL_VERSION} with UPDATE_GOLDEN=1 cargo test -p certvakt \
             --lib control::golden",
            dir.join(VERSION_FILE).display()
        )
        .into());
    }
    let what: Vec<String> = changed
        .iter()
        .map(|(name, difference, _)| format!("{name}: {difference}"))
        .collect();
    Err(format!(
        "the control protocol changed: these answers no longer serialise as src/control/golden/ \
         records for protocol {PROTOCOL_VERSION}, and the CLI's --json and scripts read them: \
         {BUMP}. (UPDATE_GOLDEN rewrites the files only with a bumped version.)\n{}",
        what.join("\n")
    )
    .into())
}

fn first_difference(old: &str, new: &str) -> String {
    let (mut old_lines, mut new_lines) = (old.lines(), new.lines());
    for number in 1.. {
        match (old_lines.next(), new_lines.next()) {
            (None, None) => break,
            (a, b) if a == b => continue,
            (a, b) => {
                return format!(
                    "line {number}: recorded {:?}, now {:?}",
                    a.unwrap_or("(end of file)"),
                    b.unwrap_or("(end of file)")
                );
            }
        }
    }
    "(they differ only in line endings)".into()
}

fn read_back<T: DeserializeOwned>(name: &str) -> Result<Vec<T>> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        golden_dir().join(name),
    )?)?)
}

#[test]
fn every_golden_file_reads_back_into_its_samples() -> Result<()> {
    for (name, samples) in responses() {
        let read: Vec<Response> = read_back(&format!("{name}.json"))?;
        assert_eq!(read, samples, "{name}.json");
    }
    let read: Vec<Request> = read_back("requests.json")?;
    assert_eq!(read, requests());
    let (hello, replies) = hellos();
    let read: Vec<Hello> = read_back("hello.json")?;
    assert_eq!(read, hello);
    let read: Vec<HelloReply> = read_back("hello_reply.json")?;
    assert_eq!(read, replies);
    let read: Vec<CheckConfigReport> = read_back("check_config.json")?;
    assert_eq!(read, check_config());
    Ok(())
}

/// The variant names serde knows for a tagged enum, read from its answer to an unknown tag
/// (`unknown variant `?`, expected one of `a`, `b`, …`): the derive itself lists them, so a
/// new variant shows up here without anyone adding it to a list.
fn variant_names<T: DeserializeOwned + std::fmt::Debug>(tag: &str) -> BTreeSet<String> {
    let error = serde_json::from_value::<T>(serde_json::json!({ tag: "?" }))
        .expect_err("no variant is named ?")
        .to_string();
    let expected = error
        .split_once("expected one of ")
        .map_or("", |(_, names)| names);
    expected
        .split(", ")
        .map(|name| name.trim_matches('`').to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn every_response_and_request_variant_has_samples() {
    let named: BTreeSet<String> = responses()
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let variants = variant_names::<Response>("response");
    assert!(variants.len() > 10, "{variants:?}");
    assert_eq!(named, variants, "a response variant without a golden file");
    for (name, samples) in responses() {
        for sample in samples {
            let value = serde_json::to_value(&sample).expect("serialises");
            assert_eq!(value["response"], name, "{name}.json holds {sample:?}");
        }
    }
    let requested: BTreeSet<String> = requests().iter().map(|r| r.name().to_owned()).collect();
    assert_eq!(requested, variant_names::<Request>("request"));
}

#[test]
fn the_clients_page_reader_reads_pages_as_the_general_reader_does_and_nothing_else() {
    for (name, samples) in responses() {
        for response in samples {
            let line = serde_json::to_string(&response).expect("encode");
            let fast = super::client::read_page(&line);
            if matches!(response, Response::List { .. } | Response::Renewals { .. }) {
                assert_eq!(fast.as_ref(), Some(&response), "{name}");
                let general: Response = serde_json::from_str(&line).expect("decode");
                assert_eq!(fast, Some(general), "{name}");
            } else {
                assert_eq!(fast, None, "{name}");
            }
        }
    }
    // A damaged page is left to the general reader, which says what is wrong.
    assert_eq!(
        super::client::read_page(r#"{"response":"list","items":[{"id":3}],"total":1}"#),
        None
    );
}
