"""The fit loop: batches, loss, optimizer steps, validation; everything else is a callback.

Deterministic on CPU for a given ``seed``: model initialization is the caller's (seed torch
before ``create_model``); shuffling uses a generator seeded per epoch, dropout a torch RNG
seeded at the start of ``fit`` (its state is saved in checkpoints), augmentation the dataset's
seed and epoch. The global RNG is left as it was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from neopain.training.dataset import FaceDataset
from neopain.errors import NeopainError
from neopain.training.callbacks import Callback, load_checkpoint
from neopain.training.config import LR_SCHEDULES, OPTIMIZERS, PRECISIONS
from neopain.training.embeddings import EmbeddingCache
from neopain.training.losses import (
    balanced_class_weights,
    l1_penalty,
    pain_loss,
    soft_targets,
)

PRELOAD_BYTES = 1 << 30
"""Datasets without augmentation up to this size are read once and kept as one tensor."""


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` did: epochs completed (in all, resumed ones included), whether early
    stopping ended it, wall seconds of this call, and one ``logs`` dict per epoch."""

    epochs: int
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cpu``; ``cuda`` (refused when missing)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NeopainError("device='cuda' but torch sees no CUDA GPU; valid here: auto, cpu")
    if device not in ("cpu", "cuda"):
        raise NeopainError(f"device={device!r} is not valid; valid: auto, cpu, cuda")
    return torch.device(device)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (a CUDA GPU that says so; a CPU with
    AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training forward passes: None (float32) or ``torch.bfloat16``."""
    if precision not in PRECISIONS:
        raise NeopainError(f"precision={precision!r} is not valid; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32" or (precision == "auto" and not bf16_supported(device)):
        return None
    if not bf16_supported(device):
        raise NeopainError(f"precision='bf16' but this {device.type.upper()} has no native "
                           "bfloat16 (it would be emulated, slower than float32); valid here: "
                           "fp32, auto")
    return torch.bfloat16


class Trainer:
    """Train a ``PainModel`` on ``FaceDataset``s with callbacks.

    Args:
        model: the model (its frozen blocks stay frozen unless a callback unfreezes them).
        optimizer: ``adam``, ``rmsprop`` or ``sgd`` (momentum 0.9).
        lr, weight_decay, epochs, batch_size: the usual.
        class_weights: ``balanced`` or None (see ``losses.balanced_class_weights``).
        l1_head: factor of the L1 penalty on the head's weights.
        label_smoothing: 0–1, as torch's cross-entropy.
        soft_labels: ``sigmoid``, ``linear`` or ``step`` targets from the manifest ``score``.
        lr_schedule: ``constant``, or ``onecycle`` (warm up to ``lr``, then anneal to near zero
            over all the batches of ``epochs``; not with a callback that rebuilds the optimizer,
            such as ``Unfreeze``).
        flip: probability of mirroring each training image left-right (images only, never
            cached embeddings); drawn from the seed, epoch and batch, so resume is exact.
        callbacks: ``Callback``s, run in ``order``.
        cache: while the whole backbone is frozen and a dataset has no online augmentation,
            train and predict on cached embeddings (``EmbeddingCache``).
        cache_dir: where the cache stores embeddings; None: memory only.
        workers: DataLoader worker processes.
        seed: see the module docstring.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``fp32``; ``bf16`` (training forward passes in bfloat16 mixed precision:
            about 2× faster on CPUs with AMX or AVX512-BF16 and on recent GPUs; weights,
            gradients, the loss and every prediction stay float32); ``auto`` (bf16 where
            native, else fp32).

    Example:
        >>> trainer = Trainer(model, epochs=20, callbacks=[EarlyStopping(5)])
        >>> trainer.fit(train_data, val_data)
        >>> prob_pain = trainer.predict(test_data)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        epochs: int = 30,
        batch_size: int = 32,
        class_weights: str | None = "balanced",
        l1_head: float = 0.0,
        label_smoothing: float = 0.0,
        soft_labels: str | None = None,
        lr_schedule: str = "constant",
        flip: float = 0.0,
        callbacks: Sequence[Callback] = (),
        cache: bool = True,
        cache_dir: str | None = None,
        workers: int = 0,
        seed: int = 0,
        device: str = "auto",
        precision: str = "fp32",
    ) -> None:
        if optimizer not in OPTIMIZERS:
            raise NeopainError(f"optimizer={optimizer!r} is not valid; valid: "
                               f"{', '.join(OPTIMIZERS)}")
        if lr_schedule not in LR_SCHEDULES:
            raise NeopainError(f"lr_schedule={lr_schedule!r} is not valid; valid: "
                               f"{', '.join(LR_SCHEDULES)}")
        if not 0.0 <= flip <= 1.0:
            raise NeopainError(f"flip={flip} is not valid; valid: a probability from 0 to 1")
        if class_weights not in ("balanced", None):
            raise NeopainError(f"class_weights={class_weights!r} is not valid; valid: "
                               "'balanced', None")
        if epochs < 1 or batch_size < 1 or lr <= 0:
            raise NeopainError(f"epochs={epochs}, batch_size={batch_size} must be >= 1 and "
                               f"lr={lr} > 0")
        self.model = model
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.class_weights = class_weights
        self.l1_head = l1_head
        self.label_smoothing = label_smoothing
        self.soft_labels = soft_labels
        self.lr_schedule = lr_schedule
        self.flip = flip
        self.callbacks = sorted(callbacks, key=lambda callback: callback.order)
        self.cache = cache
        self.cache_dir = cache_dir
        self.workers = workers
        self.seed = seed
        self.device = device
        self.device_ = resolve_device(device)
        self.precision = precision
        self.autocast_ = resolve_precision(precision, self.device_)
        self.embeddings_ = EmbeddingCache(cache_dir)
        self.stop_training = False
        self.phase_ = "train"
        self.lr_ = lr
        self.epoch_ = 0
        self.optimizer_: torch.optim.Optimizer | None = None
        self.scheduler_: torch.optim.lr_scheduler.LRScheduler | None = None
        self.history_: list[dict[str, Any]] = []
        self._images: dict[int, torch.Tensor] = {}
        self._features: dict[int, torch.Tensor] = {}

    # -- optimizer and state ------------------------------------------------------------------

    def configure_optimizer(self, lr: float) -> None:
        """A fresh optimizer over the parameters that train now, at ``lr``."""
        if self.scheduler_ is not None:
            raise NeopainError("lr_schedule='onecycle' anneals one optimizer over the whole fit; "
                               "it cannot be combined with unfreezing (unfreeze_patience > 0)")
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise NeopainError("the model has no trainable parameter; unfreeze some blocks")
        if self.optimizer == "adam":
            self.optimizer_ = torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        elif self.optimizer == "rmsprop":
            self.optimizer_ = torch.optim.RMSprop(params, lr=lr, weight_decay=self.weight_decay)
        else:
            self.optimizer_ = torch.optim.SGD(params, lr=lr, momentum=0.9,
                                              weight_decay=self.weight_decay)
        self.lr_ = lr

    def _callback_keys(self) -> list[str]:
        names = [type(callback).__name__ for callback in self.callbacks]
        return [name if names.count(name) == 1 else f"{name}{names[:i].count(name)}"
                for i, name in enumerate(names)]

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed ``fit`` needs: weights, optimizer, epoch, callbacks, RNG."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer_.state_dict(),
            "epoch": self.epoch_,
            "lr": self.lr_,
            "phase": self.phase_,
            "frozen": self.model.frozen_blocks(),
            "history": list(self.history_),
            "callbacks": {key: callback.state_dict()
                          for key, callback in zip(self._callback_keys(), self.callbacks)},
            "stopped": self.stop_training,
            "rng": torch.get_rng_state(),
            "scheduler": None if self.scheduler_ is None else self.scheduler_.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` output (callbacks are matched by class name)."""
        self.model.load_state_dict(state["model"])
        self.model.unfreeze()
        self.model.freeze(state["frozen"])
        self.phase_, self.epoch_ = state["phase"], state["epoch"]
        self.history_ = list(state["history"])
        for key, callback in zip(self._callback_keys(), self.callbacks):
            if key in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][key])
        self.configure_optimizer(state["lr"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self.stop_training = state["stopped"]
        torch.set_rng_state(state["rng"])

    # -- data -----------------------------------------------------------------------------------

    def _use_cache(self, data: FaceDataset) -> bool:
        backbone = getattr(self.model, "blocks", None)
        frozen = backbone is not None and self.model.frozen_blocks() == self.model.blocks()
        return self.cache and frozen and data.transform is None

    def _inputs(self, data: FaceDataset) -> tuple[torch.Tensor | None, bool]:
        """(tensor of all items or None, whether they are features): the fastest source."""
        if self._use_cache(data):
            # the key hashes the backbone's weights: once per dataset while they stay frozen
            if id(data) not in self._features:
                self._features[id(data)] = self.embeddings_.features(
                    self.model, data, batch_size=self.batch_size, device=self.device_,
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

    def _batches(self, data: FaceDataset, *, epoch: int | None):
        """Yield (row positions, inputs, whether inputs are features); shuffled with ``epoch``."""
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
                yield positions, inputs[positions].to(self.device_), features
            return
        if epoch is not None:
            data.set_epoch(epoch)
        # an own generator: DataLoader would otherwise draw its base seed from the global RNG,
        # shifting dropout's random numbers and breaking resume equality
        loader = DataLoader(data, batch_sampler=[b.tolist() for b in batches],
                            num_workers=self.workers, generator=torch.Generator())
        for positions, batch in zip(batches, loader):
            yield positions, batch["image"].to(self.device_), False

    def _logits(self, inputs: torch.Tensor, features: bool) -> torch.Tensor:
        if features:
            return self.model.forward_head(inputs)
        # channels-last images: oneDNN's convolutions run about 25 % faster on this CPU (ncnn
        # training step 14 vs 19 ms per image, measured side by side)
        return self.model(inputs.contiguous(memory_format=torch.channels_last))

    def _train_logits(self, inputs: torch.Tensor, features: bool) -> torch.Tensor:
        """Training logits, in float32, from a forward pass in the ``precision`` asked for."""
        if self.autocast_ is None or features:
            return self._logits(inputs, features)
        with torch.autocast(self.device_.type, dtype=self.autocast_):
            return self._logits(inputs, features).float()

    def _targets(self, data: FaceDataset) -> torch.Tensor | None:
        if self.soft_labels is None:
            return None
        column = data.manifest.table["score"].iloc[data.indices_]
        scores = np.array([float(s) if str(s).strip() else math.nan for s in column])
        return torch.tensor(soft_targets(scores, data.labels_, kind=self.soft_labels),
                            dtype=torch.float32)

    # -- the loop -------------------------------------------------------------------------------

    def fit(self, train_data: FaceDataset, val_data: FaceDataset | None = None, *,
            resume_from: str | None = None) -> FitResult:
        """Train for ``epochs`` (fewer when a callback stops it); validate after each epoch.

        Args:
            train_data, val_data: ``FaceDataset``s (validation is optional).
            resume_from: a checkpoint.pt written by ``Checkpoint``; fitting continues after
                its last epoch, giving what an uninterrupted run would have given.

        Raises:
            NeopainError: a training set missing a class with ``class_weights="balanced"``;
                ``resume_from`` no checkpoint (see ``load_checkpoint``).
        """
        started = time.perf_counter()
        self.model.to(self.device_, memory_format=torch.channels_last)
        labels = torch.from_numpy(train_data.labels_)
        weights = None
        if self.class_weights == "balanced":
            weights = torch.tensor(balanced_class_weights(train_data.labels_),
                                   dtype=torch.float32, device=self.device_)
        targets = self._targets(train_data)
        self.stop_training = False
        self.history_, self.epoch_ = [], 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for callback in self.callbacks:
                callback.on_fit_start(self)
            self.scheduler_ = None
            self.configure_optimizer(self.lr)
            state = None
            if resume_from is not None:
                state = load_checkpoint(resume_from, map_location=self.device_)
                self.load_state_dict(state)
            if self.lr_schedule == "onecycle":
                self.scheduler_ = torch.optim.lr_scheduler.OneCycleLR(
                    self.optimizer_, max_lr=self.lr,
                    total_steps=self.epochs * math.ceil(len(train_data) / self.batch_size))
                if state is not None and state.get("scheduler") is not None:
                    self.scheduler_.load_state_dict(state["scheduler"])
                    # building the scheduler reset the optimizer's rate and momentum to the
                    # warm-up start: put back the saved ones
                    self.optimizer_.load_state_dict(state["optimizer"])
            while self.epoch_ < self.epochs and not self.stop_training:
                epoch = self.epoch_ + 1
                for callback in self.callbacks:
                    callback.on_epoch_start(self, epoch)
                train_loss = self._train_epoch(train_data, labels, targets, weights, epoch)
                logs = {"epoch": epoch, "phase": self.phase_, "train_loss": train_loss,
                        **self._validate(val_data), "lr": self.lr_}
                self.epoch_ = epoch
                self.history_.append(logs)
                for callback in self.callbacks:
                    callback.on_epoch_end(self, logs)
            for callback in self.callbacks:
                callback.on_fit_end(self)
        self._images.clear()
        self._features.clear()
        self.scheduler_ = None
        return FitResult(epochs=self.epoch_, stopped_early=self.stop_training,
                         seconds=time.perf_counter() - started, history=list(self.history_))

    def _train_epoch(self, data, labels, targets, weights, epoch: int) -> float:
        self.model.train()
        total, seen = 0.0, 0
        batches = math.ceil(len(data) / self.batch_size)
        for number, (positions, inputs, features) in enumerate(self._batches(data, epoch=epoch),
                                                               start=1):
            if self.flip and not features:
                inputs = self._flipped(inputs, epoch=epoch, batch=number)
            logits = self._train_logits(inputs, features)
            batch_labels = labels[positions].to(self.device_)
            batch_targets = None if targets is None else targets[positions].to(self.device_)
            loss = pain_loss(logits, batch_labels, targets=batch_targets, class_weights=weights,
                             label_smoothing=self.label_smoothing)
            if self.l1_head:
                loss = loss + self.l1_head * l1_penalty(self.model.head_parameters())
            self.optimizer_.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_.step()
            if self.scheduler_ is not None:
                self.scheduler_.step()
                self.lr_ = self.optimizer_.param_groups[0]["lr"]
            total += float(loss.detach()) * len(positions)
            seen += len(positions)
            for callback in self.callbacks:
                callback.on_batch_end(self, number, batches, float(loss.detach()))
        return total / max(seen, 1)

    def _flipped(self, images: torch.Tensor, *, epoch: int, batch: int) -> torch.Tensor:
        """Mirror each image left-right with probability ``flip`` (seeded per epoch and batch)."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 100_003 + batch)
        mirror = torch.rand(len(images), generator=generator) < self.flip
        return torch.where(mirror.to(images.device)[:, None, None, None], images.flip(-1), images)

    def _validate(self, data: FaceDataset | None) -> dict[str, float]:
        if data is None or len(data) == 0:
            return {"val_loss": math.nan, "val_accuracy": math.nan}
        prob = torch.from_numpy(self.predict(data)).double()
        truth = torch.from_numpy(data.labels_)
        picked = torch.where(truth == 1, prob, 1.0 - prob).clamp_min(1e-12)
        return {"val_loss": float(-picked.log().mean()),
                "val_accuracy": float(((prob >= 0.5).long() == truth).double().mean())}

    def predict(self, data: FaceDataset) -> np.ndarray:
        """P(pain) of each item of ``data``, in dataset order (eval mode, no gradients)."""
        self.model.to(self.device_, memory_format=torch.channels_last)
        was_training = self.model.training
        self.model.eval()
        parts = []
        try:
            with torch.no_grad():
                for _, inputs, features in self._batches(data, epoch=None):
                    parts.append(torch.softmax(self._logits(inputs, features), dim=1)[:, 1].cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(parts).numpy().astype(np.float64) if parts else np.empty(0)
