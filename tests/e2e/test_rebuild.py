"""docs/api.md "The event log and rebuilding the read model" (docs/rebuild.md):
POST /invoice-service/rebuilds fills a fresh model from the writers' event
logs while the service keeps serving, catches up with the live queues and
swaps it in atomically; GET /invoice-service/rebuilds/{id} shows its
progress. Admin routes. The rebuilt model equals the live one field by
field (ids and updated_at included); nothing is lost or doubled across the
swap under load; queries answer throughout; one rebuild at a time (409);
a service killed mid-rebuild comes back serving the old model and the
rebuild shows failed; a writer that cannot be reached fails the rebuild
and leaves the model as it was; `invoice-service rebuild` does the same
from the command line."""
import json
import os
import re
import subprocess
import threading
import time
import uuid

import pytest

from contract import ACCOUNTS, ORDERS, USERS, assert_error, describe, post
from dead_letter_helpers import admin, new_token, wait_dead_letter
from harness import Service, System, bin_dir, db_mode
from helpers import http, unique_email, wait_until
from invoice_helpers import all_invoices, big_id, cents, envelope, send, user_data
from conftest import _require_binaries

REBUILDS = "/invoice-service/rebuilds"
REBUILD_KEYS = {"id", "status", "events_applied", "started_at", "finished_at", "error"}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# A rebuild of a few thousand events in an ASan build on a busy machine.
REBUILD_WAIT = 240
SETTLE_WAIT = 120


@pytest.fixture(scope="module")
def rb():
    """Every service with one admin token (so the invoice service's source
    token, by default its own admin token, opens the writers' logs)."""
    _require_binaries()
    token = new_token()
    s = System(env={"ADMIN_TOKEN": token})
    s.wait_ready()
    yield s, token
    s.close()


# ---------------------------------------------------------------- helpers

def start_rebuild(s, token):
    r = admin(s.invoice, "POST", REBUILDS, token)
    return r


def check_rebuild(obj):
    assert set(obj) == REBUILD_KEYS, obj
    assert isinstance(obj["id"], int) and obj["id"] > 0, obj
    assert obj["status"] in ("running", "done", "failed"), obj
    assert isinstance(obj["events_applied"], int) and obj["events_applied"] >= 0, obj
    assert TIME_RE.match(obj["started_at"]), obj
    if obj["status"] == "running":
        assert obj["finished_at"] is None and obj["error"] is None, obj
    else:
        assert TIME_RE.match(obj["finished_at"]), obj
    if obj["status"] == "done":
        assert obj["error"] is None, obj
    if obj["status"] == "failed":
        assert isinstance(obj["error"], str) and obj["error"], obj
    return obj


def get_rebuild(s, token, ident):
    r = admin(s.invoice, "GET", f"{REBUILDS}/{ident}", token)
    assert r.status == 200, describe(r)
    return check_rebuild(r.json)


def begin(s, token):
    r = start_rebuild(s, token)
    assert r.status == 202, describe(r)
    obj = check_rebuild(r.json)
    assert r.headers.get("Location") == f"{REBUILDS}/{obj['id']}", r.headers
    return obj


def wait_ended(s, token, ident, timeout=REBUILD_WAIT):
    return wait_until(lambda: (lambda o: o if o["status"] != "running" else None)(
        get_rebuild(s, token, ident)), timeout=timeout, interval=0.2,
        message=f"rebuild {ident} to end")


def rebuild_done(s, token):
    obj = begin(s, token)
    end = wait_ended(s, token, obj["id"])
    assert end["status"] == "done", end
    assert end["events_applied"] > 0, end
    return end


def model(s):
    """Every invoice, by id, parsed exactly (Decimals)."""
    return {inv["id"]: inv for inv in all_invoices(s)}


def order_lines(s):
    """order id -> [(invoice id, amount)] over every invoice."""
    out = {}
    for inv in all_invoices(s):
        for line in inv["orders"]:
            out.setdefault(line["order_id"], []).append((inv["id"], line["amount"]))
    return out


