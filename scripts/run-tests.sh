#!/bin/bash
# Run the test suites against a build: scripts/run-tests.sh BUILD_DIR [unit|e2e]
#
# unit: every cmocka binary in BUILD_DIR/tests/, with a private RabbitMQ
#       and a private PostgreSQL started for them (TEST_AMQP_URL,
#       TEST_PG_URL) and stopped afterwards.
# e2e:  tests/e2e with Debian's python3 and pytest; the harness starts its
#       own brokers and services (BIN_DIR=BUILD_DIR/bin) on loopback. It
#       runs twice: on SQLite, then with TEST_DB=postgres (the harness
#       starts a private PostgreSQL); test_scaleout.py, which always uses
#       PostgreSQL and a RabbitMQ cluster of its own, runs in the first pass.
# Without a second argument both run. The last line of output is
# "N passed, M failed" over everything that ran; the exit status is non-zero
# when anything failed. Every step is bounded by `timeout`.
set -uo pipefail

UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}     # seconds per unit test binary
E2E_TIMEOUT=${E2E_TIMEOUT:-2400}      # seconds for the whole e2e suite
E2E_WORKERS=${E2E_WORKERS:-3}         # parallel pytest processes per e2e pass
SLOWEST=${SLOWEST:-10}                # slowest tests listed at the end
BROKER_TIMEOUT=${BROKER_TIMEOUT:-200} # seconds to start or stop the broker (rabbitmq.sh: 180 s)
PG_TIMEOUT=${PG_TIMEOUT:-120}         # seconds to start or stop PostgreSQL

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
LIB_NAME=run-tests.sh
USAGE="BUILD_DIR [unit|e2e]"
. "$ROOT/scripts/lib.sh"
[ $# -ge 1 ] && [ $# -le 2 ] || usage
BUILD_DIR=$(cd "$1" 2>/dev/null && pwd -P) || {
    echo "run-tests.sh: no build folder $1" >&2
    exit 2
}
MODE=${2:-all}
case "$MODE" in all | unit | e2e) ;; *) usage ;; esac

passed=0
failed=0
work=$(mktemp -d /tmp/cqrs-tests.XXXXXX)

# The unit tests' private servers, each started by its script
# (scripts/rabbitmq.sh, scripts/postgres.sh) in a folder of its own, and
# what the tests are told of it.
declare -A unit_dir=() unit_timeout=([rabbitmq]=$BROKER_TIMEOUT [postgres]=$PG_TIMEOUT)
declare -A unit_env=([rabbitmq]=TEST_AMQP_URL [postgres]=TEST_PG_URL)
declare -A unit_url=([rabbitmq]="amqp://guest:guest@127.0.0.1:PORT/"
    [postgres]="postgres://postgres:postgres@127.0.0.1:PORT/postgres")

# Starts KIND (rabbitmq or postgres) on a reserved port and exports its
# URL; when it does not start, the tests that need it are told nothing.
# The server carries the unit pass's mark (see marked_pids), so that one
# still starting when the run is interrupted is found and stopped too.
start_unit_server() { # KIND
    local kind=$1 port dir
    unset "${unit_env[$kind]}"
    dir=$(mktemp -d "/tmp/cqrs-unit-$kind.XXXXXX")
    unit_dir[$kind]=$dir # stopped and removed by stop_unit_servers from now on
    reserve_port port
    if CQRS_TEST_PASS="$work/unit" timeout "${unit_timeout[$kind]}" \
        "$ROOT/scripts/$kind.sh" start "$dir" "$port"; then
        export "${unit_env[$kind]}=${unit_url[$kind]/PORT/$port}"
    else
        say "could not start $kind for unit tests"
        rm -rf "$dir"
        unset "unit_dir[$kind]"
    fi
}

stop_unit_servers() {
    local kind
    for kind in postgres rabbitmq; do
        unset "${unit_env[$kind]}"
        [ -n "${unit_dir[$kind]:-}" ] || continue
        timeout "${unit_timeout[$kind]}" "$ROOT/scripts/$kind.sh" stop "${unit_dir[$kind]}" || true
        rm -rf "${unit_dir[$kind]}"
        unset "unit_dir[$kind]"
    done
}

