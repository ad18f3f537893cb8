-- People: users with password login, their roles per tenant, and server-side sessions.
-- Numbered 0010 so that schema work on other features (0004..0009) can land in between.

-- `login` is what a person types (an email address, or `admin` for the first administrator).
-- `password_hash` is an argon2id PHC string. A disabled user can no longer log in, and their
-- sessions stop working at once.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    login          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    disabled       INTEGER NOT NULL DEFAULT 0
);

-- A role held by a user: in one tenant, or (tenant_id NULL) in every tenant (the provider).
-- role: admin, operator, approver, viewer.
CREATE TABLE memberships (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL REFERENCES users(id),
    tenant_id  TEXT REFERENCES tenants(id),
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX memberships_unique ON memberships(user_id, COALESCE(tenant_id, ''), role);

-- A login session. The cookie carries a random 256-bit id; only its SHA-256 hash is stored.
-- csrf_token: the value every form POST of this session must carry.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    csrf_token  TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

-- The device list of the dashboard sorts and pages in SQL.
CREATE INDEX devices_tenant_hostname ON devices(tenant_id, hostname);