def make_user(s, name=None):
    r = post(s.user.base_url, USERS, {"name": name or "U " + uuid.uuid4().hex[:6],
                                      "email": unique_email()})
    assert r.status == 201, describe(r)
    return r.json


def make_account(s, user_id, city):
    r = post(s.user.base_url, ACCOUNTS, {"user_id": user_id, "address1": "1 Rd",
                                         "city": city, "state": "S", "zip": "1"})
    assert r.status == 201, describe(r)
    return r.json


def make_orders(s, user_id, count, created_at="2025-04-03T10:15:00.000Z", amount=1.25):
    out = []
    while count > 0:
        n = min(count, 1000)
        r = post(s.order.base_url, ORDERS, [{"user_id": user_id, "amount": amount,
                                             "created_at": created_at} for _ in range(n)])
        assert r.status == 201, describe(r)
        out.extend(r.json)
        count -= n
    return out


def wait_orders_projected(s, order_ids, timeout=SETTLE_WAIT):
    want = set(order_ids)
    wait_until(lambda: want <= set(order_lines(s)), timeout=timeout, interval=0.5,
               message=f"{len(want)} orders on invoices")



def some_history(s):
    """A user with an order on an invoice: a log that is not empty, made by
    the test that needs it (the module's tests may run on other workers)."""
    user = make_user(s)
    order = post(s.order.base_url, ORDERS, {"user_id": user["id"], "amount": 1.5})
    assert order.status == 201, describe(order)
    wait_orders_projected(s, [order.json["id"]])

def writer_log(s, token, svc, path):
    out, after = [], 0
    for _ in range(10000):
        r = admin(svc, "GET", f"{path}?after={after}&limit=1000", token)
        assert r.status == 200, describe(r)
        out.extend(r.json)
        if len(r.json) < 1000:
            return out
        after = r.json[-1]["position"]
    raise AssertionError("log too long")


def history(s, token, orders):
    """Creates `orders` more orders on a new user; returns the order ids."""
    user = make_user(s)
    created = make_orders(s, user["id"], orders)
    ids = [o["id"] for o in created]
    wait_orders_projected(s, ids)
    return ids


def running_rebuild(s, token, orders_step=2000, rounds=4):
    """Starts a rebuild and returns it while it is still running; when it
    ends too fast to be seen running, adds history and tries again."""
    for _ in range(rounds):
        obj = begin(s, token)
        if get_rebuild(s, token, obj["id"])["status"] == "running":
            return obj
        wait_ended(s, token, obj["id"])
        history(s, token, orders_step)
    pytest.fail(f"no rebuild could be caught running after {rounds} rounds")


# ---------------------------------------------------------------- access

def test_no_admin_token_means_404(system):
    for method, path in (("POST", REBUILDS), ("GET", f"{REBUILDS}/1")):
        r = http(method, system.invoice.base_url + path,
                 headers={"Authorization": "Bearer anything"})
        assert_error(r, 404, "not_found")


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic dXNlcjpwdw==",
                                  "Bearer", "Bearer  two spaces"])
