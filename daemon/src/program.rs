//! Running a program the configuration names (a hook, a notification command): no shell, a
//! clean environment, its own process group, bounded in time and in output.
//!
//! Contract:
//! - `argv[0]` is started directly (no shell) in `/`, with `PATH` and the given variables
//!   only, in a process group of its own.
//! - stdin is the given bytes, written on a thread and then closed, or `/dev/null` without
//!   any. The writer never blocks: a program that does not read (or exits early) costs at most
//!   what it leaves unread, and the writer stops when the program is gone.
//! - stdout and stderr are read on threads so a chatty program never stalls on a full pipe;
//!   of each, the first [`OUTPUT_CAP`] bytes are kept and the rest dropped.
//! - A program that overruns its timeout is killed with its whole process group
//!   ([`Exit::TimedOut`]). After it ends, its output is waited for at most two seconds: a
//!   background process still holding the pipes does not hold up the caller.
//! - Every non-empty output line is logged at info level with the caller's target and fields.
//! - [`run`] blocks: call it on a blocking thread.

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How much of each of stdout and stderr is kept.
pub const OUTPUT_CAP: usize = 4096;

/// The `PATH` a program gets.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long the output is waited for once the program has ended.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Program<'a> {
    /// The program, then its arguments.
    pub argv: &'a [String],
    /// Variables besides `PATH`.
    pub env: Vec<(String, String)>,
    /// What it reads on stdin; `None`: `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// The target of the log lines of its output (the caller's module).
    pub log_target: &'a str,
    /// The fields of those log lines (e.g. `cert_id`, `hook`).
    pub log_fields: Vec<(&'a str, String)>,
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited (or was killed by a signal it did not get from us).
    Status(ExitStatus),
    /// It overran its timeout and was killed.
    TimedOut,
}

/// A program that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub exit: Exit,
    /// stdout then stderr (or the other way round, whichever ended first), each capped.
    pub output: String,
}

impl Finished {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        matches!(self.exit, Exit::Status(status) if status.success())
    }

    /// The last non-empty line of its output, trimmed.
    pub fn last_line(&self) -> Option<&str> {
        self.output
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
    }
}

/// Runs `program` to its end or its timeout; `Err` when it cannot be started (no such file,
/// not executable, empty `argv`).
pub fn run(program: &Program<'_>) -> std::io::Result<Finished> {
    let Some((name, args)) = program.argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no program was given",
        ));
    };
    let mut child = Command::new(name)
        .args(args)
        .env_clear()
        .env("PATH", PATH)
        .envs(program.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(Path::new("/"))
        // Its own process group, so a timeout kills what the program started too (a shell's
        // children would otherwise keep running and hold its output open).
        .process_group(0)
        .stdin(if program.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;

    let ended = Arc::new(AtomicBool::new(false));
    let writer = match (child.stdin.take(), &program.stdin) {
        (Some(stdin), Some(bytes)) => Some(spawn_writer(stdin, bytes.clone(), ended.clone())),
        _ => None,
    };

    // Read the output on threads so a chatty program cannot fill a pipe and stall.
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
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Exit::Status(status),
            Ok(None) if started.elapsed() < program.timeout => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(None) | Err(_) => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
                break Exit::TimedOut;
            }
        }
    };
    ended.store(true, Ordering::Relaxed);
    if let Some(writer) = writer {
        // It stops within one pause of seeing `ended`.
        let _ = writer.join();
    }

    let mut output = String::new();
    for _ in &readers {
        match output_rx.recv_timeout(OUTPUT_GRACE) {
            Ok(part) => output.push_str(&part),
            Err(_) => break,
        }
    }
    drop(readers);
    let fields: Vec<(&str, &str)> = program
        .log_fields
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        log_line(program.log_target, &fields, line);
    }
    Ok(Finished { exit, output })
}

