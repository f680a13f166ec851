-- Issues and everything about them are community-scoped: community_id leads
-- every key and index, so the tables can be distributed by community.
CREATE TABLE issues (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    compound_id TEXT NOT NULL,
    building_id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    three_most TEXT NOT NULL,
    location_text TEXT NOT NULL,
    latitude DOUBLE PRECISION NOT NULL,
    longitude DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    claim_cadre_id TEXT NOT NULL,
    claim_unit_id TEXT NOT NULL,
    -- ',id,id,' so one participant matches with LIKE.
    claim_participants TEXT NOT NULL,
    claimed_at BIGINT,
    first_claimed_at BIGINT,
    reported_at BIGINT NOT NULL,
    response_due_at BIGINT NOT NULL,
    resolution_due_at BIGINT NOT NULL,
    responded_at BIGINT,
    resolved_at BIGINT,
    closed_at BIGINT,
    rating BIGINT,
    rating_comment TEXT NOT NULL,
    duplicate_of TEXT NOT NULL,
    reject_reason TEXT NOT NULL,
    reopen_count BIGINT NOT NULL,
    attachments_json TEXT NOT NULL,
    -- When the last event happened; a move may not be dated before it.
    last_event_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX issues_id ON issues (id);
CREATE INDEX issues_state ON issues (community_id, state, id);
CREATE INDEX issues_reported ON issues (community_id, reported_at);
CREATE INDEX issues_unit ON issues (claim_unit_id, reported_at);

CREATE TABLE issue_watchers (
    community_id TEXT NOT NULL,
    issue_id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    PRIMARY KEY (community_id, issue_id, household_id)
);

-- The per-issue timeline and the per-community event stream in one table:
-- seq orders a community's events for WatchIssues.
CREATE TABLE issue_events (
    community_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL,
    issue_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    note TEXT NOT NULL,
    attachments_json TEXT NOT NULL,
    PRIMARY KEY (community_id, seq)
);
CREATE INDEX issue_events_issue ON issue_events (community_id, issue_id, seq);
CREATE UNIQUE INDEX issue_events_id ON issue_events (community_id, id);

CREATE TABLE event_heads (
    community_id TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL
);

-- One row per missed deadline: the key makes each breach escalate exactly
-- once, whichever replica notices it first.
CREATE TABLE escalations (
    community_id TEXT NOT NULL,
    issue_id TEXT NOT NULL,
    deadline_kind TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    escalated_at BIGINT NOT NULL,
    PRIMARY KEY (community_id, issue_id, deadline_kind, due_at)
);
