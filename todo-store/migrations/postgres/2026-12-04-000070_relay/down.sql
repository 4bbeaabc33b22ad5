ALTER TABLE change_streams DROP COLUMN relay_served_at, DROP COLUMN relay_leased_until, DROP COLUMN relayed_through;
