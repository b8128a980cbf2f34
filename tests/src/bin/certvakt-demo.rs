//! `certvakt-demo`: the whole cycle in a minute, on loopback.
//!
//! certvaktd runs over a generated sample set of Nordic certificates (watched), and renews two
//! managed certificates while you watch:
//! - `web-demo` through a simulated CA with an API (mutual TLS, asynchronous orders), with
//!   two-minute certificates, so it renews by itself every 80 seconds or so;
//! - `fmk-demo`, a pharmacy's OCES3 system certificate for FMK, through the `dk-fmk` plugin:
//!   the renewal is due at once; an operator task asks for it to be renewed in MitID Erhverv,
//!   a simulated operator (this program) renews it in the MitID Erhverv stand-in after a few
//!   seconds and imports the downloaded PKCS#12; certvakt then checks the FOCES whitelisting
//!   in the FMK simulator (with its SOSI STS, over mutual TLS), installs and verifies;
//! - `shop-web`, the pharmacy's web shop, through the `acme` plugin from pebble (Let's
//!   Encrypt's test CA, Debian package `pebble`) with real http-01 validation answered by the
//!   daemon, with three-minute certificates, so it renews by itself every two minutes;
//! - `nhn-demo`, a Norwegian pharmacy's virksomhetssertifikat set (authentication and
//!   signing) through the `no-nhn` plugin: the simulated operator orders it from the
//!   Buypass-like CA and imports both PKCS#12 files (BER, as Windows writes them); the CA
//!   publishes them to its directory a few seconds later; certvakt waits for that, writes the
//!   new E_DS address to the Adresseregisteret simulator as a future address, installs the
//!   set when AR switches, and keeps the old encryption key readable for a while;
//! - `efrikort-demo`, a Swedish care system's SITHS function certificate through the
//!   `se-efrikort` plugin: the operator sends its CSR to the SITHS-like CA's order inbox and
//!   imports what it issues; certvakt proves eFrikort still grants the HSA-ID (a RIV-TA call
//!   with the new certificate over two-way TLS) before and after installing it;
//! - `kanta-demo`, a Finnish pharmacy's DVV sote server certificate through the `fi-kanta`
//!   plugin: the operator applies in (a stand-in for) DVV's e-service with the CSR and imports
//!   the certificate; certvakt verifies it with a TLS call to a Kanta-like endpoint, then asks
//!   for the old one's revocation, and ends the run when DVV's CRL lists it.
//!
//! Usage: `certvakt-demo [--once] [--dir DIR] [--listen ADDR]`. Without `--dir` a temporary
//! folder is made and removed at the end. `--once` waits for both certificates to be issued,
//! prints the status and stops (the test suite runs it that way); otherwise it runs until
//! Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use certvakt_testkit::ar::directory::{LdapProvider, build_ldap_url};
use certvakt_testkit::ar::parties::Organization;
use certvakt_testkit::ar::{ArConfig, ArSim, E_DS, ServiceAccount};
use certvakt_testkit::dvv::{DvvCa, DvvCert, DvvConfig, SoteType};
use certvakt_testkit::efrikort::{EfrikortConfig, EfrikortSim, Environment, Region};
use certvakt_testkit::fmk::{Endpoint, FmkOptions, FmkSimulator};
use certvakt_testkit::harness::{self, Daemon, config_toml};
use certvakt_testkit::mitid::{MitIdErhverv, identity};
use certvakt_testkit::pebble::{Pebble, PebbleConfig};
use certvakt_testkit::seid::{IssuedSet, Pkcs12Form, SeidCa, SeidRole, SetOrder};
use certvakt_testkit::simca::{SimCa, SimCaConfig};
use certvakt_testkit::site::{Site, SiteFiles};
use certvakt_testkit::siths::{SithsCa, SithsOrganisation};
use certvakt_testkit::smtp::{SmtpOptions, SmtpSink};
use certvakt_testkit::sni::SniEndpoint;

