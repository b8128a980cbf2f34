//! `certvaktd`: the certvakt service. All the work is in the library.

// The daemon's own memory comes from jemalloc, set up for a process that runs for months
// beside other software: one arena, small thread caches, and pages given back to the
// kernel as soon as they are free. glibc's allocator (still used by the C parts) kept the
// peak of every reload: 20 reloads between 1,000 and 2,000 managed certificates took it from
// 21 to 26 MiB, with jemalloc the figure stays within 4 %. See `certvakt::allocator`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings (read at its first allocation; `_RJEM_MALLOC_CONF` in the
/// environment overrides them): one arena (the loop is one thread; the helper threads'
/// work is short), thread caches of at most 8 objects up to 64 bytes, and freed pages
/// returned at once (no background thread, so nothing wakes an idle daemon to purge).
#[allow(non_upper_case_globals, unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 84] =
    b"narenas:1,tcache_max:64,tcache_nslots_small_max:8,dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    // A plugin process is this same program, started by the daemon.
    if let Some(code) = certvakt::plugin_host::sandbox::run_if_asked() {
        return code;
    }
    certvakt::daemon_cli::main()
}
