"""The live stream: ``/ws/sessions/{id}`` takes JPEG frames (binary messages) and answers each
with a JSON assessment; the text message ``{"type": "stop"}`` ends the session and
``{"type": "options", "heatmap": true}`` asks for heatmap regions in the replies.

The socket checks what the HTTP routes check: a logged-in admin or clinician (the login
cookie), a page of this site (the Origin header), and a live session that has not ended.
Refusals close the socket with 4401 (log in), 4403 (role or origin), 4404 (no such session)
or 4409 (the session has ended), so the page can tell them from a dropped network.
Reconnecting to the same session resumes it.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from neopain.server.deps import CARE_ROLES, RowId, optional_user, server_state
from neopain.server.live import LiveService
from neopain.store import crud

log = logging.getLogger(__name__)
router = APIRouter()
MAX_FRAME_BYTES = 4_000_000


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:  # not a browser (scripts, the benchmark): cookies still required
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


def _authorize(websocket: WebSocket, session_id: int) -> tuple[int, str, int | None]:
    """(0 or a close code, reason, user id): the HTTP routes' login and role checks, answered
    as WebSocket close codes."""
    with server_state(websocket).store() as db:
        user = optional_user(websocket, db)
        if user is None:
            return 4401, "Please log in.", None
        if user.role not in CARE_ROLES:
            return 4403, "Live monitoring needs the role admin or clinician.", None
        if not _same_origin(websocket):
            return 4403, "The page is not from this server.", None
        session = crud.get_session(db, session_id)
        if session is None or session.source != "live":
            return 4404, f"No live session with id {session_id}.", None
        if session.ended_at is not None:
            return 4409, "This session has ended; start a new one.", None
        crud.resume_session(db, session, actor=user)
        return 0, "", user.id


@router.websocket("/ws/sessions/{session_id}")
async def live_socket(websocket: WebSocket, session_id: RowId) -> None:
    code, reason, user_id = await run_in_threadpool(_authorize, websocket, session_id)
    await websocket.accept()
    if code:
        await websocket.close(code=code, reason=reason)
        return
    service: LiveService = websocket.app.state.live
    store = server_state(websocket).store
    stream = await run_in_threadpool(service.open_stream, store, session_id=session_id)
    try:
        await stream.start()  # detector and model ready before the page sends frames
        await websocket.send_json({"type": "ready"})
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                if len(data) > MAX_FRAME_BYTES:
                    await websocket.send_json({"type": "error", "message": "The frame is "
                                               f"larger than {MAX_FRAME_BYTES} bytes."})
                    continue
                reply = await stream.process(data)
                await websocket.send_json(reply)
                if reply["type"] == "stopped":
                    await websocket.close(code=4409, reason="The session has ended.")
                    return
            else:
                command = _command(message.get("text"))
                if command.get("type") == "options":
                    stream.heatmap = bool(command.get("heatmap"))
                elif command.get("type") == "stop":
                    await run_in_threadpool(_stop, store, session_id, user_id)
                    await websocket.send_json({"type": "stopped",
                                               "saved": stream.recorder.saved_})
                    await websocket.close(code=1000)
                    return
    except WebSocketDisconnect:
        return
    finally:
        stream.close()


def _command(text: str | None) -> dict:
    """A text message as a dict: ``{"type": "stop"}`` or ``{"type": "options", ...}``."""
    try:
        command = json.loads(text or "")
    except ValueError:
        return {}
    return command if isinstance(command, dict) else {}


def _stop(store: sessionmaker[Session], session_id: int, user_id: int | None) -> None:
    with store() as db:
        session = crud.get_session(db, session_id)
        user = None if user_id is None else crud.get_user(db, user_id)
        crud.end_session(db, session, actor=user)
