DROP TRIGGER tasks_in_inbox ON tasks;
DROP FUNCTION todo_task_in_inbox();
ALTER TABLE changes DROP COLUMN created_by;
ALTER TABLE changes DROP COLUMN project_id;
DROP INDEX tasks_by_owner;
DROP INDEX tasks_by_project_priority;
DROP INDEX tasks_by_project_due;
DROP INDEX tasks_by_project_created;
CREATE INDEX tasks_by_owner_created ON tasks (owner_id, archived, created_at, id);
CREATE INDEX tasks_by_owner_due
    ON tasks (owner_id, archived, (COALESCE(due_at, 9223372036854775807)), id);
CREATE INDEX tasks_by_owner_priority ON tasks (owner_id, archived, priority, id);
ALTER TABLE tasks DROP COLUMN created_by;
ALTER TABLE tasks DROP COLUMN project_id;
