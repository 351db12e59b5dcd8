"""Self-tests of the harness: the private broker starts, stops and restarts
with its data; the helpers talk to it; services start and stop cleanly."""

import json
import os
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika
import pytest

from harness import Broker, bin_dir, reserve_port, shared_postgres, _pid_alive
from helpers import Tap, get_message, http, publish, queue_depth, wait_until


@pytest.fixture
def broker():
    b = Broker()
    b.start()
    yield b
    b.close()


def _listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_broker_keeps_durable_messages_across_restart(broker):
    pid = broker.pid
    assert pid and _pid_alive(pid)
    queue = f"test.durable.{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    conn.channel().queue_declare(queue, durable=True)
    conn.close()
    publish(broker.amqp_url, "", queue, b'{"n": 1}')
    assert queue_depth(broker.amqp_url, queue) == 1

    broker.restart()
    assert not _pid_alive(pid), "the old node must be gone"
    assert broker.pid != pid and _pid_alive(broker.pid)
    assert queue_depth(broker.amqp_url, queue) == 1
    props, body = get_message(broker.amqp_url, queue)
    assert body == {"n": 1}
    assert props.delivery_mode == 2
    assert queue_depth(broker.amqp_url, queue) == 0
    assert queue_depth(broker.amqp_url, "no.such.queue") is None


def test_broker_stop_frees_port_and_start_again(broker):
    pid = broker.pid
    broker.stop()
    assert not _pid_alive(pid)
    assert not _listening(broker.port)
    broker.stop()  # idempotent
    broker.start()
    assert _listening(broker.port)


def test_durable_tap_sees_events_across_broker_restart(broker):
    tap = Tap(broker.amqp_url, "test.*", durable=True)
    try:
        publish(broker.amqp_url, "cqrs.events", "test.one", json.dumps({"n": 1}))
        got = tap.get_all(1, timeout=10)
        assert [b for _, b in got] == [{"n": 1}]
        broker.restart()
        publish(broker.amqp_url, "cqrs.events", "other.key", json.dumps({"n": 3}))
        publish(broker.amqp_url, "cqrs.events", "test.two", json.dumps({"n": 2}))
        got = tap.get_all(1, timeout=15)
        assert [b for _, b in got] == [{"n": 2}]
        # Nothing else is queued: a marker published last is the next one.
        publish(broker.amqp_url, "cqrs.events", "test.marker", json.dumps({"marker": 1}))
        assert [b for _, b in tap.get_all(1, timeout=15)] == [{"marker": 1}]
    finally:
        tap.close()


def test_exclusive_tap_and_wait_until(broker):
    with Tap(broker.amqp_url, "#") as tap:
        for i in range(5):
            publish(broker.amqp_url, "cqrs.events", f"k.{i}", json.dumps({"i": i}),
                    properties={"message_id": f"m{i}", "delivery_mode": 2})
        got = tap.get_all(5, timeout=10)
        assert [b["i"] for _, b in got] == list(range(5))
        assert [p.message_id for p, _ in got] == [f"m{i}" for i in range(5)]
        publish(broker.amqp_url, "cqrs.events", "marker", json.dumps({"marker": 1}))
        assert [b for _, b in tap.get_all(1, timeout=10)] == [{"marker": 1}]
    assert wait_until(lambda: 42, timeout=1) == 42
    with pytest.raises(AssertionError):
        wait_until(lambda: False, timeout=0.3)


def test_http_helper():
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            data = self.rfile.read(n)
            out = json.dumps({"got": json.loads(data),
                              "ct": self.headers.get("Content-Type")}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("X-Request-Id", "abc")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    res = reserve_port()
    srv = ThreadingHTTPServer(("127.0.0.1", res.port), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/x"
        r = http("POST", url, {"a": 1})
        assert r.status == 201
        assert r.headers["x-request-id"] == "abc"
        assert r.json == {"got": {"a": 1}, "ct": "application/json"}
        r = http("POST", url, raw=b'[1]', headers={"Content-Type": "text/plain"})
        assert r.json == {"got": [1], "ct": "text/plain"}
    finally:
        srv.shutdown()
        srv.server_close()
        res.release()


@pytest.mark.skipif(not (bin_dir() / "user-service").exists(),
                    reason="service binaries not built")
def test_fresh_system_starts_and_stops_cleanly(fresh_system):
    s = fresh_system()
    for svc in s.services:
        r = http("GET", svc.base_url + "/healthz")
        assert r.status == 200, (svc.name, r)
        assert _pid_alive(svc.pid)
    s.order.pause()
    s.order.resume()
    wait_until(lambda: http("GET", s.order.base_url + "/healthz", timeout=2).status == 200,
               timeout=10)
    s.user.restart()
    assert http("GET", s.user.base_url + "/healthz").status == 200
    if s.user.database_url:  # TEST_DB=postgres: the schema is in its database
        pg = shared_postgres()
        dbname = s.user.database_url.rsplit("/", 1)[1]
        assert pg.query(dbname, "SELECT count(*) FROM demo.users") == [["0"]]
    else:
        assert os.path.exists(s.user.db_path)
