"""``check_folds``: leakage, coverage and class balance of a FoldPlan against a manifest."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from neopain.data.folds.base import SubjectTable
from neopain.data.folds.plan import SPLITS, Fold, FoldPlan, FoldsError
from neopain.data.manifest import Manifest

_MAX_NAMED = 10


def _names(subjects: Sequence[str]) -> str:
    shown = ", ".join(repr(s) for s in subjects[:_MAX_NAMED])
    more = len(subjects) - _MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class FoldIssue:
    """One finding: ``fold`` is None when it concerns the whole plan; ``subjects`` it names."""

    message: str
    fold: int | None = None
    subjects: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message if self.fold is None else f"fold {self.fold}: {self.message}"


@dataclass(frozen=True)
class FoldStats:
    """Subjects and images of one fold's splits, its test pain share (NaN without test images)
    and its test subjects per source."""

    index: int
    subjects: dict[str, int]
    images: dict[str, int]
    test_pain_share: float
    test_sources: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FoldCheck:
    """What ``check_folds`` found: ``problems`` make a plan unusable; ``warnings`` are class
    shares of test folds further than ``tolerance`` from the overall ``pain_share``."""

    problems: tuple[FoldIssue, ...]
    warnings: tuple[FoldIssue, ...]
    stats: tuple[FoldStats, ...]
    pain_share: float
    tolerance: float

    @property
    def ok(self) -> bool:
        """No problems (warnings allowed)."""
        return not self.problems

    @property
    def largest_deviation(self) -> float:
        """Largest |test pain share − overall| over folds with test images (0 if none)."""
        shares = [s.test_pain_share for s in self.stats if not math.isnan(s.test_pain_share)]
        return max((abs(share - self.pain_share) for share in shares), default=0.0)


def _fold_problems(fold: Fold, known: set[str]) -> list[FoldIssue]:
    problems = []
    for name in SPLITS:
        members = getattr(fold, name)
        twice = sorted({s for s in members if members.count(s) > 1})
        if twice:
            message = f"{name} lists {_names(twice)} more than once"
            problems.append(FoldIssue(message, fold.index, tuple(twice)))
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1 :]:
            for subject in sorted(set(getattr(fold, first)) & set(getattr(fold, second))):
                message = f"subject {subject!r} is in both {first} and {second} (leakage)"
                problems.append(FoldIssue(message, fold.index, (subject,)))
    for name in ("train", "test"):
        if not getattr(fold, name):
            problems.append(FoldIssue(f"the {name} set is empty", fold.index))
    missing = sorted(known - set(fold.subjects))
    if missing:
        message = f"manifest subject(s) {_names(missing)} are in none of train, val, test"
        problems.append(FoldIssue(message, fold.index, tuple(missing)))
    return problems


def _coverage_problems(plan: FoldPlan, known: set[str]) -> list[FoldIssue]:
    tested: dict[str, list[int]] = defaultdict(list)
    for fold in plan.folds:
        for subject in set(fold.test):
            tested[subject].append(fold.index)
    why = f"in a k-fold plan ({plan.protocol}) every subject is tested exactly once"
    problems = []
    never = sorted(known - set(tested))
    if never:
        problems.append(FoldIssue(f"subject(s) {_names(never)} are in no test fold; {why}",
                                  None, tuple(never)))
    for subject in sorted(s for s, folds in tested.items() if len(folds) > 1):
        folds = ", ".join(map(str, tested[subject]))
        problems.append(FoldIssue(f"subject {subject!r} is in the test set of folds {folds}; "
                                  f"{why}", None, (subject,)))
    return problems


def _stats(fold: Fold, table: SubjectTable, sources: pd.Series) -> FoldStats:
    images = table.subjects["images"]
    counts = {name: int(images.reindex(list(getattr(fold, name))).fillna(0).sum())
              for name in SPLITS}
    test = table.images[table.images["subject"].isin(set(fold.test))]
    share = float((test["label"] == "pain").mean()) if len(test) else math.nan
    known_test = [s for s in fold.test if s in sources.index]
    return FoldStats(
        index=fold.index,
        subjects={name: len(getattr(fold, name)) for name in SPLITS},
        images=counts,
        test_pain_share=share,
        test_sources=dict(sorted(sources.loc[known_test].value_counts().items())),
    )


def check_folds(plan: FoldPlan, manifest: Manifest, *, tolerance: float = 0.15) -> FoldCheck:
    """Check a plan against the manifest it is used with.

    Problems: a subject in two of a fold's train/val/test (leakage) or listed twice; subjects
    not in the manifest; manifest subjects missing from a fold; an empty train or test set;
    for k-fold protocols, subjects tested in no fold or in several. Warnings: a test fold's
    share of pain images more than ``tolerance`` from the manifest's. Every finding names its
    fold and subjects. (Whether the plan was made for this manifest file is checked by
    ``load_folds(path, manifest=...)``.)

    Raises:
        FoldsError: ``tolerance`` outside 0..1, or a manifest without usable subjects/labels.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
        0 <= tolerance <= 1
    ):
        raise FoldsError(f"tolerance={tolerance!r} is not valid; valid: 0 to 1, e.g. 0.15")
    table = SubjectTable.from_manifest(manifest, balance_by="source")
    known = set(table.ids)
    problems: list[FoldIssue] = []
    where: dict[str, list[int]] = defaultdict(list)
    for fold in plan.folds:
        for subject in fold.subjects:
            where[subject].append(fold.index)
    for subject in sorted(set(where) - known):
        folds = ", ".join(map(str, where[subject]))
        problems.append(FoldIssue(f"subject {subject!r} (folds {folds}) is not in the manifest",
                                  None, (subject,)))
    for fold in plan.folds:
        problems += _fold_problems(fold, known)
    if plan.kfold:
        problems += _coverage_problems(plan, known)

    pain_share = float((table.images["label"] == "pain").mean())
    stats = tuple(_stats(fold, table, table.subjects["stratum"]) for fold in plan.folds)
    warnings = [
        FoldIssue(f"test pain share {s.test_pain_share:.0%} is "
                  f"{abs(s.test_pain_share - pain_share) * 100:.0f} points from the overall "
                  f"{pain_share:.0%} (tolerance {tolerance * 100:.0f})", s.index)
        for s in stats
        if not math.isnan(s.test_pain_share) and abs(s.test_pain_share - pain_share) > tolerance
    ]
    return FoldCheck(problems=tuple(problems), warnings=tuple(warnings), stats=stats,
                     pain_share=pain_share, tolerance=tolerance)
