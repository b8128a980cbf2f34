//! The operator's command line, `certvakt`: a client of the control socket.
//!
//! Contract:
//! - One request per invocation, synchronous, no async runtime: the CLI must start fast. The
//!   one exception is `renew --wait`, which asks `show` before the renew and then every
//!   500 ms after it on the same connection, to follow the run ([`follow`]).
//! - stdout carries the answer (a human text, or with `--json` the daemon's response as pretty
//!   JSON, error responses included); stderr carries `certvakt: <message>` lines.
//! - The exit code is a promise scripts and monitoring rely on; it is [`Exit`], documented in
//!   `--help` ([`EXIT_CODES_HELP`]) and nowhere else decided than in [`run`] and
//!   [`render::exit_for_status`] / [`render::exit_for_show`].
//! - The socket is `--socket`, else `$CERTVAKT_SOCKET`, else `control.socket` of the
//!   configuration if it can be loaded, else [`DEFAULT_SOCKET`].
//! - `check-config` and `completion` never touch the socket: they work without a daemon.

pub mod complete;
pub mod follow;
pub mod render;
pub mod runs;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum, ValueHint};
use serde::Serialize;

use crate::config;
use crate::control::client::{Client, ClientError};
use crate::control::protocol::{
    CheckConfigReport, ConfigProblem, ErrorCode, LIST_PAGE, ListItem, Renewal, Request, Response,
};
use certvakt_plugin_api::duration::HumanDuration;

/// The socket used when nothing else names one.
pub const DEFAULT_SOCKET: &str = "/run/certvakt/control.sock";
/// Environment variable naming the socket.
pub const SOCKET_ENV: &str = "CERTVAKT_SOCKET";

/// The exit codes, as `--help` shows them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   OK
  1   WARNING: status or show: a certificate expires within warn_before; status also: a
      failing renewal, an open task, a certificate whose plugin is not loaded, a refused
      plugin file, a notification that could not be delivered, a first issue under way
      (a managed certificate with no file yet while a run for it is in progress), a
      renewed certificate staged before its not-before (not yet valid while the run that
      installed it is at step installed or verified), a certificate removed from the
      configuration that still holds a run; plugins: a plugin file was refused;
      notify test: a route failed; renew --wait: the run waits for a person, a step
      failed, or it ended without a new certificate
  2   CRITICAL: a certificate has expired or is not yet valid, or a source has a problem
      (a managed certificate with no file and no run in progress counts as missing; a
      first issue under way and a staged certificate are WARNING)
  3   UNKNOWN: certvaktd cannot be reached, does not answer within 10 seconds, or speaks
      another protocol version; renew --wait --timeout: the run is still going when the
      time is up
  4   forbidden: not allowed to connect, or the request needs admin access (root or group
      certvakt-admin may change things, group certvakt may look)
  5   not found: an unknown id (show, renew, rollback, import) or task (task show, task done)
  6   configuration invalid: check-config found problems, or a reload was refused
  7   refused: certvaktd would not do it (an import that does not fit the pending key or
      the certificate it replaces, a rollback with nothing to go back to, a certificate
      whose plugin is not loaded, task done on an import task, or another error of the
      renewal engine); the message says why
  64  usage error: an unknown command or option, a missing argument, or a file import
      cannot read

The control socket is --socket, else $CERTVAKT_SOCKET, else control.socket of the
configuration file (--config, default /etc/certvakt/certvakt.toml), else
/run/certvakt/control.sock.";

#[derive(Debug, Parser)]
#[command(
    name = "certvakt",
    version = crate::VERSION,
    about = "Ask certvaktd what it guards and what it needs: status, certificates, renewals, tasks, imports",
    after_long_help = EXIT_CODES_HELP
)]
pub struct Args {
    /// The daemon's control socket.
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub socket: Option<PathBuf>,

    /// The main configuration file (for check-config, and to find the socket).
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,

