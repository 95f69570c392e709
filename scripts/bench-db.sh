#!/usr/bin/env bash
# Benchmark drtool's database backups (--source mysql:// and postgres://) against the bare
# dump tools and against restic fed by the same dump tool, on private servers.
#
#   scripts/bench-db.sh                                   # full run: 4M rows per engine
#   BENCH_ROWS=400000 BENCH_ENGINES=mariadb scripts/bench-db.sh   # quick check
#
# Environment:
#   BENCH_DIR       work directory (default /var/tmp/drtool-bench-db); each engine gets
#                   BENCH_DIR/<engine>/ (server, dump file, repositories), removed at the end
#   BENCH_ENGINES   engines to run, in order (default "mariadb postgres")
#   BENCH_ROWS      rows in the table (default 4000000: a 571 MB SQL dump, 555 MB pg_dump)
#   BENCH_RESTORE   1 (default) also times restores into the server; 0 skips them
#   BENCH_KEEP      1 keeps BENCH_DIR/<engine>/ (servers are stopped all the same)
#   DRTOOL_BIN      drtool binary (default target/release/drtool, built if missing)
#
# The table, in a database named bench:
#   orders(id auto-increment/bigserial PK, customer text, amount numeric(12,2), status text,
#          note text = three md5 hex strings), about 140 bytes of dump per row.
# Per engine, on a fresh server (scripts/dbserver.sh) with fresh repositories:
#   load     BENCH_ROWS rows in one INSERT ... SELECT (seq_1_to_N / generate_series);
#            not timed; then one untimed full scan so every timed dump reads warm data
#   dump     the bare dump tool with the flags drtool uses, into a file (kept for the
#            baseline restore): mariadb-dump --single-transaction --quick --routines
#            --triggers --events --hex-blob --master-data=2 --gtid / pg_dump --format=custom
#            --compress=0
#   night 1  drtool backup --source URL; then DUMPTOOL | restic backup --stdin
#   night 2  "clustered" day: insert 1% new rows, set the status of the most recent 1% of
#            the old rows (ids N-N/100+1..N); both tools back up again
#   night 3  "scattered" day: set the status of 2% of rows spread uniformly (id % 50 = 7);
#            both tools back up again. Every content-defined chunker dedups this poorly:
#            nearly every chunk of the table holds a changed row
#   restore  drtool restore <night-1 snapshot> --to URL/bench --rename bench_restored, and
#            the bare client loading the baseline dump file (mariadb < file / pg_restore);
#            row counts of both restored tables are checked against the source's
# Every timed step is preceded by `sync`. Figures: wall seconds; MB/s = bytes read / wall
# seconds (MB = 10^6 bytes; for drtool bytes_read from its JSON summary, for restic the
# bytes it processed, for the dump tool the dump file size, for restores the dump size);
# stored = drtool's summary.bytes_stored; repo+ = growth of `du -sb` of the repository;
# % = of the same tool's night-1 figure; RSS = peak resident set from /usr/bin/time -f %M
# (for drtool the largest of drtool and its dump tool child; for restic, restic alone);
# load = 1-minute load average just before the step. Servers run with fsync off.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

BENCH_DIR=${BENCH_DIR:-/var/tmp/drtool-bench-db}
BENCH_ENGINES=${BENCH_ENGINES:-mariadb postgres}
BENCH_ROWS=${BENCH_ROWS:-4000000}
BENCH_RESTORE=${BENCH_RESTORE:-1}
BENCH_KEEP=${BENCH_KEEP:-0}
DRTOOL=${DRTOOL_BIN:-$ROOT/target/release/drtool}
DBSERVER=$SCRIPT_DIR/dbserver.sh
DB=bench

