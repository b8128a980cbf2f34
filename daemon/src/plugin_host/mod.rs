//! The plugin host: loading authority plugins from `plugin_dir`, calling them, and the
//! services the daemon offers them while they run.
//!
//! Contract:
//! - [`load_dir`] looks at the regular `*.so` files of one folder, in name order, and returns
//!   a [`Registry`]: the plugins that loaded, and one [`Refusal`] per file that did not, with a
//!   one-line reason naming the file and, for version problems, both versions. A bad file
//!   never stops the others, never panics the daemon, and is logged once as a warning. A
//!   file is refused *before* it is opened when it, or the folder, is writable by group or
//!   others, or owned by anyone but root or the service user: opening a library runs its
//!   code inside certvaktd. Then it is refused if it cannot be loaded, lacks the
//!   `certvakt_plugin_v1` symbol, has another ABI version or a descriptor too small for this
//!   one, was built against a plugin-api version that does not fit (see
//!   [`certvakt_plugin_api::abi::check_api_version`]), has an unusable name, or has the name of
//!   a plugin already loaded from an earlier file. Libraries are never unloaded (see
//!   [`loader`]), so a reload that loads a new file keeps the old one mapped.
//! - [`LoadedPlugin::call`] runs one plugin method on tokio's blocking pool with a deadline.
//!   On time, it returns the decoded answer; late, [`PluginCallError::Timeout`] — but the
//!   blocking thread cannot be stopped and keeps running until the plugin returns (its
//!   answer is then dropped). So a plugin that hangs for ever holds one blocking thread for
//!   ever; the runtime must be shut down with a timeout, not waited for. A panic inside the
//!   plugin comes back as a [`PluginError`] (the SDK catches it); a panic on the host's side of
//!   the call (host services, decoding) as [`PluginCallError::Panicked`]; neither takes the
//!   daemon down. Every call is counted in `certvakt_plugin_calls_total{plugin,method,outcome}`
//!   and timed in `certvakt_plugin_call_duration_seconds{plugin}`.
//! - During a call the plugin reaches the daemon only through [`HostServices`], which the
//!   caller provides per call (it knows which certificate the call is about).
//!   [`BasicServices`] is the implementation for today: logging, the clock, plugin state
//!   files, operator tasks, and HTTP(S) through an [`HttpService`] when one is given (the
//!   host's TLS, client identities and trust sets: see [`http`]); signing answers "not
//!   available yet".
//! - A plugin's mail (`send_mail`) is checked by [`clean_mail`] (see [`mail`]) and then
//!   handed to the daemon's [`MailOut`], by the services of a call about one certificate.

