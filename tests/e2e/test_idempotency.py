"""docs/api.md 8.1 "Idempotent creates: Idempotency-Key", on the POSTs of the
user-service and the order-service, on SQLite and (TEST_DB=postgres) on
PostgreSQL.

  * the same POST sent 2, 10 and 100 times at once with one key creates one
    entity and publishes one event; every answer is the first one's (status,
    body, Location), the others marked Idempotent-Replayed: true (in one
    process the group-commit thread takes the duplicates one after the
    other, so they wait for the first and replay it rather than get 409);
  * a retry after kill -9 and a restart still replays;
  * the same key with another body, or on another path: 422
    idempotency_key_mismatch; a key in an open transaction of another
    replica (PostgreSQL): 409 idempotency_key_in_use with Retry-After;
  * an expired key (a small --idempotency-ttl) creates again, and expired
    keys are swept;
  * an invalid key (empty, 256 characters, not printable ASCII, sent twice)
    is 400 invalid_header and creates nothing;
  * answers other than 201 (409, 422) are not remembered.

"Nothing was published" is proven with a marker: events leave the outbox
in commit order, so once the marker created after the requests has been
delivered, every event those requests caused has been too.
"""
import http.client as httpclient
import json
import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from contract import (ACCOUNTS, ORDERS, USERS, account_body, describe, get,
                      uemail, user_body, uuser_id)
from harness import PSQL, Postgres, Service, db_mode, shared_postgres
from helpers import Tap, http, wait_until

WAIT = 30          # seconds for an event that must come
REPLAYED = "Idempotent-Replayed"


def ukey(prefix="k"):
    return f"{prefix}-{uuid.uuid4().hex}"


def post_key(base, path, data, key, rid=None, timeout=30):
    """POST data (a JSON value, or bytes sent as they are) with key."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if rid is not None:
        headers["X-Request-Id"] = rid
    return http("POST", base + path, raw=raw, headers=headers, timeout=timeout)


def post_headers(port, path, data, header_lines):
    """POST with header lines given as bytes, sent as they are (for values
    a client library would refuse or re-encode)."""
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(data)))
        for name, value in header_lines:
            conn.putheader(name, value)
        conn.endheaders(data)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def assert_error(resp, status, code):
    assert resp.status == status, describe(resp)
    err = resp.json["error"]
    assert err["status"] == status and err["code"] == code, resp.json
    assert "field" not in err, resp.json  # docs/api.md 8.1: these carry no field
    assert "index" not in err, resp.json


def assert_same_answer(first, other):
    assert other.status == first.status, describe(other)
    assert other.body == first.body, (other.body, first.body)
    assert other.headers.get("Location") == first.headers.get("Location")
    assert other.headers.get("Content-Type") == first.headers.get("Content-Type")


def orders_of(base, user_id):
    r = get(base, ORDERS, {"user_id": user_id, "limit": 1000})
    assert r.status == 200, describe(r)
    return r.json


def users_with_email(base, email):
    r = get(base, USERS, {"email": email})
    assert r.status == 200, describe(r)
    return r.json


def order_events(tap, user_id, marker_id):
    """Distinct order.created events of user_id (by event id) seen until the
    marker order's event has come."""
    got = tap.get_all(timeout=WAIT, until=lambda evs: any(
        isinstance(b, dict) and b.get("data", {}).get("id") == marker_id
        for _, b in evs))
    assert any(isinstance(b, dict) and b["data"]["id"] == marker_id
               for _, b in got), "the marker event did not come"
    ids = {b["id"] for _, b in got
           if isinstance(b, dict) and b["data"]["user_id"] == user_id}
    return ids


def create_marker(base, user_id):
    r = post_key(base, ORDERS, {"user_id": user_id, "amount": 1}, None)
    assert r.status == 201, describe(r)
    return r.json["id"]


def metric(base, name):
    r = http("GET", base + "/metrics")
    assert r.status == 200
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\d+)", r.text, re.M)
    return int(m.group(1)) if m else 0


# ------------------------------------------------------------ concurrency

