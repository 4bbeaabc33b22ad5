-- The relay to a message broker (issue #15): how far it has published each
-- owner's stream, and until when one relay holds the stream. Written only
-- when a relay runs (`--amqp-url`); writers never touch these columns.
ALTER TABLE change_streams ADD COLUMN relayed_through BIGINT NOT NULL DEFAULT 0;
ALTER TABLE change_streams ADD COLUMN relay_leased_until BIGINT;
-- when a relay last leased the stream: the least recently served go first
ALTER TABLE change_streams ADD COLUMN relay_served_at BIGINT NOT NULL DEFAULT 0;
