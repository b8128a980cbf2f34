//! `check-config`'s second half: the configuration loads, and each managed certificate's
//! plugin (loaded from `plugin_dir` as the daemon would) accepts its `[certificate.settings]`.
//!
//! Contract: what will fail is a problem here, with the file, line and key of what causes it:
//! a `plugin_dir` that does not exist when certificates are managed, and a certificate whose
//! plugin is not installed there (with the closest loaded name; the daemon itself starts and
//! monitors such a certificate, but never renews it). When the check itself cannot be made
//! (no runtime, no registry), that is a problem, never "no problems". The daemon asks the
//! same question of the same plugins at start and at every reload (the renewal engine, before
//! a certificate's first step), and holds back a certificate whose settings are refused.
//!
//! A certificate whose `cert` file does not exist yet is a first issue: its first step asks the
//! plugin for the CSR's profile with no current certificate to copy from. The check asks the
//! same read-only `csr_profile` (for a set, once per role, as the engine does), and a
//! configuration error in the answer (the manual plugin with neither `subject` nor `sans`) is
//! a problem on `certificate[i].settings`. Other answers are not: a "needs a person" answer is
//! how a plugin whose authority makes the key says the first certificate is imported
//! (`certvakt import`), and a plugin that cannot answer now is tried again by the engine.
//! check-config and every reload ask it ([`ask_plugins`]; a reload only for the certificates
//! whose configuration changed); at start the engine does not ask
//! twice: its first step's own `csr_profile` call answers the same way.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use certvakt_plugin_api::ErrorKind;
use certvakt_plugin_api::messages::{CertificateContext, SettingProblem};

use super::{BasicServices, PluginCallError, Registry};
use crate::config::{Config, KeyPolicy, ManagedCertificate, Problem};
use crate::metrics::Metrics;

