"""docs/api.md "Dead letters": the invoice service keeps its own list of what it
dead-lettered (a table of its database, written with the batch that
decided it); an operator lists it without changing it and re-drives one
message or all of them to their original queue. A message fixed in the
meantime is then applied exactly once; one still bad comes back to the
list with its new reason. The queue invoice-service.dead-letter keeps its
copies for tools: a re-drive does not touch it."""
import json
import uuid
from decimal import Decimal

import pytest

from dead_letter_helpers import (DEAD_LETTERS, ITEM_KEYS, MAX_ATTEMPTS, TIME_RE,
                                 admin, all_dead_letters, drop_reject_trigger,
                                 install_reject_trigger, invoice_env,
                                 list_dead_letters, new_token, order_event,
                                 publish_many, wait_dead_letter)
from harness import System
from helpers import queue_depth, wait_until
from invoice_helpers import (DEAD_LETTER, WAIT, big_id, invoice_for, rare_year,
                             wait_invoice)
from conftest import _require_binaries


@pytest.fixture(scope="module")
def dl():
    """A system whose invoice service has an admin token; (system, token)."""
    _require_binaries()
    token = new_token()
    s = System(service_env={"invoice": invoice_env(token)})
    s.wait_ready()
    yield s, token
    s.close()


def marker():
    return uuid.uuid4().hex


def bad_amount_event(tag, year=2025):
    """Decodes as JSON but breaks the money rule: a dead letter at once."""
    ev = order_event(big_id(), big_id(), 1.0, year, description=tag)
    ev["data"]["amount"] = 0.001
    return ev


def redrive(svc, token, ident=None):
    path = f"{DEAD_LETTERS}/{ident}/redrive" if ident is not None else f"{DEAD_LETTERS}/redrive"
    return admin(svc, "POST", path, token)


def test_list_shows_each_dead_letter_and_listing_changes_nothing(dl):
    s, token = dl
    tag = marker()
    not_json = b"not json \xff\xfe " + tag.encode()
    bad_amount = bad_amount_event(tag)
    failing = big_id()
    install_reject_trigger(s.invoice, failing)
    failing_event = order_event(failing, big_id(), 2.5, rare_year(), description=tag)
    publish_many(s.amqp_url, [not_json, bad_amount, failing_event])

    wait_until(lambda: len([d for d in all_dead_letters(s.invoice, token)
                            if tag in d["body"]]) == 3,
               timeout=WAIT, message="three dead letters")
    items = {d["id"]: d for d in all_dead_letters(s.invoice, token) if tag in d["body"]}
    by_body = {d["body"]: d for d in items.values()}
    for d in items.values():
        assert set(d) == ITEM_KEYS
        assert isinstance(d["id"], int) and d["id"] > 0
        assert d["queue"] == "order"
        assert isinstance(d["reason"], str) and d["reason"]
        assert TIME_RE.match(d["dead_lettered_at"]), d
    # Bodies as received; bytes that are not UTF-8 shown as U+FFFD.
    assert "not json \ufffd\ufffd " + tag in by_body
    assert json.loads(by_body[json.dumps(bad_amount)]["body"]) == bad_amount
    failed = by_body[json.dumps(failing_event)]
    assert f"failed {MAX_ATTEMPTS} times" in failed["reason"]
    assert "rejected by the test trigger" in failed["reason"]
    assert "amount" in by_body[json.dumps(bad_amount)]["reason"]

    # Listing is a read: twice the same, and the queue keeps its copies.
    first = all_dead_letters(s.invoice, token)
    second = all_dead_letters(s.invoice, token)
    assert first == second
    assert [d["id"] for d in first] == sorted(d["id"] for d in first)
    # (The copy is published just after the row is committed.)
    wait_until(lambda: queue_depth(s.amqp_url, DEAD_LETTER) >= 3, timeout=30)

    # limit / offset page through the same list; GET by id.
    for k, d in enumerate(first):
        page = list_dead_letters(s.invoice, token, limit=1, offset=k)
        assert page == [d]
    one = admin(s.invoice, "GET", f"{DEAD_LETTERS}/{failed['id']}", token)
    assert one.status == 200 and one.json == failed, one
    missing = admin(s.invoice, "GET", f"{DEAD_LETTERS}/{10**15}", token)
    assert missing.status == 404 and missing.json["error"]["code"] == "not_found"
    for bad_query in ("limit=0", "limit=1001", "offset=-1", "bogus=1", "order_by=reason"):
        r = admin(s.invoice, "GET", f"{DEAD_LETTERS}?{bad_query}", token)
        assert r.status == 400 and r.json["error"]["code"] == "invalid_query", (bad_query, r)
    drop_reject_trigger(s.invoice, failing)


