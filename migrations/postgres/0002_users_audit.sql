-- Users (password login, JWTs) and the audit log. Same tables and meaning as
-- migrations/sqlite/0003_users_audit.sql.
-- Usernames are unique across tenants: `POST /api/v1/auth/token` names no tenant.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    -- argon2id PHC string; never the password
    password_hash TEXT NOT NULL,
    scopes        TEXT[] NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    disabled_at   TIMESTAMPTZ
);
CREATE INDEX users_tenant ON users (tenant, created_at);

-- Append-only for the API: the store has no update or delete for it.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    tenant      TEXT NOT NULL,
    -- key:<id>, user:<username>, or anonymous
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    -- the HTTP status answered
    outcome     BIGINT NOT NULL,
    request_id  TEXT NOT NULL,
    client_addr TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, created_at);
