"""Assess still images: files, a folder, or the rows of a manifest (faces from its face_box).

Each image is read with the package's one reader (``data.images.read_image``: EXIF orientation
applied, transparency on white, the ``NEOPAIN_MAX_IMAGE_PIXELS`` cap), its subject's face found
(``faces.choose_face``), cropped as the predictor was trained
(``predictor.crop``) and predicted in batches. An image that cannot be read
(a broken file, a FIFO or device named like an image, one over the pixel cap) or shows no face
gets a row saying so; nothing is dropped silently and the other images go on.

For a manifest, each row's ``face_box`` is taken as it is, so assessing a run's
manifest with its exported model reproduces the run's ``predictions.csv``.

On the Ray backend the images go to Ray actors in chunks of ``RAY_CHUNK_BATCHES`` batches;
each actor opens its own predictor (``open_predictor``) and detector once, and the results come
back in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from neopain.data.images import ImageReadError, read_image
from neopain.data.manifest import Manifest
from neopain.data.parallel import LOCAL, Backend, keep_worker_state, ordered_map, worker_state
from neopain.errors import NeopainError
from neopain.faces.base import Face, FaceDetector, choose_face, create_detector
from neopain.facial_actions import ACTION_NAMES
from neopain.prediction import Prediction, Predictor
from neopain.scoring.explanation import result_of

ProgressHook = Callable[[int, int], None]
Item = tuple[str, "int | None", Path, "Face | None"]
RAY_CHUNK_BATCHES = 4
"""Batches of images per Ray task: enough to outweigh a task's round trip."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PREDICTION_COLUMNS = ("prob_kind", "prob_raw", "prediction_set", "entropy",
                      "mutual_information")
"""What a prediction says of its own P(pain), in every assess output (``prediction_cells``):
``prob_kind`` what ``prob_pain`` is (``prediction.PROB_KINDS``: calibrated, uncalibrated or
score); ``prob_raw`` the model's own P(pain) when ``prob_pain`` is calibrated;
``prediction_set`` the conformal set (``pain``, ``nopain`` or ``pain|nopain``: uncertain, look
at the baby) when the model has a referral band; ``entropy`` and ``mutual_information`` (nats)
over MC-dropout passes or ensemble members. Empty where the model gives none."""
ACTION_COLUMNS = ("action_count", "actions", *ACTION_NAMES)
"""What a facial-action model (``nfcs``) found, in every assess output (``action_cells``):
``action_count`` the actions present (the NFCS-style score, 0-7), ``actions`` their names
joined by ``|`` in NFCS order, and one column per action with its intensity (the change from
the reference face towards the action; units and thresholds in ``neopain models show nfcs``).
Empty for a model that counts no actions (a CNN, an .onnx file) and for a face that could not
be assessed, so tables of every model share their columns."""
RESULT_COLUMNS = ("image", "row", "face", "x1", "y1", "x2", "y2", "prob_pain", "label",
                  "threshold", "model", "assessable", "problem", *PREDICTION_COLUMNS,
                  *ACTION_COLUMNS)
CANNOT_ASSESS = "cannot_assess"
"""The label of a face the model found but could not judge (head turned too far, face too
small, no face mesh): it carries no P(pain), and ``problem`` says why."""
UNKNOWN_REASON = "the model could not judge this face"
"""``problem`` of an unassessable face whose model gave no ``Prediction.reason``."""


def label_of(prediction: Prediction | None) -> str:
    """What a prediction says: ``pain``, ``nopain``, ``CANNOT_ASSESS``, or "" for none."""
    if prediction is None:
        return ""
    return prediction.label if prediction.assessable else CANNOT_ASSESS


def reason_of(prediction: Prediction) -> str:
    """Why the model could not assess the face (``UNKNOWN_REASON`` when it does not say); ""
    for an assessed face."""
    return "" if prediction.assessable else prediction.reason or UNKNOWN_REASON


def shown_prob(prediction: Prediction | None) -> float | None:
    """P(pain) when the model vouches for it; None without a prediction or for a face it
    could not assess (whose placeholder P(pain) means nothing)."""
    return prediction.prob_pain if prediction is not None and prediction.assessable else None


def action_cells(prediction: Prediction | None) -> dict[str, object]:
    """The ``ACTION_COLUMNS`` of one prediction (None or "" where there is nothing)."""
    result = None if prediction is None else result_of(prediction)
    if result is None or not result.assessable:
        return {"action_count": None, "actions": "", **dict.fromkeys(ACTION_NAMES)}
    return {"action_count": result.count, "actions": "|".join(result.actions),
            **{name: result.intensities[name] for name in ACTION_NAMES}}


