#!/usr/bin/env bash
# Set up, then run drtool's main job on an embedded default: a policy that
# dumps a MariaDB database (a private server with a generated shop schema)
# into a local encrypted repository. Then a disaster: the database is
# dropped and restored from the backup, and its contents are compared. A file
# tree is backed up and restored too, and the repository is fully checked.
# No cloud account needed. DEMO_DIR (default ./.demo) holds everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
DRTOOL="$PWD/target/release/drtool"
DEMO="${DEMO_DIR:-$PWD/.demo}"
if [ -f "$DEMO/db/env" ]; then scripts/dbserver.sh stop "$DEMO/db" >/dev/null 2>&1 || true; fi
rm -rf "$DEMO"
mkdir -p "$DEMO/sample/uploads/2026" "$DEMO/restore" "$DEMO/policies" "$DEMO/state"
umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEMO/password"
export DRTOOL_REPO="$DEMO/repo" DRTOOL_STATE_DIR="$DEMO/state"
trap 'scripts/dbserver.sh stop "$DEMO/db" >/dev/null 2>&1 || true' EXIT

echo "== a private MariaDB server with a sample shop database"
scripts/dbserver.sh start mariadb "$DEMO/db" >/dev/null
# shellcheck disable=SC1091
. "$DEMO/db/env"
export MYSQL_PWD="$DB_PASSWORD"
sql() { mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$DB_PORT" -u "$DB_USER" --default-character-set=utf8mb4 -N -B "$@"; }
sql -e "CREATE DATABASE shop CHARACTER SET utf8mb4"
sql shop -e "
CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), photo BLOB);
CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, amount DECIMAL(10,2), note TEXT);
INSERT INTO customers (name, photo) SELECT CONCAT('customer ', seq, ' ☕'), UNHEX(MD5(seq)) FROM seq_1_to_5000;
INSERT INTO orders (customer_id, amount, note) SELECT 1 + seq % 5000, seq * 0.37, REPEAT(MD5(seq), 3) FROM seq_1_to_200000;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 1000;
CREATE TRIGGER orders_positive BEFORE INSERT ON orders FOR EACH ROW SET NEW.amount = ABS(NEW.amount);"
before=$(sql shop -e "CHECKSUM TABLE customers, orders")

echo "== the policy (the embedded default: local repository, nightly schedule, retention)"
cat > "$DEMO/policies/shop.toml" <<EOF
name = "shop"
repository = "$DEMO/repo"
password_file = "$DEMO/password"
schedule = "30 2 * * *"
[source]
kind = "mysql"
url = "${DB_URL_BASE}shop"
password_env = "MYSQL_PWD"
[retention]
keep_daily = 7
keep_weekly = 4
EOF
cat "$DEMO/policies/shop.toml"
"$DRTOOL" policy check "$DEMO/policies"

echo "== drtool init"
"$DRTOOL" init --password-file "$DEMO/password"
echo "== drtool run shop"
"$DRTOOL" --policies "$DEMO/policies" run shop
"$DRTOOL" snapshots --password-file "$DEMO/password"
echo "== the manifest records versions, binlog position and row counts"
"$DRTOOL" show --password-file "$DEMO/password" latest | grep -E '"(server_version|binlog_file|binlog_position|shop\.orders)"'

echo "== disaster: DROP DATABASE shop; then drtool restore --to"
sql -e "DROP DATABASE shop"
"$DRTOOL" restore --password-file "$DEMO/password" latest --name shop --to "${DB_URL_BASE}shop" --yes
after=$(sql shop -e "CHECKSUM TABLE customers, orders")
[ "$before" = "$after" ] || { echo "restored tables differ: $before / $after" >&2; exit 1; }
echo "restored tables match the originals:"
echo "$after"

echo "== a file tree"
for i in $(seq 1 50); do head -c $((i * 1000)) /dev/urandom > "$DEMO/sample/uploads/2026/img-$i.bin"; done
echo "hello" > "$DEMO/sample/uploads/README.txt"
ln -s README.txt "$DEMO/sample/uploads/latest"
"$DRTOOL" backup --password-file "$DEMO/password" --name uploads "$DEMO/sample/uploads"
"$DRTOOL" restore --password-file "$DEMO/password" latest --name uploads --target "$DEMO/restore"
diff -r --no-dereference "$DEMO/sample/uploads" "$DEMO/restore/uploads"

echo "== drtool schedule --next shop"
"$DRTOOL" --policies "$DEMO/policies" schedule --next shop
echo "== drtool check --read-data"
"$DRTOOL" check --password-file "$DEMO/password" --read-data
echo "demo OK: the database and the files restored identical (repository: $DEMO/repo)"
