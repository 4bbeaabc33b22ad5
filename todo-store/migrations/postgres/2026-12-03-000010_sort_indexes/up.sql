-- One index per sort order, each giving the order itself (issue #12). The
-- `due` sort orders by COALESCE(due_at, the largest BIGINT), so that undated
-- tasks come last: an index on the plain column cannot give that order, and
-- every list sorted by due date was sorted after reading. This index is on
-- the expression, spelled exactly as the list query spells it
-- (todo-store/src/tasks.rs, DUE_KEY): the planner matches expressions, not
-- their meanings.
--
-- Built beside the old index, then swapped in: CREATE INDEX blocks writes
-- only, while DROP INDEX locks the table against reads too, so the drop
-- comes last, just before the commit.
CREATE INDEX tasks_by_owner_due_key
    ON tasks (owner_id, archived, (COALESCE(due_at, 9223372036854775807)), id);
DROP INDEX tasks_by_owner_due;
ALTER INDEX tasks_by_owner_due_key RENAME TO tasks_by_owner_due;
