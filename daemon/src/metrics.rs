//! Metrics: the one registry, every metric name in one place, and the `/metrics` endpoint.
//!
//! Contract:
//! - [`Metrics`] owns a private `prometheus::Registry`; metric names and help texts are
//!   written here and nowhere else. Labels are bounded: the certificate id (the configured id,
//!   or the file path of a watched file), whether it is managed or watched, the plugin, and
//!   closed enums (problem kind, reload result). Never serial numbers, subjects or DNs.
//! - [`Metrics::observe_inventory`] replaces every per-certificate series after a scan:
//!   series of certificates that disappeared are removed, not left stale.
//! - Values that depend on the clock (`..._expiry_seconds`, `..._expired`) are computed when
//!   the endpoint is scraped, so they are never older than the scrape.
//! - [`serve`] answers `GET /metrics` (text format 0.0.4), `GET /` and `GET /healthz`.
//!
//! The `prometheus` crate is used (the design card's choice) without default features: its
//! protobuf encoder is not needed and carried an advisory.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::inventory::{Inventory, KeyCheck, ProblemKind, SourceKind};

/// Why the metrics could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric definition: {0}")]
    Definition(#[from] prometheus::Error),
    #[error(
        "cannot listen for /metrics on {addr}: {source} (set [metrics] listen to a free address, or \"\" to disable)"
    )]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

const CERT_LABELS: &[&str] = &["id", "source", "plugin"];
const PROBLEM_LABELS: &[&str] = &["id", "source", "problem"];

/// Per-certificate label values, kept to compute clock-dependent values at scrape time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CertLabels {
    id: String,
    source: &'static str,
    plugin: String,
}

impl CertLabels {
    fn values(&self) -> [&str; 3] {
        [&self.id, self.source, &self.plugin]
    }
}

#[derive(Debug, Default)]
struct Series {
    /// Certificate labels -> not_after.
    certs: BTreeMap<CertLabels, i64>,
    /// Problem labels currently set.
    problems: Vec<[String; 3]>,
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    not_before: GaugeVec,
    not_after: GaugeVec,
    expiry: GaugeVec,
    expired: IntGaugeVec,
    key_matches: IntGaugeVec,
    source_problem: IntGaugeVec,
    certificates: IntGaugeVec,
    scans: IntCounter,
    scan_duration: Histogram,
    last_scan: Gauge,
    files_parsed: IntCounter,
    reloads: IntCounterVec,
    config_last_reload_ok: IntGauge,
    control_requests: IntCounterVec,
    series: Mutex<Series>,
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

