//! The plugin process: `certvaktd plugin-host PLUGIN.so`, started by the daemon with a socket
//! pair as its standard input, confines itself, loads the one plugin, and runs its calls.
//!
//! Contract:
//! - Nothing of the plugin runs before the process is confined: no new privileges, resource
//!   limits ([`Limits`]: address space, CPU time, open files, no core dumps), Landlock (where the
//!   kernel has it) so that it reads only its own library and the system's shared libraries and
//!   writes nothing, and a seccomp filter that allows what reading and writing its socket and
//!   computing need: no `socket`, `connect`, `execve`, `ptrace`, no opening a file for writing.
//!   A forbidden system call kills the process (SIGSYS), which the daemon reports.
//! - Then it loads the library (a damaged file may crash it here: the daemon sees that and
//!   refuses the file), answers `Loaded` or `Refused`, and serves `Call` frames until the
//!   socket closes or a minute passes without one (an idle plugin process holds no memory).
//! - Host services are asked of the daemon over the same socket (`HostCall`/`HostReply`): the
//!   plugin never owns a socket, a file outside its library, or a key.
//! - Standard output is not the socket: a plugin that prints cannot corrupt the frames.

#![allow(unsafe_code)]

use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use certvakt_plugin_api::abi::{HostCallHandler, LocalHostTable};

use super::frame::{Frame, FrameError};
use super::loader;

/// How long a plugin process waits for its next call before it exits.
pub const IDLE_EXIT: Duration = Duration::from_secs(60);

/// The resource limits of a plugin process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space, bytes (`RLIMIT_AS`).
    pub address_space: u64,
    /// CPU time over the process's life, seconds (`RLIMIT_CPU`); the daemon's deadline stops
    /// a single call long before.
    pub cpu_secs: u64,
    /// Open files (`RLIMIT_NOFILE`).
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            address_space: 1024 * 1024 * 1024,
            cpu_secs: 600,
            open_files: 64,
        }
    }
}

/// The first argument that makes a certvakt program a plugin process.
pub const ARG: &str = "plugin-host";

/// When the program was started as a plugin process (`PROGRAM plugin-host FILE`), runs it and
/// answers its exit code; otherwise `None`. Both binaries ask this first, before parsing
/// their own arguments, so a plugin process does nothing else.
pub fn run_if_asked() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(ARG)) {
        return None;
    }
    let file = args.next()?;
    Some(std::process::ExitCode::from(serve(Path::new(&file))))
}

/// Runs the plugin process; returns its exit code.
pub fn serve(plugin: &Path) -> u8 {
    let socket = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("certvaktd plugin-host: no socket on standard input: {e}");
            return 70;
        }
    };
    let mut socket = socket;
    if let Err(e) = confine(plugin, &Limits::default()) {
        let reason = super::RefusalReason::NotLoadable(format!(
            "the plugin process could not be confined ({e}); certvaktd runs no plugin unconfined"
        ));
        let _ =
            Frame::Refused(serde_json::to_vec(&reason).unwrap_or_default()).write_to(&mut socket);
        return 71;
    }
    let opened = match loader::open(plugin) {
        Ok(opened) => opened,
        Err(reason) => {
            let _ = Frame::Refused(serde_json::to_vec(&reason).unwrap_or_default())
                .write_to(&mut socket);
            return 0;
        }
    };
    let loaded = Frame::Loaded {
        name: opened.name.clone(),
        version: opened.version.clone(),
        api_version: opened.api_version.clone(),
    };
    if loaded.write_to(&mut socket).is_err() {
        return 0;
    }
    let _ = socket.set_read_timeout(Some(IDLE_EXIT));
    loop {
        let frame = match Frame::read_from(&mut socket) {
            Ok(frame) => frame,
            // Closed, idle for a minute, or a broken pipe: the daemon starts another.
            Err(_) => return 0,
        };
        let Frame::Call { method, params } = frame else {
            eprintln!("certvaktd plugin-host: expected a call, got another frame");
            return 72;
        };
        let _ = socket.set_read_timeout(None);
        let answer = {
            let handler = Forward {
                socket: Mutex::new(&mut socket),
            };
            let table = LocalHostTable::new(&handler);
            opened.raw.call(&method, &params, table.table())
        };
        if Frame::Reply(answer).write_to(&mut socket).is_err() {
            return 0;
        }
        let _ = socket.set_read_timeout(Some(IDLE_EXIT));
    }
}

/// Host calls from the plugin, asked of the daemon over the socket.
struct Forward<'a> {
    socket: Mutex<&'a mut UnixStream>,
}

