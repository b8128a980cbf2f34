//! pebble: Let's Encrypt's ACME test server (Debian package `pebble` 2.4), run for one test.
//!
//! Owns: [`Pebble`] (a running `pebble` with its own `pebble-challtestsrv` as DNS server),
//! [`PebbleConfig`], and [`https_get`] (a small blocking HTTPS client for loopback servers).
//!
//! Promises:
//! - Everything is on 127.0.0.1, on ports picked free at start (ACME, management, mock DNS and
//!   its management), so tests can run pebbles in parallel. Nothing leaves loopback: pebble
//!   resolves every name through its challtestsrv, which answers `A` with 127.0.0.1 and no
//!   `AAAA` (pebble would otherwise dial `[::1]` first), so http-01 validation connects to
//!   `127.0.0.1:<http01_port>` and tls-alpn-01 to `127.0.0.1:<tls_alpn01_port>`.
//!   pebble-challtestsrv serves only DNS (its http-01, https-01 and tls-alpn-01 servers are
//!   off): the responders are the code under test.
//! - Validation is real (`PEBBLE_VA_ALWAYS_VALID=0`) and immediate (`PEBBLE_VA_NOSLEEP=1`);
//!   pebble runs with `-strict` (in 2.4: a challenge POST must carry exactly `{}`, and a JWS
//!   body with an ACME v1 `resource` field is refused). Nonce rejection and authorization
//!   reuse are off unless [`PebbleConfig`] asks for them. Other `PEBBLE_*` variables of the caller's environment are
//!   removed, and so are the proxy variables.
//! - The ACME and management listeners present a certificate for `127.0.0.1` and `localhost`
//!   from a fresh [`TestCa`]: [`Pebble::listener_ca_pem`] is what an ACME client must trust.
//!   The CA that signs the *issued* certificates is pebble's own, new at every start:
//!   [`Pebble::issuing_roots_pem`].
//! - [`Pebble::start`] returns only when the directory answers over verified HTTPS, the
//!   management interface has handed out the issuing root and intermediate, and the mock DNS
//!   answers; ports lost to a race with another process are retried with new ones.
//! - If `pebble` or `pebble-challtestsrv` is not installed, `start` fails and says to run
//!   `scripts/install-test-deps` (tests never skip silently).
//! - Dropping a [`Pebble`] kills both processes; the temporary folder (config, listener
//!   certificate, logs) goes with it.

use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio_rustls::TlsConnector;

use crate::ca::{CaShape, KeyType, TestCa};
use crate::harness::{eventually, http_get};
use crate::leaf::LeafSpec;

/// How long each readiness stage may take (pebble makes its CA keys at start).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when a process cannot bind (another process took a port between
/// picking and binding).
const ATTEMPTS: usize = 3;
/// Timeout of one [`https_get`] (connect, handshake, request and body).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one readiness probe: short, so a port held by a silent process costs little.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a [`Pebble`] behaves. The default: pebble's five-year certificates, no nonce
/// rejection, no authorization reuse, free ports for validation that nobody listens on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PebbleConfig {
    /// Lifetime of the certificates it issues (`certificateValidityPeriod`, whole seconds, at
    /// least one; pebble makes `notAfter = notBefore + validity - 1 s`). `None`: pebble's
    /// default of five years.
    pub validity: Option<Duration>,
    /// Percentage of good nonces rejected with `badNonce` (`PEBBLE_WFE_NONCEREJECT`; pebble
    /// clips 100 to 99). Default 0 here (pebble's own default is 5) so that a test is not
    /// random unless it asks to be.
    pub nonce_reject_percent: u8,
    /// Percentage of new orders that reuse a still-valid authorization for the same name,
    /// which then need no challenge (`PEBBLE_AUTHZREUSE`, 0..=100). Default 0 here (pebble's
    /// own default is 50), for the same reason.
    pub authz_reuse_percent: u8,
    /// The port on 127.0.0.1 pebble connects to for http-01 validation (`httpPort`): where
    /// the responder under test listens. 0: a free port that nobody listens on. Pebble 2.4
    /// validates each challenge three times at once ("Starting 3 validations"), so the
    /// responder sees three requests for one token.
    pub http01_port: u16,
    /// The port on 127.0.0.1 pebble connects to for tls-alpn-01 validation (`tlsPort`). 0: a
    /// free port that nobody listens on.
    pub tls_alpn01_port: u16,
    /// External account binding keys, key id → HMAC key (base64url). Not empty: pebble
    /// requires a binding for every new account (`externalAccountBindingRequired`).
    pub external_account_keys: Vec<(String, String)>,
    /// Alternate issuing hierarchies (`PEBBLE_ALTERNATE_ROOTS`): each order then offers
    /// `1 + alternate_roots` chains, the others behind `Link: rel="alternate"`.
    pub alternate_roots: u8,
}

