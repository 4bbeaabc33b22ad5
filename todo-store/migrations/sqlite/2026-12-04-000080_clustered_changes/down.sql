CREATE TABLE changes_rowid (
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
);
INSERT INTO changes_rowid SELECT * FROM changes;
DROP TABLE changes;
ALTER TABLE changes_rowid RENAME TO changes;