def test_missing_wrong_or_malformed_bearer_is_401(rb, auth):
    s, _ = rb
    for method, path in (("POST", REBUILDS), ("GET", f"{REBUILDS}/1")):
        headers = {"Authorization": auth} if auth is not None else {}
        r = http(method, s.invoice.base_url + path, headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers


def test_unknown_or_malformed_id_is_404(rb):
    s, token = rb
    for ident in ("999999999", "0", "-1", "01", "abc", "1.0"):
        r = admin(s.invoice, "GET", f"{REBUILDS}/{ident}", token)
        assert_error(r, 404, "not_found")


# ---------------------------------------------------------------- results

def test_rebuild_reproduces_a_mixed_history_field_by_field(rb):
    s, token = rb
    # Orders first, for the user the user service creates next: the
    # invoice exists before its name and address. (Should another user
    # take that id, the orders are those of a user without events, which
    # is part of a mixed history too.)
    r = http("GET", s.user.base_url + USERS + "?order_by=-id&limit=1")
    assert r.status == 200, describe(r)
    next_id = (r.json[0]["id"] if r.json else 0) + 1
    early = make_orders(s, next_id, 2, created_at="2025-03-09T12:00:00.000Z", amount=5)
    wait_orders_projected(s, [o["id"] for o in early])
    make_user(s, "Carol " + uuid.uuid4().hex[:6])
    alice = make_user(s, "Alice " + uuid.uuid4().hex[:6])
    ord_before = make_orders(s, alice["id"], 3, created_at="2025-04-03T10:15:00.000Z")
    make_account(s, alice["id"], "First City")
    make_account(s, alice["id"], "Second City")  # two accounts: the higher id wins
    bob = make_user(s)
    make_orders(s, bob["id"], 2, created_at="2025-05-07T08:00:00.000Z", amount=19.99)
    orphan = big_id()  # orders of a user no user service knows
    make_orders(s, orphan, 2, created_at="2025-06-01T00:00:00.000Z", amount=0.01)
    ids = [o["id"] for o in ord_before]
    wait_orders_projected(s, ids)

    # Duplicates straight to the queue: logged events, delivered again.
    log = writer_log(s, token, s.order, "/order-service/events")
    for item in log[-3:]:
        send(s, item["event"])
    # A poison message: dead-lettered, changes nothing.
    tag = uuid.uuid4().hex
    send(s, b"not json " + tag.encode(), routing_key="order.created")
    wait_dead_letter(s.invoice, token, tag)
    # A later user.created for a known user (new event id): new name and
    # email, which no log holds.
    renamed = "Alice Renamed " + uuid.uuid4().hex[:6]
    new_email = unique_email()
    send(s, envelope("user.created", user_data(alice["id"], renamed, new_email),
                     source="test"))
    wait_until(lambda: all(inv["name"] == renamed for inv in all_invoices(s, user_id=alice["id"])),
               timeout=SETTLE_WAIT, message="the new name projected")
    wait_until(lambda: all(inv["shipping_address"] and
                           inv["shipping_address"]["city"] == "Second City"
                           for inv in all_invoices(s, user_id=alice["id"])),
               timeout=SETTLE_WAIT, message="the second account projected")
    wait_until(lambda: len(all_invoices(s, user_id=bob["id"])) == 1 and
               all_invoices(s, user_id=bob["id"])[0]["order_count"] == 2,
               timeout=SETTLE_WAIT, message="bob's orders projected")

    before = model(s)
    end = rebuild_done(s, token)
    after = model(s)
    assert after == before
    assert end["events_applied"] >= len(log)
    # The inbox still knows every event: a duplicate after the swap is one.
    send(s, log[-1]["event"])
    marker = make_orders(s, bob["id"], 1, created_at="2025-05-07T08:00:00.000Z", amount=1)
    wait_orders_projected(s, [marker[0]["id"]])
    lines = order_lines(s)
    assert all(len(v) == 1 for v in lines.values()), {k: v for k, v in lines.items()
                                                       if len(v) != 1}


def test_rebuild_under_steady_load_loses_and_doubles_nothing(rb):
    s, token = rb
    history(s, token, 1500)  # enough for the rebuild to take a while
    user = make_user(s)
    created, failures, stop = [], [], threading.Event()
    read_statuses = []

    def writer():
        for _ in range(100000):
            if stop.is_set():
                return
            r = post(s.order.base_url, ORDERS, [{"user_id": user["id"], "amount": 0.37,
                                                 "created_at": "2025-07-15T00:00:00.000Z"}
                                                for _ in range(5)])
            if r.status == 201:
                created.extend(r.json)
            else:
                failures.append(r.status)
            time.sleep(0.02)

    def reader():
        for _ in range(100000):
            if stop.is_set():
                return
            r = http("GET", s.invoice.base_url + "/invoice-service/invoices?limit=5")
            read_statuses.append(r.status)
            time.sleep(0.02)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(created) >= 20, timeout=60, message="load under way")
        obj = begin(s, token)
        seen_running = []
        end = wait_until(lambda: (lambda o: (seen_running.append(o["events_applied"]) or None)
                                  if o["status"] == "running" else o)(
            get_rebuild(s, token, obj["id"])), timeout=REBUILD_WAIT, interval=0.1,
            message="rebuild under load to end")
        wait_until(lambda: len(created) >= 40, timeout=60, message="load after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert end["status"] == "done", end
    assert not failures, failures
    assert read_statuses and set(read_statuses) == {200}, set(read_statuses)
    ids = [o["id"] for o in created]
    wait_orders_projected(s, ids)
    lines = order_lines(s)
    assert all(len(lines[i]) == 1 for i in ids), "an order on two lines"
    assert all(len(v) == 1 for v in lines.values())
    invs = all_invoices(s, user_id=user["id"])
    assert len(invs) == 1
    assert invs[0]["order_count"] == len(ids)
    assert cents(invs[0]["total"]) == 37 * len(ids)
    # Progress was visible while it ran, and only grew.
    assert seen_running == sorted(seen_running)


def test_queries_answer_while_a_rebuild_runs_and_a_second_is_409(rb):
    s, token = rb
    obj = running_rebuild(s, token)
    second = start_rebuild(s, token)
    running_then = get_rebuild(s, token, obj["id"])["status"] == "running"
    if second.status == 202:
        # The first ended between the two requests: only acceptable when
        # it is no longer running.
        assert not running_then
        wait_ended(s, token, second.json["id"])
    else:
        assert_error(second, 409, "conflict")
    statuses = []
    for _ in range(100000):
        r = http("GET", s.invoice.base_url + "/invoice-service/invoices?limit=3")
        statuses.append(r.status)
        if get_rebuild(s, token, obj["id"])["status"] != "running":
            break
    assert set(statuses) == {200}
    assert wait_ended(s, token, obj["id"])["status"] == "done"


def test_a_writer_that_cannot_be_reached_fails_the_rebuild_and_changes_nothing(rb):
    s, token = rb
    before = model(s)
    s.user.stop()
    try:
        obj = begin(s, token)
        end = wait_ended(s, token, obj["id"])
        assert end["status"] == "failed", end
        assert "user-service" in end["error"], end
        assert token not in end["error"]
        assert model(s) == before
    finally:
        s.user.start()
    wait_until(lambda: http("GET", s.user.base_url + "/readyz").status == 200,
               timeout=60, message="user service back")


def test_killed_mid_rebuild_comes_back_with_the_old_model(rb):
    s, token = rb
    some_history(s)
    obj = running_rebuild(s, token)
    before = model(s)  # the rebuild has not swapped: the old model
    s.invoice.kill()
    s.invoice.start()
    end = wait_ended(s, token, obj["id"], timeout=60)
    if end["status"] == "done":
        pytest.skip("the rebuild ended before the kill reached it")
    assert end["status"] == "failed", end
    assert "interrupted" in end["error"], end
    assert model(s) == before
    again = rebuild_done(s, token)
    assert again["id"] > obj["id"]
    assert model(s) == before


def test_sigterm_mid_rebuild_cancels_it_and_exits_cleanly(rb):
    s, token = rb
    obj = running_rebuild(s, token)
    before = model(s)
    rc = s.invoice.stop()  # SIGTERM: asserts exit 0 and a clean sanitizer log
    assert rc == 0
    s.invoice.start()
    end = wait_ended(s, token, obj["id"], timeout=60)
    if end["status"] == "done":
        pytest.skip("the rebuild ended before the signal reached it")
    assert end["status"] == "failed", end
    assert "cancelled" in end["error"] or "interrupted" in end["error"], end
    assert model(s) == before


def test_the_token_never_appears_in_the_log(rb):
    s, token = rb
    some_history(s)
    rebuild_done(s, token)
    assert token not in s.invoice.log_text()


def test_the_command_line_form_rebuilds_against_the_same_database(rb):
    s, token = rb
    some_history(s)
    before = model(s)
    inv = s.invoice
    env = {k: v for k, v in os.environ.items()
           if k not in ("ADMIN_TOKEN", "SOURCE_TOKEN", "USER_SERVICE_URL", "ORDER_SERVICE_URL")}
    cmd = [str(bin_dir() / "invoice-service"), "rebuild",
           "--database-url", inv.database_url or f"sqlite:{inv.db_path}",
           "--user-service-url", s.user.base_url,
           "--order-service-url", s.order.base_url,
           "--source-token", token, "--log-level", "warn"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=REBUILD_WAIT)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [line for line in res.stdout.splitlines() if line]
    assert lines, res.stdout
    m = re.match(r"^rebuild (\d+): done, (\d+) events applied$", lines[-1])
    assert m, lines[-1]
    assert int(m.group(2)) > 0
    assert token not in res.stdout + res.stderr
    assert get_rebuild(s, token, int(m.group(1)))["status"] == "done"
    assert model(s) == before
    # A wrong source token: non-zero, and the row says why.
    bad = [c if c != token else "wrong-" + token for c in cmd]
    res = subprocess.run(bad, env=env, capture_output=True, text=True, timeout=REBUILD_WAIT)
    assert res.returncode != 0
    assert "401" in res.stderr, res.stderr
    assert model(s) == before


def test_command_line_without_a_running_service_and_tokens_stay_exact(rb):
    """No service consumes while the command line rebuilds: the events of
    that time wait in their queues and are applied (or found duplicates)
    when the service starts; a consistency token of an order the rebuild
    read only from the log is met once its delivery arrives."""
    s, token = rb
    user = make_user(s)
    kept = post(s.order.base_url, ORDERS, {"user_id": user["id"], "amount": 2.5,
                                           "created_at": "2025-08-01T00:00:00.000Z"})
    assert kept.status == 201, describe(kept)
    wait_orders_projected(s, [kept.json["id"]])
    inv = s.invoice
    inv.stop()
    try:
        during = post(s.order.base_url, ORDERS, {"user_id": user["id"], "amount": 4,
                                                 "created_at": "2025-08-02T00:00:00.000Z"})
        assert during.status == 201, describe(during)
        cmd = [str(bin_dir() / "invoice-service"), "rebuild",
               "--database-url", inv.database_url or f"sqlite:{inv.db_path}",
               "--user-service-url", s.user.base_url,
               "--order-service-url", s.order.base_url,
               "--source-token", token, "--log-level", "warn"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=REBUILD_WAIT)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        inv.start()
    for resp in (kept, during):
        tok = resp.headers.get("X-Consistency-Token")
        assert tok
        r = http("GET", inv.base_url + f"/invoice-service/invoices?user_id={user['id']}"
                 f"&consistent_with={tok}&wait_ms=30000", timeout=40)
        assert r.status == 200, describe(r)
        assert resp.json["id"] in {line["order_id"] for i in r.json for line in i["orders"]}
    lines = order_lines(s)
    assert len(lines[during.json["id"]]) == 1 and len(lines[kept.json["id"]]) == 1
    invs = all_invoices(s, user_id=user["id"])
    assert len(invs) == 1 and cents(invs[0]["total"]) == 650, invs


@pytest.mark.skipif(db_mode() != "postgres", reason="replicas share a PostgreSQL database")
def test_two_invoice_replicas_one_rebuild_both_dual_write(rb):
    """A second invoice-service on the same database competes for the
    queues: while the first runs a rebuild, a POST to the second is 409,
    both replicas' batches write the shadow, and every order created
    meanwhile ends on exactly one line, totals exact. The second sees the
    rebuild's progress and end through the shared table."""
    s, token = rb
    second = Service("invoice", s.tmp / "invoice-2", s.amqp_url,
                     database_url=s.invoice.database_url,
                     env={"ADMIN_TOKEN": token, "USER_SERVICE_URL": s.user.base_url,
                          "ORDER_SERVICE_URL": s.order.base_url}).start()
    try:
        wait_until(lambda: http("GET", second.base_url + "/readyz").status == 200,
                   timeout=60, message="the second invoice replica ready")
        user = make_user(s)
        created, stop = [], threading.Event()

        def writer():
            for _ in range(100000):
                if stop.is_set():
                    return
                r = post(s.order.base_url, ORDERS, [{"user_id": user["id"], "amount": 1.5,
                                                     "created_at": "2025-09-09T00:00:00.000Z"}
                                                    for _ in range(5)])
                if r.status == 201:
                    created.extend(r.json)
                time.sleep(0.02)

        t = threading.Thread(target=writer)
        t.start()
        try:
            obj = running_rebuild(s, token)
            r = admin(second, "POST", REBUILDS, token)
            if get_rebuild(s, token, obj["id"])["status"] == "running":
                assert_error(r, 409, "conflict")
            elif r.status == 202:
                wait_ended(s, token, r.json["id"])
            seen = admin(second, "GET", f"{REBUILDS}/{obj['id']}", token)
            assert seen.status == 200, describe(seen)
            end = wait_ended(s, token, obj["id"])
            assert end["status"] == "done", end
            wait_until(lambda: len(created) >= 40, timeout=60, message="load after the swap")
        finally:
            stop.set()
            t.join(timeout=60)
        assert check_rebuild(admin(second, "GET", f"{REBUILDS}/{obj['id']}", token).json) == end
        ids = [o["id"] for o in created]
        wait_orders_projected(s, ids)
        lines = order_lines(s)
        assert all(len(lines[i]) == 1 for i in ids)
        invs = all_invoices(s, user_id=user["id"])
        assert len(invs) == 1 and invs[0]["order_count"] == len(ids)
        assert cents(invs[0]["total"]) == 150 * len(ids)
    finally:
        second.stop()
        second.release_port()


def maps_libcurl(pid):
    with open(f"/proc/{pid}/maps") as f:
        return any("libcurl" in line for line in f)


def test_libcurl_is_loaded_by_the_first_rebuild_not_at_start(rb):
    """The HTTP client the rebuild reads the logs with (libcurl and its TLS
    libraries, several MiB of mapped pages) is not part of a service that
    never rebuilds: a replica started fresh maps no libcurl, and maps it
    once its first rebuild has read the logs (docs/performance.md, "Idle
    memory")."""
    s, token = rb
    replica = Service("invoice", s.tmp / "invoice-lazy", s.amqp_url,  # a database of its own
                      env={"ADMIN_TOKEN": token, "USER_SERVICE_URL": s.user.base_url,
                           "ORDER_SERVICE_URL": s.order.base_url}).start()
    try:
        replica.wait_ready()
        assert http("GET", replica.base_url + "/invoice-service/invoices?user_id=1").status == 200
        assert not maps_libcurl(replica.pid), "libcurl mapped before any rebuild"
        r = admin(replica, "POST", REBUILDS, token)
        assert r.status == 202, describe(r)
        path = f"{REBUILDS}/{r.json['id']}"
        end = wait_until(lambda: (lambda o: o if o["status"] != "running" else None)(
            admin(replica, "GET", path, token).json), timeout=REBUILD_WAIT, interval=0.2,
            message="the replica's rebuild to end")
        assert end["status"] == "done", end
        assert maps_libcurl(replica.pid), "a rebuild ran without libcurl mapped"
    finally:
        replica.stop()
        replica.release_port()
