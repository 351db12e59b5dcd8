"""Benchmark discipline for bench/run.py: was the machine the bench's alone?

A figure measured while something else used the CPU says little, and on a
shared machine that happens silently. So for every phase of a run the
driver records:

- the load average (/proc/loadavg) when the phase began and ended;
- the CPU time (utime+stime from /proc/PID/stat) of everything the bench
  started, by group: the driver itself, each server (services, hello), the
  RabbitMQ broker's whole process tree, the PostgreSQL cluster's whole
  process tree, and the load tools (wrk, the raw-limit programs,
  bench/pipeline.py and their children);
- the CPU time the whole machine spent busy (/proc/stat: user, nice,
  system, irq, softirq), and so the **foreign** CPU: busy time that none
  of the bench's processes explains. The kernel's own threads working for
  the bench (the file system's journal, writeback) and interrupts taken
  while the CPU was idle count as foreign too, which is one reason why
  the threshold is not zero;
- the hypervisor's steal time (/proc/stat), CPU the virtual machine
  wanted and did not get.

How the bench's share is counted: a snapshot reads utime+stime+cutime+
cstime of every process and finds which belong to the bench (the
driver's descendants, the broker's and the cluster's trees). A child
that exits and is reaped moves its time from its own fields into its
parent's cutime and cstime, so between two snapshots a group's CPU is
what its live processes gained plus what its exited ones had at the
first snapshot taken off again: exited processes are included (wrk runs,
PostgreSQL backends, the pipeline's load process). The broker and the
PostgreSQL server daemonize (their parent is no longer the driver), so
their trees are found from their PIDs, not from the driver's.

A 1-second sampler also keeps, per phase, the highest foreign CPU of any
second, because a burst of another job can spoil a few runs without
moving a phase's average much.

A phase is **noisy** when its foreign CPU averaged more than
FOREIGN_CORES_MAX cores (a phase shorter than SHORT_PHASE_S is judged as
if it lasted that long), when some second of it had more than
FOREIGN_PEAK_CORES_MAX, or when steal averaged more than STEAL_CORES_MAX.
The load average is recorded but not judged per phase: it decays over a
minute, so at a phase's start it still carries the bench's own previous
phase. Only the load average before the run started anything is judged
(RUN_START_LOAD_MAX): the machine was not idle when the run began.
"""
import os
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
FOREIGN_CORES_MAX = 0.2        # average over a phase, in cores
FOREIGN_PEAK_CORES_MAX = 0.6   # over any one sampled second
STEAL_CORES_MAX = 0.1          # average over a phase
RUN_START_LOAD_MAX = 0.3       # 1-minute load average before the run started
SAMPLE_S = 1.0
SHORT_PHASE_S = 2.0            # shorter phases are judged as if this long


def loadavg():
    """(1, 5, 15)-minute load averages."""
    with open("/proc/loadavg") as f:
        return tuple(float(x) for x in f.read().split()[:3])


