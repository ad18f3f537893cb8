-- Every attempt at a package is kept: per (device, package, deployment), what was done, when,
-- with which outcome, class and evidence. A job's result adds one attempt per package; a
-- later confirmation (after a reboot) adds another.
CREATE TABLE attempts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    device_id         TEXT NOT NULL REFERENCES devices(id),
    deployment_id     TEXT NOT NULL REFERENCES deployments(id),
    job_id            TEXT NOT NULL REFERENCES jobs(id),
    package           TEXT NOT NULL,
    at                BIGINT NOT NULL,
    state             TEXT NOT NULL,
    class             TEXT,
    installed_version TEXT,
    evidence_json     TEXT NOT NULL DEFAULT '[]',
    action            TEXT NOT NULL,
    exit_code         INTEGER
);
CREATE INDEX attempts_device_package ON attempts(device_id, package, at);
CREATE INDEX attempts_tenant_state ON attempts(tenant_id, state);

-- The device's boot id when the job finished (pending_reboot is confirmed by a new one).
ALTER TABLE jobs ADD COLUMN boot_id TEXT;