    /// Print the daemon's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// The daemon's health and every certificate that needs attention.
    Status,
    /// Every certificate found, one per line; filters and order are applied here, to the
    /// table and to --json alike.
    List {
        /// Only ids matching this glob (`fmk-*`, `/etc/ssl/*.pem`; quote it for the shell).
        #[arg(value_name = "GLOB")]
        glob: Option<glob::Pattern>,
        /// Only certificates that are expiring, expired or not yet valid.
        #[arg(long)]
        expiring: bool,
        /// Only managed certificates renewed by this plugin.
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
        /// Only managed ([[certificate]]) or only watched ([[watch]]) certificates.
        #[arg(long, value_enum, value_name = "SOURCE")]
        source: Option<ListSource>,
        /// Order by id, by expiry (soonest first) or by state (worst first); default: the
        /// daemon's order (configuration order, then file order).
        #[arg(long, value_enum, value_name = "KEY")]
        sort: Option<ListSort>,
    },
    /// Every managed certificate's renewal: the step it is at, when it acts next, failures,
    /// tasks, when it was last renewed (`status` shows at most 100 of them).
    Renewals {
        /// Only ids matching this glob (`fmk-*`; quote it for the shell).
        #[arg(value_name = "GLOB")]
        glob: Option<glob::Pattern>,
        /// Only renewals that need a person: a failure, a task waiting, a missing plugin.
        #[arg(long)]
        trouble: bool,
    },
    /// Everything about one certificate (its id, or the path of a watched file).
    Show {
        /// Certificate id as `list` shows it.
        id: String,
    },
    /// Re-read the configuration (applied only if valid) and rescan; needs admin access.
    Reload,
    /// Check the configuration here, without the daemon: every problem, exit 6 if any.
    CheckConfig,
    /// Renew a managed certificate now if it is due (--force: even if not), or retry the
    /// waiting step of a renewal in progress; needs admin access.
    Renew {
        /// Id of the managed certificate, as `list` shows it.
        id: String,
        /// Start a renewal even though the certificate is not due.
        #[arg(long)]
        force: bool,
        /// Follow the run, printing each step as it is taken, until it completes (exit 0),
        /// waits for a person (exit 1, naming the task and how to complete it) or fails
        /// (exit 1, with the error and when certvaktd tries again).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (e.g. "10m", "1h"), exit 3; the run goes on.
        #[arg(long, value_name = "DURATION", requires = "wait")]
        timeout: Option<HumanDuration>,
        /// Say what a renewal would do now (due or not, steps, key, CSR subject and SANs,
        /// hooks, tasks) and change nothing; read access is enough.
        #[arg(long, conflicts_with_all = ["force", "wait"])]
        dry_run: bool,
    },
    /// The ended runs of a managed certificate, newest first: when they started and ended,
    /// the outcome, old and new serial, plugin, and the error or tasks.
    History {
        /// Certificate id as `list` shows it.
        id: String,
        /// Show at most this many runs.
        #[arg(long, value_name = "N", default_value_t = crate::control::protocol::HISTORY_LIMIT)]
        limit: usize,
    },
    /// Stop a renewal in progress between steps, keeping the certificate in use and its key;
    /// closes its tasks and removes its pending key; needs admin access.
    Cancel {
        /// Certificate id whose run to cancel.
        id: String,
    },
    /// Discard the kept run and pending key of a certificate removed from the configuration
    /// (see `status`); needs admin access.
    Forget {
        /// Id of the removed certificate.
        id: String,
    },
    /// Install the previous version of a managed certificate again; needs admin access.
    Rollback {
        /// Id of the managed certificate, as `list` shows it.
        id: String,
    },
    /// Operator tasks waiting for a person.
    Tasks,
    /// One operator task: show it, or mark it done.
    Task {
        #[command(subcommand)]
        action: TaskAction,
    },
    /// Hand certvaktd the certificate the CA issued (PEM or DER, with or without chain), or
    /// the PKCS#12 bundle the CA made (with --password-file); for a certificate set, every
    /// file of the set at once; needs admin access.
    Import {
        /// Id of the managed certificate the file is for, as `list` shows it.
        id: String,
        /// The file, or a set's files (in any order: each goes to the role its key usage fits).
        #[arg(value_hint = ValueHint::FilePath, required = true, num_args = 1..)]
        file: Vec<PathBuf>,
        /// File holding the password of the PKCS#12 bundle(s).
        #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
        password_file: Option<PathBuf>,
    },
    /// The plugins loaded, and the plugin files refused with the reason.
    Plugins,
    /// Notifications: test the [[notify]] routes, or retry what could not be delivered.
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// Print the shell completion script for bash, zsh or fish; works without the daemon.
    Completion {
        /// The shell the script is for.
        #[arg(value_enum, value_name = "SHELL")]
        shell: Shell,
    },
    /// For the completion scripts: print the certificate ids or the open task ids, one a
    /// line; nothing (exit 0) when certvaktd does not answer within 2 seconds.
    #[command(name = "__complete", hide = true)]
    Complete {
        /// What to list: `ids` (certificates) or `tasks` (open operator tasks).
        #[arg(value_enum, value_name = "KIND")]
        kind: complete::Kind,
    },
}

/// `list --source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListSource {
    Managed,
    Watched,
}

/// `list --sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListSort {
    Id,
    Expiry,
    State,
}

/// The filters and order of a `list` command.
fn list_query(command: &Command) -> render::ListQuery {
    let Command::List {
        glob,
        expiring,
        plugin,
        source,
        sort,
    } = command
    else {
        return render::ListQuery::default();
    };
    render::ListQuery {
        glob: glob.clone(),
        expiring: *expiring,
        plugin: plugin.clone(),
        source: source.map(|s| match s {
            ListSource::Managed => render::SourceFilter::Managed,
            ListSource::Watched => render::SourceFilter::Watched,
        }),
        sort: match sort {
            None => render::SortKey::Inventory,
            Some(ListSort::Id) => render::SortKey::Id,
            Some(ListSort::Expiry) => render::SortKey::Expiry,
            Some(ListSort::State) => render::SortKey::State,
        },
    }
}

/// The width tables fit: the terminal's when stdout is one, else none (nothing is cut).
fn table_width() -> Option<usize> {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    terminal_size::terminal_size_of(&stdout).map(|(w, _)| usize::from(w.0))
}

/// The shells `certvakt completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TaskAction {
    /// Instructions and files of one task.
    Show {
        /// Task id, as `tasks` shows it.
        #[arg(value_name = "TASK")]
        id: String,
    },
    /// Mark a task done (for tasks that complete by confirmation); needs admin access.
    Done {
        /// Task id, as `tasks` shows it.
        #[arg(value_name = "TASK")]
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum NotifyAction {
    /// Send a test message through every route (or the one named) now, and show each
    /// result; exit 1 if any failed. Needs admin access.
    Test {
        /// The route's name (`name` of its [[notify]] entry); all routes when left out.
        #[arg(value_name = "ROUTE")]
        route: Option<String>,
    },
    /// Queue the undeliverable notifications (see `certvakt status`) again; needs admin
    /// access.
    Retry,
}

/// What the process exits with; see [`EXIT_CODES_HELP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    Warning,
    Critical,
    Unknown,
    Forbidden,
    NotFound,
    ConfigInvalid,
    Refused,
    Usage,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Warning => 1,
            Exit::Critical => 2,
            Exit::Unknown => 3,
            Exit::Forbidden => 4,
            Exit::NotFound => 5,
            Exit::ConfigInvalid => 6,
            Exit::Refused => 7,
            Exit::Usage => 64,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// `certvakt`'s main.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // clap prints help and version on stdout and real errors on stderr.
            let exit = if err.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            };
            let _ = err.print();
            return exit.into();
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run(&args, &mut stdout.lock(), &mut stderr.lock()).into()
}

