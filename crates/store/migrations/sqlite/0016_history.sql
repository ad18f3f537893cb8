-- Daily history per tenant for the dashboard's charts and the compliance report: one row per
-- tenant and UTC day, taken by the server (the first snapshot of a day stays; idempotent).
CREATE TABLE history_snapshots (
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    day               TEXT NOT NULL,
    taken_at          BIGINT NOT NULL,
    devices           BIGINT NOT NULL,
    fully_patched     BIGINT NOT NULL,
    security_pending  BIGINT NOT NULL,
    reboot_pending    BIGINT NOT NULL,
    stale             BIGINT NOT NULL,
    exposures_open    BIGINT NOT NULL,
    critical          BIGINT NOT NULL,
    high              BIGINT NOT NULL,
    medium            BIGINT NOT NULL,
    low               BIGINT NOT NULL,
    other             BIGINT NOT NULL,
    kev_open          BIGINT NOT NULL,
    sla_breaches      BIGINT NOT NULL,
    failures_json     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, day)
);
CREATE INDEX history_snapshots_day ON history_snapshots(day);
-- Attempts by time for the report's failures in a period.
CREATE INDEX attempts_tenant_at ON attempts(tenant_id, at);
-- Inventories (often hundreds of KiB of JSON) live apart from the device rows, so that
-- listing, counting and aggregating 10,000 devices reads only the summary columns instead of
-- walking every row's overflow pages.
CREATE TABLE device_inventories (
    device_id TEXT PRIMARY KEY REFERENCES devices(id),
    json      TEXT NOT NULL
);
INSERT INTO device_inventories (device_id, json)
    SELECT id, inventory_json FROM devices WHERE inventory_json IS NOT NULL;
ALTER TABLE devices DROP COLUMN inventory_json;
