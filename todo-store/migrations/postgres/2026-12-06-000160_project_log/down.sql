-- Back to one stream per user, empty: the project log's numbers mean
-- nothing there (as going up, the log is not converted).
--
-- Every stream goes on past the log's head (review of session 23, minor 4):
-- webhook deliveries and relayed messages are named by number, and numbers
-- from 1 again would reuse names receivers have seen. Every cursor and mark
-- of the old version is at or below the head, so each is told the history
-- is gone (410, start over) rather than skipping the log's changes.
CREATE TEMPORARY TABLE project_log_down_head AS
    SELECT last_seq + 1 AS through FROM change_log_head;
DROP VIEW change_feed;
DROP TRIGGER change_log_notify ON change_log;
DROP TABLE change_log_head;
DROP TABLE change_log;
DROP INDEX project_members_unnumbered;
DELETE FROM webhook_deliveries;
ALTER TABLE change_streams ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
UPDATE webhooks SET delivered_through = (SELECT through FROM project_log_down_head);
UPDATE change_streams SET last_seq = (SELECT through FROM project_log_down_head),
    pruned_through = (SELECT through FROM project_log_down_head),
    relayed_through = (SELECT through FROM project_log_down_head);
DROP TABLE project_log_down_head;
DROP TABLE change_pruned;
ALTER TABLE project_members DROP COLUMN joined_pos;
ALTER TABLE project_members DROP COLUMN joined_seq;
CREATE TABLE changes (
    owner_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    task_id      TEXT COLLATE "C" NOT NULL,
    recorded_at  BIGINT NOT NULL,
    title        TEXT,
    description  TEXT,
    done         SMALLINT,
    completed_at BIGINT,
    due_at       BIGINT,
    priority     SMALLINT,
    labels       TEXT,
    archived     SMALLINT,
    created_at   BIGINT,
    updated_at   BIGINT,
    version      BIGINT,
    project_id   TEXT,
    created_by   TEXT,
    parent_id    TEXT,
    recurrence   TEXT,
    time_zone    TEXT,
    series_id    TEXT,
    series_start BIGINT,
    occurrence   BIGINT,
    reminders    TEXT,
    color        TEXT,
    inbox        SMALLINT,
    role         TEXT,
    member_id    TEXT,
    username     TEXT,
    PRIMARY KEY (owner_id, seq)
);
CREATE OR REPLACE FUNCTION todo_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('todo_changes', NEW.owner_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER changes_notify AFTER INSERT ON changes
    FOR EACH ROW EXECUTE FUNCTION todo_notify_change();
