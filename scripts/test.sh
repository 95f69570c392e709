#!/usr/bin/env bash
# Run the whole test suite: installs what tests need (idempotently), then
# unit and integration tests against the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --locked
