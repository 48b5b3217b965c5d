"""The interface cross-validation runs every fold model through, and their registry.

``training.run_cv`` takes any fold model the way scikit-learn's ``cross_validate`` takes any
estimator. Per fold it calls ``fit`` (the fold's training and validation rows), ``predict``
twice (its test rows; then its validation rows, as the ``test`` of a context that holds no test
row) and ``save``, and writes predictions.csv, validation.csv and metrics.json from what
``predict`` returns; after the last fold, ``record`` (the run's ``<model>.json``) and
``notes``; when the run ends, finished or failed, ``close``.

Fold models are registered by name: every network of ``neopain.models`` (trained by
``training``) and the entry points of the group ``neopain.fold_models`` (``pyproject.toml``),
such as the NFCS scorer (``scoring.folds``). Another package can add its own the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from neopain.data.manifest import Manifest
from neopain.errors import NeopainError
from neopain.runs.layout import FoldFolder

ENTRY_POINT_GROUP = "neopain.fold_models"


class RunConfig(Protocol):
    """What any fold model may read of the run config (a ``training.TrainConfig``)."""

    model: str
    out: Path
    crop_to_face: bool
    seed: int


class RunProgress:
    """Hooks a run reports its progress through; each does nothing by default.

    ``run_cv`` calls ``on_run_start`` and ``on_fold_end``; fold models call ``on_step`` (through
    ``FoldContext.report``) as they work.
    """

    def on_run_start(self, *, model: str, folds: int, trains: bool) -> None:
        """Before the first fold: the model's name, how many folds run, whether it trains."""

    def on_step(self, fold: int, *, stage: str, done: int, total: int | None) -> None:
        """Inside fold ``fold``: ``done`` of ``total`` steps of ``stage`` (the batches of
        ``epoch 2/30``, the images being scored); ``total`` None: not known yet."""

    def on_fold_end(self, fold: int) -> None:
        """After fold ``fold``'s files are written."""


@dataclass(frozen=True)
class FoldContext:
    """One fold as a fold model sees it.

    Attributes:
        index: the fold index K.
        manifest: the run's manifest.
        train, val, test: manifest rows (ascending) of the fold's training, validation and
            test subjects.
        folder: the fold's files (``fold_K/``).
        progress: where ``report`` sends steps.
    """

    index: int
    manifest: Manifest
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    folder: FoldFolder
    progress: RunProgress = field(default_factory=RunProgress)

    def subjects(self, rows: np.ndarray) -> list[str]:
        """The sorted subjects of manifest ``rows``."""
        return sorted(set(self.manifest.table["subject"].iloc[rows]))

    def report(self, stage: str, *, done: int, total: int | None) -> None:
        """Report a step of this fold (``RunProgress.on_step``)."""
        self.progress.on_step(self.index, stage=stage, done=done, total=total)


@dataclass(frozen=True)
class FoldPredictions:
    """A fold model's predictions for its fold's test rows.

    Attributes:
        prob: P(pain) per row of ``FoldContext.test``, in that order.
        threshold: P(pain) at or above it is pain (the ``pred`` column and the metrics).
        columns: predictions.csv columns after the usual ones, one value per row each.
        summary: metrics.json keys after the usual ones (e.g. rows it could not score).
        logit: the raw logit of P(pain) per row (a network's ``z_pain - z_nopain``), which
            calibrators are fitted on; None: the logit of ``prob`` (``logit_pain``), which
            loses what a probability rounded to 1 no longer tells.
    """

    prob: Sequence[float] | np.ndarray
    threshold: float
    columns: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    logit: Sequence[float] | np.ndarray | None = None


@dataclass(frozen=True)
class FoldResult:
    """One fold done: its index, folder, test metrics, epochs run, wall seconds and the fold
    model's extra metrics.json keys (``FoldPredictions.summary``)."""

    index: int
    path: Path
    metrics: dict[str, float]
    epochs: int
    seconds: float
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CvResult:
    """The run folder and its folds in fold order; the fold model's run record (None when it
    keeps none) and what a person should know about the results."""

    out: Path
    folds: tuple[FoldResult, ...]
    record: Path | None = None
    notes: tuple[str, ...] = ()

    def metric(self, name: str) -> list[float]:
        """One metric over the folds, e.g. ``result.metric("accuracy")``."""
        return [fold.metrics[name] for fold in self.folds]


@dataclass(frozen=True)
class DescriptionTable:
    """A table of ``neopain models show``: ``columns`` names its columns; without them its
    rows are field, value pairs."""

    title: str
    rows: tuple[tuple[str, ...], ...]
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Description:
    """What ``neopain models show`` prints for a fold model: tables, then a closing line."""

    tables: tuple[DescriptionTable, ...]
    note: str = ""


class FoldModel(ABC):
    """A model built, fitted and tested once per fold; subclasses implement ``predict``.

    One instance runs every fold of a run: ``fit`` starts afresh each time; what it keeps
    open over the folds (a face mesh) ``close`` releases. Learned state ends in ``_``.
    """

    trains: ClassVar[bool] = True
    """False: ``fit`` learns nothing and the run config's training settings are unused."""
    epochs_: int = 0
    """Epochs the last ``fit`` ran (0 for a model that does not train)."""

    @classmethod
    def from_config(cls, config: RunConfig) -> FoldModel:
        """The model a run config asks for. Default: ``cls()``."""
        return cls()

    def fit(self, fold: FoldContext) -> FoldModel:
        """Learn from ``fold.train``, validating on ``fold.val``, never from ``fold.test``;
        returns self. Default: learn nothing."""
        return self

    @abstractmethod
    def predict(self, fold: FoldContext) -> FoldPredictions:
        """P(pain) for each row of ``fold.test``. After the test rows, ``run_cv`` asks again
        for the fold's validation rows, passed as ``test`` of a copy of the context."""

    def save(self, fold: FoldContext) -> None:  # noqa: B027 - a hook (STYLE rule 7)
        """Write what the fitted model keeps into ``fold.folder``. Default: nothing."""

    def record(self, folds: Sequence[FoldResult]) -> dict[str, Any] | None:
        """The run's record, written as ``out/<model>.json``. Default: None (no record)."""
        return None

    def notes(self, folds: Sequence[FoldResult]) -> list[str]:
        """What a person should know about the run's results. Default: nothing."""
        return []

    def close(self) -> None:  # noqa: B027 - a hook (STYLE rule 7)
        """Release what the model kept open over the run's folds (``run_cv`` calls it once
        the run ends, finished or failed). Default: nothing."""

    @classmethod
    def description(cls) -> Description | None:
        """What ``neopain models show`` prints for it. Default: None."""
        return None


def other_fold_models() -> dict[str, type[FoldModel]]:
    """The fold models that are not networks, by name (entry points ``neopain.fold_models``)."""
    return {point.name: point.load() for point in entry_points(group=ENTRY_POINT_GROUP)}


def fold_model_names() -> list[str]:
    """Every name a run's ``model`` may take: the networks, then the other fold models."""
    from neopain.models import list_models  # the registry imports every architecture

    return [*list_models(), *sorted(other_fold_models())]


def other_fold_model(name: str) -> type[FoldModel]:
    """The registered fold model ``name`` that is not a network.

    Raises:
        NeopainError: no such fold model (the valid names are listed).
    """
    models = other_fold_models()
    if name not in models:
        raise NeopainError(f"model={name!r} is not a fold model; valid: "
                           f"{', '.join(fold_model_names())}")
    return models[name]
