"""docs/api.md, User Service: POST/GET /system-api/users and the users list."""
import pytest

from contract import (ANY, USER_FIELDS, USERS, ACCOUNTS, assert_error,
                      assert_healthy, assert_json_ct, assert_location,
                      assert_pos_int, assert_recent, describe,
                      expected_order, get, hexid, list_ok, make_account,
                      max_id, post, post_raw, post_utf8, uemail,
                      user_body)
from helpers import http


@pytest.fixture
def base(system):
    return system.user.base_url


@pytest.fixture
def nothing_written(base):
    """After the test: healthy, and no user was created."""
    before = max_id(base, USERS)
    yield
    assert_healthy(base)
    assert max_id(base, USERS) == before, "a rejected request created a user"


def by_email(base, email):
    return list_ok(base, USERS, {"email": email})


def assert_user(u, name=None, email=None):
    assert set(u) == USER_FIELDS, u
    assert_pos_int(u["id"])
    assert_recent(u["created_at"])
    if name is not None:
        assert u["name"] == name
    if email is not None:
        assert u["email"] == email


# ---------------------------------------------------------------- create one

def test_create_user(base):
    body = user_body()
    resp = post(base, USERS, body)
    assert resp.status == 201, describe(resp)
    assert_json_ct(resp)
    u = resp.json
    assert isinstance(u, dict)
    assert_user(u, body["name"], body["email"])
    assert_location(resp, USERS, u["id"])
    again = get(base, f"{USERS}/{u['id']}")
    assert again.status == 200
    assert_json_ct(again)
    assert again.json == u
    # The Location header leads to the same object.
    loc = resp.headers.get("Location")
    path = loc if loc.startswith("/") else "/" + loc.split("/", 3)[3]
    assert http("GET", base + path).json == u


def test_ids_increase(base):
    a = make_user_in(base)
    b = make_user_in(base)
    assert b["id"] > a["id"]


def make_user_in(base, **over):
    resp = post(base, USERS, user_body(**over))
    assert resp.status == 201, describe(resp)
    return resp.json


def test_first_user_is_1_on_a_fresh_system(fresh_system):
    s = fresh_system()
    b = s.user.base_url
    assert list_ok(b, USERS) == []
    assert list_ok(b, ACCOUNTS) == []
    u1 = make_user_in(b)
    assert u1["id"] == 1
    assert get(b, f"{USERS}/1").json == u1
    u2 = make_user_in(b)
    assert u2["id"] == 2
    acc = make_account(s, 1)
    assert acc["id"] == 1 and acc["user_id"] == 1
    assert [u["id"] for u in list_ok(b, USERS)] == [1, 2]
    assert get(b, f"{USERS}/3").status == 404


def test_strings_stored_as_given(base):
    name = "  Zoë \u00c5ngström 山田 😀  "
    email = f"Mixed.Case+{hexid()}@Example.COM"
    resp = post_utf8(base, USERS, {"name": name, "email": email})
    assert resp.status == 201, describe(resp)
    assert_user(resp.json, name, email)
    assert get(base, f"{USERS}/{resp.json['id']}").json["name"] == name


def test_escaped_unicode_input(base):
    # \u escapes, including a surrogate pair, decode to the same text.
    email = uemail()
    text = '{"name": "J\\u00f6rg \\ud83d\\ude00", "email": "%s"}' % email
    resp = post_raw(base, USERS, text)
    assert resp.status == 201, describe(resp)
    assert resp.json["name"] == "J\u00f6rg \U0001F600"


# ---------------------------------------------------------------- name rules

@pytest.mark.parametrize("name", [
    "a", "x" * 200, "é" * 200, "😀" * 200, "山" * 200, " a", "a b",
])
def test_name_valid(base, name):
    resp = post_utf8(base, USERS, {"name": name, "email": uemail()})
    assert resp.status == 201, f"{len(name)} chars: {describe(resp)}"
    assert resp.json["name"] == name


