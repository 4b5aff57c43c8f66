-- Jobs delivered by an external queue (scale-out): when a queued job may be delivered
-- (later than its creation after a failed attempt's backoff). NULL: since created_at.
ALTER TABLE jobs ADD COLUMN available_at TEXT;

-- The training job that registered a version: a job re-run after a crash finds its
-- version instead of adding a second one.
ALTER TABLE model_versions ADD COLUMN job_id TEXT;
CREATE UNIQUE INDEX model_versions_job ON model_versions (tenant, job_id)
    WHERE job_id IS NOT NULL;