impl HostCallHandler for Forward<'_> {
    fn host_call(&self, method: &str, params: &[u8]) -> Vec<u8> {
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let asked = Frame::HostCall {
            method: method.to_owned(),
            params: params.to_vec(),
        }
        .write_to(&mut **socket);
        let answer = asked.and_then(|()| Frame::read_from(&mut **socket));
        match answer {
            Ok(Frame::HostReply(bytes)) => bytes,
            Ok(_) => host_error("the daemon answered a host call with another frame"),
            Err(FrameError::Closed) => {
                // The daemon is gone (it killed the call, or stopped): nothing to answer to.
                let _ = std::io::stderr().flush();
                std::process::exit(0);
            }
            Err(e) => host_error(&format!("the host call could not be made: {e}")),
        }
    }
}

fn host_error(message: &str) -> Vec<u8> {
    use certvakt_plugin_api::messages::HostResponse;
    use certvakt_plugin_api::{HostError, HostErrorKind};
    serde_json::to_vec(&HostResponse::Error(HostError::new(
        HostErrorKind::Failed,
        message.to_owned(),
    )))
    .unwrap_or_default()
}

/// Everything that must hold before the plugin's code runs. See the module contract.
fn confine(plugin: &Path, limits: &Limits) -> Result<(), String> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    set_limits(limits)?;
    restrict_files(plugin);
    filter_system_calls()
}

fn set_limits(limits: &Limits) -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    for (resource, value, what) in [
        (Resource::RLIMIT_AS, limits.address_space, "address space"),
        (Resource::RLIMIT_CPU, limits.cpu_secs, "CPU time"),
        (Resource::RLIMIT_NOFILE, limits.open_files, "open files"),
        (Resource::RLIMIT_CORE, 0, "core dumps"),
    ] {
        setrlimit(resource, value, value).map_err(|e| format!("the {what} limit: {e}"))?;
    }
    Ok(())
}

/// Landlock: read its own library and the shared libraries the loader needs; write nothing.
/// A kernel without Landlock is said on standard error (the daemon logs it); seccomp still
/// keeps files closed for writing.
fn restrict_files(plugin: &Path) {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    let abi = ABI::V1;
    let read = AccessFs::from_read(abi);
    let readable = [
        plugin,
        Path::new("/lib"),
        Path::new("/lib64"),
        Path::new("/usr/lib"),
        Path::new("/usr/lib64"),
        Path::new("/etc/ld.so.cache"),
    ];
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(readable, read)))
        .and_then(|r| r.restrict_self());
    match status {
        Ok(s) if s.ruleset == RulesetStatus::FullyEnforced => {}
        Ok(_) => eprintln!(
            "certvaktd plugin-host: Landlock is not available here (the kernel lacks it, or a container's or the service's system call filter withholds it); the plugin process relies on seccomp and resource limits"
        ),
        Err(e) => eprintln!("certvaktd plugin-host: Landlock could not be set up ({e})"),
    }
}

