#!/bin/bash
# Start or stop a private three-node RabbitMQ cluster on loopback, for the
# scale-out tests and `make demo-cluster`.
#
#   scripts/rabbitmq-cluster.sh start DIR BASEPORT [NAME]
#   scripts/rabbitmq-cluster.sh stop DIR
#   scripts/rabbitmq-cluster.sh stop-node DIR N      (N = 1, 2 or 3)
#   scripts/rabbitmq-cluster.sh start-node DIR N
#   scripts/rabbitmq-cluster.sh status DIR
#   scripts/rabbitmq-cluster.sh urls DIR
#
# Node N keeps its files in DIR/nN and is started by scripts/rabbitmq.sh
# (so everything said there holds: loopback only, no plugins, runs as the
# rabbitmq user, stopped by the PID in DIR/nN/rabbitmq.pid). Its node name
# is NAME-cN@localhost (NAME defaults to cqrs, so cqrs-c1, cqrs-c2,
# cqrs-c3; give another NAME to run two clusters at once), its AMQP port
# BASEPORT+N-1, its distribution port its own (rabbitmq.sh picks one). The
# three nodes share the Erlang cookie of the rabbitmq user (rabbitmq.sh
# creates it if missing).
#
# The first `start` of a DIR starts node 1, then nodes 2 and 3, and joins
# each to node 1 (rabbitmqctl stop_app / join_cluster / start_app). A later
# `start` of the same DIR (after `stop`) starts the three nodes together,
# as clustered nodes wait for their peers. `start` returns once all three
# accept AMQP and node 1 sees three running nodes, each wait bounded.
#
# `urls` prints the comma-separated AMQP URLs of the three nodes, the form
# the services take in --amqp-url / AMQP_URL.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
USAGE="start DIR BASEPORT [NAME] | stop DIR | stop-node DIR N | start-node DIR N |"
USAGE+=" status DIR | urls DIR"
. "$ROOT/scripts/lib.sh"
RABBITMQ_SH=$ROOT/scripts/rabbitmq.sh
RABBITMQCTL=/usr/lib/rabbitmq/bin/rabbitmqctl
RABBIT_USER=rabbitmq
RABBIT_HOME=/var/lib/rabbitmq
NODES=3
DIR=""
# Seconds each node may take to answer; generous, as a loaded machine boots
# a node slowly (rabbitmq.sh reads the same variable).
export RABBITMQ_START_TIMEOUT=${RABBITMQ_START_TIMEOUT:-180}
START_TIMEOUT=$RABBITMQ_START_TIMEOUT
CTL_TIMEOUT=${RABBITMQ_CTL_TIMEOUT:-60}

check_n() {
    [[ "$1" =~ ^[1-3]$ ]] || die "bad node number: $1 (1, 2 or 3)"
}

# The cluster's settings, written by the first start.
load() {
    local dir=$1
    [ -s "$dir/baseport" ] && [ -s "$dir/name" ] || die "$dir holds no cluster (start it first)"
    BASEPORT=$(cat "$dir/baseport")
    NAME=$(cat "$dir/name")
}

node_name() { # N
    echo "$NAME-c$1@localhost"
}

node_port() { # N
    echo $((BASEPORT + $1 - 1))
}