/// A running pebble and its mock DNS server. Dropping it kills both.
pub struct Pebble {
    dir: tempfile::TempDir,
    acme: SocketAddr,
    management: SocketAddr,
    dns: SocketAddr,
    dns_management: SocketAddr,
    http01_port: u16,
    tls_alpn01_port: u16,
    listener_ca_pem: String,
    issuing_root_pem: String,
    issuing_intermediate_pem: String,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
    config: PebbleConfig,
    config_path: PathBuf,
}

impl std::fmt::Debug for Pebble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pebble")
            .field("dir", &self.dir.path())
            .field("acme", &self.acme)
            .field("management", &self.management)
            .field("dns", &self.dns)
            .field("http01_port", &self.http01_port)
            .field("tls_alpn01_port", &self.tls_alpn01_port)
            .finish_non_exhaustive()
    }
}

/// The two programs, found on `PATH`.
struct Programs {
    pebble: PathBuf,
    challtestsrv: PathBuf,
}

/// The ports of one attempt.
struct Ports {
    acme: u16,
    management: u16,
    dns: u16,
    dns_management: u16,
    http01: u16,
    tls_alpn01: u16,
}

/// Why an attempt failed: worth retrying with other ports, or not.
enum StartError {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

impl Pebble {
    /// Starts `pebble-challtestsrv` (mock DNS only) and `pebble` as `config` says and waits
    /// until both answer.
    pub fn start(config: PebbleConfig) -> Result<Pebble> {
        let programs = find_programs()?;
        if config.authz_reuse_percent > 100 || config.nonce_reject_percent > 100 {
            bail!("percentages go up to 100: {config:?}");
        }
        let dir = tempfile::Builder::new()
            .prefix("certvakt-pebble-")
            .tempdir()
            .context("creating pebble's folder")?;
        let listener_ca = TestCa::new(CaShape::Tls)?;
        let listener = listener_ca.issue(
            &LeafSpec::tls_server(&["localhost", "127.0.0.1"])
                .key_type(KeyType::EcP256)
                .days(-1, 365),
        )?;
        let listener_files = listener.write_pem(dir.path(), "listener")?;

        let mut pebble = Pebble {
            dir,
            acme: loopback(0),
            management: loopback(0),
            dns: loopback(0),
            dns_management: loopback(0),
            http01_port: 0,
            tls_alpn01_port: 0,
            listener_ca_pem: listener_ca.root_pem(),
            issuing_root_pem: String::new(),
            issuing_intermediate_pem: String::new(),
            pebble: None,
            challtestsrv: None,
            config: config.clone(),
            config_path: PathBuf::new(),
        };
        let mut failures = Vec::new();
        for attempt in 1..=ATTEMPTS {
            let ports = pick_ports(&config)?;
            pebble.acme = loopback(ports.acme);
            pebble.management = loopback(ports.management);
            pebble.dns = loopback(ports.dns);
            pebble.dns_management = loopback(ports.dns_management);
            pebble.http01_port = ports.http01;
            pebble.tls_alpn01_port = ports.tls_alpn01;
            let config_path =
                pebble.write_config(&config, &listener_files.fullchain, &listener_files.key)?;
            match pebble.launch(&programs, &config, &config_path) {
                Ok(()) => {
                    pebble.config_path = config_path;
                    return Ok(pebble);
                }
                Err(StartError::Fatal(err)) => {
                    return Err(err.context(format!("pebble logs:\n{}", pebble.log_text())));
                }
                Err(StartError::Retry(err)) => {
                    failures.push(format!("attempt {attempt}: {err:#}\n{}", pebble.log_text()));
                    pebble.kill();
                }
            }
        }
        bail!(
            "pebble did not start in {ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        )
    }

    /// The directory URL, `https://127.0.0.1:<port>/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.acme)
    }

