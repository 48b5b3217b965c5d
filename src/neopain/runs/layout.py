"""The files of a run folder and the writers of the ones every fold model leaves.

``runs/NAME/config.yaml`` is the resolved run config, ``runs/NAME/<model>.json`` a fold model's
run record (the NFCS scorer's ``nfcs.json``), and ``runs/NAME/fold_K/`` holds ``FOLD_FILES``.
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
from neopain.data.yaml_text import read_yaml_mapping
from neopain.errors import NeopainError
from neopain.runs.metrics import binary_metrics

CONFIG = "config.yaml"
FOLD_FILES = ("model.pt", "predictions.csv", "metrics.json", "history.csv", "checkpoint.pt")
"""What a fold folder may hold, in the order the CLI names them."""
PREDICTION_COLUMNS = ("row", "image", "subject", "label", "prob_pain", "pred", "fold")
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
                     threshold: float,
                     columns: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """One fold's ``predictions.csv``: ``PREDICTION_COLUMNS`` for the manifest ``rows`` with
    P(pain) ``prob`` (labelled at ``threshold``), then any further ``columns`` in order."""
    extra = dict(columns or {})
    table = manifest.table.iloc[rows]
    return pd.DataFrame({
        "row": np.asarray(rows).astype(int),
        "image": table["image"].to_numpy(),
        "subject": table["subject"].to_numpy(),
        "label": table["label"].to_numpy(),
        "prob_pain": [f"{p:.6f}" for p in prob],
        "pred": ["pain" if p >= threshold else "nopain" for p in prob],
        "fold": fold,
        **extra,
    }, columns=[*PREDICTION_COLUMNS, *extra])


def write_predictions(folder: FoldFolder, *, manifest: Manifest, rows: np.ndarray, prob,
                      fold: int, threshold: float,
                      columns: Mapping[str, Sequence] | None = None) -> dict[str, float]:
    """Write ``predictions.csv`` (``prediction_table``); returns the metrics of the rows'
    labels against ``prob`` at ``threshold`` (``runs.metrics.binary_metrics``)."""
    table = prediction_table(manifest, rows=rows, prob=prob, fold=fold, threshold=threshold,
                             columns=columns)
    with atomic_output(folder.predictions) as partial:
        table.to_csv(partial, index=False)
    labels = (table["label"] == "pain").astype(int).to_numpy()
    return binary_metrics(labels, prob, threshold=threshold)


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
