-- The audit log: every operator action (API, CLI through the API, dashboard), allowed or not.
-- Append-only: the triggers below refuse any UPDATE or DELETE, so not even a bug in the
-- server can rewrite history (only someone with the database file can).
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    tenant_id   TEXT,
    actor_kind  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    actor_id    TEXT,
    via         TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT,
    detail      TEXT,
    outcome     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    address     TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_tenant_at ON audit_log(tenant_id, at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
