#!/usr/bin/python3
"""Writes the OpenAPI 3.1 documents of the three services:
openapi/user-service.json, openapi/order-service.json and
openapi/invoice-service.json (README, "Describing itself").

The JSON files are the single source each service serves at
GET /<prefix>/openapi.json: the Makefile builds each one into its service's
binary. They share most of their parts (the error shape, the headers every
answer carries, the list parameters, the probes), so this script writes
those parts once and the Makefile runs it when it changes; the files it
writes are committed, and tests/e2e/test_openapi.py checks that they are
exactly what this script writes.

Layout, so that a feature is a small edit here:
  - ERROR_TITLES / ERROR_WHEN: the statuses and codes of error answers;
    an operation lists, per status, the codes it can answer;
  - HEADERS / PARAMETERS: reusable headers and parameters;
    common_headers(): the headers on every answer;
  - create_op() / list_op() / get_op(): the operations of a collection
    (a request header every POST takes goes into create_op's parameters,
    a header of every 201 into its extra_headers, a new code into its
    errors); add_collection() makes a collection's paths;
  - add_probes(): /healthz, /readyz, /metrics (the same in the three
    documents); add_self(): the openapi.json route itself.
Run: /usr/bin/python3 openapi/generate.py  (from anywhere)
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION_FILE = os.path.join(HERE, "..", "VERSION")

BATCH_MAX = 1000          # items in one POST (BODY_MAX_ITEMS)
LIST_MAX_LIMIT = 1000     # LISTQ_MAX_LIMIT
LIST_DEFAULT_LIMIT = 100  # LISTQ_DEFAULT_LIMIT
MONEY_MAX = 1000000000
REQUEST_ID_PATTERN = "^[\\x20-\\x7E]{1,128}$"
IDEMPOTENCY_KEY_PATTERN = "^[\\x20-\\x7E]{1,255}$"  # IDEMPOTENCY_KEY_MAX
# A consistency token: opaque, of URL-safe characters (ctoken.h).
TOKEN_PATTERN = "^[A-Za-z0-9._~-]+$"
TOKENS_MAX = 16           # consistent_with parameters of one read (MAX_TOKENS)
WAIT_MS_MAX = 30000       # WAIT_MS_MAX of invoices.c
WAIT_MS_DEFAULT = 5000
CORS_ALLOW_HEADERS = ("Content-Type, X-Request-Id, Idempotency-Key, Authorization, "
                      "traceparent")
CORS_EXPOSE_HEADERS = ("Location, X-Request-Id, X-Consistency-Token, Idempotent-Replayed, "
                       "Retry-After")
# Output times: UTC with milliseconds.
TIME_OUT_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"
# Input times: RFC 3339 (any fraction, T/t, Z/z or an offset).
TIME_IN_PATTERN = ("^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
                   "(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")
# A required string: at least one character that is not white space, and
# never U+0000 (docs/api.md 2.5).
REQUIRED_TEXT_PATTERN = "^[^\\u0000]*[^\\s\\u0000\\u200B\\uFEFF][^\\u0000]*$"
OPTIONAL_TEXT_PATTERN = "^[^\\u0000]*$"
EMAIL_PATTERN = ("^[^@\\s\\u0000-\\u001F\\u007F]+@[^@\\s\\u0000-\\u001F\\u007F]+$")

SERVICES = {
    "user-service": {"prefix": "/system-api", "port": 8081,
                     "summary": "users and their accounts (write side)"},
    "order-service": {"prefix": "/order-service", "port": 8082,
                      "summary": "orders (write side)"},
    "invoice-service": {"prefix": "/invoice-service", "port": 8083,
                        "summary": "monthly invoices built from events (read side)",
                        "ready_checks": ["consumer"]},
}


def ref(kind, name):
    return {"$ref": f"#/components/{kind}/{name}"}


# ------------------------------------------------------------------ errors

# status -> (component name, description, every code that status can carry
# on some route). A route lists the codes it can answer; the component of
# each (status, codes) pair is made by error_response().
ERROR_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    401: "Unauthorized",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal error",
    503: "Unavailable",
}

ERROR_WHEN = {
    "malformed_json": "the body is empty, not JSON, not UTF-8, nested deeper than 64 levels, "
                      "or has a duplicate key",
    "invalid_query": "a query parameter that is unknown, empty, repeated or has a bad value; "
                     "any query parameter on a route that takes none",
    "invalid_query_token": "a query parameter that is unknown, empty, repeated or has a bad "
                           "value; a `consistent_with` token the services did not issue (it "
                           "does not parse, or its signature does not match); `wait_ms` "
                           "without `consistent_with`; more than 16 tokens",
    "invalid_header": "an `Idempotency-Key` that is not 1 to 255 printable ASCII "
                      "characters, or that is sent twice; nothing is created",
    "idempotency_key_in_use": "the request with this `Idempotency-Key` is still being "
                              "handled (by another replica); `Retry-After` says when to "
                              "retry",
    "idempotency_key_mismatch": "this `Idempotency-Key` was used before for another "
                                "request (another path or other body bytes)",
    "unauthorized": "an admin route without `Authorization: Bearer <token>`, or with "
                    "another token than the service's (`WWW-Authenticate` says which)",
    "not_found_admin": "an unknown path or id, an id that is not a positive integer; every "
                       "admin route when the service has no admin token",
    "not_found_dead_letter": "no dead letter with this id (or the id is not a positive "
                             "integer); every admin route when the service has no admin "
                             "token",
    "not_found_rebuild": "no rebuild with this id (or the id is not a positive integer); "
                         "every admin route when the service has no admin token",
    "conflict_rebuild": "a rebuild is running (here or on another replica of the service); "
                        "wait for it to end",
    "malformed_json_optional": "a body was sent and is not JSON (an empty body is fine: "
                               "the route takes no input)",
    "unavailable_redrive": "the database cannot be used right now, or the broker did not "
                           "confirm the re-drive; nothing was removed",
    "not_consistent_yet": "`wait_ms` passed before the invoice service had applied every "
                          "event of the `consistent_with` tokens; `Retry-After` says when "
                          "to retry",
    "not_found": "an unknown path, an unknown id, or an id that is not a positive integer",
    "method_not_allowed": "a known path with another method (the Allow header lists "
                          "the methods the path accepts)",
    "conflict": "a uniqueness rule is broken (an email already in use)",
    "payload_too_large": "the body is over the limit (1 MiB by default)",
    "unsupported_media_type": "a body that is not declared as application/json",
    "invalid_body": "JSON that is neither an object nor an array of 1 to 1000 objects",
    "missing_field": "a required field is absent or null",
    "invalid_field": "a field of the wrong JSON type, or whose value breaks its rule",
    "unknown_field": "a field the object may not have",
    "unknown_user": "an account names a user_id this service does not have",
    "internal": "an unexpected internal failure (none is expected)",
    "unavailable": "the service's database cannot be used right now; nothing was written",
}


class Doc:
    """One service's document being built."""

    def __init__(self, name):
        self.name = name
        self.spec = SERVICES[name]
        self.components = {"schemas": {}, "responses": {}, "parameters": {},
                           "headers": {}, "requestBodies": {}}
        self.paths = {}

    def error_response(self, status, codes, extra_headers=(), when_key=None):
        """A reference to the error answer of status with these codes.
        extra_headers: names of HEADERS components, or (name, component)
        pairs when a header has another component than its name (an
        optional variant); when_key: {code: key of ERROR_WHEN} where a
        code's explanation is not ERROR_WHEN[code]."""
        when_key = when_key or {}
        key = f"Error{status}_" + "_".join(codes)
        if any(when_key.get(c, c) != c for c in codes):
            key += "_" + "_".join(when_key.get(c, c) for c in codes if when_key.get(c, c) != c)
        if key not in self.components["responses"]:
            lines = "\n".join(f"- `{c}`: {ERROR_WHEN[when_key.get(c, c)]}" for c in codes)
            schema = {"allOf": [ref("schemas", "Error"), {
                "properties": {"error": {"properties": {
                    "status": {"const": status},
                    "code": {"enum": list(codes)}}}}}]}
            headers = common_headers()
            for h in extra_headers:
                name, component = h if isinstance(h, tuple) else (h, h)
                headers[name] = ref("headers", component)
            self.components["responses"][key] = {
                "description": f"{ERROR_TITLES[status]}:\n{lines}",
                "headers": headers,
                "content": {"application/json": {"schema": schema}},
            }
        return ref("responses", key)


