//! The in-memory model cache: bounded by bytes, least recently used evicted.
//!
//! A predict looks its model up here and does no disk or database read after the first.
//! Keys are (tenant, name, version) in nested maps so a hit allocates nothing; the cache
//! also remembers which version of a name is the production one, cleared whenever that
//! name is trained again or deleted. Eviction scans for the oldest entry: the cache holds
//! tens to hundreds of models, and eviction is rare next to lookups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use detect_core::FittedModel;
use pynomaly_store::ModelVersion;

use crate::drift::ModelDrift;

/// A model ready to score, with its registry record.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub model: Arc<FittedModel>,
    pub version: Arc<ModelVersion>,
    /// Its drift windows on this instance; `None` when it has no reference profile
    /// (trained before they existed) or monitoring is off.
    pub drift: Option<Arc<ModelDrift>>,
}

#[derive(Debug)]
struct Entry {
    loaded: LoadedModel,
    bytes: u64,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Named {
    production: Option<i64>,
    versions: HashMap<i64, Entry>,
}

#[derive(Debug, Default)]
struct Inner {
    tenants: HashMap<String, HashMap<String, Named>>,
    tick: u64,
    bytes: u64,
    entries: usize,
    /// Bumped by every invalidation: a load that started before one must not insert.
    generation: u64,
}

/// Fitted models kept in memory, at most `max_bytes` of their serialized size.
#[derive(Debug)]
pub struct ModelCache {
    inner: Mutex<Inner>,
    max_bytes: u64,
}

impl ModelCache {
    /// An empty cache holding at most `max_bytes` (serialized size) of models.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached version, or the cached production version when `version` is `None`.
    pub fn get(&self, tenant: &str, name: &str, version: Option<i64>) -> Option<LoadedModel> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let named = inner.tenants.get_mut(tenant)?.get_mut(name)?;
        let v = version.or(named.production)?;
        let entry = named.versions.get_mut(&v)?;
        entry.last_used = tick;
        Some(entry.loaded.clone())
    }

    /// Adds a model; `production` records it as the name's production version.
    /// Evicts the least recently used models beyond the byte budget (never the new one).
    pub fn insert(&self, loaded: LoadedModel, bytes: u64, production: bool) {
        let mut inner = self.lock();
        self.insert_locked(&mut inner, loaded, bytes, production);
    }

    fn insert_locked(&self, inner: &mut Inner, loaded: LoadedModel, bytes: u64, production: bool) {
        inner.tick += 1;
        let tick = inner.tick;
        let (tenant, name, version) = (
            loaded.version.tenant.clone(),
            loaded.version.model_name.clone(),
            loaded.version.version,
        );
        let named = inner
            .tenants
            .entry(tenant.clone())
            .or_default()
            .entry(name.clone())
            .or_default();
        if production {
            named.production = Some(version);
        }
        let old = named.versions.insert(
            version,
            Entry {
                loaded,
                bytes,
                last_used: tick,
            },
        );
        match old {
            Some(o) => inner.bytes = inner.bytes - o.bytes + bytes,
            None => {
                inner.bytes += bytes;
                inner.entries += 1;
            }
        }
        while inner.bytes > self.max_bytes && inner.entries > 1 {
            let Some(oldest) = oldest(inner, (&tenant, &name, version)) else {
                break;
            };
            remove(inner, &oldest);
        }
    }

    /// The invalidation count: read it before loading, pass it to
    /// [`ModelCache::insert_unless_invalidated`].
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// [`ModelCache::insert`], unless an invalidation happened since `generation` was
    /// read (the loaded copy may be stale). Returns whether it was inserted.
    pub fn insert_unless_invalidated(
        &self,
        generation: u64,
        loaded: LoadedModel,
        bytes: u64,
        production: bool,
    ) -> bool {
        let mut inner = self.lock();
        if inner.generation != generation {
            return false;
        }
        self.insert_locked(&mut inner, loaded, bytes, production);
        true
    }

