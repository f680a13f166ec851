-- Refresh tokens, stored by hash so that a copy of the database cannot log in.
-- A login starts a family; each refresh spends one token and adds the next.
-- A spent token presented again means it was stolen: the family is revoked.
CREATE TABLE refresh_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    family_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
