-- Passkeys (WebAuthn): the credentials a user registers, each of which
-- signs them in alone, and the ceremonies' first steps waiting for their
-- second. `credential_id` is the authenticator's (unique across users: it
-- names the passkey a sign-in answers with); `credential` is the
-- ceremonies' library's own record of it (public key, counter, flags),
-- opaque here and written back when a sign-in changes it. A ceremony is
-- kept under its key (`registration:<user id>`, one at a time per user,
-- or the SHA-256 of a sign-in's challenge id, hex), single use: taking it
-- deletes it. `user_id` is the registering user; NULL for a sign-in,
-- which names no one yet. Everything goes with its user; the purge drops
-- expired ceremonies. Times are microseconds since the Unix epoch.
-- (New tables' keys to users: account writes wait a moment; at most 5 s.)
SET LOCAL lock_timeout = '5s';
CREATE TABLE passkeys (
    id            TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    user_id       TEXT   COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT   NOT NULL,
    credential_id BYTEA  NOT NULL UNIQUE,
    credential    BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);
CREATE TABLE passkey_ceremonies (
    key        TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    kind       TEXT   NOT NULL,
    user_id    TEXT   COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
    state      BYTEA  NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX passkey_ceremonies_by_user ON passkey_ceremonies (user_id);
CREATE INDEX passkey_ceremonies_by_expiry ON passkey_ceremonies (expires_at);
