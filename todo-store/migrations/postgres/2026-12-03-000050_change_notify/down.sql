DROP TRIGGER changes_notify ON changes;
DROP FUNCTION todo_notify_change();
