"""Fault tests of the write side (docs/design.md, "The guarantees"): a 201 means
the event will be published, even when the broker is down or the process
is killed right after answering. Each test has a System of its own.

The taps are durable queues bound before the fault, so they keep what is
routed to them while a broker restarts or a service is dead."""

import signal
from concurrent.futures import ThreadPoolExecutor

from helpers import Tap, http, log_count, unique_email, unread_bytes, wait_until

USERS = "/system-api/users"
ORDERS = "/order-service/orders"

BURST = 200
DELIVERY_TIMEOUT = 120  # relay backoff after an outage is capped; be generous
RELAY_CANNOT_CONNECT = "outbox relay: cannot connect to"  # a debug line per try
ONE_PUBLISH_BYTES = 200  # less than the frames of one published order event


def create_user(svc, name="Fault Tester"):
    r = http("POST", svc.base_url + USERS, {"name": name, "email": unique_email("fault")})
    assert r.status == 201, r
    return r.json


def create_users(svc, n):
    body = [{"name": f"Batch {i}", "email": unique_email("batch")} for i in range(n)]
    r = http("POST", svc.base_url + USERS, body)
    assert r.status == 201, r
    assert isinstance(r.json, list) and len(r.json) == n, r
    return r.json


def create_order(svc, user_id, amount=12.34, description="fault test"):
    r = http("POST", svc.base_url + ORDERS,
             {"user_id": user_id, "amount": amount, "description": description})
    assert r.status == 201, r
    return r.json


def create_orders(svc, user_id, n):
    body = [{"user_id": user_id, "amount": 1 + i, "description": f"batch {i}"}
            for i in range(n)]
    r = http("POST", svc.base_url + ORDERS, body)
    assert r.status == 201, r
    assert isinstance(r.json, list) and len(r.json) == n, r
    return r.json


def first_deliveries(events):
    """Events in arrival order, each event id once (delivery is at least
    once, so a republished event may come twice)."""
    seen, out = set(), []
    for props, body in events:
        assert isinstance(body, dict), f"event body is not a JSON object: {body!r}"
        key = body.get("id") or props.message_id
        if key in seen:
            continue
        seen.add(key)
        out.append((props, body))
    return out


def data_ids(events, event_type):
    return [b["data"]["id"] for _, b in first_deliveries(events) if b.get("type") == event_type]


def has_all(event_type, ids):
    want = set(ids)
    return lambda events: want <= set(data_ids(events, event_type))


def readyz(svc):
    return http("GET", svc.base_url + "/readyz", timeout=5)


def broker_reported_down(r):
    """/readyz body names the broker as not usable, e.g.
    {"status": "unavailable", "checks": {"database": "ok", "broker": "down"}}."""
    if r.status != 503 or not isinstance(r.json, dict):
        return False
    checks = r.json.get("checks", r.json)
    return isinstance(checks, dict) and checks.get("broker") not in (None, "ok")


def down_answer(svc):
    r = readyz(svc)
    return r if broker_reported_down(r) else None


def test_broker_down_writes_accepted_and_delivered_in_order_after_restart(fresh_system):
    s = fresh_system()
    tap = Tap(s.amqp_url, "#", durable=True)
    try:
        # Events flow before the outage.
        first_user = create_user(s.user)
        first_order = create_order(s.order, first_user["id"])
        got = tap.get_all(timeout=30, until=lambda ev: (
            has_all("user.created", [first_user["id"]])(ev)
            and has_all("order.created", [first_order["id"]])(ev)))
        for svc in (s.user, s.order):
            assert wait_until(lambda: readyz(svc).status == 200, timeout=30)

        s.broker.stop()

        for svc in (s.user, s.order):
            r = wait_until(lambda: down_answer(svc), timeout=30,
                           message=f"{svc.name}-service /readyz to report the broker down")
            checks = r.json.get("checks", r.json)
            assert checks.get("database", "ok") == "ok", r

        # Writes go on: the outbox keeps the events.
        users = [create_user(s.user) for _ in range(5)] + create_users(s.user, 3)
        orders = [create_order(s.order, users[i % len(users)]["id"], amount=10 + i)
                  for i in range(5)]
        orders += create_orders(s.order, users[0]["id"], 3)
        # Still accepted after the relay has failed a few more times.
        for svc in (s.user, s.order):
            failed = log_count(svc, RELAY_CANNOT_CONNECT)
            wait_until(lambda: log_count(svc, RELAY_CANNOT_CONNECT) >= failed + 2,
                       timeout=60, message=f"{svc.name}-service's relay to retry twice")
        users.append(create_user(s.user))
        orders.append(create_order(s.order, users[-1]["id"]))

        s.broker.start()

        user_ids = [first_user["id"]] + [u["id"] for u in users]
        order_ids = [first_order["id"]] + [o["id"] for o in orders]
        got += tap.get_all(timeout=DELIVERY_TIMEOUT, until=lambda ev: (
            has_all("user.created", user_ids)(got + ev)
            and has_all("order.created", order_ids)(got + ev)))

        seen_users = data_ids(got, "user.created")
        seen_orders = data_ids(got, "order.created")
        assert set(user_ids) - set(seen_users) == set(), "user.created events missing"
        assert set(order_ids) - set(seen_orders) == set(), "order.created events missing"
        assert seen_users == sorted(seen_users), "user.created out of order"
        assert seen_orders == sorted(seen_orders), "order.created out of order"
        # Each event carries what the 201 answered.
        by_id = {b["data"]["id"]: b for _, b in first_deliveries(got) if b["type"] == "user.created"}
        for u in users:
            assert by_id[u["id"]]["data"]["email"] == u["email"]
        for props, body in first_deliveries(got):
            assert props.delivery_mode == 2, "events must be persistent"

        for svc in (s.user, s.order):
            wait_until(lambda: readyz(svc).status == 200, timeout=60,
                       message=f"{svc.name}-service /readyz to be 200 again")
    finally:
        tap.close()


