"""docs/api.md 8.3 "Event logs" (docs/eventlog.md): GET /system-api/events and
GET /order-service/events serve each writer's outbox as a list with
`after` and `limit`; each item is {"position", "event"}, the envelope as
published; every committed event once, in commit order; positions
positive, increasing, stable for ever. Admin routes: 404 without a token
configured, 401 with WWW-Authenticate for a missing or wrong bearer.

The paging tests read while several threads create: a reader that pages
with `after` must see, in the end, exactly the log as read once the
writers stopped (nothing skipped, nothing twice). On PostgreSQL the
creates go to two replicas of the order service on one database, whose
outbox seqs interleave and commit out of seq order."""
import threading

import pytest

from contract import ACCOUNTS, ORDERS, USERS, assert_error, describe, post
from dead_letter_helpers import admin, new_token
from harness import Service, System, db_mode
from helpers import Tap, http, unique_email
from invoice_helpers import big_id
from conftest import _require_binaries

USER_LOG = "/system-api/events"
ORDER_LOG = "/order-service/events"
ENVELOPE_KEYS = {"id", "type", "version", "source", "occurred_at", "data"}


@pytest.fixture(scope="module")
def tokened():
    _require_binaries()
    token = new_token()
    s = System(env={"ADMIN_TOKEN": token})
    s.wait_ready()
    yield s, token
    s.close()


