"""Live sessions end themselves: a session whose stream sent no frame for
``settings.session_idle_s`` is ended by the server (audited as a ``stop`` by the system), so a
page left without Stop, a dropped tablet or a server crash leaves no session open for good.

``idle_sweeper`` runs the sweep once when the app starts (it ends what a crash or a restart left
open) and then every ``sweep_interval_s`` as a background task, cancelled on shutdown.
``FrameNotes`` writes a stream's frames to the session's ``last_seen_at``, at most every
``crud.liveness.SEEN_WRITE_S``, so the sweep, reading only the database, sees a live stream
in any server process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from neopain.server.background import in_background
from neopain.store import crud
from neopain.store.crud.liveness import SEEN_WRITE_S
from neopain.store.session import StoreError

log = logging.getLogger("neopain.server")

SWEEP_INTERVAL_S = 30.0
"""The longest wait between two sweeps (shorter for an idle limit under two minutes)."""


def sweep_interval_s(idle_s: float) -> float:
    """Seconds between sweeps: at most ``SWEEP_INTERVAL_S`` and a quarter of the idle limit, so
    a session ends at most a quarter of the limit late."""
    return min(SWEEP_INTERVAL_S, idle_s / 4)


def sweep(store: sessionmaker[Session], *, idle_s: float) -> int:
    """End the live sessions idle longer than ``idle_s`` seconds; how many were ended."""
    with store() as db:
        return len(crud.end_idle_sessions(db, idle_s=idle_s))


async def _sweep_logged(store: sessionmaker[Session], *, idle_s: float) -> None:
    """``sweep`` off the event loop; a failure (e.g. a busy database) is logged as its type
    only, and the next sweep tries again."""
    try:
        await run_in_threadpool(sweep, store, idle_s=idle_s)
    except Exception as error:  # noqa: BLE001 - the sweeper must outlive a bad moment
        log.warning("ending idle sessions failed: %s; tried again in %.0f s",
                    type(error).__name__, sweep_interval_s(idle_s))


async def _sweep_forever(store: sessionmaker[Session], *, idle_s: float) -> None:
    while True:
        await asyncio.sleep(sweep_interval_s(idle_s))
        await _sweep_logged(store, idle_s=idle_s)


@asynccontextmanager
async def idle_sweeper(store: sessionmaker[Session], *, idle_s: float) -> AsyncIterator[None]:
    """Sweep now (before the app answers), then in the background until the block ends."""
    await _sweep_logged(store, idle_s=idle_s)
    async with in_background(_sweep_forever(store, idle_s=idle_s), name="idle-sweeper"):
        yield


class FrameNotes:
    """Notes one stream's frames as seen in its session's row, at most every ``SEEN_WRITE_S``
    (a failed write is logged and tried again with the next frame)."""

    def __init__(self, store: sessionmaker[Session], *, session_id: int) -> None:
        self.store = store
        self.session_id = session_id
        self._noted = -math.inf

    async def frame(self) -> None:
        """A frame arrived (noted off the event loop)."""
        if self._due():
            await run_in_threadpool(self.note)

    def note(self, *, when: datetime | None = None) -> None:
        """A frame taken at ``when`` (default: now) arrived; on a worker thread."""
        if not self._due():
            return
        try:
            with self.store() as db:
                crud.note_frame(db, session_id=self.session_id, now=when)
        except (StoreError, SQLAlchemyError) as error:
            log.warning("noting a frame of session %d failed: %s", self.session_id,
                        type(error).__name__)
            return
        self._noted = time.monotonic()

    def _due(self) -> bool:
        return time.monotonic() - self._noted >= SEEN_WRITE_S
