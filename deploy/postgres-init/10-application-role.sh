#!/usr/bin/env bash
# The role the servers connect as, made at PostgreSQL's first start (the
# official image's entry point runs /docker-entrypoint-initdb.d/*.sh with its
# temporary server up on the socket; so does our stand-in, deploy/docker/
# postgres). POSTGRES_USER is initdb's bootstrap user, a superuser, which can
# run programs in the container (COPY … TO PROGRAM) and read its files. The
# servers get `todo` instead: no superuser, CREATEDB or CREATEROLE; it owns
# the schema public (where the servers' migrations make their tables) and
# not the database, so it cannot make schemas or change the database's
# settings (a search_path that would lead the superuser into its functions).
# The superuser is refused over TCP, whatever the password: it logs in over
# the socket, inside the container.
#
# With `check`, the compose set's health check: fails unless the server
# answers, the role todo is there and no superuser, and pg_hba.conf's first
# line refuses the superuser (a first start that failed half-way).
set -Eeuo pipefail
if [ "${1:-}" = check ]; then
    # (superuser: the name as the text of an array, as pg_hba_file_rules
    # lists a line's users.)
    exec psql -qtA --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -o /dev/null --set ON_ERROR_STOP=1 \
        --set superuser="{$POSTGRES_USER}" <<'SQL'
SELECT 1 / count(*)::int
FROM pg_roles r, pg_hba_file_rules h, pg_database d
WHERE r.rolname = 'todo'
  AND NOT (r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls)
  AND NOT EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid)
  AND h.line_number = 1 AND h.type = 'host' AND h.database = '{all}' AND h.user_name = :'superuser'
  AND h.address = 'all' AND h.auth_method = 'reject'
  AND d.datname = current_database() AND d.datdba <> r.oid
  AND (SELECT nspowner FROM pg_namespace WHERE nspname = 'public') = r.oid
  AND NOT has_database_privilege(r.oid, current_database(), 'CREATE')
  AND current_setting('search_path') = 'pg_catalog'
  AND EXISTS (SELECT 1 FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0
              AND 'temp_file_limit=1GB' = ANY (s.setconfig));
SQL
fi
: "${TODO_DATABASE_PASSWORD_FILE:?names the file that holds the password of the role todo}"
[ -s "$TODO_DATABASE_PASSWORD_FILE" ] || { echo "$TODO_DATABASE_PASSWORD_FILE is empty" >&2; exit 1; }
# First, so that nothing after it can leave the superuser reachable: the
# first line of pg_hba.conf that matches decides, and the entry point
# appended its `host all all all` line before it ran this.
sed -i "1i host all ${POSTGRES_USER} all reject" "$PGDATA/pg_hba.conf"
# The password is read by psql itself (never on a command line another
# process can see), and neither the statement nor its error is logged. One
# transaction: all of it or none (and the health check fails).
PGHOST='' PGHOSTADDR='' psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --quiet --single-transaction \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" --set db="$POSTGRES_DB" \
    --set superuser="$POSTGRES_USER" -f - <<'SQL'
SET LOCAL log_statement = 'none';
SET LOCAL log_min_error_statement = 'panic';
\set password `cat "$TODO_DATABASE_PASSWORD_FILE"`
CREATE ROLE todo LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';
\unset password
ALTER SCHEMA public OWNER TO todo;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO todo;
REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC;
-- The superuser's sessions look in pg_catalog only: a function or operator
-- todo puts in public (lower(varchar), = for text…) is never what the
-- superuser's unqualified query calls (CVE-2018-1058's class). It must
-- still not work on todo's tables: a trigger, rule or CHECK of todo's runs
-- with the rights of whoever touches them (OPERATIONS.md).
ALTER ROLE :"superuser" SET search_path = pg_catalog;
-- A query of the servers' URL cannot fill the disk with temporary files
-- (a setting only a superuser may change).
ALTER ROLE todo SET temp_file_limit = '1GB';
SQL
echo "role todo made (owner of the schema public of $POSTGRES_DB); $POSTGRES_USER is refused over TCP" >&2
