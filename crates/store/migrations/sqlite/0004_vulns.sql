-- Advisory feeds as imported (the last good content stays in force when an import fails),
-- and exposures: per (device, CVE, package), open until a rematch no longer finds it.
CREATE TABLE feeds (
    source          TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    url             TEXT,
    content         BLOB,
    sha256          TEXT,
    records         INTEGER NOT NULL DEFAULT 0,
    imported_at     BIGINT,
    last_attempt_at BIGINT,
    last_error      TEXT
);

CREATE TABLE exposures (
    device_id         TEXT NOT NULL REFERENCES devices(id),
    cve               TEXT NOT NULL,
    package           TEXT NOT NULL,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    binaries_json     TEXT NOT NULL DEFAULT '[]',
    installed_version TEXT NOT NULL,
    fix_state         TEXT NOT NULL,
    fixed_version     TEXT,
    fixed_by_update   TEXT,
    rating            TEXT NOT NULL,
    cvss              DOUBLE PRECISION,
    kev               INTEGER NOT NULL DEFAULT 0,
    kev_due           TEXT,
    ransomware        INTEGER NOT NULL DEFAULT 0,
    epss              DOUBLE PRECISION,
    epss_percentile   DOUBLE PRECISION,
    priority          DOUBLE PRECISION NOT NULL,
    summary           TEXT,
    first_seen        BIGINT NOT NULL,
    closed_at         BIGINT,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (device_id, cve, package)
);
CREATE INDEX exposures_open ON exposures(tenant_id, closed_at);
CREATE INDEX exposures_cve ON exposures(cve);
