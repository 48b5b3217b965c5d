"""Training: the fit loop with callbacks, the embedding cache, cross-validation over folds.

Example::

    config = load_config("run.yaml")
    result = run_cv(config)                  # writes runs/NAME/fold_K/...
    oof_leaks(config.out)                    # [] : no prediction from a model that saw its subject
"""

from neopain.runs import CvResult, FoldResult, oof_leaks
from neopain.training.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    History,
    Unfreeze,
)
from neopain.training.config import ConfigError, TrainConfig, load_config, save_config
from neopain.training.cv import fold_model_class, run_cv, run_fold
from neopain.training.embeddings import EmbeddingCache, cache_key
from neopain.training.networks import NetworkFoldModel
from neopain.training.trainer import FitResult, Trainer

__all__ = [
    "Callback", "Checkpoint", "ConfigError", "CvResult", "EarlyStopping", "EmbeddingCache",
    "FitResult", "FoldResult", "History", "NetworkFoldModel", "TrainConfig", "Trainer",
    "Unfreeze", "cache_key", "fold_model_class", "load_config", "oof_leaks", "run_cv",
    "run_fold", "save_config",
]  # fmt: skip
