-- Back to one stream per user, empty: the project log's numbers mean
-- nothing there (as going up, the log is not converted).
DROP VIEW change_feed;
DROP TRIGGER change_log_notify ON change_log;
DROP TABLE change_log_head;
DROP TABLE change_log;
DROP INDEX project_members_unnumbered;
DELETE FROM webhook_deliveries;
UPDATE webhooks SET delivered_through = 0;
ALTER TABLE change_streams ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
UPDATE change_streams SET pruned_through = 0, relayed_through = 0;
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
