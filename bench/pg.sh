# Sourced by the bench scripts: a private Postgres 15 server (fsync off, logical WAL) in a
# temporary folder, stopped and removed on exit. Sets $work, $url, $PGBIN and psql(); a
# script that starts a process of its own puts its PID in $pid to have it ended too.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
work=$(mktemp -d /tmp/tensorcdc-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  "$PGBIN/pg_ctl" -D "$work/pg" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" INT TERM
chown_run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
mkdir -p "$work/pg" && { [ "$(id -u)" != 0 ] || chown postgres "$work" "$work/pg"; }
chown_run "'$PGBIN/initdb' -D '$work/pg' -U postgres -A trust >/dev/null"
chown_run "'$PGBIN/pg_ctl' -D '$work/pg' -l '$work/pg.log' -o '-p $port -k /tmp -c wal_level=logical -c fsync=off -c max_wal_senders=8 -c max_replication_slots=8' -w start >/dev/null"
url="postgres://postgres@127.0.0.1:$port/postgres"
psql() { command psql -qAt "$url" "$@"; }
now() { date +%s.%N; }
# Waits (deadline SECS) until `psql -c SQL` prints WANT; says what it saw last otherwise.
wait_sql() { # SQL WANT SECS WHAT
  local deadline=$(( $(date +%s) + $3 )) got
  until got=$(psql -c "$1") && [ "$got" = "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$4: waited $3 s, last saw $got (expected $2)" >&2; exit 1; }
    sleep 0.2
  done
}
