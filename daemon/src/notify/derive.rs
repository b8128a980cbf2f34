//! Which events are due: a pure function of what the daemon knows now ([`Snapshot`]) and what
//! it has already told ([`Told`]).
//!
//! Contract:
//! - Events are edges of conditions that hold for a while: "task T is open", "renewal of C is
//!   failing", "certificate F is expiring with nothing to renew it". A condition is told once
//!   when it starts; open tasks and failing renewals are told again every `remind_every`, and
//!   every `remind_often_every` once the certificate expires within `remind_often_within`.
//! - What was told is remembered by condition key, on disk with the outbox, so a restart tells
//!   nothing twice and a condition that started while the daemon was down (or before this
//!   version) is told at the next look.
//! - A failing renewal's condition ends when the view shows it no longer failing (the next
//!   failure streak is told again). Other conditions are forgotten only after they have been
//!   absent for [`FORGET_AFTER`], so a file that is unreadable for one scan does not make its
//!   certificate's expiry told twice.
//! - Each event has an id that stays the same however often it is derived: the condition key
//!   and how many times it was told.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{NotificationsSection, NotifyEvent};
use crate::human_time::{format_left, format_time};

/// How long a condition that is no longer seen is remembered as told.
pub const FORGET_AFTER: i64 = 30 * 86_400;

/// What the daemon knows now, as the notifier needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub now: i64,
    /// The managed certificates.
    pub managed: Vec<Managed>,
    /// Every certificate the inventory found (managed ones too), the leaf of each file.
    pub certificates: Vec<Seen>,
    /// Plugin files refused at start: file and why.
    pub refused_plugins: Vec<(String, String)>,
    /// `[daemon] warn_before`, seconds.
    pub warn_before: i64,
    /// This machine's name, for the messages.
    pub host: String,
    /// Whether a route names the `heartbeat` event (no heartbeat is derived otherwise).
    pub heartbeat: bool,
}

/// The condition key of the heartbeat: always holding, told every `heartbeat_every`.
const HEARTBEAT: &str = "heartbeat";

/// A managed certificate's renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    pub id: String,
    pub plugin: String,
    pub plugin_loaded: bool,
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_success: Option<i64>,
    /// The expiry of the certificate in use, when the inventory has read it.
    pub not_after: Option<i64>,
    pub subject: Option<String>,
    pub tasks: Vec<OpenTask>,
    /// The key pre-staged for its next renewal (`key_policy = "prestage"`).
    pub next_key: Option<NextKeyFacts>,
}

/// A pre-staged key's public facts, as told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextKeyFacts {
    /// `ec-p256`, `rsa-3072`, …
    pub algorithm: String,
    /// SHA-256 of the SubjectPublicKeyInfo, lowercase hex.
    pub spki_sha256: String,
    /// The SubjectPublicKeyInfo, DER, base64.
    pub spki: String,
}

/// An operator task that is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTask {
    pub id: String,
    pub title: String,
    pub instructions: String,
    /// How the person says it is done: a sentence with the exact command.
    pub when_done: String,
    pub opened_at: i64,
    /// Its files (the instructions file first); attached to mail.
    pub files: Vec<PathBuf>,
}

/// A certificate the inventory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The managed id, or the file path.
    pub id: String,
    pub path: PathBuf,
    pub subject: String,
    pub serial: String,
    pub sha256: String,
    pub not_after: i64,
    /// Whether something renews it (a managed certificate whose plugin is loaded).
    pub renewed: bool,
    /// The plugin of a managed certificate.
    pub plugin: Option<String>,
}

/// What was told of one condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Told {
    /// How many times (the first telling and every reminder).
    pub count: u32,
    pub last_at: i64,
    /// When the condition was last seen holding.
    pub seen_at: i64,
}

/// Every condition told, by key.
pub type Ledger = BTreeMap<String, Told>;