@pytest.mark.parametrize("name", [
    "", " ", "   ", "\t", "\n", " \t\r\n ", "x" * 201, "é" * 201, "😀" * 201,
    "x" * 5000,
    # Unicode spaces are spaces too: nothing visible in these names.
    "\u00a0", "\u3000", "\u2003\u00a0",
])
def test_name_invalid(base, nothing_written, name):
    resp = post_utf8(base, USERS, {"name": name, "email": uemail()})
    assert_error(resp, 422, "invalid_field", field="name")


@pytest.mark.parametrize("value", [5, 0, 1.5, True, False, [], ["a"], {},
                                   {"first": "a"}])
def test_name_wrong_type(base, nothing_written, value):
    resp = post(base, USERS, {"name": value, "email": uemail()})
    assert_error(resp, 422, "invalid_field", field="name")


# ---------------------------------------------------------------- email rules

# "{u}" is replaced by 12 unique hex digits; "A*n" / "E*n" by n letters
# "a" / "é" (so that lengths can be exact).
def email_from(template):
    text = template.replace("{u}", hexid())
    for mark, ch in (("A*", "a"), ("E*", "é")):
        while mark in text:
            at = text.index(mark)
            end = at + 2
            while end < len(text) and text[end].isdigit():
                end += 1
            text = text[:at] + ch * int(text[at + 2:end]) + text[end:]
    return text


# 12 (unique part) + 229 + 13 ("@example.test") = 254 code points.
VALID_EMAILS = {
    "minimal": "{u}@b",
    "no_dot": "{u}@localhost",
    "plus_and_subdomain": "{u}.x+tag@sub.example.test",
    "254_ascii": "{u}A*229@example.test",
    "254_code_points_multibyte": "{u}E*229@example.test",
    "specials": "{u}!#$%&'*/=?^_`{|}~-@example.test",
    "quoted_local": '"{u}"@example.test',
    "non_ascii": "{u}.jürgen@bücher.example",
}

INVALID_EMAILS = {
    "empty": "",
    "space": " ",
    "no_at": "plainaddress{u}",
    "two_ats_adjacent": "{u}@@example.test",
    "two_ats": "{u}@a@example.test",
    "empty_local": "@example.test",
    "empty_domain": "{u}@",
    "only_at": "@",
    "space_in_local": "{u} x@example.test",
    "space_in_domain": "{u}@exa mple.test",
    "leading_space": " {u}@example.test",
    "trailing_space": "{u}@example.test ",
    "tab": "{u}\tx@example.test",
    "nbsp": "{u}\u00a0x@example.test",
    "ideographic_space": "{u}@example.test\u3000",
    "255_ascii": "{u}A*230@example.test",
    "255_code_points_multibyte": "{u}E*230@example.test",
    "2000_chars": "{u}A*2000@example.test",
}


@pytest.mark.parametrize("template", VALID_EMAILS.values(), ids=VALID_EMAILS)
def test_email_valid(base, template):
    email = email_from(template)
    resp = post_utf8(base, USERS, {"name": "n", "email": email})
    assert resp.status == 201, f"{email!r} ({len(email)}): {describe(resp)}"
    assert resp.json["email"] == email


def test_email_length_counts_code_points():
    assert len(email_from(VALID_EMAILS["254_code_points_multibyte"])) == 254
    assert len(email_from(INVALID_EMAILS["255_ascii"])) == 255


@pytest.mark.parametrize("template", INVALID_EMAILS.values(),
                         ids=INVALID_EMAILS)
def test_email_invalid(base, nothing_written, template):
    email = email_from(template)
    resp = post_utf8(base, USERS, {"name": "n", "email": email})
    assert_error(resp, 422, "invalid_field", field="email")


@pytest.mark.parametrize("value", [5, True, [], {}, ["a@b"], 1.0])
def test_email_wrong_type(base, nothing_written, value):
    resp = post(base, USERS, {"name": "n", "email": value})
    assert_error(resp, 422, "invalid_field", field="email")


def test_duplicate_email_409(base):
    email = uemail()
    first = make_user_in(base, email=email)
    before = max_id(base, USERS)
    resp = post(base, USERS, {"name": "other", "email": email})
    assert_error(resp, 409, "conflict", field="email")
    assert max_id(base, USERS) == before
    assert by_email(base, email) == [first]


