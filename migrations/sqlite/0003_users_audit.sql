-- Users (password login, JWTs) and the audit log.
-- Usernames are unique across tenants: `POST /api/v1/auth/token` names no tenant.

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant        TEXT NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    -- argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash); never the password
    password_hash TEXT NOT NULL,
    -- comma-separated: read, write, admin
    scopes        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled_at   TEXT
);
CREATE INDEX users_tenant ON users (tenant, created_at);

-- Append-only for the API: the store has no update or delete for it.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT NOT NULL,
    -- key:<id>, user:<username>, or anonymous
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    -- the HTTP status answered
    outcome     INTEGER NOT NULL,
    request_id  TEXT NOT NULL,
    client_addr TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, created_at);
