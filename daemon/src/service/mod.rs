//! The daemon: configuration, inventory, metrics and control socket in one loop.
//!
//! The map: this file is the run loop and reloading; `backend` answers the control socket;
//! `report` makes the status, list and show reports; `scan` tracks scans and logs changes.
//!
//! Contract:
//! - [`run`] binds the control socket and the metrics listener first (so a second daemon or a
//!   taken port fails at once and clearly), scans, then tells systemd `READY=1`.
//! - One task owns the mutable state (the scanner, the watcher, the running configuration).
//!   It wakes for: shutdown (the future passed in, SIGTERM, SIGINT), reload (SIGHUP or the
//!   control socket), a change on disk (inotify, debounced), the next moment a certificate
//!   changes state ([`crate::schedule`]), and the watchdog. Between those it sleeps.
//! - Readers (control requests, `/metrics`) see an immutable snapshot ([`View`]) that the
//!   loop swaps after each scan or reload; they never wait for a scan.
//! - A reload validates the new configuration completely before anything changes; an
//!   invalid one is refused with every problem logged and reported, and the running
//!   configuration stays in force.
//! - Every change of a certificate's state or a source's problems is one log line with
//!   structured fields (`CERT_ID`, `PATH`, `STATE`/`PROBLEM`).

mod backend;
mod report;
mod scan;
pub mod snapshot;

