"""Every route of the app, enumerated from the app itself, refuses the wrong visitor: 401
without a login, 403 for a role that may not, 403 for a state change without the CSRF token.

A route added to the app without a row in ``ACCESS`` fails ``test_every_route_is_classified``,
so no route can ship without someone deciding who may call it. Views of patient data leave an
audit row (``test_every_patient_data_view_is_audited``).
"""

from __future__ import annotations

import re

import pytest
from starlette.websockets import WebSocketDisconnect

from neopain.store import crud
from neopain.store.tables import AuditEntry
from server.conftest import seed

ANY = ("admin", "clinician", "researcher")
CARE = ("admin", "clinician")
ADMIN = ("admin",)
PUBLIC = {
    ("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("GET", "/setup"), ("POST", "/setup"),
    ("POST", "/api/login"), ("GET", "/api/openapi.json"), ("MOUNT", "/static"),
}
ACCESS = {
    ("POST", "/logout"): ANY,
    ("GET", "/api/me"): ANY,
    ("POST", "/api/logout"): ANY,
    ("GET", "/patients"): ANY,
    ("GET", "/patients/new"): CARE,
    ("POST", "/patients"): CARE,
    ("GET", "/patients/{patient_id}"): ANY,
    ("GET", "/patients/{patient_id}/edit"): CARE,
    ("POST", "/patients/{patient_id}/edit"): CARE,
    ("GET", "/patients/{patient_id}/profile"): ANY,
    ("GET", "/patients/{patient_id}/charts/{by}.svg"): ANY,
    ("GET", "/sessions/{session_id}/timeline.svg"): ANY,
    ("GET", "/assessments/{assessment_id}/snapshot.jpg"): ANY,
    ("GET", "/patients/{patient_id}/live"): CARE,
    ("GET", "/instructions"): ANY,
    ("GET", "/users"): ADMIN,
    ("POST", "/users"): ADMIN,
    ("POST", "/users/{user_id}"): ADMIN,
    ("GET", "/audit"): ADMIN,
    ("GET", "/api/patients"): ANY,
    ("POST", "/api/patients"): CARE,
    ("GET", "/api/patients/{patient_id}"): ANY,
    ("PATCH", "/api/patients/{patient_id}"): CARE,
    ("GET", "/api/patients/{patient_id}/sessions"): ANY,
    ("POST", "/api/patients/{patient_id}/sessions"): CARE,
    ("GET", "/api/patients/{patient_id}/assessments"): ANY,
    ("GET", "/api/sessions/{session_id}"): ANY,
    ("GET", "/api/sessions/{session_id}/assessments"): ANY,
    ("POST", "/api/sessions/{session_id}/stop"): CARE,
    ("POST", "/api/patients/{patient_id}/uploads"): CARE,
    ("POST", "/patients/{patient_id}/upload"): CARE,
    ("WS", "/ws/sessions/{session_id}"): CARE,
    ("GET", "/ward"): ANY,
    ("GET", "/api/ward"): ANY,
    ("GET", "/api/alarms"): ANY,
    ("POST", "/api/alarms/{alarm_id}/ack"): CARE,
    ("POST", "/api/sessions/{session_id}/pause-alarms"): CARE,
    ("GET", "/api/patients/{patient_id}/alarm-limits"): ANY,
    ("PUT", "/api/patients/{patient_id}/alarm-limits"): CARE,
    ("WS", "/ws/ward"): ANY,
    ("GET", "/patients/{patient_id}/alarms"): ANY,
    ("POST", "/patients/{patient_id}/alarms"): CARE,
    ("GET", "/devices"): ADMIN,
    ("POST", "/devices"): ADMIN,
    ("POST", "/devices/{device_id}/revoke"): ADMIN,
    ("POST", "/patients/{patient_id}/devices"): CARE,
    ("POST", "/devices/{device_id}/unbind"): CARE,
    ("GET", "/api/devices"): ADMIN,
    ("POST", "/api/devices"): ADMIN,
    ("POST", "/api/devices/{device_id}/revoke"): ADMIN,
    ("POST", "/api/patients/{patient_id}/devices"): CARE,
    ("POST", "/api/devices/{device_id}/unbind"): CARE,
}
DEVICE = {("GET", "/api/device/clock"), ("POST", "/api/device/heartbeat"),
          ("POST", "/api/device/records")}
"""Routes a bed device's token opens, and nothing else (tests/server/test_device_api.py)."""
NOT_PATIENT_DATA = {"/api/me", "/instructions", "/users", "/audit", "/patients/new"}
LOGOUTS = {"/logout", "/api/logout"}


def fill(path: str, records: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(records[m.group(1)]), path)


def csrf_of(client) -> str:
    """The CSRF token of an anonymous browser (the login page sets its pre-login cookie)."""
    page = client.get("/login").text
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)