mod basic_services;
pub mod challenges;
pub mod frame;
pub mod http;
mod loader;
pub mod mail;
pub mod process;
mod runner;
pub mod sandbox;
pub mod settings_check;
/// The answer of a method added to the API after 1.0, or `fallback` when the plugin was built
/// before it existed (it answers "unknown method").
fn unless_unknown<T>(
    answer: Result<T, PluginCallError>,
    fallback: T,
) -> Result<T, PluginCallError> {
    match answer {
        Err(PluginCallError::Plugin { error, .. })
            if error.fault_code.as_deref() == Some(certvakt_plugin_api::UNKNOWN_METHOD) =>
        {
            Ok(fallback)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certvakt_plugin_api::abi::{HostCallHandler, VersionMismatch};
use certvakt_plugin_api::messages::{
    CertificateContext, CheckIssued, Description, HostRequest, HostResponse, OrderContext,
    PluginRequest, PluginResponse, RenewalWindow, SettingProblem, StepContext, ValidateSettings,
};
use certvakt_plugin_api::profile::CsrProfile;
use certvakt_plugin_api::{
    ABI_VERSION, HostError, HostErrorKind, IssueOutcome, PLUGIN_API_VERSION, PluginError,
    StepOutcome, TaskSpec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;

pub use basic_services::{BasicServices, OpenedTask};
pub use http::{
    ClientCredentials, HttpError, HttpOutcome, HttpService, IdentitySource, NoIdentities,
    SourceError, TrustFiles, TrustSource,
};
pub use mail::{MailOut, clean_mail};
pub use settings_check::load_and_check;

/// The services a plugin may ask for during a call: log, clock, state, tasks, keys, HTTP.
///
/// `handle` runs on the blocking thread of the plugin call and may block. It must answer
/// every request, with [`HostResponse::Error`] for what it cannot or will not do.
pub trait HostServices: Send + Sync {
    fn handle(&self, request: HostRequest) -> HostResponse;
}

/// The plugins found in `plugin_dir`.
#[derive(Debug, Default)]
pub struct Registry {
    pub loaded: Vec<LoadedPlugin>,
    pub refused: Vec<Refusal>,
}

impl Registry {
    /// The loaded plugin of that name.
    pub fn get(&self, name: &str) -> Option<&LoadedPlugin> {
        self.loaded.iter().find(|p| p.name == name)
    }

    /// Reaps every plugin's idle processes that have ended; see [`reap_ended_children`].
    pub fn reap_ended(&self) -> usize {
        self.loaded.iter().map(|p| p.runner.reap_ended()).sum()
    }
}

/// Reaps the plugin processes that end while idle, each time a child process ends
/// (SIGCHLD), until `stop`: an idle daemon is woken only by such an end, and no ended
/// plugin process is left as a zombie.
pub async fn reap_ended_children(
    plugins: Arc<Registry>,
    stop: impl std::future::Future<Output = ()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut children = match signal(SignalKind::child()) {
        Ok(children) => children,
        Err(e) => {
            log::warn!(
                "cannot watch for ended plugin processes ({e}); they are reaped at the plugin's next call"
            );
            return;
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            ended = children.recv() => {
                if ended.is_none() {
                    break;
                }
                let reaped = plugins.reap_ended();
                if reaped > 0 {
                    log::debug!("{reaped} idle plugin process(es) ended");
                }
            }
        }
    }
}

/// A plugin file that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin file {}: {reason}", .file.display())]
pub struct Refusal {
    pub file: PathBuf,
    pub reason: RefusalReason,
}

/// Why a plugin file was refused. Each reads after "plugin file PATH: ". Sent as JSON by the
/// plugin process that tried to load it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RefusalReason {
    #[error("could not be loaded: {how} (certvaktd goes on without it)")]
    Crashed { how: String },
    #[error("cannot read the plugin folder: {0}")]
    UnreadableDir(String),
    #[error("is a symbolic link: install plugins as regular files")]
    Symlink,
    #[error(
        "is writable by group or others (mode {mode:04o}), and a plugin runs inside certvaktd: chmod go-w it"
    )]
    WritableFile { mode: u32 },
    #[error(
        "its folder {} is writable by group or others (mode {mode:04o}), and a plugin runs inside certvaktd: chmod go-w the folder",
        .dir.display()
    )]
    WritableDir { dir: PathBuf, mode: u32 },
    #[error("is owned by uid {uid}, not by root{}: chown root it", service_uid_text(*.service_uid))]
    FileOwner { uid: u32, service_uid: Option<u32> },
    #[error(
        "its folder {} is owned by uid {uid}, not by root{}: chown root the folder",
        .dir.display(), service_uid_text(*.service_uid)
    )]
    DirOwner {
        dir: PathBuf,
        uid: u32,
        service_uid: Option<u32>,
    },
    #[error("cannot be loaded: {0}")]
    NotLoadable(String),
    #[error("is not a certvakt plugin: it has no certvakt_plugin_v1 symbol")]
    NotAPlugin,
    #[error(
        "was built for plugin ABI version {plugin}, this certvaktd speaks plugin ABI version {host}: install a build of the plugin made for this certvaktd"
    )]
    AbiVersion { plugin: u32, host: u32 },
    #[error(
        "its descriptor is {size} bytes, plugin ABI version {abi} needs at least {needed}: the plugin's build is broken",
        abi = ABI_VERSION
    )]
    DescriptorSize { size: u32, needed: usize },
    #[error("has a broken descriptor: {0}")]
    BadDescriptor(String),
    // Decided by the daemon, never sent by a plugin process.
    #[serde(skip)]
    #[error("{name} {version}: {mismatch}")]
    ApiVersion {
        name: String,
        version: String,
        mismatch: VersionMismatch,
    },
    #[error(
        "names itself {name:?}, which is not a usable plugin name (letters, digits, '.', '_' and '-', at most 64)"
    )]
    BadName { name: String },
    #[error("names itself {name:?}, which is already loaded from {}", .first.display())]
    Duplicate { name: String, first: PathBuf },
}