def common_headers():
    return {"X-Request-Id": ref("headers", "X-Request-Id"),
            "Access-Control-Allow-Origin": ref("headers", "Access-Control-Allow-Origin"),
            "Access-Control-Expose-Headers": ref("headers", "Access-Control-Expose-Headers")}


HEADERS = {
    "X-Request-Id": {
        "description": "The request's id: the client's X-Request-Id when it is 1 to 128 "
                       "printable ASCII characters, else one the service made (32 hex "
                       "digits). Log lines and events of the request carry it.",
        "required": True,
        "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN}},
    "Access-Control-Allow-Origin": {
        "description": "CORS: every origin may read every answer.",
        "required": True, "schema": {"const": "*"}},
    "Access-Control-Expose-Headers": {
        "description": "CORS: the headers a browser script may read.",
        "required": True, "schema": {"const": CORS_EXPOSE_HEADERS}},
    "Location": {
        "description": "The created object's path, on a create of one object (not on a batch).",
        "required": False,
        "schema": {"type": "string", "pattern": "^/[a-z-]+/[a-z]+/[1-9][0-9]*$"}},
    "Allow": {
        "description": "The methods the path accepts (HEAD with GET, and OPTIONS).",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Z]+(, [A-Z]+)*$"}},
    "Access-Control-Allow-Methods": {
        "description": "CORS preflight: the methods the path accepts, as in Allow.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Z]+(, [A-Z]+)*$"}},
    "Access-Control-Allow-Headers": {
        "description": "CORS preflight: the request headers a browser may send.",
        "required": True, "schema": {"const": CORS_ALLOW_HEADERS}},
    "X-Consistency-Token": {
        "description": "An opaque token standing for every event this create produced "
                       "(a replay carries the first answer's). Pass it to the invoice "
                       "service's reads as `consistent_with` to read this write.",
        "required": True,
        "schema": {"type": "string", "pattern": TOKEN_PATTERN}},
    "Idempotent-Replayed": {
        "description": "Present when this answer is the stored answer of an earlier request "
                       "with the same `Idempotency-Key` and the same method, path and body; "
                       "nothing was created this time.",
        "required": False, "schema": {"const": "true"}},
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "Retry-After-With-Code": {
        "description": "Seconds to wait before retrying: present with the codes whose "
                       "explanation above names `Retry-After`, absent with the others.",
        "required": False, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "WWW-Authenticate": {
        "description": "RFC 6750: `Bearer` when no credentials came, with "
                       "`error=\"invalid_token\"` when a wrong or malformed one did.",
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer( error=\"invalid_token\")?$"}},
    "Access-Control-Max-Age": {
        "description": "CORS preflight: seconds a browser may keep this preflight.",
        "required": True, "schema": {"const": "86400"}},
}

PARAMETERS = {
    "X-Request-Id": {
        "name": "X-Request-Id", "in": "header", "required": False,
        "description": "An id for the request, echoed in the answer; a value that is not "
                       "1 to 128 printable ASCII characters is replaced by a generated one.",
        "schema": {"type": "string"}},
    "Idempotency-Key": {
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "Makes the create safe to retry (the IETF draft "
                       "draft-ietf-httpapi-idempotency-key-header): the first request with "
                       "a key that answers 201 stores its answer with the rows it created; "
                       "the same key with the same method, path and body bytes then gets "
                       "that answer again, byte for byte, with `Idempotent-Replayed: true`, "
                       "and creates nothing. Keys are kept at least `--idempotency-ttl` "
                       "seconds (24 hours by default); an answer other than 201 is not kept.",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}},
    "traceparent": {
        "name": "traceparent", "in": "header", "required": False,
        "description": "W3C Trace Context (lower-case hex): the trace the events of this "
                       "request join; absent or invalid, the service starts a new one. It "
                       "never makes a request fail.",
        "schema": {"type": "string"}},
    "consistent_with": {
        "name": "consistent_with", "in": "query", "required": False,
        "style": "form", "explode": True,
        "description": "A writer's `X-Consistency-Token`, repeated once per token (at most "
                       f"{TOKENS_MAX}): the read waits until the invoice service has applied "
                       "every event the tokens stand for, then answers as usual.",
        "schema": {"type": "array", "minItems": 1, "maxItems": TOKENS_MAX,
                   "items": {"type": "string", "pattern": TOKEN_PATTERN}}},
    "wait_ms": {
        "name": "wait_ms", "in": "query", "required": False,
        "description": "Only with `consistent_with`: how long the read may wait, in "
                       "milliseconds, before it answers 503 `not_consistent_yet`. A waiting "
                       "read holds no HTTP worker and no database lock.",
        "schema": {"type": "integer", "minimum": 0, "maximum": WAIT_MS_MAX,
                   "default": WAIT_MS_DEFAULT}},
    "id": {
        "name": "id", "in": "path", "required": True,
        "description": "A positive integer of 64 bits in plain decimal digits; anything else "
                       "(0, -1, 007, 1.0, abc) is 404 like an id that does not exist.",
        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,18}$"}},
    "limit": {
        "name": "limit", "in": "query", "required": False,
        "description": "How many items at most.",
        "schema": {"type": "integer", "minimum": 1, "maximum": LIST_MAX_LIMIT,
                   "default": LIST_DEFAULT_LIMIT}},
    "offset": {
        "name": "offset", "in": "query", "required": False,
        "description": "How many items to skip.",
        "schema": {"type": "integer", "minimum": 0, "default": 0}},
    "user_id": {
        "name": "user_id", "in": "query", "required": False,
        "description": "Only the items of this user.",
        "schema": {"type": "integer", "minimum": 1}},
}

