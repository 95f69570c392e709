#!/usr/bin/env bash
# Start and stop a private MariaDB or PostgreSQL server for benchmarks and manual tests.
#
#   scripts/dbserver.sh start mariadb|postgres DIR   # start a server in DIR, write DIR/env
#   scripts/dbserver.sh stop DIR                     # stop it (DIR and its data are kept)
#   scripts/dbserver.sh status DIR                   # exit 0 when running
#
# The server keeps everything in DIR (data/, tmp/, socket, logs), listens on a free port
# on 127.0.0.1 only, and ignores the system configuration (/etc/mysql, the Debian
# PostgreSQL clusters). `start` writes DIR/env, a file to source (mode 600):
#
#   DB_KIND      mariadb | postgres
#   DB_PORT      TCP port on 127.0.0.1
#   DB_USER      account with all privileges: drtool (MariaDB), postgres (PostgreSQL)
#   DB_PASSWORD  its random password
#   DB_URL_BASE  e.g. mysql://drtool@127.0.0.1:PORT/ or postgres://postgres@127.0.0.1:PORT/
#   DB_SOCKET    MariaDB: the socket file; PostgreSQL: the socket directory
#   DB_BIN       directory of the server's tools (PostgreSQL: newest /usr/lib/postgresql/*/bin)
#
# MariaDB: binary log on (mysql-bin, server id 1, so mariadb-dump --master-data works),
# utf8mb4, a 512 MiB buffer pool and relaxed flushing. The account drtool@127.0.0.1 and
# drtool@localhost is created through root's Unix socket. PostgreSQL: runs as the
# `postgres` OS account (DIR is chowned to it), scram-sha-256, fsync off. Both settings
# favour speed over durability: fine for a benchmark, not for data you care about.
#
# `start` on a running server only prints its env; on a stopped one it restarts it on
# the same data (and the same port if still free). Needs root (mariadbd --user=root,
# runuser for PostgreSQL); installs the Debian packages if the binaries are missing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

START_TIMEOUT=${START_TIMEOUT:-120}   # seconds to wait for a server to accept connections
STOP_TIMEOUT=${STOP_TIMEOUT:-180}     # seconds to wait for a clean shutdown

log() { printf '[dbserver %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '3,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_free() { # port (SO_REUSEADDR as the servers use it: a port in TIME_WAIT is reusable)
    python3 -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

random_password() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

pg_bin() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/postgres ]] || continue
        best=$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n1)
    done
    printf '%s\n' "$best"
}

write_env() { # dir kind port user password url socket bin
    local f=$1/env
    (
        umask 077
        {
            echo "# written by scripts/dbserver.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
            printf 'DB_KIND=%q\nDB_PORT=%q\nDB_USER=%q\nDB_PASSWORD=%q\n' "$2" "$3" "$4" "$5"
            printf 'DB_URL_BASE=%q\nDB_SOCKET=%q\nDB_BIN=%q\n' "$6" "$7" "$8"
        } >"$f.tmp"
    )
    mv "$f.tmp" "$f"
}

# ---------------------------------------------------------------- MariaDB