    /// The ACME listener's address.
    pub fn acme_addr(&self) -> SocketAddr {
        self.acme
    }

    /// The management interface's address (HTTPS, same certificate as the ACME listener).
    pub fn management_addr(&self) -> SocketAddr {
        self.management
    }

    /// The root that signed the listeners' certificate, PEM: the trust anchor for talking to
    /// the ACME server (not for the certificates it issues).
    pub fn listener_ca_pem(&self) -> &str {
        &self.listener_ca_pem
    }

    /// What verifies the certificates this pebble issues, PEM: its root (`/roots/0`), then its
    /// intermediate (`/intermediates/0`). Both are new at every start.
    pub fn issuing_roots_pem(&self) -> String {
        format!("{}{}", self.issuing_root_pem, self.issuing_intermediate_pem)
    }

    /// Pebble's issuing root alone (`/roots/0`), PEM.
    pub fn issuing_root_pem(&self) -> &str {
        &self.issuing_root_pem
    }

    /// Pebble's issuing intermediate alone (`/intermediates/0`), PEM.
    pub fn issuing_intermediate_pem(&self) -> &str {
        &self.issuing_intermediate_pem
    }

    /// The port on 127.0.0.1 pebble connects to for http-01 validation.
    pub fn http01_port(&self) -> u16 {
        self.http01_port
    }

    /// The port on 127.0.0.1 pebble connects to for tls-alpn-01 validation.
    pub fn tls_alpn01_port(&self) -> u16 {
        self.tls_alpn01_port
    }

    /// The mock DNS server pebble resolves names with (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns
    }

    /// The mock DNS server's management API, `http://127.0.0.1:<port>` (`/set-txt`,
    /// `/add-a`, `/set-servfail`, … as pebble-challtestsrv documents them).
    pub fn dns_management_url(&self) -> String {
        format!("http://{}", self.dns_management)
    }

    /// `GET path` on the ACME listener, verified with the listener CA: status and body.
    pub fn acme_get(&self, path: &str) -> Result<(u16, String)> {
        https_get(self.acme, path, &self.listener_ca_pem)
    }

    /// `GET path` on the management interface (`/roots/0`, `/cert-status-by-serial/<hex>`,
    /// …), verified with the listener CA: status and body.
    pub fn management_get(&self, path: &str) -> Result<(u16, String)> {
        https_get(self.management, path, &self.listener_ca_pem)
    }

