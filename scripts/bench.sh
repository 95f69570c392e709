#!/usr/bin/env bash
# Benchmark drtool against restic on a mysqldump-like stream and a file tree.
#
#   scripts/bench.sh                      # full run: 1 GiB stream + 1 GiB tree
#   BENCH_SIZE_MB=64 scripts/bench.sh     # quick check
#
# Environment:
#   BENCH_DIR            work directory (default /var/tmp/drtool-bench); inputs are kept
#                        there under data-<size>mb-s<seed>/ and reused by later runs
#   BENCH_SIZE_MB        size of each input in MiB (default 1024)
#   BENCH_SEED           generator seed (default 42)
#   BENCH_DUMP_CLUSTERS  changed-row clusters in the second dump (default BENCH_SIZE_MB/8)
#   BENCH_RESTORE        1 (default) also times restoring the stream; 0 skips it
#   BENCH_VERIFY         1 (default) also checks, untimed, that both tools restore the
#                        stream byte for byte; 0 skips it
#   BENCH_BUILD          1 (default) runs `cargo build --release` first; 0 skips it
#   DRTOOL_BIN           drtool binary (default target/release/drtool)
#   BENCH_KEEP_REPOS     1 keeps the repositories after the run (default: removed)
#
# For each input: run 1 backs up version 1 into fresh repositories (one per tool, both
# inputs go into the same repository of each tool), then both inputs are changed by
# about 2% (see scripts/gen_data.py) and run 2 backs up version 2. Every timed run is
# preceded by `sync` and one full read of its input, so both tools read from the page
# cache. Figures: wall seconds, MB/s = input bytes / wall seconds (MB = 10^6 bytes),
# added = growth of `du -sb` of the repository, peak RSS from /usr/bin/time -f %M.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

BENCH_DIR=${BENCH_DIR:-/var/tmp/drtool-bench}
BENCH_SIZE_MB=${BENCH_SIZE_MB:-1024}
BENCH_SEED=${BENCH_SEED:-42}
BENCH_DUMP_CLUSTERS=${BENCH_DUMP_CLUSTERS:-0}
BENCH_RESTORE=${BENCH_RESTORE:-1}
BENCH_VERIFY=${BENCH_VERIFY:-1}
BENCH_BUILD=${BENCH_BUILD:-1}
BENCH_KEEP_REPOS=${BENCH_KEEP_REPOS:-0}
DRTOOL=${DRTOOL_BIN:-$ROOT/target/release/drtool}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $BENCH_SIZE_MB =~ ^[0-9]+$ && $BENCH_SIZE_MB -ge 4 ]] || die "BENCH_SIZE_MB must be an integer >= 4 (got '$BENCH_SIZE_MB')"
[[ $BENCH_SEED =~ ^[0-9]+$ ]] || die "BENCH_SEED must be an integer"

# ---------------------------------------------------------------- prerequisites

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"; fi
}

apt_install() { # package
    command -v apt-get >/dev/null || die "$1 is missing and apt-get is not available; install it by hand"
    log "installing $1 from Debian packages"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >&2; then
        log "install failed; running apt-get update and retrying"
        as_root apt-get update -q >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >&2
    fi
}

command -v restic >/dev/null || apt_install restic
[[ -x /usr/bin/time ]] || apt_install time
command -v python3 >/dev/null || die "python3 is needed to generate the inputs"
for c in restic /usr/bin/time du find xargs cmp; do command -v "$c" >/dev/null || die "$c not found"; done

if [[ -z ${DRTOOL_BIN:-} && $BENCH_BUILD == 1 ]]; then
    log "building drtool (cargo build --release)"
    (cd "$ROOT" && cargo build --release -q) || die "cargo build failed"
fi
[[ -x $DRTOOL ]] || die "drtool binary not found at $DRTOOL (build it or set DRTOOL_BIN)"

mkdir -p "$BENCH_DIR"
exec 9>"$BENCH_DIR/.lock"
flock -n 9 || die "another bench.sh is running on $BENCH_DIR"

