"""Accounts and logins: no default account, a setup page that works only while no user exists,
argon2id hashes, hashed login tokens in HTTP-only cookies, a login rate limit, safe redirects,
and no patient data in logs, validation errors or crash pages."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from neopain.server import security
from neopain.store import crud
from neopain.store.tables import LoginSession, User

STRONG = "a long enough password"


def page_csrf(response) -> str:
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', response.text).group(1)


def setup_admin(client, username="ada", password=STRONG, again=None):
    token = page_csrf(client.get("/setup"))
    return client.post("/setup", data={"csrf_token": token, "username": username,
                                       "password": password, "password_again": again or password},
                       follow_redirects=False)


def test_a_fresh_server_has_no_account_and_sends_visitors_to_setup(server):
    with server.db() as db:
        assert crud.count_users(db) == 0
    client = server.client()
    response = client.get("/login", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/setup"
    redirected = client.get("/patients", follow_redirects=False)
    assert redirected.status_code == 303 and redirected.headers["location"] == "/setup"
    assert client.get("/api/patients").status_code == 401


def test_setup_creates_one_admin_then_refuses_for_good(server):
    client = server.client()
    response = setup_admin(client)
    assert response.status_code == 303
    assert client.get("/patients").status_code == 200  # logged in as the new admin
    with server.db() as db:
        assert [(u.username, u.role) for u in crud.list_users(db)] == [("ada", "admin")]
    other = server.client()
    assert other.get("/setup").status_code == 403
    token = page_csrf(other.get("/login"))
    response = other.post("/setup", data={"csrf_token": token, "username": "mallory",
                                          "password": STRONG, "password_again": STRONG})
    assert response.status_code == 403
    with server.db() as db:
        assert crud.count_users(db) == 1


@pytest.mark.parametrize(("username", "password", "again", "problem"), [
    ("ada", "short", None, "at least 10"),
    ("ada", STRONG, STRONG + "x", "differ"),
    ("a d a", STRONG, None, "not valid"),
    ("adaadaadaada", "adaadaadaada", None, "must not be the username"),
])
def test_setup_refuses_weak_or_mistyped_credentials(server, username, password, again, problem):
    response = setup_admin(server.client(), username, password, again)
    assert response.status_code == 422 and problem in response.text
    with server.db() as db:
        assert crud.count_users(db) == 0


def test_passwords_are_stored_as_argon2id_hashes_and_tokens_as_sha256(server):
    client = server.client("clinician")
    with server.db() as db:
        user = crud.find_user(db, "clinician")
        logins = db.query(LoginSession).all()
    assert user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in user.password_hash
    assert security.verify_password(user.password_hash, "correct horse battery")
    token = client.cookies.get("neopain_session")
    assert [login.token_hash for login in logins] == [security.hash_token(token)]
    assert token not in {login.token_hash for login in logins}


def test_login_cookie_is_http_only_same_site_and_secure_when_asked(tmp_path, make):
    server = make(tmp_path, secure_cookies=True)
    with server.db() as db:
        crud.create_user(db, username="nurse", role="clinician",
                         password_hash=security.hash_password(STRONG))
    client = TestClient(server.app, base_url="https://testserver")
    response = client.post("/api/login", json={"username": "nurse", "password": STRONG})
    cookie = response.headers["set-cookie"]
    assert "neopain_session=" in cookie
    for flag in ("HttpOnly", "SameSite=lax", "Secure", "Path=/"):
        assert flag.lower() in cookie.lower()


def test_cookies_are_secure_by_default_over_https_only(server):
    with server.db() as db:
        crud.create_user(db, username="nurse", role="clinician",
                         password_hash=security.hash_password(STRONG))
    for scheme, secure in (("http", False), ("https", True)):
        client = TestClient(server.app, base_url=f"{scheme}://testserver")
        cookie = client.post("/api/login", json={"username": "nurse", "password": STRONG}
                             ).headers["set-cookie"]
        assert ("secure" in cookie.lower()) is secure


def test_failed_logins_are_rate_limited_per_username_and_address(server):
    with server.db() as db:
        crud.create_user(db, username="nurse", role="clinician",
                         password_hash=security.hash_password(STRONG))
    now = [1000.0]
    server.app.state.neopain.limiter.clock = lambda: now[0]
    client = server.client()
    for _ in range(server.settings.login_attempts):
        wrong = client.post("/api/login", json={"username": "nurse", "password": "wrong pw!!"})
        assert wrong.status_code == 401
    refused = client.post("/api/login", json={"username": "nurse", "password": STRONG})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    now[0] += server.settings.login_window_s + 1
    assert client.post("/api/login", json={"username": "nurse", "password": STRONG}
                       ).status_code == 200


def test_unknown_user_and_wrong_password_get_the_same_answer(server):
    with server.db() as db:
        crud.create_user(db, username="nurse", role="clinician",
                         password_hash=security.hash_password(STRONG))
    client = server.client()
    unknown = client.post("/api/login", json={"username": "nobody", "password": STRONG})
    wrong = client.post("/api/login", json={"username": "nurse", "password": "wrong pw!!"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_logout_and_deactivation_end_the_login(server):
    client = server.client("clinician")
    assert client.get("/api/me").status_code == 200
    assert client.post("/api/logout").status_code == 204
    client.cookies.set("neopain_session", "stolen")
    assert client.get("/api/me").status_code == 401
    again = server.client("researcher")
    with server.db() as db:
        crud.update_user(db, crud.find_user(db, "researcher"), actor=None, active=False)
    assert again.get("/api/me").status_code == 401
    relogin = again.post("/api/login", json={"username": "researcher",
                                             "password": "correct horse battery"})
    assert relogin.status_code == 401


def test_login_form_redirects_only_within_the_site(server):
    with server.db() as db:
        crud.create_user(db, username="nurse", role="clinician",
                         password_hash=security.hash_password(STRONG))
    for target, expected in (("/patients/3", "/patients/3"), ("//evil.example/x", "/patients"),
                             ("https://evil.example", "/patients")):
        client = server.client()
        token = page_csrf(client.get("/login"))
        response = client.post("/login", follow_redirects=False, data={
            "csrf_token": token, "username": "nurse", "password": STRONG, "next": target})
        assert response.headers["location"] == expected


def test_api_login_accepts_json_only(server):
    response = server.client().post("/api/login", content='{"username": "a", "password": "b"}',
                                    headers={"content-type": "text/plain"})
    assert response.status_code in (415, 422)
    # the bodies another site's page can send without CORS, with a real account's password:
    # none may log in
    with server.db() as db:
        crud.create_user(db, username="nurse", role="clinician",
                         password_hash=security.hash_password(STRONG))
    good = f'{{"username": "nurse", "password": "{STRONG}"}}'.encode()
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        request = server.client().build_request("POST", "/api/login", content=good)
        request.headers.pop("content-type", None)
        if content_type is not None:
            request.headers["content-type"] = content_type
        refused = server.client().send(request)
        assert refused.status_code in (415, 422), content_type
        assert "set-cookie" not in refused.headers, content_type
    assert server.client().post("/api/login", content=good,
                                headers={"content-type": "application/json"}).status_code == 200


def test_patient_data_stays_out_of_logs_validation_errors_and_crash_pages(server, caplog,
                                                                           monkeypatch):
    caplog.set_level(logging.DEBUG)
    client = server.client("clinician")
    client.get("/patients", params={"q": "Silva"})
    client.get("/api/patients", params={"q": "Silva"})
    # a name typed into the birth-date field: FastAPI's default reply would echo it
    invalid = client.post("/api/patients", json={"name": "Baby Silva",
                                                 "birth_date": "Silva, Maria"})
    assert invalid.status_code == 422 and "Silva" not in invalid.text
    assert "birth_date" in invalid.text
    page = client.post("/patients", data={"name": "Baby Silva", "birth_date": "Silva, Maria"})
    assert page.status_code == 422 and "birth_date" in page.text

    def crash(*args, **kwargs):
        raise RuntimeError("cannot find Baby Silva")

    monkeypatch.setattr(crud, "search_patients", crash)
    quiet = TestClient(server.app, raise_server_exceptions=False, cookies=client.cookies)
    for path in ("/patients?q=Silva", "/api/patients?q=Silva"):
        response = quiet.get(path)
        assert response.status_code == 500 and "Silva" not in response.text
    server_log = "\n".join(r.getMessage() for r in caplog.records
                           if not r.name.startswith("httpx"))  # httpx logs the client's side
    assert "Silva" not in server_log
    assert "GET /patients 200" in server_log  # paths are logged, their queries are not


def test_pages_carry_a_self_only_content_security_policy(server):
    response = server.client().get("/setup")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "http" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert re.findall(r'(?:src|href)="(https?:)?//', response.text) == []


def test_argon2_hashes_are_salted():
    first, second = security.hash_password(STRONG), security.hash_password(STRONG)
    assert first != second and first.startswith("$argon2id$")
    assert not security.verify_password(first, STRONG + "!")
    assert not security.verify_password(None, STRONG)


def test_user_rows_never_hold_a_plain_password(server):
    setup_admin(server.client())
    with server.db() as db:
        assert STRONG not in db.query(User).one().password_hash
