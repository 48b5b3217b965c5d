"""``holdout``: repeated grouped, stratified train/test splits (e.g. 10 × 80/20, leak-free)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from neopain.data.folds.base import (
    TEST_STREAM,
    FoldSplitter,
    SubjectTable,
    deal_subjects,
    random_state,
)
from neopain.data.folds.plan import FoldsError

MAX_DENOMINATOR = 10


class RepeatedGroupHoldout(FoldSplitter):
    """k independent holdout splits; each tests about ``test_share`` of the subjects.

    ``test_share`` is rounded to the nearest fraction m/d with d <= 10 (0.2 → 1/5, 0.3 →
    3/10). Each repeat deals the subjects into d parts as ``lsso`` does (every part gets its
    share of each ``balance_by`` stratum) and tests on the first m parts; of ``TRIES`` such
    dealings, the one whose test images' pain share is closest to the overall one is kept.
    A subject may be tested in several repeats or in none.

    (Taking a shuffled ``StratifiedGroupKFold``'s first fold is not used: its shuffle only
    reorders subjects with equal class spread, so the repeats came out nearly identical.)

    Args:
        test_share: share of subjects to test on in each repeat, 0.05 to 0.95.
        k, seed, val_share, balance_by: as for ``FoldSplitter`` (k counts repeats).
    """

    protocol = "holdout"
    kfold = False
    TRIES = 32

    def __init__(
        self, *, k: int = 10, seed: int = 0, val_share: float = 0.1, test_share: float = 0.2,
        balance_by: str | None = "source",
    ) -> None:
        super().__init__(k=k, seed=seed, val_share=val_share, balance_by=balance_by)
        self.test_share = test_share

    @property
    def test_fraction(self) -> Fraction:
        """``test_share`` as the fraction m/d (d <= 10) the splits use."""
        return Fraction(self.test_share).limit_denominator(MAX_DENOMINATOR)

    def params(self) -> dict:
        """Also ``test_share`` and the ``test_fraction`` used, e.g. ``"1/5"``."""
        return {**super().params(), "test_share": self.test_share,
                "test_fraction": str(self.test_fraction)}

    def check_params(self, table: SubjectTable) -> None:
        """Also check ``test_share`` and that there are enough subjects for its fraction."""
        super().check_params(table)
        share = self.test_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not (
            0.05 <= share <= 0.95
        ):
            raise FoldsError(
                f"test_share={share!r} is not valid; valid: 0.05 to 0.95, e.g. 0.2 for 80/20"
            )
        n, d = len(table.subjects), self.test_fraction.denominator
        if d > n:
            raise FoldsError(
                f"test_share={share} splits subjects in {d} parts ({self.test_fraction}) but "
                f"the manifest has {n} subjects; valid here: a share m/d with d <= {n}, "
                f"e.g. {1 / min(n, 5):.2f}"
            )

    def test_groups(self, table: SubjectTable) -> list[list[str]]:
        """Test subjects of each repeat (each repeat draws from its own random stream)."""
        m, d = self.test_fraction.numerator, self.test_fraction.denominator
        tests = []
        for repeat in range(self.k):
            rng = np.random.default_rng(random_state(self.seed, TEST_STREAM, repeat))
            candidates = [
                sorted(s for part in deal_subjects(table, parts=d, rng=rng)[:m] for s in part)
                for _ in range(self.TRIES)
            ]
            tests.append(min(candidates, key=table.pain_deviation))
        return tests
