"""Cross-validation over folds.json: any fold model, one fit per fold, out-of-fold predictions.

For each fold K, ``run_cv`` fits the fold model on the fold's ``train`` rows (validating on
``val``), predicts its ``test`` rows, then its ``val`` rows (for calibrators, fitted on them by
``neopain calibrate``), and writes ``out/fold_K/`` through ``neopain.runs``: predictions.csv,
validation.csv and metrics.json for every fold model, and what the model saves itself
(a network: model.pt, history.csv, checkpoint.pt). ``out/config.yaml`` holds the resolved
config, ``out/<model>.json`` the fold model's run record when it keeps one (NFCS: nfcs.json).
The fold model's ``close`` runs once the run ends, whether it finished or failed. With the Ray
backend the folds run at once as Ray tasks (``cv_ray``), writing the same files.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from neopain.data.folds import Fold, FoldsError, load_folds, rows_of
from neopain.data.manifest import Manifest, load_manifest
from neopain.data.parallel import LOCAL, Backend
from neopain.runs import (
    CONFIG,
    CvResult,
    FoldContext,
    FoldModel,
    FoldResult,
    RunProgress,
    fold_folder,
    other_fold_model,
    write_metrics,
    write_predictions,
    write_record,
    write_validation,
)
from neopain.training.config import TrainConfig, save_config
from neopain.training.networks import NetworkFoldModel


def training_subjects(fold: Fold) -> tuple[str, ...]:
    """The subjects a fold's model trains on: its ``train`` split (never ``test``)."""
    return fold.train


def fold_model_class(name: str) -> type[FoldModel]:
    """The fold model a run's ``model`` names: any network of ``neopain.models`` trains as a
    ``NetworkFoldModel``; other names are the entry points ``neopain.fold_models``.

    Raises:
        NeopainError: no fold model of that name (the valid names are listed).
    """
    from neopain.models import list_models  # the registry imports every architecture

    return NetworkFoldModel if name in list_models() else other_fold_model(name)


class StagePrefix(RunProgress):
    """Passes steps on to ``progress`` with ``prefix`` before each stage's name."""

    def __init__(self, progress: RunProgress, *, prefix: str) -> None:
        self.progress = progress
        self.prefix = prefix

    def on_step(self, fold: int, *, stage: str, done: int, total: int | None) -> None:
        self.progress.on_step(fold, stage=f"{self.prefix} {stage}", done=done, total=total)


def predict_validation(model: FoldModel, *, context: FoldContext) -> Path:
    """Predict the fold's validation rows as the fitted ``model`` predicts its test rows and
    write validation.csv (only a header when there are none); returns the file.

    The model sees a copy of ``context`` whose ``test`` is ``context.val``: no test row.
    """
    if not len(context.val):
        return write_validation(context.folder, manifest=context.manifest, rows=context.val,
                                prob=[], fold=context.index, threshold=0.5)
    validation = dataclasses.replace(context, test=context.val,
                                     progress=StagePrefix(context.progress, prefix="validation"))
    predicted = model.predict(validation)
    return write_validation(context.folder, manifest=context.manifest, rows=context.val,
                            prob=predicted.prob, logit=predicted.logit, fold=context.index,
                            threshold=predicted.threshold, columns=predicted.columns)


def run_fold(model: FoldModel, *, manifest: Manifest, fold: Fold, out: Path,
             progress: RunProgress) -> FoldResult:
    """Fit, predict and save one fold; write its predictions.csv, validation.csv and
    metrics.json."""
    started = time.perf_counter()
    context = FoldContext(index=fold.index, manifest=manifest,
                          train=rows_of(manifest, training_subjects(fold)),
                          val=rows_of(manifest, fold.val), test=rows_of(manifest, fold.test),
                          folder=fold_folder(out, index=fold.index), progress=progress)
    model.fit(context)
    predicted = model.predict(context)
    metrics = write_predictions(context.folder, manifest=manifest, rows=context.test,
                                prob=predicted.prob, logit=predicted.logit, fold=fold.index,
                                threshold=predicted.threshold, columns=predicted.columns)
    predict_validation(model, context=context)
    model.save(context)
    seconds = time.perf_counter() - started
    write_metrics(context.folder, fold=fold.index, metrics=metrics, epochs=model.epochs_,
                  seconds=seconds, summary=predicted.summary)
    return FoldResult(index=fold.index, path=context.folder.path, metrics=metrics,
                      epochs=model.epochs_, seconds=seconds, summary=predicted.summary)


def run_cv(config: TrainConfig, *, progress: RunProgress | None = None,
           backend: Backend = LOCAL) -> CvResult:
    """Run the fold model ``config.model`` over every fold of ``config.folds`` (or only
    ``config.fold``) and write the run folder.

    Args:
        config: the run config (saved resolved as ``out/config.yaml``: before the first fold
            in a new run folder, after the last one when the folder had a run already).
        progress: told when the run starts, of each step inside a fold (epochs and batches,
            images scored) and when each fold is done (e.g. the CLI's progress bars).
        backend: ``local``: the folds one after the other in this process; ``ray``: one Ray
            task per fold (``cv_ray.ray_folds``), all steps reported to ``progress`` here.

    Raises:
        NeopainError: bad manifest, folds made for another manifest, a fold index out of
            range, a model name that is not registered, ...
    """
    progress = progress if progress is not None else RunProgress()
    if backend.is_ray:
        from neopain.data.ray_backend import import_ray

        import_ray()  # Ray missing: said before any file is written
    model_class = fold_model_class(config.model)
    manifest = load_manifest(config.manifest)
    plan = load_folds(config.folds, manifest=config.manifest)
    if config.fold is not None and config.fold >= len(plan.folds):
        raise FoldsError(f"fold={config.fold} is not in {config.folds}; valid: 0 to "
                         f"{len(plan.folds) - 1}")
    folds = plan.folds if config.fold is None else (plan.folds[config.fold],)
    config.out.mkdir(parents=True, exist_ok=True)
    # a rerun into a run folder saves its config once it has run: a resume refused (another
    # recipe) or failing must leave config.yaml describing the checkpoints that are there
    rerun = (config.out / CONFIG).is_file()
    if not rerun:
        save_config(config, config.out / CONFIG)
    model = model_class.from_config(config)
    try:
        progress.on_run_start(model=config.model, folds=len(folds), trains=model.trains)
        if backend.is_ray:
            from neopain.training.cv_ray import ray_folds

            results = ray_folds(config, folds, backend=backend, progress=progress)
        else:
            results = []
            for fold in folds:
                results.append(run_fold(model, manifest=manifest, fold=fold, out=config.out,
                                        progress=progress))
                progress.on_fold_end(fold.index)
        record = model.record(results)
        notes = tuple(model.notes(results))
    finally:
        model.close()
    if rerun:
        save_config(config, config.out / CONFIG)
    return CvResult(out=config.out, folds=tuple(results),
                    record=None if record is None else write_record(config.out,
                                                                    name=config.model,
                                                                    record=record),
                    notes=notes)
