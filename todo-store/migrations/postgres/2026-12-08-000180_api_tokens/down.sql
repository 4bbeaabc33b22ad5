-- The version before knows no API tokens: their sessions go with them
-- (it would read the kind as corrupt), and the kind with them.
SET LOCAL lock_timeout = '5s';
DROP TABLE api_tokens;
DELETE FROM sessions WHERE kind = 'api_token';
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_kind_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_kind_check CHECK (kind IN ('login')) NOT VALID;
