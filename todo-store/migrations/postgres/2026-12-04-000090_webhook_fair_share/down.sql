ALTER TABLE webhooks DROP COLUMN leased_at;
