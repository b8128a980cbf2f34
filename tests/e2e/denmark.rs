//! Denmark end to end: the real daemon with the `dk-fmk` and `dk-nemlogin` plugins loaded
//! from disk, renewing OCES3 system certificates from the MitID Erhverv stand-in: a pharmacy's,
//! whitelisted in the FMK simulator (schema-validating, signature-checking, with its SOSI STS,
//! over mutual TLS), and a municipality's SMDB system user's, proven against the NemLog-in
//! STS simulator while a person attaches and provisions it in the simulated administration.

use anyhow::{Context, Result, bail, ensure};
use certvakt::control::protocol::{Renewal, Task};
use certvakt_testkit::PemPaths;
use certvakt_testkit::fmk::{Endpoint, FmkOptions, FmkSimulator};
use certvakt_testkit::harness::{self, Daemon, config_toml, eventually};
use certvakt_testkit::mitid::{Download, MitIdErhverv, identity};
use certvakt_testkit::nemlogin::{Environment, NemLoginOptions, NemLoginSimulator};

use crate::common::{WAIT, bins, stderr, stdout};

const CVR: &str = "25450442";
const NAME: &str = "Hjørring Svane Apotek FMK";

/// What both Danish set-ups share: an organisation with a live certificate from the MitID
/// Erhverv stand-in, an authority's simulator, and a daemon managing the certificate as `id`
/// with the authority's plugin; and the views the tests take of it.
struct Site {
    id: &'static str,
    dir: tempfile::TempDir,
    portal: MitIdErhverv,
    current: Download,
    live: PemPaths,
    daemon: Daemon,
}

/// The authority side of a [`Site`]: a simulator started for the portal's certificates.
struct Authority<A> {
    simulator: A,
    /// The trust anchor of its TLS certificates, as PEM.
    server_root_pem: String,
    /// `[certificate.settings]` lines naming it (the trust set is called `authority`).
    settings: String,
}

impl Site {
    /// Orders the organisation `cvr`'s certificate `name`, starts the authority with
    /// `authority`, and a daemon managing the certificate as `id` with `plugin` (crate
    /// `crate_name`), its new certificates held to the portal's CA; `settings` are more lines
    /// for `[certificate.settings]`.
    fn start<A>(
        id: &'static str,
        (plugin, crate_name): (&str, &str),
        (cvr, name): (&str, &str),
        authority: impl FnOnce(&MitIdErhverv, &Download) -> Result<Authority<A>>,
        settings: &str,
    ) -> Result<(Site, A)> {
        let dir = tempfile::tempdir()?;
        let bins = bins()?;
        harness::install_plugins(&bins, &dir.path().join("plugins"), &[crate_name])?;
        let portal = MitIdErhverv::new()?;
        let current = portal.order(cvr, name)?;
        let authority = authority(&portal, &current)?;
        let live = current
            .certificate
            .write_pem(&dir.path().join("live"), id)?;
        let oces3 = dir.path().join("oces3-root.pem");
        std::fs::write(&oces3, portal.ca().root_pem())?;
        let servers = dir.path().join("authority-servers.pem");
        std::fs::write(&servers, &authority.server_root_pem)?;
        let body = format!(
            r#"[trust]
oces3 = ["{oces3}"]
authority = ["{servers}"]

[[certificate]]
id = "{id}"
cert = "{cert}"
key = "{key}"
fullchain = "{fullchain}"
plugin = "{plugin}"
issuer_trust = "oces3"

[certificate.settings]
cvr = "{cvr}"
poll_seconds = 5
{authority_settings}
{settings}
"#,
            oces3 = oces3.display(),
            servers = servers.display(),
            cert = live.cert.display(),
            key = live.key.display(),
            fullchain = live.fullchain.display(),
            authority_settings = authority.settings,
        );
        let config = dir.path().join("certvakt.toml");
        std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:0", &body))?;
        let daemon = Daemon::start(&bins, &config, &[])?;
        let site = Site {
            id,
            dir,
            portal,
            current,
            live,
            daemon,
        };
        Ok((site, authority.simulator))
    }

