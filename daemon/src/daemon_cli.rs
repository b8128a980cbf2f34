//! daemon_cli
