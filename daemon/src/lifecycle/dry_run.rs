//! `certvakt renew ID --dry-run`: what a renewal would do now, changing nothing.
//!
//! Contract:
//! - Nothing is written: no state, no key, no CSR, no task, no history, no folder in the
//!   state directory. The plugin is asked only read-only questions (`describe` and
//!   `csr_profile`, never `issue`), with services whose state folder is outside the state
//!   directory and whose opened tasks are dropped, not filed.
//! - The answer says whether the certificate is due (and why or when), the steps in the
//!   order the engine takes them for this plugin and configuration, the key that would be
//!   made (or kept), the subject and SANs the CSR would ask for, the hooks around the install,
//!   and whether an operator task is expected. A plugin does not declare whether it opens a
//!   task, so that is said as "the plugin decides at the issue step"; its summary is beside it.
//! - The engine loop never awaits the plugin: the answer is made in a task of its own.

use std::sync::Arc;

use certvakt_plugin_api::profile::{CsrProfile, SubjectAltName, oid};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{CertFacts, Core, Engine, EngineError, Phase, Record};
use crate::config::{KeyPolicy, ManagedCertificate};
use crate::plugin_host::{BasicServices, LoadedPlugin};

/// What `renew --dry-run` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    pub id: String,
    pub plugin: String,
    /// The plugin's own summary (`certvakt plugins`).
    pub plugin_summary: String,
    /// Whether a renewal would start now without `--force` (or one is in progress).
    pub due: bool,
    /// When it is due (Unix seconds), when that is known.
    pub due_at: Option<i64>,
    /// Why it is (or is not) due, as a sentence.
    pub why: String,
    /// The last step of the run in progress, when there is one.
    pub run_phase: Option<Phase>,
    /// The steps a renewal would take, in order.
    pub steps: Vec<DryStep>,
    /// The key: `new ec-p256 key`, `the live key, kept (key_policy = "reuse")`, or why none.
    pub key: String,
    /// The CSR's subject, attribute by attribute (`CN=…`).
    pub subject: Vec<String>,
    /// The CSR's SANs (`DNS:…`).
    pub sans: Vec<String>,
    /// The hooks around the install, as configured.
    pub hooks: Vec<String>,
    /// Whether an operator task is expected, as a sentence.
    pub tasks: String,
}

/// One step of a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryStep {
    /// The step's name as `status` shows it.
    pub step: String,
    /// What it does for this certificate.
    pub what: String,
}

