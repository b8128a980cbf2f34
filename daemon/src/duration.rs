//! Human durations in configuration (`"30d"`, `"1d12h"`, `"1m30s"`): the SDK's parser, so the
//! daemon and every plugin read one syntax with one limit (100 years). See
//! [`certvakt_plugin_api::duration`].

pub use certvakt_plugin_api::duration::{HumanDuration, MAX_SECS, ParseDurationError};
