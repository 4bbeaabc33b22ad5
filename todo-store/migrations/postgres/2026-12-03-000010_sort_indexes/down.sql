DROP INDEX tasks_by_owner_due;
CREATE INDEX tasks_by_owner_due ON tasks (owner_id, archived, due_at, id);
