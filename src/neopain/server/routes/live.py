"""The live stream: ``/ws/sessions/{id}`` takes JPEG frames (binary messages) and answers each
with a JSON assessment; the text message ``{"type": "stop"}`` ends the session and
``{"type": "options", "heatmap": true}`` asks for heatmap regions in the replies;
``{"type": "calibrate", "seconds": 3}`` takes the next seconds at rest as this session's
reference (``server.calibration``), answered by ``calibrated`` or an ``error`` naming why.

The socket checks what the HTTP routes check: a logged-in admin or clinician (the login
cookie), a page of this site (the Origin header), and a live session that has not ended.
Refusals close the socket with 4401 (log in), 4403 (role or origin), 4404 (no such session)
or 4409 (the session has ended), so the page can tell them from a dropped network; 1013 when
the server already runs ``NEOPAIN_MAX_STREAMS`` streams. The same checks run again in the
transaction that saves a frame and twice a second while the socket is open: a logout,
deactivation, new password or changed role closes it within a second (4401/4403), and no
frame is saved after it.
Reconnecting to the same session resumes it (audited as ``resume``; the first connection is not).
The frames a stream sends are noted in its session's row (``sweeper.FrameNotes``): a session
that gets none for ``NEOPAIN_SESSION_IDLE_S`` is ended by the server's sweeper.
"""

from __future__ import annotations

import asyncio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from neopain.data.json_text import parse_json
from neopain.server import security
from neopain.server.deps import (
    CARE_ROLES, SESSION_COOKIE, Refusal, RowId, live_refusal, optional_user, same_origin,
    server_state,
)
from neopain.server.live import LiveService, LiveStream, StreamLimitError
from neopain.server.sweeper import FrameNotes
from neopain.store import crud

router = APIRouter()
MAX_FRAME_BYTES = 4_000_000
MAX_COMMAND_CHARS = 1000
WATCH_INTERVAL_S = 0.5


def _authorize(websocket: WebSocket, session_id: int) -> tuple[Refusal | None, str, int | None]:
    """(refusal or None, login token hash, user id): the HTTP routes' login and role checks
    and the page's origin, answered as WebSocket close codes."""
    token = websocket.cookies.get(SESSION_COOKIE)
    token_hash = security.hash_token(token) if token else ""
    with server_state(websocket).store() as db:
        user = optional_user(websocket, db)
        if user is None:
            return Refusal(4401, "Please log in."), token_hash, None
        if user.role in CARE_ROLES and not same_origin(websocket):
            return Refusal(4403, "The page is not from this server."), token_hash, None
        refusal = live_refusal(db, token_hash=token_hash, session_id=session_id)
        # a session a bed device feeds (or fed) is the device's from its start (binding always
        # starts a new one), so this is checked once, here, not with every frame
        device = crud.session_devices(db, session_ids=[session_id]).get(session_id)
        if refusal is None and device is not None:  # frames would mix in the baby's record
            refusal = Refusal(4403, f"The bed device {device} feeds this session; a camera "
                                    "page cannot stream into it. Watch it on the ward or the "
                                    "patient's page.")
        return refusal, token_hash, user.id


@router.websocket("/ws/sessions/{session_id}")
async def live_socket(websocket: WebSocket, session_id: RowId) -> None:
    refusal, token_hash, user_id = await run_in_threadpool(_authorize, websocket, session_id)
    await websocket.accept()
    if refusal is not None:
        await websocket.close(code=refusal.code, reason=refusal.reason)
        return
    service: LiveService = websocket.app.state.live
    store = server_state(websocket).store
    try:  # on the event loop, no await: the slot is either the stream's or free again
        stream = service.open_stream(store, session_id=session_id, token_hash=token_hash)
    except StreamLimitError:
        await websocket.close(code=1013, reason="The server is monitoring as many beds as it "
                                                "can; try again later.")
        return
    tasks: list[asyncio.Task] = []
    try:
        await run_in_threadpool(_connect, store, session_id, user_id)
        await stream.start()  # detector and model ready before the page sends frames
        await websocket.send_json({"type": "ready"})
        await _send_notices(websocket, stream)  # a calibration restored on resume
        frames = asyncio.create_task(_frames(websocket, stream, store, session_id, user_id))
        watch = asyncio.create_task(_watch(stream))
        tasks = [frames, watch]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if frames in done:
            frames.result()  # a disconnect ends quietly; anything else is raised
        else:  # the stream may not go on: told as a frame's reply would tell it, then closed
            frames.cancel()
            await asyncio.wait([frames])
            ended = watch.result()
            await websocket.send_json(stream.refused(ended))
            await websocket.close(code=ended.code, reason=ended.reason)
    except WebSocketDisconnect:
        return
    finally:
        for task in tasks:  # also when this handler itself is cancelled
            task.cancel()
            task.add_done_callback(_forget)
        stream.close()


