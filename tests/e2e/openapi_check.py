"""Checks every answer the end-to-end tests receive against the service's
OpenAPI document (openapi/<service>.json): the route is found from the
request's method and path, the status must be documented for it, the
documented headers must be present and match their schemas, and the body
must validate against the schema of that status and media type.

The HTTP clients of the tests call observe() with each answer they get;
a problem is recorded (several threads may observe at once), and the
autouse fixture in conftest.py fails the test that received it. Nothing
is raised here, so a client inside a wait_until() loop cannot hide it.

Which answers are not checked, and why (docs/api.md 2.2): libmicrohttpd
answers a broken request head itself, before any code of ours runs, with
a short HTML page and none of our headers (431 or 414 for a head over its
limit, 400 for a Content-Length that is not a number). Such an answer is
recognised narrowly: one of those statuses, text/html, and no X-Request-Id.
Requests sent as raw bytes on a socket on purpose (test_hostile_http's
truncated and oversized heads) do not go through these clients at all.
"""

import json
import re
import threading
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote

import jsonschema
from jsonschema import Draft202012Validator, RefResolver

DOC_DIR = Path(__file__).resolve().parents[2] / "openapi"
SERVICES = ("user-service", "order-service", "invoice-service")
METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")
LIBRARY_STATUSES = (400, 414, 431)
MAX_PROBLEMS = 50  # kept per test; more would only repeat themselves


def load(name):
    """A service's document, with reals as Decimal (money is exact)."""
    with open(DOC_DIR / f"{name}.json", "rb") as f:
        return json.loads(f.read(), parse_float=Decimal)


class _Document:
    def __init__(self, name):
        self.name = name
        self.doc = load(name)
        self.resolver = RefResolver(f"urn:openapi:{name}", self.doc)
        # jsonschema's RefResolver keeps a stack of scopes while it works,
        # so the load threads of a test take turns with it.
        self.resolver_lock = threading.Lock()
        self.validators = {}
        self.routes = []
        for template, item in self.doc["paths"].items():
            regex = "^" + re.sub(r"\\\{([a-z_]+)\\\}", r"(?P<\1>[^/]+)",
                                 re.escape(template)) + "$"
            self.routes.append((re.compile(regex), template, item))

    def deref(self, node):
        for _ in range(10):
            if "$ref" not in node:
                return node
            with self.resolver_lock:
                _, node = self.resolver.resolve(node["$ref"])
        raise ValueError("$ref chain too long")

    def validate(self, schema, value):
        with self.resolver_lock:
            v = self.validators.get(id(schema))
            if v is None:
                v = Draft202012Validator(schema, resolver=self.resolver,
                                         format_checker=jsonschema.FormatChecker())
                self.validators[id(schema)] = v
            errors = list(v.iter_errors(value))[:5]
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in errors]

    def params_ok(self, item, method_op, match):
        """Whether the path parameters satisfy their schemas (a bad {id} is
        a 404 like an unknown path)."""
        params = list(item.get("parameters", [])) + list(method_op.get("parameters", []))
        for p in params:
            p = self.deref(p)
            if p["in"] == "path" and p["name"] in match.groupdict():
                if self.validate(p["schema"], match.group(p["name"])):
                    return False
        return True

    def find(self, method, path):
        """(template, operation or None, path_known) for the request."""
        for regex, template, item in self.routes:
            m = regex.match(path)
            if not m:
                continue
            any_op = next(item[k] for k in METHODS if k in item)
            if not self.params_ok(item, any_op, m):
                continue
            return template, item.get(method), True
        return None, None, False


_docs = {}
_lock = threading.Lock()
_problems = []
_port_service = {}  # port -> the service listening there (harness.Service)


def document(name):
    with _lock:
        if name not in _docs:
            _docs[name] = _Document(name)
        return _docs[name]


