"""The NFCS scorer over cross-validation folds: the runs layout without training.

``neopain train --model nfcs`` lands here (through ``training.cv.run_cv``). Nothing is
learned, so each fold's test images are simply scored and written like a trained model's:
``out/fold_K/predictions.csv`` (the usual columns, plus ``count`` and ``assessable``) and
``metrics.json``; ``out/nfcs.json`` records the scorer's settings and, per fold, how many
rows could not be scored. ``neopain evaluate`` and ``neopain compare`` then treat the run
like any CNN's.

Landmarks come from the manifest's ``landmarks`` column (.npy, from ``neopain faces detect
--landmarks``) when a row has one; otherwise the face mesh runs on the image, cropped to its
``face_box`` (margin 0.25, as the monitor crops) when there is one and ``crop_to_face`` is on.
A row where no face mesh is found is kept with ``prob_pain`` 0.5 (``UNASSESSABLE_PROB``) and
``assessable`` 0, and counted in metrics.json and nfcs.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from neopain.data.manifest import Manifest, parse_box
from neopain.errors import NeopainError
from neopain.evaluation.runs import prediction_table
from neopain.scoring.nfcs import DECISION_THRESHOLD, NfcsScorer

if TYPE_CHECKING:
    from neopain.data.folds import Fold
    from neopain.faces.landmarks import FaceMesh
    from neopain.training import CvResult, TrainConfig

ProgressHook = Callable[[int, int], None]


def row_landmarks(manifest: Manifest, row: int, *, mesh: FaceMesh,
                  crop_to_face: bool = True) -> np.ndarray | None:
    """A manifest row's landmarks: its ``landmarks`` file, else the face mesh on its image.

    Raises:
        NeopainError: an unreadable image or landmarks file, or a bad face box (naming the
            manifest line and column).
    """
    from neopain.faces.crop import crop_face
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
            image = crop_face(image, box, margin=0.25).image
    except (NeopainError, ValueError) as error:
        column = "landmarks" if stored else "image"
        raise NeopainError(f"manifest line {line}, column '{column}': {error}") from None
    return mesh.landmarks(image)


def score_folds(config: TrainConfig, manifest: Manifest, folds: Sequence[Fold], *,
                on_progress: ProgressHook | None = None) -> CvResult:
    """Score each fold's test rows with the NFCS scorer and write the run folder.

    Args:
        config: the run config (``out``, ``crop_to_face``; training keys are not used).
        manifest: the loaded manifest; folds: the folds to score.
        on_progress: called as ``on_progress(done, total)`` after each image.
    """
    from neopain.evaluation.metrics import binary_metrics
    from neopain.faces.landmarks import FaceMesh
    from neopain.training.cv import CvResult, FoldResult

    scorer = NfcsScorer()  # the published defaults against the population reference face
    subjects = manifest.table["subject"].to_numpy()
    plan = [(fold, np.flatnonzero(np.isin(subjects, fold.test))) for fold in folds]
    total, done = sum(len(rows) for _, rows in plan), 0
    results, record = [], []
    with FaceMesh(refine=True) as mesh:
        for fold, rows in plan:
            started = time.perf_counter()
            fold_dir = config.out / f"fold_{fold.index}"
            fold_dir.mkdir(parents=True, exist_ok=True)
            scored = []
            for row in rows:
                points = row_landmarks(manifest, int(row), mesh=mesh,
                                       crop_to_face=config.crop_to_face)
                scored.append(scorer.score(points))
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
            table = prediction_table(
                manifest, rows, [r.prob_pain for r in scored], fold=fold.index,
                threshold=DECISION_THRESHOLD, count=[r.count for r in scored],
                assessable=[int(r.assessable) for r in scored])
            table.to_csv(fold_dir / "predictions.csv", index=False)
            labels = (table["label"] == "pain").astype(int).to_numpy()
            metrics = binary_metrics(labels, [r.prob_pain for r in scored],
                                     threshold=DECISION_THRESHOLD)
            unassessable = sum(not r.assessable for r in scored)
            seconds = time.perf_counter() - started
            (fold_dir / "metrics.json").write_text(json.dumps(
                {"fold": fold.index, "metrics": metrics, "epochs": 0,
                 "seconds": round(seconds, 3), "rows": len(rows),
                 "unassessable": unassessable}, indent=2, allow_nan=True) + "\n",
                encoding="utf-8")
            record.append({"fold": fold.index, "rows": len(rows), "unassessable": unassessable})
            results.append(FoldResult(index=fold.index, path=fold_dir, metrics=metrics,
                                      epochs=0, seconds=seconds))
    settings = {"model": "nfcs", "count_threshold": scorer.count_threshold,
                "thresholds": scorer.thresholds, "decision_threshold": DECISION_THRESHOLD,
                "reference": "population", "refine": True, "crop_to_face": config.crop_to_face,
                "folds": record}
    (config.out / "nfcs.json").write_text(json.dumps(settings, indent=2) + "\n",
                                          encoding="utf-8")
    return CvResult(out=config.out, folds=tuple(results))
