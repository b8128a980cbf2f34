//! Key policies end to end: a pre-staged key is made after a renewal, shown with its hash,
//! survives a kill -9 and a cancelled run, and is exactly the key of the next renewal; a plugin whose CA makes the
//! keys refuses the policies it cannot honour in `check-config`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use certvakt::lifecycle::run::NextKey;
use certvakt_testkit::harness::{self, Daemon, eventually};
use certvakt_testkit::{CaShape, TestCa};

use crate::common::{WAIT, bins, stderr, stdout};
use crate::renewal::{ManualSetup, answer_the_order};

/// The SPKI SHA-256 (hex) of the key in `path`.
fn key_hash(path: &Path) -> Result<String> {
    let pem = std::fs::read_to_string(path)?;
    let key = certvakt::keys::PrivateKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{e}"))?;
    let facts =
        certvakt::lifecycle::next_key::describe(&key, 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(facts.spki_sha256)
}

fn next_key(daemon: &Daemon) -> Option<NextKey> {
    daemon.renewal("web").ok()??.next_key
}

#[test]
fn a_prestaged_key_is_shown_survives_a_kill_and_a_cancel_and_is_the_next_renewals_key() -> Result<()>
{
    let setup = ManualSetup::new()?;
    let config = std::fs::read_to_string(&setup.config)?;
    std::fs::write(
        &setup.config,
        config.replace(
            "plugin = \"manual\"\n",
            "plugin = \"manual\"\nkey_policy = \"prestage\"\n",
        ),
    )?;
    let ca = TestCa::new(CaShape::Tls)?;
    let bins = bins()?;
    let daemon = Daemon::start(&bins, &setup.config, &[])?;
    // A first issue has no live key to take the type from: no next key until it completes.
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let first = eventually(WAIT, "a pre-staged key after the first issue", || {
        next_key(&daemon)
    })
    .with_context(|| daemon.log_text())?;
    let file = setup.path().join("state/certs/web/next-key.pem");
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(key_hash(&file)?, first.spki_sha256);
    assert_ne!(key_hash(&setup.key)?, first.spki_sha256, "not the live key");
    assert_eq!(first.algorithm.as_str(), "ec-p256");
    let log = daemon.log_text();
    assert!(log.contains(&first.spki_sha256), "the hash is logged");
    assert!(!log.contains("PRIVATE KEY"), "the key is not");
    let shown = stdout(&daemon.cli(&["show", "web"])?);
    assert!(
        shown.contains(&format!("TLSA record:  3 1 1 {}", first.spki_sha256)),
        "{shown}"
    );
    assert!(shown.contains("the next renewal uses it"), "{shown}");

    // A kill -9 and a restart keep the same key.
    daemon.signal("KILL")?;
    drop(daemon);
    let daemon = Daemon::start(&bins, &setup.config, &[])?;
    eventually(WAIT, "the restarted daemon to show the key", || {
        next_key(&daemon)
    })?;
    assert_eq!(next_key(&daemon), Some(first.clone()));

    // A run cancelled after taking the key gives it back: still the next key.
    let out = daemon.cli(&["renew", "web", "--force"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })?;
    assert!(!file.exists(), "the run took the key");
    let out = daemon.cli(&["cancel", "web"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    assert_eq!(key_hash(&file)?, first.spki_sha256);
    assert!(
        !setup
            .path()
            .join("state/certs/web/pending-key.pem")
            .exists()
    );

    // The next renewal uses exactly that key, and pre-stages the one after.
    let out = daemon.cli(&["renew", "web", "--force"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let second = eventually(WAIT, "the renewal to complete with a new next key", || {
        let r = daemon.renewal("web").ok()??;
        let next = r.next_key?;
        (r.phase.is_none() && next != first).then_some(next)
    })
    .with_context(|| daemon.log_text())?;
    assert_eq!(key_hash(&setup.key)?, first.spki_sha256);
    assert_ne!(second.spki_sha256, first.spki_sha256);
    assert_eq!(key_hash(&file)?, second.spki_sha256);
    assert!(
        daemon
            .log_text()
            .contains("the pre-staged key is this renewal's key")
    );
    Ok(())
}

#[test]
fn check_config_refuses_a_key_policy_the_plugins_ca_cannot_honour() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-dk-fmk", "certvakt-plugin-manual"],
    )?;
    // A trust set for the FMK endpoints' settings (nothing is called: the check stops first).
    let trust = dir.path().join("fmk-test-ca.pem");
    std::fs::write(&trust, TestCa::new(CaShape::Tls)?.root_pem())?;
    let trust = trust.display();
    let body = |policy: &str| {
        format!(
            r#"[trust]
fmk-test = ["{trust}"]

[[certificate]]
id = "fmk"
cert = "/etc/pharmacy/fmk/system.pem"
key = "/etc/pharmacy/fmk/system.key"
plugin = "dk-fmk"
key_policy = "{policy}"

[certificate.settings]
cvr = "25450442"
fmk_endpoint = "https://test1.fmk.netic.dk/fmk12/ws/MedicineCard"
fmk_trust = "fmk-test"
sts_endpoint = "https://sts.test.example/sts/services/NewSecurityTokenService"
sts_trust = "fmk-test"
pharmacy_name = "Hjørring Svane Apotek"
pharmacy_address = ["Brogade 111", "9800 Hjørring"]
pharmacy_ean = "5790000171248"
apoteker_given_name = "Ane"
apoteker_surname = "Jensen"
apoteker_cpr = "2604276962"

[[certificate]]
id = "web"
cert = "/etc/ssl/web.pem"
key = "/etc/ssl/web.key"
plugin = "manual"
key_policy = "{policy}"

[certificate.settings]
ca_name = "Test CA"
sans = ["DNS:apotek-test.example"]
"#
        )
    };
    let config = dir.path().join("certvakt.toml");
    for policy in ["reuse", "prestage"] {
        std::fs::write(
            &config,
            harness::config_toml(dir.path(), "127.0.0.1:0", &body(policy)),
        )?;
        let out = std::process::Command::new(&bins.certvakt)
            .arg("--config")
            .arg(&config)
            .arg("check-config")
            .output()?;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        let line = format!(
            "certificate[0].key_policy: plugin dk-fmk does not work with key_policy = \"{policy}\" (its authority works with \"rotate\")"
        );
        assert!(err.contains(&line), "{err}");
        // The manual plugin works with every policy.
        assert!(!err.contains("certificate[1].key_policy"), "{err}");
    }
    // A daemon started with it anyway holds the certificate back and says why.
    let daemon = Daemon::start(&bins, &config, &[])?;
    let renewal = eventually(WAIT, "fmk held back", || {
        let r = daemon.renewal("fmk").ok()??;
        r.last_error
            .as_deref()
            .is_some_and(|e| e.contains("does not work with key_policy"))
            .then_some(r)
    })
    .with_context(|| daemon.log_text())?;
    assert!(renewal.phase.is_none(), "no run started: {renewal:?}");
    Ok(())
}