use backend::Shared;
use report::{problems_message, status_line};
use scan::Scanning;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{self, Config, Problem};
use crate::control;
use crate::control::auth::AccessPolicy;
use crate::control::protocol::ReloadReport;
use crate::inventory::Inventory;
use crate::lifecycle::client_identities::{Identities, SharedConfig, Trust};
use crate::lifecycle::{self, Engine, EngineError};
use crate::metrics::{self, Metrics, MetricsError};
use crate::notify;
use crate::plugin_host::{self, HttpService, Registry};
use crate::signal::{Signal, Signals};
use crate::store::Store;
use crate::systemd::Notifier;
use crate::web_config::{Access, WebState};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("the renewal engine cannot start: {0}")]
    Engine(#[from] EngineError),
    #[error(
        "cannot listen for ACME http-01 challenges on {addr}: {source} (set [daemon] http01_listen to a free address, or \"\" to turn the responder off)"
    )]
    Http01 {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// At most this many scans in a row while new folders come under watch.
pub(super) const MAX_SCAN_ROUNDS: u32 = 8;

/// How long a burst of file changes must be quiet before the rescan.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What readers see: replaced as a whole, never mutated.
#[derive(Debug, Clone)]
pub struct View {
    pub config: Arc<Config>,
    pub inventory: Arc<Inventory>,
    pub config_loaded_at: i64,
    pub last_reload_error: Option<String>,
    pub metrics_listen: Option<String>,
}

enum Command {
    Reload(oneshot::Sender<Result<ReloadReport, Vec<Problem>>>),
}

/// Runs the daemon until `shutdown` resolves or SIGTERM/SIGINT arrives.
///
/// `config_path` is re-read on reload; `config` is its already validated content.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let started_at = crate::now_unix();
    let begun = std::time::Instant::now();
    let notifier = Notifier::from_env();
    let mut signals = Signals::install().map_err(ServiceError::Signals)?;
    let metrics = Arc::new(Metrics::new(started_at)?);

    let socket_path = config.control.socket.clone();
    let socket = control::server::bind(&socket_path).map_err(|source| ServiceError::Socket {
        path: socket_path.clone(),
        source,
    })?;
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    // A web config that cannot be used stops the start: serving plain and open instead of
    // TLS and authentication would be a silent downgrade.
    let web = Arc::new(WebState::new(match &config.metrics.web {
        Some(web) => Access::new(web)
            .map_err(|p| MetricsError::WebConfig(format!("{}: {}", p.key, p.message)))?,
        None => Access::open(),
    }));
    let metrics_listen = metrics_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string());

    let policy = Arc::new(RwLock::new(access_policy(&config)));
    let (commands_tx, mut commands) = mpsc::channel(8);
    let (stop_tx, stop_rx) = watch::channel(false);

    let config = Arc::new(config.in_force());
    let plugins = Arc::new(load_plugins(&config, &metrics));
    metrics.declare(&declared(&config, &plugins));
    let shared_config: SharedConfig = Arc::new(RwLock::new(config.clone()));
    let http: Arc<HttpService> = Arc::new(HttpService::new(
        tokio::runtime::Handle::current(),
        Arc::new(Identities {
            store: Store::open(&config.daemon.state_dir).map_err(EngineError::from)?,
            config: shared_config.clone(),
        }),
        Arc::new(Trust {
            config: shared_config.clone(),
        }),
        metrics.clone(),
    ));
    // The first scan runs on the blocking pool while this thread reads the engine's records:
    // `join!` starts the scan, then makes the engine, then waits for the scan.
    let mut scanning = Scanning::new(&config);
    let (inventory, engine) = tokio::join!(scanning.run(&config, &metrics, true), async {
        Engine::new(
            config.clone(),
            plugins.clone(),
            metrics.clone(),
            Some(http.clone()),
        )
    });
    let mut engine = engine?;
    let (installed_tx, mut installed) = mpsc::unbounded_channel();
    engine.notify_installs(installed_tx);
    let http01_task = match config.daemon.http01_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServiceError::Http01 { addr, source })?;
            let responder = Arc::new(plugin_host::challenges::Http01Responder::new());
            engine.set_http01(responder.clone());
            log::info!(address = addr.to_string(); "answering ACME http-01 challenges");
            Some(tokio::spawn(crate::httpd::serve(
                listener,
                responder.handler(),
                "http01",
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    // The notifier's handle first: the engine's plugins send their mail through it.
    let (people, pending_notifier) = notify::sender::handle();
    engine.set_mail_out(Arc::new(notify::plugin_mail::PluginMailer::new(
        people.clone(),
        shared_config.clone(),
    )));
    let engine_view = engine.view();
    // One signal for both views: the notifier looks when either changes.
    let published = Arc::new(tokio::sync::Notify::new());
    engine.tell_publications(published.clone());
    let (engine_tx, engine_rx) = mpsc::channel(16);
    // Each scrape asks the engine for a turn, without waiting: a full queue (the engine busy
    // or stuck) is skipped, and the scrape answers at once either way.
    let ping = engine_tx.clone();
    metrics.on_scrape(move || {
        let _ = ping.try_send(lifecycle::Command::Ping);
    });
    // After the first scan, not beside it: with a thousand certificates due at once the
    // engine's first turns would take the loop's thread (and the second core) from the scan
    // that the first `status` waits for. The engine's view exists already.
    let engine_task = tokio::spawn(engine.run(engine_rx));

    let view = Arc::new(RwLock::new(Arc::new(View {
        config: config.clone(),
        inventory,
        config_loaded_at: started_at,
        last_reload_error: None,
        metrics_listen: metrics_listen.clone(),
    })));
    let notify_task = notify::sender::start(
        pending_notifier,
        config.clone(),
        Some(http),
        metrics.clone(),
        notify::sender::Watching {
            look: snapshot::look(
                view.clone(),
                engine_view.clone(),
                plugins.clone(),
                notify::channels::host_name(),
            ),
            changed: published.clone(),
            poll: snapshot::test_clock_set(),
        },
        stopped(stop_rx.clone()),
    );
    let shared = Arc::new(Shared {
        started_at,
        view,
        notifier: people,
        metrics: metrics.clone(),
        commands: commands_tx,
        plugins,
        engine: engine_tx,
        engine_view,
        published,
        config: shared_config,
    });

    let control_task = {
        let listener = socket
            .tokio_listener()
            .map_err(|source| ServiceError::Socket {
                path: socket_path.clone(),
                source,
            })?;
        let stop = stopped(stop_rx.clone());
        tokio::spawn(control::server::serve(
            listener,
            shared.clone(),
            policy.clone(),
            stop,
        ))
    };
    let reaper_task = tokio::spawn(plugin_host::reap_ended_children(
        shared.plugins.clone(),
        stopped(stop_rx.clone()),
    ));
    let metrics_task = metrics_listener.map(|listener| {
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            web.clone(),
            stopped(stop_rx.clone()),
        ))
    });

    let view = shared.view();
    log::info!(
        socket = socket_path.display().to_string(),
        metrics = metrics_listen.clone().unwrap_or_else(|| "off".into());
        "certvaktd {} started in {} ms: {}", crate::VERSION, begun.elapsed().as_millis(), config.summary()
    );
    notifier.ready(&status_line(&view));
    // The loop reads the configuration and the inventory from the current view only: the
    // start's own references would keep both alive after the first reload or scan.
    drop(view);
    drop(config);
    crate::allocator::give_back();

    let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);
    tokio::pin!(shutdown);
    loop {
        let view = shared.view();
        let now = crate::now_unix();
        let wake_at = crate::schedule::next_wakeup(&view.inventory, now, warn_before(&view.config));
        let sleep = Duration::from_secs(u64::try_from(wake_at - now).unwrap_or(0).max(1));
        // After a scan that could not look at everything, scan again soon.
        let sleep = scanning.retry_in().map_or(sleep, |retry| sleep.min(retry));

        let rescan = tokio::select! {
            _ = &mut shutdown => {
                log::info!("shutdown requested");
                break;
            }
            signal = signals.recv() => match signal {
                Signal::Shutdown(name) => {
                    log::info!(signal = name; "received {name}, shutting down");
                    break;
                }
                Signal::Reload => {
                    log::info!(signal = "SIGHUP"; "received SIGHUP, reloading the configuration");
                    notifier.reloading();
                    let _ = reload(&config_path, &shared, &policy, &mut scanning, &web).await;
                    notifier.ready(&status_line(&shared.view()));
                    false
                }
            },
            Some(command) = commands.recv() => match command {
                Command::Reload(reply) => {
                    log::info!("reload requested over the control socket");
                    notifier.reloading();
                    let result = reload(&config_path, &shared, &policy, &mut scanning, &web).await;
                    notifier.ready(&status_line(&shared.view()));
                    let _ = reply.send(result);
                    false
                }
            },
            Some(id) = installed.recv() => {
                log::debug!(cert_id = id.as_str(); "live files changed by the renewal engine, rescanning");
                true
            }
            _ = scanning.watcher.changed() => {
                scanning.watcher.drain_for(DEBOUNCE).await;
                log::debug!("change on disk noticed, rescanning");
                true
            }
            _ = tokio::time::sleep(sleep) => true,
            _ = tick(&mut watchdog) => {
                notifier.watchdog();
                false
            }
        };
        if rescan {
            let view = shared.view();
            let inventory = scanning.run(&view.config, &metrics, false).await;
            shared.publish(View {
                inventory,
                ..(*view).clone()
            });
            notifier.status(&status_line(&shared.view()));
        }
    }

    notifier.stopping();
    let _ = stop_tx.send(true);
    let drain = async {
        if let Some(task) = http01_task {
            let _ = task.await;
        }
        let _ = control_task.await;
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        let _ = notify_task.await;
        let _ = reaper_task.await;
    };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        log::warn!("connections still open after 5 s; closing them");
    }
    // Closing the command channel (the last sender goes with `shared`) ends the engine after
    // the step it is in; its state is saved after every step, so a step cut short by the
    // deadline is redone at the next start.
    drop(shared);
    if tokio::time::timeout(Duration::from_secs(10), engine_task)
        .await
        .is_err()
    {
        log::warn!(
            "the renewal engine was still in a step after 10 s; it resumes there at the next start"
        );
    }
    drop(socket);
    log::info!("certvaktd stopped");
    Ok(())
}

