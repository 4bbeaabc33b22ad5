-- When each owner's webhooks were last served (issue #15, the attack's
-- fair share): set when one of them is leased and when that lease is
-- done; of the webhooks due, those whose owner's turn ended longest ago
-- are leased first, so that many accounts' slow receivers cannot keep an
-- honest user's deliveries waiting while places free up. Kept per owner,
-- on the stream's row, so that deleting and making webhooks again does not
-- make an owner new. A new, empty column: no rewrite of the table.
ALTER TABLE change_streams ADD COLUMN webhooks_served_at BIGINT;
