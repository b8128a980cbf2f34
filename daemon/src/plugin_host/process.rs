//! The daemon's side of a plugin process (see [`super::sandbox`] for the other side).
//!
//! Contract:
//! - [`PluginProcess::spawn`] starts `EXE plugin-host PLUGIN.so` with a clean environment, `/`
//!   as its folder, one end of a socket pair as standard input, standard output to
//!   `/dev/null`, and standard error read line by line into the journal (capped, with control
//!   characters escaped), tagged with the plugin.
//! - [`PluginProcess::load`] waits for the process to load the library: the descriptor's
//!   facts, the library's own refusal, or — when the process dies first — a refusal that names
//!   how it died ("died with SIGBUS while loading; the file is probably damaged").
//! - [`PluginProcess::call`] sends one call and answers the plugin's host calls through the
//!   handler until the reply comes. At the deadline the process is killed and reaped before
//!   the call returns, so nothing of a call outlives it. A process that dies during a call is
//!   reaped and described ([`Death`]).
//! - A process is used for one call at a time; the caller keeps idle ones (see the pool in
//!   [`super`]) and drops them when they misbehave.

use std::io::{BufRead as _, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certvakt_plugin_api::abi::HostCallHandler;

use super::RefusalReason;
use super::frame::{Frame, FrameError};

/// How long loading a library may take.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many bytes of one line of a plugin process's standard error reach the journal.
const STDERR_LINE_LIMIT: usize = 1024;

/// What a loaded library says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    pub version: String,
    pub api_version: String,
}

/// How a plugin process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The daemon killed it (deadline).
    pub killed_at_deadline: bool,
}

impl Death {
    /// The `reason` label of `certvakt_plugin_crashes_total`: a short fixed word.
    pub fn label(&self) -> &'static str {
        if self.killed_at_deadline {
            return "deadline";
        }
        match self.signal {
            Some(libc_signal::SEGV) => "segfault",
            Some(libc_signal::BUS) => "bus_error",
            Some(libc_signal::ABRT) => "abort",
            Some(libc_signal::KILL) => "killed",
            Some(libc_signal::XCPU) => "cpu_limit",
            Some(libc_signal::SYS) => "forbidden_syscall",
            Some(_) => "signal",
            None => "exit",
        }
    }

    /// A sentence naming how it ended and what that probably means.
    pub fn describe(&self) -> String {
        if self.killed_at_deadline {
            return "it did not answer within its deadline and was stopped".into();
        }
        match (self.signal, self.code) {
            (Some(signal), _) => {
                let name = nix::sys::signal::Signal::try_from(signal)
                    .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned());
                let meaning = match signal {
                    libc_signal::SEGV => "a crash in the plugin (invalid memory access)",
                    libc_signal::BUS => {
                        "a crash reading its own code: the file is probably damaged"
                    }
                    libc_signal::ABRT => {
                        "the plugin aborted (a failed allocation, e.g. over its memory limit, or an explicit abort)"
                    }
                    libc_signal::KILL => "killed from outside (out of memory, or by an operator)",
                    libc_signal::XCPU => "it used up its CPU time limit (a runaway loop)",
                    libc_signal::SYS => {
                        "it made a system call plugins may not make (a socket, a file opened for writing, a program run): plugins must ask the host"
                    }
                    _ => "the plugin process was killed",
                };
                format!("the plugin process died with {name}: {meaning}")
            }
            (None, Some(code)) => format!(
                "the plugin process exited with status {code} in the middle of a call (a plugin must not exit)"
            ),
            (None, None) => "the plugin process ended".into(),
        }
    }
}

/// Why a call did not produce an answer.
#[derive(Debug)]
pub enum CallFailure {
    /// The process died or was killed (deadline included).
    Died(Death),
    /// The process broke the frame protocol (and was killed).
    Protocol(String),
    /// The process could not be started or written to.
    Io(std::io::Error),
}

/// One plugin process.
#[derive(Debug)]
pub struct PluginProcess {
    child: Child,
    socket: UnixStream,
    plugin: String,
    pub file: PathBuf,
}

