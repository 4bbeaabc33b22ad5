-- How many times a used refresh token was exchanged again within the reuse
-- grace (#15 attack: one stolen token replayed in a loop within the grace
-- minted 7,533 live siblings in 9 s). The exchange's conditional UPDATE
-- counts here, and matches nothing at todo_core's
-- TokenPolicy::MAX_GRACE_EXCHANGES: one more is reuse.
ALTER TABLE refresh_tokens ADD COLUMN grace_exchanges INTEGER NOT NULL DEFAULT 0;
