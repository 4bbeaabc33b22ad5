-- The due sort's key as a column (issue #16): COALESCE(due_at, the largest
-- BIGINT), so undated tasks sort last, and one column for both databases
-- (SQLite does not seek a row value `(key, id) > (?, ?)` to an indexed
-- expression). A STORED generated column rewrites the table and its
-- indexes under an exclusive lock (about 14 s per million tasks measured):
-- it waits for that lock at most 5 s and gives up rather than queue every
-- task read behind a long transaction; the start can be retried. The old
-- index goes first, so the rewrite does not rebuild it too.
SET LOCAL lock_timeout = '5s';
DROP INDEX tasks_by_project_due;
ALTER TABLE tasks ADD COLUMN due_key BIGINT NOT NULL
    GENERATED ALWAYS AS (COALESCE(due_at, 9223372036854775807)) STORED;
CREATE INDEX tasks_by_project_due ON tasks (project_id, archived, due_key, id);
