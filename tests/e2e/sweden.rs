//! Sweden end to end: the real daemon with the `se-efrikort` plugin loaded from disk, renewing a
//! SITHS function certificate from the SITHS-like CA's order inbox, proven against the eFrikort
//! simulator (two-way TLS, every body checked against the real RIV-TA schemas, access granted
//! per HSA-ID, principal and environment), with the access request mailed to the region
//! through a real SMTP server and approved from the mail itself.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use certvakt::control::protocol::{Renewal, Task};
use certvakt_testkit::KeyType;
use certvakt_testkit::efrikort::{EfrikortConfig, EfrikortSim, Environment, Region};
use certvakt_testkit::harness::{self, Daemon, config_toml};
use certvakt_testkit::siths::{SithsCa, SithsOrganisation};
use certvakt_testkit::smtp::{SmtpOptions, SmtpSink};

use crate::common::{bins, stderr, stdout, task_titled, wait_renewal};

const ID: &str = "efrikort";
const HSA_PREFIX: &str = "SE5565594230-";
const HSA_ID: &str = "SE5565594230-BCQ";
const NEW_HSA_ID: &str = "SE5565594230-BCR";
const FQDN: &str = "efrikort.vardsystem.example.se";
const PRINCIPAL: &str = "SE2321000016-39KJ";
const REGION: &str = "Region Testland";
const REGION_MAIL: &str = "efrikort@regiontestland.example.se";
const WAIT: Duration = Duration::from_secs(60);

/// A care system with a SITHS function certificate in use, granted in TEST.
struct Site {
    dir: tempfile::TempDir,
    siths: SithsCa,
    efrikort: EfrikortSim,
    mailbox: SmtpSink,
    cert: PathBuf,
    config: PathBuf,
    daemon: Option<Daemon>,
}

