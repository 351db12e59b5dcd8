"""docs/api.md, Order Service: POST/GET /order-service/orders and its list;
money and time rules."""
import pytest

from contract import (ANY, ORDER_FIELDS, ORDERS, amounts_in, assert_error,
                      assert_healthy, assert_json_ct, assert_location,
                      assert_pos_int, assert_recent, describe,
                      expected_order, get, list_ok, max_id, post, post_raw,
                      post_utf8, uuser_id)


@pytest.fixture
def base(system):
    return system.order.base_url


@pytest.fixture
def uid():
    return uuser_id()


@pytest.fixture
def nothing_written(base):
    before = max_id(base, ORDERS)
    yield
    assert_healthy(base)
    assert max_id(base, ORDERS) == before, "a rejected request created an order"


def raw_order(uid, amount="50", extra=""):
    """Order JSON text with amount (and extra members) written verbatim."""
    return '{"user_id": %d, "amount": %s%s}' % (uid, amount, extra)


def create(base, body):
    resp = post(base, ORDERS, body)
    assert resp.status == 201, describe(resp)
    return resp.json


def orders_of(base, uid, **params):
    return list_ok(base, ORDERS, {"user_id": uid, "limit": 1000, **params})


# ---------------------------------------------------------------- create

def test_create_order(base, uid):
    resp = post(base, ORDERS, {"user_id": uid, "amount": 50,
                               "description": "Test purchase"})
    assert resp.status == 201, describe(resp)
    assert_json_ct(resp)
    o = resp.json
    assert set(o) == ORDER_FIELDS, o
    assert_pos_int(o["id"])
    assert o["user_id"] == uid
    assert o["amount"] == 50
    assert amounts_in(resp.text) == ["50.00"], resp.text
    assert o["description"] == "Test purchase"
    assert_recent(o["created_at"])
    assert_location(resp, ORDERS, o["id"])
    again = get(base, f"{ORDERS}/{o['id']}")
    assert again.status == 200
    assert_json_ct(again)
    assert again.json == o
    assert amounts_in(again.text) == ["50.00"], again.text
    rows = list_ok(base, ORDERS, {"user_id": uid})
    assert rows == [o]


def test_description_absent_is_null(base, uid):
    resp = post(base, ORDERS, {"user_id": uid, "amount": 1})
    assert resp.status == 201, describe(resp)
    assert "description" in resp.json and resp.json["description"] is None
    assert '"description"' in resp.text


def test_first_order_is_1_on_a_fresh_system(fresh_system):
    s = fresh_system()
    b = s.order.base_url
    assert list_ok(b, ORDERS) == []
    o1 = create(b, {"user_id": 1, "amount": 50,
                    "description": "Test purchase"})
    assert o1["id"] == 1
    o2 = create(b, {"user_id": 1, "amount": 1})
    assert o2["id"] == 2
    assert list_ok(b, ORDERS) == [o1, o2]
    assert get(b, f"{ORDERS}/3").status == 404


# ---------------------------------------------------------------- user_id

@pytest.mark.parametrize("value", [1, 7, 9223372036854775807])
def test_user_id_any_positive_integer(base, value):
    resp = post(base, ORDERS, {"user_id": value, "amount": 1})
    assert resp.status == 201, describe(resp)
    assert resp.json["user_id"] == value
    assert f'"user_id":{value}' in resp.text.replace(" ", "")


@pytest.mark.parametrize("raw_value", [
    '"7"', '""', "7.0", "1e2", "7.5", "0", "-1", "-0",
    "18446744073709551616", "99999999999999999999999",
    "-9223372036854775809", "1e400", "true", "false", "[7]", '{"id": 7}',
])
def test_user_id_invalid(base, nothing_written, raw_value):
    resp = post_raw(base, ORDERS, '{"user_id": %s, "amount": 1}' % raw_value)
    assert_error(resp, 422, "invalid_field", field="user_id")


def test_user_id_missing(base, nothing_written):
    assert_error(post(base, ORDERS, {"amount": 1}), 422, "missing_field",
                 field="user_id")
    assert_error(post(base, ORDERS, {"user_id": None, "amount": 1}), 422,
                 "missing_field", field="user_id")