log() { printf '[bench-db %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $BENCH_ROWS =~ ^[0-9]+$ && $BENCH_ROWS -ge 1000 ]] || die "BENCH_ROWS must be an integer >= 1000 (got '$BENCH_ROWS')"
for e in $BENCH_ENGINES; do
    [[ $e == mariadb || $e == postgres ]] || die "unknown engine '$e' in BENCH_ENGINES (mariadb, postgres)"
done
[[ $(id -u) -eq 0 ]] || die "run as root (the private servers need it)"

# ---------------------------------------------------------------- prerequisites

command -v restic >/dev/null || apt_install restic
[[ -x /usr/bin/time ]] || apt_install time
for c in restic /usr/bin/time python3 du flock; do command -v "$c" >/dev/null || die "$c not found"; done
if [[ ! -x $DRTOOL ]]; then
    [[ -z ${DRTOOL_BIN:-} ]] || die "DRTOOL_BIN=$DRTOOL is not an executable"
    log "building drtool (cargo build --release)"
    ensure_cargo
    (cd "$ROOT" && cargo build --release -q) || die "cargo build failed"
fi

mkdir -p "$BENCH_DIR"
exec 9>"$BENCH_DIR/.lock"
flock -n 9 || die "another bench-db.sh is running on $BENCH_DIR"
avail_gb=$(df -BG --output=avail "$BENCH_DIR" | tail -n1 | tr -dc 0-9)
need_gb=$((BENCH_ROWS * 3 / 1000000 + 2))   # server data + binlog/WAL + dump file + two repositories
[[ $avail_gb -ge $need_gb ]] || die "$BENCH_DIR has ${avail_gb} GB free; about ${need_gb} GB needed"

export DRTOOL_PASSWORD=bench-password RESTIC_PASSWORD=bench-password
unset DRTOOL_REPO RESTIC_REPOSITORY RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND MYSQL_PWD PGPASSWORD 2>/dev/null || true

RESULTS=$BENCH_DIR/results.tsv
COMMANDS=$BENCH_DIR/commands.txt
: >"$RESULTS"
: >"$COMMANDS"
STARTED=()   # server directories to stop on exit

cleanup() {
    local rc=$? d
    for d in "${STARTED[@]}"; do
        "$DBSERVER" stop "$d" || log "could not stop the server in $d"
    done
    if [[ $BENCH_KEEP != 1 ]]; then
        for e in $BENCH_ENGINES; do rm -rf "${BENCH_DIR:?}/$e"; done
    fi
    [[ $rc -eq 0 ]] || log "failed (exit $rc)"
}
trap cleanup EXIT

# ---------------------------------------------------------------- helpers

repo_bytes() { du -sb "$1" | cut -f1; }
load1() { cut -d' ' -f1 /proc/loadavg; }
json_field() { # python expression on `j` (the JSON document on stdin)
    python3 -c 'import json, sys; j = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# note_cmd TEXT: remember a command line for the report (once per engine and text)
note_cmd() { grep -qxF -- "  $1" "$COMMANDS" || printf '  %s\n' "$1" >>"$COMMANDS"; }
quoted() { local s; s=$(printf '%q ' "$@"); printf '%s' "${s% }"; }

# record STEP TOOL NS INPUT_BYTES STORED REPO_GROWTH RSS_KIB LOAD NOTE ("-" = not applicable)
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ENGINE" "$@" >>"$RESULTS"; }

# timed OUT CMD...: runs CMD under /usr/bin/time with stdout to OUT and stdin from
# $TIMED_IN (default /dev/null); sets T_NS (wall nanoseconds), RSS_KIB and LOAD (1-minute
# load average before the run).
timed() {
    local out=$1 in=${TIMED_IN:-/dev/null} t0; shift
    note_cmd "$(quoted "$@")$([[ $in == /dev/null ]] || echo " < $in")"
    sync
    LOAD=$(load1)
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$WORK/time.out" "$@" <"$in" >"$out" 2>"$WORK/last.err" \
        || { tail -n 30 "$WORK/last.err" >&2; die "command failed: $*"; }
    T_NS=$(($(date +%s%N) - t0))
    RSS_KIB=$(tail -n1 "$WORK/time.out")
}

# ---------------------------------------------------------------- engine specifics
# Each engine defines ENGINE_setup (sets DUMP, the bare dump tool with drtool's flags, and
# the client password variable), ENGINE_sql DB SQL (prints result rows), ENGINE_create_table,
# ENGINE_insert_rows FROM TO, ENGINE_warm, ENGINE_version, ENGINE_create_db / ENGINE_drop_db
# NAME, and ENGINE_load_cmd FILE DB (sets LOAD_CMD and LOAD_IN: the bare restore).

mariadb_setup() {
    CLIENT=(mariadb --protocol=TCP --host=127.0.0.1 --port="$DB_PORT" --user="$DB_USER"
        --default-character-set=utf8mb4)
    DUMP=(mariadb-dump --protocol=TCP --host=127.0.0.1 --port="$DB_PORT" --user="$DB_USER"
        --single-transaction --quick --routines --triggers --events --hex-blob
        --default-character-set=utf8mb4 --master-data=2 --gtid -- "$DB")
    export MYSQL_PWD=$DB_PASSWORD
    unset PGPASSWORD
    BASE_TOOL=mariadb-dump
    LOAD_TOOL=mariadb
}
mariadb_sql() { "${CLIENT[@]}" --batch --skip-column-names --database="$1" -e "$2"; }
mariadb_create_table() {
    mariadb_sql mysql "CREATE DATABASE $DB"
    mariadb_sql "$DB" "CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(64) NOT NULL,
        amount DECIMAL(12,2) NOT NULL, status VARCHAR(16) NOT NULL, note TEXT NOT NULL) ENGINE=InnoDB"
}
mariadb_insert_rows() { # from to
    mariadb_sql "$DB" "INSERT INTO orders (customer, amount, status, note)
        SELECT CONCAT('customer-', seq % 100003), (seq * 7919) % 100000 / 100, ELT(1 + seq % 3, 'new', 'paid', 'packed'),
               CONCAT_WS(' ', MD5(seq), MD5(seq * 2), MD5(seq * 3))
        FROM seq_${1}_to_${2} ORDER BY seq"
}
mariadb_warm() { mariadb_sql "$DB" "SELECT COUNT(*), SUM(LENGTH(note)) FROM orders" >/dev/null; }
mariadb_create_db() { mariadb_sql mysql "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1"; }
mariadb_drop_db() { mariadb_sql mysql "DROP DATABASE IF EXISTS $1"; }
mariadb_version() { mariadb_sql mysql "SELECT VERSION()"; }
mariadb_load_cmd() { LOAD_CMD=("${CLIENT[@]}" --database="$2"); LOAD_IN=$1; }

postgres_setup() {
    PSQL=("$DB_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DB_PORT" -U "$DB_USER")
    DUMP=("$DB_BIN/pg_dump" --format=custom --compress=0
        "--dbname=host=127.0.0.1 port=$DB_PORT dbname=$DB user=$DB_USER")
    export PGPASSWORD=$DB_PASSWORD
    unset MYSQL_PWD
    BASE_TOOL=pg_dump
    LOAD_TOOL=pg_restore
}
# client_min_messages: no NOTICE for DROP DATABASE IF EXISTS of a missing database
postgres_sql() { PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -d "$1" -tA -c "$2"; }
postgres_create_table() {
    postgres_sql postgres "CREATE DATABASE $DB TEMPLATE template0"
    postgres_sql "$DB" "CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, customer TEXT NOT NULL,
        amount NUMERIC(12,2) NOT NULL, status TEXT NOT NULL, note TEXT NOT NULL)"
}
postgres_insert_rows() { # from to
    postgres_sql "$DB" "INSERT INTO orders (customer, amount, status, note)
        SELECT 'customer-' || (g % 100003), (g * 7919) % 100000 / 100.0, (ARRAY['new', 'paid', 'packed'])[1 + g % 3],
               concat_ws(' ', md5(g::text), md5((g * 2)::text), md5((g * 3)::text))
        FROM generate_series($1::bigint, $2::bigint) g ORDER BY g"
}
# VACUUM sets the hint bits now, so the first timed dump does not write the table back.
postgres_warm() { postgres_sql "$DB" "VACUUM ANALYZE orders" && postgres_sql "$DB" "SELECT count(*), sum(length(note)) FROM orders" >/dev/null; }
postgres_create_db() { postgres_sql postgres "DROP DATABASE IF EXISTS $1" && postgres_sql postgres "CREATE DATABASE $1 TEMPLATE template0"; }
postgres_drop_db() { postgres_sql postgres "DROP DATABASE IF EXISTS $1"; }
postgres_version() { postgres_sql postgres "SELECT 'PostgreSQL ' || current_setting('server_version')"; }
postgres_load_cmd() {
    LOAD_CMD=("$DB_BIN/pg_restore" --exit-on-error "--dbname=host=127.0.0.1 port=$DB_PORT dbname=$2 user=$DB_USER" "$1")
    LOAD_IN=/dev/null
}

