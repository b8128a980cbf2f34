//! Operator tasks: a step that needs a person, written out so the person can do it.
//!
//! Contract:
//! - A task is `<cert-id>-<run>-<n>`, its files in `outbox/<task id>/` (0640): an
//!   `instructions.txt` that says what to do and how it completes, and the files the plugin
//!   asked for (the run's CSR, the new or the replaced certificate, text or bytes).
//! - The same step asking again while its task is open is the same task, not a second one.
//! - A task is filed under the step it leads to, and closes when that step completes (or by
//!   `certvakt task done` / an import, as it says).
//! - Ids are never reused within a record: the next is one past the highest in use, so the id
//!   the host gave a plugin during a call is the id the task is filed under.

use certvakt_plugin_api::messages::TaskFileContent;
use certvakt_plugin_api::{Completion, TaskSpec};

use super::{CertFacts, Core, EngineError, Phase, Record, Task};
use crate::config::ManagedCertificate;
use crate::keys;
use crate::store;

/// What a task's files may hold: the run's CSR, the certificate being replaced and the new
/// one (once issued).
#[derive(Debug, Clone, Default)]
pub(super) struct Certificates {
    pub csr_pem: Option<String>,
    pub old: Option<CertFacts>,
    pub new: Option<CertFacts>,
}

impl Certificates {
    /// What the run in progress of `record` has.
    pub fn of(record: &Record) -> Certificates {
        record
            .run
            .as_ref()
            .map_or_else(Certificates::default, |run| Certificates {
                csr_pem: run.csr_pem.clone(),
                old: run.old.clone(),
                new: run.new.clone(),
            })
    }
}

/// The id the next task of `record` gets: `<cert>-<run>-<n>`, `n` one past the highest used.
pub(super) fn next_task_id(cert_id: &str, record: &Record) -> String {
    next_task_ids(cert_id, record).0
}

/// The next task id of `record`, and the prefix and number it is made of, for handing out
/// several in a row.
pub(super) fn next_task_ids(cert_id: &str, record: &Record) -> (String, String, usize) {
    let run = record.run.as_ref().map_or(0, |r| r.number);
    let prefix = format!("{cert_id}-{run}-");
    let highest = record
        .tasks
        .iter()
        .filter_map(|t| t.id.strip_prefix(&prefix)?.parse::<usize>().ok())
        .max()
        .unwrap_or(0)
        .max(record.tasks.len());
    let n = highest + 1;
    (format!("{prefix}{n}"), prefix, n)
}

impl Core {
    /// Files a task under `phase`: its instructions and files in the outbox, then the record.
    /// `id` is the one the host already gave the plugin, or `None` for the next free one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_task(
        &self,
        cert: &ManagedCertificate,
        record: &mut Record,
        phase: Phase,
        spec: TaskSpec,
        id: Option<String>,
        certificates: Certificates,
        now: i64,
    ) -> Result<(), EngineError> {
        // The same step asking again while its task is open is the same task.
        if record
            .open_tasks()
            .any(|t| Some(&t.id) == id.as_ref() || (t.phase == phase && t.title == spec.title))
        {
            return Ok(());
        }
        let id = id.unwrap_or_else(|| next_task_id(&cert.id, record));
        let folder = self.store.outbox(&cert.id)?.join(&id);
        std::fs::create_dir_all(&folder)
            .map_err(|e| EngineError::Other(format!("cannot create {}: {e}", folder.display())))?;
        let mut files = Vec::new();
        let instructions = format!(
            "{}\n\n{}\n\nCertificate: {}\nTask: {}\nWhen done: {}\n",
            spec.title,
            spec.instructions,
            cert.id,
            id,
            match spec.completes_by {
                Completion::Import => format!(
                    "certvakt import {} <file>  (or drop the file into {})",
                    cert.id,
                    self.store.inbox(&cert.id)?.display()
                ),
                Completion::Confirm => format!("certvakt task done {id}"),
                Completion::Poll => "nothing: certvakt notices by itself".into(),
            }
        );
        let mut write = |name: &str, bytes: &[u8]| -> Result<(), EngineError> {
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = folder.join(safe);
            store::atomic::write_file(&path, bytes, &store::FileSpec::mode(0o640))?;
            files.push(path);
            Ok(())
        };
        write("instructions.txt", instructions.as_bytes())?;
        for file in &spec.files {
            let bytes: Option<Vec<u8>> = match &file.content {
                TaskFileContent::Text(text) => Some(text.clone().into_bytes()),
                TaskFileContent::Base64(bytes) => Some(bytes.clone()),
                TaskFileContent::Csr => {
                    certificates.csr_pem.as_ref().map(|c| c.as_bytes().to_vec())
                }
                TaskFileContent::CertificatePem => certificates
                    .new
                    .as_ref()
                    .map(|c| c.pem.clone().into_bytes()),
                TaskFileContent::CertificateDer => certificates.new.as_ref().and_then(leaf_der),
                TaskFileContent::PreviousCertificateDer => {
                    certificates.old.as_ref().and_then(leaf_der)
                }
            };
            if let Some(bytes) = bytes {
                write(&file.name, &bytes)?;
            }
        }
        log::warn!(
            cert_id = cert.id.as_str(), task_id = id.as_str(), step = phase.as_str();
            "operator task opened: {} (see `certvakt task show {id}`)", spec.title
        );
        record.tasks.push(Task {
            id,
            cert_id: cert.id.clone(),
            phase,
            title: spec.title,
            instructions: spec.instructions,
            files,
            completes_by: spec.completes_by,
            opened_at: now,
            closed_at: None,
        });
        Ok(())
    }
}

