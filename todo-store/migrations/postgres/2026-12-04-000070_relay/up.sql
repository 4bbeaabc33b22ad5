-- The relay to a message broker (issue #15): how far it has published each
-- owner's stream, until when one relay holds the stream (a lease, so
-- that several instances publish each change once between them). Written
-- only when a relay runs (`--amqp-url`); writers never touch these columns.
-- Adding them is a catalogue change that waits for the table's exclusive
-- lock, behind every writer: after 5 s it gives up, and the start can be
-- retried.
SET LOCAL lock_timeout = '5s';
ALTER TABLE change_streams
    ADD COLUMN relayed_through BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN relay_leased_until BIGINT,
    -- when a relay last leased the stream: the least recently served go
    -- first, so that busy streams cannot starve the others
    ADD COLUMN relay_served_at BIGINT NOT NULL DEFAULT 0;
