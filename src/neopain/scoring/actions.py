"""Face mesh landmarks → head pose and facial measurements → NFCS action intensities. Pure
functions on arrays.

Every face is first aligned to MediaPipe's canonical face (``scoring.canonical``) by a
similarity transform fitted on rigid points only: forehead, nose ridge, eye corners and
temples, which no facial action moves. That removes head roll, yaw and pitch (in 3-D, with the
mesh's depth) and face size at once; the rotation gives the head pose. Lengths are then
measured along the face's own axes in units of the inter-ocular distance (IOD) of the
canonical face, i.e. of this face's rigid size, so closing the eyes does not change the unit.

An action's intensity is the change of its measurement from a reference face in the
direction of the action: 0 = like the reference, positive = towards the action, negative =
the other way (brows raised, eyes wider). The reference is either ``POPULATION_REFERENCE``
(the canonical face, lips closed) or a subject's own rest face (``scoring.calibration``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np

from neopain.errors import NeopainError
from neopain.facial_actions import ACTION_NAMES
from neopain.faces.landmarks import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR
from neopain.scoring.canonical import canonical_landmarks

ACTIONS = ACTION_NAMES
"""The NFCS actions a still face mesh can show (chin quiver needs time: ``scoring.dan``)."""

PAIN_COUNT = 3
"""NFCS reads a face as in pain when this many actions or more are present."""

# forehead, nose ridge and tip, eye corners, temples: points no NFCS action moves
RIGID = (1, 4, 5, 6, 195, 197, 168, 10, 151, 33, 133, 263, 362, 234, 454, 127, 356, 162, 389,
         21, 251, 54, 284, 103, 332, 67, 297, 109, 338)  # fmt: skip
EYE_CORNERS = (33, 133, 263, 362)
BROWS = (55, 65, 52, 107, 66, 105, 285, 295, 282, 336, 296, 334)  # inner and middle thirds
UPPER_LIDS = (160, 159, 158, 387, 386, 385)
LOWER_LIDS = (144, 145, 153, 373, 374, 380)  # facing UPPER_LIDS one by one
UPPER_INNER_LIP = (13, 82, 312)
LOWER_INNER_LIP = (14, 87, 317)  # facing UPPER_INNER_LIP
MOUTH_CORNERS = (61, 291)
UPPER_LIP_MIDDLE = 13  # the upper lip's inner edge, at the middle
SUBNASALE, MENTON = 2, 152
NOSE_WINGS = (98, 327)
INNER_EYE_CORNERS = (133, 362)
CHEEKS = (205, 425)
LOWER_LID_MIDDLES = (145, 374)


class ScoringError(NeopainError):
    """Landmarks or settings NFCS scoring cannot use; the message says what is valid."""


@dataclass(frozen=True)
class Measurements:
    """One face's geometry after alignment; lengths in IOD, angles in degrees.

    Attributes:
        brow_height: eye-corner line to the inner and middle brows (lower when brows drop).
        eye_opening: lid-to-lid distance over eye width, both eyes (the eye aspect ratio).
        lip_gap: distance between the inner lips (0 when the lips touch).
        mouth_width: corner to corner.
        corner_lift: how far the mouth corners sit above the middle of the upper lip's inner
            edge (a smile lifts them above it; in a neutral or crying mouth they sit below).
        jaw_length: subnasale to chin (longer when the jaw drops).
        nose_wing: inner eye corners down to the nose wings.
        cheek: lower eyelids down to the cheeks.
        yaw, pitch, roll: head pose relative to the camera (0, 0, 0: facing it upright).
            Yaw > 0: turned towards the image right; pitch > 0: looking down; roll > 0:
            clockwise in the image.
    """

    brow_height: float
    eye_opening: float
    lip_gap: float
    mouth_width: float
    corner_lift: float
    jaw_length: float
    nose_wing: float
    cheek: float
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


_CANONICAL = canonical_landmarks()
_CANONICAL_RIGID = _CANONICAL[list(RIGID)]
_CANONICAL_RIGID_CENTRE = _CANONICAL_RIGID.mean(axis=0)
_CANONICAL_RIGID_CENTRED = _CANONICAL_RIGID - _CANONICAL_RIGID_CENTRE
CANONICAL_IOD = float(np.linalg.norm(_CANONICAL[list(LEFT_EYE_CONTOUR)].mean(axis=0)
                                     - _CANONICAL[list(RIGHT_EYE_CONTOUR)].mean(axis=0)))
"""Distance between the eye-contour centres of the canonical face: the unit of lengths."""


def check_landmarks(landmarks: object, *, what: str = "landmarks") -> np.ndarray:
    """``landmarks`` as a float (468 or 478, 3) array of finite numbers, or a clear error."""
    points = np.asarray(landmarks, dtype=float)
    if points.ndim != 2 or points.shape[0] not in (468, 478) or points.shape[1] != 3:
        raise ScoringError(f"{what} has shape {points.shape}; valid: face mesh landmarks, "
                           "(468, 3) or (478, 3) (FaceMesh.landmarks or a landmarks .npy)")
    if not np.isfinite(points).all():
        raise ScoringError(f"{what} holds NaN or infinite values; valid: finite numbers")
    return points


def align(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The landmarks moved onto the canonical face by the similarity transform that best fits
    the rigid points (Umeyama's least squares), and the head rotation.

    Returns:
        The aligned (N, 3) points in canonical units (divide by ``CANONICAL_IOD`` for IOD),
        and the 3×3 rotation ``R`` with ``aligned = s · (points − mean) @ R + canonical mean``;
        ``R`` (column convention) turns the canonical face into the head's orientation.
    """
    rigid = landmarks[list(RIGID)]
    centre = rigid.mean(axis=0)
    centred = rigid - centre
    u, singular, vt = np.linalg.svd(centred.T @ _CANONICAL_RIGID_CENTRED)
    sign = 1.0 if np.linalg.det(u @ vt) > 0 else -1.0  # a rotation, never a mirror image
    d = np.array([1.0, 1.0, sign])
    rotation = (u * d) @ vt
    scale = float((singular * d).sum() / (centred**2).sum())
    return (landmarks - centre) @ rotation * scale + _CANONICAL_RIGID_CENTRE, rotation