/// How long the simulated operator takes to handle a task.
const OPERATOR_DELAY: Duration = Duration::from_secs(8);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("certvakt-demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut once = false;
    let mut dir: Option<PathBuf> = None;
    let mut listen = "127.0.0.1:9617".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--once" => once = true,
            "--dir" => dir = Some(args.next().context("--dir needs a folder")?.into()),
            "--listen" => listen = args.next().context("--listen needs an address")?,
            "-h" | "--help" => {
                println!("usage: certvakt-demo [--once] [--dir DIR] [--listen 127.0.0.1:9617]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }

    let temp;
    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("certvakt-demo.")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let bins = harness::bins()?;
    harness::install_plugins(
        &bins,
        &dir.join("plugins"),
        &[
            "certvakt-plugin-manual",
            "certvakt-plugin-simca",
            "certvakt-plugin-acme",
            "certvakt-plugin-dk-fmk",
            "certvakt-plugin-no-nhn",
            "certvakt-plugin-se-efrikort",
            "certvakt-plugin-fi-kanta",
        ],
    )?;
    let pebble = Pebble::start(PebbleConfig {
        validity: Some(Duration::from_secs(180)),
        ..PebbleConfig::default()
    })
    .context("starting pebble for the ACME certificate (scripts/install-test-deps installs it)")?;
    std::fs::create_dir_all(dir.join("pebble"))?;
    std::fs::write(dir.join("pebble/listener-ca.pem"), pebble.listener_ca_pem())?;
    let sim = SimCa::start(
        "127.0.0.1:0".parse()?,
        SimCaConfig {
            issue_after: Duration::from_secs(3),
            validity: Duration::from_secs(120),
            ..SimCaConfig::default()
        },
    )?;
    let sim_files = sim.write_files(&dir.join("simca"))?;
    let pharmacy = Pharmacy::start(&dir)?;
    let apotek = Apotek::start(&dir)?;
    let vardsystem = Vardsystem::start(&dir)?;
    let apteekki = Apteekki::start(&dir)?;
    // The pharmacy's mail relay: a real SMTP server on loopback that keeps every mail.
    let mailbox = SmtpSink::start(SmtpOptions::plain()).context(
        "starting the demo's mail server (scripts/install-test-deps installs python3-aiosmtpd)",
    )?;
    // web-demo's service: a TLS server on the live files that reloads when the deploy hook
    // touches its reload file, probed by certvakt after each install (the verified deploy).
    let live = dir.join("live");
    let site = Site::start(SiteFiles::Live {
        cert: live.join("web-demo.pem"),
        key: live.join("web-demo.key"),
        reload: live.join("web-demo.reload"),
    })?;
    let manifest = certvakt_testkit::write_sample_set(&dir.join("certs"))?;
    let config = dir.join("certvakt.toml");
    std::fs::write(
        &config,
        demo_config(
            &dir,
            &listen,
            &manifest,
            &sim_files,
            WebDemo {
                ca_url: &sim.url(),
                site: site.address(),
            },
            &pebble,
            &pharmacy,
        ) + &apotek.config(&dir)
            + &vardsystem.config(&dir)
            + &apteekki.config(&dir)
            + &mail_config(mailbox.port()),
    )?;

    let daemon = Daemon::start(&bins, &config, &[]).with_context(|| {
        format!("starting certvaktd (is {listen} free? pass --listen 127.0.0.1:0)")
    })?;
    let metrics = daemon.metrics_addr()?;
    let cli = format!(
        "{} --socket {}",
        bins.certvakt.display(),
        daemon.socket.display()
    );
    // The FMK certificate is renewed at once, as when its renewal falls due.
    for id in ["fmk-demo", "nhn-demo", "efrikort-demo", "kanta-demo"] {
        let renew = daemon.cli(&["renew", id, "--force"])?;
        if !renew.status.success() {
            bail!("renew {id}: {}", String::from_utf8_lossy(&renew.stderr));
        }
    }

    println!(
        "certvakt demo: certvaktd (pid {}) in {}\n",
        daemon.pid().unwrap_or(0),
        dir.display()
    );
    println!(
        "  watching   {} sample files of Danish, Swedish, Finnish and Norwegian certificates",
        manifest.files.len()
    );
    println!(
        "  renewing   web-demo through a simulated CA at {} (2-minute certificates)",
        sim.url()
    );
    println!(
        "             and served by a TLS service at {}: after each install certvakt checks that it serves the new certificate",
        site.address()
    );
    println!(
        "             fmk-demo in MitID Erhverv (a task, done by a simulated operator), whitelisted in FMK at {}",
        pharmacy.fmk.fmk_url()
    );
    println!(
        "             shop-web from pebble (ACME) at {}, validated by http-01 (3-minute certificates)",
        pebble.directory_url()
    );
    println!(
        "             nhn-demo, a Buypass set (a task, done by a simulated operator), registered in Adresseregisteret at {}",
        apotek.ar.url_basic()
    );
    println!();
    println!("  look:      {cli} status");
    println!("             {cli} tasks");
    println!("             {cli} show fmk-demo");
    println!("             {cli} show nhn-demo");
    println!(
        "  metrics:   curl -s http://{metrics}/metrics | grep -E '^certvakt_(renewal|tasks|certificate_expiry)'"
    );
    println!("  log:       {}", daemon.log.display());
    println!(
        "  mailbox:   {} (each mail to it@demo-apotek.example as N.eml, and N.json as a mail client decodes it)",
        mailbox.folder().display()
    );
    println!("             {cli} notify test");
    println!();

    let started = Instant::now();
    let mut done_tasks = Vec::new();
    let mut printed_issued = false;
    let mut mails_seen = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Each mail as it lands: the person hears of a task before the simulated operator
        // does it.
        let mails = mailbox.messages();
        for mail in mails.iter().skip(mails_seen) {
            println!(
                "  mail to {}: {}\n             {}",
                mail.rcpt_tos.join(", "),
                mail.subject,
                mailbox
                    .folder()
                    .join(format!("{}.eml", mail.index))
                    .display()
            );
        }
        mails_seen = mails.len();
        let others = Others {
            apotek: &apotek,
            vardsystem: &vardsystem,
            apteekki: &apteekki,
        };
        operate(&daemon, &pharmacy, &others, &mut done_tasks)?;
        let (_, status) = daemon.status()?;
        let issued = [
            "web-demo",
            "fmk-demo",
            "shop-web",
            "nhn-demo",
            "efrikort-demo",
            "kanta-demo",
        ]
        .iter()
        .all(|id| {
            status
                .renewals
                .iter()
                .any(|c| c.id == *id && c.last_success.is_some())
        });
        if issued && !printed_issued {
            printed_issued = true;
            println!(
                "  all six certificates were issued and installed after {} s:\n",
                started.elapsed().as_secs()
            );
            let out = daemon.cli(&["status"])?;
            println!("{}", String::from_utf8_lossy(&out.stdout));
            let verified = daemon
                .log_text()
                .matches("every endpoint serves the new certificate")
                .count();
            if verified == 0 {
                bail!(
                    "web-demo was installed, but its service was not verified to serve it; see {}",
                    daemon.log.display()
                );
            }
            println!(
                "  verified deploy: web-demo's service at {} reloaded {} time(s); certvakt saw it serve the new certificate {verified} time(s)",
                site.address(),
                site.loads().saturating_sub(1),
            );
            let next = eventually_next_key(&daemon)?;
            println!(
                "  pre-staged key: web-demo's next renewal uses the {} key with SPKI SHA-256 {} (TLSA 3 1 1 ...; {cli} show web-demo)\n",
                next.algorithm.as_str(),
                next.spki_sha256,
            );
            pharmacy.report();
            apotek.report();
            vardsystem.report();
            apteekki.report();
            if once {
                break;
            }
            println!(
                "  web-demo renews by itself every 80 s or so, shop-web every 2 minutes; Ctrl-C stops the demo and removes the folder."
            );
        }
        if once && started.elapsed() > Duration::from_secs(180) {
            bail!(
                "the certificates were not issued within 3 minutes; see {}",
                daemon.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if once {
        let (code, _) = harness::http_get(&metrics, "/metrics")?;
        println!("  /metrics answered HTTP {code}; stopping (--once).");
    } else {
        println!("\nstopping certvaktd ...");
    }
    let status = daemon.stop()?;
    if !status.success() {
        bail!("certvaktd exited with {status}");
    }
    drop(sim);
    drop(pebble);
    Ok(())
}

/// The simulated operator: a task open for a few seconds is done. A MitID Erhverv task by
/// renewing the certificate in the MitID Erhverv stand-in and importing the downloaded
/// PKCS#12 with the CLI; any other by signing its CSR with the stand-in's CA and dropping the
/// certificate into the certificate's inbox.
/// The sites besides the Danish pharmacy whose tasks the simulated operator does.
struct Others<'a> {
    apotek: &'a Apotek,
    vardsystem: &'a Vardsystem,
    apteekki: &'a Apteekki,
}

fn operate(
    daemon: &Daemon,
    pharmacy: &Pharmacy,
    others: &Others<'_>,
    done: &mut Vec<String>,
) -> Result<()> {
    let apotek = others.apotek;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for task in daemon.tasks()? {
        let id = task.id.clone();
        if done.contains(&id) || now - task.opened_at < OPERATOR_DELAY.as_secs() as i64 {
            continue;
        }
        let cert_id = task.cert_id.as_str();
        if task.title.contains("Order the SITHS function certificate") {
            others.vardsystem.order_and_import(daemon, &task)?;
            println!(
                "  operator: task {id} done: the CSR sent to the SITHS portal, the certificate imported with certvakt import"
            );
            done.push(id);
            continue;
        }
        if task.title.contains("in DVV's e-service") && task.title.starts_with("Apply") {
            others.apteekki.apply_and_import(daemon, &task)?;
            println!(
                "  operator: task {id} done: applied in DVV's e-service with the CSR, the mailed certificate imported"
            );
            done.push(id);
            continue;
        }
        if task.title.contains("Request the revocation") {
            others.apteekki.revoke()?;
            println!(
                "  operator: task {id} done: the old certificate's revocation requested in DVV's e-service (certvakt watches the CRL)"
            );
            done.push(id);
            continue;
        }
        if task.title.contains("virksomhetssertifikat") {
            apotek.order_and_import(daemon, cert_id)?;
            println!(
                "  operator: task {id} done: the Buypass set ordered, both .p12 files imported with certvakt import"
            );
            done.push(id);
            continue;
        }
        if task.title.contains("MitID Erhverv") {
            let live = std::fs::read_to_string(pharmacy.dir.join("fmk-demo.cert.pem"))?;
            let renewal = pharmacy.portal.renew(&live)?;
            let (bundle, password) = renewal.write(&pharmacy.dir.join("Downloads"), "fmk-demo")?;
            let out = daemon.cli(&[
                "import",
                cert_id,
                &bundle.display().to_string(),
                "--password-file",
                &password.display().to_string(),
            ])?;
            if !out.status.success() {
                bail!("import: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::fs::remove_file(&bundle)?;
            std::fs::remove_file(&password)?;
            println!(
                "  operator: task {id} done: renewed in MitID Erhverv, the .p12 imported with certvakt import"
            );
            done.push(id);
            continue;
        }
        let Some(csr) = task
            .files
            .iter()
            .find(|p| p.extension() == Some("csr".as_ref()))
        else {
            continue;
        };
        let csr = std::fs::read_to_string(csr)?;
        let issued = pharmacy.portal.ca().issue_from_csr(&csr, |_| {})?;
        let inbox = inbox_of(daemon, cert_id)?;
        let part = inbox.join(".arriving");
        std::fs::write(&part, format!("{}{}", issued.pem, issued.chain_pem))?;
        std::fs::rename(&part, inbox.join("from-the-ca.pem"))?;
        println!(
            "  operator: task {id} done: the certificate from the CA was dropped into {}",
            inbox.display()
        );
        done.push(id);
    }
    Ok(())
}

/// The pharmacy: its FMK certificate from the MitID Erhverv stand-in, whitelisted in the FMK
/// simulator (which requires client certificates from the same CA).
struct Pharmacy {
    dir: PathBuf,
    portal: MitIdErhverv,
    fmk: FmkSimulator,
    uuid: String,
}

impl Pharmacy {
    const CVR: &str = "25450442";

    fn start(demo: &Path) -> Result<Pharmacy> {
        let dir = demo.join("live");
        std::fs::create_dir_all(&dir)?;
        let portal = MitIdErhverv::new()?;
        let current = portal.order(Pharmacy::CVR, "Hjørring Apotek FMK")?;
        current.certificate.write_pem(&dir, "fmk-demo")?;
        let fmk = FmkSimulator::start(FmkOptions {
            client_roots: vec![portal.ca().root_der()],
            client_intermediates: portal.ca().chain_der(),
            ..FmkOptions::default()
        })
        .context(
            "starting the FMK simulator (scripts/install-test-deps installs xmllint and xmlsec1)",
        )?;
        let uuid = identity(&current.certificate.cert_der)?.uuid;
        fmk.insert_whitelisting(Pharmacy::CVR, &uuid, None);
        std::fs::create_dir_all(demo.join("fmk"))?;
        std::fs::write(demo.join("fmk/oces3-root.pem"), portal.ca().root_pem())?;
        std::fs::write(demo.join("fmk/servers.pem"), fmk.server_root_pem())?;
        Ok(Pharmacy {
            dir,
            portal,
            fmk,
            uuid,
        })
    }

    /// What FMK saw: the calls by operation, and the whitelisting as it stands.
    fn report(&self) {
        let requests = self.fmk.requests();
        let count = |endpoint: Endpoint, root: &str| {
            requests
                .iter()
                .filter(|r| r.endpoint == endpoint && r.body_root == root)
                .count()
        };
        println!(
            "  FMK saw: {} ID card requests at the SOSI STS, GetFocesWhitelistings x{}, \
             CreateFocesWhitelisting x{}, DeleteFocesWhitelisting x{}",
            count(Endpoint::Sts, "RequestSecurityToken"),
            count(Endpoint::Fmk, "GetFocesWhitelistingsRequest"),
            count(Endpoint::Fmk, "CreateFocesWhitelistingRequest"),
            count(Endpoint::Fmk, "DeleteFocesWhitelistingRequest"),
        );
        for entry in self.fmk.whitelistings(Pharmacy::CVR) {
            println!(
                "  FMK whitelists CVR {} UUID {} (CertHash {}){}",
                Pharmacy::CVR,
                entry.foces_id,
                entry.cert_hash,
                if entry.foces_id == self.uuid {
                    ": the renewal kept the UUID, so nothing was created"
                } else {
                    ""
                }
            );
        }
        println!();
    }
}

/// A Norwegian pharmacy: its virksomhetssertifikat set from the Buypass-like CA, registered
/// in the Adresseregisteret simulator, whose `E_DS` address points into the CA's directory.
struct Apotek {
    dir: PathBuf,
    ca: SeidCa,
    ar: ArSim,
}

impl Apotek {
    const ORGNR: &str = "931796003";
    const NAME: &str = "VIKEN DEMO APOTEK";
    const HER_ID: i32 = 8_142_987;
    const ACCOUNT: &str = "certvakt-demo";
    const PASSWORD: &str = "demo-passord";

    fn start(demo: &Path) -> Result<Apotek> {
        let dir = demo.join("nhn");
        std::fs::create_dir_all(&dir)?;
        let ca = SeidCa::buypass()?;
        let current = ca.issue_set(&SetOrder::new(Apotek::ORGNR, Apotek::NAME))?;
        let ar = ArSim::start(ArConfig {
            accounts: vec![ServiceAccount::new(
                Apotek::ACCOUNT,
                Apotek::PASSWORD,
                &[Apotek::HER_ID],
            )],
            ..ArConfig::default()
        })
        .context("starting the Adresseregisteret simulator")?;
        let url = Apotek::publish(&ar, &current, 0)?;
        ar.parties().insert(
            Organization::new(Apotek::HER_ID, Apotek::NAME, Apotek::ORGNR.parse()?)
                .address(E_DS, &url),
        );
        for cert in &current.certs {
            cert.issued.write_pem(
                &demo.join("live"),
                &format!("nhn-demo.{}", cert.role.as_str()),
            )?;
        }
        std::fs::write(dir.join("seid-roots.pem"), current.trust_pem())?;
        std::fs::write(dir.join("ar-root.pem"), ar.server_root_pem())?;
        std::fs::write(dir.join("ar.pass"), format!("{}\n", Apotek::PASSWORD))?;
        Ok(Apotek { dir, ca, ar })
    }

    /// Publishes `set` to the Buypass directory, `delay` seconds from now; the `E_DS` URL.
    fn publish(ar: &ArSim, set: &IssuedSet, delay: i64) -> Result<String> {
        let provider = LdapProvider::buypass_test4();
        let mut serials = Vec::new();
        for cert in &set.certs {
            let at = ar.clock().now() + delay;
            serials.push(
                ar.directory()
                    .publish_to(&provider, &cert.issued.cert_der, at)?,
            );
        }
        Ok(build_ldap_url(&provider.host, &provider.base, &serials))
    }

    /// The operator orders the set; the CA publishes it 5 s later; both files are imported.
    fn order_and_import(&self, daemon: &Daemon, cert_id: &str) -> Result<()> {
        let set = self
            .ca
            .issue_set(&SetOrder::new(Apotek::ORGNR, Apotek::NAME).form(Pkcs12Form::BerInside))?;
        Apotek::publish(&self.ar, &set, 5)?;
        let downloads = self.dir.join("Downloads");
        let files = set.write_files(&downloads)?;
        let password = downloads.join("passord.txt");
        std::fs::write(&password, format!("{}\n", set.password))?;
        let mut args = vec!["import".to_owned(), cert_id.to_owned()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        args.extend(["--password-file".to_owned(), password.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = daemon.cli(&args)?;
        if !out.status.success() {
            bail!("import: {}", String::from_utf8_lossy(&out.stderr));
        }
        for file in files {
            std::fs::remove_file(file)?;
        }
        std::fs::remove_file(&password)?;
        Ok(())
    }

    /// `[[certificate]] nhn-demo` and its trust sets.
    fn config(&self, demo: &Path) -> String {
        let live = demo.join("live");
        format!(
            r#"
[[certificate]]
id = "nhn-demo"
cert = "{live}/nhn-demo.{auth}.cert.pem"
key = "{live}/nhn-demo.{auth}.key.pem"
plugin = "no-nhn"
issuer_trust = "seid"
legacy_cert = "{live}/nhn-demo.legacy.cert.pem"
legacy_key = "{live}/nhn-demo.legacy.key.pem"
[certificate.set.signing]
cert = "{live}/nhn-demo.{sign}.cert.pem"
key = "{live}/nhn-demo.{sign}.key.pem"
[certificate.settings]
ca = "buypass"
environment = "test"
organization_number = "{orgnr}"
her_id = {her_id}
username = "{account}"
password_file = "{dir}/ar.pass"
ar_endpoint = "{endpoint}"
ar_trust = "ar"
publish_poll = "5s"
switch_after = "15s"
legacy_decrypt_retention = "10s"
"#,
            live = live.display(),
            auth = SeidRole::AuthEncryption.as_str(),
            sign = SeidRole::Signing.as_str(),
            orgnr = Apotek::ORGNR,
            her_id = Apotek::HER_ID,
            account = Apotek::ACCOUNT,
            dir = self.dir.display(),
            endpoint = self.ar.url_basic(),
        )
    }

    /// What AR saw, and the address it gives now.
    fn report(&self) {
        let requests = self.ar.requests();
        let count = |op: &str| requests.iter().filter(|r| r.operation == op).count();
        println!(
            "  Adresseregisteret saw: GetCommunicationPartyDetails x{}, SearchCertificatesByLdapUrl x{}, \
             UpdateOrganizationDetails x{}, GetCertificateDetailsFor* x{}",
            count("GetCommunicationPartyDetails"),
            count("SearchCertificatesByLdapUrl"),
            count("UpdateOrganizationDetails"),
            count("GetCertificateDetailsForEncryption")
                + count("GetCertificateDetailsForValidatingSignature"),
        );
        if let Some(url) = self.ar.parties().current_address(Apotek::HER_ID, E_DS) {
            println!("  HER-id {} E_DS now: {url}", Apotek::HER_ID);
        }
        println!();
    }
}

/// The CSR file a task carries.
fn task_csr(task: &certvakt::control::protocol::Task) -> Result<String> {
    let path = task
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "csr"))
        .with_context(|| format!("task {} carries no CSR", task.id))?;
    Ok(std::fs::read_to_string(path)?)
}

/// Imports `pem` (certificates) for `cert_id` with the CLI, as the operator would.
fn import_pem(daemon: &Daemon, dir: &Path, cert_id: &str, pem: &str) -> Result<()> {
    let file = dir.join("Downloads").join(format!("{cert_id}.pem"));
    std::fs::create_dir_all(file.parent().context("folder")?)?;
    std::fs::write(&file, pem)?;
    let out = daemon.cli(&["import", cert_id, &file.display().to_string()])?;
    if !out.status.success() {
        bail!("import {cert_id}: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::remove_file(&file)?;
    Ok(())
}

/// A Swedish care system: its SITHS function certificate, granted in the eFrikort simulator.
struct Vardsystem {
    dir: PathBuf,
    siths: SithsCa,
    efrikort: EfrikortSim,
}

impl Vardsystem {
    const HSA_ID: &str = "SE5565594230-BCQ";
    const FQDN: &str = "efrikort.vardsystem-demo.example.se";
    const PRINCIPAL: &str = "SE2321000016-39KJ";

    fn start(demo: &Path) -> Result<Vardsystem> {
        let dir = demo.join("se");
        std::fs::create_dir_all(&dir)?;
        let siths = SithsCa::new(SithsOrganisation::new(
            "Vårdsystem Demo AB",
            "Stockholm",
            "SE5565594230-",
            &["vardsystem-demo.example.se"],
        ))?;
        let efrikort = EfrikortSim::start(EfrikortConfig {
            regions: vec![Region::new(
                "Region Testland",
                Vardsystem::PRINCIPAL,
                "efrikort@regiontestland.example.se",
            )],
            ..EfrikortConfig::for_siths(&siths)
        })
        .context("starting the eFrikort simulator")?;
        efrikort.grant(Vardsystem::HSA_ID, Vardsystem::PRINCIPAL, Environment::Test);
        let current = siths.issue_current_with_key(
            Vardsystem::HSA_ID,
            Vardsystem::FQDN,
            certvakt_testkit::KeyType::Rsa2048,
        )?;
        current.write_pem(&demo.join("live"), "efrikort-demo")?;
        std::fs::write(dir.join("siths-root.pem"), siths.root_pem())?;
        std::fs::write(dir.join("efrikort-servers.pem"), efrikort.server_root_pem())?;
        Ok(Vardsystem {
            dir,
            siths,
            efrikort,
        })
    }

    fn order_and_import(
        &self,
        daemon: &Daemon,
        task: &certvakt::control::protocol::Task,
    ) -> Result<()> {
        let order = self
            .siths
            .submit(&task_csr(task)?, Vardsystem::HSA_ID, Vardsystem::FQDN)?;
        let issued = self.siths.issue(order)?;
        import_pem(
            daemon,
            &self.dir,
            &task.cert_id,
            &format!("{}{}", issued.cert_pem, issued.chain_pem),
        )
    }

    fn config(&self, demo: &Path) -> String {
        let live = demo.join("live");
        format!(
            r#"
[[certificate]]
id = "efrikort-demo"
cert = "{live}/efrikort-demo.cert.pem"
key = "{live}/efrikort-demo.key.pem"
plugin = "se-efrikort"
issuer_trust = "siths"
[certificate.settings]
hsa_id = "{hsa}"
fqdn = "{fqdn}"
organization = "Vårdsystem Demo AB"
locality = "Stockholm"
environment = "test"
endpoint = "{endpoint}"
endpoint_trust = "efrikort"
probe_person_id = "191212121212"
probe_card_type_id = "1"
grant_poll = "5s"
system_name = "G-Medical"
contact_name = "Göthe Alfonso"
contact_email = "gothe@vardsystem-demo.example.se"
contact_phone = "+46 70 123 12 31"
regions = [{{ name = "Region Testland", contact_addresses = ["efrikort@regiontestland.example.se"], principal_hsa_id = "{principal}" }}]
"#,
            live = live.display(),
            hsa = Vardsystem::HSA_ID,
            fqdn = Vardsystem::FQDN,
            principal = Vardsystem::PRINCIPAL,
            endpoint = self.efrikort.url(Environment::Test),
        )
    }

    fn report(&self) {
        let requests = self.efrikort.requests();
        let ok = requests
            .iter()
            .filter(|r| matches!(r.outcome, certvakt_testkit::efrikort::Outcome::Ok))
            .count();
        println!(
            "  eFrikort saw: {} RIV-TA call(s) as HSA-ID {} over two-way TLS, {ok} granted; SITHS issued for {:?}",
            requests.len(),
            Vardsystem::HSA_ID,
            self.siths.issued_hsa_ids(),
        );
        println!();
    }
}

/// A Finnish pharmacy: its DVV sote server certificate, a Kanta-like endpoint, DVV's CRL.
struct Apteekki {
    dir: PathBuf,
    dvv: DvvCa,
    current: DvvCert,
    _kanta: SniEndpoint,
    kanta_port: u16,
}

impl Apteekki {
    const FQDN: &str = "kanta.apteekki-demo.example.fi";

    fn start(demo: &Path) -> Result<Apteekki> {
        use rcgen::{CertificateParams, DnType, SanType};
        let dir = demo.join("fi");
        std::fs::create_dir_all(&dir)?;
        let dvv = DvvCa::start(DvvConfig {
            revocation_delay: Duration::from_secs(3),
            ..DvvConfig::default()
        })?;
        let key = certvakt_testkit::KeyType::Rsa2048.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CountryName, "FI");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Demoapteekki Oy");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "Demoapteekki");
        params
            .distinguished_name
            .push(DnType::CommonName, Apteekki::FQDN);
        params.subject_alt_names = vec![SanType::DnsName(Apteekki::FQDN.try_into()?)];
        let current = dvv.issue(&params.serialize_request(&key)?.pem()?, SoteType::Server)?;
        let live = demo.join("live");
        std::fs::create_dir_all(&live)?;
        std::fs::write(live.join("kanta-demo.cert.pem"), &current.cert_pem)?;
        std::fs::write(live.join("kanta-demo.key.pem"), key.serialize_pem())?;
        let tls = certvakt_testkit::TestCa::new(certvakt_testkit::CaShape::Tls)?;
        let server = tls.issue(
            &certvakt_testkit::LeafSpec::tls_server(&["localhost"])
                .key_type(certvakt_testkit::KeyType::EcP256),
        )?;
        let kanta = SniEndpoint::start_with(
            "127.0.0.1",
            &server,
            "localhost",
            &server,
            &[dvv.ca().root_der()],
        )?;
        std::fs::write(dir.join("dvv-root.pem"), dvv.root_pem())?;
        std::fs::write(dir.join("kanta-root.pem"), tls.root_pem())?;
        let kanta_port = kanta.addr().port();
        Ok(Apteekki {
            dir,
            dvv,
            current,
            _kanta: kanta,
            kanta_port,
        })
    }

    fn apply_and_import(
        &self,
        daemon: &Daemon,
        task: &certvakt::control::protocol::Task,
    ) -> Result<()> {
        let issued = self.dvv.issue(&task_csr(task)?, SoteType::Server)?;
        import_pem(daemon, &self.dir, &task.cert_id, &issued.chain_pem)
    }

    fn revoke(&self) -> Result<()> {
        self.dvv
            .revoke(&self.current.serial, rcgen::RevocationReason::Superseded)
    }

    fn config(&self, demo: &Path) -> String {
        let live = demo.join("live");
        format!(
            r#"
[[certificate]]
id = "kanta-demo"
cert = "{live}/kanta-demo.cert.pem"
key = "{live}/kanta-demo.key.pem"
plugin = "fi-kanta"
issuer_trust = "dvv"
[certificate.settings]
certificate_type = "server"
organization = "Demoapteekki Oy"
organizational_unit = "Demoapteekki"
fqdn = "{fqdn}"
verify_url = "https://localhost:{port}/kanta"
verify_trust = "kanta"
revoke_after = "5s"
crl_poll = "5s"
"#,
            live = live.display(),
            fqdn = Apteekki::FQDN,
            port = self.kanta_port,
        )
    }

    fn report(&self) {
        println!(
            "  DVV: {} certificate(s) issued; its CRL was read {} time(s) and lists the old serial {}",
            self.dvv.issued().len(),
            self.dvv.crl_fetches(),
            self.current.serial_hex()
        );
        println!();
    }
}

fn inbox_of(daemon: &Daemon, cert_id: &str) -> Result<PathBuf> {
    let dir = daemon.config.parent().context("config folder")?;
    Ok(dir.join("state/certs").join(cert_id).join("inbox"))
}

/// The pharmacy's relay and one route: every task and trouble to the IT desk by mail.
fn mail_config(port: u16) -> String {
    format!(
        r#"
[mail]
relay = "127.0.0.1"
port = {port}
tls = "none"
from = "certvakt@demo-apotek.example"

[[notify]]
name = "it-desk"
channel = "mail"
to = ["it@demo-apotek.example"]
"#
    )
}

/// web-demo's pre-staged next key, made right after its renewal completed.
fn eventually_next_key(daemon: &Daemon) -> Result<certvakt::lifecycle::run::NextKey> {
    harness::eventually(Duration::from_secs(30), "web-demo's pre-staged key", || {
        daemon.renewal("web-demo").ok()??.next_key
    })
}

/// Where web-demo is ordered (the simulated CA) and served (the site certvakt probes).
struct WebDemo<'a> {
    ca_url: &'a str,
    site: &'a str,
}

fn demo_config(
    dir: &Path,
    listen: &str,
    manifest: &certvakt_testkit::Manifest,
    sim: &certvakt_testkit::simca::SimCaFiles,
    web: WebDemo<'_>,
    pebble: &Pebble,
    pharmacy: &Pharmacy,
) -> String {
    let patterns: Vec<String> = manifest
        .watch_patterns
        .iter()
        .map(|p| format!("{p:?}"))
        .collect();
    let mut body = format!(
        r#"[trust]
simca = ["{server_ca}"]
pebble = ["{dir}/pebble/listener-ca.pem"]
oces3 = ["{dir}/fmk/oces3-root.pem"]
fmk = ["{dir}/fmk/servers.pem"]
siths = ["{dir}/se/siths-root.pem"]
efrikort = ["{dir}/se/efrikort-servers.pem"]
dvv = ["{dir}/fi/dvv-root.pem"]
kanta = ["{dir}/fi/kanta-root.pem"]
seid = ["{dir}/nhn/seid-roots.pem"]
ar = ["{dir}/nhn/ar-root.pem"]

[[watch]]
paths = [{patterns}]
pkcs12_password_file = "{password}"

[[certificate]]
id = "simca-client"
cert = "{client_cert}"
key = "{client_key}"
plugin = "manual"
[certificate.settings]
ca_name = "the simulated CA's client CA"

[[certificate]]
id = "web-demo"
cert = "{dir}/live/web-demo.pem"
key = "{dir}/live/web-demo.key"
fullchain = "{dir}/live/web-demo.fullchain.pem"
plugin = "simca"
deploy_hook = ["/bin/sh", "-c", "echo \"$(date +%T) installed $CERTVAKT_CERT_ID serial $CERTVAKT_NEW_SERIAL\" >> {dir}/deploy-hook.log; touch {dir}/live/web-demo.reload"]
verify_window = "30s"
key_policy = "prestage"
[certificate.settings]
url = "{url}"
trust = "simca"
identity = "simca-client"
subject = [{{ attribute = "CN", value = "apotek-demo.example" }}]
sans = ["DNS:apotek-demo.example"]
[[certificate.verify]]
address = "{site}"
sni = "apotek-demo.example"

[[certificate]]
id = "fmk-demo"
cert = "{dir}/live/fmk-demo.cert.pem"
key = "{dir}/live/fmk-demo.key.pem"
fullchain = "{dir}/live/fmk-demo.fullchain.pem"
plugin = "dk-fmk"
issuer_trust = "oces3"
[certificate.settings]
cvr = "{cvr}"
fmk_endpoint = "{fmk_url}"
fmk_trust = "fmk"
sts_endpoint = "{sts_url}"
sts_trust = "fmk"
pharmacy_name = "Hjørring Apotek"
pharmacy_address = ["Brogade 111", "9800 Hjørring"]
pharmacy_ean = "5790000171248"
apoteker_given_name = "Ane"
apoteker_surname = "Jensen"
apoteker_cpr = "2604276962"

[[certificate]]
id = "shop-web"
cert = "{dir}/live/shop-web.pem"
key = "{dir}/live/shop-web.key"
fullchain = "{dir}/live/shop-web.fullchain.pem"
plugin = "acme"
deploy_hook = ["/bin/sh", "-c", "echo \"$(date +%T) installed $CERTVAKT_CERT_ID serial $CERTVAKT_NEW_SERIAL\" >> {dir}/deploy-hook.log"]
[certificate.settings]
directory = "{directory}"
trust = "pebble"
domains = ["shop.apotek-demo.example", "www.apotek-demo.example"]
contact = ["mailto:it@apotek-demo.example"]
agree_terms = true
revoke_old = true
"#,
        directory = pebble.directory_url(),
        server_ca = sim.server_ca.display(),
        password = manifest.pkcs12_password_file.display(),
        patterns = patterns.join(", "),
        client_cert = sim.client.fullchain.display(),
        client_key = sim.client.key.display(),
        dir = dir.display(),
        url = web.ca_url,
        site = web.site,
        cvr = Pharmacy::CVR,
        fmk_url = pharmacy.fmk.fmk_url(),
        sts_url = pharmacy.fmk.sts_url(),
    );
    body.push('\n');
    config_toml(dir, listen, &body).replace(
        "log_level = \"debug\"",
        &format!(
            "log_level = \"info\"\nhttp01_listen = \"127.0.0.1:{}\"",
            pebble.http01_port()
        ),
    )
}
