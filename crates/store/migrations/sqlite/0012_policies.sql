-- Policies: a tenant's standing patch process (what, when, how fast, approval, reboots,
-- retries), kept as the JSON the server validated. Names are unique per tenant, so a policy
-- file can be applied again and again (GitOps) and lands on the same row.
CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    revision INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
-- One row per deployment a policy created, keyed by the cycle it was for (a window's local
-- date, or an expedite key): the key is what keeps a restart or two ticks from creating a
-- cycle's deployment twice.
CREATE TABLE policy_runs (
    policy_id TEXT NOT NULL,
    cycle TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (policy_id, cycle)
);
-- Updates someone rejected: never installed again until un-rejected (a hard block).
CREATE TABLE rejected_updates (
    tenant_id TEXT NOT NULL,
    package TEXT NOT NULL,
    version TEXT NOT NULL,
    deployment_id TEXT,
    rejected_by TEXT NOT NULL,
    reason TEXT,
    rejected_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, package, version)
);
-- Retries: which attempt a job is on, and not before when the next one may start.
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN not_before BIGINT;
