-- Why a worker disabled an account.
ALTER TABLE accounts ADD COLUMN disabled_reason TEXT NOT NULL DEFAULT '';
-- 1 while the password was set by someone else (a reset, the demo data): the
-- holder changes it before logging in.
ALTER TABLE accounts ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
-- Rises each time every login of the account ends; tokens carry the value
-- they were issued under.
ALTER TABLE accounts ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
-- Logins and accounts whose sessions ended lately, followed by every service
-- to refuse their access tokens; kept two hours (no access token lives longer).
CREATE TABLE ended_sessions (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT '',
    session_epoch BIGINT NOT NULL,
    ended_at BIGINT NOT NULL
);
CREATE INDEX ended_sessions_at ON ended_sessions (ended_at);
