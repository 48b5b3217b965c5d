"""A fold's network in ``fold_K/model.pt``: written after training, rebuilt for export and
explanations.

model.pt is a dict of tensors and plain values (read with ``torch.load(weights_only=True)``):
``model`` (the registry name), ``cfg``, ``kwargs``, ``state_dict``, ``fold``, ``epoch`` and the
subjects the model was trained, validated and tested on (``train_subjects``, ``val_subjects``,
``test_subjects``), so that ``oof_leaks`` can prove from the files alone that no prediction
comes from a model that saw its subject.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neopain.data.files import regular_file_problem
from neopain.data.manifest import Manifest, sha256_file
from neopain.data.outputs import atomic_output
from neopain.errors import NeopainError
from neopain.faces.crop import CropRule
from neopain.runs.layout import CONFIG, FoldFolder, read_config

if TYPE_CHECKING:  # torch loads when a network is saved or loaded, not with the package
    from neopain.models import PainModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedFold:
    """A fold's network rebuilt from ``fold_K/model.pt`` and what its run says about it.

    Attributes:
        model: the network in eval mode, with its saved cfg.
        fold_dir: the fold folder.
        fold: the fold index model.pt records (None when it records none).
        manifest: the run's manifest (from config.yaml), or None when the config has none.
        crop_to_face: whether training cropped images to their face box (config.yaml's
            ``crop_to_face``, true when absent, as ``TrainConfig``).
        train_subjects, val_subjects, test_subjects: the fold's split as model.pt records it.
    """

    model: PainModel
    fold_dir: Path
    fold: int | None
    manifest: Path | None
    crop_to_face: bool
    train_subjects: tuple[str, ...]
    val_subjects: tuple[str, ...]
    test_subjects: tuple[str, ...]

    @functools.cached_property
    def weights_sha256(self) -> str:
        """SHA-256 of model.pt: which trained weights these are (a calibrator names them);
        read once, when first asked."""
        return sha256_file(FoldFolder(self.fold_dir).model)

    @property
    def crop_rule(self) -> CropRule:
        """How crops for this model are cut: the face box exactly, or the whole image."""
        return CropRule.exact_box() if self.crop_to_face else CropRule.whole_image()


def save_network(folder: FoldFolder, *, model: PainModel, name: str, fold: int, epoch: int,
                 train_subjects: Sequence[str], val_subjects: Sequence[str],
                 test_subjects: Sequence[str]) -> Path:
    """Write ``model.pt`` for a trained network (moved to the CPU); returns the file."""
    import torch

    model.cpu()
    # interned, as the cfg's name is: pickle writes one object twice as a back-reference, so
    # an equal name from another object (a Ray task's unpickled config) changed the bytes
    name = sys.intern(name)
    # through a file object: torch names the archive inside after a path, here a temporary one
    with atomic_output(folder.model) as partial, open(partial, "wb") as handle:
        torch.save({"model": name, "cfg": model.cfg.to_dict(), "kwargs": dict(model.build_args),
                    "state_dict": model.state_dict(), "fold": fold, "epoch": epoch,
                    "train_subjects": list(train_subjects), "val_subjects": list(val_subjects),
                    "test_subjects": list(test_subjects)}, handle)
    return folder.model


def load_fold(fold_dir: str | os.PathLike[str]) -> TrainedFold:
    """Rebuild the network a training fold saved (``runs/NAME/fold_K/model.pt``).

    The crop rule and the manifest come from the run's config.yaml; when it is absent,
    ``crop_to_face`` is true (the training default) and the manifest None.

    Raises:
        NeopainError: no model.pt, an unreadable one, weights that do not fit the model, or an
            unreadable config.yaml.
    """
    import torch

    from neopain.models import ModelCfg, create_model

    fold_dir = Path(fold_dir)
    file = FoldFolder(fold_dir).model
    if (problem := regular_file_problem(file, what="a model.pt file")) is not None:
        raise NeopainError(f"{file}: {problem}; give a fold folder of a training run "
                           "(runs/NAME/fold_K, written by neopain train)")
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
        name, state = saved["model"], saved["state_dict"]
        cfg = ModelCfg.from_dict(saved["cfg"])
    except Exception as error:  # torch raises many types (IndexError too) for a foreign file
        reason = str(error).strip().split("\n")[0][:200]
        raise NeopainError(f"{file}: not a neopain model.pt ({type(error).__name__}: "
                           f"{reason}); valid: the file neopain train writes") from None
    model = create_model(name, **saved.get("kwargs", {}))
    model.cfg = cfg
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise NeopainError(f"{file}: weights do not fit model {name!r}: "
                           f"{str(error).splitlines()[0]}") from None
    model.eval()
    if not os.path.lexists(fold_dir.parent / CONFIG):
        logger.warning("%s not found: taking crop_to_face=true (the training default)",
                       fold_dir.parent / CONFIG)
    config = read_config(fold_dir.parent, required=False)
    manifest = config.get("manifest")
    return TrainedFold(model=model, fold_dir=fold_dir, fold=saved.get("fold"),
                       manifest=None if manifest is None else Path(manifest),
                       crop_to_face=bool(config.get("crop_to_face", True)),
                       train_subjects=tuple(saved.get("train_subjects", ())),
                       val_subjects=tuple(saved.get("val_subjects", ())),
                       test_subjects=tuple(saved.get("test_subjects", ())))


def seen_subjects(folder: FoldFolder) -> set[str]:
    """The subjects a fold's network trained or validated on, as its model.pt records them.

    Raises:
        Exception: whatever torch raises for a file that is not a model.pt (many types).
    """
    import torch

    saved = torch.load(folder.model, map_location="cpu", weights_only=True)
    return set(saved["train_subjects"]) | set(saved["val_subjects"])


def select_rows(manifest: Manifest, *, rows: Sequence[int] | None = None,
                subjects: Iterable[str] | None = None, limit: int | None = None) -> list[int]:
    """Manifest row indices: ``rows``, or the rows of ``subjects``, or all; the first ``limit``.

    Raises:
        NeopainError: rows outside the manifest, unknown subjects, or both given.
    """
    if rows is not None and subjects is not None:
        raise NeopainError("give rows or subjects, not both")
    n = len(manifest)
    if rows is not None:
        chosen = [int(row) for row in rows]
        outside = [row for row in chosen if not 0 <= row < n]
        if outside:
            raise NeopainError(f"rows has {outside[0]}; valid: 0 to {n - 1} (the manifest has "
                               f"{n} rows)")
    elif subjects is not None:
        wanted = {str(subject) for subject in subjects}
        unknown = sorted(wanted - set(manifest.table["subject"]))
        if unknown:
            raise NeopainError(f"subjects {', '.join(unknown[:5])} are not in the manifest; "
                               "valid: its subject ids")
        chosen = list(np.flatnonzero(manifest.table["subject"].isin(wanted).to_numpy()))
    else:
        chosen = list(range(n))
    return chosen if limit is None else chosen[:limit]
