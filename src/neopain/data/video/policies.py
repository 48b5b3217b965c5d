"""Frame sampling policies: a window's face item score → frames per second."""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from typing import ClassVar

from neopain.errors import NeopainError


class FramePolicy(ABC):
    """How many frames per second to take from a window, given the window's face item score.

    Subclasses set ``name``, ``scale`` (the scale the score belongs to, None for any),
    ``max_score`` and ``default_pain_from``, and implement ``rate``. A window without a
    ``label`` is ``pain`` when its score is at least ``pain_from`` (None: the policy's
    default; a policy without a default needs labels in the table).
    """

    name: ClassVar[str]
    scale: ClassVar[str | None] = None
    max_score: ClassVar[float] = math.inf
    default_pain_from: ClassVar[float | None] = None

    def __init__(self, *, pain_from: float | None = None) -> None:
        if pain_from is not None and not 0 <= pain_from <= self.max_score:
            raise NeopainError(f"pain_from={pain_from} is outside the {self.name} policy's "
                               f"scores; valid: a number from 0 to {self.max_score:g}")
        self.pain_from = pain_from

    @abstractmethod
    def rate(self, score: float | None) -> float:
        """Frames per second for a window with this score."""

    def score_problem(self, score: float | None) -> str | None:
        """What is wrong with a window's score under this policy, or None."""
        if self.scale is None:  # any score, or none
            return None if score is None or score >= 0 else "is not a valid score; valid: >= 0"
        valid = f"a whole number from 0 to {self.max_score:g} (the {self.scale} face item)"
        if score is None:
            return f"is empty; the {self.name} policy needs the score: {valid}"
        ok = score == int(score) and 0 <= score <= self.max_score
        return None if ok else f"is not a valid {self.scale} face score; valid: {valid}"

    def label(self, score: float | None) -> str | None:
        """``pain`` or ``nopain`` from the score; None without a score or threshold."""
        threshold = self.default_pain_from if self.pain_from is None else self.pain_from
        if score is None or threshold is None:
            return None
        return "pain" if score >= threshold else "nopain"

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"


class DanPolicy(FramePolicy):
    """M-PAIN protocol: DAN face item 0–1 → 1 frame every 2 s, 2–4 → 1 frame/s; pain from 2."""

    name, scale, max_score, default_pain_from = "dan", "DAN", 4, 2

    def rate(self, score: float | None) -> float:
        return 0.5 if score is None or score < 2 else 1.0


class FlaccPolicy(FramePolicy):
    """VideoDol protocol: FLACC face item 0–1 → 1 frame/s, 2 → 2 frames/s; pain from 2."""

    name, scale, max_score, default_pain_from = "flacc", "FLACC", 2, 2

    def rate(self, score: float | None) -> float:
        return 1.0 if score is None or score < 2 else 2.0


class FixedPolicy(FramePolicy):
    """``fps`` frames per second whatever the score; labels come from the table by default."""

    name = "fixed"

    def __init__(self, fps: float = 1.0, *, pain_from: float | None = None) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise NeopainError(f"fps={fps} is not a valid frame rate; valid: a number > 0")
        self.fps = fps
        super().__init__(pain_from=pain_from)

    def rate(self, score: float | None) -> float:
        return self.fps


POLICIES: dict[str, type[FramePolicy]] = {p.name: p for p in (DanPolicy, FlaccPolicy, FixedPolicy)}


def make_policy(name: str, **options: float | None) -> FramePolicy:
    """Build a policy by name (``dan``, ``flacc``, ``fixed``); None options are left out.

    >>> make_policy("fixed", fps=2.0, pain_from=None)
    FixedPolicy(fps=2.0, pain_from=None)
    """
    if name not in POLICIES:
        raise NeopainError(f"policy={name!r} is unknown; valid: {', '.join(POLICIES)}")
    given = {key: value for key, value in options.items() if value is not None}
    allowed = inspect.signature(POLICIES[name]).parameters
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise NeopainError(f"{', '.join(extra)} does not apply to policy {name!r}; "
                           f"its options: {', '.join(allowed)}")
    return POLICIES[name](**given)
