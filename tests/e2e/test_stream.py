"""The live event stream and the dashboard's files (README.md, "The
dashboard"; docs/api.md 8.8).

- GET /invoice-service/stream (text/event-stream) delivers one event per
  user, account and order the consumer applies, with its type and ids;
- streams hold no HTTP worker: with more streams open than the service has
  worker threads, ordinary GETs still answer;
- past SSE_MAX_CLIENTS streams the next one is 503 with Retry-After;
- SIGTERM ends every stream (the chunked answer is terminated) and the
  service exits within its drain bound;
- the dashboard's files are served with their content types, and no
  request path reaches a file outside the dashboard's folder.
"""
import http.client as httpclient
import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from contract import describe, make_account, make_order, make_user
from helpers import http, wait_until

SSE_MAX_CLIENTS = 64      # src/lib/sse.h
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
        raw = self.resp.fp.readline()
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