/// Makes the text of a plugin's answer safe where it goes next (logs, status, terminals): the
/// boundary where plugin text enters the daemon.
fn clean_response(response: &mut PluginResponse) {
    match response {
        PluginResponse::Error(error) => {
            error.message = sanitise(&error.message);
            error.fault_code = error.fault_code.as_deref().map(sanitise);
        }
        PluginResponse::Issue(IssueOutcome::Pending {
            task: Some(task), ..
        })
        | PluginResponse::Poll(IssueOutcome::Pending {
            task: Some(task), ..
        })
        | PluginResponse::Register(StepOutcome::Pending {
            task: Some(task), ..
        })
        | PluginResponse::Verify(StepOutcome::Pending {
            task: Some(task), ..
        })
        | PluginResponse::Retire(StepOutcome::Pending {
            task: Some(task), ..
        }) => {
            clean_task(task);
        }
        PluginResponse::ValidateSettings(problems) => {
            for problem in problems {
                problem.key = sanitise(&problem.key);
                problem.message = sanitise(&problem.message);
                problem.hint = problem.hint.as_deref().map(sanitise);
            }
        }
        _ => {}
    }
}

/// A task a plugin asks for: a one-line title, and instructions that keep their lines and
/// tabs but no other control characters (no terminal escapes).
pub fn clean_task(task: &mut TaskSpec) {
    task.title = sanitise(&task.title);
    task.instructions = sanitise_lines(&task.instructions);
}

/// [`sanitise`] for text of several lines: newlines and tabs stay.
pub fn sanitise_lines(text: &str) -> String {
    escape_controls(text, &['\n', '\t'], 64 * 1024)
}

/// Text a plugin supplied (a task's title, a log line, an error), made safe for a log line
/// and a terminal: control characters (newlines, escapes, the journal's `<N>` priority
/// prefixes at a line start included) become visible escapes, and it is cut at 4 KiB.
pub fn sanitise(text: &str) -> String {
    escape_controls(text, &[], 4096)
}

