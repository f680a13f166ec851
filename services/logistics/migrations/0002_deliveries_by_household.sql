-- A household's deliveries across batches (the gateway's household profile).
CREATE INDEX deliveries_household ON deliveries (community_id, household_id);
