//! Store tests for certificate sets: a version holds every role, an install switches every
//! role or none (also across a crash at any step), rollback goes back to the whole previous
//! set, and the replaced version's legacy files stay until they are removed.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::fault;
use super::*;

const ID: &str = "virksomhet";

fn role_files(tag: &str, role: &str) -> VersionFiles {
    VersionFiles::single(
        Some(Zeroizing::new(format!(
            "-----BEGIN PRIVATE KEY-----\n{role} key of {tag}\n-----END PRIVATE KEY-----\n"
        ))),
        format!("-----BEGIN CERTIFICATE-----\n{role} cert of {tag}\n-----END CERTIFICATE-----\n"),
        format!("-----BEGIN CERTIFICATE-----\nCA of {tag}\n-----END CERTIFICATE-----\n"),
        None,
    )
}

/// A Commfides-shaped set: authentication (primary), encryption, signing.
fn set_version(tag: &str) -> VersionFiles {
    let mut files = role_files(tag, "authentication");
    for role in ["encryption", "signing"] {
        files.set.insert(role.into(), role_files(tag, role));
    }
    files
}

fn live(dir: &Path) -> LivePaths {
    let role = |name: &str, legacy: bool| LivePaths {
        cert: dir.join(format!("{name}.pem")),
        key: Some(dir.join(format!("{name}.key"))),
        chain: None,
        fullchain: None,
        pkcs12: None,
        legacy: legacy.then(|| {
            (
                dir.join(format!("legacy-{name}.pem")),
                dir.join(format!("legacy-{name}.key")),
            )
        }),
        set: BTreeMap::new(),
    };
    LivePaths {
        set: BTreeMap::from([
            ("encryption".to_owned(), role("encryption", true)),
            ("signing".to_owned(), role("signing", false)),
        ]),
        ..role("authentication", false)
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tag of the set on the live paths, after checking that every role's files are of it.
fn live_tag(live: &LivePaths) -> String {
    let cert = read(&live.cert);
    let tag = cert
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("authentication cert of "))
        .unwrap_or_else(|| panic!("unexpected live certificate {cert:?}"))
        .to_string();
    for (role, member) in std::iter::once(("authentication", live)).chain(
        live.set
            .iter()
            .map(|(role, member)| (role.as_str(), member)),
    ) {
        let want = role_files(&tag, role);
        assert_eq!(read(&member.cert), want.cert_pem, "{role} is not of {tag}");
        assert_eq!(
            read(member.key.as_ref().unwrap()),
            *want.key_pem.unwrap(),
            "{role} key is not of {tag}"
        );
    }
    tag
}

fn setup() -> (tempfile::TempDir, Store, LivePaths) {
    let tmp = tempfile::tempdir().unwrap();
    let live_dir = tmp.path().join("live");
    fs::create_dir(&live_dir).unwrap();
    let store = Store::open(tmp.path().join("state")).unwrap();
    let live = live(&live_dir);
    (tmp, store, live)
}

#[test]
fn a_set_is_staged_and_read_back_whole_with_every_key_0600() {
    let (tmp, store, _) = setup();
    let n = store.stage(ID, &set_version("v1")).unwrap();
    assert_eq!(store.read_version(ID, n).unwrap(), set_version("v1"));
    let dir = tmp.path().join("state/certs").join(ID).join("versions/1");
    for key in ["key.pem", "encryption/key.pem", "signing/key.pem"] {
        let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
}

#[test]
fn a_version_without_a_configured_role_is_not_installed_and_nothing_changes() {
    let (_tmp, store, live) = setup();
    let own = Ownership::default();
    let v1 = store.stage(ID, &set_version("v1")).unwrap();
    store.install(ID, v1, &live, &own).unwrap();
    let mut partial = set_version("v2");
    partial.set.remove("signing");
    let v2 = store.stage(ID, &partial).unwrap();
    let err = store.install(ID, v2, &live, &own).unwrap_err().to_string();
    assert!(err.contains("signing"), "{err}");
    assert_eq!(live_tag(&live), "v1");
    assert_eq!(store.current(ID).unwrap(), Some(v1));
}

#[test]
fn the_replaced_encryption_key_stays_on_its_legacy_path_until_removed() {
    let (_tmp, store, live) = setup();
    let own = Ownership::default();
    let legacy = live.set["encryption"].legacy.clone().unwrap();
    let v1 = store.stage(ID, &set_version("v1")).unwrap();
    store.install(ID, v1, &live, &own).unwrap();
    assert!(!legacy.0.exists(), "a first install has nothing to keep");

    let v2 = store.stage(ID, &set_version("v2")).unwrap();
    store.install(ID, v2, &live, &own).unwrap();
    assert_eq!(live_tag(&live), "v2");
    let old = role_files("v1", "encryption");
    assert_eq!(read(&legacy.0), old.cert_pem);
    assert_eq!(read(&legacy.1), *old.key_pem.unwrap());
    assert_eq!(
        fs::metadata(&legacy.1).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let removed = store.remove_legacy(ID, &live).unwrap();
    assert_eq!(removed, vec![legacy.0.clone(), legacy.1.clone()]);
    assert!(!legacy.0.exists() && !legacy.1.exists());
    assert_eq!(live_tag(&live), "v2", "the live set is untouched");
    assert!(store.remove_legacy(ID, &live).unwrap().is_empty());
}

#[test]
fn rollback_brings_back_every_role_of_the_previous_set() {
    let (_tmp, store, live) = setup();
    let own = Ownership::default();
    for tag in ["v1", "v2"] {
        let n = store.stage(ID, &set_version(tag)).unwrap();
        store.install(ID, n, &live, &own).unwrap();
    }
    assert_eq!(store.rollback(ID, &live, &own).unwrap(), VersionId(1));
    assert_eq!(live_tag(&live), "v1");
}

#[test]
fn a_crash_at_any_step_of_a_set_install_ends_with_one_whole_set_live() {
    let own = Ownership::default();
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    for k in 0.. {
        let (_tmp, store, live) = setup();
        let v1 = store.stage(ID, &set_version("v1")).unwrap();
        store.install(ID, v1, &live, &own).unwrap();
        let v2 = store.stage(ID, &set_version("v2")).unwrap();

        fault::arm(k);
        let result = store.install(ID, v2, &live, &own);
        fault::reset();
        match result {
            Ok(()) => break,
            Err(StoreError::Injected { .. }) => {}
            Err(err) => panic!("step {k}: {err}"),
        }
        store.recover(ID, &live, &own).unwrap();
        let tag = live_tag(&live);
        let expected_current = if tag == "v2" { v2 } else { v1 };
        assert_eq!(
            store.current(ID).unwrap(),
            Some(expected_current),
            "step {k}"
        );
        *outcomes.entry(tag).or_default() += 1;
    }
    // Both outcomes happen: crashes before the intent leave v1 whole, after it v2.
    assert!(outcomes.get("v1").is_some_and(|n| *n > 0), "{outcomes:?}");
    assert!(outcomes.get("v2").is_some_and(|n| *n > 0), "{outcomes:?}");
}
