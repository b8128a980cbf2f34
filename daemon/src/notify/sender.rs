//! The notifier: one task that looks at what the daemon knows, writes what is due to the
//! outbox, and delivers it.
//!
//! Contract:
//! - It looks when the daemon publishes a new state (at most every [`LOOK_EVERY`]), at once
//!   after a reload, and when the time alone makes something due ([`derive::next_change`]:
//!   a reminder, a certificate crossing `warn_before`; at the latest [`SEEN_REFRESH`] after
//!   the last look). An idle daemon with routes and nothing due is not woken. What
//!   [`super::derive`] finds due becomes one delivery per route that wants it, written to
//!   the outbox (and fsynced) before the first attempt. While the outbox cannot be written,
//!   nothing is sent.
//! - With no `[[notify]]` route, nothing is derived or recorded: a route added later is told
//!   of what is still open then. With no route and an empty outbox the loop does not wake
//!   by itself at all.
//! - Attempts run in tasks of their own, at most [`PARALLEL`] at once, each bounded by
//!   `[notifications] timeout`; the loop never waits for one. A delivery is removed from the
//!   outbox only after its attempt succeeded, so a crash between the two sends it again with
//!   the same id (the receiver can tell).
//! - `certvakt notify test` sends straight through the routes (not through the outbox) and
//!   answers with each route's result; a plugin's own mail is answered only once it is in the
//!   outbox on disk.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::channels::{self, SendError};
use super::deliver::{self, TestResult};
use super::derive::{self, Due, Snapshot};
use super::message::{Attachment, Message, content_type};
use super::outbox::{Delivery, Envelope, Outbox, State};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugin_host::HttpService;

/// The notifier looks at the daemon's state at most this often (a burst of changes is one
/// look).
pub const LOOK_EVERY: Duration = Duration::from_secs(2);
/// How long the loop sleeps with nothing to look for or send, if nothing wakes it.
const IDLE_LOOK: Duration = Duration::from_secs(86_400);
/// With routes, a look at least this often (seconds): the `seen_at` times of conditions
/// still holding are refreshed on disk, and a condition the time makes due is never later
/// than this even if [`derive::next_change`] missed it.
const SEEN_REFRESH: i64 = 3600;
/// At most this many attempts at once.
const PARALLEL: usize = 4;
/// At most this many bytes of files are attached to one message; the rest are named in it.
const ATTACH_LIMIT: u64 = 4 * 1024 * 1024;
/// How long an undeliverable message is kept after it was given up on.
const KEEP_UNDELIVERABLE: i64 = 30 * 86_400;
/// The route name of a plugin's own mail.
pub const PLUGIN_MAIL_ROUTE: &str = "plugin-mail";

/// What the notifier is asked.
#[derive(Debug)]
pub enum Request {
    /// Send a test message through one route (or all) now.
    Test {
        route: Option<String>,
        reply: oneshot::Sender<Result<Vec<TestResult>, String>>,
    },
    /// Try the undeliverable messages again.
    /// Answered once the outbox saying so is on disk.
    Retry {
        reply: oneshot::Sender<Result<usize, String>>,
    },
    /// The configuration was reloaded.
    Reconfigure(Arc<Config>),
    /// A plugin's own mail (to an authority): queued, answered once on disk.
    PluginMail {
        message: Box<Message>,
        envelope: Envelope,
        /// A plain channel: the plugin call's thread waits on it (with a timeout).
        reply: std::sync::mpsc::SyncSender<Result<String, String>>,
    },
}

/// The outbox as `certvakt status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxView {
    pub routes: usize,
    pub pending: usize,
    pub oldest_pending_at: Option<i64>,
    pub undeliverable: Vec<Undelivered>,
    pub last_sent_at: Option<i64>,
    /// Why the outbox could not be read or written, if so.
    pub problem: Option<String>,
}

/// A message given up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undelivered {
    pub id: String,
    pub route: String,
    pub event: String,
    pub subject: String,
    pub created_at: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The handle the daemon keeps: requests in, the view out.
#[derive(Debug, Clone)]
pub struct Notifier {
    requests: mpsc::Sender<Request>,
    view: Arc<RwLock<OutboxView>>,
}

