//! The daemon: configuration, inventory, metrics and control socket in one loop.
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

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{self, Config, Problem};
use crate::control::auth::AccessPolicy;
use crate::control::protocol::{
    Counts, ErrorCode, Health, ListItem, PluginInfo, PluginsReport, RefusedPlugin, ReloadReport,
    Request, Response, ShowReport, ShownEntry, StatusReport, problems_message,
};
use crate::control::{self, Backend};
use crate::inventory::{self, CertState, Entry, Inventory, NordicIdentity, ProblemKind, Scanner};
use crate::lifecycle::identity::{Identities, SharedConfig, Trust};
use crate::lifecycle::{self, Engine, EngineError, EngineView};
use crate::metrics::{self, Metrics, MetricsError};
use crate::plugin_host::{self, HttpService, Registry};
use crate::signal::{Signal, Signals};
use crate::store::Store;
use crate::systemd::Notifier;
use crate::watcher::Watcher;

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
const MAX_SCAN_ROUNDS: u32 = 8;

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

/// The part of the daemon the control socket talks to.
struct Shared {
    started_at: i64,
    view: RwLock<Arc<View>>,
    metrics: Arc<Metrics>,
    commands: mpsc::Sender<Command>,
    plugins: Arc<Registry>,
    engine: mpsc::Sender<lifecycle::Command>,
    engine_view: Arc<RwLock<EngineView>>,
    /// The configuration the HTTP client's identities and trust sets read.
    config: SharedConfig,
}

impl Shared {
    fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, view: View) {
        let view = Arc::new(view);
        match self.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }
}

impl Backend for Shared {
    async fn handle(&self, request: Request) -> Response {
        let name = request.name();
        let response = match request {
            Request::Status => Response::Status(status_report(
                &self.view(),
                self.started_at,
                &self.engine_view(),
                self.plugins.refused.len(),
            )),
            Request::List => Response::List {
                items: list_items(&self.view(), crate::now_unix()),
            },
            Request::Show { id } => {
                match show_report(&self.view(), &id, crate::now_unix(), &self.engine_view()) {
                    Some(report) => Response::Show(report),
                    None => Response::Error {
                        code: ErrorCode::NotFound,
                        message: format!(
                            "no certificate or source with id `{id}` (see `certvakt list`; watched files are named by path)"
                        ),
                    },
                }
            }
            Request::Reload => self.reload().await,
            Request::Renew { id, force } => {
                self.ask_engine(
                    |reply| lifecycle::Command::Renew { id, force, reply },
                    |message| Response::Renew { message },
                )
                .await
            }
            Request::Rollback { id } => {
                self.ask_engine(
                    |reply| lifecycle::Command::Rollback { id, reply },
                    |message| Response::Rollback { message },
                )
                .await
            }
            Request::TaskDone { id } => {
                self.ask_engine(
                    |reply| lifecycle::Command::TaskDone { task_id: id, reply },
                    |message| Response::TaskDone { message },
                )
                .await
            }
            Request::Import { id, data, password } => {
                use base64::Engine as _;
                match base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) {
                    Ok(bytes) => {
                        let bytes = zeroize::Zeroizing::new(bytes);
                        let password = password.map(zeroize::Zeroizing::new);
                        self.ask_engine(
                            |reply| lifecycle::Command::Import {
                                id,
                                bytes,
                                password,
                                reply,
                            },
                            |message| Response::Import { message },
                        )
                        .await
                    }
                    Err(e) => Response::Error {
                        code: ErrorCode::BadRequest,
                        message: format!("the imported file did not arrive intact (base64: {e})"),
                    },
                }
            }
            Request::Tasks => Response::Tasks {
                tasks: self.engine_view().tasks().cloned().collect(),
            },
            Request::TaskShow { id } => match self.engine_view().tasks().find(|t| t.id == id) {
                Some(task) => Response::TaskShow { task: task.clone() },
                None => Response::Error {
                    code: ErrorCode::NotFound,
                    message: format!("no open task `{id}` (see `certvakt tasks`)"),
                },
            },
            Request::Plugins => Response::Plugins(self.plugins_report()),
        };
        let outcome = match response {
            Response::Error { .. } => "error",
            _ => "ok",
        };
        self.metrics.observe_control_request(name, outcome);
        response
    }
}

