//! `certvaktd`: the certvakt service. All the work is in the library.

fn main() -> std::process::ExitCode {
    // A plugin process is this same program, started by the daemon.
    if let Some(code) = certvakt::plugin_host::sandbox::run_if_asked() {
        return code;
    }
    certvakt::daemon_cli::main()
}
