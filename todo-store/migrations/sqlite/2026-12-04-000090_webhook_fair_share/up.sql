-- When each webhook's last lease began, then was done (issue #15, the
-- attack's fair share): of the webhooks due, those whose owner's turn
-- ended longest ago are leased first, so that many accounts' slow
-- receivers cannot keep an honest user's deliveries waiting while places
-- free up. A new, empty column: no rewrite of the table.
ALTER TABLE webhooks ADD COLUMN leased_at BIGINT;
