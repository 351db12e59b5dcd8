"""Graceful shutdown under load (docs/design.md: "shutdown loses nothing in
flight"; issue 4, item 2).

On SIGTERM a service stops accepting (its listening socket closes at once),
finishes every request it had begun and answers it, lets the relay finish
its confirmed batch or the consumer its transaction, and exits 0. The drain
is bounded: requests still running after --shutdown-timeout seconds
(SHUTDOWN_TIMEOUT, default 10) are cut off, so a service exits at most
about SHUTDOWN_TIMEOUT + 2 s (relay stop grace) after the signal; the
tests allow STOP_BOUND_SLACK more for a loaded ASan build.

"The server accepted the request" is judged from the server's side: the
service logs every request it began with its X-Request-Id (debug level,
as the harness runs it), answered or "ended early". A client that sees a
reset or no answer for a request whose id is in that log has lost an
accepted request; one whose id is not there was never taken (the kernel
queue of a closing socket, or an idle keep-alive connection closed at the
end), and a client may send it again. A 5xx is never acceptable.
"""

import http.client as httpclient
import json
import re
import subprocess
import signal
import socket
import threading
import time
import traceback
import uuid
from collections import Counter
from decimal import Decimal

import pytest

from harness import Service, System, free_port
from conftest import _require_binaries
import openapi_check
from helpers import http, server_has_read, wait_until

USERS = "/system-api/users"
ORDERS = "/order-service/orders"
INVOICES = "/invoice-service/invoices"

SHUTDOWN_TIMEOUT = 10       # the services' default (--help says so; checked below)
RELAY_STOP_GRACE = 2        # src/lib/outbox.c OUTBOX_STOP_GRACE_MS
STOP_BOUND_SLACK = 5
LOAD_THREADS = 12
LOAD_BEFORE_SIGNAL = 20     # answers per load client before SIGTERM
LOAD_WAIT_BOUND = 60        # seconds to wait for either of the above
SETTLE = 120                # seconds for events to reach the invoices


@pytest.fixture(scope="module")
def system_m():
    _require_binaries()
    s = System()
    yield s
    s.close()


@pytest.fixture
def shared(system_m):
    """The module's System with every service up (a test before may have
    left one stopped when it failed)."""
    for svc in system_m.services:
        if not svc.running():
            svc.start()
    return system_m


class Client:
    """A load thread: requests from make(n) -> (method, path, body bytes or
    None, tag) until stopped; every request has its own X-Request-Id. Half
    of the threads keep their connection alive between requests."""

    def __init__(self, port, make, name, keep_alive):
        self.port = port
        self.make = make
        self.name = name
        self.keep_alive = keep_alive
        self.results = []   # (rid, tag, outcome, status, json)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=name)
        self.conn = None
        self.error = None

    def _run(self):
        n = 0
        try:
            while not self.stop.is_set() and n < 100000:
                n += 1
                method, path, body, tag = self.make(n)
                rid = f"{self.name}-{n}"
                self.results.append((rid, tag) + self._one(method, path, body, rid))
                if self.results[-1][2] == "refused":
                    time.sleep(0.05)  # the service is gone: do not spin
        except Exception:  # shown by judge(), not lost in a thread
            self.error = traceback.format_exc()

    def answered(self):
        return sum(1 for r in list(self.results) if r[2] == "answered")

    def refused(self):
        return any(r[2] == "refused" for r in list(self.results))

    def _one(self, method, path, body, rid):
        if self.conn is None or not self.keep_alive:
            if self.conn is not None:
                self.conn.close()
            self.conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.connect()
            except OSError:
                self.conn = None
                return "refused", None, None
        headers = {"X-Request-Id": rid}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
            openapi_check.observe_response(self.conn, method, path, resp, data)
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            try:
                parsed = json.loads(data, parse_float=Decimal)
            except ValueError:
                parsed = None
            return "answered", resp.status, parsed
        except (OSError, httpclient.HTTPException):
            self.conn.close()
            self.conn = None
            return "unanswered", None, None


