#!/bin/bash
# A throwaway PostgreSQL 15 cluster for the tests.
#
#   tests/services/postgres.sh start [DIR] [PORT]   (default /tmp/rustfilter-pg 55432)
#   tests/services/postgres.sh stop  [DIR] [PORT]
#
# start: initdb on first use (DIR/data), then run the server listening on 127.0.0.1:PORT and
# on the UNIX socket DIR/.s.PGSQL.PORT. Returns at once when that cluster is already up.
#   superuser postgres: trust over the UNIX socket (password postgrespw over TCP)
#   role filter / password filterpw (CREATEDB), SCRAM-SHA-256 over TCP; database filterdb
# fsync and full_page_writes are off (test data only); synchronous_commit stays on so that
# committed data survives the immediate stop of fault tests.
# stop: immediate shutdown (the data directory is kept; remove DIR to start afresh).
#
# As root the server runs as the user postgres (initdb refuses root); as any other user it
# runs as that user. Concurrent starts of one DIR are serialized with a lock file (DIR.lock).
# Keep DIR short: a UNIX socket path must stay under 108 bytes.
set -euo pipefail

say() { echo "postgres.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

cmd=${1:-}
DIR=${2:-/tmp/rustfilter-pg}
PORT=${3:-55432}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

case "$cmd" in start|stop) ;; *) die "usage: $0 start|stop [DIR] [PORT]";; esac
case "$DIR" in /*) ;; *) die "DIR must be an absolute path: $DIR";; esac
case "$PORT" in ''|*[!0-9]*) die "PORT must be a number: $PORT";; esac
sock="$DIR/.s.PGSQL.$PORT"
[ ${#sock} -lt 108 ] || die "DIR is too long for a UNIX socket path ($sock): use a short DIR"

for b in initdb pg_ctl postgres; do
    [ -x "$PGBIN/$b" ] || die "the PostgreSQL 15 server binaries are missing ($PGBIN/$b): run tests/services/install-deps.sh (as root)"
done
command -v psql >/dev/null 2>&1 || die "psql is missing: run tests/services/install-deps.sh (as root)"

if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "there is no user postgres (it comes with postgresql-common): run tests/services/install-deps.sh"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

data="$DIR/data"
log="$DIR/postgres.log"

running() { [ -f "$data/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }

exec 9>"$DIR.lock" || die "cannot create the lock file $DIR.lock"
flock -w 120 9 || die "timed out waiting for $DIR.lock (another start or stop is running)"

if [ "$cmd" = stop ]; then
    if running; then
        as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null \
            || die "pg_ctl stop failed (see $log)"
    fi
    exit 0
fi

running && exit 0

psql_su() { psql -h "$DIR" -p "$PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$DIR"
    rm -rf "$data"
    echo postgrespw > "$DIR/pw"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$DIR" "$DIR/pw"; fi
    chmod 0755 "$DIR"
    as_pg "$PGBIN/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$DIR/pw" -E UTF8 --locale=C.UTF-8 --no-sync --no-instructions \
        >"$DIR/initdb.log" 2>&1 \
        || { rm -rf "$data"; die "initdb failed: $(tail -5 "$DIR/initdb.log")"; }
fi

as_pg "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null 9>&- \
    || die "the server did not start (port $PORT taken?): $(tail -5 "$log" 2>/dev/null)"

# Idempotent, so a cluster whose first start was interrupted gets them too.
psql_su <<'SQL' || die "creating the role filter / database filterdb failed"
SELECT 'CREATE ROLE filter LOGIN CREATEDB PASSWORD ''filterpw'''
    WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'filter') \gexec
SELECT 'CREATE DATABASE filterdb OWNER filter'
    WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'filterdb') \gexec
SQL
exit 0
