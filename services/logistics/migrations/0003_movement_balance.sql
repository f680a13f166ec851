-- The depot's stock of the item right after each movement, so that a retried
-- request is answered with the balance its first answer gave.
ALTER TABLE stock_movements ADD COLUMN balance_after BIGINT;
