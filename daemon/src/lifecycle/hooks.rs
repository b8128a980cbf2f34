//! Hooks, like certbot's: `pre_hook` before the live files change, `deploy_hook` after a
//! successful install, `post_hook` at the end of the install step whatever happened; and the
//! commands plugins ask the host to run (a dns-01 hook), the same way.
//!
//! A hook is a program with arguments (no shell), run with a clean environment plus
//! `CERTVAKT_*` variables naming the certificate and its files, its stdin closed, killed when
//! it overruns `hook_timeout`. Its output goes to the journal, a line at a time, capped. The
//! running itself is [`crate::program::run`]'s.

use std::time::Duration;

use crate::program::{Exit, Program};

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

/// Runs `argv` as the `kind` hook; blocks (call it on a blocking thread).
pub fn run(
    kind: HookKind,
    argv: &[String],
    env: &HookEnv,
    timeout: Duration,
) -> Result<(), HookError> {
    let Some(program) = argv.first() else {
        return Ok(());
    };
    let hook = kind.as_str();
    let mut vars: Vec<(String, String)> = [
        ("CERTVAKT_HOOK", hook),
        ("CERTVAKT_CERT_ID", &env.cert_id),
        ("CERTVAKT_CERT_PATH", &env.cert),
        ("CERTVAKT_KEY_PATH", &env.key),
        ("CERTVAKT_CHAIN_PATH", &env.chain),
        ("CERTVAKT_FULLCHAIN_PATH", &env.fullchain),
        ("CERTVAKT_OLD_SERIAL", &env.old_serial),
        ("CERTVAKT_NEW_SERIAL", &env.new_serial),
        ("CERTVAKT_OUTCOME", &env.outcome),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.extend(env.extra.iter().cloned());
    let finished = crate::program::run(&Program {
        argv,
        env: vars,
        stdin: None,
        timeout,
        log_target: module_path!(),
        log_fields: vec![("cert_id", env.cert_id.clone()), ("hook", hook.to_owned())],
    })
    .map_err(|source| HookError::Start {
        hook,
        program: program.clone(),
        source,
    })?;
    match finished.exit {
        Exit::Status(status) if status.success() => Ok(()),
        Exit::Status(status) => Err(HookError::Failed {
            hook,
            program: program.clone(),
            status: status.to_string(),
            output: finished
                .last_line()
                .map(|l| format!(": {l}"))
                .unwrap_or_default(),
        }),
        Exit::TimedOut => Err(HookError::Timeout {
            hook,
            program: program.clone(),
            secs: timeout.as_secs(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

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
