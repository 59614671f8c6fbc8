#!/usr/bin/env bash
# Runs the whole test suite with the real services it needs: a private PostgreSQL server (from Debian's
# packages, started here and stopped on exit) and the moto server (started by the tests themselves).
# Usage: scripts/test.sh [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
# Tests start many Python processes (Airflow components, the CLI, DAG parsing probes): let them share
# compiled bytecode instead of recompiling numpy/pyarrow/airflow in every one.
unset PYTHONDONTWRITEBYTECODE

PG_DIR=""
cleanup() {
  if [ -n "$PG_DIR" ] && [ -d "$PG_DIR" ]; then
    $PG_AS "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
trap cleanup EXIT

if [ -z "${SHADOWING_TEST_POSTGRES_URL:-}" ]; then
  PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ -n "$PGBIN" ]; then
    PG_DIR="$(mktemp -d /tmp/shadowing-pg.XXXXXX)"
    PG_AS=""
    if [ "$(id -u)" = "0" ]; then
      chown postgres "$PG_DIR"
      PG_AS="runuser -u postgres --"
    fi
    PG_PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    $PG_AS "$PGBIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
      || { cat "$PG_DIR/initdb.log"; exit 1; }
    $PG_AS "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
      || { cat "$PG_DIR/server.log"; exit 1; }
    export SHADOWING_TEST_POSTGRES_URL="postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') for the tests on port $PG_PORT"
  else
    echo "no PostgreSQL server binaries found: PostgreSQL tests will be skipped (CI installs them)"
  fi
fi

"$VENV/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" = "5" ]; then
  echo "error: no tests were collected" >&2
  rc=1
fi
exit "$rc"