# ----------------------------------------------------------------- schemas

ID = {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}
TIME_OUT = {"type": "string", "format": "date-time", "pattern": TIME_OUT_PATTERN}
TIME_IN = {"type": "string", "format": "date-time", "pattern": TIME_IN_PATTERN,
           "description": "RFC 3339; the instant, in UTC, must lie in years 1970 to 9999; "
                          "a fraction of a second is truncated to milliseconds."}
MONEY = {"type": "number", "exclusiveMinimum": 0, "maximum": MONEY_MAX, "multipleOf": 0.01,
         "description": "Greater than 0, at most 1000000000, with at most two decimal "
                        "places; answered with exactly two decimals."}


def text(min_chars, max_chars, nullable=False):
    s = {"type": ["string", "null"] if nullable else "string", "maxLength": max_chars}
    if min_chars:
        s["minLength"] = min_chars
        s["pattern"] = REQUIRED_TEXT_PATTERN
    else:
        s["pattern"] = OPTIONAL_TEXT_PATTERN
    return s


def email(nullable=False):
    return {"type": ["string", "null"] if nullable else "string", "maxLength": 254,
            "pattern": EMAIL_PATTERN,
            "description": "Exactly one @ with text before and after it, no white space or "
                           "control characters; unique regardless of (ASCII) case."}


def obj(props, required=None):
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required,
            "additionalProperties": False}


ERROR_SCHEMA = obj({"error": obj({
    "status": {"type": "integer", "minimum": 400, "maximum": 599,
               "description": "The HTTP status, repeated."},
    "code": {"type": "string", "description": "A stable machine-readable word."},
    "message": {"type": "string", "description": "For humans; may change."},
    "field": {"type": "string", "pattern": "^[\\x20-\\x7E]{1,63}$",
              "description": "Present only when exactly one field is at fault: "
                             "the field of the object itself."},
    "index": {"type": "integer", "minimum": 0, "maximum": BATCH_MAX - 1,
              "description": "Present only when the body was an array: the failing "
                             "item's position, from 0."},
}, required=["status", "code", "message"])})

USER_SCHEMAS = {
    "NewUser": obj({"name": text(1, 200), "email": email()}),
    "User": obj({"id": ID, "name": text(1, 200), "email": email(), "created_at": TIME_OUT}),
    "NewAccount": obj({
        "user_id": dict(ID, description="A user of this service; an unknown one is 422 "
                                        "unknown_user."),
        "address1": text(1, 200), "address2": text(0, 200, nullable=True),
        "city": text(1, 200), "state": text(1, 200), "zip": text(1, 200),
        "status": {"type": ["string", "null"], "enum": ["open", "closed", None],
                   "default": "open"},
    }, required=["user_id", "address1", "city", "state", "zip"]),
    "Account": obj({"id": ID, "user_id": ID, "address1": text(1, 200),
                    "address2": text(0, 200, nullable=True), "city": text(1, 200),
                    "state": text(1, 200), "zip": text(1, 200),
                    "status": {"enum": ["open", "closed"]}, "created_at": TIME_OUT}),
}

