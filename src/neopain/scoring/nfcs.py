"""The NFCS facial-action scorer: face mesh landmarks → actions present → pain when 3 or more.

A rule-based screening aid after the Neonatal Facial Coding System (Grunau & Craig): each
action a face mesh can see is measured (``scoring.actions``), flagged when its intensity
reaches its threshold, and the face reads as pain when the number of flagged actions reaches
``count_threshold`` (3 by default, as in the published landmark-based method). It needs no
training data. It is not a validated medical device.

``NfcsScorer`` works on landmarks (pure numpy, well under a millisecond per face);
``NfcsPredictor`` is the ``Predictor`` that runs the face mesh on face crops first (or takes
the landmarks a tracked crop carries), for ``neopain assess``, the evaluation commands and the
bedside monitor.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from neopain.errors import NeopainError
from neopain.faces.crop import CropRule
from neopain.faces.landmarks import landmarks_of
from neopain.prediction import Calibration, Prediction, Predictor, RuntimeOptions
from neopain.scoring.actions import (
    ACTIONS,
    PAIN_COUNT,
    POPULATION_REFERENCE,
    Measurements,
    ScoringError,
    check_thresholds,
    intensities,
    measure,
)
from neopain.scoring.calibration import reference_of, rest_calibration, rest_reference

MAX_YAW = 30.0
MAX_PITCH = 25.0
"""Head turns (degrees) beyond which a face is not scored: the far half of the face is hidden
or foreshortened and the mesh guesses it."""

MIN_FACE_SIDE = 48
"""Faces smaller than this (pixels, the face box's side) are not scored ("face too small"):
the face mesh sees them upsampled 4× or more, and their lids and lips span a few pixels."""

CROP_MARGIN = 0.25
"""The scorer's crops: a square around the face box with this margin a side."""

MIN_CROP_SIDE = round(MIN_FACE_SIDE * (1 + 2 * CROP_MARGIN))
"""The crop side of a ``MIN_FACE_SIDE`` face."""

MIN_EVIDENCE = 0.2
"""An action lights its regions in ``evidence`` from this share of its threshold on."""

DECISION_THRESHOLD = 0.5
"""``prob_pain`` at or above this is pain; by construction exactly when count >= threshold."""

UNASSESSABLE_PROB = 0.5
"""``prob_pain`` of a face that cannot be scored (no mesh on the crop, head turned too far):
no evidence either way. At the 0.5 decision threshold it reads "pain", so a screening aid
refers what it cannot read to a person; ``details["assessable"]`` is 0 for such faces."""

SUMMARY: tuple[tuple[str, str], ...] = (
    ("what it is", "A rule-based screening aid after the Neonatal Facial Coding System (NFCS, "
     "Grunau & Craig 1987): facial actions are measured on a face mesh and counted; "
     f"{PAIN_COUNT} or more read as pain. Earlier landmark-based work reported 85-100% "
     "sensitivity and specificity on small samples."),
    ("what it is not", "Not a validated medical device and not a diagnosis. It flags faces for "
     "a nurse or doctor to look at. Its thresholds come from the face mesh's noise and an "
     "adult reference face, not from infant data; nothing in it was fitted to patients."),
    ("input", "A face crop; MediaPipe face mesh with refined eyes and lips (478 points)."),
    ("decision", f"Pain when the number of flagged actions reaches {PAIN_COUNT} "
     "(count_threshold). "
     "P(pain) is a logistic of how far the face is from the other decision: >= 0.5 exactly "
     "when the count is reached."),
    ("reference face", "Without calibration: MediaPipe's canonical adult face, lips closed. "
     "Better: calibrate on the baby's own rest face (a few seconds before a procedure)."),
    ("head pose", "Roll and face size removed, yaw and pitch compensated by a 3-D fit on rigid "
     f"points; a face turned beyond {MAX_YAW:g}° yaw or {MAX_PITCH:g}° pitch is not scored."),
    ("cannot score", "No face mesh on the crop, a face under "
     f"{MIN_FACE_SIDE} px, or head turned too far: assessable = 0 with the reason; every "
     "output shows cannot_assess and no P(pain) (a screen refers what it cannot read to a "
     "person)."),
    ("video", "Chin quiver from the chin's fast movement, and the DAN facial score 0-4 of a "
     "window from how long the pain face persists (neopain.scoring.dan; per window: neopain "
     "assess VIDEO --model nfcs --dan-window 10s)."),
    ("parameters", "None learned; `neopain train --model nfcs` only scores the test folds."),
)
"""Plain statements of what the scorer is, shown by ``neopain models show nfcs``."""


@dataclass(frozen=True)
class NfcsResult:
    """One face scored.

    Attributes:
        intensities: per action, the change from the reference towards the action (0 = like
            the reference; units in ``scoring.actions.ACTION_INFO``). Empty when unassessable.
        flags: per action, whether its intensity reached its threshold.
        count: number of flagged actions (the NFCS-style score, 0-7).
        pain: count >= count_threshold (False for a face that cannot be scored, whose
            ``prob_pain`` is nonetheless ``UNASSESSABLE_PROB``).
        prob_pain: a probability-like confidence (see ``pain_probability``).
        logit: the logit of ``prob_pain``, ``gain`` × distance (0 when unassessable), exact
            where ``prob_pain`` rounds to 0 or 1; what ``neopain calibrate`` rescales.
        assessable: False when the face could not be scored; ``reason`` says why.
        measurements: the face's geometry and head pose (None without landmarks).
        calibrated: intensities are relative to the subject's rest face, not the population.
    """

    intensities: Mapping[str, float]
    flags: Mapping[str, bool]
    count: int
    pain: bool
    prob_pain: float
    assessable: bool = True
    reason: str = ""
    measurements: Measurements | None = None
    calibrated: bool = False
    details: Mapping[str, float] = field(default_factory=dict, repr=False)
    logit: float = 0.0

    @property
    def actions(self) -> tuple[str, ...]:
        """The flagged actions, in ``ACTIONS`` order."""
        return tuple(name for name in ACTIONS if self.flags.get(name, False))


def pain_logit(values: Mapping[str, float], thresholds: Mapping[str, float], *,
               count_threshold: int, gain: float = 2.0) -> float:
    """The logit of ``pain_probability``: ``gain`` × how far the face is from the other
    decision, in threshold units (positive for pain).

    Each action's margin is ``(intensity − threshold) / threshold``. For a pain face the
    distance is the sum of the smallest margins of the flagged actions that would have to
    drop (count − count_threshold + 1 of them); for a no-pain face, of the missing actions
    that would have to rise (count_threshold − count). P = 1 / (1 + exp(∓gain · distance)),
    so P >= 0.5 exactly when count >= count_threshold, and a face one threshold-width from
    flipping reads 0.88 (or 0.12).
    """
    margins = np.array([(values[name] - thresholds[name]) / thresholds[name]
                        for name in thresholds])
    present = np.sort(margins[margins >= 0])
    missing = np.sort(-margins[margins < 0])
    count = len(present)
    if count >= count_threshold:
        distance = float(present[: count - count_threshold + 1].sum())
    else:
        distance = -float(missing[: count_threshold - count].sum())
    return gain * distance


def pain_probability(values: Mapping[str, float], thresholds: Mapping[str, float], *,
                     count_threshold: int, gain: float = 2.0) -> float:
    """A probability-like confidence: the logistic of ``pain_logit``."""
    logit = pain_logit(values, thresholds, count_threshold=count_threshold, gain=gain)
    return 1.0 / (1.0 + math.exp(-logit))


class NfcsScorer:
    """Scores face mesh landmarks against NFCS action thresholds.

    Args:
        count_threshold: actions needed for pain (NFCS-style score at or above it), 1-7.
        thresholds: per-action thresholds overriding ``DEFAULT_THRESHOLDS`` (same units).
        max_yaw, max_pitch: head turns (degrees) beyond which a face is unassessable.
        gain: steepness of the confidence (``pain_probability``).

    Without ``calibrate`` the reference face is ``POPULATION_REFERENCE``; after it, the
    subject's own rest face (as the published method compared each face with the baby's
    rest face).

    Example::

        scorer = NfcsScorer().calibrate(rest_landmarks)   # optional
        result = scorer.score(points)       # points: FaceMesh.landmarks(crop)
        result.count, result.pain, result.actions
    """

    def __init__(self, *, count_threshold: int = PAIN_COUNT,
                 thresholds: Mapping[str, float] | None = None,
                 max_yaw: float = MAX_YAW, max_pitch: float = MAX_PITCH,
                 gain: float = 2.0) -> None:
        if isinstance(count_threshold, bool) or not isinstance(count_threshold, int) or not (
                1 <= count_threshold <= len(ACTIONS)):
            raise ScoringError(f"count_threshold={count_threshold!r} is not valid; valid: a "
                               f"whole number from 1 to {len(ACTIONS)}")
        for name, value, top in (("max_yaw", max_yaw, 90), ("max_pitch", max_pitch, 90),
                                 ("gain", gain, math.inf)):
            if not (isinstance(value, (int, float)) and 0 < value <= top):
                raise ScoringError(f"{name}={value!r} is not valid; valid: a number in (0, "
                                   f"{top}]")
        self.count_threshold = count_threshold
        self.thresholds = check_thresholds(thresholds)
        self.max_yaw = float(max_yaw)
        self.max_pitch = float(max_pitch)
        self.gain = float(gain)
        self.reference_: Measurements | None = None
        self.rest_frames_ = 0

    @property
    def reference(self) -> Measurements:
        """The face intensities are relative to: the rest face, else the population's."""
        return self.reference_ if self.reference_ is not None else POPULATION_REFERENCE

    def pose_ok(self, measured: Measurements) -> bool:
        """Whether the head pose is within ``max_yaw`` and ``max_pitch``."""
        return abs(measured.yaw) <= self.max_yaw and abs(measured.pitch) <= self.max_pitch

    def calibrate(self, rest_landmarks: Sequence[np.ndarray]) -> NfcsScorer:
        """Use the median face of a rest period as the reference; returns self.

        Faces turned beyond the pose limits are left out; ``rest_frames_`` counts those used.

        Raises:
            ScoringError: no landmarks given, bad landmarks, or no face within the limits.
        """
        self.reference_, self.rest_frames_ = rest_reference(
            rest_landmarks, max_yaw=self.max_yaw, max_pitch=self.max_pitch)
        return self

    def score(self, landmarks: np.ndarray | None, *, face_side: float | None = None
              ) -> NfcsResult:
        """Score one face's landmarks ((468 or 478, 3), pixels); None: no face mesh found.
        ``face_side`` (the face box's longer side in pixels, when known): a face smaller than
        ``MIN_FACE_SIDE`` reads "face too small" whatever the mesh found.

        Raises:
            ScoringError: landmarks of the wrong shape or with NaN.
        """
        if face_side is not None and face_side < MIN_FACE_SIDE:
            return self.unassessable(
                f"face too small (about {face_side:.0f} px; valid: at least {MIN_FACE_SIDE} px "
                "across): bring the camera closer")
        if landmarks is None:
            return self.unassessable("no face mesh found")
        return self.score_measurements(measure(landmarks))

    def score_measurements(self, measured: Measurements) -> NfcsResult:
        """Score measurements taken with ``scoring.actions.measure``."""
        if not self.pose_ok(measured):
            return self.unassessable(
                f"head turned beyond the limits (yaw {measured.yaw:.0f}°, pitch "
                f"{measured.pitch:.0f}°; valid: within ±{self.max_yaw:g}° and "
                f"±{self.max_pitch:g}°)", measured)
        values = intensities(measured, self.reference)
        flags = {name: values[name] >= self.thresholds[name] for name in ACTIONS}
        count = sum(flags.values())
        logit = pain_logit(values, self.thresholds, count_threshold=self.count_threshold,
                           gain=self.gain)
        details: dict[str, float] = {"landmarks": 1.0, "assessable": 1.0, "count": float(count),
                                     "count_threshold": float(self.count_threshold),
                                     "calibrated": float(self.reference_ is not None)}
        for name in ACTIONS:
            details[name] = round(values[name], 4)
            details[f"{name}_flag"] = float(flags[name])
        details.update(yaw=round(measured.yaw, 1), pitch=round(measured.pitch, 1),
                       roll=round(measured.roll, 1))
        return NfcsResult(values, flags, count, count >= self.count_threshold,
                          1.0 / (1.0 + math.exp(-logit)), measurements=measured,
                          calibrated=self.reference_ is not None, details=details, logit=logit)

    def unassessable(self, reason: str, measured: Measurements | None = None) -> NfcsResult:
        """The result for a face that cannot be scored (prob ``UNASSESSABLE_PROB``)."""
        details = {"landmarks": float(measured is not None), "assessable": 0.0, "count": 0.0,
                   "count_threshold": float(self.count_threshold),
                   "calibrated": float(self.reference_ is not None)}
        if measured is not None:
            details.update(yaw=round(measured.yaw, 1), pitch=round(measured.pitch, 1),
                           roll=round(measured.roll, 1))
        return NfcsResult({}, {}, 0, False, UNASSESSABLE_PROB, assessable=False, reason=reason,
                          measurements=measured, calibrated=self.reference_ is not None,
                          details=details)


def face_side(crop: np.ndarray) -> float:
    """The side of the face box a scorer's crop was cut around (``CROP_MARGIN`` a side)."""
    return min(crop.shape[:2]) / (1 + 2 * CROP_MARGIN)


def to_prediction(result: NfcsResult) -> Prediction:
    """The ``Prediction`` of a scored face; ``details`` carries intensities, flags and count."""
    label = "pain" if result.prob_pain >= DECISION_THRESHOLD else "nopain"
    return Prediction(prob_pain=result.prob_pain, label=label, threshold=DECISION_THRESHOLD,
                      model="nfcs", details=dict(result.details), assessable=result.assessable,
                      reason=result.reason)


class NfcsPredictor(Predictor):
    """The NFCS scorer as a ``Predictor``: face crops → face mesh → ``Prediction``.

    Args:
        count_threshold, thresholds: as for ``NfcsScorer``.
        refine: use the mesh with refined eyes and lips (478 points; steadier eye and lip
            contours for about 2 ms more per face).
        min_confidence: the face mesh's lowest face score.

    A crop on which the mesh finds no face, or a head turned beyond the pose limits, gives
    ``prob_pain`` ``UNASSESSABLE_PROB`` with ``details["assessable"] == 0`` (and
    ``details["landmarks"] == 0`` when no mesh was found); it never raises for it.
    Its ``evidence`` lights the facial regions of each action in proportion to its intensity
    (1 at its threshold or beyond). The predictor holds a MediaPipe graph: close it (or use
    ``with``).
    """

    name = "nfcs"
    crop = CropRule.padded_square(CROP_MARGIN)
    kind = "nfcs"
    default = True
    calibrates = True
    summary = ("NFCS facial actions from face-mesh landmarks; pain at 3 or more (rule-based "
               "screening aid, no training; neopain.scoring)")

    def __init__(self, *, count_threshold: int = PAIN_COUNT,
                 thresholds: Mapping[str, float] | None = None,
                 refine: bool = True, min_confidence: float = 0.5) -> None:
        from neopain.faces.landmarks import FaceMesh

        self.scorer = NfcsScorer(count_threshold=count_threshold, thresholds=thresholds)
        self.refine = refine
        self.min_confidence = min_confidence
        self._mesh = FaceMesh(refine=refine, min_confidence=min_confidence)
        self._meshed: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._owns_mesh = True  # False in a calibrated view (``with_calibration``)

    @classmethod
    def open(cls, spec: str, *, options: RuntimeOptions) -> NfcsPredictor:
        """The scorer with the published defaults (of ``options`` it takes none).

        Raises:
            NeopainError: MC dropout asked for (``mc_passes``): the scorer has no dropout.
        """
        if options.mc_passes:
            raise NeopainError(f"--mc-passes {options.mc_passes}: the NFCS scorer is rule-based "
                               "and has no dropout; MC dropout needs a trained network (a run "
                               "folder or its fold's model.pt)")
        return cls()

    def landmarks(self, crop: np.ndarray) -> np.ndarray | None:
        """The face mesh of one crop (BGR uint8), or None when no face is found. The meshes of
        the last ``predict_crops`` call are reused for the same crop arrays (``evidence``)."""
        for seen, points in self._meshed:
            if seen is crop:
                return points
        return self._own_mesh(crop)

    def _own_mesh(self, crop: np.ndarray) -> np.ndarray | None:
        """The landmarks the crop carries (a tracked face's, ``faces.tracking``) when they have
        this predictor's point count, else the face mesh run on the crop."""
        carried = landmarks_of(crop)
        if carried is not None and len(carried) == self._mesh.n_landmarks:
            return carried
        return self._mesh.landmarks(crop)

    def calibrate(self, crops: Sequence[np.ndarray]) -> Calibration:
        """The median rest face of ``crops`` (``calibration.rest_reference``; crops under
        ``MIN_CROP_SIDE`` left out); this predictor's own reference is unchanged. Raises
        ``ScoringError`` when no usable face is among the crops."""
        found = [points for crop in crops if face_side(crop) >= MIN_FACE_SIDE
                 and (points := self.landmarks(crop)) is not None]
        if not found:
            raise ScoringError(f"calibration: the face mesh found no face in the {len(crops)} "
                               "rest crop(s); valid: crops of the subject's face at rest")
        return rest_calibration(found, model=self.name, max_yaw=self.scorer.max_yaw,
                                max_pitch=self.scorer.max_pitch)

    def calibrate_crops(self, crops: Sequence[np.ndarray]) -> int:
        """Calibrate this predictor itself on rest crops (``calibrate``); the faces used."""
        self.scorer = self.with_calibration(self.calibrate(crops)).scorer
        return self.scorer.rest_frames_

    def with_calibration(self, calibration: Calibration) -> NfcsPredictor:
        """A view measuring against ``calibration``'s rest face that shares this predictor's
        face mesh (closing the view leaves the mesh open). Raises ``ScoringError`` for a
        calibration that is not an NFCS rest face."""
        view = copy.copy(self)
        view.scorer = copy.copy(self.scorer)
        view.scorer.reference_, view.scorer.rest_frames_ = (reference_of(calibration),
                                                            calibration.frames)
        view._meshed, view._owns_mesh = [], False
        return view

    def score_crops(self, crops: Sequence[np.ndarray]) -> list[NfcsResult]:
        """Full results (intensities, flags, pose) for face crops; a crop smaller than
        ``MIN_CROP_SIDE`` is not meshed and reads "face too small"."""
        meshed = [(crop, None if face_side(crop) < MIN_FACE_SIDE
                   else self._own_mesh(crop)) for crop in crops]
        self._meshed = meshed  # held for evidence() on the same crops
        return [self.scorer.score(points, face_side=face_side(crop)) for crop, points in meshed]

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        return [to_prediction(result) for result in self.score_crops(crops)]

    def explain(self, prediction: Prediction) -> list[str] | None:
        """The actions present, k of the 7 NFCS actions, and the reference face they were
        measured against (``scoring.explanation.action_lines``); [] for a face that could
        not be assessed."""
        from neopain.scoring.explanation import action_lines

        return action_lines(prediction)

    def window_score(self, predictions: Sequence[Prediction]) -> dict[str, float] | None:
        """The DAN facial score (0-4) of these predictions (``scoring.dan.score_window``)."""
        from neopain.scoring.explanation import dan_score

        return dan_score(predictions)

    def evidence(self, crops: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Each action's facial regions (``faces.regions``) lit by its intensity over its
        threshold (0–1), blurred with σ = 1/30 of the crop's shorter side; None where no face
        mesh is found or the face cannot be scored."""
        from neopain.scoring.explanation import action_heatmap

        return [action_heatmap(crop, landmarks=(points := self.landmarks(crop)),
                               result=self.scorer.score(points, face_side=face_side(crop)),
                               thresholds=self.scorer.thresholds) for crop in crops]

    def close(self) -> None:
        """Free the face mesh (a calibrated view leaves it to its predictor). Safe to call
        twice."""
        self._meshed = []
        if self._owns_mesh:
            self._mesh.close()
