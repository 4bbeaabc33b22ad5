DROP TABLE project_feeds;
