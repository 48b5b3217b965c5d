"""The splitter family: one base checks parameters, draws validation subjects and builds folds;
each protocol chooses the test subjects of its folds (``test_groups``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from neopain.data.folds.plan import Fold, FoldsError
from neopain.data.manifest import LABELS, NO_SOURCE, Manifest

_MAX_NAMED = 5
# Stream numbers mixed into the seed so that test and validation draws are independent.
TEST_STREAM, VAL_STREAM = 0, 1


def _named(values: Sequence[object]) -> str:
    shown = ", ".join(str(v) for v in values[:_MAX_NAMED])
    return shown + (f" and {len(values) - _MAX_NAMED} more" if len(values) > _MAX_NAMED else "")


def random_state(seed: int, *stream: int) -> int:
    """A 32-bit seed (for numpy or scikit-learn) derived from ``seed`` and stream numbers."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


def _check_rows(table: pd.DataFrame) -> None:
    if table.empty:
        raise FoldsError("the manifest has no rows; folds need images of at least 2 subjects")
    no_subject = table.index[table["subject"].str.strip() == ""].tolist()
    if no_subject:
        raise FoldsError(f"manifest rows {_named(no_subject)} (counting from 0): 'subject' is "
                         "empty; every row needs a subject id")
    bad = table.index[~table["label"].isin(LABELS)].tolist()
    if bad:
        raise FoldsError(f"manifest rows {_named(bad)} (counting from 0): 'label' is not valid; "
                         f"valid: {', '.join(LABELS)}")


