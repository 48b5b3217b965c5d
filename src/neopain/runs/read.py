"""Read a run folder (``runs/NAME``) and check its layout.

A run holds ``config.yaml`` and one ``fold_K/`` per fold with ``predictions.csv`` (columns
``row, image, subject, label, prob_pain, logit_pain, pred, fold``; ``label`` and ``prob_pain``
are required; a calibrated run adds ``prob_pain_calibrated, pred_calibrated, prediction_set``)
and usually ``metrics.json`` and ``validation.csv`` (the validation rows, read by
``load_validation``). Metrics are always recomputed from ``predictions.csv``; the saved ones are
only compared with them. ``oof_leaks`` checks each fold's predictions against the subjects its
model.pt says it saw.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neopain.data.files import FileReadError, read_regular_text
from neopain.data.json_text import parse_json
from neopain.data.tables import Problem, TableError, read_table
from neopain.models.calibrator import SETS
from neopain.runs.layout import (
    CALIBRATED_COLUMNS,
    CONFIG,
    LABEL_VALUES,
    LAYOUT,
    PREDICTION_COLUMNS,
    FoldFolder,
    RunError,
    read_config,
)
from neopain.runs.network import seen_subjects

logger = logging.getLogger(__name__)

REQUIRED_PREDICTION_COLUMNS = ("label", "prob_pain")
DEFAULT_THRESHOLD = 0.5
MAX_METRICS_BYTES = 1 << 20  # a fold's metrics.json is under 1 KB
_FOLD_DIR = re.compile(r"fold_(\d+)")


@dataclass
class FoldRun:
    """One fold: its out-of-fold predictions and the metrics training saved (None if absent).

    ``predictions`` has the file's columns with ``label`` as 0/1 ints, ``prob_pain``,
    ``logit_pain`` and ``prob_pain_calibrated`` (when there) floats.
    """

    index: int
    path: Path
    predictions: pd.DataFrame
    saved_metrics: dict[str, float] | None = None

    @property
    def y_true(self) -> np.ndarray:
        return self.predictions["label"].to_numpy(dtype=int)

    @property
    def prob(self) -> np.ndarray:
        return self.predictions["prob_pain"].to_numpy(dtype=float)

    @property
    def logit(self) -> np.ndarray | None:
        """The raw logits of P(pain) (``logit_pain``); None for a run written without them."""
        if "logit_pain" not in self.predictions:
            return None
        return self.predictions["logit_pain"].to_numpy(dtype=float)

    @property
    def calibrated(self) -> bool:
        """Whether ``neopain calibrate`` added calibrated columns to predictions.csv."""
        return "prob_pain_calibrated" in self.predictions

    @property
    def prob_calibrated(self) -> np.ndarray | None:
        """Calibrated P(pain) (``prob_pain_calibrated``); None when not calibrated."""
        if not self.calibrated:
            return None
        return self.predictions["prob_pain_calibrated"].to_numpy(dtype=float)

    @property
    def prediction_sets(self) -> list[str] | None:
        """Each image's conformal set (``pain``, ``nopain`` or ``pain|nopain``: refer); None
        when not calibrated."""
        if not self.calibrated:
            return None
        return self.predictions["prediction_set"].tolist()


@dataclass
class Run:
    """A run folder: its name, resolved config, threshold and folds (sorted by index)."""

    path: Path
    config: dict
    threshold: float
    folds: list[FoldRun]
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def calibrated(self) -> bool:
        """Whether every fold is calibrated (``neopain calibrate``)."""
        return all(fold.calibrated for fold in self.folds)

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """All folds' out-of-fold labels and probabilities, concatenated."""
        return (np.concatenate([fold.y_true for fold in self.folds]),
                np.concatenate([fold.prob for fold in self.folds]))


def _threshold(config: dict, *, file: Path) -> float:
    """``threshold`` at the top of config.yaml, or in its ``cfg`` / ``model_cfg`` mapping."""
    candidates = [config.get("threshold")]
    candidates += [config[key].get("threshold") for key in ("cfg", "model_cfg")
                   if isinstance(config.get(key), dict)]
    for value in candidates:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise RunError(f"{file}: threshold={value!r} must be a number strictly between "
                           f"0 and 1")
        return float(value)
    return DEFAULT_THRESHOLD