DATA=$BENCH_DIR/data-${BENCH_SIZE_MB}mb-s${BENCH_SEED}
RUN=$BENCH_DIR/run
DUMP1=$DATA/dump.v1.sql
DUMP2=$DATA/dump.v2.sql
TREE=$DATA/tree
DREPO=$RUN/drtool-repo
RREPO=$RUN/restic-repo
export DRTOOL_PASSWORD=bench-password RESTIC_PASSWORD=bench-password
export RESTIC_CACHE_DIR=$RUN/restic-cache
unset DRTOOL_REPO RESTIC_REPOSITORY RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND 2>/dev/null || true

cleanup() {
    local rc=$?
    if [[ $BENCH_KEEP_REPOS == 1 ]]; then
        log "keeping repositories in $RUN"
    else
        rm -rf "$RUN"
    fi
    [[ $rc -eq 0 ]] || log "failed (exit $rc)"
}
trap cleanup EXIT

# ---------------------------------------------------------------- inputs

# gen_data.py prints progress on stderr and a JSON summary on stdout
gen() { python3 "$SCRIPT_DIR/gen_data.py" "$@" --dir "$DATA" --size-mb "$BENCH_SIZE_MB" --seed "$BENCH_SEED"; }

log "inputs: $DATA (${BENCH_SIZE_MB} MiB each; generated once, then reused)"
mkdir -p "$DATA"
DUMP_INFO=$(gen dump --clusters "$BENCH_DUMP_CLUSTERS")
gen tree --version 1 >/dev/null

file_bytes() { stat -c %s "$1"; }
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}'; }
repo_bytes() { du -sb "$1" | cut -f1; }

warm() { # input: read it once so the timed run reads from the page cache
    sync
    if [[ -d $1 ]]; then
        find "$1" -type f -print0 | xargs -0 -r cat >/dev/null
    else
        cat "$1" >/dev/null
    fi
}

# ---------------------------------------------------------------- repositories

rm -rf "$RUN"
mkdir -p "$RUN"
log "drtool: $("$DRTOOL" --version); $(restic version | cut -d' ' -f1-2)"
"$DRTOOL" init --repo "$DREPO" >"$RUN/init.log" 2>&1 || { cat "$RUN/init.log" >&2; die "drtool init failed"; }
restic -r "$RREPO" init >"$RUN/init.log" 2>&1 || { cat "$RUN/init.log" >&2; die "restic init failed"; }

# ---------------------------------------------------------------- measurement

RESULTS=$RUN/results.tsv
: >"$RESULTS"
LAST_OUT=$RUN/last.out

# timed STDIN_FILE CMD...: runs CMD under /usr/bin/time; STDIN_FILE "-" = no input, else the file
# is piped in with cat, as a dump program would write it. Standard output goes to $TIMED_OUT
# (default $LAST_OUT). Sets T_NS (wall time) and RSS_KIB (peak RSS of CMD).
timed() {
    local stdin=$1; shift
    local t0 t1 out=${TIMED_OUT:-$LAST_OUT}
    t0=$(date +%s%N)
    if [[ $stdin == - ]]; then
        /usr/bin/time -f '%M' -o "$RUN/time.out" "$@" >"$out" 2>"$RUN/last.err" </dev/null || {
            cat "$RUN/last.err" >&2; die "command failed: $*"; }
    else
        cat "$stdin" | /usr/bin/time -f '%M' -o "$RUN/time.out" "$@" >"$out" 2>"$RUN/last.err" || {
            cat "$RUN/last.err" >&2; die "command failed: $*"; }
    fi
    t1=$(date +%s%N)
    T_NS=$((t1 - t0))
    RSS_KIB=$(tail -n1 "$RUN/time.out")
}