# ---------------------------------------------------------------- amount

@pytest.mark.parametrize("raw_amount,text", [
    ("50", "50.00"), ("50.0", "50.00"), ("50.00", "50.00"),
    ("50.000", "50.00"), ("19.99", "19.99"), ("1.10", "1.10"),
    ("1.1", "1.10"), ("5e1", "50.00"), ("5E1", "50.00"), ("5e+1", "50.00"),
    ("0.1", "0.10"), ("0.01", "0.01"), ("1e-2", "0.01"), ("0.29", "0.29"),
    ("1.15", "1.15"), ("4.35", "4.35"), ("8.20", "8.20"),
    ("123456.78", "123456.78"), ("999999999.99", "999999999.99"),
    ("1000000000", "1000000000.00"), ("1000000000.00", "1000000000.00"),
    ("1e9", "1000000000.00"),
])
def test_amount_valid(base, uid, raw_amount, text):
    resp = post_raw(base, ORDERS, raw_order(uid, raw_amount))
    assert resp.status == 201, f"amount {raw_amount}: {describe(resp)}"
    assert amounts_in(resp.text) == [text], resp.text
    again = get(base, f"{ORDERS}/{resp.json['id']}")
    assert amounts_in(again.text) == [text], again.text


@pytest.mark.parametrize("raw_amount", [
    "0.001", "1e-3", "0.005", "1.001", "19.999", "1.005", "0", "0.0", "-0",
    "-0.0", "-1", "-0.01", "-50", "1e10", "1000000000.01", "1000000001",
    "9223372036854775807", "18446744073709551616", "1e300", "1e400",
    "-1e400", "1e-400",
    '"50"', '"50.00"', '""', "true", "false", "[50]", '{"value": 50}',
])
def test_amount_invalid(base, uid, nothing_written, raw_amount):
    resp = post_raw(base, ORDERS, raw_order(uid, raw_amount))
    assert_error(resp, 422, "invalid_field", field="amount")
    assert orders_of(base, uid) == []


def test_amount_missing(base, uid, nothing_written):
    assert_error(post(base, ORDERS, {"user_id": uid}), 422, "missing_field",
                 field="amount")
    assert_error(post(base, ORDERS, {"user_id": uid, "amount": None}), 422,
                 "missing_field", field="amount")


def test_amounts_do_not_drift(base, uid):
    for a in ("0.1", "0.2", "0.7", "19.99", "0.29"):
        assert post_raw(base, ORDERS, raw_order(uid, a)).status == 201
    resp = get(base, ORDERS, {"user_id": uid, "limit": 1000})
    assert amounts_in(resp.text) == ["0.10", "0.20", "0.70", "19.99", "0.29"]


# ---------------------------------------------------------------- description

@pytest.mark.parametrize("value", [
    "", " ", "a", "x" * 1000, "ü" * 1000, "😀" * 1000, "line1\nline2\t\"q\"",
    "<script>alert(1)</script>", "'; DROP TABLE orders; --",
])
def test_description_valid(base, uid, value):
    resp = post_utf8(base, ORDERS, {"user_id": uid, "amount": 1,
                                    "description": value})
    assert resp.status == 201, describe(resp)
    assert resp.json["description"] == value
    assert get(base, f"{ORDERS}/{resp.json['id']}").json["description"] == value


def test_description_null_means_absent(base, uid):
    o = create(base, {"user_id": uid, "amount": 1, "description": None})
    assert o["description"] is None


@pytest.mark.parametrize("value", ["x" * 1001, "ü" * 1001, "😀" * 1001,
                                   "x" * 100000])
def test_description_too_long(base, uid, nothing_written, value):
    resp = post_utf8(base, ORDERS, {"user_id": uid, "amount": 1,
                                    "description": value})
    assert_error(resp, 422, "invalid_field", field="description")


@pytest.mark.parametrize("value", [5, True, [], {}, ["a"]])
def test_description_wrong_type(base, uid, nothing_written, value):
    resp = post(base, ORDERS, {"user_id": uid, "amount": 1,
                               "description": value})
    assert_error(resp, 422, "invalid_field", field="description")


# ---------------------------------------------------------------- created_at