def _number(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return math.nan


def _read_predictions(file: Path, *, fold: int, rows_needed: bool = True) -> pd.DataFrame:
    hint = f"{file.name} needs the columns {', '.join(PREDICTION_COLUMNS)}"
    if not os.path.lexists(file):
        raise RunError(f"{file}: file not found; {LAYOUT}")
    table, lines = read_table(file, required_hint=hint, what=f"a {file.name} file")
    required = list(REQUIRED_PREDICTION_COLUMNS)
    if any(column in table.columns for column in CALIBRATED_COLUMNS):
        required += CALIBRATED_COLUMNS  # written together by neopain calibrate
    missing = [c for c in required if c not in table.columns]
    if missing:
        together = (f"neopain calibrate writes {', '.join(CALIBRATED_COLUMNS)} together; "
                    "run it again")
        raise TableError(file, [Problem(None, c, None, "column missing; " + (
            hint if c in REQUIRED_PREDICTION_COLUMNS else together)) for c in missing])
    if table.empty and rows_needed:
        raise TableError(file, [Problem(None, None, None, "has no rows; every fold needs "
                                                          "at least one test prediction")])
    problems = []
    labels = []
    for line, label in zip(lines, table["label"]):
        labels.append(LABEL_VALUES.get(label.strip(), -1))
        if labels[-1] < 0:
            problems.append(Problem(line, "label", label, "is not a label; valid: pain, nopain"))
    numbers = {}
    for column in ("prob_pain", "prob_pain_calibrated", "logit_pain"):
        if column not in table.columns:
            continue
        numbers[column] = [_number(cell) for cell in table[column]]
        probability = column != "logit_pain"
        problems += [Problem(line, column, cell, "is not a probability in [0, 1]" if probability
                             else "is not a finite number")
                     for line, cell, value in zip(lines, table[column], numbers[column])
                     if not (0.0 <= value <= 1.0 if probability else math.isfinite(value))]
    for column in ("pred", "pred_calibrated"):
        if column in table.columns:
            problems += [Problem(line, column, pred, "is not a label; valid: pain, nopain")
                         for line, pred in zip(lines, table[column])
                         if pred.strip() not in LABEL_VALUES]
    if "prediction_set" in table.columns:
        problems += [Problem(line, "prediction_set", cell, f"is not a prediction set; valid: "
                                                           f"{', '.join(SETS)}")
                     for line, cell in zip(lines, table["prediction_set"])
                     if cell.strip() not in SETS]
        table["prediction_set"] = table["prediction_set"].str.strip()
    if "fold" in table.columns:
        problems += [Problem(line, "fold", value, f"differs from the folder's fold {fold}")
                     for line, value in zip(lines, table["fold"])
                     if value.strip() != str(fold)]
    if problems:
        raise TableError(file, problems)
    table["label"] = labels
    for column, values in numbers.items():
        table[column] = values
    table["line"] = lines
    return table


def _read_saved_metrics(file: Path) -> dict[str, float] | None:
    if not os.path.lexists(file):
        return None
    try:
        data = parse_json(read_regular_text(file, what="a metrics.json file",
                                            max_bytes=MAX_METRICS_BYTES))
    except FileReadError as error:
        raise RunError(str(error)) from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{file}: is not valid JSON ({exc})") from None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        raise RunError(f"{file}: needs a 'metrics' object, e.g. "
                       f'{{"fold": 0, "metrics": {{"accuracy": 0.9, ...}}}}')
    return {str(k): float(v) if isinstance(v, (int, float)) and v is not None else math.nan
            for k, v in metrics.items()}


