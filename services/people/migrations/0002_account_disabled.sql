-- When an account stopped being allowed to log in: disabled by a worker or an
-- admin, or its resident moved out. NULL while it may.
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;