# bench_backup INPUT RUN TOOL SOURCE
bench_backup() {
    local input=$1 run=$2 tool=$3 src=$4 repo bytes before after stdin=- extra=""
    if [[ -d $src ]]; then bytes=$(tree_bytes "$src"); else bytes=$(file_bytes "$src"); stdin=$src; fi
    [[ $tool == drtool ]] && repo=$DREPO || repo=$RREPO
    warm "$src"
    before=$(repo_bytes "$repo")
    log "run $run  $input  $tool: backing up $(awk -v b="$bytes" 'BEGIN {printf "%.1f MiB", b / 1048576}') ..."
    case $tool/$input in
        drtool/stream) timed "$stdin" "$DRTOOL" --json backup --repo "$repo" --stdin --name dump ;;
        drtool/tree)   timed - "$DRTOOL" --json backup --repo "$repo" "$src" ;;
        restic/stream) timed "$stdin" restic -r "$repo" --json backup --stdin --stdin-filename dump.sql ;;
        restic/tree)   timed - restic -r "$repo" --json backup "$src" ;;
    esac
    sync
    after=$(repo_bytes "$repo")
    if [[ $tool == drtool ]]; then
        extra=$(python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print("tool: read %d new %d stored %d in %d ms" % (s["bytes_read"], s["bytes_new"], s["bytes_stored"], s["duration_ms"]))' <"$LAST_OUT")
    else
        extra=$(grep '"message_type":"summary"' "$LAST_OUT" | python3 -c 'import json,sys; s=json.loads(sys.stdin.read()); print("tool: read %d new(uncompressed) %d in %d ms; snapshot %s" % (s["total_bytes_processed"], s["data_added"], s["total_duration"]*1000, s["snapshot_id"]))')
        [[ $input == stream ]] && RESTIC_STREAM_SNAP=$(grep '"message_type":"summary"' "$LAST_OUT" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["snapshot_id"])')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$input" "$run" "$tool" "$bytes" "$T_NS" "$RSS_KIB" "$((after - before))" "$extra" >>"$RESULTS"
    log "    $(awk -v n="$T_NS" -v b="$bytes" -v r="$RSS_KIB" -v a="$((after - before))" 'BEGIN {printf "%.2f s, %.1f MB/s, added %.2f MiB, peak RSS %.0f MiB", n/1e9, b/(n/1e9)/1e6, a/1048576, r/1024}')"
}

log "== run 1: original inputs"
for tool in drtool restic; do bench_backup stream 1 $tool "$DUMP1"; done
for tool in drtool restic; do bench_backup tree 1 $tool "$TREE"; done

