//! One plugin's processes: started when a call needs one, kept while idle, gone after an idle
//! minute (the process exits by itself; see [`super::sandbox::IDLE_EXIT`]).
//!
//! Contract:
//! - A call takes an idle process that is still alive, or starts one and waits for it to load
//!   the library again (and to be the same plugin). A process serves one call at a time, so
//!   calls about different certificates run side by side in processes of their own.
//! - A process that answered goes back to the idle list; one that failed (crashed, was stopped
//!   at the deadline, broke the protocol) is gone, and the next call starts another.
//! - A process that ended while idle (its minute was up) is not a failure: the call is made
//!   again, once, in a new process. It is reaped when it ends ([`Runner::reap_ended`], on
//!   SIGCHLD), so `ps` shows no zombie in between.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use certvakt_plugin_api::abi::HostCallHandler;

use super::RefusalReason;
use super::process::{CallFailure, Described, PluginProcess};

/// At most this many idle processes are kept per plugin (as many as the renewal engine and
/// the settings check run calls of one plugin at once).
const MAX_IDLE: usize = 8;

/// See the module contract.
#[derive(Debug)]
pub struct Runner {
    exe: PathBuf,
    file: PathBuf,
    name: String,
    idle: Mutex<Vec<PluginProcess>>,
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
            idle: Mutex::new(vec![first]),
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
            let (mut process, was_idle) = match self.take_idle() {
                Some(process) => (process, true),
                None => (self.start()?, false),
            };
            match process.call(method, params, handler, deadline) {
                Ok(answer) => {
                    self.keep(process);
                    return Ok(answer);
                }
                // The idle minute ran out just as the call came: once more, in a new one.
                Err(CallFailure::Died(death))
                    if was_idle && death.code == Some(0) && death.signal.is_none() => {}
                Err(failure) => return Err(failure),
            }
        }
        let mut process = self.start()?;
        let answer = process.call(method, params, handler, deadline)?;
        self.keep(process);
        Ok(answer)
    }

    fn take_idle(&self) -> Option<PluginProcess> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut process) = idle.pop() {
            if !process.exited() {
                return Some(process);
            }
        }
        None
    }

    /// Reaps the idle processes that have ended (their idle minute was up), so none stays a
    /// zombie until the plugin's next call; returns how many.
    pub fn reap_ended(&self) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let before = idle.len();
        idle.retain_mut(|process| !process.exited());
        before - idle.len()
    }

    fn keep(&self, process: PluginProcess) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(process);
        }
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
