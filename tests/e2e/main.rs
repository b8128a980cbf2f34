//! End-to-end tests: the real `certvaktd` on temporary folders, driven by the real `certvakt`
//! CLI, over certificates minted by the test CA. Nothing is mocked; asynchronous outcomes are
//! awaited with a bounded `eventually`, never with a bare sleep.

mod access;
mod acme;
mod changes;
mod cli_output;
mod common;
mod completion;
mod config;
mod denmark;
mod deploy;
mod docs;
mod engine;
mod finland;
mod fleet;
mod isolation;
mod key_policy;
mod live_files;
mod manpages;
mod monitor;
mod monitoring;
mod norway;
mod notify;
mod pkcs12_ber;
mod renewal;
mod runs;
mod service;
mod surface;
mod sweden;
