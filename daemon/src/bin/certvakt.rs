//! `certvakt`: the operator's command line; everything happens in [`certvakt::cli`].

fn main() -> std::process::ExitCode {
    // `check-config` loads the plugins in processes of this same program.
    if let Some(code) = certvakt::plugin_host::sandbox::run_if_asked() {
        return code;
    }
    certvakt::cli::main()
}
