-- What a new report writes besides its row. A report is claimed by no unit
-- yet: its empty unit went into the unit index with every other unclaimed
-- issue, at the same end of it, and nothing reads unclaimed issues by unit.
-- The unit index now holds claimed issues only; a statistics read by unit
-- names the same condition (`statistics::Scope`), so it still uses it.
DROP INDEX issues_unit;
CREATE INDEX issues_unit ON issues (claim_unit_id, reported_at) WHERE claim_unit_id <> '';
-- Event ids are made unique where they are made (UUIDv7); the one read of an
-- event by id (an idempotent note's replay) names its issue, and finds it among
-- that issue's few events through issue_events_issue.
DROP INDEX issue_events_id;
