"""How a model's test metrics hold up when its face crops are corrupted (``corruptions``).

``manifest_faces`` gathers a fold's test images with their face box and facial points;
``score_corruptions`` cuts each face as its predictor does (``Predictor.crop``), corrupts the
crop by every corruption at every severity, and has the predictor assess them all; the
result has one row per image and condition (severity 0: the clean crop). ``robustness_table``
turns those rows into accuracy, AUC, sensitivity and specificity per corruption and severity,
pooled over folds (each image scored by the model that held it out) and per fold.

A model may decline to assess a face (the NFCS scorer when the face mesh finds no face, or
the head is turned too far). Metrics are over the assessable faces, and ``assessable`` says
what share that was: a corruption that hides the face from such a model shows as a falling
``assessable``, not as wrong answers.

Example:
    >>> faces = manifest_faces(manifest, rows=rows)  # doctest: +SKIP
    >>> scores = score_corruptions(predictor, faces, corruptions=["blur"], seed=0)  # doctest: +SKIP
    >>> table = robustness_table(scores)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from neopain.data.images import ImageReadError, read_image
from neopain.data.manifest import Manifest
from neopain.errors import NeopainError
from neopain.evaluation.corruptions import CORRUPTIONS, SEVERITIES, check_corruption, corrupt
from neopain.faces.landmarks import load_landmarks
from neopain.faces.regions import REGIONS, region_map
from neopain.prediction import Predictor
from neopain.runs.layout import LABEL_VALUES

CLEAN = "clean"
SCORE_COLUMNS = ("fold", "row", "image", "label", "corruption", "severity", "prob_pain", "pred",
                 "assessable", "reason")
TABLE_COLUMNS = ("fold", "corruption", "severity", "parameter", "images", "assessable",
                 "accuracy", "auc", "recall", "specificity", "clean_accuracy")
TABLE_METRICS = ("accuracy", "auc", "recall", "specificity")
CROPS_PER_CALL = 16
"""How many corrupted crops of a face are made and assessed at once: all 81 conditions of a
4K whole-image crop would hold about 2 GB."""
ProgressHook = Callable[[int, int], None]
UnreadableHook = Callable[[ImageReadError], None]


@dataclass(frozen=True)
class Face:
    """One test image and what is known about its face.

    Attributes:
        row: the manifest row.
        image: the image file.
        name: the manifest's ``image`` cell, for tables.
        label: 1 pain, 0 no pain.
        box: the face box (x1, y1, x2, y2) in image pixels, None when the manifest has none.
        keypoints: (5, 2) in image pixels, None when unknown.
        landmarks: the face mesh file (.npy, image pixels), None when unknown.
        fold: the fold that holds the image out.
    """

    row: int
    image: Path
    name: str
    label: int
    box: tuple[float, float, float, float] | None
    keypoints: np.ndarray | None
    landmarks: Path | None
    fold: int = 0


def manifest_faces(manifest: Manifest, *, rows: Sequence[int], fold: int = 0) -> list[Face]:
    """The manifest's ``rows`` as faces held out by ``fold``.

    Raises:
        NeopainError: a row whose label is not ``pain`` or ``nopain``.
    """
    table = manifest.table
    boxes, keypoints = manifest.boxes(), manifest.keypoints()
    faces = []
    for row in rows:
        label = str(table["label"].iat[row])
        if label not in LABEL_VALUES:
            raise NeopainError(f"manifest row {row} ({table['image'].iat[row]}) has label "
                               f"{label!r}; valid: {' or '.join(LABEL_VALUES)} on every scored "
                               "row")
        box = boxes[row]
        points = keypoints[row]
        mesh = str(table["landmarks"].iat[row]).strip()
        faces.append(Face(
            row=int(row), image=manifest.image_path(row), name=str(table["image"].iat[row]),
            label=LABEL_VALUES[label],
            box=None if np.isnan(box).any() else tuple(float(v) for v in box),
            keypoints=None if np.isnan(points).any() else points.astype(np.float64),
            landmarks=manifest.root / mesh if mesh else None, fold=fold))
    return faces


def conditions(corruptions: Sequence[str], *,
               severities: Sequence[int] = SEVERITIES) -> list[tuple[str, int]]:
    """The clean condition and every (corruption, severity) asked for, in table order.

    Raises:
        NeopainError: an unknown corruption or severity, or none asked for.
    """
    if not corruptions or not severities:
        raise NeopainError("no corruption or no severity asked for; valid corruptions: "
                           f"{', '.join(CORRUPTIONS)}; severities: "
                           f"{', '.join(map(str, SEVERITIES))}")
    for name in corruptions:
        for severity in severities:
            check_corruption(name, severity)
    order = [name for name in CORRUPTIONS if name in corruptions]
    return [(CLEAN, 0), *((name, s) for name in order for s in sorted(set(severities)))]


def _crop_regions(face: Face, predictor: Predictor, image: np.ndarray,
                  crop: np.ndarray) -> np.ndarray | None:
    """The facial region of every crop pixel, from the face's mesh or keypoints moved onto the
    crop (None when the face has neither)."""
    mesh = None if face.landmarks is None else load_landmarks(face.landmarks)[:, :2]
    if mesh is None and face.keypoints is None:
        return None
    left, top, right, bottom = predictor.crop.placement(face.box, image_shape=image.shape)
    scale = np.array([crop.shape[1] / (right - left), crop.shape[0] / (bottom - top)])

    def moved(points: np.ndarray | None) -> np.ndarray | None:
        return None if points is None else (points - [left, top]) * scale

    return region_map(crop.shape[:2], keypoints=moved(face.keypoints), landmarks=moved(mesh))


def _seed(seed: int, name: str, row: int) -> int:
    """One seed per image and corruption, whatever else is scored (a subset of corruptions or
    images gives the same pictures as the full run); the same at every severity, so that a
    severity only strengthens the same noise, patches, rotation or shift."""
    index = list(CORRUPTIONS).index(name)
    return int(np.random.SeedSequence([seed, index, row]).generate_state(1)[0])


def score_corruptions(predictor: Predictor, faces: Sequence[Face], *,
                      corruptions: Sequence[str] = tuple(CORRUPTIONS),
                      severities: Sequence[int] = SEVERITIES, seed: int = 0,
                      on_progress: ProgressHook | None = None,
                      on_unreadable: UnreadableHook | None = None) -> pd.DataFrame:
    """Assess every face clean and under every corruption and severity.

    A face's conditions are corrupted and assessed ``CROPS_PER_CALL`` at a time, keeping only
    the results. A region occlusion is skipped for a face with neither keypoints nor
    landmarks, and for one whose crop does not show that region (a face box cut above the
    chin): covering nothing would count as surviving the occlusion. Its rows are missing from
    the result; ``robustness_table`` counts the images of each condition.

    Args:
        predictor: the model; crops are cut by its ``crop`` rule.
        faces: the images (``manifest_faces``).
        seed: fixes the random parts of the corruptions.
        on_progress: called ``(faces done, faces)`` after each face.
        on_unreadable: called with the error of an image that cannot be read, which is then
            left out; None: the error is raised.

    Returns:
        One row per face and condition (``SCORE_COLUMNS``); ``pred`` is ``cannot_assess``
        and ``prob_pain`` NaN where the model could not assess the face (never its
        placeholder P(pain)).

    Raises:
        NeopainError: an unknown corruption or severity, a crop the predictor's rule cannot
            cut (a face box missing for a model that needs one), no faces.
    """
    wanted = conditions(corruptions, severities=severities)
    occludes = any(name != CLEAN and CORRUPTIONS[name].region for name, _ in wanted)
    if not faces:
        raise NeopainError("no images to score: the fold's test subjects or the manifest gave "
                           "none")
    records = []
    for done, face in enumerate(faces, start=1):
        try:
            image = read_image(face.image)
        except ImageReadError as error:
            if on_unreadable is None:
                raise
            on_unreadable(error)
            continue
        if predictor.crop.needs_box and face.box is None:
            raise NeopainError(f"{face.name} (row {face.row}): no face_box, but the model cuts "
                               f"a {predictor.crop.describe()} crop; detect faces first "
                               "(neopain faces detect)")
        crop = predictor.crop.cut(image, box=face.box)
        # the mesh read and the map drawn only when a region is to be covered
        regions = _crop_regions(face, predictor, image, crop) if occludes else None
        shown = set() if regions is None else {REGIONS[i] for i in np.unique(regions) if i >= 0}
        kept = [(name, severity) for name, severity in wanted
                if name == CLEAN or CORRUPTIONS[name].region in ("", *shown)]
        for start in range(0, len(kept), CROPS_PER_CALL):
            part = kept[start:start + CROPS_PER_CALL]
            crops = [crop if name == CLEAN else
                     corrupt(crop, name, severity=severity, seed=_seed(seed, name, face.row),
                             regions=regions)
                     for name, severity in part]
            for (name, severity), prediction in zip(part, predictor.predict_crops(crops)):
                records.append((face.fold, face.row, face.name, face.label, name, severity,
                                prediction.prob_pain if prediction.assessable else float("nan"),
                                prediction.label if prediction.assessable else "cannot_assess",
                                prediction.assessable, prediction.reason))
        if on_progress is not None:
            on_progress(done, len(faces))
    if not records:
        raise NeopainError("no image could be read; nothing was scored")
    return pd.DataFrame.from_records(records, columns=list(SCORE_COLUMNS))


def _metrics(group: pd.DataFrame) -> dict[str, float]:
    """Images, assessable share, and the metrics over the assessable faces: accuracy,
    sensitivity and specificity of the model's own labels (its threshold), AUC of P(pain)."""
    assessed = group[group["assessable"]]
    y = assessed["label"].to_numpy(int)
    pred = assessed["pred"].map(LABEL_VALUES).to_numpy(int)
    counts = {"images": len(group), "assessable": float(group["assessable"].mean())}
    if not len(y):
        return {**counts, **dict.fromkeys(TABLE_METRICS, float("nan"))}
    both = len(np.unique(y)) == 2
    return {
        **counts, "accuracy": float(accuracy_score(y, pred)),
        "auc": float(roc_auc_score(y, assessed["prob_pain"])) if both else float("nan"),
        "recall": float(recall_score(y, pred, zero_division=np.nan)),
        "specificity": float(recall_score(y, pred, pos_label=0, zero_division=np.nan)),
    }


