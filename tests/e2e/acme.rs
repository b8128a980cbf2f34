//! The `acme` plugin end to end: the real daemon with the plugin loaded from disk, against
//! pebble (Let's Encrypt's test server) on loopback with real validation — http-01 answered
//! by the daemon's responder, dns-01 published by a hook into pebble's DNS server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use certvakt::control::protocol::{Phase, Renewal};
use certvakt_testkit::ari::AriFront;
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually};
use certvakt_testkit::pebble::{Pebble, PebbleConfig};
use serde_json::Value;
use x509_parser::certificate::X509Certificate;

use crate::common::{WAIT, bins, pair_matches};

/// Long enough for a few renewals of short-lived certificates.
const RENEWALS: Duration = Duration::from_secs(120);

/// One managed certificate: its id and its `[certificate.settings]` lines beyond the
/// directory and trust, which every certificate here shares.
struct Cert<'a> {
    id: &'a str,
    settings: String,
}

/// A folder with the acme plugin installed, the listener CA as trust set `pebble`, and a
/// configuration for `certs`.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Site {
    fn new(pebble: &Pebble, certs: &[Cert<'_>]) -> Result<Site> {
        let dir = tempfile::Builder::new()
            .prefix("certvakt-acme.")
            .tempdir()?;
        harness::install_plugins(
            &bins()?,
            &dir.path().join("plugins"),
            &["certvakt-plugin-acme"],
        )?;
        let site = Site {
            config: dir.path().join("certvakt.toml"),
            dir,
        };
        std::fs::write(site.path().join("pebble-ca.pem"), pebble.listener_ca_pem())?;
        site.write_config(pebble, certs)?;
        Ok(site)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self, pebble: &Pebble, certs: &[Cert<'_>]) -> Result<()> {
        self.write_config_for(pebble, &pebble.directory_url(), true, certs)
    }

    /// A configuration whose certificates use `directory` (pebble's, or a front's), with the
    /// daemon's http-01 responder on pebble's validation port or not.
    fn write_config_for(
        &self,
        pebble: &Pebble,
        directory: &str,
        responder: bool,
        certs: &[Cert<'_>],
    ) -> Result<()> {
        let dir = self.path();
        let mut body = format!(
            "[trust]\npebble = [\"{}\"]\n",
            dir.join("pebble-ca.pem").display()
        );
        for cert in certs {
            body.push_str(&format!(
                r#"
[[certificate]]
id = "{id}"
cert = "{live}/{id}.pem"
key = "{live}/{id}.key"
fullchain = "{live}/{id}-fullchain.pem"
plugin = "acme"
[certificate.settings]
directory = "{directory}"
trust = "pebble"
{settings}
"#,
                id = cert.id,
                live = dir.join("live").display(),
                settings = cert.settings,
            ));
        }
        let responder = if responder {
            format!("\nhttp01_listen = \"127.0.0.1:{}\"", pebble.http01_port())
        } else {
            String::new()
        };
        let text = config_toml(dir, "127.0.0.1:0", &body).replace(
            "log_level = \"debug\"",
            &format!(
                "log_level = \"debug\"\nretry_initial = \"1s\"\nretry_max = \"3s\"{responder}"
            ),
        );
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    fn live(&self, name: &str) -> PathBuf {
        self.path().join("live").join(name)
    }

    /// A dns-01 hook that publishes TXT records in pebble's DNS server and logs each call.
    fn dns_hook(&self, pebble: &Pebble) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        let hook = self.path().join("dns-hook");
        let script = format!(
            r#"#!/bin/sh
# certvakt dns-01 hook for the tests: TXT records in pebble-challtestsrv.
set -eu
action=$1 name=$2 value=$3
echo "$action $name $value domain=$CERTVAKT_ACME_DOMAIN" >> "{log}"
case "$action" in
  set) curl -sSf -X POST -d "{{\"host\":\"$name.\",\"value\":\"$value\"}}" "{mgmt}/set-txt" ;;
  unset) curl -sSf -X POST -d "{{\"host\":\"$name.\"}}" "{mgmt}/clear-txt" ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
"#,
            log = self.path().join("dns-hook.log").display(),
            mgmt = pebble.dns_management_url(),
        );
        std::fs::write(&hook, script)?;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
        Ok(hook)
    }
}

/// The renewal of `id` in `certvakt status`.
fn renewal_of(daemon: &Daemon, id: &str) -> Option<Renewal> {
    daemon.renewal(id).ok().flatten()
}

fn metrics(daemon: &Daemon) -> Option<String> {
    harness::http_get(&daemon.metrics_addr().ok()?, "/metrics")
        .ok()
        .map(|(_, body)| body)
}

