"""Real servers for the end-to-end tests: a private RabbitMQ node and the
three services, each on a free loopback port with its own files.

Broker   -- scripts/rabbitmq.sh start/stop on a data folder of its own.
Postgres -- scripts/postgres.sh start/stop/createdb, likewise.
Service  -- one of $BIN_DIR/{user,order,invoice}-service on SQLite, or with
            TEST_DB=postgres on a fresh database of one private PostgreSQL
            cluster per session (shared_postgres()).
System   -- a broker and the three services, in a temporary folder.

Every wait is bounded; processes are stopped by the PID we started them
with, never by name. Anything still running when Python exits is stopped
by an atexit hook, so an interrupted run leaves nothing behind.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import http.client
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import ports  # noqa: E402  (scripts/ports.py: the port registry)
import openapi_check  # noqa: E402  (answers checked against openapi/*.json)
RABBITMQ_SH = REPO / "scripts" / "rabbitmq.sh"
POSTGRES_SH = REPO / "scripts" / "postgres.sh"
PSQL = Path(os.environ.get("PG_BIN") or "/usr/lib/postgresql/15/bin") / "psql"
DEFAULT_BIN_DIR = REPO / "build" / "asan" / "bin"

SERVICE_NAMES = ("user", "order", "invoice")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:",
                   "ERROR: LeakSanitizer")

# rabbitmq.sh's own bound (RABBITMQ_START_TIMEOUT) is what ends a slow start; a
# broker has needed over 60 s when three starts met a load average of 20.
BROKER_START_TIMEOUT = 200
BROKER_SCRIPT_START_TIMEOUT = 180
BROKER_STOP_TIMEOUT = 60
PG_START_TIMEOUT = 120
PG_STOP_TIMEOUT = 60
SERVICE_START_TIMEOUT = 30
READY_TIMEOUT = 60  # seconds for a started service to connect to the broker

_live = set()           # Brokers and Services running now
_live_lock = threading.Lock()


def bin_dir():
    """Folder of the service binaries: $BIN_DIR, else build/asan/bin."""
    return Path(os.environ.get("BIN_DIR") or DEFAULT_BIN_DIR).resolve()


def reserve_port():
    """A ports.Reservation: a loopback port that no other caller, in this
    process or another, is given while the reservation is held (see
    scripts/ports.py). The owner keeps it for as long as its server may
    listen there, restarts included, and releases it when done."""
    return ports.reserve()


_kept = []  # reservations held until exit: ports given out by free_port()


def free_port():
    """A loopback port reserved for the rest of this process: for a URL
    that must lead nowhere (nothing listens there, and nothing of ours
    will)."""
    res = ports.reserve()
    _kept.append(res)
    return res.port


def _track(obj, alive):
    with _live_lock:
        if alive:
            _live.add(obj)
        else:
            _live.discard(obj)


def _pid_alive(pid):
    """True when pid runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


