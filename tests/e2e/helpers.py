"""Client-side helpers for the end-to-end tests: HTTP requests, a tap on
the event exchange, queue depth, publishing, and bounded waiting."""

import json
import logging
import time
import uuid
import http.client as httpclient
from urllib.parse import urlsplit

import pika
from pika.exceptions import AMQPError

import openapi_check

logging.getLogger("pika").setLevel(logging.CRITICAL)

EXCHANGE = "cqrs.events"


# --- HTTP -------------------------------------------------------------------

class Headers:
    """Case-insensitive view of response headers (last value wins for
    get(); get_all() returns every value)."""

    def __init__(self, pairs):
        self._pairs = list(pairs)
        self._map = {}
        for k, v in self._pairs:
            self._map[k.lower()] = v

    def __getitem__(self, key):
        return self._map[key.lower()]

    def get(self, key, default=None):
        return self._map.get(key.lower(), default)

    def get_all(self, key):
        return [v for k, v in self._pairs if k.lower() == key.lower()]

    def __contains__(self, key):
        return key.lower() in self._map

    def items(self):
        return list(self._pairs)

    def __repr__(self):
        return f"Headers({self._pairs!r})"


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", errors="replace")
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<Response {self.status} {self.text[:300]!r}>"


def http(method, url, body=None, headers=None, raw=None, timeout=10):
    """One request on a new connection. body is encoded as JSON (with
    Content-Type: application/json unless headers say otherwise); raw is
    sent as given (bytes or str). The answer is checked against the
    service's OpenAPI document (openapi_check)."""
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1" and parts.hostname != "localhost":
        raise ValueError(f"tests only talk to loopback, not {parts.hostname}")
    hdrs = dict(headers or {})
    data = None
    if raw is not None:
        data = raw.encode() if isinstance(raw, str) else raw
    elif body is not None:
        data = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = httpclient.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        openapi_check.observe_response(conn, method, path, resp, payload)
        return Response(resp.status, Headers(resp.getheaders()), payload)
    finally:
        conn.close()


# --- waiting ----------------------------------------------------------------

def wait_until(fn, timeout=10, interval=0.1, message=None):
    """Call fn until it returns a truthy value and return that value; fail
    the test after timeout seconds. Exceptions from fn count as "not yet"
    (the last one is shown on failure)."""
    deadline = time.monotonic() + timeout
    last, error = None, None
    while True:
        try:
            last = fn()
            error = None
            if last:
                return last
        except Exception as e:  # e.g. connection refused while restarting
            error = e
        if time.monotonic() >= deadline:
            what = message or getattr(fn, "__name__", "condition")
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; "
                f"last value {last!r}, last error {error!r}")
        time.sleep(interval)


# --- AMQP -------------------------------------------------------------------

def _connect(amqp_url, timeout=5):
    params = pika.URLParameters(amqp_url)
    if params.host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"tests only talk to loopback, not {params.host}")
    params.socket_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.connection_attempts = 1
    params.heartbeat = 0  # a test may hold a tap idle for minutes
    return pika.BlockingConnection(params)


def declare_exchange(channel):
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)


def _decode(body):
    try:
        return json.loads(body)
    except ValueError:
        return body


class Tap:
    """A queue bound to cqrs.events with binding_key ("#" for everything).

    By default exclusive: it dies with its connection, so it
    cannot see events across a broker restart. With durable=True it is a
    named durable queue that outlives the connection and the broker
    (get_all reconnects); close() deletes it."""

    def __init__(self, amqp_url, binding_key="#", durable=False, name=None):
        self.amqp_url = amqp_url
        self.binding_key = binding_key
        self.durable = durable
        self.queue = name or f"test.tap.{uuid.uuid4().hex[:12]}"
        self.conn = None
        self.channel = None
        self._open(declare=True)

    def _open(self, declare=False):
        self.conn = _connect(self.amqp_url)
        self.channel = self.conn.channel()
        if declare:
            declare_exchange(self.channel)
            # Not auto-delete: that would delete the queue when the first
            # get_all() cancels its consumer; an exclusive queue goes away
            # with its connection anyway.
            self.channel.queue_declare(self.queue, durable=self.durable,
                                       exclusive=not self.durable,
                                       auto_delete=False)
            self.channel.queue_bind(self.queue, EXCHANGE, routing_key=self.binding_key)
        self.channel.basic_qos(prefetch_count=500)

    def _drop(self):
        try:
            if self.conn is not None and self.conn.is_open:
                self.conn.close()
        except Exception:
            pass
        self.conn = self.channel = None

    def get_all(self, expected=None, timeout=10, until=None):
        """Collect messages as they arrive, as (properties, body) pairs with
        body parsed from JSON (raw bytes if it is not JSON), until
        `expected` have come, until(list) is true, or timeout seconds have
        passed; returns what came (the caller asserts on it). Each message
        is acked once it is in the list, so a later call sees only newer
        ones. A durable tap reconnects when the broker went away."""
        out = []
        deadline = time.monotonic() + timeout

        def done():
            if expected is not None and len(out) >= expected:
                return True
            return until is not None and until(out)

        if expected == 0 or done():
            return out
        while time.monotonic() < deadline:
            try:
                if self.conn is None or not self.conn.is_open:
                    if not self.durable and self.conn is not None:
                        break  # an exclusive queue died with its connection
                    self._open()
                for method, props, body in self.channel.consume(
                        self.queue, inactivity_timeout=0.1):
                    if method is not None:
                        out.append((props, _decode(body)))
                        self.channel.basic_ack(method.delivery_tag)
                    if done() or time.monotonic() >= deadline:
                        break
                self.channel.cancel()  # requeues what came but is not in out
                break
            except (AMQPError, OSError):
                self._drop()
                if not self.durable:
                    break
                time.sleep(0.3)
        return out

    def close(self):
        try:
            if self.conn is None or not self.conn.is_open:
                self._open()
            if self.durable:
                self.channel.queue_delete(self.queue)
        except Exception:
            pass
        self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def queue_depth(amqp_url, queue):
    """Ready messages in queue (passive declare), or None if it does not exist."""
    conn = _connect(amqp_url)
    try:
        ch = conn.channel()
        try:
            ok = ch.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                return None
            raise
        return ok.method.message_count
    finally:
        if conn.is_open:
            conn.close()