ORDER_SCHEMAS = {
    "NewOrder": obj({
        "user_id": dict(ID, description="Not checked against the user service."),
        "amount": MONEY,
        "description": text(0, 1000, nullable=True),
        "created_at": dict(TIME_IN, type=["string", "null"],
                           description=TIME_IN["description"] + " Now when absent."),
    }, required=["user_id", "amount"]),
    "Order": obj({"id": ID, "user_id": ID, "amount": MONEY,
                  "description": text(0, 1000, nullable=True), "created_at": TIME_OUT}),
}

INVOICE_SCHEMAS = {
    "Invoice": obj({
        "id": ID, "user_id": ID,
        "year": {"type": "integer", "minimum": 1970, "maximum": 9999},
        "month": {"type": "integer", "minimum": 1, "maximum": 12},
        "invoice_dt": {"type": "string", "format": "date",
                       "pattern": "^[0-9]{4}-[0-9]{2}-01$",
                       "description": "The first day of the month."},
        "name": dict(text(1, 200, nullable=True),
                     description="From the user's latest user.created; null until it arrives."),
        "email": dict(email(nullable=True),
                      description="From the user's latest user.created; null until it "
                                  "arrives."),
        "shipping_address": {"oneOf": [{"type": "null"}, ref("schemas", "ShippingAddress")],
                             "description": "From the user's account with the highest id "
                                            "seen; null until one arrives."},
        "orders": {"type": "array", "minItems": 1, "items": ref("schemas", "InvoiceLine"),
                   "description": "Sorted by purchase_dt, then order_id."},
        "order_count": {"type": "integer", "minimum": 1},
        "total": dict(MONEY, maximum=None, description="The exact sum of the lines."),
        "updated_at": dict(TIME_OUT, description="When the last line was added."),
    }),
    "ShippingAddress": obj({"address1": text(1, 200), "address2": text(0, 200, nullable=True),
                            "city": text(1, 200), "state": text(1, 200),
                            "zip": text(1, 200)}),
    "InvoiceLine": obj({"order_id": ID, "description": text(0, 1000, nullable=True),
                        "amount": MONEY, "purchase_dt": TIME_OUT}),
}
del INVOICE_SCHEMAS["Invoice"]["properties"]["total"]["maximum"]

PROBE_SCHEMAS = {
    "Health": obj({"status": {"const": "ok"}}),
}


# -------------------------------------------------------------- operations

def json_content(schema):
    return {"application/json": {"schema": schema}}


def ok(description, schema, extra_headers=()):
    headers = common_headers()
    for h in extra_headers:
        headers[h] = ref("headers", h)
    return {"description": description, "headers": headers, "content": json_content(schema)}


def params(*names):
    return [ref("parameters", n) for n in names]


def sort_param(columns, default_text):
    allowed = columns + ["-" + c for c in columns]
    return {"name": "order_by", "in": "query", "required": False,
            "description": f"Sort column, `-` prefix for descending; ties break by id "
                           f"ascending. Default: {default_text}.",
            "schema": {"type": "string", "enum": allowed}}


def operation(doc, op_id, summary, parameters, responses, error_codes, body=None, tags=()):
    """error_codes: {status: [codes]} this operation can answer, or
    {status: ([codes], [headers])} when that error carries headers of its
    own (a Retry-After, say; see Doc.error_response), or
    {status: ([codes], [headers], {code: ERROR_WHEN key})}."""
    resp = dict(responses)
    for status in sorted(error_codes):
        codes, headers, when_key = error_codes[status], (), None
        if isinstance(codes, tuple):
            codes, headers, *rest = codes
            when_key = rest[0] if rest else None
        resp[str(status)] = doc.error_response(status, codes, headers, when_key)
    op = {"operationId": op_id, "summary": summary, "parameters": parameters,
          "responses": resp}
    if tags:
        op["tags"] = list(tags)
    if body is not None:
        op["requestBody"] = body
    return op


def head_of(get_op):
    """HEAD answers what GET answers, without the body."""
    responses = {}
    for status, r in get_op["responses"].items():
        if "$ref" in r:
            responses[status] = r
        else:
            responses[status] = {k: v for k, v in r.items() if k != "content"}
    return {"operationId": get_op["operationId"] + "Head",
            "summary": get_op["summary"] + " (headers only)",
            "parameters": get_op["parameters"], "responses": responses,
            **({"tags": get_op["tags"]} if "tags" in get_op else {})}


def preflight(doc, op_id, has_id):
    responses = {"204": {
        "description": "CORS preflight: the path's methods.",
        "headers": dict(common_headers(), **{h: ref("headers", h) for h in (
            "Allow", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
            "Access-Control-Max-Age")})}}
    errors = {413: ["payload_too_large"]}
    if has_id:
        errors[404] = ["not_found"]
    return operation(doc, op_id + "Preflight", "CORS preflight",
                     params("X-Request-Id") + (params("id") if has_id else []),
                     responses, errors)


def path_item(doc, path, ops, has_id=False):
    item = dict(ops)
    if "get" in item:
        item["head"] = head_of(item["get"])
    base = next(iter(ops.values()))["operationId"]
    item["options"] = preflight(doc, base, has_id)
    doc.paths[path] = item


# Errors every operation with a handler can answer besides its own.
SERVER_ERRORS = {413: ["payload_too_large"], 500: ["internal"], 503: ["unavailable"]}


