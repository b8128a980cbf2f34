//! Metrics: the one registry, every metric name in one place, and the `/metrics` endpoint.
//!
//! Contract:
//! - [`Metrics`] owns a private `prometheus::Registry`; metric names and help texts are
//!   written here and nowhere else. Labels are bounded: the certificate id (the configured id,
//!   or the file path of a watched file), whether it is managed or watched, the plugin, the
//!   role in a chain (`leaf`, `intermediate`, `root`), and closed enums (problem kind, reload
//!   result). What names a certificate for people (subject and issuer CN, identity, serial,
//!   key type, path) is only on `certvakt_certificate_info`, one series per certificate found,
//!   so the number of series follows the number of certificates and nothing else.
//! - Only the first certificate of a managed file is `source="managed"` with its plugin; the
//!   rest of that file (the chain) is `source="watched"` with no plugin and its own role.
//! - Counters exist at 0 from the start: [`Metrics::declare`] creates them for every
//!   configured certificate, loaded plugin and notification route, and deletes those of
//!   certificates and plugins no longer configured, at start and at every applied reload.
//!   The per-certificate counters (renewals, failed steps, failed hooks) are plain numbers,
//!   kept only for certificates that counted something and written at scrape time
//!   ([`CertCounters`]): fourteen registry children per certificate cost 5.6 MB over 1,000.
//! - The standard `process_*` families are written at scrape time (see [`render_process`]).
//! - Per-certificate and per-problem series are not stored: [`Metrics::observe_inventory`]
//!   keeps the scan's immutable snapshot, and [`Metrics::render`] writes those families from
//!   it at scrape time. So a certificate that disappeared has no stale series, values that
//!   depend on the clock (`..._expiry_seconds`, `..._expired`) are never older than the
//!   scrape, and memory does not grow with a copy of every label set (a labelled child in a
//!   registry costs about half a kilobyte; five families over 1,000 certificates is 2.5 MB).
//!   The rest (other counters, histograms, build info) lives in the registry.
//! - [`serve`] answers `GET /metrics` (text format 0.0.4), `GET /` and `GET /healthz`.
//!   Scrapes in the same second with nothing observed in between get the very same body
//!   ([`Metrics::render_shared`]): the text is the same, so a burst of scrapes (or of clients
//!   that never read their answer) shares one copy instead of holding one each. A body over
//!   64 KiB is let go two seconds after its scrape rather than kept until the next one.
//!
//! The `prometheus` crate is used (the design card's choice) without default features: its
//! protobuf encoder is not needed and carried an advisory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::Config;
use crate::inventory::{Entry, Inventory, KeyCheck, NordicIdentity, SourceKind, SourceProblem};
use crate::web_config::{Verdict, WebState};

/// Why the metrics could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric definition: {0}")]
    Definition(#[from] prometheus::Error),
    #[error(
        "the web config for /metrics cannot be used: {0} (fix [metrics] web_config; `certvakt check-config` shows every problem)"
    )]
    WebConfig(String),
    #[error(
        "cannot listen for /metrics on {addr}: {source} (set [metrics] listen to a free address, or \"\" to disable)"
    )]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    certificates: IntGaugeVec,
    scans: IntCounter,
    scan_duration: Histogram,
    last_scan: Gauge,
    engine_turn: Gauge,
    /// Called at each scrape of `/metrics` (see [`Metrics::on_scrape`]).
    scrape_hook: std::sync::OnceLock<ScrapeHook>,
    files_parsed: IntCounter,
    reloads: IntCounterVec,
    config_last_reload_ok: IntGauge,
    control_requests: IntCounterVec,
    plugin_calls: IntCounterVec,
    plugin_crashes: IntCounterVec,
    plugin_call_duration: HistogramVec,
    plugins: IntGaugeVec,
    plugin_http_requests: IntCounterVec,
    /// The last scan, rendered per certificate at scrape time.
    inventory: Mutex<Arc<Inventory>>,
    /// The renewal engine's state per certificate, rendered at scrape time.
    renewals: Mutex<Arc<Vec<RenewalSeries>>>,
    /// Renewals, failed steps and failed hooks per certificate: numbers, written at scrape time.
    cert_counters: Mutex<CertCounters>,
    notifications: IntCounterVec,
    notifications_queued: IntGaugeVec,
    notifications_oldest: Gauge,
    warn_before: Gauge,
    /// When the daemon started (Unix seconds), for `process_start_time_seconds`.
    started_at: i64,
    /// Bumped after every change, so that [`Metrics::render_shared`] knows when its last
    /// body is still the text a new rendering would give.
    generation: AtomicU64,
    last_render: Mutex<Option<Rendered>>,
}

/// What the daemon does at each scrape (see [`Metrics::on_scrape`]).
struct ScrapeHook(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ScrapeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeHook")
    }
}

/// A kept body larger than this is let go after its second (see [`serve`]).
const KEEP_RENDER_BYTES: usize = 64 * 1024;

/// A rendered exposition and what it was rendered from.
#[derive(Debug, Clone)]
struct Rendered {
    generation: u64,
    now: i64,
    body: Bytes,
}

