#!/usr/bin/env bash
# PITR figures for drtool on a private PostgreSQL cluster (docs/PITR.md):
#  - wal-push throughput: WAL piles up while archiving is paused, then drtool
#    archives the backlog; segments/s = backlog / time to drain it;
#  - physical base backup time and size, and the bytes a second one adds;
#  - restore-to-time wall time (restore + replay until the server accepts connections).
# Usage: scripts/bench-pitr-pg.sh [SCALE]   (pgbench scale, default 20 ~ 300 MB)
# Run as root (the cluster runs as postgres) or as a user that can run initdb.
# pgBackRest is not compared here yet (see docs/PITR.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-20}
BIN=$(ls /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1 | xargs dirname)
DRTOOL=$PWD/target/release/drtool
[ -x "$DRTOOL" ] || cargo build --release
W=$(mktemp -d /tmp/bench-pitr.XXXXXX)
chmod 711 "$W"
AS=()
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); fi
cleanup() { "${AS[@]}" "$BIN/pg_ctl" -D "$W/data" -m immediate stop >/dev/null 2>&1 || true
            "${AS[@]}" "$BIN/pg_ctl" -D "$W/restored" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
export DRTOOL_PASSWORD=bench-password
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

"$DRTOOL" --repo "$W/repo" init >/dev/null
"$DRTOOL" --repo "$W/repo" wal-config --out "$W/wal.toml" ${AS:+--owner postgres} >/dev/null
mkdir -p "$W/data" "$W/log" && chmod 700 "$W/data"
if [ ${#AS[@]} -gt 0 ]; then chown -R postgres: "$W/repo" "$W/data" "$W/log"; fi
"${AS[@]}" "$BIN/initdb" -D "$W/data" -U postgres --auth=trust >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >> "$W/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$W/data'
wal_level = replica
archive_mode = on
archive_command = '/bin/false'
max_wal_size = 4GB
EOF
"${AS[@]}" "$BIN/pg_ctl" -D "$W/data" -l "$W/log/pg.log" -w start >/dev/null
PSQL=("$BIN/psql" -X -At -h 127.0.0.1 -p "$PORT" -U postgres postgres)
"$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -i -q -s "$SCALE" postgres 2>/dev/null
"${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
READY=$(ls "$W/data/pg_wal/archive_status" | grep -c '\.ready$')
echo "backlog: $READY segments waiting"
"${PSQL[@]}" -c "ALTER SYSTEM SET archive_command = '$DRTOOL wal-push --config $W/wal.toml %p'" -c "SELECT pg_reload_conf()" >/dev/null
T0=$(now)
while [ "$(ls "$W/data/pg_wal/archive_status" | grep -c '\.ready$' || true)" -gt 0 ]; do sleep 0.1; done
T1=$(now)
echo "wal-push: $READY segments in $(secs "$T0" "$T1") s = $(echo "$READY / ($T1 - $T0)" | bc -l | cut -c1-6) segments/s"

T0=$(now)
OUT=$("$DRTOOL" --repo "$W/repo" --json backup --source "postgres://postgres@127.0.0.1:$PORT/" --physical --name pg)
T1=$(now)
echo "base backup 1: $(secs "$T0" "$T1") s; $(echo "$OUT" | python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print("read %.1f MB, stored %.1f MB" % (s["bytes_read"]/1e6, s["bytes_stored"]/1e6))')"
"$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -t 2000 postgres >/dev/null 2>&1
T0=$(now)
OUT=$("$DRTOOL" --repo "$W/repo" --json backup --source "postgres://postgres@127.0.0.1:$PORT/" --physical --name pg)
T1=$(now)
echo "base backup 2 (after 2000 pgbench transactions): $(secs "$T0" "$T1") s; $(echo "$OUT" | python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print("read %.1f MB, added %.1f MB" % (s["bytes_read"]/1e6, s["bytes_stored"]/1e6))')"
"$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -t 500 postgres >/dev/null 2>&1
AT=$("${PSQL[@]}" -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
"$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -t 500 postgres >/dev/null 2>&1
"${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
while [ "$(ls "$W/data/pg_wal/archive_status" | grep -c '\.ready$' || true)" -gt 0 ]; do sleep 0.1; done
mkdir -p "$W/r" && chmod 711 "$W/r"
T0=$(now)
"$DRTOOL" --repo "$W/repo" restore latest --name pg --target "$W/restored" --at "$AT" 2>/dev/null
PORT2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${AS[@]}" "$BIN/pg_ctl" -D "$W/restored" -l "$W/log/r.log" -o "-p $PORT2 -c archive_mode=off -c unix_socket_directories=$W/restored" -w start >/dev/null
until [ "$("$BIN/psql" -X -At -h 127.0.0.1 -p "$PORT2" -U postgres postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.1; done
T1=$(now)
echo "restore to time (extract + replay until promoted): $(secs "$T0" "$T1") s"
echo "repository: $(du -sb "$W/repo" | cut -f1 | awk '{printf "%.1f MB", $1/1e6}')"