fn escape_controls(text: &str, keep: &[char], limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit));
    for c in text.chars() {
        if out.len() >= limit {
            out.push('…');
            break;
        }
        // Control characters, and the bidirectional overrides that can make text read as
        // something else in a terminal.
        let hostile = (c.is_control() && !keep.contains(&c))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if hostile {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn service_uid_text(service_uid: Option<u32>) -> String {
    match service_uid {
        Some(uid) => format!(" or the service user (uid {uid})"),
        None => String::new(),
    }
}

/// Loads every plugin in `plugin_dir`. See the module documentation for what is refused.
///
/// `service_uid` is the user certvaktd runs as, which may own plugins besides root. A missing
/// folder is no plugins, not an error (a monitor-only installation has none).
pub fn load_dir(plugin_dir: &Path, service_uid: Option<u32>, metrics: Arc<Metrics>) -> Registry {
    load_dir_with(plugin_dir, service_uid, metrics, Path::new(HOST_EXE))
}

/// The program every plugin process runs: certvaktd (or certvakt) itself, as the kernel knows
/// it, so a package upgrade that replaces the file does not mix versions.
pub const HOST_EXE: &str = "/proc/self/exe";

/// [`load_dir`] with the program the plugin processes run (tests name the built certvaktd).
pub fn load_dir_with(
    plugin_dir: &Path,
    service_uid: Option<u32>,
    metrics: Arc<Metrics>,
    exe: &Path,
) -> Registry {
    let mut registry = Registry::default();
    let refuse = |registry: &mut Registry, file: PathBuf, reason: RefusalReason| {
        let refusal = Refusal { file, reason };
        log::warn!(path = refusal.file.display().to_string(); "{refusal}");
        registry.refused.push(refusal);
    };

    let entries = match std::fs::read_dir(plugin_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!(path = plugin_dir.display().to_string(); "no plugin folder, so no plugins");
            metrics.observe_plugins(0, 0);
            return registry;
        }
        Err(e) => {
            refuse(
                &mut registry,
                plugin_dir.to_owned(),
                RefusalReason::UnreadableDir(e.to_string()),
            );
            metrics.observe_plugins(0, registry.refused.len());
            return registry;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "so"))
        .collect();
    files.sort();

    let dir_problem = std::fs::metadata(plugin_dir)
        .map_err(|e| RefusalReason::UnreadableDir(e.to_string()))
        .and_then(|meta| check_owner_and_mode(plugin_dir, &meta, service_uid, true));

    for file in files {
        let meta = match std::fs::symlink_metadata(&file) {
            Ok(meta) => meta,
            Err(e) => {
                refuse(
                    &mut registry,
                    file,
                    RefusalReason::NotLoadable(e.to_string()),
                );
                continue;
            }
        };
        if meta.file_type().is_symlink() {
            refuse(&mut registry, file, RefusalReason::Symlink);
            continue;
        }
        if !meta.file_type().is_file() {
            continue;
        }
        if let Err(reason) = &dir_problem {
            refuse(&mut registry, file, reason.clone());
            continue;
        }
        if let Err(reason) = check_owner_and_mode(&file, &meta, service_uid, false) {
            refuse(&mut registry, file, reason);
            continue;
        }
        // Loading runs the library's code: in a confined process of its own, so a damaged or
        // hostile file is refused with the reason and certvaktd goes on.
        let (opened, first) = match runner::Runner::load(exe, &file) {
            Ok(loaded) => loaded,
            Err(reason) => {
                refuse(&mut registry, file, reason);
                continue;
            }
        };
        if let Err(reason) = accept(&opened, &registry) {
            refuse(&mut registry, file, reason);
            continue;
        }
        log::info!(
            plugin = opened.name.as_str(), version = opened.version.as_str(),
            api = opened.api_version.as_str(), path = file.display().to_string();
            "plugin loaded"
        );
        let runner = Arc::new(runner::Runner::new(exe, &file, &opened.name, first));
        registry.loaded.push(LoadedPlugin {
            name: opened.name,
            version: opened.version,
            api_version: opened.api_version,
            file,
            runner,
            metrics: metrics.clone(),
        });
    }
    metrics.observe_plugins(registry.loaded.len(), registry.refused.len());
    registry
}

/// Refuses what is writable by group or others, or owned by anyone but root or the service
/// user: whoever can change the file or the folder could run code inside certvaktd.
fn check_owner_and_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    service_uid: Option<u32>,
    is_dir: bool,
) -> Result<(), RefusalReason> {
    let mode = meta.permissions().mode() & 0o7777;
    let uid = meta.uid();
    let owner_ok = uid == 0 || Some(uid) == service_uid;
    match (is_dir, mode & 0o022 != 0, owner_ok) {
        (false, true, _) => Err(RefusalReason::WritableFile { mode }),
        (true, true, _) => Err(RefusalReason::WritableDir {
            dir: path.to_owned(),
            mode,
        }),
        (false, false, false) => Err(RefusalReason::FileOwner { uid, service_uid }),
        (true, false, false) => Err(RefusalReason::DirOwner {
            dir: path.to_owned(),
            uid,
            service_uid,
        }),
        (_, false, true) => Ok(()),
    }
}

