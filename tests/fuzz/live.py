"""Hostile input for the live WebSocket ``/ws/sessions/{id}`` and a driver that judges it.

A ``WsAction`` is a binary frame (garbage, mutated JPEGs, crafted headers, bombs, huge), a
text message (JSON of every shape, commands, deep nesting), a handshake to a hostile session
id, or a burst of connections opened and dropped. ``LiveFuzz`` plays actions on one stream
(reconnecting, and starting a new session after a stop) through a ``Socket``: the in-process
``TestClientSocket`` or ``RealSocket`` (the ``websockets`` client). A reply that does not come
within the bound is a hang; a close with 1011 (or a dropped connection), a handshake answered
5xx, or a traceback the server logged is a failure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from hypothesis import strategies as st

from fuzz.inputs import deep, json_values, nested_texts
from fuzz.media import bombs, frame_jpeg, image_bytes, mutated
from fuzz.sandbox import Outcome, failure
from fuzz.web import IDS, _clean, read_traceback
from image_files import png_bomb

EXPECTED_CLOSES = {1000, 1008, 1009, 1013, 4401, 4403, 4404, 4409}
"""Normal end, no such route (policy), message too big, try later, the route's refusals."""
REPLIES = {"error", "assessment", "stopped"}
REPLY_TO_BOMB = ("error", "pixels")
"""A bomb frame is refused with an error that names its pixel count."""


@dataclass(frozen=True)
class WsAction:
    """``kind``: bytes or text (sent on the stream), handshake (``data`` is the session id in
    the path), churn (``data`` connections opened and dropped at once). ``before``: messages
    sent on the stream first, unanswered (a command that sets options, then the frame). A
    corpus action also says what it must end in: ``reply`` (the reply's type; for a
    handshake ``closed <code>`` or ``refused <status>``) and a text the reply ``says``."""

    kind: str
    data: bytes | str | int = b""
    before: tuple[str, ...] = ()
    reply: str = ""
    says: str = ""


class Closed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"closed with code {code}")
        self.code = code


class Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"handshake answered {status}")
        self.status = status


class Socket(Protocol):
    def send(self, data: bytes | str) -> None: ...

    def receive(self, timeout_s: float) -> dict:
        """The next JSON message; raises ``Closed``, or ``TimeoutError`` after ``timeout_s``."""

    def close(self) -> None: ...


def commands() -> st.SearchStrategy[str]:
    kinds = st.sampled_from(["options"] * 6 + ["stop", "OPTIONS", "", "ready", "error"])
    return st.fixed_dictionaries({"type": kinds | json_values()},
                                 optional={"heatmap": json_values(), "x": json_values()}
                                 ).map(json.dumps)


def ws_actions(known_ids: list[int]) -> st.SearchStrategy[WsAction]:
    """Frames (4 in 7), text (2 in 7), handshakes and connection bursts."""
    frame = st.just(frame_jpeg())
    frames = st.one_of(frame, mutated(frame), mutated(frame), image_bytes(), st.binary(
        max_size=4096), st.just(b""), st.just(png_bomb(2000, 16)), st.just(OVER_LIMIT))
    texts = st.one_of(commands(), commands(), st.builds(json.dumps, json_values()),
                      nested_texts(), st.text(max_size=64).map(_clean), st.just("x" * 10**6))
    ids = st.sampled_from(IDS + [str(i) for i in known_ids])
    return st.one_of(*[st.builds(WsAction, st.just("bytes"), frames)] * 4,
                     *[st.builds(WsAction, st.just("text"), texts)] * 2,
                     st.builds(WsAction, st.just("handshake"), ids),
                     st.builds(WsAction, st.just("churn"), st.integers(1, 4)))


OVER_LIMIT = b"\xff\xd8\xff" + b"\x00" * 4_000_000
"""Just over the route's 4 MB frame limit."""


