"""The live event stream and the dashboard's files (README.md, "The
dashboard"; docs/api.md 8.8).

- GET /invoice-service/stream (text/event-stream) delivers one event per
  user, account and order the consumer applies, with its type and ids;
- streams hold no HTTP worker: with more streams open than the service has
  worker threads, ordinary GETs still answer;
- past SSE_MAX_CLIENTS streams the next one is 503 with Retry-After;
- SIGTERM ends every stream (the chunked answer is terminated) and the
  service exits within its drain bound;
- a client that never reads is disconnected once SSE_CLIENT_BUFFER bytes
  wait for it (at once, not at its idle timeout), while a client that
  reads keeps receiving every event (at a pace of commits of 20 events:
  a burst of much more than SSE_CLIENT_BUFFER within a few milliseconds
  can drop a reading client too, since the limit counts what the service
  has not sent yet, whoever is slow);
- an idle stream gets a keep-alive comment after SSE_KEEPALIVE_MS;
- only invoice-service, which serves the dashboard, takes --ui-dir;
- the dashboard's files are served with their content types, and no
  request path reaches a file outside the dashboard's folder.
"""
import http.client as httpclient
import json
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pika
import pytest

from contract import describe, make_account, make_order, make_user
from harness import bin_dir
from helpers import EXCHANGE, declare_exchange, http, wait_until
from invoice_helpers import envelope, event_id, user_data

SSE_MAX_CLIENTS = 64      # src/lib/sse.h
SSE_KEEPALIVE = 15        # seconds, SSE_KEEPALIVE_MS of src/lib/sse.h
KEEPALIVE_SLACK = 20      # seconds a keep-alive may come late on a loaded machine
SLOW_ROUND = 200          # events published between looks at the slow client: a round
                          # (~30 KiB) stays well under what a prompt reader may have queued
SLOW_MAX_EVENTS = 100000  # bound on the events it may take to fill its buffers
SLOW_RCVBUF = 4096        # the slow client's receive buffer (the kernel doubles it)
IDLE_TIMEOUT = 600        # the slow-client system's: far beyond the test's waits
# The slow-client system applies 20 deliveries per transaction, not 200:
# the hub hands each commit's events to the streams at once, and 200 of
# them (about 30 KiB) back to back can outrun the HTTP worker that sends
# them, even to a client that reads at once (see the module's docstring).
SLOW_CONSUMER_BATCH = 20
DROP_WAIT = 60            # seconds for a refused client to be counted and closed
HTTP_THREADS = 2          # the stream-holding system's workers
EVENT_WAIT = 30           # seconds for an applied event to be streamed
STREAM = "/invoice-service/stream"
UI = "/invoice-service/ui/"