@pytest.mark.parametrize("n", [2, 10, 100])
def test_concurrent_same_key_creates_one_order(system, n):
    base = system.order.base_url
    uid, marker_uid = uuser_id(), uuser_id()
    key = ukey()
    raw = json.dumps({"user_id": uid, "amount": 19.99, "description": f"x{n}"}).encode()
    with Tap(system.amqp_url, "order.created") as tap:
        barrier = threading.Barrier(n)

        def send(i):
            barrier.wait(timeout=30)
            return post_key(base, ORDERS, raw, key, rid=f"idem-{n}-{i}")

        with ThreadPoolExecutor(max_workers=n) as ex:
            answers = list(ex.map(send, range(n)))

        fresh = [a for a in answers if a.headers.get(REPLAYED) is None]
        assert len(fresh) == 1, [describe(a) for a in answers if a.status != 201][:3]
        first = fresh[0]
        assert first.status == 201, describe(first)
        assert first.headers["Location"] == f"{ORDERS}/{first.json['id']}"
        for a in answers:
            assert_same_answer(first, a)
            if a is not first:
                assert a.headers[REPLAYED] == "true"
        assert [o["id"] for o in orders_of(base, uid)] == [first.json["id"]]

        marker = create_marker(base, marker_uid)
        # Events of uid come before the marker's in commit order.
        got = tap.get_all(timeout=WAIT, until=lambda evs: any(
            isinstance(b, dict) and b["data"]["id"] == marker for _, b in evs))
        ids = {b["id"] for _, b in got if isinstance(b, dict)
               and b["data"]["user_id"] == uid}
        assert any(isinstance(b, dict) and b["data"]["id"] == marker for _, b in got)
        assert len(ids) == 1, f"{len(ids)} order.created events for one key"


def test_concurrent_same_key_creates_one_user(system):
    base = system.user.base_url
    body = user_body()
    key = ukey()
    raw = json.dumps(body).encode()
    n = 10
    with ThreadPoolExecutor(max_workers=n) as ex:
        answers = list(ex.map(lambda _: post_key(base, USERS, raw, key), range(n)))
    first = next(a for a in answers if a.headers.get(REPLAYED) is None)
    assert first.status == 201, describe(first)
    for a in answers:  # a replay, not 409 conflict for the taken email
        assert_same_answer(first, a)
    assert sum(1 for a in answers if a.headers.get(REPLAYED) == "true") == n - 1
    assert len(users_with_email(base, body["email"])) == 1


def test_account_and_batch_replay(system):
    base = system.user.base_url
    user = post_key(base, USERS, user_body(), None).json
    key = ukey()
    a1 = post_key(base, ACCOUNTS, account_body(user["id"]), key)
    assert a1.status == 201, describe(a1)
    a2 = post_key(base, ACCOUNTS, account_body(user["id"]), key)
    assert_same_answer(a1, a2)
    assert a2.headers[REPLAYED] == "true"
    r = get(base, ACCOUNTS, {"user_id": user["id"]})
    assert len(r.json) == 1

    # A batch: the array again, and no Location.
    uid = uuser_id()
    batch = [{"user_id": uid, "amount": 1 + i} for i in range(5)]
    key = ukey()
    b1 = post_key(system.order.base_url, ORDERS, batch, key)
    assert b1.status == 201 and len(b1.json) == 5, describe(b1)
    assert "Location" not in b1.headers
    b2 = post_key(system.order.base_url, ORDERS, batch, key)
    assert_same_answer(b1, b2)
    assert b2.headers[REPLAYED] == "true"
    assert len(orders_of(system.order.base_url, uid)) == 5


def test_keys_belong_to_one_service(system):
    key = ukey()
    u = post_key(system.user.base_url, USERS, user_body(), key)
    o = post_key(system.order.base_url, ORDERS, {"user_id": uuser_id(), "amount": 2}, key)
    assert u.status == 201 and o.status == 201, (describe(u), describe(o))
    assert REPLAYED not in u.headers and REPLAYED not in o.headers


# --------------------------------------------------------------- restart

def test_replay_after_kill9_and_restart(fresh_system):
    s = fresh_system()
    base = s.order.base_url
    uid, marker_uid = uuser_id(), uuser_id()
    key = ukey()
    raw = b'{"user_id": %d, "amount": 5.5}' % uid
    tap = Tap(s.amqp_url, "order.created", durable=True)
    try:
        first = post_key(base, ORDERS, raw, key)
        assert first.status == 201, describe(first)
        assert s.order.kill() == -9
        s.order.start()
        base = s.order.base_url
        again = post_key(base, ORDERS, raw, key)
        assert_same_answer(first, again)
        assert again.headers[REPLAYED] == "true"
        assert [o["id"] for o in orders_of(base, uid)] == [first.json["id"]]
        assert len(order_events(tap, uid, create_marker(base, marker_uid))) == 1

        # A graceful restart too.
        s.order.restart()
        third = post_key(s.order.base_url, ORDERS, raw, key)
        assert_same_answer(first, third)
    finally:
        tap.close()


# -------------------------------------------------------------- mismatch