impl Metrics {
    /// Defines every metric. `started_at` is Unix seconds.
    pub fn new(started_at: i64) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);

        let build_info = IntGaugeVec::new(
            Opts::new(
                "certvakt_build_info",
                "Always 1; the labels say which build runs.",
            ),
            &["version", "abi"],
        )?;
        build_info
            .with_label_values(&[
                crate::VERSION,
                &certvakt_plugin_api::ABI_VERSION.to_string(),
            ])
            .set(1);
        reg(Box::new(build_info))?;

        let start = Gauge::new(
            "certvakt_start_time_seconds",
            "When the daemon started, seconds since the Unix epoch.",
        )?;
        start.set(started_at as f64);
        reg(Box::new(start))?;

        let certificates = IntGaugeVec::new(
            Opts::new(
                "certvakt_certificates",
                "Certificates found in the last scan, by source (managed: the certificate a plugin renews; watched: the rest, chain certificates of managed files included).",
            ),
            &["source"],
        )?;
        let scans = IntCounter::new("certvakt_scans_total", "Inventory scans run.")?;
        let scan_duration = Histogram::with_opts(
            HistogramOpts::new(
                "certvakt_scan_duration_seconds",
                "How long an inventory scan took.",
            )
            .buckets(vec![0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0]),
        )?;
        let last_scan = Gauge::new(
            "certvakt_last_scan_timestamp_seconds",
            "When the last inventory scan finished, seconds since the Unix epoch.",
        )?;
        let engine_turn = Gauge::new(
            "certvakt_engine_last_turn_timestamp_seconds",
            "When the renewal engine last finished a turn, seconds since the Unix epoch: at least \
             hourly, and after every scrape, which asks it for one. Far behind time(): the engine \
             is stuck.",
        )?;
        let files_parsed = IntCounter::new(
            "certvakt_files_parsed_total",
            "Certificate files read and parsed (unchanged files are not parsed again).",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "certvakt_config_reloads_total",
                "Configuration reloads, by result (applied or refused because invalid).",
            ),
            &["result"],
        )?;
        let config_last_reload_ok = IntGauge::new(
            "certvakt_config_last_reload_successful",
            "1 if the last configuration reload was applied, 0 if it was refused.",
        )?;
        config_last_reload_ok.set(1);
        let control_requests = IntCounterVec::new(
            Opts::new(
                "certvakt_control_requests_total",
                "Control socket requests, by request and outcome.",
            ),
            &["request", "outcome"],
        )?;
        let plugin_calls = IntCounterVec::new(
            Opts::new(
                "certvakt_plugin_calls_total",
                "Calls into plugins, by plugin, method and outcome (ok, error, timeout, panic, crash, bad_response, failed).",
            ),
            &["plugin", "method", "outcome"],
        )?;
        let plugin_crashes = IntCounterVec::new(
            Opts::new(
                "certvakt_plugin_crashes_total",
                "Plugin processes that died or were stopped during a call, by plugin and reason (segfault, bus_error, abort, killed, cpu_limit, forbidden_syscall, signal, exit, deadline, protocol).",
            ),
            &["plugin", "reason"],
        )?;
        let plugin_call_duration = HistogramVec::new(
            HistogramOpts::new(
                "certvakt_plugin_call_duration_seconds",
                "How long plugin calls took, host calls included; a timed-out call counts its deadline.",
            )
            .buckets(vec![0.01, 0.05, 0.25, 1.0, 5.0, 30.0, 120.0]),
            &["plugin"],
        )?;
        let plugins = IntGaugeVec::new(
            Opts::new(
                "certvakt_plugins",
                "Plugin files in plugin_dir at the last load, by state (loaded, or refused: see the log).",
            ),
            &["state"],
        )?;
        let plugin_http_requests = IntCounterVec::new(
            Opts::new(
                "certvakt_plugin_http_requests_total",
                "HTTP requests plugins made through the host, by plugin and outcome (ok: any HTTP status; refused, setup, connect, tls, timeout, too_large, protocol, not_run).",
            ),
            &["plugin", "outcome"],
        )?;
        reg(Box::new(certificates.clone()))?;
        reg(Box::new(scans.clone()))?;
        reg(Box::new(scan_duration.clone()))?;
        reg(Box::new(last_scan.clone()))?;
        reg(Box::new(engine_turn.clone()))?;
        reg(Box::new(files_parsed.clone()))?;
        reg(Box::new(reloads.clone()))?;
        reg(Box::new(config_last_reload_ok.clone()))?;
        reg(Box::new(control_requests.clone()))?;
        reg(Box::new(plugin_calls.clone()))?;
        reg(Box::new(plugin_crashes.clone()))?;
        reg(Box::new(plugin_call_duration.clone()))?;
        reg(Box::new(plugins.clone()))?;
        reg(Box::new(plugin_http_requests.clone()))?;
        for state in ["loaded", "refused"] {
            plugins.with_label_values(&[state]);
        }
        for result in ["applied", "invalid"] {
            reloads.with_label_values(&[result]);
        }
        for source in ["managed", "watched"] {
            certificates.with_label_values(&[source]);
        }

        let notifications = IntCounterVec::new(
            Opts::new(
                "certvakt_notifications_total",
                "Attempts to deliver a notification, by channel (mail, webhook, command), event and result (sent; failed: retried later; undeliverable: given up, see certvakt status; dropped: undeliverable for 30 days).",
            ),
            &["channel", "event", "result"],
        )?;
        let notifications_queued = IntGaugeVec::new(
            Opts::new(
                "certvakt_notifications_queued",
                "Notifications in the outbox, by state (pending: being retried; undeliverable: given up, kept until certvakt notify retry).",
            ),
            &["state"],
        )?;
        let notifications_oldest = Gauge::with_opts(Opts::new(
            "certvakt_notifications_oldest_undelivered_seconds",
            "Age of the oldest notification not delivered yet (0 when the outbox is empty).",
        ))?;
        reg(Box::new(notifications.clone()))?;
        reg(Box::new(notifications_queued.clone()))?;
        reg(Box::new(notifications_oldest.clone()))?;
        for state in ["pending", "undeliverable"] {
            notifications_queued.with_label_values(&[state]);
        }
        let warn_before = Gauge::new(
            "certvakt_warn_before_seconds",
            "The configured [daemon] warn_before: certificates that expire within it are reported as expiring (certvakt status, the expiry alert).",
        )?;
        reg(Box::new(warn_before.clone()))?;
        Ok(Metrics {
            registry,
            certificates,
            scans,
            scan_duration,
            last_scan,
            engine_turn,
            scrape_hook: std::sync::OnceLock::new(),
            files_parsed,
            reloads,
            config_last_reload_ok,
            control_requests,
            plugin_calls,
            plugin_crashes,
            plugin_call_duration,
            plugins,
            plugin_http_requests,
            inventory: Mutex::new(Arc::new(Inventory::default())),
            renewals: Mutex::new(Arc::new(Vec::new())),
            cert_counters: Mutex::default(),
            notifications,
            notifications_queued,
            notifications_oldest,
            warn_before,
            started_at,
            generation: AtomicU64::new(0),
            last_render: Mutex::new(None),
        })
    }

    /// Marks that something rendered has changed. Called after the change, so that a body
    /// rendered in between is never taken for the new state.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes a scan's result: counters now, per-certificate series at the next scrape.
    pub fn observe_inventory(&self, inventory: &Arc<Inventory>, scan_time: Duration) {
        self.scans.inc();
        self.scan_duration.observe(scan_time.as_secs_f64());
        self.last_scan.set(inventory.scanned_at as f64);
        self.files_parsed.inc_by(inventory.files_parsed as u64);
        let managed = inventory
            .entries
            .iter()
            .filter(|e| entry_labels(e).0 == "managed")
            .count();
        let watched = inventory.entries.len() - managed;
        self.certificates
            .with_label_values(&["managed"])
            .set(managed as i64);
        self.certificates
            .with_label_values(&["watched"])
            .set(watched as i64);
        match self.inventory.lock() {
            Ok(mut current) => *current = inventory.clone(),
            Err(poisoned) => *poisoned.into_inner() = inventory.clone(),
        }
        self.changed();
    }

    /// Counts a configuration reload.
    pub fn observe_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "invalid" };
        self.reloads.with_label_values(&[result]).inc();
        self.config_last_reload_ok.set(i64::from(applied));
        self.changed();
    }

    /// Counts a control request. `outcome` is one of a fixed set (`ok`, `error`, `forbidden`).
    pub fn observe_control_request(&self, request: &'static str, outcome: &'static str) {
        self.control_requests
            .with_label_values(&[request, outcome])
            .inc();
        self.changed();
    }

    /// Counts one call into a plugin and its duration. `method` is a plugin-api method name
    /// and `outcome` one of a fixed set (see `plugin_host::CallOutcome`), so labels stay bounded.
    pub fn observe_plugin_call(
        &self,
        plugin: &str,
        method: &str,
        outcome: &'static str,
        duration: Duration,
    ) {
        self.plugin_calls
            .with_label_values(&[plugin, method, outcome])
            .inc();
        self.plugin_call_duration
            .with_label_values(&[plugin])
            .observe(duration.as_secs_f64());
        self.changed();
    }

    /// Counts a plugin process that died or was stopped during a call; `reason` is one of a
    /// fixed set (see `plugin_host::process::Death::label`).
    pub fn observe_plugin_crash(&self, plugin: &str, reason: &'static str) {
        self.plugin_crashes
            .with_label_values(&[plugin, reason])
            .inc();
        self.changed();
    }

    /// Counts one HTTP request a plugin made through the host. `outcome` is one of a fixed set
    /// (see `plugin_host::HttpOutcome`), so labels stay bounded.
    pub fn observe_plugin_http_request(&self, plugin: &str, outcome: &'static str) {
        self.plugin_http_requests
            .with_label_values(&[plugin, outcome])
            .inc();
        self.changed();
    }

    /// Records how many plugin files the last load accepted and refused.
    pub fn observe_plugins(&self, loaded: usize, refused: usize) {
        self.plugins
            .with_label_values(&["loaded"])
            .set(loaded as i64);
        self.plugins
            .with_label_values(&["refused"])
            .set(refused as i64);
        self.changed();
    }

    /// A renewal step failed; `step` is one of [`FAILURE_STEPS`].
    pub fn observe_renewal_failure(&self, id: &str, step: &str) {
        match FAILURE_STEPS.iter().position(|s| *s == step) {
            Some(i) => self.count(id, |c| c.failures[i] += 1),
            None => log::warn!(cert_id = id; "no failure series for step {step}"),
        }
    }

    /// A renewal completed.
    pub fn observe_renewal_success(&self, id: &str) {
        self.count(id, |c| c.renewals += 1);
    }

    /// A deploy or post hook failed; `hook` is one of [`HOOKS`].
    pub fn observe_hook_failure(&self, id: &str, hook: &str) {
        match HOOKS.iter().position(|h| *h == hook) {
            Some(i) => self.count(id, |c| c.hooks[i] += 1),
            None => log::warn!(cert_id = id; "no failure series for hook {hook}"),
        }
    }

    fn count(&self, id: &str, add: impl FnOnce(&mut CertCounts)) {
        {
            let mut counters = self
                .cert_counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(counts) = counters.counts.get_mut(id) {
                add(counts);
            } else {
                let mut counts = CertCounts::default();
                add(&mut counts);
                counters.counts.insert(id.to_owned(), counts);
            }
        }
        self.changed();
    }

    /// One attempt to deliver a notification; `result` is `sent`, `failed` or
    /// `undeliverable`, `channel` and `event` come from fixed sets.
    pub fn observe_notification(&self, channel: &str, event: &str, result: &'static str) {
        self.notifications
            .with_label_values(&[channel, event, result])
            .inc();
        self.changed();
    }

    /// The outbox after a change: how many are pending and undeliverable, and the age of
    /// the oldest of them (seconds).
    pub fn observe_outbox(&self, pending: usize, undeliverable: usize, oldest_age: i64) {
        self.notifications_queued
            .with_label_values(&["pending"])
            .set(pending as i64);
        self.notifications_queued
            .with_label_values(&["undeliverable"])
            .set(undeliverable as i64);
        self.notifications_oldest.set(oldest_age.max(0) as f64);
        self.changed();
    }

    /// The renewal engine's latest state, rendered at the next scrape.
    pub fn observe_renewals(&self, series: Vec<RenewalSeries>) {
        match self.renewals.lock() {
            Ok(mut current) => *current = Arc::new(series),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(series),
        }
        self.changed();
    }

    /// Makes the counters of everything the configuration names exist at 0 (so `increase()`
    /// sees the first event, not only the second), and deletes the series of certificates and
    /// plugins it no longer names (so ids changed by many reloads do not pile up). Called at
    /// start and after every applied reload.
    pub fn declare(&self, declared: &Declared) {
        self.warn_before.set(declared.warn_before as f64);
        {
            let mut counters = self
                .cert_counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let ids: HashSet<&str> = declared.certificates.iter().map(String::as_str).collect();
            counters.counts.retain(|id, _| ids.contains(id.as_str()));
            counters.declared.clone_from(&declared.certificates);
            counters.declared.shrink_to_fit();
        }
        let plugins: HashSet<&str> = declared.plugins.iter().map(String::as_str).collect();
        forget_unless(&self.plugin_crashes, "plugin", &plugins);
        forget_unrouted(&self.notifications, &declared.notifications);
        for plugin in &declared.plugins {
            for reason in CRASH_REASONS {
                self.plugin_crashes.with_label_values(&[plugin, reason]);
            }
        }
        for (channel, event) in &declared.notifications {
            for result in NOTIFICATION_RESULTS {
                self.notifications
                    .with_label_values(&[channel, event, result]);
            }
        }
        self.changed();
    }

    /// The renewal engine finished a turn at `now` (Unix seconds).
    pub fn observe_engine_turn(&self, now: i64) {
        self.engine_turn.set(now as f64);
        self.changed();
    }

    /// Has `hook` called at every scrape of `/metrics` (once set, for the daemon's life): the
    /// daemon asks its engine for a turn there, without waiting for it, so that
    /// `certvakt_engine_last_turn_timestamp_seconds` is as fresh as the scrapes.
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.scrape_hook.set(ScrapeHook(Box::new(hook)));
    }

    /// [`Metrics::render`] as a shared body: when nothing was observed since the last
    /// rendering and `now` is the same second, the text would be the same, so the same bytes
    /// are handed out again (a reference, not a copy).
    pub fn render_shared(&self, now: i64) -> Bytes {
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(last) = self
            .last_render
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|r| r.generation == generation && r.now == now)
        {
            return last.body.clone();
        }
        let mut text = self.render(now);
        // Kept for a while and shared: no spare capacity.
        text.shrink_to_fit();
        let body = Bytes::from(text);
        *self
            .last_render
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Rendered {
            generation,
            now,
            body: body.clone(),
        });
        body
    }

    /// The size of the body kept for scrapes in the same second (0: none).
    fn kept_render_len(&self) -> usize {
        self.last_render
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |r| r.body.len())
    }

    /// Lets go of the kept body if it was rendered for second `second` or before.
    fn release_render(&self, second: i64) {
        let mut last = self
            .last_render
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_ref().is_some_and(|r| r.now <= second) {
            *last = None;
        }
    }

    /// The text exposition, with clock-dependent values computed for `now`.
    pub fn render(&self, now: i64) -> String {
        let inventory = match self.inventory.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut out = Vec::with_capacity(4096 + inventory.entries.len() * 700);
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            out.clear();
        }
        let mut text = String::from_utf8(out).unwrap_or_default();
        self.cert_counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render(&mut text);
        let renewals = match self.renewals.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let running: std::collections::BTreeSet<&str> = renewals
            .iter()
            .filter(|r| r.step.is_some())
            .map(|r| r.id.as_str())
            .collect();
        render_inventory(&mut text, &inventory, now, &running);
        render_renewals(&mut text, &renewals);
        render_process(&mut text, self.started_at);
        text
    }
}

