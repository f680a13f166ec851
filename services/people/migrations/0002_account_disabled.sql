-- When an account stopped being allowed to log in: disabled by a worker or an
-- admin, or its resident moved out. NULL while it may.
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;
-- Residents who moved out before this: their accounts end as they did.
UPDATE accounts SET disabled_at = (SELECT removed_at FROM residents WHERE residents.id = accounts.resident_id)
WHERE resident_id <> ''
  AND resident_id IN (SELECT id FROM residents WHERE removed_at IS NOT NULL);
