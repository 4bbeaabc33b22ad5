DROP INDEX users_by_email;
DROP TABLE email_verifications;
ALTER TABLE users DROP COLUMN email_verified;
