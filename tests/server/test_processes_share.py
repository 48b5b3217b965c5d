"""Two server processes on one records database (each backend): a login, a page's CSRF token
and a signed link made by one are honoured by the other, as behind a load balancer that sends
each request to either; and the login limit counts the attempts made at both."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from server.conftest import PASSWORD


def page_csrf(response) -> str:
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', response.text).group(1)


def test_a_page_served_by_one_process_is_accepted_by_another(tmp_path, make):
    first = make(tmp_path / "a", timeline_interval_s=0.0)
    second = make(tmp_path / "b", timeline_interval_s=0.0)
    to_first = first.client("clinician")
    to_second = TestClient(second.app, base_url="http://testserver")
    to_second.cookies.update(to_first.cookies)
    token = page_csrf(to_first.get("/patients/new"))
    response = to_second.post("/api/patients", json={"record_number": "HC-2"},
                              headers={"X-CSRF-Token": token})
    assert response.status_code == 201, response.text
    assert to_first.get(f"/api/patients/{response.json()['id']}").status_code == 200


def test_the_login_limit_counts_attempts_at_every_process(tmp_path, make):
    first = make(tmp_path / "a", login_attempts=3, login_window_s=300)
    second = make(tmp_path / "b", login_attempts=3, login_window_s=300)
    first.client("clinician")  # the account
    wrong = {"username": "clinician", "password": "not " + PASSWORD}
    codes = [TestClient(server.app).post("/api/login", json=wrong).status_code
             for server in (first, second, first, second)]
    assert codes == [401, 401, 401, 429]