/// What the configuration names, for [`Metrics::declare`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// `[daemon] warn_before`, seconds.
    pub warn_before: u64,
    /// The `[[certificate]]` ids.
    pub certificates: Vec<String>,
    /// The loaded plugins.
    pub plugins: Vec<String>,
    /// The (channel, event) pairs the `[[notify]]` routes send.
    pub notifications: Vec<(&'static str, &'static str)>,
}

impl Declared {
    /// What `config` names, with the plugins that were loaded.
    pub fn new<'a>(config: &Config, plugins: impl IntoIterator<Item = &'a str>) -> Declared {
        let mut notifications: Vec<(&'static str, &'static str)> = config
            .notify
            .iter()
            .flat_map(|route| {
                let channel = route.channel.as_str();
                route.events.iter().map(move |e| (channel, e.as_str()))
            })
            .collect();
        notifications.sort_unstable();
        notifications.dedup();
        Declared {
            warn_before: config.daemon.warn_before.as_secs(),
            certificates: config.certificates.iter().map(|c| c.id.clone()).collect(),
            plugins: plugins.into_iter().map(str::to_owned).collect(),
            notifications,
        }
    }
}

/// The `step` values of `certvakt_renewal_failures_total`: the step a run was heading to,
/// or `save_state` when its record could not be saved.
pub const FAILURE_STEPS: [&str; 9] = [
    "due",
    "key_generated",
    "ordered",
    "issued",
    "registered",
    "installed",
    "verified",
    "retired",
    "save_state",
];