def _burst(url, bodies):
    with ThreadPoolExecutor(max_workers=16) as ex:
        return list(ex.map(lambda b: http("POST", url, b, timeout=30), bodies))


def test_kill9_order_service_after_burst_loses_no_event(fresh_system):
    s = fresh_system()
    tap = Tap(s.amqp_url, "order.*", durable=True)
    try:
        bodies = [{"user_id": 1 + i % 7, "amount": round(1 + i * 0.25, 2),
                   "description": f"burst {i}"} for i in range(BURST)]
        answers = _burst(s.order.base_url + ORDERS, bodies)
        bad = [r for r in answers if r.status != 201]
        assert not bad, f"{len(bad)} orders not created, e.g. {bad[0]!r}"
        orders = {r.json["id"]: r.json for r in answers}
        assert len(orders) == BURST

        assert s.order.kill() == -signal.SIGKILL
        s.order.start()

        # Every 201 survived the kill ...
        r = http("GET", s.order.base_url + ORDERS + "?limit=1000")
        assert r.status == 200, r
        assert {o["id"] for o in r.json} >= set(orders)

        # ... and its event is published (at least once).
        got = tap.get_all(timeout=DELIVERY_TIMEOUT, until=has_all("order.created", orders))
        missing = set(orders) - set(data_ids(got, "order.created"))
        assert not missing, f"{len(missing)} of {BURST} order.created events missing"
        for _, body in first_deliveries(got):
            o = orders[body["data"]["id"]]
            assert body["data"]["user_id"] == o["user_id"]
            assert body["data"]["amount"] == o["amount"]
    finally:
        tap.close()


def test_kill9_user_service_after_burst_loses_no_event(fresh_system):
    s = fresh_system()
    tap = Tap(s.amqp_url, "user.*", durable=True)
    try:
        bodies = [{"name": f"Burst {i}", "email": unique_email(f"burst{i}")}
                  for i in range(BURST)]
        answers = _burst(s.user.base_url + USERS, bodies)
        bad = [r for r in answers if r.status != 201]
        assert not bad, f"{len(bad)} users not created, e.g. {bad[0]!r}"
        users = {r.json["id"]: r.json for r in answers}
        assert len(users) == BURST

        assert s.user.kill() == -signal.SIGKILL
        s.user.start()

        r = http("GET", s.user.base_url + USERS + "?limit=1000")
        assert r.status == 200, r
        assert {u["id"] for u in r.json} >= set(users)

        got = tap.get_all(timeout=DELIVERY_TIMEOUT, until=has_all("user.created", users))
        missing = set(users) - set(data_ids(got, "user.created"))
        assert not missing, f"{len(missing)} of {BURST} user.created events missing"
        for _, body in first_deliveries(got):
            assert body["data"]["email"] == users[body["data"]["id"]]["email"]
    finally:
        tap.close()


def test_kill9_while_broker_down_then_both_back(fresh_system):
    """The outbox is on disk: events written while the broker is down
    survive a kill -9 of the writer and go out once both are back."""
    s = fresh_system()
    tap = Tap(s.amqp_url, "order.*", durable=True)
    try:
        s.broker.stop()
        orders = [create_order(s.order, 1, amount=5 + i) for i in range(20)]
        assert s.order.kill() == -signal.SIGKILL
        s.broker.start()
        s.order.start()
        ids = [o["id"] for o in orders]
        got = tap.get_all(timeout=DELIVERY_TIMEOUT, until=has_all("order.created", ids))
        seen = data_ids(got, "order.created")
        assert set(ids) - set(seen) == set(), "order.created events missing"
        assert seen == sorted(seen), "order.created out of order"
    finally:
        tap.close()


def test_kill9_with_publishes_unconfirmed_republishes_them(fresh_system):
    """With the broker frozen (SIGSTOP) the relay can publish but never get
    a confirm; a writer killed then must not have marked those events as
    published, so they go out after both come back."""
    s = fresh_system()
    tap = Tap(s.amqp_url, "order.*", durable=True)
    try:
        s.broker.pause()
        try:
            answers = _burst(s.order.base_url + ORDERS,
                             [{"user_id": 3, "amount": 2 + i} for i in range(50)])
            assert all(r.status == 201 for r in answers), answers
            # The relay has sent a batch into the frozen broker: the node's
            # sockets hold it unread (a publish of an order event is several
            # hundred bytes; a heartbeat frame is 8).
            wait_until(lambda: unread_bytes(s.broker.port) >= ONE_PUBLISH_BYTES, timeout=60,
                       message="the relay's publishes to reach the frozen broker")
            assert s.order.kill() == -signal.SIGKILL
        finally:
            s.broker.resume()
        s.order.start()
        ids = [r.json["id"] for r in answers]
        got = tap.get_all(timeout=DELIVERY_TIMEOUT, until=has_all("order.created", ids))
        missing = set(ids) - set(data_ids(got, "order.created"))
        assert not missing, f"{len(missing)} of {len(ids)} order.created events missing"
    finally:
        tap.close()