def publish(amqp_url, exchange, routing_key, body_bytes, properties=None,
            mandatory=False):
    """Publish one message with publisher confirms. properties is a
    pika.BasicProperties or a dict of its fields; default: persistent JSON."""
    if properties is None:
        properties = pika.BasicProperties(delivery_mode=2,
                                          content_type="application/json")
    elif isinstance(properties, dict):
        properties = pika.BasicProperties(**properties)
    if isinstance(body_bytes, str):
        body_bytes = body_bytes.encode()
    conn = _connect(amqp_url)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        if exchange == EXCHANGE:
            declare_exchange(ch)
        ch.basic_publish(exchange, routing_key, body_bytes, properties,
                         mandatory=mandatory)
    finally:
        if conn.is_open:
            conn.close()


def get_message(amqp_url, queue, timeout=10):
    """Take one message from queue (acked), waiting up to timeout seconds;
    returns (properties, body) with body parsed as in Tap, or None."""
    conn = _connect(amqp_url)
    try:
        ch = conn.channel()
        deadline = time.monotonic() + timeout
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=False)
            if method is not None:
                ch.basic_ack(method.delivery_tag)
                return props, _decode(body)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
    finally:
        if conn.is_open:
            conn.close()


def unique_email(prefix="user"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.test"


# --- the kernel's view of loopback connections -----------------------------

def tcp_sockets(local_port=None, remote_port=None):
    """IPv4 TCP sockets from /proc/net/tcp as dicts with local_port,
    remote_port, state (hex, "01" = ESTABLISHED), tx_queue and rx_queue
    (bytes queued to send, and received but not yet read by the owner),
    filtered by the ports given. What a server has read of a connection,
    or what a frozen process has not, is seen here without asking it."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            lport = int(cols[1].split(":")[1], 16)
            rport = int(cols[2].split(":")[1], 16)
            if local_port is not None and lport != local_port:
                continue
            if remote_port is not None and rport != remote_port:
                continue
            tx, rx = (int(x, 16) for x in cols[4].split(":"))
            out.append({"local_port": lport, "remote_port": rport, "state": cols[3],
                        "tx_queue": tx, "rx_queue": rx})
    return out


def unread_bytes(port):
    """Bytes that clients sent to the server on 127.0.0.1:port and it has
    not read yet (all its accepted connections)."""
    return sum(s["rx_queue"] for s in tcp_sockets(local_port=port) if s["state"] == "01")


def accept_backlog(port):
    """Connections to the server on 127.0.0.1:port that the kernel has
    completed but the server has not accepted yet (its listening socket's
    accept queue)."""
    return sum(s["rx_queue"] for s in tcp_sockets(local_port=port) if s["state"] == "0A")


def server_has_read(server_port, client_sock):
    """True when the server on server_port has accepted client_sock's
    connection and read everything sent on it so far."""
    mine = client_sock.getsockname()[1]
    socks = [s for s in tcp_sockets(local_port=server_port, remote_port=mine)
             if s["state"] == "01"]
    return bool(socks) and all(s["rx_queue"] == 0 for s in socks)


def log_count(svc, text):
    """How many lines of svc's log contain text."""
    return sum(1 for line in svc.log_text().splitlines() if text in line)
