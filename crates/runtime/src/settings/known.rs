//! The variables a pynomaly process reads, so that a deployment's environment can be
//! checked for names that are not among them: a misspelt `PYNOMALY_*` setting would
//! otherwise be ignored without a word and its default used.

/// Every `PYNOMALY_*` variable a pynomaly process reads, and the other names of its
/// settings (`docs/api.md` describes each). The standard `OTEL_*` and `AWS_*` variables
/// are read as their own specifications say and are not listed.
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "LOG_LEVEL",
    "REDIS_CLUSTER",
    "REDIS_URL",
    "WORKER_CONCURRENCY",
    "PYNOMALY_BATCH_CHUNK_ROWS",
    "PYNOMALY_BIND",
    "PYNOMALY_DATABASE_MAX_CONNECTIONS",
    "PYNOMALY_DATA_DIR",
    "PYNOMALY_DRIFT_MIN_SAMPLES",
    "PYNOMALY_DRIFT_MONITORING",
    "PYNOMALY_DRIFT_WINDOW_SECONDS",
    "PYNOMALY_ENCRYPTION_KEY",
    "PYNOMALY_ENCRYPTION_KEY_ID",
    "PYNOMALY_ENCRYPTION_OLD_KEYS",
    "PYNOMALY_ENCRYPTION_REQUIRED",
    "PYNOMALY_HEADER_READ_TIMEOUT_S",
    "PYNOMALY_JOB_LEASE_S",
    "PYNOMALY_JOB_MAX_ATTEMPTS",
    "PYNOMALY_JWT_TTL_S",
    "PYNOMALY_LOGIN_IP_RATE_LIMIT_PER_MINUTE",
    "PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE",
    "PYNOMALY_MAX_BODY_BYTES",
    "PYNOMALY_MAX_CELLS",
    "PYNOMALY_MAX_HEADER_BYTES",
    "PYNOMALY_METRICS_BIND",
    "PYNOMALY_MODEL_CACHE_BYTES",
    "PYNOMALY_PII_FIELDS",
    "PYNOMALY_PII_HASH_KEY",
    "PYNOMALY_PII_MODE",
    "PYNOMALY_RATE_LIMIT_PER_MINUTE",
    "PYNOMALY_REDIS_PREFIX",
    "PYNOMALY_REQUEST_TIMEOUT_S",
    "PYNOMALY_SECRET_KEY",
    "PYNOMALY_SHUTDOWN_TIMEOUT_S",
    "PYNOMALY_SOURCES_DIR",
    "PYNOMALY_STORAGE_URL",
    "PYNOMALY_TLS_CERT",
    "PYNOMALY_TLS_KEY",
    "PYNOMALY_TRUST_FORWARDED_FOR",
];

/// A `PYNOMALY_*` variable that no setting reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    /// The name as given.
    pub name: String,
    /// The closest known name, when one is close enough to be a likely misspelling.
    pub did_you_mean: Option<&'static str>,
}

impl std::fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a pynomaly setting", self.name)?;
        if let Some(known) = self.did_you_mean {
            write!(f, " (did you mean {known}?)")?;
        }
        Ok(())
    }
}

/// The `PYNOMALY_*` names among `names` that no setting reads, each with the closest
/// known name when it looks like a misspelling of one. Other names are left alone: an
/// environment holds much that is not ours.
pub fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<UnknownVariable> {
    names
        .into_iter()
        .filter(|name| name.starts_with("PYNOMALY_") && !VARIABLES.contains(name))
        .map(|name| UnknownVariable {
            name: name.to_string(),
            did_you_mean: VARIABLES
                .iter()
                .map(|known| (strsim::damerau_levenshtein(name, known), *known))
                .filter(|(distance, _)| *distance <= 3)
                .min()
                .map(|(_, known)| known),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;
    use crate::Settings;

    /// The names reading the settings asks for, with `vars` set.
    fn names_read(vars: &[(&str, &str)]) -> BTreeSet<String> {
        let asked = RefCell::new(BTreeSet::new());
        let _ = Settings::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_string());
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        });
        asked.into_inner()
    }

    #[test]
    fn every_variable_the_settings_read_is_known_and_every_known_one_is_read() {
        let key = "a1".repeat(32);
        let mut read = names_read(&[]);
        // Read only when a key is set.
        read.extend(names_read(&[("PYNOMALY_ENCRYPTION_KEY", &key)]));
        let read: BTreeSet<&str> = read
            .iter()
            .map(String::as_str)
            .filter(|n| !n.starts_with("OTEL_") && !n.starts_with("AWS_"))
            .collect();
        let known: BTreeSet<&str> = VARIABLES.iter().copied().collect();
        assert_eq!(read, known);
    }

    #[test]
    fn every_known_variable_is_documented() {
        let docs = include_str!("../../../../docs/api.md");
        for name in VARIABLES {
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not described in docs/api.md"
            );
        }
    }

    #[test]
    fn misspelt_names_are_reported_with_the_likely_one() {
        let unknown = unknown_variables([
            "PYNOMALY_MAX_BODY_BYTE",
            "PYNOMALY_BIND",
            "PATH",
            "PYNOMALY_FLUX_CAPACITOR",
            "REDIS_URL",
        ]);
        assert_eq!(
            unknown,
            [
                UnknownVariable {
                    name: "PYNOMALY_MAX_BODY_BYTE".into(),
                    did_you_mean: Some("PYNOMALY_MAX_BODY_BYTES"),
                },
                UnknownVariable {
                    name: "PYNOMALY_FLUX_CAPACITOR".into(),
                    did_you_mean: None,
                },
            ]
        );
        assert_eq!(
            unknown[0].to_string(),
            "PYNOMALY_MAX_BODY_BYTE is not a pynomaly setting (did you mean \
             PYNOMALY_MAX_BODY_BYTES?)"
        );
    }
}
