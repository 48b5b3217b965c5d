"""The offset of the server's clock from the device's, so that records carry server time.

``offset = server_time - (sent + answered) / 2`` over a few readings, keeping the one with the
shortest round trip (its midpoint is the closest guess of when the server read its clock; the
error is at most half that round trip).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from neopain.errors import NeopainError


@dataclass(frozen=True)
class ClockReading:
    """One measured offset.

    Attributes:
        offset_s: server time minus device time, seconds.
        round_trip_s: the round trip of the reading kept; the offset is good to half of it.
        measured_at: device time (``time.time()``) of the measurement.
    """

    offset_s: float
    round_trip_s: float
    measured_at: float


def best_offset(readings: Sequence[tuple[float, float, float]]) -> ClockReading:
    """The offset from the reading with the shortest round trip.

    Args:
        readings: ``(sent, server_time, answered)`` triples in seconds, device clock for
            ``sent`` and ``answered``.

    Raises:
        NeopainError: no readings, or one that answered before it was sent.
    """
    if not readings:
        raise NeopainError("readings is empty; the offset needs at least one clock reading")
    sent, server_time, answered = min(readings, key=lambda r: r[2] - r[0])
    if answered < sent:
        raise NeopainError(f"a clock reading answered at {answered} before it was sent at {sent}")
    return ClockReading(offset_s=server_time - (sent + answered) / 2,
                        round_trip_s=answered - sent, measured_at=answered)


def measure_offset(read: Callable[[], tuple[float, float, float]], *,
                   tries: int = 5) -> ClockReading:
    """``best_offset`` over ``tries`` calls of ``read`` (``DeviceClient.clock``); its errors
    pass through."""
    return best_offset([read() for _ in range(tries)])


class ServerClock:
    """Device time shifted by the last measured offset; safe to share between threads.

    Args:
        offset_s: the offset to start from (the last one measured, kept across starts); 0:
            the device's own clock until a measurement.
    """

    def __init__(self, *, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s
        self.reading_: ClockReading | None = None
        self._lock = threading.Lock()

    def set(self, reading: ClockReading) -> None:
        """Use a new measurement."""
        with self._lock:
            self.reading_ = reading
            self.offset_s = reading.offset_s

    def now(self) -> float:
        """The server's time now, UNIX seconds."""
        return time.time() + self.offset_s

    def at_monotonic(self, monotonic_s: float) -> float:
        """The server's time when ``time.monotonic()`` read ``monotonic_s``."""
        return self.now() - (time.monotonic() - monotonic_s)
