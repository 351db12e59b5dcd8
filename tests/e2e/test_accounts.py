"""docs/api.md, User Service: POST/GET /system-api/accounts and its list."""
import pytest

from contract import (ACCOUNT_FIELDS, ACCOUNTS, ANY, USERS, account_body,
                      assert_error, assert_healthy, assert_json_ct,
                      assert_location, assert_pos_int, assert_recent,
                      describe, expected_order, get, list_ok, make_user,
                      max_id, post, post_raw, post_utf8)

REQUIRED = ("address1", "city", "state", "zip")


@pytest.fixture
def base(system):
    return system.user.base_url


@pytest.fixture
def user(system):
    return make_user(system)


@pytest.fixture
def nothing_written(base):
    before_acc = max_id(base, ACCOUNTS)
    before_usr = max_id(base, USERS)
    yield
    assert_healthy(base)
    assert max_id(base, ACCOUNTS) == before_acc, \
        "a rejected request created an account"
    assert max_id(base, USERS) == before_usr


def create(base, body):
    resp = post(base, ACCOUNTS, body)
    assert resp.status == 201, describe(resp)
    return resp.json


def accounts_of(base, user_id, **params):
    return list_ok(base, ACCOUNTS, {"user_id": user_id, "limit": 1000,
                                    **params})


# ---------------------------------------------------------------- create

def test_create_account_defaults(base, user):
    body = account_body(user["id"])
    resp = post(base, ACCOUNTS, body)
    assert resp.status == 201, describe(resp)
    assert_json_ct(resp)
    acc = resp.json
    assert set(acc) == ACCOUNT_FIELDS, acc
    assert_pos_int(acc["id"])
    assert acc["user_id"] == user["id"]
    for f in REQUIRED:
        assert acc[f] == body[f]
    assert acc["address2"] is None
    assert acc["status"] == "open"
    assert_recent(acc["created_at"])
    assert_location(resp, ACCOUNTS, acc["id"])
    again = get(base, f"{ACCOUNTS}/{acc['id']}")
    assert again.status == 200
    assert_json_ct(again)
    assert again.json == acc


def test_create_account_all_fields(base, user):
    body = account_body(user["id"], address1="1 Rue de l'Église",
                        address2="Bâtiment B, 3ᵉ étage", city="Zürich",
                        state="ZH", zip="8001", status="closed")
    resp = post_utf8(base, ACCOUNTS, body)
    assert resp.status == 201, describe(resp)
    acc = resp.json
    for k, v in body.items():
        assert acc[k] == v, k
    assert get(base, f"{ACCOUNTS}/{acc['id']}").json == acc


@pytest.mark.parametrize("value,expected", [
    (None, None), ("", ""), ("Apt 4", "Apt 4"), ("x" * 200, "x" * 200),
    ("ß" * 200, "ß" * 200),
])
def test_address2(base, user, value, expected):
    resp = post_utf8(base, ACCOUNTS,
                     account_body(user["id"], address2=value))
    assert resp.status == 201, describe(resp)
    assert resp.json["address2"] == expected
    assert "address2" in resp.json


@pytest.mark.parametrize("value", ["open", "closed", None])
def test_status_values(base, user, value):
    acc = create(base, account_body(user["id"], status=value))
    assert acc["status"] == (value or "open")


def test_several_accounts_per_user(base, user):
    a = create(base, account_body(user["id"]))
    b = create(base, account_body(user["id"], city="Other"))
    assert b["id"] > a["id"]
    assert accounts_of(base, user["id"]) == [a, b]


@pytest.mark.parametrize("field", REQUIRED)
@pytest.mark.parametrize("value", ["a", "x" * 200, "é" * 200, "😀" * 200,
                                   " a "])
def test_required_strings_valid(base, user, field, value):
    resp = post_utf8(base, ACCOUNTS, account_body(user["id"], **{field: value}))
    assert resp.status == 201, describe(resp)
    assert resp.json[field] == value


# ---------------------------------------------------------------- rules

@pytest.mark.parametrize("field", REQUIRED)
@pytest.mark.parametrize("value", ["", " ", "\t\n", "x" * 201, "é" * 201,
                                   "😀" * 201])
def test_required_strings_invalid(base, user, nothing_written, field, value):
    resp = post_utf8(base, ACCOUNTS, account_body(user["id"], **{field: value}))
    assert_error(resp, 422, "invalid_field", field=field)


@pytest.mark.parametrize("field", REQUIRED + ("address2",))
@pytest.mark.parametrize("value", [5, True, [], {}, ["a"], 1.5])
def test_strings_wrong_type(base, user, nothing_written, field, value):
    resp = post(base, ACCOUNTS, account_body(user["id"], **{field: value}))
    assert_error(resp, 422, "invalid_field", field=field)


