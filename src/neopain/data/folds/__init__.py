"""Subject-grouped folds: no subject is ever in two of a fold's train, validation and test sets.

Protocols: ``lsso`` (leave-some-subjects-out k-fold, a fixed share of each source per test
fold), ``sgkf`` (scikit-learn's StratifiedGroupKFold by label) and ``holdout`` (repeated grouped,
stratified train/test splits). Every fold also has validation subjects drawn from its training
subjects. Plans are saved as folds.json, tied to the manifest's sha256.

Example::

    manifest = load_manifest(path)
    plan = make_folds(manifest, protocol="lsso", k=10, manifest_sha256=sha256_file(path))
    save_folds(plan, "folds.json")
    check_folds(load_folds("folds.json", manifest=path), manifest).ok  # True
"""

from neopain.data.folds.base import FoldSplitter, SubjectTable
from neopain.data.folds.check import FoldCheck, FoldIssue, FoldStats, check_folds
from neopain.data.folds.holdout import RepeatedGroupHoldout
from neopain.data.folds.lsso import LeaveSomeSubjectsOut
from neopain.data.folds.make import SPLITTERS, make_folds, make_splitter
from neopain.data.folds.plan import (
    KFOLD_PROTOCOLS,
    PROTOCOLS,
    SPLITS,
    Fold,
    FoldPlan,
    FoldsError,
    rows_of,
)
from neopain.data.folds.sgkf import StratifiedGroupKFoldSplitter
from neopain.data.folds.store import load_folds, save_folds

__all__ = [
    "KFOLD_PROTOCOLS", "PROTOCOLS", "SPLITS", "SPLITTERS",
    "Fold", "FoldCheck", "FoldIssue", "FoldPlan", "FoldSplitter", "FoldStats", "FoldsError",
    "LeaveSomeSubjectsOut", "RepeatedGroupHoldout", "StratifiedGroupKFoldSplitter",
    "SubjectTable", "check_folds", "load_folds", "make_folds", "make_splitter", "rows_of",
    "save_folds",
]  # fmt: skip
