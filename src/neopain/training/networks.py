"""Any network of ``neopain.models`` as a fold model: trained on each fold by ``Trainer``.

``fit`` builds the network (seeded per fold), trains it with the run config's settings and
callbacks (history.csv, checkpoint.pt, early stopping, two-phase fine-tuning), resuming from
the fold's checkpoint.pt when there is one; ``predict`` gives P(pain) and the raw logit
``z_pain - z_nopain`` of the context's test rows, and in metrics.json the share of them that
got one and the same output (``same_output``), which ``notes`` tells of when it is most;
``save`` writes model.pt (``runs.save_network``).

A network whose ReLU units died in training answers most faces alike (N-CNN's 8-unit head
under Adam, often; under SGD too, less often). ``fit`` checks the trained network on the
fold's validation faces (its training faces when it has none: never a test face) and trains
it again from a fresh initialization, up to ``restarts`` times, when more than
``SAME_OUTPUT_NOTE`` of them got one output; fold_K/restarts.json lists the starts given up,
so that a resumed run continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from neopain.data.outputs import write_text_atomic
from neopain.errors import NeopainError
from neopain.runs import FoldContext, FoldModel, FoldPredictions, FoldResult, save_network
from neopain.training.augment import Augmenter, AugmentSpec
from neopain.training.callbacks import Callback, Checkpoint, EarlyStopping, History, Unfreeze
from neopain.training.dataset import FaceDataset
from neopain.training.trainer import Trainer

if TYPE_CHECKING:
    from neopain.models import ModelCfg, PainModel
    from neopain.training.state import TrainState
    from neopain.training.config import TrainConfig

logger = logging.getLogger(__name__)

SAME_OUTPUT_NOTE = 0.5
"""A fold whose network gives more than this share of its test faces one and the same output is
told of: its ReLU units died in training (N-CNN's 8-unit head under Adam, often), and its
answers, its calibration and its referral band are all-or-nothing for those faces."""


MIN_CHECKED = 20
"""Validation faces needed to judge a network by them; fewer (one face always "answers alike"):
its training faces, never a test face."""
RESTART_SEED_STEP = 1_000_003
"""A fold's n-th fresh start seeds its network and its shuffling with its first start's seeds
plus n times this (far from any other fold's)."""


def same_output_share(logit: np.ndarray) -> float:
    """The share of outputs equal (to 1e-6) to the most common one; 0 for none."""
    if not len(logit):
        return 0.0
    _, counts = np.unique(np.round(np.asarray(logit, dtype=float), 6), return_counts=True)
    return float(counts.max() / len(logit))


def _given_up(file: Path) -> list[dict]:
    """The starts restarts.json lists as given up; none when there is no such file.

    Raises:
        NeopainError: a restarts.json that is not a regular file of that shape (named).
    """
    if not os.path.lexists(file):
        return []
    try:
        given_up = json.loads(file.read_text(encoding="utf-8"))["given_up"]
        if isinstance(given_up, list) and all(isinstance(start, dict) for start in given_up):
            return given_up
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        pass
    raise NeopainError(f"{file}: not a restarts.json this run wrote ({{\"given_up\": [...]}}); "
                       "delete it to train the fold from its first start")


def _remove(path: Path) -> None:
    """Delete a file the run wrote; refuse (by name) anything else in its place."""
    if path.is_dir() and not path.is_symlink():
        raise NeopainError(f"{path}: a folder where the run keeps a file; move it away")
    path.unlink()


class StepReport(Callback):
    """The trainer's epochs and batches, reported as the steps of ``fold``; ``epochs_`` and
    ``stage_`` (``epoch 2/30``) follow the fit."""

    def __init__(self, fold: FoldContext) -> None:
        self.fold = fold
        self.epochs_ = 0
        self.stage_ = ""

    def on_fit_start(self, state: TrainState) -> None:
        self.epochs_ = state.epochs

    def on_epoch_start(self, state: TrainState, epoch: int) -> None:
        self.stage_ = f"epoch {epoch}/{self.epochs_}"
        self.fold.report(self.stage_, done=0, total=None)

    def on_batch_end(self, state: TrainState, batch: int, batches: int, loss: float) -> None:
        self.fold.report(self.stage_, done=batch, total=batches)


class NetworkFoldModel(FoldModel):
    """A registered network trained on each fold as the run config says.

    Args:
        config: the run config (``model`` names the network).
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config: TrainConfig) -> NetworkFoldModel:
        return cls(config)

    def _data(self, fold: FoldContext, rows: np.ndarray, *, train: bool = False) -> FaceDataset:
        cfg: ModelCfg = self.model_.cfg
        config = self.config
        transform = Augmenter(AugmentSpec()) if train and config.augment else None
        return FaceDataset(fold.manifest, rows=rows, transform=transform,
                           seed=config.seed if train else None, size=tuple(cfg.input_size),
                           mean=cfg.mean, std=cfg.std, channel_order=cfg.channel_order,
                           crop_to_face=config.crop_to_face)

    def _build(self, fold_index: int, *, start: int = 0) -> PainModel:
        from neopain.models import create_model  # the registry imports every architecture

        config = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed * 1000 + fold_index + RESTART_SEED_STEP * start)
            model = create_model(config.model, **config.model_args)
        if config.weights is not None:
            report = model.load_pretrained(config.weights)
            logger.info("fold %d: weights from %s (%s)", fold_index, config.weights, report)
        if config.freeze_backbone:
            model.freeze()
        return model

    def _callbacks(self, fold: FoldContext) -> list[Callback]:
        config = self.config
        callbacks: list[Callback] = [History(fold.folder.history)]
        if config.unfreeze_patience:
            callbacks.append(Unfreeze(config.unfreeze_patience, blocks=config.unfreeze_blocks,
                                      lr_factor=config.unfreeze_lr_factor,
                                      monitor=config.monitor))
        if config.early_stopping:
            callbacks.append(EarlyStopping(config.early_stopping, monitor=config.monitor))
        callbacks.append(Checkpoint(fold.folder.checkpoint, monitor=config.monitor,
                                    restore_best=config.keep == "best"))
        return [*callbacks, StepReport(fold)]

    def fit(self, fold: FoldContext) -> NetworkFoldModel:
        """Train a fresh network on ``fold.train`` (validating on ``fold.val``), resuming from
        the fold's checkpoint.pt when ``resume`` is on and one is there; again from a fresh
        start while it answers most faces alike and ``restarts`` allow (module docstring)."""
        config, file = self.config, fold.folder.restarts
        given_up = _given_up(file) if config.resume else []
        if not config.resume and os.path.lexists(file):
            _remove(file)  # another run's
        on_val = len(fold.val) >= MIN_CHECKED
        checked = fold.val if on_val else fold.train
        while True:
            self._fit_once(fold, start=len(given_up))
            prob, logit = self.trainer_.predict_with_logit(self._data(fold, checked))
            share = same_output_share(logit)
            if share <= SAME_OUTPUT_NOTE or len(given_up) >= config.restarts:
                break
            logger.warning("fold %d: the network gives %.0f%% of its %s faces one and the same "
                           "output (its ReLU units died); training it again from a fresh start",
                           fold.index, 100 * share, "validation" if on_val else "training")
            given_up.append({"start": len(given_up), "same_output": round(share, 4),
                             "epochs": self.epochs_})
            # the dead start's files go first: a crash in between resumes the next start afresh
            for stale in (fold.folder.checkpoint, fold.folder.history):
                if os.path.lexists(stale):
                    _remove(stale)
            write_text_atomic(file, json.dumps({"given_up": given_up}, indent=2))
        self.restarts_ = len(given_up)
        self.checked_share_ = share
        # the kept start's predictions of the faces it was checked on: the fold's validation
        # predictions (run_fold asks for them next) are these, not a second pass over them
        self.checked_ = (checked, prob, logit)
        return self

    def _fit_once(self, fold: FoldContext, *, start: int) -> None:
        config = self.config
        self.model_ = self._build(fold.index, start=start)
        train = self._data(fold, fold.train, train=True)
        val = self._data(fold, fold.val) if len(fold.val) else None
        # built before training: a test row that cannot be used stops the run now, not after it
        self._data(fold, fold.test)
        self.trainer_ = Trainer(
            self.model_, optimizer=config.optimizer, optimizer_args=config.optimizer_args,
            lr=config.lr, weight_decay=config.weight_decay, scheduler=config.scheduler,
            scheduler_args=config.scheduler_args, monitor=config.monitor, epochs=config.epochs,
            batch_size=config.batch_size, class_weights=config.class_weights,
            l1_head=config.l1_head, label_smoothing=config.label_smoothing,
            soft_labels=config.soft_labels, flip=config.flip,
            callbacks=self._callbacks(fold),
            cache=config.cache, cache_dir=config.embedding_dir if config.cache else None,
            workers=config.workers, seed=config.seed + fold.index + RESTART_SEED_STEP * start,
            device=config.device, precision=config.precision,
        )
        checkpoint = fold.folder.checkpoint
        # lexists, not is_file: a FIFO or folder there is refused by name, not trained over
        resume = checkpoint if config.resume and os.path.lexists(checkpoint) else None
        if resume is not None:
            logger.info("fold %d: resuming from %s", fold.index, checkpoint)
        self.epochs_ = self.trainer_.fit(train, val, resume_from=resume).epochs

    def predict(self, fold: FoldContext) -> FoldPredictions:
        """P(pain) and raw logits of ``fold.test``, labelled at the network's cfg threshold."""
        rows, prob, logit = self.checked_
        if not np.array_equal(rows, fold.test):
            prob, logit = self.trainer_.predict_with_logit(self._data(fold, fold.test))
        return FoldPredictions(prob=prob, threshold=self.model_.cfg.threshold, logit=logit,
                               summary={"same_output": round(same_output_share(logit), 4),
                                        "restarts": self.restarts_,
                                        "checked_same_output": round(self.checked_share_, 4)})

    def notes(self, folds: Sequence[FoldResult]) -> list[str]:
        """Folds trained again from a fresh start, and folds whose network still answers most
        faces alike (``SAME_OUTPUT_NOTE``): its test faces, or those it was checked on."""
        notes = []
        for fold in folds:
            summary = fold.summary
            restarts = summary.get("restarts", 0)
            share = max(summary.get("same_output", 0.0), summary.get("checked_same_output", 0.0))
            starts = f" after {restarts + 1} starts" if restarts else ""
            if share > SAME_OUTPUT_NOTE:
                notes.append(f"note: fold {fold.index}: the network gives {share:.0%} of its "
                             f"faces one and the same output{starts} (its ReLU units died in "
                             "training); train it again with optimizer: sgd in the run config, a "
                             "lower --lr or another --seed")
            elif restarts:
                notes.append(f"note: fold {fold.index}: {restarts} start"
                             f"{'s' if restarts > 1 else ''} answered most validation faces "
                             "alike (dead ReLU units); trained again from a fresh start "
                             f"({fold.path.name}/restarts.json)")
        return notes

    def save(self, fold: FoldContext) -> None:
        """model.pt: the weights, cfg, epochs and the fold's split by subject."""
        save_network(fold.folder, model=self.model_, name=self.config.model, fold=fold.index,
                     epoch=self.epochs_, train_subjects=fold.subjects(fold.train),
                     val_subjects=fold.subjects(fold.val),
                     test_subjects=fold.subjects(fold.test))