/// Writes `bytes` to the program's stdin without ever blocking, then closes it. Gives up
/// when the program closed its end or `ended` is set.
fn spawn_writer(
    stdin: ChildStdin,
    bytes: Vec<u8>,
    ended: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stdin = stdin;
        // Only our end of the pipe: the program's end stays as it expects.
        let nonblocking = nix::fcntl::fcntl(&stdin, nix::fcntl::FcntlArg::F_GETFL)
            .map(nix::fcntl::OFlag::from_bits_retain)
            .and_then(|flags| {
                nix::fcntl::fcntl(
                    &stdin,
                    nix::fcntl::FcntlArg::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK),
                )
            })
            .is_ok();
        if !nonblocking {
            // Without it a write could block for as long as the program lives.
            return;
        }
        let mut written = 0;
        while written < bytes.len() {
            match stdin.write(&bytes[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if ended.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                // Broken pipe: the program closed stdin or exited.
                Err(_) => break,
            }
        }
        // Dropping `stdin` closes it: the program reads end-of-file.
    })
}

fn log_line(target: &str, fields: &[(&str, &str)], line: &str) {
    let level = log::Level::Info;
    if level > log::max_level() {
        return;
    }
    log::logger().log(
        &log::Record::builder()
            .args(format_args!("{line}"))
            .level(level)
            .target(target)
            .key_values(&fields)
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    fn program<'a>(argv: &'a [String], stdin: Option<Vec<u8>>, timeout: Duration) -> Program<'a> {
        Program {
            argv,
            env: vec![("GREETING".into(), "hei".into())],
            stdin,
            timeout,
            log_target: module_path!(),
            log_fields: vec![("test", "program".into())],
        }
    }

    #[test]
    fn stdin_is_fed_and_output_captured() {
        let argv = sh("cat; echo \"$GREETING\" >&2; echo PATH=$PATH");
        let finished = run(&program(
            &argv,
            Some("blåbær\nline 2\n".as_bytes().to_vec()),
            Duration::from_secs(10),
        ))
        .unwrap();
        assert!(finished.success(), "{finished:?}");
        assert!(
            finished.output.contains("blåbær\nline 2\n"),
            "{:?}",
            finished.output
        );
        assert!(finished.output.contains("hei"), "{:?}", finished.output);
        assert!(
            finished.output.contains(&format!("PATH={PATH}")),
            "{:?}",
            finished.output
        );
    }

    #[test]
    fn a_large_stdin_is_read_whole_by_a_program_that_reads_it() {
        let argv = sh("wc -c");
        let bytes = vec![b'x'; 3 << 20];
        let finished = run(&program(&argv, Some(bytes), Duration::from_secs(30))).unwrap();
        assert!(finished.success(), "{finished:?}");
        assert_eq!(finished.last_line(), Some("3145728"));
    }

    #[test]
    fn a_program_that_ignores_a_large_stdin_does_not_hang() {
        // Exits at once without reading: the writer meets a closed pipe.
        let argv = sh("echo done");
        let started = Instant::now();
        let finished = run(&program(
            &argv,
            Some(vec![0u8; 8 << 20]),
            Duration::from_secs(30),
        ))
        .unwrap();
        assert!(finished.success(), "{finished:?}");
        assert_eq!(finished.last_line(), Some("done"));
        assert!(started.elapsed() < Duration::from_secs(5));

        // Lives a while without reading: the pipe stays full until it exits.
        let argv = sh("sleep 1; echo slept");
        let started = Instant::now();
        let finished = run(&program(
            &argv,
            Some(vec![0u8; 8 << 20]),
            Duration::from_secs(30),
        ))
        .unwrap();
        assert!(finished.success(), "{finished:?}");
        assert_eq!(finished.last_line(), Some("slept"));
        assert!(started.elapsed() < Duration::from_secs(5));

        // Never exits and never reads: killed at the timeout.
        let argv = sh("sleep 30");
        let started = Instant::now();
        let finished = run(&program(
            &argv,
            Some(vec![0u8; 8 << 20]),
            Duration::from_millis(300),
        ))
        .unwrap();
        assert_eq!(finished.exit, Exit::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn output_is_capped_per_stream() {
        let argv =
            sh("head -c 100000 /dev/zero | tr '\\0' a; head -c 100000 /dev/zero | tr '\\0' b >&2");
        let finished = run(&program(&argv, None, Duration::from_secs(10))).unwrap();
        assert!(finished.success(), "{finished:?}");
        assert_eq!(finished.output.len(), 2 * OUTPUT_CAP);
        assert_eq!(finished.output.matches('a').count(), OUTPUT_CAP);
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error() {
        let argv = vec!["/nonexistent/program".to_owned()];
        let err = run(&program(&argv, Some(b"x".to_vec()), Duration::from_secs(1))).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        let err = run(&program(&[], None, Duration::from_secs(1))).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
