"""``sgkf``: scikit-learn's StratifiedGroupKFold over subjects, stratified by image label."""

from __future__ import annotations

import warnings

import numpy as np

from neopain.data.folds.base import TEST_STREAM, FoldSplitter, SubjectTable, random_state


class StratifiedGroupKFoldSplitter(FoldSplitter):
    """k folds of whole subjects whose test images keep the overall pain share.

    Uses ``sklearn.model_selection.StratifiedGroupKFold(shuffle=True)`` on the image labels
    (scikit-learn 1.8 fixed its loss of class balance when shuffling). ``balance_by`` only
    spreads the validation subjects: adding the source to the stratification target let test
    folds drift more than 15 points from the overall pain share on uneven cohorts. The shuffle
    only reorders subjects whose labels are spread alike, so different seeds can give similar
    folds. When no class has k images, stratifying is impossible and ``GroupKFold`` is used.
    Same arguments as ``FoldSplitter``.
    """

    protocol = "sgkf"
    kfold = True

    def test_groups(self, table: SubjectTable) -> list[list[str]]:
        """Test subjects of each of the k folds."""
        # imported here: scikit-learn takes ~0.7 s to import, which every CLI call would pay
        from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

        images = table.images
        groups = images["subject"].to_numpy()
        target = images["label"].to_numpy()
        seed = random_state(self.seed, TEST_STREAM)
        if np.unique(target, return_counts=True)[1].max() >= self.k:
            splitter = StratifiedGroupKFold(n_splits=self.k, shuffle=True, random_state=seed)
        else:
            splitter = GroupKFold(n_splits=self.k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # a class smaller than k: check_folds shows the shares
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            tests = [test for _, test in splitter.split(groups, target, groups=groups)]
        return [sorted(set(groups[test])) for test in tests]
