//! The configuration: a main file and a drop-in in `conf.d/` (parts separated by
//! `certvakt_fuzz::SEPARATOR`), loaded and validated as `check-config` does.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static (tempfile::TempDir, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        // Memory, where there is a tmpfs: one write per input.
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary folder");
        std::fs::create_dir(dir.path().join("conf.d")).expect("conf.d");
        let main = dir.path().join("certvakt.toml");
        (dir, main)
    })
}

fuzz_target!(|data: &[u8]| {
    let (dir, main) = dir();
    let parts = certvakt_fuzz::parts(data);
    std::fs::write(main, parts[0]).expect("the main file is written");
    let dropin = dir.path().join("conf.d/50-fuzz.toml");
    match parts.get(1) {
        Some(bytes) => std::fs::write(&dropin, bytes).expect("the drop-in is written"),
        None => {
            let _ = std::fs::remove_file(&dropin);
        }
    }
    match certvakt::config::load(main) {
        Ok(config) => {
            let _ = config.summary();
            let _ = certvakt::inventory::sources_from_config(&config);
        }
        Err(problems) => {
            assert!(
                !problems.is_empty(),
                "a refused configuration names a problem"
            );
            let _ = certvakt::control::protocol::problems_message(&problems);
        }
    }
});
