//! Changes on disk are noticed by themselves (no reload, no polling loop in the test's favour),
//! and bad files are reported without stopping anything else.

use anyhow::Result;
use certvakt::control::protocol::{KeyCheck, ProblemKind};
use certvakt_testkit::badfiles;
use certvakt_testkit::harness::eventually;
use certvakt_testkit::{CaShape, LeafSpec, TestCa};

use crate::common::{Sample, WAIT, list_ids, problems};

#[test]
fn a_new_replaced_or_removed_file_is_noticed_without_a_reload() -> Result<()> {
    let s = Sample::start()?;
    let ca = TestCa::root_only(CaShape::Tls)?;
    let leaf = ca.issue(&LeafSpec::tls_server(&["new.apotek-test.example"]))?;
    let new = s.watched().join("arrived-later.pem");
    let id = new.display().to_string();

    std::fs::write(&new, &leaf.cert_pem)?;
    eventually(WAIT, "the new file to be listed", || {
        list_ids(&s.daemon).ok()?.contains(&id).then_some(())
    })?;

    // Replaced by garbage (atomically, as editors and deploy tools do): a problem, the others stay.
    let before = list_ids(&s.daemon)?.len();
    let tmp = s.watched().join(".arrived-later.tmp");
    std::fs::write(&tmp, b"this is not a certificate")?;
    std::fs::rename(&tmp, &new)?;
    eventually(WAIT, "the garbage to be reported", || {
        problems(&s.daemon)
            .ok()?
            .iter()
            .any(|(pid, kind)| *pid == id && *kind == ProblemKind::NotCertificate)
            .then_some(())
    })?;
    assert_eq!(list_ids(&s.daemon)?.len(), before - 1);

    std::fs::remove_file(&new)?;
    eventually(WAIT, "the removed file to be forgotten", || {
        let gone = !list_ids(&s.daemon).ok()?.contains(&id);
        let no_problem = !problems(&s.daemon).ok()?.iter().any(|(pid, _)| *pid == id);
        (gone && no_problem).then_some(())
    })?;
    Ok(())
}

#[test]
fn directories_symlink_loops_and_huge_files_are_reported_and_the_rest_goes_on() -> Result<()> {
    let s = Sample::start()?;
    let w = s.watched();
    let before = list_ids(&s.daemon)?.len();
    badfiles::make_directory(&w.join("a-folder.pem"))?;
    badfiles::make_symlink_loop(&w.join("loop-a.pem"), &w.join("loop-b.pem"))?;
    badfiles::write_huge(&w.join("huge.pem"), 2 * 1024 * 1024)?;
    let expected = [
        ("a-folder.pem", ProblemKind::IsDirectory),
        ("loop-a.pem", ProblemKind::SymlinkLoop),
        ("loop-b.pem", ProblemKind::SymlinkLoop),
        ("huge.pem", ProblemKind::TooLarge),
    ];
    eventually(WAIT, "every bad file to be reported", || {
        let found = problems(&s.daemon).ok()?;
        expected
            .iter()
            .all(|(name, kind)| {
                let id = w.join(name).display().to_string();
                found.iter().any(|(pid, k)| *pid == id && k == kind)
            })
            .then_some(())
    })?;
    assert_eq!(
        list_ids(&s.daemon)?.len(),
        before,
        "good files are still all there"
    );
    let (code, _) = s.daemon.status()?;
    assert_eq!(code, 2);
    Ok(())
}

#[test]
fn a_key_that_does_not_belong_to_its_certificate_is_a_problem() -> Result<()> {
    let s = Sample::start()?;
    let fmk = s
        .manifest
        .managed
        .iter()
        .find(|m| m.id == "dk-fmk")
        .map(|m| m.key.clone());
    let other = s
        .manifest
        .managed
        .iter()
        .find(|m| m.id == "no-nhn")
        .map(|m| m.key.clone());
    let (Some(fmk_key), Some(other_key)) = (fmk, other) else {
        anyhow::bail!("the sample set has dk-fmk and no-nhn");
    };
    let (_, shown) = s.daemon.show("dk-fmk")?;
    assert_eq!(shown.entries[0].key_check, KeyCheck::Matches);

    std::fs::copy(&other_key, &fmk_key)?;
    eventually(WAIT, "the mismatch to be reported", || {
        problems(&s.daemon)
            .ok()?
            .iter()
            .any(|(id, kind)| id == "dk-fmk" && *kind == ProblemKind::KeyMismatch)
            .then_some(())
    })?;
    let (code, shown) = s.daemon.show("dk-fmk")?;
    assert_eq!(shown.entries[0].key_check, KeyCheck::Mismatch);
    assert_eq!(code, 2);
    let log = s.daemon.log_text();
    assert!(
        !log.contains("PRIVATE KEY"),
        "key material must never be logged"
    );
    Ok(())
}

#[test]
fn a_managed_certificate_that_arrives_later_in_a_new_folder_is_noticed() -> Result<()> {
    use certvakt_testkit::harness::{Daemon, bins, config_toml};

    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("late/deeper");
    let cert = folder.join("cert.pem");
    let key = folder.join("key.pem");
    let body = format!(
        "[[certificate]]\nid = \"late\"\ncert = {:?}\nkey = {:?}\nplugin = \"acme\"\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, config_toml(dir.path(), "", &body))?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;
    assert!(
        problems(&daemon)?
            .iter()
            .any(|(id, kind)| id == "late" && *kind == ProblemKind::Missing),
        "{:?}",
        problems(&daemon)?
    );

    // As an operator would: create the folders, then put the pair in place.
    let ca = TestCa::root_only(CaShape::Tls)?;
    let leaf = ca.issue(&LeafSpec::tls_server(&["late.apotek-test.example"]))?;
    std::fs::create_dir_all(&folder)?;
    std::fs::write(&key, &leaf.key_pem)?;
    std::fs::write(&cert, &leaf.cert_pem)?;
    eventually(
        WAIT,
        "the late certificate to be found with its key",
        || {
            let (_, shown) = daemon.show("late").ok()?;
            (shown.entries.first()?.key_check == KeyCheck::Matches).then_some(())
        },
    )?;
    assert!(problems(&daemon)?.is_empty(), "{:?}", problems(&daemon)?);
    Ok(())
}