def head_pose(rotation: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch and roll in degrees from ``align``'s rotation (signs as in Measurements)."""
    forward = -rotation[:, 2]  # the canonical face looks along -z, towards the camera
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, float(forward[1])))))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    return yaw, pitch, roll


def _rows(points: np.ndarray, indices: tuple[int, ...]) -> np.ndarray:
    return points[list(indices)]


def measure_aligned(points: np.ndarray, *, pose: tuple[float, float, float] = (0.0, 0.0, 0.0)
                    ) -> Measurements:
    """Measurements of points already in the canonical frame (``align`` output or the
    canonical face itself)."""
    y = points[:, 1]
    corners = y[list(EYE_CORNERS)].mean()
    lids = np.linalg.norm(_rows(points, UPPER_LIDS) - _rows(points, LOWER_LIDS), axis=1)
    widths = np.linalg.norm(points[[33, 263]] - points[[133, 362]], axis=1)
    lips = np.linalg.norm(_rows(points, UPPER_INNER_LIP) - _rows(points, LOWER_INNER_LIP),
                          axis=1)
    eye_opening = float((lids.reshape(2, 3).mean(axis=1) / widths).mean())
    lengths = (
        corners - y[list(BROWS)].mean(),
        lips.mean(),
        np.linalg.norm(points[MOUTH_CORNERS[0]] - points[MOUTH_CORNERS[1]]),
        y[UPPER_LIP_MIDDLE] - y[list(MOUTH_CORNERS)].mean(),
        y[MENTON] - y[SUBNASALE],
        y[list(NOSE_WINGS)].mean() - y[list(INNER_EYE_CORNERS)].mean(),
        y[list(CHEEKS)].mean() - y[list(LOWER_LID_MIDDLES)].mean(),
    )
    brow_height, *rest = (float(v) / CANONICAL_IOD for v in lengths)
    return Measurements(brow_height, eye_opening, *rest, *pose)


def measure(landmarks: np.ndarray) -> Measurements:
    """Align face mesh landmarks ((468 or 478, 3), pixels) and measure them.

    Raises:
        ScoringError: not face mesh landmarks.
    """
    aligned, rotation = align(check_landmarks(landmarks))
    return measure_aligned(aligned, pose=head_pose(rotation))


POPULATION_REFERENCE = replace(measure_aligned(_CANONICAL), lip_gap=0.0)
"""The reference without calibration: MediaPipe's canonical (adult, neutral) face, except
that the lips are closed (the canonical mouth is slightly open, 0.09 IOD)."""

SMILE_LIFT = 0.05
"""Corner lift (IOD, above the reference's) up to which a wider mouth counts fully as
horizontal stretch; from twice this it does not count at all (a smile, see ``intensities``)."""


def _shorter(value: float, reference: float) -> float:
    return 1.0 - value / reference


def intensities(measured: Measurements, reference: Measurements = POPULATION_REFERENCE
                ) -> dict[str, float]:
    """Each action's intensity relative to ``reference`` (see the module doc for the sign).

    - brow_bulge: brow lowering, IOD.
    - eye_squeeze: share of the reference eye opening that is closed.
    - nasolabial_furrow: mean shortening (share) of the eye-to-nose-wing and lid-to-cheek
      heights: the nose wings and cheeks rising, which pulls up and deepens the furrow.
    - open_lips: inner-lip gap beyond the reference's, IOD.
    - vertical_mouth_stretch: jaw lengthening (share): the jaw pulled down.
    - horizontal_mouth_stretch: mouth widening (share), counted in full while the corners
      rise at most ``SMILE_LIFT`` above the reference's and not at all from twice that: a
      smile widens the mouth by lifting the corners, a crying mouth pulls them out and down.
    - lip_purse: mouth narrowing (share).
    """
    widening = measured.mouth_width / reference.mouth_width - 1.0
    lift = measured.corner_lift - reference.corner_lift
    counted = min(1.0, max(0.0, 2.0 - lift / SMILE_LIFT))
    return {
        "brow_bulge": reference.brow_height - measured.brow_height,
        "eye_squeeze": _shorter(measured.eye_opening, reference.eye_opening),
        "nasolabial_furrow": (_shorter(measured.nose_wing, reference.nose_wing)
                              + _shorter(measured.cheek, reference.cheek)) / 2.0,
        "open_lips": measured.lip_gap - reference.lip_gap,
        "vertical_mouth_stretch": measured.jaw_length / reference.jaw_length - 1.0,
        "horizontal_mouth_stretch": widening * counted,
        "lip_purse": -widening,
    }