@pytest.mark.parametrize("field", REQUIRED + ("user_id",))
def test_required_missing(base, user, nothing_written, field):
    body = account_body(user["id"])
    del body[field]
    assert_error(post(base, ACCOUNTS, body), 422, "missing_field", field=field)
    body[field] = None
    assert_error(post(base, ACCOUNTS, body), 422, "missing_field", field=field)


@pytest.mark.parametrize("value", ["x" * 201, "é" * 201])
def test_address2_too_long(base, user, nothing_written, value):
    resp = post_utf8(base, ACCOUNTS, account_body(user["id"], address2=value))
    assert_error(resp, 422, "invalid_field", field="address2")


@pytest.mark.parametrize("value", ["bogus", "OPEN", "Closed", "", " open",
                                   "active", 1, True, [], {}])
def test_status_invalid(base, user, nothing_written, value):
    resp = post(base, ACCOUNTS, account_body(user["id"], status=value))
    assert_error(resp, 422, "invalid_field", field="status")


def test_unknown_user(base, nothing_written):
    for uid in (max_id(base, USERS) + 1000, 9223372036854775807):
        resp = post(base, ACCOUNTS, account_body(uid))
        assert_error(resp, 422, "unknown_user", field="user_id")


@pytest.mark.parametrize("raw_value", [
    '"7"', "7.0", "1e0", "true", "[1]", "{}", "18446744073709551616",
    "99999999999999999999999", "-9223372036854775809",
])
def test_user_id_wrong_type(base, nothing_written, raw_value):
    text = ('{"user_id": %s, "address1": "a", "city": "c", "state": "s", '
            '"zip": "z"}' % raw_value)
    resp = post_raw(base, ACCOUNTS, text)
    assert_error(resp, 422, "invalid_field", field="user_id")


@pytest.mark.parametrize("value", [0, -1])
def test_user_id_not_positive(base, nothing_written, value):
    # Not a user id at all: invalid_field is the natural answer;
    # unknown_user is tolerated (no such user exists either way).
    resp = post(base, ACCOUNTS, account_body(value))
    assert resp.status == 422, describe(resp)
    code = resp.json["error"]["code"]
    assert code in ("invalid_field", "unknown_user"), resp.text
    assert_error(resp, 422, code, field="user_id")


@pytest.mark.parametrize("extra", ["id", "email", "name", "created_at",
                                   "Status", "address3"])
def test_unknown_field(base, user, nothing_written, extra):
    body = account_body(user["id"])
    body[extra] = "x"
    assert_error(post(base, ACCOUNTS, body), 422, "unknown_field", field=extra)


# ---------------------------------------------------------------- batch

def test_batch_create(base, user):
    bodies = [account_body(user["id"], city=f"C{i}") for i in range(3)]
    resp = post(base, ACCOUNTS, bodies)
    assert resp.status == 201, describe(resp)
    accs = resp.json
    assert isinstance(accs, list) and len(accs) == 3
    assert len({a["id"] for a in accs}) == 3
    for body, a in zip(bodies, accs):
        assert set(a) == ACCOUNT_FIELDS
        assert a["city"] == body["city"] and a["status"] == "open"
        assert a["address2"] is None
        assert get(base, f"{ACCOUNTS}/{a['id']}").json == a


def test_batch_for_several_users(system, base):
    u1, u2 = make_user(system), make_user(system)
    resp = post(base, ACCOUNTS, [account_body(u1["id"]),
                                 account_body(u2["id"], status="closed")])
    assert resp.status == 201, describe(resp)
    assert [a["user_id"] for a in resp.json] == [u1["id"], u2["id"]]
    assert [a["status"] for a in resp.json] == ["open", "closed"]


@pytest.mark.parametrize("mutate,code,field", [
    (lambda b: b.update(city=""), "invalid_field", "city"),
    (lambda b: b.pop("zip"), "missing_field", "zip"),
    (lambda b: b.update(status="bogus"), "invalid_field", "status"),
    (lambda b: b.update(user_id=9223372036854775807), "unknown_user",
     "user_id"),
    (lambda b: b.update(user_id="1"), "invalid_field", "user_id"),
    (lambda b: b.update(country="X"), "unknown_field", "country"),
])
def test_batch_atomic_with_index(base, user, nothing_written, mutate, code,
                                 field):
    bodies = [account_body(user["id"]) for _ in range(4)]
    mutate(bodies[2])
    resp = post(base, ACCOUNTS, bodies)
    assert_error(resp, 422, code, field=field, index=2)
    assert accounts_of(base, user["id"]) == []


@pytest.mark.parametrize("body", [[], "1001", [1], [None], [[]], "mixed"])
def test_batch_invalid_body(base, user, nothing_written, body):
    if body == "1001":
        body = [account_body(user["id"]) for _ in range(1001)]
    elif body == "mixed":
        body = [account_body(user["id"]), "x"]
    resp = post(base, ACCOUNTS, body)
    assert_error(resp, 422, "invalid_body", field=None, index=ANY)
    assert accounts_of(base, user["id"]) == []


