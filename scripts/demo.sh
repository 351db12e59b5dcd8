#!/bin/bash
# The demo journey of the original Node.js system, on our three services:
#   scripts/demo.sh BUILD_DIR       (make demo runs it with build/release)
#
# Starts a private RabbitMQ on loopback (unless AMQP_URL already answers),
# the three services on fresh SQLite files under var/demo/, then creates
# Alice, her account and a 50.00 order dated April 2025, and fetches her
# April invoice with the consistency tokens of those creates (so the read
# waits until the invoice service has applied them), printing every
# request and answer. It keeps serving until Ctrl-C, then stops exactly
# the processes it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
LIB_NAME=demo
. "$ROOT/scripts/lib.sh"
BIN=$(cd "${1:-$ROOT/build/release}" && pwd -P)/bin
DEMO=$ROOT/var/demo
USER_PORT=${USER_PORT:-8081}
ORDER_PORT=${ORDER_PORT:-8082}
INVOICE_PORT=${INVOICE_PORT:-8083}
INVOICE_WAIT_MS=20000
HEALTH_WAIT_S=30
SHOW_HEADERS=$DEMO/headers # show's (lib.sh)

pids=()
broker_started=""

stop_all() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping"
    stop_children "${pids[@]}"
    if [ -n "$broker_started" ]; then
        "$ROOT/scripts/rabbitmq.sh" stop "$DEMO/rabbitmq" || true
    fi
}
trap stop_all EXIT
trap 'exit 0' INT TERM

amqp_port_of() {
    # amqp://user:pass@host:PORT/vhost -> PORT (5672 when absent)
    local rest=${1#*://}
    rest=${rest#*@}
    rest=${rest%%/*}
    case "$rest" in *:*) echo "${rest##*:}" ;; *) echo 5672 ;; esac
}

# Fresh data each run, so the journey's ids (user 1, ...) are the seed's.
rm -rf "$DEMO"
mkdir -p "$DEMO"

if [ -n "${AMQP_URL:-}" ] && port_in_use "$(amqp_port_of "$AMQP_URL")"; then
    echo "demo: using the broker at AMQP_URL"
else
    port=${RABBITMQ_PORT:-5672}
    if port_in_use "$port"; then
        reserve_port port
    fi
    echo "demo: starting a private RabbitMQ on 127.0.0.1:$port (data in var/demo/rabbitmq)"
    # Its own session: a Ctrl-C meant for the demo must not kill the node
    # uncleanly; stop_all stops it through its script.
    setsid -w "$ROOT/scripts/rabbitmq.sh" start "$DEMO/rabbitmq" "$port"
    broker_started=1
    AMQP_URL="amqp://guest:guest@127.0.0.1:$port/"
fi
export AMQP_URL

for svc in user:$USER_PORT order:$ORDER_PORT invoice:$INVOICE_PORT; do
    name=${svc%%:*}
    port=${svc##*:}
    if port_in_use "$port"; then
        echo "demo: port $port is in use; set ${name^^}_PORT to another one" >&2
        exit 1
    fi
    "$BIN/$name-service" --port "$port" --database-url "sqlite:$DEMO/$name-service.db" \
        2>"$DEMO/$name-service.log" &
    pids+=($!)
done

for port in $USER_PORT $ORDER_PORT $INVOICE_PORT; do
    wait_http "http://127.0.0.1:$port/healthz" "$HEALTH_WAIT_S" ||
        die "the service on port $port did not start; see var/demo/*.log"
done

U=http://127.0.0.1:$USER_PORT/system-api
O=http://127.0.0.1:$ORDER_PORT/order-service
I=http://127.0.0.1:$INVOICE_PORT/invoice-service

echo
echo "== 1. Create a user"
show POST "$U/users" '{"name": "Alice", "email": "alice@demo.com"}'
user_token=$token
echo
echo "== 2. Create her account (shipping address)"
show POST "$U/accounts" '{"user_id": 1, "address1": "123 Main St", "city": "Cityville", "state": "CA", "zip": "12345"}'
account_token=$token
echo
echo "== 3. Create an order dated April 2025"
show POST "$O/orders" '{"user_id": 1, "amount": 50, "description": "Test purchase", "created_at": "2025-04-03T10:15:00Z"}'
order_token=$token
echo
echo "== 4. The invoice service builds her April invoice from the events;"
echo "      the tokens of the three creates make the read wait until it has"
echo "      applied them (read your writes)"
query="$I/invoices?user_id=1&month=4&year=2025"
show GET "$query&consistent_with=$user_token&consistent_with=$account_token&consistent_with=$order_token&wait_ms=$INVOICE_WAIT_MS"

cat <<EOT

== The live dashboard (create users, accounts and orders; watch the events
   and the invoices arrive):
   http://127.0.0.1:$INVOICE_PORT/invoice-service/ui/?user=http://127.0.0.1:$USER_PORT&order=http://127.0.0.1:$ORDER_PORT

== The system keeps serving. Try, for example:
   curl -s '$U/users' | jq .
   curl -s -X POST '$O/orders' -H 'Content-Type: application/json' -d '{"user_id": 1, "amount": 19.99, "created_at": "2025-04-20T09:00:00Z"}'
   curl -s '$query' | jq .
   curl -s http://127.0.0.1:$ORDER_PORT/metrics
   logs: var/demo/*.log
Press Ctrl-C to stop.
EOT
wait "${pids[@]}"
