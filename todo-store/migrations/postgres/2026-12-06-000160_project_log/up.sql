-- The change log recorded once per project (issue #16's load figure): a
-- write to a shared project was recorded in every member's stream, a row
-- and a stream's number per member, which made a write to a project of
-- three cost 1.76 times an Inbox's. Now each change is one row of
-- `change_log`, seen by the project's members (from the change that made
-- them members: `project_members.joined_*`) or, for the few changes a user
-- must see without being a member (their removal, a project's deletion),
-- by its `recipient_id`. A user's stream is the view `change_feed`.
--
-- The old per-user log is dropped, not converted: its numbers mean
-- nothing in the new order. Clients holding its cursors are told to start
-- over (410, as after retention); webhooks and the relay go on from the
-- log's start, which is empty (OPERATIONS.md: let them catch up first).
DROP TABLE changes;
DELETE FROM webhook_deliveries;

-- `xid`: the writing transaction. Numbers (`pos`) are taken by concurrent
-- transactions that commit in any order, so readers order by (xid, pos)
-- and read only changes of transactions older than any still running
-- (the view below): what they see is always a prefix of that order.
CREATE TABLE change_log (
    pos          BIGSERIAL PRIMARY KEY,
    xid          BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    project_id   TEXT COLLATE "C" REFERENCES projects (id) ON DELETE CASCADE,
    recipient_id TEXT COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT   NOT NULL,
    -- the task's id, or the project's for a change of a project or member
    subject_id   TEXT COLLATE "C"   NOT NULL,
    recorded_at  BIGINT NOT NULL,
    -- the task as the change left it (tasks' columns, search_text aside),
    -- all NULL for a deletion; a project's in the columns of the same
    -- meaning (name in title, owner in created_by)
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
    -- a member change: the member, their role and username
    role         TEXT,
    member_id    TEXT,
    username     TEXT,
    -- one audience a row: a project's members, or one user
    CHECK ((project_id IS NULL) <> (recipient_id IS NULL))
);
CREATE INDEX change_log_by_project ON change_log (project_id, xid, pos)
    WHERE project_id IS NOT NULL;
CREATE INDEX change_log_by_recipient ON change_log (recipient_id, xid, pos)
    WHERE recipient_id IS NOT NULL;

ALTER TABLE project_members ADD COLUMN joined_xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE project_members ADD COLUMN joined_pos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN pruned_xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN pruned_pos BIGINT NOT NULL DEFAULT 0;

ALTER TABLE change_streams DROP COLUMN last_seq;
ALTER TABLE change_streams DROP COLUMN pruned_through;
ALTER TABLE change_streams DROP COLUMN relayed_through;
ALTER TABLE change_streams ADD COLUMN pruned_xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE change_streams ADD COLUMN pruned_pos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE change_streams ADD COLUMN relayed_xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE change_streams ADD COLUMN relayed_pos BIGINT NOT NULL DEFAULT 0;
-- One row a user (the relay and webhooks go through them), made with each
-- account from now on.
INSERT INTO change_streams (owner_id)
    SELECT id FROM users WHERE id NOT IN (SELECT owner_id FROM change_streams);

ALTER TABLE webhooks DROP COLUMN delivered_through;
ALTER TABLE webhooks ADD COLUMN delivered_xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN delivered_pos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries RENAME COLUMN seq TO pos;
ALTER TABLE webhook_deliveries ADD COLUMN xid BIGINT NOT NULL DEFAULT 0;

-- A user's stream, as on SQLite, but only what transactions older than
-- any still running wrote (`pg_snapshot_xmin` of the reading statement's
-- snapshot, taken once: an uncorrelated subquery).
CREATE VIEW change_feed AS
    SELECT m.user_id AS reader, m.role AS reader_role, c.*
    FROM project_members m
    JOIN change_log c ON c.project_id = m.project_id
    WHERE c.project_id IS NOT NULL
      AND (c.xid, c.pos) >= (m.joined_xid, m.joined_pos)
      AND c.xid < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint)
    UNION ALL
    SELECT c.recipient_id AS reader, NULL AS reader_role, c.*
    FROM change_log c
    WHERE c.recipient_id IS NOT NULL
      AND c.xid < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint);

-- Each change notifies `todo_changes` when it commits: `p:` and the
-- project's id, or `u:` and its recipient's (todo-store/src/listen.rs).
CREATE OR REPLACE FUNCTION todo_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.project_id IS NOT NULL THEN
        PERFORM pg_notify('todo_changes', 'p:' || NEW.project_id);
    ELSE
        PERFORM pg_notify('todo_changes', 'u:' || NEW.recipient_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER change_log_notify AFTER INSERT ON change_log
    FOR EACH ROW EXECUTE FUNCTION todo_notify_change();
