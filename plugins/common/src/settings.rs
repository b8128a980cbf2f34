//! Reading a plugin's `[certificate.settings]` (JSON) so that every problem is reported at
//! once, each naming its setting, and so that validating and acting share one parser.
//!
//! ```text
//! let mut r = SettingsReader::new(value, "dk-fmk", &docs())?;
//! let cvr = r.required("cvr", |v| digits(v, 8));
//! let mode = r.one_of("mode", &["automatic", "assisted"], "automatic");
//! r.finish(Settings { cvr, mode })   // Err(every problem) if there was one
//! ```

use certvakt_plugin_api::duration::HumanDuration;
use certvakt_plugin_api::{PluginError, SettingDoc, SettingProblem};
use serde_json::{Map, Value};

/// Collects settings and their problems.
#[derive(Debug)]
pub struct SettingsReader<'a> {
    table: &'a Map<String, Value>,
    problems: Vec<SettingProblem>,
}

impl<'a> SettingsReader<'a> {
    /// Starts reading `settings`; keys that `docs` does not list are problems already.
    pub fn new(
        settings: &'a Value,
        plugin: &str,
        docs: &[SettingDoc],
    ) -> Result<SettingsReader<'a>, Vec<SettingProblem>> {
        let Some(table) = settings.as_object() else {
            return Err(vec![
                SettingProblem::new("", "the settings must be a table")
                    .with_hint("write them under [certificate.settings]"),
            ]);
        };
        let known: Vec<&str> = docs.iter().map(|d| d.key.as_str()).collect();
        let problems = table
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .map(|key| {
                SettingProblem::new(key, format!("is not a setting of the {plugin} plugin"))
                    .with_hint(format!("the settings are: {}", known.join(", ")))
            })
            .collect();
        Ok(SettingsReader { table, problems })
    }

    /// Records a problem found by the caller.
    pub fn problem(&mut self, problem: SettingProblem) {
        self.problems.push(problem);
    }

    /// A string setting that must be given, checked by `check` (which says what is wrong).
    pub fn required(
        &mut self,
        key: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> String {
        match self.optional(key, check) {
            Some(value) => value,
            None => {
                if !self.table.contains_key(key) {
                    self.problems
                        .push(SettingProblem::new(key, "is required").with_hint(format!(
                            "write {key} = \"…\" under [certificate.settings]"
                        )));
                }
                String::new()
            }
        }
    }

    /// A string setting that may be left out; `None` when it is (or when it has a problem).
    pub fn optional(
        &mut self,
        key: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<String> {
        let value = self.table.get(key)?;
        let Some(text) = value.as_str() else {
            self.problems.push(SettingProblem::new(
                key,
                format!("must be a string, not {value}"),
            ));
            return None;
        };
        let text = text.trim();
        if let Err(message) = check(text) {
            self.problems.push(SettingProblem::new(key, message));
            return None;
        }
        Some(text.to_owned())
    }

    /// One of `choices`, `default` when left out.
    pub fn one_of(&mut self, key: &str, choices: &[&str], default: &str) -> String {
        let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
        self.optional(key, |v| {
            if choices.contains(&v) {
                Ok(())
            } else {
                Err(format!("must be one of {}, not \"{v}\"", quoted.join(", ")))
            }
        })
        .unwrap_or_else(|| default.to_owned())
    }

    /// A boolean, `default` when left out.
    pub fn flag(&mut self, key: &str, default: bool) -> bool {
        match self.table.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.problems.push(SettingProblem::new(
                    key,
                    format!("must be true or false, not {other}"),
                ));
                default
            }
        }
    }

    /// A whole number in `range`, `default` when left out.
    pub fn number(&mut self, key: &str, range: std::ops::RangeInclusive<u64>, default: u64) -> u64 {
        match self.table.get(key) {
            None => default,
            Some(value) => match value.as_u64().filter(|n| range.contains(n)) {
                Some(n) => n,
                None => {
                    self.problems.push(SettingProblem::new(
                        key,
                        format!(
                            "must be a whole number from {} to {}, not {value}",
                            range.start(),
                            range.end()
                        ),
                    ));
                    default
                }
            },
        }
    }

    /// A duration in the SDK's syntax, the daemon's own (`"90s"`, `"1m30s"`, `"2h"`; no bare
    /// numbers, at most 100 years), `default` when left out.
    pub fn duration(&mut self, key: &str, default: HumanDuration) -> HumanDuration {
        let mut parsed = None;
        self.optional(key, |text| {
            let duration = text.parse::<HumanDuration>().map_err(|e| e.to_string())?;
            parsed = Some(duration);
            Ok(())
        });
        parsed.unwrap_or(default)
    }

    /// A list of strings, each checked; empty when left out.
    pub fn list(
        &mut self,
        key: &str,
        max: usize,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Vec<String> {
        let Some(value) = self.table.get(key) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.problems.push(SettingProblem::new(
                key,
                format!("must be a list of strings, not {value}"),
            ));
            return Vec::new();
        };
        if items.len() > max {
            self.problems.push(SettingProblem::new(
                key,
                format!("has {} entries; at most {max} are allowed", items.len()),
            ));
        }
        let mut out = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let place = format!("{key}[{n}]");
            match item.as_str().map(str::trim) {
                Some(text) => match check(text) {
                    Ok(()) => out.push(text.to_owned()),
                    Err(message) => self.problems.push(SettingProblem::new(place, message)),
                },
                None => self.problems.push(SettingProblem::new(
                    place,
                    format!("must be a string, not {item}"),
                )),
            }
        }
        out
    }

    /// The settings, or every problem found.
    pub fn finish<T>(self, settings: T) -> Result<T, Vec<SettingProblem>> {
        if self.problems.is_empty() {
            Ok(settings)
        } else {
            Err(self.problems)
        }
    }
}

