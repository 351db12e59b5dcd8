"""Helpers for the tests of poison isolation, dead letters and admin access
(test_poison_isolation.py, test_dead_letters.py, test_admin.py): admin
requests, a trigger in the read model's database that rejects one order
id, a lock held on that database, publishing many events on one
connection, and reading /metrics."""
import json
import re
import sqlite3
import subprocess
import os
import uuid
from urllib.parse import urlsplit

import pika

from harness import PSQL, db_mode, shared_postgres
from helpers import EXCHANGE, declare_exchange, http, wait_until
from invoice_helpers import envelope, order_data

DEAD_LETTERS = "/invoice-service/dead-letters"
ITEM_KEYS = {"id", "queue", "reason", "dead_lettered_at", "body"}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# The invoice service of these tests: a dead letter after 3 failed
# attempts, /readyz reporting a consumer that fails for 1 s.
MAX_ATTEMPTS = 3


def new_token():
    return "tok-" + uuid.uuid4().hex


def invoice_env(token=None, max_attempts=MAX_ATTEMPTS, stall_s=1):
    env = {"CONSUMER_MAX_ATTEMPTS": str(max_attempts),
           "CONSUMER_STALL_TIMEOUT": str(stall_s)}
    if token:
        env["ADMIN_TOKEN"] = token
    return env


# ------------------------------------------------------------------ admin

def admin(svc, method, path, token, body=None, headers=None, raw=None):
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    return http(method, svc.base_url + path, body=body, headers=hdrs, raw=raw)


