//! Norway end to end: the real daemon with the `no-nhn` plugin loaded from disk, renewing a
//! virksomhetssertifikat set from a Buypass-like or Commfides-like CA (PKCS#12 files made by
//! code, BER as Windows writes them), registered in the Adresseregisteret simulator (SOAP over
//! HTTPS, HTTP Basic, every body checked against the real 2025 schemas, out-of-order members
//! dropped as WCF does) whose `E_DS` addresses point into a simulated CA directory that
//! publishes new certificates with a delay.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use certvakt::control::protocol::{Renewal, Task};
use certvakt_testkit::PemPaths;
use certvakt_testkit::ar::directory::{LdapProvider, build_ldap_url};
use certvakt_testkit::ar::parties::Organization;
use certvakt_testkit::ar::receiver::{MessageSender, SenderConfig, decrypt};
use certvakt_testkit::ar::{ArConfig, ArSim, Clock, E_DS, ServiceAccount};
use certvakt_testkit::ca::{CaShape, KeyType, TestCa};
use certvakt_testkit::harness::{self, Daemon, config_toml};
use certvakt_testkit::leaf::LeafSpec;
use certvakt_testkit::seid::{Flaw, IssuedSet, Pkcs12Form, SeidCa, SeidRole, SetOrder};
use certvakt_testkit::sni::SniEndpoint;

use crate::common::{bins, stderr, stdout, task_titled, wait_renewal};

const ORGNR: &str = "931796003";
const NAME: &str = "VIKEN APOTEK";
const HER_ID: i32 = 8_142_987;
const SERVICE_HER_ID: i32 = 8_143_060;
const ACCOUNT: &str = "certvakt-apotek";
const PASSWORD: &str = "riktig-passord";
const ID: &str = "nhn";
/// Registration waits on the CA's directory, the switch time and the retention: longer than
/// the other suites' steps.
const WAIT: Duration = Duration::from_secs(90);

/// How a site differs between tests.
#[derive(Clone)]
struct Options {
    commfides: bool,
    /// More `[certificate.settings]` lines.
    settings: String,
    /// More `[trust]` lines.
    trust: String,
    /// The password the daemon is given for the service account.
    password: String,
    /// SOAP 1.2 + WS-Addressing instead of the `/Basic` binding.
    soap12: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            commfides: false,
            settings: String::new(),
            trust: String::new(),
            password: PASSWORD.into(),
            soap12: false,
        }
    }
}

/// A Norwegian pharmacy: a live set from the CA, registered in AR, and a daemon managing it
/// as `nhn` with no-nhn.
struct Site {
    dir: tempfile::TempDir,
    ca: SeidCa,
    current: IssuedSet,
    ar: ArSim,
    /// The live files, by role.
    live: Vec<(SeidRole, PemPaths)>,
    /// Where the replaced encryption key and certificate stay readable.
    legacy: (PathBuf, PathBuf),
    config: PathBuf,
    daemon: Option<Daemon>,
}

impl Site {
    fn start(options: Options) -> Result<Site> {
        let ca = if options.commfides {
            SeidCa::commfides()?
        } else {
            SeidCa::buypass()?
        };
        Site::start_with(options, ca)
    }

