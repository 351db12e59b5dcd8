#!/bin/bash
# Run the end-to-end suite several times in a row on a busy machine, to
# find tests that fail for reasons other than a defect (docs/testing.md):
#
#   scripts/flake-hunt.sh BUILD_DIR [RUNS] [LOAD_WORKERS]
#
# Keeps the machine busy with stress-ng (LOAD_WORKERS CPU hogs, default 2,
# at the lowest priority the tests' processes do not have), then runs
# `scripts/run-tests.sh BUILD_DIR e2e` RUNS times (default 5): each run is
# one pass on SQLite and one on PostgreSQL. Prints, and appends to
# build/flake-hunt.tsv, one line per pass: date, backend, passed, failed,
# seconds, load average. Exits non-zero when any pass had a failure. The
# log of every run is kept in build/flake-hunt/.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
LIB_NAME=flake-hunt.sh
USAGE="BUILD_DIR [RUNS] [LOAD_WORKERS]"
. "$ROOT/scripts/lib.sh"

[ $# -ge 1 ] && [ $# -le 3 ] || usage
BUILD_DIR=$1
RUNS=${2:-5}
LOAD_WORKERS=${3:-2}
LOAD_BOUND_S=$((RUNS * 3600)) # stress-ng stops by itself at the latest then
OUT=$ROOT/build/flake-hunt
TSV=$ROOT/build/flake-hunt.tsv

if ! command -v stress-ng >/dev/null; then
    echo "flake-hunt.sh: installing stress-ng" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends stress-ng \
        >/dev/null || die "could not install stress-ng"
fi

mkdir -p "$OUT"
load_pid=""
stop_load() {
    if [ -n "$load_pid" ]; then
        kill -TERM "$load_pid" 2>/dev/null
        wait "$load_pid" 2>/dev/null
        load_pid=""
    fi
}
trap stop_load EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$LOAD_WORKERS" -gt 0 ]; then
    nice -n 19 stress-ng --cpu "$LOAD_WORKERS" --timeout "$LOAD_BOUND_S" --quiet &
    load_pid=$!
fi

bad=0
for ((i = 1; i <= RUNS; i++)); do
    log=$OUT/run-$i.log
    echo "== flake hunt: run $i of $RUNS (log $log)"
    start=$SECONDS
    "$ROOT/scripts/run-tests.sh" "$BUILD_DIR" e2e >"$log" 2>&1
    took=$((SECONDS - start))
    # One line per backend: "run-tests.sh: e2e on DB: N passed, M failed (exit R)".
    while read -r db p f; do
        line=$(printf '%s\t%s\t%s\t%s\t%s\t%s' "$(date -u +%FT%TZ)" "$db" "$p" "$f" "$took" \
            "$(cut -d' ' -f1-3 /proc/loadavg)")
        echo "$line" | tee -a "$TSV"
        [ "$f" -eq 0 ] || bad=1
    done < <(sed -n 's/^run-tests.sh: e2e on \([a-z]*\): \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2 \3/p' "$log")
    grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /'
done
exit "$bad"
