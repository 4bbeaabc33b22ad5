-- Tasks in projects (issue #16). A task belongs to a project (its members
-- see it, its editors and owner change it) and names who created it. An
-- Inbox's id is its owner's, so every task there is already in its
-- owner's Inbox. `owner_id` stays: the project's owner, who keeps the task
-- (their quota counts it, and it goes with their account).
--
-- The backfill rewrites every task (and every change) and the new indexes
-- read them all, under the tables' exclusive locks: reads and writes of
-- tasks and changes wait for the migration (seconds for a large database;
-- plan it as a short maintenance). It waits at most 5 s for the locks,
-- else it fails and the next start tries again.
SET LOCAL lock_timeout = '5s';

ALTER TABLE tasks ADD COLUMN project_id TEXT COLLATE "C" REFERENCES projects (id) ON DELETE CASCADE;
ALTER TABLE tasks ADD COLUMN created_by TEXT COLLATE "C";
UPDATE tasks SET project_id = owner_id, created_by = owner_id;
ALTER TABLE tasks ALTER COLUMN project_id SET NOT NULL;
ALTER TABLE tasks ALTER COLUMN created_by SET NOT NULL;
-- During a rolling upgrade, task-servers of the version before write tasks
-- without these columns: such a task is its owner's, in their Inbox.
CREATE FUNCTION todo_task_in_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.project_id := COALESCE(NEW.project_id, NEW.owner_id);
    NEW.created_by := COALESCE(NEW.created_by, NEW.owner_id);
    RETURN NEW;
END $$;
CREATE TRIGGER tasks_in_inbox BEFORE INSERT ON tasks FOR EACH ROW
    WHEN (NEW.project_id IS NULL OR NEW.created_by IS NULL)
    EXECUTE FUNCTION todo_task_in_inbox();

-- One index per sort order, now led by the project (a list is of one
-- project, or of each of the caller's).
DROP INDEX tasks_by_owner_created;
DROP INDEX tasks_by_owner_due;
DROP INDEX tasks_by_owner_priority;
CREATE INDEX tasks_by_project_created ON tasks (project_id, archived, created_at, id);
CREATE INDEX tasks_by_project_due
    ON tasks (project_id, archived, (COALESCE(due_at, 9223372036854775807)), id);
CREATE INDEX tasks_by_project_priority ON tasks (project_id, archived, priority, id);
-- (the owner's tasks: the quota's recount and the account's deletion)
CREATE INDEX tasks_by_owner ON tasks (owner_id);

-- A change carries the task's project and creator too.
ALTER TABLE changes ADD COLUMN project_id TEXT COLLATE "C";
ALTER TABLE changes ADD COLUMN created_by TEXT COLLATE "C";
UPDATE changes SET project_id = owner_id, created_by = owner_id WHERE kind <> 'task.deleted';
