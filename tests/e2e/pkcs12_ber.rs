//! A PKCS#12 bundle written with BER, as Windows (CryptoAPI, certutil) and older Java keytool
//! write them, imported with the real CLI for a certificate the real `manual` plugin renews.

use anyhow::Result;
use certvakt_testkit::ber::pkcs12_to_ber;
use certvakt_testkit::harness::{Daemon, eventually};
use certvakt_testkit::{CaShape, KeyType, LeafSpec, TestCa};

use crate::common::{WAIT, bins, pair_matches, stderr, stdout};
use crate::renewal::{ManualSetup, import_file};

#[test]
fn a_bundle_written_with_ber_is_imported_with_its_key() -> Result<()> {
    let setup = ManualSetup::new()?;
    let daemon = Daemon::start(&bins()?, &setup.config, &[])?;
    eventually(WAIT, "the order task", || {
        daemon
            .tasks()
            .ok()?
            .into_iter()
            .find(|t| t.cert_id == "web")
    })?;
    // The authority made the key and delivers it in a bundle, from a Windows portal.
    let ca = TestCa::new(CaShape::Tls)?;
    let issued =
        ca.issue(&LeafSpec::tls_server(&["apotek-test.example"]).key_type(KeyType::EcP256))?;
    let der = issued.pkcs12_bytes("Vinter-2026")?;
    let ber = pkcs12_to_ber(&der)?;
    assert_ne!(ber, der);
    assert_eq!(&ber[..2], b"\x30\x80", "indefinite length on the PFX");

    // The wrong password is called that, not damage.
    let refused = import_file(
        &daemon,
        setup.path(),
        "web",
        "bundle-ber.p12",
        &ber,
        Some("feil"),
    )?;
    assert!(!refused.status.success(), "{}", stdout(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("does not open with the given password"),
        "{said}"
    );
    assert!(!said.contains("damaged"), "{said}");
    assert!(!setup.cert.exists());

    let taken = import_file(
        &daemon,
        setup.path(),
        "web",
        "bundle-ber.p12",
        &ber,
        Some("Vinter-2026"),
    )?;
    assert!(
        taken.status.success(),
        "{}{}",
        stdout(&taken),
        stderr(&taken)
    );
    let installed = eventually(WAIT, "the bundle's certificate to be installed", || {
        let now = std::fs::read_to_string(&setup.cert).ok()?;
        (now.trim() == issued.cert_pem.trim()).then_some(())
    });
    if let Err(e) = installed {
        anyhow::bail!("{e}\n{}", daemon.log_text());
    }
    assert!(
        pair_matches(&setup.cert, &setup.key)?,
        "the bundle's key is the live key"
    );
    let installed_key = certvakt::keys::PrivateKey::from_bytes(&std::fs::read(&setup.key)?)?;
    let delivered_key = certvakt::keys::PrivateKey::from_bytes(issued.key_pem.as_bytes())?;
    assert_eq!(
        installed_key.public_key_raw(),
        delivered_key.public_key_raw()
    );
    Ok(())
}
