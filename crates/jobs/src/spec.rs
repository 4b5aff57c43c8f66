//! What a job is asked to do: the request validated once at the edge and carried typed
//! (the detector's configuration is a checked [`DetectorConfig`]), stored with the job as
//! JSON. Reading a stored specification checks it again.

use detect_core::DetectorConfig;
use pynomaly_models::{Rollout, ValidationSet};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a batch job writes its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A JSON array of `{"row", "prediction", "score"}` objects, with `"explanation"`
    /// (an array of `{"feature", "contribution"}`) when the job explains.
    #[default]
    Json,
    /// CSV with the header `row,prediction,score` (and `explanation`, its cells
    /// `name:share` pairs joined by `;`, when the job explains).
    Csv,
}

impl OutputFormat {
    /// Parses `json` or `csv`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(OutputFormat::Json),
            "csv" => Some(OutputFormat::Csv),
            _ => None,
        }
    }

    /// File extension of the outputs.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Csv => "csv",
        }
    }

    /// The MIME type of the outputs.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::Csv => "text/csv",
        }
    }
}

/// How a batch job scores each source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Scoring {
    /// With a trained model (its production version unless `version` is given).
    Model {
        model_name: String,
        version: Option<i64>,
    },
    /// Fit a detector on each source and label its rows (stored as `algorithm`,
    /// `parameters` and `contamination` beside the `mode`).
    Fit(DetectorConfig),
}

/// A batch job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSpec {
    pub sources: Vec<String>,
    pub scoring: Scoring,
    pub output_format: OutputFormat,
    pub label_column: Option<String>,
    /// Per-row explanations in the outputs (absent from jobs stored before they existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainSpec>,
}

/// A batch job's per-row explanations: each row's `top_k` features (`None`: the default,
/// [`detect_core::explain::DEFAULT_TOP_K`] or every feature when a source has fewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainSpec {
    pub top_k: Option<usize>,
}

impl ExplainSpec {
    /// The features per row for a source of `n_features` columns.
    ///
    /// # Errors
    /// The job's error message when the given `top_k` is above `n_features`.
    pub fn top_k(self, n_features: usize) -> Result<usize, String> {
        match self.top_k {
            None => Ok(detect_core::explain::DEFAULT_TOP_K.min(n_features)),
            Some(k) if (1..=n_features).contains(&k) => Ok(k),
            Some(k) => Err(format!(
                "explain.top_k is {k}; accepted: 1..={n_features} (the number of features)"
            )),
        }
    }
}

/// A training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredTrainSpec", into = "StoredTrainSpec")]
pub struct TrainSpec {
    pub model_name: String,
    pub training_data: String,
    /// Stored as `algorithm`, `parameters` and `contamination` beside the other fields.
    pub detector: DetectorConfig,
    pub label_column: Option<String>,
    /// What happens to the new version (stored flat: `promote`, `gate_metric`,
    /// `min_improvement`).
    pub rollout: Rollout,
    /// Labelled rows the version is measured on before the rollout decides.
    pub validation: Option<ValidationSet>,
    /// Or a data source of them, read by the job.
    pub validation_source: Option<ValidationSource>,
    /// Who asked for the training (`key:<id>` or `user:<name>`), for the lineage.
    pub trained_by: Option<String>,
}

/// Labelled validation rows in a data source: its features, and the column holding each
/// row's label (1 anomaly, 0 normal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationSource {
    pub source: String,
    pub label_column: String,
}

/// A [`TrainSpec`] as stored: the detector's fields flat among the job's.
#[derive(Serialize, Deserialize)]
struct StoredTrainSpec {
    model_name: String,
    training_data: String,
    algorithm: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    contamination: Value,
    label_column: Option<String>,
    #[serde(flatten)]
    rollout: Rollout,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    validation: Option<ValidationSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    validation_source: Option<ValidationSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trained_by: Option<String>,
}

impl TryFrom<StoredTrainSpec> for TrainSpec {
    type Error = detect_core::DetectError;

    fn try_from(s: StoredTrainSpec) -> Result<Self, Self::Error> {
        Ok(Self {
            detector: DetectorConfig::from_json(&s.algorithm, &s.parameters, &s.contamination)?,
            model_name: s.model_name,
            training_data: s.training_data,
            label_column: s.label_column,
            rollout: s.rollout,
            validation: s.validation,
            validation_source: s.validation_source,
            trained_by: s.trained_by,
        })
    }
}