/// Waits until `id` has finished `runs` renewal runs, or fails with both logs.
fn wait_for_runs(
    daemon: &Daemon,
    pebble: &Pebble,
    id: &str,
    runs: u32,
    timeout: Duration,
) -> Result<()> {
    let series = format!("certvakt_renewals_total{{id=\"{id}\"}} {runs}");
    let done = eventually(timeout, &format!("{id} to finish {runs} renewals"), || {
        metrics(daemon)?.contains(&series).then_some(())
    });
    if let Err(e) = done {
        bail!(
            "{e}\nstatus: {:?}\n--- daemon\n{}\n{}",
            renewal_of(daemon, id),
            daemon.log_text(),
            pebble.log_text()
        );
    }
    Ok(())
}

/// The leaf of a PEM file: its DNS names, issuer CN and serial (hex).
struct Leaf {
    names: Vec<String>,
    issuer_cn: String,
    serial_hex: String,
}

/// Reads the certificate of a DER block with `read`.
fn with_cert<T>(der: &[u8], read: impl FnOnce(&X509Certificate<'_>) -> T) -> Result<T> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(read(&cert))
}

/// The first common name of a distinguished name ("" without one).
fn cn(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn leaf(path: &Path) -> Result<Leaf> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    with_cert(pem::parse(&pem)?.contents(), |cert| {
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                    names.push((*dns).to_owned());
                }
            }
        }
        names.sort();
        Leaf {
            names,
            issuer_cn: cn(cert.issuer()),
            serial_hex: cert
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    })
    .with_context(|| path.display().to_string())
}

/// The subject CN of a PEM certificate.
fn common_name(pem_text: &str) -> Result<String> {
    with_cert(pem::parse(pem_text)?.contents(), |cert| cn(cert.subject()))
}

#[test]
fn several_certificates_are_issued_and_renewed_by_themselves_with_http01_and_dns01() -> Result<()> {
    let pebble = Pebble::start(PebbleConfig {
        validity: Some(Duration::from_secs(24)),
        ..PebbleConfig::default()
    })?;
    let site = Site::new(&pebble, &[])?;
    let hook = site.dns_hook(&pebble)?;
    let certs = [
        Cert {
            id: "web",
            settings: r#"domains = ["web.apotek.test", "www.apotek.test"]
agree_terms = true
contact = ["mailto:it@apotek.test"]"#
                .into(),
        },
        Cert {
            id: "api",
            settings:
                "domains = [\"api.apotek.test\"]\nagree_terms = true\nkey_type = \"rsa-2048\""
                    .into(),
        },
        Cert {
            id: "wild",
            settings: format!(
                "domains = [\"*.apotek.test\", \"apotek.test\"]\nagree_terms = true\nchallenge = \"dns-01\"\ndns_hook = [\"{}\"]\ndns_wait = \"1s\"",
                hook.display()
            ),
        },
    ];
    site.write_config(&pebble, &certs)?;
    let daemon = Daemon::start(&bins()?, &site.config, &[])?;

    // Issued, then renewed twice on the engine's own schedule (24 s certificates renew at
    // two thirds of their life), with nobody asking.
    for cert in &certs {
        wait_for_runs(&daemon, &pebble, cert.id, 3, RENEWALS)?;
    }
    let expected: [(&str, &[&str]); 3] = [
        ("web", &["web.apotek.test", "www.apotek.test"]),
        ("api", &["api.apotek.test"]),
        ("wild", &["*.apotek.test", "apotek.test"]),
    ];
    let intermediate = common_name(pebble.issuing_intermediate_pem())?;
    for (id, names) in expected {
        let issued = leaf(&site.live(&format!("{id}.pem")))?;
        assert_eq!(issued.names, names, "{id}");
        assert_eq!(issued.issuer_cn, intermediate, "{id}: issued by pebble");
        assert!(
            pair_matches(
                &site.live(&format!("{id}.pem")),
                &site.live(&format!("{id}.key"))
            )?,
            "{id}: the live key is the certificate's"
        );
        let fullchain = std::fs::read_to_string(site.live(&format!("{id}-fullchain.pem")))?;
        assert!(
            fullchain.matches("BEGIN CERTIFICATE").count() >= 2,
            "{id}: the chain came with the leaf"
        );
        let renewal = renewal_of(&daemon, id).context("status")?;
        assert_eq!(renewal.failures, 0, "{id}: {renewal:?}");
    }

    // dns-01 went through the hook: records set, then removed, for the wildcard and the apex.
    let hook_log = std::fs::read_to_string(site.path().join("dns-hook.log"))?;
    assert!(
        hook_log.contains("set _acme-challenge.apotek.test ")
            && hook_log.contains("domain=*.apotek.test")
            && hook_log.contains("unset _acme-challenge.apotek.test "),
        "{hook_log}"
    );
    // http-01 was answered by the daemon's responder, which pebble really asked.
    let log = pebble.log_text();
    assert!(
        log.contains("/.well-known/acme-challenge/") || log.contains("http-01"),
        "{log}"
    );
    // The account is registered once and shared: one account key file for the directory.
    let keys = std::fs::read_dir(site.path().join("state/plugins/acme/.keys"))?
        .filter_map(|e| e.ok())
        .count();
    assert_eq!(keys, 1, "one account key");
    Ok(())
}

