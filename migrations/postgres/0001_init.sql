-- Metadata of the scale-out deployment: API keys, model versions and jobs, shared by every
-- API instance and worker. Same tables and meaning as migrations/sqlite, in Postgres's own
-- types: TIMESTAMPTZ, JSONB, BOOLEAN, TEXT[].
-- Every row belongs to a tenant ('default' until the security issue adds more).

CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY,
    tenant                TEXT NOT NULL DEFAULT 'default',
    name                  TEXT NOT NULL,
    -- keyed hash (HMAC-SHA256 with the server secret) of the key, hex; never the key
    key_hash              TEXT NOT NULL UNIQUE,
    scopes                TEXT[] NOT NULL,
    rate_limit_per_minute BIGINT,
    created_at            TIMESTAMPTZ NOT NULL,
    expires_at            TIMESTAMPTZ,
    revoked_at            TIMESTAMPTZ
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

CREATE TABLE model_versions (
    tenant            TEXT NOT NULL DEFAULT 'default',
    model_name        TEXT NOT NULL,
    version           BIGINT NOT NULL,
    algorithm         TEXT NOT NULL,
    parameters        JSONB NOT NULL,
    contamination     JSONB NOT NULL,
    threshold         DOUBLE PRECISION NOT NULL,
    n_features        BIGINT NOT NULL,
    n_samples         BIGINT NOT NULL,
    feature_names     JSONB,
    stage             TEXT NOT NULL,
    artifact_path     TEXT NOT NULL,
    artifact_bytes    BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    training_time_ms  DOUBLE PRECISION NOT NULL,
    -- the training job that registered it: a job re-run after a crash finds this version
    -- instead of adding a second one
    job_id            TEXT,
    PRIMARY KEY (tenant, model_name, version)
);
CREATE UNIQUE INDEX model_versions_job ON model_versions (tenant, job_id)
    WHERE job_id IS NOT NULL;

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL DEFAULT 'default',
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    spec             JSONB NOT NULL,
    progress         JSONB NOT NULL,
    result           JSONB,
    error            TEXT,
    idempotency_key  TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    attempts         BIGINT NOT NULL DEFAULT 0,
    -- the worker running the job now: every write of a running job is fenced by it, so a
    -- worker that lost its lease cannot finish a job another worker took over
    worker_id        TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    -- a queued job is not delivered before this (a failed attempt's backoff)
    available_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_queue ON jobs (status, created_at);
CREATE INDEX jobs_tenant ON jobs (tenant, created_at);
-- Idempotency-Key deduplication across API instances rests on this constraint.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
