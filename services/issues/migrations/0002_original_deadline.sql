-- The resolution deadline an issue was first given, kept when a reopen sets a
-- new working deadline: the on-time rate judges against it. NULL until the
-- first move, and then the deadline as it was (see lifecycle's UPDATE).
-- Issues reopened before this column existed keep their latest deadline.
ALTER TABLE issues ADD COLUMN first_resolution_due_at BIGINT;
UPDATE issues SET first_resolution_due_at = resolution_due_at WHERE reopen_count = 0;
