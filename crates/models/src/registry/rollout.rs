//! How a training's new version goes live: its promotion policy, the validation gate, and
//! the version's lineage.
//!
//! - `always` (the default): the new version replaces production at once, as the seed's
//!   "train, then predict" expects.
//! - `manual`: it stays in staging until `POST …/versions/{v}/promote`.
//! - `if_better`: it needs validation rows with labels. The new version and the production
//!   version are both scored on them; the new one is promoted only when its gate metric
//!   (`roc_auc` by default, or `average_precision`, `precision_at_contamination`) is at
//!   least production's plus `min_improvement`. Otherwise it stays in staging and the
//!   outcome says why, with both figures.
//!
//! Whatever the policy, validation figures are stored on the version (`metrics`), with the
//! production version's on the same rows, and the first version of a model is production.

use detect_core::FittedModel;
use detect_core::metrics::ranking_metrics;
use ndarray::{Array2, ArrayView2};
use pynomaly_store::{NewStage, PRODUCTION};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ModelRegistry, Registration, RegistryError};
use crate::cache::LoadedModel;
use detect_core::drift::ReferenceProfile;

/// What a training does with the version it registers (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotePolicy {
    #[default]
    Always,
    Manual,
    IfBetter,
}

impl PromotePolicy {
    /// The policy's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Manual => "manual",
            Self::IfBetter => "if_better",
        }
    }
}

/// The figure `if_better` compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMetric {
    #[default]
    RocAuc,
    AveragePrecision,
    PrecisionAtContamination,
}

impl GateMetric {
    /// The metric's name, as in a version's `metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RocAuc => "roc_auc",
            Self::AveragePrecision => "average_precision",
            Self::PrecisionAtContamination => "precision_at_contamination",
        }
    }
}

/// A training's promotion policy and gate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    #[serde(default)]
    pub promote: PromotePolicy,
    #[serde(default)]
    pub gate_metric: GateMetric,
    #[serde(default)]
    pub min_improvement: f64,
    /// When promoted over a production version: how long the new one is watched by the
    /// default guards, which roll it back on a breach (0: not watched).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bake_seconds: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Labelled rows the new version (and production) are measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationSet {
    pub data: Array2<f64>,
    /// `true` for an anomaly.
    pub labels: Vec<bool>,
}

/// What the rollout did, for the training's response or job result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromotionOutcome {
    pub policy: &'static str,
    pub promoted: bool,
    /// Why, in a sentence (with both figures when a gate decided).
    pub reason: String,
    /// The production version it replaced, when promoted over one.
    pub replaced: Option<i64>,
}

/// The figures of one model on a validation set; `None` where the labels hold one class.
fn evaluate(model: &FittedModel, set: &ValidationSet) -> Result<Value, RegistryError> {
    let d = model
        .predict(set.data.view())
        .map_err(RegistryError::Validation)?;
    let ranking = ranking_metrics(&set.labels, &d.scores);
    let flagged = d.predictions.iter().filter(|p| **p == -1).count();
    let hits = d
        .predictions
        .iter()
        .zip(&set.labels)
        .filter(|(p, l)| **p == -1 && **l)
        .count();
    Ok(json!({
        "rows": set.labels.len(),
        "anomalies_flagged": flagged,
        "roc_auc": ranking.map(|m| m.roc_auc),
        "average_precision": ranking.map(|m| m.average_precision),
        "precision_at_contamination": (flagged > 0).then(|| hits as f64 / flagged as f64),
    }))
}

/// SHA-256 (hex) of a training matrix as read: its shape, then its values as little-endian
/// f64, row by row. Two trainings on the same data give the same digest whatever its file
/// format.
pub fn matrix_sha256(x: ArrayView2<'_, f64>) -> String {
    let mut h = Sha256::new();
    h.update((x.nrows() as u64).to_le_bytes());
    h.update((x.ncols() as u64).to_le_bytes());
    for v in x.iter() {
        h.update(v.to_le_bytes());
    }
    hex::encode(h.finalize())
}

