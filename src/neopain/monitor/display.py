"""What the live page shows for one frame: the state and the one number shown with it.

The page, the ward and an edge agent's terminal only render this; the rule lives here, in one
place (docs/monitor.md, "What the panel shows"):

- no face found: ``no face``, no number;
- a face the model cannot judge: ``cannot assess``, no number;
- a model whose referral band held both labels over the smoothing window
  (``FrameAssessment.uncertain``): ``uncertain – look at the baby``, no number (neither pain
  nor no pain is vouched for, so no confidence in either is shown);
- otherwise the held (hysteresis) state, ``PAIN`` or ``no pain``, with the confidence in THAT
  state from the smoothed P(pain): P(pain) when the state is pain, 1 − P(pain) when it is no
  pain. The number is shown only when the smoothed value lies on the state's own side of the
  threshold and the confidence is at least 50 %; otherwise (the smoothed value has crossed
  the threshold but not yet the hysteresis band, so the state is held) the number line reads
  ``borderline``. The panel therefore never shows "no pain 47 %" or "PAIN 47 %": a number
  shown is always 50–100 % and always agrees with the state beside it.

"uncertain" is the model's own state (its band holds both labels); "borderline" is a held
state whose smoothed value sits between the threshold and the hysteresis band. Two words, so a
nurse is never told two different things with one.
"""

from __future__ import annotations

from dataclasses import dataclass

from neopain.monitor.pipeline import FrameAssessment

STATE_TEXT = {"pain": "PAIN", "nopain": "no pain"}
KIND_TEXT = {**STATE_TEXT, "uncertain": "uncertain – look at the baby", "noface": "no face",
             "unassessable": "cannot assess"}
"""Each kind the panel shows, in the nurse's words (the ward's tiles say the same)."""
BORDERLINE = "borderline"
"""The number line of a held state whose smoothed value has crossed the threshold."""
NO_NUMBER = "–"


@dataclass(frozen=True)
class Shown:
    """The panel's reading of one frame.

    Attributes:
        kind: ``pain``, ``nopain``, ``uncertain``, ``noface`` or ``unassessable`` (the page
            styles by it).
        text: the state as the nurse reads it (``KIND_TEXT``): ``PAIN``, ``no pain``,
            ``uncertain – look at the baby``, ``no face``, ``cannot assess``.
        confidence: P(shown state) from the smoothed P(pain), 0.5–1; None when no number is
            vouched for.
        number: what the confidence line shows: ``83%``, ``borderline`` or ``–``.
    """

    kind: str
    text: str
    confidence: float | None
    number: str


def shown_state(*, state: str | None, smoothed: float | None, threshold: float | None,
                uncertain: bool = False) -> Shown:
    """The held ``state`` and the number shown with it (module docstring): ``uncertain`` with
    no number when the referral band says so; ``borderline`` for the number when the smoothed
    value is missing, outside 0–1 (NaN included), or on the other side of ``threshold``."""
    if state not in STATE_TEXT:
        return Shown(kind="unassessable", text=KIND_TEXT["unassessable"], confidence=None,
                     number=NO_NUMBER)
    if uncertain:
        return Shown(kind="uncertain", text=KIND_TEXT["uncertain"], confidence=None,
                     number=NO_NUMBER)
    pain = state == "pain"
    agrees = (smoothed is not None and threshold is not None and 0.0 <= smoothed <= 1.0
              and (smoothed >= threshold if pain else smoothed < threshold))
    confidence = (smoothed if pain else 1.0 - smoothed) if agrees else None
    if confidence is None or confidence < 0.5:
        return Shown(kind=state, text=STATE_TEXT[state], confidence=None, number=BORDERLINE)
    return Shown(kind=state, text=STATE_TEXT[state], confidence=round(confidence, 4),
                 number=f"{round(confidence * 100)}%")


def shown_of(result: FrameAssessment, *, threshold: float | None = None) -> Shown:
    """What the panel shows for ``result``; ``threshold`` is the one the state was held
    against (the assessor's; None: the prediction's own)."""
    if result.face is None or result.prediction is None:
        return Shown(kind="noface", text=KIND_TEXT["noface"], confidence=None, number=NO_NUMBER)
    if not result.prediction.assessable:
        return Shown(kind="unassessable", text=KIND_TEXT["unassessable"], confidence=None,
                     number=NO_NUMBER)
    return shown_state(state=result.state, smoothed=result.smoothed,
                       threshold=result.prediction.threshold if threshold is None else threshold,
                       uncertain=result.uncertain)

