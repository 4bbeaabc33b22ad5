-- Projects and their members (issue #16). Every user has an Inbox, whose
-- id is the user's own (todo_core::ProjectId::inbox_of): made here for the
-- users there are, and with each new account. The owner is a member too
-- (role 'owner'), so a caller's standing in a project is one row.
CREATE TABLE projects (
    id          TEXT NOT NULL PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT     NOT NULL,
    description TEXT     NOT NULL,
    color       TEXT,
    inbox       SMALLINT NOT NULL CHECK (inbox IN (0, 1)),
    archived    SMALLINT NOT NULL CHECK (archived IN (0, 1)),
    created_at  BIGINT   NOT NULL,
    updated_at  BIGINT   NOT NULL,
    version     BIGINT   NOT NULL
);
CREATE INDEX projects_by_owner ON projects (owner_id);

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT   NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    added_at   BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
-- A caller's projects, in id order (the list's keyset).
CREATE INDEX project_members_by_user ON project_members (user_id, project_id);
-- One owner per project, whatever a bug in the code above would write.
CREATE UNIQUE INDEX project_one_owner ON project_members (project_id) WHERE role = 'owner';

INSERT INTO projects (id, owner_id, name, description, color, inbox, archived,
                      created_at, updated_at, version)
    SELECT id, id, 'Inbox', '', NULL, 1, 0, created_at, created_at, 1 FROM users;
INSERT INTO project_members (project_id, user_id, role, added_at)
    SELECT id, id, 'owner', created_at FROM users;