def test_same_key_other_request_is_422(system):
    base = system.order.base_url
    uid = uuser_id()
    key = ukey()
    raw = b'{"user_id": %d, "amount": 3}' % uid
    first = post_key(base, ORDERS, raw, key)
    assert first.status == 201, describe(first)

    other_body = post_key(base, ORDERS, b'{"user_id": %d, "amount": 4}' % uid, key)
    assert_error(other_body, 422, "idempotency_key_mismatch")
    # The fingerprint is over the bytes as sent: whitespace counts.
    spaced = post_key(base, ORDERS, b'{"user_id": %d,  "amount": 3}' % uid, key)
    assert_error(spaced, 422, "idempotency_key_mismatch")
    # Another path (and service) is another request; on the user service
    # the key is unknown.
    ukey_ = ukey()
    user = post_key(system.user.base_url, USERS, user_body(), ukey_)
    assert user.status == 201
    acct = post_key(system.user.base_url, ACCOUNTS, account_body(user.json["id"]), ukey_)
    assert_error(acct, 422, "idempotency_key_mismatch")
    # An invalid body under a used key: nothing is created either way.
    bad = post_key(base, ORDERS, b'{"user_id": %d, "amount": -1}' % uid, key)
    assert bad.status == 422, describe(bad)

    # None of these was remembered: the original still replays.
    again = post_key(base, ORDERS, raw, key)
    assert_same_answer(first, again)
    assert again.headers[REPLAYED] == "true"
    assert len(orders_of(base, uid)) == 1
    assert get(system.user.base_url, ACCOUNTS, {"user_id": user.json["id"]}).json == []


# --------------------------------------------------------- not remembered

def test_non_201_answers_are_not_remembered(system):
    base = system.user.base_url
    email = uemail()
    assert post_key(base, USERS, user_body(email=email), None).status == 201

    # 409 conflict (email taken) with a key: the key stays unused ...
    key = ukey()
    conflict = post_key(base, USERS, user_body(email=email.upper()), key)
    assert conflict.status == 409 and conflict.json["error"]["code"] == "conflict"
    # ... so the same key with another body is a fresh create, not 422.
    other = post_key(base, USERS, user_body(), key)
    assert other.status == 201, describe(other)
    assert REPLAYED not in other.headers

    # 422 invalid_field with a key: the retry, corrected, creates.
    key = ukey()
    uid = uuser_id()
    invalid = post_key(system.order.base_url, ORDERS, {"user_id": uid, "amount": 0.001}, key)
    assert invalid.status == 422, describe(invalid)
    fixed = post_key(system.order.base_url, ORDERS, {"user_id": uid, "amount": 1}, key)
    assert fixed.status == 201, describe(fixed)
    assert REPLAYED not in fixed.headers


# ------------------------------------------------------------ invalid keys

INVALID_KEYS = {
    "empty": b"",
    "256 characters": b"k" * 256,
    "tab": b"a\tb",
    "control": b"a\x01b",
    "delete": b"a\x7fb",
    "utf-8": "cl\u00e9".encode("utf-8"),
}


@pytest.mark.parametrize("what", sorted(INVALID_KEYS))
def test_invalid_key_is_400_and_creates_nothing(system, what):
    uid = uuser_id()
    data = b'{"user_id": %d, "amount": 1}' % uid
    status, headers, body = post_headers(system.order.port, ORDERS, data,
                                         [("Idempotency-Key", INVALID_KEYS[what])])
    assert status == 400, body
    err = json.loads(body)["error"]
    assert err["code"] == "invalid_header" and err["status"] == 400, err
    assert "field" not in err
    assert orders_of(system.order.base_url, uid) == []


def test_key_sent_twice_is_400(system):
    uid = uuser_id()
    data = b'{"user_id": %d, "amount": 1}' % uid
    status, _, body = post_headers(system.order.port, ORDERS, data,
                                   [("Idempotency-Key", b"one"), ("Idempotency-Key", b"two")])
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "invalid_header"
    assert orders_of(system.order.base_url, uid) == []


def test_longest_and_spaced_keys_are_valid(system):
    base = system.order.base_url
    longest = uuid.uuid4().hex + "k" * (255 - 32)
    for key in (longest, "a key with spaces " + uuid.uuid4().hex,
                '"~!' + uuid.uuid4().hex + '"'):
        uid = uuser_id()
        first = post_key(base, ORDERS, {"user_id": uid, "amount": 1}, key)
        assert first.status == 201, describe(first)
        again = post_key(base, ORDERS, {"user_id": uid, "amount": 1}, key)
        assert_same_answer(first, again)
        assert again.headers[REPLAYED] == "true"


# ------------------------------------------------------------------- TTL