def prediction_cells(prediction: Prediction | None) -> dict[str, object]:
    """The ``PREDICTION_COLUMNS`` of one prediction (None or "" where there is nothing, and
    for a face the model could not assess)."""
    if prediction is None or not prediction.assessable:
        return {"prob_kind": "", "prob_raw": None, "prediction_set": "", "entropy": None,
                "mutual_information": None}
    return {"prob_kind": prediction.prob_kind, "prob_raw": prediction.prob_raw,
            "prediction_set": prediction.prediction_set or "",
            "entropy": prediction.uncertainty.get("entropy"),
            "mutual_information": prediction.uncertainty.get("mutual_information")}


@dataclass(frozen=True)
class ImageAssessment:
    """One image's result.

    Attributes:
        image: the path as given (for a manifest: its ``image`` cell).
        row: the manifest row (0-based), or None for plain files.
        face: the face assessed, in image pixels; None when none was found.
        prediction: the model's output; None without a face or image.
        problem: why there is no prediction, or why the model could not assess the face
            (``Prediction.reason``); "" for an assessed face.
    """

    image: str
    row: int | None
    face: Face | None
    prediction: Prediction | None
    problem: str = ""


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Entries under ``folder`` (any depth) named like images (``IMAGE_SUFFIXES``), sorted.

    Everything but folders is listed, so that a FIFO, device or broken link named ``x.jpg``
    gets a result saying why it cannot be read rather than vanishing.

    Raises:
        NeopainError: not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NeopainError(f"{folder}: not a folder")
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and not os.path.isdir(p))


def _assess(items: Sequence[Item], predictor: Predictor, detector: str | FaceDetector | None,
            *, batch_size: int, on_progress: ProgressHook | None, backend: Backend,
            open_predictor: Callable[[], Predictor] | None) -> list[ImageAssessment]:
    """``_assess_with`` a detector; one built here from its name is closed here."""
    if backend.is_ray:
        return _assess_on_ray(items, detector, batch_size=batch_size, on_progress=on_progress,
                              backend=backend, open_predictor=open_predictor)
    if detector is None or isinstance(detector, FaceDetector):
        return _assess_with(items, predictor, detector, batch_size=batch_size,
                            on_progress=on_progress)
    with create_detector(detector) as built:
        return _assess_with(items, predictor, built, batch_size=batch_size,
                            on_progress=on_progress)


def _assess_with(items: Sequence[Item], predictor: Predictor, detector: FaceDetector | None, *,
                 batch_size: int, on_progress: ProgressHook | None) -> list[ImageAssessment]:
    results: list[ImageAssessment | None] = [None] * len(items)
    pending: list[tuple[int, Face, np.ndarray]] = []

    def flush() -> None:
        predictions = predictor.predict_crops([crop for _, _, crop in pending])
        for (index, face, _), prediction in zip(pending, predictions):
            name, row = items[index][:2]
            results[index] = ImageAssessment(name, row, face, prediction,
                                             reason_of(prediction))
        pending.clear()

    for index, (name, row, path, prior) in enumerate(items):
        try:
            image = read_image(path)
        except ImageReadError as error:
            results[index] = ImageAssessment(name, row, None, None,
                                             f"cannot read the image: {error.reason}")
        else:
            # no detector: the manifest's own box, untouched (detect() would rescale it)
            face = prior if detector is None else choose_face(
                detector.detect(image, prior=prior), image_shape=image.shape)
            if face is None:
                problem = "no face found" if detector is not None else \
                    "no face_box in this manifest row (a detector can look for the face)"
                results[index] = ImageAssessment(name, row, None, None, problem)
            else:
                try:
                    crop = predictor.crop.cut(image, box=face.box)
                except NeopainError as error:
                    results[index] = ImageAssessment(name, row, face, None, str(error))
                else:
                    pending.append((index, face, crop))
                    if len(pending) >= batch_size:
                        flush()
        if on_progress is not None:
            on_progress(index + 1, len(items))
    if pending:
        flush()
    return [result for result in results if result is not None]


def _open_actor(open_predictor: Callable[[], Predictor], detector: str | None
                ) -> tuple[Predictor, FaceDetector | None]:
    """A Ray actor's predictor and detector, kept as long as it lives."""
    return open_predictor(), None if detector is None else create_detector(detector)


def _assess_chunk(chunk: Sequence[Item], *, batch_size: int) -> list[ImageAssessment]:
    predictor, detector = worker_state()
    return _assess_with(chunk, predictor, detector, batch_size=batch_size, on_progress=None)


