//! The configuration: a main file and a drop-in in `conf.d/` (parts separated by
//! `certvakt_fuzz::SEPARATOR`), loaded and validated as `check-config` does.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static (PathBuf, PathBuf) {
    static DIR: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = certvakt_fuzz::scratch_dir();
        std::fs::create_dir(dir.join("conf.d")).expect("conf.d");
        (dir.to_owned(), dir.join("certvakt.toml"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (dir, main) = dir();
    let parts = certvakt_fuzz::parts(data);
    std::fs::write(main, parts[0]).expect("the main file is written");
    let dropin = dir.join("conf.d/50-fuzz.toml");
    match parts.get(1) {
        Some(bytes) => std::fs::write(&dropin, bytes).expect("the drop-in is written"),
        None => {
            let _ = std::fs::remove_file(&dropin);
        }
    }
    match certvakt::config::load(main) {
        Ok(config) => {
            // What loads has been validated: checking it again finds nothing.
            let problems = certvakt::config::validate(&config);
            assert!(problems.is_empty(), "{problems:?}");
            let _ = config.summary();
            let _ = certvakt::inventory::sources_from_config(&config);
        }
        Err(problems) => {
            assert!(
                !problems.is_empty(),
                "a refused configuration names a problem"
            );
            // Every problem reads as a sentence (file, line, key, hint).
            for problem in &problems {
                let _ = problem.to_string();
            }
        }
    }
});
