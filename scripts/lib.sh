# Shared by the scripts of this folder: `. "$ROOT/scripts/lib.sh"`.
#
# say MESSAGE           print "NAME: MESSAGE" on stderr (NAME is
#                       $LIB_NAME, else the script's file name)
# die MESSAGE           say MESSAGE and exit 1
# usage                 print "usage: SCRIPT $USAGE" on stderr and exit 2
# check_port PORT       die unless PORT is a port number (1..65535)
# abs_dir DIR           the absolute, physical path of the folder DIR;
#                       die when there is none
# port_free PORT [reuse]
#                       true when 127.0.0.1:PORT can be bound now (with
#                       SO_REUSEADDR given "reuse", as servers bind)
# port_in_use PORT      true when something accepts on 127.0.0.1:PORT
# reserve_port VAR [N]  reserve a loopback port (N consecutive ones) for a
#                       server this shell starts; set VAR to it (see below)
# pick_port VAR PORT    VAR=PORT when nothing listens there, else reserve
# read_pid FILE         the digits of a pid file, or nothing
# wait_gone PID SECONDS wait, at most SECONDS, until PID has exited (a
#                       zombie counts as gone); false when it has not
# escalate PID SIGNAL SECONDS [SIGNAL SECONDS]...
#                       send PID the first SIGNAL (- for none: it was
#                       asked to stop some other way) and wait_gone; while
#                       it is not gone, say so and go on with the next
#                       pair; false when even the last did not end it
# stop_children PID...  SIGTERM to each of this shell's children, then
#                       wait for each
# amqp_answers PORT     true when 127.0.0.1:PORT speaks AMQP 0-9-1
# wait_http URL SECONDS wait, at most SECONDS, until a GET of URL answers
#                       2xx; false when it has not
# run_action "ACTIONS" ACTION ARGS...
#                       the command line of a start/stop script: run its
#                       cmd_ACTION ARGS (a dash in ACTION is an underscore
#                       there) when ACTION is one of ACTIONS, else its usage
# show METHOD URL [BODY]
#                       for the demos: print the request as a curl
#                       command, then the status and the raw answer
#                       (raw, so money shows as the service writes it:
#                       50.00) and the X-Consistency-Token of a create,
#                       which it also keeps in $token; the answer's
#                       headers go to the file $SHOW_HEADERS
#
# The start/stop/status shape of a server that a script starts into a
# folder DIR of its own, keeping its PID in DIR/PIDFILE; WHAT is the
# server's name in messages (node, postmaster). The script defines
# server_is_ours PID DIR (true when PID is alive and is the server of
# DIR) and server_stop_pid PID DIR (stops it, bounded, and removes the
# PID file).
# server_check_stopped PIDFILE WHAT DIR
#                       die when the server of DIR runs; else forget a
#                       stale PID file
# server_stop PIDFILE WHAT DIR
#                       stop the server of DIR when it runs (only the PID
#                       in the file is signalled, once it proved ours)
# server_status PIDFILE DIR
#                       print "running (pid N)", or "stopped" and fail
# (server_stop and server_status are a script's `stop DIR` and `status
# DIR`: any other count of arguments after PIDFILE [WHAT] gets its usage.)
#
# reserve_port follows scripts/ports.py: a port below the kernel's
# ephemeral range, locked with flock(1) on a file in $CQRS_PORT_DIR (by
# default /tmp/cqrs-ports) through a descriptor this shell keeps open, so
# that no other reserver (the test harness, another script) takes it
# until this shell exits; and bound once to check that it is free. Call
# it in the shell that lives as long as the server, never in $(...): the
# lock is held by the calling shell.

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
LIB_PORT_DIR=${CQRS_PORT_DIR:-/tmp/cqrs-ports}
LIB_PORT_TRIES=500

say() {
    echo "${LIB_NAME:-$(basename "$0")}: $*" >&2
}

die() {
    say "$@"
    exit 1
}

usage() {
    echo "usage: $0 ${USAGE:-}" >&2
    exit 2
}

