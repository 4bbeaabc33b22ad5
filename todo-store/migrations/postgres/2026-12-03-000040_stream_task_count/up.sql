-- Each owner's stream counts their tasks (#15: the quota's COUNT of the
-- owner's tasks was a fifth of a task creation's cost). A creation takes
-- its number and counts itself in one conditional upsert of the stream's
-- row, which it holds anyway; a deletion counts itself out
-- (todo-store/src/changes.rs, take_seq_within).
-- (Gives up a lock wait after 5 s, as the migration before it.)
SET LOCAL lock_timeout = '5s';
ALTER TABLE change_streams ADD COLUMN task_count BIGINT NOT NULL DEFAULT 0;
-- The count of the tasks there are now, a stream for every owner of one.
INSERT INTO change_streams (owner_id, last_seq, task_count)
    SELECT owner_id, 0, COUNT(*) FROM tasks GROUP BY owner_id
    ON CONFLICT (owner_id) DO UPDATE SET task_count = excluded.task_count;