    /// Forgets everything (after missing invalidations, e.g. a lost pub/sub connection).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.tenants.clear();
        inner.bytes = 0;
        inner.entries = 0;
        inner.generation += 1;
    }

    /// Forgets every version of a name (trained again elsewhere, or deleted).
    pub fn invalidate(&self, tenant: &str, name: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        let removed = inner.tenants.get_mut(tenant).and_then(|t| t.remove(name));
        if let Some(named) = removed {
            inner.entries -= named.versions.len();
            inner.bytes -= named.versions.values().map(|e| e.bytes).sum::<u64>();
        }
    }

    /// Forgets which version is in production for a name (a new version was registered).
    pub fn forget_production(&self, tenant: &str, name: &str) {
        let mut inner = self.lock();
        if let Some(named) = inner.tenants.get_mut(tenant).and_then(|t| t.get_mut(name)) {
            named.production = None;
        }
    }

    /// Records the production version of a name (already cached or not).
    pub fn set_production(&self, tenant: &str, name: &str, version: i64) {
        let mut inner = self.lock();
        if let Some(named) = inner.tenants.get_mut(tenant).and_then(|t| t.get_mut(name)) {
            named.production = Some(version);
        }
    }

    /// Number of cached model versions (`pynomaly_active_models`).
    pub fn len(&self) -> usize {
        self.lock().entries
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serialized bytes of the cached models.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

fn oldest(inner: &Inner, keep: (&str, &str, i64)) -> Option<(String, String, i64)> {
    let mut best: Option<(u64, (String, String, i64))> = None;
    for (tenant, names) in &inner.tenants {
        for (name, named) in names {
            for (&version, entry) in &named.versions {
                if (tenant.as_str(), name.as_str(), version) == keep {
                    continue;
                }
                if best.as_ref().is_none_or(|(t, _)| entry.last_used < *t) {
                    best = Some((entry.last_used, (tenant.clone(), name.clone(), version)));
                }
            }
        }
    }
    best.map(|(_, k)| k)
}

fn remove(inner: &mut Inner, (tenant, name, version): &(String, String, i64)) {
    let Some(named) = inner.tenants.get_mut(tenant).and_then(|t| t.get_mut(name)) else {
        return;
    };
    if let Some(e) = named.versions.remove(version) {
        inner.bytes -= e.bytes;
        inner.entries -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use detect_core::{DetectorConfig, fit};
    use ndarray::array;
    use serde_json::{Map, json};

    fn loaded(name: &str, version: i64) -> LoadedModel {
        let config = DetectorConfig::from_json(
            "isolation_forest",
            json!({"n_estimators": 2, "random_state": 1})
                .as_object()
                .unwrap(),
            &json!("auto"),
        )
        .unwrap();
        let model = fit(&config, array![[0.0], [1.0], [2.0]].view())
            .unwrap()
            .model;
        LoadedModel {
            model: Arc::new(model),
            version: Arc::new(ModelVersion {
                tenant: "default".into(),
                model_name: name.into(),
                version,
                algorithm: "isolation_forest".into(),
                parameters: json!(Map::new()),
                contamination: json!("auto"),
                threshold: 0.5,
                n_features: 1,
                n_samples: 3,
                feature_names: None,
                stage: "production".into(),
                stage_history: Vec::new(),
                metrics: None,
                lineage: None,
                artifact_path: String::new(),
                artifact_bytes: 10,
                created_at: Utc::now(),
                training_time_ms: 1.0,
            }),
            drift: None,
        }
    }

    #[test]
    fn least_recently_used_model_is_evicted_past_the_byte_budget() {
        let cache = ModelCache::new(25);
        cache.insert(loaded("a", 1), 10, true);
        cache.insert(loaded("b", 1), 10, true);
        assert!(cache.get("default", "a", None).is_some());
        cache.insert(loaded("c", 1), 10, true);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("default", "b", Some(1)).is_none());
        assert!(cache.get("default", "a", Some(1)).is_some());
        assert!(cache.get("default", "c", None).is_some());
        assert_eq!(cache.bytes(), 20);
    }

    #[test]
    fn invalidating_a_name_forgets_all_its_versions() {
        let cache = ModelCache::new(1000);
        cache.insert(loaded("a", 1), 10, true);
        cache.insert(loaded("a", 2), 10, false);
        assert_eq!(cache.get("default", "a", None).unwrap().version.version, 1);
        cache.invalidate("default", "a");
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }
}
