"""docs/api.md, "Events on RabbitMQ", from the consumer's side: the invoice
projection applies each event once in effect, whatever its shape (full
envelope or the original demo's), arrival order, or the consumer's fate
(kill -9 mid-burst); bad messages go to the dead-letter queue unchanged and
never block the queue; a concurrent load adds up to the cent."""
import json
import random
import threading
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from contract import ACCOUNTS, ORDERS, USERS, assert_error, describe
from helpers import http, queue_depth, wait_until
from invoice_helpers import (DEAD_LETTER, account_data, all_invoices, big_id,
                             envelope, event_id, has_orders, header_text,
                             invoice_for, list_invoices, now_year_month,
                             order_data, order_ids_of, send, send_order,
                             take_all, user_data, wait_invoice)

D = Decimal


def _address(inv):
    return inv["shipping_address"]


# ------------------------------------------------------------------ dedupe

def test_same_event_twice_and_same_order_id_apply_once(system):
    user, other_user = big_id(), big_id()
    order, sentinel = big_id(), big_id()
    first = send_order(system, order, user, 12.34, created_at="2025-04-03T10:15:00Z")
    send(system, first)                                # same event id again
    # The same order id under new event ids: another user, another month,
    # another amount -- none of them changes anything.
    send_order(system, order, other_user, 99, created_at="2025-07-01T00:00:00Z")
    send_order(system, order, user, 1, created_at="2025-08-01T00:00:00Z")
    send_order(system, order, user, 5, created_at="2025-04-10T00:00:00Z")
    # Published last on the same queue: once it is applied, so is the rest.
    send_order(system, sentinel, user, 1.00, created_at="2025-04-20T00:00:00Z")

    inv = wait_invoice(system, user, 2025, 4, has_orders(sentinel))
    assert order_ids_of(inv) == [order, sentinel], inv
    assert inv["orders"][0]["amount"] == D("12.34")
    assert inv["orders"][0]["purchase_dt"] == "2025-04-03T10:15:00.000Z"
    assert inv["order_count"] == 2 and inv["total"] == D("13.34"), inv
    assert [(r["year"], r["month"]) for r in list_invoices(system, {"user_id": user})] \
        == [(2025, 4)]
    assert list_invoices(system, {"user_id": other_user}) == []


# ------------------------------------------------------------------ shapes

def test_original_shape_through_the_default_exchange(system):
    user = big_id()
    o1, o2, o3, o4, o5, o6 = (big_id() for _ in range(6))
    demo = {}  # the original demo published without properties

    def plain(oid, amount, created_at="2025-04-05T08:00:00Z"):
        return {"type": "order.created",
                "data": order_data(oid, user, amount, created_at=created_at)}

    # {"id", "type", "data"} straight to queue "order".
    send(system, {"id": event_id(), **plain(o1, 10)}, routing_key="order",
         exchange="", properties=demo)
    inv = wait_invoice(system, user, 2025, 4, has_orders(o1),
                       message="original-shape event applied")
    assert inv["total"] == D("10.00")

    # No body id: the AMQP message_id stands in, and dedupes.
    mid = event_id()
    send(system, plain(o2, 20), routing_key="order", exchange="",
         properties={"message_id": mid})
    send(system, plain(o3, 30), routing_key="order", exchange="",
         properties={"message_id": mid})               # same message_id: a repeat
    # Neither id nor message_id: applied without dedupe (once per order id).
    send(system, plain(o4, 40), routing_key="order", exchange="", properties=demo)
    send(system, plain(o4, 40), routing_key="order", exchange="", properties=demo)
    # No created_at and no occurred_at: the month of now.
    before = now_year_month()
    send(system, {"id": event_id(), "type": "order.created",
                  "data": order_data(o6, user, 6, created_at=None)},
         routing_key="order", exchange="", properties=demo)
    send(system, {"id": event_id(), **plain(o5, 50)}, routing_key="order",
         exchange="", properties=demo)

    inv = wait_invoice(system, user, 2025, 4, has_orders(o5))
    assert sorted(order_ids_of(inv)) == sorted([o1, o2, o4, o5]), inv
    assert inv["total"] == D("120.00") and inv["order_count"] == 4, inv

    def current():
        for y, m in {before, now_year_month()}:
            got = invoice_for(system, user, y, m)
            if got is not None and o6 in order_ids_of(got):
                return got
        return None
    now_inv = wait_until(current, timeout=30, message="order without a date in this month")
    assert order_ids_of(now_inv) == [o6] and now_inv["total"] == D("6.00")
    lines = [l for r in list_invoices(system, {"user_id": user}) for l in r["orders"]]
    assert sorted(l["order_id"] for l in lines) == sorted([o1, o2, o4, o5, o6])