    /// Imports `download` as the administrator would; returns what the CLI printed.
    fn import(&self, download: &Download) -> Result<String> {
        let (bundle, password) = download.write(&self.dir.path().join("Downloads"), self.id)?;
        let out = self.daemon.cli(&[
            "import",
            self.id,
            &bundle.display().to_string(),
            "--password-file",
            &password.display().to_string(),
        ])?;
        ensure!(out.status.success(), "import: {}", stderr(&out));
        Ok(stdout(&out))
    }

    /// The certificate's line of `certvakt status`, once it has one.
    fn status(&self) -> Option<Renewal> {
        self.daemon.renewal(self.id).ok().flatten()
    }

    /// Waits for `check`; on a timeout, the error shows the status and the daemon's log.
    fn wait<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> Result<T> {
        match eventually(WAIT, what, check) {
            Ok(value) => Ok(value),
            Err(e) => bail!(
                "{e}\nstatus: {:#?}\n{}",
                self.status(),
                self.daemon.log_text()
            ),
        }
    }

    /// Waits for an open task whose title contains `needle`.
    fn wait_task(&self, needle: &str) -> Result<Task> {
        self.wait("the task", || {
            self.daemon
                .tasks()
                .ok()?
                .into_iter()
                .find(|t| t.title.contains(needle))
        })
    }

    /// Waits for the run to fail with an error containing `needle`; returns the error.
    fn wait_error(&self, needle: &str) -> Result<String> {
        self.wait("the failure to show", || {
            let error = self.status()?.last_error?;
            error.contains(needle).then_some(error)
        })
    }

    /// Waits until the run is over and `download` is the live certificate.
    fn wait_done(&self, download: &Download) -> Result<()> {
        self.wait("the renewal to finish", || {
            let r = self.status()?;
            (self.live_is(download) && r.phase.is_none() && r.last_success.is_some()).then_some(())
        })
    }

    fn live_is(&self, download: &Download) -> bool {
        std::fs::read_to_string(&self.live.cert)
            .is_ok_and(|live| live.trim() == download.certificate.cert_pem.trim())
    }

    fn has_open_task(&self, task: &Task) -> Result<bool> {
        Ok(self.daemon.tasks()?.iter().any(|t| t.id == task.id))
    }

    /// Asks the daemon to take the next step now rather than at the next poll.
    fn nudge(&self) -> Result<()> {
        let out = self.daemon.cli(&["renew", self.id])?;
        ensure!(out.status.success(), "renew: {}", stderr(&out));
        Ok(())
    }

    /// Replaces `from` by `to` in the configuration and reloads it.
    fn reconfigure(&self, from: &str, to: &str) -> Result<()> {
        let config = self.dir.path().join("certvakt.toml");
        let text = std::fs::read_to_string(&config)?;
        ensure!(text.contains(from), "{from} is not in the configuration");
        std::fs::write(&config, text.replace(from, to))?;
        let reload = self.daemon.cli(&["reload"])?;
        ensure!(reload.status.success(), "reload: {}", stderr(&reload));
        Ok(())
    }
}

/// A pharmacy with a live FMK certificate, the FMK simulator, and a daemon managing the
/// certificate as `fmk` with dk-fmk.
struct Pharmacy {
    site: Site,
    fmk: FmkSimulator,
}

impl std::ops::Deref for Pharmacy {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.site
    }
}

impl Pharmacy {
    /// `whitelisted`: FMK already has the current certificate's UUID; `settings`: more lines
    /// for `[certificate.settings]`.
    fn start(options: FmkOptions, whitelisted: bool, settings: &str) -> Result<Pharmacy> {
        let (site, fmk) = Site::start(
            "fmk",
            ("dk-fmk", "certvakt-plugin-dk-fmk"),
            (CVR, NAME),
            |portal, current| {
                let fmk = FmkSimulator::start(FmkOptions {
                    client_roots: vec![portal.ca().root_der()],
                    client_intermediates: portal.ca().chain_der(),
                    ..options
                })?;
                if whitelisted {
                    fmk.insert_whitelisting(CVR, &uuid_of(current)?, None);
                }
                let settings = format!(
                    r#"fmk_endpoint = "{}"
fmk_trust = "authority"
sts_endpoint = "{}"
sts_trust = "authority"
pharmacy_name = "Hjørring Svane Apotek"
pharmacy_address = ["Brogade 111", "9800 Hjørring"]
pharmacy_ean = "5790000171248"
apoteker_given_name = "Ane"
apoteker_surname = "Jensen"
apoteker_cpr = "2604276962""#,
                    fmk.fmk_url(),
                    fmk.sts_url()
                );
                Ok(Authority {
                    server_root_pem: fmk.server_root_pem(),
                    simulator: fmk,
                    settings,
                })
            },
            settings,
        )?;
        Ok(Pharmacy { site, fmk })
    }

