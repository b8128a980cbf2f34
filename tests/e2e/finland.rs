//! Finland end to end: the real daemon with the `fi-kanta` plugin loaded from disk, renewing a
//! DVV sote server certificate: the application is a task carrying the CSR, the DVV-like CA
//! issues for it, the import is checked against the type's profile, the new certificate is
//! verified with a TLS call to a Kanta-like endpoint, and after the grace period the old one's
//! revocation is a task that certvakt closes by itself once the CA's CRL (plain HTTP, read by
//! the host) lists the serial.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use certvakt::control::protocol::{Renewal, Task};
use certvakt_testkit::dvv::{DvvCa, DvvCert, DvvConfig, SoteType};
use certvakt_testkit::harness::{self, Daemon, config_toml};
use certvakt_testkit::sni::SniEndpoint;
use certvakt_testkit::{CaShape, KeyType, LeafSpec, TestCa};
use rcgen::{CertificateParams, DnType, RevocationReason, SanType};

use crate::common::{bins, stderr, stdout, task_titled, wait_renewal};

const ID: &str = "kanta";
const FQDN: &str = "kanta.apteekki.example.fi";
const WAIT: Duration = Duration::from_secs(60);

/// A pharmacy with a DVV server certificate in use and a Kanta-like endpoint that takes
/// client certificates from DVV.
struct Site {
    dir: tempfile::TempDir,
    dvv: DvvCa,
    current: DvvCert,
    endpoint: SniEndpoint,
    cert: PathBuf,
    daemon: Daemon,
}

impl Site {
    fn start() -> Result<Site> {
        let dir = tempfile::tempdir()?;
        let bins = bins()?;
        harness::install_plugins(
            &bins,
            &dir.path().join("plugins"),
            &["certvakt-plugin-fi-kanta"],
        )?;
        let dvv = DvvCa::start(DvvConfig {
            revocation_delay: Duration::from_secs(3),
            ..DvvConfig::default()
        })?;
        // The certificate in use, from a CSR made here with its key.
        let key = KeyType::Rsa2048.generate()?;
        let current = dvv.issue(&csr(&key)?, SoteType::Server)?;
        let live = dir.path().join("live");
        std::fs::create_dir_all(&live)?;
        let cert = live.join("kanta.pem");
        let key_path = live.join("kanta.key");
        std::fs::write(&cert, &current.cert_pem)?;
        std::fs::write(&key_path, key.serialize_pem())?;
        // Kanta: TLS for `localhost`, client certificates from DVV.
        let tls = TestCa::new(CaShape::Tls)?;
        let server = tls.issue(&LeafSpec::tls_server(&["localhost"]).key_type(KeyType::EcP256))?;
        let endpoint = SniEndpoint::start_with(
            "127.0.0.1",
            &server,
            "localhost",
            &server,
            &[dvv.ca().root_der()],
        )?;
        let dvv_root = dir.path().join("dvv-root.pem");
        std::fs::write(&dvv_root, dvv.root_pem())?;
        let kanta_root = dir.path().join("kanta-root.pem");
        std::fs::write(&kanta_root, tls.root_pem())?;
        let body = format!(
            r#"[trust]
dvv = ["{dvv_root}"]
kanta = ["{kanta_root}"]

[[certificate]]
id = "{ID}"
cert = "{cert}"
key = "{key}"
plugin = "fi-kanta"
issuer_trust = "dvv"

[certificate.settings]
certificate_type = "server"
organization = "Helsingin Apteekki Oy"
organizational_unit = "Helsingin VI apteekki"
fqdn = "{FQDN}"
verify_url = "https://localhost:{port}/kanta"
verify_trust = "kanta"
revoke_after = "3s"
crl_poll = "5s"
"#,
            dvv_root = dvv_root.display(),
            kanta_root = kanta_root.display(),
            cert = cert.display(),
            key = key_path.display(),
            port = endpoint.addr().port(),
        );
        let config = dir.path().join("certvakt.toml");
        std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:0", &body))?;
        let daemon = Daemon::start(&bins, &config, &[])?;
        Ok(Site {
            dir,
            dvv,
            current,
            endpoint,
            cert,
            daemon,
        })
    }

    fn status(&self) -> Option<Renewal> {
        self.daemon.renewal(ID).ok().flatten()
    }

    fn wait<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> Result<T> {
        let seen = || format!("{} CRL fetches", self.dvv.crl_fetches());
        wait_renewal(Some(&self.daemon), ID, WAIT, what, seen, check)
    }

    fn wait_task(&self, needle: &str) -> Result<Task> {
        self.wait("the task", || task_titled(Some(&self.daemon), needle))
    }