# ------------------------------------------------------------------ order

def test_order_before_user_and_account_then_fill_in(system):
    user, order, acc = big_id(), big_id(), big_id()
    send_order(system, order, user, 20, created_at="2025-04-05T00:00:00Z")
    inv = wait_invoice(system, user, 2025, 4, has_orders(order))
    assert inv["name"] is None and inv["email"] is None, inv
    assert inv["shipping_address"] is None, inv
    assert inv["total"] == D("20.00")

    first_user = envelope("user.created", user_data(user, "Carol", "carol@demo.test"),
                          source="user-service")
    send(system, first_user)
    send(system, envelope("account.created",
                          account_data(acc, user, "9 Elm St", "Apt 4", "Springfield",
                                       "IL", "62701"), source="user-service"))
    inv = wait_invoice(system, user, 2025, 4,
                       lambda i: i["name"] is not None and i["shipping_address"] is not None,
                       message="name and address filled in")
    assert inv["name"] == "Carol" and inv["email"] == "carol@demo.test", inv
    assert inv["shipping_address"] == {"address1": "9 Elm St", "address2": "Apt 4",
                                       "city": "Springfield", "state": "IL",
                                       "zip": "62701"}
    assert order_ids_of(inv) == [order] and inv["total"] == D("20.00")

    # A later user.created (new event id) updates name and email; a repeat
    # of the first event (same id) does not bring the old ones back.
    send(system, envelope("user.created", user_data(user, "Carol Two", "c2@demo.test")))
    wait_invoice(system, user, 2025, 4, lambda i: i["name"] == "Carol Two",
                 message="name updated by a later user.created")
    send(system, first_user)
    # Sentinel on the same queue: a new user whose invoice exists already.
    s_user, s_order = big_id(), big_id()
    send_order(system, s_order, s_user, 1, created_at="2025-04-05T00:00:00Z")
    wait_invoice(system, s_user, 2025, 4, has_orders(s_order))
    send(system, envelope("user.created", user_data(s_user, "Sentinel", "s@demo.test")))
    wait_invoice(system, s_user, 2025, 4, lambda i: i["name"] == "Sentinel")
    inv = invoice_for(system, user, 2025, 4)
    assert inv["name"] == "Carol Two" and inv["email"] == "c2@demo.test", inv

    # A new invoice for a known user is filled in at once.
    later = big_id()
    send_order(system, later, user, 3, created_at="2025-09-01T00:00:00Z")
    sep = wait_invoice(system, user, 2025, 9, has_orders(later))
    assert sep["name"] == "Carol Two" and sep["shipping_address"]["city"] == "Springfield"


def test_highest_account_id_wins_in_any_order(system):
    ua, ub, uc, ud = (big_id() for _ in range(4))
    base = random.randint(10**9, 10**11)
    for u in (ua, ub, uc, ud):
        send_order(system, big_id(), u, 1, created_at="2025-03-03T00:00:00Z")

    def account(acc_id, user, city, status="open", address2=None):
        send(system, envelope("account.created",
                              account_data(acc_id, user, f"{acc_id} Road", address2,
                                           city, "ST", "11111", status=status)))

    account(base + 1, ua, "Low")                        # low, then high
    account(base + 2, ua, "High", address2="Suite 9")
    account(base + 12, ub, "High")                      # high, then low
    account(base + 11, ub, "Low", address2="Apt 1")
    account(base + 21, ud, "Open")                      # a closed account counts
    account(base + 22, ud, "Closed", status="closed")
    account(base + 31, uc, "Sentinel")                  # published last

    wait_invoice(system, uc, 2025, 3, lambda i: i["shipping_address"] is not None,
                 message="sentinel account applied")
    a = wait_invoice(system, ua, 2025, 3,
                     lambda i: (_address(i) or {}).get("city") == "High",
                     message="higher account of ua")
    assert _address(a) == {"address1": f"{base + 2} Road", "address2": "Suite 9",
                           "city": "High", "state": "ST", "zip": "11111"}
    b = invoice_for(system, ub, 2025, 3)
    assert _address(b) == {"address1": f"{base + 12} Road", "address2": None,
                           "city": "High", "state": "ST", "zip": "11111"}, b
    d = invoice_for(system, ud, 2025, 3)
    assert _address(d) is not None and _address(d)["city"] == "Closed", d