/// Runs one command, writing to `out` and `err`. Write failures (a closed pipe) are ignored:
/// the exit code still tells the truth. Tables fit the terminal if stdout is one.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    run_with_width(args, table_width(), out, err)
}

/// [`run`], with tables fitted to `width` (`None`: nothing is cut).
pub fn run_with_width(
    args: &Args,
    width: Option<usize>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let request = match &args.command {
        Command::CheckConfig => return check_config(args, out, err),
        Command::Completion { shell } => return completion(*shell, out),
        Command::Complete { kind } => {
            let socket = socket_path(args.socket.as_deref(), std::env::var_os(SOCKET_ENV), || {
                configured_socket(args.config.as_deref())
            });
            return complete::print(*kind, socket, out);
        }
        Command::Status => Request::Status,
        Command::List { .. } => Request::List {
            offset: 0,
            limit: None,
        },
        Command::Renewals { .. } => Request::Renewals {
            offset: 0,
            limit: None,
        },
        Command::Show { id } => Request::Show { id: id.clone() },
        Command::Reload => Request::Reload,
        Command::Renew {
            id, dry_run: true, ..
        } => Request::RenewDryRun { id: id.clone() },
        Command::Renew { id, force, .. } => Request::Renew {
            id: id.clone(),
            force: *force,
        },
        Command::History { id, limit } => Request::History {
            id: id.clone(),
            limit: Some(*limit),
        },
        Command::Cancel { id } => Request::Cancel { id: id.clone() },
        Command::Forget { id } => Request::Forget { id: id.clone() },
        Command::Rollback { id } => Request::Rollback { id: id.clone() },
        Command::Tasks => Request::Tasks,
        Command::Task {
            action: TaskAction::Show { id },
        } => Request::TaskShow { id: id.clone() },
        Command::Task {
            action: TaskAction::Done { id },
        } => Request::TaskDone { id: id.clone() },
        Command::Import {
            id,
            file,
            password_file,
        } => match import_request(id, file, password_file.as_deref()) {
            Ok(request) => request,
            Err(message) => {
                let _ = writeln!(err, "certvakt: {message}");
                return Exit::Usage;
            }
        },
        Command::Plugins => Request::Plugins,
        Command::Notify {
            action: NotifyAction::Test { route },
        } => Request::NotifyTest {
            route: route.clone(),
        },
        Command::Notify {
            action: NotifyAction::Retry,
        } => Request::NotifyRetry,
    };
    let socket = socket_path(args.socket.as_deref(), std::env::var_os(SOCKET_ENV), || {
        configured_socket(args.config.as_deref())
    });
    let mut client = match Client::connect(&socket) {
        Ok(client) => client,
        Err(e) => {
            let _ = writeln!(err, "certvakt: {e}");
            return exit_for_client_error(&e);
        }
    };
    // `renew --wait` follows the run from where it stood before the request.
    let wait = match &args.command {
        Command::Renew {
            id,
            wait: true,
            timeout,
            ..
        } => Some((id, follow::renewal_before(&mut client, id), *timeout)),
        _ => None,
    };
    let answer = match request {
        Request::List { .. } => list_all(&mut client),
        Request::Renewals { .. } => renewals_all(&mut client),
        _ => client.request(&request),
    };
    let response = match answer {
        Ok(response) => response,
        Err(e) => {
            let _ = writeln!(err, "certvakt: {e}");
            return exit_for_client_error(&e);
        }
    };
    // `list` filters here, for the table and the JSON alike.
    let response = match response {
        Response::List {
            items,
            total,
            scanned_at,
        } => Response::List {
            items: list_query(&args.command).apply(items),
            total,
            scanned_at,
        },
        Response::Renewals { items, total } => Response::Renewals {
            items: renewals_query(&args.command, items),
            total,
        },
        other => other,
    };
    if args.json {
        print_json(out, err, &render::json_output(&response));
    }
    match response {
        Response::Error { code, message } => {
            let _ = writeln!(err, "certvakt: {message}");
            exit_for_error_code(code)
        }
        Response::Status(report) if request == Request::Status => {
            if !args.json {
                let _ = out.write_all(render::render_status(&report, width).as_bytes());
            }
            render::exit_for_status(&report)
        }
        Response::List { items, .. } if matches!(request, Request::List { .. }) => {
            if !args.json {
                let _ = out.write_all(render::render_list(&items, width).as_bytes());
            }
            Exit::Ok
        }
        Response::Renewals { items, .. } if matches!(request, Request::Renewals { .. }) => {
            if !args.json {
                let _ = out.write_all(render::render_renewals(&items, width).as_bytes());
            }
            Exit::Ok
        }
        Response::Show(report) if matches!(request, Request::Show { .. }) => {
            if !args.json {
                let _ = out.write_all(render::render_show(&report).as_bytes());
            }
            render::exit_for_show(&report)
        }
        Response::Reload(report) if request == Request::Reload => {
            if !args.json {
                let _ = writeln!(out, "{}", report.summary);
            }
            Exit::Ok
        }
        Response::Renew { message }
        | Response::Rollback { message }
        | Response::TaskDone { message }
        | Response::Import { message }
            if response_name_matches(&request) =>
        {
            if !args.json {
                let _ = writeln!(out, "{message}");
            }
            match wait {
                Some((id, before, timeout)) => follow::follow(
                    &mut client,
                    id,
                    before,
                    timeout.map(|t| t.0),
                    args.json,
                    out,
                    err,
                ),
                None => Exit::Ok,
            }
        }
        Response::History { id, entries } if matches!(request, Request::History { .. }) => {
            if !args.json {
                let _ = out.write_all(runs::render_history(&id, &entries).as_bytes());
            }
            Exit::Ok
        }
        Response::RenewDryRun(report) if matches!(request, Request::RenewDryRun { .. }) => {
            if !args.json {
                let _ = out.write_all(runs::render_dry_run(&report).as_bytes());
            }
            Exit::Ok
        }
        Response::Cancel { message } | Response::Forget { message }
            if matches!(request, Request::Cancel { .. } | Request::Forget { .. }) =>
        {
            if !args.json {
                let _ = writeln!(out, "{message}");
            }
            Exit::Ok
        }
        Response::Tasks { tasks } if request == Request::Tasks => {
            if !args.json {
                let _ = out
                    .write_all(render::render_tasks(&tasks, crate::now_unix(), width).as_bytes());
            }
            Exit::Ok
        }
        Response::TaskShow { task } if matches!(request, Request::TaskShow { .. }) => {
            if !args.json {
                let _ = out.write_all(render::render_task(&task).as_bytes());
            }
            Exit::Ok
        }
        Response::Plugins(report) if request == Request::Plugins => {
            if !args.json {
                let _ = out.write_all(render::render_plugins(&report).as_bytes());
            }
            if report.refused.is_empty() {
                Exit::Ok
            } else {
                Exit::Warning
            }
        }
        Response::NotifyTest { results } if matches!(request, Request::NotifyTest { .. }) => {
            if !args.json {
                let _ = out.write_all(render::render_notify_test(&results).as_bytes());
            }
            if results.iter().all(|r| r.ok) {
                Exit::Ok
            } else {
                Exit::Warning
            }
        }
        Response::NotifyRetry { queued } if request == Request::NotifyRetry => {
            if !args.json {
                let _ = writeln!(
                    out,
                    "{queued} undeliverable notification(s) queued again; `certvakt status` shows how they fare"
                );
            }
            Exit::Ok
        }
        other => {
            let _ = writeln!(
                err,
                "certvakt: certvaktd answered a {} request with a {} response; use the certvakt CLI of the same package version",
                request.name(),
                other.name()
            );
            Exit::Unknown
        }
    }
}

