"""docs/api.md "Read your writes: consistency tokens": every 201 of a writer
carries X-Consistency-Token, and GET /invoice-service/invoices[/{id}]
with consistent_with=TOKEN waits (suspended, no worker held) until the
read model has applied the events it names, or answers 503
not_consistent_yet with Retry-After: 1 after wait_ms."""
import re
import select
import signal
import socket
import threading
import time
from urllib.parse import quote

import pytest

from contract import ACCOUNTS, ORDERS, USERS, assert_error, describe, post
from harness import Service, db_mode
from helpers import http, unique_email, wait_until
from invoice_helpers import INVOICES, big_id, order_ids_of

TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]+$")
TOKEN = "X-Consistency-Token"
ORDER_AT = "2025-04-03T10:15:00.000Z"


def _token(resp):
    assert resp.status == 201, describe(resp)
    tok = resp.headers.get(TOKEN)
    assert tok and TOKEN_RE.match(tok), f"bad {TOKEN}: {tok!r}"
    return tok


def _query(params):
    return "?" + "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}"
                          for k, v in params)


def _get(system, params, path=INVOICES, timeout=40):
    return http("GET", system.invoice.base_url + path + _query(params), timeout=timeout)


def _order(system, user_id, amount=10):
    return post(system.order.base_url, ORDERS,
                {"user_id": user_id, "amount": amount, "created_at": ORDER_AT})


def _invoice_orders(resp):
    assert resp.status == 200, describe(resp)
    return {oid for inv in resp.json for oid in order_ids_of(inv)}


# ------------------------------------------------------------- the token

def test_every_201_carries_a_url_safe_token(system):
    ub, ob = system.user.base_url, system.order.base_url
    user = post(ub, USERS, {"name": "T", "email": unique_email()})
    account = post(ub, ACCOUNTS, {"user_id": user.json["id"], "address1": "1 Rd",
                                  "city": "C", "state": "S", "zip": "1"})
    order = _order(system, user.json["id"])
    batch = post(ob, ORDERS, [{"user_id": big_id(), "amount": 1} for _ in range(50)])
    tokens = [_token(r) for r in (user, account, order, batch)]
    assert len(set(tokens)) == 4, tokens
    # A refused create carries none.
    dup = post(ub, USERS, {"name": "T", "email": user.json["email"]})
    assert dup.status == 409 and TOKEN not in dup.headers, describe(dup)
    # A browser may read it.
    assert TOKEN in order.headers.get("Access-Control-Expose-Headers", ""), order.headers


def test_batch_token_stands_for_every_event(system):
    users = [big_id() for _ in range(200)]
    resp = post(system.order.base_url, ORDERS,
                [{"user_id": u, "amount": 1, "created_at": ORDER_AT} for u in users])
    tok = _token(resp)
    ids = {o["id"] for o in resp.json}
    seen = set()
    # Every invoice of the batch is there in the first consistent answer.
    for u in users[:20] + users[-20:]:
        r = _get(system, [("user_id", u), ("consistent_with", tok), ("wait_ms", 30000)])
        seen |= _invoice_orders(r)
    assert {o["id"] for o in resp.json if o["user_id"] in users[:20] + users[-20:]} <= seen
    assert seen <= ids


def test_user_and_order_tokens_combined(system):
    ub = system.user.base_url
    user = post(ub, USERS, {"name": "Combo", "email": unique_email()})
    uid = user.json["id"]
    account = post(ub, ACCOUNTS, {"user_id": uid, "address1": "9 Way", "city": "Town",
                                  "state": "ST", "zip": "999"})
    order = _order(system, uid, amount=12.5)
    params = [("user_id", uid), ("consistent_with", _token(user)),
              ("consistent_with", _token(account)), ("consistent_with", _token(order)),
              ("wait_ms", 20000)]
    r = _get(system, params)
    assert r.status == 200, describe(r)
    assert len(r.json) == 1, r.json
    inv = r.json[0]
    assert inv["name"] == "Combo" and inv["email"] == user.json["email"], inv
    assert inv["shipping_address"]["address1"] == "9 Way", inv
    assert order_ids_of(inv) == [order.json["id"]], inv
    # GET by id takes the tokens too.
    one = _get(system, [("consistent_with", _token(order)), ("wait_ms", 30000)],
               path=f"{INVOICES}/{inv['id']}")
    assert one.status == 200 and one.json["id"] == inv["id"], describe(one)