eng() { local f=$1; shift; "${ENGINE}_$f" "$@"; }
count_rows() { eng sql "$1" "SELECT COUNT(*) FROM orders" | tail -n1; }

# ---------------------------------------------------------------- timed steps

# drtool_backup STEP: drtool backup --source; records and prints; sets SNAP
drtool_backup() {
    local step=$1 before after nread stored dur
    before=$(repo_bytes "$DREPO")
    log "$step: drtool backup --source ${SOURCE_URL}"
    timed "$WORK/drtool-$step.json" "$DRTOOL" --repo "$DREPO" --json backup --source "$SOURCE_URL"
    after=$(repo_bytes "$DREPO")
    read -r nread stored dur SNAP < <(json_field '"%d %d %d %s" % (j["summary"]["bytes_read"], j["summary"]["bytes_stored"], j["summary"]["duration_ms"], j["snapshot_id"])' <"$WORK/drtool-$step.json")
    grep -q '"warnings": \[\]' "$WORK/drtool-$step.json" || log "    drtool reported warnings: see $WORK/drtool-$step.json"
    record "$step" drtool "$T_NS" "$nread" "$stored" "$((after - before))" "$RSS_KIB" "$LOAD" "duration_ms=$dur snapshot=${SNAP:0:8}"
    log "    $(awk -v n="$T_NS" -v r="$nread" -v s="$stored" -v a="$((after - before))" -v m="$RSS_KIB" 'BEGIN {printf "%.2f s, %.1f MB/s, read %.1f MB, stored %.2f MB, repo +%.2f MB, RSS %.0f MiB", n/1e9, r/(n/1e9)/1e6, r/1e6, s/1e6, a/1e6, m/1024}')"
}