@pytest.mark.parametrize("given,stored", [
    ("2025-04-03T10:15:00Z", "2025-04-03T10:15:00.000Z"),
    ("2025-04-03T10:15:00.000Z", "2025-04-03T10:15:00.000Z"),
    ("2025-04-03T12:15:00+02:00", "2025-04-03T10:15:00.000Z"),
    ("2025-04-03T05:45:00-04:30", "2025-04-03T10:15:00.000Z"),
    ("2025-04-03T10:15:00-00:00", "2025-04-03T10:15:00.000Z"),
    ("2025-04-03T10:15:00+00:00", "2025-04-03T10:15:00.000Z"),
    ("2025-04-03t10:15:00z", "2025-04-03T10:15:00.000Z"),
    ("2025-04-03t12:15:00+02:00", "2025-04-03T10:15:00.000Z"),
    ("2025-04-03T10:15:00.5Z", "2025-04-03T10:15:00.500Z"),
    ("2025-04-03T10:15:00.12Z", "2025-04-03T10:15:00.120Z"),
    ("2025-04-03T10:15:00.123456789Z", "2025-04-03T10:15:00.123Z"),
    ("2025-04-03T10:15:00.9999Z", "2025-04-03T10:15:00.999Z"),
    ("2025-04-03T10:15:59.999999+01:00", "2025-04-03T09:15:59.999Z"),
    ("2025-12-31T23:30:00-01:00", "2026-01-01T00:30:00.000Z"),
    ("2025-01-01T00:30:00+01:00", "2024-12-31T23:30:00.000Z"),
    ("2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000Z"),
    ("2000-02-29T00:00:00Z", "2000-02-29T00:00:00.000Z"),
    ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
    ("1970-01-01T00:00:00.000+00:00", "1970-01-01T00:00:00.000Z"),
    ("1969-12-31T23:30:00-01:00", "1970-01-01T00:30:00.000Z"),
    ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
    ("9999-12-31T23:59:59+01:00", "9999-12-31T22:59:59.000Z"),
])
def test_created_at_normalised(base, uid, given, stored):
    resp = post(base, ORDERS, {"user_id": uid, "amount": 1,
                               "created_at": given})
    assert resp.status == 201, f"{given}: {describe(resp)}"
    assert resp.json["created_at"] == stored
    assert get(base, f"{ORDERS}/{resp.json['id']}").json["created_at"] == stored


@pytest.mark.parametrize("given", [
    "2016-12-31T23:59:60Z",          # leap second
    "2025-04-03T10:15:60Z",
    "1969-12-31T23:59:59.999Z",      # before 1970
    "1970-01-01T00:30:00+01:00",     # 1969 after conversion
    "1970-01-01T00:00:00+00:01",
    "9999-12-31T23:30:00-01:00",     # 10000 after conversion
    "0000-01-01T00:00:00Z",
    "2025-04-03",                    # date only
    "10:15:00Z",                     # time only
    "2025-04-03T10:15:00",           # no offset
    "2025-04-03 10:15:00Z",          # space instead of T
    "2025-04-03T10:15Z",             # no seconds
    "2025-04-03T10:15:00.Z",         # empty fraction
    "2025-04-03T10:15:00,5Z",        # comma fraction
    "2025-04-03T10:15:00+0200",      # offset without colon
    "2025-04-03T10:15:00+02",
    "2025-04-03T10:15:00+24:00",
    "2025-04-03T10:15:00+02:60",
    "2025-04-03T10:15:00 Z",
    "2025-04-03T10:15:00ZZ",
    " 2025-04-03T10:15:00Z",
    "2025-04-03T10:15:00Z ",
    "2025-4-3T10:15:00Z",
    "25-04-03T10:15:00Z",
    "+2025-04-03T10:15:00Z",
    "2025-13-01T00:00:00Z",
    "2025-00-01T00:00:00Z",
    "2025-02-29T00:00:00Z",          # not a leap year
    "1900-02-29T00:00:00Z",
    "2025-04-31T00:00:00Z",
    "2025-04-00T00:00:00Z",
    "2025-04-03T24:00:00Z",
    "2025-04-03T10:61:00Z",
    "2025-04-03X10:15:00Z",
    "garbage",
    "",
    "now",
])
def test_created_at_invalid(base, uid, nothing_written, given):
    resp = post(base, ORDERS, {"user_id": uid, "amount": 1,
                               "created_at": given})
    assert_error(resp, 422, "invalid_field", field="created_at")


