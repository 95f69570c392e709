#!/usr/bin/env bash
# Install everything drtool's build and tests need, skipping what is already
# there, then build the release binary. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
# Tests and the demo use only POSIX tools beyond Rust; python3 generates sample data.
command -v python3 >/dev/null 2>&1 || apt_install python3
# The database tests start private MariaDB and PostgreSQL servers of their own
# (never the system services), so they need only the packages' binaries.
# Restore drills also build three-node Galera clusters (galera-4, rsync state transfer).
if ! apt_install mariadb-server mariadb-client postgresql postgresql-contrib galera-4 rsync; then
    # Where apt starts the packaged services (no policy-rc.d), one that cannot
    # start (no init system, port 3306 or 5432 taken) fails its package's
    # configure step although the binaries are in place.
    [ -x /usr/sbin/mariadbd ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
        echo "installing the MariaDB and PostgreSQL packages failed" >&2
        exit 1
    }
    echo "warning: MariaDB/PostgreSQL packages installed but not fully configured (a service failed to start)" >&2
fi
# Volume tests snapshot a real btrfs filesystem on a loop device.
command -v mkfs.btrfs >/dev/null 2>&1 || apt_install btrfs-progs
# Schedule tests check every systemd OnCalendar drtool writes with systemd-analyze.
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
cargo build --release --locked
# The S3 tests run against a real Garage server, built once and cached.
scripts/garage.sh install
echo "setup done: target/release/drtool, garage $(scripts/garage.sh bin)"