    /// Renews: the application task's CSR goes to DVV as `sote_type`; what DVV mails back
    /// (PEM, with its chain) is imported. Returns what was issued and the CLI's output.
    fn apply_and_import(&self, sote_type: SoteType) -> Result<(DvvCert, std::process::Output)> {
        let task = self.wait_task("in DVV's e-service")?;
        let csr = task
            .files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == "csr"))
            .with_context(|| format!("the task has no CSR: {:?}", task.files))?;
        let issued = self.dvv.issue(&std::fs::read_to_string(csr)?, sote_type)?;
        let file = self.dir.path().join("Downloads/palveluvarmenne.pem");
        std::fs::create_dir_all(file.parent().context("folder")?)?;
        std::fs::write(&file, &issued.chain_pem)?;
        let out = self
            .daemon
            .cli(&["import", ID, &file.display().to_string()])?;
        Ok((issued, out))
    }

    fn live_is(&self, cert_pem: &str) -> bool {
        std::fs::read_to_string(&self.cert).is_ok_and(|live| live.trim() == cert_pem.trim())
    }
}

/// A CSR for the pharmacy's server certificate with `key`.
fn csr(key: &rcgen::KeyPair) -> Result<String> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CountryName, "FI");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Helsingin Apteekki Oy");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "Helsingin VI apteekki");
    params.distinguished_name.push(DnType::CommonName, FQDN);
    params.subject_alt_names = vec![SanType::DnsName(FQDN.try_into()?)];
    Ok(params.serialize_request(key)?.pem()?)
}

#[test]
fn a_dvv_server_certificate_is_applied_for_verified_and_the_old_one_seen_revoked_in_the_crl()
-> Result<()> {
    let site = Site::start()?;
    let out = site.daemon.cli(&["renew", ID, "--force"])?;
    ensure!(out.status.success(), "renew: {}", stderr(&out));
    let (new, out) = site.apply_and_import(SoteType::Server)?;
    ensure!(
        out.status.success(),
        "import: {}{}",
        stdout(&out),
        stderr(&out)
    );

    // Installed, then verified with a TLS call that presents the new certificate.
    site.wait("the new certificate to be installed", || {
        site.live_is(&new.cert_pem).then_some(())
    })?;
    let new_serial = new.serial_hex();
    site.wait("the verify call", || {
        site.endpoint
            .connections()
            .iter()
            .any(|c| {
                c.handshake_ok
                    && c.client_serial
                        .as_deref()
                        .map(|s| s.trim_start_matches('0'))
                        == Some(new_serial.trim_start_matches('0'))
            })
            .then_some(())
    })?;

    // After the grace period: the revocation task names the old serial in every form.
    let task = site.wait_task("Request the revocation")?;
    let old_hex = site.current.serial_hex();
    let with_colons = site
        .current
        .serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let decimal = x509_parser::num_bigint::BigUint::from_bytes_be(&site.current.serial).to_string();
    for form in [old_hex.trim_start_matches('0'), &decimal] {
        ensure!(
            task.instructions
                .to_lowercase()
                .contains(&form.to_lowercase()),
            "the task lacks {form}:\n{}",
            task.instructions
        );
    }
    ensure!(
        task.instructions.to_lowercase().contains(&with_colons)
            || task.instructions.to_lowercase().contains(&with_colons[3..]),
        "the task lacks the serial with colons:\n{}",
        task.instructions
    );
    ensure!(
        site.status().is_some_and(|r| r.phase.is_some()),
        "the run ended before the revocation"
    );

    // The person revokes it in DVV's e-service; the CRL lists it 3 s later; certvakt sees it
    // there and ends the run by itself.
    site.dvv
        .revoke(&site.current.serial, RevocationReason::Superseded)?;
    site.wait("the run to end", || {
        let r = site.status()?;
        (r.phase.is_none() && r.last_success.is_some()).then_some(())
    })?;
    ensure!(site.dvv.crl_fetches() >= 2, "the CRL was not watched");
    ensure!(
        !site
            .daemon
            .tasks()?
            .iter()
            .any(|t| t.title.contains("Request the revocation")),
        "the revocation task is still open"
    );
    Ok(())
}

#[test]
fn a_certificate_of_another_sote_type_is_refused_at_import_and_never_installed() -> Result<()> {
    let site = Site::start()?;
    let out = site.daemon.cli(&["renew", ID, "--force"])?;
    ensure!(out.status.success(), "renew: {}", stderr(&out));
    // DVV issued a system signature certificate (nonRepudiation, two years) for the server
    // application: it cannot do TLS, and the import says so.
    let (wrong, out) = site.apply_and_import(SoteType::SystemSignature)?;
    ensure!(
        out.status.code() == Some(7),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    ensure!(
        stderr(&out).contains("does not allow keyEncipherment"),
        "{}",
        stderr(&out)
    );
    ensure!(
        !site.live_is(&wrong.cert_pem),
        "the refused certificate was installed"
    );
    ensure!(site.live_is(&site.current.cert_pem));
    // The application is still open: the right certificate can still be imported.
    site.wait_task("in DVV's e-service")?;
    Ok(())
}
