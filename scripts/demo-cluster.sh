#!/bin/bash
# The demo journey on the scale-out set-up (README, "PostgreSQL and
# scale-out"):   scripts/demo-cluster.sh BUILD_DIR   (make demo-cluster)
#
# Starts, all on loopback and with data under var/demo-cluster/:
#   * a private PostgreSQL (scripts/postgres.sh) with one database per
#     service: user_service, order_service, invoice_service;
#   * a private three-node RabbitMQ cluster (scripts/rabbitmq-cluster.sh);
#   * two replicas of every service, on PostgreSQL, with quorum queues
#     (AMQP_QUEUE_TYPE=quorum) and the three nodes' URLs (AMQP_URL=a,b,c):
#     user-service on 8081 and 8091, order-service on 8082 and 8092,
#     invoice-service on 8083 and 8093 (a free port instead of one in use).
# Then it walks the demo journey across the replicas, printing every
# request and answer, and keeps serving until Ctrl-C; then it stops
# exactly what it started, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
LIB_NAME=demo-cluster
. "$ROOT/scripts/lib.sh"
BIN=$(cd "${1:-$ROOT/build/release}" && pwd -P)/bin
DEMO=$ROOT/var/demo-cluster
PG_DIR=$DEMO/postgres
MQ_DIR=$DEMO/rabbitmq
INVOICE_WAIT_S=30
HEALTH_WAIT_S=30
SHOW_HEADERS=$DEMO/headers # show's (lib.sh)

pids=()
pg_started=""
mq_started=""

stop_all() {
    trap - EXIT INT TERM
    echo
    echo "demo-cluster: stopping"
    stop_children "${pids[@]}"
    if [ -n "$mq_started" ]; then
        "$ROOT/scripts/rabbitmq-cluster.sh" stop "$MQ_DIR" || true
    fi
    if [ -n "$pg_started" ]; then
        "$ROOT/scripts/postgres.sh" stop "$PG_DIR" || true
    fi
}
trap stop_all EXIT
trap 'exit 0' INT TERM

# Three consecutive free ports for the cluster's nodes: from 5672 when
# free, else reserved ones.
cluster_base() { # VAR
    if port_in_use 5672 || port_in_use 5673 || port_in_use 5674; then
        reserve_port "$1" 3
    else
        printf -v "$1" '%s' 5672
    fi
}

if { [ -d "$PG_DIR" ] && "$ROOT/scripts/postgres.sh" status "$PG_DIR" >/dev/null 2>&1; } ||
    { [ -f "$MQ_DIR/baseport" ] &&
        "$ROOT/scripts/rabbitmq-cluster.sh" status "$MQ_DIR" 2>/dev/null | grep -q running; }; then
    echo "demo-cluster: a previous demo-cluster still runs from $DEMO;" \
        "stop it (Ctrl-C in its terminal) first" >&2
    trap - EXIT
    exit 1
fi
# Fresh data each run, so the journey's ids (user 1, ...) are the seed's.
rm -rf "$DEMO"
mkdir -p "$DEMO"

pick_port pg_port "${POSTGRES_PORT:-5432}"
echo "demo-cluster: starting PostgreSQL on 127.0.0.1:$pg_port (data in var/demo-cluster/postgres)"
pg_started=1
# The servers run in sessions of their own (setsid), so that Ctrl-C in
# this terminal does not reach them: they are stopped in order by
# stop_all, through their scripts and PIDs.
setsid -w "$ROOT/scripts/postgres.sh" start "$PG_DIR" "$pg_port"
for name in user order invoice; do
    "$ROOT/scripts/postgres.sh" createdb "$PG_DIR" "$pg_port" "${name}_service"
done

cluster_base base
echo "demo-cluster: starting a three-node RabbitMQ cluster on 127.0.0.1:$base-$((base + 2))" \
    "(data in var/demo-cluster/rabbitmq; this takes a while)"
mq_started=1
setsid -w "$ROOT/scripts/rabbitmq-cluster.sh" start "$MQ_DIR" "$base"
AMQP_URL=$("$ROOT/scripts/rabbitmq-cluster.sh" urls "$MQ_DIR")
export AMQP_URL
export AMQP_QUEUE_TYPE=quorum

# Two replicas of each service: NAME:PORT1:PORT2 (the preferred ports).
declare -A url1 url2
for spec in user:8081:8091 order:8082:8092 invoice:8083:8093; do
    IFS=: read -r name p1 p2 <<<"$spec"
    db="postgres://postgres:postgres@127.0.0.1:$pg_port/${name}_service"
    ports=()
    for p in "$p1" "$p2"; do
        pick_port p "$p"
        n=$((${#ports[@]} + 1))
        "$BIN/$name-service" --port "$p" --database-url "$db" \
            2>"$DEMO/$name-service-$n.log" &
        pids+=($!)
        ports+=("$p")
    done
    url1[$name]=http://127.0.0.1:${ports[0]}
    url2[$name]=http://127.0.0.1:${ports[1]}
done

for name in user order invoice; do
    for u in "${url1[$name]}" "${url2[$name]}"; do
        wait_http "$u/healthz" "$HEALTH_WAIT_S" ||
            die "$name-service at $u did not start; see var/demo-cluster/*.log"
    done
done

U1=${url1[user]}/system-api
U2=${url2[user]}/system-api
O1=${url1[order]}/order-service
O2=${url2[order]}/order-service
I1=${url1[invoice]}/invoice-service
I2=${url2[invoice]}/invoice-service

echo
echo "== 1. Create a user (user-service replica 1)"
show POST "$U1/users" '{"name": "Alice", "email": "alice@demo.com"}'
echo
echo "== 2. Create her account (user-service replica 2, same database)"
show POST "$U2/accounts" '{"user_id": 1, "address1": "123 Main St", "city": "Cityville", "state": "CA", "zip": "12345"}'
echo
echo "== 3. Create an order dated April 2025 (order-service replica 2)"
show POST "$O2/orders" '{"user_id": 1, "amount": 50, "description": "Test purchase", "created_at": "2025-04-03T10:15:00Z"}'
echo
echo "== 4. Her April invoice, built from the events by whichever invoice-service"
echo "      replica took them off the quorum queues; both replicas answer the same"
query="invoices?user_id=1&month=4&year=2025"
for _ in $(seq $((INVOICE_WAIT_S * 10))); do
    [ "$(curl -s "$I1/$query" | jq '.[0].order_count // 0')" = "1" ] &&
        [ "$(curl -s "$I1/$query" | jq '.[0].shipping_address != null')" = "true" ] && break
    sleep 0.1
done
show GET "$I1/$query"
show GET "$I2/$query"

cat <<EOT

== The cluster keeps serving:
   PostgreSQL       postgres://postgres:postgres@127.0.0.1:$pg_port/{user,order,invoice}_service
   RabbitMQ         $AMQP_URL  (quorum queues)
   user-service     ${url1[user]}  ${url2[user]}
   order-service    ${url1[order]}  ${url2[order]}
   invoice-service  ${url1[invoice]}  ${url2[invoice]}
   Try, for example:
   curl -s -X POST '$O1/orders' -H 'Content-Type: application/json' -d '{"user_id": 1, "amount": 19.99, "created_at": "2025-04-20T09:00:00Z"}'
   curl -s '$I2/$query' | jq .
   scripts/rabbitmq-cluster.sh stop-node var/demo-cluster/rabbitmq 1   # and start-node ... 1
   logs: var/demo-cluster/*.log
Press Ctrl-C to stop.
EOT
wait "${pids[@]}"