def robustness_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Metrics per corruption and severity (``TABLE_COLUMNS``) from ``score_corruptions``'
    rows: pooled over folds (``fold`` = ``all``), then per fold when there are several.

    Metrics are over the faces the model could assess (``assessable`` is their share); a
    metric is NaN where it is undefined (AUC with one class among them, none assessable).
    ``clean_accuracy`` is the clean accuracy over the same images, the figure to compare with
    when a condition scored fewer images than the clean one (a region occlusion).
    """
    folds = sorted(scores["fold"].unique())
    groups = [("all", scores), *((str(f), scores[scores["fold"] == f]) for f in folds)
              ] if len(folds) > 1 else [("all", scores)]
    order = {name: i for i, name in enumerate([CLEAN, *CORRUPTIONS])}
    rows = []
    for fold, part in groups:
        keys = sorted(part.groupby(["corruption", "severity"]).groups,
                      key=lambda key: (order[key[0]], key[1]))
        clean = part[part["corruption"] == CLEAN].set_index(["fold", "row"])
        for name, severity in keys:
            group = part[(part["corruption"] == name) & (part["severity"] == severity)]
            same = clean[clean.index.isin(pd.MultiIndex.from_frame(group[["fold", "row"]]))]
            rows.append({"fold": fold, "corruption": name, "severity": int(severity),
                         "parameter": "" if name == CLEAN
                         else CORRUPTIONS[name].parameter(int(severity)),
                         **_metrics(group), "clean_accuracy": _metrics(same)["accuracy"]})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
