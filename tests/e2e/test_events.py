"""docs/api.md, "Events on RabbitMQ", for the events the write side publishes:
user.created and account.created (user-service), order.created
(order-service)."""
import json
import time
import uuid

import pika
import pytest

from contract import (ACCOUNTS, ORDERS, USERS, account_body, assert_recent,
                      describe, make_user, post, post_raw, post_utf8,
                      uemail, user_body, uuser_id)

EXCHANGE = "cqrs.events"
ENVELOPE_KEYS = {"id", "type", "version", "source", "occurred_at", "data"}
WAIT = 20        # seconds to wait for an event that must come


class Event:
    def __init__(self, method, props, body):
        self.routing_key = method.routing_key
        self.exchange = method.exchange
        self.props = props
        self.raw = body
        try:
            self.body = json.loads(body)
        except ValueError:
            self.body = None

    def __repr__(self):
        return (f"Event({self.routing_key}, cid={self.props.correlation_id}, "
                f"{self.raw[:200]!r})")


class EventTap:
    """A private queue bound to cqrs.events; keeps every message it gets,
    with its routing key (which helpers.Tap does not report)."""

    def __init__(self, amqp_url, *binding_keys):
        params = pika.URLParameters(amqp_url)
        assert params.host in ("127.0.0.1", "localhost")
        params.socket_timeout = 5
        params.connection_attempts = 1
        params.heartbeat = 0
        self.conn = pika.BlockingConnection(params)
        self.ch = self.conn.channel()
        # Same declaration as the services' (topic, durable): idempotent.
        self.ch.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        self.queue = self.ch.queue_declare("", exclusive=True,
                                           auto_delete=True).method.queue
        for key in binding_keys or ("#",):
            self.ch.queue_bind(self.queue, EXCHANGE, routing_key=key)
        self.events = []

    def drain(self):
        for _ in range(100000):
            method, props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return
            self.events.append(Event(method, props, body))

    def matching(self, pred):
        return [e for e in self.events if pred(e)]

    def wait_for(self, pred, n, timeout=WAIT):
        """At least n matching events, or whatever came by the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            got = self.matching(pred)
            if len(got) >= n or time.monotonic() >= deadline:
                return got
            self.conn.sleep(0.05)

    def watch(self, pred, *writers):
        """Every matching event published before a marker from each writer
        (a Service): one more create of its own, whose event must arrive
        after any event its earlier requests published, since the writer's
        relay publishes its outbox in commit order on one channel and a
        queue keeps that order. So "no further event" is proven by an
        event that came, not by a quiet while."""
        for svc in writers:
            rid = rid_new()
            if svc.name == "user":
                key, path, body = "user.created", USERS, user_body()
            else:
                key, path, body = "order.created", ORDERS, {"user_id": uuser_id(), "amount": 1}
            self.ch.queue_bind(self.queue, EXCHANGE, routing_key=key)
            resp = post(svc.base_url, path, body, rid=rid)
            assert resp.status == 201, describe(resp)
            assert self.wait_for(by_cid(rid), 1), f"{svc.name}-service's marker event"
        self.drain()
        return self.matching(pred)

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


@pytest.fixture
def tap(system):
    """Bound before the test creates anything."""
    taps = []

    def make(*keys):
        t = EventTap(system.amqp_url, *keys)
        taps.append(t)
        return t

    yield make
    for t in taps:
        t.close()


def by_cid(rid):
    return lambda e: e.props.correlation_id == rid


def rid_new():
    return "evt-" + uuid.uuid4().hex


def assert_event(ev, etype, source, data, rid):
    """One published event, checked against every line of docs/api.md."""
    assert ev.exchange == EXCHANGE
    assert ev.routing_key == etype
    p = ev.props
    assert p.delivery_mode == 2, "not persistent"
    assert p.content_type == "application/json", p.content_type
    assert p.type == etype
    assert p.app_id == source
    assert p.correlation_id == rid
    assert isinstance(p.timestamp, int), p.timestamp
    assert abs(p.timestamp - time.time()) < 300, p.timestamp
    body = ev.body
    assert isinstance(body, dict), ev.raw
    assert set(body) == ENVELOPE_KEYS, set(body)
    assert isinstance(body["id"], str) and body["id"], body
    assert p.message_id == body["id"]
    assert body["type"] == etype
    assert type(body["version"]) is int and body["version"] == 1
    assert body["source"] == source
    assert_recent(body["occurred_at"], slack=300)
    assert body["data"] == data, (body["data"], data)


# ---------------------------------------------------------------- topology

def test_topology_declared_by_publishers(system):
    params = pika.URLParameters(system.amqp_url)
    params.connection_attempts = 1
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        # Identical re-declarations succeed only when the existing entities
        # have exactly these properties (topic + durable, durable queues).
        ch.exchange_declare(EXCHANGE, exchange_type="topic", durable=True,
                            passive=True)
        ch.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        for q in ("user", "account", "order"):
            ch.queue_declare(q, passive=True)
            ch.queue_declare(q, durable=True)
    finally:
        conn.close()


# ---------------------------------------------------------------- user.created

def test_user_created_event(system, tap):
    t = tap("#")
    rid = rid_new()
    resp = post_utf8(system.user.base_url, USERS,
                     {"name": "Zoë 山田 😀", "email": uemail()},
                     headers={"X-Request-Id": rid})
    assert resp.status == 201, describe(resp)
    assert resp.headers.get("X-Request-Id") == rid
    events = t.wait_for(by_cid(rid), 1)
    assert len(events) == 1, events
    assert_event(events[0], "user.created", "user-service", resp.json, rid)
    assert t.watch(by_cid(rid), system.user) == events, "more than one event"


def test_user_created_routing_key_binding(system, tap):
    exact = tap("user.created")
    wildcard = tap("user.*")
    other = tap("order.*", "account.*")
    rid = rid_new()
    resp = post(system.user.base_url, USERS, user_body(), rid=rid)
    assert resp.status == 201
    assert len(exact.wait_for(by_cid(rid), 1)) == 1
    assert len(wildcard.wait_for(by_cid(rid), 1)) == 1
    assert other.watch(by_cid(rid), system.user) == []


def test_user_batch_one_event_per_item(system, tap):
    t = tap("#")
    rid = rid_new()
    resp = post(system.user.base_url, USERS, [user_body() for _ in range(3)],
                rid=rid)
    assert resp.status == 201, describe(resp)
    events = t.wait_for(by_cid(rid), 3)
    assert len(events) == 3, events
    by_id = {e.body["data"]["id"]: e for e in events}
    assert set(by_id) == {u["id"] for u in resp.json}
    for u in resp.json:
        assert_event(by_id[u["id"]], "user.created", "user-service", u, rid)
    assert len({e.body["id"] for e in events}) == 3, "event ids repeat"
    assert len(t.watch(by_cid(rid), system.user)) == 3


# ---------------------------------------------------------------- account

def test_account_created_event(system, tap):
    user = make_user(system)
    t = tap("#")
    rid = rid_new()
    resp = post(system.user.base_url, ACCOUNTS, account_body(user["id"]),
                rid=rid)
    assert resp.status == 201, describe(resp)
    events = t.wait_for(by_cid(rid), 1)
    assert len(events) == 1, events
    assert_event(events[0], "account.created", "user-service", resp.json, rid)
    assert events[0].body["data"]["address2"] is None
    assert events[0].body["data"]["status"] == "open"
    assert t.watch(by_cid(rid), system.user) == events


def test_account_batch_events(system, tap):
    user = make_user(system)
    t = tap("account.created")
    rid = rid_new()
    bodies = [account_body(user["id"], address2="", status="closed"),
              account_body(user["id"], address2="Apt 1")]
    resp = post(system.user.base_url, ACCOUNTS, bodies, rid=rid)
    assert resp.status == 201, describe(resp)
    events = t.wait_for(by_cid(rid), 2)
    assert len(events) == 2, events
    by_id = {e.body["data"]["id"]: e for e in events}
    for a in resp.json:
        assert_event(by_id[a["id"]], "account.created", "user-service", a, rid)
    assert len(t.watch(by_cid(rid), system.user)) == 2


# ---------------------------------------------------------------- order

def test_order_created_event(system, tap):
    t = tap("#")
    rid = rid_new()
    resp = post(system.order.base_url, ORDERS,
                {"user_id": uuser_id(), "amount": 50,
                 "description": "Test purchase",
                 "created_at": "2025-04-03T12:15:00+02:00"}, rid=rid)
    assert resp.status == 201, describe(resp)
    events = t.wait_for(by_cid(rid), 1)
    assert len(events) == 1, events
    assert_event(events[0], "order.created", "order-service", resp.json, rid)
    data = events[0].body["data"]
    assert data["amount"] == 50.00
    assert data["created_at"] == "2025-04-03T10:15:00.000Z"
    assert t.watch(by_cid(rid), system.order) == events


def test_order_created_event_amount_exact(system, tap):
    t = tap("order.created")
    rid = rid_new()
    resp = post_raw(system.order.base_url, ORDERS,
                    '{"user_id": %d, "amount": 0.29}' % uuser_id(),
                    headers={"X-Request-Id": rid})
    assert resp.status == 201, describe(resp)
    events = t.wait_for(by_cid(rid), 1)
    assert len(events) == 1
    assert events[0].body["data"]["amount"] == 0.29
    assert events[0].body["data"]["description"] is None
    assert_event(events[0], "order.created", "order-service", resp.json, rid)


def test_order_batch_one_event_per_item(system, tap):
    t = tap("order.*")
    rid = rid_new()
    uid = uuser_id()
    resp = post(system.order.base_url, ORDERS,
                [{"user_id": uid, "amount": a} for a in (1, 2.5, 19.99, 50)],
                rid=rid)
    assert resp.status == 201, describe(resp)
    events = t.wait_for(by_cid(rid), 4)
    assert len(events) == 4, events
    by_id = {e.body["data"]["id"]: e for e in events}
    for o in resp.json:
        assert_event(by_id[o["id"]], "order.created", "order-service", o, rid)
    assert len({e.props.message_id for e in events}) == 4
    assert len(t.watch(by_cid(rid), system.order)) == 4


# ---------------------------------------------------------------- request ids

@pytest.mark.parametrize("sent", [None, "", "x" * 129])
def test_generated_request_id_travels_into_event(system, tap, sent):
    t = tap("#")
    headers = {} if sent is None else {"X-Request-Id": sent}
    body = {"user_id": uuser_id(), "amount": 3}
    resp = post(system.order.base_url, ORDERS, body, headers=headers)
    assert resp.status == 201, describe(resp)
    rid = resp.headers.get("X-Request-Id")
    assert rid and rid != sent
    events = t.wait_for(by_cid(rid), 1)
    assert len(events) == 1, f"no event with correlation_id {rid!r}"
    assert_event(events[0], "order.created", "order-service", resp.json, rid)


def test_generated_request_id_travels_into_user_event(system, tap):
    t = tap("user.created")
    resp = post(system.user.base_url, USERS, user_body())
    assert resp.status == 201
    rid = resp.headers.get("X-Request-Id")
    assert rid
    events = t.wait_for(by_cid(rid), 1)
    assert len(events) == 1
    assert_event(events[0], "user.created", "user-service", resp.json, rid)


# ---------------------------------------------------------------- no events

def test_rejected_requests_publish_nothing(system, tap):
    t = tap("#")
    ub, ob = system.user.base_url, system.order.base_url
    existing = make_user(system)
    rids = []

    def send(base, path, body=None, raw=None, ctype="application/json"):
        rid = rid_new()
        rids.append(rid)
        if raw is not None:
            resp = post_raw(base, path, raw, content_type=ctype,
                            headers={"X-Request-Id": rid})
        else:
            resp = post(base, path, body, rid=rid)
        assert 400 <= resp.status < 500, describe(resp)

    send(ub, USERS, [user_body(), user_body(name="")])
    send(ub, USERS, [user_body(), user_body(email=existing["email"])])
    send(ub, USERS, user_body(email=existing["email"].upper()))
    send(ub, USERS, raw="{")
    send(ub, USERS, raw=json.dumps(user_body()), ctype="text/plain")
    send(ub, ACCOUNTS, [account_body(existing["id"]),
                        account_body(9223372036854775807)])
    send(ub, ACCOUNTS, account_body(existing["id"], status="bogus"))
    send(ob, ORDERS, [{"user_id": 1, "amount": 1},
                      {"user_id": 1, "amount": 0.001}])
    send(ob, ORDERS, {"user_id": "1", "amount": 1})
    send(ob, ORDERS, [])
    leaked = t.watch(lambda e: e.props.correlation_id in rids, system.user, system.order)
    assert leaked == [], leaked


def test_events_of_different_requests_have_distinct_ids(system, tap):
    t = tap("#")
    rids = [rid_new() for _ in range(3)]
    for rid in rids:
        assert post(system.user.base_url, USERS, user_body(),
                    rid=rid).status == 201
    events = t.wait_for(lambda e: e.props.correlation_id in rids, 3)
    assert len(events) == 3
    assert len({e.body["id"] for e in events}) == 3
    assert len({e.props.message_id for e in events}) == 3