def _decode_path(target):
    """The path as routing sees it: the query dropped, %XX decoded except
    %00 (kept, as the services keep it) and %2F (it would make segments)."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    return re.sub(r"%(?!00|2[fF])[0-9a-fA-F]{2}", lambda m: unquote(m.group(0)), path)


def serves(port, name):
    """Notes that service name ("user-service") listens on port, so that
    its answers are checked against its own document whatever the path
    (a request for another service's prefix gets this one's 404). Answers
    from a port no service was noted on are not checked."""
    with _lock:
        _port_service[port] = name


def gone(port):
    """Notes that the service on port has exited."""
    with _lock:
        _port_service.pop(port, None)


def _pick_document(path, port):
    """The document of the service on port; None when no service started
    by the harness listens there (a test's own server). Without a port,
    the one the path's prefix names."""
    if port is not None:
        with _lock:
            name = _port_service.get(port)
        return document(name) if name else None
    prefixes = {"/system-api": "user-service", "/order-service": "order-service",
                "/invoice-service": "invoice-service"}
    first = "/" + path.lstrip("/").split("/", 1)[0]
    # The probes' paths are in the three documents (only the invoice
    # service's /readyz has a consumer check: its answers come with a port).
    return document(prefixes.get(first, "user-service"))


def _media_type(value):
    return (value or "").split(";", 1)[0].strip().lower()


def check(method, target, status, headers, body, port=None):
    """The problems of one answer (a list of strings, empty when it
    conforms). headers: (name, value) pairs; body: the bytes received;
    port: where it came from (its service's document is used, else the
    one the path's prefix names)."""
    method = method.upper()
    hmap = {}
    for k, v in headers:
        hmap.setdefault(k.lower(), v)
    ctype = _media_type(hmap.get("content-type"))
    if (status in LIBRARY_STATUSES and ctype == "text/html"
            and "x-request-id" not in hmap):
        return []  # libmicrohttpd's own answer to a broken head (see above)

    path = _decode_path(target)
    d = _pick_document(path, port)
    if d is None:
        return []  # not one of our services
    template, op, known = d.find(method.lower(), path)
    where = f"{method} {target[:120]} -> {status}"
    if not known:
        response = d.doc["components"]["responses"]["NotFound"]
        if status != 404:
            return [f"{where}: no route of {d.name} matches; only 404 is documented"]
    elif op is None:
        response = d.doc["components"]["responses"]["MethodNotAllowed"]
        if status != 405:
            return [f"{where}: {template} has no {method}; only 405 is documented"]
    else:
        responses = op["responses"]
        response = responses.get(str(status), responses.get("default"))
        if response is None:
            return [f"{where}: status {status} is not documented for {method} {template} "
                    f"(documented: {', '.join(sorted(responses))})"]
    response = d.deref(response)

    problems = []
    for name, h in response.get("headers", {}).items():
        h = d.deref(h)
        value = hmap.get(name.lower())
        if value is None:
            if h.get("required"):
                problems.append(f"{where}: header {name} is missing")
            continue
        for e in d.validate(h.get("schema", {}), value):
            problems.append(f"{where}: header {name}: {e}")

    content = response.get("content")
    if method == "HEAD":
        pass  # the headers of GET, no body
    elif not content:
        if body:
            problems.append(f"{where}: a body where none is documented: {body[:100]!r}")
    elif ctype not in content:
        problems.append(f"{where}: Content-Type {hmap.get('content-type')!r} is not one of "
                        f"{', '.join(content)}")
    else:
        schema = content[ctype].get("schema", {})
        if ctype == "application/json":
            try:
                value = json.loads(body, parse_float=Decimal)
            except ValueError as e:
                return problems + [f"{where}: body is not JSON ({e}): {body[:100]!r}"]
        else:
            value = body.decode("utf-8", "replace")
        for e in d.validate(schema, value):
            problems.append(f"{where}: body {e} in {body[:300]!r}")
    return problems


def observe(method, target, status, headers, body, port=None):
    """Checks one answer and records its problems for the current test."""
    try:
        problems = check(method, target, status, headers, body, port)
    except Exception as e:  # a defect of this checker must show too
        problems = [f"{method} {target[:120]} -> {status}: checker failed: {e!r}"]
    if problems:
        with _lock:
            room = MAX_PROBLEMS - len(_problems)
            _problems.extend(problems[:max(room, 0)])


def observe_response(conn, method, target, resp, body):
    """observe() for the http.client.HTTPResponse of conn (an
    HTTPConnection), whose body was read."""
    observe(method, target, resp.status, resp.getheaders(), body, conn.port)


def take():
    """The problems recorded since the last call, which clears them."""
    with _lock:
        out = list(_problems)
        _problems.clear()
        return out
