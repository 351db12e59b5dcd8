"""Shared checks for the write-side contract tests (docs/api.md).

Used by test_http_common.py, test_users.py, test_accounts.py,
test_orders.py and test_events.py. Only assertions and small request
wrappers live here; starting servers is the harness's job (conftest.py,
harness.py, helpers.py).
"""
import calendar
import json
import re
import time
import uuid
from urllib.parse import quote, urlsplit

from helpers import http

# Sentinel: "do not check this part of the error".
ANY = object()

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

ERROR_KEYS_REQUIRED = {"status", "code", "message"}
ERROR_KEYS_ALLOWED = ERROR_KEYS_REQUIRED | {"field", "index"}

# Text that must never reach a client (SQL, paths, stack traces).
LEAK_MARKERS = (
    "sqlite", "insert into", "select ", " from users", " from orders",
    " from accounts", "unique constraint", "constraint failed",
    "syntax error", "/work/", "/src/", "/tmp/", ".c:", "traceback",
    "postgres", "libpq", "segmentation", "addresssanitizer",
)

USER_FIELDS = {"id", "name", "email", "created_at"}
ACCOUNT_FIELDS = {"id", "user_id", "address1", "address2", "city", "state",
                  "zip", "status", "created_at"}
ORDER_FIELDS = {"id", "user_id", "amount", "description", "created_at"}

USERS = "/system-api/users"
ACCOUNTS = "/system-api/accounts"
ORDERS = "/order-service/orders"


# ---------------------------------------------------------------- data

def hexid(n=12):
    return uuid.uuid4().hex[:n]


def uemail(prefix="u"):
    """A fresh, unique, valid e-mail address."""
    return f"{prefix}{uuid.uuid4().hex}@example.test"


def uname(prefix="user"):
    return f"{prefix}-{hexid()}"


def uuser_id():
    """A user id for orders that no other test uses (order-service does
    not check users)."""
    return 10**12 + uuid.uuid4().int % 10**12


def user_body(**over):
    body = {"name": uname(), "email": uemail()}
    body.update(over)
    return body


def account_body(user_id, **over):
    body = {"user_id": user_id, "address1": "123 Main St", "city": "Cityville",
            "state": "CA", "zip": "12345"}
    body.update(over)
    return body


# ---------------------------------------------------------------- requests

def qs(params):
    """Query string with every reserved character percent-encoded ('+'
    becomes %2B, so it is never read as a space)."""
    if isinstance(params, dict):
        params = list(params.items())
    if not params:
        return ""
    return "?" + "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}"
                          for k, v in params)


def get(base, path, params=None, headers=None):
    return http("GET", base + path + qs(params), headers=headers)


def post(base, path, body, headers=None, rid=None):
    h = dict(headers or {})
    if rid is not None:
        h["X-Request-Id"] = rid
    return http("POST", base + path, body=body, headers=h)


