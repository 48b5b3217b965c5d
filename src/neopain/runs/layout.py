"""The files of a run folder and the writers of the ones every fold model leaves.

``runs/NAME/config.yaml`` is the resolved run config, ``runs/NAME/<model>.json`` a fold model's
run record (the NFCS scorer's ``nfcs.json``), and ``runs/NAME/fold_K/`` holds ``FOLD_FILES``:
training writes predictions.csv (test rows) and validation.csv (validation rows) with the same
columns, ``PREDICTION_COLUMNS`` first; ``neopain calibrate`` writes calibrator.json and adds
``CALIBRATED_COLUMNS`` to predictions.csv.
Every file is written whole or not at all (``data.outputs.atomic_output``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from neopain.data.files import FileReadError
from neopain.data.manifest import Manifest
from neopain.data.outputs import atomic_output, write_text_atomic
from neopain.data.tables import read_table
from neopain.data.yaml_text import read_yaml_mapping
from neopain.errors import NeopainError
from neopain.models.calibrator import CALIBRATOR_FILE, Calibrator, logit_of
from neopain.models.calibrator import read_calibrator as read_calibrator_file
from neopain.runs.metrics import binary_metrics

CONFIG = "config.yaml"
FOLD_FILES = ("model.pt", "predictions.csv", "validation.csv", "metrics.json", "calibrator.json",
              "history.csv", "checkpoint.pt", "restarts.json")
"""What a fold folder may hold, in the order the CLI names them."""
PREDICTION_COLUMNS = ("row", "image", "subject", "label", "prob_pain", "logit_pain", "pred",
                      "fold")
"""The columns of predictions.csv and validation.csv, before a fold model's own."""
CALIBRATED_COLUMNS = ("prob_pain_calibrated", "pred_calibrated", "prediction_set")
"""What ``neopain calibrate`` adds to predictions.csv, after every other column."""
LABEL_VALUES = {"nopain": 0, "pain": 1}
LAYOUT = ("a run folder holds config.yaml and fold_K/ folders (fold_0, fold_1, ...), each with "
          "predictions.csv")


class RunError(NeopainError):
    """A run folder that cannot be read; the message names the file and what is missing."""


@dataclass(frozen=True)
class FoldFolder:
    """The files of one fold folder, ``runs/NAME/fold_K``."""

    path: Path

    @property
    def model(self) -> Path:
        """model.pt: a network's weights, cfg and the subjects of its split."""
        return self.path / "model.pt"

    @property
    def predictions(self) -> Path:
        """predictions.csv: the out-of-fold predictions."""
        return self.path / "predictions.csv"

    @property
    def validation(self) -> Path:
        """validation.csv: the predictions of the fold's validation rows (calibration)."""
        return self.path / "validation.csv"

    @property
    def calibrator(self) -> Path:
        """calibrator.json: the calibrator fitted on validation.csv (``neopain calibrate``)."""
        return self.path / CALIBRATOR_FILE

    @property
    def metrics(self) -> Path:
        """metrics.json: the test metrics, epochs and seconds."""
        return self.path / "metrics.json"

    @property
    def history(self) -> Path:
        """history.csv: per-epoch losses (networks)."""
        return self.path / "history.csv"

    @property
    def checkpoint(self) -> Path:
        """checkpoint.pt: the resumable training state (networks)."""
        return self.path / "checkpoint.pt"

    @property
    def restarts(self) -> Path:
        """restarts.json: the trainings of this fold that were started again (networks)."""
        return self.path / "restarts.json"

    def files(self) -> list[str]:
        """The ``FOLD_FILES`` the folder holds, in that order."""
        return [name for name in FOLD_FILES if os.path.lexists(self.path / name)]


def fold_folder(out: str | os.PathLike[str], *, index: int) -> FoldFolder:
    """``out / fold_K``, created."""
    folder = FoldFolder(Path(out) / f"fold_{index}")
    folder.path.mkdir(parents=True, exist_ok=True)
    return folder


def write_config(settings: Mapping[str, Any], *, path: str | os.PathLike[str]) -> Path:
    """Write a resolved run config as YAML, keys in the given order; returns the file."""
    return write_text_atomic(path, yaml.safe_dump(dict(settings), sort_keys=False))


def read_config(out: str | os.PathLike[str], *, required: bool = True) -> dict:
    """``out/config.yaml`` as a mapping; ``{}`` when it is absent and not ``required``.

    Raises:
        RunError: an unreadable file or bad YAML; an absent file when ``required``.
    """
    file = Path(out) / CONFIG
    if not os.path.lexists(file):
        if not required:
            return {}
        raise RunError(f"{file}: file not found; {LAYOUT} (config.yaml is written by "
                       f"`neopain train`)")
    try:
        return read_yaml_mapping(file, what="a run's config.yaml (written by neopain train)")
    except FileReadError as error:
        raise RunError(str(error)) from None


