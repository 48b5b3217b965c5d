"""NFCS over time: chin quiver from the landmark time series, and the DAN facial score of a
window from how long the face shows pain.

DAN (Douleur Aiguë du Nouveau-né, Carbajal et al. 1997) rates the facial expression 0-4:
calm (0), fleeting expressions such as alternating eye opening and closing (1), then mild
intermittent (2), moderate (3) and very pronounced, continuous (4) pain expressions.
``dan_facial_score`` reads the last three from the share of the window in which the NFCS
count reaches the pain threshold: under 1/3, 1/3 to 2/3, over 2/3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from neopain.scoring.actions import ACTIONS, PAIN_COUNT, ScoringError
from neopain.scoring.nfcs import NfcsResult

QUIVER_MIN_AMPLITUDE = 0.015
"""Chin quiver: least RMS of the fast chin movement (IOD): above the face mesh's
frame-to-frame jitter of the chin-to-nose length (see docs/nfcs.md)."""

QUIVER_MIN_HZ = 2.0
"""Chin quiver: least oscillation frequency; slower than this is breathing, sucking or the
jaw's opening and closing in a cry cycle, not a quiver."""

QUIVER_SMOOTHING_S = 0.5
"""Movement slower than a moving average over this many seconds is removed first."""


@dataclass(frozen=True)
class ChinQuiver:
    """Fast chin movement: RMS amplitude (IOD), dominant frequency (Hz) and the flag."""

    amplitude: float
    frequency_hz: float
    present: bool


def chin_quiver(jaw_lengths: Sequence[float] | np.ndarray, *, fps: float,
                min_amplitude: float = QUIVER_MIN_AMPLITUDE,
                min_hz: float = QUIVER_MIN_HZ) -> ChinQuiver:
    """Chin quiver from per-frame chin-to-nose lengths (``Measurements.jaw_length``, IOD).

    The slow part (a moving average over ``QUIVER_SMOOTHING_S``) is removed; what remains is
    a quiver when its RMS reaches ``min_amplitude`` and it oscillates at ``min_hz`` or faster
    (zero crossings / 2 per second).

    Raises:
        ScoringError: fewer than 1 second of frames, a frame rate too low to see ``min_hz``
            (it needs at least 2 × min_hz frames per second), or non-finite lengths.
    """
    series = np.asarray(jaw_lengths, dtype=float)
    if not fps >= 2 * min_hz:
        raise ScoringError(f"fps={fps} is too low to see a {min_hz:g} Hz chin quiver; valid: "
                           f"at least {2 * min_hz:g} frames per second")
    if series.ndim != 1 or len(series) < fps:
        raise ScoringError(f"chin quiver needs at least 1 second of frames ({fps:g}); got "
                           f"{series.shape}")
    if not np.isfinite(series).all():
        raise ScoringError("chin quiver: the jaw lengths hold NaN or infinite values")
    width = max(3, int(round(QUIVER_SMOOTHING_S * fps)) | 1)  # odd, centred
    padded = np.pad(series, width // 2, mode="reflect")
    residual = series - np.convolve(padded, np.ones(width) / width, mode="valid")
    amplitude = float(np.sqrt(np.mean(residual**2)))
    signs = np.signbit(residual[np.abs(residual) > 1e-9])
    crossings = int(np.count_nonzero(signs[1:] != signs[:-1]))
    frequency = crossings / 2 / (len(series) / fps)
    return ChinQuiver(amplitude, frequency, amplitude >= min_amplitude and frequency >= min_hz)


def dan_facial_score(counts: Sequence[int] | np.ndarray, *,
                     count_threshold: int = PAIN_COUNT) -> int:
    """The DAN facial item (0-4) of a window from its per-frame NFCS counts.

    0: no action in any frame; 1: actions, but never ``count_threshold`` at once; 2, 3, 4:
    the pain count is reached in under 1/3, 1/3 to 2/3, over 2/3 of the frames.

    Raises:
        ScoringError: an empty window.
    """
    counts = np.asarray(counts)
    if counts.size == 0:
        raise ScoringError("dan_facial_score needs at least one frame; the window is empty")
    share = float(np.mean(counts >= count_threshold))
    if share == 0.0:
        return int(bool((counts >= 1).any()))
    if share < 1 / 3:
        return 2
    return 3 if share <= 2 / 3 else 4


@dataclass(frozen=True)
class WindowScore:
    """A window of scored frames.

    Attributes:
        dan: DAN facial score 0-4 over the assessable frames (None when there are none).
        pain_share: share of assessable frames with the pain count reached.
        action_share: per action, share of assessable frames in which it was flagged.
        frames, assessable: frames in the window, and how many could be scored.
        chin_quiver: from the assessable frames' chin-to-nose lengths when ``fps`` was given
            and at least 80% of the window (and 1 s) was assessable; else None.
    """

    dan: int | None
    pain_share: float
    frames: int
    assessable: int
    action_share: dict[str, float] = field(default_factory=dict)
    chin_quiver: ChinQuiver | None = None


def score_window(results: Sequence[NfcsResult], *, fps: float | None = None,
                 count_threshold: int = PAIN_COUNT) -> WindowScore:
    """DAN facial score, action persistence and chin quiver of consecutive frames' results."""
    scored = [r for r in results if r.assessable]
    if not scored:
        return WindowScore(None, 0.0, len(results), 0)
    counts = np.array([r.count for r in scored])
    shares = {name: float(np.mean([r.flags[name] for r in scored])) for name in ACTIONS}
    quiver = None
    if fps is not None and len(scored) >= max(0.8 * len(results), fps):
        quiver = chin_quiver([r.measurements.jaw_length for r in scored], fps=fps)
    return WindowScore(dan_facial_score(counts, count_threshold=count_threshold),
                       float(np.mean(counts >= count_threshold)), len(results), len(scored),
                       shares, quiver)
