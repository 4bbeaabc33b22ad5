-- Tasks in projects (issue #16). A task belongs to a project (its members
-- see it, its editors and owner change it) and names who created it. An
-- Inbox's id is its owner's, so every task there is already in its
-- owner's Inbox. `owner_id` stays: the project's owner, who keeps the task
-- (their quota counts it, and it goes with their account).
-- (SQLite adds a column with a foreign key only without NOT NULL; the
-- store writes both columns on every insert.)
ALTER TABLE tasks ADD COLUMN project_id TEXT REFERENCES projects (id) ON DELETE CASCADE;
ALTER TABLE tasks ADD COLUMN created_by TEXT;
UPDATE tasks SET project_id = owner_id, created_by = owner_id;

-- One index per sort order, now led by the project (a list is of one
-- project, or of each of the caller's).
DROP INDEX tasks_by_owner_created;
DROP INDEX tasks_by_owner_due;
DROP INDEX tasks_by_owner_priority;
CREATE INDEX tasks_by_project_created ON tasks (project_id, archived, created_at, id);
CREATE INDEX tasks_by_project_due
    ON tasks (project_id, archived, COALESCE(due_at, 9223372036854775807), id);
CREATE INDEX tasks_by_project_priority ON tasks (project_id, archived, priority, id);
-- (the owner's tasks: the quota's recount and the account's deletion)
CREATE INDEX tasks_by_owner ON tasks (owner_id);

-- A change carries the task's project and creator too.
ALTER TABLE changes ADD COLUMN project_id TEXT;
ALTER TABLE changes ADD COLUMN created_by TEXT;
UPDATE changes SET project_id = owner_id, created_by = owner_id WHERE kind <> 'task.deleted';