def page(svc, path, token, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    r = admin(svc, "GET", path + (f"?{query}" if query else ""), token)
    assert r.status == 200, describe(r)
    assert isinstance(r.json, list), r
    for item in r.json:
        assert set(item) == {"position", "event"}, item
        assert isinstance(item["position"], int) and item["position"] > 0, item
        assert set(item["event"]) == ENVELOPE_KEYS, item
    return r.json


def read_log(svc, path, token, limit=1000):
    """The whole log, paged with after."""
    out, after = [], 0
    for _ in range(100000):
        items = page(svc, path, token, after=after, limit=limit)
        out.extend(items)
        if len(items) < limit:
            return out
        after = items[-1]["position"]
    raise AssertionError("the log never ended")


def assert_increasing(items):
    positions = [i["position"] for i in items]
    assert all(a < b for a, b in zip(positions, positions[1:])), positions[:50]
    ids = [i["event"]["id"] for i in items]
    assert len(ids) == len(set(ids)), "an event is in the log twice"


def create_user(base):
    r = post(base, USERS, {"name": "Log", "email": unique_email("log")})
    assert r.status == 201, describe(r)
    return r.json


def create_order(base, user_id, amount=1):
    r = post(base, ORDERS, {"user_id": user_id, "amount": amount})
    assert r.status == 201, describe(r)
    return r.json


# ------------------------------------------------------------------ access

def test_without_a_token_configured_the_logs_are_404(system):
    for svc, path in ((system.user, USER_LOG), (system.order, ORDER_LOG)):
        for auth in (None, "Bearer anything"):
            headers = {"Authorization": auth} if auth else {}
            r = http("GET", svc.base_url + path, headers=headers)
            assert_error(r, 404, "not_found")
            assert "WWW-Authenticate" not in r.headers


def test_a_missing_or_wrong_bearer_is_401_with_a_challenge(tokened):
    s, token = tokened
    for svc, path in ((s.user, USER_LOG), (s.order, ORDER_LOG)):
        for auth in (None, "", "Bearer", f"Basic {token}", f"Bearer {token}x",
                     f"Bearer {token[:-1]}", f"Bearer {new_token()}"):
            headers = {} if auth is None else {"Authorization": auth}
            r = http("GET", svc.base_url + path, headers=headers)
            assert_error(r, 401, "unauthorized")
            assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
            assert token not in r.text
        assert admin(svc, "GET", path, token).status == 200
    # A POST is not a route: 405 with Allow, once past nothing secret.
    r = admin(s.order, "POST", ORDER_LOG, token, body={})
    assert r.status == 405, describe(r)


def test_bad_after_or_limit_is_400_invalid_query(tokened):
    s, token = tokened
    cases = {
        "after=-1": "after", "after=01": "after", "after=1.0": "after",
        "after=x": "after", "after=": "after", "after": "after",
        "after=99999999999999999999": "after", "after=1&after=2": "after",
        "limit=0": "limit", "limit=1001": "limit", "limit=": "limit",
        "limit=+5": "limit", "limit=5&limit=5": "limit",
        "offset=0": "allowed: after, limit", "order_by=position": "allowed: after, limit",
        "bogus=1": "allowed: after, limit",
    }
    for query, needle in cases.items():
        for svc, path in ((s.user, USER_LOG), (s.order, ORDER_LOG)):
            r = admin(svc, "GET", f"{path}?{query}", token)
            assert_error(r, 400, "invalid_query", field=None)
            assert needle in r.json["error"]["message"], (query, r.json)
    # The edges are fine; after beyond the end is an empty page.
    assert page(s.order, ORDER_LOG, token, after=0, limit=1000) is not None
    assert page(s.order, ORDER_LOG, token, limit=1) is not None
    assert page(s.order, ORDER_LOG, token, after=9223372036854775807) == []


# ------------------------------------------------------------- the content

def test_every_published_event_is_in_the_log_once_as_published(tokened):
    s, token = tokened
    with Tap(s.amqp_url, "#") as tap:
        users = [create_user(s.user.base_url) for _ in range(3)]
        acct = post(s.user.base_url, ACCOUNTS, {"user_id": users[0]["id"], "address1": "1 Rd",
                                                "city": "C", "state": "S", "zip": "1"})
        assert acct.status == 201, describe(acct)
        orders = [create_order(s.order.base_url, users[i % 3]["id"], i + 1) for i in range(5)]
        batch = post(s.order.base_url, ORDERS, [{"user_id": users[1]["id"], "amount": 2}
                                                for _ in range(40)])
        assert batch.status == 201, describe(batch)
        expected = 3 + 1 + 5 + 40
        got = tap.get_all(expected=expected, timeout=60)
    assert len(got) == expected, f"{len(got)} of {expected} events arrived"
    published = {body["id"]: body for _, body in got}

    for svc, path, source in ((s.user, USER_LOG, "user-service"),
                              (s.order, ORDER_LOG, "order-service")):
        log = read_log(svc, path, token, limit=7)  # small pages: paging is exercised
        assert_increasing(log)
        assert log == read_log(svc, path, token), "paging changes the answer"
        by_id = {i["event"]["id"]: i["event"] for i in log}
        mine = {k: v for k, v in published.items() if v["source"] == source}
        assert mine, source
        for event_id, body in mine.items():
            # Once (assert_increasing), and exactly the envelope as published.
            assert by_id.get(event_id) == body, (event_id, by_id.get(event_id), body)
        assert all(i["event"]["source"] == source for i in log)

    # Created one after the other: the log has them in that (commit) order.
    log = read_log(s.order, ORDER_LOG, token)
    ids = [i["event"]["data"]["id"] for i in log if i["event"]["type"] == "order.created"]
    mine = [o["id"] for o in orders] + [o["id"] for o in batch.json]
    assert [i for i in ids if i in set(mine)] == mine


def test_the_answer_pages_with_after_and_limit(tokened):
    s, token = tokened
    user = create_user(s.user.base_url)
    for _ in range(5):
        create_order(s.order.base_url, user["id"])
    log = read_log(s.order, ORDER_LOG, token)
    assert len(log) >= 5
    first = page(s.order, ORDER_LOG, token, limit=2)
    assert first == log[:2]
    assert len(page(s.order, ORDER_LOG, token)) == min(len(log), 100)  # default limit
    mid = log[len(log) // 2]["position"]
    assert page(s.order, ORDER_LOG, token, after=mid, limit=3) == \
        [i for i in log if i["position"] > mid][:3]
    # after need not be a position of the log: the events above it.
    assert page(s.order, ORDER_LOG, token, after=log[-1]["position"]) == []


def test_positions_are_stable_across_a_restart(fresh_system):
    token = new_token()
    s = fresh_system(env={"ADMIN_TOKEN": token})
    user = create_user(s.user.base_url)
    for i in range(10):
        create_order(s.order.base_url, user["id"], i + 1)
    before = {path: read_log(svc, path, token)
              for svc, path in ((s.user, USER_LOG), (s.order, ORDER_LOG))}
    assert len(before[ORDER_LOG]) == 10 and len(before[USER_LOG]) == 1
    s.user.restart()
    s.order.restart()
    for i in range(3):
        create_order(s.order.base_url, user["id"], i + 1)
    assert read_log(s.user, USER_LOG, token) == before[USER_LOG]
    after = read_log(s.order, ORDER_LOG, token)
    assert after[:10] == before[ORDER_LOG]
    assert len(after) == 13
    assert_increasing(after)


# ------------------------------------------------------ paging under writes

def page_while_writing(writers, readers, token, user_id, threads=6, per_thread=60):
    """threads creators post orders (single and small batches) round-robin
    to writers while one reader pages the log with after (alternating
    between readers) until the creators are done and it reached the end.
    Returns (what the reader collected, the log read afterwards, the
    order ids created)."""
    created, errors = [], []
    lock = threading.Lock()
    done = threading.Event()

    def creator(k):
        try:
            for i in range(per_thread):
                base = writers[(i + k) % len(writers)].base_url
                if i % 5 == 0:
                    r = post(base, ORDERS, [{"user_id": user_id, "amount": 1} for _ in range(3)])
                    ids = [o["id"] for o in r.json] if r.status == 201 else []
                else:
                    r = post(base, ORDERS, {"user_id": user_id, "amount": 1})
                    ids = [r.json["id"]] if r.status == 201 else []
                if r.status != 201:
                    errors.append(describe(r))
                    return
                with lock:
                    created.extend(ids)
        except Exception as e:  # reported by the test
            errors.append(repr(e))

    seen, after, n = [], 0, 0
    workers = [threading.Thread(target=creator, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    try:
        for _ in range(1000000):
            finished = all(not t.is_alive() for t in workers)
            items = page(readers[n % len(readers)], ORDER_LOG, token, after=after, limit=5)
            n += 1
            seen.extend(items)
            if items:
                after = items[-1]["position"]
            elif finished:
                break  # the creators were done before this empty page was read
    finally:
        for t in workers:
            t.join(timeout=600)
    assert not errors, errors[:5]
    final = read_log(readers[0], ORDER_LOG, token)
    return seen, final, created


def check_paging(seen, final, created):
    assert_increasing(seen)
    assert_increasing(final)
    # Nothing skipped, nothing twice: paging saw exactly the final log.
    missing = sorted({i["position"] for i in final} - {i["position"] for i in seen})
    assert not missing, f"the pager skipped positions {missing[:20]}"
    assert [i["position"] for i in seen] == [i["position"] for i in final]
    assert seen == final
    logged = {i["event"]["data"]["id"] for i in final if i["event"]["type"] == "order.created"}
    assert set(created) <= logged, "a created order is missing from the log"


def test_paging_under_concurrent_writes_never_skips_or_repeats(fresh_system):
    token = new_token()
    s = fresh_system(env={"ADMIN_TOKEN": token})
    seen, final, created = page_while_writing([s.order], [s.order], token, big_id())
    assert len(created) >= 6 * 60
    check_paging(seen, final, created)


@pytest.mark.skipif(db_mode() != "postgres", reason="replicas share a PostgreSQL database")
def test_paging_with_two_writer_replicas_on_one_database(fresh_system):
    """The replicas' outbox seqs interleave and commit out of seq order;
    the log's positions follow the commits, so a reader paging on either
    replica skips nothing."""
    token = new_token()
    s = fresh_system(env={"ADMIN_TOKEN": token})
    order2 = Service("order", s.tmp / "order-2", s.amqp_url, env={"ADMIN_TOKEN": token},
                     database_url=s.order.database_url).start()
    try:
        writers = (s.order, order2)
        seen, final, created = page_while_writing(writers, writers, token, big_id(),
                                                  threads=8, per_thread=60)
        check_paging(seen, final, created)
        # Both replicas wrote, and serve the same log.
        assert read_log(order2, ORDER_LOG, token) == final
    finally:
        order2.stop()
