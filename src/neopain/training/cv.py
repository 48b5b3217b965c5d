"""Cross-validation over folds.json: one model per fold, out-of-fold predictions, the run layout.

For each fold K, ``run_cv`` trains on the fold's ``train`` subjects (validating on ``val``),
predicts its ``test`` subjects and writes ``out/fold_K/``: model.pt, predictions.csv,
metrics.json, history.csv and checkpoint.pt; ``out/config.yaml`` holds the resolved config.
model.pt records the subjects the model was trained and validated on, so that ``oof_leaks``
can prove from the files alone that no prediction comes from a model that saw its subject.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from neopain.training.augment import Augmenter, AugmentSpec
from neopain.training.dataset import FaceDataset
from neopain.data.folds import Fold, FoldsError, load_folds
from neopain.data.manifest import Manifest, load_manifest
from neopain.evaluation.runs import prediction_table
from neopain.training.callbacks import Callback, Checkpoint, EarlyStopping, History, Unfreeze
from neopain.training.config import TrainConfig, save_config
from neopain.training.trainer import Trainer

logger = logging.getLogger(__name__)

CallbackFactory = Callable[[int], Sequence[Callback]]


@dataclass(frozen=True)
class FoldResult:
    """One trained fold: its index, folder, test metrics, epochs run and wall seconds."""

    index: int
    path: Path
    metrics: dict[str, float]
    epochs: int
    seconds: float


@dataclass(frozen=True)
class CvResult:
    """The run folder and its folds, in fold order."""

    out: Path
    folds: tuple[FoldResult, ...]

    def metric(self, name: str) -> list[float]:
        """One metric over the folds, e.g. ``result.metric("accuracy")``."""
        return [fold.metrics[name] for fold in self.folds]


def training_subjects(fold: Fold) -> tuple[str, ...]:
    """The subjects a fold's model trains on: its ``train`` split (never ``test``)."""
    return fold.train


def _datasets(config: TrainConfig, manifest: Manifest, fold: Fold, cfg) -> tuple:
    common = {"size": tuple(cfg.input_size), "mean": cfg.mean, "std": cfg.std,
              "channel_order": cfg.channel_order, "crop_to_face": config.crop_to_face}
    transform = Augmenter(AugmentSpec()) if config.augment else None
    train = FaceDataset(manifest, subjects=training_subjects(fold), transform=transform,
                        seed=config.seed, **common)
    val = FaceDataset(manifest, subjects=fold.val, **common) if fold.val else None
    test = FaceDataset(manifest, subjects=fold.test, **common)
    return train, val, test


def _subjects_of(manifest: Manifest, data: FaceDataset | None) -> list[str]:
    if data is None:
        return []
    return sorted(set(manifest.table["subject"].iloc[data.indices_]))


def _build_model(config: TrainConfig, fold_index: int):
    from neopain.models import create_model  # the registry imports every architecture

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed * 1000 + fold_index)
        model = create_model(config.model)
    if config.weights is not None:
        from neopain.models.weights import load_weights

        report = load_weights(model, config.weights)
        logger.info("fold %d: weights from %s (%s)", fold_index, config.weights, report)
    if config.freeze_backbone:
        model.freeze()
    return model


def _callbacks(config: TrainConfig, fold_dir: Path, extra: Sequence[Callback]) -> list[Callback]:
    callbacks: list[Callback] = [History(fold_dir / "history.csv")]
    if config.unfreeze_patience:
        callbacks.append(Unfreeze(config.unfreeze_patience, blocks=config.unfreeze_blocks,
                                  lr_factor=config.unfreeze_lr_factor, monitor=config.monitor))
    if config.early_stopping:
        callbacks.append(EarlyStopping(config.early_stopping, monitor=config.monitor))
    callbacks.append(Checkpoint(fold_dir / "checkpoint.pt", monitor=config.monitor))
    return callbacks + list(extra)


