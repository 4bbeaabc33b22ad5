-- Subtasks, recurrence and reminders (issue #16). A subtask names its
-- parent (a task of the same project; deleting the parent deletes it, and
-- the store records each deletion). A recurring task keeps its rule, its
-- zone and its place in its series; a series' occurrence is one task at
-- most (the unique index), so that completing an occurrence makes the next
-- one once however often it is completed, and on however many instances.
-- Reminders are kept with the task (one per line, `at:<micros>` or
-- `before:<seconds>`). A change carries all of it too.
ALTER TABLE tasks ADD COLUMN parent_id TEXT REFERENCES tasks (id) ON DELETE CASCADE;
ALTER TABLE tasks ADD COLUMN recurrence TEXT;
ALTER TABLE tasks ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE tasks ADD COLUMN series_id TEXT;
ALTER TABLE tasks ADD COLUMN series_start BIGINT;
ALTER TABLE tasks ADD COLUMN occurrence BIGINT;
ALTER TABLE tasks ADD COLUMN reminders TEXT NOT NULL DEFAULT '';
CREATE INDEX tasks_by_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX tasks_one_per_occurrence ON tasks (series_id, occurrence)
    WHERE series_id IS NOT NULL;

ALTER TABLE changes ADD COLUMN parent_id TEXT;
ALTER TABLE changes ADD COLUMN recurrence TEXT;
ALTER TABLE changes ADD COLUMN time_zone TEXT;
ALTER TABLE changes ADD COLUMN series_id TEXT;
ALTER TABLE changes ADD COLUMN series_start BIGINT;
ALTER TABLE changes ADD COLUMN occurrence BIGINT;
ALTER TABLE changes ADD COLUMN reminders TEXT;
UPDATE changes SET time_zone = 'UTC', reminders = '' WHERE kind <> 'task.deleted';
