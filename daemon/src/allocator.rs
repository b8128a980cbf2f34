//! The C allocator's settings for a process that runs for months.
//!
//! The daemon's Rust allocations go to jemalloc (the global allocator of `certvaktd`, with
//! its settings beside it in `src/bin/certvaktd.rs`); what follows is for the C parts
//! (aws-lc, the C library itself), which allocate through glibc.
//!
//! Contract:
//! - [`bound_arenas`] is called first thing in `certvaktd`, before any thread exists. glibc
//!   gives every thread that allocates under contention an arena of its own, up to eight per
//!   core, and memory freed into an arena stays there. The daemon's loop is one thread; file
//!   reading, parsing and plugin calls run on tokio's blocking threads, which come and go.
//!   Each of them left its own half-empty arena behind, so RSS grew with every reload
//!   (50 reloads of 1,000 managed certificates: 17 MB to 71 MB). Two arenas: the loop's and
//!   one shared by every helper thread.
//!   The mmap threshold is fixed at 128 KiB (see [`bound_arenas`]).
//! - [`give_back`] is called after the big jobs (start, reload, the end of a burst of
//!   renewal steps): it returns the free pages of every arena to the kernel
//!   (`malloc_trim`), so the peak of a job is not kept as RSS.
//! - Both do nothing where the C library is not glibc.

#![allow(unsafe_code)]

/// Blocks at least this large are mapped on their own and given back when freed.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// How many arenas glibc may make.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
const ARENAS: i32 = 2;

/// Caps the number of glibc malloc arenas (see the module contract).
pub fn bound_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes a setting of glibc's allocator; M_ARENA_MAX takes any
    // positive value and is read when a thread next needs an arena.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        // A fixed threshold: glibc otherwise raises it to the size of the largest mapped
        // block freed so far, and from then on a reload's large passing buffers (a
        // configuration's text, lists of thousands of entries) are carved out of the heap
        // between long-lived objects instead of being mapped and unmapped.
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns free memory at the top and inside every arena to the kernel.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes the allocator's own locks and only releases pages that hold
    // no allocation; 0 keeps no extra padding at the top of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}
