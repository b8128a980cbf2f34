//! The `certvaktd` command line: run the service, or check the configuration.
//!
//! Exit codes: 0 clean stop or valid configuration; 1 the daemon failed at runtime (could not
//! bind its socket or metrics address, ...); 6 the configuration is invalid (the same code as
//! `certvakt check-config`); 64 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

#[derive(Debug, Parser)]
#[command(
    name = "certvaktd",
    version = crate::VERSION,
    about = "The certvakt service: watches and renews organisation certificates",
    after_long_help = "Exit codes: 0 clean stop / valid configuration, 1 runtime failure, 6 invalid configuration, 64 usage error.\n\nSignals: SIGTERM and SIGINT stop the daemon; SIGHUP re-reads the configuration (applied only if valid) and rescans."
)]
pub struct Args {
    /// Main configuration file; `conf.d/*.toml` beside it is merged in name order.
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service in the foreground (the default).
    Run,
    /// Check the configuration: print every problem, exit 6 if there is any.
    CheckConfig,
}

/// Exit code for an invalid configuration, shared with `certvakt check-config`.
pub const EXIT_CONFIG: u8 = 6;
const EXIT_USAGE: u8 = 64;

/// `certvaktd`'s main.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match args.command.unwrap_or(Command::Run) {
        Command::CheckConfig => check_config(&args.config),
        Command::Run => run(args.config),
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match crate::plugin_host::load_and_check(path) {
        Ok(config) => {
            println!("{}: ok: {}", path.display(), config.summary());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("{}: {} problem(s) found", path.display(), problems.len());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(config_path: PathBuf) -> ExitCode {
    // Before any thread exists (see `allocator`).
    crate::allocator::bound_arenas();
    let config = match config::load(&config_path) {
        Ok(config) => config,
        Err(problems) => {
            crate::systemd::init_logging(log::LevelFilter::Info);
            for problem in &problems {
                log::error!(file = problem.file.display().to_string(), key = problem.key.as_str(); "{problem}");
            }
            log::error!(
                "refusing to start: {} has {} problem(s) (run `certvaktd check-config --config {}`)",
                config_path.display(),
                problems.len(),
                config_path.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::systemd::init_logging(config.daemon.log_level);
    // One thread runs the loop, the sockets and the metrics; file reading and parsing go to
    // tokio's blocking pool. A certificate monitor has no use for more, and it keeps RSS small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Plugin calls that overrun their deadline keep their thread until the plugin returns;
        // room for those must not starve the control socket's and the scanner's work.
        .max_blocking_threads(64)
        .thread_name("certvaktd")
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            log::error!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(crate::service::run(
        config_path,
        config,
        std::future::pending::<()>(),
    ));
    // A plugin call stuck past its deadline must not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