/// The checks on a readable descriptor: API version, name, and no second plugin of a name.
fn accept(opened: &process::Described, registry: &Registry) -> Result<(), RefusalReason> {
    certvakt_plugin_api::abi::check_api_version(PLUGIN_API_VERSION, &opened.api_version).map_err(
        |mismatch| RefusalReason::ApiVersion {
            name: opened.name.clone(),
            version: opened.version.clone(),
            mismatch,
        },
    )?;
    if !valid_name(&opened.name) {
        return Err(RefusalReason::BadName {
            name: opened.name.clone(),
        });
    }
    if let Some(first) = registry.get(&opened.name) {
        return Err(RefusalReason::Duplicate {
            name: opened.name.clone(),
            first: first.file.clone(),
        });
    }
    Ok(())
}

/// Plugin names end up in metric labels, log fields and state folder names, and must be
/// names a `[[certificate]]` can write: the configuration's rule, `[a-z0-9][a-z0-9-]{0,63}`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A plugin that passed every check; cheap to clone.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub name: String,
    pub version: String,
    /// The plugin-api version it was built against.
    pub api_version: String,
    pub file: PathBuf,
    runner: Arc<runner::Runner>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("api_version", &self.api_version)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Why a plugin call did not produce the answer asked for. Every message names the plugin
/// and the method.
#[derive(Debug, thiserror::Error)]
pub enum PluginCallError {
    /// The plugin answered with an error of its own (a caught panic included).
    #[error("plugin {plugin} could not {method}: {error}")]
    Plugin {
        plugin: String,
        method: String,
        error: PluginError,
    },
    #[error(
        "plugin {plugin} did not answer {method} within {deadline:?}; its process was stopped, and the step is tried again later"
    )]
    Timeout {
        plugin: String,
        method: String,
        deadline: Duration,
    },
    /// The plugin's process died during the call (a crash, an abort, a forbidden system
    /// call, a memory or CPU limit) or broke the protocol; it was reaped, and the next call
    /// gets a new one.
    #[error("plugin {plugin}'s {method} call failed: {how}; the step is tried again later")]
    Crashed {
        plugin: String,
        method: String,
        how: String,
    },
    #[error("the host side of plugin {plugin}'s {method} call panicked: {message}")]
    Panicked {
        plugin: String,
        method: String,
        message: String,
    },
    #[error(
        "plugin {plugin}'s answer to {method} does not decode: {source} (answer begins {excerpt:?})"
    )]
    BadResponse {
        plugin: String,
        method: String,
        source: serde_json::Error,
        excerpt: String,
    },
    #[error("plugin {plugin} answered {answered} to a {method} request")]
    WrongAnswer {
        plugin: String,
        method: String,
        answered: String,
    },
    #[error("cannot encode the {method} request for plugin {plugin}: {source}")]
    Encode {
        plugin: String,
        method: String,
        source: serde_json::Error,
    },
    #[error("plugin {plugin}'s {method} call did not run: {reason}")]
    NotRun {
        plugin: String,
        method: String,
        reason: String,
    },
}

/// The `outcome` label of `certvakt_plugin_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// An answer to the method.
    Ok,
    /// The plugin's own error, a caught plugin panic included.
    Error,
    Timeout,
    /// A panic on the host's side of the call.
    Panic,
    /// The plugin's process died during the call or broke the protocol.
    Crash,
    /// An answer that does not decode.
    BadResponse,
    /// The call could not be made (encoding, runtime shutting down).
    Failed,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 7] = [
        CallOutcome::Ok,
        CallOutcome::Error,
        CallOutcome::Timeout,
        CallOutcome::Panic,
        CallOutcome::Crash,
        CallOutcome::BadResponse,
        CallOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Panic => "panic",
            CallOutcome::Crash => "crash",
            CallOutcome::BadResponse => "bad_response",
            CallOutcome::Failed => "failed",
        }
    }
}

