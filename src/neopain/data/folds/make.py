"""``make_folds``: a FoldPlan for a manifest, by protocol name."""

from __future__ import annotations

import logging

from neopain.data.folds.base import FoldSplitter
from neopain.data.folds.holdout import RepeatedGroupHoldout
from neopain.data.folds.lsso import LeaveSomeSubjectsOut
from neopain.data.folds.plan import PROTOCOLS, FoldPlan, FoldsError
from neopain.data.folds.sgkf import StratifiedGroupKFoldSplitter
from neopain.data.manifest import Manifest

logger = logging.getLogger(__name__)

SPLITTERS: dict[str, type[FoldSplitter]] = {
    cls.protocol: cls
    for cls in (LeaveSomeSubjectsOut, StratifiedGroupKFoldSplitter, RepeatedGroupHoldout)
}


def make_splitter(
    protocol: str, *, k: int = 10, seed: int = 0, val_share: float = 0.1,
    test_share: float = 0.2, balance_by: str | None = "source",
) -> FoldSplitter:
    """The splitter of a protocol; ``test_share`` is used by ``holdout`` only.

    Raises:
        FoldsError: unknown protocol.
    """
    if protocol not in SPLITTERS:
        raise FoldsError(f"protocol={protocol!r} is not known; valid: {', '.join(PROTOCOLS)}")
    kwargs = {"k": k, "seed": seed, "val_share": val_share, "balance_by": balance_by}
    if protocol == RepeatedGroupHoldout.protocol:
        kwargs["test_share"] = test_share
    return SPLITTERS[protocol](**kwargs)


def make_folds(
    manifest: Manifest,
    *,
    protocol: str,
    k: int = 10,
    seed: int = 0,
    val_share: float = 0.1,
    test_share: float = 0.2,
    balance_by: str | None = "source",
    manifest_sha256: str = "",
    manifest_name: str = "",
) -> FoldPlan:
    """Subject-grouped folds of the manifest: no subject is in two of a fold's train/val/test.

    Args:
        manifest: the images, each with its subject and label.
        protocol: ``"lsso"``, ``"sgkf"`` (k-fold: each subject tested once) or ``"holdout"``
            (k repeated train/test splits).
        k: folds, or repeats for ``holdout``.
        seed: random seed (>= 0); same manifest and arguments give the same plan.
        val_share: about this share of each fold's training subjects (at least 1) validate; 0
            for none.
        test_share: share of subjects each ``holdout`` repeat tests on (ignored otherwise).
        balance_by: manifest column whose values every test fold (``lsso``, ``holdout``) and
            validation set should share in, or None; ``sgkf`` test folds stratify by label only.
        manifest_sha256, manifest_name: recorded in the plan, so that folds.json can refuse
            another manifest (see ``sha256_file``).

    Raises:
        FoldsError: unknown protocol, bad parameters, or a manifest they do not fit.

    Example:
        >>> manifest = load_manifest("manifest.csv")  # doctest: +SKIP
        >>> plan = make_folds(manifest, protocol="lsso", k=10)  # doctest: +SKIP
    """
    splitter = make_splitter(protocol, k=k, seed=seed, val_share=val_share,
                             test_share=test_share, balance_by=balance_by)
    folds = splitter.split(manifest)
    logger.debug("made %d %s folds of %d rows", len(folds), protocol, len(manifest))
    return FoldPlan(protocol=protocol, seed=seed, k=k, manifest_sha256=manifest_sha256,
                    folds=folds, params=splitter.params(), manifest_name=manifest_name)
