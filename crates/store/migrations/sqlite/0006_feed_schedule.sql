-- A feed fetched from a URL may be refreshed on a schedule: every `refresh_secs`.
ALTER TABLE feeds ADD COLUMN refresh_secs BIGINT;
