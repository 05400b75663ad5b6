//! Reading variables through a lookup closure and collecting every problem, so that the whole
//! list can be reported at once.

use std::fmt;
use std::time::Duration;

use carevault_api::Environment;

/// The configuration problems, one per line, each naming the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The unit a duration variable is written in (`_MS`, `_SECONDS`, `_MINUTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Milliseconds,
    Seconds,
    Minutes,
}

impl Unit {
    /// `duration` as a whole number of this unit (the library defaults are whole numbers).
    pub(super) fn count(self, duration: Duration) -> u64 {
        let count = match self {
            Unit::Milliseconds => duration.as_millis(),
            Unit::Seconds => u128::from(duration.as_secs()),
            Unit::Minutes => u128::from(duration.as_secs() / 60),
        };
        u64::try_from(count).unwrap_or(u64::MAX)
    }

    fn duration(self, count: u64) -> Duration {
        match self {
            Unit::Milliseconds => Duration::from_millis(count),
            Unit::Seconds => Duration::from_secs(count),
            Unit::Minutes => Duration::from_secs(count.saturating_mul(60)),
        }
    }
}

/// Reads the variables, treating an empty (or blank) value as unset (container env files often
/// write `NAME=`), and collects the problems found on the way.
pub(super) struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl<'a> Vars<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Vars<'a> {
        Vars { lookup, problems: Vec::new() }
    }

    /// Records a problem: what is wrong with which variable, and the fix.
    pub(super) fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// The trimmed value, `None` when unset or blank.
    pub(super) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// The value as written, `None` when unset or empty. Not trimmed: a secret is used byte for
    /// byte by whoever else holds it.
    pub(super) fn secret(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    /// A whole number in `min..=max`, or `default` when unset (or refused).
    pub(super) fn number(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        self.count(name, default, min, max).unwrap_or(default)
    }

    /// A duration written as a whole number of `unit` in `min..=max`, or `default` when unset (or
    /// refused).
    pub(super) fn duration(&mut self, name: &str, unit: Unit, default: Duration, min: u64, max: u64) -> Duration {
        self.count(name, unit.count(default), min, max).map_or(default, |count| unit.duration(count))
    }

    /// The number set, `None` when unset or refused (the refusal names `default`).
    fn count(&mut self, name: &str, default: u64, min: u64, max: u64) -> Option<u64> {
        let text = self.get(name)?;
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(format!(
                    "{name} must be a whole number from {min} to {max}, got {text:?}; unset it for the default {default}"
                ));
                None
            }
        }
    }

    /// `true`/`1` or `false`/`0`, or `default` when unset.
    pub(super) fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.get(name).as_deref() {
            None => default,
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(text) => {
                self.problem(format!("{name} must be true or false, got {text:?}; unset it for the default {default}"));
                default
            }
        }
    }

    /// `ENVIRONMENT`, development when unset.
    pub(super) fn environment(&mut self) -> Environment {
        match self.get("ENVIRONMENT") {
            None => Environment::default(),
            Some(text) => Environment::parse(&text).unwrap_or_else(|| {
                self.problem(format!("ENVIRONMENT must be development, staging or production, got {text:?}"));
                // Check the rest as the default; the environment must be fixed first anyway.
                Environment::default()
            }),
        }
    }

    /// `value`, or every problem found.
    pub(super) fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() { Ok(value) } else { Err(ConfigError(self.problems)) }
    }
}

/// `ENVIRONMENT` alone (for commands that need nothing else, like `token mint`).
pub fn environment(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Environment, ConfigError> {
    let mut vars = Vars::new(lookup);
    let environment = vars.environment();
    vars.finish(environment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::lookup;

    #[test]
    fn blank_values_are_unset_and_secrets_are_kept_as_written() {
        let lookup = lookup(&[("EMPTY", ""), ("BLANK", "  "), ("PADDED", " x "), ("SECRET", " s ")]);
        let vars = Vars::new(&lookup);
        assert_eq!(vars.get("EMPTY"), None);
        assert_eq!(vars.get("BLANK"), None);
        assert_eq!(vars.get("MISSING"), None);
        assert_eq!(vars.get("PADDED").as_deref(), Some("x"));
        assert_eq!(vars.secret("SECRET").as_deref(), Some(" s "));
        assert_eq!(vars.secret("EMPTY"), None);
    }

    #[test]
    fn numbers_and_durations_are_range_checked_in_their_unit() {
        let lookup = lookup(&[("N", "7"), ("BIG", "99"), ("MINUTES", "15"), ("MS", "250"), ("BAD", "2s")]);
        let mut vars = Vars::new(&lookup);
        assert_eq!(vars.number("N", 1, 1, 10), 7);
        assert_eq!(vars.number("UNSET", 3, 1, 10), 3);
        assert_eq!(vars.number("BIG", 3, 1, 10), 3, "refused: the default");
        let hour = Duration::from_secs(3600);
        assert_eq!(vars.duration("MINUTES", Unit::Minutes, hour, 1, 60), Duration::from_secs(15 * 60));
        assert_eq!(vars.duration("MS", Unit::Milliseconds, hour, 1, 1000), Duration::from_millis(250));
        assert_eq!(vars.duration("UNSET", Unit::Seconds, hour, 1, 10), hour);
        assert_eq!(vars.duration("BAD", Unit::Seconds, hour, 1, 10_000), hour, "refused: the default");
        let problems = vars.finish(()).expect_err("two refusals").0;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("BIG must be a whole number from 1 to 10, got \"99\""), "{problems:?}");
        // The default is named in the variable's own unit.
        assert!(problems[1].contains("BAD") && problems[1].ends_with("the default 3600"), "{problems:?}");
    }

    #[test]
    fn units_convert_both_ways() {
        for unit in [Unit::Milliseconds, Unit::Seconds, Unit::Minutes] {
            assert_eq!(unit.count(unit.duration(42)), 42, "{unit:?}");
        }
        assert_eq!(Unit::Minutes.count(Duration::from_secs(3600)), 60);
        assert_eq!(Unit::Milliseconds.count(Duration::from_secs(2)), 2000);
    }

    #[test]
    fn flags_and_the_environment_are_named_when_wrong() {
        let lookup = lookup(&[("ON", "1"), ("OFF", "false"), ("MAYBE", "yes"), ("ENVIRONMENT", "prod")]);
        let mut vars = Vars::new(&lookup);
        assert!(vars.flag("ON", false));
        assert!(!vars.flag("OFF", true));
        assert!(vars.flag("MAYBE", true), "refused: the default");
        assert_eq!(vars.environment(), Environment::Development);
        let message = vars.finish(()).expect_err("refused").to_string();
        assert_eq!(
            message,
            "invalid configuration:\n  - MAYBE must be true or false, got \"yes\"; unset it for the default true\n  \
             - ENVIRONMENT must be development, staging or production, got \"prod\""
        );
    }

    #[test]
    fn the_environment_alone() {
        assert_eq!(environment(&lookup(&[("ENVIRONMENT", "staging")])), Ok(Environment::Staging));
        assert_eq!(environment(&lookup(&[])), Ok(Environment::Development));
        assert!(environment(&lookup(&[("ENVIRONMENT", "Production")])).is_err(), "names are lower case");
    }
}