impl Engine {
    /// Answers `reply` with the dry run of `id`, made in a task of its own.
    pub(super) fn dry_run(&self, id: &str, reply: oneshot::Sender<Result<DryRun, EngineError>>) {
        let cert = match self.managed(id) {
            Ok(cert) => cert,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let Some(plugin) = self.core.plugins.get(&cert.plugin).cloned() else {
            let _ = reply.send(Err(EngineError::PluginMissing {
                id: id.to_owned(),
                plugin: cert.plugin.clone(),
            }));
            return;
        };
        let record = self.records.get(id).cloned().unwrap_or_default();
        let core = self.core.clone();
        tokio::spawn(async move {
            let answer = core.dry_run(&cert, &plugin, &record).await;
            let _ = reply.send(answer);
        });
    }
}

impl Core {
    async fn dry_run(
        &self,
        cert: &ManagedCertificate,
        plugin: &LoadedPlugin,
        record: &Record,
    ) -> Result<DryRun, EngineError> {
        let now = crate::now_unix();
        let current = super::install::read_live(cert).await?;
        // Outside the state directory, and never filed: a dry run leaves no trace there.
        let services = || {
            Arc::new(BasicServices::new(
                plugin.name.clone(),
                cert.id.clone(),
                std::env::temp_dir().join("certvakt-dry-run"),
            ))
        };
        let summary = match plugin.describe(services(), self.deadline).await {
            Ok(d) => d.summary,
            Err(e) => format!("(the plugin could not describe itself: {e})"),
        };
        let (due, due_at, why) = due_now(cert, record, current.as_ref(), now);
        let run_phase = record.run.as_ref().map(|r| r.phase);
        let (key, subject, sans) = match run_phase {
            Some(phase) if phase >= Phase::KeyGenerated => (
                "the run in progress already has its key and CSR".to_owned(),
                Vec::new(),
                Vec::new(),
            ),
            _ => {
                let mut context = self.context(cert, current.as_ref());
                context.role = cert.roles().into_iter().next();
                let profile = plugin
                    .csr_profile(context, services(), self.deadline)
                    .await?;
                describe_profile(cert, &profile)
            }
        };
        Ok(DryRun {
            id: cert.id.clone(),
            plugin: cert.plugin.clone(),
            plugin_summary: summary.clone(),
            due,
            due_at,
            why,
            run_phase,
            steps: steps(
                cert,
                current.is_some() || record.run.as_ref().is_some_and(|r| r.old.is_some()),
                run_phase,
            ),
            key,
            subject,
            sans,
            hooks: hooks(cert),
            // The plugin's summary (what it does, e.g. "hands the order to a person") is on
            // the plugin line already.
            tasks: "the plugin decides at the issue step whether a person must act (an operator \
                    task; `certvakt tasks`); its summary above says how it orders"
                .into(),
        })
    }
}

/// Whether a renewal would start now, when it is due, and why.
fn due_now(
    cert: &ManagedCertificate,
    record: &Record,
    current: Option<&CertFacts>,
    now: i64,
) -> (bool, Option<i64>, String) {
    if let Some(run) = &record.run {
        return (
            true,
            Some(run.started_at),
            format!(
                "a renewal is in progress (run {}, after step {}); `renew` tries its next step now",
                run.number,
                run.phase.as_str()
            ),
        );
    }
    if super::cancel::held_by_cancel(record, current.map(|f| f.serial.as_str())) {
        return (
            false,
            None,
            "the last renewal was cancelled by the operator: no run starts by itself; `certvakt renew` starts one".into(),
        );
    }
    let Some(facts) = current else {
        return (
            true,
            Some(now),
            format!(
                "there is no certificate at {} yet: a first issue",
                cert.cert.display()
            ),
        );
    };
    let (at, why) = match record.suggested_window(&facts.serial) {
        Some((start, end)) => (
            crate::schedule::in_window(&cert.id, start, end),
            format!(
                "inside the authority's suggested window {} – {}",
                crate::human_time::format_time(start),
                crate::human_time::format_time(end)
            ),
        ),
        None => (
            crate::schedule::renewal_due(
                &cert.id,
                facts.not_before,
                facts.not_after,
                cert.renewal.renew_before.map(|d| d.as_secs()),
            ),
            format!(
                "by the schedule (2/3 of the lifetime, or renew_before) of the certificate valid until {}",
                crate::human_time::format_time(facts.not_after)
            ),
        ),
    };
    let due = at <= now;
    let when = if due {
        format!("due since {}", crate::human_time::format_time(at))
    } else {
        format!(
            "not due until {} (`renew --force` starts one now)",
            crate::human_time::format_time(at)
        )
    };
    (due, Some(at), format!("{when}, {why}"))
}

/// The steps in the order the engine takes them (see `steps`), from the one after `phase`.
fn steps(cert: &ManagedCertificate, replaces: bool, phase: Option<Phase>) -> Vec<DryStep> {
    let roles = cert.roles();
    let csr_what = if roles.is_empty() {
        "ask the plugin for the CSR profile, make the key (0600, kept until the run ends) and the CSR".to_owned()
    } else {
        format!(
            "for each role ({}): ask the plugin for the CSR profile, make the key and the CSR",
            roles.join(", ")
        )
    };
    let install_what = {
        let mut files = vec![cert.cert.display().to_string()];
        files.extend(cert.key.iter().map(|k| k.display().to_string()));
        files.extend(cert.renewal.chain.iter().map(|p| p.display().to_string()));
        files.extend(
            cert.renewal
                .fullchain
                .iter()
                .map(|p| p.display().to_string()),
        );
        files.extend(cert.renewal.pkcs12.iter().map(|p| p.display().to_string()));
        format!(
            "write the new version to {} (outside quiet hours), running the hooks around it",
            files.join(", ")
        )
    };
    let retire_what = if replaces {
        let overlap = cert.renewal.overlap.as_secs();
        if overlap > 0 {
            format!(
                "after the overlap of {}, ask the plugin to retire the old certificate",
                crate::human_time::format_span(overlap)
            )
        } else {
            "ask the plugin to retire the old certificate".to_owned()
        }
    } else {
        "end the run (there is no old certificate to retire)".to_owned()
    };
    let all = [
        (Phase::KeyGenerated, "key_generated", csr_what),
        (
            Phase::Ordered,
            "ordered",
            format!("ask the {} plugin to issue (then poll while it is pending)", cert.plugin),
        ),
        (
            Phase::Issued,
            "issued",
            match &cert.renewal.issuer_trust {
                Some(trust) => format!(
                    "check the issued chain against the key, the profile and trust set `{trust}`, and stage it"
                ),
                None => "check the issued chain against the key and the profile, and stage it".to_owned(),
            },
        ),
        (
            Phase::Registered,
            "registered",
            "let the plugin check the staged certificate, then register it with the authorities that must know it".to_owned(),
        ),
        (Phase::Installed, "installed", install_what),
        (
            Phase::Verified,
            "verified",
            match cert.renewal.verify_deploy().map_or(0, |v| v.endpoints.len()) {
                0 => "ask the plugin to verify that the authorities accept it".to_owned(),
                n => format!(
                    "check that the {n} configured endpoint(s) serve the new certificate, then ask the plugin to verify that the authorities accept it"
                ),
            },
        ),
        (Phase::Retired, "retired", retire_what),
    ];
    all.into_iter()
        .filter(|(p, ..)| phase.is_none_or(|done| *p > done))
        .map(|(_, step, what)| DryStep {
            step: step.to_owned(),
            what,
        })
        .collect()
}

/// The key, subject and SANs the CSR would have.
fn describe_profile(
    cert: &ManagedCertificate,
    profile: &CsrProfile,
) -> (String, Vec<String>, Vec<String>) {
    let algorithm = cert.renewal.key_type.unwrap_or(profile.key);
    let key = match cert.renewal.key_policy {
        KeyPolicy::Reuse => format!(
            "no new key: the live key is kept (key_policy = \"reuse\"); the profile asks for {}",
            algorithm.as_str()
        ),
        KeyPolicy::Rotate => format!("a new {} key", algorithm.as_str()),
        KeyPolicy::Prestage => format!(
            "the pre-staged {} key (key_policy = \"prestage\"; `certvakt show` gives its hash), or a new one when none is ready",
            algorithm.as_str()
        ),
    };
    let subject = profile
        .subject
        .iter()
        .map(|a| {
            let name = match a.oid.as_str() {
                oid::COUNTRY => "C",
                oid::ORGANIZATION => "O",
                oid::ORGANIZATIONAL_UNIT => "OU",
                oid::COMMON_NAME => "CN",
                oid::SERIAL_NUMBER => "serialNumber",
                oid::LOCALITY => "L",
                oid::ORGANIZATION_IDENTIFIER => "organizationIdentifier",
                oid::EMAIL_ADDRESS => "emailAddress",
                other => other,
            };
            format!("{name}={}", a.value)
        })
        .collect();
    let sans = profile
        .sans
        .iter()
        .map(|s| match s {
            SubjectAltName::Dns(v) => format!("DNS:{v}"),
            SubjectAltName::Ip(v) => format!("IP:{v}"),
            SubjectAltName::Email(v) => format!("email:{v}"),
            SubjectAltName::Uri(v) => format!("URI:{v}"),
        })
        .collect();
    (key, subject, sans)
}

/// The configured hooks, in the order they run, and the endpoints probed after them.
fn hooks(cert: &ManagedCertificate) -> Vec<String> {
    [
        ("pre_hook", &cert.renewal.pre_hook),
        ("deploy_hook", &cert.renewal.deploy_hook),
        ("post_hook", &cert.renewal.post_hook),
    ]
    .into_iter()
    .filter_map(|(name, hook)| {
        hook.as_ref()
            .map(|argv| format!("{name}: {}", argv.join(" ")))
    })
    .chain(cert.renewal.verify_deploy().into_iter().flat_map(|verify| {
        verify.endpoints.iter().map(|endpoint| {
            format!(
                "verify: {} serves the new certificate within {}{}",
                endpoint.describe(),
                verify.window,
                if verify.rollback {
                    ", or the previous version is put back"
                } else {
                    ""
                }
            )
        })
    }))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn cert() -> ManagedCertificate {
        ManagedCertificate::new(
            "shop",
            "/etc/certvakt/certs/shop.pem".into(),
            "manual",
            Origin {
                file: "/etc/certvakt/certvakt.toml".into(),
                line: 1,
            },
        )
    }

    #[test]
    fn the_steps_follow_the_engine_order_and_skip_retire_without_an_old_certificate() {
        let first = steps(&cert(), false, None);
        let names: Vec<&str> = first.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(
            names,
            [
                "key_generated",
                "ordered",
                "issued",
                "registered",
                "installed",
                "verified",
                "retired"
            ]
        );
        assert!(
            first[6].what.contains("no old certificate"),
            "{:?}",
            first[6]
        );
        let replacing = steps(&cert(), true, None);
        assert!(
            replacing[6].what.contains("retire the old"),
            "{:?}",
            replacing[6]
        );
        let later = steps(&cert(), true, Some(Phase::Ordered));
        assert_eq!(later[0].step, "issued");
    }

    #[test]
    fn the_profile_is_told_with_the_configured_key_type_and_hooks() {
        let mut cert = cert();
        cert.renewal.key_type = Some(certvakt_plugin_api::profile::KeyAlgorithm::EcP384);
        cert.renewal.deploy_hook = Some(vec![
            "/usr/bin/systemctl".into(),
            "reload".into(),
            "nginx".into(),
        ]);
        let profile: CsrProfile = serde_json::from_value(serde_json::json!({
            "key": "rsa3072",
            "subject": [{"oid": "2.5.4.3", "value": "shop.example"}],
            "sans": [{"type": "dns", "value": "shop.example"}],
        }))
        .expect("profile");
        let (key, subject, sans) = describe_profile(&cert, &profile);
        assert_eq!(key, "a new ec-p384 key");
        assert_eq!(subject, ["CN=shop.example"]);
        assert_eq!(sans, ["DNS:shop.example"]);
        assert_eq!(
            hooks(&cert),
            ["deploy_hook: /usr/bin/systemctl reload nginx"]
        );
        cert.renewal.verify_mut().endpoints = vec![crate::config::VerifyEndpoint {
            address: "127.0.0.1:443".into(),
            sni: Some("shop.example".into()),
            starttls: None,
        }];
        cert.renewal.verify_mut().rollback = true;
        assert_eq!(
            hooks(&cert)[1],
            "verify: 127.0.0.1:443 (SNI shop.example) serves the new certificate within 2m, or the previous version is put back"
        );
        assert!(
            steps(&cert, true, None)[5]
                .what
                .starts_with("check that the 1 configured endpoint(s) serve")
        );
    }

    #[test]
    fn a_cancelled_certificate_is_not_due_and_a_missing_one_is_a_first_issue() {
        let cert = cert();
        let facts = CertFacts {
            pem: String::new(),
            subject: "CN=shop".into(),
            serial: "0a".into(),
            not_before: 0,
            not_after: 300,
            identities: Vec::new(),
        };
        let mut record = Record::default();
        let (due, _, why) = due_now(&cert, &record, Some(&facts), 1_000);
        assert!(due, "{why}");
        record.cancelled = Some(super::super::Cancelled {
            at: 900,
            serial: Some("0a".into()),
        });
        let (due, at, why) = due_now(&cert, &record, Some(&facts), 1_000);
        assert!(!due && at.is_none(), "{why}");
        let (due, _, why) = due_now(&cert, &Record::default(), None, 1_000);
        assert!(due && why.contains("first issue"), "{why}");
        record.cancelled = Some(super::super::Cancelled {
            at: 900,
            serial: None,
        });
        let (due, _, why) = due_now(&cert, &record, None, 1_000);
        assert!(
            !due && why.contains("cancelled"),
            "a cancelled first issue waits: {why}"
        );
    }
}
