-- Model lifecycle: each version's stage history, the figures of its validation, and its
-- lineage; at most one production version per model.
ALTER TABLE model_versions ADD COLUMN stage_history JSONB NOT NULL DEFAULT '[]';
ALTER TABLE model_versions ADD COLUMN metrics JSONB;
ALTER TABLE model_versions ADD COLUMN lineage JSONB;
CREATE UNIQUE INDEX model_versions_one_production ON model_versions (tenant, model_name)
    WHERE stage = 'production';
-- What an audited change did, where the request alone does not say (stage changes).
ALTER TABLE audit_log ADD COLUMN detail JSONB;
