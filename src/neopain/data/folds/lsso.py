"""``lsso``: leave-some-subjects-out k-fold with a fixed share of each source per test fold."""

from __future__ import annotations

import numpy as np

from neopain.data.folds.base import (
    TEST_STREAM,
    FoldSplitter,
    SubjectTable,
    deal_subjects,
    random_state,
)
from neopain.data.folds.plan import FoldsError


class LeaveSomeSubjectsOut(FoldSplitter):
    """Deal each stratum's subjects round-robin into k test folds (``deal_subjects``).

    Every test fold holds the floor or ceiling of each stratum's n/k subjects (``balance_by``,
    by default the source) and fold sizes differ by at most 1: the published protocol (56
    subjects, 10 folds of 5-6, 3 always from UNIFESP). Of ``TRIES`` random dealings, the one
    whose worst test fold is closest to the overall share of pain images is kept. Same
    arguments as ``FoldSplitter``; with balancing on, every stratum needs at least k subjects.
    """

    protocol = "lsso"
    kfold = True
    TRIES = 32

    def check_params(self, table: SubjectTable) -> None:
        """Also refuse strata with fewer than k subjects: some test folds would lack them."""
        super().check_params(table)
        if self.balance_by is None:
            return
        counts = table.subjects["stratum"].value_counts()
        small = counts[counts < self.k].sort_index()
        if not small.empty:
            named = ", ".join(f"{value!r} has {n}" for value, n in small.items())
            raise FoldsError(
                f"balance_by={self.balance_by!r}: {named} subject(s), fewer than k={self.k} "
                f"folds, so some test folds would have none; lower k to {small.min()} or less, "
                "or turn balancing off (balance_by=None, --balance-by none)"
            )

    def test_groups(self, table: SubjectTable) -> list[list[str]]:
        """Test subjects per fold: the most class-balanced of ``TRIES`` dealings."""
        rng = np.random.default_rng(random_state(self.seed, TEST_STREAM))
        dealings = [deal_subjects(table, parts=self.k, rng=rng) for _ in range(self.TRIES)]
        return min(dealings, key=lambda folds: max(map(table.pain_deviation, folds)))