    /// How many requests of `operation` certvakt sent FMK.
    fn sent(&self, operation: &str) -> usize {
        let root = format!("{operation}Request");
        self.fmk
            .requests()
            .iter()
            .filter(|r| r.endpoint == Endpoint::Fmk && !r.by_owner && r.body_root == root)
            .count()
    }

    fn uuids(&self) -> Vec<String> {
        self.fmk
            .whitelistings(CVR)
            .into_iter()
            .map(|w| w.foces_id)
            .collect()
    }

    fn live_is_current(&self) -> bool {
        self.live_is(&self.current)
    }
}

/// The file of `task` whose name ends with `suffix`, read.
fn task_file(task: &Task, suffix: &str) -> Result<String> {
    let path = task
        .files
        .iter()
        .find(|f| f.to_string_lossy().ends_with(suffix))
        .with_context(|| format!("no {suffix} among {:?}", task.files))?;
    Ok(std::fs::read_to_string(path)?)
}

fn uuid_of(download: &Download) -> Result<String> {
    Ok(identity(&download.certificate.cert_der)?.uuid)
}

#[test]
fn a_renewal_that_keeps_the_uuid_is_verified_in_fmk_and_nothing_is_created() -> Result<()> {
    let pharmacy = Pharmacy::start(FmkOptions::default(), true, "")?;
    let uuid = uuid_of(&pharmacy.current)?;

    let renew = pharmacy.daemon.cli(&["renew", "fmk", "--force"])?;
    ensure!(renew.status.success(), "renew: {}", stderr(&renew));
    let order = pharmacy.wait_task("MitID Erhverv")?;
    let instructions = &order.instructions;
    assert!(instructions.contains(&uuid), "{instructions}");
    assert!(
        instructions.contains("certvakt import fmk"),
        "{instructions}"
    );

    let renewal = pharmacy
        .portal
        .renew(&pharmacy.current.certificate.cert_pem)?;
    let said = pharmacy.import(&renewal)?;
    assert!(!said.contains("note:"), "a renewal keeps the UUID: {said}");
    pharmacy.wait_done(&renewal)?;

    assert_eq!(pharmacy.uuids(), [uuid], "the one entry serves the renewal");
    assert_eq!(pharmacy.sent("CreateFocesWhitelisting"), 0);
    assert_eq!(pharmacy.sent("DeleteFocesWhitelisting"), 0);
    assert!(
        pharmacy.sent("GetFocesWhitelistings") >= 2,
        "register and verify look"
    );
    let faults: Vec<_> = pharmacy
        .fmk
        .requests()
        .into_iter()
        .filter_map(|r| r.fault)
        .collect();
    assert!(faults.is_empty(), "FMK refused something: {faults:?}");
    Ok(())
}