impl Site {
    fn start() -> Result<Site> {
        let dir = tempfile::tempdir()?;
        let bins = bins()?;
        harness::install_plugins(
            &bins,
            &dir.path().join("plugins"),
            &["certvakt-plugin-se-efrikort"],
        )?;
        let siths = SithsCa::new(SithsOrganisation::new(
            "Vårdsystem AB",
            "Stockholm",
            HSA_PREFIX,
            &["vardsystem.example.se"],
        ))?;
        let efrikort = EfrikortSim::start(EfrikortConfig {
            regions: vec![Region::new(REGION, PRINCIPAL, REGION_MAIL)],
            ..EfrikortConfig::for_siths(&siths)
        })
        .context(
            "starting the eFrikort simulator (xmllint is installed by scripts/install-test-deps)",
        )?;
        efrikort.grant(HSA_ID, PRINCIPAL, Environment::Test);
        let mailbox = SmtpSink::start(SmtpOptions::plain())?;
        let current = siths.issue_current_with_key(HSA_ID, FQDN, KeyType::Rsa2048)?;
        let live = current.write_pem(&dir.path().join("live"), "siths")?;
        let siths_root = dir.path().join("siths-root.pem");
        std::fs::write(&siths_root, siths.root_pem())?;
        let servers = dir.path().join("efrikort-servers.pem");
        std::fs::write(&servers, efrikort.server_root_pem())?;
        let body = format!(
            r#"[trust]
siths = ["{siths_root}"]
efrikort = ["{servers}"]

[mail]
relay = "127.0.0.1"
port = {port}
tls = "none"
from = "certvakt@vardsystem.example.se"

[[certificate]]
id = "{ID}"
cert = "{cert}"
key = "{key}"
plugin = "se-efrikort"
issuer_trust = "siths"
plugin_mail = true

[certificate.settings]
hsa_id = "{HSA_ID}"
fqdn = "{FQDN}"
organization = "Vårdsystem AB"
locality = "Stockholm"
environment = "test"
endpoint = "{endpoint}"
endpoint_trust = "efrikort"
probe_person_id = "191212121212"
probe_card_type_id = "1"
production_probe = true
grant_poll = "5s"
system_name = "G-Medical"
contact_name = "Göthe Alfonso"
contact_email = "gothe@vardsystem.example.se"
contact_phone = "+46 70 123 12 31"
regions = [{{ name = "{REGION}", contact_addresses = ["{REGION_MAIL}"], principal_hsa_id = "{PRINCIPAL}" }}]
"#,
            siths_root = siths_root.display(),
            servers = servers.display(),
            port = mailbox.port(),
            cert = live.cert.display(),
            key = live.key.display(),
            endpoint = efrikort.url(Environment::Test),
        );
        let config = dir.path().join("certvakt.toml");
        std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:0", &body))?;
        let daemon = Daemon::start(&bins, &config, &[])?;
        Ok(Site {
            dir,
            siths,
            efrikort,
            mailbox,
            cert: live.cert,
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

    fn wait<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> Result<T> {
        let seen = || {
            let requests = self.efrikort.requests();
            let lines: Vec<String> = requests
                .iter()
                .map(|r| format!("{:?} {:?} {:?}", r.environment, r.caller_hsa_id, r.outcome))
                .collect();
            format!("{lines:#?}")
        };
        wait_renewal(self.daemon.as_ref(), ID, WAIT, what, seen, check)
    }

    fn wait_task(&self, needle: &str) -> Result<Task> {
        self.wait("the task", || task_titled(self.daemon.as_ref(), needle))
    }

    /// Renews: the order task's CSR goes to the SITHS portal for `hsa_id`, and what it issues
    /// is imported. Returns the issued certificate (PEM).
    fn renew_and_import(&self, hsa_id: &str) -> Result<String> {
        let out = self.daemon()?.cli(&["renew", ID, "--force"])?;
        ensure!(out.status.success(), "renew: {}", stderr(&out));
        let task = self.wait_task("Order the SITHS function certificate")?;
        ensure!(task.title.contains(hsa_id), "{task:#?}");
        let csr_path = task
            .files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == "csr"))
            .with_context(|| format!("the task has no CSR: {:?}", task.files))?;
        let csr = std::fs::read_to_string(csr_path)?;
        let order = self.siths.submit(&csr, hsa_id, FQDN)?;
        let issued = self.siths.issue(order)?;
        let file = self.dir.path().join("Downloads/funktionscertifikat.pem");
        std::fs::create_dir_all(file.parent().context("folder")?)?;
        std::fs::write(&file, format!("{}{}", issued.cert_pem, issued.chain_pem))?;
        let out = self
            .daemon()?
            .cli(&["import", ID, &file.display().to_string()])?;
        ensure!(
            out.status.success(),
            "import: {}{}",
            stdout(&out),
            stderr(&out)
        );
        Ok(issued.cert_pem)
    }

    fn live_is(&self, cert_pem: &str) -> bool {
        std::fs::read_to_string(&self.cert).is_ok_and(|live| live.trim() == cert_pem.trim())
    }

    fn wait_done(&self, cert_pem: &str) -> Result<()> {
        self.wait("the renewal to finish", || {
            let r = self.status()?;
            (self.live_is(cert_pem) && r.phase.is_none() && r.last_success.is_some()).then_some(())
        })
    }

    /// Replaces `from` by `to` in the configuration and reloads it.
    fn reconfigure(&self, from: &str, to: &str) -> Result<()> {
        let text = std::fs::read_to_string(&self.config)?;
        ensure!(text.contains(from), "{from} is not in the configuration");
        std::fs::write(&self.config, text.replace(from, to))?;
        let reload = self.daemon()?.cli(&["reload"])?;
        ensure!(reload.status.success(), "reload: {}", stderr(&reload));
        Ok(())
    }
}

#[test]
fn a_siths_renewal_that_keeps_its_hsa_id_asks_for_nothing() -> Result<()> {
    let site = Site::start()?;
    let new = site.renew_and_import(HSA_ID)?;
    site.wait_done(&new)?;
    ensure!(
        site.mailbox.messages().is_empty(),
        "no access request is needed"
    );
    // Verified with the new certificate against eFrikort TEST, as the same HSA-ID.
    ensure!(
        site.efrikort
            .requests()
            .iter()
            .any(|r| r.environment == Environment::Test
                && r.caller_hsa_id.as_deref() == Some(HSA_ID)
                && matches!(r.outcome, certvakt_testkit::efrikort::Outcome::Ok)),
        "{:#?}",
        site.efrikort.requests()
    );
    Ok(())
}

#[test]
fn a_new_hsa_id_goes_live_only_once_the_region_grants_it_first_in_test_then_in_produktion()
-> Result<()> {
    let site = Site::start()?;
    site.reconfigure(
        &format!("hsa_id = \"{HSA_ID}\""),
        &format!("hsa_id = \"{NEW_HSA_ID}\""),
    )?;
    let new = site.renew_and_import(NEW_HSA_ID)?;

    // The access request reaches the region by mail, CGI in copy, in Swedish.
    let mail = site.wait("the access request", || {
        site.mailbox
            .messages()
            .into_iter()
            .find(|m| m.subject == "Anslutningsförfrågan eFrikort")
    })?;
    ensure!(
        mail.rcpt_tos.iter().any(|r| r == REGION_MAIL)
            && mail
                .rcpt_tos
                .iter()
                .any(|r| r == "support.efrikort@cgi.com"),
        "{:?}",
        mail.rcpt_tos
    );
    let text = mail.text.clone().unwrap_or_default();
    ensure!(
        text.contains(NEW_HSA_ID) && text.contains("vårdhuvudman"),
        "{text}"
    );
    // Not granted yet: eFrikort says ACCESSDENIED, and the new certificate is not live.
    site.wait("a refused proof", || {
        site.efrikort
            .requests()
            .iter()
            .any(|r| {
                r.caller_hsa_id.as_deref() == Some(NEW_HSA_ID)
                    && matches!(r.outcome, certvakt_testkit::efrikort::Outcome::AccessDenied)
            })
            .then_some(())
    })?;
    ensure!(!site.live_is(&new), "live before the grant");

    // The region approves; CGI grants; certvakt sees it and installs.
    let grant = site
        .efrikort
        .approve_access_request(&mail, Some(&site.siths))?;
    ensure!(grant.environment == Environment::Test, "{grant:?}");
    site.wait_done(&new)?;

    // PRODUKTION, after TEST: the same flow against the production service.
    site.reconfigure(
        &format!(
            "environment = \"test\"\nendpoint = \"{}\"",
            site.efrikort.url(Environment::Test)
        ),
        &format!(
            "environment = \"production\"\nendpoint = \"{}\"",
            site.efrikort.url(Environment::Produktion)
        ),
    )?;
    let before = site.mailbox.messages().len();
    let production = site.renew_and_import(NEW_HSA_ID)?;
    let mail = site.wait("the PRODUKTION access request", || {
        site.mailbox.messages().into_iter().skip(before).find(|m| {
            m.subject == "Anslutningsförfrågan eFrikort"
                && m.text.as_deref().is_some_and(|t| t.contains("PRODUKTION"))
        })
    })?;
    ensure!(
        !site.live_is(&production),
        "live before the PRODUKTION grant"
    );
    let grant = site
        .efrikort
        .approve_access_request(&mail, Some(&site.siths))?;
    ensure!(grant.environment == Environment::Produktion, "{grant:?}");
    site.wait_done(&production)?;
    Ok(())
}
