//! What a job is asked to do: the validated request, stored with the job as JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a batch job writes its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A JSON array of `{"row", "prediction", "score"}` objects.
    #[default]
    Json,
    /// CSV with the header `row,prediction,score`.
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
    /// Fit a detector on each source and label its rows.
    Fit {
        algorithm: String,
        parameters: Map<String, Value>,
        contamination: Value,
    },
}

/// A batch job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSpec {
    pub sources: Vec<String>,
    pub scoring: Scoring,
    pub output_format: OutputFormat,
    pub label_column: Option<String>,
}

/// A training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    pub model_name: String,
    pub training_data: String,
    pub algorithm: String,
    pub parameters: Map<String, Value>,
    pub contamination: Value,
    pub label_column: Option<String>,
}