@pytest.mark.parametrize("value", [1712139300, 1712139300000, True, [],
                                   {"year": 2025}])
def test_created_at_wrong_type(base, uid, nothing_written, value):
    resp = post(base, ORDERS, {"user_id": uid, "amount": 1,
                               "created_at": value})
    assert_error(resp, 422, "invalid_field", field="created_at")


def test_created_at_default_now(base, uid):
    for body in ({"user_id": uid, "amount": 1},
                 {"user_id": uid, "amount": 1, "created_at": None}):
        o = create(base, body)
        assert_recent(o["created_at"], slack=60)


def test_created_at_long_fraction(base, uid):
    given = "2025-04-03T10:15:00." + "9" * 30 + "Z"
    resp = post(base, ORDERS, {"user_id": uid, "amount": 1,
                               "created_at": given})
    assert resp.status == 201, describe(resp)
    assert resp.json["created_at"] == "2025-04-03T10:15:00.999Z"


# ---------------------------------------------------------------- other input

@pytest.mark.parametrize("extra", ["id", "name", "total", "Amount",
                                   "purchase_dt", "email"])
def test_unknown_field(base, uid, nothing_written, extra):
    body = {"user_id": uid, "amount": 1, extra: 1}
    assert_error(post(base, ORDERS, body), 422, "unknown_field", field=extra)


def test_empty_object(base, nothing_written):
    assert_error(post(base, ORDERS, {}), 422, "missing_field")


# ---------------------------------------------------------------- batch

def test_batch_create(base, uid):
    bodies = [{"user_id": uid, "amount": 50, "description": "a"},
              {"user_id": uid, "amount": 19.99},
              {"user_id": uid + 1, "amount": 0.1,
               "created_at": "2025-04-03T12:15:00+02:00"}]
    resp = post(base, ORDERS, bodies)
    assert resp.status == 201, describe(resp)
    assert_json_ct(resp)
    orders = resp.json
    assert isinstance(orders, list) and len(orders) == 3
    assert amounts_in(resp.text) == ["50.00", "19.99", "0.10"]
    assert len({o["id"] for o in orders}) == 3
    assert [o["user_id"] for o in orders] == [uid, uid, uid + 1]
    assert [o["description"] for o in orders] == ["a", None, None]
    assert orders[2]["created_at"] == "2025-04-03T10:15:00.000Z"
    for o in orders:
        assert set(o) == ORDER_FIELDS
        assert get(base, f"{ORDERS}/{o['id']}").json == o


@pytest.mark.parametrize("mutate,code,field", [
    (lambda b: b.update(amount=0.001), "invalid_field", "amount"),
    (lambda b: b.update(amount="50"), "invalid_field", "amount"),
    (lambda b: b.update(user_id=0), "invalid_field", "user_id"),
    (lambda b: b.pop("amount"), "missing_field", "amount"),
    (lambda b: b.update(created_at="2016-12-31T23:59:60Z"), "invalid_field",
     "created_at"),
    (lambda b: b.update(description="x" * 1001), "invalid_field",
     "description"),
    (lambda b: b.update(total=1), "unknown_field", "total"),
])
@pytest.mark.parametrize("bad_index", [0, 3])
def test_batch_atomic_with_index(base, uid, nothing_written, mutate, code,
                                 field, bad_index):
    bodies = [{"user_id": uid, "amount": 1} for _ in range(4)]
    mutate(bodies[bad_index])
    resp = post(base, ORDERS, bodies)
    assert_error(resp, 422, code, field=field, index=bad_index)
    assert orders_of(base, uid) == []


def test_batch_reports_first_failing_item(base, uid, nothing_written):
    bodies = [{"user_id": uid, "amount": 1} for _ in range(5)]
    bodies[1]["amount"] = -1
    bodies[4]["user_id"] = "x"
    resp = post(base, ORDERS, bodies)
    assert_error(resp, 422, "invalid_field", field="amount", index=1)


