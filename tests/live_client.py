"""The bedside's WebSocket as the tests drive it."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def live_socket(client, session_id: int):
    """The session's WebSocket once the server said it is ready for frames."""
    with client.websocket_connect(f"/ws/sessions/{session_id}") as socket:
        assert socket.receive_json() == {"type": "ready"}
        yield socket
