DROP TABLE task_reminders;
