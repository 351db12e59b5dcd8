"""docs/api.md, "Invoice Service": the demo journey end to end (users, accounts
and orders over HTTP become monthly invoices) and every query rule and
error of GET /invoice-service/invoices[/{id}]."""
from decimal import Decimal

import pytest

from contract import (ACCOUNTS, ORDERS, TS_RE, USERS, assert_cors, assert_error,
                      assert_json_ct, describe, expected_order, post)
from helpers import http, wait_until
from invoice_helpers import (ADDRESS_KEYS, INVOICE_KEYS, INVOICES, LINE_KEYS,
                             big_id, get_invoice, get_invoices, has_orders,
                             invoice_for, list_invoices, rare_year, raw_number,
                             send_order, wait_invoice)


def _created(resp):
    assert resp.status == 201, describe(resp)
    return resp.json


def _filled(inv):
    return (inv["name"] is not None and inv["email"] is not None
            and inv["shipping_address"] is not None)


def _assert_invoice_shape(inv):
    assert set(inv) == INVOICE_KEYS, f"invoice keys {sorted(inv)}"
    for k in ("id", "user_id", "year", "month", "order_count"):
        assert type(inv[k]) is int, f"{k} is not an integer: {inv}"
    assert inv["id"] > 0 and inv["user_id"] > 0
    assert inv["invoice_dt"] == f"{inv['year']:04d}-{inv['month']:02d}-01", inv
    assert isinstance(inv["updated_at"], str) and TS_RE.match(inv["updated_at"]), inv
    assert isinstance(inv["total"], Decimal), f"total is not a decimal number: {inv}"
    assert isinstance(inv["orders"], list)
    for line in inv["orders"]:
        assert set(line) == LINE_KEYS, f"line keys {sorted(line)}"
        assert type(line["order_id"]) is int and line["order_id"] > 0
        assert isinstance(line["amount"], Decimal), line
        assert TS_RE.match(line["purchase_dt"]), line
    if inv["shipping_address"] is not None:
        assert set(inv["shipping_address"]) == ADDRESS_KEYS, inv["shipping_address"]
    assert inv["order_count"] == len(inv["orders"]), inv
    assert inv["total"] == sum((l["amount"] for l in inv["orders"]), Decimal(0)), inv
    keys = [(l["purchase_dt"], l["order_id"]) for l in inv["orders"]]
    assert keys == sorted(keys), f"lines not sorted by purchase_dt, order_id: {keys}"


# ------------------------------------------------------------------ journey