def create_op(doc, op_id, summary, new_schema, schema, tag, extra_422=(), conflict=False):
    body = {"required": True, "description": f"One object, or an array of 1 to {BATCH_MAX}; "
            "every item is checked before anything is written, and a batch is atomic.",
            "content": json_content({"oneOf": [
                ref("schemas", new_schema),
                {"type": "array", "minItems": 1, "maxItems": BATCH_MAX,
                 "items": ref("schemas", new_schema)}]})}
    errors = dict(SERVER_ERRORS)
    errors[400] = ["malformed_json", "invalid_query", "invalid_header"]
    errors[415] = ["unsupported_media_type"]
    errors[422] = ["invalid_body", "missing_field", "invalid_field", "unknown_field"] + \
        list(extra_422) + ["idempotency_key_mismatch"]
    # The Retry-After of idempotency_key_in_use is required only when no
    # other code shares the status.
    if conflict:
        errors[409] = (["conflict", "idempotency_key_in_use"],
                       [("Retry-After", "Retry-After-With-Code")])
    else:
        errors[409] = (["idempotency_key_in_use"], ["Retry-After"])
    created = ok("Created: the object (with Location), or the array of objects of a batch "
                 "in the order sent. With an `Idempotency-Key` already used for the same "
                 "request, the first request's answer again, with `Idempotent-Replayed`.",
                 {"oneOf": [ref("schemas", schema),
                            {"type": "array", "minItems": 1, "maxItems": BATCH_MAX,
                             "items": ref("schemas", schema)}]},
                 extra_headers=["Location", "X-Consistency-Token", "Idempotent-Replayed"])
    return operation(doc, op_id, summary,
                     params("X-Request-Id", "Idempotency-Key", "traceparent"),
                     {"201": created}, errors, body=body, tags=[tag])


def consistent_errors(errors):
    """The errors of a read that takes consistency tokens (the invoice
    service's): its query may hold bad tokens, and it may time out."""
    errors[400] = (["invalid_query"], [], {"invalid_query": "invalid_query_token"})
    errors[503] = (["unavailable", "not_consistent_yet"],
                   [("Retry-After", "Retry-After-With-Code")])
    return errors


def list_op(doc, op_id, summary, schema, query, tag, consistent=False):
    errors = dict(SERVER_ERRORS)
    errors[400] = ["invalid_query"]
    if consistent:
        consistent_errors(errors)
        query = query + params("consistent_with", "wait_ms")
    page = ok("A page of items (possibly empty).",
              {"type": "array", "maxItems": LIST_MAX_LIMIT, "items": ref("schemas", schema)})
    return operation(doc, op_id, summary, params("X-Request-Id", "limit", "offset") + query,
                     {"200": page}, errors, tags=[tag])


def get_op(doc, op_id, summary, schema, tag, consistent=False):
    errors = dict(SERVER_ERRORS)
    errors[400] = ["invalid_query"]
    errors[404] = ["not_found"]
    query = []
    if consistent:
        consistent_errors(errors)
        query = params("consistent_with", "wait_ms")
    return operation(doc, op_id, summary, params("X-Request-Id", "id") + query,
                     {"200": ok("The object.", ref("schemas", schema))}, errors, tags=[tag])


def add_collection(doc, name, singular, schema, new_schema, query, create_kw=None,
                   consistent=False):
    """consistent: the reads take consistency tokens (consistent_with,
    wait_ms)."""
    base = f"{doc.spec['prefix']}/{name}"
    cap = name[0].upper() + name[1:]
    ops = {}
    if new_schema:
        ops["post"] = create_op(doc, f"create{cap}", f"Create {name}", new_schema, schema,
                                name, **(create_kw or {}))
    ops["get"] = list_op(doc, f"list{cap}", f"List {name}", schema, query, name, consistent)
    path_item(doc, base, ops)
    path_item(doc, base + "/{id}",
              {"get": get_op(doc, f"get{singular}", f"One {singular.lower()}", schema, name,
                             consistent)},
              has_id=True)


def add_self(doc):
    errors = {400: ["invalid_query"], 413: ["payload_too_large"]}
    op = operation(doc, "getOpenapi", "This document", params("X-Request-Id"),
                   {"200": ok("This OpenAPI document, byte for byte as in the repository.",
                              {"type": "object"})}, errors, tags=["meta"])
    path_item(doc, f"{doc.spec['prefix']}/openapi.json", {"get": op})


def ready_schema(extra_checks=()):
    """The /readyz body; extra_checks: names of the service's own checks
    (besides database and broker), each "ok" or why it fails."""
    checks = {"database": {"enum": ["ok", "down"]}, "broker": {"enum": ["ok", "down"]}}
    for name in extra_checks:
        checks[name] = {"type": "string", "minLength": 1,
                        "description": "`ok`, or why this check fails (503)."}
    return obj({
        "error": ref("schemas", "ErrorDetail"),
        "status": {"enum": ["ok", "unavailable"]},
        "checks": obj(checks),
    }, required=["status", "checks"])


def add_probes(doc):
    too_large = {413: ["payload_too_large"]}
    note = " At the root, without the service's prefix; query parameters are ignored."
    health = operation(doc, "getHealthz", "Liveness", params("X-Request-Id"),
                       {"200": ok("The process runs." + note, ref("schemas", "Health"))},
                       too_large, tags=["probes"])
    ready_schema = ref("schemas", "Ready")
    checks = ", and its consumer" if doc.spec.get("ready_checks") else ""
    ready = operation(doc, "getReadyz", "Readiness", params("X-Request-Id"),
                      {"200": ok(f"Database and broker{checks} are usable." + note,
                                 ready_schema),
                       "503": ok(f"The database or the broker{checks} is not usable; the body "
                                 "says which, with the error object.", ready_schema)},
                      too_large, tags=["probes"])
    metrics = operation(doc, "getMetrics", "Prometheus metrics", params("X-Request-Id"), {
        "200": {"description": "Prometheus text format, version 0.0.4." + note,
                "headers": common_headers(),
                "content": {"text/plain": {"schema": {"type": "string"}}}}},
        too_large, tags=["probes"])
    path_item(doc, "/healthz", {"get": health})
    path_item(doc, "/readyz", {"get": ready})
    path_item(doc, "/metrics", {"get": metrics})