def run_load_and_sigterm(svc, clients, before=LOAD_BEFORE_SIGNAL):
    """Start clients, SIGTERM svc once every client has had `before`
    answers, return the seconds it took to exit (svc.stop asserts exit 0
    and a clean log)."""
    for c in clients:
        c.thread.start()
    wait_until(lambda: all(c.answered() >= before or c.error for c in clients),
               timeout=LOAD_WAIT_BOUND, message=f"{before} answers per load client")
    t0 = time.monotonic()
    try:
        svc.stop(signal.SIGTERM, timeout=SHUTDOWN_TIMEOUT + RELAY_STOP_GRACE + STOP_BOUND_SLACK)
        took = time.monotonic() - t0
        # Every client meets the closed port at least once.
        wait_until(lambda: all(c.refused() or c.error for c in clients),
                   timeout=LOAD_WAIT_BOUND, message="every load client to be refused")
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.thread.join(timeout=40)
    assert not any(c.thread.is_alive() for c in clients), "a load client hangs"
    return took


def began_on_server(svc):
    """Request ids the service's log shows as begun (answered or ended early)."""
    return set(re.findall(r" rid=(\S+) (?:GET|POST|PUT|DELETE|PATCH|OPTIONS|HEAD) ",
                          svc.log_text()))


def judge(svc, clients):
    """Assertions common to every service; returns the results and counts."""
    errors = [c.error for c in clients if c.error is not None]
    assert not errors, f"load client failed: {errors[0]}"
    results = [r for c in clients for r in c.results]
    counts = Counter((r[2], r[3]) for r in results)
    fivexx = [r for r in results if r[3] is not None and r[3] >= 500]
    assert not fivexx, f"5xx answers during shutdown: {fivexx[:5]} ({counts})"
    begun = began_on_server(svc)
    lost = [r for r in results if r[2] == "unanswered" and r[0] in begun]
    if lost:
        log = svc.log_text().splitlines()
        shown = [line for line in log if any(f"rid={r[0]} " in line for r in lost[:5])]
        stop_at = next((i for i, line in enumerate(log) if "shutting down" in line), 0)
        raise AssertionError(
            f"{len(lost)} requests begun by {svc.name}-service got no answer, e.g. "
            f"{[r[0] for r in lost[:5]]} ({dict(counts)}); their log lines:\n"
            + "\n".join(shown) + "\nthe log from the signal on:\n"
            + "\n".join(log[stop_at:stop_at + 40]))
    answered = [r for r in results if r[2] == "answered"]
    assert len(answered) >= 20, f"too little load reached the service: {counts}"
    return results, counts


def restart(svc):
    svc.start()
    wait_until(lambda: http("GET", svc.base_url + "/readyz", timeout=5).status == 200,
               timeout=60, message=f"{svc.name}-service ready again")


def invoice_lines(s):
    lines = Counter()
    offset = 0
    for _ in range(100):
        r = http("GET", f"{s.invoice.base_url}{INVOICES}?limit=1000&offset={offset}", timeout=30)
        assert r.status == 200, r
        for inv in r.json:
            for line in inv["orders"]:
                lines[line["order_id"]] += 1
        if len(r.json) < 1000:
            return lines
        offset += 1000
    raise AssertionError("too many invoices")


def assert_orders_on_invoices(s, order_ids):
    """Each order id on exactly one invoice line, within SETTLE seconds."""
    want = set(order_ids)
    wait_until(lambda: want <= set(invoice_lines(s)), timeout=SETTLE, interval=1,
               message=f"{len(want)} orders on invoices")
    lines = invoice_lines(s)
    twice = {o: n for o, n in lines.items() if o in want and n != 1}
    assert not twice, f"orders on more than one line: {twice}"


def order_body(user_id, tag, k=1):
    items = [{"user_id": user_id, "amount": round(1 + (i % 97) * 0.37, 2),
              "description": f"{tag}.{i}"} for i in range(k)]
    return json.dumps(items if k > 1 else items[0]).encode()


def created_orders(results):
    ids = []
    for rid, tag, outcome, status, body in results:
        if status == 201:
            ids.extend(o["id"] for o in (body if isinstance(body, list) else [body]))
    return ids