/// The seccomp filter. See the module contract.
fn filter_system_calls() -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e:?}"))?;
    let allowed = [
        libc_nr::READ,
        libc_nr::WRITE,
        libc_nr::READV,
        libc_nr::WRITEV,
        libc_nr::PREAD64,
        libc_nr::RECVFROM,
        libc_nr::SENDTO,
        libc_nr::RECVMSG,
        libc_nr::SENDMSG,
        libc_nr::CLOSE,
        libc_nr::FSTAT,
        libc_nr::NEWFSTATAT,
        libc_nr::STATX,
        libc_nr::LSEEK,
        libc_nr::MMAP,
        libc_nr::MUNMAP,
        libc_nr::MPROTECT,
        libc_nr::MREMAP,
        libc_nr::MADVISE,
        libc_nr::BRK,
        libc_nr::FUTEX,
        libc_nr::SCHED_YIELD,
        libc_nr::SCHED_GETAFFINITY,
        libc_nr::NANOSLEEP,
        libc_nr::CLOCK_NANOSLEEP,
        libc_nr::CLOCK_GETTIME,
        libc_nr::GETTIMEOFDAY,
        libc_nr::GETRANDOM,
        libc_nr::RT_SIGACTION,
        libc_nr::RT_SIGPROCMASK,
        libc_nr::RT_SIGRETURN,
        libc_nr::SIGALTSTACK,
        libc_nr::GETPID,
        libc_nr::GETTID,
        libc_nr::TGKILL,
        libc_nr::CLONE,
        libc_nr::CLONE3,
        libc_nr::SET_ROBUST_LIST,
        libc_nr::RSEQ,
        libc_nr::PRLIMIT64,
        libc_nr::GETRLIMIT,
        libc_nr::POLL,
        libc_nr::PPOLL,
        libc_nr::FCNTL,
        libc_nr::SETSOCKOPT,
        libc_nr::GETSOCKOPT,
        libc_nr::MEMBARRIER,
        libc_nr::RESTART_SYSCALL,
        libc_nr::EXIT,
        libc_nr::EXIT_GROUP,
        libc_nr::GETCWD,
        libc_nr::READLINK,
        libc_nr::READLINKAT,
        libc_nr::UNAME,
        libc_nr::PRCTL,
        libc_nr::IOCTL,
        libc_nr::GETUID,
        libc_nr::GETEUID,
        libc_nr::GETGID,
        libc_nr::GETEGID,
        libc_nr::SCHED_GETPARAM,
        libc_nr::SCHED_GETSCHEDULER,
        libc_nr::FACCESSAT,
        libc_nr::FACCESSAT2,
        libc_nr::ACCESS,
    ];
    // A negative number stands for a call the architecture does not have.
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = allowed
        .iter()
        .filter(|nr| **nr >= 0)
        .map(|nr| (*nr, Vec::new()))
        .collect();
    // Opening is allowed for reading only: no write access mode, no creating.
    let read_only = |flags_arg: u8| -> Result<SeccompRule, String> {
        SeccompRule::new(vec![
            SeccompCondition::new(
                flags_arg,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(WRITE_FLAGS),
                0,
            )
            .map_err(|e| format!("seccomp: {e}"))?,
        ])
        .map_err(|e| format!("seccomp: {e}"))
    };
    rules.insert(libc_nr::OPENAT, vec![read_only(2)?]);
    if libc_nr::OPEN >= 0 {
        rules.insert(libc_nr::OPEN, vec![read_only(1)?]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let program: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    // The process has one thread at this point.
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))
}

/// `O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_TMPFILE`'s bits: none may be set.
const WRITE_FLAGS: u64 = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20_000_000;