def ws_corpus() -> dict[str, WsAction]:
    """The audit's frames (the 30000² PNG, the 10000² RGBA PNG), a 17 MB frame (over the
    server's WebSocket message limit), 100,000-deep JSON, ids beyond 64 bits; each with the
    reply it must get in process (no route takes a hostile id: closed 1008, policy). In this
    order: ``stop`` ends the stream last."""
    corpus = {f"frame {name}": WsAction("bytes", data, reply=REPLY_TO_BOMB[0],
                                        says=REPLY_TO_BOMB[1])
              for name, data in bombs().items()}
    corpus["frame of 17 MB"] = WsAction("bytes", b"\x00" * 17_000_000, reply="error",
                                        says="larger than")  # uvicorn closes with 1009 first
    corpus["text nested 100000 deep"] = WsAction("text", deep(100_000), reply="error")
    corpus["face frame with heatmap on"] = WsAction(
        "bytes", frame_jpeg(), before=(json.dumps({"type": "options", "heatmap": True}),),
        reply="assessment", says="heatmap")
    for ident in ("99999999999999999999999", "9223372036854775808", "-1", "1e23"):
        corpus[f"handshake /ws/sessions/{ident}"] = WsAction("handshake", ident,
                                                             reply="closed 1008")
    corpus["stop"] = WsAction("text", json.dumps({"type": "stop"}), reply="stopped")
    return corpus


class LiveFuzz:
    """Plays ``WsAction``s on a live stream and judges each.

    Args:
        connect: opens a socket on a path (raises ``Refused`` or ``Closed``).
        new_session: starts a live session, returns its id.
        timeout_s: a reply later than this is a hang.
        server_log: the server's log text since the last call.
    """

    def __init__(self, connect: Callable[[str], Socket], new_session: Callable[[], int], *,
                 timeout_s: float = 10.0, server_log: Callable[[], str] = lambda: "") -> None:
        self.connect = connect
        self.new_session = new_session
        self.timeout_s = timeout_s
        self.server_log = server_log
        self.session_id = new_session()
        self.socket: Socket | None = None

    def act(self, action: WsAction) -> Outcome:
        started = time.perf_counter()
        what = f"{action.kind} {family(action)}".strip()
        try:
            outcome = self._act(action)
        except TimeoutError:
            self._drop()
            outcome = Outcome("hang", f"hang after {what}", f"no reply in {self.timeout_s} s")
        except Closed as closed:
            self._drop()
            outcome = Outcome(reply=f"closed {closed.code}") if closed.code in EXPECTED_CLOSES \
                else Outcome("5xx", f"closed {closed.code} after {what}")
        except Refused as refused:
            outcome = Outcome(reply=f"refused {refused.status}") if refused.status < 500 \
                else Outcome("5xx", f"handshake {refused.status} ({what})")
        except Exception as error:  # an in-process server's exception surfacing here
            self._drop()
            outcome = failure(error)
        outcome = replace(outcome, seconds=time.perf_counter() - started)
        logged = read_traceback(self.server_log, expected=outcome.problem == "5xx")
        if logged is None:
            return outcome
        if outcome.problem is None:
            outcome = replace(outcome, problem="traceback", signature=f"{logged[0]} ({what})")
        elif outcome.problem == "5xx":
            outcome = replace(outcome, signature=f"{outcome.signature}: {logged[0]}")
        return replace(outcome, logged=logged[1])

    def _act(self, action: WsAction) -> Outcome:
        if action.kind == "handshake":
            return Outcome(reply=self._visit(f"/ws/sessions/{action.data}", wait=True))
        if action.kind == "churn":
            for _ in range(int(action.data)):
                self._visit(f"/ws/sessions/{self.session_id}", wait=False)
            return Outcome()
        socket = self._stream()
        for message in action.before:
            socket.send(message)
        socket.send(action.data)
        if action.kind == "text":
            socket.send(b"x")  # a frame that is not an image: the reply shows the stream lives
        reply = socket.receive(self.timeout_s)
        if reply.get("type") == "stopped":
            self._drop()
            self.session_id = self.new_session()
        elif reply.get("type") not in REPLIES:
            return Outcome("reply", f"unexpected reply to {action.kind}", str(reply)[:200])
        return Outcome(reply=str(reply.get("type")), output=json.dumps(reply)[:2000])

    def _stream(self) -> Socket:
        for _ in range(2):
            if self.socket is not None:
                return self.socket
            try:
                self.socket = self.connect(f"/ws/sessions/{self.session_id}")
                ready = self.socket.receive(self.timeout_s)
            except Closed as closed:
                if closed.code != 4409:
                    raise
                self.socket, self.session_id = None, self.new_session()
                continue
            if ready != {"type": "ready"}:
                raise Closed(-1)
        raise Closed(4409)

    def _visit(self, path: str, *, wait: bool) -> str:
        """Open ``path`` (and wait for its first message): ``closed <code>`` or the message's
        type; ``Refused`` passes through."""
        try:
            socket = self.connect(path)
        except Closed as closed:
            if closed.code not in EXPECTED_CLOSES:
                raise
            return f"closed {closed.code}"
        try:
            return str(socket.receive(self.timeout_s).get("type")) if wait else ""
        except Closed as closed:
            if closed.code not in EXPECTED_CLOSES:
                raise
            return f"closed {closed.code}"
        finally:
            socket.close()

    def _drop(self) -> None:
        socket, self.socket = self.socket, None
        if socket is not None:
            try:
                socket.close()
            except (Closed, OSError):
                pass

    def close(self) -> None:
        self._drop()


