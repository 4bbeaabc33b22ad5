-- Verified addresses (issue #17): a reset link is mailed only to an
-- address its account proved to be theirs. A change of address clears the
-- mark. Verification links: single use (the row goes when used), a day;
-- only the token's SHA-256 is kept (hex), with the address it was sent to;
-- one a user at a time. Times are microseconds since the Unix epoch.
-- (A column with a constant default is added without rewriting the table;
-- account writes wait for the lock a moment, at most 5 s.)
SET LOCAL lock_timeout = '5s';
ALTER TABLE users ADD COLUMN email_verified SMALLINT NOT NULL DEFAULT 0;
CREATE TABLE email_verifications (
    token_hash TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    user_id    TEXT   COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX email_verifications_by_user ON email_verifications (user_id);
CREATE INDEX email_verifications_by_expiry ON email_verifications (expires_at);
-- A reset asked for by address finds its accounts without reading them all
-- (not a partial index: the query's `email_verified = ?` is a parameter,
-- which a planner cannot match to a partial index's predicate).
CREATE INDEX users_by_email ON users (lower(email));
