#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on $PGHOST:$PGPORT (default 127.0.0.1:5432).
# Order: already running -> start the Debian cluster -> create and start a private cluster under .pgdata.
set -euo pipefail
host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}
ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }

ready && exit 0
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 20); do ready && exit 0; sleep 0.5; done
fi
data=${PGDATA_DIR:-$PWD/.pgdata}
cluster="$(dirname "$0")/postgres-cluster.sh"
"$cluster" init "$data"
"$cluster" start "$data" "$host" "$port" -k /tmp
for db in test; do
  psql -h "$host" -p "$port" -U postgres -tAc "select 1 from pg_database where datname='$db'" | grep -q 1 \
    || psql -h "$host" -p "$port" -U postgres -c "create database $db" >/dev/null
done