def family(action: WsAction) -> str:
    """What kind of payload, for grouping failures: png, jpeg, json, huge, ..."""
    data = action.data
    if isinstance(data, int) or action.kind == "handshake":
        return ""
    if len(data) > 1_000_000:
        return "over 1 MB"
    if isinstance(data, str):
        return "json" if data[:1] in "[{" else "text"
    return next((name for magic, name in ((b"\x89PNG", "png"), (b"\xff\xd8", "jpeg"),
                                          (b"BM", "bmp"), (b"GIF", "gif"), (b"RIFF", "riff"))
                 if data.startswith(magic)), "bytes")


class TestClientSocket:
    """A ``Socket`` on Starlette's in-process ``TestClient``."""

    __test__ = False  # not a pytest test class

    def __init__(self, client, path: str) -> None:
        from starlette.testclient import WebSocketDenialResponse
        from starlette.websockets import WebSocketDisconnect

        self.session = client.websocket_connect(path)
        try:
            self.session.__enter__()
        except WebSocketDisconnect as closed:
            raise Closed(closed.code) from None
        except WebSocketDenialResponse as denied:
            raise Refused(denied.status_code) from None

    def send(self, data: bytes | str) -> None:
        if isinstance(data, bytes):
            self.session.send_bytes(data)
        else:
            self.session.send_text(data)

    def receive(self, timeout_s: float) -> dict:
        import anyio

        async def within() -> dict:
            with anyio.fail_after(timeout_s):
                return await self.session._send_rx.receive()  # receive() has no timeout

        message = self.session.portal.call(within)
        if message["type"] == "websocket.close":
            raise Closed(message.get("code", 1000))
        return json.loads(message["text"])

    def close(self) -> None:
        self.session.__exit__(None, None, None)


class RealSocket:
    """A ``Socket`` to a running server (the ``websockets`` client), logged in by cookie."""

    def __init__(self, url: str, *, cookie: str, timeout_s: float) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect

        self._closed_error = ConnectionClosed
        try:
            self.socket = connect(url, additional_headers={"Cookie": cookie}, max_size=None,
                                  open_timeout=timeout_s, close_timeout=2)
        except InvalidStatus as error:
            raise Refused(error.response.status_code) from None
        except ConnectionClosed as error:
            raise Closed(error.rcvd.code if error.rcvd else 1006) from None

    def send(self, data: bytes | str) -> None:
        try:
            self.socket.send(data)
        except self._closed_error as error:
            raise Closed(error.rcvd.code if error.rcvd else 1006) from None

    def receive(self, timeout_s: float) -> dict:
        try:
            return json.loads(self.socket.recv(timeout_s))
        except self._closed_error as error:
            raise Closed(error.rcvd.code if error.rcvd else 1006) from None

    def close(self) -> None:
        self.socket.close()
