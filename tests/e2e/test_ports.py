"""The port registry (scripts/ports.py, scripts/lib.sh's reserve_port):
no port is handed out twice, in one process or across processes, while it
is held; every port lies below the kernel's ephemeral range. Needs no
servers."""

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import ports
from harness import REPO

LIB_SH = REPO / "scripts" / "lib.sh"
PORTS_PY = REPO / "scripts" / "ports.py"


def ephemeral_low():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return int(f.read().split()[0])


def test_ports_lie_below_the_ephemeral_range():
    low, high = ports.port_range()
    assert high < ephemeral_low()
    held = [ports.reserve() for _ in range(50)]
    try:
        assert all(low <= r.port <= high for r in held)
    finally:
        for r in held:
            r.release()


def test_no_port_twice_among_threads_of_one_process():
    with ThreadPoolExecutor(max_workers=16) as ex:
        held = list(ex.map(lambda _: ports.reserve(), range(400)))
    try:
        got = [r.port for r in held]
        assert len(set(got)) == len(got)
    finally:
        for r in held:
            r.release()


def test_a_port_released_is_not_given_again_at_once_in_this_process():
    first = ports.reserve()
    first.release()
    again = [ports.reserve() for _ in range(100)]
    try:
        assert first.port not in {r.port for r in again}
    finally:
        for r in again:
            r.release()


def _reserve_in_child(n):
    """Ports reserved by a child Python process (which exits: its locks go)."""
    code = (f"import sys; sys.path.insert(0, {str(PORTS_PY.parent)!r}); import ports; "
            f"rs = [ports.reserve() for _ in range({n})]; print(*[r.port for r in rs])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [int(p) for p in out.split()]


def test_other_processes_skip_the_ports_this_one_holds():
    # 500 held: a child drawing 200 at random from the range would hit one
    # of them with a probability near 1 if it did not see the locks.
    held = []
    try:
        for _ in range(500):
            held.append(ports.reserve())
        mine = {r.port for r in held}
        theirs = _reserve_in_child(200)
        assert not mine & set(theirs)
    finally:
        for r in held:
            r.release()


def test_the_shell_and_python_share_the_locks():
    held = [ports.reserve() for _ in range(300)]
    try:
        script = f". {LIB_SH}; for i in $(seq 30); do reserve_port p; echo $p; done"
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        shell = [int(p) for p in out.split()]
        assert len(shell) == 30 and len(set(shell)) == 30
        assert not {r.port for r in held} & set(shell)
    finally:
        for r in held:
            r.release()


def test_a_block_is_consecutive_and_held():
    block = ports.reserve_block(3)
    try:
        got = [r.port for r in block]
        assert got == list(range(got[0], got[0] + 3))
        others = [ports.reserve() for _ in range(200)]
        assert not set(got) & {r.port for r in others}
        for r in others:
            r.release()
    finally:
        for r in block:
            r.release()


def test_a_bound_port_is_not_handed_out():
    res = ports.reserve()
    s = socket.socket()
    s.bind(("127.0.0.1", res.port))  # someone outside the registry takes it
    res.release()
    try:
        assert not ports.can_bind(res.port)
        ports._handed.discard(res.port)  # as if this process never had it
        assert ports._take([res.port], reuse=False) is None
        assert ports._take([res.port], reuse=True) is None
    finally:
        s.close()
