-- Open issues in id order, per community: the dashboard's first page of open
-- issues is read from here rather than by walking every issue the community
-- ever had until a page of open ones is found. The states are those
-- `ListIssues` (open_only) writes out, word for word, so both databases match it.
CREATE INDEX issues_open ON issues (community_id, id)
    WHERE state IN ('reported', 'acknowledged', 'claimed', 'in_progress', 'reopened');