def machine_ticks():
    """Busy, interrupt, steal and iowait ticks of all CPUs since boot
    (/proc/stat). Busy is user+nice+system+irq+softirq (guest time is
    inside user). Interrupts count as busy because a tick that falls in
    one is also charged to the stime of the process it interrupted (loopback
    TCP is mostly softirq work done in the sender's context): without
    them the bench's own CPU exceeded the machine's busy time by exactly
    the interrupt time. The interrupt part is also reported alone."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:]]
                v += [0] * (8 - len(v))
                user, nice, system, _idle, iowait, irq, softirq, steal = v[:8]
                return {"busy": user + nice + system + irq + softirq, "irq": irq + softirq,
                        "steal": steal, "iowait": iowait}
    raise RuntimeError("no cpu line in /proc/stat")


def read_procs():
    """{pid: (ppid, own ticks, reaped children's ticks)} for every process:
    utime+stime and cutime+cstime."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        # fields[0] is the state (field 3 of stat(5)): ppid is field 4,
        # utime..cstime fields 14..17.
        out[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                          int(fields[13]) + int(fields[14]))
    return out


def judge(wall_s, foreign_s, peak_cores, steal_s):
    """Why a phase of wall_s seconds with foreign_s seconds of foreign CPU
    (at most peak_cores in one sample, None without a sample) and steal_s
    of steal is noisy: a list of reasons, empty when it was quiet."""
    why = []
    # A phase of a fraction of a second is judged as if it lasted
    # SHORT_PHASE_S: a few ticks of rounding are not foreign load.
    if foreign_s > FOREIGN_CORES_MAX * max(wall_s, SHORT_PHASE_S):
        why.append(f"foreign CPU {foreign_s / wall_s:.2f} cores on average")
    if peak_cores is not None and peak_cores > FOREIGN_PEAK_CORES_MAX:
        why.append(f"foreign CPU {peak_cores:.2f} cores in one second")
    if steal_s / wall_s > STEAL_CORES_MAX:
        why.append(f"steal {steal_s / wall_s:.2f} cores")
    return why


class Ledger:
    """Per-phase load and CPU accounting. named() returns {group: pid} of
    the processes whose trees are attributed by name (servers, broker,
    cluster); anything else below the driver is "load tools"."""

    def __init__(self, named):
        self.named = named
        self.driver = os.getpid()
        self.phases = {}
        self.run_start_load = loadavg()
        self._lock = threading.Lock()
        self._current = None   # [name, peak foreign cores so far or None]
        self._halt = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def snapshot(self):
        """The time, the machine's ticks, the ticks of every process
        ("all", keyed by pid) and the group of each of the bench's
        ("bench", {key: (group, ticks)}). The driver appears twice: its
        own ticks under the key -pid (group "driver"), its reaped
        children's under pid (group "load tools")."""
        procs = read_procs()
        t = time.monotonic()
        machine = machine_ticks()
        roots = {pid: name for name, pid in self.named().items() if pid}
        owner = {}

        def group_of(pid):
            chain = []
            g = None
            while pid and pid in procs and len(chain) < 64:
                if pid in owner:
                    g = owner[pid]
                    break
                chain.append(pid)
                if pid in roots:
                    g = roots[pid]
                    break
                if pid == self.driver:
                    g = "load tools"
                    break
                pid = procs[pid][0]
            for p in chain:
                owner[p] = g
            return g

        every = {pid: own + children for pid, (_, own, children) in procs.items()}
        bench = {}
        for pid in procs:
            g = group_of(pid)
            if g is not None:
                bench[pid] = (g, every[pid])
        if self.driver in procs:
            _, own, children = procs[self.driver]
            every[-self.driver] = own
            every[self.driver] = children
            bench[-self.driver] = ("driver", own)
            bench[self.driver] = ("load tools", children)
        return {"t": t, "machine": machine, "all": every, "bench": bench}

    @staticmethod
    def _diff(a, b):
        """CPU between two snapshots, by group. A process's ticks count
        from what they were at a (0 if it did not exist: it started in
        between), whether or not it belonged to a group then (the broker
        and the cluster are named once started). A process of the bench
        that exited in between was reaped by its parent, whose cutime now
        holds its final ticks: its ticks at a are taken off again."""
        wall = max(b["t"] - a["t"], 1e-6)
        ticks = {g: 0 for g, _ in b["bench"].values()}
        for key, (g, n) in b["bench"].items():
            ticks[g] += n - a["all"].get(key, 0)
        for key, (g, n) in a["bench"].items():
            if key not in b["all"]:
                ticks[g] = ticks.get(g, 0) - n
        cpu = {g: max(0, n) / CLK_TCK for g, n in ticks.items()}
        bench = sum(cpu.values())
        busy = (b["machine"]["busy"] - a["machine"]["busy"]) / CLK_TCK
        return {"wall": wall, "cpu": cpu, "bench": bench, "busy": busy,
                "foreign": max(0.0, busy - bench),
                "irq": (b["machine"]["irq"] - a["machine"]["irq"]) / CLK_TCK,
                "steal": (b["machine"]["steal"] - a["machine"]["steal"]) / CLK_TCK,
                "iowait": (b["machine"]["iowait"] - a["machine"]["iowait"]) / CLK_TCK}

    def _sample(self):
        prev = None
        while not self._halt.wait(SAMPLE_S):
            try:
                snap = self.snapshot()
            except (OSError, RuntimeError, ValueError, IndexError):
                prev = None
                continue
            with self._lock:
                if prev is not None and self._current is not None:
                    d = self._diff(prev, snap)
                    peak = self._current[1]
                    self._current[1] = max(peak or 0.0, d["foreign"] / d["wall"])
            prev = snap

    def begin(self, name):
        with self._lock:
            self._current = [name, None]
        return {"load": loadavg(), "snap": self.snapshot()}

    def end(self, name, start):
        snap = self.snapshot()
        load = loadavg()
        with self._lock:
            peak = self._current[1] if self._current else None
            self._current = None
        d = self._diff(start["snap"], snap)
        wall = d["wall"]
        rec = {
            "seconds": round(wall, 2),
            "load_before": list(start["load"]), "load_after": list(load),
            "cpu_s": {g: round(v, 2) for g, v in d["cpu"].items()},
            "bench_cpu_s": round(d["bench"], 2),
            "machine_busy_s": round(d["busy"], 2),
            "foreign_cpu_s": round(d["foreign"], 2),
            "foreign_cores": round(d["foreign"] / wall, 3),
            "foreign_cores_max_1s": round(peak, 3) if peak is not None else None,
            "irq_cores": round(d["irq"] / wall, 3),
            "steal_cores": round(d["steal"] / wall, 3),
            "iowait_cores": round(d["iowait"] / wall, 3),
        }
        why = judge(wall, d["foreign"], peak, d["steal"])
        rec["noisy"] = bool(why)
        rec["why"] = why
        self.phases[name] = rec
        return rec

    def stop(self):
        self._halt.set()
        self._sampler.join(5)

    def summary(self):
        """What the JSON's "discipline" holds, and the closing verdict."""
        noisy = [n for n, r in self.phases.items() if r["noisy"]]
        notes = []
        if self.run_start_load[0] > RUN_START_LOAD_MAX:
            notes.append(f"load average {self.run_start_load[0]:.2f} before the run started "
                         f"anything (idle: < {RUN_START_LOAD_MAX}): the machine was not idle "
                         f"when the run began")
        return {"run_start_load": list(self.run_start_load),
                "thresholds": {"foreign_cores": FOREIGN_CORES_MAX,
                               "foreign_cores_1s": FOREIGN_PEAK_CORES_MAX,
                               "steal_cores": STEAL_CORES_MAX,
                               "run_start_load_1m": RUN_START_LOAD_MAX},
                "noisy_phases": noisy, "notes": notes,
                "noisy": bool(noisy or notes)}
