-- Browser sessions of the dashboard: the cookie holds a random value, stored
-- here only as its SHA-256. The identity is re-read from people every few
-- minutes, so a changed role or community takes effect without a new login.
CREATE TABLE web_sessions (
    session_hash TEXT NOT NULL PRIMARY KEY,
    account_id TEXT NOT NULL,
    username TEXT NOT NULL,
    role INTEGER NOT NULL,
    community_id TEXT NOT NULL,
    cadre_id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    checked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX web_sessions_account ON web_sessions (account_id);

-- Open311 clients (civic reporting apps): each API key, stored as its
-- SHA-256, reports into one community.
CREATE TABLE open311_keys (
    key_hash TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    community_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
