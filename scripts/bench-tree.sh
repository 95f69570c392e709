#!/usr/bin/env bash
# Measure tree backups of many small files: a first backup, a second one of the
# unchanged tree (files vouched for by the parent snapshot are not read), and a
# third after one file changed.
#
#   scripts/bench-tree.sh                          # 80,000 files of ~13 KiB (~1 GiB)
#   BENCH_TREE_FILES=8000 scripts/bench-tree.sh    # quick check
#
# Environment:
#   BENCH_DIR          work directory (default /var/tmp/drtool-bench-tree); the tree is
#                      kept there (tree-<files>/) and reused by later runs
#   BENCH_TREE_FILES   number of files (default 80000), 400 per directory, 8-18 KiB each,
#                      half random bytes, half repetitive text (seeded, deterministic)
#   BENCH_BUILD        1 (default) runs `cargo build --release` first; 0 skips it
#   DRTOOL_BIN         drtool binary (default target/release/drtool)
#
# The repository is created fresh in BENCH_DIR/repo each run and removed at the end.
# Before the first backup the tree is read once (tar > /dev/null), so every run
# reads from the page cache: the figures compare work done, not disk speed.
# Prints per run: wall seconds of the whole command (opening the repository, whose
# Argon2id key derivation takes a fixed ~0.5 s, included), the backup's own duration
# from the manifest, bytes read by the pipeline (file contents plus the tree's
# metadata stream) and bytes vouched for by the parent snapshot without reading.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

BENCH_DIR=${BENCH_DIR:-/var/tmp/drtool-bench-tree}
FILES=${BENCH_TREE_FILES:-80000}
BIN=${DRTOOL_BIN:-$ROOT/target/release/drtool}
TREE=$BENCH_DIR/tree-$FILES
REPO=$BENCH_DIR/repo

if [ "${BENCH_BUILD:-1}" = 1 ]; then
    ensure_cargo
    (cd "$ROOT" && cargo build --release -q)
fi
mkdir -p "$BENCH_DIR"

if [ ! -f "$TREE/.complete" ]; then
    echo "generating $FILES files under $TREE" >&2
    python3 - "$TREE" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
line = b"2024-05-01T12:00:00Z INFO request served path=/api/orders status=200 ms=12\n"
for i in range(n):
    d = os.path.join(root, f"d{i // 400:04d}")
    if i % 400 == 0:
        os.makedirs(d, exist_ok=True)
    size = rng.randint(8 << 10, 18 << 10)
    data = rng.randbytes(size) if i % 2 else (line * (size // len(line) + 1))[:size]
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(data)
open(os.path.join(root, ".complete"), "w").close()
EOF
fi

rm -rf "$REPO"
export DRTOOL_REPO=$REPO DRTOOL_PASSWORD=bench-tree
"$BIN" init >/dev/null
tar -cf - -C "$TREE" . >/dev/null

run() {
    local label=$1 t0 t1 out
    t0=$(date +%s.%N)
    out=$("$BIN" --json backup --name bench-tree "$TREE")
    t1=$(date +%s.%N)
    python3 -c '
import json, sys
label, wall = sys.argv[1], float(sys.argv[3]) - float(sys.argv[2])
s = json.loads(sys.argv[4])["summary"]
secs, read, same = s["duration_ms"] / 1000, s["bytes_read"], s["bytes_unchanged"]
print(f"{label:<26} {wall:6.2f} s wall ({secs:6.2f} s backup)  read {read:>13,} B  unchanged {same:>13,} B")
' "$label" "$t0" "$t1" "$out"
}

echo "tree: $FILES files, $(du -sb "$TREE" | cut -f1) bytes"
run "first backup"
run "second backup (unchanged)"
touch "$TREE/d0000/f000001.dat"
run "third (one file touched)"
rm -rf "$REPO"
