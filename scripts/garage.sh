#!/usr/bin/env bash
# A private single-node Garage S3 server for tests.
#
#   scripts/garage.sh install        build garage 2.5.0 once (cached under /var/cache/drtool)
#   scripts/garage.sh start DIR [PID]
#                                    start a server with its state in DIR on free loopback
#                                    ports; create a bucket and a key and write the variables
#                                    tests need to DIR/env (also printed). With PID, the
#                                    server stops and DIR is removed when PID exits.
#   scripts/garage.sh stop DIR       stop it (DIR itself is left for the caller to remove)
#   scripts/garage.sh resume DIR     start a stopped server again with the same state and ports
#   scripts/garage.sh bin            print the path of the garage binary
set -euo pipefail
VERSION=2.5.0
CACHE="${DRTOOL_TOOL_CACHE:-/var/cache/drtool}/garage-$VERSION"

garage_bin() {
    if [ -n "${GARAGE_BIN:-}" ] && [ -x "$GARAGE_BIN" ]; then echo "$GARAGE_BIN"; return; fi
    if [ -x "$CACHE/bin/garage" ]; then echo "$CACHE/bin/garage"; return; fi
    if command -v garage >/dev/null 2>&1 && garage --version 2>/dev/null | grep -q "v$VERSION"; then
        command -v garage; return
    fi
    return 1
}

install() {
    if garage_bin >/dev/null; then return 0; fi
    # shellcheck disable=SC1091
    . "$(dirname "$0")/lib.sh"
    ensure_cargo
    echo "building garage $VERSION (once; about 8-15 minutes on 2 cores)" >&2
    mkdir -p "$CACHE"
    cargo install garage --version "$VERSION" --locked --root "$CACHE" >&2
}

# Wait until something accepts connections on 127.0.0.1:PORT (10 s at most).
wait_port() {
    python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.time() + 10
while time.time() < deadline:
    s = socket.socket(); s.settimeout(0.2)
    try:
        s.connect(("127.0.0.1", int(sys.argv[1]))); s.close(); sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
    local dir="$1" watch="${2:-}" bin
    bin=$(garage_bin) || { echo "garage $VERSION is not installed: run scripts/garage.sh install" >&2; exit 1; }
    mkdir -p "$dir/meta" "$dir/data"
    local rpc s3 admin secret
    rpc=$(free_port); s3=$(free_port); admin=$(free_port)
    secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
# drtool uploads encrypted data: compressing it again only costs CPU.
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
    local g=("$bin" -c "$dir/garage.toml")
    RUST_LOG=warn setsid "$bin" -c "$dir/garage.toml" server < /dev/null > "$dir/server.log" 2>&1 &
    echo $! > "$dir/pid"
    if [ -n "$watch" ]; then
        # Stop the server and remove its state when the process that asked for it
        # exits, even if it dies without cleaning up (a crashed test binary).
        local spid; spid=$(cat "$dir/pid")
        setsid bash -c "while kill -0 $watch 2>/dev/null; do sleep 0.5; done; kill $spid 2>/dev/null; sleep 1; kill -9 $spid 2>/dev/null; rm -rf '$dir'" < /dev/null > /dev/null 2>&1 &
    fi
    for _ in $(seq 1 100); do
        "${g[@]}" status >/dev/null 2>&1 && break
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
        sleep 0.1
    done
    local node
    node=$("${g[@]}" node id -q 2>/dev/null | cut -d@ -f1)
    "${g[@]}" layout assign -z dc1 -c 1G "$node" >/dev/null
    "${g[@]}" layout apply --version 1 >/dev/null
    "${g[@]}" bucket create drtool-test >/dev/null
    local key
    key=$("${g[@]}" key create drtool-test-key)
    "${g[@]}" bucket allow --read --write --owner drtool-test --key drtool-test-key >/dev/null
    local id secret_key
    id=$(echo "$key" | awk -F': *' '/Key ID/ {print $2; exit}')
    secret_key=$(echo "$key" | awk -F': *' '/Secret key/ {print $2; exit}')
    [ -n "$id" ] && [ -n "$secret_key" ] || { echo "could not parse garage key output:" >&2; echo "$key" >&2; exit 1; }
    wait_port "$s3"
    cat > "$dir/env" <<ENV
AWS_ENDPOINT_URL=http://127.0.0.1:$s3
AWS_REGION=garage
AWS_ACCESS_KEY_ID=$id
AWS_SECRET_ACCESS_KEY=$secret_key
DRTOOL_TEST_S3_BUCKET=drtool-test
GARAGE_S3_PORT=$s3
GARAGE_ADMIN_PORT=$admin
GARAGE_PID=$(cat "$dir/pid")
ENV
    cat "$dir/env"
}

# Start the server again from DIR's existing config and state (after stop).
resume() {
    local dir="$1" bin
    bin=$(garage_bin) || { echo "garage $VERSION is not installed" >&2; exit 1; }
    RUST_LOG=warn setsid "$bin" -c "$dir/garage.toml" server < /dev/null >> "$dir/server.log" 2>&1 &
    echo $! > "$dir/pid"
    . "$dir/env"
    wait_port "$GARAGE_S3_PORT"
    sed -i "s/^GARAGE_PID=.*/GARAGE_PID=$(cat "$dir/pid")/" "$dir/env"
}

stop() {
    local dir="$1"
    [ -f "$dir/pid" ] || return 0
    local pid; pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?usage: garage.sh start DIR [WATCH_PID]}" "${3:-}" ;;
    stop) stop "${2:?usage: garage.sh stop DIR}" ;;
    resume) resume "${2:?usage: garage.sh resume DIR}" ;;
    bin) garage_bin ;;
    *) echo "usage: $0 install | start DIR | stop DIR | bin" >&2; exit 2 ;;
esac
