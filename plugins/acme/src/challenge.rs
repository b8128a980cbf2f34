//! Publishing and withdrawing challenge responses: the daemon's http-01 responder, a webroot
//! folder, or a dns-01 hook command.
//!
//! Contract:
//! - [`publish`] makes the response visible where the CA will look, and returns what
//!   [`withdraw`] needs to take it away again; the two travel in the order's state, so a
//!   response published in one call is withdrawn in a later one, even after a restart.
//! - Tokens come from the CA: one that is not base64url is refused before it names a file.
//! - A webroot file is written whole (temporary file, then rename) with mode 0644, under
//!   `DIR/.well-known/acme-challenge/`, made if missing.
//! - A hook runs with no shell, stdin closed, at most [`HOOK_TIMEOUT`], the action, record
//!   name and value as arguments and in its environment; a non-zero exit is an error naming
//!   the command and quoting the end of its stderr.
//! - [`withdraw`] never fails the caller: what cannot be removed is logged.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certvakt_plugin_api::{Host, HostErrorKind, LogLevel, PluginError};
use serde::{Deserialize, Serialize};

use crate::jws::{AccountKey, dns01_value};
use crate::settings::Challenge;

/// Longest a dns hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// One published response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The name being validated (`*.` kept for wildcards).
    pub domain: String,
    /// `http-01` or `dns-01`.
    pub kind: String,
    pub token: String,
    /// The challenge URL, to tell the CA to look.
    pub url: String,
    /// Where it was published: the webroot file, the TXT record name, or empty for the
    /// responder.
    #[serde(default)]
    pub place: String,
    /// What was published (key authorisation, or the TXT value).
    pub value: String,
}

/// Publishes the response to one challenge.
pub fn publish(
    host: &Host<'_>,
    how: &Challenge,
    key: &AccountKey,
    domain: &str,
    token: &str,
    url: &str,
) -> Result<Published, PluginError> {
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(PluginError::permanent(format!(
            "the CA sent a challenge token for {domain} that is not base64url: {token:?}"
        )));
    }
    let key_authorization = key.key_authorization(token);
    let published = match how {
        Challenge::Http01Responder => {
            host.http01_publish(token, &key_authorization)
                .map_err(|e| match e.kind {
                    HostErrorKind::NotAvailable => PluginError::configuration(format!(
                        "http-01 needs somewhere to answer the CA: set [daemon] http01_listen \
                         (port 80 must reach it), or webroot in [certificate.settings] ({})",
                        e.message
                    )),
                    _ => PluginError::from(e),
                })?;
            Published {
                domain: domain.to_owned(),
                kind: how.kind().to_owned(),
                token: token.to_owned(),
                url: url.to_owned(),
                place: String::new(),
                value: key_authorization,
            }
        }
        Challenge::Http01Webroot(root) => {
            let file = write_webroot(root, token, &key_authorization)?;
            Published {
                domain: domain.to_owned(),
                kind: how.kind().to_owned(),
                token: token.to_owned(),
                url: url.to_owned(),
                place: file.display().to_string(),
                value: key_authorization,
            }
        }
        Challenge::Dns01 { hook, .. } => {
            let name = format!(
                "_acme-challenge.{}",
                domain.strip_prefix("*.").unwrap_or(domain)
            );
            let value = dns01_value(&key_authorization);
            run_hook(hook, "set", domain, &name, &value)?;
            Published {
                domain: domain.to_owned(),
                kind: how.kind().to_owned(),
                token: token.to_owned(),
                url: url.to_owned(),
                place: name,
                value,
            }
        }
    };
    host.log_with(
        LogLevel::Debug,
        format!("published the {} response for {domain}", published.kind),
        &[("domain", domain)],
    );
    Ok(published)
}

/// Takes published responses away; logs what cannot be.
pub fn withdraw(host: &Host<'_>, how: &Challenge, published: &[Published]) {
    for p in published {
        let result = match (p.kind.as_str(), how) {
            ("http-01", _) if p.place.is_empty() => {
                host.http01_withdraw(&p.token).map_err(PluginError::from)
            }
            ("http-01", _) => match std::fs::remove_file(&p.place) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(PluginError::temporary(format!("removing {}: {e}", p.place))),
            },
            ("dns-01", Challenge::Dns01 { hook, .. }) => {
                run_hook(hook, "unset", &p.domain, &p.place, &p.value)
            }
            (kind, _) => Err(PluginError::permanent(format!(
                "a {kind} response was published with settings since changed; remove it by hand"
            ))),
        };
        if let Err(e) = result {
            host.log_with(
                LogLevel::Warn,
                format!(
                    "could not withdraw the {} response for {}: {e}",
                    p.kind, p.domain
                ),
                &[("domain", &p.domain)],
            );
        }
    }
}

fn write_webroot(root: &Path, token: &str, content: &str) -> Result<PathBuf, PluginError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

    let dir = root.join(".well-known").join("acme-challenge");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|e| {
            PluginError::configuration(format!(
                "cannot make {} for the http-01 files: {e}; check webroot and that certvakt may write there",
                dir.display()
            ))
        })?;
    let file = dir.join(token);
    let temporary = dir.join(format!(".{token}.certvakt-tmp"));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temporary)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, &file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(PluginError::configuration(format!(
            "cannot write the http-01 file {}: {e}",
            file.display()
        )));
    }
    Ok(file)
}

fn run_hook(
    hook: &[String],
    action: &str,
    domain: &str,
    name: &str,
    value: &str,
) -> Result<(), PluginError> {
    let Some((program, args)) = hook.split_first() else {
        return Err(PluginError::configuration("dns_hook is empty"));
    };
    let shown = hook.join(" ");
    let mut child = Command::new(program)
        .args(args)
        .args([action, name, value])
        .env("CERTVAKT_ACME_ACTION", action)
        .env("CERTVAKT_ACME_DOMAIN", domain)
        .env("CERTVAKT_ACME_TXT_NAME", name)
        .env("CERTVAKT_ACME_TXT_VALUE", value)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PluginError::configuration(format!("cannot run the dns hook {shown}: {e}")))?;
    // Read stderr while the hook runs, so a chatty hook cannot block on a full pipe.
    let reader = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > HOOK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PluginError::temporary(format!(
                    "the dns hook {shown} {action} {name} ran longer than {}s and was stopped",
                    HOOK_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(PluginError::temporary(format!(
                    "waiting for the dns hook {shown}: {e}"
                )));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let stderr = reader
        .and_then(|thread| thread.join().ok())
        .unwrap_or_default();
    let tail: String = {
        let trimmed = stderr.trim();
        let start = trimmed.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
        trimmed[start..].to_owned()
    };
    Err(PluginError::temporary(format!(
        "the dns hook {shown} {action} {name} failed ({status}){}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    )))
}
