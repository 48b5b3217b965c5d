"""The ward's alarm rules: which alarm conditions hold for one bed at one moment.

Pure (no database, no clock of its own): the server's alarm engine reads each open live
session's status from the records and applies these rules on every tick, so an alarm depends
only on the data, never on which page is open (docs/monitor.md, "Alarms").

- ``pain`` (high): the smoothed, held state has been pain for ``pain_s`` seconds;
- ``link`` (medium): the session got no frame for ``stale_s`` seconds (from its start when no
  frame ever came);
- ``noface`` (low): frames arrive but none had an assessable face for ``noface_s`` seconds.

``uncertain`` (the model's referral band holds both labels) is unknown for ``pain``, like a
face lost for a while: a pain alarm is neither raised nor cleared while it lasts, and the onset
of pain is kept (the stream keeps it), so pain broken by moments of uncertainty raises its alarm
when pain is seen again, counted from its first onset. It is no assessment for ``noface``: a bed
uncertain for ``noface_s`` seconds raises "No assessment", so a model that keeps saying "look
at the baby" is never silent at the station.

While the link is lost, what the camera would show is unknown: ``pain`` and ``noface`` are then
neither raised nor cleared; so is ``pain`` while the held state is unknown (a face lost for a
while, a stream that reconnected and has not judged a face yet). An alarm is resolved only when
its condition is gone, not when its limit changes. An alarm not acknowledged ``escalate_s``
seconds after it was raised escalates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

STATUS_WRITE_S = 1.0
"""A stream writes its status at most this often (and at once when its state changes, and when
it closes), so while it streams the newest frame may be up to this much younger than
``last_frame_at``; a rule about quiet time then waits this much longer, so it never holds
before its condition did."""


@dataclass(frozen=True)
class AlarmRule:
    """One alarm condition: its name (stored), priority, and what a nurse reads."""

    name: str
    priority: str
    title: str


PAIN = AlarmRule("pain", "high", "In pain")
LINK = AlarmRule("link", "medium", "Camera link lost")
NOFACE = AlarmRule("noface", "low", "No assessment")
RULES = {rule.name: rule for rule in (PAIN, LINK, NOFACE)}
PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class AlarmLimits:
    """Seconds a condition must hold before its alarm, and before an alarm escalates."""

    pain_s: float = 30.0
    stale_s: float = 10.0
    noface_s: float = 120.0
    escalate_s: float = 120.0

    def overridden(self, *, pain_s: float | None = None, stale_s: float | None = None,
                   noface_s: float | None = None) -> AlarmLimits:
        """These limits with a patient's own values where given (None keeps the default)."""
        given = {"pain_s": pain_s, "stale_s": stale_s, "noface_s": noface_s}
        return replace(self, **{name: value for name, value in given.items()
                                if value is not None})

    def limit_s(self, rule: str) -> float:
        """The seconds ``rule`` waits for."""
        return {"pain": self.pain_s, "link": self.stale_s, "noface": self.noface_s}[rule]


@dataclass(frozen=True)
class BedReading:
    """What the records say of one open live session (times aware UTC).

    Attributes:
        started_at: when the session started.
        first_frame_at: its stream's first frame; None before any.
        last_frame_at: its newest frame as written (up to ``STATUS_WRITE_S`` old).
        last_assessed_at: its newest frame with an assessable face; None before any.
        held_state: the smoothed, held state: ``pain``, ``nopain``, ``uncertain``, or None
            when unknown (no face for a while, or a stream that has not judged one yet).
        pain_since: since when the held state is pain; kept while it is unknown, dropped by
            ``nopain`` and ``uncertain``.
        streaming: whether its stream is still connected (its times are then up to
            ``STATUS_WRITE_S`` old; once closed they are exact).
    """

    started_at: datetime
    first_frame_at: datetime | None = None
    last_frame_at: datetime | None = None
    last_assessed_at: datetime | None = None
    held_state: str | None = None
    pain_since: datetime | None = None
    streaming: bool = True

    @property
    def lag_s(self) -> float:
        """How much older than the truth its times may be."""
        return STATUS_WRITE_S if self.streaming else 0.0


@dataclass(frozen=True)
class Verdict:
    """The rules for one bed now.

    Attributes:
        due: each rule whose alarm is due, and when its condition began.
        present: the rules whose condition is there now, due or not yet (an alarm is resolved
            only when its condition is neither present nor unknown: a longer limit set while
            an alarm stands does not clear it).
        unknown: the rules that can be neither raised nor cleared now.
    """

    due: dict[str, datetime]
    present: frozenset[str]
    unknown: frozenset[str]


LINK_QUIET_S = 2.0
"""An open stream quiet this long (plus ``STATUS_WRITE_S``) has lost its link for the rules:
what its camera shows is unknown from then on, and its link alarm is not cleared."""


def _after(since: datetime, seconds: float) -> datetime:
    return since + timedelta(seconds=seconds)


def judge(reading: BedReading, limits: AlarmLimits, *, now: datetime) -> Verdict:
    """Which alarm conditions ``reading`` shows at ``now`` and which alarms are due under
    ``limits`` (module docstring)."""
    quiet_since = reading.last_frame_at or reading.started_at
    if not reading.streaming or now >= _after(quiet_since, LINK_QUIET_S + reading.lag_s):
        due = {"link": quiet_since} if now >= _after(quiet_since,
                                                     limits.stale_s + reading.lag_s) else {}
        return Verdict(due=due, present=frozenset({"link"}),
                       unknown=frozenset({"pain", "noface"}))
    present, unknown, due = set(), set(), {}
    if reading.held_state in (None, "uncertain"):
        unknown.add("pain")
    elif reading.held_state == "pain" and reading.pain_since is not None:
        present.add("pain")
        if now >= _after(reading.pain_since, limits.pain_s):
            due["pain"] = reading.pain_since
    last_frame = reading.last_frame_at
    if last_frame is not None and (reading.last_assessed_at is None
                                   or reading.last_assessed_at < last_frame):
        present.add("noface")  # its newest frame had no face that could be assessed
        unseen_since = reading.last_assessed_at or reading.first_frame_at or last_frame
        if now >= _after(unseen_since, limits.noface_s + reading.lag_s):
            due["noface"] = unseen_since
    return Verdict(due=due, present=frozenset(present), unknown=frozenset(unknown))


def escalation_due(*, raised_at: datetime, acknowledged: bool, escalated: bool,
                   limits: AlarmLimits, now: datetime) -> bool:
    """Whether an alarm raised at ``raised_at`` escalates now: not acknowledged, not escalated
    yet, and raised ``limits.escalate_s`` seconds ago or more."""
    return not acknowledged and not escalated and now >= _after(raised_at, limits.escalate_s)


def bed_state(*, status_state: str | None, last_frame_at: datetime | None, streaming: bool,
              stale_s: float, now: datetime) -> str:
    """The state a ward tile shows: the stream's last state (``pain``, ``nopain``,
    ``uncertain``, ``cannot_assess``, ``no_face``), or ``stale`` when no frame came for
    ``stale_s`` seconds (or ever)."""
    lag_s = STATUS_WRITE_S if streaming else 0.0
    if status_state is None or last_frame_at is None \
            or now >= _after(last_frame_at, stale_s + lag_s):
        return "stale"
    return status_state
