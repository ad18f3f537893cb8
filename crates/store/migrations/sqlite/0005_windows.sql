-- A released job's window end: no install may start after it (the server stops offering it,
-- the agent refuses to start it).
ALTER TABLE jobs ADD COLUMN window_end BIGINT;