# ------------------------------------------------------------ read your writes

CLIENTS = 8
TRIES = 2000
BURST = 50


def _loop(system, tries, use_token, misses, errors, backlog=False):
    """Each try: create an order for a new user, then read its invoices at
    once (with or without the order's token); a read without the order is
    a miss."""
    try:
        for _ in range(tries):
            if backlog:  # a burst ahead of the order in the queue
                post(system.order.base_url, ORDERS,
                     [{"user_id": big_id(), "amount": 1} for _ in range(BURST)])
            uid = big_id()
            resp = _order(system, uid)
            params = [("user_id", uid)]
            if use_token:
                params += [("consistent_with", _token(resp)), ("wait_ms", 30000)]
            r = _get(system, params)
            if r.status != 200:
                errors.append(describe(r))
                return
            if resp.json["id"] not in _invoice_orders(r):
                misses.append(uid)
    except Exception as e:  # reported by the test
        errors.append(repr(e))


def _run_clients(system, per_client, use_token, backlog=False):
    misses, errors = [], []
    threads = [threading.Thread(target=_loop,
                                args=(system, per_client, use_token, misses, errors, backlog))
               for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "clients still running"
    assert not errors, errors[:5]
    return misses


def test_with_token_a_client_always_reads_its_order(system):
    misses = _run_clients(system, TRIES // CLIENTS, use_token=True)
    assert misses == [], f"{len(misses)} of {TRIES} consistent reads missed the order"


def test_without_token_reads_can_miss(system):
    # The same loop without the token, behind a burst of other orders:
    # the read model lags, and a read right after the create misses it.
    misses = _run_clients(system, 3, use_token=False, backlog=True)
    assert len(misses) >= 1, "no read missed its order: the test proves nothing"


# ------------------------------------------------------------- bad queries

def _tamper(tok):
    version, source, runs, mac = tok.split(".")
    first = runs.split("_")[0].split("-")[0]
    forged_runs = str(int(first) + 1000000) + runs[len(first):]
    other = "A" if mac[0] != "A" else "B"
    return [
        ".".join([version, source, forged_runs, mac]),          # a position never issued
        ".".join([version, source, runs, other + mac[1:]]),     # a changed mac
        ".".join([version, "invoice-service", runs, mac]),      # another writer
        ".".join(["2", source, runs, mac]),                     # another version
        ".".join([version, source, runs]),                      # no mac
        tok[:-1],                                               # truncated
        tok + "A",                                              # too long
        tok + "." + mac,                                        # a fifth part
    ]


@pytest.mark.parametrize("path_kind", ["list", "one"])
def test_forged_or_malformed_tokens_are_400(system, path_kind):
    tok = _token(_order(system, big_id()))
    path = INVOICES if path_kind == "list" else f"{INVOICES}/1"
    for bad in _tamper(tok) + ["", "abc", "1.order-service.1.", "1..1.AAAAAAAAAAAAAAAAAAAAAA",
                               "1.order-service.0.AAAAAAAAAAAAAAAAAAAAAA",
                               "1.order-service.2-1.AAAAAAAAAAAAAAAAAAAAAA",
                               "1.order-service.1-2_3.AAAAAAAAAAAAAAAAAAAAAA",
                               "x" * 5000, "ä", "1.order service.1.AAAA"]:
        r = _get(system, [("consistent_with", bad)], path=path)
        assert_error(r, 400, "invalid_query")
    # The genuine token is fine, also repeated.
    r = _get(system, [("consistent_with", tok), ("consistent_with", tok), ("wait_ms", 30000)],
             path=INVOICES)
    assert r.status == 200, describe(r)


def test_wait_ms_rules(system):
    tok = _token(_order(system, big_id()))
    for bad in ["-1", "30001", "1.5", "abc", "", "01", "99999999999999999999"]:
        r = _get(system, [("consistent_with", tok), ("wait_ms", bad)])
        assert_error(r, 400, "invalid_query")
    r = _get(system, [("consistent_with", tok), ("wait_ms", 1), ("wait_ms", 2)])
    assert_error(r, 400, "invalid_query")
    for path in (INVOICES, f"{INVOICES}/1"):
        r = _get(system, [("wait_ms", 1000)], path=path)
        assert_error(r, 400, "invalid_query")
    # Other parameters keep their rules with a token.
    r = _get(system, [("consistent_with", tok), ("limit", 0)])
    assert_error(r, 400, "invalid_query")
    r = _get(system, [("consistent_with", tok), ("user_id", 1)], path=f"{INVOICES}/1")
    assert_error(r, 400, "invalid_query")
    for ok in ("0", "30000"):
        r = _get(system, [("consistent_with", tok), ("wait_ms", ok)])
        assert r.status in (200, 503), describe(r)


# ------------------------------------------------------ when it cannot be met

@pytest.fixture
def paused_broker(fresh_system):
    """A system whose broker is paused: creates still commit (and get a
    token), but nothing reaches the read model until it resumes."""
    s = fresh_system(args={"invoice": ["--max-connections", "2000"]})
    s.broker.pause()
    try:
        yield s
    finally:
        if s.broker.paused:
            s.broker.resume()


def test_not_consistent_yet_within_wait_ms(paused_broker):
    s = paused_broker
    uid = big_id()
    resp = _order(s, uid)
    tok = _token(resp)
    for wait_ms in (0, 300, 1500):
        started = time.monotonic()
        r = _get(s, [("user_id", uid), ("consistent_with", tok), ("wait_ms", wait_ms)])
        took = time.monotonic() - started
        assert_error(r, 503, "not_consistent_yet")
        assert r.headers.get("Retry-After") == "1", r.headers
        assert wait_ms / 1000 <= took + 0.05, f"answered after {took:.3f}s, before wait_ms"
        assert took < wait_ms / 1000 + 2.0, f"answered after {took:.3f}s for wait_ms {wait_ms}"
    # A plain read answers at once, without the order.
    r = _get(s, [("user_id", uid)])
    assert r.status == 200 and r.json == [], describe(r)
    # Once the broker is back, the same token is met.
    s.broker.resume()
    r = _get(s, [("user_id", uid), ("consistent_with", tok), ("wait_ms", 30000)])
    assert _invoice_orders(r) == {resp.json["id"]}


WAITERS = 500


def _open_waiters(port, path, count):
    socks = []
    for _ in range(count):
        sk = socket.create_connection(("127.0.0.1", port), timeout=10)
        sk.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Connection: close\r\n\r\n".encode())
        socks.append(sk)
    return socks


def _read_all(socks, timeout):
    """Reads every socket to its end; returns {sock: bytes}."""
    out = {sk: b"" for sk in socks}
    open_ = set(socks)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_)[:500], [], [], 0.5)
        for sk in ready:
            chunk = sk.recv(65536)
            if chunk:
                out[sk] += chunk
            else:
                open_.discard(sk)
                sk.close()
    for sk in open_:
        sk.close()
    return out


