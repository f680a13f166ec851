-- The account's session epoch a login was made under: when people raises it
-- (password changed or reset, account disabled), the login ends.
ALTER TABLE refresh_tokens ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE web_sessions ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
