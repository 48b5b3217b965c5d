"""A training run's folder, written and read in one place, and the fold models that fill it.

``runs/NAME`` holds::

    config.yaml               the resolved run config
    <model>.json              a fold model's run record, when it keeps one (nfcs.json)
    fold_K/model.pt           a network's weights, cfg and the subjects of its split
    fold_K/predictions.csv    the out-of-fold predictions (raw P(pain) and logit; calibrated
                              P(pain), label and conformal set once calibrated)
    fold_K/validation.csv     the same columns for the fold's validation rows
    fold_K/metrics.json       test metrics, epochs, seconds
    fold_K/calibrator.json    the calibrator fitted on validation.csv (neopain calibrate)
    fold_K/history.csv        per-epoch losses (networks)
    fold_K/checkpoint.pt      the resumable training state (networks)

``training.run_cv`` writes it through this package (``layout``, ``network``; the trainer's
callbacks history.csv and checkpoint.pt through ``checkpoints``, which a resumed fold reads);
evaluation, export, explain and the CLI read it through it (``read``, ``network``).
``fold_model`` is the interface every fold model answers through, ``metrics`` the binary
metrics metrics.json holds.

Example::

    run = load_run("runs/ncnn")              # predictions and saved metrics of every fold
    fold = load_fold("runs/ncnn/fold_0")     # the fold's network, its split and crop rule
    oof_leaks("runs/ncnn")                   # [] : no prediction from a model that saw its subject
"""

from neopain.runs.checkpoints import (
    CHECKPOINT_KEYS,
    HISTORY_COLUMNS,
    load_checkpoint,
    save_checkpoint,
    write_history,
)
from neopain.runs.fold_model import (
    CvResult,
    Description,
    DescriptionTable,
    FoldContext,
    FoldModel,
    FoldPredictions,
    FoldResult,
    RunConfig,
    RunProgress,
    fold_model_names,
    other_fold_model,
    other_fold_models,
)
from neopain.runs.layout import (
    CALIBRATED_COLUMNS,
    CONFIG,
    FOLD_FILES,
    PREDICTION_COLUMNS,
    FoldFolder,
    RunError,
    fold_folder,
    prediction_table,
    read_calibrator,
    read_config,
    write_calibrated,
    write_config,
    write_metrics,
    write_predictions,
    write_record,
    write_validation,
)
from neopain.runs.network import TrainedFold, load_fold, save_network, select_rows
from neopain.runs.read import FoldRun, Run, load_run, load_validation, oof_leaks

__all__ = [
    "CALIBRATED_COLUMNS", "CHECKPOINT_KEYS", "CONFIG", "FOLD_FILES", "HISTORY_COLUMNS",
    "PREDICTION_COLUMNS", "CvResult", "Description", "DescriptionTable", "FoldContext",
    "FoldFolder", "FoldModel", "FoldPredictions", "FoldResult", "FoldRun", "Run", "RunConfig",
    "RunError", "RunProgress", "TrainedFold", "fold_folder", "fold_model_names",
    "load_checkpoint", "load_fold", "load_run", "load_validation", "oof_leaks",
    "other_fold_model", "other_fold_models", "prediction_table", "read_calibrator",
    "read_config", "save_checkpoint", "save_network", "select_rows", "write_calibrated",
    "write_config", "write_history", "write_metrics", "write_predictions", "write_record",
    "write_validation",
]  # fmt: skip