check_port() {
    [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || die "bad port: $1"
}

abs_dir() {
    [ -d "$1" ] || die "no such folder: $1"
    (cd "$1" && pwd -P)
}

port_free() {
    /usr/bin/python3 "$LIB_DIR/ports.py" free "$1" ${2:+"$2"}
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

reserve_port() { # VAR [COUNT]: COUNT consecutive ports, VAR the first
    # Locals are prefixed: printf -v below must reach the caller's VAR,
    # even when the caller named it like one of ours.
    local _rp_var=$1 _rp_count=${2:-1} _rp_range _rp_low _rp_high _rp_base _rp_port
    local _rp_try _rp_i _rp_ok _rp_fd _rp_fds
    _rp_range=$(/usr/bin/python3 "$LIB_DIR/ports.py" range) || die "no port range"
    _rp_low=${_rp_range% *}
    _rp_high=${_rp_range#* }
    mkdir -p "$LIB_PORT_DIR"
    chmod 1777 "$LIB_PORT_DIR" 2>/dev/null || true
    for ((_rp_try = 0; _rp_try < LIB_PORT_TRIES; _rp_try++)); do
        _rp_base=$((_rp_low + (RANDOM * 32768 + RANDOM) % (_rp_high - _rp_low + 2 - _rp_count)))
        _rp_ok=1
        _rp_fds=()
        for ((_rp_i = 0; _rp_i < _rp_count; _rp_i++)); do
            _rp_port=$((_rp_base + _rp_i))
            exec {_rp_fd}>>"$LIB_PORT_DIR/$_rp_port" || { _rp_ok=0; break; }
            _rp_fds+=("$_rp_fd")
            if ! flock -n "$_rp_fd" || ! port_free "$_rp_port"; then
                _rp_ok=0
                break
            fi
        done
        if [ "$_rp_ok" = 1 ]; then
            printf -v "$_rp_var" '%s' "$_rp_base"
            return 0
        fi
        for _rp_fd in "${_rp_fds[@]}"; do
            exec {_rp_fd}>&-
        done
    done
    die "no $_rp_count free port(s) in $_rp_low..$_rp_high after $LIB_PORT_TRIES tries"
}

# Sets VAR to PORT when nothing listens there, else to a reserved port.
pick_port() { # VAR PORT
    if port_in_use "$2"; then
        reserve_port "$1"
    else
        printf -v "$1" '%s' "$2"
    fi
}

read_pid() {
    if [ -f "$1" ]; then
        tr -dc '0-9' <"$1"
    fi
}

wait_gone() { # PID SECONDS
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = "Z" ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

escalate() { # PID SIGNAL SECONDS [SIGNAL SECONDS]...
    local pid=$1 first=1
    shift
    while [ $# -ge 2 ]; do
        [ -n "$first" ] || say "pid $pid has not stopped; sending SIG$1"
        first=""
        [ "$1" = - ] || kill "-$1" "$pid" 2>/dev/null || true
        wait_gone "$pid" "$2" && return 0
        shift 2
    done
    return 1
}

stop_children() { # PID...
    local pid
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        wait "$pid" 2>/dev/null || true
    done
}

# After the protocol header the broker must answer with a method frame on
# channel 0 (connection.start).
amqp_answers() { # PORT
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    s.settimeout(2)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    head = b""
    while len(head) < 7:
        chunk = s.recv(7 - len(head))
        if not chunk:
            break
        head += chunk
    s.close()
    sys.exit(0 if len(head) == 7 and head[0] == 1 and head[1:3] == b"\x00\x00" else 1)
except OSError:
    sys.exit(1)
EOF
}

wait_http() { # URL SECONDS
    local deadline=$((SECONDS + $2))
    until curl -sf "$1" >/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

run_action() { # "ACTIONS" ACTION ARGS...
    local actions=" $1 " action=${2:-}
    [ $# -ge 2 ] || usage
    shift 2
    case "$actions" in
    *" $action "*) "cmd_${action//-/_}" "$@" ;;
    *) usage ;;
    esac
}

show() { # METHOD URL [BODY]
    local args=(-s -X "$1" "$2" -w '\n=> HTTP %{http_code}\n' -D "$SHOW_HEADERS")
    echo
    if [ -n "${3:-}" ]; then
        echo "\$ curl -X $1 '$2' -H 'Content-Type: application/json' -d '$3'"
        args+=(-H 'Content-Type: application/json' -d "$3")
    else
        echo "\$ curl '$2'"
    fi
    curl "${args[@]}"
    token=$(tr -d '\r' <"$SHOW_HEADERS" | sed -n 's/^[Xx]-[Cc]onsistency-[Tt]oken: //p')
    if [ -n "$token" ]; then
        echo "   X-Consistency-Token: $token"
    fi
}

server_check_stopped() { # PIDFILE WHAT DIR
    local pid
    pid=$(read_pid "$3/$1")
    if server_is_ours "$pid" "$3"; then
        die "a $2 for $3 is already running (pid $pid)"
    fi
    rm -f "$3/$1"
}

server_stop() { # PIDFILE WHAT DIR
    [ $# -eq 3 ] || usage
    local file=$1 what=$2 dir pid
    dir=$(abs_dir "$3")
    pid=$(read_pid "$dir/$file")
    if [ -z "$pid" ]; then
        say "no $what running for $dir"
        return 0
    fi
    if ! server_is_ours "$pid" "$dir"; then
        say "pid $pid is not the $what of $dir (already stopped)"
        rm -f "$dir/$file"
        return 0
    fi
    server_stop_pid "$pid" "$dir"
}

server_status() { # PIDFILE DIR
    [ $# -eq 2 ] || usage
    local dir pid
    dir=$(abs_dir "$2")
    pid=$(read_pid "$dir/$1")
    if server_is_ours "$pid" "$dir"; then
        echo "running (pid $pid)"
    else
        echo "stopped"
        return 1
    fi
}