# ------------------------------------------------------------------ poison

def test_poison_messages_go_to_the_dead_letter_queue(fresh_system):
    s = fresh_system()
    victim = big_id()  # every poison order names this user

    def order_env(**data_over):
        data = order_data(big_id(), victim, 5, created_at="2025-04-05T00:00:00Z")
        data.update(data_over)
        return envelope("order.created", data)

    def enc(obj):
        return json.dumps(obj).encode()

    no_amount = order_env()
    del no_amount["data"]["amount"]
    no_data = order_env()
    del no_data["data"]
    undated = order_env(created_at=None)
    del undated["data"]["created_at"]
    undated["occurred_at"] = "yesterday"
    no_type = order_env()
    del no_type["type"]
    no_email = envelope("user.created", user_data(victim, "V", "v@demo.test"))
    del no_email["data"]["email"]

    poison = [  # (routing key, body, queue it reached)
        ("order.created", b"this is not json " + uuid.uuid4().hex.encode(), "order"),
        ("order.created", b'{"id":"' + event_id().encode() +
         b'","type":"order.created","data":{"id":' + str(big_id()).encode() +
         b',"user_id":' + str(victim).encode() +
         b',"amount":1,"description":"bad \xff\xfe bytes"}}', "order"),
        ("order.created", enc([order_env()]), "order"),
        ("order.updated", enc({**order_env(), "type": "order.updated"}), "order"),
        ("order.created", enc(no_data), "order"),
        ("order.created", enc(no_amount), "order"),
        ("order.created", enc(order_env(amount="50")), "order"),
        ("order.created", enc(order_env(amount=0.001)), "order"),
        ("order.created", enc(order_env(amount=-5)), "order"),
        ("order.created", enc(order_env(user_id="7")), "order"),
        ("order.created", enc(order_env(created_at="2025-02-30T00:00:00Z")), "order"),
        ("order.created", enc(order_env(created_at="not a time")), "order"),
        ("order.created", enc(order_env(id=2**64)), "order"),
        ("order.created", enc(undated), "order"),
        ("order.created", enc(no_type), "order"),
        ("order.created", enc({**order_env(), "data": [1, 2]}), "order"),
        ("order.created", b"", "order"),
        ("user.created", enc(no_email), "user"),
        ("account.created", enc(envelope("account.created",
                                         account_data(big_id(), "7"))), "account"),
    ]
    for key, body, _ in poison:
        send(s, body, routing_key=key)
    good_user, good_order = big_id(), big_id()
    send_order(s, good_order, good_user, 42.42, created_at="2025-04-05T00:00:00Z")

    inv = wait_invoice(s, good_user, 2025, 4, has_orders(good_order),
                       message="the valid event after the poison ones")
    assert inv["total"] == D("42.42")
    wait_until(lambda: queue_depth(s.amqp_url, DEAD_LETTER) == len(poison),
               timeout=30, message=f"{len(poison)} dead letters")
    for q in ("order", "user", "account"):
        wait_until(lambda: queue_depth(s.amqp_url, q) == 0, timeout=30,
                   message=f"queue {q} drained")
    dead = take_all(s.amqp_url, DEAD_LETTER)
    assert len(dead) == len(poison)
    by_body = defaultdict(list)
    for props, body in dead:
        by_body[body].append(props)
    for key, body, queue in poison:
        assert by_body.get(body), f"not dead-lettered unchanged: {body[:200]!r}"
        props = by_body[body].pop()
        reason = header_text(props, "x-dead-letter-reason")
        assert isinstance(reason, str) and reason.strip(), \
            f"no x-dead-letter-reason for {body[:100]!r}: {props.headers}"
        assert header_text(props, "x-original-queue") == queue, \
            f"x-original-queue for {body[:100]!r}: {props.headers}"
    assert list_invoices(s, {"user_id": victim}) == []
    assert s.invoice.running()
    resp = http("GET", s.invoice.base_url + "/healthz")
    assert resp.status == 200, describe(resp)


