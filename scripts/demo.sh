#!/usr/bin/env bash
# Set up, then back up a generated sample (an SQL dump stream and a file tree)
# into a local encrypted repository, restore both, verify them byte for byte,
# and run a full check. No cloud account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
DRTOOL="$PWD/target/release/drtool"
DEMO="${DEMO_DIR:-$PWD/.demo}"
rm -rf "$DEMO"
mkdir -p "$DEMO/sample/uploads/2026" "$DEMO/restore"
umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEMO/password"
export DRTOOL_REPO="$DEMO/repo"

echo "== generating sample data"
python3 scripts/sample_dump.py 100000 > "$DEMO/sample/dump.sql"
for i in $(seq 1 50); do head -c $((i * 1000)) /dev/urandom > "$DEMO/sample/uploads/2026/img-$i.bin"; done
echo "hello" > "$DEMO/sample/uploads/README.txt"
ln -s README.txt "$DEMO/sample/uploads/latest"

echo "== drtool init"
"$DRTOOL" init --password-file "$DEMO/password"
echo "== drtool backup (a command's stdout, as a database dump would be)"
"$DRTOOL" backup --password-file "$DEMO/password" --name app-db -- cat "$DEMO/sample/dump.sql"
echo "== drtool backup (a directory)"
"$DRTOOL" backup --password-file "$DEMO/password" --name uploads "$DEMO/sample/uploads"
echo "== drtool snapshots"
"$DRTOOL" snapshots --password-file "$DEMO/password"
echo "== drtool restore"
"$DRTOOL" restore --password-file "$DEMO/password" latest --name app-db --stdout > "$DEMO/restore/dump.sql"
"$DRTOOL" restore --password-file "$DEMO/password" latest --name uploads --target "$DEMO/restore"
cmp "$DEMO/sample/dump.sql" "$DEMO/restore/dump.sql"
diff -r --no-dereference "$DEMO/sample/uploads" "$DEMO/restore/uploads"
echo "== drtool check --read-data"
"$DRTOOL" check --password-file "$DEMO/password" --read-data
echo "demo OK: restored data is identical (repository: $DEMO/repo)"