def train_fold(config: TrainConfig, manifest: Manifest, fold: Fold, *,
               callbacks: Sequence[Callback] = ()) -> FoldResult:
    """Train, predict and write one fold's folder ``config.out / fold_K``."""
    from neopain.evaluation.metrics import binary_metrics

    started = time.perf_counter()
    fold_dir = config.out / f"fold_{fold.index}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    model = _build_model(config, fold.index)
    train, val, test = _datasets(config, manifest, fold, model.cfg)
    trainer = Trainer(
        model, optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
        epochs=config.epochs, batch_size=config.batch_size, class_weights=config.class_weights,
        l1_head=config.l1_head, label_smoothing=config.label_smoothing,
        soft_labels=config.soft_labels, lr_schedule=config.lr_schedule, flip=config.flip,
        callbacks=_callbacks(config, fold_dir, callbacks),
        cache=config.cache, cache_dir=config.embedding_dir if config.cache else None,
        workers=config.workers, seed=config.seed + fold.index, device=config.device,
        precision=config.precision,
    )
    checkpoint = fold_dir / "checkpoint.pt"
    # lexists, not is_file: a FIFO or folder there is refused by name, not trained over
    resume = checkpoint if config.resume and os.path.lexists(checkpoint) else None
    if resume is not None:
        logger.info("fold %d: resuming from %s", fold.index, checkpoint)
    fit = trainer.fit(train, val, resume_from=resume)
    prob = trainer.predict(test)
    threshold = model.cfg.threshold
    prediction_table(manifest, test.indices_, prob, fold=fold.index, threshold=threshold).to_csv(
        fold_dir / "predictions.csv", index=False)
    metrics = binary_metrics(test.labels_, prob, threshold=threshold)
    model.cpu()
    torch.save({"model": config.model, "cfg": model.cfg.to_dict(), "kwargs": {},
                "state_dict": model.state_dict(), "fold": fold.index, "epoch": fit.epochs,
                "train_subjects": _subjects_of(manifest, train),
                "val_subjects": _subjects_of(manifest, val),
                "test_subjects": _subjects_of(manifest, test)}, fold_dir / "model.pt")
    seconds = time.perf_counter() - started
    (fold_dir / "metrics.json").write_text(json.dumps(
        {"fold": fold.index, "metrics": metrics, "epochs": fit.epochs,
         "seconds": round(seconds, 3)}, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return FoldResult(index=fold.index, path=fold_dir, metrics=metrics, epochs=fit.epochs,
                      seconds=seconds)


def run_cv(config: TrainConfig, *, callbacks: CallbackFactory | None = None,
           on_progress: Callable[[int, int], None] | None = None) -> CvResult:
    """Train every fold of ``config.folds`` (or only ``config.fold``) and write the run folder.

    ``model: nfcs`` (the rule-based NFCS scorer) trains nothing: each fold's test images are
    scored and written in the same layout (``neopain.scoring.runs``).

    Args:
        config: the run config (saved resolved as ``out/config.yaml``).
        callbacks: ``fold index -> callbacks`` added to each fold's trainer (e.g. a progress
            bar).
        on_progress: nfcs only: ``on_progress(done, total)`` after each scored image.

    Raises:
        NeopainError: bad manifest, folds made for another manifest, a fold index out of
            range, a model name that is not registered, ...
    """
    manifest = load_manifest(config.manifest)
    plan = load_folds(config.folds, manifest=config.manifest)
    if config.fold is not None and config.fold >= len(plan.folds):
        raise FoldsError(f"fold={config.fold} is not in {config.folds}; valid: 0 to "
                         f"{len(plan.folds) - 1}")
    folds = plan.folds if config.fold is None else (plan.folds[config.fold],)
    config.out.mkdir(parents=True, exist_ok=True)
    save_config(config, config.out / "config.yaml")
    if config.model == "nfcs":
        from neopain.scoring.runs import score_folds

        return score_folds(config, manifest, folds, on_progress=on_progress)
    results = []
    for fold in folds:
        extra = callbacks(fold.index) if callbacks is not None else ()
        results.append(train_fold(config, manifest, fold, callbacks=extra))
    return CvResult(out=config.out, folds=tuple(results))


def oof_leaks(run: str | os.PathLike[str]) -> list[str]:
    """Every out-of-fold prediction made by a model that saw its subject, as messages.

    For each ``fold_K``, the subjects of predictions.csv are compared with the training and
    validation subjects recorded in model.pt. An empty list: no leakage.
    """
    problems = []
    for fold_dir in sorted(Path(run).glob("fold_*")):
        model_file, predictions_file = fold_dir / "model.pt", fold_dir / "predictions.csv"
        if not (model_file.is_file() and predictions_file.is_file()):
            continue
        try:
            saved = torch.load(model_file, map_location="cpu", weights_only=True)
            seen = set(saved["train_subjects"]) | set(saved["val_subjects"])
        except Exception as error:  # torch raises many types for a foreign file
            problems.append(f"{fold_dir.name}: model.pt cannot be read ({type(error).__name__})"
                            "; its predictions cannot be checked for leakage")
            continue
        predicted = set(pd.read_csv(predictions_file, dtype=str)["subject"])
        for subject in sorted(predicted & seen):
            problems.append(f"{fold_dir.name}: subject {subject} is predicted by a model that "
                            "trained or validated on it")
    return problems