def test_data_the_http_side_rejects_is_a_dead_letter(fresh_system):
    """docs/api.md: event data follows the HTTP rules. An email or an account
    status that POST /system-api/users or /accounts answers 422 for is a
    dead letter too (reason naming the field), and changes nothing."""
    s = fresh_system()
    victim, order = big_id(), big_id()
    send_order(s, order, victim, 7, created_at="2025-04-05T00:00:00Z")
    wait_invoice(s, victim, 2025, 4, has_orders(order))

    bad_emails = ["noat", "a@b@c", "@demo.test", "v@", "v @demo.test"]
    bad_statuses = ["weird", "Open", "", 1]
    poison = []  # (body, queue it reached, field at fault)
    for email in bad_emails:
        resp = http("POST", s.user.base_url + USERS, body={"name": "V", "email": email})
        assert_error(resp, 422, "invalid_field", field="email")
        poison.append((envelope("user.created", user_data(victim, "V", email)),
                       "user", "email"))
    for status in bad_statuses:
        resp = http("POST", s.user.base_url + ACCOUNTS,
                    body={"user_id": 1, "address1": "1 Rd", "city": "C", "state": "S",
                          "zip": "Z", "status": status})
        assert_error(resp, 422, "invalid_field", field="status")
        poison.append((envelope("account.created",
                                account_data(big_id(), victim, status=status)),
                       "account", "status"))
    for body, _, _ in poison:
        send(s, body)

    wait_until(lambda: queue_depth(s.amqp_url, DEAD_LETTER) == len(poison),
               timeout=30, message=f"{len(poison)} dead letters")
    for q in ("user", "account"):
        wait_until(lambda: queue_depth(s.amqp_url, q) == 0, timeout=30,
                   message=f"queue {q} drained")
    dead = take_all(s.amqp_url, DEAD_LETTER)
    assert len(dead) == len(poison)
    by_body = {body: props for props, body in dead}
    for body, queue, field in poison:
        raw = json.dumps(body).encode()
        assert raw in by_body, f"not dead-lettered unchanged: {raw[:200]!r}"
        reason = header_text(by_body[raw], "x-dead-letter-reason")
        assert isinstance(reason, str) and field in reason, \
            f"x-dead-letter-reason {reason!r} does not name {field}"
        assert header_text(by_body[raw], "x-original-queue") == queue
    inv = invoice_for(s, victim, 2025, 4)
    assert inv["name"] is None and inv["email"] is None, inv
    assert _address(inv) is None, inv

    # The same events with valid values are applied: nothing is stuck.
    send(s, envelope("user.created", user_data(victim, "V", "v@demo.test")))
    send(s, envelope("account.created", account_data(big_id(), victim, status="closed")))
    inv = wait_invoice(s, victim, 2025, 4,
                       lambda i: i["email"] == "v@demo.test" and _address(i) is not None,
                       message="the valid user and account events")
    assert queue_depth(s.amqp_url, DEAD_LETTER) == 0


# ------------------------------------------------------------------ load

def _plan(n, users, rng):
    """n orders: (user_id, amount Decimal, created_at) with random months of
    2025 and amounts of 0.01..9999.99."""
    out = []
    for _ in range(n):
        cents = rng.randint(1, 999999)
        m, d = rng.randint(1, 12), rng.randint(1, 28)
        ts = f"2025-{m:02d}-{d:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
        out.append((rng.choice(users), D(cents) / 100, ts))
    return out


def _post_all(base, plan, workers, on_done=None):
    """POST each planned order (one request each) with `workers` threads;
    returns {order_id: (user, amount, month)} of the 201 answers and the
    list of other answers."""
    posted, failed, lock = {}, [], threading.Lock()

    def one(item):
        user, amount, ts = item
        resp = http("POST", base + ORDERS,
                    body={"user_id": user, "amount": float(amount), "created_at": ts},
                    timeout=30)
        with lock:
            if resp.status == 201:
                got = resp.json
                assert D(str(got["amount"])) == amount, describe(resp)
                posted[got["id"]] = (user, amount, int(ts[5:7]))
            else:
                failed.append(describe(resp))
            if on_done:
                on_done(len(posted) + len(failed))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(one, item) for item in plan]:
            f.result()
    return posted, failed


def _lines(invoices):
    return [l for inv in invoices for l in inv["orders"]]