def _waiting_timeline(s, count, timeout):
    """Polls reads_waiting until count reads wait at once or timeout
    seconds pass. Returns (reached, samples): samples are (seconds,
    value) pairs, every change of the value, for the failure message."""
    started = time.monotonic()
    samples, last = [], None
    while True:
        try:
            value = _metric(s, "reads_waiting")
        except OSError as e:  # a /metrics request refused or timed out
            value = repr(e)
        if value != last:
            samples.append((round(time.monotonic() - started, 2), value))
            last = value
        if isinstance(value, float) and value >= count:
            return True, samples
        if time.monotonic() - started >= timeout:
            return False, samples
        time.sleep(0.1)


def _why_not_waiting(s, samples):
    """What the service says about its waiting reads and its connections,
    for a set-up that did not reach its count."""
    text = http("GET", s.invoice.base_url + "/metrics").text
    counters = [ln for ln in text.splitlines()
                if ln.startswith(("reads_", "http_connections", "http_requests_total"))]
    return (f"reads_waiting over time (s, value): {samples}\n"
            + "\n".join(counters) + "\n--- invoice-service warnings and errors ---\n"
            + "\n".join(ln for ln in s.invoice.log_text().splitlines()
                        if " WARN " in ln or " ERROR " in ln)[-6000:])


