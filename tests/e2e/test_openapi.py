"""The services describe themselves (README, "Describing itself"): each
serves GET /<prefix>/openapi.json, exactly the OpenAPI 3.1 document kept
in openapi/<service>.json. These tests check the documents are valid
OpenAPI 3.1 (with an npm validator), match their generator and the
route tables of the code, and are what the live services serve. That
every answer of the other tests conforms to them is checked by
openapi_check.py, for every test."""

import json
import re
import subprocess
import sys
import uuid

import jsonschema
import pytest

import openapi_check
from harness import REPO
from helpers import http, wait_until

SERVICES = {"user-service": ("user", "/system-api"),
            "order-service": ("order", "/order-service"),
            "invoice-service": ("invoice", "/invoice-service")}
VALIDATOR = REPO / "tests" / "openapi" / "node_modules" / ".bin" / "validate-api"
CORS = {"Access-Control-Allow-Origin": "*",
        "Access-Control-Expose-Headers": "Location, X-Request-Id, X-Consistency-Token, "
                                         "Idempotent-Replayed, Retry-After"}
HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")


def validate_api(path):
    """The npm validator's verdict on the document at path (a dict)."""
    if not VALIDATOR.exists():
        pytest.fail(f"no {VALIDATOR}: run `npm ci` in tests/openapi "
                    "(scripts/run-tests.sh does when it is missing)")
    out = subprocess.run([str(VALIDATOR), str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 or out.stdout, out.stderr
    return json.loads(out.stdout)


def schemas_of(node, where="#"):
    """Every Schema Object of a document, with where it is: the npm
    validator checks the document's structure but not what a schema holds,
    so the tests check each schema against JSON Schema 2020-12 too."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if key == "schema":
                yield here, value
            elif key == "schemas" and where == "#/components":
                for name, schema in value.items():
                    yield f"{here}/{name}", schema
            else:
                yield from schemas_of(value, here)
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from schemas_of(value, f"{where}/{n}")


def schema_problems(doc):
    problems = []
    for where, schema in schemas_of(doc):
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            problems.append(f"{where}: {e.message}")
    return problems


def service(system, name):
    return getattr(system, SERVICES[name][0])


@pytest.mark.parametrize("name", SERVICES)
def test_document_is_valid_openapi_3_1(name):
    path = openapi_check.DOC_DIR / f"{name}.json"
    verdict = validate_api(path)
    assert verdict.get("valid") is True, verdict
    doc = json.loads(path.read_text())
    assert schema_problems(doc) == []
    assert len(list(schemas_of(doc))) > 30  # the walk finds the schemas
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["version"] == (REPO / "VERSION").read_text().strip()


def _parameter_in_body(doc):
    doc["paths"]["/order-service/orders"]["post"]["parameters"].append(
        {"name": "x", "in": "body", "schema": {"type": "string"}})


def _schema_of_unknown_type(doc):
    doc["components"]["schemas"]["Order"]["type"] = "record"


def _response_without_description(doc):
    del doc["components"]["responses"]["NotFound"]["description"]


@pytest.mark.parametrize("breakage", [_parameter_in_body, _response_without_description])
def test_validator_rejects_a_broken_document(tmp_path, breakage):
    """The validator is not a rubber stamp: each breakage alone is refused."""
    doc = json.loads((openapi_check.DOC_DIR / "order-service.json").read_text())
    breakage(doc)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    assert validate_api(broken).get("valid") is False


def test_schema_check_rejects_a_broken_schema():
    doc = json.loads((openapi_check.DOC_DIR / "order-service.json").read_text())
    assert schema_problems(doc) == []
    _schema_of_unknown_type(doc)
    assert [p.split(":")[0] for p in schema_problems(doc)] == [
        "#/components/schemas/Order"]


def test_documents_are_what_the_generator_writes(tmp_path):
    """openapi/generate.py is where the documents are edited; the committed
    files must be its output (the Makefile reruns it when it changes)."""
    subprocess.run([sys.executable, str(REPO / "openapi" / "generate.py"), str(tmp_path)],
                   check=True, timeout=60)
    for name in SERVICES:
        made = (tmp_path / f"{name}.json").read_bytes()
        assert made == (openapi_check.DOC_DIR / f"{name}.json").read_bytes(), \
            f"openapi/{name}.json differs from openapi/generate.py's output: run make"


def code_routes(name):
    """(METHOD, pattern) of every route in the service's table and the
    HTTP layer's built-in probes, read from the C source."""
    sources = [REPO / "src" / SERVICES[name][0] / "main.c", REPO / "src" / "lib" / "http.c"]
    found = set()
    for src in sources:
        # Table entries are written ROUTE("GET", "/path", ...) (route.h).
        for method, pattern in re.findall(r'\bROUTE\("(GET|POST)", "(/[^"]*)",', src.read_text()):
            found.add((method, pattern))
    return found


@pytest.mark.parametrize("name", SERVICES)
def test_every_route_of_the_code_is_documented_and_no_other(name):
    doc = openapi_check.load(name)
    documented = set()
    for path, item in doc["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                documented.add((method.upper(), path))
    routes = code_routes(name)
    assert routes, "no route found in the source"
    expected = set(routes)
    for method, path in routes:
        expected.add(("OPTIONS", path))
        if method == "GET":
            expected.add(("HEAD", path))
    assert documented == expected


@pytest.mark.parametrize("name", SERVICES)
def test_live_service_serves_exactly_its_file(system, name):
    svc = service(system, name)
    prefix = SERVICES[name][1]
    url = f"{svc.base_url}{prefix}/openapi.json"
    want = (openapi_check.DOC_DIR / f"{name}.json").read_bytes()

    r = http("GET", url, headers={"X-Request-Id": "openapi-" + name})
    assert r.status == 200, r
    assert r.body == want
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.headers["X-Request-Id"] == "openapi-" + name
    for k, v in CORS.items():
        assert r.headers[k] == v

    head = http("HEAD", url)
    assert head.status == 200 and head.body == b""
    assert int(head.headers["Content-Length"]) == len(want)

    pre = http("OPTIONS", url)
    assert pre.status == 204, pre
    assert pre.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert pre.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"

    post = http("POST", url, body={})
    assert post.status == 405, post
    assert post.json["error"]["code"] == "method_not_allowed"
    assert post.headers["Allow"] == "GET, HEAD, OPTIONS"

    query = http("GET", url + "?pretty=1")
    assert query.status == 400 and query.json["error"]["code"] == "invalid_query", query

    # Only under the service's own prefix.
    other = "/order-service" if prefix != "/order-service" else "/system-api"
    assert http("GET", f"{svc.base_url}{other}/openapi.json").status == 404


def ok_headers(**more):
    h = [("Content-Type", "application/json; charset=utf-8"), ("X-Request-Id", "t")]
    return h + list(CORS.items()) + list(more.items())


def test_checker_finds_answers_that_break_the_document():
    """openapi_check, which every test relies on, can fail: an undocumented
    field, status, header or code is reported; a conforming answer is not."""
    user = {"id": 1, "name": "A", "email": "a@b.c", "created_at": "2025-04-03T10:14:02.120Z"}
    good = json.dumps(user).encode()
    assert openapi_check.check("GET", "/system-api/users/1", 200, ok_headers(), good) == []
    assert openapi_check.check("GET", "/system-api/users/1", 200, ok_headers(),
                               json.dumps(dict(user, extra=1)).encode())
    assert openapi_check.check("GET", "/system-api/users/1", 418, ok_headers(), good)
    assert openapi_check.check("GET", "/system-api/users/1", 200, ok_headers()[:2], good)
    conflict = {"error": {"status": 409, "code": "conflict", "message": "m", "field": "email"}}
    assert openapi_check.check("POST", "/system-api/users", 409, ok_headers(),
                               json.dumps(conflict).encode()) == []
    # accounts cannot answer 409, and unknown_user is not a users code
    assert openapi_check.check("POST", "/system-api/accounts", 409, ok_headers(),
                               json.dumps(conflict).encode())
    unknown = {"error": {"status": 422, "code": "unknown_user", "message": "m"}}
    assert openapi_check.check("POST", "/system-api/users", 422, ok_headers(),
                               json.dumps(unknown).encode())
    # a path no route matches (a bad id too) may only be 404
    assert openapi_check.check("GET", "/system-api/users/007", 200, ok_headers(), good)
    # a 201 without its consistency token, or with a replay mark that is
    # not "true", breaks the document; the token's characters are checked
    created = ok_headers(Location="/system-api/users/1", **{"X-Consistency-Token": "1.u.1.AZ"})
    assert openapi_check.check("POST", "/system-api/users", 201, created, good) == []
    assert openapi_check.check("POST", "/system-api/users", 201, created[:-1], good)
    assert openapi_check.check("POST", "/system-api/users", 201,
                               created + [("Idempotent-Replayed", "yes")], good)
    assert openapi_check.check("POST", "/system-api/users", 201,
                               ok_headers(**{"X-Consistency-Token": "a b"}), good)
    # 409 idempotency_key_in_use needs Retry-After where it is the only 409
    in_use = json.dumps({"error": {"status": 409, "code": "idempotency_key_in_use",
                                   "message": "m"}}).encode()
    assert openapi_check.check("POST", "/order-service/orders", 409,
                               ok_headers(**{"Retry-After": "1"}), in_use) == []
    assert openapi_check.check("POST", "/order-service/orders", 409, ok_headers(), in_use)
    # not_consistent_yet is an invoice read's, never a writer's
    not_yet = json.dumps({"error": {"status": 503, "code": "not_consistent_yet",
                                    "message": "m"}}).encode()
    assert openapi_check.check("GET", "/invoice-service/invoices", 503,
                               ok_headers(**{"Retry-After": "1"}), not_yet) == []
    assert openapi_check.check("GET", "/order-service/orders", 503,
                               ok_headers(**{"Retry-After": "1"}), not_yet)
    # an admin route's 401 names its challenge; an unknown id is 404
    unauthorized = json.dumps({"error": {"status": 401, "code": "unauthorized",
                                         "message": "m"}}).encode()
    dl = "/invoice-service/dead-letters"
    assert openapi_check.check("GET", dl, 401, ok_headers(**{"WWW-Authenticate": "Bearer"}),
                               unauthorized) == []
    assert openapi_check.check("GET", dl, 401, ok_headers(), unauthorized)
    assert openapi_check.check("POST", dl + "/7/redrive", 202, ok_headers(),
                               b'{"redriven": 1}') == []
    assert openapi_check.check("POST", dl + "/redrive", 200, ok_headers(), b'{"redriven": 1}')
    # the invoice service's /readyz has a consumer check, the writers' not
    ready = {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    port = 1  # no service listens there; the checker only needs a name for it
    try:
        openapi_check.serves(port, "invoice-service")
        with_consumer = dict(ready, checks=dict(ready["checks"], consumer="ok"))
        assert openapi_check.check("GET", "/readyz", 200, ok_headers(),
                                   json.dumps(with_consumer).encode(), port) == []
        assert openapi_check.check("GET", "/readyz", 200, ok_headers(),
                                   json.dumps(ready).encode(), port)
        openapi_check.serves(port, "order-service")
        assert openapi_check.check("GET", "/readyz", 200, ok_headers(),
                                   json.dumps(ready).encode(), port) == []
        assert openapi_check.check("GET", "/readyz", 200, ok_headers(),
                                   json.dumps(with_consumer).encode(), port)
    finally:
        openapi_check.gone(port)
    # money keeps two decimals at most
    order = {"id": 1, "user_id": 1, "amount": 19.999, "description": None,
             "created_at": "2025-04-03T10:15:00.000Z"}
    assert openapi_check.check("GET", "/order-service/orders/1", 200, ok_headers(),
                               json.dumps(order).encode())


def test_live_answers_of_every_route_conform(system):
    """One request of each kind per route, each checked by openapi_check
    (the fixture fails this test on any problem): the happy paths and one
    error of each family."""
    email = f"oa-{uuid.uuid4().hex}@x.test"
    u = system.user.base_url
    o = system.order.base_url
    i = system.invoice.base_url
    user = http("POST", f"{u}/system-api/users", body={"name": "Open Api", "email": email})
    assert user.status == 201, user
    uid = user.json["id"]
    assert user.headers["Location"] == f"/system-api/users/{uid}"
    batch = http("POST", f"{u}/system-api/accounts", body=[
        {"user_id": uid, "address1": "1 A St", "city": "C", "state": "S", "zip": "1"},
        {"user_id": uid, "address1": "2 A St", "address2": "", "city": "C", "state": "S",
         "zip": "2", "status": "closed"}])
    assert batch.status == 201 and "Location" not in batch.headers, batch
    order = http("POST", f"{o}/order-service/orders",
                 body={"user_id": uid, "amount": 12.5, "created_at": "2003-02-01T00:00:00Z"})
    assert order.status == 201, order
    for url, status in [
            (f"{u}/system-api/users?email={email}", 200),
            (f"{u}/system-api/users/{uid}", 200),
            (f"{u}/system-api/accounts?user_id={uid}&order_by=-id", 200),
            (f"{u}/system-api/accounts/{batch.json[0]['id']}", 200),
            (f"{o}/order-service/orders?user_id={uid}", 200),
            (f"{o}/order-service/orders/{order.json['id']}", 200),
            (f"{i}/invoice-service/invoices?user_id={uid}", 200),
            (f"{i}/invoice-service/invoices/999999999", 404),
            (f"{u}/system-api/users?bogus=1", 400),
            (f"{u}/nope", 404),
            (f"{i}/healthz", 200), (f"{i}/metrics", 200)]:
        r = http("GET", url)
        assert r.status == status, (url, r)
    wait_until(lambda: http("GET", f"{i}/readyz").status == 200, timeout=30,
               message="the invoice service to be ready")
    for body, status in [({"name": "X"}, 422), ({"name": "X", "email": email}, 409),
                         ([], 422)]:
        r = http("POST", f"{u}/system-api/users", body=body)
        assert r.status == status, r
    assert http("POST", f"{u}/system-api/users", raw=b"{", headers={
        "Content-Type": "application/json"}).status == 400
    assert http("POST", f"{u}/system-api/users", raw=b"{}", headers={
        "Content-Type": "text/plain"}).status == 415
    assert http("DELETE", f"{i}/invoice-service/invoices").status == 405
    # The admin routes of a service without an admin token.
    assert http("GET", f"{i}/invoice-service/dead-letters").status == 404
    assert http("POST", f"{i}/invoice-service/dead-letters/redrive").status == 404

    # Idempotency-Key: a replay, a mismatch, a bad key.
    key = {"Idempotency-Key": "oa-" + uuid.uuid4().hex}
    body = {"user_id": uid, "amount": 1, "created_at": "2003-02-02T00:00:00Z"}
    first = http("POST", f"{o}/order-service/orders", body=body, headers=key)
    again = http("POST", f"{o}/order-service/orders", body=body, headers=key)
    assert first.status == again.status == 201, (first, again)
    assert again.headers["Idempotent-Replayed"] == "true" and again.body == first.body
    other = http("POST", f"{o}/order-service/orders", body=dict(body, amount=2), headers=key)
    assert other.status == 422 and other.json["error"]["code"] == "idempotency_key_mismatch"
    bad = http("POST", f"{u}/system-api/users", body={"name": "X", "email": email},
               headers={"Idempotency-Key": ""})
    assert bad.status == 400 and bad.json["error"]["code"] == "invalid_header", bad

    # Consistency tokens: a read that waits for the writes, a forged token.
    tokens = "&".join(f"consistent_with={r.headers['X-Consistency-Token']}"
                      for r in (user, batch, order, first))
    fresh = http("GET", f"{i}/invoice-service/invoices?user_id={uid}&{tokens}&wait_ms=20000",
                 timeout=30)
    assert fresh.status == 200 and fresh.json[0]["total"] == 13.5, fresh
    one = http("GET", f"{i}/invoice-service/invoices/{fresh.json[0]['id']}?{tokens}")
    assert one.status == 200, one
    forged = http("GET", f"{i}/invoice-service/invoices?consistent_with=1.x.1.AAAA")
    assert forged.status == 400 and forged.json["error"]["code"] == "invalid_query", forged
    assert openapi_check.take() == []
