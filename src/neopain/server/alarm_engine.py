"""The alarm engine: every ``TICK_S`` it judges each open live session by the rules of
``monitor.alarm_rules`` from the records alone, and makes the transitions due:

- raise the alarm of a rule that holds (none while the bed's alarms are paused);
- resolve an alarm whose condition cleared (``cleared``), or whose session ended
  (``session ended``); while the link is lost, pain and no-face alarms stay as they are;
- escalate an alarm nobody acknowledged ``escalate_s`` after it was raised (not while paused).

Each transition is a conditional write (``crud.alarms``), so any number of server processes
on one database make it once. The engine runs as a background task of the app
(``alarm_engine``), from start-up to shutdown, whether or not any page is open; after each tick
the ward hub sends the station pages the new view (``server.ward``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from neopain.config import Settings
from neopain.monitor.alarm_rules import (
    RULES, AlarmLimits, BedReading, escalation_due, judge,
)
from neopain.server.background import in_background
from neopain.server.ward import WardHub, ward_view
from neopain.store import crud
from neopain.store.crud import Bed
from neopain.store.session import StoreError
from neopain.store.tables import utc_now

log = logging.getLogger("neopain.server")

TICK_S = 0.5
"""Seconds between two judgements of the ward: an alarm is raised at most this late."""


def default_limits(settings: Settings) -> AlarmLimits:
    """The server's alarm limits (``NEOPAIN_ALARM_*``)."""
    return AlarmLimits(pain_s=settings.alarm_pain_s, stale_s=settings.alarm_stale_s,
                       noface_s=settings.alarm_noface_s, escalate_s=settings.alarm_escalate_s)


def bed_limits(bed: Bed, defaults: AlarmLimits) -> AlarmLimits:
    """The limits that apply to ``bed``: its patient's own where set, else the defaults."""
    own = bed.limits
    if own is None:
        return defaults
    return defaults.overridden(pain_s=own.pain_s, stale_s=own.stale_s, noface_s=own.noface_s)


def reading_of(bed: Bed) -> BedReading:
    """What the rules need of ``bed``."""
    status = bed.status
    if status is None:
        return BedReading(started_at=bed.session.started_at)
    return BedReading(started_at=bed.session.started_at, first_frame_at=status.first_frame_at,
                      last_frame_at=status.last_frame_at,
                      last_assessed_at=status.last_assessed_at, held_state=status.held_state,
                      pain_since=status.pain_since, streaming=status.streaming)


@dataclass(frozen=True)
class Judgement:
    """What one ``evaluate`` did: ``made`` transitions (another process may have made some
    first), judging the open ``beds`` it read (the ward's view reuses them)."""

    made: int
    beds: list[Bed]


def evaluate(db: Session, *, defaults: AlarmLimits, now: datetime) -> Judgement:
    """Judge the ward at ``now`` and make the transitions due (module docstring)."""
    # the alarms before the beds: a status newer than the alarms read cannot make this call
    # raise again an alarm that another process resolved a moment ago
    unresolved = crud.unresolved_alarms(db)
    beds = crud.open_beds(db, now=now)
    active: dict[int, dict[str, int]] = defaultdict(dict)
    raised_at: dict[int, tuple[datetime, bool, bool]] = {}
    for alarm in unresolved:
        active[alarm.session_id][alarm.rule] = alarm.id
        raised_at[alarm.id] = (alarm.raised_at, alarm.acknowledged_at is not None,
                               alarm.escalated_at is not None)
    made = 0
    open_ids = {bed.session.id for bed in beds}
    for session_id in set(active) - open_ids:
        for alarm_id in active[session_id].values():
            made += crud.resolve_alarm(db, alarm_id=alarm_id, resolution="session ended",
                                       now=now)
    for bed in beds:
        limits = bed_limits(bed, defaults)
        verdict = judge(reading_of(bed), limits, now=now)
        own = active.get(bed.session.id, {})
        for rule, alarm_id in own.items():
            if rule not in verdict.present and rule not in verdict.unknown:
                made += crud.resolve_alarm(db, alarm_id=alarm_id, resolution="cleared", now=now)
                continue
            raised, acknowledged, escalated = raised_at[alarm_id]
            if bed.pause is None and escalation_due(raised_at=raised, acknowledged=acknowledged,
                                                    escalated=escalated, limits=limits, now=now):
                made += crud.escalate_alarm(db, alarm_id=alarm_id, now=now)
        if bed.pause is not None:
            continue
        for rule, since in verdict.due.items():
            if rule not in own:
                made += crud.raise_alarm(db, session=bed.session, rule=rule,
                                         priority=RULES[rule].priority, condition_since=since,
                                         limit_s=limits.limit_s(rule), now=now) is not None
    return Judgement(made=made, beds=beds)


def tick(store: sessionmaker[Session], *, settings: Settings, with_view: bool
         ) -> dict | None:
    """One judgement of the ward now; the ward's view after it (as JSON) when ``with_view``."""
    now = utc_now()
    with store() as db:
        judged = evaluate(db, defaults=default_limits(settings), now=now)
        if not with_view:
            return None
        # the beds as judged (a transition changes only alarms, which the view reads anew)
        return ward_view(db, stale_s=settings.stale_s, now=now,
                         beds=judged.beds).model_dump(mode="json")


async def _run(store: sessionmaker[Session], *, settings: Settings, hub: WardHub) -> None:
    failing = False
    while True:
        started = time.monotonic()
        try:
            view = await run_in_threadpool(tick, store, settings=settings,
                                           with_view=hub.subscribers > 0)
        except (StoreError, SQLAlchemyError) as error:  # e.g. a busy database: next tick
            if not failing:
                log.warning("the alarm engine could not judge the ward: %s; trying again "
                            "every %.1f s", type(error).__name__, TICK_S)
            failing = True
        except Exception as error:  # noqa: BLE001 - no bug may stop the ward's alarms for good
            if not failing:  # its type and place only: a message may quote patient data
                place = traceback.extract_tb(error.__traceback__)[-1]
                log.error("the alarm engine failed: %s at %s:%d; trying again every %.1f s",
                          type(error).__name__, place.filename, place.lineno, TICK_S)
            failing = True
        else:
            failing = False
            if view is not None:
                hub.publish(view, clock=time.monotonic())
        await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))


@asynccontextmanager
async def alarm_engine(store: sessionmaker[Session], *, settings: Settings,
                       hub: WardHub) -> AsyncIterator[None]:
    """Run the engine in the background until the block ends."""
    async with in_background(_run(store, settings=settings, hub=hub), name="alarm-engine"):
        yield
