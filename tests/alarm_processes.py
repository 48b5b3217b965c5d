"""A server process's alarm engine, for tests that run two of them on one database (spawned
processes import their target by module name: it lives here, on the test path)."""

from __future__ import annotations

from datetime import datetime, timedelta

from neopain.monitor.alarm_rules import AlarmLimits
from neopain.server.alarm_engine import evaluate
from neopain.store.session import open_store


def judge_ward(url: str, start_iso: str, start, rounds: int, limits: AlarmLimits) -> None:
    """Wait at the barrier ``start``, then judge the ward ``rounds`` times, 10 ms apart in
    the ward's time, from ``start_iso`` + 11 s."""
    with open_store(url)() as db:
        now = datetime.fromisoformat(start_iso)
        start.wait()
        for step in range(rounds):
            evaluate(db, defaults=limits, now=now + timedelta(seconds=11 + step * 0.01))
