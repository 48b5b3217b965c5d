"""Two server processes on one records database (each backend): a login and a page's CSRF
token made by one are honoured by the other, as behind a load balancer that sends each request
to either. (The login limit counted at both: test_hardening.py.)"""

from __future__ import annotations

from fastapi.testclient import TestClient

from server.test_auth import page_csrf


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