impl PluginProcess {
    /// Starts the process for `plugin_file`; `exe` is certvaktd itself.
    pub fn spawn(exe: &Path, plugin_file: &Path, label: &str) -> std::io::Result<PluginProcess> {
        let (ours, theirs) = UnixStream::pair()?;
        let mut child = Command::new(exe)
            .arg(super::sandbox::ARG)
            .arg(plugin_file)
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(stderr) = child.stderr.take() {
            let label = label.to_owned();
            let pid = child.id();
            std::thread::Builder::new()
                .name("plugin-stderr".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                        let end = line.len().min(STDERR_LINE_LIMIT);
                        let text = super::sanitise(&String::from_utf8_lossy(&line[..end]));
                        log::warn!(plugin = label.as_str(), pid = pid; "plugin process: {text}");
                    }
                })?;
        }
        Ok(PluginProcess {
            child,
            socket: ours,
            plugin: label.to_owned(),
            file: plugin_file.to_owned(),
        })
    }

    /// Waits for the library to load. See the module contract.
    pub fn load(&mut self) -> Result<Described, RefusalReason> {
        let _ = self.socket.set_read_timeout(Some(LOAD_TIMEOUT));
        let frame = Frame::read_from(&mut self.socket);
        let _ = self.socket.set_read_timeout(None);
        match frame {
            Ok(Frame::Loaded {
                name,
                version,
                api_version,
            }) => Ok(Described {
                // The name is checked against the naming rule; the versions are shown as
                // they are, so they are made safe for a terminal.
                name,
                version: super::sanitise(&version),
                api_version: super::sanitise(&api_version),
            }),
            Ok(Frame::Refused(json)) => {
                let reason = serde_json::from_slice(&json).unwrap_or_else(|e| {
                    RefusalReason::NotLoadable(format!("its refusal does not read ({e})"))
                });
                self.kill();
                Err(reason)
            }
            Ok(_) => {
                self.kill();
                Err(RefusalReason::NotLoadable(
                    "the plugin process answered out of turn while loading".into(),
                ))
            }
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                self.kill();
                Err(RefusalReason::NotLoadable(format!(
                    "loading took longer than {}s and was stopped",
                    LOAD_TIMEOUT.as_secs()
                )))
            }
            Err(_) => {
                let death = self.reap();
                Err(RefusalReason::Crashed {
                    how: death.describe(),
                })
            }
        }
    }

    /// Runs one call. See the module contract.
    pub fn call(
        &mut self,
        method: &str,
        params: &[u8],
        handler: &dyn HostCallHandler,
        deadline: Instant,
    ) -> Result<Vec<u8>, CallFailure> {
        let sent = Frame::Call {
            method: method.to_owned(),
            params: params.to_vec(),
        }
        .write_to(&mut self.socket);
        if let Err(e) = sent {
            return Err(self.failed(e));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                return Err(CallFailure::Died(Death {
                    signal: None,
                    code: None,
                    killed_at_deadline: true,
                }));
            }
            let _ = self.socket.set_read_timeout(Some(left));
            match Frame::read_from(&mut self.socket) {
                Ok(Frame::Reply(bytes)) => {
                    let _ = self.socket.set_read_timeout(None);
                    return Ok(bytes);
                }
                Ok(Frame::HostCall { method, params }) => {
                    let answer = handler.host_call(&method, &params);
                    if let Err(e) = Frame::HostReply(answer).write_to(&mut self.socket) {
                        return Err(self.failed(e));
                    }
                }
                Ok(other) => {
                    self.kill();
                    return Err(CallFailure::Protocol(format!(
                        "the plugin process sent {} during a call",
                        frame_name(&other)
                    )));
                }
                Err(FrameError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    // The loop head sees the deadline passed.
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
    }

    /// Whether the process has exited (an idle one exits after a minute).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The process failed to take or answer a call: it is reaped and described.
    fn failed(&mut self, error: FrameError) -> CallFailure {
        match error {
            FrameError::Closed | FrameError::Io(_) => CallFailure::Died(self.reap()),
            other => {
                self.kill();
                CallFailure::Protocol(other.to_string())
            }
        }
    }

    /// Waits for the process to end (killing it if it has not within a second).
    fn reap(&mut self) -> Death {
        let started = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() < Duration::from_secs(1) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
                Err(_) => break None,
            }
        };
        let death = Death {
            signal: status.and_then(|s| s.signal()),
            code: status.and_then(|s| s.code()),
            killed_at_deadline: false,
        };
        log::debug!(plugin = self.plugin.as_str(); "plugin process ended: {}", death.describe());
        death
    }

    /// Kills the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        // Closing the socket ends an idle process by itself; a busy one is killed.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        if !self.exited() {
            self.kill();
        }
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Call { .. } => "a call",
        Frame::HostCall { .. } => "a host call",
        Frame::HostReply(_) => "a host reply",
        Frame::Reply(_) => "a reply",
        Frame::Loaded { .. } => "a loaded notice",
        Frame::Refused(_) => "a refusal",
    }
}

/// The signal numbers the descriptions name (the same on x86_64 and aarch64).
mod libc_signal {
    pub const SEGV: i32 = 11;
    pub const BUS: i32 = 7;
    pub const ABRT: i32 = 6;
    pub const KILL: i32 = 9;
    pub const XCPU: i32 = 24;
    pub const SYS: i32 = 31;
}

#[cfg(test)]
mod tests {
    use super::*;
    use certvakt_plugin_api::messages::HostResponse;

    fn target_file(name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let path = profile_dir.join(name);
        assert!(
            path.is_file(),
            "{} is missing: build the workspace first with `cargo build --workspace`",
            path.display()
        );
        path
    }

    struct NoServices;
    impl HostCallHandler for NoServices {
        fn host_call(&self, _: &str, _: &[u8]) -> Vec<u8> {
            serde_json::to_vec(&HostResponse::Now { unix_seconds: 0 }).unwrap()
        }
    }

    #[test]
    fn a_plugin_loads_and_answers_in_its_own_confined_process() {
        let exe = target_file("certvaktd");
        let plugin = target_file("libcertvakt_plugin_example.so");
        let mut process = PluginProcess::spawn(&exe, &plugin, "example").unwrap();
        let described = process.load().unwrap();
        assert_eq!(described.name, "example");
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = process
            .call("describe", b"null", &NoServices, deadline)
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("Example CA"), "{text}");
        // A second call in the same process.
        let again = process
            .call("describe", b"null", &NoServices, deadline)
            .unwrap();
        assert_eq!(again, answer);
    }

    #[test]
    fn a_truncated_library_is_refused_and_the_reason_names_the_crash() {
        let exe = target_file("certvaktd");
        let plugin = target_file("libcertvakt_plugin_example.so");
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.so");
        let bytes = std::fs::read(&plugin).unwrap();
        std::fs::write(&cut, &bytes[..5_000]).unwrap();
        let mut process = PluginProcess::spawn(&exe, &cut, "cut").unwrap();
        let refusal = process.load().unwrap_err();
        let text = refusal.to_string();
        assert!(
            matches!(
                refusal,
                RefusalReason::Crashed { .. } | RefusalReason::NotLoadable(_)
            ),
            "{text}"
        );
    }
}