def test_demo_journey(fresh_system):
    s = fresh_system()
    ub, ob = s.user.base_url, s.order.base_url

    alice = _created(post(ub, USERS, {"name": "Alice", "email": "alice@demo.com"}))
    assert alice["id"] == 1, alice
    _created(post(ub, ACCOUNTS, {"user_id": 1, "address1": "123 Main St",
                                 "city": "Cityville", "state": "CA", "zip": "12345"}))
    o1 = _created(post(ob, ORDERS, {"user_id": 1, "amount": 50,
                                    "description": "Test purchase",
                                    "created_at": "2025-04-03T10:15:00Z"}))

    params = {"user_id": 1, "month": 4, "year": 2025}
    inv = wait_invoice(s, 1, 2025, 4, lambda i: _filled(i) and has_orders(o1["id"])(i),
                       message="Alice's April invoice with name, email and address")
    resp = get_invoices(s, params)
    assert resp.status == 200, describe(resp)
    assert_json_ct(resp)
    assert_cors(resp)
    assert isinstance(resp.exact, list) and len(resp.exact) == 1, resp.text
    inv = resp.exact[0]
    _assert_invoice_shape(inv)
    assert inv["user_id"] == 1 and inv["year"] == 2025 and inv["month"] == 4
    assert inv["invoice_dt"] == "2025-04-01"
    assert inv["name"] == "Alice" and inv["email"] == "alice@demo.com"
    assert inv["shipping_address"] == {"address1": "123 Main St", "address2": None,
                                       "city": "Cityville", "state": "CA",
                                       "zip": "12345"}
    assert inv["orders"] == [{"order_id": o1["id"], "description": "Test purchase",
                              "amount": Decimal("50.00"),
                              "purchase_dt": "2025-04-03T10:15:00.000Z"}]
    assert inv["order_count"] == 1
    assert inv["total"] == Decimal("50.00")
    assert raw_number(resp.text, "total") == ["50.00"], resp.text
    assert raw_number(resp.text, "amount") == ["50.00"], resp.text
    april_id = inv["id"]

    # A second April order (given with an offset, earlier in the month):
    # the same invoice, lines sorted by purchase time.
    o2 = _created(post(ob, ORDERS, {"user_id": 1, "amount": 50.0,
                                    "description": "Second purchase",
                                    "created_at": "2025-04-01T23:30:00-02:00"}))
    wait_invoice(s, 1, 2025, 4, has_orders(o2["id"]), message="second April order")
    resp = get_invoices(s, params)
    assert resp.status == 200 and len(resp.exact) == 1, describe(resp)
    inv = resp.exact[0]
    _assert_invoice_shape(inv)
    assert inv["id"] == april_id
    assert inv["order_count"] == 2 and inv["total"] == Decimal("100.00"), inv
    assert raw_number(resp.text, "total") == ["100.00"], resp.text
    assert [l["order_id"] for l in inv["orders"]] == [o2["id"], o1["id"]]
    assert inv["orders"][0]["purchase_dt"] == "2025-04-02T01:30:00.000Z"

    # A May order (April 30th at -02:00 is May 1st in UTC): a second invoice.
    o3 = _created(post(ob, ORDERS, {"user_id": 1, "amount": 25.5,
                                    "created_at": "2025-04-30T23:30:00-02:00"}))
    may = wait_invoice(s, 1, 2025, 5, has_orders(o3["id"]), message="May invoice")
    _assert_invoice_shape(may)
    assert may["id"] != april_id
    assert may["invoice_dt"] == "2025-05-01"
    assert may["orders"] == [{"order_id": o3["id"], "description": None,
                              "amount": Decimal("25.50"),
                              "purchase_dt": "2025-05-01T01:30:00.000Z"}]
    assert may["total"] == Decimal("25.50") and may["order_count"] == 1
    assert invoice_for(s, 1, 2025, 4)["order_count"] == 2  # April untouched

    # Ten orders of 0.10 in one month total exactly 1.00.
    ten = _created(post(ob, ORDERS, [{"user_id": 1, "amount": 0.10,
                                      "created_at": f"2025-06-{d:02d}T12:00:00Z"}
                                     for d in range(1, 11)]))
    june = wait_invoice(s, 1, 2025, 6, has_orders(*[o["id"] for o in ten]),
                        message="ten June orders")
    resp = get_invoices(s, {"user_id": 1, "year": 2025, "month": 6})
    assert resp.status == 200 and len(resp.exact) == 1, describe(resp)
    june = resp.exact[0]
    _assert_invoice_shape(june)
    assert june["order_count"] == 10 and june["total"] == Decimal("1.00"), june
    assert raw_number(resp.text, "total") == ["1.00"], resp.text
    assert raw_number(resp.text, "amount") == ["0.10"] * 10, resp.text

    # The whole list for the user, ordered by year and month; GET by id
    # returns the same object as the list.
    rows = list_invoices(s, {"user_id": 1})
    assert [(r["year"], r["month"]) for r in rows] == [(2025, 4), (2025, 5), (2025, 6)]
    for row in rows:
        one = get_invoice(s, row["id"])
        assert one.status == 200, describe(one)
        assert_json_ct(one)
        assert one.exact == row
    for bad in ("999999", "0", "-1", "01", "abc", "1.0", "1a",
                "99999999999999999999999"):
        assert_error(http("GET", f"{s.invoice.base_url}{INVOICES}/{bad}"),
                     404, "not_found")

    # The write side has exactly the orders the invoices show.
    lines = sorted(l["order_id"] for r in rows for l in r["orders"])
    assert lines == sorted([o1["id"], o2["id"], o3["id"]] + [o["id"] for o in ten])


# ------------------------------------------------------------------ queries

@pytest.fixture(scope="module")
def dataset(system):
    """Invoices made from hand-published order events in a year no other
    test uses: users u1 < u2 < u3; returns (year, [u1, u2, u3], rows of
    that year as listed)."""
    year = rare_year()
    users = sorted(big_id() for _ in range(3))
    u1, u2, u3 = users
    plan = [  # user, year, month, amount
        (u1, year, 3, 10), (u2, year, 1, 30.5), (u3, year, 2, 20),
        (u1, year, 1, 5.25), (u3, year, 1, 30.5), (u2, year, 12, 0.01),
        (u1, year + 1, 1, 7), (u1, year - 1, 12, 8),
    ]
    expected = {}
    for user, y, m, amount in plan:
        oid = big_id()
        send_order(system, oid, user, amount, created_at=f"{y}-{m:02d}-15T12:00:00Z")
        expected[(user, y, m)] = oid
    for (user, y, m), oid in expected.items():
        wait_invoice(system, user, y, m, has_orders(oid))
    rows = list_invoices(system, {"year": year})
    assert len(rows) == 6, rows
    return year, users, rows


