#!/usr/bin/python3
"""Fault injection: a steady load of creates while services are killed,
stopped, frozen and the broker restarted; then a check, from the services'
own APIs, that every accepted order is on exactly one invoice line with
exact totals and that nothing else changed.

    /usr/bin/python3 tests/e2e/chaos.py --duration 600 [--seed N]
    make chaos DURATION=600 [SEED=N]

test_chaos.py runs a short version of the same (run()) in `make test`.

What it does
  * starts a private RabbitMQ node and the three services (harness.System);
  * `--workers` threads send, in total about `--rate` requests per second,
    creates of users (up to `--users` of them), accounts and orders (single
    or atomic batches) with random amounts (2 decimals, 0.01 up to the
    maximum 1,000,000,000.00) and random `created_at` over several months
    and UTC offsets, so that the month of an order is the one of its UTC
    time; every request carries a unique tag (email, address1, description)
    so that its effect can be found later whatever its answer was;
  * one thread injects faults at random moments, one at a time: kill -9 a
    random service and start it again; SIGTERM it (it must exit 0 with a
    clean sanitizer log) and start it again; stop the broker and start it
    again; SIGSTOP a service for `--pause` seconds (longer than its AMQP
    heartbeat can stay unanswered, so the broker drops its connections)
    then SIGCONT. The first faults are one of each kind in random order.
  * at the end it waits (bounded) for the read side to settle and checks.

Heartbeat. The services ask for a 30 s heartbeat; RabbitMQ drops a peer
after two to three silent intervals. The long run (default) pauses for
3 x 30 + 5 = 95 s. `--heartbeat N` makes the broker offer N seconds instead
(the client takes the smaller value; RabbitMQ's advanced.config, the
services are untouched), so that a short run can pause for 3N + 5 s; the
short version in test_chaos.py uses 10 s and 35 s pauses. The broker's log
lines "missed heartbeats from client" are counted and printed.

The checks
  * write side: every 201 user, account and order is listed by its service
    with what the answer said; everything a service lists comes from one
    of our requests; a request answered with an error, or refused before
    anything was sent, created nothing; a request that got no answer (the
    connection broke: kill, stop, pause) may or may not have been applied,
    and counts as posted when its service lists it; batches are atomic.
  * read side, against everything the order service lists: each order is
    on exactly one invoice line, on the invoice of its user and of the
    UTC month of its created_at, with its amount, description and time; no
    line without an order; one invoice per (user, month); each total is
    the exact sum (Decimal, to the cent) of that user's orders of that
    month, and order_count their number; name and email are the user's;
    the shipping address is that of the user's highest account id (null
    without one).
  * the queues user, account, order and the dead-letter queue are empty;
    the services end with a graceful stop, exit 0, and logs free of
    sanitizer reports (LeakSanitizer included).

Replaying: --seed N gives the same sequence of faults and the same requests
per worker; the timing (which request meets which fault) differs run to
run, as it does in any system test.
"""

import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ServiceExitError, System  # noqa: E402
from helpers import queue_depth  # noqa: E402
import openapi_check  # noqa: E402

USERS = "/system-api/users"
ACCOUNTS = "/system-api/accounts"
ORDERS = "/order-service/orders"
INVOICES = "/invoice-service/invoices"
DEAD_LETTER = "invoice-service.dead-letter"
QUEUES = ("user", "account", "order", DEAD_LETTER)

FAULTS = ("kill9", "sigterm", "broker_restart", "pause")
HB_MISSED = "missed heartbeats from client"  # the broker's log line per expiry
SERVICE_HEARTBEAT = 30     # what the services ask for (src/lib/outbox.c, consumer.c)
MAX_CENTS = 100_000_000_000  # 1,000,000,000.00
CENT = Decimal("0.01")