class Broker:
    """A private RabbitMQ node on 127.0.0.1:port whose data lives in
    data_dir; restart() keeps durable queues and persistent messages."""

    def __init__(self, data_dir=None, port=None, heartbeat=None):
        self._own_dir = data_dir is None
        # Directly under /tmp: the node runs as the rabbitmq user, which
        # cannot enter pytest's private (0700) temporary folders.
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="cqrs-e2e-rmq-",
                                                          dir="/tmp"))
        self._pick_port = port is None
        self._port_res = None if port else reserve_port()
        self.port = port or self._port_res.port
        self._dist_res = None
        self.running = False
        self.paused = False
        self.started_once = False
        # Seconds of AMQP heartbeat the node offers (None: RabbitMQ's 60).
        # A client gets the smaller of its own and this, so a small value
        # makes a paused service's connections expire sooner without
        # touching the services (they ask for 30 s).
        self.heartbeat = heartbeat

    @property
    def amqp_url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid(self):
        try:
            return int((self.data_dir / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _script(self, *args, timeout, env=None):
        return subprocess.run([str(RABBITMQ_SH), *args], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout,
                              env=dict(os.environ, **(env or {})))

    def start(self):
        """Start the node. Its AMQP and distribution ports are reserved
        (reserve_port) and held until close(). A first start of a Broker
        whose port was picked here that still fails (something outside the
        registry took the port) retries on new ports; later starts keep the
        AMQP port, since clients hold the URL."""
        if self.running:
            return self
        attempts = 3 if (self._pick_port and not self.started_once) else 1
        self._write_advanced_config()
        for attempt in range(attempts):
            if self._dist_res is None:
                self._dist_res = reserve_port()
            res = self._script("start", str(self.data_dir), str(self.port),
                               timeout=BROKER_START_TIMEOUT,
                               env={"RABBITMQ_DIST_PORT": str(self._dist_res.port),
                                    "RABBITMQ_START_TIMEOUT": str(BROKER_SCRIPT_START_TIMEOUT)})
            if res.returncode == 0:
                break
            if attempt + 1 == attempts:
                raise RuntimeError(f"broker did not start on port {self.port}:\n{res.stdout}")
            self._port_res.release()
            self._port_res = reserve_port()
            self.port = self._port_res.port
            self._dist_res.release()
            self._dist_res = None
            (self.data_dir / "nodename").unlink(missing_ok=True)
        self.running = True
        self.started_once = True
        _track(self, True)
        return self

    def _write_advanced_config(self):
        # scripts/rabbitmq.sh points the node at DIR/advanced.config and
        # never writes it, so this is where extra settings go.
        if self.heartbeat is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "advanced.config").write_text(
                f"[{{rabbit, [{{heartbeat, {int(self.heartbeat)}}}]}}].\n")

    def pause(self):
        """SIGSTOP the node: connections stay open but nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def stop(self):
        if not self.running:
            return
        if self.paused:
            self.resume()
        pid = self.pid  # read before the script removes the PID file
        try:
            res = self._script("stop", str(self.data_dir), timeout=BROKER_STOP_TIMEOUT)
            ok, out = res.returncode == 0, res.stdout
        except subprocess.TimeoutExpired:
            ok, out = False, f"rabbitmq.sh stop took over {BROKER_STOP_TIMEOUT} s"
        if not ok and pid:
            # Never leave a node running behind a data folder that close()
            # is about to remove: it would outlive the test run.
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.running = False
        _track(self, False)
        if not ok:
            raise RuntimeError(f"broker did not stop:\n{out}")

    def restart(self):
        self.stop()
        self.start()
        return self

    def close(self):
        """Stop, remove the data folder if this object created it, and
        release the ports."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            for res in (self._port_res, self._dist_res):
                if res is not None:
                    res.release()

    def log_text(self):
        out = []
        for p in sorted((self.data_dir / "log").glob("*.log")):
            try:
                out.append(p.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    def __repr__(self):
        return f"Broker(port={self.port}, dir={self.data_dir})"


def db_mode():
    """The database of the services: $TEST_DB, "sqlite" (the default: a
    file in each service's folder) or "postgres" (a fresh database of the
    session's private cluster per Service, see shared_postgres())."""
    mode = (os.environ.get("TEST_DB") or "sqlite").strip().lower()
    if mode in ("pg", "postgresql"):
        mode = "postgres"
    if mode not in ("sqlite", "postgres"):
        raise ValueError(f"TEST_DB must be sqlite or postgres, not {mode!r}")
    return mode


class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1:port (scripts/postgres.sh)
    whose data lives in data_dir; restart() keeps the databases. Clients
    log in as postgres/postgres over TCP (url())."""

    USER = "postgres"
    PASSWORD = "postgres"

    def __init__(self, data_dir=None, port=None):
        self._own_dir = data_dir is None
        # Directly under /tmp: the cluster runs as the postgres user, which
        # cannot enter pytest's private (0700) temporary folders.
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="cqrs-e2e-pg-",
                                                          dir="/tmp"))
        self._pick_port = port is None
        self._port_res = None if port else reserve_port()
        self.port = port or self._port_res.port
        self.running = False
        self.started_once = False

    def url(self, dbname="postgres"):
        return (f"postgres://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.port}/"
                f"{dbname}")

    @property
    def pid(self):
        try:
            return int((self.data_dir / "postgres.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _script(self, *args, timeout):
        return subprocess.run([str(POSTGRES_SH), *args], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)

    def start(self):
        """Start the cluster (initdb on the first start). As for Broker, a
        first start on a port picked here retries on new ports."""
        if self.running:
            return self
        attempts = 3 if (self._pick_port and not self.started_once) else 1
        for attempt in range(attempts):
            res = self._script("start", str(self.data_dir), str(self.port),
                               timeout=PG_START_TIMEOUT)
            if res.returncode == 0:
                break
            if attempt + 1 == attempts:
                raise RuntimeError(
                    f"PostgreSQL did not start on port {self.port}:\n{res.stdout}")
            self._port_res.release()
            self._port_res = reserve_port()
            self.port = self._port_res.port
        self.running = True
        self.started_once = True
        _track(self, True)
        return self

    def stop(self):
        """pg_ctl stop -m fast (clients are disconnected), bounded."""
        if not self.running:
            return
        res = self._script("stop", str(self.data_dir), timeout=PG_STOP_TIMEOUT)
        self.running = False
        _track(self, False)
        if res.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not stop:\n{res.stdout}")

    def restart(self):
        self.stop()
        self.start()
        return self

    def close(self):
        """Stop, remove the data folder if this object created it, and
        release the port."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            if self._port_res is not None:
                self._port_res.release()

    def createdb(self, name):
        res = self._script("createdb", str(self.data_dir), str(self.port), name,
                           timeout=PG_START_TIMEOUT)
        if res.returncode != 0:
            raise RuntimeError(f"createdb {name} failed:\n{res.stdout}")
        return name

    def new_database(self, prefix="e2e"):
        """Create a database with a unique name starting with prefix."""
        return self.createdb(f"{prefix}_{uuid.uuid4().hex[:16]}")

    def query(self, dbname, sql, timeout=30):
        """Run sql with psql over TCP; the rows, each a list of columns."""
        env = dict(os.environ, PGPASSWORD=self.PASSWORD, PGCONNECT_TIMEOUT="10")
        res = subprocess.run(
            [str(PSQL), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER,
             "-d", dbname, "-XAtq", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, env=env)
        if res.returncode != 0:
            raise RuntimeError(f"psql failed ({res.returncode}): {res.stderr.strip()}")
        return [line.split("\t") for line in res.stdout.splitlines()]

    def log_text(self):
        try:
            return (self.data_dir / "log" / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self):
        return f"Postgres(port={self.port}, dir={self.data_dir})"


_shared_pg = None
_shared_pg_error = None
_shared_pg_lock = threading.Lock()


def shared_postgres():
    """The session's PostgreSQL cluster, started on first use and stopped
    by close_shared_postgres() (conftest.py, at the end of the session) or
    at exit. A failed start is not retried: every later call raises it."""
    global _shared_pg, _shared_pg_error
    with _shared_pg_lock:
        if _shared_pg_error is not None:
            raise RuntimeError(f"the session's PostgreSQL failed to start: "
                               f"{_shared_pg_error}")
        if _shared_pg is None:
            pg = Postgres()
            try:
                pg.start()
            except BaseException as e:
                _shared_pg_error = e
                pg.close()
                raise
            _shared_pg = pg
        return _shared_pg


def close_shared_postgres():
    global _shared_pg
    with _shared_pg_lock:
        pg, _shared_pg = _shared_pg, None
    if pg is not None:
        pg.close()


def fresh_database_url(name):
    """The --database-url for a new Service called name: None in SQLite
    mode (the Service then uses its file db_path); in PostgreSQL mode a new
    database on the session's cluster."""
    if db_mode() != "postgres":
        return None
    pg = shared_postgres()
    return pg.url(pg.new_database(f"e2e_{name}"))


class ServiceExitError(AssertionError):
    pass


class Service:
    """One service process. name is 'user', 'order' or 'invoice'.

    env: extra environment variables; args: extra command-line arguments.
    The log (the service's stderr and stdout) goes to log_path and is kept
    across restarts, which append to it."""

    def __init__(self, name, workdir, amqp_url, port=None, db_path=None,
                 env=None, args=(), binary=None, log_level="debug",
                 database_url=None):
        if name not in SERVICE_NAMES:
            raise ValueError(f"unknown service {name!r}")
        self.name = name
        self.workdir = Path(workdir)
        self.amqp_url = amqp_url
        self._port_res = None if port else reserve_port()
        self.port = port or self._port_res.port
        self.started_once = False
        self.db_path = Path(db_path or self.workdir / f"{name}-service.db")
        # None: SQLite on db_path. In PostgreSQL mode (db_mode()) a fresh
        # database of the session's cluster, kept across restarts.
        self.database_url = database_url or fresh_database_url(name)
        self.log_path = self.workdir / f"{name}-service.log"
        self.env = dict(env or {})
        self.args = list(args)
        self.binary = Path(binary or bin_dir() / f"{name}-service")
        self.log_level = log_level
        self.proc = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def command(self):
        return [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
                "--database-url", self.database_url or f"sqlite:{self.db_path}",
                "--amqp-url", self.amqp_url, "--log-level", self.log_level,
                *self.args]

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=SERVICE_START_TIMEOUT):
        """Start the process and wait until /healthz answers. A first start
        on a port reserved here that still loses its port (something
        outside the registry bound it) retries on a new port; later starts
        keep the port, since clients hold the URL."""
        if self.running():
            return self
        attempts = 3 if (self._port_res is not None and not self.started_once) else 1
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                break
            except ServiceExitError as e:
                if attempt + 1 == attempts or "cannot listen" not in str(e):
                    raise
                self._port_res.release()
                self._port_res = reserve_port()
                self.port = self._port_res.port
        self.started_once = True
        return self

    def _start_once(self, timeout):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.update({k: str(v) for k, v in self.env.items()})
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"--- harness: start {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env,
                                         cwd=str(self.workdir))
        _track(self, True)
        openapi_check.serves(self.port, f"{self.name}-service")
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._exited()
                raise ServiceExitError(
                    f"{self.name}-service exited with {rc} during start-up:\n"
                    f"{self.log_tail(since=log_start)}")
            if self._healthy():
                return
            if time.monotonic() > deadline:
                self.kill(check_log=False)
                raise ServiceExitError(
                    f"{self.name}-service not healthy within {timeout}s:\n"
                    f"{self.log_tail()}")
            time.sleep(0.05)

    def _exited(self):
        _track(self, False)
        openapi_check.gone(self.port)  # another server may get the port

    def release_port(self):
        """Release the port once the service will not be started again."""
        if self._port_res is not None:
            self._port_res.release()

    def _healthy(self, probe="/healthz"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", probe)
            resp = conn.getresponse()
            openapi_check.observe_response(conn, "GET", probe, resp, resp.read())
            return resp.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Wait until /readyz answers 200: the service has connected to
        the broker (and the invoice service's consumer has declared and
        bound its queues, so a message published with mandatory=True is
        routed)."""
        deadline = time.monotonic() + timeout
        while not self._healthy("/readyz"):
            if self.proc is None or self.proc.poll() is not None:
                raise ServiceExitError(f"{self.name}-service is not running:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}-service not ready within {timeout}s:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, sig=signal.SIGTERM, timeout=15, check=None):
        """Send sig and wait for the exit; return the exit code (negative
        for a signal). For a graceful stop (SIGTERM/SIGINT, unless check is
        False) assert exit code 0 and a log free of sanitizer reports."""
        if self.proc is None:
            return None
        if check is None:
            check = sig in (signal.SIGTERM, signal.SIGINT)
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)  # in case it was paused
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self._exited()
            raise ServiceExitError(
                f"{self.name}-service did not exit within {timeout}s of "
                f"{signal.Signals(sig).name}; killed:\n{self.log_tail()}")
        self._exited()
        if check:
            if rc != 0:
                raise ServiceExitError(
                    f"{self.name}-service exited with {rc} after "
                    f"{signal.Signals(sig).name}:\n{self.log_tail()}")
            self.check_log()
        return rc

    def kill(self, check_log=True):
        """SIGKILL and reap; returns the exit code (-9)."""
        rc = self.stop(sig=signal.SIGKILL, timeout=10, check=False)
        if check_log:
            self.check_log()
        return rc

    def restart(self, **kw):
        self.stop(**kw)
        return self.start()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def proc_status(self, field):
        """An integer field of /proc/PID/status (e.g. "VmRSS" in kB,
        "Threads"), or None when the process is gone."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def rss_kb(self):
        return self.proc_status("VmRSS")

    def thread_count(self):
        return self.proc_status("Threads")

    def fd_count(self):
        """Open file descriptors (entries of /proc/PID/fd), or None."""
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=60, since=0):
        """The last lines of the log, from byte offset since on."""
        return "\n".join(self.log_text()[since:].splitlines()[-lines:])

    def check_log(self):
        """Assert that the log holds no sanitizer report."""
        text = self.log_text()
        for mark in SANITIZER_MARKS:
            at = text.find(mark)
            if at >= 0:
                raise ServiceExitError(
                    f"{self.name}-service log has a sanitizer report:\n"
                    f"{text[max(0, at - 2000):at + 6000]}")

    def __repr__(self):
        return f"Service({self.name}, port={self.port}, pid={self.pid})"


class System:
    """A broker and the three services on fresh files in a temporary
    folder. invoice is None when $BIN_DIR/invoice-service does not exist.

    env: extra environment for every service; service_env: {name: env}
    for one; args: {name: [extra args]}; broker_heartbeat: seconds of
    AMQP heartbeat the broker offers (see Broker)."""

    def __init__(self, env=None, service_env=None, args=None, start=True,
                 broker_heartbeat=None):
        self.tmp = Path(tempfile.mkdtemp(prefix="cqrs-e2e-"))
        self.broker = Broker(heartbeat=broker_heartbeat)
        self.user = self.order = self.invoice = None
        env = dict(env or {})
        service_env = service_env or {}
        args = args or {}
        for name in SERVICE_NAMES:
            binary = bin_dir() / f"{name}-service"
            if name == "invoice" and not binary.exists():
                continue
            svc = Service(name, self.tmp, self.broker.amqp_url,
                          env={**env, **service_env.get(name, {})},
                          args=args.get(name, ()), binary=binary)
            setattr(self, name, svc)
        if start:
            try:
                self.start()
            except BaseException:
                self.close(check=False)
                raise

    @property
    def services(self):
        return [s for s in (self.user, self.order, self.invoice) if s is not None]

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Wait until every service is ready (Service.wait_ready)."""
        for svc in self.services:
            svc.wait_ready(timeout)
        return self

    @property
    def amqp_url(self):
        return self.broker.amqp_url

    def start(self):
        self.broker.start()
        for svc in self.services:
            svc.amqp_url = self.broker.amqp_url  # the port is known now
            if svc is self.invoice:
                # Rebuilds read the writers' event logs (README.md
                # "Rebuilding the invoices"): their ports are known now.
                for name, var in (("user", "USER_SERVICE_URL"), ("order", "ORDER_SERVICE_URL")):
                    writer = getattr(self, name)
                    if writer is not None:
                        svc.env.setdefault(var, writer.base_url)
            svc.start()
        return self

    def close(self, check=True):
        """Stop the services gracefully (asserting a clean exit unless
        check is False), then the broker; remove the folder. The first
        failure is raised after everything is cleaned up."""
        errors = []
        for svc in reversed(self.services):
            try:
                if svc.running():
                    svc.stop(check=check)
                elif check and svc.proc is not None:
                    svc.check_log()
            except Exception as e:  # keep cleaning up
                errors.append(e)
            finally:
                svc.release_port()
        try:
            self.broker.close()
        except Exception as e:
            errors.append(e)
        if not errors or os.environ.get("E2E_KEEP_FAILED") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)
        if errors and check:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(check=exc[0] is None)


class TcpProxy:
    """A TCP relay from 127.0.0.1:port to 127.0.0.1:target_port, so that a
    test can cut every connection through it at once (cut()) and so force
    the clients (e.g. the services' AMQP connections) to reconnect, much
    faster than restarting the broker. The listener stays up across cuts.
    One thread accepts; each relayed connection has one thread that ends
    when either side closes or the proxy cuts it."""

    POLL = 0.2  # seconds; bounds how long a cut or close takes to act

    def __init__(self, target_port, port=None):
        self.target_port = target_port
        self._port_res = None if port else reserve_port()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port or self._port_res.port))
        self._listener.listen(64)
        self._listener.settimeout(self.POLL)
        self.port = self._listener.getsockname()[1]
        self._pairs = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._blocked = threading.Event()
        self.accepted = 0
        self.refused = 0   # connections closed at once while blocked
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"proxy-{self.port}")
        self._thread.start()

    @property
    def amqp_url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _accept_loop(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            if self._blocked.is_set():
                client.close()  # as if the broker hung up during the handshake
                with self._lock:
                    self.refused += 1
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port),
                                                    timeout=5)
            except OSError:
                client.close()  # the target is down: the client sees a close
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
                self.accepted += 1
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair):
        import select
        a, b = pair
        try:
            for s in pair:
                s.setblocking(True)
                s.settimeout(None)
            while not self._closed.is_set():
                with self._lock:
                    if pair not in self._pairs:
                        break
                ready, _, _ = select.select([a, b], [], [], self.POLL)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def connections(self):
        with self._lock:
            return len(self._pairs)

    def block(self):
        """Close new connections at once (clients see their handshake fail)."""
        self._blocked.set()

    def unblock(self):
        self._blocked.clear()

    def cut(self):
        """Close every relayed connection (both sides); returns how many."""
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(pairs)

    def close(self):
        self._closed.set()
        self.cut()
        self._thread.join(timeout=5)
        self._listener.close()
        if self._port_res is not None:
            self._port_res.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _cleanup_at_exit():
    with _live_lock:
        live = list(_live)
    for obj in live:
        try:
            if isinstance(obj, Service):
                if obj.proc is not None and obj.proc.poll() is None:
                    obj.proc.kill()
                    obj.proc.wait(timeout=10)
            elif isinstance(obj, (Broker, Postgres)):
                obj.stop()
        except Exception:
            pass


# atexit runs the last registered first: services are killed (and the
# cluster stopped) before the session's cluster folder is removed.
atexit.register(close_shared_postgres)
atexit.register(_cleanup_at_exit)

