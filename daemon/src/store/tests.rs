//! Store tests: real files in temp folders; crashes simulated at every step with the `fault`
//! countdown; disk full and ownership on a real tmpfs and real uids (these need root, as in CI).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::atomic::{self, FileSpec};
use super::fault;
use super::*;

const ID: &str = "fmk-prod.system_1";

fn version(tag: &str) -> VersionFiles {
    VersionFiles {
        set: Default::default(),
        key_pem: Some(Zeroizing::new(format!(
            "-----BEGIN PRIVATE KEY-----\nkey of {tag}\n-----END PRIVATE KEY-----\n"
        ))),
        cert_pem: format!(
            "-----BEGIN CERTIFICATE-----\ncert of {tag}\n-----END CERTIFICATE-----\n"
        ),
        chain_pem: format!(
            "-----BEGIN CERTIFICATE-----\nintermediate of {tag}\n-----END CERTIFICATE-----\n"
        ),
        pkcs12: Some(Zeroizing::new(
            format!("PKCS#12 bundle of {tag}").into_bytes(),
        )),
    }
}

fn live_paths(dir: &Path) -> LivePaths {
    LivePaths {
        legacy: None,
        set: Default::default(),
        cert: dir.join("org.crt"),
        key: Some(dir.join("org.key")),
        chain: Some(dir.join("chain.pem")),
        fullchain: Some(dir.join("fullchain.pem")),
        pkcs12: Some((dir.join("org.p12"), dir.join("org.p12.pass"))),
    }
}