def test_500_waiting_reads_do_not_stop_other_requests(paused_broker):
    s = paused_broker
    uid = big_id()
    resp = _order(s, uid)
    tok = _token(resp)
    path = INVOICES + _query([("user_id", uid), ("consistent_with", tok), ("wait_ms", 30000)])
    socks = _open_waiters(s.invoice.port, path, WAITERS)
    try:
        # Well inside the reads' own 30 s, so that none has timed out yet
        # when the checks below run.
        reached, samples = _waiting_timeline(s, WAITERS, timeout=15)
        assert reached, f"{WAITERS} reads never waited at once\n" + _why_not_waiting(s, samples)
        # Meanwhile plain requests are answered, and promptly.
        slowest = 0.0
        for i in range(30):
            started = time.monotonic()
            r = _get(s, [("user_id", uid)] if i % 2 else [("limit", 1)], timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            assert r.status == 200, describe(r)
            assert http("GET", s.invoice.base_url + "/healthz").status == 200
        assert slowest < 5.0, f"a plain read took {slowest:.2f}s beside {WAITERS} waiting"
        # Still waiting (nobody was answered), then all answered once
        # the events flow.
        assert _metric(s, "reads_waiting") >= WAITERS, _why_not_waiting(s, samples)
        s.broker.resume()
        answers = _read_all(socks, timeout=60)
    finally:
        for sk in socks:
            try:
                sk.close()
            except OSError:
                pass
    statuses = [a.split(b" ", 2)[1] if a.startswith(b"HTTP/") else a[:20]
                for a in answers.values()]
    assert statuses.count(b"200") == WAITERS, {st: statuses.count(st) for st in set(statuses)}
    assert all(str(resp.json["id"]).encode() in a for a in answers.values())


def _metric(s, name):
    text = http("GET", s.invoice.base_url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_shutdown_answers_waiting_reads(paused_broker):
    s = paused_broker
    tok = _token(_order(s, big_id()))
    path = INVOICES + _query([("consistent_with", tok), ("wait_ms", 30000)])
    socks = _open_waiters(s.invoice.port, path, 5)
    try:
        wait_until(lambda: _metric(s, "reads_waiting") >= 5, timeout=30,
                   message="5 reads waiting")
        started = time.monotonic()
        s.invoice.proc.send_signal(signal.SIGTERM)
        answers = _read_all(socks, timeout=10)
        took = time.monotonic() - started
    finally:
        for sk in socks:
            sk.close()
    # The drain answers them at once instead of waiting out their 30 s.
    assert took < 5, f"waiting reads answered {took:.1f}s after SIGTERM"
    s.broker.resume()
    s.invoice.stop()  # exits 0 with a clean log
    for a in answers.values():
        assert a.startswith(b"HTTP/1.1 503"), a[:200]
        assert b"not_consistent_yet" in a and b"Retry-After: 1" in a, a[:400]


# ------------------------------------------------- replicas on one database

@pytest.mark.skipif(db_mode() != "postgres", reason="replicas share a PostgreSQL database")
def test_tokens_are_exact_across_writer_and_reader_replicas(fresh_system):
    """Two order-service replicas (their seqs interleave, and commit out of
    seq order) and two invoice-service replicas competing for the queues on
    one database: a token from either writer, read on either reader, always
    shows the order."""
    s = fresh_system()
    order2 = Service("order", s.tmp / "order-2", s.amqp_url,
                     database_url=s.order.database_url).start()
    invoice2 = Service("invoice", s.tmp / "invoice-2", s.amqp_url,
                       database_url=s.invoice.database_url).start()
    try:
        writers = (s.order, order2)
        readers = (s.invoice, invoice2)
        misses, errors = [], []

        def client(k):
            try:
                for i in range(100):
                    uid = big_id()
                    resp = post(writers[(i + k) % 2].base_url, ORDERS,
                                {"user_id": uid, "amount": 3, "created_at": ORDER_AT})
                    tok = _token(resp)
                    reader = readers[(i // 2 + k) % 2]
                    r = http("GET", reader.base_url + INVOICES + _query(
                        [("user_id", uid), ("consistent_with", tok), ("wait_ms", 30000)]),
                        timeout=40)
                    if r.status != 200:
                        errors.append(describe(r))
                        return
                    if resp.json["id"] not in _invoice_orders(r):
                        misses.append(uid)
            except Exception as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not errors, errors[:5]
        assert misses == [], f"{len(misses)} consistent reads missed their order"
    finally:
        invoice2.stop()
        order2.stop()
