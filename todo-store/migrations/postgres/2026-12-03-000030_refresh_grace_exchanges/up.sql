-- How many times a used refresh token was exchanged again within the reuse
-- grace (#15 attack: one stolen token replayed in a loop within the grace
-- minted 7,533 live siblings in 9 s). The exchange's conditional UPDATE
-- counts here, and matches nothing at todo_core's
-- TokenPolicy::MAX_GRACE_EXCHANGES: one more is reuse.
-- Adding the column is a catalogue change, but it waits for an exclusive
-- lock on the table, and every login, refresh and logout queues behind the
-- wait (behind a pg_dump holding its shared lock, say): after 5 s it gives
-- up instead, and the start that ran it fails and can be retried.
SET LOCAL lock_timeout = '5s';
ALTER TABLE refresh_tokens ADD COLUMN grace_exchanges INTEGER NOT NULL DEFAULT 0;
