DROP TABLE task_labels;
DROP TABLE tasks;
DROP TABLE refresh_tokens;
DROP TABLE users;