def _ids(rows):
    return [r["id"] for r in rows]


def test_filters_and_default_order(system, dataset):
    year, (u1, u2, u3), rows = dataset
    # Default order: year, month, user_id.
    assert [(r["month"], r["user_id"]) for r in rows] == [
        (1, u1), (1, u2), (1, u3), (2, u3), (3, u1), (12, u2)]
    mine = list_invoices(system, {"user_id": u1})
    assert [(r["year"], r["month"]) for r in mine] == [
        (year - 1, 12), (year, 1), (year, 3), (year + 1, 1)]
    assert all(r["user_id"] == u1 for r in mine)
    jan = list_invoices(system, {"year": year, "month": 1})
    assert [r["user_id"] for r in jan] == [u1, u2, u3]
    one = list_invoices(system, {"user_id": u3, "month": 2, "year": year})
    assert len(one) == 1 and one[0]["total"] == Decimal("20.00")
    assert list_invoices(system, {"user_id": big_id()}) == []
    assert list_invoices(system, {"year": 1970, "month": 1, "user_id": u1}) == []
    assert list_invoices(system, {"year": 9999, "user_id": u1}) == []


@pytest.mark.parametrize("column", ["id", "user_id", "year", "month", "total",
                                    "updated_at"])
@pytest.mark.parametrize("descending", [False, True])
def test_order_by(system, dataset, column, descending):
    year, (u1, _, _), _ = dataset
    for filters in ({"year": year}, {"user_id": u1}):
        base = list_invoices(system, {**filters, "limit": 1000})
        key = "-" + column if descending else column
        rows = list_invoices(system, {**filters, "order_by": key})
        assert sorted(_ids(rows)) == sorted(_ids(base))
        assert _ids(rows) == expected_order(base, key=lambda r: r[column],
                                            descending=descending), \
            f"order_by={key} with {filters}: {[(r['id'], r[column]) for r in rows]}"


def test_limit_and_offset(system, dataset):
    year, _, rows = dataset
    for limit in (1, 2, 4, 1000):
        got = []
        for offset in range(0, 8, limit):
            got.extend(list_invoices(system, {"year": year, "limit": limit,
                                              "offset": offset}))
        assert _ids(got) == _ids(rows), f"paging with limit {limit}"
    assert list_invoices(system, {"year": year, "offset": 6}) == []
    assert list_invoices(system, {"year": year, "offset": 1000000}) == []
    assert _ids(list_invoices(system, {"year": year, "limit": 3, "offset": 2})) == \
        _ids(rows[2:5])
    assert _ids(list_invoices(system, {"year": year, "order_by": "-total",
                                       "limit": 2, "offset": 1})) == \
        expected_order(rows, key=lambda r: r["total"], descending=True)[1:3]


BAD_QUERIES = [
    # (query, unknown parameter?)
    ("foo=1", True), ("page=2", True), ("sort=id", True), ("status=open", True),
    ("userid=1", True), ("month=4&bogus=", True),
    ("month=0", False), ("month=13", False), ("month=abc", False), ("month=", False),
    ("month=-1", False), ("month=01", False), ("month=4.0", False), ("month=%2B4", False),
    ("month=%204", False), ("month=4x", False),
    ("year=1969", False), ("year=10000", False), ("year=abc", False), ("year=", False),
    ("year=02025", False), ("year=-2025", False), ("year=2025.0", False),
    ("user_id=abc", False), ("user_id=", False), ("user_id=-1", False),
    ("user_id=01", False), ("user_id=1.0", False),
    ("user_id=18446744073709551616", False),
    ("limit=0", False), ("limit=1001", False), ("limit=-1", False), ("limit=", False),
    ("limit=abc", False), ("limit=01", False), ("limit=1.5", False),
    ("limit=99999999999999999999", False),
    ("offset=-1", False), ("offset=", False), ("offset=abc", False),
    ("offset=01", False), ("offset=1.0", False),
    ("order_by=", False), ("order_by=name", False), ("order_by=email", False),
    ("order_by=invoice_dt", False), ("order_by=orders", False),
    ("order_by=order_count", False), ("order_by=-", False), ("order_by=--id", False),
    ("order_by=%2Bid", False), ("order_by=ID", False), ("order_by=id%2Cyear", False),
    ("order_by=id%20desc", False), ("order_by=total%3Bdrop%20table%20invoices", False),
    ("order_by=1", False), ("order_by=i.id", False),
]


