-- Foundation schema. Every record carries a tenant. Times are unix milliseconds (UTC).
-- Kept to portable SQL: the PostgreSQL backend mirrors it with its own migrations.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- Operator API tokens. tenant_id NULL = provider level (all tenants).
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants(id),
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE enroll_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    token_hash  TEXT NOT NULL UNIQUE,
    labels_json TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    uses        INTEGER NOT NULL DEFAULT 0,
    max_uses    INTEGER
);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    hostname         TEXT NOT NULL,
    machine_id       TEXT NOT NULL,
    labels_json      TEXT NOT NULL,
    secret_hash      TEXT NOT NULL UNIQUE,
    enroll_token_id  TEXT REFERENCES enroll_tokens(id),
    enrolled_at      BIGINT NOT NULL,
    last_seen        BIGINT,
    agent_version    TEXT NOT NULL,
    checkin_interval_secs BIGINT NOT NULL,
    inventory_hash   TEXT,
    inventory_json   TEXT,
    inventory_at     BIGINT,
    os               TEXT NOT NULL DEFAULT '',
    kernel           TEXT NOT NULL DEFAULT '',
    pending_updates  INTEGER NOT NULL DEFAULT 0,
    security_updates INTEGER NOT NULL DEFAULT 0,
    reboot_required  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_tenant ON devices(tenant_id);

CREATE TABLE deployments (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    selection_json  TEXT NOT NULL,
    timeout_secs    BIGINT NOT NULL
);
CREATE INDEX deployments_tenant ON deployments(tenant_id, created_at);

-- One device's share of a deployment. status: queued, running, done.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    deployment_id   TEXT NOT NULL REFERENCES deployments(id),
    device_id       TEXT NOT NULL REFERENCES devices(id),
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    exit_code       INTEGER,
    commands_json   TEXT,
    duration_ms     BIGINT,
    output          TEXT,
    error           TEXT,
    result_json     TEXT,
    UNIQUE (deployment_id, device_id)
);
CREATE INDEX jobs_device_status ON jobs(device_id, status);

-- One targeted package of one job: the rows of `deployment show`.
CREATE TABLE job_packages (
    job_id            TEXT NOT NULL REFERENCES jobs(id),
    package           TEXT NOT NULL,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    deployment_id     TEXT NOT NULL REFERENCES deployments(id),
    device_id         TEXT NOT NULL REFERENCES devices(id),
    state             TEXT NOT NULL,
    class             TEXT,
    from_version      TEXT,
    to_version        TEXT,
    installed_version TEXT,
    evidence_json     TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (job_id, package)
);
CREATE INDEX job_packages_deployment ON job_packages(deployment_id);
