"""Bed devices seen from the server: who a request's bearer token belongs to, and what each
device's heartbeats say about its bed.

A device (``neopain agent``) assesses at the bed and sends no frames: its heartbeat carries
what its bed shows now (``monitor.display``: the kind, the confidence, the smoothed P(pain) and
the held state) and the server-clock time of its newest frame. ``DeviceHub`` turns that into
the bound session's ``live_status`` through the same ``StatusWriter`` a browser stream uses, so
the ward, its alarms (link lost included: a device whose heartbeats stop stops moving
``last_frame_at``) and the idle sweep treat a device's bed exactly like a browser's.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from neopain.server.stream_status import StatusWriter
from neopain.server.sweeper import FrameNotes
from neopain.store import crud
from neopain.store.crud.devices import SEEN_WRITE_S as DEVICE_SEEN_WRITE_S
from neopain.store.session import StoreError
from neopain.store.tables import utc_now

log = logging.getLogger("neopain.server")

HEARTBEAT_S = 0.5
"""How often a device sends its heartbeat; a revoked device hears of it at the next one."""
SNAPSHOT_SIDE = 320
"""The longest side of a device's snapshots, in pixels."""
AUDIT_REPEAT_S = 60.0
"""A device's connection or refusal is audited at most this often."""


@dataclass(frozen=True)
class Reading:
    """What a device's bed shows now (its heartbeat's ``status``); ``frame_at``: the time of
    its newest frame on the server's clock."""

    kind: str
    smoothed: float | None
    confidence: float | None
    held_state: str | None
    frame_at: datetime


class _Bed:
    """One device's bound session as this process last saw it; ``lock`` serializes its
    heartbeats (a device that retries may have two in flight)."""

    def __init__(self, store: sessionmaker[Session], session_id: int, *,
                 started_at: datetime) -> None:
        self.session_id = session_id
        # the session's start, the same in every server process: a device's heartbeats may
        # reach any of them, and write_status keeps only a stream that started no earlier
        self.writer = StatusWriter(store, session_id=session_id, started_at=started_at)
        self.lock = threading.Lock()
        self.resumed = False
        self.notes = FrameNotes(store, session_id=session_id)  # for the idle sweep
        self.frame_at: datetime | None = None


class DeviceHub:
    """The devices' beds in this server process: one ``StatusWriter`` per bound session.

    Several processes may serve one database: each writes what its requests bring, all as
    the same stream (it started with the session), so whichever process a heartbeat reaches
    writes the bed's status.
    """

    def __init__(self, store: sessionmaker[Session]) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._beds: dict[int, _Bed] = {}
        self._audited: dict[tuple[int, str], float] = {}
        self._seen: dict[int, float] = {}

    def heartbeat(self, *, device_id: int, name: str, session_id: int | None,
                  session_started_at: datetime | None, reading: Reading | None) -> None:
        """A device's heartbeat: the session it is bound to (None: unbound) and when that
        started, and what its bed shows. Call it holding no database connection: it opens its
        own."""
        with self._lock:
            bed = self._beds.get(device_id)
            if session_id is None or session_started_at is None:
                self._beds.pop(device_id, None)
                return
            fresh = bed is None or bed.session_id != session_id
            if fresh:
                bed = self._beds[device_id] = _Bed(self.store, session_id,
                                                   started_at=session_started_at)
        if fresh:
            self.audit_once(device_id=device_id, name=name, action="device_connect",
                            detail=f"session={session_id}")
        with bed.lock:
            if not bed.resumed:  # read outside the hub's lock: other devices go on
                bed.writer.resume()
                bed.resumed = True
            if reading is not None:
                self._reading(bed, reading)

    def _reading(self, bed: _Bed, reading: Reading) -> None:
        now = utc_now()
        frame_at = min(reading.frame_at, now)
        if bed.frame_at is not None and frame_at < bed.frame_at:
            frame_at = bed.frame_at  # a clock correction never moves the bed back in time
        bed.frame_at = frame_at
        bed.writer.reading(kind=reading.kind, smoothed=reading.smoothed,
                           confidence=reading.confidence, held=reading.held_state, now=frame_at)
        bed.notes.note(when=frame_at)  # a frame's note, not a heartbeat's

    def seen_due(self, device_id: int) -> bool:
        """Whether the device's ``last_seen_at`` is due to be written (at most every
        ``crud.devices.SEEN_WRITE_S`` by this process)."""
        now = time.monotonic()
        with self._lock:
            if now - self._seen.get(device_id, -DEVICE_SEEN_WRITE_S) < DEVICE_SEEN_WRITE_S:
                return False
            self._seen[device_id] = now
        return True

    def audit_once(self, *, device_id: int, name: str, action: str, detail: str = "") -> None:
        """Audit ``action`` by a device, at most once every ``AUDIT_REPEAT_S`` per device and
        action (a device retries every half second; the log keeps the event, not the retries).
        Call it holding no database connection."""
        key = (device_id, action)
        now = time.monotonic()
        with self._lock:
            if now - self._audited.get(key, -AUDIT_REPEAT_S) < AUDIT_REPEAT_S:
                return
            self._audited[key] = now
        self._write(crud.audit, actor=f"device:{device_id}", action=action,
                    object_type="device", object_id=device_id,
                    detail=f"device {name} {detail}".strip())

    def _write(self, write, **kwargs) -> None:  # noqa: ANN001 - a crud function
        try:
            with self.store() as db:
                write(db, **kwargs)
        except (StoreError, SQLAlchemyError) as error:  # the next heartbeat tries again
            log.warning("a device's %s failed: %s", write.__name__, type(error).__name__)
