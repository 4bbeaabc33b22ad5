-- A project's read-only iCalendar feed (issue #16): at most one a project,
-- reached by whoever holds its URL. Only the token's SHA-256 is kept (hex):
-- the database cannot give a feed away, and publishing anew or deleting
-- the row revokes the old URL at once. A project's deletion takes it.
SET LOCAL lock_timeout = '5s';
CREATE TABLE project_feeds (
    project_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    token_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