def test_duplicate_email_is_case_insensitive(base):
    email = f"Case.{hexid()}@Example.Test"
    first = make_user_in(base, email=email)
    for variant in (email.lower(), email.upper(), email.swapcase()):
        resp = post(base, USERS, {"name": "other", "email": variant})
        assert_error(resp, 409, "conflict", field="email")
    assert by_email(base, email.lower()) == [first]


# ---------------------------------------------------------------- missing etc

@pytest.mark.parametrize("body,field", [
    ({"email": "FILL"}, "name"),
    ({"name": "n"}, "email"),
    ({"name": None, "email": "FILL"}, "name"),
    ({"name": "n", "email": None}, "email"),
])
def test_missing_field(base, nothing_written, body, field):
    body = {k: (uemail() if v == "FILL" else v) for k, v in body.items()}
    resp = post(base, USERS, body)
    assert_error(resp, 422, "missing_field", field=field)


def test_empty_object_is_missing_field(base, nothing_written):
    resp = post(base, USERS, {})
    assert_error(resp, 422, "missing_field")


@pytest.mark.parametrize("extra", ["age", "id", "created_at", "Name",
                                   "password"])
def test_unknown_field(base, nothing_written, extra):
    body = user_body()
    body[extra] = 1
    resp = post(base, USERS, body)
    assert_error(resp, 422, "unknown_field", field=extra)
    assert by_email(base, body["email"]) == []


def test_unknown_field_with_null_value(base, nothing_written):
    body = user_body(nickname=None)
    resp = post(base, USERS, body)
    assert_error(resp, 422, "unknown_field", field="nickname")


# ---------------------------------------------------------------- batch

def test_batch_create(base):
    bodies = [user_body() for _ in range(3)]
    resp = post(base, USERS, bodies)
    assert resp.status == 201, describe(resp)
    assert_json_ct(resp)
    users = resp.json
    assert isinstance(users, list) and len(users) == 3
    ids = [u["id"] for u in users]
    assert len(set(ids)) == 3
    for body, u in zip(bodies, users):
        assert_user(u, body["name"], body["email"])
        assert get(base, f"{USERS}/{u['id']}").json == u


def test_batch_of_one(base):
    body = user_body()
    resp = post(base, USERS, [body])
    assert resp.status == 201, describe(resp)
    assert isinstance(resp.json, list) and len(resp.json) == 1
    assert_user(resp.json[0], body["name"], body["email"])


def test_batch_of_1000(base):
    marker = "b1000" + hexid()
    bodies = [{"name": f"{marker}-{i}", "email": uemail()} for i in range(1000)]
    resp = post(base, USERS, bodies)
    assert resp.status == 201, describe(resp)
    assert len(resp.json) == 1000
    assert [u["email"] for u in resp.json] == [b["email"] for b in bodies]
    assert len(list_ok(base, USERS, {"name": marker, "limit": 1000})) == 1000


def test_batch_of_1001_is_invalid_body(base, nothing_written):
    bodies = [user_body() for _ in range(1001)]
    resp = post(base, USERS, bodies)
    assert_error(resp, 422, "invalid_body", field=None)
    assert by_email(base, bodies[0]["email"]) == []


def test_empty_batch_is_invalid_body(base, nothing_written):
    resp = post(base, USERS, [])
    assert_error(resp, 422, "invalid_body", field=None)


@pytest.mark.parametrize("bad_index", [0, 2, 4])
def test_batch_is_atomic_on_invalid_item(base, nothing_written, bad_index):
    bodies = [user_body() for _ in range(5)]
    bodies[bad_index]["name"] = ""
    resp = post(base, USERS, bodies)
    assert_error(resp, 422, "invalid_field", field="name", index=bad_index)
    for b in bodies:
        assert by_email(base, b["email"]) == []


@pytest.mark.parametrize("mutate,code,field", [
    (lambda b: b.pop("email"), "missing_field", "email"),
    (lambda b: b.update(email=None), "missing_field", "email"),
    (lambda b: b.update(zip="1"), "unknown_field", "zip"),
    (lambda b: b.update(email="no-at-sign"), "invalid_field", "email"),
    (lambda b: b.update(name=7), "invalid_field", "name"),
])
def test_batch_item_errors_carry_index(base, nothing_written, mutate, code,
                                       field):
    bodies = [user_body() for _ in range(3)]
    mutate(bodies[1])
    resp = post(base, USERS, bodies)
    assert_error(resp, 422, code, field=field, index=1)
    assert by_email(base, bodies[0]["email"]) == []


