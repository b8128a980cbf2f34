//! `certvakt renew ID --wait`: following a renewal run to its end, step by step.
//!
//! Contract:
//! - [`Follow`] is pure (no I/O, no clock): it is handed the certificate's renewal as `show`
//!   reports it, one look after another, and says what to print and whether to stop.
//!   [`follow`] does the looking: `show ID` every [`POLL_INTERVAL`] on the CLI's connection,
//!   until [`Follow`] stops or the timeout passes.
//! - Every step the run completes is printed once, in order (`web: ordered`), those taken
//!   between two looks included: a run takes its steps one after another.
//! - It stops with [`Exit::Ok`] when the run is over and the certificate was renewed
//!   (`last_success` moved), or when no run is going on (the renew answer said why); with
//!   [`Exit::Warning`] when the run waits for a person (every open task: its id, title and how
//!   to complete it), when a step fails (the error, and when certvaktd tries again), or when
//!   the run ended without a new certificate; with [`Exit::Unknown`] when the timeout passes
//!   first. A failure shown before the renew does not stop it at once: renew retries that step
//!   now, and only its outcome counts.
//! - Progress goes to stdout, the reason for stopping short to stderr as `certvakt: …`
//!   sentences; with `--json` nothing but JSON goes to stdout (the last `show` answer).

use std::io::Write;
use std::time::{Duration, Instant};

use super::Exit;
use super::render::{format_span, format_time};
use crate::control::client::Client;
use crate::control::protocol::{Completion, Phase, Renewal, Request, Response, Task};

/// How often the renewal is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Looks at a certificate with no run and nothing changed before concluding that no run is
/// going on (the renew answer said why): the engine publishes what a command did at once,
/// and these cover the time between its answer and the view, should they ever drift apart.
const IDLE_LOOKS: u32 = 3;

/// What one look says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    /// Lines for stdout.
    pub out: Vec<String>,
    /// `certvakt: …` lines for stderr.
    pub err: Vec<String>,
    /// `None`: look again.
    pub stop: Option<Exit>,
}

/// Following one certificate's renewal; see the module contract.
#[derive(Debug, Clone)]
pub struct Follow {
    id: String,
    /// The renewal before the renew request.
    before: Option<Renewal>,
    /// Index in [`Phase::ALL`] of the next step to print.
    next_step: usize,
    /// A run was seen (or was going on before the request).
    seen_run: bool,
    idle_looks: u32,
}

impl Follow {
    /// Follows `id`, whose renewal was `before` when renew was asked for.
    pub fn new(id: &str, before: Option<Renewal>) -> Follow {
        let in_progress = before.as_ref().and_then(|r| r.phase);
        Follow {
            id: id.to_owned(),
            // A run in progress: its current step is printed first.
            next_step: in_progress.map_or(0, index),
            seen_run: in_progress.is_some(),
            before,
            idle_looks: 0,
        }
    }

    /// What the renewal as `show` reports it `now` means.
    pub fn look(&mut self, renewal: &Renewal, now: i64) -> Look {
        let mut look = Look {
            out: Vec::new(),
            err: Vec::new(),
            stop: None,
        };
        if let Some(phase) = renewal.phase {
            self.seen_run = true;
            self.print_steps_to(index(phase) + 1, &mut look);
            if !renewal.open_tasks.is_empty() {
                for task in &renewal.open_tasks {
                    look.err.push(waits_for(task, &self.id));
                }
                look.stop = Some(Exit::Warning);
            } else if self.failed_anew(renewal) {
                look.err.push(self.failing(renewal, phase, now));
                look.stop = Some(Exit::Warning);
            }
            return look;
        }
        let success_before = self.before.as_ref().and_then(|r| r.last_success);
        match renewal.last_success {
            Some(at) if Some(at) != success_before => {
                self.print_steps_to(Phase::ALL.len(), &mut look);
                look.out.push(format!(
                    "renewal of {} completed at {}: the new certificate is in use",
                    self.id,
                    format_time(at)
                ));
                look.stop = Some(Exit::Ok);
            }
            _ if self.seen_run => {
                let why = renewal
                    .last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                look.err.push(format!(
                    "the renewal run of {} ended without a new certificate{why}",
                    self.id
                ));
                look.stop = Some(Exit::Warning);
            }
            _ => {
                self.idle_looks += 1;
                if self.idle_looks >= IDLE_LOOKS {
                    look.out.push(format!(
                        "no renewal of {} is in progress: nothing to wait for",
                        self.id
                    ));
                    look.stop = Some(Exit::Ok);
                }
            }
        }
        look
    }

    /// Prints the steps from the next one up to (not including) `end`, an index in
    /// [`Phase::ALL`]; `due` is no step taken, only the run's start.
    fn print_steps_to(&mut self, end: usize, look: &mut Look) {
        for phase in Phase::ALL.iter().take(end).skip(self.next_step) {
            if *phase != Phase::Due {
                look.out.push(format!("{}: {}", self.id, phase.as_str()));
            }
        }
        self.next_step = self.next_step.max(end);
    }

