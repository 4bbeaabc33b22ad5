ALTER TABLE change_streams DROP COLUMN relay_served_at;
ALTER TABLE change_streams DROP COLUMN relay_leased_until;
ALTER TABLE change_streams DROP COLUMN relayed_through;