impl ModelRegistry {
    /// Registers `model` (as [`ModelRegistry::register_with_reference`]) and applies
    /// `rollout` to it (see the module docs). `lineage` gets the parent version (production
    /// when training started), the seed and the pynomaly version added; `by` names who
    /// trained it in the stage history.
    ///
    /// # Errors
    /// Registering failed, the validation rows do not fit the model, or the promotion
    /// failed (the version stays registered, in staging).
    pub async fn register_and_roll_out(
        &self,
        model: FittedModel,
        mut reg: Registration,
        reference: Option<ReferenceProfile>,
        rollout: &Rollout,
        validation: Option<&ValidationSet>,
        by: &str,
    ) -> Result<(LoadedModel, PromotionOutcome), RegistryError> {
        let production = self
            .meta
            .production_version(&reg.tenant, &reg.model_name)
            .await?
            .filter(|v| v.stage == PRODUCTION);
        let mut lineage = reg.lineage.take().unwrap_or_else(|| json!({}));
        lineage["parent_version"] = json!(production.as_ref().map(|p| p.version));
        let parameters = model.config().algorithm.to_json();
        lineage["random_state"] = parameters
            .get("random_state")
            .cloned()
            .unwrap_or(Value::Null);
        lineage["pynomaly_version"] = json!(env!("CARGO_PKG_VERSION"));
        lineage["trained_by"] = json!(by);
        reg.lineage = Some(lineage);
        let mut gate = None;
        if let Some(set) = validation {
            let candidate = evaluate(&model, set)?;
            let current = match &production {
                Some(p) => {
                    let loaded = self
                        .load(&reg.tenant, &reg.model_name, Some(p.version))
                        .await?;
                    match loaded {
                        Some(l) if l.model.n_features() == model.n_features() => {
                            let mut m = evaluate(&l.model, set)?;
                            m["version"] = json!(p.version);
                            Some(m)
                        }
                        _ => None,
                    }
                }
                None => None,
            };
            reg.metrics = Some(json!({"validation": candidate, "production": current}));
            gate = Some((candidate, current));
        }
        let (tenant, name) = (reg.tenant.clone(), reg.model_name.clone());
        let loaded = self.register_with_reference(model, reg, reference).await?;
        let version = loaded.version.version;
        let policy = rollout.promote;
        let outcome = |promoted: bool, reason: String, replaced: Option<i64>| PromotionOutcome {
            policy: policy.name(),
            promoted,
            reason,
            replaced,
        };
        if loaded.version.stage == PRODUCTION {
            let reason = "the first version of a model is production".to_string();
            return Ok((loaded, outcome(true, reason, None)));
        }
        let decision = match policy {
            PromotePolicy::Manual => Err(format!(
                "promote is manual: POST /api/v1/models/{name}/versions/{version}/promote"
            )),
            PromotePolicy::Always => Ok("promote is always".to_string()),
            PromotePolicy::IfBetter => decide(rollout, gate.as_ref()),
        };
        match decision {
            Err(reason) => Ok((loaded, outcome(false, reason, None))),
            Ok(reason) => {
                let change = NewStage {
                    to: PRODUCTION.into(),
                    by: by.to_string(),
                    reason: "training".into(),
                    note: Some(reason.clone()),
                };
                let changed = self
                    .change_stage(&tenant, &name, version, change, None)
                    .await?;
                if changed.replaced.is_some()
                    && let Err(e) = self
                        .start_bake(
                            &tenant,
                            &name,
                            version,
                            changed.replaced,
                            rollout.bake_seconds,
                            super::Guards::default(),
                            by,
                        )
                        .await
                {
                    tracing::error!(error = %e, model = name, version, "promoted, but its bake could not be started");
                }
                let loaded = LoadedModel {
                    version: std::sync::Arc::new(changed.version),
                    ..loaded
                };
                Ok((loaded, outcome(true, reason, changed.replaced)))
            }
        }
    }
}

/// `if_better`'s verdict: `Ok(why)` to promote, `Err(why not)` to keep in staging.
fn decide(rollout: &Rollout, gate: Option<&(Value, Option<Value>)>) -> Result<String, String> {
    let metric = rollout.gate_metric.name();
    let Some((candidate, production)) = gate else {
        return Err("if_better needs validation_data".into());
    };
    let Some(new) = candidate[metric].as_f64() else {
        return Err(format!(
            "the new version's {metric} cannot be computed on the validation data (it needs \
             both labels, and anomalies flagged for precision)"
        ));
    };
    let Some(current) = production.as_ref().and_then(|p| p[metric].as_f64()) else {
        return Ok(format!(
            "{metric} {new:.4}, and no production version measured on the same data"
        ));
    };
    let needed = current + rollout.min_improvement;
    if new >= needed {
        Ok(format!(
            "{metric} {new:.4} >= production's {current:.4} + {}",
            rollout.min_improvement
        ))
    } else {
        Err(format!(
            "{metric} {new:.4} < production's {current:.4} + {}: kept in staging",
            rollout.min_improvement
        ))
    }
}