/// Which socket to use: the flag, else the environment, else the configuration, else the
/// default. `from_config` is only called when needed, because loading the configuration costs.
pub fn socket_path(
    flag: Option<&Path>,
    env: Option<OsString>,
    from_config: impl FnOnce() -> Option<PathBuf>,
) -> PathBuf {
    if let Some(path) = flag {
        return path.to_owned();
    }
    if let Some(env) = env.filter(|v| !v.is_empty()) {
        return PathBuf::from(env);
    }
    from_config().unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// `control.socket` of the configuration, if it loads; any failure means "not from here" and is
/// not reported, because the configuration is only a hint for finding the socket.
fn configured_socket(config: Option<&Path>) -> Option<PathBuf> {
    let path = config.unwrap_or(Path::new(config::DEFAULT_PATH));
    if !path.is_file() {
        return None;
    }
    config::load(path).ok().map(|c| c.control.socket)
}

/// Client failures: an unreachable or incompatible daemon is UNKNOWN, a refusal is forbidden.
pub fn exit_for_client_error(e: &ClientError) -> Exit {
    match e {
        ClientError::PermissionDenied { .. } | ClientError::Refused(_) => Exit::Forbidden,
        ClientError::NotRunning { .. }
        | ClientError::VersionMismatch { .. }
        | ClientError::Unavailable(_)
        | ClientError::Timeout { .. }
        | ClientError::Io { .. }
        | ClientError::Protocol(_) => Exit::Unknown,
    }
}

/// Error responses. `bad_request` means the daemon did not understand us: another protocol in
/// all but name, so UNKNOWN like a mismatch.
pub fn exit_for_error_code(code: ErrorCode) -> Exit {
    match code {
        ErrorCode::Forbidden => Exit::Forbidden,
        ErrorCode::NotFound => Exit::NotFound,
        ErrorCode::InvalidConfig => Exit::ConfigInvalid,
        ErrorCode::Refused => Exit::Refused,
        ErrorCode::BadRequest | ErrorCode::Internal => Exit::Unknown,
    }
}

/// Every certificate, asked for a page at a time on one connection (the daemon answers at
/// most [`LIST_PAGE`] at once). Pages must come from one scan: when the inventory is scanned
/// again between two pages, the listing starts over, at most [`LIST_RESTARTS`] times, and
/// then takes what it has (the scan moved on while the pages were read). An error answer is
/// returned as it is. The answer is one `list` response with every item.
pub(crate) fn list_all(client: &mut Client) -> Result<Response, ClientError> {
    let mut restarts = 0;
    'listing: loop {
        let mut items: Vec<ListItem> = Vec::new();
        let mut scan = None;
        loop {
            let page = client.request(&Request::List {
                offset: items.len(),
                limit: Some(LIST_PAGE),
            })?;
            let Response::List {
                items: page,
                total,
                scanned_at,
            } = page
            else {
                return Ok(page);
            };
            if scan.is_some_and(|s| s != scanned_at) && restarts < LIST_RESTARTS {
                restarts += 1;
                continue 'listing;
            }
            scan = Some(scanned_at);
            let empty = page.is_empty();
            items.extend(page);
            if items.len() >= total || empty {
                return Ok(Response::List {
                    total: items.len(),
                    items,
                    scanned_at,
                });
            }
        }
    }
}

