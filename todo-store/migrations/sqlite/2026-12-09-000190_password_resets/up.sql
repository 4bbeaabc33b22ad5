-- Password-reset links (issue #17): single use, 30 minutes. Only the
-- token's SHA-256 is kept (hex); one link a user works at a time (a new
-- one deletes the others); the user's deletion deletes theirs; the purge
-- drops expired ones. Times are microseconds since the Unix epoch.
CREATE TABLE password_resets (
    token_hash TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX password_resets_by_user ON password_resets (user_id);
CREATE INDEX password_resets_by_expiry ON password_resets (expires_at);
