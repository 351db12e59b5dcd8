"""The foreign-load accounting of `make bench` (bench/discipline.py): the
CPU of what a run started is the bench's, children that exited during a
phase included, and a daemonized tree (like the broker's) is the bench's
once named by its PID; the machine's other busy time is foreign, and the
rules mark a phase noisy. Needs no servers.

The machine may be busy with other jobs: the assertions bound the bench's
own share (which other jobs cannot change) and only bound foreign time from
below."""

import os
import signal
import subprocess
import sys
import time

import pytest

from harness import REPO

sys.path.insert(0, str(REPO / "bench"))
import discipline  # noqa: E402

BURN_S = 0.6           # CPU seconds each burner spends
TICK_SLACK_S = 0.1     # clock-tick rounding and interpreter start-up
WAIT_S = 60            # bound on a burner's wall time on a busy machine

# Spends BURN_S of CPU, says so on stdout, then (when asked) stays alive,
# so that a process orphaned to init can still be read.
BURNER = """
import sys, time
t = time.process_time()
while time.process_time() - t < float(sys.argv[1]):
    pass
print("burnt", flush=True)
if sys.argv[2] == "stay":
    time.sleep(600)
"""


def ticks_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / discipline.CLK_TCK


@pytest.fixture
def ledgers():
    made = []

    def make(named):
        ledger = discipline.Ledger(named)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        ledger.stop()


@pytest.fixture
def orphan(tmp_path):
    """Starts a burner whose parent exits at once, as a daemon's does, so
    that it is no descendant of this process; returns its PID once it has
    burnt its CPU. Killed by that PID at the end."""
    pids = []
    script = tmp_path / "burner.py"
    script.write_text(BURNER)

    def start():
        out = tmp_path / f"orphan{len(pids)}.out"
        r = subprocess.run(
            ["sh", "-c", f'"$0" "$1" {BURN_S} stay >"$2" 2>&1 & echo $!',
             sys.executable, str(script), str(out)],
            capture_output=True, text=True, check=True, timeout=30)
        pid = int(r.stdout.strip())
        pids.append(pid)
        deadline = time.monotonic() + WAIT_S
        while "burnt" not in out.read_text():
            assert time.monotonic() < deadline, "the burner did not finish in time"
            time.sleep(0.05)
        return pid

    yield start
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_reaped_childs_cpu_counts_as_the_bench_s(ledgers, tmp_path):
    script = tmp_path / "burner.py"
    script.write_text(BURNER)
    ledger = ledgers(lambda: {})
    start = ledger.begin("phase")
    subprocess.run([sys.executable, str(script), str(BURN_S), "exit"], check=True,
                   capture_output=True, timeout=WAIT_S)
    rec = ledger.end("phase", start)
    # The child is gone: only its parent's cutime still holds its time.
    assert BURN_S - TICK_SLACK_S <= rec["cpu_s"]["load tools"] <= BURN_S + 3 * TICK_SLACK_S
    assert rec["bench_cpu_s"] >= rec["cpu_s"]["load tools"]
    assert rec["machine_busy_s"] >= rec["bench_cpu_s"] - TICK_SLACK_S


def test_a_daemon_named_by_pid_counts_from_its_start(ledgers, orphan):
    named = {}
    ledger = ledgers(lambda: named)
    start = ledger.begin("phase")
    pid = orphan()
    with open(f"/proc/{pid}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) != os.getpid()
    named["broker-like"] = pid          # named after it started, as the broker is
    rec = ledger.end("phase", start)
    spent = ticks_s(pid)
    assert spent >= BURN_S - TICK_SLACK_S
    assert abs(rec["cpu_s"]["broker-like"] - spent) <= TICK_SLACK_S
    # Not counted twice: the driver's tools did not burn it.
    assert rec["cpu_s"]["load tools"] < BURN_S / 2


def test_a_process_outside_the_bench_is_foreign(ledgers, orphan):
    ledger = ledgers(lambda: {})
    start = ledger.begin("phase")
    pid = orphan()
    rec = ledger.end("phase", start)
    assert ticks_s(pid) >= BURN_S - TICK_SLACK_S
    assert rec["bench_cpu_s"] < BURN_S / 2
    assert rec["foreign_cpu_s"] >= BURN_S - 2 * TICK_SLACK_S
    # Whatever else ran, that much foreign CPU in a phase this short is noise.
    if rec["seconds"] <= discipline.SHORT_PHASE_S:
        assert rec["noisy"]


def test_the_rules():
    quiet = discipline.FOREIGN_CORES_MAX * 0.9
    loud = discipline.FOREIGN_CORES_MAX * 1.1
    assert discipline.judge(10.0, quiet * 10.0, 0.3, 0.0) == []
    assert "on average" in discipline.judge(10.0, loud * 10.0, 0.3, 0.0)[0]
    # A burst: quiet on average, one loud second.
    why = discipline.judge(10.0, quiet * 10.0, discipline.FOREIGN_PEAK_CORES_MAX + 0.1, 0.0)
    assert len(why) == 1 and "one second" in why[0]
    # Steal, with no foreign CPU at all.
    why = discipline.judge(10.0, 0.0, None, (discipline.STEAL_CORES_MAX + 0.05) * 10.0)
    assert len(why) == 1 and "steal" in why[0]
    # A short phase is judged as if it lasted SHORT_PHASE_S: a tick of
    # rounding in 0.1 s is not load, a second's worth is.
    assert discipline.judge(0.1, 0.02, None, 0.0) == []
    assert discipline.judge(0.1, discipline.FOREIGN_CORES_MAX * discipline.SHORT_PHASE_S
                            + 0.01, None, 0.0)
