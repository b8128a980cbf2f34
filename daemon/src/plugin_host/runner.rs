//! One plugin's processes: started when a call needs one, kept while idle, gone after an idle
//! minute (the process exits by itself; see [`super::sandbox::IDLE_EXIT`]).
//!
//! Contract:
//! - A call takes an idle process that is still alive. When there is none but some are busy,
//!   it waits up to [`WAIT_FOR_IDLE`] for one to come back before it starts another (and
//!   waits for it to load the library again, and to be the same plugin): a burst of quick
//!   calls (the settings checks of a thousand certificates after a start) is served by one
//!   or two processes, not eight, while calls that take long (an order over the network)
//!   still get processes of their own. A process serves one call at a time.
//! - A process that answered goes back to the idle list; one that failed (crashed, was stopped
//!   at the deadline, broke the protocol) is gone, and the next call starts another.
//! - A process that ended while idle (its minute was up) is not a failure: the call is made
//!   again, once, in a new process. It is reaped when it ends ([`Runner::reap_ended`], on
//!   SIGCHLD), so `ps` shows no zombie in between.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use certvakt_plugin_api::abi::HostCallHandler;

use super::RefusalReason;
use super::process::{CallFailure, Described, PluginProcess};

/// At most this many idle processes are kept per plugin (as many as the renewal engine and
/// the settings check run calls of one plugin at once).
const MAX_IDLE: usize = 8;

/// How long a call waits for a busy process to come back before it starts another.
const WAIT_FOR_IDLE: Duration = Duration::from_millis(50);

/// The processes not in a call, and how many are in one.
#[derive(Debug, Default)]
struct Pool {
    idle: Vec<PluginProcess>,
    busy: usize,
}

/// See the module contract.
#[derive(Debug)]
pub struct Runner {
    exe: PathBuf,
    file: PathBuf,
    name: String,
    pool: Mutex<Pool>,
    /// Told each time a process comes back from a call (or is gone).
    returned: Condvar,
}

impl Runner {
    /// Loads `file` in a new process: its descriptor, and the process to keep.
    pub fn load(exe: &Path, file: &Path) -> Result<(Described, PluginProcess), RefusalReason> {
        let label = file
            .file_name()
            .map_or_else(|| "plugin".into(), |n| n.to_string_lossy().into_owned());
        let mut process = PluginProcess::spawn(exe, file, &label).map_err(|e| {
            RefusalReason::NotLoadable(format!("its plugin process could not be started: {e}"))
        })?;
        let described = process.load()?;
        Ok((described, process))
    }

    pub fn new(exe: &Path, file: &Path, name: &str, first: PluginProcess) -> Runner {
        Runner {
            exe: exe.to_owned(),
            file: file.to_owned(),
            name: name.to_owned(),
            pool: Mutex::new(Pool {
                idle: vec![first],
                busy: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// Runs one call in one of the plugin's processes. See the module contract.
    pub fn call(
        &self,
        method: &str,
        params: &[u8],
        handler: &dyn HostCallHandler,
        deadline: Instant,
    ) -> Result<Vec<u8>, CallFailure> {
        for _ in 0..2 {
            let (mut process, was_idle) = self.check_out(WAIT_FOR_IDLE)?;
            match process.call(method, params, handler, deadline) {
                Ok(answer) => {
                    self.check_in(Some(process));
                    return Ok(answer);
                }
                // The idle minute ran out just as the call came: once more, in a new one.
                Err(CallFailure::Died(death))
                    if was_idle && death.code == Some(0) && death.signal.is_none() =>
                {
                    self.check_in(None);
                }
                Err(failure) => {
                    self.check_in(None);
                    return Err(failure);
                }
            }
        }
        let (mut process, _) = self.check_out(Duration::ZERO)?;
        match process.call(method, params, handler, deadline) {
            Ok(answer) => {
                self.check_in(Some(process));
                Ok(answer)
            }
            Err(failure) => {
                self.check_in(None);
                Err(failure)
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle process that is still alive (`true`), waiting up to `wait` for a busy one to
    /// come back, or else a new one (`false`). Counted busy until [`Runner::check_in`].
    fn check_out(&self, wait: Duration) -> Result<(PluginProcess, bool), CallFailure> {
        let until = Instant::now() + wait;
        let mut pool = self.lock();
        loop {
            while let Some(mut process) = pool.idle.pop() {
                if !process.exited() {
                    pool.busy += 1;
                    return Ok((process, true));
                }
            }
            let now = Instant::now();
            if pool.busy == 0 || now >= until {
                break;
            }
            pool = self
                .returned
                .wait_timeout(pool, until - now)
                .map_or_else(|p| p.into_inner().0, |(pool, _)| pool);
        }
        pool.busy += 1;
        drop(pool);
        match self.start() {
            Ok(process) => Ok((process, false)),
            Err(failure) => {
                self.check_in(None);
                Err(failure)
            }
        }
    }

    /// A process back from a call, to keep for the next one, or `None`: it is gone.
    fn check_in(&self, process: Option<PluginProcess>) {
        let mut pool = self.lock();
        pool.busy = pool.busy.saturating_sub(1);
        if let Some(process) = process
            && pool.idle.len() < MAX_IDLE
        {
            pool.idle.push(process);
        }
        drop(pool);
        self.returned.notify_one();
    }

    /// Reaps the idle processes that have ended (their idle minute was up), so none stays a
    /// zombie until the plugin's next call; returns how many.
    pub fn reap_ended(&self) -> usize {
        let mut pool = self.lock();
        let before = pool.idle.len();
        pool.idle.retain_mut(|process| !process.exited());
        before - pool.idle.len()
    }

    /// A new process with the library loaded; it must still be the same plugin.
    fn start(&self) -> Result<PluginProcess, CallFailure> {
        let (described, process) = Runner::load(&self.exe, &self.file).map_err(|reason| {
            CallFailure::Protocol(format!("the plugin file can no longer be loaded: {reason}"))
        })?;
        if described.name != self.name {
            return Err(CallFailure::Protocol(format!(
                "{} now holds plugin {}, not {}: restart certvaktd to load it",
                self.file.display(),
                described.name,
                self.name
            )));
        }
        Ok(process)
    }
}
