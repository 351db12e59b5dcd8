#!/bin/bash
# Start or stop a private PostgreSQL cluster for demos and tests.
#
#   scripts/postgres.sh start DIR PORT
#   scripts/postgres.sh stop DIR
#   scripts/postgres.sh createdb DIR PORT NAME
#   scripts/postgres.sh status DIR
#
# The cluster keeps everything in DIR: data in DIR/data (initdb'd on the
# first start, kept by later ones), the unix socket in DIR/run, the server
# log in DIR/log/postgres.log and the postmaster's PID in DIR/postgres.pid.
# It listens on 127.0.0.1:PORT only and runs as the `postgres` user when
# started by root (as the calling user otherwise). It never touches a
# system-wide cluster: no file under /etc or /var/lib/postgresql is used.
#
# Authentication: TCP from 127.0.0.1 needs a password (scram-sha-256, the
# successor of md5 in PostgreSQL 15); the superuser is `postgres` with the
# password `postgres`, so clients use
#   postgres://postgres:postgres@127.0.0.1:PORT/NAME
# The unix socket in DIR/run (mode 0700, owned by the cluster's user)
# trusts its local users; this script uses it for createdb.
#
# `stop` stops exactly the postmaster whose PID is in DIR/postgres.pid,
# after checking it serves DIR/data: pg_ctl stop -m fast, bounded, then
# SIGQUIT and SIGKILL to that PID if it is still there.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=postgres
PG_PASSWORD=postgres
START_TIMEOUT=${POSTGRES_START_TIMEOUT:-60}
STOP_TIMEOUT=${POSTGRES_STOP_TIMEOUT:-30}

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start DIR PORT | stop DIR | createdb DIR PORT NAME | status DIR" >&2
    exit 2
}

check_port() {
    [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || die "bad port: $1"
}

# Runs a command as the cluster's user: postgres when we are root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups \
            env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 \
            LC_ALL=C.UTF-8 USER="$PG_USER" LOGNAME="$PG_USER" "$@"
    else
        env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD \
            LANG=C.UTF-8 LC_ALL=C.UTF-8 "$@"
    fi
}

# True when nothing listens on 127.0.0.1:$1: binding it succeeds with
# SO_REUSEADDR, as the postmaster binds, so connections of a previous run
# still in TIME_WAIT do not count.
port_free() {
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

read_pid() {
    local f=$1/postgres.pid
    if [ -f "$f" ]; then
        tr -dc '0-9' <"$f"
    fi
}

# True when PID $1 is alive and is the postmaster of the data in $2/data
# (a postmaster's working directory is its data directory).
is_our_postmaster() {
    local pid=$1 dir=$2
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "postgres" ] || return 1
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$dir/data" ] || return 1
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}

abs_dir() {
    [ -d "$1" ] || die "no such folder: $1"
    (cd "$1" && pwd -P)
}