impl Shared {
    fn engine_view(&self) -> EngineView {
        match self.engine_view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sends a command to the renewal engine and turns its answer into a response.
    async fn ask_engine(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<String, EngineError>>) -> lifecycle::Command,
        ok: impl FnOnce(String) -> Response,
    ) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.engine.send(command(tx)).await.is_err() {
            return internal("the renewal engine has stopped; see the journal");
        }
        match rx.await {
            Ok(Ok(message)) => ok(message),
            Ok(Err(error)) => Response::Error {
                code: match error {
                    EngineError::UnknownCertificate(_) | EngineError::UnknownTask(_) => {
                        ErrorCode::NotFound
                    }
                    _ => ErrorCode::Refused,
                },
                message: error.to_string(),
            },
            Err(_) => internal("the renewal engine stopped before answering; see the journal"),
        }
    }

    fn plugins_report(&self) -> PluginsReport {
        let view = self.view();
        let users = |name: &str| {
            view.config
                .certificates
                .iter()
                .filter(|c| c.plugin == name)
                .map(|c| c.id.clone())
                .collect()
        };
        PluginsReport {
            plugin_dir: view.config.daemon.plugin_dir.clone(),
            loaded: self
                .plugins
                .loaded
                .iter()
                .map(|p| PluginInfo {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    api_version: p.api_version.clone(),
                    file: p.file.clone(),
                    certificates: users(&p.name),
                })
                .collect(),
            refused: self
                .plugins
                .refused
                .iter()
                .map(|r| RefusedPlugin {
                    file: r.file.clone(),
                    reason: r.reason.to_string(),
                })
                .collect(),
        }
    }

    async fn reload(&self) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Reload(tx)).await.is_err() {
            return internal("the daemon is shutting down");
        }
        match rx.await {
            Ok(Ok(report)) => Response::Reload(report),
            Ok(Err(problems)) => Response::Error {
                code: ErrorCode::InvalidConfig,
                message: problems_message(&problems),
            },
            Err(_) => internal("the reload was interrupted by shutdown"),
        }
    }
}

