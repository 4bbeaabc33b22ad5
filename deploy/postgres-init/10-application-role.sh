#!/usr/bin/env bash
# The role the servers connect as, made at PostgreSQL's first start (the
# official image's entry point runs /docker-entrypoint-initdb.d/*.sh with its
# temporary server up on the socket; so does our stand-in, deploy/docker/
# postgres). POSTGRES_USER is initdb's bootstrap user, a superuser, which can
# run programs in the container (COPY … FROM PROGRAM) and read its files: the
# servers get `todo` instead, which owns the database and nothing more (no
# superuser, no CREATEDB, no CREATEROLE). The superuser is refused over TCP,
# whatever the password: it logs in over the socket, inside the container
# (`podman exec … psql -U postgres`).
set -Eeuo pipefail
password=$(<"${TODO_DATABASE_PASSWORD_FILE:?names the file that holds the password of the role todo}")
[ -n "$password" ] || { echo "$TODO_DATABASE_PASSWORD_FILE is empty" >&2; exit 1; }
PGHOST='' PGHOSTADDR='' psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set password="$password" --set db="$POSTGRES_DB" <<'SQL' >/dev/null
CREATE ROLE todo LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';
-- The owner of the database (and, through pg_database_owner, of its
-- schema public) creates the tables when the servers migrate.
ALTER DATABASE :"db" OWNER TO todo;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO todo;
SQL
# pg_hba.conf's first line: the entry point appended its `host all all all`
# line before running this, and the first line that matches decides.
sed -i "1i host all ${POSTGRES_USER} all reject" "$PGDATA/pg_hba.conf"
echo "application role todo made (owner of database $POSTGRES_DB); $POSTGRES_USER is refused over TCP" >&2
