"""Loopback ports for the private servers of tests, benchmarks and demos,
handed out so that two callers never get the same one.

Asking the kernel for a free port (bind to port 0, read it, close) is a
race: a second caller, in this process or another, can be given the same
number before the first server binds it, and the kernel's pick lies in the
ephemeral range, where any outgoing connection may take it meanwhile. So
a port is reserved here instead:

- it is drawn from a range below the kernel's ephemeral range (read from
  /proc/sys/net/ipv4/ip_local_port_range), which outgoing connections
  never use;
- it is locked with flock(2) on a file named after it in LOCK_DIR, and
  the lock is held (an open descriptor) until the reservation is
  released or its process exits, so other processes (pytest-xdist
  workers, shell scripts through scripts/lib.sh) skip it;
- it is checked free by binding it;
- within one process a port is not handed out twice until every other
  port of the range has been.

scripts/lib.sh's reserve_port follows the same rules from the shell.
Run as a script, `ports.py free PORT [reuse]` exits 0 when PORT can be
bound on 127.0.0.1 (with SO_REUSEADDR when "reuse" is given, as servers
bind: connections in TIME_WAIT then do not count).
"""

import errno
import fcntl
import os
import random
import socket
import sys
import threading

LOCK_DIR = os.environ.get("CQRS_PORT_DIR") or "/tmp/cqrs-ports"
RANGE_LOW = 20000     # the lowest port handed out
RANGE_HIGH = 32767    # the highest, unless the ephemeral range starts lower

_lock = threading.Lock()
_handed = set()       # ports this process was given since the last wrap


def port_range():
    """(low, high) inclusive: RANGE_LOW..RANGE_HIGH cut below the kernel's
    ephemeral range."""
    high = RANGE_HIGH
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_low = int(f.read().split()[0])
        high = min(high, eph_low - 1)
    except (OSError, ValueError, IndexError):
        pass
    if high - RANGE_LOW < 1000:
        raise RuntimeError(f"no room for private ports below the ephemeral range "
                           f"(ports {RANGE_LOW}..{high})")
    return RANGE_LOW, high


def can_bind(port, reuse=False):
    """True when 127.0.0.1:port can be bound right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Reservation:
    """A port held for its owner until release() (or the process's exit)."""

    def __init__(self, port, fd):
        self.port = port
        self._fd = fd

    def release(self):
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    @property
    def held(self):
        return self._fd is not None

    def __del__(self):
        self.release()

    def __repr__(self):
        return f"Reservation({self.port}{'' if self.held else ', released'})"


def _try_lock(port):
    os.makedirs(LOCK_DIR, mode=0o1777, exist_ok=True)
    fd = os.open(os.path.join(LOCK_DIR, str(port)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def reserve(reuse=False):
    """A Reservation of a port that nobody else holds and that binds."""
    return reserve_block(1, reuse)[0]


def reserve_block(count, reuse=False):
    """Reservations of count consecutive ports (a cluster whose nodes
    listen on BASE, BASE+1, ...), each as reserve() would give it."""
    low, high = port_range()
    span = high - low + 1 - (count - 1)
    with _lock:
        for _wrap in range(2):
            start = random.randrange(span)
            for i in range(span):
                base = low + (start + i) % span
                block = _take(range(base, base + count), reuse)
                if block:
                    return block
            _handed.clear()  # every port was handed out once: start over
    raise RuntimeError(f"no {count} free consecutive ports in {low}..{high}")


def _take(candidates, reuse):
    """Lock and check every port of candidates, or none of them."""
    taken = []
    for port in candidates:
        fd = None if port in _handed else _try_lock(port)
        if fd is None or not can_bind(port, reuse):
            if fd is not None:
                os.close(fd)
            for res in taken:
                res.release()
            return None
        taken.append(Reservation(port, fd))
    _handed.update(res.port for res in taken)
    return taken


def main(argv):
    if len(argv) >= 3 and argv[1] == "free":
        return 0 if can_bind(int(argv[2]), reuse=len(argv) > 3 and argv[3] == "reuse") else 1
    if len(argv) == 2 and argv[1] == "range":
        print(*port_range())
        return 0
    print("usage: ports.py free PORT [reuse] | range", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