def list_dead_letters(svc, token, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    r = admin(svc, "GET", DEAD_LETTERS + (f"?{query}" if query else ""), token)
    assert r.status == 200, r
    assert isinstance(r.json, list), r
    for item in r.json:
        assert set(item) == ITEM_KEYS, item
    return r.json


def all_dead_letters(svc, token):
    out, offset = [], 0
    while True:
        page = list_dead_letters(svc, token, limit=1000, offset=offset)
        out.extend(page)
        if len(page) < 1000:
            return out
        offset += 1000


def dead_letters_with(svc, token, needle):
    """The dead letters whose body contains needle (text)."""
    return [d for d in all_dead_letters(svc, token) if needle in d["body"]]


def wait_dead_letter(svc, token, needle, timeout=60, pred=lambda d: True):
    def check():
        found = [d for d in dead_letters_with(svc, token, needle) if pred(d)]
        return found[0] if found else None
    return wait_until(check, timeout=timeout, interval=0.2,
                      message=f"a dead letter with {needle!r}")


# ---------------------------------------------------------------- metrics

def metric(svc, name, labels=None):
    """The value of one sample of /metrics (0 when absent)."""
    r = http("GET", svc.base_url + "/metrics")
    assert r.status == 200, r
    want = "" if not labels else "{" + ",".join(
        f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in r.text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == name + want:
            return float(value)
    return 0.0


def events_metric(svc, outcome, etype="order.created"):
    return metric(svc, "events_total", {"type": etype, "outcome": outcome})


# --------------------------------------------------------------- database

# The services keep their tables in the schema "demo" (db.h).
PG_SCHEMA = "SET search_path TO demo; "


def _pg_dbname(svc):
    return urlsplit(svc.database_url).path.lstrip("/")


def db_query(svc, sql):
    """One query on the invoice service's own database (its SQLite file or
    its PostgreSQL database); the rows, each a list of text."""
    if db_mode() == "postgres":
        return shared_postgres().query(_pg_dbname(svc), PG_SCHEMA + sql)
    conn = sqlite3.connect(str(svc.db_path), timeout=30, isolation_level=None)
    try:
        return [[None if v is None else str(v) for v in row] for row in conn.execute(sql)]
    finally:
        conn.close()


def db_script(svc, sql):
    """Statements without results (DDL) on that database."""
    if db_mode() == "postgres":
        shared_postgres().query(_pg_dbname(svc), PG_SCHEMA + sql)
        return
    conn = sqlite3.connect(str(svc.db_path), timeout=30, isolation_level=None)
    try:
        conn.executescript(sql)
    finally:
        conn.close()


def install_reject_trigger(svc, order_id, message="rejected by the test trigger"):
    """Make every insert of order_id into invoice_lines fail with message."""
    name = f"reject_{order_id}"
    if db_mode() == "postgres":
        db_script(svc, f"""
            CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.order_id = {order_id} THEN
                RAISE EXCEPTION 'order {order_id} {message}';
              END IF;
              RETURN NEW;
            END $$;
            DROP TRIGGER IF EXISTS {name} ON invoice_lines;
            CREATE TRIGGER {name} BEFORE INSERT ON invoice_lines
              FOR EACH ROW EXECUTE FUNCTION {name}();""")
    else:
        db_script(svc, f"""
            DROP TRIGGER IF EXISTS {name};
            CREATE TRIGGER {name} BEFORE INSERT ON invoice_lines
              WHEN NEW.order_id = {order_id}
              BEGIN SELECT RAISE(ABORT, 'order {order_id} {message}'); END;""")


def drop_reject_trigger(svc, order_id):
    name = f"reject_{order_id}"
    if db_mode() == "postgres":
        db_script(svc, f"DROP TRIGGER IF EXISTS {name} ON invoice_lines;"
                      f" DROP FUNCTION IF EXISTS {name}();")
    else:
        db_script(svc, f"DROP TRIGGER IF EXISTS {name};")


class DatabaseLock:
    """Holds the invoice database's write lock until release(): SQLite
    BEGIN EXCLUSIVE from this process; PostgreSQL LOCK TABLE invoice_lines
    IN ACCESS EXCLUSIVE MODE from a psql we feed on its standard input.
    Either way the consumer's transactions wait and then fail as busy."""

    def __init__(self, svc):
        self.svc = svc
        self.conn = None
        self.proc = None

    def acquire(self):
        if db_mode() == "postgres":
            pg = shared_postgres()
            env = dict(os.environ, PGPASSWORD=pg.PASSWORD)
            self.proc = subprocess.Popen(
                [str(PSQL), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.USER,
                 "-d", _pg_dbname(self.svc), "-XAtq", "-v", "ON_ERROR_STOP=1"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, env=env)
            self.proc.stdin.write(PG_SCHEMA + "BEGIN; LOCK TABLE invoice_lines IN ACCESS EXCLUSIVE MODE;"
                                  " SELECT 'locked';\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()  # bounded: psql answers or exits
            assert line.strip() == "locked", f"psql did not take the lock: {line!r}"
        else:
            self.conn = sqlite3.connect(str(self.svc.db_path), timeout=30,
                                        isolation_level=None)
            self.conn.execute("BEGIN EXCLUSIVE")
        return self

    def release(self):
        if self.proc is not None:
            try:
                self.proc.stdin.write("COMMIT;\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
                self.proc = None
        if self.conn is not None:
            self.conn.execute("COMMIT")
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------- publish

def publish_many(amqp_url, bodies, routing_key="order.created"):
    """Publish event bodies (dicts) on one connection, each confirmed."""
    params = pika.URLParameters(amqp_url)
    assert params.host in ("127.0.0.1", "localhost")
    params.socket_timeout = 10
    params.connection_attempts = 1
    params.heartbeat = 0
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        declare_exchange(ch)
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        for body in bodies:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            ch.basic_publish(EXCHANGE, routing_key, raw, props, mandatory=True)
    finally:
        if conn.is_open:
            conn.close()


def order_event(order_id, user_id, amount, year, month=4, description="item"):
    return envelope("order.created",
                    order_data(order_id, user_id, amount,
                               created_at=f"{year}-{month:02d}-03T10:15:00.000Z",
                               description=description),
                    source="order-service")
