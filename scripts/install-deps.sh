#!/bin/sh
# Install the Debian packages this project needs, and only those missing.
# Idempotent: when everything is present it does nothing and touches no network.
set -eu

PACKAGES="
build-essential pkg-config clang clang-format
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

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
updated=""

# The packages named that are not installed.
missing_of() { # PACKAGE...
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            printf ' %s' "$p"
        fi
    done
}

# apt-get update, once a run.
apt_update() {
    if [ -z "$updated" ]; then
        $SUDO apt-get update -q
        updated=1
    fi
}

apt_install() { # PACKAGE...
    echo "install-deps: installing: $*" >&2
    apt_update
    # The packages' post-install would start a system-wide broker on 5672
    # and a PostgreSQL cluster on 5432; our scripts run private ones
    # instead (scripts/rabbitmq.sh, scripts/postgres.sh), so keep services
    # from starting here.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO apt-get install -y -q --no-install-recommends "$@"
}

# shellcheck disable=SC2086
missing=$(missing_of $PACKAGES)
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    apt_install $missing
fi

# The compiler runtime of the clang installed above (its fuzzer and
# sanitizer libraries, for `make fuzz`), only recommended by clang, so
# named here: libclang-rt-N-dev for clang N, whichever N the machine's
# Debian release has. A release whose archive has no such package ships
# the runtime inside clang's own dependencies (libclang-common-N-dev).
clang_major=$(clang --version 2>/dev/null |
    sed -n 's/.*clang version \([0-9][0-9]*\)\..*/\1/p' | head -n 1)
if [ -z "$clang_major" ]; then
    echo "install-deps: no clang version from \`clang --version\`" >&2
    exit 1
fi
runtime=libclang-rt-$clang_major-dev
if [ -n "$(missing_of "$runtime")" ]; then
    apt_update
    if [ -n "$(apt-cache policy "$runtime" 2>/dev/null | sed -n 's/^ *Candidate: *\([^(]\)/\1/p')" ]; then
        apt_install "$runtime"
    else
        echo "install-deps: no $runtime here; clang $clang_major's runtime comes with clang" >&2
    fi
fi