def _assert_projection(invoices, posted):
    """Every posted order on exactly one line of the right invoice, and
    order_count and total of every invoice are the posted sums."""
    lines = _lines(invoices)
    ids = [l["order_id"] for l in lines]
    assert len(ids) == len(set(ids)), "an order id is on two lines"
    assert set(ids) == set(posted), (
        f"missing {sorted(set(posted) - set(ids))[:20]}, "
        f"unexpected {sorted(set(ids) - set(posted))[:20]}")
    want = defaultdict(lambda: [0, D(0)])
    for user, amount, month in posted.values():
        want[(user, 2025, month)][0] += 1
        want[(user, 2025, month)][1] += amount
    got = {}
    for inv in invoices:
        key = (inv["user_id"], inv["year"], inv["month"])
        assert key not in got, f"two invoices for {key}"
        got[key] = [inv["order_count"], inv["total"]]
        assert inv["total"] == sum((l["amount"] for l in inv["orders"]), D(0)), inv
        assert len(inv["orders"]) == inv["order_count"], inv
        for l in inv["orders"]:
            user, amount, month = posted[l["order_id"]]
            assert (user, 2025, month) == key and l["amount"] == amount, (l, key)
    assert got == dict(want)


def test_kill_9_mid_burst_loses_and_repeats_nothing(fresh_system):
    s = fresh_system()
    rng = random.Random()
    users = [101, 102, 103, 104, 105, 106]
    plan = _plan(300, users, rng)
    done = {"n": 0}
    cond = threading.Condition()

    def progress(n):
        with cond:
            done["n"] = n
            cond.notify_all()

    def reached(n):
        with cond:
            return cond.wait_for(lambda: done["n"] >= n, timeout=60)

    result = {}
    poster = threading.Thread(
        target=lambda: result.update(zip(("posted", "failed"),
                                         _post_all(s.order.base_url, plan, 12, progress))))
    poster.start()
    try:
        # First kill: while orders keep arriving and being applied.
        assert reached(60), "orders are not being posted"
        wait_until(lambda: list_invoices(s, {"limit": 1000}), timeout=30,
                   message="the consumer applying the burst")
        s.invoice.kill()
        assert reached(180), "posting stalled"
        s.invoice.start()
        # Second kill: while the backlog of the downtime is being consumed.
        before = len(_lines(list_invoices(s, {"limit": 1000})))
        wait_until(lambda: len(_lines(list_invoices(s, {"limit": 1000}))) > before,
                   timeout=120, interval=0.02, message="consumer back at work")
        s.invoice.kill()
        s.invoice.start()
    finally:
        poster.join(timeout=120)
    assert not poster.is_alive()
    posted, failed = result["posted"], result["failed"]
    # The read side is under test here: a rare 503 of the write side under
    # load is tolerated (its order is then simply not posted), anything
    # else is not. test_500_orders_... is strict about it.
    assert all(f.startswith("503 ") for f in failed), f"orders refused: {failed[:5]}"
    assert len(posted) >= 285, f"too many orders refused: {failed[:5]}"

    wait_until(lambda: len(_lines(all_invoices(s))) >= len(posted), timeout=90,
               interval=0.5, message="every posted order on an invoice")
    wait_until(lambda: queue_depth(s.amqp_url, "order") == 0, timeout=30,
               message="queue order drained")
    _assert_projection(all_invoices(s), posted)
    assert queue_depth(s.amqp_url, DEAD_LETTER) in (0, None), "valid events dead-lettered"


def test_500_orders_20_users_concurrency_50(system):
    rng = random.Random()
    users = sorted({big_id() for _ in range(20)})
    assert len(users) == 20
    plan = _plan(500, users, rng)
    posted, failed = _post_all(system.order.base_url, plan, 50)
    assert not failed, (f"{len(failed)} of 500 valid orders refused by "
                        f"POST {ORDERS} at concurrency 50: {failed[:5]}")
    assert len(posted) == 500

    def mine(page):
        return [inv for u in users for inv in all_invoices(system, page=page, user_id=u)]

    wait_until(lambda: len(_lines(mine(1000))) >= 500, timeout=90, interval=0.5,
               message="500 orders on invoices")
    invoices = mine(5)  # paged five at a time
    _assert_projection(invoices, posted)
    lines = _lines(invoices)
    assert len(lines) == 500
    assert sum((inv["total"] for inv in invoices), D(0)) == \
        sum((amount for _, amount, _ in posted.values()), D(0))
    # The same invoices through other filters and pages.
    for month in (1, 6, 12):
        by_month = [inv for inv in all_invoices(system, page=3, year=2025, month=month)
                    if inv["user_id"] in set(users)]
        assert by_month == [inv for inv in invoices if inv["month"] == month] and \
            [inv["user_id"] for inv in by_month] == sorted(inv["user_id"] for inv in by_month)
    # Without limit, a page has at most 100 invoices (there are more now).
    everything = all_invoices(system)
    assert len(everything) > 100
    assert len(list_invoices(system)) == 100
    assert len({inv["id"] for inv in everything}) == len(everything)
