"""Helpers for the read-side end-to-end tests (test_invoices.py,
test_projection.py): invoice queries, event bodies to publish by hand,
and reading a queue with basic_get. Assertions about the contract live in
the tests; only small building blocks are here."""
import json
import random
import re
import time
import uuid
from decimal import Decimal

import pika

from contract import qs
from helpers import EXCHANGE, http, publish, wait_until

INVOICES = "/invoice-service/invoices"
DEAD_LETTER = "invoice-service.dead-letter"

INVOICE_KEYS = {"id", "user_id", "year", "month", "invoice_dt", "name", "email",
                "shipping_address", "orders", "order_count", "total", "updated_at"}
ADDRESS_KEYS = {"address1", "address2", "city", "state", "zip"}
LINE_KEYS = {"order_id", "description", "amount", "purchase_dt"}

WAIT = 30  # seconds for an event to be projected (ASan builds are slow)


# ---------------------------------------------------------------- ids

def big_id():
    """A random id far above anything the services assign in a test run,
    for users and orders that exist only in events published by hand."""
    return random.randint(10**9, 10**12)


def event_id():
    return str(uuid.uuid4())


def rare_year():
    """A year no other test is likely to use, so a year filter isolates
    the invoices a test makes."""
    return random.randint(2200, 9000)


# ---------------------------------------------------------------- events

def envelope(etype, data, eid=None, source="test", occurred_at=None):
    """The full event body of docs/api.md."""
    return {"id": eid or event_id(), "type": etype, "version": 1,
            "source": source,
            "occurred_at": occurred_at or "2025-01-01T00:00:00.000Z",
            "data": data}


def order_data(order_id, user_id, amount, created_at="2025-04-03T10:15:00.000Z",
               description="item"):
    d = {"id": order_id, "user_id": user_id, "amount": amount,
         "description": description}
    if created_at is not None:
        d["created_at"] = created_at
    return d


def user_data(user_id, name, email):
    return {"id": user_id, "name": name, "email": email,
            "created_at": "2025-01-01T00:00:00.000Z"}


def account_data(account_id, user_id, address1="1 Test Rd", address2=None,
                 city="Testville", state="TS", zip_="00001", status="open"):
    return {"id": account_id, "user_id": user_id, "address1": address1,
            "address2": address2, "city": city, "state": state, "zip": zip_,
            "status": status, "created_at": "2025-01-01T00:00:00.000Z"}


def send(system, body, routing_key=None, exchange=EXCHANGE, properties=None):
    """Publish an event body (dict -> JSON, bytes/str as given) with
    confirms. The routing key defaults to the body's type; properties
    default to persistent JSON."""
    if isinstance(body, dict):
        routing_key = routing_key or body.get("type")
        raw = json.dumps(body).encode()
    else:
        raw = body.encode() if isinstance(body, str) else body
    assert routing_key, "a routing key is needed"
    if properties is None:
        properties = {"delivery_mode": 2, "content_type": "application/json"}
    publish(system.amqp_url, exchange, routing_key, raw, properties=properties)
    return raw


def send_order(system, order_id, user_id, amount, created_at="2025-04-03T10:15:00.000Z",
               eid=None, description="item"):
    body = envelope("order.created",
                    order_data(order_id, user_id, amount, created_at, description),
                    eid=eid, source="order-service")
    send(system, body)
    return body


# ---------------------------------------------------------------- queries

def loads_exact(raw):
    """JSON with every non-integer number as a Decimal (money stays exact)."""
    return json.loads(raw, parse_float=Decimal)


def get_invoices(system, params=None):
    """GET the list with params (dict or list of pairs); returns the
    Response, with .exact = body parsed with Decimals when it is 200."""
    resp = http("GET", system.invoice.base_url + INVOICES + qs(params or {}))
    resp.exact = loads_exact(resp.body) if resp.status == 200 else None
    return resp


def list_invoices(system, params=None):
    resp = get_invoices(system, params)
    assert resp.status == 200, f"{resp.status} {resp.text[:500]}"
    assert isinstance(resp.exact, list), resp.text[:500]
    return resp.exact


def all_invoices(system, page=1000, **filters):
    """Every invoice matching filters, paged with limit/offset."""
    out, offset = [], 0
    while True:
        rows = list_invoices(system, {**filters, "limit": page, "offset": offset})
        out.extend(rows)
        if len(rows) < page:
            return out
        offset += page


def get_invoice(system, ident):
    resp = http("GET", f"{system.invoice.base_url}{INVOICES}/{ident}")
    resp.exact = loads_exact(resp.body) if resp.status == 200 else None
    return resp


def invoice_for(system, user_id, year, month):
    """The invoice of (user, year, month), or None."""
    rows = list_invoices(system, {"user_id": user_id, "year": year, "month": month})
    assert len(rows) <= 1, f"two invoices for one (user, month): {rows}"
    return rows[0] if rows else None


def wait_invoice(system, user_id, year, month, pred=lambda inv: True,
                 timeout=WAIT, message=None):
    """Wait (bounded) for the invoice of (user, year, month) to exist and
    satisfy pred; returns it."""
    def check():
        inv = invoice_for(system, user_id, year, month)
        return inv if inv is not None and pred(inv) else None
    return wait_until(check, timeout=timeout, interval=0.1,
                      message=message or f"invoice of user {user_id} {year}-{month}")


def has_orders(*order_ids):
    want = set(order_ids)
    return lambda inv: want <= {l["order_id"] for l in inv["orders"]}


def order_ids_of(inv):
    return [l["order_id"] for l in inv["orders"]]


def raw_number(text, key):
    """The literal texts of every "key": <number> in a raw JSON answer."""
    return re.findall(r'"%s"\s*:\s*(-?[0-9][0-9.eE+-]*)' % re.escape(key), text)


def cents(value):
    """Decimal (or str) money -> integer cents, asserting at most 2 places."""
    d = Decimal(str(value))
    c = d * 100
    assert c == c.to_integral_value(), f"{value} has more than 2 decimals"
    return int(c)


# ---------------------------------------------------------------- AMQP

def _channel(amqp_url):
    params = pika.URLParameters(amqp_url)
    assert params.host in ("127.0.0.1", "localhost")
    params.socket_timeout = 5
    params.connection_attempts = 1
    params.heartbeat = 0
    conn = pika.BlockingConnection(params)
    return conn, conn.channel()


def take_all(amqp_url, queue, limit=100000):
    """Take (and ack) every ready message of queue with basic_get; returns
    [(properties, body bytes)]."""
    conn, ch = _channel(amqp_url)
    out = []
    try:
        for _ in range(limit):
            method, props, body = ch.basic_get(queue, auto_ack=False)
            if method is None:
                break
            out.append((props, body))
            ch.basic_ack(method.delivery_tag)
    finally:
        if conn.is_open:
            conn.close()
    return out


def header_text(props, name):
    """A message header as text (pika gives bytes or str), or None."""
    headers = props.headers or {}
    v = headers.get(name)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return v


def now_year_month():
    t = time.gmtime()
    return t.tm_year, t.tm_mon
