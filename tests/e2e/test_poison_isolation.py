"""One message that fails in the database, every time, must not block the
queue (issue 13): each delivery gets its own savepoint once its batch
fails, the failing one is retried a bounded number of times (counted in
the database, so across redeliveries and restarts) and then dead-lettered
with the database's error text, while the rest commits. A transient
failure (the database locked) delays everything and dead-letters
nothing, and /readyz says so while it lasts.

The failure is real: a trigger installed in the read model's own database
(SQLite file or PostgreSQL database) rejects one order id."""
import json
from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from dead_letter_helpers import (MAX_ATTEMPTS, DatabaseLock, all_dead_letters,
                                 db_query, events_metric, install_reject_trigger,
                                 invoice_env, metric, new_token, order_event,
                                 publish_many, wait_dead_letter)
from harness import Postgres, System, db_mode
from helpers import http, queue_depth, wait_until
from invoice_helpers import (DEAD_LETTER, all_invoices, big_id, header_text,
                             rare_year, take_all)
from conftest import _require_binaries

WAIT = 180  # seconds for 1,000 events through the ASan build on 2 busy cores


@pytest.fixture(scope="module")
def poison():
    """A system whose invoice service dead-letters after MAX_ATTEMPTS
    failures and reports a consumer failing for 1 s; yields (system, token)."""
    _require_binaries()
    token = new_token()
    s = System(service_env={"invoice": invoice_env(token)})
    s.wait_ready()
    yield s, token
    s.close()


def readyz(svc):
    return http("GET", svc.base_url + "/readyz", timeout=10)


def applied_orders(system, year):
    """order id -> how many invoice lines carry it, over the year's invoices."""
    lines = Counter()
    for inv in all_invoices(system, year=year):
        for line in inv["orders"]:
            lines[line["order_id"]] += 1
    return lines


def test_a_message_failing_in_the_database_is_dead_lettered_and_1000_around_it_apply_once(poison):
    s, token = poison
    year = rare_year()
    users = [big_id() for _ in range(10)]
    bad = big_id()
    install_reject_trigger(s.invoice, bad)
    retried0 = events_metric(s.invoice, "retried")
    dead0 = events_metric(s.invoice, "dead_lettered")

    good = [(big_id(), users[i % len(users)], Decimal(1 + i % 97) + Decimal("0.25"))
            for i in range(1000)]
    bodies = [order_event(o, u, float(a), year) for o, u, a in good]
    bad_event = order_event(bad, users[0], 7.77, year)
    bodies.insert(500, bad_event)
    publish_many(s.amqp_url, bodies)

    lines = wait_until(lambda: (lambda c: c if sum(c.values()) >= 1000 else None)(
        applied_orders(s, year)), timeout=WAIT, interval=0.5,
        message="the 1,000 good orders on invoices")
    assert lines == Counter({o: 1 for o, _, _ in good}), "each good order exactly once, bad absent"
    want = defaultdict(Decimal)
    for _, u, a in good:
        want[u] += a
    got = {inv["user_id"]: Decimal(str(inv["total"])) for inv in all_invoices(s, year=year)}
    assert got == dict(want)

    dl = wait_dead_letter(s.invoice, token, f'"id": {bad},')
    assert dl["queue"] == "order", dl
    assert f"failed {MAX_ATTEMPTS} times" in dl["reason"], dl
    assert f"order {bad} rejected by the test trigger" in dl["reason"], dl
    assert json.loads(dl["body"]) == bad_event
    # Exactly MAX_ATTEMPTS - 1 retries, then one dead letter (counted once
    # the batch is acked, just after the row is committed).
    wait_until(lambda: events_metric(s.invoice, "dead_lettered") - dead0 == 1, timeout=30)
    assert events_metric(s.invoice, "retried") - retried0 == MAX_ATTEMPTS - 1
    # The copy in the dead-letter queue carries the same reason.
    copies = [(p, b) for p, b in take_all(s.amqp_url, DEAD_LETTER)
              if json.loads(b).get("id") == bad_event["id"]]
    assert len(copies) == 1, copies
    assert header_text(copies[0][0], "x-dead-letter-reason") == dl["reason"]
    assert header_text(copies[0][0], "x-original-queue") == "order"
    # Nothing left behind: no queued message, no attempt count.
    wait_until(lambda: queue_depth(s.amqp_url, "order") == 0, timeout=30)
    assert db_query(s.invoice, "SELECT count(*) FROM delivery_attempts") == [["0"]]
    assert readyz(s.invoice).status == 200


