-- Reboots after installs: one row per job offered with a reboot policy other than `never`
-- (what the device was sent after the loop guard), then whether the device was expected to
-- reboot and whether it came back in time, or still requiring a reboot (a loop).
CREATE TABLE reboots (
    job_id          TEXT PRIMARY KEY REFERENCES jobs(id),
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    deployment_id   TEXT NOT NULL REFERENCES deployments(id),
    device_id       TEXT NOT NULL REFERENCES devices(id),
    mode            TEXT NOT NULL,
    withheld        TEXT,
    status          TEXT NOT NULL,
    packages_json   TEXT NOT NULL DEFAULT '[]',
    boot_id_before  TEXT,
    requested_at    BIGINT,
    deadline        BIGINT,
    came_back_at    BIGINT,
    boot_id_after   TEXT,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX reboots_device ON reboots (device_id, requested_at);
CREATE INDEX reboots_open ON reboots (status, deadline);
