-- A community's resolved issues, counted as they resolve (and uncounted as
-- they reopen), in the same transaction as the move: its summary reads one
-- row rather than counting a history that only grows.
CREATE TABLE issue_counts (
    community_id TEXT PRIMARY KEY,
    resolved BIGINT NOT NULL
);
INSERT INTO issue_counts (community_id, resolved)
    SELECT community_id, COUNT(*) FROM issues
    WHERE state IN ('resolved', 'verified', 'closed_unconfirmed')
    GROUP BY community_id;
-- Open issues' index carries what the summary and the overdue list ask of
-- them (state and deadlines), so a community's open and overdue counts are
-- read from the index alone. It still gives open issues in id order.
DROP INDEX issues_open;
CREATE INDEX issues_open ON issues (community_id, id, state, response_due_at, resolution_due_at)
    WHERE state IN ('reported', 'acknowledged', 'claimed', 'in_progress', 'reopened');