# On any exit, an interrupted one included: the unit servers stopped by
# their scripts, then whatever any pass of this run left running (a server
# interrupted while it started) stopped by its PID.
cleanup() {
    local pass
    stop_unit_servers
    for pass in unit e2e-sqlite e2e-postgres; do
        reap_leftovers "$work/$pass" >/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Count one cmocka binary's results from its TAP output ($1 = stdout file,
# $2 = exit status). A binary that dies before reporting every planned test
# has the missing ones counted as failed; a non-zero exit with no failure
# reported counts as one failure.
count_tap() {
    local out=$1 rc=$2 plan ok notok missing skipped
    plan=$(grep -E '^1\.\.[0-9]+' "$out" | sed 's/^1\.\.//' | awk '{s += $1} END {print s + 0}')
    ok=$(grep -cE '^ok [0-9]+' "$out")
    notok=$(grep -E '^not ok [0-9]+' "$out" | grep -vc '# SKIP')
    skipped=$(grep -E '^not ok [0-9]+' "$out" | grep -c '# SKIP')
    missing=$((plan - ok - notok - skipped))
    [ "$missing" -lt 0 ] && missing=0
    notok=$((notok + missing))
    if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
        notok=1
    fi
    passed=$((passed + ok))
    failed=$((failed + notok))
    echo "run-tests.sh: $(basename "$3"): $ok passed, $notok failed, $skipped skipped (exit $rc)"
}

run_unit() {
    local bins=() b
    if [ -d "$BUILD_DIR/tests" ]; then
        for b in "$BUILD_DIR"/tests/*; do
            [ -f "$b" ] && [ -x "$b" ] && bins+=("$b")
        done
    fi
    if [ ${#bins[@]} -eq 0 ]; then
        echo "run-tests.sh: no unit test binaries in $BUILD_DIR/tests"
        return
    fi

    start_unit_server rabbitmq
    start_unit_server postgres

    for b in "${bins[@]}"; do
        local name out err rc
        name=$(basename "$b")
        out=$work/$name.out
        err=$work/$name.err
        echo "== unit: $(basename "$b")"
        (cd "$ROOT" && CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$UNIT_TIMEOUT" "$b") >"$out" 2>"$err"
        rc=$?
        cat "$out"
        if [ -s "$err" ]; then
            sed 's/^/  stderr: /' "$err"
        fi
        [ "$rc" -eq 124 ] && echo "run-tests.sh: $(basename "$b") timed out after ${UNIT_TIMEOUT}s"
        count_tap "$out" "$rc" "$b"
    done
    stop_unit_servers
    reap_leftovers "$work/unit" || failed=$((failed + 1))
}

# The libFuzzer harnesses (tests/fuzz), a few seconds each from their seed
# corpus and regression inputs: one passed or failed per harness.
run_fuzz() {
    local out=$work/fuzz.out rc p f
    echo "== unit: fuzz (scripts/run-fuzz.sh 5)"
    (cd "$ROOT" && timeout -k 10 "${FUZZ_TIMEOUT:-900}" scripts/run-fuzz.sh 5) 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    p=$(grep -c '^run-fuzz.sh: [a-z0-9_]*: ok' "$out")
    f=$(grep -c '^run-fuzz.sh: [a-z0-9_]*: FAILED' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

# The PIDs of processes that carry MARK in their environment (an e2e
# pass's mark is in every process it started, down to the servers that
# daemonise themselves: scripts/rabbitmq.sh and postgres.sh pass it on).
# Erlang's epmd is left out: the first node starts it, and it serves
# every node of the machine after that.
marked_pids() { # MARK
    local env pid
    for env in /proc/[0-9]*/environ; do
        pid=${env#/proc/}
        pid=${pid%/environ}
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = epmd ] && continue
        { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qxF "CQRS_TEST_PASS=$1" && echo "$pid"
    done
}

# After a pass nothing it started may still run: a server the harness did
# not stop would outlive the run (and its folder). Lists them, stops them
# (they are this pass's own), and returns the number found.
reap_leftovers() { # MARK
    local pids=() pid
    mapfile -t pids < <(marked_pids "$1")
    for pid in "${pids[@]}"; do
        echo "run-tests.sh: left running by the pass: $pid $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-200)"
        kill -KILL "$pid" 2>/dev/null
    done
    return "${#pids[@]}"
}

run_e2e() { # DB (sqlite|postgres) [more pytest arguments]
    local db=$1 xml=$work/e2e-$1.xml rc counts per_test=() parallel=()
    shift
    # Bound each test too when the plugin is there (python3-pytest-timeout).
    if /usr/bin/python3 -c 'import pytest_timeout' 2>/dev/null; then
        per_test=(--timeout="${E2E_TEST_TIMEOUT:-600}")
    fi
    # In parallel (python3-pytest-xdist): E2E_WORKERS processes, each with
    # its own servers; tests/e2e/conftest.py groups and orders the tests.
    if [ "$E2E_WORKERS" -gt 1 ]; then
        parallel=(-n "$E2E_WORKERS" --dist loadgroup)
    fi
    echo "== e2e: tests/e2e on $db (BIN_DIR=$BUILD_DIR/bin, $E2E_WORKERS workers)"
    (cd "$ROOT" && BIN_DIR="$BUILD_DIR/bin" TEST_DB="$db" PYTHONDONTWRITEBYTECODE=1 \
        CQRS_TEST_PASS="$work/e2e-$db" timeout -k 30 "$E2E_TIMEOUT" /usr/bin/python3 -m pytest tests/e2e -q -rfE \
        -p no:cacheprovider --junitxml="$xml" "${parallel[@]}" "${per_test[@]}" "$@")
    rc=$?
    [ "$rc" -eq 124 ] && echo "run-tests.sh: e2e suite timed out after ${E2E_TIMEOUT}s"
    counts=$(/usr/bin/python3 - "$xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print("-1 -1")
    sys.exit(0)
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = s = 0
for su in suites:
    t += int(su.get("tests", 0))
    f += int(su.get("failures", 0)) + int(su.get("errors", 0))
    s += int(su.get("skipped", 0))
print(t - f - s, f)
EOF
)
    local p=${counts% *} f=${counts#* }
    if [ "$p" -lt 0 ]; then
        # No report: pytest could not start or was killed.
        p=0
        f=1
    elif [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$f" -eq 0 ]; then
        # Non-zero exit (interrupted, internal error) without a failed test.
        f=1
    fi
    reap_leftovers "$work/e2e-$db" || f=$((f + 1))
    echo "run-tests.sh: e2e on $db: $p passed, $f failed (exit $rc)"
    passed=$((passed + p))
    failed=$((failed + f))
}

if [ "$MODE" = all ] || [ "$MODE" = unit ]; then
    run_unit
    run_fuzz
fi
# The OpenAPI validator of tests/e2e/test_openapi.py (an npm package,
# pinned by tests/openapi/package-lock.json), installed only when missing.
install_openapi_validator() {
    [ -x "$ROOT/tests/openapi/node_modules/.bin/validate-api" ] && return 0
    echo "== npm ci in tests/openapi (the OpenAPI validator)"
    (cd "$ROOT/tests/openapi" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) ||
        echo "run-tests.sh: could not install the OpenAPI validator; test_openapi.py will fail" >&2
}

if [ "$MODE" = all ] || [ "$MODE" = e2e ]; then
    install_openapi_validator
    run_e2e sqlite
    run_e2e postgres --ignore=tests/e2e/test_scaleout.py
fi

# The slowest tests of every e2e pass (setup, call and teardown together),
# from the JUnit reports.
slowest() {
    local xmls=("$work"/e2e-*.xml)
    [ -e "${xmls[0]}" ] || return 0
    echo "== the $SLOWEST slowest e2e tests"
    /usr/bin/python3 - "$SLOWEST" "${xmls[@]}" <<'EOF'
import sys
import xml.etree.ElementTree as ET
rows = []
for path in sys.argv[2:]:
    db = path.rsplit("e2e-", 1)[1][:-len(".xml")]
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        continue
    for case in root.iter("testcase"):
        rows.append((float(case.get("time", 0)), db,
                     f"{case.get('classname', '')}::{case.get('name', '')}"))
for t, db, name in sorted(rows, reverse=True)[:int(sys.argv[1])]:
    print(f"{t:8.1f}s  {db:8s} {name}")
EOF
}

slowest
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
