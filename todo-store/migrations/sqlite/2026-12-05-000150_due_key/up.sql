-- The due sort's key as a column (issue #16): COALESCE(due_at, the largest
-- BIGINT), so undated tasks sort last. As an indexed expression, SQLite
-- does not seek a row value `(key, id) > (?, ?)` to it, and a later page
-- read a run of equal keys (the undated tasks) from its start; as a
-- column it seeks, as for the other sorts. (VIRTUAL: computed when read,
-- stored only in the index; never NULL, though SQLite is not told.)
ALTER TABLE tasks ADD COLUMN due_key BIGINT
    GENERATED ALWAYS AS (COALESCE(due_at, 9223372036854775807)) VIRTUAL;
DROP INDEX tasks_by_project_due;
CREATE INDEX tasks_by_project_due ON tasks (project_id, archived, due_key, id);