fn internal(message: &str) -> Response {
    Response::Error {
        code: ErrorCode::Internal,
        message: message.to_owned(),
    }
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
    let metrics_listen = metrics_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string());

    let policy = Arc::new(RwLock::new(access_policy(&config)));
    let (commands_tx, mut commands) = mpsc::channel(8);
    let (stop_tx, stop_rx) = watch::channel(false);

    let config = Arc::new(config);
    let plugins = Arc::new(load_plugins(&config, &metrics));
    let shared_config: SharedConfig = Arc::new(RwLock::new(config.clone()));
    let http = Arc::new(HttpService::new(
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
    let mut engine = Engine::new(config.clone(), plugins.clone(), metrics.clone(), Some(http))?;
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
    let engine_view = engine.view();
    let (engine_tx, engine_rx) = mpsc::channel(16);
    let engine_task = tokio::spawn(engine.run(engine_rx));
    let mut scanning = Scanning::new(&config);
    let inventory = scanning.run(&config, &metrics, true).await;

    let shared = Arc::new(Shared {
        started_at,
        view: RwLock::new(Arc::new(View {
            config: config.clone(),
            inventory,
            config_loaded_at: started_at,
            last_reload_error: None,
            metrics_listen: metrics_listen.clone(),
        })),
        metrics: metrics.clone(),
        commands: commands_tx,
        plugins,
        engine: engine_tx,
        engine_view,
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
    let metrics_task = metrics_listener.map(|listener| {
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            stopped(stop_rx.clone()),
        ))
    });

    let view = shared.view();
    log::info!(
        socket = socket_path.display().to_string(),
        metrics = metrics_listen.clone().unwrap_or_else(|| "off".into());
        "certvaktd {} started: {}", crate::VERSION, config.summary()
    );
    notifier.ready(&status_line(&view));

    let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);
    tokio::pin!(shutdown);
    loop {
        let view = shared.view();
        let now = crate::now_unix();
        let wake_at = crate::schedule::next_wakeup(&view.inventory, now, warn_before(&view.config));
        let sleep = Duration::from_secs(u64::try_from(wake_at - now).unwrap_or(0).max(1));

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
                    let _ = reload(&config_path, &shared, &policy, &mut scanning).await;
                    notifier.ready(&status_line(&shared.view()));
                    false
                }
            },
            Some(command) = commands.recv() => match command {
                Command::Reload(reply) => {
                    log::info!("reload requested over the control socket");
                    notifier.reloading();
                    let result = reload(&config_path, &shared, &policy, &mut scanning).await;
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

fn warn_before(config: &Config) -> u64 {
    config.daemon.warn_before.as_secs()
}

fn access_policy(config: &Config) -> AccessPolicy {
    let policy = AccessPolicy::from_names(&config.control.admin_group, &config.control.read_group);
    for warning in policy.warnings() {
        log::warn!("{warning}");
    }
    policy
}

/// The scanner, the folder watcher and the change log: what one scan feeds.
#[derive(Debug)]
struct Scanning {
    scanner: Scanner,
    watcher: Watcher,
    tracker: Tracker,
}

impl Scanning {
    fn new(config: &Config) -> Scanning {
        Scanning {
            scanner: Scanner::new(config.daemon.max_file_size),
            watcher: Watcher::new(),
            tracker: Tracker::default(),
        }
    }

    /// Scans, then hands the result to the metrics, the watcher (which folders to watch) and
    /// the change log. `first` logs only what is not ok, not every certificate found.
    ///
    /// When the scan makes the watcher take on new folders (a configured folder that was
    /// just created, say), what happened in them before the watch began is unseen, so it
    /// scans again; unchanged files cost a `stat`. Bounded: each round watches deeper.
    async fn run(&mut self, config: &Config, metrics: &Metrics, first: bool) -> Arc<Inventory> {
        let mut rounds = 0;
        let (inventory, took) = loop {
            let (inventory, took) = self.scan(config).await;
            rounds += 1;
            if self.watch(config) == 0 || rounds == MAX_SCAN_ROUNDS {
                break (inventory, took);
            }
        };
        let inventory = Arc::new(inventory);
        metrics.observe_inventory(&inventory, took);
        self.tracker
            .observe(&inventory, crate::now_unix(), warn_before(config), first);
        inventory
    }

    /// Points the watcher at every folder the configuration and the last scan depend on.
    fn watch(&mut self, config: &Config) -> usize {
        let patterns = config
            .watch
            .iter()
            .flat_map(|w| w.paths.iter().map(Path::new));
        let in_use = self.scanner.paths_in_use().iter().map(PathBuf::as_path);
        // Configured files that may not exist yet: their folder (or nearest ancestor) is
        // watched so that their arrival is noticed.
        let configured = config.certificates.iter().flat_map(|c| {
            [
                Some(&c.cert),
                c.key.as_ref(),
                c.pkcs12_password_file.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
        });
        self.watcher
            .set_paths(patterns.chain(in_use).chain(configured))
    }

    /// Scans on a blocking thread; the scanner (and its cache) travels there and back.
    async fn scan(&mut self, config: &Config) -> (Inventory, Duration) {
        let sources = inventory::sources_from_config(config);
        let mut owned = std::mem::take(&mut self.scanner);
        owned.set_max_file_size(config.daemon.max_file_size);
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let inventory = owned.scan(&sources);
            (owned, inventory)
        })
        .await;
        match joined {
            Ok((back, inventory)) => {
                self.scanner = back;
                (inventory, started.elapsed())
            }
            Err(err) => {
                log::error!(error = err.to_string(); "the inventory scan failed unexpectedly; keeping the daemon up, the next change or reload scans again");
                self.scanner = Scanner::new(config.daemon.max_file_size);
                (Inventory::default(), started.elapsed())
            }
        }
    }
}

/// Applies a new configuration if, and only if, it is valid.
async fn reload(
    config_path: &Path,
    shared: &Shared,
    policy: &RwLock<AccessPolicy>,
    scanning: &mut Scanning,
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
    log::set_max_level(new.daemon.log_level);
    let new_policy = access_policy(&new);
    match policy.write() {
        Ok(mut p) => *p = new_policy,
        Err(poisoned) => *poisoned.into_inner() = new_policy,
    }
    let config = Arc::new(new);
    let inventory = scanning.run(&config, &shared.metrics, false).await;
    shared.metrics.observe_reload(true);
    match shared.config.write() {
        Ok(mut c) => *c = config.clone(),
        Err(poisoned) => *poisoned.into_inner() = config.clone(),
    }
    let _ = shared
        .engine
        .send(lifecycle::Command::Reconfigure(config.clone()))
        .await;
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
    Ok(report)
}

/// Remembers states and problems between scans so that each change is logged once.
#[derive(Debug, Default)]
struct Tracker {
    states: BTreeMap<String, CertState>,
    problems: BTreeMap<(String, ProblemKind), String>,
}

impl Tracker {
    fn observe(&mut self, inventory: &Inventory, now: i64, warn_before: u64, first: bool) {
        let mut states = BTreeMap::new();
        for entry in &inventory.entries {
            let state = entry.cert.state_at(now, warn_before);
            let before = self.states.get(&entry.id).copied();
            if before != Some(state) && !(first && state == CertState::Ok) {
                log_state(entry, state, before, now);
            }
            states.insert(entry.id.clone(), state);
        }
        for id in self.states.keys().filter(|id| !states.contains_key(*id)) {
            log::info!(cert_id = id.as_str(); "certificate is no longer found (its file or configuration changed)");
        }
        let mut problems = BTreeMap::new();
        for p in &inventory.problems {
            let key = (p.id.clone(), p.kind);
            if !self.problems.contains_key(&key) {
                log::warn!(
                    cert_id = p.id.as_str(),
                    path = p.path.as_str(),
                    problem = p.kind.as_str();
                    "{}", p.message
                );
            }
            problems.insert(key, p.path.clone());
        }
        for ((id, kind), path) in &self.problems {
            if !problems.contains_key(&(id.clone(), *kind)) {
                log::info!(cert_id = id.as_str(), path = path.as_str(), problem = kind.as_str(); "problem resolved");
            }
        }
        self.states = states;
        self.problems = problems;
    }
}

fn log_state(entry: &Entry, state: CertState, before: Option<CertState>, now: i64) {
    let left = crate::human_time::format_span((entry.cert.not_after - now).unsigned_abs());
    let id = entry.id.as_str();
    let path = entry.path.display().to_string();
    let path = path.as_str();
    let was = before.map_or("new", CertState::as_str);
    let (level, message) = match state {
        CertState::Expired => (
            log::Level::Error,
            format!("certificate has expired ({left} ago)"),
        ),
        CertState::NotYetValid => (log::Level::Error, "certificate is not valid yet".to_owned()),
        CertState::Expiring => (log::Level::Warn, format!("certificate expires in {left}")),
        CertState::Ok => (log::Level::Info, format!("certificate is valid for {left}")),
    };
    log::log!(
        level,
        cert_id = id, path = path, state = state.as_str(), was = was;
        "{message}"
    );
}

fn status_line(view: &View) -> String {
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

fn counts(view: &View, now: i64) -> Counts {
    let warn = warn_before(&view.config);
    let mut counts = Counts {
        problems: view.inventory.problems.len(),
        ..Counts::default()
    };
    for entry in &view.inventory.entries {
        match entry.cert.state_at(now, warn) {
            CertState::Ok => counts.ok += 1,
            CertState::Expiring => counts.expiring += 1,
            CertState::Expired => counts.expired += 1,
            CertState::NotYetValid => counts.not_yet_valid += 1,
        }
    }
    counts
}

/// Health: expired, not yet valid and unreadable are critical; expiring, a failing renewal,
/// a task waiting for a person, a certificate whose plugin is missing, or a refused plugin
/// file are warnings.
fn status_report(
    view: &View,
    started_at: i64,
    engine: &EngineView,
    plugins_refused: usize,
) -> StatusReport {
    let now = crate::now_unix();
    let counts = counts(view, now);
    let renewal_trouble = engine
        .certificates
        .iter()
        .any(|c| c.failures > 0 || !c.open_tasks.is_empty() || !c.plugin_loaded);
    let health = if counts.expired + counts.not_yet_valid + counts.problems > 0 {
        Health::Critical
    } else if counts.expiring > 0 || renewal_trouble || plugins_refused > 0 {
        Health::Warning
    } else {
        Health::Ok
    };
    let mut attention: Vec<ListItem> = list_items(view, now)
        .into_iter()
        .filter(|item| item.state != CertState::Ok)
        .collect();
    attention.sort_by_key(|item| item.not_after);
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
        problems: view.inventory.problems.clone(),
        renewals: engine.certificates.clone(),
        plugins_refused,
    }
}

fn list_items(view: &View, now: i64) -> Vec<ListItem> {
    let warn = warn_before(&view.config);
    view.inventory
        .entries
        .iter()
        .map(|entry| ListItem {
            id: entry.id.clone(),
            source: entry.source.clone(),
            path: entry.path.clone(),
            name: display_name(&entry.cert.subject),
            identity: entry.cert.identities.first().map(NordicIdentity::label),
            not_after: entry.cert.not_after,
            seconds_left: entry.cert.not_after - now,
            state: entry.cert.state_at(now, warn),
        })
        .collect()
}

fn show_report(view: &View, id: &str, now: i64, engine: &EngineView) -> Option<ShowReport> {
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
            .map(|e| ShownEntry {
                entry: e.clone(),
                state: e.cert.state_at(now, warn),
                seconds_left: e.cert.not_after - now,
            })
            .collect(),
        problems: inv
            .problems
            .iter()
            .filter(|p| p.id == base)
            .cloned()
            .collect(),
        renewal: engine.get(&base).cloned(),
    })
}

fn source_id(entry_id: &str) -> &str {
    match entry_id.rsplit_once('#') {
        Some((base, index)) if index.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => entry_id,
    }
}

/// The subject's CN, or the whole subject when it has none.
fn display_name(subject: &str) -> String {
    subject
        .split(", ")
        .find_map(|part| part.strip_prefix("CN="))
        .unwrap_or(subject)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
