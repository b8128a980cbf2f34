//! A renewal run's plugin state, read back at each step.
//!
//! The daemon keeps what a plugin returned as `state` and hands it back at the next call of
//! the same run (`null` at the first). It is the plugin's journal of what it did at the
//! authority: dk-fmk's records the old certificate's whitelisting, to delete after the
//! overlap. Read as "nothing done yet" when it does not parse, a step can report done without
//! doing its work, so it is never read that way.
//!
//! Contract:
//! - [`read`]: `null` is the start of the run, `T::default()`; a state that parses is that
//!   `T`; anything else is an [`ErrorKind::Permanent`](certvakt_plugin_api::ErrorKind) error
//!   that names the plugin, the step, the place in the state that does not parse
//!   (`retire.foces_id`) with serde's reason, and what the operator can do. The daemon then
//!   waits `retry_max` and asks again, which fails the same way until a person acts.
//! - [`parse`]: the same without the error, for a plugin whose safe reading of a state it
//!   cannot read is to start over (acme's order); it must say so itself, in the journal.
//! - serde's reason may quote a value from the state, so a plugin's state holds no secrets
//!   and no personal data.

use std::fmt;

use certvakt_plugin_api::PluginError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The call that reads a run's state, for the error when it does not parse.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The plugin's name (`dk-fmk`).
    pub plugin: &'a str,
    /// The method reading it (`retire`).
    pub method: &'a str,
    /// The certificate's configured id, for the commands the error names.
    pub certificate_id: &'a str,
    /// What a person checks or does at the authority before the step may start afresh (with
    /// the state cleared): a clause, e.g. "delete … as the Apoteker".
    pub by_hand: &'a str,
}

/// A state that does not parse: where, and serde's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The place in the state, as `retire.foces_id`; `.` for the state as a whole.
    pub path: String,
    /// serde's reason (`invalid type: integer `7`, expected a string`).
    pub reason: String,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path == "." || self.path.is_empty() {
            write!(f, "the whole state: {}", self.reason)
        } else {
            write!(f, "at `{}`: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for Unreadable {}

impl Unreadable {
    /// The error that stops the run at `step`.
    pub fn stops(&self, step: &Step<'_>) -> PluginError {
        let Step {
            plugin,
            method,
            certificate_id: id,
            by_hand,
        } = step;
        PluginError::permanent(format!(
            "{plugin} cannot read the state certvakt keeps for this renewal run of {id} in \
             {method} ({self}). It was written by another version of {plugin}, or it is \
             damaged; certvakt stops the run at this step rather than guess what the steps \
             before did. If {plugin} was upgraded or downgraded while the run was under way, \
             put back the version that started it and run `certvakt renew {id}` to try the \
             step again. Otherwise a person takes over: {by_hand}; then stop certvaktd, set \
             `run.plugin_state` to `null` in `certs/{id}/state.json` in certvakt's state \
             directory and start certvaktd again: {method} then starts afresh. `certvakt \
             show {id}` shows where the run is."
        ))
    }
}

/// The run's state as `T`: `T::default()` for `null` (the run's first call).
pub fn parse<T: DeserializeOwned + Default>(state: &Value) -> Result<T, Unreadable> {
    if state.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(state).map_err(|e| Unreadable {
        path: e.path().to_string(),
        reason: e.inner().to_string(),
    })
}

/// The run's state as `T`, or the error that stops the run at `step` ([module docs](self)).
pub fn read<T: DeserializeOwned + Default>(
    state: &Value,
    step: &Step<'_>,
) -> Result<T, PluginError> {
    parse(state).map_err(|unreadable| unreadable.stops(step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use certvakt_plugin_api::ErrorKind;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    struct Journal {
        #[serde(default)]
        retire: Option<Entry>,
        #[serde(default)]
        kept: bool,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Entry {
        cvr: String,
        ids: Vec<String>,
    }

    const STEP: Step<'static> = Step {
        plugin: "dk-fmk",
        method: "retire",
        certificate_id: "fmk",
        by_hand: "delete the old entry by hand",
    };

    #[test]
    fn null_is_the_start_of_a_run() {
        assert_eq!(read::<Journal>(&Value::Null, &STEP), Ok(Journal::default()));
        assert_eq!(parse::<Option<Entry>>(&Value::Null), Ok(None));
    }

    #[test]
    fn a_state_that_parses_is_its_value() {
        let state = json!({ "retire": { "cvr": "25450442", "ids": ["a", "b"] } });
        assert_eq!(
            read::<Journal>(&state, &STEP),
            Ok(Journal {
                retire: Some(Entry {
                    cvr: "25450442".into(),
                    ids: vec!["a".into(), "b".into()],
                }),
                kept: false,
            })
        );
        // An empty object is a state too: every field at its serde default.
        assert_eq!(read::<Journal>(&json!({}), &STEP), Ok(Journal::default()));
    }

    #[test]
    fn a_state_that_does_not_parse_names_the_place_and_stops_the_run() {
        let cases = [
            (
                json!({ "retire": { "cvr": 25450442, "ids": [] } }),
                "at `retire.cvr`: invalid type: integer `25450442`, expected a string",
            ),
            (
                json!({ "retire": { "cvr": "1", "ids": ["a", 2] } }),
                "at `retire.ids[1]`: invalid type: integer `2`, expected a string",
            ),
            (
                json!({ "retire": { "ids": [] } }),
                "at `retire`: missing field `cvr`",
            ),
            (
                json!({ "kept": "yes" }),
                "at `kept`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                json!("retire"),
                "the whole state: invalid type: string \"retire\", expected struct Journal",
            ),
        ];
        for (state, expected) in cases {
            let unreadable = parse::<Journal>(&state).expect_err(&state.to_string());
            assert_eq!(unreadable.to_string(), expected);
            let error = read::<Journal>(&state, &STEP).expect_err(&state.to_string());
            assert_eq!(error.kind, ErrorKind::Permanent);
            for part in [
                "dk-fmk cannot read the state",
                "renewal run of fmk in retire",
                expected,
                "another version of dk-fmk, or it is damaged",
                "`certvakt renew fmk`",
                "delete the old entry by hand;",
                "`certs/fmk/state.json`",
                "`certvakt show fmk`",
            ] {
                assert!(error.message.contains(part), "{part:?} not in: {error}");
            }
        }
    }
}
