-- Sessions (issue #17): each login is one, and its refresh tokens descend
-- from it (`refresh_tokens.family_id` is the session's id). Its access
-- tokens name it (`sid`); ending it (`ended_at`) revokes the refresh
-- tokens and, through the access gate, which reads a user's recently
-- ended sessions with the user, refuses the access tokens on every
-- instance within a second. `last_used_at` moves at each refresh,
-- `expires_at` with the newest refresh token. Times are microseconds since
-- the Unix epoch.
-- The new table's key to users locks users (account writes wait) while
-- the sessions are filled in, one pass over refresh_tokens; the migration
-- waits at most 5 s for that lock, else it fails and the next start tries
-- again.
SET LOCAL lock_timeout = '5s';

CREATE TABLE sessions (
    id           TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    user_id      TEXT   COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT   NOT NULL CHECK (kind IN ('login')),
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    user_agent   TEXT,
    address      TEXT,
    ended_at     BIGINT
);
-- A user's sessions, live (`ended_at IS NULL`) or ended since a time.
CREATE INDEX sessions_by_user ON sessions (user_id, ended_at);
-- The purge: sessions long expired, or long ended.
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_end ON sessions (ended_at) WHERE ended_at IS NOT NULL;

-- The logins made before sessions were recorded, one session a refresh
-- family, without a device or address; a family with a revoked token
-- ended when its newest token was issued.
INSERT INTO sessions (id, user_id, kind, created_at, last_used_at, expires_at, ended_at)
SELECT family_id, MIN(user_id), 'login', MIN(issued_at), MAX(issued_at), MAX(expires_at),
       CASE WHEN MAX(revoked) > 0 THEN MAX(issued_at) END
FROM refresh_tokens
GROUP BY family_id;
