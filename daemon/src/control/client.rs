//! The control socket client used by the CLI.
