-- Changes of projects and their members (issue #16) go into the change log
-- beside task changes. A project change keeps the project in the task
-- columns that fit (`task_id`/`project_id`: its id, `title`: its name,
-- `created_by`: its owner) and these; a member change keeps the member.
-- `role` is the stream owner's role for a project change, the member's for
-- a member change. Older rows, all of tasks, have NULL here.
SET LOCAL lock_timeout = '5s';
ALTER TABLE changes ADD COLUMN color TEXT;
ALTER TABLE changes ADD COLUMN inbox SMALLINT;
ALTER TABLE changes ADD COLUMN role TEXT;
ALTER TABLE changes ADD COLUMN member_id TEXT COLLATE "C";
ALTER TABLE changes ADD COLUMN username TEXT;
