DROP INDEX tasks_by_project_due;
ALTER TABLE tasks DROP COLUMN due_key;
CREATE INDEX tasks_by_project_due
    ON tasks (project_id, archived, (COALESCE(due_at, 9223372036854775807)), id);
