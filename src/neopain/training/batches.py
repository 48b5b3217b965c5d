"""The batches of a fit or a prediction, from the fastest source there is: cached backbone
features while the backbone is frozen, images kept in memory when they fit, else a DataLoader.
Shuffling and mirroring are seeded, so a resumed fit draws what an uninterrupted one would."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from neopain.models.base import PainModel
from neopain.training.dataset import FaceDataset
from neopain.training.embeddings import EmbeddingCache

PRELOAD_BYTES = 1 << 30
"""Datasets without augmentation up to this size are read once and kept as one tensor."""

Batch = tuple[torch.Tensor, torch.Tensor, bool]
"""(row positions in the dataset, inputs on the device, whether the inputs are features)."""


def flipped(images: torch.Tensor, *, probability: float, seed: int, epoch: int,
            batch: int) -> torch.Tensor:
    """Mirror each image left-right with ``probability`` (drawn from the seed, epoch and
    batch)."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 100_003 + batch)
    mirror = torch.rand(len(images), generator=generator) < probability
    return torch.where(mirror.to(images.device)[:, None, None, None], images.flip(-1), images)


class BatchSource:
    """Batches of ``FaceDataset``s for one fit (or one prediction); what it reads once (images,
    features) it keeps per dataset until it is dropped.

    Args:
        model: the model the batches are for (its frozen blocks decide on cached features).
        batch_size, workers: the DataLoader's.
        seed: the shuffling seed (with the epoch).
        device: where batches go.
        cache: use cached features while the whole backbone is frozen and a dataset has no
            online augmentation.
        embeddings: the feature cache.
    """

    def __init__(self, model: PainModel, *, batch_size: int, workers: int, seed: int,
                 device: torch.device, cache: bool, embeddings: EmbeddingCache) -> None:
        self.model = model
        self.batch_size = batch_size
        self.workers = workers
        self.seed = seed
        self.device = device
        self.cache = cache
        self.embeddings = embeddings
        self._images: dict[int, torch.Tensor] = {}
        self._features: dict[int, torch.Tensor] = {}

    def _uses_features(self, data: FaceDataset) -> bool:
        frozen = self.model.frozen_blocks() == self.model.blocks()
        return self.cache and frozen and data.transform is None

    def _inputs(self, data: FaceDataset) -> tuple[torch.Tensor | None, bool]:
        """(tensor of all items or None, whether they are features): the fastest source."""
        if self._uses_features(data):
            # the key hashes the backbone's weights: once per dataset while they stay frozen
            if id(data) not in self._features:
                self._features[id(data)] = self.embeddings.features(
                    self.model, data, batch_size=self.batch_size, device=self.device,
                    workers=self.workers)
            return self._features[id(data)], True
        if data.transform is None:
            height, width = data.size
            if len(data) * 3 * height * width * 4 <= PRELOAD_BYTES:
                if id(data) not in self._images:
                    loader = DataLoader(data, batch_size=self.batch_size,
                                        num_workers=self.workers, generator=torch.Generator())
                    self._images[id(data)] = torch.cat([b["image"] for b in loader])
                return self._images[id(data)], False
        return None, False

    def batches(self, data: FaceDataset, *, epoch: int | None) -> Iterator[Batch]:
        """The dataset's batches: shuffled with ``epoch`` (1-based), in order without one."""
        n = len(data)
        if epoch is None:
            order = torch.arange(n)
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=generator)
        batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        inputs, features = self._inputs(data)
        if inputs is not None:
            for positions in batches:
                yield positions, inputs[positions].to(self.device), features
            return
        if epoch is not None:
            data.set_epoch(epoch)
        # an own generator: DataLoader would otherwise draw its base seed from the global RNG,
        # shifting dropout's random numbers and breaking resume equality
        loader = DataLoader(data, batch_sampler=[b.tolist() for b in batches],
                            num_workers=self.workers, generator=torch.Generator())
        for positions, batch in zip(batches, loader):
            yield positions, batch["image"].to(self.device), False
