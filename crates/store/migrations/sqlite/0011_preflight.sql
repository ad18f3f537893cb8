-- Pre-flight checks: one job per (deployment, device), offered to the agent at once, whatever
-- the rollout state; its answer is kept as predictions, never as results.
CREATE TABLE preflight_jobs (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    deployment_id  TEXT NOT NULL REFERENCES deployments(id),
    device_id      TEXT NOT NULL REFERENCES devices(id),
    payload        TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    started_at     BIGINT,
    finished_at    BIGINT,
    result_json    TEXT,
    UNIQUE (deployment_id, device_id)
);
CREATE INDEX preflight_jobs_device ON preflight_jobs (device_id, status);

CREATE TABLE predictions (
    deployment_id  TEXT NOT NULL REFERENCES deployments(id),
    device_id      TEXT NOT NULL REFERENCES devices(id),
    package        TEXT NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    job_id         TEXT NOT NULL,
    state          TEXT NOT NULL,
    class          TEXT,
    evidence_json  TEXT NOT NULL DEFAULT '[]',
    at             BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, device_id, package)
);
