-- Rollout control: a deployment's status (pending_approval, running, halted, cancelled,
-- completed) and why, its plan (rings, gate, breaker, concurrency: JSON the server reads),
-- the ring in progress, its approval; each job's ring and when it was released to its device.
ALTER TABLE deployments ADD COLUMN status TEXT NOT NULL DEFAULT 'running';
ALTER TABLE deployments ADD COLUMN status_reason TEXT;
ALTER TABLE deployments ADD COLUMN plan_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE deployments ADD COLUMN current_ring INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN approved_by TEXT;
ALTER TABLE deployments ADD COLUMN approved_at BIGINT;
ALTER TABLE deployments ADD COLUMN updated_at BIGINT;
-- Set when an operator resumes a halted deployment: the breaker stands down and the gate of
-- a ring that finished before it counts as passed.
ALTER TABLE deployments ADD COLUMN resumed_at BIGINT;
ALTER TABLE jobs ADD COLUMN ring INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN released_at BIGINT;
-- Jobs created before rollout control were released at creation.
UPDATE jobs SET released_at = created_at WHERE released_at IS NULL;
CREATE INDEX deployments_status ON deployments(status);
