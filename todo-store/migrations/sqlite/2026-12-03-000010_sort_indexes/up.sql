-- One index per sort order, each giving the order itself (issue #12). The
-- `due` sort orders by COALESCE(due_at, the largest BIGINT), so that undated
-- tasks come last: an index on the plain column cannot give that order, and
-- every list sorted by due date was sorted after reading. This index is on
-- the expression, spelled exactly as the list query spells it
-- (todo-store/src/tasks.rs, DUE_KEY); SQLite uses it only on an exact match.
DROP INDEX tasks_by_owner_due;
CREATE INDEX tasks_by_owner_due
    ON tasks (owner_id, archived, COALESCE(due_at, 9223372036854775807), id);
