-- Webhooks (issue #15): each user's URLs that their changes are posted to.
-- The change log is the queue: delivered_through is how far in the
-- owner's stream a webhook has got; a lease (leased_until) gives a
-- webhook to one instance at a time (todo-store/src/webhooks.rs).
CREATE TABLE webhooks (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    owner_id          TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url               TEXT   NOT NULL,
    -- the kinds of change sent, comma-separated
    events            TEXT   NOT NULL,
    secret            TEXT   NOT NULL,
    created_at        BIGINT NOT NULL,
    delivered_through BIGINT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    failing_since     BIGINT,
    disabled_at       BIGINT,
    leased_until      BIGINT
);
CREATE INDEX webhooks_by_owner ON webhooks (owner_id);
CREATE INDEX webhooks_due ON webhooks (next_attempt_at) WHERE disabled_at IS NULL;

-- Each webhook's newest attempts (trimmed as they are added).
CREATE TABLE webhook_deliveries (
    webhook_id TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    status     BIGINT,
    latency_ms BIGINT NOT NULL,
    error      TEXT,
    PRIMARY KEY (webhook_id, at, seq)
);
