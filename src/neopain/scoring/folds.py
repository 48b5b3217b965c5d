"""The NFCS scorer as a fold model: ``neopain train --model nfcs`` scores the test folds.

Nothing is learned (``fit`` does nothing), so each fold's test images (and its validation
images, for ``neopain calibrate``) are simply scored and written like a trained model's:
``fold_K/predictions.csv`` and ``validation.csv`` (the usual columns, ``logit_pain`` the logit
of the scorer's logistic, plus ``count`` and ``assessable``) and ``metrics.json`` (plus ``rows``
and ``unassessable`` of the test rows); the run record ``nfcs.json`` holds the scorer's
settings and, per fold, how many rows could not be scored. ``neopain evaluate`` and
``neopain compare`` then treat the run like any CNN's; ``neopain calibrate`` fits the
logistic's scale and offset (``--method platt``) on the validation images.

Landmarks come from the manifest's ``landmarks`` column (.npy, from ``neopain faces detect
--landmarks``) when a row has one; otherwise the face mesh runs on the image, cropped to its
``face_box`` (margin 0.25, as the monitor crops) when there is one and ``crop_to_face`` is on.
A row where no face mesh is found is kept with ``prob_pain`` 0.5 (``UNASSESSABLE_PROB``) and
``assessable`` 0, and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from neopain.data.manifest import Manifest, parse_box
from neopain.errors import NeopainError
from neopain.runs import (
    Description,
    DescriptionTable,
    FoldContext,
    FoldModel,
    FoldPredictions,
    FoldResult,
    RunConfig,
)
from neopain.scoring.nfcs import DECISION_THRESHOLD, SUMMARY, NfcsPredictor, NfcsScorer

if TYPE_CHECKING:
    from neopain.faces.landmarks import FaceMesh


def row_landmarks(manifest: Manifest, row: int, *, mesh: FaceMesh,
                  crop_to_face: bool = True) -> np.ndarray | None:
    """A manifest row's landmarks: its ``landmarks`` file, else the face mesh on its image.

    Raises:
        NeopainError: an unreadable image or landmarks file, or a bad face box (naming the
            manifest line and column).
    """
    from neopain.data.images import read_image
    from neopain.faces.landmarks import load_landmarks

    line = row + 2  # header is line 1
    table = manifest.table
    stored = table["landmarks"].iat[row].strip() if "landmarks" in table else ""
    try:
        if stored:
            return load_landmarks(manifest.root / stored)
        image = read_image(manifest.image_path(row))
        box = parse_box(table["face_box"].iat[row]) if crop_to_face else None
        if box is not None:
            image = NfcsPredictor.crop.cut(image, box=box)
    except (NeopainError, ValueError) as error:
        column = "landmarks" if stored else "image"
        raise NeopainError(f"manifest line {line}, column '{column}': {error}") from None
    return mesh.landmarks(image)


class NfcsFoldModel(FoldModel):
    """The NFCS scorer with its published defaults, against the population reference face.

    One face mesh serves every fold of a run: opened by the first ``predict`` and freed by
    ``close`` (``run_cv`` calls it when the run ends).

    Args:
        crop_to_face: run the face mesh on the face box (margin 0.25) of rows that have one.
    """

    trains = False
    mesh_: FaceMesh | None = None
    """The run's face mesh; None before the first ``predict`` and after ``close``."""

    def __init__(self, *, crop_to_face: bool = True) -> None:
        self.crop_to_face = crop_to_face

    @classmethod
    def from_config(cls, config: RunConfig) -> NfcsFoldModel:
        return cls(crop_to_face=config.crop_to_face)

    def _mesh(self) -> FaceMesh:
        """The run's face mesh, opened on first use."""
        if self.mesh_ is None:
            from neopain.faces.landmarks import FaceMesh

            self.mesh_ = FaceMesh(refine=True)
        return self.mesh_

    def predict(self, fold: FoldContext) -> FoldPredictions:
        """Score each test row; rows without a face mesh get ``UNASSESSABLE_PROB`` (logit 0)."""
        scorer = NfcsScorer()
        mesh = self._mesh()
        scored = []
        for done, row in enumerate(fold.test, start=1):
            points = row_landmarks(fold.manifest, int(row), mesh=mesh,
                                   crop_to_face=self.crop_to_face)
            scored.append(scorer.score(points, face_side=self._face_side(fold.manifest, row)))
            fold.report("scoring", done=done, total=len(fold.test))
        return FoldPredictions(
            prob=[result.prob_pain for result in scored], threshold=DECISION_THRESHOLD,
            logit=[result.logit for result in scored],
            columns={"count": [result.count for result in scored],
                     "assessable": [int(result.assessable) for result in scored]},
            summary={"rows": len(scored),
                     "unassessable": sum(not result.assessable for result in scored)})

    def _face_side(self, manifest: Manifest, row: int) -> float | None:
        """The longer side of the row's face box when the mesh runs on it (the size rule the
        bedside applies, ``MIN_FACE_SIDE``); None for a stored landmarks file or a whole image."""
        table = manifest.table
        if not self.crop_to_face or ("landmarks" in table and table["landmarks"].iat[row].strip()):
            return None
        box = parse_box(table["face_box"].iat[row])
        return None if box is None else max(box[2] - box[0], box[3] - box[1])

    def close(self) -> None:
        """Free the run's face mesh (a later ``predict`` opens a new one)."""
        if self.mesh_ is not None:
            mesh, self.mesh_ = self.mesh_, None
            mesh.close()

    def record(self, folds: Sequence[FoldResult]) -> dict[str, Any]:
        """The scorer's settings and, per fold, its rows and the unassessable ones."""
        scorer = NfcsScorer()
        return {"model": NfcsPredictor.kind, "count_threshold": scorer.count_threshold,
                "thresholds": scorer.thresholds, "decision_threshold": DECISION_THRESHOLD,
                "reference": "population", "refine": True, "crop_to_face": self.crop_to_face,
                "folds": [{"fold": fold.index, "rows": fold.summary["rows"],
                           "unassessable": fold.summary["unassessable"]} for fold in folds]}

    def notes(self, folds: Sequence[FoldResult]) -> list[str]:
        """How many images had no usable face mesh."""
        rows = sum(fold.summary["rows"] for fold in folds)
        unassessable = sum(fold.summary["unassessable"] for fold in folds)
        return [f"{unassessable} of {rows} image(s) had no usable face mesh and were scored "
                "P(pain) = 0.5 (column 'assessable' = 0)"]

    @classmethod
    def description(cls) -> Description:
        """What the scorer is, plainly, and every action with its threshold and rationale."""
        from neopain.scoring.actions import ACTION_INFO
        from neopain.scoring.dan import QUIVER_MIN_AMPLITUDE, QUIVER_MIN_HZ

        actions = [(info.name, f"{info.threshold:g} {info.unit}",
                    f"NFCS: {info.nfcs}.\nmeasured: {info.measure}.\nwhy: {info.rationale}.")
                   for info in ACTION_INFO.values()]
        actions.append((
            "chin_quiver", f"RMS {QUIVER_MIN_AMPLITUDE:g} IOD",
            "NFCS: high-frequency vibration of the chin and jaw.\nmeasured (video only): "
            f"oscillation of the chin-to-nose length at {QUIVER_MIN_HZ:g} Hz or faster.\n"
            "why: 2× the mesh's chin jitter on a still face."))
        return Description(
            tables=(DescriptionTable(f"{NfcsPredictor.kind}: rule-based NFCS facial-action "
                                     "scorer", rows=SUMMARY),
                    DescriptionTable("actions (intensity 0 = like the reference face; flagged "
                                     "at or above the threshold)", rows=tuple(actions),
                                     columns=("action", "threshold", "NFCS describes · "
                                              "measured as · why this threshold"))),
            note="not measurable from landmarks: taut tongue, tongue protrusion. "
                 "Full description: docs/nfcs.md")
