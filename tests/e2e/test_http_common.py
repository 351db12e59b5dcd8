"""docs/api.md, "Rules for every HTTP request" and "Lists", for the user
service and the order service: content types, limits, malformed input,
error shape, routing errors, request ids, CORS, health, metrics,
keep-alive and the generic list parameters."""
import json
import re
import select
import socket
from urllib.parse import urlsplit

import pytest

from contract import (ACCOUNTS, ANY, ORDERS, USERS,
                      assert_cors, assert_error, assert_healthy,
                      assert_json_ct, assert_sorted,
                      describe, get, hexid, list_ok, make_account,
                      make_order, make_user, max_id, media_type, post,
                      post_raw, uemail, user_body, uuser_id)
import openapi_check
from helpers import http, wait_until

MIB = 1024 * 1024


# ---------------------------------------------------------------- raw HTTP

class CIDict(dict):
    """Header map with case-insensitive get (keys stored lower-case)."""

    def get(self, key, default=None):
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key):
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key):
        return dict.__contains__(self, key.lower())


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text) if self.text else None
        except ValueError:
            self.json = None


class RawConn:
    """One HTTP/1.1 connection to 127.0.0.1, bytes sent exactly as given."""

    MAX_HEAD = 64 * 1024

    def __init__(self, base_url, timeout=10.0):
        u = urlsplit(base_url)
        assert u.hostname == "127.0.0.1"
        self.port = u.port
        self.sock = socket.create_connection(("127.0.0.1", u.port),
                                             timeout=timeout)
        self.buf = b""
        self.made = []  # (method, path) of request_bytes() not yet answered

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request_bytes(self, method, path, headers=(), body=None,
                      content_length=True):
        """The bytes of a request. Its answer, when read_response() reads
        it, is checked against the service's OpenAPI document; answers to
        requests written byte by byte without this are not."""
        self.made.append((method, path))
        lines = [f"{method} {path} HTTP/1.1".encode(),
                 f"Host: 127.0.0.1:{self.port}".encode()]
        for k, v in headers:
            if isinstance(v, str):
                v = v.encode("latin-1")
            lines.append(k.encode() + b": " + v)
        if body is not None and content_length:
            lines.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, path, headers=(), body=None):
        self.send(self.request_bytes(method, path, headers, body))
        return self.read_response(method)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_line(self):
        while b"\r\n" not in self.buf:
            assert len(self.buf) < self.MAX_HEAD
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_response(self, method="GET"):
        for _ in range(10):  # skip interim 1xx answers
            while b"\r\n\r\n" not in self.buf:
                assert len(self.buf) < self.MAX_HEAD, "answer head too long"
                self._fill()
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            if status >= 200:
                break
        headers = CIDict()
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            v = v.strip()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            for _ in range(100000):
                size = int(self._read_line().split(b";")[0], 16)
                if size == 0:
                    while self._read_line():
                        pass
                    break
                body += self._read_exact(size)
                self._read_exact(2)
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:
            for _ in range(100000):
                try:
                    self._fill()
                except EOFError:
                    break
            body, self.buf = self.buf, b""
        if self.made:
            made_method, path = self.made.pop(0)
            openapi_check.observe(made_method, path, status, headers.items(), body,
                                  self.port)
        return RawResponse(status, headers, body)


def raw_request(base, method, path, headers=(), body=None):
    with RawConn(base) as c:
        return c.request(method, path, headers, body)


# ---------------------------------------------------------------- services

class Svc:
    def __init__(self, name, base, path, make_body, fields):
        self.name = name
        self.base = base
        self.path = path            # the collection that takes POSTs
        self.make_body = make_body  # a fresh valid body
        self.fields = fields

    def __repr__(self):
        return self.name


@pytest.fixture(params=["user", "order"])
def svc(request, system):
    if request.param == "user":
        return Svc("user-service", system.user.base_url, USERS, user_body,
                   {"id", "name", "email", "created_at"})
    return Svc("order-service", system.order.base_url, ORDERS,
               lambda: {"user_id": uuser_id(), "amount": 1},
               {"id", "user_id", "amount", "description", "created_at"})


@pytest.fixture
def unchanged(svc):
    """Asserts, after the test, that the service is healthy and that the
    collection got no new row."""
    before = max_id(svc.base, svc.path)
    yield
    assert_healthy(svc.base)
    assert max_id(svc.base, svc.path) == before, "a bad request wrote a row"


# ---------------------------------------------------------------- content type

def test_answers_are_json_utf8(svc):
    created = post(svc.base, svc.path, svc.make_body())
    assert created.status == 201, describe(created)
    assert_json_ct(created)
    assert_cors(created)
    one = get(svc.base, f"{svc.path}/{created.json['id']}")
    assert one.status == 200
    assert_json_ct(one)
    lst = get(svc.base, svc.path, {"limit": 1})
    assert lst.status == 200
    assert_json_ct(lst)
    assert_cors(lst)
    health = http("GET", svc.base + "/healthz")
    assert_json_ct(health)