    /// The folder with the config, the listener certificate and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What pebble and pebble-challtestsrv have logged so far (pebble logs every request and
    /// validation), for a failing test's message.
    pub fn log_text(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir().join(name)).unwrap_or_default();
        format!(
            "--- pebble.log\n{}--- challtestsrv.log\n{}",
            read("pebble.log"),
            read("challtestsrv.log")
        )
    }

    /// Stops the ACME server alone, as an outage looks to a client: connections to its port
    /// are refused. Its DNS server stays up.
    pub fn stop_acme(&mut self) -> Result<()> {
        if let Some(mut child) = self.pebble.take() {
            child.kill().context("killing pebble")?;
            child.wait().context("waiting for pebble")?;
        }
        Ok(())
    }

    /// Starts the ACME server again on the same ports and waits until it answers. pebble keeps
    /// nothing across a restart: accounts, orders and the issuing CA are new.
    pub fn restart_acme(&mut self) -> Result<()> {
        self.stop_acme()?;
        let programs = find_programs()?;
        let (config, path) = (self.config.clone(), self.config_path.clone());
        let _ = std::fs::rename(
            self.dir().join("pebble.log"),
            self.dir().join("pebble-before-restart.log"),
        );
        match self.launch_acme(&programs, &config, &path) {
            Ok(()) => Ok(()),
            Err(StartError::Retry(e) | StartError::Fatal(e)) => {
                Err(e.context(format!("restarting pebble:\n{}", self.log_text())))
            }
        }
    }

    /// Kills both processes and waits for them.
    pub fn stop(mut self) -> Result<()> {
        let mut errors = Vec::new();
        for (name, child) in [
            ("pebble", self.pebble.take()),
            ("pebble-challtestsrv", self.challtestsrv.take()),
        ] {
            if let Some(mut child) = child {
                if let Err(err) = child.kill().and_then(|()| child.wait().map(drop)) {
                    errors.push(format!("{name}: {err}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("stopping: {}", errors.join("; ")))
        }
    }

    fn write_config(
        &self,
        config: &PebbleConfig,
        certificate: &Path,
        private_key: &Path,
    ) -> Result<PathBuf> {
        let mut pebble = json!({
            "listenAddress": self.acme.to_string(),
            "managementListenAddress": self.management.to_string(),
            "certificate": certificate,
            "privateKey": private_key,
            "httpPort": self.http01_port,
            "tlsPort": self.tls_alpn01_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !config.external_account_keys.is_empty(),
        });
        if !config.external_account_keys.is_empty() {
            let keys: serde_json::Map<String, serde_json::Value> = config
                .external_account_keys
                .iter()
                .map(|(kid, key)| (kid.clone(), json!(key)))
                .collect();
            pebble["externalAccountMACKeys"] = serde_json::Value::Object(keys);
        }
        if let Some(validity) = config.validity {
            pebble["certificateValidityPeriod"] = json!(validity.as_secs().max(1));
        }
        let path = self.dir().join("pebble-config.json");
        let text = serde_json::to_string_pretty(&json!({ "pebble": pebble }))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    fn launch(
        &mut self,
        programs: &Programs,
        config: &PebbleConfig,
        config_path: &Path,
    ) -> std::result::Result<(), StartError> {
        // A new attempt: the last one's logs (already in its error) must not be read as ours.
        for log in ["pebble.log", "challtestsrv.log"] {
            let _ = std::fs::remove_file(self.dir().join(log));
        }
        // The mock DNS first: pebble asks it when it validates.
        let mut cmd = command(&programs.challtestsrv);
        cmd.arg("-dns01")
            .arg(self.dns.to_string())
            .arg("-management")
            .arg(self.dns_management.to_string())
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]);
        self.challtestsrv = Some(spawn(cmd, &self.dir().join("challtestsrv.log"))?);
        let dns = self.dns;
        let dns_management = self.dns_management;
        self.wait_for("pebble-challtestsrv to answer DNS queries", |this| {
            this.check_alive()?;
            let answered = dns_answers(dns) && http_get(&dns_management.to_string(), "/").is_ok();
            Ok(answered.then_some(()))
        })?;

        self.launch_acme(programs, config, config_path)
    }

    /// Starts `pebble` alone (its DNS server is up) and waits for its directory and roots.
    fn launch_acme(
        &mut self,
        programs: &Programs,
        config: &PebbleConfig,
        config_path: &Path,
    ) -> std::result::Result<(), StartError> {
        let mut cmd = command(&programs.pebble);
        cmd.arg("-config")
            .arg(config_path)
            .arg("-dnsserver")
            .arg(self.dns.to_string())
            .arg("-strict")
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                config.nonce_reject_percent.to_string(),
            )
            .env("PEBBLE_AUTHZREUSE", config.authz_reuse_percent.to_string())
            .env("PEBBLE_ALTERNATE_ROOTS", config.alternate_roots.to_string());
        self.pebble = Some(spawn(cmd, &self.dir().join("pebble.log"))?);

        let trust = self.listener_ca_pem.clone();
        let (root, intermediate) = self.wait_for("pebble's directory and management", |this| {
            this.check_alive()?;
            let get = |addr, path| match https_get_within(addr, path, &trust, PROBE_TIMEOUT) {
                Ok((200, body)) => Some(body),
                _ => None,
            };
            let Some(directory) = get(this.acme, "/dir") else {
                return Ok(None);
            };
            let Some(root) = get(this.management, "/roots/0") else {
                return Ok(None);
            };
            let Some(intermediate) = get(this.management, "/intermediates/0") else {
                return Ok(None);
            };
            if !directory.contains("newNonce") {
                return Err(StartError::Fatal(anyhow!(
                    "pebble's directory has no newNonce: {directory}"
                )));
            }
            Ok(Some((root, intermediate)))
        })?;
        self.issuing_root_pem = root;
        self.issuing_intermediate_pem = intermediate;
        Ok(())
    }

    /// Polls `check` until it gives a value, an error, or [`READY_TIMEOUT`] passes (retried
    /// with other ports, in case someone else holds one).
    fn wait_for<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&mut Pebble) -> std::result::Result<Option<T>, StartError>,
    ) -> std::result::Result<T, StartError> {
        let outcome = eventually(READY_TIMEOUT, what, || match check(self) {
            Ok(Some(value)) => Some(Ok(value)),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        });
        match outcome {
            Ok(result) => result,
            Err(timeout) => Err(StartError::Retry(timeout)),
        }
    }

    /// An error if either process has exited or could not bind a port: pebble exits then,
    /// pebble-challtestsrv only logs it.
    fn check_alive(&mut self) -> std::result::Result<(), StartError> {
        let logs = self.log_text();
        if let Some(line) = logs.lines().find(|l| l.contains("address already in use")) {
            return Err(StartError::Retry(anyhow!("a port was taken: {line}")));
        }
        for (name, child) in [
            ("pebble-challtestsrv", self.challtestsrv.as_mut()),
            ("pebble", self.pebble.as_mut()),
        ] {
            if let Some(child) = child {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        return Err(StartError::Retry(anyhow!("{name} exited with {status}")));
                    }
                    Ok(None) => {}
                    Err(err) => {
                        return Err(StartError::Fatal(anyhow!("waiting for {name}: {err}")));
                    }
                }
            }
        }
        Ok(())
    }

    fn kill(&mut self) {
        for mut child in [self.pebble.take(), self.challtestsrv.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.kill();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A command for `program` without the caller's `PEBBLE_*` settings (alternate roots, longer
/// chains, …) and proxies (pebble's validation must stay on loopback).
fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("PEBBLE_") || text.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Spawns `cmd` with stdout and stderr to `log`.
fn spawn(mut cmd: Command, log: &Path) -> std::result::Result<Child, StartError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawned = File::create(log)
        .and_then(|out| Ok((out.try_clone()?, out)))
        .with_context(|| format!("creating {}", log.display()))
        .and_then(|(out, err)| {
            cmd.stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .with_context(|| format!("starting {program}"))
        });
    spawned.map_err(StartError::Fatal)
}

/// `pebble` and `pebble-challtestsrv` on `PATH`, or an error saying how to install them.
fn find_programs() -> Result<Programs> {
    let find = |name: &str| -> Result<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
            .with_context(|| {
                format!(
                    "`{name}` is not installed (not on PATH): run scripts/install-test-deps, \
                     which installs the Debian package `pebble`"
                )
            })
    };
    Ok(Programs {
        pebble: find("pebble")?,
        challtestsrv: find("pebble-challtestsrv")?,
    })
}

