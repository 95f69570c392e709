#!/usr/bin/env bash
# Throughput to a local Garage S3 server versus the local directory store on
# the same ~1 GiB SQL-like dump (the acceptance figure of the S3 issue).
#
#   scripts/bench-s3.sh            uses the input of scripts/bench.sh (generated if missing)
#   BENCH_SIZE_MB=256 scripts/bench-s3.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${BENCH_SIZE_MB:-1024}"
DIR="${BENCH_DIR:-/var/tmp/drtool-bench}"
RUNS="${BENCH_RUNS:-2}"
INPUT="$DIR/data-${SIZE}mb-s42/dump.v1.sql"
if [ ! -f "$INPUT" ]; then
    mkdir -p "$(dirname "$INPUT")"
    python3 scripts/sample_dump.py $((SIZE * 13000)) > "$INPUT"
fi
cargo build --release --locked -q
scripts/garage.sh install
DRTOOL="$PWD/target/release/drtool"
WORK=$(mktemp -d /var/tmp/drtool-bench-s3.XXXXXX)
trap 'scripts/garage.sh stop "$WORK/garage" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
scripts/garage.sh start "$WORK/garage" $$ > /dev/null
set -a; . "$WORK/garage/env"; set +a
export DRTOOL_PASSWORD=bench
BYTES=$(stat -c %s "$INPUT")
cat "$INPUT" > /dev/null   # both runs read from the page cache

run() { # repo -> milliseconds
    "$DRTOOL" --repo "$1" init > /dev/null
    local t0 t1
    t0=$(date +%s%N)
    "$DRTOOL" --repo "$1" backup --stdin --name dump < "$INPUT" > /dev/null
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}

echo "input: $INPUT ($BYTES bytes)"
printf "%-8s %-4s %8s %9s\n" store run seconds "MB/s"
for i in $(seq 1 "$RUNS"); do
    for store in local s3; do
        if [ "$store" = local ]; then repo="$WORK/local-$i"; else repo="s3://$DRTOOL_TEST_S3_BUCKET/bench-$i"; fi
        ms=$(run "$repo")
        awk -v s="$store" -v i="$i" -v ms="$ms" -v b="$BYTES" 'BEGIN { printf "%-8s %-4s %8.2f %9.1f\n", s, i, ms/1000, b/1000/ms }'
        echo "$store $ms" >> "$WORK/times"
        rm -rf "$WORK/local-$i"
    done
done
awk -v b="$BYTES" '{t[$1]+=$2; n[$1]++} END {
    l = b/1000/(t["local"]/n["local"]); s = b/1000/(t["s3"]/n["s3"]);
    printf "mean: local %.1f MB/s, garage %.1f MB/s, garage/local %.2f\n", l, s, s/l }' "$WORK/times"
