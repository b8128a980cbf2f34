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

use std::sync::Arc;
use std::time::Duration;

use certvakt_plugin_api::messages::SettingProblem;

use super::{BasicServices, PluginCallError, Registry};
use crate::config::{Config, ManagedCertificate, Problem};
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
    let answers = runtime.block_on(ask_plugins(config, &plugins, CHECK_DEADLINE));
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

/// At most this many settings are asked about at once.
const CONCURRENT_CHECKS: usize = 8;

/// How long a plugin may take to answer whether it accepts a certificate's settings.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// One certificate's answer: its index in `config.certificates`, and the plugin's problems with
/// its settings (or why it could not be asked).
pub type SettingsAnswer = (usize, Result<Vec<SettingProblem>, PluginCallError>);

/// Asks every loaded plugin, all at once, whether it accepts the settings of each of its
/// certificates. A certificate whose plugin is not loaded has no answer.
pub async fn ask_plugins(
    config: &Config,
    plugins: &Registry,
    deadline: Duration,
) -> Vec<SettingsAnswer> {
    let scratch = std::env::temp_dir().join(format!("certvakt-check-{}", std::process::id()));
    // Each call runs in a plugin process: a thousand certificates must not start a thousand.
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CHECKS));
    let mut calls = tokio::task::JoinSet::new();
    for (i, cert) in config.certificates.iter().enumerate() {
        let Some(plugin) = plugins.get(&cert.plugin).cloned() else {
            continue;
        };
        let services = Arc::new(BasicServices::new(
            plugin.name.clone(),
            cert.id.clone(),
            scratch.clone(),
        ));
        let settings = cert.renewal.settings.clone();
        let slots = slots.clone();
        calls.spawn(async move {
            let _slot = slots.acquire_owned().await;
            (
                i,
                plugin.validate_settings(settings, services, deadline).await,
            )
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    answers.sort_by_key(|(i, _)| *i);
    answers
}

/// The answers as configuration problems, with the file and line of each certificate's
/// settings.
pub fn problems(config: &Config, answers: Vec<SettingsAnswer>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, answer) in answers {
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
                key,
                message: format!("the settings could not be checked: {e}"),
                hint: "see `certvakt plugins` and the journal".into(),
            }),
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