/// Ports handed out by this process, so parallel tests never pick the same one.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: std::sync::OnceLock<Mutex<HashSet<u16>>> = std::sync::OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Free loopback ports for one attempt; the DNS port is free for both TCP and UDP. The
/// sockets are held until all are picked, so one attempt never gets a port twice.
fn pick_ports(config: &PebbleConfig) -> Result<Ports> {
    let mut used = handed_out().lock().unwrap_or_else(PoisonError::into_inner);
    let mut held = Vec::new();
    let mut udp_held = Vec::new();
    let mut next = |udp_too: bool| -> Result<u16> {
        for _ in 0..100 {
            let listener = TcpListener::bind(loopback(0)).context("binding a free port")?;
            let port = listener.local_addr()?.port();
            if used.contains(&port) {
                continue;
            }
            if udp_too {
                match UdpSocket::bind(loopback(port)) {
                    Ok(socket) => udp_held.push(socket),
                    Err(_) => continue,
                }
            }
            used.insert(port);
            held.push(listener);
            return Ok(port);
        }
        bail!("no free loopback port found in 100 tries")
    };
    let ports = Ports {
        acme: next(false)?,
        management: next(false)?,
        dns: next(true)?,
        dns_management: next(false)?,
        http01: match config.http01_port {
            0 => next(false)?,
            port => port,
        },
        tls_alpn01: match config.tls_alpn01_port {
            0 => next(false)?,
            port => port,
        },
    };
    Ok(ports)
}