maria_pid() { # dir -> pid of a running mariadbd, or nothing
    local pid
    [[ -f $1/mariadbd.pid ]] || return 1
    pid=$(cat "$1/mariadbd.pid")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

maria_root() { # dir SQL: run SQL as root through the socket
    mariadb --no-defaults --default-character-set=utf8mb4 --socket="$1/mysqld.sock" -uroot --batch -e "$2"
}

start_mariadb() { # dir
    local dir=$1 port password pid i
    if [[ ! -x /usr/sbin/mariadbd ]] || ! command -v mariadb-install-db >/dev/null; then
        apt_install mariadb-server mariadb-client
    fi
    mkdir -p "$dir/tmp"
    if [[ ! -d $dir/data/mysql ]]; then
        rm -rf "$dir/data"
        log "initialising MariaDB data directory $dir/data"
        mariadb-install-db --no-defaults --datadir="$dir/data" --user=root \
            --auth-root-authentication-method=socket --tmpdir="$dir/tmp" \
            --skip-test-db --skip-name-resolve >"$dir/install.log" 2>&1 \
            || { tail -n 30 "$dir/install.log" >&2; die "mariadb-install-db failed (log: $dir/install.log)"; }
    fi
    password=$(random_password)
    port=""
    if [[ -f $dir/env ]]; then
        # shellcheck disable=SC1091
        password=$(. "$dir/env" && echo "$DB_PASSWORD")
        # shellcheck disable=SC1091
        port=$(. "$dir/env" && echo "$DB_PORT")
        port_free "$port" || port=""
    fi
    for attempt in 1 2 3; do
        [[ -n $port ]] || port=$(free_port)
        log "starting mariadbd on 127.0.0.1:$port (attempt $attempt)"
        : >"$dir/error.log"
        setsid /usr/sbin/mariadbd --no-defaults --user=root --datadir="$dir/data" \
            --port="$port" --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" \
            --pid-file="$dir/mariadbd.pid" --tmpdir="$dir/tmp" --log-error="$dir/error.log" \
            --skip-name-resolve --log-bin=mysql-bin --server-id=1 \
            --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
            --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
            --innodb-flush-log-at-trx-commit=2 \
            </dev/null >"$dir/mariadbd.out" 2>&1 &
        pid=$!
        for ((i = 0; i < START_TIMEOUT * 2; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot --connect-timeout=2 ping \
                >/dev/null 2>&1 && break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping >/dev/null 2>&1 \
                || { kill "$pid"; die "mariadbd did not answer within ${START_TIMEOUT}s (log: $dir/error.log)"; }
            break
        fi
        wait "$pid" 2>/dev/null || true
        if grep -qi 'address already in use' "$dir/error.log" "$dir/mariadbd.out" 2>/dev/null; then
            log "port $port was taken meanwhile; trying another"
            port=""
            continue
        fi
        tail -n 30 "$dir/error.log" >&2
        die "mariadbd exited during startup (log: $dir/error.log)"
    done
    kill -0 "$pid" 2>/dev/null || die "could not start mariadbd (log: $dir/error.log)"
    local sql="" host
    for host in 127.0.0.1 localhost; do
        sql+="CREATE USER IF NOT EXISTS 'drtool'@'$host' IDENTIFIED BY '$password';"
        sql+="ALTER USER 'drtool'@'$host' IDENTIFIED BY '$password';"
        sql+="GRANT ALL PRIVILEGES ON *.* TO 'drtool'@'$host' WITH GRANT OPTION;"
    done
    maria_root "$dir" "$sql" || die "could not create the drtool account"
    MYSQL_PWD=$password mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -udrtool \
        --batch -e 'SELECT 1' >/dev/null || die "cannot log in as drtool over TCP on port $port"
    write_env "$dir" mariadb "$port" drtool "$password" "mysql://drtool@127.0.0.1:$port/" \
        "$dir/mysqld.sock" "$(dirname "$(command -v mariadb)")"
    log "mariadbd $(maria_root "$dir" 'SELECT VERSION()' | tail -n1) ready on 127.0.0.1:$port (pid $pid, $dir)"
}

stop_mariadb() { # dir
    local dir=$1 pid i
    pid=$(maria_pid "$dir") || { log "mariadbd in $dir is not running"; return 0; }
    log "stopping mariadbd (pid $pid)"
    kill -TERM "$pid"
    for ((i = 0; i < STOP_TIMEOUT * 2; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "stopped"; return 0; }
        sleep 0.5
    done
    die "mariadbd (pid $pid) did not stop within ${STOP_TIMEOUT}s"
}

# ---------------------------------------------------------------- PostgreSQL

as_pg() { (cd "$PG_DIR" && runuser -u postgres -- "$@"); }

pg_running() { # dir
    [[ -f $1/data/postmaster.pid ]] && PG_DIR=$1 as_pg "$PGBIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

start_postgres() { # dir
    local dir=$1 port password locale attempt
    PGBIN=$(pg_bin)
    if [[ -z $PGBIN ]]; then
        apt_install postgresql postgresql-client
        PGBIN=$(pg_bin)
        [[ -n $PGBIN ]] || die "no PostgreSQL server under /usr/lib/postgresql/*/bin"
    fi
    id postgres >/dev/null 2>&1 || die "the postgres OS account is missing (Debian package postgresql creates it)"
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    runuser -u postgres -- test -w "$dir" \
        || die "the postgres account cannot write $dir: every parent directory must be searchable (o+x)"
    PG_DIR=$dir
    password=$(random_password)
    port=""
    if [[ -f $dir/env ]]; then
        # shellcheck disable=SC1091
        password=$(. "$dir/env" && echo "$DB_PASSWORD")
        # shellcheck disable=SC1091
        port=$(. "$dir/env" && echo "$DB_PORT")
        port_free "$port" || port=""
    fi
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        rm -rf "$dir/data"
        locale=C
        locale -a 2>/dev/null | grep -qix 'c.utf-\{0,1\}8' && locale=C.UTF-8
        log "initialising PostgreSQL cluster $dir/data ($("$PGBIN/postgres" --version), locale $locale)"
        (umask 077 && printf '%s\n' "$password" >"$dir/pwfile")
        chown postgres:postgres "$dir/pwfile"
        as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/pwfile" \
            --no-sync -E UTF8 --locale="$locale" >"$dir/initdb.log" 2>&1 \
            || { rm -f "$dir/pwfile"; tail -n 30 "$dir/initdb.log" >&2; die "initdb failed (log: $dir/initdb.log)"; }
        rm -f "$dir/pwfile"
    fi
    for attempt in 1 2 3; do
        [[ -n $port ]] || port=$(free_port)
        log "starting postgres on 127.0.0.1:$port (attempt $attempt)"
        if as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$START_TIMEOUT" \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_wal_size=4GB -c fsync=off -c synchronous_commit=off" \
            start >"$dir/pg_ctl.out" 2>&1; then
            break
        fi
        if grep -qi 'address already in use' "$dir/postgres.log" 2>/dev/null; then
            log "port $port was taken meanwhile; trying another"
            port=""
            continue
        fi
        tail -n 30 "$dir/postgres.log" "$dir/pg_ctl.out" >&2 || true
        die "postgres did not start (log: $dir/postgres.log)"
    done
    pg_running "$dir" || die "could not start postgres (log: $dir/postgres.log)"
    PGPASSWORD=$password "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null \
        || die "cannot log in as postgres over TCP on port $port"
    write_env "$dir" postgres "$port" postgres "$password" "postgres://postgres@127.0.0.1:$port/" "$dir" "$PGBIN"
    log "$("$PGBIN/postgres" --version) ready on 127.0.0.1:$port ($dir)"
}

stop_postgres() { # dir
    local dir=$1
    PGBIN=$(pg_bin)
    PG_DIR=$dir
    pg_running "$dir" || { log "postgres in $dir is not running"; return 0; }
    log "stopping postgres"
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null \
        || die "pg_ctl stop failed (log: $dir/postgres.log)"
    log "stopped"
}

# ---------------------------------------------------------------- main

kind_of() { # dir -> mariadb | postgres, from env or the data directory
    if [[ -f $1/env ]]; then
        # shellcheck disable=SC1091
        (. "$1/env" && echo "$DB_KIND")
    elif [[ -f $1/data/PG_VERSION ]]; then echo postgres
    elif [[ -d $1/data/mysql ]]; then echo mariadb
    else return 1; fi
}

running() { # kind dir
    case $1 in
        mariadb) maria_pid "$2" >/dev/null ;;
        postgres) PGBIN=$(pg_bin); pg_running "$2" ;;
    esac
}

[[ $(id -u) -eq 0 ]] || die "run as root (the servers run as root / the postgres account)"
cmd=${1:-}
case $cmd in
    start)
        [[ $# -eq 3 ]] || usage
        kind=$2
        [[ $kind == mariadb || $kind == postgres ]] || die "unknown server kind '$kind' (mariadb or postgres)"
        mkdir -p "$3"
        dir=$(cd "$3" && pwd)
        if existing=$(kind_of "$dir"); then
            [[ $existing == "$kind" ]] || die "$dir already holds a $existing server"
            if running "$kind" "$dir"; then
                log "$kind in $dir is already running"
                cat "$dir/env"
                exit 0
            fi
        fi
        "start_$kind" "$dir"
        ;;
    stop | status)
        [[ $# -eq 2 ]] || usage
        [[ -d $2 ]] || die "no such directory: $2"
        dir=$(cd "$2" && pwd)
        kind=$(kind_of "$dir") || die "no server in $dir"
        if [[ $cmd == stop ]]; then
            "stop_$kind" "$dir"
        elif running "$kind" "$dir"; then
            log "$kind in $dir is running"
        else
            log "$kind in $dir is not running"
            exit 1
        fi
        ;;
    *) usage ;;
esac
