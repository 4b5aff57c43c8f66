-- A model's canary or shadow rollout: at most one per model; the policy is the models
-- crate's JSON (version, traffic_percent, mode, guards, who started it and when).
CREATE TABLE model_rollouts (
    tenant      TEXT NOT NULL,
    model_name  TEXT NOT NULL,
    policy      TEXT NOT NULL,
    PRIMARY KEY (tenant, model_name)
);