#[test]
fn every_renewal_completes_while_pebble_rejects_most_nonces() -> Result<()> {
    let pebble = Pebble::start(PebbleConfig {
        validity: Some(Duration::from_secs(20)),
        nonce_reject_percent: 75,
        ..PebbleConfig::default()
    })?;
    let site = Site::new(
        &pebble,
        &[Cert {
            id: "web",
            settings: "domains = [\"web.apotek.test\"]\nagree_terms = true".into(),
        }],
    )?;
    let daemon = Daemon::start(&bins()?, &site.config, &[])?;
    wait_for_runs(&daemon, &pebble, "web", 3, RENEWALS)?;
    let text = metrics(&daemon).unwrap_or_default();
    assert!(
        // The counters exist at 0 from the start: none may have moved.
        !text.lines().any(
            |l| l.starts_with("certvakt_renewal_failures_total{id=\"web\"") && !l.ends_with(" 0")
        ),
        "no step failed: the plugin retried every rejected nonce itself\n{text}"
    );
    // The daemon logs every plugin request with its status: pebble's badNonce refusals are
    // the 400s, and at 75 % there are many.
    let refused = daemon
        .log_text()
        .to_ascii_lowercase()
        .matches("status=400")
        .count();
    assert!(
        refused >= 10,
        "only {refused} refusals: was the rejection on?"
    );
    Ok(())
}

#[test]
fn a_ca_outage_mid_order_backs_off_shows_and_recovers_with_the_same_key() -> Result<()> {
    let mut pebble = Pebble::start(PebbleConfig::default())?;
    let site = Site::new(&pebble, &[])?;
    let hook = site.dns_hook(&pebble)?;
    // dns-01 with a wait: the order stays placed, and the CA unasked, for 4 seconds.
    site.write_config(
        &pebble,
        &[Cert {
            id: "web",
            settings: format!(
                "domains = [\"web.apotek.test\"]\nagree_terms = true\nchallenge = \"dns-01\"\ndns_hook = [\"{}\"]\ndns_wait = \"4s\"",
                hook.display()
            ),
        }],
    )?;
    let daemon = Daemon::start(&bins()?, &site.config, &[])?;
    eventually(WAIT, "the order to be placed", || {
        let renewal = renewal_of(&daemon, "web")?;
        (renewal.phase == Some(Phase::Ordered)).then_some(())
    })?;
    pebble.stop_acme()?;
    let pending_key = site.path().join("state/certs/web/pending-key.pem");
    let key_before = std::fs::read(&pending_key).context("the pending key is on disk")?;

    let error = eventually(WAIT, "the failure to show in status", || {
        let renewal = renewal_of(&daemon, "web")?;
        (renewal.failures >= 2).then(|| renewal.last_error.unwrap_or_default())
    })?;
    assert!(
        error.contains("connect") || error.contains("refused"),
        "the error names the cause: {error}"
    );
    let (code, _) = daemon.status()?;
    ensure!(code != 0, "status is not OK while renewals fail");
    assert!(!site.live("web.pem").exists(), "nothing installed");

    pebble.restart_acme()?;
    wait_for_runs(&daemon, &pebble, "web", 1, RENEWALS)?;
    let key_after = std::fs::read(site.live("web.key"))?;
    assert_eq!(
        key_before, key_after,
        "the key made before the outage is the one installed"
    );
    assert!(pair_matches(&site.live("web.pem"), &site.live("web.key"))?);
    let renewal = renewal_of(&daemon, "web").context("status")?;
    assert_eq!(renewal.failures, 0, "{renewal:?}");
    Ok(())
}