cmd_start() {
    [ $# -eq 2 ] || usage
    local dir=$1 port=$2 pid
    check_port "$port"
    [ -x "$PG_BIN/pg_ctl" ] || die "$PG_BIN/pg_ctl missing: run scripts/install-deps.sh"
    if [ "$(id -u)" -eq 0 ]; then
        id "$PG_USER" >/dev/null 2>&1 || die "no user $PG_USER: run scripts/install-deps.sh"
    fi

    mkdir -p "$dir"
    dir=$(abs_dir "$dir")
    pid=$(read_pid "$dir")
    if is_our_postmaster "$pid" "$dir"; then
        die "a cluster for $dir is already running (pid $pid)"
    fi
    rm -f "$dir/postgres.pid"
    port_free "$port" || die "127.0.0.1:$port is in use"

    mkdir -p "$dir/run" "$dir/log"
    chmod 700 "$dir/run"
    if [ "$(id -u)" -eq 0 ]; then
        chown "$PG_USER:" "$dir" "$dir/run" "$dir/log"
        as_owner test -w "$dir" -a -x "$dir" ||
            die "$dir is not reachable by user $PG_USER (is a parent folder private?)"
    fi

    if [ ! -s "$dir/data/PG_VERSION" ]; then
        local pwfile=$dir/run/initdb.pw
        (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pwfile")
        [ "$(id -u)" -eq 0 ] && chown "$PG_USER:" "$pwfile"
        if ! as_owner "$PG_BIN/initdb" -D "$dir/data" -U "$PG_USER" --pwfile="$pwfile" \
            -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
            >"$dir/log/initdb.log" 2>&1; then
            rm -f "$pwfile"
            tail -n 20 "$dir/log/initdb.log" >&2 || true
            die "initdb into $dir/data failed"
        fi
        rm -f "$pwfile"
        # Settings that may change between starts live in their own file,
        # rewritten below each time.
        printf "\ninclude_if_exists = 'cqrs.conf'\n" >>"$dir/data/postgresql.conf"
        # Only loopback, and only with a password; the socket is trusted.
        cat >"$dir/data/pg_hba.conf" <<'EOF'
# Private cluster; generated by scripts/postgres.sh.
local all all                 trust
host  all all 127.0.0.1/32    scram-sha-256
EOF
    fi
    cat >"$dir/data/cqrs.conf" <<EOF
# Private cluster; rewritten by scripts/postgres.sh at every start.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
unix_socket_permissions = 0700
max_connections = 200
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] '
EOF
    [ "$(id -u)" -eq 0 ] && chown "$PG_USER:" "$dir/data/cqrs.conf"

    # pg_ctl -w returns once the server accepts connections (or gives up
    # after -t seconds); the postmaster PID is then the first line of its
    # own postmaster.pid.
    if ! as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log/postgres.log" -w \
        -t "$START_TIMEOUT" start >"$dir/log/pg_ctl.log" 2>&1; then
        echo "postgres.sh: cluster in $dir did not start within ${START_TIMEOUT}s; last log lines:" >&2
        tail -n 20 "$dir/log/pg_ctl.log" "$dir/log/postgres.log" >&2 || true
        pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null | tr -dc '0-9')
        if is_our_postmaster "$pid" "$dir"; then
            stop_pid "$pid" "$dir"
        fi
        exit 1
    fi
    pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null | tr -dc '0-9')
    is_our_postmaster "$pid" "$dir" || die "no postmaster for $dir after start"
    echo "$pid" >"$dir/postgres.pid"

    # pg_ctl checked the socket; make sure TCP answers too, bounded.
    local deadline=$((SECONDS + START_TIMEOUT))
    until as_owner "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; do
        if [ "$SECONDS" -ge "$deadline" ] || ! is_our_postmaster "$pid" "$dir"; then
            echo "postgres.sh: cluster in $dir does not answer on 127.0.0.1:$port" >&2
            tail -n 20 "$dir/log/postgres.log" >&2 || true
            stop_pid "$pid" "$dir"
            exit 1
        fi
        sleep 0.2
    done
    echo "postgres.sh: cluster $dir (pid $pid) listening on 127.0.0.1:$port" >&2
}

# Waits until PID $1 has gone, at most $2 seconds; true if it has.
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = "Z" ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# pg_ctl stop -m fast (bounded), then SIGQUIT (immediate shutdown) and
# SIGKILL to exactly that PID.
stop_pid() {
    local pid=$1 dir=$2
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t "$STOP_TIMEOUT" stop \
        >>"$dir/log/pg_ctl.log" 2>&1 || true
    if ! wait_gone "$pid" 1; then
        echo "postgres.sh: pid $pid did not stop in ${STOP_TIMEOUT}s; quitting it" >&2
        kill -QUIT "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 10; then
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" 10 || true
        fi
    fi
    rm -f "$dir/postgres.pid"
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    local dir pid
    dir=$(abs_dir "$1")
    pid=$(read_pid "$dir")
    if [ -z "$pid" ]; then
        echo "postgres.sh: no cluster running for $dir" >&2
        return 0
    fi
    if ! is_our_postmaster "$pid" "$dir"; then
        echo "postgres.sh: pid $pid is not the postmaster of $dir (already stopped)" >&2
        rm -f "$dir/postgres.pid"
        return 0
    fi
    stop_pid "$pid" "$dir"
}

cmd_createdb() {
    [ $# -eq 3 ] || usage
    local dir port=$2 name=$3 exists
    dir=$(abs_dir "$1")
    check_port "$port"
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]] || die "bad database name: $name"
    exists=$(as_owner "$PG_BIN/psql" -h "$dir/run" -p "$port" -U "$PG_USER" -d postgres \
        -XAtq -c "SELECT 1 FROM pg_database WHERE datname = '$name'") ||
        die "cluster in $dir does not answer on port $port"
    if [ "$exists" = 1 ]; then
        echo "postgres.sh: database $name already exists" >&2
        return 0
    fi
    as_owner "$PG_BIN/createdb" -h "$dir/run" -p "$port" -U "$PG_USER" "$name" ||
        die "createdb $name failed"
    echo "postgres.sh: created database $name" >&2
}

cmd_status() {
    [ $# -eq 1 ] || usage
    local dir pid
    dir=$(abs_dir "$1")
    pid=$(read_pid "$dir")
    if is_our_postmaster "$pid" "$dir"; then
        echo "running (pid $pid)"
    else
        echo "stopped"
        return 1
    fi
}

[ $# -ge 1 ] || usage
action=$1
shift
case "$action" in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
createdb) cmd_createdb "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