# restic_backup STEP: DUMP | restic backup --stdin
restic_backup() {
    local step=$1 before after t0 processed
    before=$(repo_bytes "$RREPO")
    log "$step: $BASE_TOOL | restic backup --stdin"
    local rcmd=(restic -r "$RREPO" --json backup --stdin --stdin-filename "db.$([[ $ENGINE == mariadb ]] && echo sql || echo dump)")
    note_cmd "$(quoted "${DUMP[@]}") | $(quoted "${rcmd[@]}")"
    sync
    LOAD=$(load1)
    t0=$(date +%s%N)
    "${DUMP[@]}" 2>"$WORK/dump.err" | /usr/bin/time -f '%M' -o "$WORK/time.out" "${rcmd[@]}" >"$WORK/restic-$step.json" 2>"$WORK/last.err" \
        || { tail -n 20 "$WORK/dump.err" "$WORK/last.err" >&2; die "$BASE_TOOL | restic backup failed"; }
    T_NS=$(($(date +%s%N) - t0))
    RSS_KIB=$(tail -n1 "$WORK/time.out")
    after=$(repo_bytes "$RREPO")
    processed=$(grep '"message_type":"summary"' "$WORK/restic-$step.json" | json_field 'j["total_bytes_processed"]')
    record "$step" restic "$T_NS" "$processed" - "$((after - before))" "$RSS_KIB" "$LOAD" -
    log "    $(awk -v n="$T_NS" -v r="$processed" -v a="$((after - before))" -v m="$RSS_KIB" 'BEGIN {printf "%.2f s, %.1f MB/s, read %.1f MB, repo +%.2f MB, RSS %.0f MiB", n/1e9, r/(n/1e9)/1e6, r/1e6, a/1e6, m/1024}')"
}