/// The `hook` values of `certvakt_hook_failures_total` (`lifecycle::hooks::HookKind`).
pub const HOOKS: [&str; 4] = ["pre_hook", "deploy_hook", "post_hook", "plugin_command"];

/// The `reason` values of `certvakt_plugin_crashes_total` (`plugin_host::process::Death`).
pub const CRASH_REASONS: [&str; 10] = [
    "segfault",
    "bus_error",
    "abort",
    "killed",
    "cpu_limit",
    "forbidden_syscall",
    "signal",
    "exit",
    "deadline",
    "protocol",
];

/// The `result` values of `certvakt_notifications_total`.
pub const NOTIFICATION_RESULTS: [&str; 4] = ["sent", "failed", "undeliverable", "dropped"];

/// Removes the zero series of (channel, event) pairs no route sends any more. Series that
/// counted something stay (their number is bounded by the fixed channels, events and
/// results): `notify test` and plugin mail count there too, without a route naming them.
fn forget_unrouted(vec: &IntCounterVec, routed: &[(&'static str, &'static str)]) {
    use prometheus::core::Collector as _;
    let mut gone: Vec<[String; 3]> = Vec::new();
    for family in vec.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|p| p.name() == name)
                    .map(|p| p.value().to_owned())
                    .unwrap_or_default()
            };
            let (channel, event) = (label("channel"), label("event"));
            let zero = metric.get_counter().get_value() == 0.0;
            if zero && !routed.iter().any(|(c, e)| *c == channel && *e == event) {
                gone.push([channel, event, label("result")]);
            }
        }
    }
    for [channel, event, result] in &gone {
        let _ = vec.remove_label_values(&[channel, event, result]);
    }
}

/// Removes every child of `vec` whose `label` is not in `keep`.
fn forget_unless(vec: &IntCounterVec, label: &str, keep: &HashSet<&str>) {
    use prometheus::core::Collector as _;
    let mut gone: Vec<HashMap<String, String>> = Vec::new();
    for family in vec.collect() {
        for metric in family.get_metric() {
            let pairs: HashMap<String, String> = metric
                .get_label()
                .iter()
                .map(|p| (p.name().to_owned(), p.value().to_owned()))
                .collect();
            if pairs.get(label).is_some_and(|v| !keep.contains(v.as_str())) {
                gone.push(pairs);
            }
        }
    }
    for pairs in &gone {
        let labels: HashMap<&str, &str> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let _ = vec.remove(&labels);
    }
}

/// The counters of each certificate. A labelled child in the registry costs about half a
/// kilobyte and there are fourteen per certificate, all at 0 for most of a certificate's life;
/// here a certificate that counted nothing costs nothing beyond its id in `declared`.
#[derive(Debug, Default)]
struct CertCounters {
    /// The configured certificates, in configuration order: every one has every series.
    declared: Vec<String>,
    /// The certificates that counted something (configured or not: a run of a certificate
    /// removed while it ran still counts until the next reload).
    counts: BTreeMap<String, CertCounts>,
}

#[derive(Debug, Default, Clone, Copy)]
struct CertCounts {
    renewals: u64,
    failures: [u64; FAILURE_STEPS.len()],
    hooks: [u64; HOOKS.len()],
}