@pytest.mark.parametrize("query,unknown", BAD_QUERIES,
                         ids=[q for q, _ in BAD_QUERIES])
def test_bad_query_is_400(system, query, unknown):
    resp = http("GET", f"{system.invoice.base_url}{INVOICES}?{query}")
    err = assert_error(resp, 400, "invalid_query")
    if unknown:
        # docs/api.md: the message names the allowed parameters.
        for name in ("user_id", "month", "year", "limit", "offset", "order_by"):
            assert name in err["message"], f"message does not name {name}: {err}"


def test_good_bounds_are_accepted(system, dataset):
    year, (u1, _, _), _ = dataset
    for query in ("month=1", "month=12", "year=1970", "year=9999", "limit=1",
                  "limit=1000", "offset=0", "order_by=-updated_at",
                  f"user_id={u1}&year={year}&month=3&limit=5&offset=0&order_by=-id"):
        resp = http("GET", f"{system.invoice.base_url}{INVOICES}?{query}")
        assert resp.status == 200, f"{query}: {describe(resp)}"
        assert_json_ct(resp)
        assert isinstance(resp.json, list)
        assert len(resp.json) <= (1 if query == "limit=1" else 1000)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [INVOICES, INVOICES + "/1"])
def test_write_methods_are_405(system, method, path):
    resp = http(method, system.invoice.base_url + path,
                body={"user_id": 1, "year": 2025, "month": 4})
    assert_error(resp, 405, "method_not_allowed", field=None)
    allow = resp.headers.get("Allow")
    assert allow, f"405 without Allow: {resp.headers}"
    methods = {m.strip().upper() for m in allow.split(",")}
    assert "GET" in methods, allow
    assert not methods & {"POST", "PUT", "DELETE", "PATCH"}, allow
    # Nothing was created by the attempt.
    assert http("GET", system.invoice.base_url + INVOICES +
                "?year=2025&month=4&user_id=1").status == 200


def test_unknown_routes_are_404(system):
    for path in ("/invoice-service/invoice", "/invoice-service/invoices/1/lines",
                 "/invoice-service/", "/invoice-service/orders"):
        assert_error(http("GET", system.invoice.base_url + path), 404, "not_found")


def test_pages_of_invoices_with_many_lines(system):
    """A page of several invoices, each with several lines that arrived out
    of order: every invoice on every page, in every order, carries exactly
    its own lines, sorted by purchase time then order id, and equals its
    GET by id (the lines are read with their invoices, page by page)."""
    year = rare_year()
    users = sorted(big_id() for _ in range(3))
    plan = {}  # (user, month) -> [(order id, cents, day)]
    for n, user in enumerate(users):
        for month in (2, 7):
            # Days out of order, and two lines on one instant (then by id).
            days = [20, 3, 11, 3][: 2 + n]
            plan[(user, month)] = [(big_id(), 100 * (n + 1) + d, d) for d in days]
    for (user, month), lines in plan.items():
        for oid, cents, day in reversed(lines):
            send_order(system, oid, user, cents / 100,
                       created_at=f"{year}-{month:02d}-{day:02d}T08:00:00Z")
    for (user, month), lines in plan.items():
        wait_invoice(system, user, year, month, has_orders(*[oid for oid, _, _ in lines]))

    def expected_lines(user, month):
        lines = sorted(plan[(user, month)], key=lambda l: (l[2], l[0]))
        return [oid for oid, _, _ in lines], Decimal(sum(c for _, c, _ in lines)) / 100

    for key in ("id", "-id", "total", "-total", "user_id", "-month", None):
        for limit in (1, 2, 4):
            got = []
            for offset in range(0, len(plan), limit):
                query = {"year": year, "limit": limit, "offset": offset}
                if key:
                    query["order_by"] = key
                got.extend(list_invoices(system, query))
            assert len(got) == len(plan) and len({r["id"] for r in got}) == len(plan), got
            for row in got:
                ids, total = expected_lines(row["user_id"], row["month"])
                assert [l["order_id"] for l in row["orders"]] == ids, (key, limit, row)
                assert row["order_count"] == len(ids) and row["total"] == total, row
            if key is None:
                assert [(r["month"], r["user_id"]) for r in got] == \
                    [(m, u) for m in (2, 7) for u in users]
    for row in list_invoices(system, {"year": year}):
        one = get_invoice(system, row["id"])
        assert one.status == 200 and one.exact == row, describe(one)
