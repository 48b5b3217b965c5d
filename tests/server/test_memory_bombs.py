"""The audit's memory bombs against a real ``neopain serve`` process (issue 16): a 30000×30000
PNG of a few MB sent as one live frame raised the server's resident memory by 5.1 GB and took
14 s of CPU; three 10000×10000 RGBA PNG uploads at once took +6 GB. Each must now be answered
with a clear error within a second, and the server's memory must grow by less than 200 MB."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.sync.client import connect

from fuzz.live_server import LiveServer
from image_files import png_bomb

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]
GROWTH_MB = 200


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("bombs"), memory_mb=None) as server:
        patient = server.client.post("/api/patients", json={"record_number": "HC-B"})
        yield server, patient.json()["id"]


def test_a_30000_pixel_png_as_a_live_frame_is_refused_at_once(served):
    server, patient_id = served
    bomb = png_bomb(30000, 30000)
    session_id = server.new_session(patient_id)
    with connect(f"ws://127.0.0.1:{server.port}/ws/sessions/{session_id}",
                 additional_headers={"Cookie": server.cookie()}, max_size=None) as socket:
        assert socket.recv(timeout=60) == '{"type":"ready"}'
        with server.memory.window() as memory:
            started = time.monotonic()
            socket.send(bomb)
            reply = socket.recv(timeout=30)
            took = time.monotonic() - started
    assert '"type":"error"' in reply and "900,000,000 pixels" in reply and "1920" in reply
    assert took < 1.0
    assert memory["peak_mb"] < GROWTH_MB
    assert server.alive() and "Traceback" not in server.new_log()


def test_three_concurrent_10000_pixel_rgba_uploads_are_refused_at_once(served):
    server, patient_id = served
    bomb = png_bomb(10000, 10000, rgba=True)

    def upload(index: int):
        started = time.monotonic()
        response = server.client.post(f"/api/patients/{patient_id}/uploads",
                                      files={"file": (f"bomb{index}.png", bomb, "image/png")})
        return response, time.monotonic() - started

    with server.memory.window() as memory, ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(upload, range(3)))
    for response, took in answers:
        assert response.status_code == 422, response.text
        assert "10000×10000" in response.json()["detail"]
        assert took < 1.0
    assert memory["peak_mb"] < GROWTH_MB
    assert server.alive() and "Traceback" not in server.new_log()
