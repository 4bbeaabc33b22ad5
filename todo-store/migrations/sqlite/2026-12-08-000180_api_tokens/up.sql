-- API tokens (issue #17): each is a session of its own (`sessions.kind`
-- 'api_token', its id the session's), which holds its user, creation,
-- last use, expiry and end; here what only a token has. Only the secret's
-- SHA-256 is kept (`token_hash`, hex), and looked up on every request the
-- token makes. `scopes` are their names, space-separated; `project_id`
-- the one project it may touch (no key: a deleted project leaves a token
-- that sees nothing). Deleting the session (its user's deletion, the
-- purge) deletes the token.
--
-- SQLite cannot change a CHECK in place: `sessions` is made again with
-- the new kind allowed, its rows copied (nothing refers to it yet).
CREATE TABLE sessions_new (
    id           TEXT   NOT NULL PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT   NOT NULL CHECK (kind IN ('login', 'api_token')),
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    user_agent   TEXT,
    address      TEXT,
    ended_at     BIGINT
);
INSERT INTO sessions_new (id, user_id, kind, created_at, last_used_at, expires_at, user_agent,
                          address, ended_at)
SELECT id, user_id, kind, created_at, last_used_at, expires_at, user_agent, address, ended_at
FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX sessions_by_user ON sessions (user_id, ended_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_end ON sessions (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE api_tokens (
    session_id TEXT NOT NULL PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    project_id TEXT
);
