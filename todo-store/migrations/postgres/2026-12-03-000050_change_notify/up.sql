-- Every change inserted into the log notifies `todo_changes` with its
-- owner's id, in the writer's transaction: PostgreSQL delivers it when the
-- change commits, to every instance listening (todo-store/src/listen.rs),
-- so each wakes its live streams at once. (SQLite has one writing process:
-- no notification is needed there.)
CREATE FUNCTION todo_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('todo_changes', NEW.owner_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER changes_notify AFTER INSERT ON changes
    FOR EACH ROW EXECUTE FUNCTION todo_notify_change();
