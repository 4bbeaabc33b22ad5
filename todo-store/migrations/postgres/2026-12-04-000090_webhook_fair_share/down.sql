ALTER TABLE change_streams DROP COLUMN webhooks_served_at;
