"""docs/api.md 8.6, "Tracing": a request's `traceparent` (or a new trace
when it is absent or invalid) travels with the events it causes, as the
AMQP header `traceparent`, and into the invoice consumer's log lines; each
hop keeps the trace id and makes its own span id."""
import re
import uuid

from contract import ACCOUNTS, ORDERS, USERS, account_body, describe, post, user_body, uuser_id
from helpers import log_count, wait_until
from test_events import EventTap, by_cid, rid_new

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_ids():
    return uuid.uuid4().hex, uuid.uuid4().hex[:16]


def header(ev):
    value = (ev.props.headers or {}).get("traceparent")
    if isinstance(value, bytes):
        value = value.decode()
    m = TRACEPARENT.match(value or "")
    assert m, f"traceparent header {value!r} of {ev!r}"
    assert m.group(1) != "0" * 32 and m.group(2) != "0" * 16
    return m.group(1), m.group(2), m.group(3)


def one_event(system, path, body, headers, key):
    tap = EventTap(system.amqp_url, key)
    try:
        rid = rid_new()
        svc = system.user if path != ORDERS else system.order
        resp = post(svc.base_url, path, body, headers=headers, rid=rid)
        assert resp.status == 201, describe(resp)
        events = tap.wait_for(by_cid(rid), 1)
        assert len(events) == 1, events
        return events[0], rid
    finally:
        tap.close()


def test_the_callers_trace_reaches_the_broker_with_a_span_of_the_event(system):
    trace_id, parent = new_ids()
    tp = f"00-{trace_id}-{parent}-01"
    user, _ = one_event(system, USERS, user_body(), {"traceparent": tp}, "user.created")
    got_trace, span, flags = header(user)
    assert (got_trace, flags) == (trace_id, "01")
    assert span != parent, "the event must be a span of its own"
    uid = user.body["data"]["id"]
    account, _ = one_event(system, ACCOUNTS, account_body(uid), {"traceparent": tp},
                           "account.created")
    assert header(account)[0] == trace_id
    order, _ = one_event(system, ORDERS, {"user_id": uid, "amount": 5},
                         {"traceparent": f"00-{trace_id}-{parent}-00"}, "order.created")
    assert header(order)[0] == trace_id
    assert header(order)[2] == "00", "the sampled flag is passed on as it came"


def test_each_event_of_a_batch_is_its_own_span_of_one_trace(system):
    trace_id, parent = new_ids()
    tap = EventTap(system.amqp_url, "order.created")
    try:
        rid = rid_new()
        body = [{"user_id": uuser_id(), "amount": i + 1} for i in range(5)]
        resp = post(system.order.base_url, ORDERS, body,
                    headers={"traceparent": f"00-{trace_id}-{parent}-01"}, rid=rid)
        assert resp.status == 201, describe(resp)
        events = tap.wait_for(by_cid(rid), 5)
        assert len(events) == 5
        heads = [header(e) for e in events]
        assert {h[0] for h in heads} == {trace_id}
        spans = {h[1] for h in heads}
        assert len(spans) == 5 and parent not in spans
    finally:
        tap.close()


def test_absent_or_invalid_traceparent_starts_a_new_trace(system):
    trace_id, parent = new_ids()
    invalid = [
        None,
        f"00-{trace_id.upper()}-{parent}-01",       # upper-case hex
        f"00-{'0' * 32}-{parent}-01",               # all-zero trace id
        f"ff-{trace_id}-{parent}-01",               # version ff
        f"00-{trace_id}-{parent}-01-extra",         # version 00 has no more fields
        "garbage",
    ]
    seen = set()
    for tp in invalid:
        headers = {"traceparent": tp} if tp is not None else {}
        ev, _ = one_event(system, ORDERS, {"user_id": uuser_id(), "amount": 1}, headers,
                          "order.created")
        got_trace, _, _ = header(ev)
        assert got_trace not in (trace_id, trace_id.upper(), "0" * 32), tp
        assert got_trace not in seen, "each request starts its own trace"
        seen.add(got_trace)


def test_the_consumer_logs_the_trace_with_a_span_of_its_own(system):
    trace_id, parent = new_ids()
    ev, rid = one_event(system, ORDERS, {"user_id": uuser_id(), "amount": 7},
                        {"traceparent": f"00-{trace_id}-{parent}-01"}, "order.created")
    _, event_span, _ = header(ev)

    def consumer_line():
        for line in system.invoice.log_text().splitlines():
            if f"trace_id={trace_id}" in line and "order.created" in line:
                return line
        return None

    line = wait_until(consumer_line, timeout=20, message="the consumer's log line")
    assert f"rid={rid}" in line, line          # the writer's request id
    assert f"parent_id={event_span}" in line, line
    span = re.search(r"span_id=([0-9a-f]{16})", line).group(1)
    assert span not in (event_span, parent), "the consumer makes its own span"
    # The writer's own line for the request carries the same trace.
    assert log_count(system.order, f"trace_id={trace_id}") >= 1