def user_service(doc):
    doc.components["schemas"].update(USER_SCHEMAS)
    add_collection(doc, "users", "User", "User", "NewUser", [
        sort_param(["id", "name", "email", "created_at"], "id"),
        {"name": "email", "in": "query", "required": False,
         "description": "Equal, ignoring (ASCII) case.", "schema": {"type": "string",
                                                                    "minLength": 1}},
        {"name": "name", "in": "query", "required": False,
         "description": "Contains the text, ignoring (ASCII) case; % and _ are plain "
                        "characters.", "schema": {"type": "string", "minLength": 1}},
    ], create_kw={"conflict": True})
    add_collection(doc, "accounts", "Account", "Account", "NewAccount", [
        sort_param(["id", "user_id", "city", "state", "zip", "status", "created_at"], "id"),
        ref("parameters", "user_id"),
        {"name": "status", "in": "query", "required": False,
         "schema": {"enum": ["open", "closed"]}},
    ], create_kw={"extra_422": ["unknown_user"]})
    add_event_log(doc)


def order_service(doc):
    doc.components["schemas"].update(ORDER_SCHEMAS)
    add_collection(doc, "orders", "Order", "Order", "NewOrder", [
        sort_param(["id", "user_id", "amount", "created_at"], "id"),
        ref("parameters", "user_id"),
    ])
    add_event_log(doc)


def invoice_service(doc):
    doc.components["schemas"].update(INVOICE_SCHEMAS)
    add_collection(doc, "invoices", "Invoice", "Invoice", None, [
        sort_param(["id", "user_id", "year", "month", "total", "updated_at"],
                   "year, month, user_id"),
        ref("parameters", "user_id"),
        {"name": "month", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 12}},
        {"name": "year", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1970, "maximum": 9999}},
    ], consistent=True)
    add_dead_letters(doc)
    add_rebuilds(doc)
    add_dashboard(doc)


UI_FILES = [("", "text/html", "getUiIndex", "The dashboard's page"),
            ("index.html", "text/html", "getUiIndexHtml", "The dashboard's page"),
            ("app.js", "text/javascript", "getUiScript", "The dashboard's script"),
            ("style.css", "text/css", "getUiStyle", "The dashboard's style sheet")]


def add_dashboard(doc):
    """The live event stream and the dashboard's static files."""
    base = doc.spec["prefix"]
    stream = operation(doc, "getStream", "Live feed of the events the consumer applies",
                       params("X-Request-Id"), {
                           "200": {"description": "Server-Sent Events, held open: one event per "
                                   "applied user, account or order event (`id:` and one "
                                   "`data:` line of JSON), and `: keep-alive` comments.",
                                   "headers": common_headers(),
                                   "content": {"text/event-stream": {
                                       "schema": {"type": "string"}}}}},
                       {413: ["payload_too_large"], 500: ["internal"],
                        503: (["unavailable"], ["Retry-After"])}, tags=["dashboard"])
    path_item(doc, f"{base}/stream", {"get": stream})
    redirect = operation(doc, "getUi", "The dashboard, without its final slash",
                         params("X-Request-Id"), {
                             "308": {"description": "Permanent redirect to `ui/`.",
                                     "headers": dict(common_headers(), Location={
                                         "required": True,
                                         "description": "The dashboard's page.",
                                         "schema": {"const": f"{base}/ui/"}})}},
                         {413: ["payload_too_large"]}, tags=["dashboard"])
    path_item(doc, f"{base}/ui", {"get": redirect})
    for name, media, op_id, summary in UI_FILES:
        op = operation(doc, op_id, summary, params("X-Request-Id"), {
            "200": {"description": "The file, as installed (`--ui-dir`).",
                    "headers": common_headers(),
                    "content": {media: {"schema": {"type": "string"}}}}},
            {404: ["not_found"], 413: ["payload_too_large"], 500: ["internal"]},
            tags=["dashboard"])
        path_item(doc, f"{base}/ui/{name}", {"get": op})


DEAD_LETTER_SCHEMAS = {
    "DeadLetter": obj({
        "id": ID,
        "queue": {"enum": ["user", "account", "order"],
                  "description": "The queue it came from, where a re-drive sends it."},
        "reason": {"type": "string", "description": "Why it could not be applied."},
        "dead_lettered_at": TIME_OUT,
        "body": {"type": "string", "description": "The message as received; bytes that are "
                                                  "not UTF-8 show as U+FFFD (a re-drive "
                                                  "sends the original bytes)."},
    }),
    "Redriven": obj({"redriven": {"type": "integer", "minimum": 0,
                                  "description": "How many messages were sent back."}}),
}

ADMIN_NOTE = ("An admin route: it needs `Authorization: Bearer <token>` with the service's "
              "admin token (`--admin-token`); without a configured token it answers 404 like "
              "an unknown path. A CORS preflight needs no token.")


def admin(op):
    """Marks an operation (and its HEAD) as an admin route."""
    op["security"] = [{"adminToken": []}]
    op["description"] = ADMIN_NOTE
    return op