@dataclass(frozen=True)
class SubjectTable:
    """A manifest seen by subject.

    ``images``: one row per manifest row with ``subject``, ``label`` and ``stratum`` (the
    ``balance_by`` cell, ``"(none)"`` when empty, ``""`` when not balancing).
    ``subjects``: one row per subject (sorted index) with ``images``, ``pain`` (pain images),
    ``pain_share`` and ``stratum`` (the value of most of its images; ties go to the first in
    sorted order).
    """

    images: pd.DataFrame
    subjects: pd.DataFrame
    balance_by: str | None
    _position: dict[str, int] = field(init=False, repr=False, compare=False)
    _arrays: dict[str, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        position = {subject: i for i, subject in enumerate(self.subjects.index)}
        object.__setattr__(self, "_position", position)
        arrays = {name: self.subjects[name].to_numpy() for name in self.subjects.columns}
        object.__setattr__(self, "_arrays", {**arrays, "id": self.subjects.index.to_numpy()})

    @classmethod
    def from_manifest(cls, manifest: Manifest, *, balance_by: str | None) -> SubjectTable:
        """Per-image and per-subject tables; raises FoldsError for unusable rows or columns."""
        table = manifest.table
        _check_rows(table)
        if balance_by is not None and balance_by not in table.columns:
            raise FoldsError(
                f"balance_by={balance_by!r} is not a manifest column; valid: one of "
                f"{', '.join(table.columns)}, or None (--balance-by none) to not balance"
            )
        strata = ("" if balance_by is None
                  else table[balance_by].str.strip().replace("", NO_SOURCE))
        images = pd.DataFrame({"subject": table["subject"], "label": table["label"],
                               "stratum": strata})
        counts = images.groupby(["subject", "stratum"]).size().reset_index(name="n")
        majority = (counts.sort_values(["subject", "n", "stratum"], ascending=[True, False, True])
                    .drop_duplicates("subject").set_index("subject")["stratum"])
        pain = (images["label"] == "pain").groupby(images["subject"]).sum()
        n_images = images.groupby("subject").size()
        subjects = pd.DataFrame({"images": n_images, "pain": pain, "pain_share": pain / n_images,
                                 "stratum": majority}).sort_index()
        return cls(images=images, subjects=subjects, balance_by=balance_by)

    @property
    def ids(self) -> list[str]:
        """Sorted subject ids."""
        return list(self.subjects.index)

    def positions(self, subjects: Iterable[str]) -> np.ndarray:
        """Positions of these subjects in ``subjects`` (KeyError for unknown ones)."""
        return np.array([self._position[s] for s in subjects], dtype=int)

    def column(self, name: str) -> np.ndarray:
        """A column of ``subjects`` as an array (``"id"`` for the subject ids)."""
        return self._arrays[name]

    def pain_deviation(self, subjects: Sequence[str]) -> float:
        """|share of pain images among these subjects' images − share among all images|."""
        pain, images = self.column("pain"), self.column("images")
        at = self.positions(subjects)
        return abs(pain[at].sum() / images[at].sum() - pain.sum() / images.sum())


def deal_subjects(
    table: SubjectTable, *, parts: int, rng: np.random.Generator,
    subjects: Sequence[str] | None = None,
) -> list[list[str]]:
    """Deal each stratum's subjects (all, or just ``subjects``) into ``parts`` groups.

    Within each stratum (in sorted order) the subjects are shuffled, ordered by their share of
    pain images and dealt in bands of ``parts``: each group gets one subject of every full band
    (paired at random), and a last, short band goes to the groups with fewest subjects. So each
    group holds the floor or ceiling of each stratum's n/parts, group sizes differ by at most 1,
    and pain shares spread evenly.
    """
    chosen = (np.arange(len(table.subjects)) if subjects is None
              else np.sort(table.positions(subjects)))
    ids, share, strata = (table.column(name) for name in ("id", "pain_share", "stratum"))
    groups: list[list[str]] = [[] for _ in range(parts)]
    sizes = np.zeros(parts, dtype=int)
    for stratum in sorted(set(strata[chosen])):
        members = chosen[strata[chosen] == stratum]
        shuffled = members[rng.permutation(len(members))]
        ordered = shuffled[np.argsort(share[shuffled], kind="stable")]
        for start in range(0, len(ordered), parts):
            band = ordered[start : start + parts]
            smallest = np.lexsort((rng.random(parts), sizes))[: len(band)]
            for member, target in zip(band, rng.permutation(smallest)):
                groups[target].append(str(ids[member]))
                sizes[target] += 1
    return [sorted(group) for group in groups]


class FoldSplitter(ABC):
    """Makes subject-grouped folds; subclasses choose each fold's test subjects.

    Args:
        k: folds (k-fold protocols) or repeats (``holdout``).
        seed: random seed (>= 0); the same seed and manifest give the same folds.
        val_share: share of each fold's training subjects (at least 1) that validate instead,
            dealt like ``deal_subjects`` (spread over strata and pain shares); 0 for none.
        balance_by: manifest column whose values the test folds (as the protocol says) and
            validation sets should share in (each subject counts with the value of most of its
            images), or None.
    """

    protocol: ClassVar[str]
    kfold: ClassVar[bool]
    VAL_TRIES: ClassVar[int] = 8

    def __init__(
        self, *, k: int = 10, seed: int = 0, val_share: float = 0.1,
        balance_by: str | None = "source",
    ) -> None:
        self.k = k
        self.seed = seed
        self.val_share = val_share
        self.balance_by = balance_by

    @abstractmethod
    def test_groups(self, table: SubjectTable) -> list[list[str]]:
        """The test subjects of each fold (parameters are already checked)."""

    def params(self) -> dict:
        """The settings a FoldPlan records besides protocol, seed and k."""
        return {"val_share": self.val_share, "balance_by": self.balance_by}

    def check_params(self, table: SubjectTable) -> None:
        """Raise FoldsError naming the parameter, its value and what is valid."""
        n = len(table.subjects)
        least = 2 if self.kfold else 1
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < least:
            what = "folds" if self.kfold else "repeats"
            raise FoldsError(f"k={self.k!r} {what} is not valid; valid: a whole number >= {least}")
        if self.kfold and self.k > n:
            raise FoldsError(
                f"k={self.k} folds is more than the number of subjects: {n}; "
                f"valid: 2 to {n} (each test fold needs a subject)"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise FoldsError(f"seed={self.seed!r} is not valid; valid: a whole number >= 0")
        share = self.val_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise FoldsError(
                f"val_share={share!r} is not valid; valid: 0 (no validation subjects) up to "
                "below 1, e.g. 0.1"
            )

    def split(self, manifest: Manifest) -> tuple[Fold, ...]:
        """The folds of this protocol over the manifest's subjects.

        Raises:
            FoldsError: bad parameters, or a manifest they do not fit.
        """
        table = SubjectTable.from_manifest(manifest, balance_by=self.balance_by)
        self.check_params(table)
        folds = []
        for index, test in enumerate(self.test_groups(table)):
            if not test:
                raise FoldsError(
                    f"fold {index} got no test subjects: k={self.k} is too many for "
                    f"{len(table.subjects)} subjects with protocol {self.protocol!r}; lower k"
                )
            rest = sorted(set(table.ids) - set(test))
            val = self.validation(table, rest, index=index)
            train = sorted(set(rest) - set(val))
            folds.append(Fold(index=index, train=train, val=val, test=test))
        return tuple(folds)

    def validation(self, table: SubjectTable, rest: list[str], *, index: int) -> list[str]:
        """Validation subjects of fold ``index``, drawn from its non-test subjects ``rest``.

        About ``val_share`` of them (at least 1): of ``VAL_TRIES`` dealings of ``rest`` into
        parts of that size, the first part with the pain share closest to the overall one.
        """
        if self.val_share == 0:
            return []
        if len(rest) < 2:
            raise FoldsError(
                f"fold {index} has {len(rest)} training subject(s): too few to draw validation "
                f"subjects from (val_share={self.val_share}); lower k or set val_share=0"
            )
        n_val = max(1, round(self.val_share * len(rest)))
        parts = max(2, round(len(rest) / n_val))
        rng = np.random.default_rng(random_state(self.seed, VAL_STREAM, index))
        candidates = [deal_subjects(table, parts=parts, rng=rng, subjects=rest)[0]
                      for _ in range(self.VAL_TRIES)]
        return min(candidates, key=table.pain_deviation)