/// Loads the plugins once at start (a loaded library is never unloaded, so new plugin files
/// take a restart), and says which certificates cannot renew.
fn load_plugins(config: &Config, metrics: &Arc<Metrics>) -> Registry {
    let euid = nix::unistd::geteuid().as_raw();
    let service_uid = (euid != 0).then_some(euid);
    let registry = plugin_host::load_dir(&config.daemon.plugin_dir, service_uid, metrics.clone());
    for plugin in &registry.loaded {
        log::info!(plugin = plugin.name.as_str(), version = plugin.version.as_str(); "plugin loaded from {}", plugin.file.display());
    }
    for cert in &config.certificates {
        if registry.get(&cert.plugin).is_none() {
            log::warn!(cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(); "plugin {} is not loaded: this certificate is watched but not renewed (see `certvakt plugins`)", cert.plugin);
        }
    }
    registry
}

/// What the metrics create at 0: the configuration's certificates and routes, the loaded plugins.
fn declared(config: &Config, plugins: &Registry) -> metrics::Declared {
    metrics::Declared::new(config, plugins.loaded.iter().map(|p| p.name.as_str()))
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

pub(super) fn warn_before(config: &Config) -> u64 {
    config.daemon.warn_before.as_secs()
}

fn access_policy(config: &Config) -> AccessPolicy {
    let policy = AccessPolicy::from_names(&config.control.admin_group, &config.control.read_group);
    for warning in policy.warnings() {
        log::warn!("{warning}");
    }
    policy
}

/// Applies a new configuration if, and only if, it is valid.
async fn reload(
    config_path: &Path,
    shared: &Shared,
    policy: &RwLock<AccessPolicy>,
    scanning: &mut Scanning,
    web: &WebState,
) -> Result<ReloadReport, Vec<Problem>> {
    let path = config_path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || config::load(&path))
        .await
        .unwrap_or_else(|err| {
            Err(vec![Problem {
                file: config_path.to_path_buf(),
                line: None,
                key: String::new(),
                message: format!("loading the configuration failed unexpectedly: {err}"),
                hint: "see the journal; the running configuration stays in force".into(),
            }])
        });
    // The plugins are asked about their settings as check-config asks them: a reload that
    // check-config would refuse is refused.
    // Certificates configured as before were asked when they were loaded: only what changed
    // is asked again, so a reload that adds one certificate to a thousand asks once.
    let loaded = match loaded {
        Ok(config) => {
            let known = config::unchanged_certificates(&shared.view().config, &config);
            let answers = plugin_host::settings_check::ask_plugins(
                &config,
                &shared.plugins,
                &known,
                plugin_host::settings_check::CHECK_DEADLINE,
            )
            .await;
            let problems = plugin_host::settings_check::problems(&config, answers);
            if problems.is_empty() {
                Ok(config)
            } else {
                Err(problems)
            }
        }
        Err(problems) => Err(problems),
    };
    let old = shared.view();
    let new = match loaded {
        Ok(config) => config,
        Err(problems) => {
            for problem in &problems {
                log::error!(
                    file = problem.file.display().to_string(),
                    line = problem.line.unwrap_or(0),
                    key = problem.key.as_str();
                    "configuration reload refused: {}", problem.message
                );
            }
            log::error!(
                "configuration reload refused: {} problem(s); the running configuration stays in force",
                problems.len()
            );
            shared.metrics.observe_reload(false);
            shared.publish(View {
                last_reload_error: Some(problems_message(&problems)),
                ..(*old).clone()
            });
            return Err(problems);
        }
    };
    if new.control.socket != old.config.control.socket {
        log::warn!(key = "control.socket"; "changing the control socket takes a restart; {} stays in use until then", old.config.control.socket.display());
    }
    if new.metrics.listen != old.config.metrics.listen {
        log::warn!(key = "metrics.listen"; "changing the metrics address takes a restart; the current listener stays until then");
    }
    // The web config is read again (its certificate files may have been renewed); if it
    // cannot be used now, the endpoint keeps the settings it has.
    let access = match &new.metrics.web {
        Some(settings) => Access::new(settings),
        None => Ok(Access::open()),
    };
    match access {
        Ok(access) => web.replace(access),
        Err(p) => {
            log::error!(key = "metrics.web_config"; "the web config for /metrics cannot be used ({}: {}); /metrics keeps its previous TLS and authentication settings", p.key, p.message);
        }
    }
    log::set_max_level(new.daemon.log_level);
    let new_policy = access_policy(&new);
    match policy.write() {
        Ok(mut p) => *p = new_policy,
        Err(poisoned) => *poisoned.into_inner() = new_policy,
    }
    let config = Arc::new(new.in_force());
    let inventory = scanning.run(&config, &shared.metrics, false).await;
    shared.metrics.declare(&declared(&config, &shared.plugins));
    shared.metrics.observe_reload(true);
    match shared.config.write() {
        Ok(mut c) => *c = config.clone(),
        Err(poisoned) => *poisoned.into_inner() = config.clone(),
    }
    let _ = shared
        .engine
        .send(lifecycle::Command::Reconfigure(config.clone()))
        .await;
    if let Err(e) = shared
        .notifier
        .ask(notify::Request::Reconfigure(config.clone()))
    {
        log::warn!("the notifier did not take the new configuration: {e}");
    }
    let report = ReloadReport {
        summary: config.summary(),
        certificates: inventory.entries.len(),
        problems: inventory.problems.len(),
    };
    log::info!("configuration reloaded: {}", report.summary);
    shared.publish(View {
        config,
        inventory,
        config_loaded_at: crate::now_unix(),
        last_reload_error: None,
        ..(*old).clone()
    });
    drop(old);
    crate::allocator::give_back();
    Ok(report)
}
