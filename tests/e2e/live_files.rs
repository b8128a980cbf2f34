//! The live folder as an attacker on the same host would use it: a link in it must not make
//! certvakt copy what the link points to (a root-only file) into a version, and from there into
//! the live folder with the certificate's modes.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use certvakt_testkit::harness::{Daemon, eventually};
use certvakt_testkit::{CaShape, TestCa};

use crate::common::{WAIT, bins, stderr};
use crate::renewal::{ManualSetup, answer_the_order};

/// Every regular file below `dir` that holds `needle`, except `except`.
fn files_holding(dir: &Path, needle: &[u8], except: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && path != except {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
                    found.push(format!("{} ({:o})", path.display(), mode.unwrap_or(0)));
                }
            }
        }
    }
    found
}

#[test]
fn a_link_in_the_live_folder_never_publishes_what_it_points_to() -> Result<()> {
    let setup = ManualSetup::new()?;
    let live = setup.cert.parent().context("live folder")?.to_owned();
    let chain = live.join("chain.pem");
    let text = std::fs::read_to_string(&setup.config)?;
    std::fs::write(
        &setup.config,
        text.replace(
            "plugin = \"manual\"",
            &format!("chain = \"{}\"\nplugin = \"manual\"", chain.display()),
        ),
    )?;
    // A pair in use that certvakt did not write, and a chain that is a link to a secret.
    let ca = TestCa::new(CaShape::Tls)?;
    let own = ca.issue(&certvakt_testkit::LeafSpec::tls_server(&[
        "apotek-test.example",
    ]))?;
    std::fs::create_dir_all(&live)?;
    std::fs::write(&setup.cert, &own.cert_pem)?;
    std::fs::write(&setup.key, &own.key_pem)?;
    let secret = setup.path().join("root-only.secret");
    let marker = b"ROOT-ONLY-SECRET-6c1f2e";
    std::fs::write(&secret, marker)?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    std::os::unix::fs::symlink(&secret, &chain)?;

    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let out = daemon.cli(&["renew", "web", "--force"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let done = eventually(WAIT, "the renewal to complete", || {
        daemon.renewal("web").ok()??.last_success.map(|_| ())
    });
    if let Err(e) = done {
        anyhow::bail!("{e}\n{}", daemon.log_text());
    }

    // The link was replaced by the new chain; the secret was read by nobody and copied nowhere.
    ensure!(
        !std::fs::symlink_metadata(&chain)?.file_type().is_symlink(),
        "the link is replaced"
    );
    let copies = files_holding(setup.path(), marker, &secret);
    ensure!(copies.is_empty(), "copies of the secret: {copies:?}");
    ensure!(
        std::fs::read(&secret)? == marker
            && std::fs::metadata(&secret)?.permissions().mode() & 0o777 == 0o600,
        "the secret is left as it was"
    );
    // The pair in use was still kept (cert and key are regular files): rollback returns to it.
    let out = daemon.cli(&["rollback", "web"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    ensure!(std::fs::read_to_string(&setup.key)? == own.key_pem);
    Ok(())
}

#[test]
fn a_key_that_is_a_link_is_not_copied_into_a_version() -> Result<()> {
    let setup = ManualSetup::new()?;
    let live = setup.cert.parent().context("live folder")?.to_owned();
    let ca = TestCa::new(CaShape::Tls)?;
    let own = ca.issue(&certvakt_testkit::LeafSpec::tls_server(&[
        "apotek-test.example",
    ]))?;
    std::fs::create_dir_all(&live)?;
    std::fs::write(&setup.cert, &own.cert_pem)?;
    // The key lives elsewhere, root-only; the live folder holds a link to it.
    let elsewhere = setup.path().join("elsewhere.key");
    std::fs::write(&elsewhere, &own.key_pem)?;
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600))?;
    std::os::unix::fs::symlink(&elsewhere, &setup.key)?;

    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    let out = daemon.cli(&["renew", "web", "--force"])?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let out = answer_the_order(&daemon, &ca, setup.path())?;
    ensure!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "the renewal to complete", || {
        daemon.renewal("web").ok()??.last_success.map(|_| ())
    })?;
    let marker = own.key_pem.lines().nth(1).context("a key line")?.as_bytes();
    let copies = files_holding(setup.path(), marker, &elsewhere);
    ensure!(copies.is_empty(), "copies of the linked key: {copies:?}");
    ensure!(
        std::fs::read_to_string(&elsewhere)? == own.key_pem,
        "what the link pointed to is left as it was"
    );
    ensure!(
        daemon.log_text().contains("is a symbolic link"),
        "the journal says why nothing was kept"
    );
    Ok(())
}