/// System call numbers of x86_64 and aarch64 (the architectures the packages are built for).
#[allow(dead_code)]
mod libc_nr {
    #[cfg(target_arch = "x86_64")]
    mod numbers {
        pub const READ: i64 = 0;
        pub const WRITE: i64 = 1;
        pub const OPEN: i64 = 2;
        pub const CLOSE: i64 = 3;
        pub const FSTAT: i64 = 5;
        pub const POLL: i64 = 7;
        pub const LSEEK: i64 = 8;
        pub const MMAP: i64 = 9;
        pub const MPROTECT: i64 = 10;
        pub const MUNMAP: i64 = 11;
        pub const BRK: i64 = 12;
        pub const RT_SIGACTION: i64 = 13;
        pub const RT_SIGPROCMASK: i64 = 14;
        pub const RT_SIGRETURN: i64 = 15;
        pub const IOCTL: i64 = 16;
        pub const PREAD64: i64 = 17;
        pub const READV: i64 = 19;
        pub const WRITEV: i64 = 20;
        pub const ACCESS: i64 = 21;
        pub const SCHED_YIELD: i64 = 24;
        pub const MREMAP: i64 = 25;
        pub const MADVISE: i64 = 28;
        pub const NANOSLEEP: i64 = 35;
        pub const GETPID: i64 = 39;
        pub const SENDTO: i64 = 44;
        pub const RECVFROM: i64 = 45;
        pub const SENDMSG: i64 = 46;
        pub const RECVMSG: i64 = 47;
        pub const SETSOCKOPT: i64 = 54;
        pub const GETSOCKOPT: i64 = 55;
        pub const CLONE: i64 = 56;
        pub const EXIT: i64 = 60;
        pub const UNAME: i64 = 63;
        pub const FCNTL: i64 = 72;
        pub const GETCWD: i64 = 79;
        pub const READLINK: i64 = 89;
        pub const GETTIMEOFDAY: i64 = 96;
        pub const GETRLIMIT: i64 = 97;
        pub const GETUID: i64 = 102;
        pub const GETGID: i64 = 104;
        pub const GETEUID: i64 = 107;
        pub const GETEGID: i64 = 108;
        pub const SIGALTSTACK: i64 = 131;
        pub const SCHED_GETPARAM: i64 = 143;
        pub const SCHED_GETSCHEDULER: i64 = 145;
        pub const PRCTL: i64 = 157;
        pub const GETTID: i64 = 186;
        pub const FUTEX: i64 = 202;
        pub const SCHED_GETAFFINITY: i64 = 204;
        pub const CLOCK_GETTIME: i64 = 228;
        pub const CLOCK_NANOSLEEP: i64 = 230;
        pub const EXIT_GROUP: i64 = 231;
        pub const TGKILL: i64 = 234;
        pub const OPENAT: i64 = 257;
        pub const NEWFSTATAT: i64 = 262;
        pub const READLINKAT: i64 = 267;
        pub const FACCESSAT: i64 = 269;
        pub const PPOLL: i64 = 271;
        pub const SET_ROBUST_LIST: i64 = 273;
        pub const PRLIMIT64: i64 = 302;
        pub const GETRANDOM: i64 = 318;
        pub const MEMBARRIER: i64 = 324;
        pub const STATX: i64 = 332;
        pub const RSEQ: i64 = 334;
        pub const CLONE3: i64 = 435;
        pub const FACCESSAT2: i64 = 439;
        pub const RESTART_SYSCALL: i64 = 219;
    }
    #[cfg(target_arch = "aarch64")]
    mod numbers {
        // aarch64 has no open, poll, access, readlink or fstat-by-path calls of the old kind:
        // the `*at` ones stand in; the numbers below that name them are never used there.
        pub const OPEN: i64 = -1;
        pub const POLL: i64 = -2;
        pub const ACCESS: i64 = -3;
        pub const READLINK: i64 = -4;
        pub const GETRLIMIT: i64 = 163;
        pub const READ: i64 = 63;
        pub const WRITE: i64 = 64;
        pub const READV: i64 = 65;
        pub const WRITEV: i64 = 66;
        pub const PREAD64: i64 = 67;
        pub const PPOLL: i64 = 73;
        pub const READLINKAT: i64 = 78;
        pub const NEWFSTATAT: i64 = 79;
        pub const FSTAT: i64 = 80;
        pub const CLOSE: i64 = 57;
        pub const LSEEK: i64 = 62;
        pub const OPENAT: i64 = 56;
        pub const FACCESSAT: i64 = 48;
        pub const FCNTL: i64 = 25;
        pub const IOCTL: i64 = 29;
        pub const GETCWD: i64 = 17;
        pub const EXIT: i64 = 93;
        pub const EXIT_GROUP: i64 = 94;
        pub const SET_ROBUST_LIST: i64 = 99;
        pub const NANOSLEEP: i64 = 101;
        pub const CLOCK_GETTIME: i64 = 113;
        pub const CLOCK_NANOSLEEP: i64 = 115;
        pub const SCHED_GETPARAM: i64 = 121;
        pub const SCHED_GETSCHEDULER: i64 = 120;
        pub const SCHED_GETAFFINITY: i64 = 123;
        pub const SCHED_YIELD: i64 = 124;
        pub const RESTART_SYSCALL: i64 = 128;
        pub const TGKILL: i64 = 131;
        pub const SIGALTSTACK: i64 = 132;
        pub const RT_SIGACTION: i64 = 134;
        pub const RT_SIGPROCMASK: i64 = 135;
        pub const RT_SIGRETURN: i64 = 139;
        pub const UNAME: i64 = 160;
        pub const PRCTL: i64 = 167;
        pub const GETTIMEOFDAY: i64 = 169;
        pub const GETPID: i64 = 172;
        pub const GETUID: i64 = 174;
        pub const GETEUID: i64 = 175;
        pub const GETGID: i64 = 176;
        pub const GETEGID: i64 = 177;
        pub const GETTID: i64 = 178;
        pub const SENDTO: i64 = 206;
        pub const RECVFROM: i64 = 207;
        pub const SETSOCKOPT: i64 = 208;
        pub const GETSOCKOPT: i64 = 209;
        pub const SENDMSG: i64 = 211;
        pub const RECVMSG: i64 = 212;
        pub const BRK: i64 = 214;
        pub const MUNMAP: i64 = 215;
        pub const MREMAP: i64 = 216;
        pub const CLONE: i64 = 220;
        pub const MMAP: i64 = 222;
        pub const MPROTECT: i64 = 226;
        pub const MADVISE: i64 = 233;
        pub const PRLIMIT64: i64 = 261;
        pub const GETRANDOM: i64 = 278;
        pub const MEMBARRIER: i64 = 283;
        pub const STATX: i64 = 291;
        pub const RSEQ: i64 = 293;
        pub const CLONE3: i64 = 435;
        pub const FACCESSAT2: i64 = 439;
        pub const FUTEX: i64 = 98;
    }
    pub use numbers::*;
}