impl Notifier {
    /// Asks the notifier; `Err` when it has stopped or is too busy to take it now.
    pub fn ask(&self, request: Request) -> Result<(), String> {
        self.requests.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                "the notifier is busy; try again in a moment".to_owned()
            }
            mpsc::error::TrySendError::Closed(_) => "the notifier has stopped".to_owned(),
        })
    }

    pub fn view(&self) -> OutboxView {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// What the notifier looks at: the daemon's state, when it is ready (`None` before the first
/// scan and the engine's first view).
pub type Look = Box<dyn FnMut() -> Option<Snapshot> + Send + Sync>;

/// What the notifier looks at, and what tells it to look.
pub struct Watching {
    pub look: Look,
    /// Notified whenever the daemon publishes a new state (inventory or engine view).
    pub changed: Arc<tokio::sync::Notify>,
    /// Look every [`LOOK_EVERY`] whatever changed: the test clock moves the time without
    /// telling the daemon.
    pub poll: bool,
}

impl std::fmt::Debug for Watching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watching")
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// The notifier's end of its handle, until it is started.
#[derive(Debug)]
pub struct Pending {
    requests: mpsc::Receiver<Request>,
    view: Arc<RwLock<OutboxView>>,
}

/// A handle to a notifier started later with [`start`]; requests wait until then.
pub fn handle() -> (Notifier, Pending) {
    let (tx, rx) = mpsc::channel(16);
    let view = Arc::new(RwLock::new(OutboxView::default()));
    (
        Notifier {
            requests: tx,
            view: view.clone(),
        },
        Pending { requests: rx, view },
    )
}

/// Starts the notifier of `pending` on the current runtime; it runs until `stop` resolves.
pub fn start(
    pending: Pending,
    config: Arc<Config>,
    http: Option<Arc<HttpService>>,
    metrics: Arc<Metrics>,
    watching: Watching,
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let sender = Sender {
        outbox: Outbox::new(&config.daemon.state_dir),
        config,
        http,
        metrics,
        look: watching.look,
        changed: watching.changed,
        poll: watching.poll,
        view: pending.view,
        state: State::default(),
        dirty: false,
        saved_seen_at: 0,
        problem: None,
        in_flight: BTreeSet::new(),
        waiting_for_save: Vec::new(),
        retries_waiting: Vec::new(),
        last_sent_at: None,
        host: channels::host_name(),
    };
    tokio::spawn(sender.run(pending.requests, stop))
}

struct Sender {
    outbox: Outbox,
    config: Arc<Config>,
    http: Option<Arc<HttpService>>,
    metrics: Arc<Metrics>,
    look: Look,
    changed: Arc<tokio::sync::Notify>,
    poll: bool,
    view: Arc<RwLock<OutboxView>>,
    state: State,
    /// The state in memory differs from the file.
    dirty: bool,
    /// The snapshot time `seen_at` times were last written at (they alone do not make the
    /// state dirty).
    saved_seen_at: i64,
    problem: Option<String>,
    in_flight: BTreeSet<String>,
    /// Plugin mails to answer once the outbox holding them is on disk.
    waiting_for_save: Vec<(String, std::sync::mpsc::SyncSender<Result<String, String>>)>,
    /// `notify retry` answers (with how many were queued again), likewise after the save.
    retries_waiting: Vec<(oneshot::Sender<Result<usize, String>>, usize)>,
    last_sent_at: Option<i64>,
    host: String,
}

type Attempt = (String, Result<String, SendError>);

impl Sender {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>, stop: impl Future<Output = ()>) {
        let outbox = self.outbox.clone();
        let (state, problem) = tokio::task::spawn_blocking(move || outbox.load())
            .await
            .unwrap_or_else(|e| {
                (
                    State::default(),
                    Some(format!("loading the outbox stopped: {e}")),
                )
            });
        if let Some(problem) = &problem {
            log::error!("{problem}");
        }
        self.state = state;
        self.state.version = super::outbox::VERSION;
        self.problem = problem;
        self.saved_seen_at = crate::now_unix();
        let mut attempts: JoinSet<Attempt> = JoinSet::new();
        // The first look at once: the notifier starts after the first scan is published.
        let mut next_look = Some(tokio::time::Instant::now());
        let mut last_look: Option<tokio::time::Instant> = None;
        tokio::pin!(stop);
        loop {
            // A look when the daemon's state changed (at most every LOOK_EVERY), after a
            // reload, and when the time alone makes something due (a reminder, a threshold
            // crossed; at the latest SEEN_REFRESH after the last). Nothing else wakes it: an
            // idle daemon with routes and nothing due sleeps.
            let now_instant = tokio::time::Instant::now();
            if next_look.is_some_and(|at| now_instant >= at) {
                last_look = Some(now_instant);
                let again = self.take_look().await;
                self.expire_undeliverable(crate::now_unix());
                next_look = self.next_timed_look(now_instant, again);
            }
            if self.dirty {
                self.save().await;
            }
            if !self.dirty {
                self.start_attempts(&mut attempts);
            }
            self.publish();
            let now = crate::now_unix();
            let next_due = self
                .state
                .queue
                .iter()
                .filter(|d| d.gave_up_at.is_none() && !self.in_flight.contains(&d.id))
                .map(|d| d.next_at)
                .min();
            let far = tokio::time::Instant::now() + IDLE_LOOK;
            let look_at = next_look.unwrap_or(far);
            let wake = match next_due {
                Some(at) if at > now => look_at.min(
                    tokio::time::Instant::now()
                        + Duration::from_secs(u64::try_from(at - now).unwrap_or(0)),
                ),
                Some(_) if !self.dirty && self.in_flight.len() < PARALLEL => {
                    tokio::time::Instant::now()
                }
                _ => look_at,
            };
            tokio::select! {
                () = &mut stop => break,
                request = requests.recv() => match request {
                    Some(request) => {
                        if matches!(request, Request::Reconfigure(_)) {
                            next_look = Some(tokio::time::Instant::now());
                        }
                        self.request(request);
                    }
                    None => break,
                },
                // With no route a change needs no look (a reload that adds one looks at once).
                () = self.changed.notified(), if !self.config.notify.is_empty() => {
                    let soonest = last_look.map_or_else(tokio::time::Instant::now, |at| at + LOOK_EVERY);
                    next_look = Some(next_look.map_or(soonest, |at| at.min(soonest)));
                }
                Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                    if let Ok((id, result)) = done {
                        self.finished(&id, result);
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
        // Attempts still running are dropped; their deliveries stay in the outbox and go
        // at the next start, with the same ids.
        attempts.abort_all();
        if self.dirty {
            self.save().await;
        }
    }

    /// When to look again with nothing changing: when the time alone makes something due
    /// (`again`, from the look at `looked`), at the latest [`SEEN_REFRESH`] after it; never
    /// with no route (a reload that adds one wakes the loop). With the test clock, every
    /// [`LOOK_EVERY`]: the test moves the time without telling the daemon.
    fn next_timed_look(
        &self,
        looked: tokio::time::Instant,
        again: Option<Duration>,
    ) -> Option<tokio::time::Instant> {
        let refresh = Duration::from_secs(SEEN_REFRESH.unsigned_abs());
        if self.config.notify.is_empty() {
            // Only a plugin's own mail (no route): given-up ones still expire.
            return (!self.state.queue.is_empty()).then(|| looked + refresh);
        }
        if self.poll {
            return Some(looked + LOOK_EVERY);
        }
        Some(looked + again.map_or(refresh, |d| d.min(refresh)).max(LOOK_EVERY))
    }

    /// Derives what is due and queues it; returns how soon the time alone could make
    /// something else due (`None`: nothing to look at yet, or no route).
    async fn take_look(&mut self) -> Option<Duration> {
        if self.config.notify.is_empty() {
            return None;
        }
        let snapshot = (self.look)()?;
        let (dues, ledger) = derive::due(&snapshot, &self.state.told, &self.config.notifications);
        let again = derive::next_change(&snapshot, &ledger, &self.config.notifications)
            .map(|at| Duration::from_secs(u64::try_from(at - snapshot.now).unwrap_or(0)));
        let changed = !dues.is_empty() || !same_told(&ledger, &self.state.told);
        let seen_stale = snapshot.now - self.saved_seen_at >= SEEN_REFRESH;
        if !changed && !seen_stale {
            return again;
        }
        // Deliveries run on the real clock (the snapshot's may be a test clock).
        let now = crate::now_unix();
        for due in dues {
            let message = self.message(&due, now).await;
            let cert = due.cert_id.as_deref().map(|id| (id, due.plugin.as_deref()));
            for route in self
                .config
                .notify
                .iter()
                .filter(|r| r.wants(due.event, cert))
            {
                let id = format!("{}.{}", message.id, route.name);
                if self.state.queue.iter().any(|d| d.id == id) {
                    continue;
                }
                log::info!(
                    route = route.name.as_str(), event = due.event.as_str(),
                    cert_id = due.cert_id.as_deref().unwrap_or("");
                    "notification queued: {}", message.subject
                );
                self.state.queue.push(Delivery {
                    id,
                    route: route.name.clone(),
                    channel: route.channel.as_str().to_owned(),
                    message: message.clone(),
                    envelope: None,
                    created_at: now,
                    attempts: 0,
                    next_at: now,
                    last_error: None,
                    gave_up_at: None,
                });
            }
        }
        self.state.told = ledger;
        self.saved_seen_at = snapshot.now;
        self.trim_queue();
        self.dirty = true;
        again
    }

    /// The message of `due`, its files read (bounded) off the runtime thread.
    async fn message(&self, due: &Due, now: i64) -> Message {
        let files = due.files.clone();
        let attachments = tokio::task::spawn_blocking(move || read_attachments(&files))
            .await
            .unwrap_or_default();
        let mut body = due.body.clone();
        let attached: BTreeSet<&str> = attachments.iter().map(|a| a.name.as_str()).collect();
        let missing: Vec<String> = due
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !attached.contains(n.as_str()))
            .collect();
        if !missing.is_empty() {
            body.push_str(&format!(
                "\nNot attached (too large or unreadable; see the task's folder): {}\n",
                missing.join(", ")
            ));
        }
        Message {
            id: due.id(),
            event: due.event,
            cert_id: due.cert_id.clone(),
            task_id: due.task_id.clone(),
            plugin: due.plugin.clone(),
            created_at: now,
            deadline: due.deadline,
            subject: due.subject.clone(),
            body,
            attachments,
            details: due.details.clone(),
        }
    }

    /// Keeps the queue within [`super::outbox::MAX_QUEUE`], dropping undeliverable ones first.
    fn trim_queue(&mut self) {
        let max = super::outbox::MAX_QUEUE;
        while self.state.queue.len() > max {
            let at = self
                .state
                .queue
                .iter()
                .position(|d| d.gave_up_at.is_some())
                .unwrap_or(0);
            let dropped = self.state.queue.remove(at);
            log::error!(
                route = dropped.route.as_str();
                "the notification outbox holds more than {max} messages; dropped the oldest undeliverable one: {}",
                dropped.message.subject
            );
        }
    }

    /// A route the operator removed takes its undelivered messages with it (said in the
    /// journal); a plugin's own mail has no route and stays.
    fn drop_removed_routes(&mut self) {
        let config = self.config.clone();
        let before = self.state.queue.len();
        self.state.queue.retain(|d| {
            let keep = d.envelope.is_some() || config.notify.iter().any(|r| r.name == d.route);
            if !keep {
                log::warn!(
                    route = d.route.as_str(), notify_id = d.id.as_str();
                    "route {} is no longer configured; its undelivered message is dropped: {}",
                    d.route, d.message.subject
                );
            }
            keep
        });
        if self.state.queue.len() != before {
            self.dirty = true;
        }
    }

    /// Undeliverable messages are kept for [`KEEP_UNDELIVERABLE`] after they were given up
    /// on (status shows them, `notify retry` sends them again), then dropped with a line in
    /// the journal and a count in the metrics.
    fn expire_undeliverable(&mut self, now: i64) {
        let metrics = self.metrics.clone();
        let before = self.state.queue.len();
        self.state.queue.retain(|d| {
            let expired = d
                .gave_up_at
                .is_some_and(|at| now - at >= KEEP_UNDELIVERABLE);
            if expired {
                log::error!(
                    route = d.route.as_str(), notify_id = d.id.as_str();
                    "notification dropped after {} days undeliverable: {}",
                    KEEP_UNDELIVERABLE / 86_400, d.message.subject
                );
                metrics.observe_notification(&d.channel, d.message.event.as_str(), "dropped");
            }
            !expired
        });
        if self.state.queue.len() != before {
            self.dirty = true;
        }
    }

    async fn save(&mut self) {
        let outbox = self.outbox.clone();
        let state = self.state.clone();
        let result = tokio::task::spawn_blocking(move || outbox.save(&state))
            .await
            .unwrap_or_else(|e| Err(format!("saving the outbox stopped: {e}")));
        match result {
            Ok(()) => {
                self.dirty = false;
                if self
                    .problem
                    .as_deref()
                    .is_some_and(|p| p.contains("cannot write"))
                {
                    log::info!("the notification outbox is written again");
                    self.problem = None;
                }
                for (id, reply) in self.waiting_for_save.drain(..) {
                    let _ = reply.send(Ok(id));
                }
                for (reply, n) in self.retries_waiting.drain(..) {
                    let _ = reply.send(Ok(n));
                }
            }
            Err(e) => {
                if self.problem.as_deref() != Some(e.as_str()) {
                    log::error!("{e}; nothing is sent until it can be written");
                }
                self.problem = Some(e.clone());
                for (reply, _) in self.retries_waiting.drain(..) {
                    let _ = reply.send(Err(format!(
                        "the retry is not on disk yet ({e}); it takes effect once the outbox can be written"
                    )));
                }
                let waiting: Vec<_> = self.waiting_for_save.drain(..).collect();
                for (id, reply) in waiting {
                    self.state.queue.retain(|d| d.id != id);
                    let key = id
                        .strip_suffix(&format!(".{PLUGIN_MAIL_ROUTE}"))
                        .unwrap_or(&id);
                    self.state.told.remove(&format!("plugin_mail:{key}"));
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn start_attempts(&mut self, attempts: &mut JoinSet<Attempt>) {
        let now = crate::now_unix();
        let due: Vec<Delivery> = self
            .state
            .queue
            .iter()
            .filter(|d| d.due(now) && !self.in_flight.contains(&d.id))
            .take(PARALLEL.saturating_sub(self.in_flight.len()))
            .cloned()
            .collect();
        for delivery in due {
            self.in_flight.insert(delivery.id.clone());
            let config = self.config.clone();
            let http = self.http.clone();
            let host = self.host.clone();
            attempts.spawn(async move {
                let id = delivery.id.clone();
                let limit = config.notifications.timeout.0 + Duration::from_secs(5);
                let result =
                    tokio::time::timeout(limit, deliver::attempt(&delivery, &config, http, &host))
                        .await
                        .unwrap_or_else(|_| {
                            Err(SendError::Transient(format!(
                                "the attempt did not finish within {} s",
                                limit.as_secs()
                            )))
                        });
                (id, result)
            });
        }
    }

    fn finished(&mut self, id: &str, result: Result<String, SendError>) {
        self.in_flight.remove(id);
        let now = crate::now_unix();
        let retry_for = self.config.notifications.retry_for.as_secs() as i64;
        let Some(at) = self.state.queue.iter().position(|d| d.id == id) else {
            return;
        };
        let event = self.state.queue[at].message.event.as_str();
        let channel = self.state.queue[at].channel.clone();
        match result {
            Ok(answer) => {
                let d = self.state.queue.remove(at);
                log::info!(
                    route = d.route.as_str(), event = event, notify_id = d.id.as_str();
                    "notification sent ({}): {}", answer, d.message.subject
                );
                self.metrics.observe_notification(&channel, event, "sent");
                self.last_sent_at = Some(now);
            }
            Err(error) => {
                let permanent = matches!(error, SendError::Permanent(_));
                let d = &mut self.state.queue[at];
                d.failed(now, error.to_string(), permanent, retry_for);
                if d.gave_up_at.is_some() {
                    log::error!(
                        route = d.route.as_str(), event = event, notify_id = d.id.as_str();
                        "notification undeliverable after {} attempt(s): {error} (kept; see `certvakt status`, `certvakt notify retry`)",
                        d.attempts
                    );
                    self.metrics
                        .observe_notification(&channel, event, "undeliverable");
                } else {
                    log::warn!(
                        route = d.route.as_str(), event = event, notify_id = d.id.as_str();
                        "notification not sent yet (attempt {}): {error}; next try in {} s",
                        d.attempts, d.next_at - now
                    );
                    self.metrics.observe_notification(&channel, event, "failed");
                }
            }
        }
        self.dirty = true;
    }

    fn request(&mut self, request: Request) {
        match request {
            Request::Test { route, reply } => {
                let config = self.config.clone();
                let http = self.http.clone();
                let host = self.host.clone();
                tokio::spawn(async move {
                    let _ = reply.send(deliver::test(config, http, host, route).await);
                });
            }
            Request::Retry { reply } => {
                let now = crate::now_unix();
                let mut n = 0;
                for d in self
                    .state
                    .queue
                    .iter_mut()
                    .filter(|d| d.gave_up_at.is_some())
                {
                    d.gave_up_at = None;
                    d.created_at = now;
                    d.next_at = now;
                    n += 1;
                }
                if n == 0 {
                    let _ = reply.send(Ok(0));
                } else {
                    // Answered after the save: a kill -9 right after the answer keeps it.
                    self.dirty = true;
                    self.retries_waiting.push((reply, n));
                }
            }
            Request::Reconfigure(config) => {
                self.config = config;
                self.drop_removed_routes();
            }
            Request::PluginMail {
                message,
                envelope,
                reply,
            } => {
                let id = format!("{}.{PLUGIN_MAIL_ROUTE}", message.id);
                let key = format!("plugin_mail:{}", message.id);
                // The same mail asked again (a step done again after a crash or a retry) is
                // the one already queued or sent, not a second one.
                if self.state.queue.iter().any(|d| d.id == id) || self.state.told.contains_key(&key)
                {
                    let _ = reply.send(Ok(id));
                    return;
                }
                let now = crate::now_unix();
                self.state.told.insert(
                    key,
                    derive::Told {
                        count: 1,
                        last_at: now,
                        seen_at: now,
                    },
                );
                self.state.queue.push(Delivery {
                    id: id.clone(),
                    route: PLUGIN_MAIL_ROUTE.into(),
                    channel: "mail".into(),
                    message: *message,
                    envelope: Some(envelope),
                    created_at: now,
                    attempts: 0,
                    next_at: now,
                    last_error: None,
                    gave_up_at: None,
                });
                self.dirty = true;
                self.waiting_for_save.push((id, reply));
            }
        }
    }

    fn publish(&self) {
        let now = crate::now_unix();
        let pending: Vec<&Delivery> = self
            .state
            .queue
            .iter()
            .filter(|d| d.gave_up_at.is_none())
            .collect();
        let undeliverable: Vec<Undelivered> = self
            .state
            .queue
            .iter()
            .filter(|d| d.gave_up_at.is_some())
            .map(|d| Undelivered {
                id: d.id.clone(),
                route: d.route.clone(),
                event: d.message.event.as_str().to_owned(),
                subject: d.message.subject.clone(),
                created_at: d.created_at,
                attempts: d.attempts,
                last_error: d.last_error.clone(),
            })
            .collect();
        let oldest = self.state.queue.iter().map(|d| d.created_at).min();
        self.metrics.observe_outbox(
            pending.len(),
            undeliverable.len(),
            oldest.map_or(0, |t| now - t),
        );
        let view = OutboxView {
            routes: self.config.notify.len(),
            pending: pending.len(),
            oldest_pending_at: pending.iter().map(|d| d.created_at).min(),
            undeliverable,
            last_sent_at: self.last_sent_at,
            problem: self.problem.clone(),
        };
        match self.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }
}

/// Whether two ledgers say the same, `seen_at` aside.
fn same_told(a: &derive::Ledger, b: &derive::Ledger) -> bool {
    a.len() == b.len()
        && a.iter().zip(b.iter()).all(|((ka, ta), (kb, tb))| {
            ka == kb && ta.count == tb.count && ta.last_at == tb.last_at
        })
}

/// The files of a task, read bounded; those over the limit or unreadable are left out (the
/// message names them).
fn read_attachments(files: &[PathBuf]) -> Vec<Attachment> {
    let mut left = ATTACH_LIMIT;
    let mut out = Vec::new();
    for file in files {
        let Some(name) = file.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        match crate::bounded::read_no_follow(file, left) {
            Ok(bytes) => {
                left = left.saturating_sub(bytes.len() as u64);
                out.push(Attachment {
                    content_type: content_type(&name).to_owned(),
                    name,
                    bytes,
                });
            }
            Err(e) => log::warn!("not attaching {}: {}", file.display(), e.sentence(file)),
        }
    }
    out
}