/// Every renewal, page after page. The engine's view can change between two pages; a
/// renewal is listed once even so (by id), and a certificate added meanwhile may be missing,
/// as from a `status` a moment earlier.
pub(crate) fn renewals_all(client: &mut Client) -> Result<Response, ClientError> {
    let mut items: Vec<Renewal> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let page = client.request(&Request::Renewals {
            offset,
            limit: Some(LIST_PAGE),
        })?;
        let Response::Renewals { items: page, total } = page else {
            return Ok(page);
        };
        offset += page.len();
        let empty = page.is_empty();
        items.extend(page.into_iter().filter(|r| seen.insert(r.id.clone())));
        if offset >= total || empty {
            return Ok(Response::Renewals {
                total: items.len(),
                items,
            });
        }
    }
}

/// `renewals`' filters, applied here to the table and to --json alike.
fn renewals_query(command: &Command, items: Vec<Renewal>) -> Vec<Renewal> {
    let Command::Renewals { glob, trouble } = command else {
        return items;
    };
    items
        .into_iter()
        .filter(|r| glob.as_ref().is_none_or(|g| g.matches(&r.id)))
        .filter(|r| !trouble || r.failures > 0 || !r.open_tasks.is_empty() || !r.plugin_loaded)
        .collect()
}

/// How often [`list_all`] starts over when a rescan lands between two pages.
const LIST_RESTARTS: usize = 3;

/// Whether a message response can answer `request` (renew, rollback, task done, import).
fn response_name_matches(request: &Request) -> bool {
    matches!(
        request,
        Request::Renew { .. }
            | Request::Rollback { .. }
            | Request::TaskDone { .. }
            | Request::Import { .. }
    )
}

/// Reads the file to import (the CLI runs as the operator, who can read it; the daemon may
/// not) and its password file.
fn import_request(
    id: &str,
    files: &[PathBuf],
    password_file: Option<&Path>,
) -> Result<Request, String> {
    use base64::Engine as _;
    let mut data = Vec::with_capacity(files.len());
    // Regular files only, capped, opened without blocking: a FIFO or a device named by mistake
    // is refused at once rather than hanging the command.
    for file in files {
        let bytes = zeroize::Zeroizing::new(
            crate::bounded::read(file, crate::bounded::CERT_FILE_LIMIT)
                .map_err(|e| format!("cannot read {}", e.sentence(file)))?,
        );
        data.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
    }
    let mut data = data.into_iter();
    let first = data.next().ok_or("name the file to import")?;
    let password = match password_file {
        Some(path) => {
            let bytes = crate::bounded::read(path, crate::bounded::PASSWORD_FILE_LIMIT)
                .map(zeroize::Zeroizing::new)
                .map_err(|e| format!("cannot read the password file {}", e.sentence(path)))?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| format!("the password file {} is not UTF-8 text", path.display()))?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        None => None,
    };
    Ok(Request::Import {
        id: id.to_owned(),
        data: first,
        password,
        more: data.collect(),
    })
}

/// Writes the completion script for `shell`: clap_complete's, with certificate and task ids
/// from the daemon where the arguments take them ([`complete`]). The script is made in memory
/// first: the generator panics on a failed write, and a closed pipe must not make a panic.
pub fn completion(shell: Shell, out: &mut dyn Write) -> Exit {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Args::command();
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut command, "certvakt", &mut script);
    let script = complete::extend(
        shell,
        &command,
        String::from_utf8_lossy(&script).into_owned(),
    );
    let _ = out.write_all(script.as_bytes());
    Exit::Ok
}

fn print_json<T: Serialize>(out: &mut dyn Write, err: &mut dyn Write, value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            let _ = writeln!(out, "{text}");
        }
        Err(e) => {
            let _ = writeln!(err, "certvakt: cannot print the answer as JSON: {e}");
        }
    }
}