def admin_scheme(doc):
    doc.components.setdefault("securitySchemes", {})["adminToken"] = {
        "type": "http", "scheme": "bearer",
        "description": "The service's admin token (`--admin-token` / `ADMIN_TOKEN`, or the "
                       "first line of `--admin-token-file`), compared in constant time."}


EVENT_LOG_SCHEMAS = {
    "LoggedEvent": obj({
        "position": dict(ID, description="Increases in commit order and never changes; "
                                          "there may be gaps."),
        "event": {"type": "object",
                  "description": "The envelope exactly as the relay publishes it (docs/api.md "
                                 "7.2)."},
    }),
}


def add_event_log(doc):
    """GET <prefix>/events of a writer: its outbox as a paged log."""
    doc.components["schemas"].update(EVENT_LOG_SCHEMAS)
    admin_scheme(doc)
    errors = {**SERVER_ERRORS, 400: ["invalid_query"],
              401: (["unauthorized"], ["WWW-Authenticate"]),
              404: (["not_found"], [], {"not_found": "not_found_admin"})}
    after = {"name": "after", "in": "query", "required": False,
             "description": "A position: the answer starts after it (it need not be one of "
                            "the log's).",
             "schema": {"type": "integer", "minimum": 0, "maximum": 9223372036854775807,
                        "default": 0}}
    op = admin(operation(
        doc, "listEvents", "The event log: every committed event, in commit order",
        params("X-Request-Id", "limit") + [after],
        {"200": ok("A page of the log in position order; shorter than `limit` (possibly "
                   "empty) at its end for now. Pass the last position as `after` to read on.",
                   {"type": "array", "maxItems": LIST_MAX_LIMIT,
                    "items": ref("schemas", "LoggedEvent")})}, errors, tags=["events"]))
    path_item(doc, f"{doc.spec['prefix']}/events", {"get": op})
    admin(doc.paths[f"{doc.spec['prefix']}/events"]["head"])


def add_dead_letters(doc):
    doc.components["schemas"].update(DEAD_LETTER_SCHEMAS)
    admin_scheme(doc)
    base = f"{doc.spec['prefix']}/dead-letters"
    unauthorized = (["unauthorized"], ["WWW-Authenticate"])
    not_found = (["not_found"], [], {"not_found": "not_found_admin"})
    tag = ["dead-letters"]

    errors = {**SERVER_ERRORS, 400: ["invalid_query"], 401: unauthorized, 404: not_found}
    listing = admin(operation(
        doc, "listDeadLetters", "List the dead letters (removes nothing)",
        params("X-Request-Id", "limit", "offset") + [sort_param(["id"], "id")],
        {"200": ok("A page of dead letters (possibly empty).",
                   {"type": "array", "maxItems": LIST_MAX_LIMIT,
                    "items": ref("schemas", "DeadLetter")})}, errors, tags=tag))
    path_item(doc, base, {"get": listing})
    one = admin(operation(
        doc, "getDeadLetter", "One dead letter", params("X-Request-Id", "id"),
        {"200": ok("The dead letter.", ref("schemas", "DeadLetter"))},
        {**errors, 404: (["not_found"], [], {"not_found": "not_found_dead_letter"})},
        tags=tag))
    path_item(doc, base + "/{id}", {"get": one}, has_id=True)
    for item in (doc.paths[base], doc.paths[base + "/{id}"]):
        admin(item["head"])

    body = {"required": False,
            "description": "None: the route takes no input. A body that is sent must be JSON "
                           "(`Content-Type: application/json`); its content is ignored.",
            "content": json_content({})}
    redrive_errors = {
        **SERVER_ERRORS,
        400: (["malformed_json", "invalid_query"], [],
              {"malformed_json": "malformed_json_optional"}),
        401: unauthorized, 404: not_found, 415: ["unsupported_media_type"],
        503: (["unavailable"], [], {"unavailable": "unavailable_redrive"})}
    sent = {"202": ok("Sent back to its original queue (confirmed by the broker) and removed "
                      "from the list.", ref("schemas", "Redriven"))}
    path_item(doc, base + "/{id}/redrive", {"post": admin(operation(
        doc, "redriveDeadLetter", "Re-drive one dead letter", params("X-Request-Id", "id"),
        sent, {**redrive_errors,
               404: (["not_found"], [], {"not_found": "not_found_dead_letter"})},
        body=body, tags=tag))}, has_id=True)
    path_item(doc, base + "/redrive", {"post": admin(operation(
        doc, "redriveDeadLetters", "Re-drive every dead letter listed now",
        params("X-Request-Id"), {"202": ok(
            "Every dead letter listed when the request began was sent back to its queue "
            "and removed, in confirmed chunks; those dead-lettered meanwhile wait for the "
            "next re-drive.", ref("schemas", "Redriven"))},
        redrive_errors, body=body, tags=tag))})


REBUILD_SCHEMAS = {
    "Rebuild": obj({
        "id": ID,
        "status": {"enum": ["running", "done", "failed"],
                   "description": "`running` until the new model is swapped in (`done`) or "
                                  "the rebuild gave up (`failed`, the live model untouched)."},
        "events_applied": {"type": "integer", "minimum": 0,
                           "maximum": 9223372036854775807,
                           "description": "Events applied to the new model so far (from the "
                                          "writers' logs and from the live queues)."},
        "started_at": TIME_OUT,
        "finished_at": {"oneOf": [TIME_OUT, {"type": "null"}],
                        "description": "When it became `done` or `failed`; null while "
                                       "running."},
        "error": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "null"}],
                  "description": "Why it failed; null unless `failed`."},
    }),
}