def _forget(task: asyncio.Task) -> None:
    """Collect a finished task's outcome, so asyncio never logs it as never retrieved (with a
    traceback) after the stream has ended."""
    if not task.cancelled():
        task.exception()


async def _watch(stream: LiveStream) -> Refusal:
    """Wait until the stream may not go on (logout, deactivation, new password or role,
    session stopped elsewhere), checking every ``WATCH_INTERVAL_S``; the refusal."""
    while True:
        await asyncio.sleep(WATCH_INTERVAL_S)
        refusal = await stream.refusal()
        if refusal is not None:
            return refusal


async def _frames(websocket: WebSocket, stream: LiveStream, store: sessionmaker[Session],
                  session_id: int, user_id: int | None) -> None:
    """Answer frames and commands until the client leaves or the stream ends."""
    notes = FrameNotes(store, session_id=session_id)
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            await notes.frame()
            if len(data) > MAX_FRAME_BYTES:
                await websocket.send_json({"type": "error", "message": "The frame is "
                                           f"larger than {MAX_FRAME_BYTES} bytes."})
                continue
            reply = await stream.process(data)
            await websocket.send_json(reply)
            await _send_notices(websocket, stream)
            if reply["type"] == "stopped":
                await websocket.close(code=4409, reason="The session has ended.")
                return
            if reply["type"] == "refused":
                await websocket.close(code=reply["code"], reason=reply["reason"])
                return
        else:
            command = _command(message.get("text"))
            if command.get("type") == "options":
                stream.heatmap = bool(command.get("heatmap"))
            elif command.get("type") == "calibrate":
                error = stream.calibration.request(
                    command, user_id=user_id,
                    calibrates=stream.service.shared_predictor().calibrates)
                if error is not None:
                    await websocket.send_json(error)
            elif command.get("type") == "stop":
                await run_in_threadpool(_stop, store, session_id, user_id)
                await websocket.send_json({"type": "stopped",
                                           "saved": stream.recorder.saved_})
                await websocket.close(code=1000)
                return


async def _send_notices(websocket: WebSocket, stream: LiveStream) -> None:
    """Send what the stream has to say besides a frame's reply (``calibrated``, or why not)."""
    for notice in stream.calibration.take():
        await websocket.send_json(notice)


def _command(text: str | None) -> dict:
    """A text message as a dict: ``{"type": "stop"}`` or ``{"type": "options", ...}``; {} for
    anything else (too long, too deeply nested, not JSON)."""
    try:
        command = parse_json(text or "", max_depth=4, max_chars=MAX_COMMAND_CHARS)
    except ValueError:
        return {}
    return command if isinstance(command, dict) else {}


def _connect(store: sessionmaker[Session], session_id: int, user_id: int | None) -> None:
    """Note the connection; a reconnection is audited as a resume (``crud.connect_session``)."""
    with store() as db:
        session = crud.get_session(db, session_id)
        user = None if user_id is None else crud.get_user(db, user_id)
        crud.connect_session(db, session, actor=user)


def _stop(store: sessionmaker[Session], session_id: int, user_id: int | None) -> None:
    with store() as db:
        session = crud.get_session(db, session_id)
        user = None if user_id is None else crud.get_user(db, user_id)
        crud.end_session(db, session, actor=user)