    /// A failure that is not the one shown before the request (renew retries that one).
    fn failed_anew(&self, renewal: &Renewal) -> bool {
        if renewal.failures == 0 {
            return false;
        }
        match &self.before {
            Some(before) => {
                (before.failures, &before.last_error) != (renewal.failures, &renewal.last_error)
            }
            None => true,
        }
    }

    fn failing(&self, renewal: &Renewal, phase: Phase, now: i64) -> String {
        let error = renewal
            .last_error
            .as_deref()
            .unwrap_or("(certvaktd gave no reason)");
        let again = match renewal.next_at {
            Some(at) if at > now => format!(
                "certvaktd tries again at {} (in {}), or at once with `certvakt renew {}`",
                format_time(at),
                format_span((at - now).unsigned_abs()),
                self.id
            ),
            _ => format!(
                "certvaktd tries again shortly, or at once with `certvakt renew {}`",
                self.id
            ),
        };
        format!(
            "the renewal of {} is failing after step {} ({} time(s) in a row): {error}; {again}",
            self.id,
            phase.as_str(),
            renewal.failures
        )
    }
}

fn index(phase: Phase) -> usize {
    Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0)
}

/// The sentence for an open task: which, what, and how it completes.
fn waits_for(task: &Task, id: &str) -> String {
    let how = match task.completes_by {
        Completion::Import => format!(
            "complete it by importing the certificate: `certvakt import {} FILE`",
            task.cert_id
        ),
        Completion::Confirm => format!(
            "when it is done, say so with `certvakt task done {}`",
            task.id
        ),
        Completion::Poll => format!(
            "it completes by itself once the authority shows it done; `certvakt renew {id} --wait` follows the run again"
        ),
    };
    format!(
        "the renewal of {id} waits for a person: task {} \"{}\"; {how} (`certvakt task show {}` has the instructions)",
        task.id, task.title, task.id
    )
}

/// The renewal of `id` as `show` reports it, or the exit for a failed look.
fn show(client: &mut Client, id: &str, err: &mut dyn Write) -> Result<Response, Exit> {
    match client.request(&Request::Show { id: id.to_owned() }) {
        Ok(response) => Ok(response),
        Err(e) => {
            let _ = writeln!(err, "certvakt: {e}");
            Err(super::exit_for_client_error(&e))
        }
    }
}

/// The renewal of `id` before the renew request, when `show` gives one.
pub fn renewal_before(client: &mut Client, id: &str) -> Option<Renewal> {
    match client.request(&Request::Show { id: id.to_owned() }) {
        Ok(Response::Show(report)) => report.renewal,
        _ => None,
    }
}