def prediction_table(manifest: Manifest, *, rows: np.ndarray, prob, fold: int,
                     threshold: float, logit=None,
                     columns: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """One fold's ``predictions.csv`` (or ``validation.csv``): ``PREDICTION_COLUMNS`` for the
    manifest ``rows`` with P(pain) ``prob`` (labelled at ``threshold``) and raw logits ``logit``
    (None: the logit of ``prob``), then any further ``columns`` in order."""
    extra = dict(columns or {})
    table = manifest.table.iloc[rows]
    logit = logit_of(prob) if logit is None else np.asarray(logit, dtype=float)
    if len(logit) != len(table) or len(prob) != len(table):
        raise NeopainError(f"{len(table)} rows, {len(prob)} probabilities and {len(logit)} "
                           "logits: a fold model gives one of each per row")
    return pd.DataFrame({
        "row": np.asarray(rows).astype(int),
        "image": table["image"].to_numpy(),
        "subject": table["subject"].to_numpy(),
        "label": table["label"].to_numpy(),
        "prob_pain": [f"{p:.6f}" for p in prob],
        "logit_pain": [f"{z:.6f}" for z in logit],
        "pred": ["pain" if p >= threshold else "nopain" for p in prob],
        "fold": fold,
        **extra,
    }, columns=[*PREDICTION_COLUMNS, *extra])


def write_predictions(folder: FoldFolder, *, manifest: Manifest, rows: np.ndarray, prob,
                      fold: int, threshold: float, logit=None,
                      columns: Mapping[str, Sequence] | None = None) -> dict[str, float]:
    """Write ``predictions.csv`` (``prediction_table``); returns the metrics of the rows'
    labels against ``prob`` at ``threshold`` (``runs.metrics.binary_metrics``)."""
    table = prediction_table(manifest, rows=rows, prob=prob, fold=fold, threshold=threshold,
                             logit=logit, columns=columns)
    with atomic_output(folder.predictions) as partial:
        table.to_csv(partial, index=False)
    labels = (table["label"] == "pain").astype(int).to_numpy()
    return binary_metrics(labels, prob, threshold=threshold)


def write_validation(folder: FoldFolder, *, manifest: Manifest, rows: np.ndarray, prob,
                     fold: int, threshold: float, logit=None,
                     columns: Mapping[str, Sequence] | None = None) -> Path:
    """Write ``validation.csv``: the fold's validation ``rows`` as ``prediction_table`` writes
    test rows (only a header when the fold has no validation rows); returns the file."""
    table = prediction_table(manifest, rows=rows, prob=prob, fold=fold, threshold=threshold,
                             logit=logit, columns=columns)
    with atomic_output(folder.validation) as partial:
        table.to_csv(partial, index=False)
    return folder.validation


def write_calibrated(folder: FoldFolder, *, calibrator: Calibrator, prob, pred,
                     sets: Sequence[str]) -> None:
    """Write ``calibrator.json`` and add ``CALIBRATED_COLUMNS`` (calibrated P(pain), its label,
    the conformal set; one per row, in file order) to ``predictions.csv``, replacing those of
    an earlier calibration; every other cell keeps its text.

    Raises:
        TableError: an unreadable predictions.csv.
        NeopainError: not one value per row.
    """
    table, _ = read_table(folder.predictions, required_hint="a fold's predictions.csv",
                          what="a predictions.csv file")
    if not len(prob) == len(pred) == len(sets) == len(table):
        raise NeopainError(f"{folder.predictions}: {len(table)} rows but {len(prob)} "
                           f"calibrated probabilities, {len(pred)} labels and {len(sets)} sets")
    table = table.drop(columns=[c for c in CALIBRATED_COLUMNS if c in table.columns])
    table["prob_pain_calibrated"] = [f"{p:.6f}" for p in prob]
    table["pred_calibrated"] = list(pred)
    table["prediction_set"] = list(sets)
    write_text_atomic(folder.calibrator, json.dumps(calibrator.to_dict(), indent=2) + "\n")
    with atomic_output(folder.predictions) as partial:
        table.to_csv(partial, index=False)


def read_calibrator(folder: FoldFolder) -> Calibrator | None:
    """The fold's ``calibrator.json``; None when the fold is not calibrated.

    Raises:
        RunError: an unreadable file, bad JSON or a bad calibrator (the file is named).
    """
    if not os.path.lexists(folder.calibrator):
        return None
    try:
        return read_calibrator_file(folder.calibrator)
    except NeopainError as error:
        raise RunError(str(error)) from None


def write_metrics(folder: FoldFolder, *, fold: int, metrics: Mapping[str, float], epochs: int,
                  seconds: float, summary: Mapping[str, Any] | None = None) -> Path:
    """Write ``metrics.json``: fold, metrics, epochs, seconds (3 decimals), then ``summary``."""
    record = {"fold": fold, "metrics": dict(metrics), "epochs": epochs,
              "seconds": round(seconds, 3), **dict(summary or {})}
    return write_text_atomic(folder.metrics, json.dumps(record, indent=2, allow_nan=True) + "\n")


def write_record(out: str | os.PathLike[str], *, name: str,
                 record: Mapping[str, Any]) -> Path:
    """Write a fold model's run record as ``out/<name>.json``; returns the file."""
    return write_text_atomic(Path(out) / f"{name}.json", json.dumps(record, indent=2) + "\n")
