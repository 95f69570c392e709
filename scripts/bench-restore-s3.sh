#!/usr/bin/env bash
# Tree restore of many small files: local repository vs a private Garage S3
# server on loopback vs the same Garage behind a proxy that adds latency to
# every request (the acceptance figures of the restore-performance issue).
#
#   scripts/bench-restore-s3.sh                      # 10,000 files of 2-4 KB, 20 ms
#   BENCH_FILES=1000 scripts/bench-restore-s3.sh     # quick check
#
# Environment:
#   BENCH_DIR         where the input tree is kept and reused (default /var/tmp/drtool-bench-restore)
#   BENCH_FILES       number of files (default 10000), 100 per directory, 2-4 KB of random bytes
#   BENCH_LATENCY_MS  delay the proxy adds to each request (default 20)
#   BENCH_VARIANTS    which restores to time (default "local s3 s3-latency")
#   BENCH_RUNS        rounds over the variants (default 3); the summary gives the
#                     fastest and the median run of each (a loaded machine is noisy)
#   BENCH_RESTORE_DIR where the restores are written (default: the work directory under
#                     /var/tmp); /dev/shm takes the disk (and its noise) out of the figures
#   BENCH_BUILD       1 (default) runs `cargo build --release` first; 0 skips it
#   DRTOOL_BIN        drtool binary (default target/release/drtool)
#
# The restores write into fresh directories of a fresh work directory; nothing
# is deleted between timed runs (ext4 creates files slowly right after a mass
# deletion, which would be measured instead of drtool; on a disk mounted with
# `discard`, wait a minute between invocations). Each restored tree is
# compared byte for byte with the input (diff -r). Printed per restore: the
# wall time of the whole command (opening the repository, whose Argon2id key
# derivation takes a fixed ~0.5 s, included) and the restore's own duration.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

BENCH_DIR=${BENCH_DIR:-/var/tmp/drtool-bench-restore}
FILES=${BENCH_FILES:-10000}
LATENCY_MS=${BENCH_LATENCY_MS:-20}
VARIANTS=${BENCH_VARIANTS:-local s3 s3-latency}
RUNS=${BENCH_RUNS:-3}
BIN=${DRTOOL_BIN:-$ROOT/target/release/drtool}
TREE=$BENCH_DIR/small-$FILES

if [ "${BENCH_BUILD:-1}" = 1 ]; then
    ensure_cargo
    (cd "$ROOT" && cargo build --release -q)
fi
"$SCRIPT_DIR/garage.sh" install
mkdir -p "$BENCH_DIR"
if [ ! -f "$TREE/.complete" ]; then
    echo "generating $FILES files under $TREE" >&2
    python3 - "$TREE" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    d = os.path.join(root, f"d{i // 100:03d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(rng.randbytes(rng.randint(2000, 4000)))
open(os.path.join(root, ".complete"), "w").close()
EOF
fi

WORK=$(mktemp -d /var/tmp/drtool-bench-restore-s3.XXXXXX)
OUT=$WORK
if [ -n "${BENCH_RESTORE_DIR:-}" ]; then OUT=$(mktemp -d "$BENCH_RESTORE_DIR/drtool-bench-restore.XXXXXX"); fi
cleanup() {
    rm -rf "$OUT"
    [ -f "$WORK/proxy.pid" ] && kill "$(cat "$WORK/proxy.pid")" 2>/dev/null
    "$SCRIPT_DIR/garage.sh" stop "$WORK/garage" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$SCRIPT_DIR/garage.sh" start "$WORK/garage" $$ >/dev/null
set -a; . "$WORK/garage/env"; set +a
python3 "$SCRIPT_DIR/latency_proxy.py" "$GARAGE_S3_PORT" "$LATENCY_MS" "$WORK/proxy.port" &
echo $! > "$WORK/proxy.pid"
for _ in $(seq 1 50); do [ -s "$WORK/proxy.port" ] && break; sleep 0.1; done
DIRECT=$AWS_ENDPOINT_URL
PROXIED=http://127.0.0.1:$(cat "$WORK/proxy.port")
export DRTOOL_PASSWORD=bench
LOCAL_REPO=$WORK/repo
S3_REPO=s3://$DRTOOL_TEST_S3_BUCKET/bench-restore
tar -cf - -C "$TREE" . >/dev/null   # every backup reads from the page cache

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

for repo in "$LOCAL_REPO" "$S3_REPO"; do
    "$BIN" --repo "$repo" init >/dev/null
    t0=$(now)
    "$BIN" --repo "$repo" backup --name small "$TREE" >/dev/null
    printf "backup  %-11s %7s s\n" "$([ "$repo" = "$LOCAL_REPO" ] && echo local || echo s3)" "$(secs "$t0" "$(now)")"
done
sync

echo "restore of $FILES files ($(du -sb --exclude=.complete "$TREE" | cut -f1) bytes); latency variant: +$LATENCY_MS ms per request"
printf "%-18s %4s %9s %11s  %s\n" variant run "wall s" "restore s" verified
for run in $(seq 1 "$RUNS"); do
    for v in $VARIANTS; do
        case $v in
            local) repo=$LOCAL_REPO; endpoint=$DIRECT ;;
            s3) repo=$S3_REPO; endpoint=$DIRECT ;;
            s3-latency) repo=$S3_REPO; endpoint=$PROXIED ;;
            *) echo "unknown variant $v" >&2; exit 2 ;;
        esac
        out=$OUT/restore-$v-$run
        t0=$(now)
        json=$(AWS_ENDPOINT_URL=$endpoint "$BIN" --json --repo "$repo" restore latest --target "$out")
        wall=$(secs "$t0" "$(now)")
        ms=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["duration_ms"])' "$json")
        # The tree is restored under its base name; .complete is not part of the comparison.
        restored=$out/$(basename "$TREE")
        if diff -r --exclude=.complete "$TREE" "$restored" >/dev/null; then ok=identical; else ok=DIFFERENT; fi
        printf "%-18s %4s %9s %11.2f  %s\n" "$v" "$run" "$wall" "$(awk -v m="$ms" 'BEGIN { print m / 1000 }')" "$ok"
        echo "$v $wall" >> "$WORK/times"
        [ "$ok" = identical ] || exit 1
    done
done
echo "wall seconds per variant (fastest / median of $RUNS):"
for v in $VARIANTS; do
    sort -n -k2 <(grep "^$v " "$WORK/times") | awk -v v="$v" '{ t[NR] = $2 } END {
        printf "  %-16s %7.2f / %7.2f\n", v, t[1], t[int((NR + 1) / 2)] }'
done
