"""Real servers for the end-to-end tests: a private RabbitMQ node and the
three services, each on a free loopback port with its own files.

Broker   -- scripts/rabbitmq.sh start/stop on a data folder of its own.
Service  -- one of $BIN_DIR/{user,order,invoice}-service on SQLite.
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
import http.client
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RABBITMQ_SH = REPO / "scripts" / "rabbitmq.sh"
DEFAULT_BIN_DIR = REPO / "build" / "asan" / "bin"

SERVICE_NAMES = ("user", "order", "invoice")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:",
                   "ERROR: LeakSanitizer")

BROKER_START_TIMEOUT = 120
BROKER_STOP_TIMEOUT = 60
SERVICE_START_TIMEOUT = 30

_live = set()           # Brokers and Services running now
_live_lock = threading.Lock()


def bin_dir():
    """Folder of the service binaries: $BIN_DIR, else build/asan/bin."""
    return Path(os.environ.get("BIN_DIR") or DEFAULT_BIN_DIR).resolve()


def free_port():
    """A port free on 127.0.0.1 right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def __init__(self, data_dir=None, port=None):
        self._own_dir = data_dir is None
        # Directly under /tmp: the node runs as the rabbitmq user, which
        # cannot enter pytest's private (0700) temporary folders.
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="cqrs-e2e-rmq-",
                                                          dir="/tmp"))
        self._pick_port = port is None
        self.port = port or free_port()
        self.running = False
        self.paused = False
        self.started_once = False

    @property
    def amqp_url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid(self):
        try:
            return int((self.data_dir / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _script(self, *args, timeout):
        return subprocess.run([str(RABBITMQ_SH), *args], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)

    def start(self):
        """Start the node. The first start of a Broker whose port was
        picked here retries on new ports (another process may take a port
        between our pick and the node's bind); later starts keep the port,
        since clients hold the URL."""
        if self.running:
            return self
        attempts = 3 if (self._pick_port and not self.started_once) else 1
        for attempt in range(attempts):
            res = self._script("start", str(self.data_dir), str(self.port),
                               timeout=BROKER_START_TIMEOUT)
            if res.returncode == 0:
                break
            if attempt + 1 == attempts:
                raise RuntimeError(f"broker did not start on port {self.port}:\n{res.stdout}")
            self.port = free_port()
            (self.data_dir / "nodename").unlink(missing_ok=True)
        self.running = True
        self.started_once = True
        _track(self, True)
        return self

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
        res = self._script("stop", str(self.data_dir), timeout=BROKER_STOP_TIMEOUT)
        self.running = False
        _track(self, False)
        if res.returncode != 0:
            raise RuntimeError(f"broker did not stop:\n{res.stdout}")

    def restart(self):
        self.stop()
        self.start()
        return self

    def close(self):
        """Stop, and remove the data folder if this object created it."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

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


class ServiceExitError(AssertionError):
    pass


class Service:
    """One service process. name is 'user', 'order' or 'invoice'.

    env: extra environment variables; args: extra command-line arguments.
    The log (the service's stderr and stdout) goes to log_path and is kept
    across restarts, which append to it."""

    def __init__(self, name, workdir, amqp_url, port=None, db_path=None,
                 env=None, args=(), binary=None, log_level="debug"):
        if name not in SERVICE_NAMES:
            raise ValueError(f"unknown service {name!r}")
        self.name = name
        self.workdir = Path(workdir)
        self.amqp_url = amqp_url
        self.port = port or free_port()
        self.db_path = Path(db_path or self.workdir / f"{name}-service.db")
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
                "--database-url", f"sqlite:{self.db_path}",
                "--amqp-url", self.amqp_url, "--log-level", self.log_level,
                *self.args]

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=SERVICE_START_TIMEOUT):
        if self.running():
            return self
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.update({k: str(v) for k, v in self.env.items()})
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- harness: start {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env,
                                         cwd=str(self.workdir))
        _track(self, True)
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                _track(self, False)
                raise ServiceExitError(
                    f"{self.name}-service exited with {rc} during start-up:\n"
                    f"{self.log_tail()}")
            if self._healthy():
                return self
            if time.monotonic() > deadline:
                self.kill(check_log=False)
                raise ServiceExitError(
                    f"{self.name}-service not healthy within {timeout}s:\n"
                    f"{self.log_tail()}")
            time.sleep(0.05)

    def _healthy(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

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
            _track(self, False)
            raise ServiceExitError(
                f"{self.name}-service did not exit within {timeout}s of "
                f"{signal.Signals(sig).name}; killed:\n{self.log_tail()}")
        _track(self, False)
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

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

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
    for one; args: {name: [extra args]}."""

    def __init__(self, env=None, service_env=None, args=None, start=True):
        self.tmp = Path(tempfile.mkdtemp(prefix="cqrs-e2e-"))
        self.broker = Broker()
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

    @property
    def amqp_url(self):
        return self.broker.amqp_url

    def start(self):
        self.broker.start()
        for svc in self.services:
            svc.amqp_url = self.broker.amqp_url  # the port is known now
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


def _cleanup_at_exit():
    with _live_lock:
        live = list(_live)
    for obj in live:
        try:
            if isinstance(obj, Service):
                if obj.proc is not None and obj.proc.poll() is None:
                    obj.proc.kill()
                    obj.proc.wait(timeout=10)
            elif isinstance(obj, Broker):
                obj.stop()
        except Exception:
            pass


atexit.register(_cleanup_at_exit)

