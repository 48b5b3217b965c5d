"""Embedding cache: a frozen backbone's features, computed once per image, for head training.

While the backbone is frozen, every epoch would push the same images through the same
convolutions; the cache runs ``forward_features`` once and the head trains on the stored
tensors (a VGG-16 head epoch on CPU drops from a minute to a fraction of a second).

The cache key covers everything the features depend on: the model's name and class, a hash of
the backbone's weights (and buffers), the preprocessing (size, mean, std, channel order, crop
to face), the manifest rows with their face boxes, and each image file's size and
modification time. Any change gives a new key, so stale features are never used.

Augmentation and a cache conflict: online augmentation makes every epoch's images different,
so a dataset with a ``transform`` is refused. Use the cache without online augmentation, or
for the head-only phase on offline-augmented images (``neopain augment`` writes them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from neopain.data.outputs import atomic_output
from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.training.dataset import FaceDataset

logger = logging.getLogger(__name__)

ProgressHook = Callable[[int, int], None]


def weights_hash(model: PainModel) -> str:
    """sha256 of the backbone's parameters and buffers (the head's are left out)."""
    head = {id(tensor) for tensor in model.head.state_dict(keep_vars=True).values()}
    digest = hashlib.sha256()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in head:
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        data = data.reshape(-1)  # a 0-d tensor (BatchNorm's num_batches_tracked) cannot .view
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def cache_key(model: PainModel, dataset: FaceDataset) -> str:
    """The key of ``model``'s features of ``dataset``'s images (see the module docstring).

    Raises:
        NeopainError: the dataset has an online ``transform`` (features would differ per epoch).
    """
    if dataset.transform is not None:
        raise NeopainError("the embedding cache needs a dataset without online augmentation "
                           "(transform=None); train with augment off, or on offline-augmented "
                           "images (neopain augment)")
    stamps = []
    for row in dataset.indices_:
        path = dataset.manifest.image_path(int(row))
        try:
            stat = path.stat()
        except OSError:
            raise NeopainError(f"manifest line {int(row) + 2}, column 'image': cannot read "
                               f"{path}") from None
        stamps.append([str(path), stat.st_size, stat.st_mtime_ns])
    fields = {
        "model": model.cfg.name,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights": weights_hash(model),
        "size": [int(v) for v in dataset.size],
        "mean": [float(v) for v in dataset.mean_],
        "std": [float(v) for v in dataset.std_],
        "channel_order": dataset.channel_order,
        "crop_to_face": bool(dataset.crop_to_face),
        "rows": [int(v) for v in dataset.indices_],
        "boxes": np.nan_to_num(dataset.boxes_, nan=-1.0).round(3).tolist(),
        "images": stamps,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class EmbeddingCache:
    """``forward_features`` outputs per dataset, kept in memory and, with ``directory``, on disk.

    Args:
        directory: folder for ``<key>.pt`` files; None: memory only.

    Example:
        >>> cache = EmbeddingCache("runs/vgg/cache")
        >>> features = cache.features(model, data)      # (len(data), ...) in dataset order
        >>> logits = model.forward_head(features[:8])
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self._memory: dict[str, torch.Tensor] = {}

    def features(
        self,
        model: PainModel,
        dataset: FaceDataset,
        *,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        workers: int = 0,
        on_progress: ProgressHook | None = None,
    ) -> torch.Tensor:
        """The features of every dataset item, in dataset order, on the CPU.

        Computed in eval mode without gradients on the first call for a key; later calls with
        the same key return the stored tensor.

        Raises:
            NeopainError: see ``cache_key``; unreadable images.
        """
        key = cache_key(model, dataset)
        if key in self._memory:
            return self._memory[key]
        path = None if self.directory is None else self.directory / f"{key}.pt"
        if path is not None and path.is_file():
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
                hit = stored.get("key") == key and isinstance(stored["features"], torch.Tensor)
            except Exception as error:  # a damaged or foreign file: computed again, replaced
                logger.warning("embedding cache %s cannot be read (%s); computing again",
                               path, type(error).__name__)
                hit = False
            if hit:
                self._memory[key] = stored["features"]
                logger.debug("embedding cache hit: %s", path)
                return stored["features"]
        features = compute_features(model, dataset, batch_size=batch_size, device=device,
                                    workers=workers, on_progress=on_progress)
        self._memory[key] = features
        if path is not None:
            # through a file object: torch names the archive inside after a path, here a
            # temporary one, and the same features would give different bytes
            with atomic_output(path) as partial, partial.open("wb") as handle:
                torch.save({"key": key, "features": features}, handle)
            logger.debug("embedding cache stored: %s", path)
        return features


def compute_features(
    model: PainModel,
    dataset: FaceDataset,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    workers: int = 0,
    on_progress: ProgressHook | None = None,
) -> torch.Tensor:
    """``model.forward_features`` of every item (eval mode, no gradients), stacked on the CPU."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        generator=torch.Generator())
    parts, done = [], 0
    try:
        with torch.no_grad():
            for batch in loader:
                parts.append(model.forward_features(batch["image"].to(device)).cpu())
                done += len(batch["image"])
                if on_progress:
                    on_progress(done, len(dataset))
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0)