    fn start_with(options: Options, ca: SeidCa) -> Result<Site> {
        let dir = tempfile::tempdir()?;
        let bins = bins()?;
        harness::install_plugins(
            &bins,
            &dir.path().join("plugins"),
            &["certvakt-plugin-no-nhn"],
        )?;
        let current = ca.issue_set(&SetOrder::new(ORGNR, NAME))?;
        let ar = ArSim::start(ArConfig {
            accounts: vec![ServiceAccount::new(
                ACCOUNT,
                PASSWORD,
                &[HER_ID, SERVICE_HER_ID],
            )],
            ..ArConfig::default()
        })?;
        let url = publish(&ar, &ca, &current, 0)?;
        let mut pharmacy = Organization::new(HER_ID, NAME, ORGNR.parse()?).address(E_DS, &url);
        if options.commfides {
            pharmacy = pharmacy.service(
                certvakt_testkit::ar::parties::Service::new(SERVICE_HER_ID, "Nettapotek")
                    .address(E_DS, &url),
            );
        }
        ar.parties().insert(pharmacy);

        let live_dir = dir.path().join("live");
        let mut live = Vec::new();
        for cert in &current.certs {
            live.push((
                cert.role,
                cert.issued.write_pem(&live_dir, cert.role.as_str())?,
            ));
        }
        let legacy = (
            live_dir.join("encryption.legacy.pem"),
            live_dir.join("encryption.legacy.key"),
        );
        let seid = dir.path().join("seid-roots.pem");
        std::fs::write(&seid, current.trust_pem())?;
        let ar_root = dir.path().join("ar-root.pem");
        std::fs::write(&ar_root, ar.server_root_pem())?;
        let password = dir.path().join("ar.pass");
        std::fs::write(&password, format!("{}\n", options.password))?;

        let files = |role: SeidRole| -> Result<&PemPaths> {
            live.iter()
                .find(|(r, _)| *r == role)
                .map(|(_, p)| p)
                .with_context(|| format!("no live {role:?} files"))
        };
        let (primary, members, ca_name) = if options.commfides {
            (
                files(SeidRole::Authentication)?,
                vec![
                    ("encryption", files(SeidRole::Encryption)?, true),
                    ("signing", files(SeidRole::Signing)?, false),
                ],
                "commfides",
            )
        } else {
            (
                files(SeidRole::AuthEncryption)?,
                vec![("signing", files(SeidRole::Signing)?, false)],
                "buypass",
            )
        };
        let legacy_lines = format!(
            "legacy_cert = \"{}\"\nlegacy_key = \"{}\"\n",
            legacy.0.display(),
            legacy.1.display()
        );
        let mut sets = String::new();
        for (role, paths, holds_encryption) in &members {
            sets.push_str(&format!(
                "\n[certificate.set.{role}]\ncert = \"{}\"\nkey = \"{}\"\n{}",
                paths.cert.display(),
                paths.key.display(),
                if *holds_encryption {
                    legacy_lines.as_str()
                } else {
                    ""
                }
            ));
        }
        let body = format!(
            r#"[trust]
seid = ["{seid}"]
ar = ["{ar_root}"]
{trust}

[[certificate]]
id = "{ID}"
cert = "{cert}"
key = "{key}"
plugin = "no-nhn"
issuer_trust = "seid"
{primary_legacy}{sets}
[certificate.settings]
ca = "{ca_name}"
environment = "test"
organization_number = "{ORGNR}"
her_id = {HER_ID}
username = "{ACCOUNT}"
password_file = "{password}"
ar_endpoint = "{endpoint}"
ar_trust = "ar"
publish_poll = "5s"
switch_after = "12s"
legacy_decrypt_retention = "8s"
{settings}
"#,
            seid = seid.display(),
            ar_root = ar_root.display(),
            cert = primary.cert.display(),
            key = primary.key.display(),
            primary_legacy = if options.commfides {
                ""
            } else {
                legacy_lines.as_str()
            },
            password = password.display(),
            endpoint = if options.soap12 {
                ar.url_soap12()
            } else {
                ar.url_basic()
            },
            settings = options.settings,
            trust = options.trust,
        );
        let config = dir.path().join("certvakt.toml");
        std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:0", &body))?;
        let daemon = Daemon::start(&bins, &config, &[])?;
        Ok(Site {
            dir,
            ca,
            current,
            ar,
            live,
            legacy,
            config,
            daemon: Some(daemon),
        })
    }

    fn daemon(&self) -> Result<&Daemon> {
        self.daemon.as_ref().context("the daemon is not running")
    }

    fn status(&self) -> Option<Renewal> {
        self.daemon().ok()?.renewal(ID).ok().flatten()
    }

