#!/usr/bin/env bash
# Starts and stops the PostgreSQL and Redis servers that the tests use, on loopback only, with
# their data in a directory of their own, so nothing of the machine's own services is touched.
#
#   scripts/services.sh start DIR   initialise DIR, start both servers, write DIR/env
#   scripts/services.sh stop DIR    stop both servers (DIR is left for inspection)
#
# DIR/env holds shell assignments for the tests:
#   MANN_TEST_POSTGRES_URL=postgresql://mann@127.0.0.1:PORT/mann_test
#   MANN_TEST_REDIS_URL=redis://127.0.0.1:PORT/0
# The PostgreSQL role `mann` is a superuser with trust authentication on 127.0.0.1, so a test may
# create a database of its own. PostgreSQL refuses to run as root; as root the cluster runs as
# the `postgres` system user that Debian's package creates.
set -euo pipefail

pg_bin=/usr/lib/postgresql/15/bin

usage() { sed -n '2,12p' "$0"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# From /, since the postgres user may not enter the caller's directory (a private temp dir).
as_pg_user() {
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "services: $what did not come up within ${seconds}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

start() {
  local dir="$1"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  chmod 755 "$dir"
  local pg_port redis_port
  pg_port="$(free_port)"
  redis_port="$(free_port)"

  mkdir -p "$dir/postgres"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$dir/postgres"
    runuser -u postgres -- test -w "$dir/postgres" || {
      echo "services: the postgres user cannot reach $dir/postgres; make its parents searchable" >&2
      return 1
    }
  fi
  as_pg_user "$pg_bin/initdb" -D "$dir/postgres/data" -U mann --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$dir/postgres/initdb.log" 2>&1 ||
    { cat "$dir/postgres/initdb.log" >&2; return 1; }
  as_pg_user "$pg_bin/pg_ctl" -D "$dir/postgres/data" -l "$dir/postgres/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir/postgres -c fsync=off" start \
    >/dev/null || { cat "$dir/postgres/server.log" >&2; return 1; }
  "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U mann mann_test

  mkdir -p "$dir/redis"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" --save '' \
    --appendonly no --daemonize yes --pidfile "$dir/redis/redis.pid" \
    --logfile "$dir/redis/server.log"
  wait_for 10 "redis on port $redis_port" redis-cli -h 127.0.0.1 -p "$redis_port" ping

  {
    echo "MANN_TEST_POSTGRES_URL=postgresql://mann@127.0.0.1:$pg_port/mann_test"
    echo "MANN_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
  } >"$dir/env"
  echo "services: PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port"
}

stop() {
  local dir="$1"
  if [[ -f "$dir/postgres/data/postmaster.pid" ]]; then
    as_pg_user "$pg_bin/pg_ctl" -D "$dir/postgres/data" -m fast -w -t 30 stop >/dev/null || true
  fi
  if [[ -f "$dir/redis/redis.pid" ]]; then
    local pid
    pid="$(cat "$dir/redis/redis.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}

case "${1:-}" in
  start) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; start "$2" ;;
  stop) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; stop "$2" ;;
  -h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
