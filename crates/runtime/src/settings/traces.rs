//! The trace settings: the standard `OTEL_*` variables, read and checked at start-up.
//!
//! A value this build cannot honour fails the start with its name, where the SDK alone
//! would warn and fall back. The exporter itself also reads `OTEL_EXPORTER_OTLP_HEADERS`
//! and `OTEL_EXPORTER_OTLP_TIMEOUT`, the batch processor the `OTEL_BSP_*` variables and
//! the resource `OTEL_RESOURCE_ATTRIBUTES`.

use opentelemetry_sdk::trace::Sampler;

use super::env::{Env, SettingsError};

/// Which traces are kept (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, PartialEq)]
pub enum TraceSampler {
    AlwaysOn,
    AlwaysOff,
    /// A fraction of the traces, by trace id.
    Ratio(f64),
    /// The caller's decision when the request continues a trace, else the inner sampler.
    ParentBased(Box<TraceSampler>),
}

impl TraceSampler {
    pub(crate) fn to_sdk(&self) -> Sampler {
        match self {
            TraceSampler::AlwaysOn => Sampler::AlwaysOn,
            TraceSampler::AlwaysOff => Sampler::AlwaysOff,
            TraceSampler::Ratio(r) => Sampler::TraceIdRatioBased(*r),
            TraceSampler::ParentBased(inner) => Sampler::ParentBased(Box::new(inner.to_sdk())),
        }
    }
}

/// The trace settings read from the standard `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// An OTLP endpoint is configured and traces are not disabled.
    pub enabled: bool,
    /// `OTEL_SERVICE_NAME`; unset: `pynomaly-api` for `serve`, `pynomaly-worker` for workers.
    pub service_name: Option<String>,
    /// Default: the specification's `parentbased_always_on`.
    pub sampler: TraceSampler,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            service_name: None,
            sampler: TraceSampler::ParentBased(Box::new(TraceSampler::AlwaysOn)),
        }
    }
}

impl TraceSettings {
    /// Reads the `OTEL_*` variables (empty values count as unset), noting in `env` each
    /// sampler, ratio, exporter or protocol this build does not support.
    pub(crate) fn read(env: &mut Env<'_>) -> Self {
        let mut s = Self::default();
        let endpoint_name = if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        } else {
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        };
        let endpoint = env.get(endpoint_name);
        let disabled = env
            .flag("OTEL_SDK_DISABLED", &["true"], &["false"])
            .unwrap_or(false);
        let exporter_none = match env.get("OTEL_TRACES_EXPORTER") {
            None => false,
            Some(v) => match v.trim() {
                "otlp" => false,
                "none" => true,
                _ => {
                    env.invalid(
                        "OTEL_TRACES_EXPORTER",
                        &v,
                        "this build exports traces over OTLP only: use otlp (Jaeger ingests \
                         OTLP on port 4318) or none",
                    );
                    false
                }
            },
        };
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(v) = env.get(name)
                && v.trim() != "http/protobuf"
            {
                env.invalid(
                    name,
                    &v,
                    "this build exports http/protobuf only (OTLP over HTTP, port 4318)",
                );
            }
        }
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            env.invalid(
                endpoint_name,
                e,
                "expected an http:// or https:// URL (e.g. http://jaeger:4318)",
            );
        }
        s.enabled = endpoint.is_some() && !disabled && !exporter_none;
        s.service_name = env.get("OTEL_SERVICE_NAME").map(|v| v.trim().to_string());
        let ratio = match env.get("OTEL_TRACES_SAMPLER_ARG") {
            None => 1.0,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    env.invalid(
                        "OTEL_TRACES_SAMPLER_ARG",
                        &v,
                        "expected a fraction in [0, 1]",
                    );
                    1.0
                }
            },
        };
        if let Some(v) = env.get("OTEL_TRACES_SAMPLER") {
            let parent = |inner| TraceSampler::ParentBased(Box::new(inner));
            match v.trim() {
                "always_on" => s.sampler = TraceSampler::AlwaysOn,
                "always_off" => s.sampler = TraceSampler::AlwaysOff,
                "traceidratio" => s.sampler = TraceSampler::Ratio(ratio),
                "parentbased_always_on" => s.sampler = parent(TraceSampler::AlwaysOn),
                "parentbased_always_off" => s.sampler = parent(TraceSampler::AlwaysOff),
                "parentbased_traceidratio" => s.sampler = parent(TraceSampler::Ratio(ratio)),
                _ => env.invalid(
                    "OTEL_TRACES_SAMPLER",
                    &v,
                    "accepted: always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off, parentbased_traceidratio",
                ),
            }
        }
        s
    }

    /// Reads the `OTEL_*` variables through `get`.
    ///
    /// # Errors
    /// Every value this build cannot honour, named.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = Env::new(get);
        let s = Self::read(&mut env);
        env.finish(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::env::{assert_each_refused, pairs};

    fn from(vars: &[(&str, &str)]) -> Result<TraceSettings, SettingsError> {
        TraceSettings::from_lookup(&pairs(vars))
    }

    #[test]
    fn traces_are_off_without_an_endpoint_and_on_with_one() {
        assert!(!from(&[]).unwrap().enabled);
        assert!(!from(&[("OTEL_SERVICE_NAME", "x")]).unwrap().enabled);
        let on = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]).unwrap();
        assert!(on.enabled);
        assert_eq!(
            on.sampler,
            TraceSampler::ParentBased(Box::new(TraceSampler::AlwaysOn))
        );
        let off = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert!(!off.enabled);
        let none = from(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            ),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])
        .unwrap();
        assert!(!none.enabled);
    }

    #[test]
    fn the_sampler_follows_the_specification_names() {
        let s = from(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap();
        assert_eq!(
            s.sampler,
            TraceSampler::ParentBased(Box::new(TraceSampler::Ratio(0.25)))
        );
        let s = from(&[("OTEL_TRACES_SAMPLER", "always_off")]).unwrap();
        assert_eq!(s.sampler, TraceSampler::AlwaysOff);
    }

    #[test]
    fn unusable_otel_settings_fail_with_their_name() {
        assert_each_refused(
            from,
            &[
                ("OTEL_TRACES_SAMPLER", "sometimes"),
                ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_EXPORTER", "jaeger"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318"),
            ],
        );
    }
}