def median_measurements(items: list[Measurements]) -> Measurements:
    """Field-by-field median of several measurements (a rest period's reference face)."""
    if not items:
        raise ScoringError("median_measurements needs at least one measurement")
    return Measurements(*(float(np.median([getattr(m, f.name) for m in items]))
                          for f in fields(Measurements)))


@dataclass(frozen=True)
class ActionInfo:
    """What an action is (NFCS's words), how it is measured, and why its default threshold."""

    name: str
    nfcs: str
    measure: str
    landmarks: str
    unit: str
    threshold: float
    rationale: str


ACTION_INFO: dict[str, ActionInfo] = {info.name: info for info in (
    ActionInfo("brow_bulge", "bulging, creasing and vertical furrows above and between the "
               "brows, from lowering and drawing the brows together",
               "brow lowering: drop of the inner and middle brows towards the eye-corner line",
               "brows 55 65 52 107 66 105 285 295 282 336 296 334; eye corners 33 133 263 362",
               "IOD", 0.03,
               "6× the mesh's jitter (σ 0.005 IOD); brows warped 0.09 IOD down read 0.06"),
    ActionInfo("eye_squeeze", "identifiable squeezing or bulging of the eyelids",
               "share of the reference eye opening (lid-to-lid over eye width) that is closed",
               "upper lids 160 159 158 387 386 385; lower lids 144 145 153 373 374 380",
               "share", 0.25,
               "12× the jitter (σ 0.02); the mesh reports about 60% of a real closure (lids "
               "warped 80% closed read 0.5), a squeeze shuts the eyes"),
    ActionInfo("nasolabial_furrow", "pulling up and deepening of the furrow from the nose "
               "wings to beyond the lip corners",
               "mean shortening of inner eye corner→nose wing and lower lid→cheek heights "
               "(nose wings and cheeks rising)",
               "eye corners 133 362, nose wings 98 327; lower lids 145 374, cheeks 205 425",
               "share", 0.15,
               "11× the jitter (σ 0.013); an adult's broad smile reads 0.08-0.12 against the "
               "population reference and stays below"),
    ActionInfo("open_lips", "any separation of the lips",
               "inner-lip gap beyond the reference's (closed lips: 0)",
               "inner lips 13-14, 82-87, 312-317", "IOD", 0.05,
               "7× the jitter (σ 0.007 IOD): the smallest gap the mesh reports reliably"),
    ActionInfo("vertical_mouth_stretch", "tautness at the lip corners with a pronounced "
               "downward pull of the jaw",
               "lengthening of subnasale→chin (the jaw pulled down)", "subnasale 2, chin 152",
               "share", 0.08,
               "7× the jitter (σ 0.012); parting the lips alone reads 0.02-0.04; the mesh "
               "follows the chin only in part (a 0.25 IOD jaw drop reads 0.10)"),
    ActionInfo("horizontal_mouth_stretch", "distinct horizontal pull at the lip corners",
               "mouth widening, counted while the corners are not lifted as in a smile",
               "corners 61 291; upper lip 13", "share", 0.12,
               "10× the jitter (σ 0.011); corners warped 0.14 IOD outwards and down read 0.18; "
               "the smile rule keeps a smile (corners lifted) from counting"),
    ActionInfo("lip_purse", "lips pursed as if to say 'oo'", "mouth narrowing",
               "corners 61 291", "share", 0.15,
               "13× the jitter (σ 0.011); corners warped 0.18 IOD inwards read 0.19"),
)}
"""The actions' documentation, shown by ``neopain models show nfcs`` and docs/nfcs.md."""

DEFAULT_THRESHOLDS: dict[str, float] = {name: info.threshold for name, info in
                                        ACTION_INFO.items()}


def check_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    """``DEFAULT_THRESHOLDS`` with ``thresholds`` over them, each checked (``ScoringError``
    naming a bad action or value)."""
    merged = dict(DEFAULT_THRESHOLDS)
    for name, value in (thresholds or {}).items():
        if name not in DEFAULT_THRESHOLDS:
            raise ScoringError(f"thresholds: unknown action {name!r}; valid: "
                               f"{', '.join(ACTIONS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0):
            raise ScoringError(f"thresholds[{name!r}]={value!r} is not valid; valid: a "
                               "number > 0")
        merged[name] = float(value)
    return merged