# rabbitmqctl against one node, as the rabbitmq user (whose cookie the
# nodes share), bounded.
ctl() { # N ARGS...
    local n=$1
    shift
    (cd / && timeout -k 5 "$CTL_TIMEOUT" setpriv --reuid="$RABBIT_USER" --regid="$RABBIT_USER" \
        --init-groups env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$RABBIT_HOME" ${CQRS_TEST_PASS:+"CQRS_TEST_PASS=$CQRS_TEST_PASS"} \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 USER="$RABBIT_USER" LOGNAME="$RABBIT_USER" \
        ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_USE_LONGNAME=false \
        RABBITMQ_CONF_ENV_FILE="$DIR/n$n/rabbitmq-env.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/n$n/enabled_plugins" \
        "$RABBITMQCTL" -q -n "$(node_name "$n")" "$@")
}

wait_amqp() { # N
    local port deadline
    port=$(node_port "$1")
    deadline=$((SECONDS + START_TIMEOUT))
    until amqp_answers "$port"; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "node $(node_name "$1") does not answer AMQP on 127.0.0.1:$port within ${START_TIMEOUT}s"
        sleep 0.2
    done
}

# Running nodes as node N sees them, one per line.
running_nodes() { # N
    ctl "$1" cluster_status --formatter json 2>/dev/null |
        /usr/bin/python3 -c '
import json, sys
try:
    print("\n".join(json.load(sys.stdin).get("running_nodes", [])))
except ValueError:
    pass' || true
}

wait_cluster() {
    local deadline=$((SECONDS + START_TIMEOUT)) count
    while :; do
        count=$(running_nodes 1 | grep -c "^$NAME-c[1-3]@localhost$" || true)
        [ "$count" -eq "$NODES" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] ||
            die "node 1 sees $count of $NODES nodes running after ${START_TIMEOUT}s"
        sleep 0.5
    done
}

start_node() { # N
    local n=$1
    "$RABBITMQ_SH" start "$DIR/n$n" "$(node_port "$n")" "$NAME-c$n"
}

# Set while a first start is joining nodes: a failure then stops what
# this run started.
starting=""
on_exit() {
    if [ -n "$starting" ]; then
        starting=""
        say "start failed; stopping the nodes of $DIR"
        stop_all || true
    fi
}
trap on_exit EXIT

stop_all() {
    local n rc=0
    for n in 3 2 1; do
        if [ -d "$DIR/n$n" ]; then
            "$RABBITMQ_SH" stop "$DIR/n$n" || rc=1
        fi
    done
    return $rc
}

cmd_start() {
    [ $# -ge 2 ] && [ $# -le 3 ] || usage
    local base=$2 name=${3:-cqrs} n
    check_port "$base"
    check_port $((base + NODES - 1))
    [[ "$name" =~ ^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*$ ]] || die "bad name: $name"
    mkdir -p "$1"
    DIR=$(abs_dir "$1")

    if [ -f "$DIR/clustered" ]; then
        load "$DIR"
        [ "$BASEPORT" = "$base" ] || die "$DIR is a cluster on base port $BASEPORT, not $base"
        # Clustered nodes wait for each other at boot: start all three at once.
        local pids=() failed=0
        for n in 1 2 3; do
            start_node "$n" &
            pids+=($!)
        done
        for n in 0 1 2; do
            wait "${pids[$n]}" || failed=1
        done
        if [ "$failed" -ne 0 ]; then
            starting=1
            die "a node of $DIR did not start"
        fi
    else
        printf '%s\n' "$base" >"$DIR/baseport"
        printf '%s\n' "$name" >"$DIR/name"
        load "$DIR"
        starting=1
        start_node 1
        for n in 2 3; do
            start_node "$n"
            ctl "$n" stop_app
            ctl "$n" join_cluster "$(node_name 1)"
            ctl "$n" start_app
            wait_amqp "$n"
        done
        : >"$DIR/clustered"
    fi
    starting=1
    wait_cluster
    starting=""
    say "cluster $(node_name 1), $(node_name 2), $(node_name 3)" \
        "on 127.0.0.1:$BASEPORT-$((BASEPORT + NODES - 1))"
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    DIR=$(abs_dir "$1")
    stop_all
}

cmd_stop_node() {
    [ $# -eq 2 ] || usage
    check_n "$2"
    DIR=$(abs_dir "$1")
    load "$DIR"
    "$RABBITMQ_SH" stop "$DIR/n$2"
}

cmd_start_node() {
    [ $# -eq 2 ] || usage
    check_n "$2"
    DIR=$(abs_dir "$1")
    load "$DIR"
    [ -f "$DIR/clustered" ] || die "$DIR was never fully started"
    start_node "$2"
}

cmd_status() {
    [ $# -eq 1 ] || usage
    local n rc=0 st
    DIR=$(abs_dir "$1")
    load "$DIR"
    for n in 1 2 3; do
        st=$("$RABBITMQ_SH" status "$DIR/n$n") || rc=1
        echo "$(node_name "$n") 127.0.0.1:$(node_port "$n"): $st"
    done
    return $rc
}

cmd_urls() {
    [ $# -eq 1 ] || usage
    local n urls=()
    DIR=$(abs_dir "$1")
    load "$DIR"
    for n in 1 2 3; do
        urls+=("amqp://guest:guest@127.0.0.1:$(node_port "$n")/")
    done
    (IFS=,; echo "${urls[*]}")
}

run_action "start stop stop-node start-node status urls" "$@"