class Options:
    """Knobs of one run; defaults are the long run of `make chaos`."""

    def __init__(self, duration=600.0, seed=None, heartbeat=None, pause=None,
                 users=36, workers=4, rate=20.0, fault_gap=(3.0, 15.0),
                 settle=300.0, request_timeout=10.0, months=8, each_kind=True,
                 verbose=True):
        self.duration = float(duration)
        self.seed = seed if seed is not None else random.SystemRandom().randrange(1, 10**9)
        self.heartbeat = heartbeat
        hb = heartbeat if heartbeat else SERVICE_HEARTBEAT
        # RabbitMQ gives up on a silent peer after 2 to 3 heartbeat intervals.
        self.pause = float(pause) if pause is not None else 3 * hb + 5
        self.users = users
        self.workers = workers
        self.rate = rate
        self.fault_gap = fault_gap
        self.settle = settle
        self.request_timeout = request_timeout
        self.months = months
        self.each_kind = each_kind  # go on until every kind of fault ran once
        self.verbose = verbose


# ------------------------------------------------------------------ HTTP

def call(port, method, path, body=None, timeout=10.0):
    """One request on its own connection. Returns (outcome, status, data):
    outcome "answered"; "refused" when the connection could not be made
    (nothing was sent, so nothing can have happened); "unanswered" when it
    broke or timed out after the request went out (it may have happened)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError:
            return "refused", None, None
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            openapi_check.observe_response(conn, method, path, resp, data)
            return "answered", resp.status, data
        except (OSError, http.client.HTTPException):
            return "unanswered", None, None
    finally:
        conn.close()


def parse(data):
    """JSON with numbers with a fraction as Decimal (money stays exact)."""
    return json.loads(data, parse_float=Decimal)


def get_json(port, path, timeout=30.0):
    outcome, status, data = call(port, "GET", path, timeout=timeout)
    if outcome != "answered" or status != 200:
        raise RuntimeError(f"GET {path}: {outcome} {status} {data[:200] if data else ''!r}")
    return parse(data)


def get_all(port, path, page=1000, bound=1000):
    """Every item of a list endpoint, by pages of `page` ordered by id."""
    out = []
    sep = "&" if "?" in path else "?"
    for i in range(bound):
        items = get_json(port, f"{path}{sep}limit={page}&offset={i * page}&order_by=id")
        out.extend(items)
        if len(items) < page:
            return out
    raise RuntimeError(f"{path}: more than {page * bound} items")


# ------------------------------------------------------------------ data

def money_text(cents):
    return f"{cents // 100}.{cents % 100:02d}"


def cents_of(value):
    d = Decimal(value) if not isinstance(value, Decimal) else value
    c = d / CENT
    if c != c.to_integral_value():
        raise ValueError(f"not whole cents: {value!r}")
    return int(c)


def utc_month(rfc3339):
    """(year, month) of an RFC 3339 time, in UTC."""
    t = datetime.fromisoformat(rfc3339.replace("Z", "+00:00").replace("z", "+00:00"))
    t = t.astimezone(timezone.utc)
    return t.year, t.month


def normalize_time(rfc3339):
    """The service's form of a time: UTC, milliseconds, Z."""
    t = datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def encode(items):
    """JSON text of one object or a list of them; an "amount" given as
    int cents is written as an exact decimal number."""
    def one(obj):
        parts = []
        for k, v in obj.items():
            if k == "amount":
                parts.append(f'"amount": {money_text(v)}')
            else:
                parts.append(f"{json.dumps(k)}: {json.dumps(v)}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(items, list):
        return ("[" + ", ".join(one(o) for o in items) + "]").encode()
    return one(items).encode()


class Attempt:
    """One create request and what became of it."""
    __slots__ = ("kind", "items", "batch", "outcome", "status", "answer", "tags")

    def __init__(self, kind, items, batch):
        self.kind = kind            # "user", "account", "order"
        self.items = items          # list of the objects sent
        self.batch = batch          # sent as a JSON array
        self.outcome = None
        self.status = None
        self.answer = None          # list of created objects (201 only)
        self.tags = [o[TAG[kind]] for o in items]


# The field that makes each create findable whatever its answer was.
TAG = {"user": "email", "account": "address1", "order": "description"}


# ------------------------------------------------------------------ load

class Load:
    """Worker threads sending creates at a bounded rate."""

    def __init__(self, system, opts, log):
        self.s = system
        self.opts = opts
        self.log = log
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.attempts = []
        self.user_ids = []          # users answered 201
        self.users_asked = 0        # user items sent (any outcome)
        self.counter = Counter()    # (kind, outcome/status) -> n
        self.threads = []
        base = datetime(2025, 1, 1, tzinfo=timezone.utc)
        self.months = []
        for i in range(opts.months):
            y, m = base.year + (base.month - 1 + i) // 12, (base.month - 1 + i) % 12 + 1
            self.months.append((y, m))

    def start(self):
        for i in range(self.opts.workers):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True,
                                 name=f"load-{i}")
            t.start()
            self.threads.append(t)

    def finish(self, timeout=60):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=timeout)
        return [t.name for t in self.threads if t.is_alive()]

    # --- what to send

    def _created_at(self, rng):
        if rng.random() < 0.15:
            return None  # default: now
        y, m = rng.choice(self.months)
        # Any instant of the month, sometimes right at its edges, written
        # with an offset: the invoice month is the UTC one.
        start = datetime(y, m, 1, tzinfo=timezone.utc)
        nxt = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=timezone.utc)
        span = int((nxt - start).total_seconds())
        r = rng.random()
        if r < 0.1:
            sec = rng.randrange(0, 120)
        elif r < 0.2:
            sec = span - 1 - rng.randrange(0, 120)
        else:
            sec = rng.randrange(0, span)
        t = start + timedelta(seconds=sec, milliseconds=rng.randrange(1000))
        off = rng.choice([0, 0, 60, -300, 330, 120, -720, 840])
        local = t.astimezone(timezone(timedelta(minutes=off)))
        text = local.isoformat(timespec="milliseconds")
        if off == 0:
            text = text.replace("+00:00", "Z")
        return text

    def _cents(self, rng):
        r = rng.random()
        if r < 0.85:
            return rng.randint(1, 100_000)           # 0.01 .. 1000.00
        if r < 0.97:
            return rng.randint(100_000, 1_000_000_000)
        if r < 0.985:
            return MAX_CENTS
        return rng.choice([1, 10, 99, 101, MAX_CENTS - 1])

    def _user(self, rng, w, n):
        return {"name": f"Chaos User {w}.{n} " + rng.choice(["", "Ünïcode ✓", "O'Brien"]),
                "email": f"chaos-{self.opts.seed}-{w}-{n}@example.test"}

    def _account(self, rng, w, n, uid):
        acc = {"user_id": uid, "address1": f"{n} Fault Rd w{w} s{self.opts.seed}",
               "city": rng.choice(["Springfield", "Köln", "Paris"]),
               "state": rng.choice(["IL", "NW", "IDF"]), "zip": f"{rng.randrange(100000):05d}"}
        r = rng.random()
        if r < 0.3:
            acc["address2"] = f"Apt {rng.randrange(1, 99)}"
        elif r < 0.4:
            acc["address2"] = None
        if rng.random() < 0.2:
            acc["status"] = rng.choice(["open", "closed"])
        return acc

    def _order(self, rng, w, n, uid):
        o = {"user_id": uid, "amount": self._cents(rng),
             "description": f"chaos {self.opts.seed} w{w} n{n}"}
        ts = self._created_at(rng)
        if ts is not None:
            o["created_at"] = ts
        return o

    def _next(self, rng, w, n):
        with self.lock:
            known = list(self.user_ids)
            want_users = self.users_asked < self.opts.users
        if want_users and (not known or rng.random() < 0.3):
            k = rng.choice([1, 1, 1, 2, 3])
            with self.lock:
                k = max(1, min(k, self.opts.users - self.users_asked))
                self.users_asked += k
            items = [self._user(rng, w, f"{n}.{i}") for i in range(k)]
            return Attempt("user", items, k > 1 or rng.random() < 0.1)
        if not known:
            return None
        if rng.random() < 0.12:
            k = 1 if rng.random() < 0.85 else 2
            items = [self._account(rng, w, f"{n}.{i}", rng.choice(known)) for i in range(k)]
            return Attempt("account", items, k > 1)
        k = 1 if rng.random() < 0.85 else rng.randint(2, 5)
        items = [self._order(rng, w, f"{n}.{i}", rng.choice(known)) for i in range(k)]
        return Attempt("order", items, k > 1 or rng.random() < 0.05)

    # --- sending

    def _send(self, a):
        svc, path = {"user": (self.s.user, USERS), "account": (self.s.user, ACCOUNTS),
                     "order": (self.s.order, ORDERS)}[a.kind]
        body = encode(a.items if a.batch else a.items[0])
        a.outcome, a.status, data = call(svc.port, "POST", path, body,
                                         timeout=self.opts.request_timeout)
        if a.status == 201:
            ans = parse(data)
            a.answer = ans if isinstance(ans, list) else [ans]
        with self.lock:
            self.attempts.append(a)
            self.counter[(a.kind, a.status if a.outcome == "answered" else a.outcome)] += 1
            if a.kind == "user":
                if a.status == 201:
                    self.user_ids.extend(u["id"] for u in a.answer)
                elif a.outcome == "refused" or a.outcome == "answered":
                    self.users_asked -= len(a.items)  # nothing made: may ask again

    def _worker(self, w):
        rng = random.Random(f"{self.opts.seed}/worker/{w}")
        period = self.opts.workers / self.opts.rate
        next_at = time.monotonic() + rng.random() * period
        n = 0
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            next_at = max(next_at + period, time.monotonic() - period)
            n += 1
            a = self._next(rng, w, n)
            if a is None:
                continue
            try:
                self._send(a)
            except Exception as e:  # a bug here must not hide as silence
                self.log(f"load-{w}: {e!r}")
                with self.lock:
                    self.counter[(a.kind, "client-error")] += 1


