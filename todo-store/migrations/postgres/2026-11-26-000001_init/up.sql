-- PostgreSQL twin of migrations/sqlite: the same schema, with byte-order ("C")
-- collation on ids, usernames and labels so that text sorts as in SQLite.
-- Times are microseconds since the Unix epoch (UTC); booleans are 0/1; ids are
-- hyphenated lower-case UUIDv7 text, so text order is creation order.
-- auth-server owns users and refresh_tokens; task-server owns tasks and
-- task_labels. A task references its owner and is deleted with them.

CREATE TABLE users (
    id                    TEXT COLLATE "C"     NOT NULL PRIMARY KEY,
    username              TEXT COLLATE "C"     NOT NULL UNIQUE,
    email                 TEXT,
    role                  TEXT     NOT NULL CHECK (role IN ('user', 'admin')),
    disabled              SMALLINT NOT NULL CHECK (disabled IN (0, 1)),
    password_hash         TEXT     NOT NULL,
    tokens_revoked_before BIGINT,
    created_at            BIGINT   NOT NULL,
    updated_at            BIGINT   NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT COLLATE "C"     NOT NULL PRIMARY KEY,
    family_id  TEXT COLLATE "C"     NOT NULL,
    user_id    TEXT COLLATE "C"     NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at  BIGINT   NOT NULL,
    expires_at BIGINT   NOT NULL,
    used_at    BIGINT,
    revoked    SMALLINT NOT NULL CHECK (revoked IN (0, 1))
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

CREATE TABLE tasks (
    id           TEXT COLLATE "C"     NOT NULL PRIMARY KEY,
    owner_id     TEXT COLLATE "C"     NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title        TEXT     NOT NULL,
    description  TEXT     NOT NULL,
    -- lower-cased title and description, for `q`: folded in Rust so that
    -- both databases match Unicode text alike
    search_text  TEXT     NOT NULL,
    done         SMALLINT NOT NULL CHECK (done IN (0, 1)),
    completed_at BIGINT,
    due_at       BIGINT,
    priority     SMALLINT NOT NULL CHECK (priority BETWEEN 0 AND 3),
    -- the labels, sorted, one per line; task_labels indexes them
    labels       TEXT     NOT NULL,
    archived     SMALLINT NOT NULL CHECK (archived IN (0, 1)),
    created_at   BIGINT   NOT NULL,
    updated_at   BIGINT   NOT NULL,
    version      BIGINT   NOT NULL CHECK (version >= 1)
);
-- One index per sort order, each led by the owner and the archived flag that
-- every list query filters on.
CREATE INDEX tasks_by_owner_created ON tasks (owner_id, archived, created_at, id);
CREATE INDEX tasks_by_owner_due ON tasks (owner_id, archived, due_at, id);
CREATE INDEX tasks_by_owner_priority ON tasks (owner_id, archived, priority, id);

CREATE TABLE task_labels (
    task_id  TEXT COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    owner_id TEXT COLLATE "C" NOT NULL,
    label    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (task_id, label)
);
CREATE INDEX task_labels_by_owner_label ON task_labels (owner_id, label, task_id);