/// An event that is due now: tell it, then record `key` as told `count` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub key: String,
    pub count: u32,
    pub event: NotifyEvent,
    pub cert_id: Option<String>,
    pub plugin: Option<String>,
    pub task_id: Option<String>,
    pub deadline: Option<i64>,
    pub subject: String,
    pub body: String,
    /// Files to attach (read when the message is written to the outbox).
    pub files: Vec<PathBuf>,
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Due {
    /// The event's id: stable for this key and count, 32 hex digits.
    pub fn id(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{}#{}", self.key, self.count));
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The events due now, in a stable order, and the ledger as it is after telling them (also
/// with `seen_at` refreshed and forgotten conditions dropped).
pub fn due(
    snapshot: &Snapshot,
    told: &Ledger,
    settings: &NotificationsSection,
) -> (Vec<Due>, Ledger) {
    let now = snapshot.now;
    let mut out = Vec::new();
    let mut holding: Vec<String> = Vec::new();
    let mut ended: Vec<String> = Vec::new();
    let reminder_gap = |not_after: Option<i64>| -> i64 {
        let often =
            not_after.is_some_and(|t| t - now <= settings.remind_often_within.as_secs() as i64);
        if often {
            settings.remind_often_every.as_secs() as i64
        } else {
            settings.remind_every.as_secs() as i64
        }
    };
    let mut tell = |key: String, remind_every: Option<i64>, make: &dyn Fn(u32) -> Due| {
        holding.push(key.clone());
        let count = match told.get(&key) {
            None => 1,
            Some(t) => match remind_every {
                Some(gap) if now >= t.last_at.saturating_add(gap) => t.count + 1,
                _ => return,
            },
        };
        let mut due = make(count);
        due.key = key;
        due.count = count;
        out.push(due);
    };

    for cert in &snapshot.managed {
        let expires = cert
            .not_after
            .map(|t| format!("{} ({})", format_time(t), format_left(t - now)))
            .unwrap_or_else(|| {
                "unknown (no certificate in use yet, or its file cannot be read)".into()
            });
        for task in &cert.tasks {
            let make = |count: u32| {
                let (event, prefix) = if count == 1 {
                    (NotifyEvent::TaskOpened, "Action needed")
                } else {
                    (NotifyEvent::TaskReminder, "Reminder")
                };
                let attached: Vec<String> = attachments(&task.files)
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                let mut body = String::new();
                if count > 1 {
                    body.push_str(&format!(
                        "This task has been waiting since {}. Reminder {}.\n\n",
                        format_time(task.opened_at),
                        count - 1
                    ));
                }
                body.push_str(&format!(
                    "{}\n\n{}\n\nCertificate: {}{}\nExpires: {}\nTask: {}\nWhen done: {}\n",
                    task.title,
                    task.instructions.trim_end(),
                    cert.id,
                    cert.subject
                        .as_ref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default(),
                    expires,
                    task.id,
                    task.when_done,
                ));
                if !attached.is_empty() {
                    body.push_str(&format!("Attached: {}\n", attached.join(", ")));
                }
                body.push_str(&footer(
                    &snapshot.host,
                    &format!("certvakt task show {}", task.id),
                ));
                let mut details = serde_json::Map::new();
                details.insert("title".into(), task.title.clone().into());
                details.insert("opened_at".into(), task.opened_at.into());
                details.insert("reminder".into(), (count - 1).into());
                details.insert("when_done".into(), task.when_done.clone().into());
                Due {
                    key: String::new(),
                    count,
                    event,
                    cert_id: Some(cert.id.clone()),
                    plugin: Some(cert.plugin.clone()),
                    task_id: Some(task.id.clone()),
                    deadline: cert.not_after,
                    subject: format!("[certvakt] {prefix}: {} — {}", cert.id, task.title),
                    body,
                    files: attachments(&task.files),
                    details,
                }
            };
            tell(
                format!("task:{}", task.id),
                Some(reminder_gap(cert.not_after)),
                &make,
            );
        }

        let near = cert
            .not_after
            .is_some_and(|t| t - now <= settings.failing_within.as_secs() as i64);
        let failing = cert.failures >= settings.failing_after || (cert.failures > 0 && near);
        let key = format!("failing:{}", cert.id);
        if failing {
            let make = |count: u32| {
                let mut details = serde_json::Map::new();
                details.insert("failures".into(), cert.failures.into());
                details.insert(
                    "last_error".into(),
                    cert.last_error
                        .clone()
                        .map_or(serde_json::Value::Null, Into::into),
                );
                Due {
                    key: String::new(),
                    count,
                    event: NotifyEvent::RenewalFailing,
                    cert_id: Some(cert.id.clone()),
                    plugin: Some(cert.plugin.clone()),
                    task_id: None,
                    deadline: cert.not_after,
                    subject: format!(
                        "[certvakt] Renewal failing: {} ({} failure(s) in a row)",
                        cert.id, cert.failures
                    ),
                    body: format!(
                        "The renewal of {} has failed {} time(s) in a row and certvakt keeps retrying.\n\n\
                         Last error: {}\n\nCertificate: {}{}\nPlugin: {}\nExpires: {}\n{}",
                        cert.id,
                        cert.failures,
                        cert.last_error.as_deref().unwrap_or("(none recorded)"),
                        cert.id,
                        cert.subject
                            .as_ref()
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default(),
                        cert.plugin,
                        expires,
                        footer(&snapshot.host, &format!("certvakt show {}", cert.id)),
                    ),
                    files: Vec::new(),
                    details,
                }
            };
            tell(key, Some(reminder_gap(cert.not_after)), &make);
        } else if cert.failures == 0 {
            // The streak is over: the next one is told again.
            ended.push(key);
        }

        if let Some(done) = cert.last_success {
            let make = |count: u32| Due {
                key: String::new(),
                count,
                event: NotifyEvent::RenewalCompleted,
                cert_id: Some(cert.id.clone()),
                plugin: Some(cert.plugin.clone()),
                task_id: None,
                deadline: None,
                subject: format!("[certvakt] Renewed: {}", cert.id),
                body: format!(
                    "{} was renewed at {}. It now expires {}.\n{}",
                    cert.id,
                    format_time(done),
                    expires,
                    footer(&snapshot.host, &format!("certvakt show {}", cert.id)),
                ),
                files: Vec::new(),
                details: serde_json::Map::new(),
            };
            tell(format!("completed:{}:{done}", cert.id), None, &make);
        }
    }

    for (cert, next) in snapshot
        .managed
        .iter()
        .filter_map(|c| c.next_key.as_ref().map(|n| (c, n)))
    {
        let make = |count: u32| {
            let mut details = serde_json::Map::new();
            details.insert("algorithm".into(), next.algorithm.clone().into());
            details.insert("spki_sha256".into(), next.spki_sha256.clone().into());
            details.insert("spki".into(), next.spki.clone().into());
            Due {
                key: String::new(),
                count,
                event: NotifyEvent::KeyPrestaged,
                cert_id: Some(cert.id.clone()),
                plugin: Some(cert.plugin.clone()),
                task_id: None,
                deadline: None,
                subject: format!(
                    "[certvakt] Next key ready: {} (publish it before the next renewal)",
                    cert.id
                ),
                body: format!(
                    "certvakt made the key of the next renewal of {id} ({algorithm}). The next renewal uses exactly this key, so records and whitelists that name it can be prepared now.\n\n\
                     SPKI SHA-256: {hash}\nDANE TLSA record data: 3 1 1 {hash}\nSubjectPublicKeyInfo (base64 DER): {spki}\n{footer}",
                    id = cert.id,
                    algorithm = next.algorithm,
                    hash = next.spki_sha256,
                    spki = next.spki,
                    footer = footer(&snapshot.host, &format!("certvakt show {}", cert.id)),
                ),
                files: Vec::new(),
                details,
            }
        };
        tell(
            format!("next-key:{}:{}", cert.id, next.spki_sha256),
            None,
            &make,
        );
    }

    for seen in &snapshot.certificates {
        let left = seen.not_after - now;
        let about = format!(
            "Certificate: {}\nFile: {}\nSubject: {}\nSerial: {}\nExpires: {} ({})\n",
            seen.id,
            seen.path.display(),
            seen.subject,
            seen.serial,
            format_time(seen.not_after),
            format_left(left)
        );
        let details = || {
            let mut d = serde_json::Map::new();
            d.insert("path".into(), seen.path.display().to_string().into());
            d.insert("subject".into(), seen.subject.clone().into());
            d.insert("serial".into(), seen.serial.clone().into());
            d.insert("sha256".into(), seen.sha256.clone().into());
            d.insert("not_after".into(), seen.not_after.into());
            d
        };
        if left <= 0 {
            let make = |count: u32| Due {
                key: String::new(),
                count,
                event: NotifyEvent::Expired,
                cert_id: Some(seen.id.clone()),
                plugin: seen.plugin.clone(),
                task_id: None,
                deadline: Some(seen.not_after),
                subject: format!("[certvakt] EXPIRED: {}", seen.id),
                body: format!(
                    "This certificate has expired; whatever uses it is failing now.\n\n{about}{}",
                    footer(&snapshot.host, "certvakt status")
                ),
                files: Vec::new(),
                details: details(),
            };
            tell(format!("expired:{}", seen.sha256), None, &make);
        } else if left <= snapshot.warn_before && !seen.renewed {
            let make = |count: u32| Due {
                key: String::new(),
                count,
                event: NotifyEvent::Expiring,
                cert_id: Some(seen.id.clone()),
                plugin: seen.plugin.clone(),
                task_id: None,
                deadline: Some(seen.not_after),
                subject: format!(
                    "[certvakt] Expiring in {}, nothing renews it: {}",
                    format_left(left),
                    seen.id
                ),
                body: format!(
                    "certvakt watches this certificate but does not renew it; renew it by hand \
                     before it expires.\n\n{about}{}",
                    footer(&snapshot.host, "certvakt list")
                ),
                files: Vec::new(),
                details: details(),
            };
            tell(format!("expiring:{}", seen.sha256), None, &make);
        }
    }

    for (file, reason) in &snapshot.refused_plugins {
        let make = |count: u32| {
            let mut details = serde_json::Map::new();
            details.insert("file".into(), file.clone().into());
            details.insert("reason".into(), reason.clone().into());
            Due {
                key: String::new(),
                count,
                event: NotifyEvent::PluginRefused,
                cert_id: None,
                plugin: None,
                task_id: None,
                deadline: None,
                subject: format!("[certvakt] Plugin refused: {file}"),
                body: format!(
                    "certvakt did not load the plugin file {file}: {reason}\n\nThe certificates it \
                     renews are watched, not renewed, until it loads.\n{}",
                    footer(&snapshot.host, "certvakt plugins")
                ),
                files: Vec::new(),
                details,
            }
        };
        tell(
            format!("plugin_refused:{file}:{}", short_hash(reason)),
            None,
            &make,
        );
    }

    if snapshot.heartbeat {
        let every = settings.heartbeat_every.as_secs() as i64;
        let make = |count: u32| heartbeat(snapshot, every, count);
        tell(HEARTBEAT.to_owned(), Some(every), &make);
    }

    let mut ledger = told.clone();
    for key in &ended {
        ledger.remove(key);
    }
    for due in &out {
        ledger.insert(
            due.key.clone(),
            Told {
                count: due.count,
                last_at: now,
                seen_at: now,
            },
        );
    }
    for key in &holding {
        if let Some(t) = ledger.get_mut(key) {
            t.seen_at = now;
        }
    }
    ledger.retain(|_, t| now - t.seen_at < FORGET_AFTER);
    (out, ledger)
}

/// The earliest time after `snapshot.now` at which [`due`] could find something due with
/// nothing but the time changing, given `told` as it is after the look at `snapshot.now`: a
/// reminder's gap over, a managed certificate coming within `failing_within` or
/// `remind_often_within`, a certificate crossing `warn_before` or its expiry, a condition to
/// forget. `None` when nothing would. It may err early (a look that finds nothing), never
/// late.
pub fn next_change(
    snapshot: &Snapshot,
    told: &Ledger,
    settings: &NotificationsSection,
) -> Option<i64> {
    let now = snapshot.now;
    let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    let every = secs(settings.remind_every.as_secs());
    let often_every = secs(settings.remind_often_every.as_secs());
    let often_within = secs(settings.remind_often_within.as_secs());
    let failing_within = secs(settings.failing_within.as_secs());
    let mut next: Option<i64> = None;
    let mut at = |t: i64| {
        if t > now {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    };
    // A condition told before is reminded of `remind_every` after, or `remind_often_every`
    // after once its certificate is within `remind_often_within`.
    let reminder = |key: &str, not_after: Option<i64>, at: &mut dyn FnMut(i64)| {
        if let Some(t) = told.get(key) {
            at(t.last_at.saturating_add(every));
            if let Some(not_after) = not_after {
                at(t.last_at
                    .saturating_add(often_every)
                    .max(not_after.saturating_sub(often_within)));
            }
        }
    };
    for cert in &snapshot.managed {
        for task in &cert.tasks {
            reminder(&format!("task:{}", task.id), cert.not_after, &mut at);
        }
        if cert.failures > 0 {
            // Failing already (reminded), or failing once the expiry is near.
            reminder(&format!("failing:{}", cert.id), cert.not_after, &mut at);
            if let Some(not_after) = cert.not_after {
                at(not_after.saturating_sub(failing_within));
            }
        }
    }
    for seen in &snapshot.certificates {
        at(seen.not_after);
        if !seen.renewed {
            at(seen.not_after.saturating_sub(snapshot.warn_before));
        }
    }
    for t in told.values() {
        at(t.seen_at.saturating_add(FORGET_AFTER));
    }
    if snapshot.heartbeat {
        // Told at the look that made `told` (or due at once when it was not).
        let last = told.get(HEARTBEAT).map_or(now, |t| t.last_at);
        at(last
            .saturating_add(secs(settings.heartbeat_every.as_secs()))
            .max(now + 1));
    }
    next
}

/// The heartbeat: the daemon is running, what it watches at a glance, and by when the next
/// one comes (a receiver alarms when it does not).
fn heartbeat(snapshot: &Snapshot, every: i64, count: u32) -> Due {
    let now = snapshot.now;
    let expired = snapshot
        .certificates
        .iter()
        .filter(|c| c.not_after <= now)
        .count();
    let expiring = snapshot
        .certificates
        .iter()
        .filter(|c| c.not_after > now && c.not_after - now <= snapshot.warn_before)
        .count();
    let failing = snapshot.managed.iter().filter(|m| m.failures > 0).count();
    let tasks: usize = snapshot.managed.iter().map(|m| m.tasks.len()).sum();
    let next_by = now.saturating_add(every);
    let mut details = serde_json::Map::new();
    for (key, value) in [
        ("certificates", snapshot.certificates.len()),
        ("managed", snapshot.managed.len()),
        ("expiring", expiring),
        ("expired", expired),
        ("failing_renewals", failing),
        ("tasks", tasks),
    ] {
        details.insert(key.into(), value.into());
    }
    details.insert("every_secs".into(), every.into());
    details.insert("next_by".into(), next_by.into());
    let trouble = expired + expiring + failing + tasks;
    Due {
        key: String::new(),
        count,
        event: NotifyEvent::Heartbeat,
        cert_id: None,
        plugin: None,
        task_id: None,
        deadline: None,
        subject: format!(
            "[certvakt] Heartbeat from {}: {} certificate(s), {}",
            snapshot.host,
            snapshot.certificates.len(),
            if trouble == 0 {
                "nothing needs attention".to_owned()
            } else {
                format!("{trouble} thing(s) need attention")
            }
        ),
        body: format!(
            "certvakt on {} is running.\n\nCertificates: {} ({} managed); expiring: {expiring}; \
             expired: {expired}; failing renewals: {failing}; tasks waiting: {tasks}.\n\n\
             The next heartbeat comes by {}. If none has come by then, certvakt is not running \
             or cannot send: look at the machine.\n{}",
            snapshot.host,
            snapshot.certificates.len(),
            snapshot.managed.len(),
            format_time(next_by),
            footer(&snapshot.host, "certvakt status")
        ),
        files: Vec::new(),
        details,
    }
}

/// A task's files to attach: all but the instructions, which are the body.
fn attachments(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "instructions.txt"))
        .cloned()
        .collect()
}

fn footer(host: &str, command: &str) -> String {
    format!("\n--\ncertvakt on {host}. More: `{command}`\n")
}

fn short_hash(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text)[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn snapshot(now: i64) -> Snapshot {
        Snapshot {
            now,
            managed: vec![Managed {
                id: "fmk-prod".into(),
                plugin: "dk-fmk".into(),
                plugin_loaded: true,
                failures: 0,
                last_error: None,
                last_success: None,
                not_after: Some(now + 20 * DAY),
                subject: Some("CN=Apotek".into()),
                tasks: vec![OpenTask {
                    id: "fmk-prod-1-1".into(),
                    title: "Forny certifikatet i MitID Erhverv".into(),
                    instructions: "Log ind og bestil — æ ø å".into(),
                    when_done: "certvakt import fmk-prod <file>".into(),
                    opened_at: now,
                    files: vec![
                        PathBuf::from("/var/lib/certvakt/outbox/x/instructions.txt"),
                        PathBuf::from("/var/lib/certvakt/outbox/x/request.csr"),
                    ],
                }],
                next_key: None,
            }],
            certificates: Vec::new(),
            refused_plugins: Vec::new(),
            heartbeat: false,
            warn_before: 30 * DAY,
            host: "apotek-srv1".into(),
        }
    }

    fn events(dues: &[Due]) -> Vec<(NotifyEvent, u32)> {
        dues.iter().map(|d| (d.event, d.count)).collect()
    }

    #[test]
    fn a_task_is_told_once_then_reminded_and_more_often_near_expiry() {
        let settings = NotificationsSection::default();
        let t0 = 1_000_000_000;
        let (dues, ledger) = due(&snapshot(t0), &Ledger::new(), &settings);
        assert_eq!(events(&dues), vec![(NotifyEvent::TaskOpened, 1)]);
        let opened = &dues[0];
        assert!(
            opened.subject.contains("Forny certifikatet"),
            "{}",
            opened.subject
        );
        assert!(opened.body.contains("æ ø å"));
        assert!(
            opened
                .body
                .contains("When done: certvakt import fmk-prod <file>")
        );
        assert!(opened.body.contains("Attached: request.csr"));
        assert_eq!(
            opened.files,
            vec![PathBuf::from("/var/lib/certvakt/outbox/x/request.csr")]
        );
        assert_eq!(opened.deadline, Some(t0 + 20 * DAY));
        // Looking again (or after a restart, with the ledger from disk) tells nothing new.
        let (again, ledger) = due(&snapshot(t0 + 60), &ledger, &settings);
        assert!(again.is_empty());
        // A day on: the first reminder, with its own id.
        let mut later = snapshot(t0 + DAY);
        later.managed[0].not_after = Some(t0 + 20 * DAY);
        let (reminded, ledger) = due(&later, &ledger, &settings);
        assert_eq!(events(&reminded), vec![(NotifyEvent::TaskReminder, 2)]);
        assert_ne!(reminded[0].id(), opened.id());
        assert!(reminded[0].subject.starts_with("[certvakt] Reminder"));
        // Within remind_often_within of expiry, every remind_often_every (4 h).
        let mut near = snapshot(t0 + 15 * DAY);
        near.managed[0].not_after = Some(t0 + 20 * DAY);
        let (r3, ledger) = due(&near, &ledger, &settings);
        assert_eq!(events(&r3), vec![(NotifyEvent::TaskReminder, 3)]);
        near.now += 3 * 3600;
        assert!(due(&near, &ledger, &settings).0.is_empty());
        near.now += 3600;
        assert_eq!(
            events(&due(&near, &ledger, &settings).0),
            vec![(NotifyEvent::TaskReminder, 4)]
        );
    }

    /// Walks the time from `t0` to `end`, looking when `step` says, and returns what was told
    /// when.
    fn walk(
        snap: &mut Snapshot,
        t0: i64,
        end: i64,
        mut step: impl FnMut(&Snapshot, &Ledger) -> Option<i64>,
    ) -> Vec<(i64, NotifyEvent, u32)> {
        let settings = NotificationsSection::default();
        let mut ledger = Ledger::new();
        let mut told = Vec::new();
        let mut now = t0;
        while now <= end {
            snap.now = now;
            let (dues, after) = due(snap, &ledger, &settings);
            told.extend(dues.iter().map(|d| (now, d.event, d.count)));
            ledger = after;
            match step(snap, &ledger) {
                Some(next) => now = next,
                None => break,
            }
        }
        told
    }

    #[test]
    fn nothing_becomes_due_before_the_time_next_change_names() {
        let settings = NotificationsSection::default();
        let t0 = 1_000_000_000;
        let mut snap = snapshot(t0);
        // A task (reminded daily, then every 4 h from 7 days before expiry), one failure
        // (told once the expiry is within 14 days), a watched certificate nothing renews
        // (expiring at 30 days, expired at 45) and a renewed one (expired only).
        snap.managed[0].failures = 1;
        let seen = |id: &str, not_after: i64, renewed: bool| Seen {
            id: id.into(),
            path: PathBuf::from(format!("/etc/ssl/{id}.pem")),
            subject: format!("CN={id}"),
            serial: "01".into(),
            sha256: format!("sha-{id}"),
            not_after,
            renewed,
            plugin: None,
        };
        snap.certificates = vec![
            seen("watched", t0 + 45 * DAY, false),
            seen("fmk-prod", t0 + 20 * DAY, true),
        ];
        let end = t0 + 50 * DAY;
        let mut looks = 0;
        let told = walk(&mut snap.clone(), t0, end, |snap, ledger| {
            looks += 1;
            let next = next_change(snap, ledger, &settings)?;
            assert!(
                next > snap.now,
                "next_change {next} is not after {}",
                snap.now
            );
            // Nothing is due in between: the middle and the second before.
            for t in [snap.now + (next - snap.now) / 2, next - 1] {
                let mut at = snap.clone();
                at.now = t;
                let (dues, _) = due(&at, ledger, &settings);
                assert!(dues.is_empty(), "at t0 + {} s: {:?}", t - t0, events(&dues));
            }
            Some(next)
        });
        // The same as looking every hour (every time in this walk is a whole hour from t0).
        let hourly = walk(&mut snap, t0, end, |snap, _| Some(snap.now + 3600));
        assert_eq!(told, hourly);
        assert!(told.len() > 10, "{told:?}");
        for event in [
            NotifyEvent::TaskOpened,
            NotifyEvent::TaskReminder,
            NotifyEvent::RenewalFailing,
            NotifyEvent::Expiring,
            NotifyEvent::Expired,
        ] {
            assert!(told.iter().any(|t| t.1 == event), "{event:?} in {told:?}");
        }
        // No idle looks: each one tells something (the last finds the walk's end).
        assert!(
            looks <= told.len() + 1,
            "{looks} looks for {} told",
            told.len()
        );
    }

    #[test]
    fn a_heartbeat_is_told_every_heartbeat_every_only_when_a_route_wants_it() {
        let settings = NotificationsSection::default();
        let t0 = 1_000_000_000;
        let mut s = snapshot(t0);
        s.managed[0].tasks.clear();
        // No route names it: none, and nothing to wake for.
        let (dues, ledger) = due(&s, &Ledger::new(), &settings);
        assert!(dues.is_empty(), "{:?}", events(&dues));
        assert_eq!(next_change(&s, &ledger, &settings), None);

        s.heartbeat = true;
        let (dues, ledger) = due(&s, &Ledger::new(), &settings);
        assert_eq!(events(&dues), vec![(NotifyEvent::Heartbeat, 1)]);
        let beat = &dues[0];
        assert!(beat.cert_id.is_none());
        assert!(
            beat.subject
                .starts_with("[certvakt] Heartbeat from apotek-srv1: "),
            "{}",
            beat.subject
        );
        assert!(
            beat.body.contains("The next heartbeat comes by"),
            "{}",
            beat.body
        );
        assert_eq!(beat.details["next_by"], t0 + DAY);
        assert_eq!(beat.details["every_secs"], DAY);
        // Not again before a day has passed; the notifier is told when.
        assert_eq!(next_change(&s, &ledger, &settings), Some(t0 + DAY));
        s.now = t0 + DAY - 1;
        assert!(due(&s, &ledger, &settings).0.is_empty());
        s.now = t0 + DAY;
        let (dues, _) = due(&s, &ledger, &settings);
        assert_eq!(events(&dues), vec![(NotifyEvent::Heartbeat, 2)]);
        assert_ne!(dues[0].id(), beat.id());
    }

    #[test]
    fn a_prestaged_key_is_told_once_per_key_with_its_hash() {
        let settings = NotificationsSection::default();
        let mut s = snapshot(1_000_000_000);
        s.managed[0].tasks.clear();
        let key = |hash: &str| NextKeyFacts {
            algorithm: "ec-p256".into(),
            spki_sha256: hash.into(),
            spki: "MFkwEwYHKoZIzj0CAQ==".into(),
        };
        s.managed[0].next_key = Some(key("ab12"));
        let (dues, ledger) = due(&s, &Ledger::new(), &settings);
        assert_eq!(events(&dues), vec![(NotifyEvent::KeyPrestaged, 1)]);
        let told = &dues[0];
        assert_eq!(told.cert_id.as_deref(), Some("fmk-prod"));
        assert!(
            told.body.contains("DANE TLSA record data: 3 1 1 ab12"),
            "{}",
            told.body
        );
        assert!(told.body.contains("MFkwEwYHKoZIzj0CAQ=="), "{}", told.body);
        assert_eq!(told.details["spki_sha256"], "ab12");
        // The same key is not told again; the next one is.
        s.now += 30 * DAY;
        assert!(due(&s, &ledger, &settings).0.is_empty());
        s.managed[0].next_key = Some(key("cd34"));
        let (dues, _) = due(&s, &ledger, &settings);
        assert_eq!(events(&dues), vec![(NotifyEvent::KeyPrestaged, 1)]);
        assert!(NotifyEvent::defaults().contains(&NotifyEvent::KeyPrestaged));
    }

    #[test]
    fn ids_are_stable_for_the_same_condition_and_count() {
        let settings = NotificationsSection::default();
        let a = due(&snapshot(5), &Ledger::new(), &settings).0;
        let b = due(&snapshot(99), &Ledger::new(), &settings).0;
        assert_eq!(a[0].id(), b[0].id());
        assert_eq!(a[0].id().len(), 32);
    }

    #[test]
    fn a_failing_renewal_is_told_after_n_failures_and_again_after_it_recovered() {
        let settings = NotificationsSection::default();
        let now = 2_000_000_000;
        let mut s = snapshot(now);
        s.managed[0].tasks.clear();
        s.managed[0].not_after = Some(now + 60 * DAY);
        s.managed[0].failures = 2;
        s.managed[0].last_error = Some("FMK answered 503".into());
        assert!(due(&s, &Ledger::new(), &settings).0.is_empty());
        s.managed[0].failures = 3;
        let (dues, ledger) = due(&s, &Ledger::new(), &settings);
        assert_eq!(events(&dues), vec![(NotifyEvent::RenewalFailing, 1)]);
        assert!(dues[0].body.contains("FMK answered 503"));
        s.managed[0].failures = 4;
        assert!(due(&s, &ledger, &settings).0.is_empty());
        // Recovered: the ledger forgets, and the next streak is told again.
        s.managed[0].failures = 0;
        let (_, ledger) = due(&s, &ledger, &settings);
        assert!(!ledger.contains_key("failing:fmk-prod"));
        // Near expiry one failure is enough.
        s.managed[0].failures = 1;
        s.managed[0].not_after = Some(now + 10 * DAY);
        assert_eq!(
            events(&due(&s, &ledger, &settings).0),
            vec![(NotifyEvent::RenewalFailing, 1)]
        );
    }

    #[test]
    fn expiry_is_told_for_what_nothing_renews_and_expired_for_all_once() {
        let settings = NotificationsSection::default();
        let now = 1_500_000_000;
        let mut s = snapshot(now);
        s.managed.clear();
        let seen = |id: &str, days: i64, renewed: bool| Seen {
            id: id.into(),
            path: PathBuf::from(format!("/etc/ssl/{id}.pem")),
            subject: format!("CN={id}"),
            serial: "01".into(),
            sha256: format!("sha-{id}"),
            not_after: now + days * DAY,
            renewed,
            plugin: None,
        };
        s.certificates = vec![
            seen("far", 90, false),
            seen("soon", 10, false),
            seen("soon-renewed", 10, true),
            seen("gone", -1, true),
        ];
        let (dues, ledger) = due(&s, &Ledger::new(), &settings);
        let got: Vec<(NotifyEvent, &str)> = dues
            .iter()
            .map(|d| (d.event, d.cert_id.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            vec![
                (NotifyEvent::Expiring, "soon"),
                (NotifyEvent::Expired, "gone")
            ]
        );
        assert!(due(&s, &ledger, &settings).0.is_empty());
        // Gone from one scan (an unreadable file) and back: not told again.
        let mut blink = s.clone();
        blink.certificates.clear();
        blink.now += 600;
        let (_, ledger) = due(&blink, &ledger, &settings);
        s.now += 1200;
        assert!(due(&s, &ledger, &settings).0.is_empty());
        // Forgotten only after FORGET_AFTER.
        blink.now = s.now + FORGET_AFTER + 1;
        let (_, ledger) = due(&blink, &ledger, &settings);
        assert!(ledger.is_empty());
    }

    #[test]
    fn a_refused_plugin_is_told_once_per_reason() {
        let settings = NotificationsSection::default();
        let mut s = snapshot(10);
        s.managed.clear();
        s.refused_plugins = vec![("/usr/lib/certvakt/plugins/x.so".into(), "truncated".into())];
        let (dues, ledger) = due(&s, &Ledger::new(), &settings);
        assert_eq!(events(&dues), vec![(NotifyEvent::PluginRefused, 1)]);
        assert!(dues[0].cert_id.is_none());
        assert!(due(&s, &ledger, &settings).0.is_empty());
        s.refused_plugins[0].1 = "built for another plugin API".into();
        assert_eq!(due(&s, &ledger, &settings).0.len(), 1);
    }
}
