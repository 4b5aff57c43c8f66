-- Metadata of the embedded default: API keys, model versions and jobs.
-- Every row belongs to a tenant ('default' until the security issue adds more).
-- Timestamps are RFC 3339 text in UTC; JSON documents are text.

CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY NOT NULL,
    tenant                TEXT NOT NULL DEFAULT 'default',
    name                  TEXT NOT NULL,
    -- keyed hash (HMAC-SHA256 with the server secret) of the key, hex; never the key
    key_hash              TEXT NOT NULL UNIQUE,
    -- comma-separated: read, write, admin
    scopes                TEXT NOT NULL,
    rate_limit_per_minute INTEGER,
    created_at            TEXT NOT NULL,
    expires_at            TEXT,
    revoked_at            TEXT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

CREATE TABLE model_versions (
    tenant            TEXT NOT NULL DEFAULT 'default',
    model_name        TEXT NOT NULL,
    version           INTEGER NOT NULL,
    algorithm         TEXT NOT NULL,
    parameters        TEXT NOT NULL,
    contamination     TEXT NOT NULL,
    threshold         REAL NOT NULL,
    n_features        INTEGER NOT NULL,
    n_samples         INTEGER NOT NULL,
    feature_names     TEXT,
    stage             TEXT NOT NULL,
    artifact_path     TEXT NOT NULL,
    artifact_bytes    INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    training_time_ms  REAL NOT NULL,
    PRIMARY KEY (tenant, model_name, version)
);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant           TEXT NOT NULL DEFAULT 'default',
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    progress         TEXT NOT NULL,
    result           TEXT,
    error            TEXT,
    idempotency_key  TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT
);
CREATE INDEX jobs_queue ON jobs (status, created_at);
CREATE INDEX jobs_tenant ON jobs (tenant, created_at);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
