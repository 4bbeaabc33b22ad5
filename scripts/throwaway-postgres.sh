# Sourced, not run: starts a throwaway PostgreSQL on a free loopback port and
# exports TODO_TEST_POSTGRES_URL (a superuser URL the tests create databases
# with). The server and its files are removed when the calling shell exits.
# Fails (returns non-zero) if PostgreSQL cannot be found or started.

find_pg_bin() {
    local dir
    for dir in "$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

start_throwaway_postgres() {
    local bin port dir
    bin=$(find_pg_bin) || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; return 1; }
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    dir=$(mktemp -d /tmp/todo-pg.XXXXXX)
    chmod 755 "$dir"
    # initdb refuses to run as root: run the server as the postgres user.
    local as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        as=(runuser -u postgres --)
    fi
    # (From /: the postgres user may not enter the caller's directory.)
    (cd / && "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync) >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    (cd / && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start) >/dev/null \
        || { cat "$dir/server.log" >&2; return 1; }
    TODO_PG_DIR=$dir
    TODO_PG_BIN=$bin
    export TODO_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    trap stop_throwaway_postgres EXIT
    echo "throwaway PostgreSQL on 127.0.0.1:$port ($dir)"
}

stop_throwaway_postgres() {
    if [ -n "${TODO_PG_DIR:-}" ]; then
        local as=()
        [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
        (cd / && "${as[@]}" "$TODO_PG_BIN/pg_ctl" -D "$TODO_PG_DIR/data" -m immediate stop) >/dev/null 2>&1 || true
        rm -rf "$TODO_PG_DIR"
        TODO_PG_DIR=
    fi
}