def test_default_shutdown_timeout_is_10s_and_documented(shared):
    for svc in shared.services:
        out = subprocess.run([str(svc.binary), "--help"], capture_output=True, text=True,
                             timeout=10).stdout
        line = next((l for l in out.splitlines() if "--shutdown-timeout" in l), "")
        assert "SHUTDOWN_TIMEOUT" in line and f"default {SHUTDOWN_TIMEOUT})" in line, out


def test_sigterm_order_service_under_load(shared):
    s = shared
    svc = s.order
    run_id = uuid.uuid4().hex[:8]

    def make(n):
        user = 900000 + n % 7
        k = 25 if n % 5 == 0 else 1  # batches keep requests in flight longer
        return "POST", ORDERS, order_body(user, f"sd-{run_id}-{n}-{threading.get_ident()}", k), None

    clients = [Client(svc.port, make, f"sdo-{run_id}-{i}", keep_alive=i % 2 == 0)
               for i in range(LOAD_THREADS)]
    took = run_load_and_sigterm(svc, clients)
    assert took <= SHUTDOWN_TIMEOUT + RELAY_STOP_GRACE + STOP_BOUND_SLACK
    results, counts = judge(svc, clients)
    restart(svc)
    ids = created_orders(results)
    assert ids, counts
    # Every 201 is still there after the restart ...
    listed = set()
    for off in range(0, 100000, 1000):
        r = http("GET", f"{svc.base_url}{ORDERS}?limit=1000&offset={off}")
        assert r.status == 200, r
        listed |= {o["id"] for o in r.json}
        if len(r.json) < 1000:
            break
    assert set(ids) <= listed
    # ... and its event went out and was applied once.
    assert_orders_on_invoices(s, ids)
    print(f"order-service: exit in {took:.2f}s, {dict(counts)}")


def test_sigterm_user_service_under_load(shared):
    s = shared
    svc = s.user
    run_id = uuid.uuid4().hex[:8]

    def make(n):
        k = 20 if n % 5 == 0 else 1
        items = [{"name": f"Shutdown {n}.{i}",
                  "email": f"sd-{run_id}-{threading.get_ident()}-{n}-{i}@example.test"}
                 for i in range(k)]
        return "POST", USERS, json.dumps(items if k > 1 else items[0]).encode(), None

    clients = [Client(svc.port, make, f"sdu-{run_id}-{i}", keep_alive=i % 2 == 0)
               for i in range(LOAD_THREADS)]
    took = run_load_and_sigterm(svc, clients)
    assert took <= SHUTDOWN_TIMEOUT + RELAY_STOP_GRACE + STOP_BOUND_SLACK
    results, counts = judge(svc, clients)
    restart(svc)
    users = []
    for rid, tag, outcome, status, body in results:
        if status == 201:
            users.extend(body if isinstance(body, list) else [body])
    assert users, counts
    for u in users[-50:]:  # the last answers before the signal, the likeliest to be lost
        r = http("GET", f"{svc.base_url}{USERS}/{u['id']}")
        assert r.status == 200 and r.json["email"] == u["email"], r
    # Their user.created events reached the read side: an order for each
    # of a sample shows the user's name on its invoice.
    sample = users[-10:] + users[:5]
    for u in sample:
        r = http("POST", s.order.base_url + ORDERS,
                 {"user_id": u["id"], "amount": 1.23, "created_at": "2031-07-04T12:00:00Z"})
        assert r.status == 201, r

    def named():
        for u in sample:
            r = http("GET", f"{s.invoice.base_url}{INVOICES}?user_id={u['id']}&year=2031&month=7")
            if r.status != 200 or len(r.json) != 1 or r.json[0]["email"] != u["email"]:
                return False
        return True
    wait_until(named, timeout=SETTLE, interval=1, message="user names on the invoices")
    print(f"user-service: exit in {took:.2f}s, {dict(counts)}")


