DELETE FROM changes WHERE kind LIKE 'project.%' OR kind LIKE 'member.%';
ALTER TABLE changes DROP COLUMN username;
ALTER TABLE changes DROP COLUMN member_id;
ALTER TABLE changes DROP COLUMN role;
ALTER TABLE changes DROP COLUMN inbox;
ALTER TABLE changes DROP COLUMN color;
