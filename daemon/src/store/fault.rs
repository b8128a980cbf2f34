//! Crash points for tests.
//!
//! Every step after which a crash leaves a different picture on disk calls [`point`]. In a
//! normal build it does nothing and compiles away. In a test build a test can arm a countdown:
//! the k-th point reached on that thread fails with [`StoreError::Injected`] and from then on
//! the thread counts as crashed: clean-up that a real `kill -9` would never run (removing temp
//! files and partial folders) is skipped, so the test sees what a crash leaves behind.
//!
//! [`StoreError::Injected`]: super::StoreError

pub(crate) use imp::*;

#[cfg(not(test))]
mod imp {
    use std::path::Path;

    #[inline(always)]
    pub(crate) fn point(_what: &'static str, _path: &Path) -> super::super::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn crashed() -> bool {
        false
    }

    #[inline(always)]
    pub(crate) fn temp_created(_temp: &Path) {}
}

#[cfg(test)]
mod imp {
    use std::cell::{Cell, RefCell};
    use std::path::Path;

    use super::super::{Result, StoreError};

    type TempHook = Box<dyn FnMut(&Path)>;

    thread_local! {
        static COUNTDOWN: Cell<Option<u32>> = const { Cell::new(None) };
        static STEP: Cell<u32> = const { Cell::new(0) };
        static CRASHED: Cell<bool> = const { Cell::new(false) };
        static ON_TEMP: RefCell<Option<TempHook>> = const { RefCell::new(None) };
    }

    /// Crash at the `k`-th point (0-based) this thread reaches from now on.
    pub(crate) fn arm(k: u32) {
        COUNTDOWN.set(Some(k));
        STEP.set(0);
        CRASHED.set(false);
    }

    /// Back to normal: no countdown, not crashed (the "restart" before `recover`).
    pub(crate) fn reset() {
        COUNTDOWN.set(None);
        STEP.set(0);
        CRASHED.set(false);
    }

    pub(crate) fn crashed() -> bool {
        CRASHED.get()
    }

    pub(crate) fn point(what: &'static str, path: &Path) -> Result<()> {
        let step = STEP.get();
        STEP.set(step + 1);
        match COUNTDOWN.get() {
            Some(0) => {
                COUNTDOWN.set(None);
                CRASHED.set(true);
                Err(StoreError::Injected {
                    step,
                    what,
                    path: path.to_path_buf(),
                })
            }
            Some(k) => {
                COUNTDOWN.set(Some(k - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Calls `hook` with each temp file right after `open` created it: before owner, mode or any
    /// content is set.
    pub(crate) fn on_temp_created(hook: impl FnMut(&Path) + 'static) {
        ON_TEMP.with_borrow_mut(|slot| *slot = Some(Box::new(hook)));
    }

    pub(crate) fn clear_temp_hook() {
        ON_TEMP.with_borrow_mut(|slot| *slot = None);
    }

    pub(crate) fn temp_created(temp: &Path) {
        ON_TEMP.with_borrow_mut(|slot| {
            if let Some(hook) = slot {
                hook(temp);
            }
        });
    }
}