class Stream:
    """One open event stream, read line by line (http.client de-chunks)."""

    def __init__(self, base_url, timeout=EVENT_WAIT):
        parts = urlsplit(base_url)
        self.conn = httpclient.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.conn.request("GET", STREAM, headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.lines = []
        if self.status == 200:
            # The hub's greeting arrives at once: the stream is open.
            self._read_until(lambda line: line == ": connected")

    def _read_line(self):
        # De-chunked (the raw socket's lines would hold the chunk sizes,
        # and a chunk may end inside an event).
        raw = self.resp.readline()
        if not raw:
            raise EOFError("the stream ended")
        line = raw.decode().rstrip("\r\n")
        self.lines.append(line)
        return line

    def _read_until(self, pred):
        while True:
            line = self._read_line()
            if pred(line):
                return line

    def events(self, pred, count=1):
        """Reads events until count of them satisfy pred; returns those."""
        found = []
        deadline = time.monotonic() + EVENT_WAIT
        while len(found) < count:
            assert time.monotonic() < deadline, f"no such event in {EVENT_WAIT}s: {self.lines[-6:]}"
            line = self._read_until(lambda l: l.startswith("data: "))
            ev = json.loads(line[len("data: "):])
            if pred(ev):
                found.append(ev)
        return found

    def read_to_end(self):
        """Reads until the server ends the answer; returns True when it
        ended cleanly (the chunked terminator), False on a cut."""
        try:
            while self.resp.fp.readline():
                pass
        except (OSError, httpclient.IncompleteRead):
            return False
        return True

    def close(self):
        self.conn.close()


class Reader(threading.Thread):
    """Reads a Stream in the background, noting each event's stream id
    and user id as it comes."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.ids = []           # the "id:" of every event, in order
        self.user_ids = set()
        self.ended = None       # why reading stopped, if it did

    def run(self):
        last_id = None
        try:
            while True:
                line = self.stream.resp.readline()
                if not line:
                    raise EOFError("the stream ended")
                line = line.decode().rstrip("\r\n")
                if line.startswith("id: "):
                    last_id = int(line[4:])
                elif line.startswith("data: "):
                    self.ids.append(last_id)
                    self.user_ids.add(json.loads(line[6:])["user_id"])
        except (EOFError, OSError, ValueError, AttributeError) as e:
            # AttributeError: the test closed the stream under us.
            self.ended = e


def metric(svc, sample):
    """The value of one sample line of /metrics, e.g. 'sse_clients' or
    'sse_clients_dropped_total{reason="slow"}' (0 when absent)."""
    for line in http("GET", svc.base_url + "/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def publish_users(amqp_url, first_id, count, confirm=False):
    """count user.created events, for user ids first_id.., published as a
    writer would (the topic exchange); returns the ids."""
    params = pika.URLParameters(amqp_url)
    assert params.host in ("127.0.0.1", "localhost")
    params.socket_timeout = 10
    params.connection_attempts = 1
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        if confirm:
            ch.confirm_delivery()
        declare_exchange(ch)
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        ids = list(range(first_id, first_id + count))
        for uid in ids:
            body = envelope("user.created",
                            user_data(uid, f"slow {uid}", f"slow-{uid}@example.test"),
                            eid=event_id(), source="user-service")
            ch.basic_publish(EXCHANGE, "user.created", json.dumps(body).encode(), props)
        return ids
    finally:
        if conn.is_open:
            conn.close()


@pytest.fixture
def stream_system(fresh_system):
    return fresh_system(args={"invoice": ["--http-threads", str(HTTP_THREADS)]})


def test_stream_delivers_each_applied_user_account_and_order(system):
    s = Stream(system.invoice.base_url)
    try:
        assert s.status == 200
        assert s.headers["content-type"].startswith("text/event-stream")
        assert s.headers.get("cache-control") == "no-store"
        user = make_user(system)
        uid = user["id"]
        ev = s.events(lambda e: e["type"] == "user.created" and e["user_id"] == uid)[0]
        assert ev["event_id"]
        account = make_account(system, uid)
        ev = s.events(lambda e: e["type"] == "account.created"
                      and e["account_id"] == account["id"])[0]
        assert ev["user_id"] == uid
        order = make_order(system, uid, amount=12.34)
        ev = s.events(lambda e: e["type"] == "order.created" and e["order_id"] == order["id"])[0]
        assert ev["user_id"] == uid and ev["amount"] == 12.34
        # Each data line came after an "id:" line, as SSE has it.
        idx = s.lines.index("data: " + json.dumps(ev, separators=(",", ":")))
        assert s.lines[idx - 1].startswith("id: ")
    finally:
        s.close()


def test_open_streams_hold_no_http_worker(stream_system):
    sysm = stream_system
    wait_until(lambda: http("GET", sysm.invoice.base_url + "/readyz").status == 200,
               timeout=60, message="invoice-service ready")
    streams = [Stream(sysm.invoice.base_url) for _ in range(HTTP_THREADS * 4)]
    try:
        assert all(s.status == 200 for s in streams)
        for _ in range(5):
            resp = http("GET", sysm.invoice.base_url + "/invoice-service/invoices?limit=1",
                        timeout=5)
            assert resp.status == 200, describe(resp)
        m = http("GET", sysm.invoice.base_url + "/metrics").text
        assert f"sse_clients {len(streams)}" in m
        # And every stream still gets events.
        uid = make_user(sysm)["id"]
        for s in streams:
            s.events(lambda e: e["type"] == "user.created" and e["user_id"] == uid)
    finally:
        for s in streams:
            s.close()


def test_stream_cap_answers_503(stream_system):
    sysm = stream_system
    wait_until(lambda: http("GET", sysm.invoice.base_url + "/readyz").status == 200,
               timeout=60, message="invoice-service ready")
    streams = []
    try:
        for _ in range(SSE_MAX_CLIENTS):
            streams.append(Stream(sysm.invoice.base_url))
        assert all(s.status == 200 for s in streams)
        extra = http("GET", sysm.invoice.base_url + STREAM, timeout=5)
        assert extra.status == 503, describe(extra)
        assert extra.headers.get("Retry-After") == "1"
        assert extra.json["error"]["code"] == "unavailable"
        # A closed stream frees its place (found at its next write: an event).
        streams.pop().close()
        make_user(sysm)

        def reopened():
            s = Stream(sysm.invoice.base_url)
            if s.status == 200:
                streams.append(s)
                return True
            s.resp.read()
            s.close()
            return False
        wait_until(reopened, timeout=EVENT_WAIT, message="a freed stream place")
    finally:
        for s in streams:
            s.close()


def test_sigterm_ends_the_streams(stream_system):
    sysm = stream_system
    wait_until(lambda: http("GET", sysm.invoice.base_url + "/readyz").status == 200,
               timeout=60, message="invoice-service ready")
    streams = [Stream(sysm.invoice.base_url, timeout=20) for _ in range(HTTP_THREADS + 2)]
    try:
        started = time.monotonic()
        sysm.invoice.proc.send_signal(15)
        assert all(s.read_to_end() for s in streams), "a stream was cut, not ended"
        assert time.monotonic() - started < 5, "streams ended only by the drain timeout"
        assert sysm.invoice.proc.wait(timeout=15) == 0
        assert sysm.invoice.stop() == 0  # exit 0 and a log free of sanitizer reports
    finally:
        for s in streams:
            s.close()


@pytest.mark.parametrize("path,ctype", [
    (UI, "text/html"),
    (UI + "index.html", "text/html"),
    (UI + "app.js", "text/javascript"),
    (UI + "style.css", "text/css"),
])
def test_ui_files_are_served_with_their_content_types(system, path, ctype):
    resp = http("GET", system.invoice.base_url + path)
    assert resp.status == 200, describe(resp)
    assert resp.headers.get("Content-Type").split(";")[0] == ctype
    assert len(resp.body) > 0


def test_ui_without_slash_redirects(system):
    resp = http("GET", system.invoice.base_url + "/invoice-service/ui")
    assert resp.status == 308
    assert resp.headers.get("Location") == UI


def raw_get(port, target):
    """Sends the request target as given, unnormalised."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("target", [
    "/invoice-service/ui/../../etc/passwd",
    "/invoice-service/ui/../../../../../../etc/passwd",
    "/invoice-service/ui/%2e%2e/%2e%2e/etc/passwd",
    "/invoice-service/ui/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/invoice-service/ui/..%2f..%2f..%2fetc/passwd",
    "/invoice-service/ui/%252e%252e/etc/passwd",
    "/invoice-service/ui//etc/passwd",
    "/invoice-service/ui/app.js/../../../../etc/passwd",
    "/invoice-service/ui/%00index.html",
    "/invoice-service/ui/README.md",
])
def test_ui_path_traversal_never_leaves_the_ui_folder(system, target):
    status, body = raw_get(system.invoice.port, target)
    assert status in (400, 404), (target, status, body[:200])
    assert b"root:" not in body