def post_raw(base, path, data, content_type="application/json", headers=None):
    """POST bytes (or str, sent as UTF-8) exactly as given."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = dict(headers or {})
    if content_type is not None:
        h["Content-Type"] = content_type
    return http("POST", base + path, raw=data, headers=h)


def post_utf8(base, path, body, headers=None):
    """POST JSON with non-ASCII characters as raw UTF-8 (not \\u escapes)."""
    return post_raw(base, path, json.dumps(body, ensure_ascii=False),
                    headers=headers)


def describe(resp):
    return f"{resp.status} {resp.text[:600]!r}"


# ---------------------------------------------------------------- checks

def media_type(resp):
    """(type/subtype lower-cased, {param: value lower-cased}) of the answer."""
    ct = resp.headers.get("Content-Type")
    assert ct, f"no Content-Type on {describe(resp)}"
    parts = [p.strip() for p in ct.split(";")]
    params = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"').lower()
    return parts[0].lower(), params


def assert_json_ct(resp):
    mt, params = media_type(resp)
    assert mt == "application/json", \
        f"Content-Type {resp.headers.get('Content-Type')!r} on {describe(resp)}"
    assert params.get("charset") == "utf-8", \
        f"Content-Type {resp.headers.get('Content-Type')!r} lacks charset=utf-8"


def assert_cors(resp):
    assert resp.headers.get("Access-Control-Allow-Origin") == "*", \
        f"Access-Control-Allow-Origin missing or wrong on {describe(resp)}"


def assert_no_leak(text):
    low = text.lower()
    for marker in LEAK_MARKERS:
        assert marker not in low, f"answer leaks {marker!r}: {text[:600]!r}"


def assert_error(resp, status, code, field=ANY, index=None):
    """The answer is exactly the documented error object.

    field: ANY (not checked), None (must be absent) or the expected name.
    index: None (must be absent), ANY (not checked) or the expected index.
    """
    assert resp.status == status, \
        f"expected {status} {code}, got {describe(resp)}"
    assert_json_ct(resp)
    assert_cors(resp)
    body = resp.json
    assert isinstance(body, dict) and set(body) == {"error"}, \
        f"error answer is not {{'error': ...}}: {resp.text[:600]!r}"
    err = body["error"]
    assert isinstance(err, dict), resp.text
    keys = set(err)
    assert ERROR_KEYS_REQUIRED <= keys, f"error lacks keys: {err}"
    assert keys <= ERROR_KEYS_ALLOWED, \
        f"error has undocumented keys {keys - ERROR_KEYS_ALLOWED}: {err}"
    assert type(err["status"]) is int and err["status"] == status, err
    assert err["code"] == code, f"expected code {code!r}, got {err}"
    assert isinstance(err["message"], str) and err["message"].strip(), err
    if "field" in err:
        assert isinstance(err["field"], str) and err["field"], err
    if "index" in err:
        assert type(err["index"]) is int and err["index"] >= 0, err
    if field is None:
        assert "field" not in err, f"error should carry no field: {err}"
    elif field is not ANY:
        assert err.get("field") == field, f"expected field {field!r}: {err}"
    if index is None:
        assert "index" not in err, f"error should carry no index: {err}"
    elif index is not ANY:
        assert err.get("index") == index, f"expected index {index}: {err}"
    assert_no_leak(resp.text)
    return err


def parse_ts(text):
    """RFC 3339 UTC with milliseconds -> epoch seconds (float)."""
    assert isinstance(text, str) and TS_RE.match(text), \
        f"not RFC 3339 UTC with milliseconds: {text!r}"
    base = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(base) + int(text[20:23]) / 1000.0


def assert_recent(text, slack=120):
    t = parse_ts(text)
    now = time.time()
    assert abs(now - t) <= slack, f"{text} is not close to now"


def assert_pos_int(v):
    assert type(v) is int and v > 0, f"not a positive integer: {v!r}"


def assert_location(resp, path_prefix, ident):
    loc = resp.headers.get("Location")
    assert loc, f"no Location on {describe(resp)}"
    # A path is what docs/api.md shows; an absolute URL to the same path is
    # tolerated.
    assert urlsplit(loc).path == f"{path_prefix}/{ident}", \
        f"Location {loc!r}, expected {path_prefix}/{ident}"


def amounts_in(text):
    """The literal texts of every "amount" number in a raw JSON answer."""
    return re.findall(r'"amount"\s*:\s*(-?[0-9][0-9.eE+-]*)', text)


# ---------------------------------------------------------------- helpers

def create_ok(base, path, body, fields):
    resp = post(base, path, body)
    assert resp.status == 201, describe(resp)
    assert_json_ct(resp)
    data = resp.json
    items = data if isinstance(data, list) else [data]
    for item in items:
        assert set(item) == fields, f"fields {set(item)} != {fields}"
    return data


def make_user(system, **over):
    return create_ok(system.user.base_url, USERS, user_body(**over), USER_FIELDS)


def make_account(system, user_id, **over):
    return create_ok(system.user.base_url, ACCOUNTS,
                     account_body(user_id, **over), ACCOUNT_FIELDS)


def make_order(system, user_id=None, amount=50, **over):
    body = {"user_id": user_id or uuser_id(), "amount": amount}
    body.update(over)
    return create_ok(system.order.base_url, ORDERS, body, ORDER_FIELDS)


def list_ok(base, path, params=None):
    resp = get(base, path, params)
    assert resp.status == 200, describe(resp)
    assert_json_ct(resp)
    assert isinstance(resp.json, list), resp.text[:300]
    return resp.json


def max_id(base, path):
    rows = list_ok(base, path, {"order_by": "-id", "limit": 1})
    return rows[0]["id"] if rows else 0


def assert_healthy(base):
    resp = http("GET", base + "/healthz")
    assert resp.status == 200 and resp.json == {"status": "ok"}, describe(resp)


def assert_sorted(rows, key, descending=False):
    """rows are ordered by key (asc or desc) with ties by id ascending."""
    for a, b in zip(rows, rows[1:]):
        ka, kb = key(a), key(b)
        if ka == kb:
            assert a["id"] < b["id"], f"tie not broken by id asc: {a} / {b}"
        elif descending:
            assert ka > kb, f"not descending: {a} / {b}"
        else:
            assert ka < kb, f"not ascending: {a} / {b}"


def expected_order(rows, key, descending=False):
    by_id = sorted(rows, key=lambda r: r["id"])
    # Python's sort is stable, also with reverse=True: ties keep id order.
    return [r["id"] for r in sorted(by_id, key=key, reverse=descending)]
