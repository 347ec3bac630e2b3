#!/usr/bin/env bash
# A PostgreSQL cluster of its own in a folder: create it, start, stop or restart it. Used by ensure-postgres.sh
# and by the tests that stop and restart Postgres (tests/postgres.py), which must never touch a shared server.
#
#   postgres-cluster.sh init DIR                      initdb DIR (trust auth, user postgres), unless it exists
#   postgres-cluster.sh start DIR HOST PORT [OPT...]  start it on HOST:PORT; OPTs go to postgres (-c name=value)
#   postgres-cluster.sh stop DIR [MODE]               smart | fast (default) | immediate (as a crash)
#   postgres-cluster.sh restart DIR [MODE]            stop with MODE, start with the same options
#   postgres-cluster.sh status DIR                    exit code 0 when it runs
#
# Postgres refuses to run as root: as root, the binaries run as the postgres user, who is given DIR.
# PG_BINDIR overrides the server binaries (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail
bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
if [ -z "$bindir" ]; then
  echo "postgres-cluster: no PostgreSQL server binaries found; install the 'postgresql' package" >&2
  exit 1
fi
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
action=${1:?usage: postgres-cluster.sh init|start|stop|restart|status DIR ...}
data=${2:?the cluster folder}
case "$action" in
  init)
    [ -s "$data/PG_VERSION" ] && exit 0
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres "$data"
    run "$bindir/initdb" -D "$data" -A trust -U postgres --no-sync --no-instructions >/dev/null
    ;;
  start)
    host=${3:?host} port=${4:?port}
    shift 4
    run "$bindir/pg_ctl" -D "$data" -o "-h $host -p $port $*" -l "$data/server.log" -w -t 60 start >/dev/null
    ;;
  status)
    run "$bindir/pg_ctl" -D "$data" status >/dev/null
    ;;
  stop | restart)
    run "$bindir/pg_ctl" -D "$data" -m "${3:-fast}" -l "$data/server.log" -w -t 60 "$action" >/dev/null
    ;;
  *)
    echo "postgres-cluster: unknown action $action" >&2
    exit 2
    ;;
esac