def test_a_client_that_never_reads_is_dropped_and_the_others_keep_receiving(fresh_system):
    sysm = fresh_system(args={"invoice": ["--idle-timeout", str(IDLE_TIMEOUT),
                                          "--consumer-batch", str(SLOW_CONSUMER_BATCH)]})
    inv = sysm.invoice
    wait_until(lambda: http("GET", inv.base_url + "/readyz").status == 200,
               timeout=60, message="invoice-service ready")
    reader = Reader(Stream(inv.base_url, timeout=DROP_WAIT * 2))
    reader.start()
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
    try:
        slow.connect(("127.0.0.1", inv.port))
        slow.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: metric(inv, "sse_clients") == 2, timeout=30,
                   message="both streams open")
        dropped = 'sse_clients_dropped_total{reason="slow"}'
        # The slow client's socket buffers fill first (the kernel's, then
        # the service's SSE_CLIENT_BUFFER): publish in rounds until it is
        # dropped, each round applied (the reader has its last event).
        next_id, rounds = 10_000_000, 0
        while metric(inv, dropped) == 0:
            assert rounds * SLOW_ROUND < SLOW_MAX_EVENTS, \
                f"the slow client was not dropped after {rounds * SLOW_ROUND} events"
            ids = publish_users(sysm.amqp_url, next_id, SLOW_ROUND)
            next_id += SLOW_ROUND
            rounds += 1
            wait_until(lambda: ids[-1] in reader.user_ids or reader.ended, timeout=120,
                       message=f"round {rounds} streamed to the reader")
            assert reader.ended is None, f"the reader's stream ended: {reader.ended}"
        # Disconnected at once: its place is free while it still has read
        # nothing (the idle timeout is far away).
        wait_until(lambda: metric(inv, "sse_clients") == 1, timeout=DROP_WAIT,
                   message="the slow client's stream closed")
        assert metric(inv, dropped) == 1
        assert "dropped a client that does not keep up" in inv.log_text()
        # Reading now, it gets what the kernel held, then the end.
        slow.settimeout(DROP_WAIT)
        deadline = time.monotonic() + DROP_WAIT
        try:
            while slow.recv(1 << 20):
                assert time.monotonic() < deadline, "the slow client's stream did not end"
        except ConnectionResetError:
            pass
        # The reader was never dropped: it still gets new events, and got
        # every one before them (its stream ids have no gap).
        marker = publish_users(sysm.amqp_url, next_id, 1, confirm=True)[0]
        wait_until(lambda: marker in reader.user_ids, timeout=60,
                   message="the marker event streamed to the reader")
        assert reader.ended is None, reader.ended
        ids = list(reader.ids)
        assert ids == list(range(ids[0], ids[0] + len(ids))), "the reader missed events"
        assert len(ids) >= rounds * SLOW_ROUND + 1
    finally:
        slow.close()
        reader.stream.close()


