#!/bin/bash
# Build the libFuzzer harnesses of tests/fuzz (into build/fuzz) and run each
# for SECONDS: scripts/run-fuzz.sh SECONDS [HARNESS...]
#
# Per harness, first its regression inputs (tests/fuzz/regressions/<name>/)
# are replayed once each; then it fuzzes for SECONDS, starting from a copy
# of its seed corpus (tests/fuzz/corpus/<name>/) in a temporary folder, so
# the committed corpus never grows. A crash, leak, sanitizer report, failed
# check, hang or out-of-memory fails the harness: the report's key lines
# are printed, and the input and the full log are kept under
# build/fuzz/findings/<name>/ (move the input to regressions/ once fixed).
#
# Prints one line per harness, "run-fuzz.sh: NAME: ok (...)" or
# "run-fuzz.sh: NAME: FAILED (...)", and exits non-zero if any failed.
# `make fuzz` runs this with FUZZ_SECONDS (60); `make test` with 5.
set -uo pipefail

INPUT_TIMEOUT=${FUZZ_INPUT_TIMEOUT:-20} # seconds one input may take
MAX_LEN=${FUZZ_MAX_LEN:-4096}           # bytes of the longest input tried
RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-2048}
GRACE=${FUZZ_GRACE:-120} # slack for start-up, corpus loading, leak check

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
USAGE="SECONDS [HARNESS...]"
. "$ROOT/scripts/lib.sh"

[ $# -ge 1 ] || usage
seconds=$1
shift
case "$seconds" in '' | *[!0-9]* | 0) usage ;; esac

FUZZ_DIR=$ROOT/tests/fuzz
BIN_DIR=$ROOT/build/fuzz/bin
FINDINGS=$ROOT/build/fuzz/findings

if [ $# -gt 0 ]; then
    harnesses=("$@")
else
    harnesses=()
    for f in "$FUZZ_DIR"/fuzz_*.c; do
        [ -e "$f" ] && harnesses+=("$(basename "$f" .c)")
    done
fi
if [ ${#harnesses[@]} -eq 0 ]; then
    echo "run-fuzz.sh: no harnesses in $FUZZ_DIR" >&2
    exit 2
fi

work=$(mktemp -d /tmp/cqrs-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! (cd "$ROOT" && make --no-print-directory -s fuzz-bins) >"$work/build.log" 2>&1; then
    sed 's/^/  build: /' "$work/build.log"
    for h in "${harnesses[@]}"; do
        echo "run-fuzz.sh: $h: FAILED (build)"
    done
    exit 1
fi

# Leaks count as failures; UBSan stops at the first report.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
    for s in /usr/lib/llvm-14/bin/llvm-symbolizer /usr/bin/llvm-symbolizer; do
        if [ -x "$s" ]; then
            export ASAN_SYMBOLIZER_PATH=$s
            break
        fi
    done
fi

# What went wrong, from a libFuzzer log.
failure_kind() {
    local log=$1
    if grep -q 'ERROR: LeakSanitizer' "$log"; then
        echo leak
    elif grep -q 'fuzz check failed' "$log"; then
        echo "check failed"
    elif grep -q 'runtime error:' "$log"; then
        echo "undefined behaviour"
    elif grep -q 'ERROR: AddressSanitizer' "$log"; then
        echo "memory error"
    elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then
        echo hang
    elif grep -q 'out-of-memory' "$log"; then
        echo out-of-memory
    elif grep -q 'deadly signal' "$log"; then
        echo crash
    else
        echo "exit status $2"
    fi
}

# Prints the report's key lines and keeps the input and the log.
report_failure() {
    local h=$1 tmp=$2 rc=$3 phase=$4 kind kept="" a
    kind=$(failure_kind "$tmp/log" "$rc")
    mkdir -p "$FINDINGS/$h"
    cp "$tmp/log" "$FINDINGS/$h/log"
    for a in "$tmp"/artifacts/*; do
        [ -f "$a" ] || continue
        cp "$a" "$FINDINGS/$h/"
        kept="$FINDINGS/$h/$(basename "$a")"
    done
    grep -E 'fuzz check failed|runtime error:|ERROR: |SUMMARY: |^ *#[0-9]+ 0x|^(time|amount) ' "$tmp/log" |
        grep -v 'in fuzzer::' | head -40 | sed "s/^/  $h: /"
    if [ -n "$kept" ]; then
        echo "run-fuzz.sh: $h: FAILED ($kind in $phase; input $kept)"
    else
        echo "run-fuzz.sh: $h: FAILED ($kind in $phase; log $FINDINGS/$h/log)"
    fi
}

failed=0
for h in "${harnesses[@]}"; do
    bin=$BIN_DIR/$h
    tmp=$work/$h
    mkdir -p "$tmp/corpus" "$tmp/artifacts"
    : >"$tmp/log"
    if [ ! -x "$bin" ]; then
        echo "run-fuzz.sh: $h: FAILED (no binary $bin)"
        failed=$((failed + 1))
        continue
    fi
    opts=(-artifact_prefix="$tmp/artifacts/" -timeout="$INPUT_TIMEOUT"
        -rss_limit_mb="$RSS_LIMIT_MB" -max_len="$MAX_LEN")

    regressions=()
    if [ -d "$FUZZ_DIR/regressions/$h" ]; then
        for f in "$FUZZ_DIR/regressions/$h"/*; do
            [ -f "$f" ] && regressions+=("$f")
        done
    fi
    if [ ${#regressions[@]} -gt 0 ]; then
        timeout -k 10 "$GRACE" "$bin" "${opts[@]}" "${regressions[@]}" >>"$tmp/log" 2>&1
        rc=$?
        if [ "$rc" -ne 0 ]; then
            report_failure "$h" "$tmp" "$rc" "regressions"
            failed=$((failed + 1))
            continue
        fi
    fi

    if [ -d "$FUZZ_DIR/corpus/$h" ]; then
        cp -R "$FUZZ_DIR/corpus/$h/." "$tmp/corpus/"
    fi
    start=$(date +%s)
    timeout -k 10 $((seconds + GRACE)) "$bin" "${opts[@]}" -max_total_time="$seconds" \
        -dict="$FUZZ_DIR/fuzz.dict" -use_value_profile=1 -print_final_stats=1 \
        "$tmp/corpus" >>"$tmp/log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    if [ "$rc" -ne 0 ]; then
        report_failure "$h" "$tmp" "$rc" "fuzzing"
        failed=$((failed + 1))
        continue
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$tmp/log" | tail -1)
    echo "run-fuzz.sh: $h: ok (${runs:-?} runs in ${elapsed}s, ${cov:-cov: ?}," \
        "${#regressions[@]} regressions)"
done

[ "$failed" -eq 0 ]
