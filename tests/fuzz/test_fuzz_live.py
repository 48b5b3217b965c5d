"""The live WebSocket under hostile input: garbage, huge and bomb frames, JSON of every shape,
commands, handshakes to ids beyond 64 bits, bursts of connections. Every frame gets a reply
within 10 s, the stream is never closed with 1011, a handshake never answers 5xx, nothing
reaches the server log, and a bomb frame is refused within 1 s and 200 MB (issue 16: a 30000²
PNG frame cost +5.1 GB and 14 s; an id beyond 64 bits answered the handshake with 500)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from fuzz.conftest import ServerLog
from fuzz.inputs import examples
from fuzz.live import LiveFuzz, TestClientSocket, WsAction, ws_actions, ws_corpus
from fuzz.sandbox import bounded, memory_mb, reset_peak

CORPUS = ws_corpus()


@pytest.fixture(scope="module")
def live(fuzz_server):
    """A ``LiveFuzz`` on a live session of the module's server (a new one after a stop)."""
    client, patient = fuzz_server.client, fuzz_server.known["patients"][1]
    fuzz = LiveFuzz(lambda path: TestClientSocket(client, path),
                    lambda: client.post(f"/api/patients/{patient}/sessions").json()["id"],
                    server_log=fuzz_server.log.read)
    yield fuzz
    fuzz.close()


@pytest.mark.parametrize("name", list(CORPUS))  # the corpus's order: stop comes last
def test_the_audits_frames_and_handshakes_are_refused_fast_and_small(live, name):
    action = CORPUS[name]
    rss = memory_mb("VmRSS")
    reset_peak()
    outcome = live.act(action)
    grown = replace(outcome, peak_mb=memory_mb("VmHWM") - rss)
    bounded(grown, slow_s=1.0, heavy_mb=200.0, what=name).check()
    assert outcome.reply == action.reply, outcome.output or outcome.reply
    assert action.says in outcome.output, outcome.output


@pytest.mark.slow
@examples(150)
@given(data=st.data())
def test_hostile_live_input_gets_replies_and_never_a_server_error(fuzz_server, live, data):
    live.act(data.draw(ws_actions(fuzz_server.ids))).check()


def test_the_fuzzer_sees_a_crashing_stream():
    """Guards the guard: a stream whose handler raises is a server error with the exception
    from the log, not a passing input."""
    app = FastAPI()

    @app.websocket("/ws/sessions/{session_id}")
    async def stream(websocket: WebSocket, session_id: int) -> None:
        await websocket.accept()
        await websocket.send_json({"type": "ready"})
        await websocket.receive_bytes()
        raise ZeroDivisionError("the stream failed")

    log = ServerLog(app)
    client = TestClient(log)
    fuzz = LiveFuzz(lambda path: TestClientSocket(client, path), lambda: 1, server_log=log.read)
    outcome = fuzz.act(WsAction("bytes", b"frame"))
    assert outcome.problem == "5xx" and "ZeroDivisionError" in outcome.logged