# ------------------------------------------------------------------ faults

class Faults:
    """One fault at a time, at random moments, from its own random stream."""

    def __init__(self, system, opts, log):
        self.s = system
        self.opts = opts
        self.log = log
        self.rng = random.Random(f"{opts.seed}/faults")
        self.counter = Counter()
        self.problems = []
        self.history = []
        self.stop = threading.Event()
        self.thread = None

    def start(self, until):
        self.thread = threading.Thread(target=self._run, args=(until,), daemon=True,
                                       name="faults")
        self.thread.start()

    def join(self, timeout):
        self.thread.join(timeout=timeout)
        return not self.thread.is_alive()

    def _sleep(self, seconds):
        return self.stop.wait(seconds)

    def _start(self, svc):
        for attempt in range(3):
            try:
                svc.start()
                return
            except ServiceExitError as e:
                self.problems.append(f"{svc.name}-service did not start again "
                                     f"(try {attempt + 1}): {e}")
                time.sleep(1)

    def _run(self, until):
        kinds = list(FAULTS)
        self.rng.shuffle(kinds)
        while not self.stop.is_set():
            if self._sleep(self.rng.uniform(*self.opts.fault_gap)):
                break
            # Past the end only to finish one fault of each kind.
            if time.monotonic() >= until and not (kinds and self.opts.each_kind):
                break
            kind = kinds.pop(0) if kinds else self.rng.choice(FAULTS)
            try:
                self._inject(kind)
            except Exception as e:
                self.problems.append(f"fault {kind} failed: {e!r}")
                self.log(f"fault {kind} failed: {e!r}")

    def _broker_connected(self, svc, bound):
        """Wait, at most `bound` seconds, until the service's /readyz says
        its broker connection is up. True when it did."""
        deadline = time.monotonic() + bound
        while True:
            outcome, status, data = call(svc.port, "GET", "/readyz", timeout=5.0)
            if outcome == "answered" and data:
                try:
                    if parse(data).get("checks", {}).get("broker") == "ok":
                        return True
                except ValueError:
                    pass
            if time.monotonic() >= deadline or self._sleep(0.2):
                return False

    def _inject(self, kind):
        svc = self.rng.choice(self.s.services)
        t0 = time.monotonic()
        what = kind if kind == "broker_restart" else f"{kind} {svc.name}"
        if kind == "kill9":
            try:
                svc.kill()  # also checks the log so far for sanitizer reports
            except ServiceExitError as e:
                self.problems.append(str(e))
            self._sleep(self.rng.uniform(0.2, 3.0))
            self._start(svc)
        elif kind == "sigterm":
            try:
                rc = svc.stop(signal.SIGTERM, timeout=30)
                what += f" (exit {rc} in {time.monotonic() - t0:.1f}s)"
            except ServiceExitError as e:
                self.problems.append(f"SIGTERM {svc.name}: {e}")
            self._sleep(self.rng.uniform(0.2, 2.0))
            self._start(svc)
        elif kind == "broker_restart":
            self.s.broker.stop()
            self._sleep(self.rng.uniform(0.5, 4.0))
            self.s.broker.start()
        elif kind == "pause":
            # Frozen until the broker gives up on one of its connections
            # (a new "missed heartbeats" line), at least opts.pause and at
            # most three times that: the fault is the expiry, not a time.
            # Only a service that holds its broker connection can have it
            # expire: after a broker restart a writer may still be in its
            # reconnect backoff, and a frozen process never reconnects.
            connected = self._broker_connected(svc, bound=60.0)
            what += "" if connected else " (not connected to the broker)"
            expired = self.s.broker.log_text().count(HB_MISSED)
            svc.pause()
            try:
                if not self._sleep(self.opts.pause):
                    deadline = time.monotonic() + 2 * self.opts.pause
                    while (self.s.broker.log_text().count(HB_MISSED) <= expired
                           and time.monotonic() < deadline and not self._sleep(0.5)):
                        pass
            finally:
                svc.resume()
        self.counter[kind] += 1
        self.history.append((round(t0, 1), what, round(time.monotonic() - t0, 1)))
        self.log(f"fault: {what} ({time.monotonic() - t0:.1f}s)")