# ---------------------------------------------------------------- per engine

bench_engine() {
    ENGINE=$1
    WORK=$BENCH_DIR/$ENGINE
    local server=$WORK/server rows=$BENCH_ROWS pct=$((BENCH_ROWS / 100)) n1 n2 n3 size snap1 restored
    DREPO=$WORK/drtool-repo
    RREPO=$WORK/restic-repo
    export RESTIC_CACHE_DIR=$WORK/restic-cache
    printf '%s:\n' "$ENGINE" >>"$COMMANDS"

    log "=== $ENGINE: fresh server in $server"
    if [[ -d $WORK ]]; then
        "$DBSERVER" stop "$server" 2>/dev/null || true
        rm -rf "$WORK"
    fi
    mkdir -p "$WORK"
    STARTED+=("$server")
    "$DBSERVER" start "$ENGINE" "$server"
    # shellcheck disable=SC1091
    . "$server/env"
    SOURCE_URL=$DB_URL_BASE$DB
    eng setup

    log "loading $rows rows into $DB.orders"
    local t0=$SECONDS
    eng create_table
    eng insert_rows 1 "$rows"
    eng warm
    n1=$(count_rows "$DB")
    [[ $n1 -eq $rows ]] || die "loaded $n1 rows, expected $rows"
    log "    loaded in $((SECONDS - t0)) s"

    "$DRTOOL" --repo "$DREPO" init >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log" >&2; die "drtool init failed"; }
    restic -r "$RREPO" init >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log" >&2; die "restic init failed"; }

    log "dump: bare $BASE_TOOL into a file"
    timed "$WORK/baseline.dump" "${DUMP[@]}"
    size=$(stat -c %s "$WORK/baseline.dump")
    record dump "$BASE_TOOL" "$T_NS" "$size" - - "$RSS_KIB" "$LOAD" -
    log "    $(awk -v n="$T_NS" -v b="$size" 'BEGIN {printf "%.2f s, %.1f MB, %.1f MB/s", n/1e9, b/1e6, b/(n/1e9)/1e6}')"

    drtool_backup "night 1"
    snap1=$SNAP
    restic_backup "night 1"

    log "night 2 changes (clustered): insert $pct rows, update status of ids $((rows - pct + 1))..$rows"
    eng insert_rows "$((rows + 1))" "$((rows + pct))"
    eng sql "$DB" "UPDATE orders SET status = 'shipped' WHERE id > $((rows - pct)) AND id <= $rows" >/dev/null
    n2=$(count_rows "$DB")
    drtool_backup "night 2"
    restic_backup "night 2"

    log "night 3 changes (scattered): update status of rows with id % 50 = 7"
    eng sql "$DB" "UPDATE orders SET status = 'delivered' WHERE id % 50 = 7" >/dev/null
    n3=$(count_rows "$DB")
    drtool_backup "night 3"
    restic_backup "night 3"

    if [[ $BENCH_RESTORE == 1 ]]; then
        log "restore: drtool restore ${snap1:0:8} (night 1) --rename bench_restored"
        eng drop_db bench_restored
        timed "$WORK/restore.out" "$DRTOOL" --repo "$DREPO" restore "$snap1" --to "$SOURCE_URL" --rename bench_restored --yes
        restored=$(count_rows bench_restored)
        [[ $restored -eq $n1 ]] || die "drtool restore: $restored rows in bench_restored.orders, expected $n1"
        record restore drtool "$T_NS" "$size" - - "$RSS_KIB" "$LOAD" "rows=$restored ok"
        log "    $(awk -v n="$T_NS" 'BEGIN {printf "%.2f s", n/1e9}'), $restored rows: ok"
        eng drop_db bench_restored

        log "restore: bare $LOAD_TOOL of the baseline dump file into bench_baseline"
        eng create_db bench_baseline
        eng load_cmd "$WORK/baseline.dump" bench_baseline
        TIMED_IN=$LOAD_IN timed "$WORK/restore-baseline.out" "${LOAD_CMD[@]}"
        restored=$(count_rows bench_baseline)
        [[ $restored -eq $n1 ]] || die "baseline restore: $restored rows in bench_baseline.orders, expected $n1"
        record restore "$LOAD_TOOL" "$T_NS" "$size" - - "$RSS_KIB" "$LOAD" "rows=$restored ok"
        log "    $(awk -v n="$T_NS" 'BEGIN {printf "%.2f s", n/1e9}'), $restored rows: ok"
        eng drop_db bench_baseline
    fi
    printf '%s\t%s\n' "$ENGINE" "server $(eng version); rows night 1/2/3: $n1/$n2/$n3; baseline dump $size bytes" \
        >>"$BENCH_DIR/info.tsv"
    "$DBSERVER" stop "$server"
}