/// Follows the run of `id` on `client` until [`Follow`] stops or `timeout` passes; with
/// `json`, prints the last `show` answer as JSON instead of the progress lines.
pub fn follow(
    client: &mut Client,
    id: &str,
    before: Option<Renewal>,
    timeout: Option<Duration>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let started = Instant::now();
    let mut follow = Follow::new(id, before);
    loop {
        let response = match show(client, id, err) {
            Ok(response) => response,
            Err(exit) => return exit,
        };
        let renewal = match &response {
            Response::Show(report) => report.renewal.clone(),
            Response::Error { code, message } => {
                let _ = writeln!(err, "certvakt: {message}");
                return super::exit_for_error_code(*code);
            }
            other => {
                let _ = writeln!(
                    err,
                    "certvakt: certvaktd answered a show request with a {} response; use the certvakt CLI of the same package version",
                    other.name()
                );
                return Exit::Unknown;
            }
        };
        let Some(renewal) = renewal else {
            let _ = writeln!(
                err,
                "certvakt: certvaktd no longer shows a renewal for {id}: see `certvakt status`"
            );
            return Exit::Unknown;
        };
        let look = follow.look(&renewal, crate::now_unix());
        if !json {
            for line in &look.out {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
        for line in &look.err {
            let _ = writeln!(err, "certvakt: {line}");
        }
        if let Some(exit) = look.stop {
            if json {
                super::print_json(out, err, &response);
            }
            return exit;
        }
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                let step = renewal.phase.map_or("none", Phase::as_str);
                let _ = writeln!(
                    err,
                    "certvakt: the renewal of {id} is still going after {} (last step: {step}); `certvakt status` shows how it goes",
                    format_span(limit.as_secs())
                );
                if json {
                    super::print_json(out, err, &response);
                }
                return Exit::Unknown;
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn renewal(phase: Option<Phase>) -> Renewal {
        Renewal {
            id: "web".into(),
            plugin: "manual".into(),
            plugin_loaded: true,
            phase,
            step: phase,
            next_at: None,
            failures: 0,
            last_error: None,
            last_success: Some(1_700_000_000),
            open_tasks: Vec::new(),
            suggested_window: None,
            notes: Vec::new(),
            next_key: None,
        }
    }

    fn order_task() -> Task {
        Task {
            id: "web-2-1".into(),
            cert_id: "web".into(),
            phase: Phase::Ordered,
            step: Phase::Ordered,
            title: "Order the certificate web from Test CA".into(),
            instructions: "…".into(),
            files: Vec::new(),
            completes_by: Completion::Import,
            opened_at: NOW,
            closed_at: None,
        }
    }

    #[test]
    fn a_new_run_prints_every_step_and_stops_at_the_order_task() {
        let idle = renewal(None);
        let mut follow = Follow::new("web", Some(idle.clone()));
        let look = follow.look(&renewal(Some(Phase::Due)), NOW);
        assert_eq!(look.out, Vec::<String>::new(), "due is no step taken");
        assert_eq!(look.stop, None);
        // Two steps between two looks: both printed, in order.
        let look = follow.look(&renewal(Some(Phase::Ordered)), NOW);
        assert_eq!(look.out, ["web: key_generated", "web: ordered"]);
        assert_eq!(look.stop, None);
        let waiting = Renewal {
            open_tasks: vec![order_task()],
            ..renewal(Some(Phase::Ordered))
        };
        let look = follow.look(&waiting, NOW);
        assert!(look.out.is_empty(), "ordered is printed once: {look:?}");
        assert_eq!(look.stop, Some(Exit::Warning));
        assert_eq!(
            look.err,
            [
                "the renewal of web waits for a person: task web-2-1 \"Order the certificate web from Test CA\"; complete it by importing the certificate: `certvakt import web FILE` (`certvakt task show web-2-1` has the instructions)"
            ]
        );
    }

    #[test]
    fn a_run_in_progress_is_followed_from_its_step_to_the_end() {
        let before = renewal(Some(Phase::Issued));
        let mut follow = Follow::new("web", Some(before.clone()));
        let look = follow.look(&before, NOW);
        assert_eq!(look.out, ["web: issued"]);
        let look = follow.look(&renewal(Some(Phase::Verified)), NOW);
        assert_eq!(
            look.out,
            ["web: registered", "web: installed", "web: verified"]
        );
        let done = Renewal {
            last_success: Some(NOW),
            ..renewal(None)
        };
        let look = follow.look(&done, NOW);
        assert_eq!(
            look.out,
            [
                "web: retired".to_owned(),
                format!(
                    "renewal of web completed at {}: the new certificate is in use",
                    format_time(NOW)
                )
            ]
        );
        assert_eq!(look.stop, Some(Exit::Ok));
        assert!(look.err.is_empty());
    }

    #[test]
    fn a_run_over_before_the_first_look_still_counts_as_done() {
        let mut follow = Follow::new("web", Some(renewal(None)));
        let done = Renewal {
            last_success: Some(NOW),
            ..renewal(None)
        };
        let look = follow.look(&done, NOW);
        assert_eq!(look.stop, Some(Exit::Ok));
        assert_eq!(look.out.len(), 8, "seven steps and the end: {look:?}");
    }

    #[test]
    fn a_new_failure_stops_with_the_error_and_the_retry_time() {
        let before = Renewal {
            failures: 1,
            last_error: Some("CA busy".into()),
            ..renewal(Some(Phase::Ordered))
        };
        let mut follow = Follow::new("web", Some(before.clone()));
        // The failure shown before the request: renew retries it now, so look again.
        let look = follow.look(&before, NOW);
        assert_eq!(look.stop, None, "{look:?}");
        let failing = Renewal {
            failures: 2,
            last_error: Some("plugin manual poll: temporary: CA busy".into()),
            next_at: Some(NOW + 300),
            ..before
        };
        let look = follow.look(&failing, NOW);
        assert_eq!(look.stop, Some(Exit::Warning));
        assert_eq!(
            look.err,
            [format!(
                "the renewal of web is failing after step ordered (2 time(s) in a row): plugin manual poll: temporary: CA busy; certvaktd tries again at {} (in 5m), or at once with `certvakt renew web`",
                format_time(NOW + 300)
            )]
        );
    }

    #[test]
    fn nothing_to_wait_for_when_no_run_starts() {
        let idle = renewal(None);
        let mut follow = Follow::new("web", Some(idle.clone()));
        for _ in 1..IDLE_LOOKS {
            assert_eq!(follow.look(&idle, NOW).stop, None);
        }
        let look = follow.look(&idle, NOW);
        assert_eq!(look.stop, Some(Exit::Ok));
        assert_eq!(
            look.out,
            ["no renewal of web is in progress: nothing to wait for"]
        );
    }

    #[test]
    fn a_run_that_ends_without_a_certificate_is_a_warning() {
        let mut follow = Follow::new("web", Some(renewal(Some(Phase::KeyGenerated))));
        let gone = Renewal {
            last_error: Some("the pending key is gone".into()),
            ..renewal(None)
        };
        let look = follow.look(&gone, NOW);
        assert_eq!(look.stop, Some(Exit::Warning));
        assert_eq!(
            look.err,
            ["the renewal run of web ended without a new certificate: the pending key is gone"]
        );
    }

    #[test]
    fn every_way_a_task_completes_is_explained() {
        let confirm = Task {
            completes_by: Completion::Confirm,
            ..order_task()
        };
        assert!(waits_for(&confirm, "web").contains("`certvakt task done web-2-1`"));
        let poll = Task {
            completes_by: Completion::Poll,
            ..order_task()
        };
        assert!(waits_for(&poll, "web").contains("completes by itself"));
    }
}
