//! Hooks, like certbot's: `pre_hook` before the live files change, `deploy_hook` after a
//! successful install, `post_hook` at the end of the install step whatever happened; and the
//! commands plugins ask the host to run (a dns-01 hook), the same way.
//!
//! A hook is a program with arguments (no shell), run with a clean environment plus
//! `CERTVAKT_*` variables naming the certificate and its files, its stdin closed, killed when
//! it overruns `hook_timeout`. Its output goes to the journal, a line at a time, capped.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Pre,
    Deploy,
    Post,
    /// A command a plugin asked for (`run_command`), named in its settings.
    Plugin,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Pre => "pre_hook",
            HookKind::Deploy => "deploy_hook",
            HookKind::Post => "post_hook",
            HookKind::Plugin => "plugin_command",
        }
    }
}

/// What a hook is told, as environment variables.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub cert_id: String,
    pub cert: String,
    pub key: String,
    pub chain: String,
    pub fullchain: String,
    pub old_serial: String,
    pub new_serial: String,
    /// `success` or `failure` (for the post hook: how the install went).
    pub outcome: String,
    /// More `CERTVAKT_*` variables (a plugin command's own).
    pub extra: Vec<(String, String)>,
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{hook} {program} could not be started: {source}")]
    Start {
        hook: &'static str,
        program: String,
        source: std::io::Error,
    },
    #[error("{hook} {program} exited with {status}{output}")]
    Failed {
        hook: &'static str,
        program: String,
        status: String,
        output: String,
    },
    #[error("{hook} {program} did not finish within {secs} s and was killed")]
    Timeout {
        hook: &'static str,
        program: String,
        secs: u64,
    },
}

const OUTPUT_CAP: usize = 4096;

/// Runs `argv` as the `kind` hook; blocks (call it on a blocking thread).
pub fn run(
    kind: HookKind,
    argv: &[String],
    env: &HookEnv,
    timeout: Duration,
) -> Result<(), HookError> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let hook = kind.as_str();
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CERTVAKT_HOOK", hook)
        .env("CERTVAKT_CERT_ID", &env.cert_id)
        .env("CERTVAKT_CERT_PATH", &env.cert)
        .env("CERTVAKT_KEY_PATH", &env.key)
        .env("CERTVAKT_CHAIN_PATH", &env.chain)
        .env("CERTVAKT_FULLCHAIN_PATH", &env.fullchain)
        .env("CERTVAKT_OLD_SERIAL", &env.old_serial)
        .env("CERTVAKT_NEW_SERIAL", &env.new_serial)
        .env("CERTVAKT_OUTCOME", &env.outcome)
        .envs(env.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(Path::new("/"))
        // Its own process group, so a timeout kills what the hook started too (a shell's
        // children would otherwise keep running and hold its output open).
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HookError::Start {
            hook,
            program: program.clone(),
            source,
        })?;
    // Read the output on threads so a chatty hook cannot fill a pipe and stall.
    let (output_tx, output_rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        let output_tx = output_tx.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if all.len() < OUTPUT_CAP {
                    all.extend_from_slice(&buf[..n.min(OUTPUT_CAP - all.len())]);
                }
            }
            let _ = output_tx.send(String::from_utf8_lossy(&all).into_owned());
        })
    })
    .collect();
    drop(output_tx);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    // A hook that leaves a background process holding its output open must not hold up the
    // renewal: wait a moment for the output, then go on without the rest.
    let mut output = String::new();
    for _ in &readers {
        match output_rx.recv_timeout(Duration::from_secs(2)) {
            Ok(part) => output.push_str(&part),
            Err(_) => break,
        }
    }
    drop(readers);
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        log::info!(cert_id = env.cert_id.as_str(), hook = hook; "{line}");
    }
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(HookError::Failed {
            hook,
            program: program.clone(),
            status: status.to_string(),
            output: last_line(&output),
        }),
        None => Err(HookError::Timeout {
            hook,
            program: program.clone(),
            secs: timeout.as_secs(),
        }),
    }
}

fn last_line(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn hooks_get_their_environment_and_report_failures_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let env = HookEnv {
            cert_id: "fmk-prod".into(),
            cert: "/etc/certvakt/fmk/cert.pem".into(),
            new_serial: "0a:0b".into(),
            ..HookEnv::default()
        };
        let script = format!(
            "echo \"$CERTVAKT_HOOK $CERTVAKT_CERT_ID $CERTVAKT_CERT_PATH $CERTVAKT_NEW_SERIAL\" > {}",
            out.display()
        );
        run(
            HookKind::Deploy,
            &sh(&script),
            &env,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "deploy_hook fmk-prod /etc/certvakt/fmk/cert.pem 0a:0b"
        );

        let err = run(
            HookKind::Pre,
            &sh("echo nope >&2; exit 3"),
            &env,
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("exited with exit status: 3: nope"),
            "{err}"
        );

        let started = Instant::now();
        let err = run(
            HookKind::Post,
            &sh("sleep 30"),
            &env,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, HookError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let err = run(
            HookKind::Pre,
            &["/nonexistent/hook".into()],
            &env,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("could not be started"), "{err}");
    }
}