def test_sigterm_invoice_service_under_load(shared):
    """Readers get answers or a clean refusal; the consumer, stopped in the
    middle of a stream of events, hands back what it had not committed and
    after the restart every order is on exactly one line."""
    s = shared
    svc = s.invoice
    run_id = uuid.uuid4().hex[:8]

    def make(n):
        if n % 3 == 0:
            return "GET", "/healthz", None, None
        return "GET", f"{INVOICES}?limit=200&user_id={900000 + n % 7}", None, None

    # Orders keep coming in meanwhile, so the consumer is busy at the signal.
    def make_order(n):
        return "POST", ORDERS, order_body(910000 + n % 5, f"sdi-{run_id}-{n}", 10), None

    writers = [Client(s.order.port, make_order, f"sdiw-{run_id}-{i}", keep_alive=True)
               for i in range(3)]
    for w in writers:
        w.thread.start()
    try:
        clients = [Client(svc.port, make, f"sdi-{run_id}-{i}", keep_alive=i % 2 == 0)
                   for i in range(LOAD_THREADS)]
        took = run_load_and_sigterm(svc, clients, before=30)
    finally:
        for w in writers:
            w.stop.set()
        for w in writers:
            w.thread.join(timeout=40)
    assert took <= SHUTDOWN_TIMEOUT + RELAY_STOP_GRACE + STOP_BOUND_SLACK
    results, counts = judge(svc, clients)
    wres = [r for w in writers for r in w.results]
    assert all(r[3] == 201 for r in wres), Counter((r[2], r[3]) for r in wres)
    restart(svc)
    ids = created_orders(wres)
    assert len(ids) >= 30, Counter((r[2], r[3]) for r in wres)
    assert_orders_on_invoices(s, ids)
    print(f"invoice-service: exit in {took:.2f}s, {dict(counts)}, {len(ids)} orders")


def refuses(port):
    """True when a connection to 127.0.0.1:port is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stalled_request_bounds_the_drain_and_new_connections_are_refused(tmp_path):
    """A request that never completes (body shorter than its Content-Length)
    holds the drain only until --shutdown-timeout; meanwhile the port
    refuses new connections, and idle keep-alive connections do not count."""
    _require_binaries()
    drain = 2
    svc = Service("user", tmp_path, f"amqp://guest:guest@127.0.0.1:{free_port()}/",
                  args=["--shutdown-timeout", str(drain)])
    svc.start()
    stalled = idle = None
    try:
        idle = httpclient.HTTPConnection("127.0.0.1", svc.port, timeout=10)
        idle.request("GET", "/healthz")
        assert idle.getresponse().read()
        stalled = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
        stalled.sendall(b"POST /system-api/users HTTP/1.1\r\nHost: t\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                        b"X-Request-Id: stalled-1\r\n\r\n{\"name\": ")
        # The service has accepted the connection and read what was sent.
        wait_until(lambda: server_has_read(svc.port, stalled), timeout=30,
                   message="the service to read the stalled request's head")
        t0 = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses(svc.port), timeout=drain,
                   message="the port to refuse new connections")
        assert svc.running(), "exited without waiting for the request in flight"
        rc = svc.proc.wait(timeout=drain + RELAY_STOP_GRACE + STOP_BOUND_SLACK)
        took = time.monotonic() - t0
        assert rc == 0, svc.log_tail()
        assert drain - 0.5 <= took <= drain + RELAY_STOP_GRACE + STOP_BOUND_SLACK, took
        assert "still in flight" in svc.log_text()
        svc.check_log()
    finally:
        for c in (stalled, idle):
            if c is not None:
                c.close()
        if svc.running():
            svc.kill(check_log=False)


def test_idle_keep_alive_connections_do_not_delay_shutdown(tmp_path):
    _require_binaries()
    svc = Service("order", tmp_path, f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    svc.start()
    conns = []
    try:
        for _ in range(20):
            c = httpclient.HTTPConnection("127.0.0.1", svc.port, timeout=10)
            c.request("GET", "/healthz")
            assert c.getresponse().read()
            conns.append(c)
        t0 = time.monotonic()
        assert svc.stop(signal.SIGTERM, timeout=SHUTDOWN_TIMEOUT) == 0
        took = time.monotonic() - t0
        assert took < 3 + RELAY_STOP_GRACE, f"idle connections held the drain for {took:.1f}s"
    finally:
        for c in conns:
            c.close()
        if svc.running():
            svc.kill(check_log=False)