# ------------------------------------------------------------------ checks

class Truth:
    """What the services themselves list at the end."""

    def __init__(self, s):
        self.users = {u["id"]: u for u in get_all(s.user.port, USERS)}
        self.accounts = {a["id"]: a for a in get_all(s.user.port, ACCOUNTS)}
        self.orders = {o["id"]: o for o in get_all(s.order.port, ORDERS)}
        self.invoices = get_all(s.invoice.port, INVOICES)


def check_write_side(attempts, truth):
    """Answers against what the write services list. Returns (problems,
    posted counts by kind and how)."""
    problems = []
    posted = Counter()
    listed = {"user": {}, "account": {}, "order": {}}
    for kind, rows in (("user", truth.users), ("account", truth.accounts),
                       ("order", truth.orders)):
        field = TAG[kind]
        for row in rows.values():
            key = row.get(field)
            if key in listed[kind]:
                problems.append(f"{kind} {field}={key!r} listed twice: ids "
                                f"{listed[kind][key]['id']} and {row['id']}")
            listed[kind][key] = row
    sent = {"user": set(), "account": set(), "order": set()}
    for a in attempts:
        rows = [listed[a.kind].get(tag) for tag in a.tags]
        sent[a.kind].update(a.tags)
        present = [r is not None for r in rows]
        if a.status == 201:
            if len(a.answer) != len(a.items):
                problems.append(f"{a.kind} 201 with {len(a.answer)} items for {len(a.items)} sent")
                continue
            for item, ans, row in zip(a.items, a.answer, rows):
                if row is None:
                    problems.append(f"{a.kind} answered 201 (id {ans.get('id')}) is not listed")
                elif row != ans:
                    problems.append(f"{a.kind} {ans.get('id')}: listed {row} but answered {ans}")
                else:
                    problems.extend(compare_sent(a.kind, item, row))
            posted[(a.kind, "201")] += len(a.items)
        elif a.outcome == "unanswered":
            if any(present) and not all(present):
                problems.append(f"{a.kind} batch of {len(rows)} half applied: {a.tags}")
            if all(present):
                posted[(a.kind, "no answer, applied")] += len(rows)
                for item, row in zip(a.items, rows):
                    problems.extend(compare_sent(a.kind, item, row))
            else:
                posted[(a.kind, "no answer, not applied")] += len(rows)
        else:
            if any(present):
                problems.append(f"{a.kind} {a.tags[0]!r} exists but its request got "
                                f"{a.outcome} {a.status}")
    for kind in listed:
        extra = set(listed[kind]) - sent[kind]
        if extra:
            problems.append(f"{len(extra)} {kind}s listed that no request made, "
                            f"e.g. {sorted(extra)[:3]}")
    return problems, posted


