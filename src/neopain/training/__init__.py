"""Training: the fit loop with callbacks, the embedding cache, cross-validation over folds.

Example::

    config = load_config("run.yaml")
    result = run_cv(config)                  # writes runs/NAME/fold_K/...
    oof_leaks(config.out)                    # [] : no prediction from a model that saw its subject
"""

from neopain.training.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    History,
    Unfreeze,
)
from neopain.training.config import ConfigError, TrainConfig, load_config, save_config
from neopain.training.cv import CvResult, FoldResult, oof_leaks, run_cv, train_fold
from neopain.training.embeddings import EmbeddingCache, cache_key
from neopain.training.trainer import FitResult, Trainer

__all__ = [
    "Callback", "Checkpoint", "ConfigError", "CvResult", "EarlyStopping", "EmbeddingCache",
    "FitResult", "FoldResult", "History", "TrainConfig", "Trainer", "Unfreeze", "cache_key",
    "load_config", "oof_leaks", "run_cv", "save_config", "train_fold",
]  # fmt: skip