fn check_config(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    let loaded = crate::plugin_host::load_and_check(&path);
    if args.json {
        let (ok, problems, summary) = match &loaded {
            Ok(config) => (true, Vec::new(), Some(config.summary())),
            Err(problems) => (
                false,
                problems.iter().map(ConfigProblem::from).collect(),
                None,
            ),
        };
        print_json(
            out,
            err,
            &CheckConfigReport {
                ok,
                problems,
                summary,
            },
        );
    }
    match loaded {
        Ok(config) => {
            if !args.json {
                let _ = writeln!(out, "{}: ok: {}", path.display(), config.summary());
            }
            Exit::Ok
        }
        Err(problems) => {
            if !args.json {
                for problem in &problems {
                    let _ = writeln!(err, "{problem}");
                }
                let _ = writeln!(
                    err,
                    "certvakt: {}: {} problem(s); the configuration is not valid",
                    path.display(),
                    problems.len()
                );
            }
            Exit::ConfigInvalid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Backend;
    use crate::control::auth::{AccessPolicy, GroupRef, current_gid};
    use crate::control::protocol::{Counts, Health, ReloadReport, StatusReport};
    use std::sync::{Arc, RwLock};
    use std::time::Duration;

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        let all = [
            (Exit::Ok, 0),
            (Exit::Warning, 1),
            (Exit::Critical, 2),
            (Exit::Unknown, 3),
            (Exit::Forbidden, 4),
            (Exit::NotFound, 5),
            (Exit::ConfigInvalid, 6),
            (Exit::Usage, 64),
        ];
        for (exit, code) in all {
            assert_eq!(exit.code(), code, "{exit:?}");
            let line = format!("  {code:<4}");
            assert!(EXIT_CODES_HELP.contains(&line), "help lacks {line:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent_and_parses_global_flags_anywhere() {
        Args::command().debug_assert();
        let args = Args::try_parse_from([
            "certvakt", "show", "fmk-prod", "--json", "--socket", "/tmp/s",
        ])
        .expect("parse");
        assert_eq!(
            args.command,
            Command::Show {
                id: "fmk-prod".into()
            }
        );
        assert!(args.json);
        assert_eq!(args.socket.as_deref(), Some(Path::new("/tmp/s")));
        let args = Args::try_parse_from(["certvakt", "--config", "/etc/x.toml", "check-config"])
            .expect("parse");
        assert_eq!(args.command, Command::CheckConfig);

        let help = Args::try_parse_from(["certvakt", "--help"]).expect_err("help is an early exit");
        assert!(!help.use_stderr(), "help goes to stdout, exit 0");
        let version =
            Args::try_parse_from(["certvakt", "--version"]).expect_err("version is an early exit");
        assert!(!version.use_stderr());
        assert!(version.to_string().contains(crate::VERSION));
        let bad = Args::try_parse_from(["certvakt", "frobnicate"]).expect_err("unknown command");
        assert!(bad.use_stderr(), "usage errors go to stderr, exit 64");
        let none = Args::try_parse_from(["certvakt"]).expect_err("a command is required");
        assert!(none.use_stderr());

        let long_help = Args::command().render_long_help().to_string();
        assert!(long_help.contains("64  usage error"), "{long_help}");
    }

    #[test]
    fn renew_waits_with_a_timeout_only_when_asked_to_wait() {
        let args = Args::try_parse_from(["certvakt", "renew", "web", "--wait", "--timeout", "10m"])
            .expect("parse");
        assert_eq!(
            args.command,
            Command::Renew {
                id: "web".into(),
                force: false,
                wait: true,
                timeout: Some(HumanDuration(Duration::from_secs(600))),
                dry_run: false,
            }
        );
        let alone = Args::try_parse_from(["certvakt", "renew", "web", "--timeout", "10m"])
            .expect_err("--timeout needs --wait");
        assert!(alone.use_stderr());
        let bare = Args::try_parse_from(["certvakt", "renew", "web", "--wait", "--timeout", "10"])
            .expect_err("a bare number is no duration");
        assert!(bare.to_string().contains("is not a duration"), "{bare}");
    }

    #[test]
    fn completion_needs_no_daemon_and_names_every_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let missing = missing.to_str().expect("utf-8");
        for shell in ["bash", "zsh", "fish"] {
            let args = Args::try_parse_from([
                "certvakt",
                "--socket",
                missing,
                "--config",
                missing,
                "completion",
                shell,
            ])
            .expect("parse");
            let (mut out, mut err) = (Vec::new(), Vec::new());
            assert_eq!(run(&args, &mut out, &mut err), Exit::Ok, "{shell}");
            assert!(err.is_empty(), "{shell}: {}", String::from_utf8_lossy(&err));
            let script = String::from_utf8(out).expect("utf-8");
            for command in Args::command().get_subcommands() {
                assert!(
                    script.contains(command.get_name()),
                    "{shell} script lacks {}",
                    command.get_name()
                );
            }
        }
        let other = Args::try_parse_from(["certvakt", "completion", "powershell"])
            .expect_err("only bash, zsh and fish");
        assert!(other.use_stderr());
    }

    #[test]
    fn socket_path_precedence() {
        let from_config = || Some(PathBuf::from("/etc-configured.sock"));
        assert_eq!(
            socket_path(
                Some(Path::new("/flag.sock")),
                Some("/env.sock".into()),
                from_config
            ),
            PathBuf::from("/flag.sock")
        );
        assert_eq!(
            socket_path(None, Some("/env.sock".into()), from_config),
            PathBuf::from("/env.sock")
        );
        assert_eq!(
            socket_path(None, Some("".into()), from_config),
            PathBuf::from("/etc-configured.sock")
        );
        assert_eq!(
            socket_path(None, None, from_config),
            PathBuf::from("/etc-configured.sock")
        );
        assert_eq!(
            socket_path(None, None, || None),
            PathBuf::from(DEFAULT_SOCKET)
        );
        // The configuration is not even looked at when a flag or the environment decides.
        let mut asked = false;
        let _ = socket_path(None, Some("/env.sock".into()), || {
            asked = true;
            None
        });
        assert!(!asked);
    }

    #[test]
    fn client_errors_and_error_codes_map_to_exit_codes() {
        assert_eq!(
            exit_for_client_error(&ClientError::NotRunning {
                path: PathBuf::from("/x")
            }),
            Exit::Unknown
        );
        assert_eq!(
            exit_for_client_error(&ClientError::VersionMismatch {
                daemon_protocol: 2,
                daemon_version: "0.2.0".into()
            }),
            Exit::Unknown
        );
        assert_eq!(
            exit_for_client_error(&ClientError::Refused("no".into())),
            Exit::Forbidden
        );
        assert_eq!(exit_for_error_code(ErrorCode::Forbidden), Exit::Forbidden);
        assert_eq!(exit_for_error_code(ErrorCode::NotFound), Exit::NotFound);
        assert_eq!(
            exit_for_error_code(ErrorCode::InvalidConfig),
            Exit::ConfigInvalid
        );
        assert_eq!(exit_for_error_code(ErrorCode::BadRequest), Exit::Unknown);
    }

    #[test]
    fn unreachable_daemon_is_unknown_with_a_sentence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("none.sock");
        let args = Args::try_parse_from([
            "certvakt",
            "--socket",
            socket.to_str().expect("utf-8"),
            "status",
        ])
        .expect("parse");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&args, &mut out, &mut err), Exit::Unknown);
        assert!(out.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&err),
            format!(
                "certvakt: certvaktd is not running: no control socket at {} (start it with `systemctl start certvakt`, or pass --socket)\n",
                socket.display()
            )
        );
    }

    struct Fake;

    impl Backend for Fake {
        async fn handle(&self, request: Request) -> Response {
            match request {
                Request::Status => Response::Status(Box::new(StatusReport {
                    version: crate::VERSION.into(),
                    pid: 7,
                    started_at: 1_800_000_000,
                    now: 1_800_000_060,
                    config_files: vec![],
                    config_loaded_at: 1_800_000_000,
                    last_reload_error: None,
                    scanned_at: 1_800_000_000,
                    socket: PathBuf::from("/run/certvakt/control.sock"),
                    metrics_listen: None,
                    warn_before_secs: 86_400,
                    health: Health::Warning,
                    counts: Counts {
                        expiring: 1,
                        ..Counts::default()
                    },
                    attention: vec![],
                    problems: vec![],
                    renewals: Vec::new(),
                    plugins_refused: 0,
                    notifications: Default::default(),
                    removed: Vec::new(),
                    first_issues: Vec::new(),
                    attention_more: 0,
                    renewals_more: 0,
                    renewal_counts: Default::default(),
                    problems_more: 0,
                })),
                Request::List { .. } => Response::List {
                    items: vec![],
                    total: 0,
                    scanned_at: 0,
                },
                Request::Show { id } => Response::Error {
                    code: ErrorCode::NotFound,
                    message: format!("no certificate or source with id {id}"),
                },
                Request::Reload => Response::Reload(ReloadReport {
                    summary: "1 file(s) read; 0 managed certificate(s)".into(),
                    certificates: 0,
                    problems: 0,
                }),
                Request::Rollback { id } => Response::Error {
                    code: ErrorCode::Refused,
                    message: format!("{id} has no previous version"),
                },
                other => Response::Error {
                    code: ErrorCode::BadRequest,
                    message: format!("{} is not served by this test backend", other.name()),
                },
            }
        }
    }

    /// A daemon with `total` certificates that answers `list` a page at a time, and whose
    /// inventory is scanned again once, after its first page was read.
    struct Paged {
        total: usize,
        asked: std::sync::Mutex<Vec<(usize, Option<usize>)>>,
    }

    impl Backend for Paged {
        async fn handle(&self, request: Request) -> Response {
            let Request::List { offset, limit } = request else {
                return Response::Error {
                    code: ErrorCode::BadRequest,
                    message: "only list".into(),
                };
            };
            let mut asked = self.asked.lock().expect("lock");
            asked.push((offset, limit));
            // The second page comes from a newer scan than the first.
            let scanned_at = if asked.len() == 1 { 1 } else { 2 };
            let limit = limit.unwrap_or(LIST_PAGE).min(LIST_PAGE);
            Response::List {
                items: (offset..self.total.min(offset + limit))
                    .map(|n| ListItem {
                        id: format!("c{n:05}"),
                        source: crate::control::protocol::SourceKind::Watched {
                            pattern: "/etc/ssl/*.pem".into(),
                        },
                        path: PathBuf::from(format!("/etc/ssl/c{n:05}.pem")),
                        name: "apotek.example".into(),
                        identity: None,
                        not_after: 1_803_859_200,
                        seconds_left: 86_400 * 90,
                        state: crate::control::protocol::CertState::Ok,
                        identity_fields: None,
                        staged: false,
                    })
                    .collect(),
                total: self.total,
                scanned_at,
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn list_reads_every_page_of_one_scan() {
        let total = 2 * LIST_PAGE + 37;
        let backend = Arc::new(Paged {
            total,
            asked: std::sync::Mutex::new(Vec::new()),
        });
        let policy = admin_of_this_process();
        let results = against(
            backend.clone(),
            policy,
            vec![argv(&["--json", "list"]), argv(&["list", "c0200*"])],
        )
        .await;
        let (exit, out, err) = &results[0];
        assert_eq!(*exit, Exit::Ok, "{err}");
        let json: serde_json::Value = serde_json::from_str(out).expect("json");
        let ids: Vec<&str> = json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["id"].as_str().expect("id"))
            .collect();
        let expected: Vec<String> = (0..total).map(|n| format!("c{n:05}")).collect();
        assert_eq!(ids, expected, "every certificate once, in inventory order");
        assert_eq!(json["total"], total);
        // The second page came from a newer scan: the listing started over at 0 and read all
        // three pages of that scan; the next command starts at 0 again. Never more than a
        // page at once.
        let asked = backend.asked.lock().expect("lock").clone();
        let offsets: Vec<usize> = asked.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets[..6], [0, LIST_PAGE, 0, LIST_PAGE, 2 * LIST_PAGE, 0]);
        assert!(asked.iter().all(|(_, limit)| *limit == Some(LIST_PAGE)));
        // Filters apply to the whole listing, beyond the first page.
        let (exit, out, _) = &results[1];
        assert_eq!(*exit, Exit::Ok);
        assert_eq!(out.lines().count(), 1 + 10, "{out}");
        assert!(out.contains("c02009"), "{out}");
    }

    /// Runs CLI invocations against a real server with a fake backend.
    async fn against_fake(
        policy: AccessPolicy,
        argv: Vec<Vec<String>>,
    ) -> Vec<(Exit, String, String)> {
        against(Arc::new(Fake), policy, argv).await
    }

    async fn against<B: Backend>(
        backend: Arc<B>,
        policy: AccessPolicy,
        argv: Vec<Vec<String>>,
    ) -> Vec<(Exit, String, String)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("control.sock");
        let guard = crate::control::server::bind(&socket).expect("bind");
        let listener = guard.tokio_listener().expect("listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::control::server::serve(
            listener,
            backend,
            Arc::new(RwLock::new(policy)),
            async move {
                let _ = stopped.await;
            },
        ));
        let socket_arg = socket.display().to_string();
        let results = tokio::task::spawn_blocking(move || {
            argv.into_iter()
                .map(|mut a| {
                    a.splice(
                        0..0,
                        [
                            "certvakt".to_owned(),
                            "--socket".to_owned(),
                            socket_arg.clone(),
                        ],
                    );
                    let args = Args::try_parse_from(a).expect("parse");
                    let (mut out, mut err) = (Vec::new(), Vec::new());
                    let exit = run(&args, &mut out, &mut err);
                    (
                        exit,
                        String::from_utf8_lossy(&out).into_owned(),
                        String::from_utf8_lossy(&err).into_owned(),
                    )
                })
                .collect::<Vec<_>>()
        });
        let results = tokio::time::timeout(Duration::from_secs(30), results)
            .await
            .expect("in time")
            .expect("no panic");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        drop(guard);
        results
    }

    /// A policy that makes this test process's group the admin group.
    fn admin_of_this_process() -> AccessPolicy {
        AccessPolicy::from_groups(
            Some(GroupRef {
                name: "test-admin".into(),
                gid: current_gid(),
                members: vec![],
            }),
            None,
        )
        .without_root_rule()
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn commands_against_a_running_server() {
        let admin = admin_of_this_process();
        let results = against_fake(
            admin,
            vec![
                argv(&["status"]),
                argv(&["--json", "list"]),
                argv(&["show", "nope"]),
                argv(&["reload"]),
            ],
        )
        .await;

        let (exit, out, err) = &results[0];
        assert_eq!(*exit, Exit::Warning);
        assert!(
            out.contains("health:       WARNING: 0 ok, 1 expiring"),
            "{out}"
        );
        assert!(err.is_empty(), "{err}");

        let (exit, out, _) = &results[1];
        assert_eq!(*exit, Exit::Ok);
        let json: serde_json::Value = serde_json::from_str(out).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"schema": "certvakt.list/1", "response": "list", "items": [], "total": 0, "scanned_at": 0})
        );

        let (exit, out, err) = &results[2];
        assert_eq!(*exit, Exit::NotFound);
        assert!(out.is_empty());
        assert_eq!(err, "certvakt: no certificate or source with id nope\n");

        let (exit, out, _) = &results[3];
        assert_eq!(*exit, Exit::Ok);
        assert_eq!(out, "1 file(s) read; 0 managed certificate(s)\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reload_with_read_access_is_forbidden() {
        let reader = AccessPolicy::from_groups(
            Some(GroupRef {
                name: "test-admin".into(),
                gid: 3_999_999_999,
                members: vec![],
            }),
            Some(GroupRef {
                name: "test-read".into(),
                gid: current_gid(),
                members: vec![],
            }),
        )
        .without_root_rule();
        let results = against_fake(reader, vec![argv(&["reload"])]).await;
        let (exit, out, err) = &results[0];
        assert_eq!(*exit, Exit::Forbidden);
        assert!(out.is_empty());
        assert_eq!(
            err,
            "certvakt: reload needs admin access (root or group test-admin); you have read access\n"
        );
    }
}

#[cfg(test)]
mod import_files {
    use super::*;

    #[test]
    fn a_fifo_named_for_import_is_refused_at_once_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("download.p12");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let started = std::time::Instant::now();
        let error = import_request("nhn", std::slice::from_ref(&fifo), None).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(error.contains(&fifo.display().to_string()), "{error}");
        let file = dir.path().join("cert.pem");
        std::fs::write(&file, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let password = import_request("nhn", &[file], Some(&fifo)).unwrap_err();
        assert!(
            password.contains("cannot read the password file"),
            "{password}"
        );
    }
}

#[cfg(test)]
mod help_text_tests {
    use super::*;

    /// Every subcommand and every argument, positionals included, says what it is in `--help`
    /// (the hidden ones too: `certvakt __complete --help` is read by whoever debugs a TAB).
    #[test]
    fn every_subcommand_and_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{}>", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Args::command(), "certvakt", &mut missing);
        assert!(
            missing.is_empty(),
            "without help text: {}",
            missing.join(", ")
        );
    }
}