/// Whether a DNS server at `addr` answers an `A` query with at least one record (the mock
/// DNS answers every name with its default address), over UDP as pebble asks; and accepts
/// TCP too.
fn dns_answers(addr: SocketAddr) -> bool {
    let query_id: u16 = 0x5eb1;
    let mut query = Vec::with_capacity(40);
    query.extend_from_slice(&query_id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in ["ready", "pebble", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]); // root; type A; class IN
    let ask = || -> std::io::Result<bool> {
        let socket = UdpSocket::bind(loopback(0))?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        socket.send_to(&query, addr)?;
        let mut reply = [0u8; 512];
        let (n, from) = socket.recv_from(&mut reply)?;
        let header = reply.get(..12).filter(|_| n >= 12 && from == addr);
        Ok(header.is_some_and(|h| {
            h[..2] == query_id.to_be_bytes()
                && h[2] & 0x80 != 0 // a response
                && h[3] & 0x0f == 0 // NOERROR
                && u16::from_be_bytes([h[6], h[7]]) >= 1 // an answer
        }))
    };
    ask().unwrap_or(false) && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// `GET path` over HTTPS/1.1 to a loopback server whose certificate names 127.0.0.1 and
/// chains to `trust_pem` (one or more PEM certificates): status and body (UTF-8). Blocking:
/// runs its own single-threaded runtime, so call it outside async code.
pub fn https_get(addr: SocketAddr, path: &str, trust_pem: &str) -> Result<(u16, String)> {
    https_get_within(addr, path, trust_pem, REQUEST_TIMEOUT)
}

/// [`https_get`] with a timeout for the whole exchange.
fn https_get_within(
    addr: SocketAddr,
    path: &str,
    trust_pem: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let mut roots = RootCertStore::empty();
    for block in pem::parse_many(trust_pem).context("reading the trusted PEM certificates")? {
        roots
            .add(CertificateDer::from(block.into_contents()))
            .context("adding a trusted certificate")?;
    }
    if roots.is_empty() {
        bail!("no certificate to trust in the PEM given");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::from(addr.ip());
    let host = addr.to_string();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the HTTPS client's runtime")?;
    runtime.block_on(async {
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            let tls = TlsConnector::from(Arc::new(config))
                .connect(server_name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            let driving = tokio::spawn(connection);
            let request = Request::builder()
                .method("GET")
                .uri(path)
                .header("host", &host)
                .body(Empty::<Bytes>::new())?;
            let response = sender
                .send_request(request)
                .await
                .with_context(|| format!("GET https://{host}{path}"))?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await?.to_bytes();
            driving.abort();
            let body = String::from_utf8(bytes.to_vec())
                .with_context(|| format!("the body of https://{host}{path} is not UTF-8"))?;
            anyhow::Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| anyhow!("GET https://{host}{path}: no answer in {timeout:?}"))?
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;

    #[test]
    fn pebble_serves_a_directory_and_its_roots() {
        let started = Instant::now();
        let pebble = Pebble::start(PebbleConfig {
            validity: Some(Duration::from_secs(600)),
            ..PebbleConfig::default()
        })
        .unwrap();
        eprintln!("pebble started in {:?}: {pebble:?}", started.elapsed());
        assert!(
            pebble
                .directory_url()
                .starts_with(&format!("https://127.0.0.1:{}/", pebble.acme_addr().port()))
        );

        let (status, body) = pebble.acme_get("/dir").unwrap();
        assert_eq!(status, 200, "{body}");
        let directory: serde_json::Value = serde_json::from_str(&body).unwrap();
        for key in ["newNonce", "newAccount", "newOrder"] {
            let url = directory[key].as_str().unwrap_or_else(|| {
                panic!("the directory has no {key}: {body}");
            });
            assert!(
                url.starts_with(&format!("https://{}/", pebble.acme_addr())),
                "{key}: {url}"
            );
        }

        // Issued certificates chain to pebble's own CA: a root and an intermediate.
        let roots = pem::parse_many(pebble.issuing_roots_pem()).unwrap();
        assert_eq!(roots.len(), 2, "{}", pebble.issuing_roots_pem());
        let mut subjects = Vec::new();
        for block in &roots {
            assert_eq!(block.tag(), "CERTIFICATE");
            let (rest, cert) = X509Certificate::from_der(block.contents()).unwrap();
            assert!(rest.is_empty());
            assert!(cert.is_ca(), "{}", cert.subject());
            subjects.push(cert.subject().to_string());
        }
        assert!(subjects[0].contains("Pebble Root CA"), "{subjects:?}");
        assert!(
            subjects[1].contains("Pebble Intermediate CA"),
            "{subjects:?}"
        );

        // The listener certificate is ours, not pebble's issuing CA: trusting the issuing root
        // for the ACME server fails.
        assert!(https_get(pebble.acme_addr(), "/dir", pebble.issuing_root_pem()).is_err());

        // The config pebble read names the ports it reports, and the validity asked for.
        let config = std::fs::read_to_string(pebble.dir().join("pebble-config.json")).unwrap();
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["pebble"]["httpPort"], pebble.http01_port());
        assert_eq!(config["pebble"]["tlsPort"], pebble.tls_alpn01_port());
        assert_eq!(config["pebble"]["certificateValidityPeriod"], 600);
        assert!(
            pebble
                .log_text()
                .contains("Using certificate validity period of 600 seconds")
        );

        pebble.stop().unwrap();
    }

    #[test]
    fn pebble_starts_rejecting_most_nonces_on_a_given_http01_port() {
        let http01 = TcpListener::bind(loopback(0)).unwrap();
        let http01_port = http01.local_addr().unwrap().port();
        let pebble = Pebble::start(PebbleConfig {
            nonce_reject_percent: 90,
            http01_port,
            ..PebbleConfig::default()
        })
        .unwrap();
        assert_eq!(pebble.http01_port(), http01_port);
        let (status, _) = pebble.acme_get("/dir").unwrap();
        assert_eq!(status, 200);
        assert!(
            pebble
                .log_text()
                .contains("Configured to reject 90% of good nonces"),
            "{}",
            pebble.log_text()
        );
    }
}