def test_batch_reports_first_failing_item(base, nothing_written):
    bodies = [user_body() for _ in range(5)]
    bodies[1]["name"] = ""
    bodies[3]["email"] = "bad"
    resp = post(base, USERS, bodies)
    assert_error(resp, 422, "invalid_field", field="name", index=1)


def test_batch_duplicate_inside_batch_409_with_index(base, nothing_written):
    bodies = [user_body() for _ in range(4)]
    bodies[2]["email"] = bodies[0]["email"].upper()
    resp = post(base, USERS, bodies)
    assert_error(resp, 409, "conflict", field="email", index=2)
    for b in bodies:
        assert by_email(base, b["email"]) == []


def test_batch_duplicate_of_existing_user_409_with_index(base):
    existing = make_user_in(base)
    before = max_id(base, USERS)
    bodies = [user_body(), user_body(), user_body(email=existing["email"]),
              user_body()]
    resp = post(base, USERS, bodies)
    assert_error(resp, 409, "conflict", field="email", index=2)
    assert max_id(base, USERS) == before
    assert by_email(base, bodies[0]["email"]) == []


@pytest.mark.parametrize("items", [
    [1], [None], [[]], ["x"], [True], "OBJ_THEN_5", "OBJ_THEN_LIST",
])
def test_batch_of_non_objects_is_invalid_body(base, nothing_written, items):
    if items == "OBJ_THEN_5":
        items = [user_body(), 5]
    elif items == "OBJ_THEN_LIST":
        items = [user_body(), [user_body()]]
    resp = post(base, USERS, items)
    assert_error(resp, 422, "invalid_body", field=None, index=ANY)


# ---------------------------------------------------------------- GET by id

def test_get_unknown_user_404(base):
    resp = get(base, f"{USERS}/{max_id(base, USERS) + 1000}")
    assert_error(resp, 404, "not_found", field=None)


# ---------------------------------------------------------------- list

def test_list_filter_email_exact_case_insensitive(base):
    tag = hexid()
    email = f"Filter.{tag}@Example.Test"
    u = make_user_in(base, email=email)
    make_user_in(base, email=f"filter.{tag}x@example.test")
    assert list_ok(base, USERS, {"email": email}) == [u]
    assert list_ok(base, USERS, {"email": email.lower()}) == [u]
    assert list_ok(base, USERS, {"email": email.upper()}) == [u]
    assert list_ok(base, USERS, {"email": f"filter.{tag}"}) == []
    assert list_ok(base, USERS, {"email": f"%{tag}%"}) == []
    assert list_ok(base, USERS, {"email": email[:-1]}) == []


def test_list_filter_email_with_plus(base):
    email = f"a+{hexid()}@example.test"
    u = make_user_in(base, email=email)
    assert list_ok(base, USERS, {"email": email}) == [u]


def test_list_filter_name_substring_case_insensitive(base):
    m = "nm" + hexid()
    a = make_user_in(base, name=f"Alice {m} Smith")
    b = make_user_in(base, name=f"{m.upper()} Bob")
    make_user_in(base, name="unrelated " + hexid())
    assert list_ok(base, USERS, {"name": m}) == [a, b]
    assert list_ok(base, USERS, {"name": m.upper()}) == [a, b]
    assert list_ok(base, USERS, {"name": f"alice {m}"}) == [a]
    assert list_ok(base, USERS, {"name": f"{m} smith"}) == [a]


