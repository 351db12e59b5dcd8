#!/usr/bin/python3
"""`make bench`: the speed of the system against the limits of this machine.

    bench/run.py [--build build/release] [--quick] [--results bench/results]
                 [--db sqlite|postgres] [--scale [--scale-sizes N,N,...]]

Starts, on 127.0.0.1 and in a fresh temporary folder: a private RabbitMQ
node (scripts/rabbitmq.sh), the three services of BUILD/bin on fresh SQLite
files (--db postgres: on databases of a private PostgreSQL cluster,
scripts/postgres.sh, synchronous_commit=on), and bench/hello (a
libmicrohttpd hello-world server). Then measures, each figure after a
warm-up and as the median of several runs:

  raw limits  hello-world GET and POST (wrk), SQLite durable commits (1 and
              100 rows per transaction; with --db postgres, PostgreSQL's from
              1 and 64 clients, bench/pg_commit), RabbitMQ publish with
              confirms and consume with multiple-ack (BUILD/bench/*, built by
              bench/Makefile);
  services    POST orders, POST users, GET orders?limit=10, GET invoices
              (wrk, 2 threads, 64 connections): requests/s, latency
              p50/p99/p99.9, server CPU per request;
  pipeline    bench/pipeline.py: sustained events/s from POST to invoice,
              and freshness at half that rate;
  memory      VmRSS of each service idle, and its peak under the loads.

Each raw limit is measured next to the figures compared with it: the
hello-world runs alternate with the service runs of the same method, the
SQLite runs come just before the POST runs, the RabbitMQ runs just before
the pipeline. Prints one table (figure, value, raw limit, ratio, target)
and writes the same as JSON to RESULTS/<UTC time>-<git short sha>.json.
Every phase records its load average and the CPU time of the run's own
processes and of the rest of the machine (bench/discipline.py); the table
marks the figures of phases with foreign load and ends with a verdict.
With --scale, measures instead GET orders, GET invoice and POST orders at
each of the sizes (orders held), seeding through the order service.
Stops exactly what it started, by PID, on every exit path.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import ports  # noqa: E402  (scripts/ports.py: the port registry)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline  # noqa: E402  (bench/pipeline.py: its keep-alive Client)
import discipline  # noqa: E402  (bench/discipline.py: foreign load per phase)
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVICES = ("user", "order", "invoice")
PG_BIN = os.environ.get("PG_BIN") or "/usr/lib/postgresql/15/bin"
PG_USER = PG_PASSWORD = "postgres"   # scripts/postgres.sh's superuser
PG_START_TIMEOUT_S = 180
PG_SCHEMA = "demo"    # where the services keep their tables unless the URL says otherwise
PG_CLIENTS = (1, 64)  # raw commit rate: one committer, and as many as wrk's connections
WRK_THREADS = 2
WRK_CONNECTIONS = 64
WRK_TIMEOUT = "10s"
READY_TIMEOUT_S = 30
SEED_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
RSS_SAMPLE_S = 0.1
MAX_ERROR_SHARE = 0.001  # a figure with more non-2xx answers is flagged
SEED_MONTH, SEED_YEAR = 4, 2025
MQ_WARMUP_COUNT = 1000
SCALE_SIZES = (10_000, 100_000, 1_000_000)
SCALE_BATCH = 1000             # orders per seeding request: the API's largest array
SCALE_CLIENTS = 8              # concurrent seeding connections
SCALE_USER_BASE = 5_000_000    # user ids of the seeded orders
SCALE_ORDERS_PER_USER = 10
SCALE_MONTHS = 3               # a user's orders spread over Jan..Mar of SCALE_YEAR
SCALE_YEAR = 2024
SCALE_DRAIN_MIN_RATE = 50      # events/s: bounds the wait for the invoice side
SCALE_POST_TIMING = {"warmup_s": 1, "runs": 3, "duration_s": 1}
MQ_MAX_COUNT = 200000

# How long and how often; QUICK=1 keeps the whole run under two minutes.
PROFILES = {
    "full": {"warmup_s": 3, "runs": 5, "duration_s": 5,
             "sqlite_runs": 5, "sqlite_s": 2.0, "mq_runs": 5, "mq_s": 4.0,
             "drain_timeout_s": 60,
             "pipeline": ["--step-s", "6", "--factor", "1.5", "--bisect", "2",
                          "--repeats", "3", "--warmup-s", "3", "--freshness-s", "15",
                          "--drain-timeout", "60"]},
    "quick": {"warmup_s": 1, "runs": 3, "duration_s": 1,
              "sqlite_runs": 3, "sqlite_s": 0.5, "mq_runs": 3, "mq_s": 1.0,
              "drain_timeout_s": 5,
              "pipeline": ["--step-s", "3", "--factor", "2", "--bisect", "0",
                           "--repeats", "1", "--warmup-s", "1", "--freshness-s", "4",
                           "--drain-timeout", "10"]},
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- processes

class Stopped(Exception):
    pass


def on_signal(signum, _frame):
    raise Stopped(f"signal {signum}")


class Started:
    """What this run started, so that every exit path stops exactly that."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []        # (name, Popen)
        self.broker_dir = None
        self.pg_dir = None

    def spawn(self, name, argv, log_path):
        with open(log_path, "wb") as logf:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        self.procs.append((name, p))
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} did not stop in {STOP_TIMEOUT_S}s; killing it")
                p.kill()
                p.wait(5)
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_all(self):
        for _, p in reversed(list(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                log(f"stopping pid {p.pid}: {e}")
        if self.broker_dir:
            subprocess.run([os.path.join(ROOT, "scripts/rabbitmq.sh"), "stop", self.broker_dir],
                           timeout=120, check=False)
            self.broker_dir = None
        if self.pg_dir:
            subprocess.run([os.path.join(ROOT, "scripts/postgres.sh"), "stop", self.pg_dir],
                           timeout=120, check=False)
            self.pg_dir = None


_reserved = []  # ports held for the whole run (scripts/ports.py)


def free_port():
    """A loopback port from the project's registry, held until exit."""
    res = ports.reserve()
    _reserved.append(res)
    return res.port


def listeners(port):
    """Listening TCP sockets on 127.0.0.1:port or *:port (IPv4)."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            addr, state = fields[1], fields[3]
            ip, p = addr.split(":")
            if state == "0A" and int(p, 16) == port and ip in ("0100007F", "00000000"):
                n += 1
    return n


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_rss_parts_kib(pid):
    """VmRSS split into anonymous memory and mapped files (shared libraries,
    which other processes share) from /proc/PID/status."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                    out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def proc_cpu_s(pid):
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class RssSampler(threading.Thread):
    """Peak VmRSS of some processes while running."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = {name: 0 for name in pids}
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for name, pid in self.pids.items():
                kib = proc_rss_kib(pid)
                if kib and kib > self.peak[name]:
                    self.peak[name] = kib
            self.halt.wait(RSS_SAMPLE_S)

    def stop(self):
        self.halt.set()
        self.join()
        return self.peak


# ---------------------------------------------------------------- HTTP

def request(port, method, path, body=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def metrics(port):
    status, text = request(port, "GET", "/metrics")
    out = {}
    if status == 200 and isinstance(text, str):
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
    return out


def wait_ready(port, proc):
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if request(port, "GET", "/readyz", timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------- wrk

WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_DIST = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out):
    """wrk's own lines (--latency) plus the BENCH line of our done()."""
    m = WRK_RPS.search(out)
    if not m:
        raise RuntimeError("no Requests/sec in wrk output:\n" + out)
    r = {"rps": float(m.group(1))}
    dist = {p: float(v) * UNIT_MS[u] for p, v, u in WRK_DIST.findall(out)}
    r["p50_ms"], r["p99_ms"] = dist.get("50"), dist.get("99")
    bench = [line for line in out.splitlines() if line.startswith("BENCH ")]
    if bench:
        b = json.loads(bench[-1][6:])
        r["requests"] = b["requests"]
        r["p999_ms"] = b["p999_us"] / 1000.0
        r["max_ms"] = b["max_us"] / 1000.0
    m = WRK_NON2XX.search(out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = WRK_SOCKET.search(out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return r


def run_wrk(url, script, seconds, pid, script_args=()):
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s",
            f"--timeout={WRK_TIMEOUT}", "--latency", "-s", script, url]
    if script_args:
        argv += ["--", *script_args]
    cpu0 = proc_cpu_s(pid)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                         check=True).stdout
    cpu1 = proc_cpu_s(pid)
    r = parse_wrk(out)
    if r.get("requests"):
        r["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / r["requests"]
    return r


# ---------------------------------------------------------------- the run

class Bench:
    def __init__(self, args):
        self.args = args
        self.p = PROFILES["quick" if args.quick else "full"]
        self.build = os.path.abspath(args.build)
        self.tmp = tempfile.mkdtemp(prefix="cqrs-bench.")
        os.chmod(self.tmp, 0o755)  # the broker runs as user rabbitmq
        self.started = Started(self.tmp)
        self.ports = {}
        self.pids = {}
        self.db = args.db
        self.res = {"db": args.db, "raw": {}, "http": {}, "rss_kib": {}, "notes": []}
        self.run_tag = str(int(time.time()))
        self.broker_pid = None
        self.pg_pid = None
        self.pg_port = None
        self.ledger = None

    # --- start and stop

    def start_broker(self):
        port = free_port()
        d = os.path.join(self.tmp, "rabbitmq")
        self.started.broker_dir = d
        subprocess.run([os.path.join(ROOT, "scripts/rabbitmq.sh"), "start", d, str(port)],
                       timeout=120, check=True)
        self.amqp_port = port
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{port}/"
        with open(os.path.join(d, "rabbitmq.pid")) as f:
            self.broker_pid = int(f.read().strip())

    def pg_url(self, dbname):
        return f"postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.pg_port}/{dbname}"

    def psql(self, dbname, sql):
        """Rows of one statement run by psql over TCP, each a list of columns."""
        r = subprocess.run(
            [os.path.join(PG_BIN, "psql"), "-h", "127.0.0.1", "-p", str(self.pg_port),
             "-U", PG_USER, "-d", dbname, "-XAtq", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             "-c", sql],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
            env=dict(os.environ, PGPASSWORD=PG_PASSWORD, PGCONNECT_TIMEOUT="10"))
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {r.stderr.strip()}")
        return [line.split("\t") for line in r.stdout.splitlines()]

    def start_postgres(self):
        """A private cluster (scripts/postgres.sh: loopback only, data in the
        run's folder) with synchronous_commit=on, set explicitly and checked,
        and one database per service plus one for the raw commit rate."""
        d = os.path.join(self.tmp, "postgres")
        os.makedirs(d)
        script = os.path.join(ROOT, "scripts/postgres.sh")
        self.started.pg_dir = d
        for attempt in range(3):
            port = free_port()
            r = subprocess.run([script, "start", d, str(port)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=PG_START_TIMEOUT_S)
            if r.returncode == 0:
                break
            log(f"PostgreSQL did not start on port {port}: {r.stdout.strip()}")
            if attempt == 2:
                raise RuntimeError("PostgreSQL did not start")
        self.pg_port = port
        with open(os.path.join(d, "postgres.pid")) as f:
            self.pg_pid = int(f.read().strip())
        self.psql("postgres", "ALTER SYSTEM SET synchronous_commit = 'on'")
        self.psql("postgres", "SELECT pg_reload_conf()")
        settings = {name: self.psql("postgres", f"SHOW {name}")[0][0] for name in (
            "server_version", "synchronous_commit", "fsync", "full_page_writes",
            "wal_sync_method", "commit_delay", "shared_buffers")}
        if settings["synchronous_commit"] != "on" or settings["fsync"] != "on":
            raise RuntimeError(f"PostgreSQL is not durable: {settings}")
        self.res["postgres_settings"] = settings
        for name in ("bench_user", "bench_order", "bench_invoice", "bench_raw"):
            subprocess.run([script, "createdb", d, str(port), name], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=PG_START_TIMEOUT_S, check=True)
        log(f"PostgreSQL {settings['server_version']} (pid {self.pg_pid}) on :{port}, "
            f"synchronous_commit={settings['synchronous_commit']}")

    def start_server(self, name, argv_for_port, ready):
        """Starts a server on a free port that no other process shares
        (SO_REUSEPORT would let two servers split one port silently)."""
        for _ in range(3):
            port = free_port()
            p = self.started.spawn(name, argv_for_port(port), os.path.join(self.tmp, name + ".log"))
            if ready(port, p) and listeners(port) == 1:
                return port, p
            log(f"{name} on port {port} not ready or port shared; trying another port")
            self.started.stop(p)
        raise RuntimeError(f"could not start {name}; see {self.tmp}/{name}.log")

    def start_all(self):
        bench_bin = os.path.join(self.build, "bench")

        def hello_ready(port, proc):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if request(port, "GET", "/", timeout=2)[0] == 200:
                        return True
                except OSError:
                    time.sleep(0.05)
            return False

        self.ports["hello"], p = self.start_server(
            "hello", lambda port: [os.path.join(bench_bin, "hello"), str(port)], hello_ready)
        self.pids["hello"] = p.pid
        for svc in SERVICES:
            binary = os.path.join(self.build, "bin", f"{svc}-service")
            db = (f"sqlite:{os.path.join(self.tmp, f'{svc}-service.db')}"
                  if self.db == "sqlite" else self.pg_url(f"bench_{svc}"))
            self.ports[svc], p = self.start_server(
                f"{svc}-service",
                lambda port, b=binary, d=db: [b, "--port", str(port), "--database-url",
                                              d, "--amqp-url", self.amqp_url],
                wait_ready)
            self.pids[svc] = p.pid
        log("started: " + ", ".join(f"{k} :{v}" for k, v in self.ports.items()))

    # --- helpers

    def url(self, svc, path):
        return f"http://127.0.0.1:{self.ports[svc]}{path}"

    def drain(self, timeout_s=None, progress=False):
        """Waits (bounded) until the writers' outboxes are published and the
        invoice service consumed every published event."""
        deadline = time.monotonic() + (timeout_s or self.p["drain_timeout_s"])
        last = None
        next_log = time.monotonic() + 10
        while time.monotonic() < deadline:
            um, om, im = (metrics(self.ports[s]) for s in SERVICES)
            published = um.get("events_published_total", 0) + om.get("events_published_total", 0)
            consumed = sum(v for k, v in im.items() if k.startswith("events_total{"))
            pending = um.get("outbox_pending", 0) + om.get("outbox_pending", 0)
            state = (published, consumed)
            if pending == 0 and consumed >= published and state == last:
                return True
            if progress and time.monotonic() >= next_log:
                log(f"draining: {pending:.0f} in the outboxes, "
                    f"{published - consumed:.0f} published, not yet consumed")
                next_log += 10
            last = state
            time.sleep(0.2)
        self.res["notes"].append("a drain between figures timed out")
        log("drain timed out; measuring anyway")
        return False

    # --- phases

    def seed(self):
        """A customer with an account and five April orders, whose invoice
        the GET invoices figure reads, and a hundred other orders."""
        st, user = request(self.ports["user"], "POST", "/system-api/users",
                           {"name": "Bench Reader",
                            "email": f"reader-{self.run_tag}@bench.example"})
        assert st == 201, (st, user)
        st, acct = request(self.ports["user"], "POST", "/system-api/accounts",
                           {"user_id": user["id"], "address1": "1 Bench Way",
                            "city": "Loadville", "state": "CA", "zip": "12345"})
        assert st == 201, (st, acct)
        orders = [{"user_id": user["id"], "amount": 10 + i, "description": f"Seed order {i}",
                   "created_at": f"{SEED_YEAR}-{SEED_MONTH:02d}-{i + 1:02d}T10:00:00Z"}
                  for i in range(5)]
        orders += [{"user_id": 500 + i, "amount": 1.5, "description": "Filler"} for i in range(100)]
        st, body = request(self.ports["order"], "POST", "/order-service/orders", orders)
        assert st == 201, (st, body)
        self.invoice_path = (f"/invoice-service/invoices?user_id={user['id']}"
                             f"&month={SEED_MONTH}&year={SEED_YEAR}")
        deadline = time.monotonic() + SEED_TIMEOUT_S
        while time.monotonic() < deadline:
            st, inv = request(self.ports["invoice"], "GET", self.invoice_path)
            if (st == 200 and len(inv) == 1 and inv[0]["order_count"] == 5
                    and inv[0]["name"] and inv[0]["shipping_address"]):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the seeded invoice did not appear in {SEED_TIMEOUT_S}s")

    def rss_idle(self):
        time.sleep(1.0)
        self.res["rss_kib"]["idle"] = {s: proc_rss_kib(self.pids[s]) for s in SERVICES}
        self.res["rss_kib"]["idle_parts"] = {s: proc_rss_parts_kib(self.pids[s])
                                             for s in SERVICES}
        self.res["rss_kib"]["idle_parts"]["hello"] = proc_rss_parts_kib(self.pids["hello"])

    def sqlite_raw(self):
        prog = os.path.join(self.build, "bench", "sqlite_commit")
        path = os.path.join(self.tmp, "raw-sqlite.db")
        out = {}
        for rows in ("1", "100"):
            runs = []
            for i in range(self.p["sqlite_runs"] + 1):  # the first is the warm-up
                seconds = self.p["sqlite_s"] if i else self.p["sqlite_s"] / 2
                r = subprocess.run([prog, path, rows, str(seconds)], capture_output=True,
                                   text=True, timeout=seconds + 60, check=True)
                if i:
                    runs.append(json.loads(r.stdout))
            out[rows] = {"commits_per_s": median(r["commits_per_s"] for r in runs),
                         "rows_per_s": median(r["rows_per_s"] for r in runs),
                         "runs_rows_per_s": [r["rows_per_s"] for r in runs]}
            log(f"sqlite {rows} row(s)/transaction: {out[rows]['rows_per_s']:.0f} rows/s")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
        self.res["raw"]["sqlite"] = out

    def pg_raw(self):
        """PostgreSQL's raw commit rate, on the same cluster as the services:
        1-row transactions from 1 and from WRK_CONNECTIONS clients (the
        server shares a WAL flush among concurrent commits, so many clients
        is the honest limit for 64 waiting requests), and 100-row ones."""
        prog = os.path.join(self.build, "bench", "pg_commit")
        conninfo = (f"host=127.0.0.1 port={self.pg_port} dbname=bench_raw user={PG_USER} "
                    f"password={PG_PASSWORD} connect_timeout=10")
        out = {}
        for clients, rows in [(c, 1) for c in PG_CLIENTS] + [(1, 100)]:
            runs = []
            for i in range(self.p["sqlite_runs"] + 1):  # the first is the warm-up
                seconds = self.p["sqlite_s"] if i else self.p["sqlite_s"] / 2
                r = subprocess.run([prog, conninfo, str(clients), str(rows), str(seconds)],
                                   capture_output=True, text=True, timeout=seconds + 60)
                if r.returncode != 0:
                    raise RuntimeError(f"pg_commit failed: {r.stderr.strip()}")
                if i:
                    runs.append(json.loads(r.stdout))
            key = f"{rows}x{clients}"
            out[key] = {"clients": clients, "rows_per_txn": rows,
                        "commits_per_s": median(r["commits_per_s"] for r in runs),
                        "rows_per_s": median(r["rows_per_s"] for r in runs),
                        "runs_rows_per_s": [r["rows_per_s"] for r in runs]}
            log(f"postgres {rows} row(s)/transaction, {clients} client(s): "
                f"{out[key]['rows_per_s']:.0f} rows/s")
        self.psql("bench_raw", "DROP TABLE IF EXISTS bench_raw_orders")
        self.res["raw"]["postgres"] = out

    def mq_raw(self):
        """A warm-up of MQ_WARMUP_COUNT messages, whose publish rate sizes
        the measured runs to about mq_s seconds of publishing each."""
        prog = os.path.join(self.build, "bench", "mq_rate")

        def one(count):
            r = subprocess.run([prog, "127.0.0.1", str(self.amqp_port), str(count)],
                               capture_output=True, text=True, timeout=300, check=True)
            return json.loads(r.stdout)

        warm = one(MQ_WARMUP_COUNT)
        count = int(min(MQ_MAX_COUNT, max(MQ_WARMUP_COUNT,
                                          warm["publish_per_s"] * self.p["mq_s"])))
        runs = [one(count) for _ in range(self.p["mq_runs"])]
        self.res["raw"]["rabbitmq"] = {
            "publish_per_s": median(r["publish_per_s"] for r in runs),
            "consume_per_s": median(r["consume_per_s"] for r in runs),
            "publish_runs": [r["publish_per_s"] for r in runs],
            "consume_runs": [r["consume_per_s"] for r in runs],
            "messages_per_run": count}
        log(f"rabbitmq: publish {self.res['raw']['rabbitmq']['publish_per_s']:.0f}/s, "
            f"consume {self.res['raw']['rabbitmq']['consume_per_s']:.0f}/s")

    def http_round_robin(self, targets, drain_each, store=None, timing=None):
        """targets: [(key, server, url, script, args)]. A warm-up of each,
        then rounds in which every target runs once; with drain_each, every
        run waits for the events of the previous ones to be consumed. The
        figures go to store (default: the run's "http"); timing overrides
        the profile's warmup_s, runs and duration_s."""
        store = self.res["http"] if store is None else store
        timing = {**self.p, **(timing or {})}
        wrk_dir = os.path.join(ROOT, "bench", "wrk")
        runs = {t[0]: [] for t in targets}

        def one(t, seconds, i):
            key, server, url, script, args = t
            if drain_each:
                self.drain()
            return run_wrk(url, os.path.join(wrk_dir, script), seconds, self.pids[server],
                           [a.format(i=i, tag=self.run_tag) for a in args])

        for t in targets:
            one(t, timing["warmup_s"], "w")
        for i in range(timing["runs"]):
            for t in targets:
                r = one(t, timing["duration_s"], i)
                runs[t[0]].append(r)
                log(f"{t[0]} run {i + 1}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms"
                    + (f", {r['non2xx']} non-2xx" if r["non2xx"] else ""))
        for key, rs in runs.items():
            total = sum(r.get("requests", 0) for r in rs)
            errors = sum(r["non2xx"] + r["socket_errors"] for r in rs)
            store[key] = {
                "rps": median(r["rps"] for r in rs),
                "p50_ms": median(r["p50_ms"] for r in rs),
                "p99_ms": median(r["p99_ms"] for r in rs),
                "p999_ms": median(r.get("p999_ms") for r in rs),
                "cpu_us_per_req": median(r.get("cpu_us_per_req") for r in rs),
                "requests": total, "errors": errors,
                "runs_rps": [round(r["rps"], 1) for r in rs]}
            if total and errors / total > MAX_ERROR_SHARE:
                self.res["notes"].append(f"{key}: {errors} of {total} answers were errors")

    def post_targets(self):
        return [
            ("hello POST", "hello", self.url("hello", "/order-service/orders"),
             "post_order.lua", []),
            ("POST /order-service/orders", "order", self.url("order", "/order-service/orders"),
             "post_order.lua", []),
        ]

    def get_targets(self):
        return [
            ("hello GET", "hello", self.url("hello", "/order-service/orders?limit=10"),
             "get.lua", []),
            ("GET /order-service/orders?limit=10", "order",
             self.url("order", "/order-service/orders?limit=10"), "get.lua", []),
            ("GET /invoice-service/invoices", "invoice",
             self.url("invoice", self.invoice_path), "get.lua", []),
        ]

    def post_phase(self):
        self.http_round_robin(self.post_targets() + [
            ("POST /system-api/users", "user", self.url("user", "/system-api/users"),
             "post_user.lua", ["{tag}r{i}"]),
        ], drain_each=True)

    def row_counts(self):
        """Rows in the services' tables (read-only peek, for the record:
        the cost of a query may grow with them)."""
        counts = {}
        for svc, tables in (("user", ("users",)), ("order", ("orders", "outbox")),
                            ("invoice", ("invoices", "invoice_lines"))):
            if self.db == "postgres":
                try:
                    for t in tables:
                        counts[f"{svc}.{t}"] = int(
                            self.psql(f"bench_{svc}",
                                      f"SELECT count(*) FROM {PG_SCHEMA}.{t}")[0][0])
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    counts[svc] = f"unavailable: {e}"
                continue
            path = os.path.join(self.tmp, f"{svc}-service.db")
            try:
                c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                try:
                    for t in tables:
                        counts[f"{svc}.{t}"] = c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                finally:
                    c.close()
            except sqlite3.Error as e:
                counts[svc] = f"unavailable: {e}"
        return counts

    def get_phase(self):
        self.drain()  # GETs create no events: one drain is enough
        self.res["rows_at_get"] = self.row_counts()
        self.http_round_robin(self.get_targets(), drain_each=False)

    # --- the scale curve (--scale)

    def seed_orders(self, count):
        """Posts count orders through the order service, SCALE_BATCH per
        request (one transaction each) from SCALE_CLIENTS keep-alive
        connections: the same path as any client's, so every order also
        goes through the outbox, the broker and the invoice projection.
        Order k belongs to user SCALE_USER_BASE + k // SCALE_ORDERS_PER_USER
        and to one of SCALE_MONTHS months of SCALE_YEAR, so the invoices
        grow with the orders (about one per three orders)."""
        lock = threading.Lock()
        state = {"next": self.scale_next, "end": self.scale_next + count, "error": None}

        def order(k):
            return {"user_id": SCALE_USER_BASE + k // SCALE_ORDERS_PER_USER, "amount": 9.99,
                    "description": "scale order",
                    "created_at": f"{SCALE_YEAR}-{1 + k % SCALE_MONTHS:02d}-"
                                  f"{1 + k % 28:02d}T12:00:00Z"}

        def worker():
            client = pipeline.Client(self.url("order", ""))
            try:
                while True:
                    with lock:
                        k = state["next"]
                        n = min(SCALE_BATCH, state["end"] - k)
                        if n <= 0 or state["error"]:
                            return
                        state["next"] += n
                    body = json.dumps([order(k + i) for i in range(n)],
                                      separators=(",", ":")).encode()
                    status, data = client.request("POST", "/order-service/orders", body)
                    if status != 201:
                        with lock:
                            state["error"] = f"seeding POST answered {status}: {data[:200]!r}"
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    state["error"] = f"seeding POST failed: {e}"
            finally:
                client.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(SCALE_CLIENTS)]
        for t in threads:
            t.start()
        last = time.monotonic()
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                log(f"seeding: {state['next'] - self.scale_next:,} of {count:,} orders posted")
        if state["error"]:
            raise RuntimeError(state["error"])
        self.scale_next = state["end"]

    def grow_to(self, size, point):
        """Adds orders until the order service holds size orders, then waits
        until the invoice service has applied every event."""
        have = self.row_counts()["order.orders"]
        add = max(0, size - have)
        t0 = time.monotonic()
        self.seed_orders(add)
        t1 = time.monotonic()
        log(f"seeding: {add:,} orders posted in {t1 - t0:.0f}s; waiting for the invoice side")
        if not self.drain(max(self.p["drain_timeout_s"], add / SCALE_DRAIN_MIN_RATE),
                          progress=True):
            raise RuntimeError(f"the invoice side did not catch up with {size:,} orders")
        t2 = time.monotonic()
        self.scale_seed_s += t2 - t0
        point.update({"seeded_orders": add, "post_seconds": round(t1 - t0, 1),
                      "seed_seconds_total": round(self.scale_seed_s, 1),
                      "posted_per_s": round(add / (t1 - t0), 1) if add else None,
                      "seed_seconds": round(t2 - t0, 1),
                      "applied_per_s": round(add / (t2 - t0), 1) if add else None})
        log(f"seeding to {size:,}: {add:,} orders in {t2 - t0:.0f}s "
            f"(posted in {t1 - t0:.0f}s, on the invoices {t2 - t1:.0f}s later)")

    def scale_point(self, point):
        point["rows_before"] = self.row_counts()
        store = {}
        self.http_round_robin(self.get_targets(), drain_each=False, store=store)
        # Every POST adds an order: short runs, so that a point adds few
        # orders (a few seconds' worth) to the size the next point starts from.
        self.http_round_robin(self.post_targets(), drain_each=True, store=store,
                              timing=SCALE_POST_TIMING)
        point["http"] = store
        point["rows_after"] = self.row_counts()

    def scale_phases(self):
        self.scale_next = 0
        self.scale_seed_s = 0.0
        self.res["scale"] = []
        for size in self.args.scale_sizes:
            point = {"orders": size}
            self.phase(f"seed to {size:,}", lambda: self.grow_to(size, point))
            self.phase(f"measure at {size:,}", lambda: self.scale_point(point))
            point["phase"] = f"measure at {size:,}"
            self.res["scale"].append(point)

    def pipeline_phase(self):
        self.drain()
        argv = [sys.executable, os.path.join(ROOT, "bench", "pipeline.py"),
                "--order-url", self.url("order", ""), "--invoice-url", self.url("invoice", ""),
                *self.p["pipeline"]]
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=900, check=True)
        self.res["pipeline"] = json.loads(r.stdout)

    def phase(self, name, fn):
        """Runs one phase, recording its time, load and CPU (discipline.py)."""
        t = time.monotonic()
        start = self.ledger.begin(name)
        fn()
        rec = self.ledger.end(name, start)
        self.res["phase_seconds"][name] = round(time.monotonic() - t, 1)
        log(f"phase {name}: {rec['seconds']:.1f}s, bench CPU {rec['bench_cpu_s']:.1f}s, "
            f"foreign CPU {rec['foreign_cores']:.2f} cores"
            + (" (NOISY: " + "; ".join(rec["why"]) + ")" if rec["noisy"] else ""))

    def named_pids(self):
        """The processes whose trees the ledger attributes by name."""
        named = {f"{s}-service": self.pids.get(s) for s in SERVICES}
        named.update({"hello": self.pids.get("hello"), "rabbitmq": self.broker_pid,
                      "postgres": self.pg_pid})
        return named

    def db_bytes(self):
        if self.db == "postgres":
            return {f"bench_{s}": int(self.psql("postgres",
                                                f"SELECT pg_database_size('bench_{s}')")[0][0])
                    for s in SERVICES}
        return {f: os.path.getsize(os.path.join(self.tmp, f))
                for f in sorted(os.listdir(self.tmp)) if "-service.db" in f}

    def run(self):
        self.res["load_before"] = os.getloadavg()
        self.res["phase_seconds"] = {}
        self.ledger = discipline.Ledger(self.named_pids)
        log(f"{'QUICK ' if self.args.quick else ''}run on {self.db} in {self.tmp}")
        try:
            self.run_phases()
        finally:
            self.ledger.stop()
            self.res["discipline"] = {"phases": self.ledger.phases, **self.ledger.summary()}

    def run_phases(self):
        self.phase("broker start", self.start_broker)
        if self.db == "postgres":
            self.phase("postgres start", self.start_postgres)
        self.phase("servers start", self.start_all)
        self.rss_idle()
        self.phase("seed", self.seed)
        sampler = RssSampler({s: self.pids[s] for s in SERVICES})
        sampler.start()
        try:
            if self.args.scale:
                self.scale_phases()
            else:
                if self.db == "postgres":
                    self.phase("postgres", self.pg_raw)
                else:
                    self.phase("sqlite", self.sqlite_raw)
                self.phase("POST", self.post_phase)
                self.phase("GET", self.get_phase)
                self.phase("rabbitmq", self.mq_raw)
                self.phase("pipeline", self.pipeline_phase)
        finally:
            self.res["rss_kib"]["peak_under_load"] = sampler.stop()
        self.res["load_after"] = os.getloadavg()
        self.res["rows_at_end"] = self.row_counts()
        self.res["db_bytes"] = self.db_bytes()
        log("phases: " + ", ".join(f"{k} {v}s" for k, v in self.res["phase_seconds"].items()))

    def cleanup(self):
        # A second Ctrl-C must not cut the stopping short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.started.stop_all()
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- the table

def ratio(a, b):
    return a / b if a is not None and b else None


def figures(res):
    """The table's rows: (figure, value, unit, raw-limit name, raw limit,
    ratio, target text, met or None)."""
    rows = []
    raw, h = res["raw"], res["http"]
    sq, pg, mq = raw.get("sqlite"), raw.get("postgres"), raw["rabbitmq"]
    phase = [None]  # the phase whose measuring the rows added next come from

    def add(name, value, unit, limit_name=None, limit=None, target=None, met=None, r=None):
        rows.append({"figure": name, "value": value, "unit": unit, "raw_limit_name": limit_name,
                     "raw_limit": limit, "ratio": r if r is not None else ratio(value, limit),
                     "target": target, "met": met, "phase": phase[0]})

    phase[0] = "GET"
    add("raw: hello-world GET", h["hello GET"]["rps"], "req/s")
    phase[0] = "POST"
    add("raw: hello-world POST", h["hello POST"]["rps"], "req/s")
    if sq:
        phase[0] = "sqlite"
        add("raw: SQLite commits, 1 row/txn", sq["1"]["commits_per_s"], "commits/s")
        add("raw: SQLite rows, 100 rows/txn", sq["100"]["rows_per_s"], "rows/s")
    if pg:
        phase[0] = "postgres"
        for c in PG_CLIENTS:
            add(f"raw: PostgreSQL commits, 1 row/txn, {c} client{'s' if c > 1 else ''}",
                pg[f"1x{c}"]["commits_per_s"], "commits/s")
        add("raw: PostgreSQL rows, 100 rows/txn", pg["100x1"]["rows_per_s"], "rows/s")
    phase[0] = "rabbitmq"
    add("raw: RabbitMQ publish, confirm/1000", mq["publish_per_s"], "msg/s")
    add("raw: RabbitMQ consume, multiple-ack", mq["consume_per_s"], "msg/s")

    def endpoint(key, hello_key, share, cpu_times=None):
        e, base = h[key], h[hello_key]
        r = ratio(e["rps"], base["rps"])
        if share is None:
            add(key, e["rps"], "req/s", hello_key, base["rps"])
        else:
            add(key, e["rps"], "req/s", hello_key, base["rps"], f">= {share:.2f}",
                r is not None and r >= share)
        for q in ("p50", "p99", "p999"):
            label = {"p50": "p50", "p99": "p99", "p999": "p99.9"}[q]
            add(f"  latency {label}", e[f"{q}_ms"], "ms", hello_key, base[f"{q}_ms"])
        if cpu_times is None:
            add("  server CPU per request", e["cpu_us_per_req"], "us", hello_key,
                base["cpu_us_per_req"])
        else:
            c = ratio(e["cpu_us_per_req"], base["cpu_us_per_req"])
            add("  server CPU per request", e["cpu_us_per_req"], "us", hello_key,
                base["cpu_us_per_req"], f"<= {cpu_times:g}x", c is not None and c <= cpu_times)
        return e

    phase[0] = "POST"
    po = endpoint("POST /order-service/orders", "hello POST", 0.50, cpu_times=3)
    if sq:
        add("  POST orders vs 1-row commits", po["rps"], "req/s", "SQLite commits/s",
            sq["1"]["commits_per_s"])
    if pg:
        for c in sorted(PG_CLIENTS, reverse=True):
            add(f"  POST orders vs 1-row commits, {c} client{'s' if c > 1 else ''}", po["rps"],
                "req/s", f"PostgreSQL commits/s, {c} client{'s' if c > 1 else ''}",
                pg[f"1x{c}"]["commits_per_s"])
    endpoint("POST /system-api/users", "hello POST", None)
    phase[0] = "GET"
    endpoint("GET /order-service/orders?limit=10", "hello GET", 0.70, cpu_times=2)
    endpoint("GET /invoice-service/invoices", "hello GET", 0.70, cpu_times=2.5)
    phase[0] = "pipeline"

    pl = res.get("pipeline", {})
    sus = pl.get("sustained_per_s")
    r = ratio(sus, mq["publish_per_s"])
    runs = f"kept up {pl.get('sustained_runs_kept_up', 0)}/{pl.get('sustained_runs', 0)}"
    all_kept_up = pl.get("sustained_runs", 0) > 0 and \
        pl.get("sustained_runs_kept_up", 0) == pl.get("sustained_runs", 0)
    add(f"pipeline sustained, POST -> invoice ({runs})", sus, "events/s", "RabbitMQ publish",
        mq["publish_per_s"], ">= 0.80, all kept up", r is not None and r >= 0.80 and all_kept_up)
    add(f"  first rate behind ({pl.get('bottleneck', '?')})",
        pl.get("first_behind_offered_per_s"), "events/s")
    fr = pl.get("freshness", {})
    p50, p99 = fr.get("p50_ms"), fr.get("p99_ms")
    add("  freshness p50 at half rate", p50, "ms", target="< 5",
        met=p50 is not None and p50 < 5)
    add("  freshness p99 at half rate", p99, "ms", target="< 25",
        met=p99 is not None and p99 < 25)
    idle = pl.get("freshness_idle", {})
    add("  freshness p50 when idle", idle.get("p50_ms"), "ms")
    p99 = idle.get("p99_ms")
    add("  freshness p99 when idle", p99, "ms", target="< 10",
        met=p99 is not None and p99 < 10)

    phase[0] = None
    for s in SERVICES:
        idle = res["rss_kib"]["idle"].get(s)
        peak = res["rss_kib"]["peak_under_load"].get(s)
        add(f"RSS {s}-service idle", idle / 1024 if idle else None, "MiB",
            target="< 10", met=idle is not None and idle / 1024 < 10)
        add(f"RSS {s}-service under load", peak / 1024 if peak else None, "MiB",
            target="< 24", met=peak is not None and peak / 1024 < 24)
    return rows


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit in ("ms", "MiB") or abs(v) < 100:
        return f"{v:,.1f}" if abs(v) >= 1 else f"{v:.2f}"
    return f"{v:,.0f}"


def noise_mark(res, phase):
    """The table's "foreign" cell: "!" and the phase's average foreign CPU
    in cores when that phase was noisy (discipline.py), else empty."""
    rec = res.get("discipline", {}).get("phases", {}).get(phase)
    if not rec or not rec["noisy"]:
        return ""
    return f"! {max(rec['foreign_cores'], rec['foreign_cores_max_1s'] or 0):.2f}"


def print_columns(head, table, out):
    widths = [max(len(x[i]) for x in table + [head]) for i in range(len(head))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*head).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for t in table:
        print(line.format(*t).rstrip(), file=out)


def print_table(rows, res, out=sys.stdout):
    head = ("figure", "value", "raw limit", "ratio", "target", "foreign")
    table = []
    for r in rows:
        limit = ""
        if r["raw_limit"] is not None:
            limit = f"{fmt(r['raw_limit'], r['unit'])} ({r['raw_limit_name']})"
        target = ""
        if r["target"]:
            target = r["target"] + ("  ok" if r["met"] else "  MISSED")
        table.append((r["figure"], f"{fmt(r['value'], r['unit'])} {r['unit']}", limit,
                      f"{r['ratio']:.2f}" if r["ratio"] is not None else "", target,
                      noise_mark(res, r.get("phase"))))
    print_columns(head, table, out)
    for n in res.get("notes", []):
        print(f"note: {n}", file=out)


SCALE_FIGURES = (("GET /order-service/orders?limit=10", "hello GET"),
                 ("GET /invoice-service/invoices", "hello GET"),
                 ("POST /order-service/orders", "hello POST"))


def print_scale(res, out=sys.stdout):
    """The scale curve: each figure at each size, beside hello-world's of
    the same minutes, and the CPU per request (the steadiest figure)."""
    head = ("orders", "invoices", "figure", "req/s", "x hello", "CPU/req", "x hello",
            "p99", "seeding (added, total time)", "foreign")
    table = []
    for pt in res.get("scale", []):
        rows = pt["rows_before"]
        for key, hello_key in SCALE_FIGURES:
            e, base = pt["http"][key], pt["http"][hello_key]
            r_rps = ratio(e["rps"], base["rps"])
            r_cpu = ratio(e["cpu_us_per_req"], base["cpu_us_per_req"])
            table.append((f"{rows.get('order.orders', 0):,}", f"{rows.get('invoice.invoices', 0):,}",
                          key, f"{fmt(e['rps'])} req/s", f"{r_rps:.2f}" if r_rps else "",
                          f"{fmt(e['cpu_us_per_req'])} us", f"{r_cpu:.2f}" if r_cpu else "",
                          f"{fmt(e['p99_ms'], 'ms')} ms",
                          f"+{pt['seeded_orders']:,} in {pt['seed_seconds']:,.0f} s, "
                          f"{pt['seed_seconds_total']:,.0f} s",
                          noise_mark(res, pt["phase"])))
    print_columns(head, table, out)


def print_discipline(res, out=sys.stdout):
    """Per phase: time, load average, the bench's CPU and the foreign CPU;
    then one closing line that says whether the run was noisy."""
    d = res.get("discipline")
    if not d:
        return
    head = ("phase", "seconds", "load 1m start/end", "bench CPU", "foreign CPU avg/max 1s",
            "steal", "")
    table = []
    for name, r in d["phases"].items():
        table.append((name, f"{r['seconds']:.1f}",
                      f"{r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}",
                      f"{r['bench_cpu_s']:.1f} s",
                      f"{r['foreign_cores']:.2f} / " + (
                          f"{r['foreign_cores_max_1s']:.2f} cores"
                          if r["foreign_cores_max_1s"] is not None else "- cores"),
                      f"{r['steal_cores']:.2f}", "NOISY" if r["noisy"] else ""))
    print(file=out)
    print_columns(head, table, out)
    worst = max((max(r["foreign_cores"], r["foreign_cores_max_1s"] or 0)
                 for r in d["phases"].values()), default=0.0)
    for n in d["notes"]:
        print(f"note: {n}", file=out)
    if d["noisy"]:
        print(f"WARNING: NOISY RUN: foreign load in {len(d['noisy_phases'])} of "
              f"{len(d['phases'])} phases ({', '.join(d['noisy_phases']) or 'none'}; up to "
              f"{worst:.2f} cores the bench's processes do not explain)"
              + (" and a busy machine at the start" if d["notes"] else "")
              + ": these figures are not results; run the bench alone.", file=out)
    else:
        print(f"quiet run: at most {worst:.2f} cores of foreign CPU in any phase, "
              f"load average {d['run_start_load'][0]:.2f} at the start.", file=out)


def git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser(description="make bench driver (see the module docstring)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build/release"))
    ap.add_argument("--quick", action="store_true", help="fewer, shorter runs (< 2 min)")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench/results"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                    help="the services' backend (postgres: a private cluster)")
    ap.add_argument("--scale", action="store_true",
                    help="measure the scale curve instead of the figures")
    ap.add_argument("--scale-sizes", default=",".join(str(n) for n in SCALE_SIZES),
                    help="orders held at each point of the scale curve, comma-separated")
    args = ap.parse_args()
    try:
        args.scale_sizes = sorted(int(x.replace("_", "")) for x in args.scale_sizes.split(","))
        if not args.scale_sizes or args.scale_sizes[0] < 1:
            raise ValueError
    except ValueError:
        sys.exit("bench: --scale-sizes wants positive integers, comma-separated")

    if os.geteuid() != 0:
        sys.exit("bench: run as root (the private RabbitMQ node runs as user rabbitmq)")
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing: run scripts/install-deps.sh")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    started_at = time.monotonic()
    bench = Bench(args)
    try:
        bench.run()
    except (Stopped, KeyboardInterrupt) as e:
        bench.cleanup()
        sys.exit(f"bench: stopped ({e})")
    except Exception:
        log(f"failed; logs in {bench.tmp} (kept)")
        args.keep = True
        bench.cleanup()
        raise
    t = time.monotonic()
    bench.cleanup()
    res = bench.res
    res["phase_seconds"]["stop"] = round(time.monotonic() - t, 1)
    res["seconds"] = round(time.monotonic() - started_at, 1)
    sha = git("rev-parse", "--short", "HEAD") or "nogit"
    now = datetime.datetime.now(datetime.timezone.utc)
    res.update({
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "git_sha": sha,
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "quick": args.quick, "mode": "scale" if args.scale else "figures", "profile": bench.p,
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                    "wrk": f"-t{WRK_THREADS} -c{WRK_CONNECTIONS}"},
    })
    print()
    if args.scale:
        print_scale(res)
    else:
        rows = figures(res)
        res["figures"] = rows
        print_table(rows, res)
    print_discipline(res)
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, f"{now.strftime('%Y%m%dT%H%M%SZ')}-{sha}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print(f"\nbench: {res['seconds']}s; results in {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
