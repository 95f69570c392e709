#!/usr/bin/env bash
# Install everything drtool's build and tests need, skipping what is already
# there, then build the release binary. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
# Tests and the demo use only POSIX tools beyond Rust; python3 generates sample data.
command -v python3 >/dev/null 2>&1 || apt_install python3
cargo build --release --locked
# The S3 tests run against a real Garage server, built once and cached.
scripts/garage.sh install
echo "setup done: target/release/drtool, garage $(scripts/garage.sh bin)"