def test_expired_key_is_a_new_key_and_is_swept(fresh_system):
    # The order service by flag, the user service by environment.
    s = fresh_system(args={"order": ["--idempotency-ttl", "1"]},
                     service_env={"user": {"IDEMPOTENCY_TTL": "1"}})
    for base, path, body in (
            (s.order.base_url, ORDERS, {"user_id": uuser_id(), "amount": 7}),
            (s.user.base_url, USERS, user_body())):
        key = ukey()
        raw = json.dumps(body).encode()
        first = post_key(base, path, raw, key)
        assert first.status == 201, describe(first)
        first_id = first.json["id"]

        # Retried until the key has expired: the retry then creates anew
        # (the user's email is free again only for orders; a user retry
        # after expiry is an ordinary create, so 409 for the same email).
        def not_replayed():
            r = post_key(base, path, raw, key)
            return r if REPLAYED not in r.headers else None
        fresh = wait_until(not_replayed, timeout=15, interval=0.2,
                           message="the key to expire")
        if path == ORDERS:
            assert fresh.status == 201, describe(fresh)
            assert fresh.json["id"] != first_id
            # The new answer is the one remembered now.
            again = post_key(base, path, raw, key)
            assert_same_answer(fresh, again)
            assert len(orders_of(base, body["user_id"])) == 2
        else:
            assert fresh.status == 409, describe(fresh)

    # Expired keys are deleted by the sweep, without any request.
    swept = metric(s.order.base_url, "idempotency_keys_swept_total")
    uid = uuser_id()
    assert post_key(s.order.base_url, ORDERS, {"user_id": uid, "amount": 1}, ukey()).status == 201
    wait_until(lambda: metric(s.order.base_url, "idempotency_keys_swept_total") > swept,
               timeout=15, message="the expired key to be swept")


def test_ttl_flag_in_help_and_checked():
    from harness import bin_dir
    out = subprocess.run([str(bin_dir() / "order-service"), "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "--idempotency-ttl" in out.stdout and "IDEMPOTENCY_TTL" in out.stdout
    bad = subprocess.run([str(bin_dir() / "user-service"), "--idempotency-ttl", "0"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2, bad.stderr


# ------------------------------------------------- in flight on a replica

class TableLock:
    """A psql session holding LOCK TABLE in an open transaction."""

    def __init__(self, pg, dbname, table):
        env = {"PGPASSWORD": Postgres.PASSWORD, "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen(
            [str(PSQL), "-h", "127.0.0.1", "-p", str(pg.port), "-U", Postgres.USER,
             "-d", dbname, "-Xq", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env)
        self.proc.stdin.write(f"BEGIN;\nLOCK TABLE {table} IN SHARE MODE;\n")
        self.proc.stdin.flush()

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("ROLLBACK;\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.mark.skipif(db_mode() != "postgres",
                    reason="replicas share a database on PostgreSQL only")
def test_key_in_flight_on_another_replica_is_409(fresh_system):
    s = fresh_system()
    pg = shared_postgres()
    dbname = pg.new_database("e2e_idem")
    url = pg.url(dbname) + "?busy_timeout=60000"
    replicas = [Service("order", s.tmp / f"order-{i}", s.amqp_url, database_url=url)
                for i in (1, 2)]
    lock = None
    try:
        for r in replicas:
            r.start()
        uid = uuser_id()
        key = ukey()
        raw = b'{"user_id": %d, "amount": 8.25}' % uid
        lock = TableLock(pg, dbname, "demo.orders")
        wait_until(lambda: pg.query(dbname, (
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE c.relname = 'orders' AND l.mode = 'ShareLock' AND l.granted"))[0][0] == "1",
            message="the test's table lock")

        # Replica 1 claims the key, then waits for the table.
        with ThreadPoolExecutor(max_workers=1) as ex:
            pending = ex.submit(post_key, replicas[0].base_url, ORDERS, raw, key, None, 90)
            wait_until(lambda: int(pg.query(dbname, (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND objsubid = 2 AND granted"
                " AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"))[0][0]) >= 1,
                message="replica 1 to hold the key")
            busy = post_key(replicas[1].base_url, ORDERS, raw, key)
            assert_error(busy, 409, "idempotency_key_in_use")
            assert busy.headers.get("Retry-After", "").isdigit(), busy.headers.items()
            assert not pending.done()
            lock.release()
            first = pending.result(timeout=90)
        assert first.status == 201, describe(first)
        assert REPLAYED not in first.headers

        # The 409 was not remembered: the retry replays replica 1's answer.
        again = post_key(replicas[1].base_url, ORDERS, raw, key)
        assert_same_answer(first, again)
        assert again.headers[REPLAYED] == "true"
        assert len(orders_of(replicas[1].base_url, uid)) == 1
    finally:
        if lock is not None:
            lock.release()
        for r in replicas:
            if r.running():
                r.stop()
