-- Scheduled retraining: one schedule per model. `schedule` holds the cron expression and
-- the training job's specification; `next_run_at` is the next slot, advanced by whoever
-- submits the slot's job (compare-and-set), so a slot runs once across instances.
CREATE TABLE model_schedules (
    tenant       TEXT NOT NULL,
    model_name   TEXT NOT NULL,
    schedule     JSONB NOT NULL,
    next_run_at  TIMESTAMPTZ NOT NULL,
    last_run_at  TIMESTAMPTZ,
    last_job_id  TEXT,
    PRIMARY KEY (tenant, model_name)
);
CREATE INDEX model_schedules_due ON model_schedules (next_run_at);