/// Closes the open tasks filed under `phase`.
pub(super) fn close_tasks(record: &mut Record, phase: Phase, now: i64) {
    for task in record
        .tasks
        .iter_mut()
        .filter(|t| t.phase == phase && t.closed_at.is_none())
    {
        task.closed_at = Some(now);
        log::info!(cert_id = task.cert_id.as_str(), task_id = task.id.as_str(); "operator task completed");
    }
}

/// The leaf of a certificate, DER.
fn leaf_der(facts: &CertFacts) -> Option<Vec<u8>> {
    keys::parse_certificate_chain(facts.pem.as_bytes())
        .ok()
        .and_then(|ders| ders.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Run;

    fn task(id: &str, title: &str, closed: bool) -> Task {
        Task {
            id: id.into(),
            cert_id: "web".into(),
            phase: Phase::Ordered,
            title: title.into(),
            instructions: String::new(),
            files: Vec::new(),
            completes_by: Completion::Confirm,
            opened_at: 0,
            closed_at: closed.then_some(1),
        }
    }

    fn record(run: u64, tasks: Vec<Task>) -> Record {
        Record {
            run: Some(Box::new(Run {
                phase: Phase::Ordered,
                ..Run::new(run, crate::lifecycle::Reason::Requested, 0, None)
            })),
            tasks,
            ..Record::default()
        }
    }

    #[test]
    fn the_next_id_is_one_past_the_highest_of_the_run_and_never_reused() {
        assert_eq!(next_task_id("web", &record(2, Vec::new())), "web-2-1");
        // An earlier run's open task stays; ids of this run count from what is there.
        let r = record(
            3,
            vec![task("web-2-1", "a", false), task("web-3-5", "b", true)],
        );
        assert_eq!(next_task_id("web", &r), "web-3-6");
        assert_eq!(next_task_id("web", &Record::default()), "web-0-1");
    }

    #[test]
    fn the_host_hands_out_the_ids_the_engine_files_and_reuses_an_open_titles_id() {
        use crate::lifecycle::cert_services::TaskIds;
        let r = record(4, vec![task("web-4-1", "Order it", false)]);
        let mut ids = TaskIds::for_record("web", &r);
        assert_eq!(ids.assign_for_test("Order it"), "web-4-1");
        assert_eq!(ids.assign_for_test("Attach it"), "web-4-2");
        assert_eq!(ids.assign_for_test("Tell NHN"), "web-4-3");
        assert_eq!(ids.assign_for_test("Attach it"), "web-4-2");
    }
}