/// Settings problems as one configuration error, for a plugin method that cannot act.
pub fn refuse(plugin: &str, problems: &[SettingProblem]) -> PluginError {
    let list: Vec<String> = problems
        .iter()
        .map(|p| match &p.hint {
            Some(hint) => format!("{}: {} ({hint})", p.key, p.message),
            None => format!("{}: {}", p.key, p.message),
        })
        .collect();
    PluginError::configuration(format!(
        "the {plugin} plugin's settings have problems: {}",
        list.join("; ")
    ))
}

/// Exactly `n` ASCII digits.
pub fn digits(value: &str, n: usize) -> Result<(), String> {
    if value.len() == n && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("must be {n} digits, not \"{value}\""))
    }
}

/// Not empty, at most `max` characters.
pub fn text(value: &str, max: usize) -> Result<(), String> {
    match value.chars().count() {
        0 => Err("must not be empty".into()),
        n if n > max => Err(format!("is {n} characters long; at most {max} are allowed")),
        _ => Ok(()),
    }
}

/// An `https://` URL.
pub fn https_url(value: &str) -> Result<(), String> {
    match value.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("must be an https:// URL, not \"{value}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs() -> Vec<SettingDoc> {
        vec![
            SettingDoc::required("cvr", "CVR"),
            SettingDoc::optional("mode", "mode"),
            SettingDoc::optional("lines", "lines"),
        ]
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let value = json!({"cvr": "123", "mode": "fast", "lines": ["a", 3], "colour": "red"});
        let Ok(mut r) = SettingsReader::new(&value, "test", &docs()) else {
            panic!("a table");
        };
        let _ = r.required("cvr", |v| digits(v, 8));
        let mode = r.one_of("mode", &["automatic", "assisted"], "automatic");
        let lines = r.list("lines", 5, |v| text(v, 10));
        let problems = r.finish(()).err().unwrap_or_default();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["colour", "cvr", "mode", "lines[1]"]);
        assert_eq!(mode, "automatic");
        assert_eq!(lines, ["a"]);
    }

    #[test]
    fn durations_use_the_sdk_syntax() {
        let docs = [
            SettingDoc::optional("wait", "wait"),
            SettingDoc::optional("pause", "pause"),
            SettingDoc::optional("delay", "delay"),
        ];
        let value = json!({"wait": "1m30s", "pause": "90"});
        let Ok(mut r) = SettingsReader::new(&value, "test", &docs) else {
            panic!("a table");
        };
        let default = HumanDuration(std::time::Duration::from_secs(5));
        assert_eq!(r.duration("wait", default).as_secs(), 90);
        assert_eq!(r.duration("pause", default), default);
        assert_eq!(r.duration("delay", default), default);
        let problems = r.finish(()).err().unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "pause");
        assert!(
            problems[0].message.contains("a number without a unit"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_missing_requirement_is_named() {
        let value = json!({});
        let Ok(mut r) = SettingsReader::new(&value, "test", &docs()) else {
            panic!("a table");
        };
        let _ = r.required("cvr", |v| digits(v, 8));
        let problems = r.finish(()).err().unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].message, "is required");
        assert!(https_url("https://x.dk/a").is_ok());
        assert!(https_url("http://x.dk").is_err());
    }
}
