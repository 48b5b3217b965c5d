"""Training: the fit loop with callbacks, the embedding cache, cross-validation over folds,
the torch dataset and augmentation.

Example::

    config = load_config("run.yaml")
    result = run_cv(config)                  # writes runs/NAME/fold_K/...
    oof_leaks(config.out)                    # [] : no prediction from a model that saw its subject

The names below load on first use (PEP 562), so that ``neopain.training.augment`` (for
``neopain augment``) does not load torch with the trainer.
"""

from __future__ import annotations

from neopain.lazy import lazy_exports

_EXPORTS = {
    "neopain.runs": ("CvResult", "FoldResult", "oof_leaks"),
    "neopain.training.callbacks": ("Callback", "Checkpoint", "EarlyStopping", "History",
                                   "Unfreeze"),
    "neopain.training.config": ("CalibrationSettings", "ConfigError", "TrainConfig", "load_config",
                                "save_config"),
    "neopain.training.cv": ("fold_model_class", "run_cv", "run_fold"),
    "neopain.training.embeddings": ("EmbeddingCache", "cache_key"),
    "neopain.training.networks": ("NetworkFoldModel",),
    "neopain.training.state": ("TrainState",),
    "neopain.training.trainer": ("FitResult", "Trainer"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
