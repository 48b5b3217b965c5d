"""Per-subject calibration: the baby's own rest face as the reference for every action.

Faces differ (brow height, eye size, mouth width, lips that rest apart), and an infant's face
is not the adult canonical face the population reference comes from. The published
landmark method compared each face with the same baby's face at rest; ``rest_reference`` takes
the median geometry of a rest period so that intensities measure change from that face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields

import numpy as np

from neopain.prediction import Calibration
from neopain.scoring.actions import Measurements, ScoringError, measure, median_measurements


def rest_reference(rest_landmarks: Sequence[np.ndarray], *, max_yaw: float, max_pitch: float
                   ) -> tuple[Measurements, int]:
    """The median measurements of the rest faces within the pose limits, and how many.

    Args:
        rest_landmarks: face mesh landmarks ((468 or 478, 3), pixels) of the subject at rest,
            e.g. a few seconds of video before a procedure.
        max_yaw, max_pitch: faces turned further (degrees) are left out.

    Raises:
        ScoringError: no landmarks, landmarks of the wrong shape (naming which), or no face
            within the pose limits.
    """
    if isinstance(rest_landmarks, np.ndarray) and rest_landmarks.ndim == 2:
        rest_landmarks = [rest_landmarks]  # one face given on its own
    if len(rest_landmarks) == 0:
        raise ScoringError("calibration needs at least one rest face; got none")
    measured = []
    for index, points in enumerate(rest_landmarks):
        try:
            measured.append(measure(points))
        except ScoringError as error:
            raise ScoringError(f"rest face {index}: {error}") from None
    usable = [m for m in measured if abs(m.yaw) <= max_yaw and abs(m.pitch) <= max_pitch]
    if not usable:
        raise ScoringError(f"calibration: none of the {len(measured)} rest face(s) is within "
                           f"±{max_yaw:g}° yaw and ±{max_pitch:g}° pitch; valid: faces "
                           "looking roughly at the camera")
    return median_measurements(usable), len(usable)


def rest_calibration(rest_landmarks: Sequence[np.ndarray], *, model: str, max_yaw: float,
                     max_pitch: float) -> Calibration:
    """``rest_reference`` as a ``Calibration`` of ``model``: the median rest face's
    measurements by name, and how many faces it rests on. Raises as ``rest_reference``."""
    reference, frames = rest_reference(rest_landmarks, max_yaw=max_yaw, max_pitch=max_pitch)
    return Calibration(model=model, frames=frames, reference=asdict(reference))


def reference_of(calibration: Calibration) -> Measurements:
    """The rest face a ``Calibration`` holds (e.g. read back from the records).

    Raises:
        ScoringError: its reference is not every ``Measurements`` field as a finite number.
    """
    names = [field.name for field in fields(Measurements)]
    values = calibration.reference
    if set(values) != set(names) or not all(
            isinstance(values[name], (int, float)) and not isinstance(values[name], bool)
            and np.isfinite(values[name]) for name in names):
        raise ScoringError(f"calibration of {calibration.model!r}: its reference "
                           f"({', '.join(sorted(values))}) is not an NFCS rest face; valid: "
                           f"the numbers {', '.join(names)}")
    return Measurements(**{name: float(values[name]) for name in names})