        let not_before = GaugeVec::new(
            Opts::new(
                "certvakt_certificate_not_before_timestamp_seconds",
                "Start of the certificate's validity, seconds since the Unix epoch.",
            ),
            CERT_LABELS,
        )?;
        let not_after = GaugeVec::new(
            Opts::new(
                "certvakt_certificate_not_after_timestamp_seconds",
                "End of the certificate's validity, seconds since the Unix epoch.",
            ),
            CERT_LABELS,
        )?;
        let expiry = GaugeVec::new(
            Opts::new(
                "certvakt_certificate_expiry_seconds",
                "Seconds until the certificate expires at scrape time; negative once expired.",
            ),
            CERT_LABELS,
        )?;
        let expired = IntGaugeVec::new(
            Opts::new(
                "certvakt_certificate_expired",
                "1 if the certificate has expired at scrape time, else 0.",
            ),
            CERT_LABELS,
        )?;
        let key_matches = IntGaugeVec::new(
            Opts::new(
                "certvakt_certificate_key_matches",
                "For managed certificates with a configured key: 1 if key and certificate belong together, 0 if not or the key is unreadable.",
            ),
            CERT_LABELS,
        )?;
        let source_problem = IntGaugeVec::new(
            Opts::new(
                "certvakt_source_problem",
                "1 while a configured file or pattern has this problem (missing, unreadable, not a certificate, ...).",
            ),
            PROBLEM_LABELS,
        )?;
        let certificates = IntGaugeVec::new(
            Opts::new(
                "certvakt_certificates",
                "Certificates found in the last scan, by source (managed or watched).",
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
        for c in [&not_before, &not_after, &expiry] {
            reg(Box::new(c.clone()))?;
        }
        for c in [&expired, &key_matches, &source_problem, &certificates] {
            reg(Box::new(c.clone()))?;
        }
        reg(Box::new(scans.clone()))?;
        reg(Box::new(scan_duration.clone()))?;
        reg(Box::new(last_scan.clone()))?;
        reg(Box::new(files_parsed.clone()))?;
        reg(Box::new(reloads.clone()))?;
        reg(Box::new(config_last_reload_ok.clone()))?;
        reg(Box::new(control_requests.clone()))?;
        for result in ["applied", "invalid"] {
            reloads.with_label_values(&[result]);
        }
        for source in ["managed", "watched"] {
            certificates.with_label_values(&[source]);
        }

        Ok(Metrics {
            registry,
            not_before,
            not_after,
            expiry,
            expired,
            key_matches,
            source_problem,
            certificates,
            scans,
            scan_duration,
            last_scan,
            files_parsed,
            reloads,
            config_last_reload_ok,
            control_requests,
            series: Mutex::new(Series::default()),
        })
    }

    /// Replaces every per-certificate and per-problem series with what `inventory` found.
    pub fn observe_inventory(&self, inventory: &Inventory, scan_time: Duration) {
        self.scans.inc();
        self.scan_duration.observe(scan_time.as_secs_f64());
        self.last_scan.set(inventory.scanned_at as f64);
        self.files_parsed.inc_by(inventory.files_parsed as u64);

        let mut certs = BTreeMap::new();
        let (mut managed, mut watched) = (0, 0);
        for entry in &inventory.entries {
            let (source, plugin) = match &entry.source {
                SourceKind::Managed { plugin, .. } => {
                    managed += 1;
                    ("managed", plugin.clone())
                }
                SourceKind::Watched { .. } => {
                    watched += 1;
                    ("watched", String::new())
                }
            };
            let labels = CertLabels {
                id: entry.id.clone(),
                source,
                plugin,
            };
            let values = labels.values();
            self.not_before
                .with_label_values(&values)
                .set(entry.cert.not_before as f64);
            self.not_after
                .with_label_values(&values)
                .set(entry.cert.not_after as f64);
            match entry.key_check {
                KeyCheck::NotConfigured => {
                    let _ = self.key_matches.remove_label_values(&values);
                }
                KeyCheck::Matches => self.key_matches.with_label_values(&values).set(1),
                KeyCheck::Mismatch | KeyCheck::Unreadable => {
                    self.key_matches.with_label_values(&values).set(0)
                }
            }
            certs.insert(labels, entry.cert.not_after);
        }
        self.certificates
            .with_label_values(&["managed"])
            .set(managed);
        self.certificates
            .with_label_values(&["watched"])
            .set(watched);

        let problems: Vec<[String; 3]> = inventory
            .problems
            .iter()
            .map(|p| {
                let source = match p.source {
                    SourceKind::Managed { .. } => "managed",
                    SourceKind::Watched { .. } => "watched",
                };
                [p.id.clone(), source.to_owned(), p.kind.as_str().to_owned()]
            })
            .collect();

        let Ok(mut series) = self.series.lock() else {
            return;
        };
        for gone in series.certs.keys().filter(|l| !certs.contains_key(*l)) {
            let values = gone.values();
            for vec in [&self.not_before, &self.not_after, &self.expiry] {
                let _ = vec.remove_label_values(&values);
            }
            let _ = self.expired.remove_label_values(&values);
            let _ = self.key_matches.remove_label_values(&values);
        }
        for gone in series.problems.iter().filter(|p| !problems.contains(p)) {
            let _ = self
                .source_problem
                .remove_label_values(&[&gone[0], &gone[1], &gone[2]]);
        }
        for p in &problems {
            self.source_problem
                .with_label_values(&[&p[0], &p[1], &p[2]])
                .set(1);
        }
        series.certs = certs;
        series.problems = problems;
    }

    /// Counts a configuration reload.
    pub fn observe_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "invalid" };
        self.reloads.with_label_values(&[result]).inc();
        self.config_last_reload_ok.set(i64::from(applied));
    }

    /// Counts a control request. `outcome` is one of a fixed set (`ok`, `error`, `forbidden`).
    pub fn observe_control_request(&self, request: &'static str, outcome: &'static str) {
        self.control_requests
            .with_label_values(&[request, outcome])
            .inc();
    }

    /// The text exposition, with clock-dependent values computed for `now`.
    pub fn render(&self, now: i64) -> String {
        if let Ok(series) = self.series.lock() {
            for (labels, not_after) in &series.certs {
                let values = labels.values();
                self.expiry
                    .with_label_values(&values)
                    .set((not_after - now) as f64);
                self.expired
                    .with_label_values(&values)
                    .set(i64::from(now >= *not_after));
            }
        }
        let mut out = Vec::with_capacity(16 * 1024);
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Every problem kind as a label value; exposed for documentation tests.
pub fn problem_label_values() -> Vec<&'static str> {
    ProblemKind::ALL.iter().map(|k| k.as_str()).collect()
}

/// Binds the metrics listener. Separate from [`serve`] so start-up fails early and clearly.
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, MetricsError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves `/metrics` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                log::warn!(error = err.to_string(); "metrics listener could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(crate::now_unix()),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            format!("certvakt {}\nmetrics: /metrics\n", crate::VERSION),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