def compare_sent(kind, item, row):
    out = []
    for k, v in item.items():
        got = row.get(k)
        if k == "amount":
            ok = cents_of(got) == v
        elif k == "created_at":
            ok = got == normalize_time(v)
        else:
            ok = got == v
        if not ok:
            out.append(f"{kind} {row.get('id')}: {k} sent {v!r}, stored {got!r}")
    if kind == "account" and "status" not in item and row.get("status") != "open":
        out.append(f"account {row.get('id')}: default status is {row.get('status')!r}")
    return out


def check_read_side(truth):
    """Invoices against the orders, users and accounts the write side lists."""
    problems = []
    expect = defaultdict(dict)   # (user, year, month) -> {order_id: order}
    for o in truth.orders.values():
        y, m = utc_month(o["created_at"])
        expect[(o["user_id"], y, m)][o["id"]] = o
    best_account = {}
    for acc in truth.accounts.values():
        if acc["id"] > best_account.get(acc["user_id"], {"id": 0})["id"]:
            best_account[acc["user_id"]] = acc

    seen_lines = Counter()
    by_key = {}
    for inv in truth.invoices:
        key = (inv["user_id"], inv["year"], inv["month"])
        if key in by_key:
            problems.append(f"two invoices for {key}: {by_key[key]['id']} and {inv['id']}")
        by_key[key] = inv
        want = expect.get(key, {})
        lines = inv["orders"]
        total = sum((Decimal(l["amount"]) for l in lines), Decimal(0))
        want_total = sum((Decimal(o["amount"]) for o in want.values()), Decimal(0))
        if Decimal(inv["total"]) != want_total:
            problems.append(f"invoice {key}: total {inv['total']} but its orders sum to "
                            f"{want_total}")
        if Decimal(inv["total"]) != total:
            problems.append(f"invoice {key}: total {inv['total']} but its lines sum to {total}")
        if inv["order_count"] != len(lines) or len(lines) != len(want):
            problems.append(f"invoice {key}: order_count {inv['order_count']}, "
                            f"{len(lines)} lines, {len(want)} orders")
        sort_key = [(l["purchase_dt"], l["order_id"]) for l in lines]
        if sort_key != sorted(sort_key):
            problems.append(f"invoice {key}: lines not sorted by purchase_dt, order_id")
        if inv["invoice_dt"] != f"{key[1]:04d}-{key[2]:02d}-01":
            problems.append(f"invoice {key}: invoice_dt {inv['invoice_dt']}")
        for l in lines:
            seen_lines[l["order_id"]] += 1
            o = truth.orders.get(l["order_id"])
            if o is None:
                problems.append(f"invoice {key}: line for order {l['order_id']}, "
                                "which the order service does not have")
                continue
            if l["order_id"] not in want:
                problems.append(f"order {o['id']} is on invoice {key}, should be on "
                                f"{(o['user_id'],) + utc_month(o['created_at'])}")
            if (Decimal(l["amount"]) != Decimal(o["amount"])
                    or l["description"] != o["description"]
                    or l["purchase_dt"] != o["created_at"]):
                problems.append(f"order {o['id']}: line {l} differs from order {o}")
        # The customer: name and email of the user, address of the highest
        # account id (a user that is not ours would be a problem above).
        u = truth.users.get(inv["user_id"])
        if u is None:
            problems.append(f"invoice {key}: user unknown to the user service")
        elif (inv["name"], inv["email"]) != (u["name"], u["email"]):
            problems.append(f"invoice {key}: name/email {inv['name']!r}/{inv['email']!r}, "
                            f"user has {u['name']!r}/{u['email']!r}")
        acc = best_account.get(inv["user_id"])
        addr = inv["shipping_address"]
        if acc is None:
            if addr is not None:
                problems.append(f"invoice {key}: address {addr} but the user has no account")
        else:
            want_addr = {k: acc[k] for k in ("address1", "address2", "city", "state", "zip")}
            if addr != want_addr:
                problems.append(f"invoice {key}: address {addr}, highest account "
                                f"{acc['id']} has {want_addr}")
    for key in expect:
        if key not in by_key:
            problems.append(f"no invoice for {key} ({len(expect[key])} orders)")
    missing = [oid for oid in truth.orders if seen_lines[oid] == 0]
    twice = [oid for oid, n in seen_lines.items() if n > 1]
    if missing:
        problems.append(f"{len(missing)} orders on no invoice line, e.g. {sorted(missing)[:5]}")
    if twice:
        problems.append(f"{len(twice)} orders on more than one line, e.g. {sorted(twice)[:5]}")
    return problems


