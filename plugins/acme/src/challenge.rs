//! Publishing and withdrawing challenge responses: the daemon's http-01 responder, a webroot
//! folder, or a dns-01 hook command.
//!
//! Contract:
//! - [`publish`] makes the response visible where the CA will look, and returns what
//!   [`withdraw`] needs to take it away again; the two travel in the order's state, so a
//!   response published in one call is withdrawn in a later one, even after a restart.
//! - Tokens come from the CA: one that is not base64url is refused before anything is asked.
//! - Everything outside the plugin is the host's: it answers http-01 on its responder or
//!   writes the webroot file ([`Host::http01_publish`]), and it runs the dns hook as it runs
//!   its own hooks ([`Host::run_command`]: no shell, a clean environment plus the
//!   `CERTVAKT_ACME_*` variables, output to the journal, killed after [`HOOK_TIMEOUT`]).
//! - [`withdraw`] never fails the caller: what cannot be removed is logged.

use std::time::Duration;

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
    /// Where it was published: the webroot folder, the TXT record name, or empty for the
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
    let (place, value) = match how {
        Challenge::Http01Responder => {
            host.http01_publish(token, &key_authorization, None)
                .map_err(|e| match e.kind {
                    HostErrorKind::NotAvailable => PluginError::configuration(format!(
                        "http-01 needs somewhere to answer the CA: set [daemon] http01_listen \
                         (port 80 must reach it), or webroot in [certificate.settings] ({})",
                        e.message
                    )),
                    _ => PluginError::from(e),
                })?;
            (String::new(), key_authorization)
        }
        Challenge::Http01Webroot(root) => {
            let root = root.display().to_string();
            host.http01_publish(token, &key_authorization, Some(&root))
                .map_err(|e| PluginError::configuration(e.message))?;
            (root, key_authorization)
        }
        Challenge::Dns01 { hook, .. } => {
            let name = format!(
                "_acme-challenge.{}",
                domain.strip_prefix("*.").unwrap_or(domain)
            );
            let value = dns01_value(&key_authorization);
            run_hook(host, hook, "set", domain, &name, &value)?;
            (name, value)
        }
    };
    host.log_with(
        LogLevel::Debug,
        format!("published the {} response for {domain}", how.kind()),
        &[("domain", domain)],
    );
    Ok(Published {
        domain: domain.to_owned(),
        kind: how.kind().to_owned(),
        token: token.to_owned(),
        url: url.to_owned(),
        place,
        value,
    })
}

/// Takes published responses away; logs what cannot be.
pub fn withdraw(host: &Host<'_>, how: &Challenge, published: &[Published]) {
    for p in published {
        let result = match (p.kind.as_str(), how) {
            ("http-01", _) => {
                let webroot = (!p.place.is_empty()).then_some(p.place.as_str());
                host.http01_withdraw(&p.token, webroot)
                    .map_err(PluginError::from)
            }
            ("dns-01", Challenge::Dns01 { hook, .. }) => {
                run_hook(host, hook, "unset", &p.domain, &p.place, &p.value)
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

/// Runs the dns hook as `HOOK... <action> <name> <value>` through the host.
fn run_hook(
    host: &Host<'_>,
    hook: &[String],
    action: &str,
    domain: &str,
    name: &str,
    value: &str,
) -> Result<(), PluginError> {
    let mut argv = hook.to_vec();
    argv.extend([action.to_owned(), name.to_owned(), value.to_owned()]);
    host.run_command(
        &argv,
        &[
            ("CERTVAKT_ACME_ACTION", action),
            ("CERTVAKT_ACME_DOMAIN", domain),
            ("CERTVAKT_ACME_TXT_NAME", name),
            ("CERTVAKT_ACME_TXT_VALUE", value),
        ],
        HOOK_TIMEOUT,
    )
    .map_err(|e| match e.kind {
        HostErrorKind::Failed => PluginError::temporary(format!(
            "the dns hook for {domain} ({action}): {}",
            e.message
        )),
        _ => PluginError::configuration(format!("the dns hook cannot be run: {}", e.message)),
    })
}
