-- A project's read-only iCalendar feed (issue #16): at most one a project,
-- reached by whoever holds its URL. Only the token's SHA-256 is kept (hex):
-- the database cannot give a feed away, and publishing anew or deleting
-- the row revokes the old URL at once. A project's deletion takes it.
CREATE TABLE project_feeds (
    project_id TEXT   NOT NULL PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    token_hash TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