def queue_depths(amqp_url):
    return {q: queue_depth(amqp_url, q) for q in QUEUES}


# ------------------------------------------------------------------ run

class Result:
    def __init__(self):
        self.ok = False
        self.problems = []
        self.report = []
        self.faults = Counter()      # fault kind -> times injected
        self.heartbeat_expiries = 0  # "missed heartbeats" lines of the broker
        self.requests = Counter()    # (kind, status or outcome) -> n

    def __bool__(self):
        return self.ok


def run(opts, out=print):
    """One chaos run; returns a Result (truthy when it passed) whose
    report lines were also given to out()."""
    res = Result()
    t_begin = time.monotonic()

    def log(line):
        if opts.verbose:
            out(f"[{time.monotonic() - t_begin:7.1f}s] {line}")

    def say(line):
        res.report.append(line)
        out(line)

    say(f"chaos: seed {opts.seed}, duration {opts.duration:.0f}s, broker heartbeat "
        f"{opts.heartbeat or 'default (services ask 30 s)'}, pause {opts.pause:.0f}s, "
        f"{opts.workers} workers at {opts.rate:g} req/s, {opts.users} users")
    s = System(broker_heartbeat=opts.heartbeat)
    closed = False
    load = faults = None
    try:
        log(f"system up: broker :{s.broker.port}, user :{s.user.port}, order :{s.order.port},"
            f" invoice :{s.invoice.port} ({s.tmp})")
        load = Load(s, opts, log)
        faults = Faults(s, opts, log)
        t_load = time.monotonic()
        load.start()
        faults.start(until=t_load + opts.duration)
        # The load goes on while the last fault is still in progress.
        if not faults.join(timeout=opts.duration + 4 * opts.pause + 600):
            faults.stop.set()
            res.problems.append("the fault thread did not finish in time")
            faults.join(timeout=120)
        stuck = load.finish(timeout=opts.request_timeout + 30)
        if stuck:
            res.problems.append(f"load threads did not stop: {stuck}")
        t_loaded = time.monotonic()
        log(f"load and faults over after {t_loaded - t_load:.0f}s; settling")

        # Everything must be up again (a service that died by itself is a problem).
        if not s.broker.running:
            s.broker.start()
        for svc in s.services:
            if not svc.running():
                rc = svc.proc.poll() if svc.proc else None
                res.problems.append(f"{svc.name}-service was not running at the end (exit {rc})")
                svc.start()

        # Settle: bounded wait until the read side agrees with the write side.
        deadline = time.monotonic() + opts.settle
        truth, read_problems, depths = None, ["not checked"], {}
        while True:
            try:
                truth = Truth(s)
                read_problems = check_read_side(truth)
                depths = queue_depths(s.amqp_url)
            except Exception as e:  # a service still coming back
                read_problems = [f"cannot read the state yet: {e!r}"]
            if not read_problems and all(v == 0 for v in depths.values()):
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(2)
        settle_s = time.monotonic() - t_loaded
        log(f"settled in {settle_s:.1f}s" if not read_problems else
            f"not settled after {settle_s:.1f}s")

        write_problems, posted = (check_write_side(load.attempts, truth)
                                  if truth else (["no state read"], Counter()))
        res.problems += faults.problems + write_problems + read_problems
        for q, d in depths.items():
            if d != 0:
                res.problems.append(f"queue {q} holds {d} messages at the end")
        fivexx = {k: n for k, n in load.counter.items()
                  if isinstance(k[1], int) and k[1] >= 500 and k[1] != 503}
        if fivexx:
            res.problems.append(f"answers with a server error other than 503: {fivexx}")
        if ("client-error" in {k[1] for k in load.counter}):
            res.problems.append("the load generator itself failed (see log)")
        hb_missed = s.broker.log_text().count(HB_MISSED)
        res.faults, res.heartbeat_expiries = faults.counter, hb_missed
        res.requests = load.counter

        # The report.
        say("faults: " + ", ".join(f"{k} {faults.counter[k]}" for k in FAULTS)
            + f"; heartbeat expiries seen by the broker: {hb_missed}")
        for t, what, took in faults.history:
            say(f"  at {t - t_load:6.1f}s {what} ({took}s)")
        by_kind = defaultdict(Counter)
        for (kind, how), n in load.counter.items():
            by_kind[kind][str(how)] += n
        total = sum(load.counter.values())
        say(f"requests: {total} in {t_loaded - t_load:.0f}s")
        for kind in ("user", "account", "order"):
            say(f"  {kind:7s} " + ", ".join(f"{k}: {v}" for k, v in sorted(by_kind[kind].items())))
        say("created: " + ", ".join(f"{k} {how}: {n}" for (k, how), n in sorted(posted.items())))
        if truth:
            lines = sum(len(i["orders"]) for i in truth.invoices)
            grand = sum((Decimal(i["total"]) for i in truth.invoices), Decimal(0))
            say(f"state: {len(truth.users)} users, {len(truth.accounts)} accounts, "
                f"{len(truth.orders)} orders; {len(truth.invoices)} invoices with {lines} "
                f"lines totalling {grand}")
        say(f"queues at the end: {depths}; settle {settle_s:.1f}s")
    finally:
        if faults is not None:
            faults.stop.set()
        if load is not None:
            load.stop.set()
        # Graceful stop of everything: exit 0 and clean sanitizer logs
        # (LeakSanitizer runs at each exit) are part of the verdict.
        try:
            s.close(check=True)
        except Exception as e:
            res.problems.append(f"final stop: {e}")
        closed = True
    assert closed
    res.ok = not res.problems
    for p in res.problems[:40]:
        say(f"PROBLEM: {p}")
    if len(res.problems) > 40:
        say(f"... and {len(res.problems) - 40} more problems")
    say(f"verdict: {'PASS' if res.ok else 'FAIL'} (seed {opts.seed}; replay with "
        f"--seed {opts.seed}) in {time.monotonic() - t_begin:.0f}s")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600,
                    help="seconds of load and faults (default 600)")
    ap.add_argument("--seed", type=int, help="seed of the random choices (default: random)")
    ap.add_argument("--heartbeat", type=int,
                    help="AMQP heartbeat in seconds offered by the broker (default: "
                         "RabbitMQ's, so the services' own 30 s)")
    ap.add_argument("--pause", type=float,
                    help="seconds a service stays SIGSTOPped (default 3 x heartbeat + 5)")
    ap.add_argument("--users", type=int, default=36)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rate", type=float, default=20.0, help="requests per second in total")
    ap.add_argument("--settle", type=float, default=300,
                    help="longest wait for the read side to catch up (default 300 s)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    a = ap.parse_args(argv)
    opts = Options(duration=a.duration, seed=a.seed, heartbeat=a.heartbeat, pause=a.pause,
                   users=a.users, workers=a.workers, rate=a.rate, settle=a.settle,
                   verbose=not a.quiet)
    res = run(opts, out=lambda line: print(line, flush=True))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