def test_list_filter_name_treats_wildcards_literally(base):
    m = "wc" + hexid()
    pct = make_user_in(base, name=f"{m} 50%off")
    no_pct = make_user_in(base, name=f"{m} 50xoff")
    under = make_user_in(base, name=f"{m} a_b")
    no_under = make_user_in(base, name=f"{m} axb")
    back = make_user_in(base, name=f"{m} c\\d")
    make_user_in(base, name=f"{m} cd")
    assert list_ok(base, USERS, {"name": f"{m} 50%off"}) == [pct]
    assert list_ok(base, USERS, {"name": f"{m} 50%"}) == [pct]
    assert list_ok(base, USERS, {"name": f"{m} a_b"}) == [under]
    assert list_ok(base, USERS, {"name": f"{m} c\\d"}) == [back]
    assert list_ok(base, USERS, {"name": f"{m}%"}) == []
    assert list_ok(base, USERS, {"name": f"{m}_"}) == []
    for row in list_ok(base, USERS, {"name": "%", "limit": 1000}):
        assert "%" in row["name"]
    for row in list_ok(base, USERS, {"name": "_", "limit": 1000}):
        assert "_" in row["name"]
    assert no_pct not in list_ok(base, USERS, {"name": "%", "limit": 1000})
    assert no_under not in list_ok(base, USERS, {"name": f"{m} a_"})


def test_list_filter_email_and_name_together(base):
    m = "both" + hexid()
    u = make_user_in(base, name=m)
    make_user_in(base, name=m)
    assert list_ok(base, USERS, {"name": m, "email": u["email"]}) == [u]
    assert list_ok(base, USERS, {"name": "zz" + m, "email": u["email"]}) == []


def test_list_default_limit_100_and_pages(base):
    m = "page" + hexid()
    resp = post(base, USERS, [{"name": f"{m}-{i:03d}", "email": uemail()}
                              for i in range(101)])
    assert resp.status == 201, describe(resp)
    created = resp.json
    rows = list_ok(base, USERS, {"name": m})
    assert rows == created[:100]
    assert list_ok(base, USERS, {"name": m, "limit": 1000}) == created
    assert list_ok(base, USERS, {"name": m, "offset": 100}) == created[100:]
    assert list_ok(base, USERS, {"name": m, "limit": 10, "offset": 95}) == \
        created[95:]
    assert list_ok(base, USERS, {"name": m, "limit": 1}) == created[:1]
    assert list_ok(base, USERS, {"name": m, "offset": 101}) == []


def test_list_order_by_columns_with_ties(base):
    m = "ord" + hexid()
    names = ["b", "a", "b", "c", "a"]
    bodies = [{"name": f"{m}-{n}", "email": f"{m}-{e}@example.test"}
              for n, e in zip(names, ["q", "z", "a", "m", "c"])]
    created = post(base, USERS, bodies).json
    for col in ("id", "name", "email", "created_at"):
        for desc in (False, True):
            want = expected_order(created, key=lambda r: r[col],
                                  descending=desc)
            got = list_ok(base, USERS,
                          {"name": m, "order_by": ("-" if desc else "") + col})
            assert [r["id"] for r in got] == want, f"order_by {col} {desc}"


def test_list_order_by_with_offset(base):
    m = "oo" + hexid()
    created = post(base, USERS, [{"name": f"{m}-{c}", "email": uemail()}
                                 for c in "dcba"]).json
    got = list_ok(base, USERS, {"name": m, "order_by": "name", "limit": 2,
                                "offset": 1})
    assert [r["name"] for r in got] == [f"{m}-b", f"{m}-c"]
    got = list_ok(base, USERS, {"name": m, "order_by": "-id", "limit": 2})
    assert got == [created[3], created[2]]


def test_list_rows_have_exact_fields(base):
    make_user_in(base)
    for row in list_ok(base, USERS, {"limit": 50, "order_by": "-id"}):
        assert set(row) == USER_FIELDS


def test_list_unknown_parameter(base):
    resp = get(base, USERS, {"user_id": "1"})
    err = assert_error(resp, 400, "invalid_query", index=None)
    for p in ("limit", "offset", "order_by", "email", "name"):
        assert p in err["message"]


def test_list_empty_filter_value(base):
    # `email=` is an empty parameter: 400 (docs/api.md, "Lists").
    for p in ("email", "name", "order_by", "limit", "offset"):
        resp = get(base, USERS, {p: ""})
        assert_error(resp, 400, "invalid_query", index=None)
