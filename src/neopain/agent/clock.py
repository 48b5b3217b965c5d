"""The offset of the server's clock from the device's monotonic clock, so that records carry
server time.

``offset = server_time - (sent + answered) / 2`` over a few readings, ``sent`` and ``answered``
read from ``time.monotonic()``, keeping the one with the shortest round trip (its midpoint is
the closest guess of when the server read its clock; the error is at most half that round
trip). The monotonic clock never steps: a board without a real-time clock whose wall clock NTP
steps by hours after a measurement keeps stamping right. It starts afresh at each boot, so an
offset is kept across starts with the boot's id and used again only within the same boot
(``ServerClock.restore``); until the first measurement of a boot the clock is not measured
(``now`` is None) and the agent keeps its records unstamped (runner.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from neopain.errors import NeopainError

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_PROCESS = f"process-{uuid.uuid4().hex}"


@cache  # one boot's id does not change: read once, not with every record
def boot_id() -> str:
    """This boot's id (Linux); where the system names none, this process's (a kept offset is
    then never used by another process: it cannot tell whether the monotonic clock started
    afresh)."""
    try:
        return BOOT_ID.read_text().strip() or _PROCESS
    except OSError:
        return _PROCESS


@dataclass(frozen=True)
class ClockReading:
    """One measured offset.

    Attributes:
        offset_s: server time minus ``time.monotonic()``, seconds.
        round_trip_s: the round trip of the reading kept; the offset is good to half of it.
        wall_offset_s: server time minus ``time.time()`` at the same moment (to place records
            of an earlier boot that was never measured, a guess: the wall clock may step).
    """

    offset_s: float
    round_trip_s: float
    wall_offset_s: float | None = None


def best_offset(readings: Sequence[tuple]) -> ClockReading:
    """The offset from the reading with the shortest round trip.

    Args:
        readings: ``(sent, server_time, answered)`` triples in seconds, ``sent`` and
            ``answered`` on the device's monotonic clock; an optional fourth item, the wall
            clock (``time.time()``) at ``answered``, gives ``wall_offset_s``.

    Raises:
        NeopainError: no readings, or one that answered before it was sent.
    """
    if not readings:
        raise NeopainError("readings is empty; the offset needs at least one clock reading")
    best = min(readings, key=lambda r: r[2] - r[0])
    sent, server_time, answered = best[:3]
    if answered < sent:
        raise NeopainError(f"a clock reading answered at {answered} before it was sent at {sent}")
    offset = server_time - (sent + answered) / 2
    wall = None if len(best) < 4 else server_time - (best[3] - (answered - sent) / 2)
    return ClockReading(offset_s=offset, round_trip_s=answered - sent, wall_offset_s=wall)


def measure_offset(read: Callable[[], tuple], *, tries: int = 5) -> ClockReading:
    """``best_offset`` over ``tries`` calls of ``read`` (``DeviceClient.clock``); its errors
    pass through."""
    return best_offset([read() for _ in range(tries)])


class ServerClock:
    """The monotonic clock shifted by the last offset measured in this boot; safe to share
    between threads. Not measured (``at_monotonic`` gives None) until ``set`` or a
    ``restore`` of an offset kept in this same boot."""

    def __init__(self) -> None:
        self.reading_: ClockReading | None = None
        self.wall_offset_s: float | None = None  # the last one known, of any boot
        self._lock = threading.Lock()

    def set(self, reading: ClockReading) -> None:
        """Use a new measurement."""
        with self._lock:
            self.reading_ = reading
            if reading.wall_offset_s is not None:
                self.wall_offset_s = reading.wall_offset_s

    def kept(self) -> dict:
        """What to keep across starts (``restore`` takes it back)."""
        reading = self.reading_
        return {"boot": boot_id(), "offset_s": None if reading is None else reading.offset_s,
                "round_trip_s": None if reading is None else reading.round_trip_s,
                "wall_offset_s": self.wall_offset_s}

    def restore(self, kept: object) -> None:
        """Take back what ``kept`` gave at an earlier start: the offset only when it was
        measured in this boot (the monotonic clock started afresh at a reboot), the wall
        offset always (a guess for records of an unmeasured earlier boot)."""
        if not isinstance(kept, dict):
            return
        try:
            wall = kept.get("wall_offset_s")
            self.wall_offset_s = None if wall is None else float(wall)
            if kept.get("boot") == boot_id() and kept.get("offset_s") is not None:
                self.reading_ = ClockReading(offset_s=float(kept["offset_s"]),
                                             round_trip_s=float(kept.get("round_trip_s") or 0))
        except (TypeError, ValueError):  # written by another version
            return

    def at_monotonic(self, monotonic_s: float) -> float | None:
        """The server's time when ``time.monotonic()`` read ``monotonic_s``; None until
        measured."""
        reading = self.reading_
        return None if reading is None else monotonic_s + reading.offset_s

    def mark(self, monotonic_s: float) -> dict:
        """What a record made before the clock was measured keeps, to be stamped later
        (``stamp``): its monotonic time, this boot's id and its wall-clock time."""
        return {"monotonic": monotonic_s, "boot": boot_id(),
                "wall": time.time() - (time.monotonic() - monotonic_s)}

    def stamp(self, mark: dict) -> tuple[float | None, bool]:
        """The server time of a record ``mark`` kept, and whether it is a guess.

        A record of this boot is stamped exactly once the clock is measured (None before). One
        of an earlier boot that never reached the server cannot be placed on the monotonic
        clock: it is stamped from its wall-clock time and the last wall offset known (a guess;
        the server refuses it if the wall clock was wrong then); None while no wall offset is
        known.
        """
        try:
            if mark["boot"] == boot_id():
                return self.at_monotonic(float(mark["monotonic"])), False
            wall = self.wall_offset_s
            return (None if wall is None else float(mark["wall"]) + wall), True
        except (KeyError, TypeError, ValueError):
            return None, True
