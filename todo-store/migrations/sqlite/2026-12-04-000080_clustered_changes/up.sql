-- The change log's rows clustered by their key (issue #15, the cost of a
-- write): a rowid table with a (owner_id, seq) primary key is two b-trees,
-- the rows and the key's index, and every task write inserts into both. A
-- WITHOUT ROWID table is one, ordered by (owner_id, seq): one insert per
-- write, and a stream's changes read in one range. (PostgreSQL keeps its
-- heap and key index: nothing to gain there.)
CREATE TABLE changes_clustered (
    owner_id     TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq          BIGINT   NOT NULL,
    kind         TEXT     NOT NULL,
    task_id      TEXT   NOT NULL,
    recorded_at  BIGINT   NOT NULL,
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
) WITHOUT ROWID;
INSERT INTO changes_clustered
    SELECT owner_id, seq, kind, task_id, recorded_at, title, description, done,
        completed_at, due_at, priority, labels, archived, created_at, updated_at, version
    FROM changes;
DROP TABLE changes;
ALTER TABLE changes_clustered RENAME TO changes;