def test_415_without_content_type(svc, unchanged):
    body = json.dumps(svc.make_body()).encode()
    resp = raw_request(svc.base, "POST", svc.path, [], body)
    assert_error(resp, 415, "unsupported_media_type", field=None)


@pytest.mark.parametrize("ctype", [
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/jsonx",
    "application/json-patch+json",
    "application/octet-stream",
])
def test_415_wrong_content_type(svc, unchanged, ctype):
    resp = post_raw(svc.base, svc.path, json.dumps(svc.make_body()),
                    content_type=ctype)
    assert_error(resp, 415, "unsupported_media_type", field=None)


@pytest.mark.parametrize("ctype", [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    "application/json; charset=\"utf-8\"",
    "Application/JSON",
])
def test_json_content_type_variants_accepted(svc, ctype):
    resp = post_raw(svc.base, svc.path, json.dumps(svc.make_body()),
                    content_type=ctype)
    assert resp.status == 201, f"{ctype}: {describe(resp)}"


def test_get_without_body_ignores_content_type(svc):
    resp = http("GET", svc.base + svc.path + "?limit=1",
                headers={"Content-Type": "text/plain"})
    assert resp.status == 200, describe(resp)


def test_415_is_checked_before_json(svc, unchanged):
    # Not JSON and not declared as JSON: the media type is what is wrong.
    resp = post_raw(svc.base, svc.path, "name=a&email=b", content_type=
                    "application/x-www-form-urlencoded")
    assert_error(resp, 415, "unsupported_media_type", field=None)


# ---------------------------------------------------------------- 413

def read_with_deadline(conn, seconds):
    conn.sock.settimeout(seconds)
    try:
        return conn.read_response("POST")
    except (EOFError, ConnectionResetError) as e:
        pytest.fail(f"connection closed without an answer ({e!r})")


@pytest.mark.parametrize("length", [MIB + 1, 10 * 1024 * MIB])
def test_413_on_content_length_alone(svc, unchanged, length):
    """The answer comes from the header alone: the body is never sent."""
    with RawConn(svc.base) as c:
        c.send(c.request_bytes("POST", svc.path, [
            ("Content-Type", "application/json"),
            ("Content-Length", str(length))]))
        c.send(b'{"name": "')  # a little of the body, never the rest
        try:
            resp = read_with_deadline(c, 10)
        except socket.timeout:
            pytest.fail("no 413 before the body was sent "
                        "(the service waits for the whole body)")
    assert_error(resp, 413, "payload_too_large", field=None)


def test_body_of_exactly_1_mib_is_accepted(svc):
    body = json.dumps(svc.make_body()).encode()
    body = body + b" " * (MIB - len(body))
    assert len(body) == MIB
    resp = post_raw(svc.base, svc.path, body)
    assert resp.status == 201, describe(resp)


def test_413_for_full_body_one_byte_over(svc, unchanged):
    body = json.dumps(svc.make_body()).encode()
    body = body + b" " * (MIB + 1 - len(body))
    with RawConn(svc.base) as c:
        try:
            c.send(c.request_bytes("POST", svc.path,
                                   [("Content-Type", "application/json")],
                                   body))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed after answering: allowed
        resp = read_with_deadline(c, 10)
    assert_error(resp, 413, "payload_too_large", field=None)