impl CertCounters {
    /// The three counter families, each with every declared certificate (0 unless counted),
    /// then the certificates that counted without being declared.
    fn render(&self, out: &mut String) {
        let none = CertCounts::default();
        // Usually nothing counted: no set of every id at every scrape then.
        let undeclared: Vec<&str> = if self.counts.is_empty() {
            Vec::new()
        } else {
            let declared: HashSet<&str> = self.declared.iter().map(String::as_str).collect();
            self.counts
                .keys()
                .map(String::as_str)
                .filter(|id| !declared.contains(id))
                .collect()
        };
        let ids = || {
            self.declared
                .iter()
                .map(String::as_str)
                .chain(undeclared.iter().copied())
        };
        let counts = |id: &str| self.counts.get(id).unwrap_or(&none);
        let family = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
        };
        let name = "certvakt_renewal_failures_total";
        family(
            out,
            name,
            "Renewal steps that failed (and will be retried with backoff), by certificate and step.",
        );
        for id in ids() {
            for (step, value) in FAILURE_STEPS.iter().zip(counts(id).failures) {
                out.push_str(name);
                labels(out, &[("id", id), ("step", step)]);
                let _ = writeln!(out, " {value}");
            }
        }
        let name = "certvakt_renewals_total";
        family(
            out,
            name,
            "Renewals completed (new certificate installed, old one retired), by certificate.",
        );
        for id in ids() {
            out.push_str(name);
            labels(out, &[("id", id)]);
            let _ = writeln!(out, " {}", counts(id).renewals);
        }
        let name = "certvakt_hook_failures_total";
        family(
            out,
            name,
            "Deploy and post hooks that failed or timed out, by certificate and hook.",
        );
        for id in ids() {
            for (hook, value) in HOOKS.iter().zip(counts(id).hooks) {
                out.push_str(name);
                labels(out, &[("hook", hook), ("id", id)]);
                let _ = writeln!(out, " {value}");
            }
        }
    }
}

/// One managed certificate's renewal, as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalSeries {
    pub id: String,
    /// The last step completed by the run in progress (`None`: no run).
    pub step: Option<&'static str>,
    /// When the engine next acts for it.
    pub next_at: Option<i64>,
    pub consecutive_failures: u32,
    pub last_success: Option<i64>,
    pub tasks_pending: usize,
    /// The open tasks, for `certvakt_task_opened_timestamp_seconds`.
    pub tasks: Vec<TaskSeries>,
}

/// One open operator task in the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSeries {
    pub id: String,
    /// The step the task leads to.
    pub step: &'static str,
    /// `import`, `confirm` or `poll`.
    pub completes_by: &'static str,
    pub opened_at: i64,
}

/// Every step name a run can be at, so `certvakt_renewal_step` shows the whole set.
pub const RENEWAL_STEPS: [&str; 8] = [
    "due",
    "key_generated",
    "ordered",
    "issued",
    "registered",
    "installed",
    "verified",
    "retired",
];

fn render_renewals(out: &mut String, renewals: &[RenewalSeries]) {
    let family = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
    };
    let sample = |out: &mut String, name: &str, id: &str, value: i64| {
        out.push_str(name);
        labels(out, &[("id", id)]);
        let _ = writeln!(out, " {value}");
    };
    let name = "certvakt_renewal_next_timestamp_seconds";
    family(
        out,
        name,
        "When the renewal engine next acts for the certificate (due, poll, retry, end of overlap), seconds since the Unix epoch.",
    );
    for r in renewals {
        if let Some(at) = r.next_at {
            sample(out, name, &r.id, at);
        }
    }
    let name = "certvakt_renewal_step";
    family(
        out,
        name,
        "1 for the last step completed by the renewal in progress; no series when none is in progress.",
    );
    for r in renewals {
        let Some(step) = r.step else { continue };
        for s in RENEWAL_STEPS {
            out.push_str(name);
            labels(out, &[("id", &r.id), ("step", s)]);
            let _ = writeln!(out, " {}", i64::from(s == step));
        }
    }
    let name = "certvakt_renewal_consecutive_failures";
    family(
        out,
        name,
        "Failures of the current renewal step in a row; 0 once a step succeeds.",
    );
    for r in renewals {
        sample(out, name, &r.id, i64::from(r.consecutive_failures));
    }
    let name = "certvakt_renewal_last_success_timestamp_seconds";
    family(
        out,
        name,
        "When the last renewal of the certificate completed, seconds since the Unix epoch.",
    );
    for r in renewals {
        if let Some(at) = r.last_success {
            sample(out, name, &r.id, at);
        }
    }
    let name = "certvakt_tasks_pending";
    family(
        out,
        name,
        "Operator tasks waiting for a person, by certificate.",
    );
    for r in renewals {
        sample(out, name, &r.id, r.tasks_pending as i64);
    }
    let name = "certvakt_task_opened_timestamp_seconds";
    family(
        out,
        name,
        "When each open operator task was opened, seconds since the Unix epoch; labels name the certificate, the task, the step it leads to and how it completes (import, confirm, poll).",
    );
    for r in renewals {
        for t in &r.tasks {
            out.push_str(name);
            labels(
                out,
                &[
                    ("id", &r.id),
                    ("task", &t.id),
                    ("step", t.step),
                    ("completes_by", t.completes_by),
                ],
            );
            let _ = writeln!(out, " {}", t.opened_at);
        }
    }
}

/// One per-certificate family: its name, help, and how each entry contributes a value.
struct CertFamily {
    name: &'static str,
    help: &'static str,
    value: fn(&Entry, i64) -> Option<i64>,
}

const CERT_FAMILIES: &[CertFamily] = &[
    CertFamily {
        name: "certvakt_certificate_not_before_timestamp_seconds",
        help: "Start of the certificate's validity, seconds since the Unix epoch.",
        value: |e, _| Some(e.cert.not_before),
    },
    CertFamily {
        name: "certvakt_certificate_not_after_timestamp_seconds",
        help: "End of the certificate's validity, seconds since the Unix epoch.",
        value: |e, _| Some(e.cert.not_after),
    },
    CertFamily {
        name: "certvakt_certificate_expiry_seconds",
        help: "Seconds until the certificate expires at scrape time; negative once expired.",
        value: |e, now| Some(e.cert.not_after - now),
    },
    CertFamily {
        name: "certvakt_certificate_expired",
        help: "1 if the certificate has expired at scrape time, else 0.",
        value: |e, now| Some(i64::from(now >= e.cert.not_after)),
    },
    CertFamily {
        name: "certvakt_certificate_key_matches",
        help: "For managed certificates with a configured key: 1 if key and certificate belong together, 0 if not or the key is unreadable.",
        value: |e, _| match e.key_check {
            KeyCheck::NotConfigured => None,
            KeyCheck::Matches => Some(1),
            KeyCheck::Mismatch | KeyCheck::Unreadable => Some(0),
        },
    },
];

const PROBLEM_FAMILY: &str = "certvakt_source_problem";
const PROBLEM_HELP: &str = "1 while a configured file or pattern has this problem (missing, unreadable, not a certificate, ...).";

const INFO_FAMILY: &str = "certvakt_certificate_info";
const INFO_HELP: &str = "Always 1, one series per certificate found; the labels name it for dashboards (subject and issuer CN, national identity, serial, key type, role). Join on id.";

