//! Reading variables: each reader parses one variable and notes what is wrong with it,
//! so that a start with several bad variables names them all in one error.

use std::fmt;
use std::str::FromStr;

/// One variable that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The variable.
    pub name: &'static str,
    /// Its value, or `…` for a secret (never printed).
    pub value: String,
    /// What is wrong, and what is accepted.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is invalid: {}",
            self.name, self.value, self.reason
        )
    }
}

/// The settings cannot be used: every bad variable, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SettingsError {
    problems: Vec<Problem>,
}

impl SettingsError {
    /// The bad variables, in the order they were read.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [one] = self.problems.as_slice() {
            return one.fmt(f);
        }
        write!(f, "{} settings are invalid:", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// The variables being read, and what was wrong with them so far.
pub(crate) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl<'a> Env<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            problems: Vec::new(),
        }
    }

    /// A variable's value; empty or blank counts as unset.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// Notes a bad value.
    pub(crate) fn invalid(&mut self, name: &'static str, value: &str, reason: impl fmt::Display) {
        self.problems.push(Problem {
            name,
            value: value.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Notes a bad secret value (its value is not repeated).
    pub(crate) fn invalid_secret(&mut self, name: &'static str, reason: impl fmt::Display) {
        self.invalid(name, "…", reason);
    }

    /// An integer in `[min, max]`.
    pub(crate) fn int_in(&mut self, name: &'static str, min: usize, max: usize) -> Option<usize> {
        let v = self.get(name)?;
        match v.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.invalid(name, &v, format!("expected an integer in [{min}, {max}]"));
                None
            }
        }
    }

    /// A whole number of seconds in `[min, max]`.
    pub(crate) fn seconds_in(
        &mut self,
        name: &'static str,
        min: u64,
        max: u64,
    ) -> Option<std::time::Duration> {
        let n = self.int_in(name, min as usize, max as usize)?;
        Some(std::time::Duration::from_secs(n as u64))
    }

    /// `true`/`false`, with the other spellings each variable has always taken.
    pub(crate) fn flag(
        &mut self,
        name: &'static str,
        truthy: &[&str],
        falsy: &[&str],
    ) -> Option<bool> {
        let v = self.get(name)?;
        let word = v.trim().to_ascii_lowercase();
        if truthy.contains(&word.as_str()) {
            Some(true)
        } else if falsy.contains(&word.as_str()) {
            Some(false)
        } else {
            self.invalid(name, &v, "expected true or false");
            None
        }
    }

    /// Any value with a `FromStr`, its parse error as the reason.
    pub(crate) fn parsed<T>(&mut self, name: &'static str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let v = self.get(name)?;
        match v.trim().parse() {
            Ok(t) => Some(t),
            Err(e) => {
                self.invalid(name, &v, e);
                None
            }
        }
    }

    /// What was read, or every problem noted.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, SettingsError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(SettingsError {
                problems: self.problems,
            })
        }
    }
}

/// A lookup over fixed pairs, as tests give variables.
#[cfg(test)]
pub(crate) fn pairs<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// Asserts that each `(variable, value)` alone fails reading with an error naming it.
#[cfg(test)]
pub(crate) fn assert_each_refused<T: fmt::Debug>(
    read: impl Fn(&[(&str, &str)]) -> Result<T, SettingsError>,
    cases: &[(&str, &str)],
) {
    for &(name, bad) in cases {
        let e = read(&[(name, bad)]).unwrap_err().to_string();
        assert!(e.contains(name), "{name}={bad:?}: {e}");
    }
}