impl From<TrainSpec> for StoredTrainSpec {
    fn from(t: TrainSpec) -> Self {
        Self {
            algorithm: t.detector.algorithm.name().to_string(),
            parameters: t.detector.algorithm.parameters(),
            contamination: t.detector.contamination.to_json(),
            model_name: t.model_name,
            training_data: t.training_data,
            label_column: t.label_column,
            rollout: t.rollout,
            validation: t.validation,
            validation_source: t.validation_source,
            trained_by: t.trained_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detector() -> DetectorConfig {
        DetectorConfig::from_json(
            "lof",
            json!({"n_neighbors": 7}).as_object().unwrap(),
            &json!(0.1),
        )
        .unwrap()
    }

    #[test]
    fn a_batch_spec_keeps_its_stored_form_and_reads_back_typed() {
        let spec = BatchSpec {
            sources: vec!["a.csv".into()],
            scoring: Scoring::Fit(detector()),
            output_format: OutputFormat::Csv,
            label_column: None,
            explain: None,
        };
        let mut stored = serde_json::to_value(&spec).unwrap();
        // Stored without `explain` (as jobs from before it existed are).
        assert!(stored.get("explain").is_none(), "{stored}");
        assert_eq!(stored["scoring"]["mode"], "fit");
        assert_eq!(stored["scoring"]["algorithm"], "lof");
        assert_eq!(stored["scoring"]["parameters"]["n_neighbors"], 7);
        assert_eq!(stored["scoring"]["contamination"], 0.1);
        // The submitter's trace context rides along at the top level.
        stored["trace_context"] = json!({"traceparent": "00-x"});
        assert_eq!(serde_json::from_value::<BatchSpec>(stored).unwrap(), spec);
        let explaining = BatchSpec {
            explain: Some(ExplainSpec { top_k: Some(2) }),
            ..spec
        };
        let stored = serde_json::to_value(&explaining).unwrap();
        assert_eq!(stored["explain"], json!({"top_k": 2}));
        assert_eq!(
            serde_json::from_value::<BatchSpec>(stored).unwrap(),
            explaining
        );
    }

    #[test]
    fn an_explain_spec_takes_the_default_or_a_top_k_within_the_width() {
        assert_eq!(ExplainSpec { top_k: None }.top_k(10), Ok(3));
        assert_eq!(ExplainSpec { top_k: None }.top_k(2), Ok(2));
        assert_eq!(ExplainSpec { top_k: Some(4) }.top_k(4), Ok(4));
        let e = ExplainSpec { top_k: Some(5) }.top_k(4).unwrap_err();
        assert!(e.contains("explain.top_k") && e.contains("1..=4"), "{e}");
    }

    #[test]
    fn a_train_spec_keeps_its_flat_stored_form_and_reads_back_typed() {
        let spec = TrainSpec {
            model_name: "m".into(),
            training_data: "a.csv".into(),
            detector: detector(),
            label_column: Some("label".into()),
            rollout: Rollout {
                promote: pynomaly_models::PromotePolicy::Manual,
                ..Rollout::default()
            },
            validation: None,
            validation_source: Some(ValidationSource {
                source: "val.csv".into(),
                label_column: "is_anomaly".into(),
            }),
            trained_by: Some("key:k1".into()),
        };
        let mut stored = serde_json::to_value(&spec).unwrap();
        assert_eq!(stored["algorithm"], "lof");
        assert_eq!(stored["parameters"]["n_neighbors"], 7);
        assert_eq!(stored["promote"], "manual");
        assert_eq!(stored["gate_metric"], "roc_auc");
        stored["trace_context"] = json!({"traceparent": "00-x"});
        assert_eq!(serde_json::from_value::<TrainSpec>(stored).unwrap(), spec);
        // A job stored before rollouts existed reads back with the defaults.
        let old = json!({"model_name": "m", "training_data": "a.csv", "algorithm": "lof",
                         "parameters": {"n_neighbors": 7}, "contamination": 0.1,
                         "label_column": null});
        let read: TrainSpec = serde_json::from_value(old).unwrap();
        assert_eq!(read.rollout, Rollout::default());
        assert_eq!(read.trained_by, None);
    }

    #[test]
    fn a_stored_spec_out_of_range_is_refused_when_read() {
        let stored = json!({
            "sources": ["a.csv"],
            "scoring": {"mode": "fit", "algorithm": "lof", "parameters": {"n_neighbors": 0},
                        "contamination": "auto"},
            "output_format": "csv",
            "label_column": null,
        });
        let e = serde_json::from_value::<BatchSpec>(stored).unwrap_err();
        assert!(e.to_string().contains("n_neighbors"), "{e}");
    }
}
