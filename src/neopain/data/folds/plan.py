"""Folds as data: which subjects train, validate and test in each fold; the plan holding them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from neopain.data.manifest import Manifest
from neopain.errors import NeopainError

KFOLD_PROTOCOLS = ("lsso", "sgkf")
PROTOCOLS = (*KFOLD_PROTOCOLS, "holdout")
SPLITS = ("train", "val", "test")


class FoldsError(NeopainError):
    """Folds that cannot be made, read or used; the message says what to change."""


def _subject_tuple(subjects: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(str(subject) for subject in subjects))


@dataclass(frozen=True)
class Fold:
    """One fold's subjects: ``train``, ``val`` (drawn from the training subjects) and ``test``.

    Each is stored as a sorted tuple of subject ids, whatever iterable is passed.
    """

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in SPLITS:
            object.__setattr__(self, name, _subject_tuple(getattr(self, name)))

    @property
    def subjects(self) -> tuple[str, ...]:
        """Every subject of the fold (train, val and test), sorted, each once."""
        return _subject_tuple(set(self.train) | set(self.val) | set(self.test))

    def split_of(self, subject: str) -> str | None:
        """``"train"``, ``"val"`` or ``"test"``: the first split holding ``subject``; else None."""
        return next((name for name in SPLITS if subject in getattr(self, name)), None)


@dataclass(frozen=True)
class FoldPlan:
    """Folds of one protocol, and what they were made from.

    ``k`` is the number of folds (k-fold protocols) or of repeats (``holdout``); ``params``
    holds the protocol's other settings (``val_share``, ``balance_by``, ``test_share``, ...).
    ``manifest_sha256`` ties the plan to the manifest file it was made from ("" if unknown).
    """

    protocol: str
    seed: int
    k: int
    manifest_sha256: str
    folds: tuple[Fold, ...]
    params: dict = field(default_factory=dict)
    manifest_name: str = ""

    @property
    def kfold(self) -> bool:
        """Whether every subject should be in exactly one test fold (``lsso``, ``sgkf``)."""
        return self.protocol in KFOLD_PROTOCOLS

    @property
    def subjects(self) -> tuple[str, ...]:
        """Every subject named in any fold, sorted."""
        return _subject_tuple({s for fold in self.folds for s in fold.subjects})


def rows_of(manifest: Manifest, subjects: Iterable[str]) -> np.ndarray:
    """Row indices (ascending) of the manifest's images of these subjects.

    >>> rows_of(manifest, plan.folds[0].test)  # doctest: +SKIP
    array([ 12,  13,  14, 101, 102])
    """
    wanted = set(subjects)
    return np.flatnonzero(manifest.table["subject"].isin(wanted).to_numpy())
