-- API tokens (issue #17): each is a session of its own (`sessions.kind`
-- 'api_token', its id the session's), which holds its user, creation,
-- last use, expiry and end; here what only a token has. Only the secret's
-- SHA-256 is kept (`token_hash`, hex), and looked up on every request the
-- token makes. `scopes` are their names, space-separated; `project_id`
-- the one project it may touch (no key: a deleted project leaves a token
-- that sees nothing). Deleting the session (its user's deletion, the
-- purge) deletes the token.
-- Swapping the kind's CHECK locks `sessions` outright (every reader waits:
-- logins, refreshes, and the access gates' readings) for a moment, and
-- the new key to it locks it against writes: the migration waits at most
-- 5 s for those locks, else it fails and the next start tries again. The
-- new CHECK is wider than the old, so the rows are not read again to
-- prove it (NOT VALID): the lock is held for no scan.
SET LOCAL lock_timeout = '5s';

ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_kind_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_kind_check CHECK (kind IN ('login', 'api_token')) NOT VALID;

CREATE TABLE api_tokens (
    session_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    project_id TEXT COLLATE "C"
);
