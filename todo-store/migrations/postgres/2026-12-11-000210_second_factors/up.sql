-- Second factors: a user's TOTP authenticator (pending until confirmed
-- with a code), its ten single-use recovery codes, and the two-step
-- logins waiting for a code. The secret is kept sealed (encrypted under a
-- key outside the database, bound to its user); recovery codes and login
-- tokens only as SHA-256 digests (hex). `last_step` is the last TOTP step
-- whose code was accepted: only a later one is taken. Everything goes with
-- its user; the purge drops expired logins and enrolments never
-- confirmed. Times are microseconds since the Unix epoch.
-- (New tables' keys to users: account writes wait a moment; at most 5 s.)
SET LOCAL lock_timeout = '5s';
CREATE TABLE totp_authenticators (
    user_id       TEXT   COLLATE "C" NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT
);
-- (the purge's: pending enrolments by age)
CREATE INDEX totp_authenticators_pending ON totp_authenticators (created_at)
    WHERE confirmed_at IS NULL;
CREATE TABLE recovery_codes (
    user_id   TEXT   COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT   COLLATE "C" NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE mfa_challenges (
    token_hash    TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    user_id       TEXT    COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    attempts_left INTEGER NOT NULL
);
CREATE INDEX mfa_challenges_by_user ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges (expires_at);