/// Writes the per-certificate and per-problem families in the text format. A managed file
/// that is missing while its certificate has a run in progress (`running`) is a first issue
/// under way, not a source problem, as `certvakt status` says.
fn render_inventory(
    out: &mut String,
    inventory: &Inventory,
    now: i64,
    running: &std::collections::BTreeSet<&str>,
) {
    for family in CERT_FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} gauge", family.name);
        for entry in &inventory.entries {
            let Some(value) = (family.value)(entry, now) else {
                continue;
            };
            let (source, plugin) = entry_labels(entry);
            out.push_str(family.name);
            labels(
                out,
                &[
                    ("id", &entry.id),
                    ("source", source),
                    ("plugin", plugin),
                    ("role", role(entry)),
                ],
            );
            let _ = writeln!(out, " {value}");
        }
    }
    let _ = writeln!(out, "# HELP {INFO_FAMILY} {INFO_HELP}");
    let _ = writeln!(out, "# TYPE {INFO_FAMILY} gauge");
    for entry in &inventory.entries {
        let (source, plugin) = entry_labels(entry);
        let cert = &entry.cert;
        let (identity_kind, identity_number) =
            cert.identities.first().map_or(("", ""), identity_labels);
        out.push_str(INFO_FAMILY);
        labels(
            out,
            &[
                ("id", &entry.id),
                ("path", &entry.path.to_string_lossy()),
                ("source", source),
                ("plugin", plugin),
                ("subject_cn", common_name(&cert.subject)),
                ("issuer_cn", common_name(&cert.issuer)),
                ("identity_kind", identity_kind),
                ("identity_number", identity_number),
                ("serial", &cert.serial),
                ("key_type", &key_type(entry)),
                ("role", role(entry)),
            ],
        );
        out.push_str(" 1\n");
    }
    let _ = writeln!(out, "# HELP {PROBLEM_FAMILY} {PROBLEM_HELP}");
    let _ = writeln!(out, "# TYPE {PROBLEM_FAMILY} gauge");
    for problem in &inventory.problems {
        if problem.is_first_issue(|id| running.contains(id)) {
            continue;
        }
        let SourceProblem {
            id, source, kind, ..
        } = problem;
        out.push_str(PROBLEM_FAMILY);
        let (source, _) = source_labels(source);
        labels(
            out,
            &[("id", id), ("source", source), ("problem", kind.as_str())],
        );
        out.push_str(" 1\n");
    }
}

fn source_labels(source: &SourceKind) -> (&'static str, &str) {
    match source {
        SourceKind::Managed { plugin, .. } => ("managed", plugin),
        SourceKind::Watched { .. } => ("watched", ""),
    }
}

/// `source` and `plugin` of one certificate. Only the first certificate of a managed file is
/// the managed one (what the plugin renews); the others in that file (its chain: CA
/// certificates) are only watched, so they are `watched` with no plugin, never a managed
/// certificate of the file's plugin.
fn entry_labels(entry: &Entry) -> (&'static str, &str) {
    match entry.source.as_ref() {
        SourceKind::Managed { plugin, .. } if entry.index == 0 => ("managed", plugin),
        _ => ("watched", ""),
    }
}

/// `leaf` (not a CA), `intermediate` (a CA signed by another) or `root` (a self-signed CA),
/// from the certificate itself: a chain file or a trust bundle holds all three kinds.
fn role(entry: &Entry) -> &'static str {
    match (entry.cert.is_ca, entry.cert.self_signed) {
        (false, _) => "leaf",
        (true, false) => "intermediate",
        (true, true) => "root",
    }
}

/// The first CN of a DN as the inventory writes it (`CN=x, O=y`), or "" when it has none.
fn common_name(dn: &str) -> &str {
    dn.split(", ")
        .find_map(|part| part.strip_prefix("CN="))
        .unwrap_or("")
}

/// `rsa-3072`, `ec-p-256`, `ed25519`: the algorithm with its size or curve.
fn key_type(entry: &Entry) -> String {
    let key = &entry.cert.key;
    let algorithm = key.algorithm.to_ascii_lowercase();
    match (&key.curve, key.bits) {
        (Some(curve), _) => format!("{algorithm}-{}", curve.to_ascii_lowercase()),
        (None, bits) if algorithm == "rsa" && bits > 0 => format!("rsa-{bits}"),
        _ => algorithm,
    }
}

/// The identity's kind (the inventory's `scheme` names) and the number authorities look it
/// up by: the CVR, HSA-ID, organisation number or business ID.
fn identity_labels(identity: &NordicIdentity) -> (&'static str, &str) {
    match identity {
        NordicIdentity::DkOces3 { cvr, .. } => ("dk_oces3", cvr),
        NordicIdentity::DkOces2 { cvr, .. } => ("dk_oces2", cvr),
        NordicIdentity::SeHsaId { hsa_id } => ("se_hsa_id", hsa_id),
        NordicIdentity::NoOrgNumber { orgnr, .. } => ("no_org_number", orgnr),
        NordicIdentity::FiOrganisation {
            business_id,
            identifier,
        } => (
            "fi_organisation",
            business_id.as_deref().unwrap_or(identifier),
        ),
    }
}

/// The standard `process_*` families (the names every Prometheus client library uses), read
/// when scraped. CPU time and the descriptor limit come from getrusage/getrlimit (nix); open
/// descriptors are the entries of /proc/self/fd; memory is the `VmRSS`/`VmSize` lines of
/// /proc/self/status. A value that cannot be read is left out, not written as 0.
fn render_process(out: &mut String, started_at: i64) {
    use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage};
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        let Some(value) = value else { return };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    let cpu = getrusage(UsageWho::RUSAGE_SELF).ok().map(|u| {
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        seconds(u.user_time()) + seconds(u.system_time())
    });
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu,
    );
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count().saturating_sub(1) as f64);
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        open,
    );
    let max = getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft as f64);
    family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        max,
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            let number = rest.trim().strip_suffix("kB")?.trim();
            number.parse::<u64>().ok().map(|n| (n * 1024) as f64)
        })
    };
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        kib("VmSize"),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        kib("VmRSS"),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        Some(started_at as f64),
    );
}

/// `{a="x",b="y"}` with the text format's escaping of label values.
fn labels(out: &mut String, pairs: &[(&str, &str)]) {
    out.push('{');
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Binds the metrics listener. Separate from [`serve`] so start-up fails early and clearly.
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, MetricsError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves `/metrics` until `shutdown` resolves, with the TLS and basic authentication `web`
/// holds at each connection and request (plain and open without a web config).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    web: Arc<WebState>,
    shutdown: impl Future<Output = ()>,
) {
    let for_tls = web.clone();
    let tls: crate::httpd::TlsSource = Arc::new(move || for_tls.current().tls());
    let handler: crate::httpd::AsyncHandler = Arc::new(move |req| {
        let metrics = metrics.clone();
        let access = web.current();
        Box::pin(async move {
            if access.check(req.headers()).await == Verdict::Denied {
                return unauthorized();
            }
            let response = respond(&metrics, &req);
            // The body kept for scrapes in the same second is a copy of every series: a
            // large one is let go once its second is over instead of staying until the
            // next scrape, perhaps a minute later.
            if metrics.kept_render_len() > KEEP_RENDER_BYTES {
                let metrics = metrics.clone();
                let now = crate::now_unix();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    metrics.release_render(now);
                });
            }
            response
        })
    });
    crate::httpd::serve_tls(listener, handler, tls, "metrics", shutdown).await;
}

