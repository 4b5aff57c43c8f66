//! Stage changes of model versions: promotion to production (archiving the version it
//! replaces), archiving, and rolling back to the previous production version.
//!
//! Every change is recorded three ways: in the version's stage history (who, from, to, why,
//! when), as an audit row of the model's tenant (`action` `model_stage_change`, with
//! `detail` `{from, to, reason, note, replaced}`), and in the counts behind
//! `pynomaly_model_stage_changes_total{model,reason}`. The cached copies of the model are
//! dropped here and on every other instance (the change is announced), so the next predict
//! reads the new production version.

use pynomaly_store::{
    ARCHIVED, ModelVersion, NewAuditEntry, NewStage, PRODUCTION, StageChange, StoreError,
};
use serde_json::json;

use super::{ModelRegistry, RegistryError};

/// Why a rollback takes a version back: it left production because another was promoted
/// (not because it was itself rolled back).
const REPLACED: &str = "replaced";

/// The version a rollback takes back: the last one that left production by being replaced.
pub fn previous_production(versions: &[ModelVersion]) -> Option<i64> {
    versions
        .iter()
        .filter(|v| v.stage == ARCHIVED)
        .filter_map(|v| {
            let last = v.stage_history.last()?;
            (last.from.as_deref() == Some(PRODUCTION) && last.reason == REPLACED)
                .then_some((last.at, v.version))
        })
        .max()
        .map(|(_, version)| version)
}

impl ModelRegistry {
    /// Moves a version to `change.to` (see the module docs); `request_id` ties the audit row
    /// to the request that asked, if one did.
    ///
    /// # Errors
    /// As [`pynomaly_store::ModelStore::change_stage`] (not found, conflicts), or the store
    /// failed.
    pub async fn change_stage(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
        change: NewStage,
        request_id: Option<String>,
    ) -> Result<StageChange, RegistryError> {
        let changed = self
            .meta
            .change_stage(tenant, name, version, change.clone())
            .await?;
        self.cache.invalidate(tenant, name);
        self.announce(tenant, name).await;
        self.count_stage_change(name, &change.reason);
        // A rollout whose candidate left staging (promoted, archived) is over, and so is
        // the bake of a version another one replaced in production.
        if let Ok(Some(rollout)) = self.rollout(tenant, name).await
            && (rollout.policy.version == version
                || (rollout.policy.mode == super::RolloutMode::Bake && change.to == PRODUCTION))
        {
            let detail = serde_json::json!({"stage": change.to});
            if let Err(e) = self
                .end_rollout(tenant, name, &change.by, "stage_changed", detail)
                .await
            {
                tracing::warn!(error = %e, model = name, "cannot end the rollout of a version that left staging");
            }
        }
        let entry = NewAuditEntry {
            tenant: tenant.to_string(),
            actor: change.by.clone(),
            action: "model_stage_change".into(),
            resource: format!("/api/v1/models/{name}/versions/{version}"),
            outcome: 200,
            request_id: request_id.unwrap_or_default(),
            client_addr: None,
            created_at: chrono::Utc::now(),
            detail: Some(json!({
                "from": changed.from,
                "to": change.to,
                "reason": change.reason,
                "note": change.note,
                "replaced": changed.replaced,
            })),
        };
        if let Err(e) = self.meta.append_audit(&[entry]).await {
            tracing::error!(error = %e, model = name, version, "cannot audit a stage change");
        }
        tracing::info!(
            model = name,
            version,
            from = changed.from,
            to = change.to,
            reason = change.reason,
            replaced = changed.replaced,
            "model stage changed"
        );
        Ok(changed)
    }

    /// Puts the previous production version back in production ([`previous_production`]);
    /// the current one is archived as rolled back, so a second rollback goes further back.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] without such a model; [`StoreError::Conflict`] when no
    /// version was in production before the current one.
    pub async fn rollback(
        &self,
        tenant: &str,
        name: &str,
        by: String,
        reason: &str,
        note: Option<String>,
        request_id: Option<String>,
    ) -> Result<StageChange, RegistryError> {
        let versions = self.meta.model_versions(tenant, name).await?;
        if versions.is_empty() {
            return Err(StoreError::NotFound(format!("model '{name}' not found")).into());
        }
        let Some(target) = previous_production(&versions) else {
            return Err(StoreError::Conflict(format!(
                "model '{name}' has no earlier production version to roll back to"
            ))
            .into());
        };
        let change = NewStage {
            to: PRODUCTION.into(),
            by,
            reason: reason.to_string(),
            note,
        };
        self.change_stage(tenant, name, target, change, request_id)
            .await
    }

    pub(super) fn count_stage_change(&self, model: &str, reason: &str) {
        bump(&self.stage_changes, model, reason);
    }

    /// Stage changes made through this registry since start, by (model, reason).
    pub fn stage_changes(&self) -> Vec<((String, String), u64)> {
        totals(&self.stage_changes)
    }
}

/// Counts per (model, label), for metrics.
pub(super) type Counts = std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>;

/// Adds one to `(model, label)`.
pub(super) fn bump(counts: &Counts, model: &str, label: &str) {
    let mut counts = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *counts
        .entry((model.to_string(), label.to_string()))
        .or_insert(0) += 1;
}

/// Every count.
pub(super) fn totals(counts: &Counts) -> Vec<((String, String), u64)> {
    let counts = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
}