def add_rebuilds(doc):
    """POST <prefix>/rebuilds and GET <prefix>/rebuilds/{id} (docs/rebuild.md)."""
    doc.components["schemas"].update(REBUILD_SCHEMAS)
    admin_scheme(doc)
    base = f"{doc.spec['prefix']}/rebuilds"
    unauthorized = (["unauthorized"], ["WWW-Authenticate"])
    not_found = (["not_found"], [], {"not_found": "not_found_rebuild"})
    tag = ["rebuilds"]
    body = {"required": False,
            "description": "None: the route takes no input. A body that is sent must be JSON "
                           "(`Content-Type: application/json`); its content is ignored.",
            "content": json_content({})}
    started = {"202": ok("The rebuild has begun: it fills a fresh model from the writers' "
                         "event logs, catches up with the live queues and swaps it in; "
                         "queries answer from the old model until then. `Location` is where "
                         "to follow it. The logs are read at `--user-service-url` and "
                         "`--order-service-url` with the bearer token `--source-token` "
                         "(default: this service's admin token).", ref("schemas", "Rebuild"), extra_headers=["Location"])}
    path_item(doc, base, {"post": admin(operation(
        doc, "startRebuild", "Rebuild the invoices from the writers' event logs",
        params("X-Request-Id"), started,
        {**SERVER_ERRORS,
         400: (["malformed_json", "invalid_query"], [],
               {"malformed_json": "malformed_json_optional"}),
         401: unauthorized, 404: (["not_found"], [], {"not_found": "not_found_admin"}),
         409: (["conflict"], [], {"conflict": "conflict_rebuild"}),
         415: ["unsupported_media_type"]},
        body=body, tags=tag))})
    one = admin(operation(
        doc, "getRebuild", "A rebuild and its progress", params("X-Request-Id", "id"),
        {"200": ok("The rebuild.", ref("schemas", "Rebuild"))},
        {**SERVER_ERRORS, 400: ["invalid_query"], 401: unauthorized, 404: not_found},
        tags=tag))
    path_item(doc, base + "/{id}", {"get": one}, has_id=True)
    admin(doc.paths[base + "/{id}"]["head"])


DESCRIPTION = """\
The {name}: {summary}. Part of a CQRS system of three services; the
contract is docs/api.md of the repository.

Rules every route follows:

- Answers are JSON (`application/json; charset=utf-8`), except `/metrics`
  and the empty answers (204, HEAD). An answered object has exactly the
  fields documented for it; an absent optional value is `null`.
- Every error has the shape of the `Error` schema, with the codes listed
  for each route and status.
- Every answer carries `X-Request-Id` and the CORS headers
  `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers`.
- A path that no route matches is 404 `not_found` (`NotFound`); a known
  path with a method it does not list is 405 `method_not_allowed` with
  `Allow` (`MethodNotAllowed`). Every GET also answers HEAD, and every
  known path answers OPTIONS (CORS preflight).
- Every `POST` takes an `Idempotency-Key` (safe retries), and every 201
  carries an `X-Consistency-Token`, which the invoice service's reads take
  as `consistent_with` to wait until they show that write (docs/api.md,
  8.1 and 8.2).
- Two answers come from the HTTP library before the service's code runs,
  so they are short HTML pages without these headers: 431 (or 414) for a
  request head over 32 KiB, and 400 for a `Content-Length` that is not a
  number. They are not listed per route.
"""


def build(name):
    doc = Doc(name)
    doc.components["schemas"]["Error"] = ERROR_SCHEMA
    doc.components["schemas"]["ErrorDetail"] = ERROR_SCHEMA["properties"]["error"]
    doc.components["schemas"].update(PROBE_SCHEMAS)
    doc.components["schemas"]["Ready"] = ready_schema(doc.spec.get("ready_checks", ()))
    doc.components["headers"].update(HEADERS)
    doc.components["parameters"].update(PARAMETERS)
    {"user-service": user_service, "order-service": order_service,
     "invoice-service": invoice_service}[name](doc)
    add_self(doc)
    add_probes(doc)
    doc.error_response(404, ["not_found"])
    doc.components["responses"]["NotFound"] = doc.components["responses"].pop(
        "Error404_not_found")
    doc.components["responses"]["MethodNotAllowed"] = {
        "description": "A known path with a method it does not accept.",
        "headers": dict(common_headers(), Allow=ref("headers", "Allow")),
        "content": json_content({"allOf": [ref("schemas", "Error"), {
            "properties": {"error": {"properties": {
                "status": {"const": 405}, "code": {"const": "method_not_allowed"}}}}}]})}
    # The operations that answer a plain 404 point at the NotFound response.
    for item in doc.paths.values():
        for op in item.values():
            if op["responses"].get("404") == ref("responses", "Error404_not_found"):
                op["responses"]["404"] = ref("responses", "NotFound")
    for k in [k for k, v in doc.components.items() if not v]:
        del doc.components[k]
    with open(VERSION_FILE) as f:
        version = f.read().strip()
    spec = doc.spec
    return {
        "openapi": "3.1.0",
        "info": {"title": name, "version": version,
                 "description": DESCRIPTION.format(name=name, summary=spec["summary"])},
        "servers": [{"url": f"http://127.0.0.1:{spec['port']}",
                     "description": "the default port, on the local machine"}],
        "paths": doc.paths,
        "components": doc.components,
    }


def render(name):
    return json.dumps(build(name), indent=2, ensure_ascii=True) + "\n"


def main(argv):
    out_dir = argv[1] if len(argv) > 1 else HERE
    for name in SERVICES:
        path = os.path.join(out_dir, f"{name}.json")
        text_out = render(name)
        with open(path + ".tmp", "w") as f:
            f.write(text_out)
        os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