def test_an_idle_stream_gets_a_keepalive_within_its_period(fresh_system):
    sysm = fresh_system()
    inv = sysm.invoice
    wait_until(lambda: http("GET", inv.base_url + "/readyz").status == 200,
               timeout=60, message="invoice-service ready")
    s = Stream(inv.base_url, timeout=SSE_KEEPALIVE + KEEPALIVE_SLACK)
    try:
        assert s.status == 200
        opened = time.monotonic()  # just after ": connected" arrived
        s._read_until(lambda line: line == ": keep-alive")
        waited = time.monotonic() - opened
        # Nothing else came on the idle stream, and the comment came after
        # its period of silence (never early), within the slack.
        assert [l for l in s.lines if l and not l.startswith((":", "retry:"))] == [], s.lines
        assert SSE_KEEPALIVE - 1 <= waited <= SSE_KEEPALIVE + KEEPALIVE_SLACK, waited
    finally:
        s.close()


def test_only_the_invoice_service_takes_ui_dir():
    def run(name, *args):
        return subprocess.run([str(bin_dir() / f"{name}-service"), *args],
                              capture_output=True, text=True, timeout=30)
    for name in ("user", "order"):
        out = run(name, "--help")
        assert out.returncode == 0, out.stderr
        assert "--ui-dir" not in out.stdout and "UI_DIR" not in out.stdout, out.stdout
        bad = run(name, "--ui-dir", "/tmp", "--version")
        assert bad.returncode == 2 and "unknown option '--ui-dir'" in bad.stderr, bad.stderr
    out = run("invoice", "--help")
    assert out.returncode == 0, out.stderr
    assert any(l.split()[:2] == ["--ui-dir", "UI_DIR"] for l in out.stdout.splitlines()), \
        out.stdout
    assert run("invoice", "--ui-dir", "/tmp", "--version").returncode == 0
