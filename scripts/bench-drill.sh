#!/usr/bin/env bash
# Time a restore drill of a ~500 MB MariaDB dump, split into its phases.
#
#   scripts/bench-drill.sh                 # 3.5M rows (~500 MB dump)
#   BENCH_ROWS=200000 scripts/bench-drill.sh
#
# Starts a private MariaDB (scripts/dbserver.sh), loads an orders table, backs it
# up through a policy into a local repository, runs `drtool drill` into a mariadb
# scratch server and prints the drill's phases (provision, restore, checks,
# teardown), RTO and the dump size. Work directory: BENCH_DIR (default
# /var/tmp/drtool-bench-drill), removed at the end unless BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${BENCH_ROWS:-3500000}
WORK=${BENCH_DIR:-/var/tmp/drtool-bench-drill}
DRTOOL=${DRTOOL_BIN:-$PWD/target/release/drtool}
[ -x "$DRTOOL" ] || cargo build --release --locked
rm -rf "$WORK"; mkdir -p "$WORK/policies"
trap 'scripts/dbserver.sh stop "$WORK/db" >/dev/null 2>&1 || true; [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
scripts/dbserver.sh start mariadb "$WORK/db" >/dev/null
# shellcheck disable=SC1091
. "$WORK/db/env"
export MYSQL_PWD="$DB_PASSWORD" DRTOOL_STATE_DIR="$WORK/state"
sql() { mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$DB_PORT" -u "$DB_USER" -N -B "$@"; }
echo "loading $ROWS rows" >&2
sql -e "CREATE DATABASE shop"
sql shop -e "CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer VARCHAR(40), amount DECIMAL(10,2), status VARCHAR(10), note VARCHAR(200), KEY (customer));
INSERT INTO orders (customer, amount, status, note) SELECT CONCAT('customer-', seq % 9973), seq * 0.37, 'shipped',
 CONCAT('order note ', MD5(seq), ' ', MD5(seq * 7), ' ', MD5(seq * 13)) FROM seq_1_to_$ROWS"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/pw"
cat > "$WORK/policies/shop.toml" <<POLICY
name = "shop"
repository = "$WORK/repo"
password_file = "$WORK/pw"
[source]
kind = "mysql"
url = "${DB_URL_BASE}shop"
password_env = "MYSQL_PWD"
[drill]
scratch = "mariadb"
rto_seconds = 3600
rpo_hours = 1
[[drill.checks]]
name = "orders"
sql = "SELECT COUNT(*) FROM orders"
expect = "$ROWS"
POLICY
"$DRTOOL" init --password-file "$WORK/pw" --repo "$WORK/repo" >/dev/null
"$DRTOOL" --policies "$WORK/policies" run shop
start=$(date +%s.%N)
"$DRTOOL" --policies "$WORK/policies" drill shop --json "$WORK/drill.json"
end=$(date +%s.%N)
python3 - "$WORK/drill.json" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = r["phases"]
print(f"dump size {r['bytes_restored']/1e6:.1f} MB; drill wall {float(sys.argv[3]) - float(sys.argv[2]):.1f} s")
print("provision {:.1f} s, restore {:.1f} s, checks {:.1f} s, teardown {:.1f} s; RTO {:.1f} s; {} checks, ok={}".format(
    p["provision_ms"]/1000, p["restore_ms"]/1000, p["checks_ms"]/1000, p["teardown_ms"]/1000, r["rto_seconds"], len(r["checks"]), r["ok"]))
PY