#[test]
fn external_account_binding_terms_chains_key_rollover_contact_and_revocation() -> Result<()> {
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(PebbleConfig {
        external_account_keys: vec![("kid-apotek".into(), hmac.into())],
        alternate_roots: 1,
        ..PebbleConfig::default()
    })?;
    let (status, alternate_root) = pebble.management_get("/roots/1")?;
    ensure!(status == 200, "pebble offers an alternate root");
    let preferred = common_name(&alternate_root)?;
    let site = Site::new(&pebble, &[])?;
    let eab_file = site.path().join("eab.key");
    std::fs::write(&eab_file, hmac)?;
    let settings = |extra: &str| {
        format!(
            "domains = [\"web.apotek.test\"]\neab_kid = \"kid-apotek\"\neab_hmac_key_file = \"{}\"\npreferred_chain = \"{preferred}\"\n{extra}",
            eab_file.display()
        )
    };

    // Without agreeing to the terms nothing is registered, and status says why.
    site.write_config(
        &pebble,
        &[Cert {
            id: "web",
            settings: settings(""),
        }],
    )?;
    let daemon = Daemon::start(&bins()?, &site.config, &[])?;
    let error = eventually(WAIT, "the terms to be asked for", || {
        renewal_of(&daemon, "web")?.last_error
    })?;
    assert!(error.contains("agree_terms = true"), "{error}");
    assert!(error.contains("terms of service"), "{error}");

    site.write_config(
        &pebble,
        &[Cert {
            id: "web",
            settings: settings("agree_terms = true"),
        }],
    )?;
    let reload = daemon.cli(&["reload"])?;
    ensure!(reload.status.success(), "reload: {reload:?}");
    wait_for_runs(&daemon, &pebble, "web", 1, RENEWALS)?;
    let first = leaf(&site.live("web.pem"))?;
    let fullchain = std::fs::read_to_string(site.live("web-fullchain.pem"))?;
    assert_eq!(
        top_issuer(&fullchain)?,
        preferred,
        "the alternate chain was chosen"
    );
    let account_file = site.path().join("state/plugins/acme/web/account.json");
    let account: Value = serde_json::from_slice(&std::fs::read(&account_file)?)?;
    assert!(
        account["key_name"]
            .as_str()
            .unwrap_or_default()
            .ends_with("ec-p256"),
        "{account}"
    );

    // A new account key type: the account rolls over to the new key and stays the same; the
    // replaced certificate is revoked.
    site.write_config(
        &pebble,
        &[Cert {
            id: "web",
            settings: settings(
                "agree_terms = true\naccount_key_type = \"ec-p384\"\nrevoke_old = true\ncontact = [\"mailto:new@apotek.test\"]",
            ),
        }],
    )?;
    let reload = daemon.cli(&["reload"])?;
    ensure!(reload.status.success(), "reload: {reload:?}");
    let renew = daemon.cli(&["renew", "web", "--force"])?;
    ensure!(renew.status.success(), "renew: {renew:?}");
    wait_for_runs(&daemon, &pebble, "web", 2, RENEWALS)?;
    let rolled: Value = serde_json::from_slice(&std::fs::read(&account_file)?)?;
    assert_eq!(rolled["url"], account["url"], "the same account");
    assert!(
        rolled["key_name"]
            .as_str()
            .unwrap_or_default()
            .ends_with("ec-p384"),
        "{rolled}"
    );
    assert!(
        daemon
            .log_text()
            .contains("updated the ACME account's contact to mailto:new@apotek.test"),
        "{}",
        daemon.log_text()
    );
    // The test wrote the EAB key with the default umask: the plugin says so.
    assert!(daemon.log_text().contains("can be read by any user"));
    let second = leaf(&site.live("web.pem"))?;
    assert_ne!(second.serial_hex, first.serial_hex);
    let revoked = eventually(WAIT, "the old certificate to be revoked", || {
        let (code, body) = pebble
            .management_get(&format!(
                "/cert-status-by-serial/{}",
                first.serial_hex.trim_start_matches('0')
            ))
            .ok()?;
        (code == 200 && body.contains("Revoked")).then_some(body)
    });
    if let Err(e) = revoked {
        bail!("{e}\n{}\n{}", daemon.log_text(), pebble.log_text());
    }
    let (code, body) = pebble.management_get(&format!(
        "/cert-status-by-serial/{}",
        second.serial_hex.trim_start_matches('0')
    ))?;
    assert!(code == 200 && body.contains("Valid"), "{code} {body}");
    Ok(())
}

/// The issuer CN of the last certificate in a PEM chain.
fn top_issuer(chain: &str) -> Result<String> {
    let blocks = pem::parse_many(chain)?;
    let last = blocks.last().context("a certificate in the chain")?;
    with_cert(last.contents(), |cert| cn(cert.issuer()))
}