#[test]
fn the_mitid_erhverv_task_reaches_the_pharmacy_by_mail_with_its_text_and_files() -> Result<()> {
    // A relay on this machine (no TLS: loopback only), and a route to the pharmacy's IT.
    let smtp =
        certvakt_testkit::smtp::SmtpSink::start(certvakt_testkit::smtp::SmtpOptions::plain())?;
    let routes = format!(
        r#"
[mail]
relay = "127.0.0.1"
port = {}
tls = "none"
from = "certvakt@svaneapotek.example"

[[notify]]
name = "apotek-it"
channel = "mail"
to = ["it@svaneapotek.example"]
"#,
        smtp.port()
    );
    let pharmacy = Pharmacy::start(FmkOptions::default(), true, &routes)?;
    let uuid = uuid_of(&pharmacy.current)?;
    let renew = pharmacy.daemon.cli(&["renew", "fmk", "--force"])?;
    ensure!(renew.status.success(), "renew: {}", stderr(&renew));
    let order = pharmacy.wait_task("MitID Erhverv")?;

    let mails = smtp
        .wait_for(1, WAIT)
        .with_context(|| pharmacy.daemon.log_text())?;
    let mail = &mails[0];
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
    assert_eq!(mail.rcpt_tos, ["it@svaneapotek.example"]);
    assert_eq!(
        mail.subject,
        format!("[certvakt] Action needed: fmk — {}", order.title)
    );
    let text = mail.text.as_deref().context("no text body")?;
    // The plugin's own words, as the task has them: the UUID to keep, how to hand it over.
    assert!(text.contains(order.instructions.trim()), "{text}");
    assert!(text.contains(&uuid), "{text}");
    assert!(text.contains("certvakt import fmk"), "{text}");
    // The deadline: the certificate in use and when it expires.
    assert!(text.contains("Expires: "), "{text}");
    assert!(
        text.contains(NAME),
        "the subject of the certificate in use: {text}"
    );
    // The files the task carries, attached as they are in its folder.
    for file in order
        .files
        .iter()
        .filter(|f| !f.ends_with("instructions.txt"))
    {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .context("file name")?;
        let attached = mail
            .attachments
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .with_context(|| format!("{name} is not attached: {:?}", mail.attachments))?;
        let bytes = std::fs::read(file)?;
        assert_eq!(attached.sha256, sha256_hex(&bytes), "{name}");
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_new_uuid_is_whitelisted_before_the_install_and_the_old_entry_deleted_after() -> Result<()> {
    let pharmacy = Pharmacy::start(FmkOptions::default(), true, "fmk_version = \"1.6.0\"")?;
    let old = uuid_of(&pharmacy.current)?;
    // After an expiry MitID Erhverv can only issue a new certificate: a new UUID.
    let new_order = pharmacy.portal.order(CVR, NAME)?;
    let new = uuid_of(&new_order)?;
    assert_ne!(old, new);
    let said = pharmacy.import(&new_order)?;
    assert!(said.contains("note:"), "a changed UUID is flagged: {said}");
    pharmacy.wait_done(&new_order)?;

    assert_eq!(
        pharmacy.uuids(),
        std::slice::from_ref(&new),
        "the old entry is gone"
    );
    assert_eq!(pharmacy.sent("CreateFocesWhitelisting"), 1);
    assert_eq!(pharmacy.sent("DeleteFocesWhitelisting"), 1);
    let stored = pharmacy.fmk.whitelistings(CVR);
    let hash = &stored[0].cert_hash;
    assert!(
        hash.len() == 40
            && hash
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
        "SHA-1 in upper-case hex by default: {stored:?}"
    );
    assert_eq!(stored[0].created_by, "Ane Jensen");
    Ok(())
}

#[test]
fn assisted_mode_gives_the_owner_the_exact_requests_and_notices_them_done() -> Result<()> {
    let pharmacy = Pharmacy::start(FmkOptions::default(), true, "mode = \"assisted\"")?;
    let old = uuid_of(&pharmacy.current)?;
    let new_order = pharmacy.portal.order(CVR, NAME)?;
    let new = uuid_of(&new_order)?;
    pharmacy.import(&new_order)?;

    let create = pharmacy.wait_task("Whitelist")?;
    let body = task_file(&create, "CreateFocesWhitelistingRequest.xml")?;
    assert!(body.contains(&new), "{body}");
    assert!(
        pharmacy.live_is_current(),
        "nothing is installed before FMK whitelists the new UUID"
    );
    // The owner sends it with their own FMK access; the simulator validates it like any
    // request, against the real schemas.
    pharmacy
        .fmk
        .submit_as_owner(&body)
        .context("the prepared Create")?;

    let delete = pharmacy.wait_task("Remove")?;
    let body = task_file(&delete, "DeleteFocesWhitelistingRequest.xml")?;
    assert!(body.contains(&old), "{body}");
    pharmacy
        .fmk
        .submit_as_owner(&body)
        .context("the prepared Delete")?;
    pharmacy.wait_done(&new_order)?;

    assert_eq!(pharmacy.uuids(), [new]);
    assert_eq!(
        pharmacy.sent("CreateFocesWhitelisting"),
        0,
        "the owner did it"
    );
    assert_eq!(pharmacy.sent("DeleteFocesWhitelisting"), 0);
    Ok(())
}

#[test]
fn fmk_refusing_certvakt_makes_the_step_the_owners_task() -> Result<()> {
    let pharmacy = Pharmacy::start(
        FmkOptions {
            system_cards_may_whitelist: false,
            ..FmkOptions::default()
        },
        true,
        "",
    )?;
    let new_order = pharmacy.portal.order(CVR, NAME)?;
    pharmacy.import(&new_order)?;
    let task = pharmacy.wait_task("Whitelist")?;
    let refused: Vec<_> = pharmacy
        .fmk
        .requests()
        .into_iter()
        .filter_map(|r| r.fault)
        .collect();
    assert_eq!(refused, ["not_authorized"], "tried once, not in a loop");
    assert!(pharmacy.live_is_current());
    let body = task_file(&task, "CreateFocesWhitelistingRequest.xml")?;
    pharmacy.fmk.submit_as_owner(&body)?;
    let remove = pharmacy.wait_task("Remove")?;
    pharmacy
        .fmk
        .submit_as_owner(&task_file(&remove, "DeleteFocesWhitelistingRequest.xml")?)?;
    pharmacy.wait_done(&new_order)?;
    Ok(())
}

#[test]
fn a_certificate_for_another_cvr_is_refused_before_fmk_is_asked() -> Result<()> {
    let pharmacy = Pharmacy::start(FmkOptions::default(), true, "")?;
    // The settings name another pharmacy's CVR than the certificate's.
    pharmacy.reconfigure(&format!("cvr = \"{CVR}\""), "cvr = \"11223344\"")?;
    let renewal = pharmacy
        .portal
        .renew(&pharmacy.current.certificate.cert_pem)?;
    pharmacy.import(&renewal)?;
    let error = pharmacy.wait_error("wrong CVR")?;
    assert!(error.contains(CVR) && error.contains("11223344"), "{error}");
    assert!(pharmacy.live_is_current(), "nothing installed");
    assert_eq!(pharmacy.fmk.requests().len(), 0, "FMK was not asked");
    Ok(())
}

#[test]
fn an_fmk_fault_stops_the_renewal_with_fmks_words_until_a_person_acts() -> Result<()> {
    let pharmacy = Pharmacy::start(FmkOptions::default(), true, "")?;
    pharmacy
        .fmk
        .set_fault("CreateFocesWhitelisting", Some("processing_problem"));
    let new_order = pharmacy.portal.order(CVR, NAME)?;
    pharmacy.import(&new_order)?;
    let error = pharmacy.wait_error("fmk:processing_problem")?;
    assert!(error.contains("CreateFocesWhitelisting"), "{error}");
    assert!(pharmacy.live_is_current(), "nothing installed");

    // Fixed at FMK's end; the operator says so.
    pharmacy.fmk.set_fault("CreateFocesWhitelisting", None);
    let task = pharmacy.wait_task("")?;
    let done = pharmacy.daemon.cli(&["task", "done", &task.id])?;
    ensure!(done.status.success(), "task done: {}", stderr(&done));
    pharmacy.wait_done(&new_order)?;
    assert_eq!(pharmacy.uuids(), [uuid_of(&new_order)?]);
    Ok(())
}

#[test]
fn the_sosi_sts_down_is_temporary_and_nothing_changes_until_it_is_back() -> Result<()> {
    let pharmacy = Pharmacy::start(FmkOptions::default(), true, "")?;
    pharmacy.fmk.set_sts_down(true);
    let renewal = pharmacy
        .portal
        .renew(&pharmacy.current.certificate.cert_pem)?;
    pharmacy.import(&renewal)?;
    let error = pharmacy.wait_error("SOSI STS")?;
    assert!(
        error.contains("temporary") && error.contains("503"),
        "{error}"
    );
    assert!(pharmacy.live_is_current(), "nothing installed");
    assert_eq!(pharmacy.sent("GetFocesWhitelistings"), 0);

    pharmacy.fmk.set_sts_down(false);
    let renew = pharmacy.daemon.cli(&["renew", "fmk"])?;
    ensure!(renew.status.success(), "renew: {}", stderr(&renew));
    pharmacy.wait_done(&renewal)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// NemLog-in: a municipality's system user for SMDB.

const MUNICIPALITY_CVR: &str = "29189846";
const ENTITY_ID: &str = "https://wsc.odense.smdb.dk";
const SMDB: &str = "https://smdb.dst.example/ws";
const PRIVILEGES: [&str; 2] = [
    "urn:dk:smdb:prod:indberetter",
    "urn:dk:smdb:prod:sundhedsfaglig",
];

/// A municipality whose system user in NemLog-in (production) has the live certificate
/// attached, provisioned, and SMDB access granted; a daemon managing it as `smdb` with
/// dk-nemlogin.
struct Municipality {
    site: Site,
    nemlogin: NemLoginSimulator,
}

impl std::ops::Deref for Municipality {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.site
    }
}

impl Municipality {
    fn start() -> Result<Municipality> {
        let (site, nemlogin) = Site::start(
            "smdb",
            ("dk-nemlogin", "certvakt-plugin-dk-nemlogin"),
            (MUNICIPALITY_CVR, "Odense Kommune SMDB"),
            |portal, current| {
                let nemlogin = NemLoginSimulator::start(NemLoginOptions {
                    client_roots: vec![portal.ca().root_der()],
                    client_intermediates: portal.ca().chain_der(),
                    ..NemLoginOptions::default()
                })?;
                let env = Environment::Production;
                nemlogin.add_web_service(env, "Smdb_Sts_Dev", SMDB, None, &PRIVILEGES);
                nemlogin.add_system_user(env, "Odense SMDB indberetning", ENTITY_ID)?;
                nemlogin.attach_certificate(env, ENTITY_ID, &current.certificate.cert_der)?;
                nemlogin.request_access(env, ENTITY_ID, "Smdb_Sts_Dev", &PRIVILEGES)?;
                nemlogin.grant(env, ENTITY_ID, "Smdb_Sts_Dev")?;
                nemlogin.provision(env);
                let settings = format!(
                    r#"entity_id = "{ENTITY_ID}"
environment = "production"
web_service = "Smdb_Sts_Dev"
privileges = ["{}", "{}"]
applies_to = "{SMDB}"
sts_endpoint = "{}"
sts_trust = "authority""#,
                    PRIVILEGES[0],
                    PRIVILEGES[1],
                    nemlogin.sts_url(env),
                );
                Ok(Authority {
                    server_root_pem: nemlogin.server_root_pem(),
                    simulator: nemlogin,
                    settings,
                })
            },
            "",
        )?;
        Ok(Municipality { site, nemlogin })
    }

    fn failed_authentications(&self) -> usize {
        self.nemlogin
            .faults()
            .iter()
            .filter(|f| f.ends_with("FailedAuthentication"))
            .count()
    }
}

/// Plays the administrator in NemLog-in Administration: the certificate from the task's
/// `.cer` file is attached to the system user (not yet provisioned).
fn attach_from_task(town: &Municipality, task: &Task, expected: &Download) -> Result<()> {
    let path = task
        .files
        .iter()
        .find(|f| f.extension() == Some("cer".as_ref()))
        .with_context(|| format!("no .cer among {:?}", task.files))?;
    let cer = std::fs::read(path)?;
    ensure!(
        cer == expected.certificate.cert_der,
        "the task's .cer is not the new certificate"
    );
    town.nemlogin
        .attach_certificate(Environment::Production, ENTITY_ID, &cer)
}

#[test]
fn an_smdb_system_user_renewal_waits_for_provisioning_then_installs_and_detaches() -> Result<()> {
    let town = Municipality::start()?;
    let renewal = town.portal.renew(&town.current.certificate.cert_pem)?;
    town.import(&renewal)?;

    let attach = town.wait_task("Attach")?;
    let text = &attach.instructions;
    for expected in [
        ENTITY_ID,
        "Provisioner til produktion",
        "Gem tekniske oplysninger",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert!(
        town.failed_authentications() >= 1,
        "the STS was asked first"
    );
    attach_from_task(&town, &attach, &renewal)?;

    // Attached but not provisioned: the STS still refuses; nothing is installed.
    let before = town.failed_authentications();
    town.nudge()?;
    town.wait("the STS to refuse the unprovisioned certificate", || {
        (town.failed_authentications() > before).then_some(())
    })?;
    assert!(
        town.live_is(&town.current),
        "nothing installed before provisioning"
    );
    assert!(town.has_open_task(&attach)?, "the task stays open");

    town.nemlogin.provision(Environment::Production);
    town.nudge()?;
    let detach = town.wait_task("Remove")?;
    assert!(
        town.live_is(&renewal),
        "installed once the STS issued a token"
    );
    assert!(
        !town.has_open_task(&attach)?,
        "the attach task closed by itself"
    );
    let tokens = town.nemlogin.tokens_issued();
    let token = tokens.last().context("a token")?;
    assert_eq!(token.entity_id, ENTITY_ID);
    assert_eq!(token.applies_to, SMDB);
    assert_eq!(token.cvr, MUNICIPALITY_CVR);

    // The administrator removes the old certificate and provisions again.
    town.nemlogin.detach_certificate(
        Environment::Production,
        ENTITY_ID,
        &town.current.certificate.cert_der,
    )?;
    town.nemlogin.provision(Environment::Production);
    town.nudge()?;
    town.wait_done(&renewal)?;
    assert!(
        !town.has_open_task(&detach)?,
        "the detach task closed by itself"
    );
    Ok(())
}

#[test]
fn an_smdb_certificate_with_a_new_uuid_goes_the_same_way() -> Result<()> {
    let town = Municipality::start()?;
    let new_order = town.portal.order(MUNICIPALITY_CVR, "Odense Kommune SMDB")?;
    let said = town.import(&new_order)?;
    assert!(said.contains("note:"), "a changed UUID is flagged: {said}");
    let attach = town.wait_task("Attach")?;
    attach_from_task(&town, &attach, &new_order)?;
    town.nemlogin.provision(Environment::Production);
    town.nudge()?;
    town.wait("the new certificate installed", || {
        town.live_is(&new_order).then_some(())
    })?;
    Ok(())
}

#[test]
fn an_smdb_certificate_for_another_cvr_is_refused() -> Result<()> {
    let town = Municipality::start()?;
    town.reconfigure(
        &format!("cvr = \"{MUNICIPALITY_CVR}\""),
        "cvr = \"11223344\"",
    )?;
    let renewal = town.portal.renew(&town.current.certificate.cert_pem)?;
    town.import(&renewal)?;
    let error = town.wait_error("wrong CVR")?;
    assert!(error.contains(MUNICIPALITY_CVR), "{error}");
    assert!(town.live_is(&town.current));
    assert!(town.nemlogin.tokens_issued().is_empty());
    Ok(())
}

#[test]
fn the_nemlogin_sts_down_keeps_the_old_certificate_until_it_is_back() -> Result<()> {
    let town = Municipality::start()?;
    town.nemlogin.set_down(true);
    let renewal = town.portal.renew(&town.current.certificate.cert_pem)?;
    town.import(&renewal)?;
    let attach = town.wait_task("Attach")?;
    town.nudge()?;
    let error = town.wait_error("503")?;
    assert!(error.contains("temporary"), "{error}");
    assert!(
        town.live_is(&town.current),
        "nothing installed while the STS is down"
    );

    // Back, but the certificate is not attached yet: no error any more, the task stays.
    town.nemlogin.set_down(false);
    town.nudge()?;
    town.wait("the STS's answer to replace the error", || {
        let r = town.status()?;
        (r.last_error.is_none() && r.failures == 0).then_some(())
    })?;
    assert!(town.has_open_task(&attach)?);

    attach_from_task(&town, &attach, &renewal)?;
    town.nemlogin.provision(Environment::Production);
    town.nudge()?;
    town.wait("the renewal installed", || {
        town.live_is(&renewal).then_some(())
    })?;
    Ok(())
}