struct Setup {
    // Dropped last: everything else lives inside it.
    tmp: tempfile::TempDir,
    store: Store,
    live: LivePaths,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let live_dir = tmp.path().join("live");
        fs::create_dir(&live_dir).unwrap();
        let store = Store::open(tmp.path().join("state")).unwrap();
        Setup {
            live: live_paths(&live_dir),
            store,
            tmp,
        }
    }

    fn live_dir(&self) -> PathBuf {
        self.tmp.path().join("live")
    }

    fn cert_dir(&self) -> PathBuf {
        self.tmp.path().join("state/certs").join(ID)
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Name, bytes and mode of every file in `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    names(dir)
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            (name, (fs::read(&path).unwrap(), mode_of(&path)))
        })
        .collect()
}

/// The tag of the version on the live paths, after checking that every live file is of it.
fn live_tag(live: &LivePaths) -> String {
    let cert = read(&live.cert);
    let tag = cert
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("cert of "))
        .unwrap_or_else(|| panic!("unexpected live certificate {cert:?}"))
        .to_string();
    let want = version(&tag);
    assert_eq!(
        read(live.key.as_ref().unwrap()),
        *want.key_pem.unwrap(),
        "live key is not of {tag}, the live certificate's version"
    );
    assert_eq!(read(live.chain.as_ref().unwrap()), want.chain_pem);
    assert_eq!(
        read(live.fullchain.as_ref().unwrap()),
        format!("{}{}", want.cert_pem, want.chain_pem)
    );
    assert_eq!(
        fs::read(&live.pkcs12.as_ref().unwrap().0).unwrap(),
        *want.pkcs12.unwrap()
    );
    tag
}

/// Every whole version still holds exactly what was staged as `v<n>`.
fn assert_versions_intact(store: &Store) {
    for n in store.versions(ID).unwrap() {
        let files = store.read_version(ID, n).unwrap();
        assert_eq!(files, version(&format!("v{n}")), "version {n} changed");
    }
}

fn assert_no_temps(dir: &Path) {
    let temps: Vec<String> = names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".certvakt-tmp"))
        .collect();
    assert!(
        temps.is_empty(),
        "temp files left in {}: {temps:?}",
        dir.display()
    );
}

// --- atomic -------------------------------------------------------------------------------

#[test]
fn write_file_creates_the_temp_with_the_final_mode_before_any_content() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("org.key");
    // An existing world-readable file: the new content must not inherit its mode.
    fs::write(&target, "old").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();

    let seen: Rc<RefCell<Vec<(PathBuf, u32, u64)>>> = Rc::default();
    let record = Rc::clone(&seen);
    fault::on_temp_created(move |temp| {
        let meta = fs::metadata(temp).unwrap();
        record.borrow_mut().push((
            temp.to_path_buf(),
            meta.permissions().mode() & 0o7777,
            meta.len(),
        ));
    });
    let result = atomic::write_file(&target, b"secret key", &FileSpec::mode(0o600));
    fault::clear_temp_hook();
    result.unwrap();

    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "one temp file per write");
    let (temp, mode_at_creation, len_at_creation) = &seen[0];
    assert_eq!(temp, &tmp.path().join(".org.key.certvakt-tmp"));
    assert_eq!(
        mode_at_creation & !0o600,
        0,
        "temp was created with mode {mode_at_creation:o}: readable beyond 0600"
    );
    assert_eq!(
        *len_at_creation, 0,
        "content existed before the mode was set"
    );
    assert_eq!(mode_of(&target), 0o600);
    assert_eq!(fs::read(&target).unwrap(), b"secret key");
    assert_eq!(names(tmp.path()), vec!["org.key"]);
}

#[test]
fn write_file_sets_the_exact_mode_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("org.crt");
    atomic::write_file(&cert, b"cert", &FileSpec::mode(0o644)).unwrap();
    assert_eq!(mode_of(&cert), 0o644);
    atomic::write_file(&cert, b"cert 2", &FileSpec::mode(0o640)).unwrap();
    assert_eq!(mode_of(&cert), 0o640);
    assert_eq!(fs::read(&cert).unwrap(), b"cert 2");
}

#[test]
fn write_file_replaces_a_stale_temp_and_never_follows_a_planted_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "untouched").unwrap();
    let target = tmp.path().join("org.key");
    std::os::unix::fs::symlink(&victim, tmp.path().join(".org.key.certvakt-tmp")).unwrap();

    atomic::write_file(&target, b"key", &FileSpec::mode(0o600)).unwrap();

    assert_eq!(read(&victim), "untouched");
    assert_eq!(fs::read(&target).unwrap(), b"key");
    assert!(!fs::symlink_metadata(&target).unwrap().is_symlink());
    assert_eq!(names(tmp.path()), vec!["org.key", "victim"]);
}

#[test]
fn a_crash_before_the_rename_leaves_the_target_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("state.json");
    fs::write(&target, "old").unwrap();
    fault::arm(0);
    let err = atomic::write_file(&target, b"new", &FileSpec::mode(0o640)).unwrap_err();
    fault::reset();
    assert!(matches!(err, StoreError::Injected { .. }), "{err}");
    assert_eq!(read(&target), "old");
    // The next write finds the crash's temp and replaces it.
    atomic::write_file(&target, b"new", &FileSpec::mode(0o640)).unwrap();
    assert_eq!(read(&target), "new");
    assert_eq!(names(tmp.path()), vec!["state.json"]);
}

#[test]
fn read_json_names_file_and_line_and_leaves_a_broken_file_alone() {
    let s = Setup::new();
    s.store
        .save_state(ID, &serde_json::json!({"step": "due"}))
        .unwrap();
    let path = s.store.state_path(ID).unwrap();
    assert_eq!(path, s.cert_dir().join("state.json"));
    let broken = "{\n  \"step\": \"ordered\",\n  oops\n}\n";
    fs::write(&path, broken).unwrap();

    let err = s.store.load_state::<serde_json::Value>(ID).unwrap_err();
    let StoreError::Parse {
        path: err_path,
        line,
        ..
    } = &err
    else {
        panic!("expected a parse error, got {err}");
    };
    assert_eq!(err_path, &path);
    assert_eq!(*line, 3);
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert_eq!(read(&path), broken, "a broken file must not be replaced");
}

// --- state, history, folders ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EngineState {
    step: String,
    done: bool,
}

#[test]
fn state_is_saved_and_loaded_whole() {
    let s = Setup::new();
    assert_eq!(s.store.load_state::<EngineState>(ID).unwrap(), None);
    let about = EngineState {
        step: "ordered".into(),
        done: false,
    };
    s.store.save_state(ID, &about).unwrap();
    assert_eq!(s.store.load_state::<EngineState>(ID).unwrap(), Some(about));
    let done = EngineState {
        step: "ordered".into(),
        done: true,
    };
    s.store.save_state(ID, &done).unwrap();
    assert_eq!(s.store.load_state::<EngineState>(ID).unwrap(), Some(done));
    assert_eq!(mode_of(&s.store.state_path(ID).unwrap()), 0o640);
    assert_no_temps(&s.cert_dir());
}

#[test]
fn history_appends_lines_and_survives_a_torn_last_line() {
    let s = Setup::new();
    assert!(
        s.store
            .read_history::<EngineState>(ID, 10)
            .unwrap()
            .is_empty()
    );
    let rec = |step: &str| EngineState {
        step: step.into(),
        done: true,
    };
    for step in ["due", "key generated", "ordered"] {
        s.store.append_history(ID, &rec(step)).unwrap();
    }
    assert_eq!(
        s.store.read_history::<EngineState>(ID, 2).unwrap(),
        vec![rec("key generated"), rec("ordered")]
    );
    let path = s.cert_dir().join("history.jsonl");
    assert_eq!(mode_of(&path), 0o640);

    // A power cut in the middle of an append.
    let mut text = read(&path);
    text.push_str("{\"step\":\"iss");
    fs::write(&path, &text).unwrap();
    assert_eq!(
        s.store.read_history::<EngineState>(ID, 10).unwrap().len(),
        3
    );

    s.store
        .append_history(ID, &rec("issued\nwith a newline in it"))
        .unwrap();
    let all = s.store.read_history::<EngineState>(ID, 10).unwrap();
    assert_eq!(
        all,
        vec![
            rec("due"),
            rec("key generated"),
            rec("ordered"),
            rec("issued\nwith a newline in it")
        ]
    );
    assert_eq!(read(&path).lines().count(), 4);

    // A damaged complete line is reported with its number, not skipped.
    let damaged: Vec<String> = read(&path)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 1 {
                "garbage".into()
            } else {
                l.to_string()
            }
        })
        .collect();
    fs::write(&path, damaged.join("\n") + "\n").unwrap();
    match s.store.read_history::<EngineState>(ID, 10) {
        Err(StoreError::Parse {
            line: 2, path: p, ..
        }) => assert_eq!(p, path),
        other => panic!("expected a parse error at line 2, got {other:?}"),
    }
    // The records after it can still be read.
    assert_eq!(s.store.read_history::<EngineState>(ID, 2).unwrap().len(), 2);
}

#[test]
fn folders_are_created_on_demand_with_mode_0750() {
    let s = Setup::new();
    let state = s.tmp.path().join("state");
    assert_eq!(mode_of(&state.join("certs")), 0o750);
    let outbox = s.store.outbox(ID).unwrap();
    let inbox = s.store.inbox(ID).unwrap();
    let plugin = s.store.plugin_state_dir("dk-fmk").unwrap();
    assert_eq!(outbox, s.cert_dir().join("outbox"));
    assert_eq!(inbox, s.cert_dir().join("inbox"));
    assert_eq!(plugin, state.join("plugins/dk-fmk"));
    for dir in [
        &outbox,
        &inbox,
        &plugin,
        &s.cert_dir(),
        &state.join("plugins"),
    ] {
        assert!(dir.is_dir(), "{}", dir.display());
        assert_eq!(mode_of(dir), 0o750, "{}", dir.display());
    }
    // A second call finds them.
    assert_eq!(s.store.outbox(ID).unwrap(), outbox);
}

#[test]
fn ids_that_could_leave_the_store_are_refused() {
    let s = Setup::new();
    let long = "a".repeat(65);
    let bad = [
        "", "..", "../etc", "a/b", "/abs", "a..b", ".hidden", "-x", "x y", "å", &long,
    ];
    for id in bad {
        let refused = |r: Result<PathBuf>| matches!(r, Err(StoreError::InvalidName { .. }));
        assert!(refused(s.store.outbox(id)), "outbox({id:?})");
        assert!(refused(s.store.state_path(id)), "state_path({id:?})");
        assert!(
            refused(s.store.plugin_state_dir(id)),
            "plugin_state_dir({id:?})"
        );
        assert!(matches!(
            s.store.stage(id, &version("v1")),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            s.store.save_state(id, &1),
            Err(StoreError::InvalidName { .. })
        ));
    }
    assert!(names(&s.tmp.path().join("state/certs")).is_empty());
    assert_eq!(names(s.tmp.path()), vec!["live", "state"]);
    assert_eq!(names(&s.tmp.path().join("state")), vec!["certs"]);
    // The longest allowed id is fine.
    let ok = "a".repeat(64);
    s.store.outbox(&ok).unwrap();
}

// --- versions -------------------------------------------------------------------------------

#[test]
fn stage_writes_whole_versions_with_their_modes() {
    let s = Setup::new();
    assert!(s.store.versions(ID).unwrap().is_empty());
    let n = s.store.stage(ID, &version("v1")).unwrap();
    assert_eq!(n, VersionId(1));
    assert_eq!(s.store.stage(ID, &version("v2")).unwrap(), VersionId(2));
    assert_eq!(
        s.store.versions(ID).unwrap(),
        vec![VersionId(1), VersionId(2)]
    );

    let paths = s.store.version_files(ID, n).unwrap();
    let dir = s.cert_dir().join("versions/1");
    assert_eq!(paths.dir, dir);
    assert_eq!(paths.key.as_deref(), Some(dir.join("key.pem").as_path()));
    assert_eq!(
        paths.pkcs12.as_deref(),
        Some(dir.join("bundle.p12").as_path())
    );
    assert_eq!(mode_of(paths.key.as_ref().unwrap()), 0o600);
    assert_eq!(mode_of(paths.pkcs12.as_ref().unwrap()), 0o600);
    assert_eq!(mode_of(&paths.cert), 0o644);
    assert_eq!(mode_of(&paths.chain), 0o644);
    assert_eq!(mode_of(&dir), 0o750);
    assert_eq!(
        names(&dir),
        vec!["bundle.p12", "cert.pem", "chain.pem", "key.pem"]
    );
    assert_eq!(s.store.read_version(ID, n).unwrap(), version("v1"));

    assert!(matches!(
        s.store.read_version(ID, VersionId(9)),
        Err(StoreError::NoSuchVersion {
            version: VersionId(9),
            ..
        })
    ));

    // A version without key and bundle (the key stays in a token).
    let bare = VersionFiles {
        key_pem: None,
        pkcs12: None,
        ..version("v3")
    };
    let n3 = s.store.stage(ID, &bare).unwrap();
    let paths = s.store.version_files(ID, n3).unwrap();
    assert_eq!((paths.key, paths.pkcs12), (None, None));
    assert_eq!(s.store.read_version(ID, n3).unwrap(), bare);
}

#[test]
fn a_left_over_partial_folder_is_ignored_removed_and_its_number_not_reused() {
    let s = Setup::new();
    s.store.stage(ID, &version("v1")).unwrap();
    // What a crash in the middle of staging version 2 leaves.
    let partial = s.cert_dir().join("versions/2.partial");
    fs::create_dir(&partial).unwrap();
    fs::write(partial.join("key.pem"), "half a key").unwrap();

    assert_eq!(s.store.versions(ID).unwrap(), vec![VersionId(1)]);
    assert!(matches!(
        s.store.read_version(ID, VersionId(2)),
        Err(StoreError::NoSuchVersion { .. })
    ));
    let n = s.store.stage(ID, &version("v3")).unwrap();
    assert_eq!(n, VersionId(3));
    assert!(!partial.exists());
    assert_eq!(names(&s.cert_dir().join("versions")), vec!["1", "3"]);
}

#[test]
fn a_crash_at_any_step_of_stage_leaves_no_version_and_burns_its_number() {
    let mut crashes = 0;
    for k in 0.. {
        let s = Setup::new();
        s.store.stage(ID, &version("v1")).unwrap();
        fault::arm(k);
        let result = s.store.stage(ID, &version("v2"));
        fault::reset();
        match result {
            Ok(n) => {
                assert_eq!(n, VersionId(2));
                break;
            }
            Err(StoreError::Injected { .. }) => crashes += 1,
            Err(err) => panic!("step {k}: {err}"),
        }
        // Restart.
        let versions = s.store.versions(ID).unwrap();
        assert_eq!(versions, vec![VersionId(1)], "crash at step {k}");
        assert_versions_intact(&s.store);
        s.store.recover(ID, &s.live, &Ownership::default()).unwrap();
        let left: Vec<String> = names(&s.cert_dir().join("versions"));
        assert_eq!(left, vec!["1"], "crash at step {k}: recover left {left:?}");
        let n = s.store.stage(ID, &version("v3")).unwrap();
        assert!(n > VersionId(1), "crash at step {k}: number {n} reused");
        if k > 0 {
            // The number was taken before the crash at every step after the counter write.
            assert_eq!(n, VersionId(3), "crash at step {k}");
        }
    }
    assert!(crashes >= 5, "only {crashes} crash points in stage");
}

// --- install, rollback, retire --------------------------------------------------------------

#[test]
fn install_rollback_and_retire() {
    let s = Setup::new();
    let own = Ownership::default();
    let v1 = s.store.stage(ID, &version("v1")).unwrap();
    assert_eq!(s.store.current(ID).unwrap(), None);
    s.store.install(ID, v1, &s.live, &own).unwrap();
    assert_eq!(live_tag(&s.live), "v1");
    assert_eq!(
        read(s.live.fullchain.as_ref().unwrap()),
        "-----BEGIN CERTIFICATE-----\ncert of v1\n-----END CERTIFICATE-----\n\
         -----BEGIN CERTIFICATE-----\nintermediate of v1\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(mode_of(s.live.key.as_ref().unwrap()), 0o600);
    assert_eq!(mode_of(&s.live.pkcs12.as_ref().unwrap().0), 0o600);
    assert_eq!(mode_of(&s.live.cert), 0o644);
    assert_eq!(mode_of(s.live.chain.as_ref().unwrap()), 0o644);
    assert_eq!(mode_of(s.live.fullchain.as_ref().unwrap()), 0o644);
    assert_eq!(
        (s.store.current(ID).unwrap(), s.store.previous(ID).unwrap()),
        (Some(v1), None)
    );
    let err = s.store.rollback(ID, &s.live, &own).unwrap_err();
    assert!(matches!(err, StoreError::NoPrevious { .. }), "{err}");
    assert!(err.to_string().contains("no previous version"), "{err}");
    assert_eq!(live_tag(&s.live), "v1");

    let v2 = s.store.stage(ID, &version("v2")).unwrap();
    s.store.install(ID, v2, &s.live, &own).unwrap();
    assert_eq!(live_tag(&s.live), "v2");
    assert_eq!(
        (s.store.current(ID).unwrap(), s.store.previous(ID).unwrap()),
        (Some(v2), Some(v1))
    );
    // Installing the live version again changes nothing.
    s.store.install(ID, v2, &s.live, &own).unwrap();
    assert_eq!(
        (s.store.current(ID).unwrap(), s.store.previous(ID).unwrap()),
        (Some(v2), Some(v1))
    );

    assert_eq!(s.store.rollback(ID, &s.live, &own).unwrap(), v1);
    assert_eq!(live_tag(&s.live), "v1");
    assert_eq!(
        (s.store.current(ID).unwrap(), s.store.previous(ID).unwrap()),
        (Some(v1), Some(v2))
    );
    assert_eq!(s.store.rollback(ID, &s.live, &own).unwrap(), v2);
    assert_eq!(live_tag(&s.live), "v2");

    for tag in ["v3", "v4", "v5"] {
        let n = s.store.stage(ID, &version(tag)).unwrap();
        s.store.install(ID, n, &s.live, &own).unwrap();
    }
    assert_eq!(live_tag(&s.live), "v5");
    assert_eq!(
        (s.store.current(ID).unwrap(), s.store.previous(ID).unwrap()),
        (Some(VersionId(5)), Some(VersionId(4)))
    );
    assert_eq!(s.store.versions(ID).unwrap().len(), 5);

    assert_eq!(
        s.store.retire(ID, 1).unwrap(),
        vec![VersionId(1), VersionId(2)]
    );
    assert_eq!(
        s.store.versions(ID).unwrap(),
        vec![VersionId(3), VersionId(4), VersionId(5)]
    );
    assert_eq!(s.store.retire(ID, 0).unwrap(), vec![VersionId(3)]);
    assert_eq!(s.store.retire(ID, 0).unwrap(), Vec::<VersionId>::new());
    assert_eq!(
        s.store.versions(ID).unwrap(),
        vec![VersionId(4), VersionId(5)]
    );
    assert_versions_intact(&s.store);
    // Numbers go on after retiring.
    assert_eq!(s.store.stage(ID, &version("v6")).unwrap(), VersionId(6));

    // Rollback still works: the previous version was kept.
    assert_eq!(s.store.rollback(ID, &s.live, &own).unwrap(), VersionId(4));
    assert_eq!(live_tag(&s.live), "v4");

    assert_no_temps(&s.live_dir());
    assert_eq!(names(&s.live_dir()).len(), 5);
    assert!(!s.cert_dir().join("install.json").exists());
}

#[test]
fn install_refuses_a_version_without_a_configured_file_and_two_files_on_one_path() {
    let s = Setup::new();
    let own = Ownership::default();
    let v1 = s.store.stage(ID, &version("v1")).unwrap();
    s.store.install(ID, v1, &s.live, &own).unwrap();
    let before = snapshot(&s.live_dir());

    let keyless = s
        .store
        .stage(
            ID,
            &VersionFiles {
                key_pem: None,
                ..version("v2")
            },
        )
        .unwrap();
    match s.store.install(ID, keyless, &s.live, &own) {
        Err(StoreError::MissingFile {
            what: "key", path, ..
        }) => {
            assert_eq!(path, s.cert_dir().join("versions/2/key.pem"));
        }
        other => panic!("expected a missing key, got {other:?}"),
    }
    let mut same = s.live.clone();
    same.fullchain = Some(same.cert.clone());
    let v3 = s.store.stage(ID, &version("v3")).unwrap();
    assert!(matches!(
        s.store.install(ID, v3, &same, &own),
        Err(StoreError::BadTarget { .. })
    ));
    assert!(matches!(
        s.store.install(ID, VersionId(42), &s.live, &own),
        Err(StoreError::NoSuchVersion { .. })
    ));
    assert_eq!(snapshot(&s.live_dir()), before);
    assert_eq!(s.store.current(ID).unwrap(), Some(v1));
}

#[test]
fn a_crash_at_any_step_of_install_is_finished_or_undone_by_recover() {
    let own = Ownership::default();
    let mut outcomes = BTreeMap::new();
    for k in 0.. {
        let s = Setup::new();
        let v1 = s.store.stage(ID, &version("v1")).unwrap();
        s.store.install(ID, v1, &s.live, &own).unwrap();
        let v2 = s.store.stage(ID, &version("v2")).unwrap();

        fault::arm(k);
        let result = s.store.install(ID, v2, &s.live, &own);
        fault::reset();
        match result {
            Ok(()) => break,
            Err(StoreError::Injected { .. }) => {}
            Err(err) => panic!("step {k}: {err}"),
        }

        // Restart.
        let had_intent = s.cert_dir().join("install.json").exists();
        let finished = s.store.recover(ID, &s.live, &own).unwrap();
        assert_eq!(finished, had_intent.then_some(v2), "step {k}");
        let tag = live_tag(&s.live);
        match tag.as_str() {
            "v1" => {
                assert_eq!(s.store.current(ID).unwrap(), Some(v1), "step {k}");
                assert_eq!(s.store.previous(ID).unwrap(), None, "step {k}");
            }
            "v2" => {
                assert_eq!(s.store.current(ID).unwrap(), Some(v2), "step {k}");
                assert_eq!(s.store.previous(ID).unwrap(), Some(v1), "step {k}");
            }
            other => panic!("step {k}: live version {other}"),
        }
        *outcomes.entry(tag.clone()).or_insert(0) += 1;
        assert_versions_intact(&s.store);
        assert_eq!(s.store.versions(ID).unwrap(), vec![v1, v2], "step {k}");
        assert_no_temps(&s.live_dir());
        assert_no_temps(&s.cert_dir());
        assert!(!s.cert_dir().join("install.json").exists(), "step {k}");
        // A second recover has nothing to do.
        assert_eq!(s.store.recover(ID, &s.live, &own).unwrap(), None);
        // And the engine can go on: rollback lands on a whole version.
        if tag == "v2" {
            assert_eq!(s.store.rollback(ID, &s.live, &own).unwrap(), v1);
            assert_eq!(live_tag(&s.live), "v1");
        }
    }
    // Before the switch: 5 live temps and the intent's temp. After it: the intent recorded, 5
    // renames, the current record (temp, rename) and the intent's removal.
    assert_eq!(outcomes.get("v1"), Some(&6), "{outcomes:?}");
    assert_eq!(outcomes.get("v2"), Some(&9), "{outcomes:?}");
}

#[test]
fn a_crash_at_any_step_of_rollback_is_finished_or_undone_by_recover() {
    let own = Ownership::default();
    let mut crashes = 0;
    for k in 0.. {
        let s = Setup::new();
        for tag in ["v1", "v2"] {
            let n = s.store.stage(ID, &version(tag)).unwrap();
            s.store.install(ID, n, &s.live, &own).unwrap();
        }
        fault::arm(k);
        let result = s.store.rollback(ID, &s.live, &own);
        fault::reset();
        match result {
            Ok(n) => {
                assert_eq!(n, VersionId(1));
                break;
            }
            Err(StoreError::Injected { .. }) => crashes += 1,
            Err(err) => panic!("step {k}: {err}"),
        }
        s.store.recover(ID, &s.live, &own).unwrap();
        let tag = live_tag(&s.live);
        let (current, previous) = (s.store.current(ID).unwrap(), s.store.previous(ID).unwrap());
        match tag.as_str() {
            "v2" => assert_eq!(
                (current, previous),
                (Some(VersionId(2)), Some(VersionId(1)))
            ),
            "v1" => assert_eq!(
                (current, previous),
                (Some(VersionId(1)), Some(VersionId(2)))
            ),
            other => panic!("step {k}: live version {other}"),
        }
        assert_versions_intact(&s.store);
        assert_no_temps(&s.live_dir());
    }
    assert_eq!(crashes, 15);
}

#[test]
fn a_crash_while_retiring_never_leaves_a_version_without_its_key() {
    let s = Setup::new();
    let own = Ownership::default();
    for tag in ["v1", "v2", "v3", "v4"] {
        let n = s.store.stage(ID, &version(tag)).unwrap();
        s.store.install(ID, n, &s.live, &own).unwrap();
    }
    fault::arm(0);
    let err = s.store.retire(ID, 0).unwrap_err();
    fault::reset();
    assert!(matches!(err, StoreError::Injected { .. }), "{err}");
    assert_eq!(
        names(&s.cert_dir().join("versions")),
        vec!["1.retiring", "2", "3", "4"]
    );
    assert_eq!(
        s.store.versions(ID).unwrap(),
        vec![VersionId(2), VersionId(3), VersionId(4)]
    );
    assert_versions_intact(&s.store);
    s.store.recover(ID, &s.live, &own).unwrap();
    assert_eq!(names(&s.cert_dir().join("versions")), vec!["2", "3", "4"]);
    assert_eq!(s.store.retire(ID, 0).unwrap(), vec![VersionId(2)]);
    assert_eq!(live_tag(&s.live), "v4");
}

#[test]
fn retire_keeps_the_version_an_unfinished_install_points_at() {
    let s = Setup::new();
    let own = Ownership::default();
    for tag in ["v1", "v2", "v3"] {
        s.store.stage(ID, &version(tag)).unwrap();
    }
    s.store.install(ID, VersionId(1), &s.live, &own).unwrap();
    // Crash right after the intent for version 3 is recorded.
    fault::arm(6);
    let err = s
        .store
        .install(ID, VersionId(3), &s.live, &own)
        .unwrap_err();
    fault::reset();
    assert!(
        matches!(
            err,
            StoreError::Injected {
                what: "install intent recorded",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(s.store.retire(ID, 0).unwrap(), vec![VersionId(2)]);
    assert_eq!(
        s.store.recover(ID, &s.live, &own).unwrap(),
        Some(VersionId(3))
    );
    assert_eq!(live_tag(&s.live), "v3");
}

// --- root: disk full and ownership ----------------------------------------------------------

fn require_root(test: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{test} must run as root (it mounts a tmpfs / sets file owners); CI runs the tests as root"
    );
}

/// A tiny tmpfs mounted on `dir` for the life of the guard.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed ({status}): the disk-full tests need root with CAP_SYS_ADMIN",
            dir.display()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_during_install_leaves_the_old_live_files_byte_identical() {
    require_root("a_full_disk_during_install_leaves_the_old_live_files_byte_identical");
    let s = Setup::new();
    let _tmpfs = Tmpfs::mount(&s.live_dir(), "64k");
    let own = Ownership::default();
    let v1 = s.store.stage(ID, &version("v1")).unwrap();
    s.store.install(ID, v1, &s.live, &own).unwrap();
    let before = snapshot(&s.live_dir());
    assert_eq!(before.len(), 5);

    // The chain alone is larger than the whole file system.
    let mut big = version("v2");
    big.chain_pem.push_str(&"A".repeat(100 * 1024));
    let v2 = s.store.stage(ID, &big).unwrap();
    let err = s.store.install(ID, v2, &s.live, &own).unwrap_err();
    match &err {
        StoreError::Io { source, path, .. } => {
            assert_eq!(source.raw_os_error(), Some(nix::libc::ENOSPC), "{err}");
            assert!(path.starts_with(s.live_dir()), "{err}");
        }
        other => panic!("expected ENOSPC, got {other}"),
    }

    assert_eq!(snapshot(&s.live_dir()), before, "old live files changed");
    assert_no_temps(&s.live_dir());
    assert_eq!(s.store.current(ID).unwrap(), Some(v1));
    assert!(!s.cert_dir().join("install.json").exists());
    assert_eq!(s.store.recover(ID, &s.live, &own).unwrap(), None);
    assert_eq!(snapshot(&s.live_dir()), before);
    assert_eq!(s.store.read_version(ID, v2).unwrap(), big);
}

#[test]
fn a_full_disk_during_stage_leaves_no_version_behind() {
    require_root("a_full_disk_during_stage_leaves_no_version_behind");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _tmpfs = Tmpfs::mount(&state, "64k");
    let store = Store::open(&state).unwrap();
    assert_eq!(store.stage(ID, &version("v1")).unwrap(), VersionId(1));

    let mut big = version("v2");
    big.cert_pem.push_str(&"A".repeat(100 * 1024));
    let err = store.stage(ID, &big).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io { source, .. } if source.raw_os_error() == Some(nix::libc::ENOSPC)),
        "{err}"
    );
    let versions = state.join("certs").join(ID).join("versions");
    assert_eq!(names(&versions), vec!["1"]);
    assert_eq!(store.versions(ID).unwrap(), vec![VersionId(1)]);
    assert_eq!(store.read_version(ID, VersionId(1)).unwrap(), version("v1"));
    // The number of the failed staging is not handed out again.
    assert_eq!(store.stage(ID, &version("v3")).unwrap(), VersionId(3));
}

#[test]
fn live_files_get_the_configured_owner_group_and_modes() {
    require_root("live_files_get_the_configured_owner_group_and_modes");
    let s = Setup::new();
    let own = Ownership {
        owner: Some(65534),
        group: Some(65534),
        key_mode: 0o640,
        cert_mode: 0o644,
    };
    let v1 = s.store.stage(ID, &version("v1")).unwrap();
    s.store.install(ID, v1, &s.live, &own).unwrap();
    let key = fs::metadata(s.live.key.as_ref().unwrap()).unwrap();
    assert_eq!(
        (key.uid(), key.gid(), key.mode() & 0o7777),
        (65534, 65534, 0o640)
    );
    let p12 = fs::metadata(&s.live.pkcs12.as_ref().unwrap().0).unwrap();
    assert_eq!(
        (p12.uid(), p12.gid(), p12.mode() & 0o7777),
        (65534, 65534, 0o640)
    );
    for path in [
        &s.live.cert,
        s.live.chain.as_ref().unwrap(),
        s.live.fullchain.as_ref().unwrap(),
    ] {
        let meta = fs::metadata(path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (65534, 65534, 0o644),
            "{}",
            path.display()
        );
    }
    // The store's own copies stay the daemon's.
    let staged = fs::metadata(s.cert_dir().join("versions/1/key.pem")).unwrap();
    assert_eq!((staged.uid(), staged.mode() & 0o7777), (0, 0o600));

    // Only the group changes; the owner stays the daemon's.
    let group_only = Ownership {
        owner: None,
        group: Some(65534),
        ..Ownership::default()
    };
    let v2 = s.store.stage(ID, &version("v2")).unwrap();
    s.store.install(ID, v2, &s.live, &group_only).unwrap();
    let key = fs::metadata(s.live.key.as_ref().unwrap()).unwrap();
    assert_eq!(
        (key.uid(), key.gid(), key.mode() & 0o7777),
        (0, 65534, 0o600)
    );
}

#[test]
fn a_read_only_live_folder_keeps_the_old_files_and_says_how_to_allow_writing() {
    require_root("a_read_only_live_folder_keeps_the_old_files_and_says_how_to_allow_writing");
    let s = Setup::new();
    let _tmpfs = Tmpfs::mount(&s.live_dir(), "1m");
    let own = Ownership::default();
    let v1 = s.store.stage(ID, &version("v1")).unwrap();
    s.store.install(ID, v1, &s.live, &own).unwrap();
    let before = snapshot(&s.live_dir());

    // What ProtectSystem=strict does to a folder the unit does not list.
    let status = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(s.live_dir())
        .status()
        .expect("run mount");
    assert!(status.success(), "remount read-only failed ({status})");
    let live_dir = s.live_dir();
    assert_eq!(
        s.live.folders_not_writable(),
        vec![(live_dir.as_path(), nix::errno::Errno::EROFS)]
    );
    let v2 = s.store.stage(ID, &version("v2")).unwrap();
    let err = s.store.install(ID, v2, &s.live, &own).unwrap_err();
    let text = err.to_string();
    match &err {
        StoreError::Io { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(nix::libc::EROFS), "{text}");
        }
        other => panic!("expected EROFS, got {other}"),
    }
    let hint = format!("ReadWritePaths={}", s.live_dir().display());
    assert!(text.contains(&hint), "{text}");
    assert!(text.contains("systemctl edit certvakt"), "{text}");
    assert_eq!(snapshot(&s.live_dir()), before, "old live files changed");
    assert_eq!(s.store.current(ID).unwrap(), Some(v1));
}