def test_a_locked_database_delays_without_dead_letters_and_readyz_says_why(poison):
    s, token = poison
    year = rare_year()
    user = big_id()
    orders = [big_id() for _ in range(20)]
    dead_before = len(all_dead_letters(s.invoice, token))
    retried0 = events_metric(s.invoice, "retried")
    dead0 = events_metric(s.invoice, "dead_lettered")

    lock = DatabaseLock(s.invoice).acquire()
    try:
        publish_many(s.amqp_url, [order_event(o, user, 1.5, year) for o in orders])

        def consumer_reported():
            r = readyz(s.invoice)
            checks = (r.json or {}).get("checks", {})
            return r if r.status == 503 and checks.get("consumer", "ok") != "ok" else None
        r = wait_until(consumer_reported, timeout=60, interval=0.5,
                       message="/readyz to report the failing consumer")
        assert r.json["checks"]["database"] == "ok", r.json
        assert r.json["checks"]["broker"] == "ok", r.json
        assert "failing" in r.json["checks"]["consumer"], r.json
        assert r.json["error"]["code"] == "unavailable", r.json
        assert metric(s.invoice, "consumer_failed_batches") >= 1
        assert metric(s.invoice, "consumer_oldest_unapplied_seconds") >= 1
    finally:
        lock.release()

    lines = wait_until(lambda: (lambda c: c if sum(c.values()) >= 20 else None)(
        applied_orders(s, year)), timeout=WAIT, interval=0.5, message="the 20 orders")
    assert lines == Counter({o: 1 for o in orders})
    wait_until(lambda: readyz(s.invoice).status == 200, timeout=30,
               message="/readyz back to 200")
    assert metric(s.invoice, "consumer_failed_batches") == 0
    # Transient: no attempt counted, nothing dead-lettered.
    assert events_metric(s.invoice, "retried") == retried0
    assert events_metric(s.invoice, "dead_lettered") == dead0
    assert len(all_dead_letters(s.invoice, token)) == dead_before
    assert db_query(s.invoice, "SELECT count(*) FROM delivery_attempts") == [["0"]]


def test_attempts_are_counted_durably_across_a_restart(poison):
    s, token = poison
    svc = s.invoice
    bad = big_id()
    install_reject_trigger(svc, bad)
    event = order_event(bad, big_id(), 3.0, rare_year())
    key = event["id"]
    try:
        # Retry (almost) for ever, so that the message is still being
        # retried when the service stops.
        svc.stop()
        svc.env.update(invoice_env(token, max_attempts=1000))
        svc.start()
        publish_many(s.amqp_url, [event])

        def attempts():
            rows = db_query(svc, f"SELECT attempts FROM delivery_attempts"
                                 f" WHERE message_key = '{key}'")
            return int(rows[0][0]) if rows else 0
        wait_until(lambda: attempts() >= 3, timeout=60, message="3 failed attempts")
        svc.stop()
        counted = attempts()
        assert counted >= 3

        # One more attempt is all the new bound allows: a count kept in
        # memory only would start again from 0 and retry.
        svc.env.update(invoice_env(token, max_attempts=counted + 1))
        svc.start()
        dl = wait_dead_letter(svc, token, key)
        assert f"failed {counted + 1} times" in dl["reason"], dl
        # Metrics are counted once the batch is acked, just after the row
        # is committed.
        wait_until(lambda: events_metric(svc, "dead_lettered") == 1, timeout=30)
        assert events_metric(svc, "retried") == 0
        assert attempts() == 0
    finally:
        svc.stop()
        svc.env.update(invoice_env(token))
        svc.start()


@pytest.mark.skipif(db_mode() != "postgres",
                    reason="PostgreSQL only (SQLite has no server to stop; the lock test covers it)")
def test_postgres_stopped_briefly_dead_letters_nothing(fresh_system):
    """The invoice database on a cluster of its own, stopped while events
    arrive: they wait, nothing is retried or dead-lettered, and every one
    is applied once the cluster is back."""
    token = new_token()
    pg = Postgres()
    pg.start()
    s = None
    try:
        s = fresh_system(start=False, service_env={"invoice": invoice_env(token)})
        s.invoice.database_url = pg.url(pg.new_database("e2e_invoice"))
        s.start()
        year, user = rare_year(), big_id()
        first = [big_id() for _ in range(5)]
        publish_many(s.amqp_url, [order_event(o, user, 2.0, year) for o in first])
        wait_until(lambda: sum(applied_orders(s, year).values()) == 5, timeout=WAIT)

        pg.stop()
        later = [big_id() for _ in range(20)]
        publish_many(s.amqp_url, [order_event(o, user, 2.0, year) for o in later])
        r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(readyz(s.invoice)),
                       timeout=60, message="/readyz to report the database down")
        assert r.json["checks"]["database"] == "down", r.json
        pg.start()

        lines = wait_until(lambda: (lambda c: c if sum(c.values()) >= 25 else None)(
            applied_orders(s, year)), timeout=WAIT, interval=0.5, message="the 25 orders")
        assert lines == Counter({o: 1 for o in first + later})
        wait_until(lambda: readyz(s.invoice).status == 200, timeout=60)
        assert events_metric(s.invoice, "retried") == 0
        assert events_metric(s.invoice, "dead_lettered") == 0
        assert all_dead_letters(s.invoice, token) == []
        assert queue_depth(s.amqp_url, DEAD_LETTER) == 0
    finally:
        if s is not None:
            s.close()  # before its database goes away
        pg.close()
