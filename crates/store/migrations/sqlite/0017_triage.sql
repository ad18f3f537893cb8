-- Triage of current failures, per (device, package): who is on it and what was decided.
-- `status` is the last decision (`open`, `resolved`, `accepted_risk`); what is in force is
-- computed by the server (Triage::effective_status): a failed attempt newer than
-- `failure_attempt_id` reopens a resolved failure, an accepted risk holds until
-- `accepted_until`. The history of decisions is in the audit log.
CREATE TABLE failure_triage (
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    device_id          TEXT NOT NULL REFERENCES devices(id),
    package            TEXT NOT NULL,
    assignee           TEXT,
    assigned_by        TEXT,
    assigned_at        BIGINT,
    status             TEXT NOT NULL DEFAULT 'open',
    reason             TEXT,
    accepted_until     BIGINT,
    failure_attempt_id INTEGER,
    decided_by         TEXT,
    decided_at         BIGINT,
    PRIMARY KEY (device_id, package)
);
CREATE INDEX failure_triage_tenant ON failure_triage(tenant_id);
