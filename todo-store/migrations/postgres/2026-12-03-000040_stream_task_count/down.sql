ALTER TABLE change_streams DROP COLUMN task_count;
