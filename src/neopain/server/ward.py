"""The ward as the station sees it: ``ward_view`` (one entry per open live session, from the
records) and ``WardHub``, which hands each new view to the subscribed station pages
(``/ws/ward``) when it differs from the last one, and at least every ``HEARTBEAT_S``, so a page
that hears nothing for longer knows its view is old."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from neopain.monitor.alarm_rules import PRIORITY_RANK, bed_state
from neopain.monitor.display import KIND_TEXT
from neopain.server.render import patient_label
from neopain.server.stream_status import WARD_STATE
from neopain.server.ward_schemas import AlarmOut, WardBedOut, WardOut
from neopain.store import crud

STATE_TEXT = {**{WARD_STATE[kind]: text for kind, text in KIND_TEXT.items()},
              "stale": "no current assessment"}
"""What each ward state reads as on a page (the live panel's words, ``monitor.display``)."""
TREND_S = 600.0
"""The sparkline's span: the last 10 minutes."""
TREND_POINTS = 120
"""At most this many points per sparkline (one per 5 s over 10 minutes)."""
HEARTBEAT_S = 2.0
"""A station page gets a view at least this often."""
QUEUE_VIEWS = 2
"""Views waiting for a slow page; an older one is dropped for a newer (the newest counts)."""


def _thinned(points: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    """At most ``TREND_POINTS``, evenly picked, the newest kept."""
    step = max(1, -(-len(points) // TREND_POINTS))
    return points[::-1][::step][::-1]


def ward_view(db: Session, *, stale_s: float, now: datetime, trend: bool = False,
              beds: list[crud.Bed] | None = None) -> WardOut:
    """Every open live session as a ward entry: its state (``stale`` when no frame came for
    ``stale_s``), numbers, pause, unresolved alarms (most urgent first) and the name of the
    bed device that feeds it, if one does; with ``trend``, each bed's saved smoothed P(pain)
    of the last ``TREND_S`` seconds. ``beds``: the open
    beds as just read (``crud.open_beds``), None to read them."""
    beds = crud.open_beds(db, now=now) if beds is None else beds
    alarms: dict[int, list] = defaultdict(list)
    for alarm in crud.unresolved_alarms(db):
        alarms[alarm.session_id].append(alarm)
    devices = crud.session_devices(db, session_ids=[bed.session.id for bed in beds])
    trends = crud.recent_smoothed(db, session_ids=[bed.session.id for bed in beds],
                                  since=now - timedelta(seconds=TREND_S)) if trend else {}
    entries = []
    for bed in beds:
        status = bed.status
        assessed = None if status is None else status.last_assessed_at
        own = sorted(alarms.get(bed.session.id, []),
                     key=lambda a: (PRIORITY_RANK[a.priority], a.raised_at))
        state = bed_state(status_state=None if status is None else status.state,
                          last_frame_at=None if status is None else status.last_frame_at,
                          streaming=status is not None and status.streaming,
                          stale_s=stale_s, now=now)
        current = state != "stale"  # an old number is not sent as if it were current
        entries.append(WardBedOut(
            session_id=bed.session.id, patient_id=bed.patient.id,
            patient=patient_label(bed.patient), device=devices.get(bed.session.id),
            state=state,
            prob_pain=status.smoothed if current else None,
            confidence=status.confidence if current else None,
            last_assessment_at=assessed,
            seconds_since=None if assessed is None else round((now - assessed)
                                                              .total_seconds(), 1),
            last_frame_at=None if status is None else status.last_frame_at,
            paused_until=None if bed.pause is None else bed.pause.until,
            pause_reason=None if bed.pause is None else bed.pause.reason,
            alarms=[AlarmOut.of(a, patient=bed.patient) for a in own],
            trend=_thinned(trends.get(bed.session.id, [])) if trend else None))
    return WardOut(now=now, stale_s=stale_s, beds=entries)


def _fingerprint(view: dict[str, Any]) -> str:
    """What a page would draw differently: the view less its clock fields."""
    beds = [{k: v for k, v in bed.items() if k not in ("seconds_since", "trend")}
            for bed in view["beds"]]
    return repr(beds)


class WardHub:
    """The station pages subscribed in this server process, and the last view sent them.
    Used on the event loop only."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._last: str | None = None
        self._sent_at = -float("inf")

    @property
    def subscribers(self) -> int:
        """How many pages listen."""
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue that receives every view published from now on."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_VIEWS)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop sending to ``queue``."""
        self._queues.discard(queue)

    def publish(self, view: dict[str, Any], *, clock: float) -> bool:
        """Send ``view`` (``WardOut`` as JSON) to every page if it changed or the heartbeat is
        due at ``clock`` (monotonic seconds); whether it was sent."""
        fingerprint = _fingerprint(view)
        if fingerprint == self._last and clock - self._sent_at < HEARTBEAT_S:
            return False
        self._last, self._sent_at = fingerprint, clock
        message = {"type": "ward", **view}
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)
        return True
