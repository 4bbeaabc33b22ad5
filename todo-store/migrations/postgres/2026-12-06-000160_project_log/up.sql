-- The change log recorded once per project (issue #16's load figure): a
-- write to a shared project was recorded in every member's stream, a row
-- and a stream's number per member, which made a write to a project of
-- three cost 1.76 times an Inbox's. Now each change is one row of
-- `change_log`, seen by the project's members (from the change that made
-- them members: `project_members.joined_seq`) or, for the few changes a
-- user must see without being a member (their removal, a project's
-- deletion), by its `recipient_id` alone. A user's stream is the view
-- `change_feed`, ordered by `seq`, the log's one numbering.
--
-- The old per-user log is dropped (last), not converted: its numbers mean
-- nothing in the new one. Clients holding its cursors are told to start
-- over (410, as after retention); webhooks and the relay go on from the
-- new log's start (OPERATIONS.md: let them catch up before upgrading).
DELETE FROM webhook_deliveries;
UPDATE webhooks SET delivered_through = 0;
-- PostgreSQL's writers commit in any order: a row is written with no
-- number (`pos` only names it) and numbered once committed, by the
-- sequencer (todo-store/src/changes.rs) under this table's one row, in
-- the order it finds them; readers see numbered rows only.
CREATE TABLE change_log_head (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
-- The new numbers start past every number the old log handed out: webhook
-- deliveries and relayed messages are named by owner (or webhook) and
-- number, and a receiver that drops what it has seen must not drop a new
-- change under an old name. Every number: each stream's last, read before
-- that column goes, and not only those of the changes left (retention
-- leaves none of a user idle for a month, whose stream's number may be
-- the largest: review of session 23, major 2).
INSERT INTO change_log_head (id, last_seq)
    SELECT 1, GREATEST(COALESCE((SELECT MAX(seq) FROM changes), 0),
                       COALESCE((SELECT MAX(last_seq) FROM change_streams), 0));
-- change_streams keeps, per user, their task count (the quota), how far
-- their own changes are pruned, and the relay's and webhooks' bookkeeping;
-- numbers are no longer taken from it.
ALTER TABLE change_streams DROP COLUMN last_seq;
UPDATE change_streams SET pruned_through = 0, relayed_through = 0;
-- One row a user (the relay and webhooks go through them), made with each
-- account from now on.
INSERT INTO change_streams (owner_id)
    SELECT id FROM users WHERE id NOT IN (SELECT owner_id FROM change_streams);
-- Where each member's view of a project starts: the number of the change
-- that made them a member (0: all of it, for an owner, and for everyone
-- who is a member now); `joined_pos`, that change's row. No default: a
-- member inserted without one (NULL) sees nothing of the project, rather
-- than all of it (review of session 22, m1); owners are inserted with 0.
ALTER TABLE project_members ADD COLUMN joined_pos BIGINT;
ALTER TABLE project_members ADD COLUMN joined_seq BIGINT;
UPDATE project_members SET joined_seq = 0;
-- A project's changes up to this number are gone (retention, its cap):
-- a table of its own, not a column of `projects`, whose rows every writer
-- of a shared project holds shared (a trim that wrote there deadlocked two
-- writers: review of session 22).
CREATE TABLE change_pruned (
    project_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    pruned_through BIGINT NOT NULL
);

CREATE TABLE change_log (
    pos          BIGSERIAL PRIMARY KEY,
    seq          BIGINT UNIQUE,
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
CREATE INDEX change_log_by_project ON change_log (project_id, seq)
    WHERE project_id IS NOT NULL;
CREATE INDEX change_log_by_recipient ON change_log (recipient_id, seq)
    WHERE recipient_id IS NOT NULL;
CREATE INDEX change_log_unnumbered ON change_log (pos) WHERE seq IS NULL;
-- Members whose addition the sequencer has not numbered yet.
CREATE INDEX project_members_unnumbered ON project_members (joined_pos)
    WHERE joined_seq IS NULL;

-- A member sees the project from their start (`joined_seq`) or, while
-- the numbering has not set it (it does so after committing the number,
-- and passes over a member whose row a writer holds), from their
-- addition's number, read from its row: reading the start alone, a new
-- member saw nothing while their cursor moved past their addition, and
-- missed it for good (review of session 23, blocker 1). NULL while the
-- addition waits for its number: any number it gets is above the head.
CREATE VIEW change_feed AS
    SELECT m.user_id AS reader, m.role AS reader_role, c.seq AS seq,
           c.project_id, c.kind, c.subject_id, c.recorded_at,
           c.title, c.description, c.done, c.completed_at, c.due_at, c.priority, c.labels,
           c.archived, c.created_at, c.updated_at, c.version, c.created_by, c.parent_id,
           c.recurrence, c.time_zone, c.series_id, c.series_start, c.occurrence, c.reminders,
           c.color, c.inbox, c.role, c.member_id, c.username
    FROM project_members m
    JOIN change_log c ON c.project_id = m.project_id
    WHERE c.seq >= COALESCE(m.joined_seq,
                            (SELECT j.seq FROM change_log j WHERE j.pos = m.joined_pos))
    UNION ALL
    SELECT c.recipient_id AS reader, NULL AS reader_role, c.seq AS seq,
           c.project_id, c.kind, c.subject_id, c.recorded_at,
           c.title, c.description, c.done, c.completed_at, c.due_at, c.priority, c.labels,
           c.archived, c.created_at, c.updated_at, c.version, c.created_by, c.parent_id,
           c.recurrence, c.time_zone, c.series_id, c.series_start, c.occurrence, c.reminders,
           c.color, c.inbox, c.role, c.member_id, c.username
    FROM change_log c
    WHERE c.recipient_id IS NOT NULL AND c.seq IS NOT NULL;

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

DROP TABLE changes;