#[test]
fn the_cas_renewal_window_decides_when_to_renew() -> Result<()> {
    // Five-year certificates: by the engine's own schedule, the next renewal is years away.
    let pebble = Pebble::start(PebbleConfig::default())?;
    let front = AriFront::start(&pebble)?;
    let site = Site::new(&pebble, &[])?;
    std::fs::write(
        site.path().join("pebble-ca.pem"),
        format!("{}{}", pebble.listener_ca_pem(), front.root_pem()),
    )?;
    site.write_config_for(
        &pebble,
        &front.directory_url(),
        true,
        &[Cert {
            id: "web",
            settings: "domains = [\"web.apotek.test\"]\nagree_terms = true".into(),
        }],
    )?;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    };
    // The CA wants the first certificate replaced now (as before a mass revocation).
    front.set_window(now() - 120, now() - 60, 3600);
    let daemon = Daemon::start(&bins()?, &site.config, &[])?;
    let asked = eventually(
        WAIT,
        "the daemon to ask about the first certificate",
        || {
            front
                .requests()
                .iter()
                .any(|r| r.path.starts_with("/renewal-info/") && r.status == 200)
                .then_some(())
        },
    );
    if let Err(e) = asked {
        bail!("{e}\nfront: {:?}\n{}", front.requests(), daemon.log_text());
    }
    let asked_first: Vec<String> = front.requests().into_iter().map(|r| r.path).collect();
    // For what comes next, a window a month away.
    let (start, end) = (now() + 30 * 86_400, now() + 31 * 86_400);
    front.set_window(start, end, 3600);
    wait_for_runs(&daemon, &pebble, "web", 2, RENEWALS)?;
    let second = leaf(&site.live("web.pem"))?;
    eventually(
        WAIT,
        "the daemon to ask about the second certificate",
        || {
            front
                .requests()
                .iter()
                .any(|r| {
                    r.path.starts_with("/renewal-info/")
                        && r.path
                            .ends_with(&format!(".{}", serial_b64(&second.serial_hex)))
                        && r.status == 200
                })
                .then_some(())
        },
    )?;
    let next = eventually(WAIT, "the next renewal inside the window", || {
        let next = renewal_of(&daemon, "web")?.next_at?;
        (start..end).contains(&next).then_some(next)
    });
    if let Err(e) = next {
        bail!(
            "{e}\nstatus: {:?}\n{}",
            renewal_of(&daemon, "web"),
            daemon.log_text()
        );
    }
    let show = daemon.cli(&["show", "web"])?;
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("CA's window"), "{shown}");
    let log = daemon.log_text();
    assert!(
        log.contains("the authority suggests renewing between"),
        "{log}"
    );
    assert!(
        !log.contains("refused the order as a replacement"),
        "the renewal's order named the certificate it replaces and was taken\n{log}"
    );
    assert!(
        asked_first
            .iter()
            .all(|p| !p.ends_with(&format!(".{}", serial_b64(&second.serial_hex)))),
        "{asked_first:?}"
    );
    Ok(())
}

/// The base64url of a serial given in hex, as certificate identifiers carry it.
fn serial_b64(hex: &str) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn http01_through_a_webroot_that_another_web_server_serves() -> Result<()> {
    use certvakt_testkit::webroot::WebRoot;

    let pebble = Pebble::start(PebbleConfig::default())?;
    let site = Site::new(&pebble, &[])?;
    let www = site.path().join("www");
    std::fs::create_dir(&www)?;
    // The web server owns port 80 (here pebble's validation port); certvakt only writes files.
    let server = WebRoot::start(pebble.http01_port(), &www)?;
    site.write_config_for(
        &pebble,
        &pebble.directory_url(),
        false,
        &[Cert {
            id: "web",
            settings: format!(
                "domains = [\"web.apotek.test\", \"www.apotek.test\"]\nagree_terms = true\nwebroot = \"{}\"",
                www.display()
            ),
        }],
    )?;
    let daemon = Daemon::start(&bins()?, &site.config, &[])?;
    wait_for_runs(&daemon, &pebble, "web", 1, RENEWALS)?;
    assert!(pair_matches(&site.live("web.pem"), &site.live("web.key"))?);

    // pebble fetched both names' files from the web server, and got them.
    let fetched: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|(_, path, status)| {
            path.starts_with("/.well-known/acme-challenge/") && *status == 200
        })
        .map(|(_, path, _)| path)
        .collect();
    let mut tokens = fetched.clone();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 2, "one token per name: {fetched:?}");
    // And the files are gone again.
    let left: Vec<_> = std::fs::read_dir(www.join(".well-known/acme-challenge"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}