def test_413_for_chunked_body_passing_limit(svc, unchanged):
    chunk = b" " * (64 * 1024)
    sent = 0
    with RawConn(svc.base) as c:
        c.send(c.request_bytes("POST", svc.path, [
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked")]))
        c.send(b"1\r\n[\r\n")
        sent = 1
        # Send up to 3 MiB, never the final chunk; stop as soon as an
        # answer is readable.
        for _ in range(48):
            r, _, _ = select.select([c.sock], [], [], 0)
            if r:
                break
            try:
                c.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        try:
            resp = read_with_deadline(c, 10)
        except socket.timeout:
            pytest.fail(f"no answer after {sent} chunked bytes")
    assert_error(resp, 413, "payload_too_large", field=None)
    assert sent > MIB - len(chunk), "413 before the limit was reached"


def test_small_chunked_body_is_accepted(svc):
    body = json.dumps(svc.make_body()).encode()
    half = len(body) // 2
    data = (b"%x\r\n" % half + body[:half] + b"\r\n"
            + b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n"
            + b"0\r\n\r\n")
    with RawConn(svc.base) as c:
        c.send(c.request_bytes("POST", svc.path, [
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked")]) + data)
        resp = read_with_deadline(c, 10)
    assert resp.status == 201, describe(resp)


# ---------------------------------------------------------------- malformed

def nested_field(svc, depth):
    """A body whose first field's value brings the total nesting to depth
    (the outer object is level 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    key = "name" if svc.name == "user-service" else "user_id"
    if svc.name == "user-service":
        return f'{{"{key}": {inner}, "email": "{uemail()}"}}'
    return f'{{"{key}": {inner}, "amount": 1}}'


MALFORMED = {
    "not_json": b"this is not json",
    "open_brace": b"{",
    "truncated": b'{"name": "x", "email": "y@z"',
    "two_values": b"{} {}",
    "trailing_comma_obj": b'{"name": "x",}',
    "trailing_comma_arr": b"[{},]",
    "single_quotes": b"{'name': 'x'}",
    "bare_word": b"hello",
    "nan": b'{"amount": NaN}',
    "leading_zero": b'{"amount": 01}',
    "unquoted_key": b"{name: 1}",
    "invalid_byte": b"\xff",
    "invalid_utf8_in_string": b'{"name": "\xff\xfe", "email": "a@b"}',
    "overlong_utf8": b'{"name": "\xc0\xaf", "email": "a@b"}',
    "utf8_surrogate": b'{"name": "\xed\xa0\x80", "email": "a@b"}',
    "truncated_utf8": b'{"name": "\xe2\x82", "email": "a@b"}',
    "latin1_text": '{"name": "Jos\xe9", "email": "a@b"}'.encode("latin-1"),
    "empty": b"",
    "whitespace_only": b"  \r\n\t ",
    "deep_arrays_10000": b"[" * 10000 + b"]" * 10000,
    "deep_objects_10000": b'{"a":' * 10000 + b"1" + b"}" * 10000,
    "deep_unclosed_100000": b"[" * 100000,
    "arrays_65": b"[" * 65 + b"]" * 65,
    "objects_65": b'{"a":' * 65 + b"1" + b"}" * 65,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_400_malformed_json(svc, unchanged, case):
    resp = post_raw(svc.base, svc.path, MALFORMED[case])
    assert_error(resp, 400, "malformed_json", field=None)


def test_400_field_nested_to_65_levels(svc, unchanged):
    resp = post_raw(svc.base, svc.path, nested_field(svc, 65))
    assert_error(resp, 400, "malformed_json", field=None)


def test_field_nested_to_64_levels_is_well_formed(svc, unchanged):
    resp = post_raw(svc.base, svc.path, nested_field(svc, 64))
    field = "name" if svc.name == "user-service" else "user_id"
    assert_error(resp, 422, "invalid_field", field=field)


def test_arrays_nested_to_64_levels_are_well_formed(svc, unchanged):
    resp = post_raw(svc.base, svc.path, b"[" * 64 + b"]" * 64)
    assert_error(resp, 422, "invalid_body", field=None, index=ANY)


def test_batch_item_field_at_64_levels(svc, unchanged):
    # array (1) > object (2) > 62 arrays (3..64): well-formed.
    deep = "[" * 62 + "]" * 62
    if svc.name == "user-service":
        key, text = "name", f'[{{"name": {deep}, "email": "{uemail()}"}}]'
    else:
        key, text = "user_id", f'[{{"user_id": {deep}, "amount": 1}}]'
    resp = post_raw(svc.base, svc.path, text)
    assert_error(resp, 422, "invalid_field", field=key, index=0)


def test_empty_body_without_content_type(svc, unchanged):
    # No body, so the media type does not matter: 400 or 415 are both
    # reasonable answers; anything else is not.
    resp = raw_request(svc.base, "POST", svc.path, [], b"")
    assert resp.status in (400, 415), describe(resp)
    code = "malformed_json" if resp.status == 400 else "unsupported_media_type"
    assert_error(resp, resp.status, code, field=None)


@pytest.mark.parametrize("text", [
    "42", '"a string"', "null", "true", "false", "3.5",
])
def test_422_invalid_body_for_scalars(svc, unchanged, text):
    resp = post_raw(svc.base, svc.path, text)
    assert_error(resp, 422, "invalid_body", field=None)


@pytest.mark.parametrize("text", ["[]", "[1]", "[null]", "[[]]", '["x"]',
                                  "[true, false]"])
def test_422_invalid_body_for_bad_arrays(svc, unchanged, text):
    resp = post_raw(svc.base, svc.path, text)
    assert_error(resp, 422, "invalid_body", field=None, index=ANY)


def test_422_invalid_body_for_mixed_array(svc, unchanged):
    text = json.dumps([svc.make_body(), 5])
    resp = post_raw(svc.base, svc.path, text)
    assert_error(resp, 422, "invalid_body", field=None, index=ANY)


# ---------------------------------------------------------------- 404

NOT_FOUND_ROUTES = [
    "/", "/nope", "/healthz/x", "/users", "/orders",
]


@pytest.mark.parametrize("path", NOT_FOUND_ROUTES)
def test_404_unknown_route(svc, path):
    resp = http("GET", svc.base + path)
    assert_error(resp, 404, "not_found", field=None)


@pytest.mark.parametrize("path", [
    "/system-api", "/system-api/", "/system-api/nope", "/system-api/user",
    "/system-api/users/1/accounts", "/system-api/orders",
    "/invoice-service/invoices", "/order-service/orders",
])
def test_404_unknown_route_user_service(system, path):
    resp = http("GET", system.user.base_url + path)
    assert_error(resp, 404, "not_found", field=None)


@pytest.mark.parametrize("path", [
    "/order-service", "/order-service/", "/order-service/nope",
    "/order-service/order", "/order-service/orders/1/x",
    "/order-service/users", "/system-api/users", "/invoice-service/invoices",
])
def test_404_unknown_route_order_service(system, path):
    resp = http("GET", system.order.base_url + path)
    assert_error(resp, 404, "not_found", field=None)


def test_404_unknown_route_with_post_body(svc):
    prefix = svc.path.rsplit("/", 1)[0]
    resp = post(svc.base, prefix + "/nope", {"a": 1})
    assert_error(resp, 404, "not_found", field=None)


BAD_IDS = ["0", "-1", "01", "007", "abc", "1a", "1.0", "1e3", "%2B1",
           "99999999999999999999", "18446744073709551616",
           "9223372036854775808", "0x10"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("cpath", [USERS, ACCOUNTS, ORDERS])
def test_404_for_ids_that_are_not_positive_integers(system, cpath, bad):
    base = system.order.base_url if cpath == ORDERS else system.user.base_url
    resp = http("GET", f"{base}{cpath}/{bad}")
    assert_error(resp, 404, "not_found", field=None)


@pytest.mark.parametrize("cpath", [USERS, ACCOUNTS, ORDERS])
def test_404_for_unknown_id(system, cpath):
    base = system.order.base_url if cpath == ORDERS else system.user.base_url
    for ident in ("9223372036854775807", "999999999999"):
        resp = http("GET", f"{base}{cpath}/{ident}")
        assert_error(resp, 404, "not_found", field=None)


# ---------------------------------------------------------------- 405

def allow_set(resp):
    allow = resp.headers.get("Allow")
    assert allow, f"405 without Allow header: {describe(resp)}"
    return {m.strip().upper() for m in allow.split(",") if m.strip()}


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
@pytest.mark.parametrize("cpath", [USERS, ACCOUNTS, ORDERS])
def test_405_on_collection(system, cpath, method):
    base = system.order.base_url if cpath == ORDERS else system.user.base_url
    resp = http(method, base + cpath)
    assert_error(resp, 405, "method_not_allowed", field=None)
    allowed = allow_set(resp)
    assert {"GET", "POST"} <= allowed, allowed
    assert method not in allowed


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_405_on_item(system, method):
    user = make_user(system)
    order = make_order(system)
    for base, path in ((system.user.base_url, f"{USERS}/{user['id']}"),
                       (system.order.base_url, f"{ORDERS}/{order['id']}")):
        body = {"name": "x"} if method in ("POST", "PUT", "PATCH") else None
        resp = http(method, base + path, body=body)
        assert_error(resp, 405, "method_not_allowed", field=None)
        allowed = allow_set(resp)
        assert "GET" in allowed and method not in allowed, allowed
    # nothing changed
    again = get(system.user.base_url, f"{USERS}/{user['id']}")
    assert again.json == user


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_405_on_probes(svc, path):
    resp = http("DELETE", svc.base + path)
    assert_error(resp, 405, "method_not_allowed", field=None)
    assert "GET" in allow_set(resp)


# ---------------------------------------------------------------- request id

PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7f))


def assert_generated(value, sent=None):
    assert value, "no X-Request-Id on the answer"
    assert 1 <= len(value) <= 128, value
    assert all(0x20 <= ord(ch) < 0x7f for ch in value), repr(value)
    if sent is not None:
        assert value != sent


def test_request_id_echoed(svc):
    rid = "req-" + hexid()
    resp = http("GET", svc.base + svc.path + "?limit=1",
                headers={"X-Request-Id": rid})
    assert resp.headers.get("X-Request-Id") == rid


def test_request_id_echoed_on_create_and_errors(svc):
    rid = "create-" + hexid()
    resp = post(svc.base, svc.path, svc.make_body(), rid=rid)
    assert resp.status == 201
    assert resp.headers.get("X-Request-Id") == rid
    rid = "err-" + hexid()
    resp = http("GET", svc.base + "/nope", headers={"X-Request-Id": rid})
    assert resp.status == 404
    assert resp.headers.get("X-Request-Id") == rid
    rid = "bad-" + hexid()
    resp = post_raw(svc.base, svc.path, "{", headers={"X-Request-Id": rid})
    assert resp.status == 400
    assert resp.headers.get("X-Request-Id") == rid


@pytest.mark.parametrize("rid", [
    "x" * 128,
    PRINTABLE,
    "a b c",
    "0b7f6e0e-8a3c-4f0e-9b1e-2d0c9e4b7a11",
])
def test_request_id_printable_up_to_128_echoed(svc, rid):
    resp = raw_request(svc.base, "GET", "/healthz", [("X-Request-Id", rid)])
    assert resp.status == 200
    assert resp.headers.get("X-Request-Id") == rid


@pytest.mark.parametrize("rid", [
    b"",
    b"x" * 129,
    b"y" * 1000,
    b"a\tb",
    b"caf\xc3\xa9",
    b"\x80\x81abc",
])
def test_request_id_replaced_when_invalid(svc, rid):
    resp = raw_request(svc.base, "GET", "/healthz", [("X-Request-Id", rid)])
    assert resp.status == 200, describe(resp)
    got = resp.headers.get("X-Request-Id")
    assert_generated(got, rid.decode("latin-1"))


def test_request_id_generated_when_absent(svc):
    a = raw_request(svc.base, "GET", "/healthz")
    b = raw_request(svc.base, "GET", "/healthz")
    ga, gb = a.headers.get("X-Request-Id"), b.headers.get("X-Request-Id")
    assert_generated(ga)
    assert_generated(gb)
    assert ga != gb, "generated request ids repeat"


# ---------------------------------------------------------------- CORS

def test_cors_on_every_kind_of_answer(svc):
    answers = [
        http("GET", svc.base + svc.path + "?limit=1"),
        post(svc.base, svc.path, svc.make_body()),
        http("GET", svc.base + "/nope"),
        http("DELETE", svc.base + svc.path),
        post_raw(svc.base, svc.path, "{"),
        post_raw(svc.base, svc.path, "{}", content_type="text/plain"),
        post(svc.base, svc.path, {}),
        http("GET", svc.base + svc.path + "?bogus=1"),
        http("GET", svc.base + "/healthz"),
        http("GET", svc.base + "/readyz"),
        http("GET", svc.base + "/metrics"),
        http("OPTIONS", svc.base + svc.path),
    ]
    for resp in answers:
        assert_cors(resp)


def test_cors_on_413(svc):
    with RawConn(svc.base) as c:
        c.send(c.request_bytes("POST", svc.path, [
            ("Content-Type", "application/json"),
            ("Content-Length", str(2 * MIB))]))
        resp = read_with_deadline(c, 10)
    assert resp.status == 413
    assert_cors(resp)


def token_set(value):
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


@pytest.mark.parametrize("cpath,methods", [
    (USERS, {"get", "post"}), (ACCOUNTS, {"get", "post"}),
    (ORDERS, {"get", "post"}), (USERS + "/1", {"get"}),
    (ORDERS + "/1", {"get"}),
])
def test_options_preflight(system, cpath, methods):
    base = system.order.base_url if cpath.startswith(ORDERS) \
        else system.user.base_url
    req_method = "POST" if "post" in methods else "GET"
    resp = http("OPTIONS", base + cpath, headers={
        "Origin": "http://example.test",
        "Access-Control-Request-Method": req_method,
        "Access-Control-Request-Headers": "content-type, x-request-id",
    })
    assert resp.status == 204, describe(resp)
    assert resp.text == ""
    assert_cors(resp)
    allow_methods = token_set(resp.headers.get("Access-Control-Allow-Methods"))
    assert methods <= allow_methods or "*" in allow_methods, allow_methods
    allow_headers = token_set(resp.headers.get("Access-Control-Allow-Headers"))
    assert "*" in allow_headers or \
        {"content-type", "x-request-id"} <= allow_headers, allow_headers


def test_options_without_preflight_headers(svc):
    resp = http("OPTIONS", svc.base + svc.path)
    assert resp.status == 204, describe(resp)
    assert_cors(resp)
    assert "post" in token_set(resp.headers.get("Access-Control-Allow-Methods"))


# ---------------------------------------------------------------- probes

def test_healthz(svc):
    resp = http("GET", svc.base + "/healthz")
    assert resp.status == 200
    assert_json_ct(resp)
    assert resp.json == {"status": "ok"}


def test_readyz_when_all_is_up(svc):
    resp = wait_until(lambda: (lambda r: r if r.status == 200 else None)(
        http("GET", svc.base + "/readyz")), timeout=60, message="readyz 200")
    assert resp.status == 200, describe(resp)
    assert_json_ct(resp)
    assert isinstance(resp.json, dict), resp.text


# name, optional {labels} (label values are quoted and may hold braces),
# value, optional timestamp.
SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?'
    r'\s+(\S+)(\s+-?\d+)?$')


def parse_metrics(text):
    types, samples = {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not Prometheus text format: {line!r}"
        float(m.group(3))
        samples.append((m.group(1), m.group(2) or "", float(m.group(3))))
    return types, samples


def request_counter_total(base):
    resp = http("GET", base + "/metrics")
    assert resp.status == 200
    types, samples = parse_metrics(resp.text)
    counters = {n for n, t in types.items() if t == "counter" and
                "request" in n}
    assert counters, f"no request counter in /metrics: {resp.text[:800]}"
    return sum(v for n, _, v in samples
               if n in counters or n.removesuffix("_total") in counters)


def test_metrics_format_and_request_counters(svc):
    resp = http("GET", svc.base + "/metrics")
    assert resp.status == 200
    mt, params = media_type(resp)
    assert mt == "text/plain" and params.get("version") == "0.0.4", \
        resp.headers.get("Content-Type")
    parse_metrics(resp.text)
    before = request_counter_total(svc.base)
    for _ in range(3):
        assert http("GET", svc.base + svc.path + "?limit=1").status == 200
    after = request_counter_total(svc.base)
    assert after >= before + 3, (before, after)


# ---------------------------------------------------------------- keep-alive

def test_keep_alive_two_gets(svc):
    with RawConn(svc.base) as c:
        a = c.request("GET", "/healthz")
        assert a.status == 200
        assert a.headers.get("connection", "").lower() != "close"
        b = c.request("GET", svc.path + "?limit=1")
        assert b.status == 200
        assert isinstance(b.json, list)


def test_keep_alive_post_then_get(svc):
    with RawConn(svc.base) as c:
        body = json.dumps(svc.make_body()).encode()
        a = c.request("POST", svc.path,
                      [("Content-Type", "application/json")], body)
        assert a.status == 201, a.text
        assert a.headers.get("connection", "").lower() != "close"
        b = c.request("GET", f"{svc.path}/{a.json['id']}")
        assert b.status == 200
        assert b.json == a.json


# ---------------------------------------------------------------- lists

LISTS = {
    "users": (USERS, ["limit", "offset", "order_by", "email", "name"],
              ["id", "name", "email", "created_at"]),
    "accounts": (ACCOUNTS, ["limit", "offset", "order_by", "user_id",
                            "status"],
                 ["id", "user_id", "city", "state", "zip", "status",
                  "created_at"]),
    "orders": (ORDERS, ["limit", "offset", "order_by", "user_id"],
               ["id", "user_id", "amount", "created_at"]),
}


def make_row(system, path):
    """Create one row of the list at path."""
    if path == USERS:
        make_user(system)
    elif path == ACCOUNTS:
        make_account(system, make_user(system)["id"])
    else:
        make_order(system)


@pytest.fixture(params=sorted(LISTS))
def coll(request, system):
    path, params, columns = LISTS[request.param]
    base = system.order.base_url if path == ORDERS else system.user.base_url
    make_row(system, path)  # each list has something in it
    return base, path, params, columns


BAD_INT = ["", "abc", "01", "+1", "-0", "1.0", "1e2", " 1", "1 ", "0x10",
           "99999999999999999999"]


@pytest.mark.parametrize("value", BAD_INT + ["0", "1001", "-1", "100000"])
def test_400_bad_limit(coll, value):
    base, path, _, _ = coll
    resp = get(base, path, {"limit": value})
    assert_error(resp, 400, "invalid_query", index=None)


@pytest.mark.parametrize("value", BAD_INT + ["-1", "00"])
def test_400_bad_offset(coll, value):
    base, path, _, _ = coll
    resp = get(base, path, {"offset": value})
    assert_error(resp, 400, "invalid_query", index=None)


@pytest.mark.parametrize("value", BAD_INT + ["-1"])
def test_400_bad_user_id_filter(system, value):
    for base, path in ((system.user.base_url, ACCOUNTS),
                       (system.order.base_url, ORDERS)):
        resp = get(base, path, {"user_id": value})
        assert_error(resp, 400, "invalid_query", index=None)


def test_limit_bounds(coll):
    base, path, _, _ = coll
    assert len(list_ok(base, path, {"limit": 1})) == 1
    rows = list_ok(base, path, {"limit": 1000})
    assert 1 <= len(rows) <= 1000
    assert list_ok(base, path, {"offset": 0, "limit": 1})
    assert list_ok(base, path, {"offset": 1000000000}) == []


def test_default_order_is_id_ascending(coll):
    base, path, _, _ = coll
    rows = list_ok(base, path, {"limit": 1000})
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_offset_pages_follow_each_other(coll, system):
    base, path, _, _ = coll
    for _ in range(3):
        make_row(system, path)  # three rows of its own, whatever else is there
    all_rows = list_ok(base, path, {"limit": 1000, "order_by": "-id"})
    assert len(all_rows) >= 3
    page = list_ok(base, path, {"limit": 2, "offset": 1, "order_by": "-id"})
    assert [r["id"] for r in page] == [r["id"] for r in all_rows[1:3]]


def test_unknown_parameter_names_allowed_ones(coll):
    base, path, params, _ = coll
    for bogus in ("bogus", "sort", "page"):
        resp = get(base, path, {bogus: "1"})
        err = assert_error(resp, 400, "invalid_query", index=None)
        for p in params:
            assert p in err["message"], \
                f"message does not name {p!r}: {err['message']!r}"


def test_unknown_parameter_next_to_valid_ones(coll):
    base, path, _, _ = coll
    resp = get(base, path, [("limit", "5"), ("x", "1")])
    assert_error(resp, 400, "invalid_query", index=None)


BAD_ORDER_BY = ["", "-", "--id", "+id", "bogus", "id;DROP TABLE users",
                "id; DROP TABLE orders; --", "id DESC", "id,name",
                "(SELECT 1)", "1", " id", "id ", "name' OR '1'='1",
                "id/**/desc", "password", "rowid", "random()"]


@pytest.mark.parametrize("value", BAD_ORDER_BY)
def test_400_bad_order_by_changes_nothing(coll, value):
    base, path, _, _ = coll
    before = list_ok(base, path, {"limit": 1000, "order_by": "-id"})
    resp = get(base, path, {"order_by": value})
    assert_error(resp, 400, "invalid_query", index=None)
    after = list_ok(base, path, {"limit": 1000, "order_by": "-id"})
    assert after == before
    assert_healthy(base)


def test_400_order_by_of_an_unlisted_column(system):
    cases = [(system.user.base_url, USERS, ["amount", "user_id", "status"]),
             (system.user.base_url, ACCOUNTS,
              ["address1", "address2", "name", "email", "amount"]),
             (system.order.base_url, ORDERS,
              ["description", "name", "status", "year"])]
    for base, path, cols in cases:
        for col in cols:
            for value in (col, "-" + col):
                resp = get(base, path, {"order_by": value})
                assert_error(resp, 400, "invalid_query", index=None)


def test_bad_order_by_message_names_columns(coll):
    base, path, _, columns = coll
    resp = get(base, path, {"order_by": "bogus"})
    err = assert_error(resp, 400, "invalid_query", index=None)
    for col in columns:
        assert col in err["message"], \
            f"message does not name {col!r}: {err['message']!r}"


def test_every_listed_column_sorts(coll):
    base, path, _, columns = coll
    for col in columns:
        for desc in (False, True):
            value = ("-" if desc else "") + col
            rows = list_ok(base, path, {"order_by": value, "limit": 1000})
            assert rows, value
            if col in ("id", "user_id", "amount", "created_at"):
                assert_sorted(rows, key=lambda r: r[col], descending=desc)


def test_keep_alive_after_error_answers(svc):
    with RawConn(svc.base) as c:
        a = c.request("GET", "/nope")
        assert a.status == 404
        b = c.request("POST", svc.path,
                      [("Content-Type", "application/json")], b"{}")
        assert b.status == 422, b.text
        d = c.request("GET", "/healthz")
        assert d.status == 200


def test_expect_100_continue(svc):
    body = json.dumps(svc.make_body()).encode()
    with RawConn(svc.base) as c:
        c.send(c.request_bytes("POST", svc.path, [
            ("Content-Type", "application/json"),
            ("Expect", "100-continue"),
            ("Content-Length", str(len(body)))]))
        # A server may answer 100 Continue or simply wait for the body.
        r, _, _ = select.select([c.sock], [], [], 2)
        if r:
            c._fill()
            assert c.buf.startswith(b"HTTP/1.1 100"), c.buf[:200]
        c.send(body)
        resp = read_with_deadline(c, 10)
    assert resp.status == 201, describe(resp)


def test_request_id_is_logged(system):
    rid = "logged-" + hexid()
    resp = http("GET", system.user.base_url + "/nope",
                headers={"X-Request-Id": rid})
    assert resp.status == 404
    resp = post(system.order.base_url, ORDERS,
                {"user_id": uuser_id(), "amount": 1}, rid=rid + "o")
    assert resp.status == 201
    wait_until(lambda: rid in system.user.log_text(), timeout=5,
               message="request id in the user-service log")
    wait_until(lambda: rid + "o" in system.order.log_text(), timeout=5,
               message="request id in the order-service log")


def test_readyz_503_when_broker_is_down(fresh_system):
    s = fresh_system()
    bases = [s.user.base_url, s.order.base_url]
    for b in bases:  # ready once the relay has connected (a moment after start)
        wait_until(lambda: http("GET", b + "/readyz").status == 200, timeout=60,
                   message="readyz 200 before the broker stops")
    s.broker.stop()
    try:
        for b in bases:
            resp = wait_until(
                lambda: (lambda r: r if r.status == 503 else None)(
                    http("GET", b + "/readyz")),
                timeout=30, message="readyz 503 with the broker down")
            assert_json_ct(resp)
            assert_cors(resp)
            text = resp.text.lower()
            assert any(w in text for w in ("broker", "amqp", "rabbitmq")), \
                resp.text
            # alive all the same
            assert_healthy(b)
    finally:
        s.broker.start()
    for b in bases:
        wait_until(lambda: http("GET", b + "/readyz").status == 200,
                   timeout=60, message="readyz 200 after the broker is back")


def test_body_limit_is_configurable(fresh_system):
    # docs/api.md: 1 MiB by default, configurable. The option's name is the
    # project's (BODY_LIMIT / --body-limit), not the contract's.
    s = fresh_system(env={"BODY_LIMIT": "4096"})
    for base, path, body in ((s.user.base_url, USERS, user_body()),
                             (s.order.base_url, ORDERS,
                              {"user_id": 1, "amount": 1})):
        text = json.dumps(body).encode()
        ok = text + b" " * (4096 - len(text))
        resp = post_raw(base, path, ok)
        assert resp.status == 201, describe(resp)
        if path == USERS:
            text = json.dumps(user_body()).encode()
        over = text + b" " * (4097 - len(text))
        resp = post_raw(base, path, over)
        assert_error(resp, 413, "payload_too_large", field=None)
        assert len(list_ok(base, path)) == 1


# ------------------------------------------------- NUL bytes and stray queries

@pytest.mark.parametrize("cpath", [USERS, ACCOUNTS, ORDERS])
def test_nul_escape_does_not_cut_a_path_id(system, cpath):
    """A %00 must not end the id early ("1%00x" is not id 1): 404."""
    user = make_user(system)
    base = system.order.base_url if cpath == ORDERS else system.user.base_url
    ident = user["id"] if cpath == USERS else 1
    for path in (f"{cpath}/{ident}%00x", f"{cpath}/{ident}%00", f"{cpath}%00/{ident}"):
        assert_error(http("GET", base + path), 404, "not_found", field=None)


@pytest.mark.parametrize("service,path,query", [
    ("user", USERS, "limit=1%00x"),
    ("user", USERS, "offset=0%00"),
    ("user", ACCOUNTS, "status=open%00x"),
    ("order", ORDERS, "user_id=1%00"),
    ("order", ORDERS, "order_by=id%00x"),
    ("invoice", "/invoice-service/invoices", "month=4%00x"),
])
def test_nul_escape_does_not_cut_a_query_value(system, service, path, query):
    """A %00 must not end a value early ("1%00x" is not 1): 400."""
    base = getattr(system, service).base_url
    assert_error(http("GET", f"{base}{path}?{query}"), 400, "invalid_query", field=None)


def test_unknown_query_parameter_on_get_by_id(system):
    user = make_user(system)
    resp = http("GET", f"{system.user.base_url}{USERS}/{user['id']}?x=1")
    assert_error(resp, 400, "invalid_query", field=None)
    assert "unknown query parameter" in resp.json["error"]["message"]


def test_unknown_query_parameter_on_create(svc, unchanged):
    resp = http("POST", f"{svc.base}{svc.path}?x=1", body=svc.make_body())
    assert_error(resp, 400, "invalid_query", field=None)


@pytest.mark.parametrize("service,path,body,field", [
    ("user", USERS, '{"name": "a\\u0000b", "email": "nul@x.test"}', "name"),
    ("order", ORDERS, '{"user_id": 1, "amount": 1, "description": "\\u0000"}', "description"),
])
def test_escaped_nul_in_a_string_is_422(system, service, path, body, field):
    """"\\u0000" is valid JSON (so not malformed_json), but no field may
    hold a NUL: 422 invalid_field naming the field; nothing created."""
    base = getattr(system, service).base_url
    before = max_id(base, path)
    assert_error(post_raw(base, path, body), 422, "invalid_field", field=field)
    assert max_id(base, path) == before


def test_405_message_names_the_method(svc):
    resp = http("BREW", svc.base + "/healthz")
    assert_error(resp, 405, "method_not_allowed", field=None)
    assert resp.json["error"]["message"].startswith("BREW is not allowed here"), describe(resp)