def _assess_on_ray(items: Sequence[Item], detector: str | FaceDetector | None, *,
                   batch_size: int, on_progress: ProgressHook | None, backend: Backend,
                   open_predictor: Callable[[], Predictor] | None) -> list[ImageAssessment]:
    """``_assess`` on Ray actors, in chunks of ``RAY_CHUNK_BATCHES`` batches."""
    if open_predictor is None or isinstance(detector, FaceDetector):
        raise NeopainError("the Ray backend needs open_predictor (a picklable function that "
                           "opens the predictor) and the detector by name, not an instance")
    size = RAY_CHUNK_BATCHES * batch_size
    chunks = [[(name, row, path.absolute(), prior) for name, row, path, prior
               in items[start:start + size]] for start in range(0, len(items), size)]
    results: list[ImageAssessment] = []
    assessed = ordered_map(partial(_assess_chunk, batch_size=batch_size), chunks, workers=1,
                           initializer=keep_worker_state,
                           initargs=(_open_actor, open_predictor, detector),
                           backend=backend)
    with closing(assessed):
        for chunk in assessed:
            results.extend(chunk)
            if on_progress is not None:
                on_progress(len(results), len(items))
    return results


def assess_images(paths: Sequence[str | os.PathLike[str]], predictor: Predictor, *,
                  detector: str | FaceDetector = "mediapipe-short", batch_size: int = 16,
                  on_progress: ProgressHook | None = None, backend: Backend = LOCAL,
                  open_predictor: Callable[[], Predictor] | None = None,
                  ) -> list[ImageAssessment]:
    """Assess image files, one result each, in order.

    Args:
        backend: ``ray``: on Ray actors, each opening ``open_predictor()`` (a picklable
            function; ``predictor`` is not used) and ``detector`` (a name) once.

    Raises:
        NeopainError: a detector that cannot be built.
    """
    items = [(str(path), None, Path(path), None) for path in paths]
    return _assess(items, predictor, detector, batch_size=batch_size, on_progress=on_progress,
                   backend=backend, open_predictor=open_predictor)


def assess_manifest(manifest: Manifest, predictor: Predictor, *, rows: Sequence[int] | None = None,
                    detector: str | FaceDetector | None = None, batch_size: int = 16,
                    on_progress: ProgressHook | None = None, backend: Backend = LOCAL,
                    open_predictor: Callable[[], Predictor] | None = None,
                    ) -> list[ImageAssessment]:
    """Assess manifest rows (all by default).

    ``detector=None`` takes each row's ``face_box`` as it is (rows without one get "no face
    found"); a detector name or instance looks for faces in the images instead. ``backend``
    and ``open_predictor`` as for ``assess_images``.

    Raises:
        NeopainError: a row index outside the manifest, a detector that cannot be built.
    """
    chosen = list(range(len(manifest))) if rows is None else [int(r) for r in rows]
    outside = [row for row in chosen if not 0 <= row < len(manifest)]
    if outside:
        raise NeopainError(f"rows has {outside[0]}; valid: 0 to {len(manifest) - 1}")
    boxes, points = manifest.boxes(), manifest.keypoints()
    items = []
    for row in chosen:
        prior = None
        if not np.isnan(boxes[row]).any():
            keypoints = None if np.isnan(points[row]).any() else points[row]
            prior = Face(tuple(float(v) for v in boxes[row]), 1.0, keypoints)
        items.append((str(manifest.table["image"].iat[row]), row, manifest.image_path(row),
                      prior))
    return _assess(items, predictor, detector, batch_size=batch_size, on_progress=on_progress,
                   backend=backend, open_predictor=open_predictor)


def results_table(results: Sequence[ImageAssessment]) -> pd.DataFrame:
    """One row per image, columns ``RESULT_COLUMNS`` (empty cells where there is nothing; a
    face the model could not assess: label ``cannot_assess``, no P(pain), ``assessable`` 0 and
    its reason in ``problem``)."""
    rows = []
    for result in results:
        box = result.face.box if result.face is not None else (None,) * 4
        prediction = result.prediction
        rows.append({
            "image": result.image, "row": result.row, "face": int(result.face is not None),
            "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3],
            "prob_pain": shown_prob(prediction), "label": label_of(prediction),
            "threshold": None if prediction is None else prediction.threshold,
            "model": "" if prediction is None else prediction.model,
            "assessable": None if prediction is None else int(prediction.assessable),
            "problem": result.problem or ("" if prediction is None else reason_of(prediction)),
            **prediction_cells(prediction),
            **action_cells(prediction)})
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).astype(
        {"row": "Int64", "assessable": "Int64", "action_count": "Int64"})
