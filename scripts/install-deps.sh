#!/bin/sh
# Install the Debian packages this project needs, and only those missing.
# Idempotent: when everything is present it does nothing and touches no network.
set -eu

PACKAGES="
build-essential pkg-config clang libclang-rt-14-dev
libmicrohttpd-dev libjansson-dev librabbitmq-dev libsqlite3-dev libpq-dev
uuid-dev libcmocka-dev nettle-dev libcurl4-openssl-dev
rabbitmq-server postgresql
python3 python3-pytest python3-pytest-timeout python3-pytest-xdist python3-pika python3-requests
python3-jsonschema nodejs
curl jq sqlite3 procps wrk
systemd
chromium
"
# npm comes with nodejs from some sources (NodeSource) and is a package of
# its own in Debian: ask for it only when the command is missing.
if ! command -v npm >/dev/null 2>&1; then
    PACKAGES="$PACKAGES npm"
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# The packages' post-install would start a system-wide broker on 5672 and a
# PostgreSQL cluster on 5432; our scripts run private ones instead
# (scripts/rabbitmq.sh, scripts/postgres.sh), so keep services from
# starting here.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
