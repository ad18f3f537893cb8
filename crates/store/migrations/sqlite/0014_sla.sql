-- SLA policies per tenant: remediation deadlines in days from an exposure's first sighting.
-- No row = the product defaults (KEV: CISA's due date or 14 days, critical 15, high 30,
-- medium 90, low 180). A NULL day count = no deadline for that rating.
CREATE TABLE sla_policies (
    tenant_id           TEXT PRIMARY KEY REFERENCES tenants(id),
    kev_days            BIGINT NOT NULL,
    honor_kev_due_date  INTEGER NOT NULL,
    critical_days       BIGINT,
    high_days           BIGINT,
    medium_days         BIGINT,
    low_days            BIGINT,
    none_days           BIGINT,
    unknown_days        BIGINT,
    updated_at          BIGINT NOT NULL,
    updated_by          TEXT NOT NULL
);