def _check_pred_column(fold: FoldRun, *, threshold: float) -> list[str]:
    """A note when ``pred`` disagrees with ``prob_pain >= threshold`` (a threshold mismatch)."""
    table = fold.predictions
    if "pred" not in table.columns:
        return []
    saved = table["pred"].str.strip().map(LABEL_VALUES).to_numpy(dtype=int)
    ours = (fold.prob >= threshold).astype(int)
    clear = np.abs(fold.prob - threshold) > 1e-6  # probabilities are rounded to 6 decimals
    differ = clear & (saved != ours)
    if not differ.any():
        return []
    first = int(table["line"].to_numpy()[np.argmax(differ)])
    return [f"fold {fold.index}: {int(differ.sum())} 'pred' values disagree with prob_pain >= "
            f"{threshold:g} (first at {fold.path / 'predictions.csv'} line {first}); metrics "
            f"use the threshold"]


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read ``runs/NAME``: config.yaml, every ``fold_K/predictions.csv`` and ``metrics.json``.

    The threshold is ``threshold`` in config.yaml (top level, or under ``cfg``/``model_cfg``),
    else 0.5. A test image (``row``, else ``image``) in more than one fold is refused: it
    would be counted twice in the pooled metrics.

    Raises:
        RunError: a missing folder or file, bad YAML/JSON, no fold folders, repeated rows.
        TableError: a predictions.csv with missing columns or bad cells (line and column named).
    """
    path = Path(path)
    if not os.path.isdir(path):  # never raises, unlike Path.is_dir for a name too long
        raise RunError(f"{path}: run folder not found; {LAYOUT}")
    config = read_config(path)
    threshold = _threshold(config, file=path / CONFIG)
    fold_dirs = sorted((int(m.group(1)), d) for d in path.iterdir()
                       if d.is_dir() and (m := _FOLD_DIR.fullmatch(d.name)))
    if not fold_dirs:
        raise RunError(f"{path}: no fold_K folders; {LAYOUT}")
    folds = [FoldRun(index, d, _read_predictions(d / "predictions.csv", fold=index),
                     _read_saved_metrics(d / "metrics.json")) for index, d in fold_dirs]
    key = next((c for c in ("row", "image") if all(c in f.predictions for f in folds)), None)
    if key is not None:
        seen: dict[str, int] = {}
        for fold in folds:
            for value in fold.predictions[key]:
                if value in seen and seen[value] != fold.index:
                    raise RunError(f"{path}: {key} {value!r} is a test prediction of both "
                                   f"fold {seen[value]} and fold {fold.index}; each image "
                                   f"must be tested in one fold only")
                seen[value] = fold.index
    notes = [note for fold in folds for note in _check_pred_column(fold, threshold=threshold)]
    logger.debug("loaded run %s: %d folds", path, len(folds))
    return Run(path, config, threshold, folds, notes)


def load_validation(fold: FoldRun) -> pd.DataFrame:
    """The fold's ``validation.csv``: its validation rows, read and checked like
    predictions.csv (it may have no rows: a fold without validation subjects).

    Raises:
        RunError: no validation.csv (a run trained before validation predictions were kept).
        TableError: missing columns or bad cells (line and column named).
    """
    file = FoldFolder(fold.path).validation
    if not os.path.lexists(file):
        raise RunError(f"{file}: file not found; this run predates calibration (its "
                       "validation predictions were not kept): train it again with neopain "
                       "train to calibrate it")
    return _read_predictions(file, fold=fold.index, rows_needed=False)


def oof_leaks(run: str | os.PathLike[str]) -> list[str]:
    """Every out-of-fold prediction made by a model that saw its subject, as messages.

    For each ``fold_K``, the subjects of predictions.csv are compared with the training and
    validation subjects recorded in model.pt. An empty list: no leakage.
    """
    problems = []
    for fold_dir in sorted(Path(run).glob("fold_*")):
        folder = FoldFolder(fold_dir)
        if not (folder.model.is_file() and folder.predictions.is_file()):
            continue
        try:
            seen = seen_subjects(folder)
        except Exception as error:  # torch raises many types for a foreign file
            problems.append(f"{fold_dir.name}: model.pt cannot be read ({type(error).__name__})"
                            "; its predictions cannot be checked for leakage")
            continue
        predicted = set(pd.read_csv(folder.predictions, dtype=str)["subject"])
        for subject in sorted(predicted & seen):
            problems.append(f"{fold_dir.name}: subject {subject} is predicted by a model that "
                            "trained or validated on it")
    return problems
