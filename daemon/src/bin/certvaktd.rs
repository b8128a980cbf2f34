//! `certvaktd`: the certvakt service. All the work is in the library.

fn main() -> std::process::ExitCode {
    certvakt::daemon_cli::main()
}
