//! `certvakt`: the operator's command line; everything happens in [`certvakt::cli`].

fn main() -> std::process::ExitCode {
    certvakt::cli::main()
}