def test_batch_of_1000(base, user):
    resp = post(base, ACCOUNTS, [account_body(user["id"], zip=f"{i:05d}")
                                 for i in range(1000)])
    assert resp.status == 201, describe(resp)
    assert len(resp.json) == 1000
    assert len(accounts_of(base, user["id"])) == 1000


# ---------------------------------------------------------------- GET

def test_get_unknown_account_404(base):
    resp = get(base, f"{ACCOUNTS}/{max_id(base, ACCOUNTS) + 1000}")
    assert_error(resp, 404, "not_found", field=None)


# ---------------------------------------------------------------- list

def test_list_filter_user_id(system, base):
    u1, u2 = make_user(system), make_user(system)
    a1 = create(base, account_body(u1["id"]))
    a2 = create(base, account_body(u2["id"]))
    a3 = create(base, account_body(u1["id"], status="closed"))
    assert accounts_of(base, u1["id"]) == [a1, a3]
    assert accounts_of(base, u2["id"]) == [a2]
    assert accounts_of(base, max_id(base, USERS) + 1000) == []


def test_list_filter_status(base, user):
    o1 = create(base, account_body(user["id"]))
    c1 = create(base, account_body(user["id"], status="closed"))
    o2 = create(base, account_body(user["id"], status="open"))
    assert accounts_of(base, user["id"], status="open") == [o1, o2]
    assert accounts_of(base, user["id"], status="closed") == [c1]
    for row in list_ok(base, ACCOUNTS, {"status": "closed", "limit": 1000}):
        assert row["status"] == "closed"


@pytest.mark.parametrize("value", ["bogus", "", "OPEN", "Open", "open,closed",
                                   "open ", "%"])
def test_list_status_invalid(base, value):
    resp = get(base, ACCOUNTS, {"status": value})
    assert_error(resp, 400, "invalid_query", index=None)


def test_list_status_invalid_message_names_values(base):
    resp = get(base, ACCOUNTS, {"status": "bogus"})
    err = assert_error(resp, 400, "invalid_query", index=None)
    assert "open" in err["message"] and "closed" in err["message"], err


def test_list_unknown_parameter(base):
    for p in ("email", "name", "city", "address1"):
        resp = get(base, ACCOUNTS, {p: "x"})
        err = assert_error(resp, 400, "invalid_query", index=None)
        for allowed in ("limit", "offset", "order_by", "user_id", "status"):
            assert allowed in err["message"], err


def test_list_default_limit_100(base, user):
    created = post(base, ACCOUNTS, [account_body(user["id"])
                                    for _ in range(101)]).json
    assert list_ok(base, ACCOUNTS, {"user_id": user["id"]}) == created[:100]
    assert list_ok(base, ACCOUNTS, {"user_id": user["id"], "offset": 100}) \
        == created[100:]
    assert list_ok(base, ACCOUNTS, {"user_id": user["id"], "limit": 3,
                                    "offset": 2}) == created[2:5]


def test_list_order_by_columns_with_ties(base, user):
    rows = [("mcity", "ss", "00002", "open"),
            ("acity", "zz", "00001", "closed"),
            ("mcity", "aa", "00003", "open"),
            ("zcity", "ss", "00001", "closed"),
            ("acity", "mm", "00009", "open")]
    created = post(base, ACCOUNTS, [
        account_body(user["id"], city=c, state=s, zip=z, status=st)
        for c, s, z, st in rows]).json
    for col in ("id", "user_id", "city", "state", "zip", "status",
                "created_at"):
        for desc in (False, True):
            want = expected_order(created, key=lambda r: r[col],
                                  descending=desc)
            got = accounts_of(base, user["id"],
                              order_by=("-" if desc else "") + col)
            assert [r["id"] for r in got] == want, f"order_by {col} {desc}"


def test_list_order_by_user_id_across_users(system, base):
    users = [make_user(system) for _ in range(3)]
    for u in reversed(users):
        create(base, account_body(u["id"]))
        create(base, account_body(u["id"]))
    rows = list_ok(base, ACCOUNTS, {"order_by": "user_id", "limit": 1000,
                                    "offset": 0})
    for a, b in zip(rows, rows[1:]):
        assert (a["user_id"], a["id"]) < (b["user_id"], b["id"]), (a, b)
    rows = list_ok(base, ACCOUNTS, {"order_by": "-user_id", "limit": 1000})
    for a, b in zip(rows, rows[1:]):
        assert a["user_id"] > b["user_id"] or \
            (a["user_id"] == b["user_id"] and a["id"] < b["id"]), (a, b)


def test_list_rows_have_exact_fields(base, user):
    create(base, account_body(user["id"]))
    for row in list_ok(base, ACCOUNTS, {"limit": 50, "order_by": "-id"}):
        assert set(row) == ACCOUNT_FIELDS
        assert row["status"] in ("open", "closed")
