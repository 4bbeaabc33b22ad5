-- The change log (issue #15): every write to a task is recorded, in the
-- same transaction, as a change in its owner's stream. A stream's numbers
-- are handed out from change_streams.last_seq under the row's lock, held
-- until the write commits: numbers commit in order, and a reader never sees
-- n + 1 before n (todo-store/src/changes.rs).
CREATE TABLE change_streams (
    owner_id       TEXT  NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- the number of the stream's latest change
    last_seq       BIGINT NOT NULL,
    -- changes up to this number are gone (retention)
    pruned_through BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE changes (
    owner_id     TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq          BIGINT   NOT NULL,
    kind         TEXT     NOT NULL,
    task_id      TEXT   NOT NULL,
    recorded_at  BIGINT   NOT NULL,
    -- the task as the change left it (tasks' columns, search_text aside);
    -- all NULL for a deletion
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
    PRIMARY KEY (owner_id, seq)
);
-- (No index on recorded_at: the hourly prune reads the table once, which
-- costs less than an index every write would update.)
