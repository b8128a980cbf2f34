//! Telling people: events (a task waiting for a person, a renewal failing, a certificate
//! expiring) go out by mail, webhook or command, through the `[[notify]]` routes.
//!
//! Contract:
//! - Nothing is sent that is not first on disk: a message is written to the outbox
//!   (`<state_dir>/notify/outbox.json`, atomically) before its first attempt, and leaves it
//!   only when delivered. So a relay that is down, a restart, or a kill -9 delays a message
//!   but never loses it, and a message is sent once per route: every attempt carries the same
//!   id (mail `Message-ID`, webhook `Idempotency-Key`).
//! - What cannot be delivered within `retry_for` stays in the outbox as undeliverable: shown
//!   by `certvakt status`, counted in the metrics, never silently dropped.
//! - Sending never holds up the engine, the control socket or `/metrics`: attempts run in
//!   tasks of their own, each bounded by `[notifications] timeout`.
//!
//! The map:
//! - [`message`]: what is sent, the same for every channel.
//! - [`derive`]: which events are due, from a snapshot of the daemon and what was told.
//! - [`outbox`]: the file of what was told and what is still to deliver.
//! - [`sender`]: the task that looks, queues and hands out attempts.
//! - [`deliver`]: one attempt by a route's channel; `notify test`.
//! - [`plugin_mail`]: a plugin's own mail, sent or handed to the person as a file.
//! - [`channels`]: mail (SMTP over rustls), webhook (signed JSON POST), command.

pub mod channels;
pub mod deliver;
pub mod derive;
pub mod message;
pub mod outbox;
pub mod plugin_mail;
pub mod sender;

pub use deliver::TestResult;
pub use message::{Attachment, Message};
pub use sender::{Notifier, OutboxView, Request, Undelivered};
