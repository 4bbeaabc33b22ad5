-- Failed logins, shared by every instance (issue #11, finding 5). A login
-- takes its slot here before the password is weighed: the row counts the
-- attempt as a failure until a success deletes it. `throttle_key` is `a:`
-- and the username offered (known or not), or `d:` and a device token's
-- digest. Times are microseconds since the Unix epoch.
CREATE TABLE login_failures (
    throttle_key  TEXT   NOT NULL PRIMARY KEY,
    failures      BIGINT NOT NULL CHECK (failures >= 0),
    last_at       BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);
CREATE INDEX login_failures_by_last ON login_failures (last_at);

-- Devices that signed in to an account before: a login presenting one is
-- counted against the device, not the account, so an attack on the account
-- does not lock its owner out.
CREATE TABLE login_devices (
    token_hash TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_devices_by_user ON login_devices (user_id);
CREATE INDEX login_devices_by_expiry ON login_devices (expires_at);