def call(client, method: str, path: str, *, csrf: str | None, jpeg_frame: bytes = b""):
    """The status of one request (the close code for a WebSocket, 200 when it answers)."""
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    default = client.headers.pop("X-CSRF-Token", None)
    try:
        return _call(client, method, path, headers=headers, jpeg_frame=jpeg_frame)
    finally:
        if default is not None:
            client.headers["X-CSRF-Token"] = default


def _call(client, method: str, path: str, *, headers: dict, jpeg_frame: bytes):
    if method == "WS":
        try:
            with client.websocket_connect(path) as socket:
                socket.send_bytes(jpeg_frame)
                socket.receive_json()
        except WebSocketDisconnect as closed:
            return closed.code
        return 200
    return client.request(method, path, headers=headers, follow_redirects=False).status_code


@pytest.fixture(scope="module")
def module_records(module_server) -> dict[str, int]:
    """The conftest's records and a registered device (``device_id``)."""
    records = seed(module_server)
    with module_server.db() as db:
        device, _ = crud.create_device(db, actor=None, name="Access bed")
    return records | {"device_id": device.id}


@pytest.fixture(scope="module")
def clients(module_server) -> dict[str, object]:
    """A logged-in client per role, shared by the module's tests."""
    return {role: module_server.client(role) for role in ANY}


def test_every_route_is_classified(app_routes):
    routes = set(app_routes)
    unclassified = routes - PUBLIC - set(ACCESS) - DEVICE
    assert not unclassified, f"add these routes to ACCESS, DEVICE or PUBLIC: {sorted(unclassified)}"
    assert set(ACCESS) | PUBLIC | DEVICE == routes, "ACCESS lists routes the app no longer has"


@pytest.mark.parametrize("route", sorted(DEVICE), ids=lambda r: f"{r[0]} {r[1]}")
def test_device_routes_answer_401_to_everyone_without_a_device_token(module_server,
                                                                     clients, route):
    method, path = route
    for client in [module_server.client(), *clients.values()]:
        assert call(client, method, path, csrf=client.csrf if hasattr(client, "csrf") else None
                    ) == 401


@pytest.mark.parametrize("route", sorted(ACCESS), ids=lambda r: f"{r[0]} {r[1]}")
def test_without_login_every_protected_route_answers_401(module_server, module_records, route):
    method, path = route
    client = module_server.client()
    status = call(client, method, fill(path, module_records), csrf=csrf_of(client))
    assert status == (4401 if method == "WS" else 401)


@pytest.mark.parametrize("route", sorted(ACCESS), ids=lambda r: f"{r[0]} {r[1]}")
def test_roles_without_the_right_get_403_and_those_with_it_get_in(module_server, module_records,
                                                                  clients, route):
    method, path = route
    for role in ANY:
        # logging out would end the shared client's login: those routes get their own
        client = module_server.client(role) if path in LOGOUTS else clients[role]
        status = call(client, method, fill(path, module_records), csrf=client.csrf)
        if role in ACCESS[route]:
            assert status not in (401, 403, 4401, 4403), (role, status)
        else:
            assert status == (4403 if method == "WS" else 403), (role, status)


@pytest.mark.parametrize("route", sorted(r for r in ACCESS if r[0] in ("POST", "PATCH", "PUT")),
                         ids=lambda r: f"{r[0]} {r[1]}")
def test_state_changes_without_the_csrf_token_are_refused(module_records, clients, route):
    method, path = route
    client = clients["admin"]
    assert call(client, method, fill(path, module_records), csrf=None) == 403
    assert call(client, method, fill(path, module_records), csrf="0" * 64) == 403


@pytest.mark.parametrize("route", sorted(r for r in ACCESS if r[0] == "GET"
                                         and r[1] not in NOT_PATIENT_DATA),
                         ids=lambda r: f"{r[0]} {r[1]}")
def test_every_patient_data_view_is_audited(module_server, module_records, clients, route):
    _, path = route
    with module_server.db() as db:
        before = db.query(AuditEntry).filter_by(action="view", username="admin").count()
    assert clients["admin"].get(fill(path, module_records)).status_code == 200
    with module_server.db() as db:
        after = db.query(AuditEntry).filter_by(action="view", username="admin").count()
    assert after == before + 1


def test_websocket_from_another_site_is_refused(module_records, clients):
    client = clients["clinician"]
    path = f"/ws/sessions/{module_records['open_session_id']}"
    with pytest.raises(WebSocketDisconnect) as closed, \
            client.websocket_connect(path, headers={"origin": "https://evil.example"}) as socket:
        socket.receive_json()
    assert closed.value.code == 4403
