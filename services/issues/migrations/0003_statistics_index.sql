-- Statistics (and the dashboard's) count a community's issues reported in a
-- period by state, category, mark, response, rating, claim and resolution.
-- With those columns in the index after the community and report time, the
-- counts are read from the index alone (on PostgreSQL once a page is marked
-- all-visible by vacuum), not from rows scattered over the table. It serves
-- every use of the index it replaces, whose columns it begins with.
CREATE INDEX issues_statistics ON issues (community_id, reported_at, state, category, three_most,
    responded_at, response_due_at, rating, first_claimed_at, resolved_at);
DROP INDEX issues_reported;