/// Loads the configuration at `path` and checks every managed certificate's plugin settings.
pub fn load_and_check(path: &std::path::Path) -> Result<Config, Vec<Problem>> {
    let config = crate::config::load(path)?;
    let problems = check_plugin_settings(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn check_plugin_settings(config: &Config) -> Vec<Problem> {
    if config.certificates.is_empty() {
        return Vec::new();
    }
    // The check's own set-up failing is a problem, never "no problems".
    let setup = |what: &str, e: String| Problem {
        file: config.files.first().cloned().unwrap_or_default(),
        line: None,
        key: "certificate.settings".into(),
        message: format!("the plugins' settings could not be checked: {what} failed: {e}"),
        hint: "nothing was checked; run check-config again, and see the journal if it persists"
            .into(),
    };
    let metrics = match Metrics::new(0) {
        Ok(metrics) => metrics,
        Err(e) => return vec![setup("making the metrics registry", e.to_string())],
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return vec![setup("starting a runtime", e.to_string())],
    };
    let euid = nix::unistd::geteuid().as_raw();
    let plugins = super::load_dir(
        &config.daemon.plugin_dir,
        (euid != 0).then_some(euid),
        Arc::new(metrics),
    );
    let answers = runtime.block_on(ask_plugins(
        config,
        &plugins,
        &BTreeSet::new(),
        CHECK_DEADLINE,
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut found = missing_plugins(config, &plugins);
    found.extend(problems(config, answers));
    found
}

/// `plugin_dir` missing, and every managed certificate whose plugin is not loaded from it.
fn missing_plugins(config: &Config, plugins: &Registry) -> Vec<Problem> {
    let dir = &config.daemon.plugin_dir;
    let origin = |key: &str| config.key_origins.get(key);
    if !dir.is_dir() {
        let at = origin("daemon.plugin_dir");
        return vec![Problem {
            file: at
                .map(|o| o.file.clone())
                .or_else(|| config.files.first().cloned())
                .unwrap_or_default(),
            line: at.map(|o| o.line),
            key: "daemon.plugin_dir".into(),
            message: format!(
                "{} does not exist, so no plugin can be loaded and none of the {} managed certificate(s) is renewed",
                dir.display(),
                config.certificates.len()
            ),
            hint: "install certvakt's plugins there (the package does), or set plugin_dir to \
                   the folder that holds them"
                .into(),
        }];
    }
    let loaded: Vec<&str> = plugins.loaded.iter().map(|p| p.name.as_str()).collect();
    config
        .certificates
        .iter()
        .enumerate()
        .filter(|(_, cert)| plugins.get(&cert.plugin).is_none())
        .map(|(i, cert)| {
            let key = format!("certificate[{i}].plugin");
            let refused = plugins
                .refused
                .iter()
                .find(|r| r.file.file_stem().is_some_and(|s| s == cert.plugin.as_str()));
            let hint = match (refused, crate::config::closest(&cert.plugin, &loaded)) {
                (Some(refused), _) => format!(
                    "{} was refused: {} (see `certvakt plugins`)",
                    refused.file.display(),
                    refused.reason
                ),
                (None, Some(near)) => format!("did you mean \"{near}\"?"),
                (None, None) if loaded.is_empty() => {
                    format!("no plugin is installed in {}", dir.display())
                }
                (None, None) => format!("the plugins installed are {}", loaded.join(", ")),
            };
            Problem {
                file: cert.origin.file.clone(),
                line: Some(origin(&key).map_or(cert.origin.line, |o| o.line)),
                key,
                message: format!(
                    "plugin \"{}\" is not installed in {}: certificate {} would be monitored but never renewed",
                    cert.plugin,
                    dir.display(),
                    cert.id
                ),
                hint,
            }
        })
        .collect()
}

/// What plugins answered about one configuration: `validate_settings` by plugin and settings
/// text, and the key policies each plugin works with (`describe`). Both calls are pure (the
/// plugin API's contract), so certificates of one plugin with the same settings share one
/// answer: after a start or a reload, a thousand certificates written from one template ask
/// once, not a thousand times, and those asking while an answer is on its way wait for it.
///
/// [`SettingsAnswers::for_engine`] forgets a failed call, so the next certificate asks again;
/// [`SettingsAnswers::for_one_check`] keeps it for the rest of one check (a plugin that does
/// not answer is not asked a thousand times, each with its deadline) and holds the calls to a
/// number at once: each runs in a plugin process.
#[derive(Debug, Default)]
pub struct SettingsAnswers {
    settings: Asked<(String, String), Vec<SettingProblem>>,
    policies: Asked<String, Vec<KeyPolicy>>,
    keep_failures: bool,
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

/// Answers by key, each given once.
#[derive(Debug)]
struct Asked<K, V> {
    cells: std::sync::Mutex<HashMap<K, Arc<Answer<V>>>>,
}

/// One answer; those waiting for it meanwhile share it.
type Answer<V> = tokio::sync::OnceCell<Result<V, Arc<PluginCallError>>>;

impl<K, V> Default for Asked<K, V> {
    fn default() -> Self {
        Asked {
            cells: std::sync::Mutex::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Asked<K, V> {
    /// The answer for `key`: given before, being given (this waits), or asked now with `ask`.
    async fn get<F>(&self, key: K, keep_failures: bool, ask: F) -> Result<V, Arc<PluginCallError>>
    where
        F: std::future::Future<Output = Result<V, PluginCallError>>,
    {
        let lock = || {
            self.cells
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let cell = lock().entry(key.clone()).or_default().clone();
        let answer = cell
            .get_or_init(|| async { ask.await.map_err(Arc::new) })
            .await
            .clone();
        if answer.is_err() && !keep_failures {
            let mut cells = lock();
            if cells.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                cells.remove(&key);
            }
        }
        answer
    }
}

impl SettingsAnswers {
    /// The renewal engine's, for one configuration: a failed call is asked again.
    pub fn for_engine() -> SettingsAnswers {
        SettingsAnswers::default()
    }

    /// One check's (check-config, a reload): failures kept, at most as many calls at once as
    /// `slots` allows.
    pub fn for_one_check(slots: Arc<tokio::sync::Semaphore>) -> SettingsAnswers {
        SettingsAnswers {
            keep_failures: true,
            slots: Some(slots),
            ..SettingsAnswers::default()
        }
    }

    /// `plugin`'s answer about `cert`'s settings.
    pub async fn validate(
        &self,
        plugin: &super::LoadedPlugin,
        cert: &ManagedCertificate,
        services: Arc<BasicServices>,
        deadline: Duration,
    ) -> Result<Vec<SettingProblem>, Arc<PluginCallError>> {
        let key = (
            plugin.name.clone(),
            cert.renewal.settings.as_json().to_owned(),
        );
        let ask = async {
            let _slot = self.slot().await;
            plugin
                .validate_settings(cert.renewal.settings.value(), services, deadline)
                .await
        };
        self.settings.get(key, self.keep_failures, ask).await
    }

    /// Why `cert`'s `key_policy` does not fit its plugin, when it does not: the plugin is
    /// asked (`describe`) once per configuration. A plugin that cannot say holds nothing back.
    pub async fn key_policy_refusal(
        &self,
        plugin: &super::LoadedPlugin,
        cert: &ManagedCertificate,
        services: Arc<BasicServices>,
        deadline: Duration,
    ) -> Option<String> {
        if cert.renewal.key_policy == KeyPolicy::Rotate {
            return None;
        }
        let ask = async {
            let _slot = self.slot().await;
            let about = plugin.describe(services, deadline).await?;
            Ok(about.key_policies)
        };
        match self
            .policies
            .get(plugin.name.clone(), self.keep_failures, ask)
            .await
        {
            Ok(allowed) => key_policy_refusal(cert, &allowed),
            Err(e) => {
                log::warn!(cert_id = cert.id.as_str(); "cannot ask the plugin which key policies it works with: {e}");
                None
            }
        }
    }

    /// A slot for one call, when calls are limited.
    async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match &self.slots {
            Some(slots) => slots.acquire().await.ok(),
            None => None,
        }
    }
}

/// Why `cert`'s key policy does not fit a plugin that works with `allowed` (empty: with every
/// policy); `None` when it fits.
fn key_policy_refusal(cert: &ManagedCertificate, allowed: &[KeyPolicy]) -> Option<String> {
    let policy = cert.renewal.key_policy;
    if allowed.is_empty() || allowed.contains(&policy) {
        return None;
    }
    let names: Vec<String> = allowed
        .iter()
        .map(|p| format!("\"{}\"", p.as_str()))
        .collect();
    Some(format!(
        "plugin {} does not work with key_policy = \"{}\" (its authority works with {}): write key_policy = {} for certificate {}",
        cert.plugin,
        policy.as_str(),
        names.join(", "),
        names[0],
        cert.id
    ))
}

/// At most this many settings are asked about at once.
const CONCURRENT_CHECKS: usize = 8;

/// How long a plugin may take to answer whether it accepts a certificate's settings.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// One certificate's answers: its index in `config.certificates`, the plugin's problems with
/// its settings (or why it could not be asked), and for a first issue whose settings passed,
/// the configuration errors its `csr_profile` answered with (the role, for a set).
#[derive(Debug)]
pub struct SettingsAnswer {
    pub index: usize,
    pub settings: Result<Vec<SettingProblem>, Arc<PluginCallError>>,
    pub first_issue: Vec<FirstIssueRefusal>,
    /// Why its `key_policy` does not fit the plugin, when it does not.
    pub key_policy: Option<String>,
}

/// A plugin's configuration error for a certificate's first CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstIssueRefusal {
    /// The set's role the profile was asked for; `None` for a single certificate.
    pub role: Option<String>,
    /// The plugin's own sentence.
    pub message: String,
}

/// Whether `cert` has no certificate yet, so that its first run is a first issue. A file that
/// exists but cannot be read is not: the engine says what is wrong with it.
pub fn is_first_issue(cert: &ManagedCertificate) -> bool {
    matches!(std::fs::metadata(&cert.cert), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// The context the renewal engine gives `csr_profile` at a first issue's first step (see
/// `lifecycle::steps`, `Core::context`): no current certificate, the settings' `environment`.
pub fn first_issue_context(cert: &ManagedCertificate, role: Option<String>) -> CertificateContext {
    let settings = &cert.renewal.settings.value();
    CertificateContext {
        certificate_id: cert.id.clone(),
        settings: settings.clone(),
        environment: settings
            .get("environment")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("production")
            .to_owned(),
        current: None,
        roles: cert.roles(),
        current_set: Default::default(),
        role,
    }
}

/// Asks `plugin` for the CSR profile of `cert`'s first issue, for each role as the engine
/// does, and keeps the configuration errors. Any other answer is no refusal.
pub async fn first_issue_refusals(
    cert: &ManagedCertificate,
    plugin: &super::LoadedPlugin,
    services: Arc<BasicServices>,
    deadline: Duration,
) -> Vec<FirstIssueRefusal> {
    let roles = cert.roles();
    let asks: Vec<Option<String>> = if roles.is_empty() {
        vec![None]
    } else {
        roles.into_iter().map(Some).collect()
    };
    let mut refusals = Vec::new();
    for role in asks {
        let context = first_issue_context(cert, role.clone());
        match plugin
            .csr_profile(context, services.clone(), deadline)
            .await
        {
            Err(PluginCallError::Plugin { error, .. })
                if error.kind == ErrorKind::Configuration =>
            {
                refusals.push(FirstIssueRefusal {
                    role,
                    message: error.message,
                });
            }
            _ => {}
        }
    }
    refusals
}

/// Asks every loaded plugin, all at once, whether it accepts the settings of each of its
/// certificates, except those in `known` (a reload's certificates configured as before,
/// whose settings were accepted when they were loaded). A certificate whose plugin is not
/// loaded has no answer.
pub async fn ask_plugins(
    config: &Config,
    plugins: &Registry,
    known: &BTreeSet<String>,
    deadline: Duration,
) -> Vec<SettingsAnswer> {
    let scratch = std::env::temp_dir().join(format!("certvakt-check-{}", std::process::id()));
    // Each call runs in a plugin process: a thousand certificates must not start a thousand.
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CHECKS));
    let asked = Arc::new(SettingsAnswers::for_one_check(slots.clone()));
    let mut calls = tokio::task::JoinSet::new();
    for (i, cert) in config.certificates.iter().enumerate() {
        if known.contains(&cert.id) {
            continue;
        }
        let Some(plugin) = plugins.get(&cert.plugin).cloned() else {
            continue;
        };
        let services = Arc::new(BasicServices::new(
            plugin.name.clone(),
            cert.id.clone(),
            scratch.clone(),
        ));
        let asked = asked.clone();
        let slots = slots.clone();
        let cert = cert.clone();
        calls.spawn(async move {
            let answer = asked
                .validate(&plugin, &cert, services.clone(), deadline)
                .await;
            let key_policy = asked
                .key_policy_refusal(&plugin, &cert, services.clone(), deadline)
                .await;
            // Settings the plugin refuses are the problem to fix first; a first issue's CSR is
            // asked about only once they pass.
            let first_issue = match &answer {
                Ok(found) if found.is_empty() && is_first_issue(&cert) => {
                    let _slot = slots.acquire().await;
                    first_issue_refusals(&cert, &plugin, services, deadline).await
                }
                _ => Vec::new(),
            };
            SettingsAnswer {
                index: i,
                settings: answer,
                first_issue,
                key_policy,
            }
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    answers.sort_by_key(|answer| answer.index);
    answers
}

/// The answers as configuration problems, with the file and line of each certificate's
/// settings.
pub fn problems(config: &Config, answers: Vec<SettingsAnswer>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for SettingsAnswer {
        index: i,
        settings: answer,
        first_issue,
        key_policy,
    } in answers
    {
        let Some(cert) = config.certificates.get(i) else {
            continue;
        };
        let key = format!("certificate[{i}].settings");
        let line = config
            .key_origins
            .get(&key)
            .map_or(cert.origin.line, |o| o.line);
        match answer {
            Ok(found) => problems.extend(found.into_iter().map(|p| {
                Problem {
                    file: cert.origin.file.clone(),
                    line: Some(line),
                    key: format!("{key}.{}", p.key),
                    message: format!("plugin {}: {}", cert.plugin, p.message),
                    hint: p
                        .hint
                        .unwrap_or_else(|| format!("see the {} plugin's settings", cert.plugin)),
                }
            })),
            Err(e) => problems.push(Problem {
                file: cert.origin.file.clone(),
                line: Some(line),
                key: key.clone(),
                message: format!("the settings could not be checked: {e}"),
                hint: "see `certvakt plugins` and the journal".into(),
            }),
        }
        problems.extend(first_issue.into_iter().map(|refusal| {
            let role = refusal
                .role
                .map(|r| format!(" (role {r})"))
                .unwrap_or_default();
            Problem {
                file: cert.origin.file.clone(),
                line: Some(line),
                key: key.clone(),
                message: format!(
                    "plugin {} will refuse the first issue of certificate {}{role}: {}",
                    cert.plugin, cert.id, refusal.message
                ),
                hint: format!(
                    "add what the plugin asks for to [certificate.settings] (see the {} \
                     plugin's settings), or first put the certificate now in use at {}",
                    cert.plugin,
                    cert.cert.display()
                ),
            }
        }));
        if let Some(why) = key_policy {
            let key = format!("certificate[{i}].key_policy");
            problems.push(Problem {
                file: cert.origin.file.clone(),
                line: Some(
                    config
                        .key_origins
                        .get(&key)
                        .map_or(cert.origin.line, |o| o.line),
                ),
                key,
                message: why,
                hint: format!(
                    "see `certvakt plugins` and the {} plugin's README",
                    cert.plugin
                ),
            });
        }
    }
    problems
}

/// The sentence the renewal engine holds a certificate back with when its plugin refuses its
/// settings (each problem also logged), or `None` when it accepts them.
pub fn refusal(cert: &ManagedCertificate, found: &[SettingProblem]) -> Option<String> {
    if found.is_empty() {
        return None;
    }
    let place = cert.origin.to_string();
    let lines: Vec<String> = found
        .iter()
        .map(|p| {
            let hint = p
                .hint
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            format!("settings.{}: {}{hint}", p.key, p.message)
        })
        .collect();
    for line in &lines {
        log::error!(cert_id = cert.id.as_str(), plugin = cert.plugin.as_str(); "{place}: certificate[{}] {line}", cert.id);
    }
    Some(format!(
        "renewal held back: plugin {} refuses the settings of [[certificate]] {} at {place}: {}",
        cert.plugin,
        cert.id,
        lines.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    //! Against the real manual plugin, built as a cdylib by `cargo build --workspace` (or
    //! `-p certvakt-plugin-manual`), run by the built certvaktd, as `plugin_host::tests` does.

    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    use std::path::{Path, PathBuf};

    use super::*;

    /// A file of the target folder this test binary runs in.
    fn built(name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let path = exe.parent().and_then(Path::parent).unwrap().join(name);
        assert!(
            path.is_file(),
            "{} is missing: build it first with `cargo build --workspace`",
            path.display()
        );
        path
    }

    /// check-config's problems for one manual certificate with `settings`, whose `cert`
    /// exists or not.
    fn check(settings: &str, cert_exists: bool) -> (Vec<Problem>, PathBuf, String) {
        let (found, path, text, _) = check_many(&[("web", settings, cert_exists)]);
        (found, path, text)
    }

    /// A folder with the manual plugin and a configuration of manual certificates `(id,
    /// settings, cert exists)`, loaded; the plugins loaded from it, with their metrics.
    struct Setup {
        _dir: tempfile::TempDir,
        path: PathBuf,
        text: String,
        config: Config,
        registry: Registry,
        metrics: Arc<Metrics>,
    }

    fn setup(certs: &[(&str, &str, bool)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
        let so = plugins.join("manual.so");
        std::fs::copy(built("libcertvakt_plugin_manual.so"), &so).unwrap();
        std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut text = format!(
            "[daemon]\nstate_dir = \"{d}/state\"\nplugin_dir = \"{d}/plugins\"\n",
            d = dir.path().display(),
        );
        for (id, settings, cert_exists) in certs {
            let cert = dir.path().join(format!("{id}.pem"));
            if *cert_exists {
                std::fs::write(&cert, "in use").unwrap();
            }
            text.push_str(&format!(
                "\n[[certificate]]\nid = \"{id}\"\ncert = \"{cert}\"\nplugin = \"manual\"\n\
                 [certificate.settings]\n{settings}\n",
                cert = cert.display()
            ));
        }
        let path = dir.path().join("certvakt.toml");
        std::fs::write(&path, &text).unwrap();
        let config = crate::config::load(&path).unwrap();
        let metrics = Arc::new(Metrics::new(0).unwrap());
        let registry = super::super::load_dir_with(
            &plugins,
            Some(std::fs::metadata(&plugins).unwrap().uid()),
            metrics.clone(),
            &built("certvaktd"),
        );
        assert!(registry.refused.is_empty(), "{:?}", registry.refused);
        Setup {
            _dir: dir,
            path,
            text,
            config,
            registry,
            metrics,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// How many `validate_settings` calls the metrics counted, whatever their outcome.
    fn validate_calls(metrics: &Metrics) -> u64 {
        metrics
            .render(0)
            .lines()
            .filter(|l| {
                l.starts_with("certvakt_plugin_calls_total") && l.contains("validate_settings")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// check-config's problems for manual certificates `(id, settings, cert exists)`, and
    /// how many `validate_settings` calls it took.
    fn check_many(certs: &[(&str, &str, bool)]) -> (Vec<Problem>, PathBuf, String, u64) {
        let s = setup(certs);
        let answers = runtime().block_on(ask_plugins(
            &s.config,
            &s.registry,
            &BTreeSet::new(),
            CHECK_DEADLINE,
        ));
        let calls = validate_calls(&s.metrics);
        (problems(&s.config, answers), s.path, s.text, calls)
    }

    #[test]
    fn certificates_with_the_same_settings_ask_the_plugin_once() {
        let same = "ca_name = \"Web CA\"";
        let (found, _, _, calls) = check_many(&[
            ("a", same, true),
            ("b", same, true),
            ("c", same, true),
            ("refused", "ca_name = \"\"", true),
            ("d", same, true),
        ]);
        // Each certificate still gets its own answer, at its own place.
        assert!(!found.is_empty());
        assert!(
            found
                .iter()
                .all(|p| p.key.starts_with("certificate[3].settings")),
            "{found:?}"
        );
        assert_eq!(calls, 2, "two distinct settings, two calls");
    }

    #[test]
    fn a_failed_answer_is_kept_for_one_check_and_asked_again_by_the_engine() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let fail = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err::<u32, _>(PluginCallError::Timeout {
                plugin: "manual".into(),
                method: "validate_settings".into(),
                deadline: Duration::from_secs(10),
            })
        };
        runtime().block_on(async {
            let one_check: Asked<&str, u32> = Asked::default();
            assert!(one_check.get("a", true, fail()).await.is_err());
            assert!(one_check.get("a", true, fail()).await.is_err());
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
            let engine: Asked<&str, u32> = Asked::default();
            assert!(engine.get("a", false, fail()).await.is_err());
            assert!(engine.get("a", false, fail()).await.is_err());
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
            // An answer that came is kept either way.
            assert_eq!(engine.get("b", false, async { Ok(7) }).await.ok(), Some(7));
            assert_eq!(engine.get("b", false, fail()).await.ok(), Some(7));
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        });
    }

    #[test]
    fn the_engines_settings_answers_are_shared_by_the_same_settings() {
        let same = "ca_name = \"Web CA\"";
        let s = setup(&[
            ("a", same, true),
            ("b", same, true),
            ("c", "ca_name = \"\"", true),
        ]);
        let plugin = s.registry.get("manual").unwrap().clone();
        let answers = SettingsAnswers::for_engine();
        let ask = |i: usize| {
            let cert = &s.config.certificates[i];
            let services = Arc::new(BasicServices::new(
                plugin.name.clone(),
                cert.id.clone(),
                std::env::temp_dir(),
            ));
            answers.validate(&plugin, cert, services, CHECK_DEADLINE)
        };
        let (a, b, c) = runtime().block_on(async { tokio::join!(ask(0), ask(1), ask(2)) });
        assert_eq!(a.unwrap(), Vec::new());
        assert_eq!(b.unwrap(), Vec::new());
        assert!(!c.unwrap().is_empty(), "ca_name = \"\" is refused");
        assert_eq!(validate_calls(&s.metrics), 2);
    }

    #[test]
    fn a_first_issue_without_subject_or_sans_is_a_problem_on_its_settings() {
        let (found, path, text) = check("ca_name = \"Web CA\"", false);
        assert_eq!(found.len(), 1, "{found:?}");
        let problem = &found[0];
        assert_eq!(problem.file, path);
        assert_eq!(problem.key, "certificate[0].settings");
        // The line of [certificate.settings], where the fix goes.
        let settings_line = text
            .lines()
            .position(|l| l == "[certificate.settings]")
            .map(|i| i + 1);
        assert_eq!(problem.line, settings_line, "{problem:?}");
        assert!(
            problem
                .message
                .starts_with("plugin manual will refuse the first issue of certificate web: "),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("subject or sans"),
            "{}",
            problem.message
        );
        assert!(
            problem
                .hint
                .contains("or first put the certificate now in use at"),
            "{}",
            problem.hint
        );
    }

    #[test]
    fn a_first_issue_with_sans_or_a_renewal_without_them_is_no_problem() {
        let (found, ..) = check("ca_name = \"Web CA\"\nsans = [\"DNS:web.example\"]", false);
        assert!(found.is_empty(), "{found:?}");
        // A certificate in use: the renewal copies its subject and names.
        let (found, ..) = check("ca_name = \"Web CA\"", true);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn refused_settings_are_reported_without_asking_for_the_first_csr() {
        let (found, ..) = check("ca_name = \"\"", false);
        assert!(!found.is_empty());
        assert!(
            found.iter().all(|p| !p.message.contains("first issue")),
            "{found:?}"
        );
    }

    #[test]
    fn only_a_missing_file_is_a_first_issue() {
        let dir = tempfile::tempdir().unwrap();
        let origin = crate::config::Origin {
            file: dir.path().join("certvakt.toml"),
            line: 1,
        };
        let mut cert = ManagedCertificate::new("web", dir.path().join("web.pem"), "manual", origin);
        assert!(is_first_issue(&cert));
        std::fs::write(&cert.cert, "x").unwrap();
        assert!(!is_first_issue(&cert));
        cert.cert = dir.path().to_path_buf();
        assert!(
            !is_first_issue(&cert),
            "there, but not a certificate: not a first issue"
        );
    }
}