def test_redrive_of_a_message_fixed_meanwhile_applies_it_exactly_once(dl):
    s, token = dl
    year, user, order = rare_year(), big_id(), big_id()
    install_reject_trigger(s.invoice, order)
    event = order_event(order, user, 12.34, year)
    publish_many(s.amqp_url, [event])
    d = wait_dead_letter(s.invoice, token, event["id"])
    assert invoice_for(s, user, year, 4) is None

    drop_reject_trigger(s.invoice, order)
    r = redrive(s.invoice, token, d["id"])
    assert r.status == 202, r
    assert r.json == {"redriven": 1}, r
    inv = wait_invoice(s, user, year, 4, lambda i: i["order_count"] >= 1)
    assert [line["order_id"] for line in inv["orders"]] == [order]
    assert Decimal(str(inv["total"])) == Decimal("12.34")
    assert not [x for x in all_dead_letters(s.invoice, token) if x["id"] == d["id"]]
    # Gone from the list: a second re-drive of that id finds nothing.
    again = redrive(s.invoice, token, d["id"])
    assert again.status == 404 and again.json["error"]["code"] == "not_found", again
    # A later marker on the same queue has been applied: so has everything
    # before it, and the order is still on one line only.
    marker_order = big_id()
    publish_many(s.amqp_url, [order_event(marker_order, user, 1.0, year)])
    inv = wait_invoice(s, user, year, 4,
                       lambda i: marker_order in [x["order_id"] for x in i["orders"]])
    assert sorted(x["order_id"] for x in inv["orders"]) == sorted([order, marker_order])
    assert inv["order_count"] == 2


def test_redrive_of_a_still_bad_message_brings_it_back_with_its_new_reason(dl):
    s, token = dl
    order = big_id()
    install_reject_trigger(s.invoice, order, message="first reason")
    event = order_event(order, big_id(), 5.0, rare_year())
    publish_many(s.amqp_url, [event])
    first = wait_dead_letter(s.invoice, token, event["id"])
    assert "first reason" in first["reason"], first

    install_reject_trigger(s.invoice, order, message="second reason")
    r = redrive(s.invoice, token, first["id"])
    assert r.status == 202 and r.json == {"redriven": 1}, r
    back = wait_dead_letter(s.invoice, token, event["id"],
                            pred=lambda d: "second reason" in d["reason"])
    assert back["id"] > first["id"]
    assert back["body"] == first["body"] and back["queue"] == "order"
    assert f"failed {MAX_ATTEMPTS} times" in back["reason"]
    assert len([d for d in all_dead_letters(s.invoice, token) if event["id"] in d["body"]]) == 1
    assert admin(s.invoice, "GET", f"{DEAD_LETTERS}/{first['id']}", token).status == 404
    drop_reject_trigger(s.invoice, order)


def test_redrive_all_and_a_redrive_the_broker_does_not_confirm(fresh_system):
    token = new_token()
    s = fresh_system(service_env={"invoice": invoice_env(token)})
    tag = marker()
    year, user, fixable = rare_year(), big_id(), big_id()
    install_reject_trigger(s.invoice, fixable)
    poison = [bad_amount_event(tag), bad_amount_event(tag)]
    fix_event = order_event(fixable, user, 9.99, year, description=tag)
    publish_many(s.amqp_url, poison + [fix_event])
    wait_until(lambda: len(all_dead_letters(s.invoice, token)) == 3, timeout=WAIT,
               message="three dead letters")
    before = all_dead_letters(s.invoice, token)

    # The broker away: nothing is removed, the answer says to retry.
    s.broker.stop()
    try:
        r = redrive(s.invoice, token)
        assert r.status == 503 and r.json["error"]["code"] == "unavailable", r
        r = redrive(s.invoice, token, before[0]["id"])
        assert r.status == 503, r
        assert all_dead_letters(s.invoice, token) == before
    finally:
        s.broker.start()

    drop_reject_trigger(s.invoice, fixable)
    r = wait_until(lambda: (lambda x: x if x.status == 202 else None)(redrive(s.invoice, token)),
                   timeout=60, message="a re-drive of all once the broker is back")
    assert r.json == {"redriven": 3}, r
    inv = wait_invoice(s, user, year, 4, lambda i: i["order_count"] >= 1)
    assert [x["order_id"] for x in inv["orders"]] == [fixable]
    # The two still bad ones are back, under new ids, each once.
    wait_until(lambda: len(all_dead_letters(s.invoice, token)) == 2, timeout=WAIT,
               message="the two bad messages back on the list")
    after = all_dead_letters(s.invoice, token)
    assert sorted(json.loads(d["body"])["id"] for d in after) == sorted(p["id"] for p in poison)
    assert min(d["id"] for d in after) > max(d["id"] for d in before)
    assert redrive(s.invoice, token).json == {"redriven": 2}
