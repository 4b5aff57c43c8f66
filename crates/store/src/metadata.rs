//! The metadata store trait: what the service asks of its database.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;
use crate::types::{
    ApiKey, AuditEntry, AuditFilter, CancelOutcome, Job, ModelSummary, ModelVersion, NewApiKey,
    NewAuditEntry, NewJob, NewModelVersion, NewUser, Page, User,
};

/// A shared, dynamically chosen metadata store (SQLite now, Postgres with `DATABASE_URL`).
pub type DynMetadataStore = Arc<dyn MetadataStore>;

/// Models, model versions, jobs, API keys, users and the audit log, every one scoped by
/// tenant (usernames excepted: they are unique across tenants).
///
/// Implementations must be safe to share between API instances and workers: version
/// numbering, job claiming and job finishing are atomic in the database, not in memory.
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// Round trip to the database, for health checks.
    async fn ping(&self) -> Result<Duration, StoreError>;

    // --- API keys ---

    /// Stores a key and returns it with its id.
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError>;
    /// The key with this hash, active or not.
    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;
    /// The tenant's keys, newest first.
    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a key; `false` when the tenant has no such key.
    async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
    /// How many keys exist (any tenant, revoked included): zero on a first start.
    async fn count_api_keys(&self) -> Result<i64, StoreError>;

    // --- users ---

    /// Stores a user; [`StoreError::Conflict`] when the username is taken (in any tenant).
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// The user with this username, active or not (login).
    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// The user with this id, active or not (checking a token's user on each request).
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// The tenant's users, newest first.
    async fn list_users(&self, tenant: &str) -> Result<Vec<User>, StoreError>;
    /// Disables a user (its tokens stop working); `false` when the tenant has no such user.
    async fn disable_user(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    // --- audit log (append-only: there is no update or delete) ---

    /// Appends rows, in one statement per call.
    async fn append_audit(&self, entries: &[NewAuditEntry]) -> Result<(), StoreError>;
    /// The tenant's rows matching `filter`, newest first, with their total count.
    async fn list_audit(
        &self,
        tenant: &str,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<(Vec<AuditEntry>, i64), StoreError>;

    // --- models ---

    /// Registers the next version of a model: numbered `max + 1` for its (tenant, name),
    /// `production` when it is the first. With a `job_id` that already registered a
    /// version, returns that version unchanged (its `artifact_path` tells the caller that
    /// its own artifact is not the one registered).
    async fn create_model_version(
        &self,
        version: NewModelVersion,
    ) -> Result<ModelVersion, StoreError>;
    /// The tenant's models, by name, with their total count.
    async fn list_models(
        &self,
        tenant: &str,
        page: Page,
    ) -> Result<(Vec<ModelSummary>, i64), StoreError>;
    /// Every version of a model, oldest first (empty: no such model).
    async fn model_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<ModelVersion>, StoreError>;
    /// One version of a model.
    async fn model_version(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<ModelVersion>, StoreError>;
    /// The version in `production` (else the latest).
    async fn production_version(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ModelVersion>, StoreError>;
    /// Deletes every version of a model and returns them (so their artifacts can go too).
    async fn delete_model(&self, tenant: &str, name: &str)
    -> Result<Vec<ModelVersion>, StoreError>;

    // --- jobs ---

    /// Enqueues a job. With an idempotency key already used by this tenant, returns that
    /// first job and `false` instead of creating a second.
    async fn create_job(&self, job: NewJob) -> Result<(Job, bool), StoreError>;
    /// A job of this tenant.
    async fn job(&self, tenant: &str, id: &str) -> Result<Option<Job>, StoreError>;
    /// A job by id alone (for workers, which serve every tenant).
    async fn job_by_id(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// The tenant's jobs, newest first, with their total count.
    async fn list_jobs(&self, tenant: &str, page: Page) -> Result<(Vec<Job>, i64), StoreError>;
    /// Atomically takes the oldest queued job and marks it `running` for `worker_id`.
    async fn claim_next_job(&self, worker_id: &str) -> Result<Option<Job>, StoreError>;
    /// Records a running job's progress.
    async fn update_job_progress(&self, id: &str, progress: &Value) -> Result<(), StoreError>;
    /// Moves a `running` job to a terminal status; `false` if it was not running (so no
    /// job is reported done twice).
    async fn finish_job(
        &self,
        id: &str,
        status: crate::JobStatus,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Puts a `running` job back to `queued` (its worker is shutting down); `false` if it
    /// was not running.
    async fn release_job(&self, id: &str) -> Result<bool, StoreError>;
    /// Cancels a queued job at once, or asks a running one to stop.
    async fn request_job_cancel(&self, tenant: &str, id: &str)
    -> Result<CancelOutcome, StoreError>;
    /// At start-up of a single-process deployment: jobs left `running` by a previous
    /// process go back to `queued` (or to `cancelled` if that had been asked). Returns how
    /// many were requeued.
    async fn requeue_interrupted_jobs(&self) -> Result<u64, StoreError>;
    /// Counts jobs by status, for health and metrics: (queued, running).
    async fn job_counts(&self) -> Result<(i64, i64), StoreError>;

    // --- jobs delivered by an external queue (scale-out) ---

    /// Takes one job for `worker_id`, the way a delivered queue message asks: a `queued`
    /// job becomes `running` (one more attempt). With `take_over`, a job still `running`
    /// for another worker is taken too (the queue found that worker's lease expired). Every
    /// later write of the job is fenced by `worker_id`. `None`: the job is finished,
    /// cancelled, gone, or running elsewhere and not taken over.
    async fn claim_job(
        &self,
        id: &str,
        worker_id: &str,
        take_over: bool,
    ) -> Result<Option<Job>, StoreError>;
    /// [`MetadataStore::finish_job`] fenced by the worker: `false` if the job is not
    /// `running` for `worker_id` (another worker took it over, or it is done).
    async fn finish_claimed_job(
        &self,
        id: &str,
        worker_id: &str,
        status: crate::JobStatus,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Puts a job `running` for `worker_id` back to `queued` (to be retried or resumed),
    /// not to be delivered before `available_at`, recording `error` (why the attempt
    /// ended) when given; a job whose cancellation was asked ends `cancelled` instead.
    /// Returns the job as it is now; `None` if it was not running for this worker.
    async fn release_claimed_job(
        &self,
        id: &str,
        worker_id: &str,
        error: Option<&str>,
        available_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Job>, StoreError>;
    /// Ids of jobs `queued` and deliverable since before `before`, oldest first (at most
    /// `limit`): a queue that delivers through another system re-sends these, in case a
    /// submission stopped between the insert and the send.
    async fn queued_job_ids(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Running jobs and the worker running each, oldest first (at most `limit`): a queue
    /// compares them with its live workers to find jobs whose worker vanished without a
    /// trace in the queue itself.
    async fn running_jobs(&self, limit: i64) -> Result<Vec<(String, Option<String>)>, StoreError>;

    /// Closes the connections, waiting for them to be returned.
    async fn close(&self) {}

    /// The connection pool's use now, for metrics (`None`: no pool).
    fn pool_stats(&self) -> Option<crate::PoolStats> {
        None
    }
}