@pytest.mark.parametrize("body", [[], "1001", [1], [None], [[]], ["x"],
                                  "mixed"])
def test_batch_invalid_body(base, uid, nothing_written, body):
    if body == "1001":
        body = [{"user_id": uid, "amount": 1} for _ in range(1001)]
    elif body == "mixed":
        body = [{"user_id": uid, "amount": 1}, 5]
    resp = post(base, ORDERS, body)
    assert_error(resp, 422, "invalid_body", field=None, index=ANY)
    assert orders_of(base, uid) == []


def test_batch_of_1000(base, uid):
    resp = post(base, ORDERS, [{"user_id": uid, "amount": 0.01}
                               for _ in range(1000)])
    assert resp.status == 201, describe(resp)
    assert len(resp.json) == 1000
    assert set(amounts_in(resp.text)) == {"0.01"}
    assert len(orders_of(base, uid)) == 1000


# ---------------------------------------------------------------- GET

def test_get_unknown_order_404(base):
    resp = get(base, f"{ORDERS}/{max_id(base, ORDERS) + 1000}")
    assert_error(resp, 404, "not_found", field=None)


# ---------------------------------------------------------------- list

def test_list_filter_user_id(base, uid):
    a = create(base, {"user_id": uid, "amount": 1})
    b = create(base, {"user_id": uid + 1, "amount": 2})
    c = create(base, {"user_id": uid, "amount": 3})
    assert orders_of(base, uid) == [a, c]
    assert orders_of(base, uid + 1) == [b]
    assert orders_of(base, uid + 2) == []


def test_list_raw_amounts(base, uid):
    post_raw(base, ORDERS, raw_order(uid, "50"))
    post_raw(base, ORDERS, raw_order(uid, "1.10"))
    resp = get(base, ORDERS, {"user_id": uid})
    assert amounts_in(resp.text) == ["50.00", "1.10"], resp.text


def test_list_default_limit_100(base, uid):
    created = post(base, ORDERS, [{"user_id": uid, "amount": i + 1}
                                  for i in range(101)]).json
    assert list_ok(base, ORDERS, {"user_id": uid}) == created[:100]
    assert list_ok(base, ORDERS, {"user_id": uid, "offset": 100}) == \
        created[100:]
    assert list_ok(base, ORDERS, {"user_id": uid, "limit": 5,
                                  "offset": 10}) == created[10:15]


def test_list_order_by_columns_with_ties(base, uid):
    specs = [(100, "2025-04-03T10:00:00Z"), (9.99, "2025-04-01T10:00:00Z"),
             (20, "2025-04-03T10:00:00Z"), (9.99, "2025-05-01T00:00:00Z"),
             (1000, "2025-03-01T00:00:00Z"), (20, "2025-04-01T10:00:00Z")]
    created = post(base, ORDERS, [{"user_id": uid, "amount": a,
                                   "created_at": t} for a, t in specs]).json
    for col in ("id", "user_id", "amount", "created_at"):
        for desc in (False, True):
            want = expected_order(created, key=lambda r: r[col],
                                  descending=desc)
            got = orders_of(base, uid, order_by=("-" if desc else "") + col)
            assert [r["id"] for r in got] == want, f"order_by {col} {desc}"


def test_list_order_by_amount_is_numeric(base, uid):
    for a in ("9", "10", "100", "2.5"):
        post_raw(base, ORDERS, raw_order(uid, a))
    got = orders_of(base, uid, order_by="amount")
    assert [r["amount"] for r in got] == [2.5, 9, 10, 100]


def test_list_unknown_parameter(base):
    for p in ("email", "name", "status", "amount", "description"):
        resp = get(base, ORDERS, {p: "1"})
        err = assert_error(resp, 400, "invalid_query", index=None)
        for allowed in ("limit", "offset", "order_by", "user_id"):
            assert allowed in err["message"], err


def test_list_rows_have_exact_fields(base, uid):
    create(base, {"user_id": uid, "amount": 1})
    for row in list_ok(base, ORDERS, {"limit": 50, "order_by": "-id"}):
        assert set(row) == ORDER_FIELDS