impl LoadedPlugin {
    /// Calls `method` with `request` as its JSON parameters and decodes the answer as `Resp`
    /// (normally [`PluginResponse`]; the typed methods below unpack it). See the module
    /// documentation for the deadline and what happens to a call that overruns it.
    pub async fn call<Req, Resp>(
        &self,
        method: &str,
        request: &Req,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<Resp, PluginCallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        match serde_json::to_vec(request) {
            Ok(params) => self.call_params(method, params, services, deadline).await,
            Err(source) => {
                self.observe(method, CallOutcome::Failed, Duration::ZERO);
                Err(PluginCallError::Encode {
                    plugin: self.name.clone(),
                    method: method.to_owned(),
                    source,
                })
            }
        }
    }

    /// Sends a typed request; the plugin's error variant becomes [`PluginCallError::Plugin`],
    /// and an answer to another method [`PluginCallError::WrongAnswer`].
    pub async fn request(
        &self,
        request: &PluginRequest,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<PluginResponse, PluginCallError> {
        let method = request.method();
        let params = request
            .encode_params()
            .map_err(|source| PluginCallError::Encode {
                plugin: self.name.clone(),
                method: method.to_owned(),
                source,
            })?;
        let mut response: PluginResponse =
            self.call_params(method, params, services, deadline).await?;
        clean_response(&mut response);
        match response {
            PluginResponse::Error(error) => Err(PluginCallError::Plugin {
                plugin: self.name.clone(),
                method: method.to_owned(),
                error,
            }),
            response if response.method() == method => Ok(response),
            other => Err(self.wrong_answer(method, &other)),
        }
    }

    pub async fn describe(
        &self,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<Description, PluginCallError> {
        let request = PluginRequest::Describe;
        self.ask(request, services, deadline, |r| match r {
            PluginResponse::Describe(description) => Some(description),
            _ => None,
        })
        .await
    }

    pub async fn validate_settings(
        &self,
        settings: serde_json::Value,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<Vec<SettingProblem>, PluginCallError> {
        let request = PluginRequest::ValidateSettings(ValidateSettings { settings });
        self.ask(request, services, deadline, |r| match r {
            PluginResponse::ValidateSettings(problems) => Some(problems),
            _ => None,
        })
        .await
    }

    pub async fn csr_profile(
        &self,
        certificate: CertificateContext,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<CsrProfile, PluginCallError> {
        let request = PluginRequest::CsrProfile(certificate);
        self.ask(request, services, deadline, |r| match r {
            PluginResponse::CsrProfile(profile) => Some(profile),
            _ => None,
        })
        .await
    }

    pub async fn issue(
        &self,
        order: OrderContext,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<IssueOutcome, PluginCallError> {
        let request = PluginRequest::Issue(order);
        self.ask(request, services, deadline, |r| match r {
            PluginResponse::Issue(outcome) => Some(outcome),
            _ => None,
        })
        .await
    }

    pub async fn poll(
        &self,
        order: OrderContext,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<IssueOutcome, PluginCallError> {
        let request = PluginRequest::Poll(order);
        self.ask(request, services, deadline, |r| match r {
            PluginResponse::Poll(outcome) => Some(outcome),
            _ => None,
        })
        .await
    }

    /// The authority's suggested renewal window for the certificate in use. A plugin built
    /// before this method existed answers "unknown method": that is no suggestion.
    pub async fn renewal_window(
        &self,
        certificate: CertificateContext,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<Option<RenewalWindow>, PluginCallError> {
        let request = PluginRequest::RenewalWindow(certificate);
        let answer = self
            .ask(request, services, deadline, |r| match r {
                PluginResponse::RenewalWindow(window) => Some(window),
                _ => None,
            })
            .await;
        unless_unknown(answer, None)
    }

    /// The plugin's objections to a new certificate or set before it is staged. A plugin
    /// built before this method existed answers "unknown method": that is no objection.
    pub async fn check_issued(
        &self,
        check: CheckIssued,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<Vec<String>, PluginCallError> {
        let request = PluginRequest::CheckIssued(check);
        let answer = self
            .ask(request, services, deadline, |r| match r {
                PluginResponse::CheckIssued(objections) => Some(objections),
                _ => None,
            })
            .await;
        unless_unknown(answer, Vec::new())
    }

    /// `register`, `verify` or `retire` (the request says which): they share one answer.
    pub async fn step(
        &self,
        request: PluginRequest,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<StepOutcome, PluginCallError> {
        self.ask(request, services, deadline, |r| match r {
            PluginResponse::Register(outcome)
            | PluginResponse::Verify(outcome)
            | PluginResponse::Retire(outcome) => Some(outcome),
            _ => None,
        })
        .await
    }

    pub async fn register(
        &self,
        step: StepContext,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<StepOutcome, PluginCallError> {
        self.step(PluginRequest::Register(step), services, deadline)
            .await
    }

    pub async fn verify(
        &self,
        step: StepContext,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<StepOutcome, PluginCallError> {
        self.step(PluginRequest::Verify(step), services, deadline)
            .await
    }

    pub async fn retire(
        &self,
        step: StepContext,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<StepOutcome, PluginCallError> {
        self.step(PluginRequest::Retire(step), services, deadline)
            .await
    }

    /// Sends `request` and keeps the answer `pick` takes; any other answer (a register
    /// answered as a verify, say) is [`PluginCallError::WrongAnswer`].
    async fn ask<T>(
        &self,
        request: PluginRequest,
        services: Arc<dyn HostServices>,
        deadline: Duration,
        pick: impl FnOnce(PluginResponse) -> Option<T>,
    ) -> Result<T, PluginCallError> {
        // `request` has already turned an error answer into an error and checked that the
        // answer names the request.
        let method = request.method();
        let response = self.request(&request, services, deadline).await?;
        let answered = response.method();
        pick(response).ok_or_else(|| PluginCallError::WrongAnswer {
            plugin: self.name.clone(),
            method: method.to_owned(),
            answered: answered.to_owned(),
        })
    }

    fn wrong_answer(&self, method: &str, response: &PluginResponse) -> PluginCallError {
        PluginCallError::WrongAnswer {
            plugin: self.name.clone(),
            method: method.to_owned(),
            answered: response.method().to_owned(),
        }
    }

    /// The call itself: blocking pool, deadline, decoding, metrics.
    async fn call_params<Resp: DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<u8>,
        services: Arc<dyn HostServices>,
        deadline: Duration,
    ) -> Result<Resp, PluginCallError> {
        let started = Instant::now();
        let runner = self.runner.clone();
        let blocking_method = method.to_owned();
        let call = tokio::task::spawn_blocking(move || {
            let handler = ServicesHandler { services };
            runner.call(&blocking_method, &params, &handler, started + deadline)
        });
        let fail = |outcome: CallOutcome, error: PluginCallError| {
            self.observe(method, outcome, started.elapsed());
            Err(error)
        };
        let answer = match call.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(process::CallFailure::Died(death))) if death.killed_at_deadline => {
                log::warn!(
                    plugin = self.name.as_str(), method = method, deadline_ms = deadline.as_millis() as u64;
                    "plugin call overran its deadline; its process was stopped"
                );
                self.metrics.observe_plugin_crash(&self.name, death.label());
                return fail(
                    CallOutcome::Timeout,
                    PluginCallError::Timeout {
                        plugin: self.name.clone(),
                        method: method.to_owned(),
                        deadline,
                    },
                );
            }
            Ok(Err(process::CallFailure::Died(death))) => {
                let how = death.describe();
                log::error!(
                    plugin = self.name.as_str(), method = method, reason = death.label();
                    "plugin {} crashed in {method}: {how}", self.name
                );
                self.metrics.observe_plugin_crash(&self.name, death.label());
                return fail(
                    CallOutcome::Crash,
                    PluginCallError::Crashed {
                        plugin: self.name.clone(),
                        method: method.to_owned(),
                        how,
                    },
                );
            }
            Ok(Err(process::CallFailure::Protocol(why))) => {
                log::error!(plugin = self.name.as_str(), method = method; "plugin process broke the protocol in {method}: {why}");
                self.metrics.observe_plugin_crash(&self.name, "protocol");
                return fail(
                    CallOutcome::Crash,
                    PluginCallError::Crashed {
                        plugin: self.name.clone(),
                        method: method.to_owned(),
                        how: format!(
                            "its process broke the frame protocol ({why}) and was stopped"
                        ),
                    },
                );
            }
            Ok(Err(process::CallFailure::Io(e))) => {
                return fail(
                    CallOutcome::Failed,
                    PluginCallError::NotRun {
                        plugin: self.name.clone(),
                        method: method.to_owned(),
                        reason: format!("its process could not be started: {e}"),
                    },
                );
            }
            Err(join) if join.is_panic() => {
                let message = certvakt_plugin_api::abi::panic_message(join.into_panic().as_ref());
                return fail(
                    CallOutcome::Panic,
                    PluginCallError::Panicked {
                        plugin: self.name.clone(),
                        method: method.to_owned(),
                        message,
                    },
                );
            }
            Err(join) => {
                return fail(
                    CallOutcome::Failed,
                    PluginCallError::NotRun {
                        plugin: self.name.clone(),
                        method: method.to_owned(),
                        reason: join.to_string(),
                    },
                );
            }
        };
        match serde_json::from_slice::<Resp>(&answer) {
            Ok(response) => {
                let outcome = if response_tag(&answer).as_deref() == Some("error") {
                    CallOutcome::Error
                } else {
                    CallOutcome::Ok
                };
                self.observe(method, outcome, started.elapsed());
                Ok(response)
            }
            Err(source) => {
                let excerpt: String = String::from_utf8_lossy(&answer).chars().take(120).collect();
                fail(
                    CallOutcome::BadResponse,
                    PluginCallError::BadResponse {
                        plugin: self.name.clone(),
                        method: method.to_owned(),
                        source,
                        excerpt,
                    },
                )
            }
        }
    }

    fn observe(&self, method: &str, outcome: CallOutcome, duration: Duration) {
        self.metrics
            .observe_plugin_call(&self.name, method, outcome.as_str(), duration);
        log::debug!(
            plugin = self.name.as_str(), method = method, outcome = outcome.as_str(),
            duration_ms = duration.as_millis() as u64;
            "plugin call"
        );
    }
}

/// The `response` tag of an answer, without decoding the rest into types.
fn response_tag(answer: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Tag<'a> {
        #[serde(borrow)]
        response: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Tag<'_>>(answer)
        .ok()?
        .response
        .map(Cow::into_owned)
}

/// Answers a plugin's host calls with the caller's [`HostServices`], as JSON.
struct ServicesHandler {
    services: Arc<dyn HostServices>,
}

impl HostCallHandler for ServicesHandler {
    fn host_call(&self, method: &str, params: &[u8]) -> Vec<u8> {
        let response = match HostRequest::decode(method, params) {
            Ok(request) => self.services.handle(request),
            Err(e) => HostResponse::Error(HostError::new(HostErrorKind::Invalid, e.to_string())),
        };
        serde_json::to_vec(&response).unwrap_or_else(|e| {
            let error = HostError::new(
                HostErrorKind::Failed,
                format!("the host could not encode its answer to {method}: {e}"),
            );
            serde_json::to_vec(&HostResponse::Error(error)).unwrap_or_default()
        })
    }
}
