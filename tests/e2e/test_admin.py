"""docs/api.md "Administration and access": admin routes answer only when the
service has an admin token (--admin-token / ADMIN_TOKEN, or
--admin-token-file / ADMIN_TOKEN_FILE) and the request carries
"Authorization: Bearer <token>". Without a token configured every admin
route is 404; a missing, malformed or wrong bearer is 401 unauthorized
with WWW-Authenticate: Bearer; the token never reaches the log."""
import subprocess

import pytest

from contract import assert_error
from dead_letter_helpers import DEAD_LETTERS, admin, invoice_env, new_token
from harness import Service, System, bin_dir
from helpers import http
from conftest import _require_binaries

ADMIN_ROUTES = [
    ("GET", DEAD_LETTERS),
    ("GET", f"{DEAD_LETTERS}/1"),
    ("POST", f"{DEAD_LETTERS}/1/redrive"),
    ("POST", f"{DEAD_LETTERS}/redrive"),
]


@pytest.fixture(scope="module")
def tokened():
    _require_binaries()
    token = new_token()
    s = System(service_env={"invoice": invoice_env(token)})
    s.wait_ready()
    yield s, token
    s.close()


def test_without_a_token_configured_every_admin_route_is_404(system):
    for method, path in ADMIN_ROUTES:
        for auth in (None, "Bearer anything", "Basic dXNlcjpwYXNz"):
            headers = {"Authorization": auth} if auth else {}
            r = http(method, system.invoice.base_url + path, headers=headers)
            assert r.status == 404, (method, path, auth, r)
            assert_error(r, 404, "not_found")
            assert "WWW-Authenticate" not in r.headers


def test_missing_malformed_or_wrong_bearer_is_401_with_a_challenge(tokened):
    s, token = tokened
    wrong = [
        None,                       # no Authorization at all
        "",                         # empty
        "Bearer",                   # scheme without a token
        "Bearer ",
        f"Bearer  {token}",         # two spaces
        f"Basic {token}",           # another scheme
        f"Token {token}",
        token,                      # no scheme
        f"Bearer {token}x",         # longer
        f"Bearer {token[:-1]}",     # shorter
        f"Bearer {token[:-1]}X",    # same length, last byte differs
        f"Bearer X{token[1:]}",     # same length, first byte differs
        f"Bearer {new_token()}",
        f"Bearer {token} extra",
    ]
    for method, path in ADMIN_ROUTES:
        for auth in wrong:
            headers = {} if auth is None else {"Authorization": auth}
            r = http(method, s.invoice.base_url + path, headers=headers)
            assert r.status == 401, (method, path, auth, r)
            assert_error(r, 401, "unauthorized")
            assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
            assert token not in r.text


def test_the_right_bearer_is_let_in(tokened):
    s, token = tokened
    r = admin(s.invoice, "GET", DEAD_LETTERS, token)
    assert r.status == 200 and isinstance(r.json, list), r
    # The scheme is case-insensitive (RFC 7235).
    r = http("GET", s.invoice.base_url + DEAD_LETTERS, headers={"Authorization": f"bearer {token}"})
    assert r.status == 200, r
    # Past the check, the route answers as usual: an unknown id is 404.
    assert admin(s.invoice, "GET", f"{DEAD_LETTERS}/999999", token).status == 404
    assert admin(s.invoice, "POST", f"{DEAD_LETTERS}/999999/redrive", token).status == 404
    assert admin(s.invoice, "POST", f"{DEAD_LETTERS}/redrive", token).status == 202
    # A browser may send the header: the preflight allows it.
    pre = http("OPTIONS", s.invoice.base_url + DEAD_LETTERS,
               headers={"Origin": "http://127.0.0.1",
                        "Access-Control-Request-Method": "GET",
                        "Access-Control-Request-Headers": "authorization"})
    assert pre.status == 204, pre
    assert "authorization" in pre.headers.get("Access-Control-Allow-Headers", "").lower()


def test_the_token_never_appears_in_the_log(tokened):
    s, token = tokened
    for method, path in ADMIN_ROUTES:
        admin(s.invoice, method, path, token)
        admin(s.invoice, method, path, token + "x")
        admin(s.invoice, method, path, token[:-1])
    s.invoice.stop()
    s.invoice.start()  # the start-up log too
    text = s.invoice.log_text()
    assert "dead-letters" in text  # the requests were logged (debug level)
    assert token not in text
    assert token[:-1] not in text


def test_token_from_a_file_and_bad_token_settings(tokened, tmp_path):
    s, _ = tokened
    token = new_token()
    path = tmp_path / "token"
    path.write_text(token + "\n")
    svc = Service("invoice", tmp_path, s.amqp_url, args=["--admin-token-file", str(path)])
    try:
        svc.start()
        assert admin(svc, "GET", DEAD_LETTERS, token).status == 200
        assert admin(svc, "GET", DEAD_LETTERS, token + "x").status == 401
        assert admin(svc, "GET", DEAD_LETTERS, None).status == 401
    finally:
        svc.stop()
    assert token not in svc.log_text()

    binary = str(bin_dir() / "invoice-service")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    cases = [
        ([binary, "--admin-token", token, "--admin-token-file", str(path)], {}),
        ([binary, "--admin-token-file", str(path)], {"ADMIN_TOKEN": token}),
        ([binary, "--admin-token-file", str(empty)], {}),
        ([binary, "--admin-token-file", str(tmp_path / "missing")], {}),
        ([binary, "--admin-token", "has space"], {}),
    ]
    for argv, env in cases:
        res = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", **env},
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 2, (argv, env, res.returncode, res.stderr)
        assert token not in res.stdout + res.stderr