/// 401 with the challenge that makes clients send basic credentials.
fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = crate::httpd::reply(
        StatusCode::UNAUTHORIZED,
        "text/plain",
        "unauthorized: send the user name and password of basic_auth_users in the web config\n",
    );
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic"),
    );
    response
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    use crate::httpd::reply;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => {
            if let Some(ScrapeHook(hook)) = metrics.scrape_hook.get() {
                hook();
            }
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.render_shared(crate::now_unix()),
            )
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            format!("certvakt {}\nmetrics: /metrics\n", crate::VERSION),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_managed_file_with_a_run_in_progress_is_no_source_problem() {
        let metrics = Metrics::new(0).unwrap();
        let missing = |id: &str| SourceProblem {
            id: id.into(),
            source: SourceKind::Managed {
                id: id.into(),
                plugin: "manual".into(),
                key: None,
            },
            path: format!("/etc/certvakt/{id}.pem"),
            kind: crate::inventory::ProblemKind::Missing,
            message: "missing".into(),
        };
        metrics.observe_inventory(
            &Arc::new(Inventory {
                problems: vec![missing("shop"), missing("lab")],
                ..Inventory::default()
            }),
            Duration::from_millis(1),
        );
        let series = |id: &str, step: Option<&'static str>| RenewalSeries {
            id: id.into(),
            step,
            next_at: None,
            consecutive_failures: 0,
            last_success: None,
            tasks_pending: 0,
            tasks: Vec::new(),
        };
        // shop's first issue is under way; lab has no run: its missing file is a problem.
        metrics.observe_renewals(vec![series("shop", Some("ordered")), series("lab", None)]);
        let text = metrics.render(0);
        let problems: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("certvakt_source_problem{"))
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("id=\"lab\""), "{problems:?}");
    }

    fn entry(id: &str, not_after: i64, key_check: KeyCheck) -> Entry {
        let mut entry = crate::inventory::example_entry();
        entry.id = id.into();
        entry.key_check = key_check;
        std::sync::Arc::make_mut(&mut entry.cert).not_after = not_after;
        entry
    }

    #[test]
    fn per_certificate_series_follow_the_latest_scan_and_the_clock() {
        let metrics = Metrics::new(0).unwrap();
        let first = Arc::new(Inventory {
            entries: vec![
                entry("a", 1_000, KeyCheck::Matches),
                entry("b", 5_000, KeyCheck::NotConfigured),
            ],
            ..Inventory::default()
        });
        metrics.observe_inventory(&first, Duration::from_millis(1));
        let text = metrics.render(2_000);
        let a = r#"{id="a",source="managed",plugin="dk-fmk",role="leaf"}"#;
        let b = r#"{id="b",source="managed",plugin="dk-fmk",role="leaf"}"#;
        assert!(
            text.contains(&format!("certvakt_certificate_expiry_seconds{a} -1000\n")),
            "{text}"
        );
        assert!(text.contains(&format!("certvakt_certificate_expired{a} 1\n")));
        assert!(text.contains(&format!("certvakt_certificate_expired{b} 0\n")));
        assert!(text.contains(&format!("certvakt_certificate_key_matches{a} 1\n")));
        assert!(!text.contains(&format!("certvakt_certificate_key_matches{b}")));
        assert!(text.contains("certvakt_certificates{source=\"managed\"} 2\n"));
        // The full DN is never a label; the info series carries the CN.
        let cert = &first.entries[0].cert;
        assert!(!text.contains(&cert.subject), "{text}");

        // b disappears: no stale series.
        let second = Arc::new(Inventory {
            entries: vec![entry("a", 1_000, KeyCheck::Mismatch)],
            ..Inventory::default()
        });
        metrics.observe_inventory(&second, Duration::from_millis(1));
        let text = metrics.render(2_000);
        assert!(!text.contains(r#"id="b""#), "{text}");
        assert!(text.contains(&format!("certvakt_certificate_key_matches{a} 0\n")));
    }

    #[test]
    fn scrapes_share_one_body_until_something_changes() {
        let metrics = Metrics::new(0).unwrap();
        let first = metrics.render_shared(2_000);
        let second = metrics.render_shared(2_000);
        // The same bytes, not an equal copy.
        assert_eq!(first.as_ptr(), second.as_ptr());
        // The same text apart from the process' own CPU time and memory, which move.
        let stable = |text: &[u8]| -> String {
            let text = std::str::from_utf8(text).unwrap();
            text.lines()
                .filter(|l| !l.starts_with("process_"))
                .collect()
        };
        assert_eq!(stable(&first), stable(metrics.render(2_000).as_bytes()));
        // Another second: rendered again (expiry values depend on it).
        let later = metrics.render_shared(2_001);
        assert_ne!(later.as_ptr(), first.as_ptr());
        // Something observed: rendered again, and the change is in it.
        metrics.observe_reload(false);
        let changed = metrics.render_shared(2_001);
        assert_ne!(changed.as_ptr(), later.as_ptr());
        let text = std::str::from_utf8(&changed).unwrap();
        assert!(
            text.contains("certvakt_config_last_reload_successful 0"),
            "{text}"
        );
        assert_eq!(stable(&changed), stable(metrics.render(2_001).as_bytes()));
    }

    /// The sample lines (not comments) of a family, by exact name.
    fn samples<'t>(text: &'t str, family: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    #[test]
    fn the_info_series_names_each_certificate_and_chain_certificates_are_not_managed() {
        let metrics = Metrics::new(0).unwrap();
        let leaf = entry("shop", 5_000, KeyCheck::Matches);
        let mut ca = entry("shop#1", 9_000, KeyCheck::NotConfigured);
        ca.index = 1;
        {
            let cert = Arc::make_mut(&mut ca.cert);
            cert.is_ca = true;
            cert.self_signed = false;
            cert.subject = "CN=Den Danske Stat OCES udstedende-CA 1, O=Den Danske Stat".into();
            cert.identities.clear();
            cert.key = crate::inventory::KeyInfo {
                algorithm: "EC".into(),
                bits: 384,
                curve: Some("P-384".into()),
            };
        }
        let mut root = entry("/etc/ssl/roots.pem", 9_000, KeyCheck::NotConfigured);
        root.source = Arc::new(SourceKind::Watched {
            pattern: "/etc/ssl/roots.pem".into(),
        });
        Arc::make_mut(&mut root.cert).is_ca = true;
        Arc::make_mut(&mut root.cert).self_signed = true;
        metrics.observe_inventory(
            &Arc::new(Inventory {
                entries: vec![leaf, ca, root],
                ..Inventory::default()
            }),
            Duration::from_millis(1),
        );
        let text = metrics.render(2_000);
        let info = samples(&text, "certvakt_certificate_info");
        assert_eq!(info.len(), 3, "{text}");
        assert!(
            info.contains(&concat!(
                r#"certvakt_certificate_info{id="shop",path="/etc/certvakt/fmk.pem","#,
                r#"source="managed",plugin="dk-fmk",subject_cn="Apotek","#,
                r#"issuer_cn="Den Danske Stat OCES udstedende-CA 1",identity_kind="dk_oces3","#,
                r#"identity_number="12345678",serial="01:02:03",key_type="rsa-3072",role="leaf"} 1"#
            )),
            "{info:#?}"
        );
        // The CA in the managed file: watched, no plugin, an intermediate.
        let chain = info.iter().find(|l| l.contains(r#"id="shop#1""#)).unwrap();
        assert!(
            chain.contains(
                r#"source="watched",plugin="",subject_cn="Den Danske Stat OCES udstedende-CA 1""#
            ) && chain.contains(r#"identity_kind="",identity_number="""#)
                && chain.contains(r#"key_type="ec-p-384",role="intermediate""#),
            "{chain}"
        );
        assert!(text.contains(
            "certvakt_certificate_expiry_seconds{id=\"shop#1\",source=\"watched\",plugin=\"\",role=\"intermediate\"} 7000\n"
        ), "{text}");
        let roots = info.iter().find(|l| l.contains("roots.pem")).unwrap();
        assert!(roots.contains(r#"role="root""#), "{roots}");
        // Only the managed certificate itself counts as managed.
        assert!(
            text.contains("certvakt_certificates{source=\"managed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("certvakt_certificates{source=\"watched\"} 2\n"),
            "{text}"
        );
    }

    fn declared(ids: &[String], plugins: &[&str]) -> Declared {
        Declared {
            warn_before: 30 * 86_400,
            certificates: ids.to_vec(),
            plugins: plugins.iter().map(|p| (*p).to_owned()).collect(),
            notifications: vec![("mail", "expiring"), ("webhook", "task_opened")],
        }
    }

    #[test]
    fn counters_exist_at_zero_for_what_is_configured() {
        let metrics = Metrics::new(0).unwrap();
        metrics.declare(&declared(&["fmk-prod".to_owned()], &["dk-fmk"]));
        let text = metrics.render(0);
        for line in [
            r#"certvakt_renewals_total{id="fmk-prod"} 0"#,
            r#"certvakt_renewal_failures_total{id="fmk-prod",step="ordered"} 0"#,
            r#"certvakt_renewal_failures_total{id="fmk-prod",step="save_state"} 0"#,
            r#"certvakt_hook_failures_total{hook="deploy_hook",id="fmk-prod"} 0"#,
            r#"certvakt_plugin_crashes_total{plugin="dk-fmk",reason="segfault"} 0"#,
            r#"certvakt_notifications_total{channel="mail",event="expiring",result="sent"} 0"#,
            r#"certvakt_notifications_total{channel="webhook",event="task_opened",result="undeliverable"} 0"#,
            "certvakt_warn_before_seconds 2592000",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        // A route that does not exist has no series.
        assert!(!text.contains(r#"channel="command""#), "{text}");
        // Events counted later add to the zero series.
        metrics.observe_renewal_success("fmk-prod");
        assert!(
            metrics
                .render(0)
                .contains("certvakt_renewals_total{id=\"fmk-prod\"} 1\n")
        );
    }

    #[test]
    fn series_of_removed_certificates_go_and_many_reloads_do_not_pile_up() {
        let metrics = Metrics::new(0).unwrap();
        let count = |metrics: &Metrics| {
            metrics
                .render(0)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .count()
        };
        metrics.declare(&declared(&["a".to_owned(), "b".to_owned()], &["manual"]));
        let baseline = count(&metrics);
        for round in 0..100 {
            // Two certificates each time, one of them renamed every round, with events.
            let ids = vec!["a".to_owned(), format!("renamed-{round}")];
            metrics.declare(&declared(&ids, &["manual"]));
            metrics.observe_renewal_failure(&ids[1], "ordered");
            metrics.observe_hook_failure(&ids[1], "post_hook");
            metrics.observe_renewal_success(&ids[1]);
            assert_eq!(count(&metrics), baseline, "round {round}");
        }
        let text = metrics.render(0);
        assert!(!text.contains(r#"id="b""#), "{text}");
        assert!(!text.contains(r#"id="renamed-98""#), "{text}");
        assert!(
            text.contains(r#"certvakt_renewals_total{id="renamed-99"} 1"#),
            "{text}"
        );
        // A route removed: its zero series go; one that counted something stays.
        let mut one_route = declared(&["a".to_owned()], &["manual"]);
        one_route.notifications = vec![("mail", "expiring")];
        metrics.observe_notification("webhook", "task_opened", "failed");
        metrics.declare(&one_route);
        let text = metrics.render(0);
        assert!(text.contains(
            r#"certvakt_notifications_total{channel="mail",event="expiring",result="sent"} 0"#
        ));
        assert!(text.contains(r#"certvakt_notifications_total{channel="webhook",event="task_opened",result="failed"} 1"#));
        assert!(
            !text.contains(r#"channel="webhook",event="task_opened",result="sent""#),
            "{text}"
        );
        // A plugin no longer loaded loses its crash series.
        metrics.declare(&declared(&["a".to_owned()], &[]));
        assert!(!metrics.render(0).contains("certvakt_plugin_crashes_total{"));
    }

    #[test]
    fn process_series_are_there_and_read_from_this_process() {
        let metrics = Metrics::new(1_700_000_000).unwrap();
        let text = metrics.render(0);
        let value = |name: &str| -> f64 {
            let line = samples(&text, name);
            assert_eq!(line.len(), 1, "{name} in\n{text}");
            line[0].rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") > 0.0);
        assert_eq!(value("process_start_time_seconds"), 1_700_000_000.0);
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        labels(&mut out, &[("id", "a\"b\\c\nd")]);
        assert_eq!(out, r#"{id="a\"b\\c\nd"}"#);
    }
}