log "== changing ~2% of both inputs"
TREE_INFO=$(gen tree --version 2)
CHANGES=$(python3 -c '
import json, sys
s, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("stream: %d of %d rows rewritten in place in %d clusters, %d rows appended; "
      "tree: %d of %d files modified, %d added" % (s["rows_changed"], s["rows_v1"], s["row_clusters"],
      s["rows_appended"], t["files_modified"], t["files_v1"], t["files_added"]))' "$DUMP_INFO" "$TREE_INFO")
log "$CHANGES"

log "== run 2: changed inputs"
for tool in drtool restic; do bench_backup stream 2 $tool "$DUMP2"; done
for tool in drtool restic; do bench_backup tree 2 $tool "$TREE"; done

# ---------------------------------------------------------------- restore (stream)

RESTORES=$RUN/restores.tsv
: >"$RESTORES"
if [[ $BENCH_RESTORE == 1 ]]; then
    bytes=$(file_bytes "$DUMP2")
    log "== restore of the run-2 stream to /dev/null"
    sync
    TIMED_OUT=/dev/null timed - "$DRTOOL" restore --repo "$DREPO" latest --name dump --stdout
    printf 'drtool\t%s\t%s\t%s\n' "$bytes" "$T_NS" "$RSS_KIB" >>"$RESTORES"
    sync
    TIMED_OUT=/dev/null timed - restic -r "$RREPO" dump "$RESTIC_STREAM_SNAP" /dump.sql
    printf 'restic\t%s\t%s\t%s\n' "$bytes" "$T_NS" "$RSS_KIB" >>"$RESTORES"
fi
if [[ $BENCH_VERIFY == 1 ]]; then
    log "verifying restored streams against the input (untimed)"
    "$DRTOOL" restore --repo "$DREPO" latest --name dump --stdout 2>/dev/null | cmp - "$DUMP2" \
        || die "drtool restore differs from $DUMP2"
    restic -r "$RREPO" dump "$RESTIC_STREAM_SNAP" /dump.sql 2>/dev/null | cmp - "$DUMP2" \
        || die "restic dump differs from $DUMP2"
    log "    both restores match"
fi

# ---------------------------------------------------------------- report

DSIZE=$(repo_bytes "$DREPO")
RSIZE=$(repo_bytes "$RREPO")
# put the tree back to version 1 for the next run (only the changed files are rewritten)
gen tree --version 1 >/dev/null

{
    echo
    echo "drtool vs restic: ${BENCH_SIZE_MB} MiB inputs, seed $BENCH_SEED, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "$("$DRTOOL" --version) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')), $(restic version | cut -d' ' -f1-2)"
    echo "changes for run 2: $CHANGES"
    echo "MB/s = input bytes / wall seconds, MB = 10^6 B; added = repository growth (du -sb); RSS = peak resident set"
    echo
    awk -F'\t' '
        { key = $1 "\t" $2; mbs = $4 / ($5 / 1e9) / 1e6
          printf "%-7s %-4s %-7s %10.1f %9.2f %9.1f %12.2f %10.0f\n", $1, $2, $3, $4 / 1048576, $5 / 1e9, mbs, $7 / 1048576, $6 / 1024
          speed[key, $3] = mbs; added[key, $3] = $7 }
        BEGIN { printf "%-7s %-4s %-7s %10s %9s %9s %12s %10s\n", "input", "run", "tool", "input MiB", "seconds", "MB/s", "added MiB", "RSS MiB"
                printf "%-7s %-4s %-7s %10s %9s %9s %12s %10s\n", "-----", "---", "----", "---------", "-------", "----", "---------", "-------" }
        END {
            print ""
            printf "%-7s %-4s %22s %26s\n", "input", "run", "MB/s drtool/restic", "added drtool/restic"
            n = split("stream\t1|stream\t2|tree\t1|tree\t2", keys, "|")
            for (i = 1; i <= n; i++) {
                k = keys[i]; split(k, p, "\t")
                s = (speed[k, "restic"] > 0) ? sprintf("%.2f", speed[k, "drtool"] / speed[k, "restic"]) : "-"
                a = (added[k, "restic"] > 0) ? sprintf("%.2f", added[k, "drtool"] / added[k, "restic"]) : "-"
                printf "%-7s %-4s %22s %26s\n", p[1], p[2], s, a
            }
        }' "$RESULTS"
    if [[ -s $RESTORES ]]; then
        echo
        echo "restore of the run-2 stream to /dev/null (drtool restore --stdout / restic dump):"
        awk -F'\t' '{ t[$1] = $3; printf "  %-7s %9.2f s %9.1f MB/s %8.0f MiB RSS\n", $1, $3 / 1e9, $2 / ($3 / 1e9) / 1e6, $4 / 1024 }
            END { if (t["drtool"] > 0) printf "  MB/s drtool/restic: %.2f\n", t["restic"] / t["drtool"] }' "$RESTORES"
    fi
    echo
    printf 'final repository size: drtool %.2f MiB, restic %.2f MiB (drtool/restic %.2f)\n' \
        "$(awk -v b="$DSIZE" 'BEGIN {print b / 1048576}')" "$(awk -v b="$RSIZE" 'BEGIN {print b / 1048576}')" \
        "$(awk -v d="$DSIZE" -v r="$RSIZE" 'BEGIN {print d / r}')"
    echo
    echo "as reported by the tools:"
    awk -F'\t' '{ printf "  %-7s run %s %-7s %s\n", $1, $2, $3, $8 }' "$RESULTS"
} | tee "$BENCH_DIR/last-report.txt"
log "report saved to $BENCH_DIR/last-report.txt; repositories $([[ $BENCH_KEEP_REPOS == 1 ]] && echo "kept in $RUN" || echo removed)"