log "drtool: $("$DRTOOL" --version); $(restic version | cut -d' ' -f1-2); rows: $BENCH_ROWS; engines: $BENCH_ENGINES"
: >"$BENCH_DIR/info.tsv"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for e in $BENCH_ENGINES; do bench_engine "$e"; done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

{
    echo
    echo "drtool database backups: $BENCH_ROWS rows, $(nproc) CPUs, $(free -g | awk '/^Mem/ {print $2}') GB RAM, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "$("$DRTOOL" --version) ($DRTOOL, built $(date -u -r "$DRTOOL" +%Y-%m-%dT%H:%MZ); tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')), $(restic version | cut -d' ' -f1-2)"
    echo "load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END"
    echo "MB = 10^6 B; MB/s = bytes read / wall s; stored = drtool bytes_stored; repo+ = du -sb growth;"
    echo "% = of the same tool's night 1; RSS = peak resident set; load = 1-min load average before the step"
    for e in $BENCH_ENGINES; do
        echo
        echo "== $e: $(awk -F'\t' -v e="$e" '$1 == e {print $2}' "$BENCH_DIR/info.tsv")"
        awk -F'\t' -v e="$e" '
            function mb(x) { return x == "-" ? "-" : sprintf("%.2f", x / 1e6) }
            function pc(x, base) { return (x == "-" || base <= 0) ? "-" : sprintf("%.1f%%", 100 * x / base) }
            BEGIN {
                fmt = "%-8s %-13s %8s %8s %9s %10s %8s %10s %8s %8s %5s  %s\n"
                printf fmt, "step", "tool", "seconds", "MB/s", "read MB", "stored MB", "stored%", "repo+ MB", "repo+%", "RSS MiB", "load", "note"
            }
            $1 == e {
                s = $4 / 1e9
                if ($2 == "night 1") { base_st[$3] = $6; base_du[$3] = $7 }
                secs[$2, $3] = s
                printf fmt, $2, $3, sprintf("%.2f", s), sprintf("%.1f", $5 / s / 1e6), mb($5), mb($6),
                    pc($6, base_st[$3]), mb($7), pc($7, base_du[$3]), sprintf("%.0f", $8 / 1024), $9, ($10 == "-" ? "" : $10)
                if ($2 == "dump") { dumptool = $3 }
                if ($2 == "restore" && $3 != "drtool") { loadtool = $3 }
            }
            END {
                if (secs["dump", dumptool] > 0)
                    printf "drtool night 1 / bare %s: %.2fx the time\n", dumptool, secs["night 1", "drtool"] / secs["dump", dumptool]
                if (secs["night 1", "restic"] > 0)
                    printf "drtool / (%s | restic), night 1: %.2fx the time\n", dumptool, secs["night 1", "drtool"] / secs["night 1", "restic"]
                if (secs["restore", loadtool] > 0)
                    printf "drtool restore / bare %s: %.2fx the time\n", loadtool, secs["restore", "drtool"] / secs["restore", loadtool]
            }' "$RESULTS"
    done
    echo
    echo "commands (passwords in MYSQL_PWD / PGPASSWORD / DRTOOL_PASSWORD / RESTIC_PASSWORD):"
    cat "$COMMANDS"
} | tee "$BENCH_DIR/last-report.txt"
log "report saved to $BENCH_DIR/last-report.txt; raw figures in $RESULTS"
