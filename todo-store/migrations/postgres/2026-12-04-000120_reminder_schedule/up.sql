-- When reminders fire (issue #16): one row a reminder time of a task,
-- written with the task (those after the write, none for a task done or
-- archived); `fired_at` is set by the instance that fires it, in the same
-- transaction as the `reminder.due` change it records, so each fires once
-- however many instances look, and a crash loses none. A fired row stays
-- until its task goes, so that saving the task again does not fire it again.
SET LOCAL lock_timeout = '5s';
CREATE TABLE task_reminders (
    task_id  TEXT COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    fire_at  BIGINT NOT NULL,
    fired_at BIGINT,
    PRIMARY KEY (task_id, fire_at)
);
CREATE INDEX task_reminders_due ON task_reminders (fire_at) WHERE fired_at IS NULL;
