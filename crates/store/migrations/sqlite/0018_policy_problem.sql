-- Why the scheduler could not run a policy at its last attempt (NULL when it could): a policy
-- broken by something other than having nothing to install is shown, not only logged.
ALTER TABLE policies ADD COLUMN problem TEXT;
ALTER TABLE policies ADD COLUMN problem_at INTEGER;
