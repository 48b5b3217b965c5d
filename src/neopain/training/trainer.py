"""The fit loop: batches, loss, optimizer steps, validation; everything else is a callback.

Deterministic on CPU for a given ``seed``: model initialization is the caller's (seed torch
before ``create_model``); shuffling uses a generator seeded per epoch, dropout a torch RNG
seeded at the start of ``fit`` (its state is saved in checkpoints), augmentation the dataset's
seed and epoch. The global RNG is left as it was.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.runs import load_checkpoint
from neopain.training.batches import BatchSource, flipped
from neopain.training.callbacks import Callback, check_monitor
from neopain.training.dataset import FaceDataset
from neopain.training.embeddings import EmbeddingCache
from neopain.training.fit_loss import FitLoss
from neopain.training.losses import smoothing_problem
from neopain.training.optimizers import OptimizerSpec, SchedulerSpec, recipe_problems
from neopain.training.precision import (
    check_device,
    check_precision,
    logits,
    resolve_device,
    resolve_precision,
    train_logits,
)
from neopain.training.state import TrainState


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` did: epochs completed (in all, resumed ones included), whether early
    stopping ended it, wall seconds of this call, and one ``logs`` dict per epoch."""

    epochs: int
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Train a ``PainModel`` on ``FaceDataset``s with callbacks.

    Args:
        model: the model (its frozen blocks stay frozen unless a callback unfreezes them).
        optimizer: a ``torch.optim`` class name (``optimizers.optimizer_names()``), or the
            aliases ``adam``, ``rmsprop``, ``sgd`` (momentum 0.9).
        optimizer_args: its other keyword arguments (not ``lr`` nor ``weight_decay``).
        lr, weight_decay, epochs, batch_size: the usual.
        scheduler: a ``torch.optim.lr_scheduler`` class name or None (constant ``lr``); it
            steps after each epoch's validation (``ReduceLROnPlateau`` on ``monitor``), and
            OneCycleLR (peaking at ``lr`` over all the batches of ``epochs``) and CyclicLR
            after each batch. A callback that rebuilds the optimizer (``Unfreeze``) restarts a
            per-epoch scheduler with it; a per-batch one is refused then.
        scheduler_args: its keyword arguments, e.g. ``{"T_max": 5, "eta_min": 1e-6}``.
        monitor: ``val_loss`` or ``val_accuracy``, what ``ReduceLROnPlateau`` steps on.
        class_weights: ``balanced`` or None (see ``losses.balanced_class_weights``).
        l1_head: factor of the L1 penalty on the head's weights.
        label_smoothing: 0–1, as torch's cross-entropy (not with ``soft_labels``).
        soft_labels: ``sigmoid``, ``linear`` or ``step`` targets from the manifest ``score``.
        flip: probability of mirroring each training image left-right (images only, never
            cached embeddings); drawn from the seed, epoch and batch, so resume is exact.
        callbacks: ``Callback``s, run in ``order``.
        cache: while the whole backbone is frozen and a dataset has no online augmentation,
            train and predict on cached embeddings (``EmbeddingCache``).
        cache_dir: where the cache stores embeddings; None: memory only.
        workers: DataLoader worker processes.
        seed: see the module docstring.
        device: ``auto``, ``cpu`` or ``cuda`` (resolved by ``fit``: cuda is refused there when
            torch sees no GPU).
        precision: ``fp32``; ``bf16`` (training forward passes in bfloat16 mixed precision:
            about 2× faster on CPUs with AMX or AVX512-BF16 and on recent GPUs; weights,
            gradients, the loss and every prediction stay float32); ``auto`` (bf16 where
            native, else fp32).

    Building one does no work (no device probe, no cache): ``fit`` resolves the device, the
    precision and the embedding cache (``device_``, ``autocast_``, ``embeddings_``) and keeps
    its ``TrainState`` in ``state_``; callbacks get that state, never the trainer.

    Example:
        >>> trainer = Trainer(model, epochs=20, callbacks=[EarlyStopping(5)])
        >>> trainer.fit(train_data, val_data)
        >>> prob_pain = trainer.predict(test_data)
    """

    device_: torch.device | None = None
    """The device ``fit`` (or a ``predict`` before it) resolved ``device`` to."""
    autocast_: torch.dtype | None = None
    """The autocast dtype of training forward passes (None: float32)."""
    embeddings_: EmbeddingCache | None = None
    """The embedding cache, made by the first ``fit`` or ``predict``."""
    state_: TrainState | None = None
    """The last ``fit``'s ``TrainState`` (epochs, phase, history, optimizer)."""

    def __init__(
        self,
        model: PainModel,
        *,
        optimizer: str = "adam",
        optimizer_args: Mapping[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str | None = None,
        scheduler_args: Mapping[str, Any] | None = None,
        monitor: str = "val_loss",
        epochs: int = 30,
        batch_size: int = 32,
        class_weights: str | None = "balanced",
        l1_head: float = 0.0,
        label_smoothing: float = 0.0,
        soft_labels: str | None = None,
        flip: float = 0.0,
        callbacks: Sequence[Callback] = (),
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        workers: int = 0,
        seed: int = 0,
        device: str = "auto",
        precision: str = "fp32",
    ) -> None:
        _check_arguments(lr=lr, epochs=epochs, batch_size=batch_size,
                         class_weights=class_weights, flip=flip,
                         label_smoothing=label_smoothing, soft_labels=soft_labels,
                         monitor=monitor)
        problems = recipe_problems(optimizer=optimizer, optimizer_args=optimizer_args, lr=lr,
                                   weight_decay=weight_decay, scheduler=scheduler,
                                   scheduler_args=scheduler_args, monitor=monitor)
        if problems:
            raise NeopainError("\n".join(problems))
        self.model = model
        self.optimizer = optimizer
        self.optimizer_args = optimizer_args
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler = scheduler
        self.scheduler_args = scheduler_args
        self.monitor = monitor
        self.epochs = epochs
        self.batch_size = batch_size
        self.class_weights = class_weights
        self.l1_head = l1_head
        self.label_smoothing = label_smoothing
        self.soft_labels = soft_labels
        self.flip = flip
        self.callbacks = callbacks
        self.cache = cache
        self.cache_dir = cache_dir
        self.workers = workers
        self.seed = seed
        self.device = check_device(device)
        self.precision = check_precision(precision)

    def _resolve(self) -> torch.device:
        """Resolve the device and precision; make the embedding cache on the first call."""
        self.device_ = resolve_device(self.device)
        self.autocast_ = resolve_precision(self.precision, self.device_)
        if self.embeddings_ is None:
            self.embeddings_ = EmbeddingCache(self.cache_dir)
        return self.device_

    def _source(self) -> BatchSource:
        return BatchSource(self.model, batch_size=self.batch_size, workers=self.workers,
                           seed=self.seed, device=self.device_, cache=self.cache,
                           embeddings=self.embeddings_)

    # -- the loop -------------------------------------------------------------------------------

    def fit(self, train_data: FaceDataset, val_data: FaceDataset | None = None, *,
            resume_from: str | os.PathLike[str] | None = None) -> FitResult:
        """Train for ``epochs`` (fewer when a callback stops it); validate after each epoch.

        Args:
            train_data, val_data: ``FaceDataset``s (validation is optional).
            resume_from: a checkpoint.pt written by ``Checkpoint``; fitting continues after
                its last epoch, giving what an uninterrupted run would have given.

        Raises:
            NeopainError: ``device`` or ``precision`` this machine does not have; a training
                set missing a class with ``class_weights="balanced"``; ``ReduceLROnPlateau``
                without validation data; ``resume_from`` no checkpoint (see
                ``load_checkpoint``) or one saved with another recipe (``TrainState.recipe``).
        """
        if self.scheduler == "ReduceLROnPlateau" and (val_data is None or not len(val_data)):
            raise NeopainError(f"scheduler='ReduceLROnPlateau' steps on {self.monitor}, and "
                               "this fit has no validation data; use another scheduler, or "
                               "folds with validation subjects (--val-share above 0)")
        started = time.perf_counter()
        self.model.to(self._resolve(), memory_format=torch.channels_last)
        loss = FitLoss.of(train_data, class_weights=self.class_weights,
                          soft_labels=self.soft_labels, label_smoothing=self.label_smoothing,
                          l1_head=self.l1_head, device=self.device_)
        source = self._source()
        state = TrainState(
            self.model, epochs=self.epochs,
            optimizer_spec=OptimizerSpec.of(self.optimizer, self.optimizer_args,
                                            weight_decay=self.weight_decay),
            scheduler_spec=SchedulerSpec.of(self.scheduler, self.scheduler_args,
                                            monitor=self.monitor),
            base_lr=self.lr,
            total_steps=self.epochs * math.ceil(len(train_data) / self.batch_size),
            callbacks=sorted(self.callbacks, key=lambda c: c.order))
        self.state_ = state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._start(state, resume_from=resume_from)
            while state.epoch < self.epochs and not state.stop_training:
                self._epoch(state, source, loss, train_data, val_data)
            for callback in state.callbacks:
                callback.on_fit_end(state)
        return FitResult(epochs=state.epoch, stopped_early=state.stop_training,
                         seconds=time.perf_counter() - started, history=list(state.history))

    def _start(self, state: TrainState, *,
               resume_from: str | os.PathLike[str] | None) -> None:
        """Callbacks' ``on_fit_start``; the optimizer and scheduler, fresh or resumed."""
        for callback in state.callbacks:
            callback.on_fit_start(state)
        if resume_from is None:
            state.configure_optimizer(self.lr)
        else:
            saved = load_checkpoint(resume_from, map_location=self.device_)
            try:
                state.load_state_dict(saved)
            except NeopainError as error:  # this fit cannot go on from it: name the file
                raise NeopainError(f"{os.fspath(resume_from)}: {error}") from None

    def _epoch(self, state: TrainState, source: BatchSource, loss: FitLoss,
               train_data: FaceDataset, val_data: FaceDataset | None) -> None:
        """One epoch: train, validate, log; the callbacks around it."""
        epoch = state.epoch + 1
        for callback in state.callbacks:
            callback.on_epoch_start(state, epoch)
        train_loss = self._train_epoch(state, source, loss, train_data, epoch=epoch)
        logs = {"epoch": epoch, "phase": state.phase, "train_loss": train_loss,
                **self._validate(source, val_data), "lr": state.lr}
        if state.scheduler is not None and not state.scheduler_spec.per_batch:
            # before the callbacks: Checkpoint saves the stepped scheduler with the epoch
            state.scheduler_spec.step(state.scheduler, logs)
        state.epoch = epoch
        state.history.append(logs)
        for callback in state.callbacks:
            callback.on_epoch_end(state, logs)

    def _train_epoch(self, state: TrainState, source: BatchSource, loss: FitLoss,
                     data: FaceDataset, *, epoch: int) -> float:
        """Train on every batch once; the mean training loss."""
        self.model.train()
        total, seen = 0.0, 0
        batches = math.ceil(len(data) / self.batch_size)
        for number, (positions, inputs, features) in enumerate(source.batches(data, epoch=epoch),
                                                               start=1):
            if self.flip and not features:
                inputs = flipped(inputs, probability=self.flip, seed=self.seed, epoch=epoch,
                                 batch=number)
            value = loss(self.model, train_logits(self.model, inputs, features=features,
                                                  autocast=self.autocast_), positions)
            self._step(state, value)
            total += float(value.detach()) * len(positions)
            seen += len(positions)
            for callback in state.callbacks:
                callback.on_batch_end(state, number, batches, float(value.detach()))
        return total / max(seen, 1)

    @staticmethod
    def _step(state: TrainState, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss`` (and one of a per-batch scheduler)."""
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.lr = state.optimizer.param_groups[0]["lr"]
        state.optimizer.step()
        if state.scheduler is not None and state.scheduler_spec.per_batch:
            state.scheduler.step()

    def _validate(self, source: BatchSource, data: FaceDataset | None) -> dict[str, float]:
        if data is None or len(data) == 0:
            return {"val_loss": math.nan, "val_accuracy": math.nan}
        prob = torch.from_numpy(self._predict(source, data)[0]).double()
        truth = torch.from_numpy(data.labels_)
        picked = torch.where(truth == 1, prob, 1.0 - prob).clamp_min(1e-12)
        return {"val_loss": float(-picked.log().mean()),
                "val_accuracy": float(((prob >= 0.5).long() == truth).double().mean())}

    def predict(self, data: FaceDataset) -> np.ndarray:
        """P(pain) of each item of ``data``, in dataset order (eval mode, no gradients).

        Raises:
            NeopainError: before any ``fit``, a ``device`` or ``precision`` this machine does
                not have.
        """
        return self.predict_with_logit(data)[0]

    def predict_with_logit(self, data: FaceDataset) -> tuple[np.ndarray, np.ndarray]:
        """P(pain) of each item of ``data`` (as ``predict``) and its raw logit ``z_pain -
        z_nopain``, which stays finite where the float32 softmax rounds P to 0 or 1.

        Raises:
            NeopainError: as ``predict``.
        """
        if self.device_ is None:
            self._resolve()
        return self._predict(self._source(), data)

    def _predict(self, source: BatchSource, data: FaceDataset) -> tuple[np.ndarray, np.ndarray]:
        self.model.to(self.device_, memory_format=torch.channels_last)
        was_training = self.model.training
        self.model.eval()
        probs, logit = [], []
        try:
            with torch.no_grad():
                for _, inputs, features in source.batches(data, epoch=None):
                    z = logits(self.model, inputs, features=features).cpu()
                    probs.append(torch.softmax(z, dim=1)[:, 1])
                    logit.append(z[:, 1].double() - z[:, 0].double())
        finally:
            self.model.train(was_training)
        if not probs:
            return np.empty(0), np.empty(0)
        return (torch.cat(probs).numpy().astype(np.float64),
                torch.cat(logit).numpy().astype(np.float64))


def _check_arguments(*, lr: float, epochs: int, batch_size: int, class_weights: str | None,
                     flip: float, label_smoothing: float, soft_labels: str | None,
                     monitor: str) -> None:
    check_monitor(monitor)
    problem = smoothing_problem(soft_labels=soft_labels, label_smoothing=label_smoothing)
    if problem is not None:
        raise NeopainError(problem)
    if not 0.0 <= flip <= 1.0:
        raise NeopainError(f"flip={flip} is not valid; valid: a probability from 0 to 1")
    if class_weights not in ("balanced", None):
        raise NeopainError(f"class_weights={class_weights!r} is not valid; valid: "
                           "'balanced', None")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise NeopainError(f"epochs={epochs}, batch_size={batch_size} must be >= 1 and "
                           f"lr={lr} > 0")
