# Shared by the scripts of this folder: `. "$ROOT/scripts/lib.sh"`.
#
# die MESSAGE           print "NAME: MESSAGE" on stderr and exit 1
#                       (NAME is $LIB_NAME, else the script's file name)
# port_free PORT [reuse]
#                       true when 127.0.0.1:PORT can be bound now (with
#                       SO_REUSEADDR given "reuse", as servers bind)
# port_in_use PORT      true when something accepts on 127.0.0.1:PORT
# reserve_port VAR [N]  reserve a loopback port (N consecutive ones) for a
#                       server this shell starts; set VAR to it (see below)
# pick_port VAR PORT    VAR=PORT when nothing listens there, else reserve
# read_pid FILE         the digits of a pid file, or nothing
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

die() {
    echo "${LIB_NAME:-$(basename "$0")}: $*" >&2
    exit 1
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