    /// Waits for `check`; on a timeout, the error shows the status, AR's log and the
    /// daemon's log.
    fn wait<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> Result<T> {
        let seen = || {
            let requests = self.ar.requests();
            let lines: Vec<String> = requests
                .iter()
                .map(|r| format!("{} {} {:?}", r.operation, r.status, r.fault))
                .collect();
            format!("{lines:#?}")
        };
        wait_renewal(self.daemon.as_ref(), ID, WAIT, what, seen, check)
    }

    fn wait_task(&self, needle: &str) -> Result<Task> {
        self.wait("the task", || task_titled(self.daemon.as_ref(), needle))
    }

    fn wait_error(&self, needle: &str) -> Result<String> {
        self.wait("the failure to show", || {
            let error = self.status()?.last_error?;
            error.contains(needle).then_some(error)
        })
    }

    /// Starts a renewal and waits for the order task.
    fn renew(&self) -> Result<Task> {
        let out = self.daemon()?.cli(&["renew", ID, "--force"])?;
        ensure!(out.status.success(), "renew: {}", stderr(&out));
        self.wait_task("SEID")
    }

    /// Imports `set` as the operator would, every file at once; returns the CLI's output.
    fn import(&self, set: &IssuedSet) -> Result<std::process::Output> {
        let downloads = self.dir.path().join("Downloads");
        let files = set.write_files(&downloads)?;
        let password = downloads.join("passord.txt");
        std::fs::write(&password, format!("{}\n", set.password))?;
        let mut args = vec!["import".to_owned(), ID.to_owned()];
        // The files in the order a directory listing gives, not by role.
        let mut names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        names.sort();
        names.reverse();
        args.extend(names);
        args.push("--password-file".into());
        args.push(password.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.daemon()?.cli(&args)
    }

    fn import_ok(&self, set: &IssuedSet) -> Result<String> {
        let out = self.import(set)?;
        ensure!(
            out.status.success(),
            "import: {}{}",
            stdout(&out),
            stderr(&out)
        );
        Ok(stdout(&out))
    }

    /// Whether every live file is of `set`.
    fn live_is(&self, set: &IssuedSet) -> Result<bool> {
        for (role, paths) in &self.live {
            let want = set.cert(*role)?;
            let cert = std::fs::read_to_string(&paths.cert)?;
            let key = std::fs::read_to_string(&paths.key)?;
            if cert.trim() != want.issued.cert_pem.trim()
                || key.trim() != want.issued.key_pem.trim()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn wait_done(&self, set: &IssuedSet) -> Result<()> {
        self.wait("the renewal to finish", || {
            let r = self.status()?;
            (self.live_is(set).ok()? && r.phase.is_none() && r.last_success.is_some()).then_some(())
        })
    }

    /// The operations AR answered without a fault, in order.
    fn writes(&self) -> Vec<String> {
        self.ar
            .requests()
            .into_iter()
            .filter(|r| r.operation.starts_with("Update") && r.status == 200 && r.fault.is_none())
            .map(|r| r.operation)
            .collect()
    }

    fn restart(&mut self) -> Result<()> {
        self.daemon = None;
        self.daemon = Some(Daemon::start(&bins()?, &self.config, &[])?);
        Ok(())
    }
}

/// Publishes every certificate of `set` to its CA's directory, visible `delay` seconds from
/// now; returns the `E_DS` URL naming the set (encryption and signing certificates).
fn publish(ar: &ArSim, ca: &SeidCa, set: &IssuedSet, delay: i64) -> Result<String> {
    let provider = match ca.vendor() {
        certvakt_testkit::seid::SeidVendor::Buypass => LdapProvider::buypass_test4(),
        certvakt_testkit::seid::SeidVendor::Commfides => LdapProvider::commfides_test(),
    };
    let visible = ar.clock().now() + delay;
    let mut serials = Vec::new();
    for cert in &set.certs {
        let serial = ar
            .directory()
            .publish_to(&provider, &cert.issued.cert_der, visible)?;
        if cert.role != SeidRole::Authentication {
            serials.push(serial);
        }
    }
    Ok(build_ldap_url(&provider.host, &provider.base, &serials))
}

/// The HER-id's current `E_DS` address in AR.
fn current_e_ds(ar: &ArSim, her_id: i32) -> Option<String> {
    ar.parties().current_address(her_id, E_DS)
}

#[test]
fn a_buypass_set_is_renewed_registered_for_the_switch_time_and_the_old_key_still_decrypts()
-> Result<()> {
    // The service to verify against, on a new URL chosen by SNI: `localhost` gets the new
    // server certificate; a client that sends no SNI (as for an IP address) the old one.
    let server = |ca: &TestCa, host: &str| {
        ca.issue(
            &LeafSpec::tls_server(&[host])
                .key_type(KeyType::EcP256)
                .days(-1, 30),
        )
    };
    let (old_tls, new_tls) = (TestCa::new(CaShape::Tls)?, TestCa::new(CaShape::Tls)?);
    let ca = SeidCa::buypass()?;
    let endpoint = SniEndpoint::start_with(
        "127.0.0.1",
        &server(&old_tls, "127.0.0.1")?,
        "localhost",
        &server(&new_tls, "localhost")?,
        &[ca.ca().root_der()],
    )?;
    let roots = tempfile::tempdir()?;
    let new_root = roots.path().join("nhn-new-tls.pem");
    std::fs::write(&new_root, new_tls.root_pem())?;
    let options = Options {
        settings: format!(
            "verify_url = \"https://localhost:{}/health\"\nverify_trust = \"sni\"\n",
            endpoint.addr().port()
        ),
        trust: format!("sni = [\"{}\"]", new_root.display()),
        ..Options::default()
    };
    let site = Site::start_with(options, ca)?;

    // A helsenorge-like sender looks up the encryption certificate now and caches it.
    let sender = MessageSender::new(SenderConfig {
        url_basic: site.ar.url_basic(),
        server_root_pem: site.ar.server_root_pem(),
        username: ACCOUNT.into(),
        password: PASSWORD.into(),
        cache_seconds: 3600,
        clock: Clock::frozen(site.ar.clock().now()),
    });
    let old_auth = site.current.cert(SeidRole::AuthEncryption)?.issued.clone();
    ensure!(sender.encryption_certificate(HER_ID)? == old_auth.cert_der);
    let old_url = current_e_ds(&site.ar, HER_ID).context("no E_DS")?;

    let task = site.renew()?;
    ensure!(
        task.instructions.contains(ORGNR) && task.instructions.contains("CertManager"),
        "{task:#?}"
    );
    // The CA delivers the set as Windows writes it (BER inside the MAC), and publishes it to
    // its directory 8 s later.
    let new = site
        .ca
        .issue_set(&SetOrder::new(ORGNR, NAME).form(Pkcs12Form::BerInside))?;
    let new_url = publish(&site.ar, &site.ca, &new, 8)?;
    let printed = site.import_ok(&new)?;
    ensure!(printed.contains("imported certificate"), "{printed}");

    // Nothing is written before the directory has the new set; then a future address.
    site.wait("the future address", || {
        site.ar
            .parties()
            .future_addresses(HER_ID)?
            .into_iter()
            .find(|f| f.address == new_url)
    })?;
    ensure!(
        site.live_is(&site.current)?,
        "the new set was installed before the switch time"
    );
    ensure!(current_e_ds(&site.ar, HER_ID).as_deref() == Some(old_url.as_str()));
    let searches_before_write = site
        .ar
        .requests()
        .iter()
        .take_while(|r| !r.operation.starts_with("Update"))
        .filter(|r| r.operation == "SearchCertificatesByLdapUrl")
        .count();
    ensure!(
        searches_before_write >= 2,
        "the directory delay was not waited out"
    );
    for cert in [SeidRole::AuthEncryption, SeidRole::Signing] {
        let decimal = new.cert(cert)?.serial.decimal();
        ensure!(new_url.contains(&decimal), "{new_url} lacks {decimal}");
    }

    // At the switch time AR promotes the address; the daemon reads back and installs.
    site.wait("the new set to be installed", || {
        site.live_is(&new).ok()?.then_some(())
    })?;
    ensure!(current_e_ds(&site.ar, HER_ID).as_deref() == Some(new_url.as_str()));
    // The sender still encrypts to the old certificate it cached: the legacy key reads it,
    // the new key does not.
    let sealed = sender.send(HER_ID, b"e-resept 1234")?;
    let legacy_key = std::fs::read_to_string(&site.legacy.1)?;
    ensure!(decrypt(&legacy_key, &sealed)? == b"e-resept 1234");
    let new_key = &new.cert(SeidRole::AuthEncryption)?.issued.key_pem;
    ensure!(decrypt(new_key, &sealed).is_err());
    ensure!(std::fs::read_to_string(&site.legacy.0)?.trim() == old_auth.cert_pem.trim());

    // After the retention the run retires and the legacy files go.
    site.wait_done(&new)?;
    ensure!(!site.legacy.0.exists() && !site.legacy.1.exists());
    ensure!(
        site.writes() == ["UpdateOrganizationDetails"],
        "{:?}",
        site.writes()
    );
    ensure!(
        site.ar.requests().iter().all(|r| r.dropped.is_empty()),
        "AR dropped members of a request: the element order is wrong"
    );
    // The verify call went to the new URL with SNI and the new authentication certificate.
    let new_auth = new.cert(SeidRole::AuthEncryption)?;
    ensure!(
        endpoint.connections().iter().any(|c| c.handshake_ok
            && c.server_name.as_deref() == Some("localhost")
            && c.client_serial.as_deref() == Some(new_auth.serial.hex().as_str())),
        "{:#?}",
        endpoint.connections()
    );
    Ok(())
}

#[test]
fn a_commfides_set_with_a_service_is_written_over_soap12_and_made_current_when_ar_does_not_switch()
-> Result<()> {
    let site = Site::start(Options {
        commfides: true,
        soap12: true,
        settings: format!(
            "binding = \"soap12\"\nservice_her_ids = [{SERVICE_HER_ID}]\nfallback_write_current = true\n"
        ),
        ..Options::default()
    })?;
    // This AR keeps future addresses but never makes them current.
    site.ar.parties().set_promote_future(false);
    let task = site.renew()?;
    ensure!(task.instructions.contains("Commfides"), "{task:#?}");
    let new = site.ca.issue_set(&SetOrder::new(ORGNR, NAME))?;
    ensure!(new.files.len() == 3, "Commfides delivers three files");
    let new_url = publish(&site.ar, &site.ca, &new, 0)?;
    site.import_ok(&new)?;
    site.wait_done(&new)?;

    // The address names the encryption and signing certificates by lowercase hex serial,
    // and is current for the organisation and its service, written by the fallback.
    for role in [SeidRole::Encryption, SeidRole::Signing] {
        let hex = new.cert(role)?.serial.hex();
        ensure!(new_url.contains(&hex), "{new_url} lacks {hex}");
    }
    for her_id in [HER_ID, SERVICE_HER_ID] {
        ensure!(
            current_e_ds(&site.ar, her_id).as_deref() == Some(new_url.as_str()),
            "HER-id {her_id}: {:?}",
            current_e_ds(&site.ar, her_id)
        );
    }
    let writes = site.writes();
    ensure!(
        writes
            .iter()
            .filter(|w| *w == "UpdateOrganizationDetails")
            .count()
            == 2
            && writes
                .iter()
                .filter(|w| *w == "UpdateServiceDetails")
                .count()
                == 2,
        "a future write and a current write for each party: {writes:?}"
    );
    ensure!(
        site.ar
            .requests()
            .iter()
            .all(|r| r.binding == certvakt_testkit::ar::Binding::Soap12 && r.dropped.is_empty()),
        "every request over SOAP 1.2, nothing dropped"
    );
    Ok(())
}

#[test]
fn a_wrong_service_account_and_ar_being_down_change_nothing_and_say_why() -> Result<()> {
    let site = Site::start(Options {
        password: "feil-passord".into(),
        ..Options::default()
    })?;
    site.renew()?;
    let new = site.ca.issue_set(&SetOrder::new(ORGNR, NAME))?;
    publish(&site.ar, &site.ca, &new, 0)?;
    site.import_ok(&new)?;
    let error = site.wait_error("401")?;
    ensure!(error.contains("tjenestekonto"), "{error}");
    ensure!(site.writes().is_empty() && site.live_is(&site.current)?);

    // The operator corrects the password (read at each call); AR is down meanwhile.
    site.ar.set_down(true);
    std::fs::write(site.dir.path().join("ar.pass"), format!("{PASSWORD}\n"))?;
    let nudge = site.daemon()?.cli(&["renew", ID])?;
    ensure!(nudge.status.success(), "{}", stderr(&nudge));
    let error = site.wait_error("not answering")?;
    ensure!(error.contains("nothing was changed"), "{error}");
    ensure!(site.writes().is_empty() && site.live_is(&site.current)?);

    // AR is back: the renewal goes on by itself from where it stopped.
    site.ar.set_down(false);
    let nudge = site.daemon()?.cli(&["renew", ID])?;
    ensure!(nudge.status.success(), "{}", stderr(&nudge));
    site.wait_done(&new)?;
    ensure!(
        site.writes() == ["UpdateOrganizationDetails"],
        "{:?}",
        site.writes()
    );
    Ok(())
}

#[test]
fn a_set_for_another_organisation_or_of_seid_1_is_refused_and_never_installed() -> Result<()> {
    let site = Site::start(Options::default())?;
    site.renew()?;
    // Another organisation: the daemon's own check refuses it at the import.
    let other = site
        .ca
        .issue_set(&SetOrder::new("974760673", "ANNEN VIRKSOMHET"))?;
    let out = site.import(&other)?;
    ensure!(
        out.status.code() == Some(7),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    ensure!(
        stderr(&out).contains("another organisation"),
        "{}",
        stderr(&out)
    );
    // One certificate of the set with a SEID 1 subject: the same organisation number, so the
    // daemon takes it, and the plugin objects before anything is registered.
    let seid1 = site
        .ca
        .issue_set(&SetOrder::new(ORGNR, NAME).flaw(SeidRole::Signing, Flaw::Seid1Subject))?;
    publish(&site.ar, &site.ca, &seid1, 0)?;
    site.import_ok(&seid1)?;
    let task = site.wait_task("that the no-nhn plugin accepts")?;
    ensure!(task.instructions.contains("SEID 1"), "{task:#?}");
    std::thread::sleep(Duration::from_secs(2));
    ensure!(site.writes().is_empty(), "{:?}", site.writes());
    ensure!(site.live_is(&site.current)?);
    let searched = site
        .ar
        .requests()
        .iter()
        .any(|r| r.operation == "SearchCertificatesByLdapUrl");
    ensure!(!searched, "registration started for a refused set");
    Ok(())
}

#[test]
fn a_kill_9_in_the_middle_of_registration_resumes_without_writing_twice() -> Result<()> {
    let mut site = Site::start(Options::default())?;
    site.renew()?;
    let new = site.ca.issue_set(&SetOrder::new(ORGNR, NAME))?;
    let new_url = publish(&site.ar, &site.ca, &new, 0)?;
    site.import_ok(&new)?;
    let valid_from = site.wait("the future address", || {
        site.ar
            .parties()
            .future_addresses(HER_ID)?
            .into_iter()
            .find(|f| f.address == new_url)
            .map(|f| f.valid_from)
    })?;
    // Killed while waiting for the switch time, after the write.
    site.restart()?;
    site.wait_done(&new)?;
    ensure!(
        site.writes() == ["UpdateOrganizationDetails"],
        "{:?}",
        site.writes()
    );
    ensure!(current_e_ds(&site.ar, HER_ID).as_deref() == Some(new_url.as_str()));
    let promoted_at = site
        .ar
        .parties()
        .effective_addresses(HER_ID)
        .and_then(|a| a.into_iter().find(|a| a.address.type_code == E_DS))
        .map(|a| a.address.last_changed);
    ensure!(
        promoted_at == Some(valid_from),
        "the switch time moved: {promoted_at:?} != {valid_from}"
    );
    Ok(())
}

#[test]
fn a_commfides_set_from_certvakt_s_own_keys_is_ordered_with_one_csr_per_role() -> Result<()> {
    let site = Site::start(Options {
        commfides: true,
        settings: "key_source = \"certvakt\"\n".into(),
        ..Options::default()
    })?;
    let task = site.renew()?;
    // One CSR per role, each for a key certvakt made and keeps 0600.
    let mut csrs = Vec::new();
    for (role, name) in [
        (SeidRole::Authentication, "authentication.csr"),
        (SeidRole::Encryption, "encryption.csr"),
        (SeidRole::Signing, "signing.csr"),
    ] {
        let path = task
            .files
            .iter()
            .find(|f| f.file_name().is_some_and(|n| n == name))
            .with_context(|| format!("the task has no {name}: {:?}", task.files))?;
        csrs.push((role, std::fs::read_to_string(path)?));
    }
    let pending: Vec<PathBuf> = std::fs::read_dir(site.dir.path().join("state/certs").join(ID))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pending-key"))
        })
        .collect();
    ensure!(pending.len() == 3, "one pending key per role: {pending:?}");
    for key in &pending {
        use std::os::unix::fs::PermissionsExt as _;
        ensure!(std::fs::metadata(key)?.permissions().mode() & 0o777 == 0o600);
    }

    let csr_refs: Vec<(SeidRole, &str)> = csrs.iter().map(|(r, c)| (*r, c.as_str())).collect();
    let issued = site
        .ca
        .issue_from_csrs(&SetOrder::new(ORGNR, NAME), &csr_refs)?;
    let provider = LdapProvider::commfides_test();
    for cert in &issued.certs {
        site.ar
            .directory()
            .publish_to(&provider, &cert.cert_der, site.ar.clock().now())?;
    }
    // The operator imports the three PEM files the portal gave, no password.
    let downloads = site.dir.path().join("Downloads");
    let files = issued.write_files(&downloads)?;
    let mut args = vec!["import", ID];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let out = site.daemon()?.cli(&args)?;
    ensure!(
        out.status.success(),
        "import: {}{}",
        stdout(&out),
        stderr(&out)
    );

    site.wait("the new set to be installed and the run to end", || {
        let r = site.status()?;
        let installed = issued.certs.iter().all(|c| {
            let (_, paths) = site
                .live
                .iter()
                .find(|(role, _)| *role == c.role)
                .expect("role");
            std::fs::read_to_string(&paths.cert).is_ok_and(|live| live.trim() == c.cert_pem.trim())
        });
        (installed && r.phase.is_none() && r.last_success.is_some()).then_some(())
    })?;
    // Each live key is the pending key its certificate was issued for, and the pending keys
    // are gone with the run.
    for (role, paths) in &site.live {
        ensure!(
            crate::common::pair_matches(&paths.cert, &paths.key)?,
            "{role:?}: the live key is not the new certificate's"
        );
    }
    ensure!(
        pending.iter().all(|p| !p.exists()),
        "pending keys left behind"
    );
    Ok(())
}
