"""The run config of ``neopain train``: read from YAML and/or flags, checked, saved resolved.

Example run.yaml::

    model: ncnn
    manifest: data/manifest.csv
    folds: data/folds.json
    out: runs/ncnn
    epochs: 40
    lr: 0.001
    optimizer: RMSprop
    scheduler: CosineAnnealingLR
    scheduler_args: {T_max: 5, eta_min: 1.0e-6}
    augment: false
    calibration: {method: temperature, alpha: 0.1}
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from neopain.data.files import FileReadError
from neopain.data.yaml_text import read_yaml_mapping
from neopain.errors import NeopainError
from neopain.models.calibrator import METHODS
from neopain.runs import fold_model_names, write_config
from neopain.training.callbacks import MONITORS
from neopain.training.losses import SOFT_LABELS, smoothing_problem
from neopain.training.optimizers import (
    LR_SCHEDULES,
    OPTIMIZER_ALIASES,
    OptimizerSpec,
    per_batch_unfreeze_problem,
    recipe_problems,
)

DEVICES = ("auto", "cpu", "cuda")
KEEP = ("best", "last")
PRECISIONS = ("fp32", "bf16", "auto")
_PATHS = ("manifest", "folds", "out", "weights", "cache_dir")
SEED_KEYS = {"optimizer_hyp": "optimizer_args (with lr and weight_decay as top-level keys)",
             "scheduler_hyp": "scheduler_args", "patience": "early_stopping",
             "soft_label": "soft_labels"}
"""Keys of the seed repository's train.py configs and what they are called here."""


class ConfigError(NeopainError):
    """A run config with a missing, unknown or invalid key."""


@dataclass(frozen=True)
class CalibrationSettings:
    """The run config's ``calibration``: what ``neopain train`` passes to ``neopain calibrate``
    once the folds are done.

    Attributes:
        method: one of ``models.calibrator.METHODS``.
        alpha: the referral band's error rate, in (0, 1).
        bins: histogram bins (``histogram`` only), at least 2.
    """

    method: str
    alpha: float = 0.1  # evaluation.calibration.DEFAULT_ALPHA (a layer above)
    bins: int = 10

    @classmethod
    def from_value(cls, value: Any) -> CalibrationSettings:
        """From the YAML mapping, checked; errors name the key and what is valid.

        Raises:
            ConfigError: not a mapping, unknown or missing keys, a value out of range.
        """
        valid = [f.name for f in fields(cls)]
        if not isinstance(value, dict):
            raise ConfigError(f"calibration={value!r:.60} is not valid; valid: a mapping such "
                              "as {method: temperature, alpha: 0.1}, or null")
        unknown = sorted(set(value) - set(valid))
        if unknown:
            raise ConfigError(f"calibration: unknown key {unknown[0]!r}; valid: "
                              f"{', '.join(valid)}")
        if value.get("method") not in METHODS:
            raise ConfigError(f"calibration.method={value.get('method')!r} is not valid; "
                              f"valid: {', '.join(METHODS)}")
        settings = cls(**value)
        if not (_is_number(settings.alpha) and 0 < settings.alpha < 1):
            raise ConfigError(f"calibration.alpha={settings.alpha!r} is not valid; valid: a "
                              "number between 0 and 1 (exclusive), e.g. 0.1")
        if not (_is_int(settings.bins) and settings.bins >= 2):
            raise ConfigError(f"calibration.bins={settings.bins!r} is not valid; valid: a "
                              "whole number >= 2")
        return settings

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping."""
        return {"method": self.method, "alpha": self.alpha, "bins": self.bins}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one cross-validated training run needs.

    Attributes:
        model: a fold model's name: a network (``neopain models list``) or another registered
            fold model such as ``nfcs`` (``neopain.runs.fold_model_names``).
        model_args: keyword arguments of the network's constructor, e.g. ``{dropout: 0.5}``
            (``neopain models show NAME`` lists them); model.pt records them, so every later
            load (assess, MC dropout, export) builds the same network. Networks only.
        manifest, folds: the manifest CSV and its folds.json.
        out: the run folder (``runs/NAME``).
        fold: train only this fold index; None: every fold.
        epochs, batch_size, lr, weight_decay: the usual (``lr`` is OneCycleLR's peak).
        optimizer: a ``torch.optim`` class name (``training.optimizers.optimizer_names``), or
            ``adam``, ``rmsprop``, ``sgd`` (SGD with momentum 0.9): these aliases are resolved
            when the config is built, so the saved config names the class and its arguments.
        optimizer_args: more keyword arguments of that class (``{momentum: 0.9}``); ``lr`` and
            ``weight_decay`` are refused here: they are the top-level keys.
        scheduler: a ``torch.optim.lr_scheduler`` class name, or None (constant ``lr``). It
            steps after each epoch (``ReduceLROnPlateau`` on the ``monitor`` value, its
            ``mode`` set from it); OneCycleLR and CyclicLR after each batch, OneCycleLR peaking
            at ``lr`` over all the batches of ``epochs``. With ``unfreeze_patience``, the
            fine-tune phase starts a fresh scheduler on its fresh optimizer (per-epoch
            schedulers only).
        scheduler_args: its keyword arguments (``{T_max: 5, eta_min: 1.0e-6}``); refused
            without a scheduler.
        lr_schedule: the old key, read as ``scheduler``: ``constant`` (None) or ``onecycle``
            (``OneCycleLR``); resolved when the config is built, never saved; refused with
            ``scheduler`` or ``scheduler_args``.
        class_weights: ``balanced`` (weights n / (2 · count) from the training labels) or None.
        l1_head: L1 penalty factor on the head's weights.
        label_smoothing: torch's cross-entropy label smoothing (0–1): the targets become
            ``1 - s/2`` and ``s/2`` (not with ``soft_labels``, as in the seed's train.py).
        flip: probability of mirroring a training image left-right (0 = never).
        soft_labels: targets from the NFCS ``score``: ``sigmoid`` (sigmoid(s − 2.5)),
            ``linear`` (s / 7, clipped), ``step`` (s >= 3); None: the hard labels.
        augment: online augmentation (``AugmentSpec()`` defaults) of the training images.
        crop_to_face: crop each image to its ``face_box`` first.
        weights: pretrained weights file loaded into every fold's model before training.
        freeze_backbone: train the head only (the backbone stays frozen throughout unless
            ``unfreeze_patience`` > 0).
        unfreeze_patience: two-phase fine-tuning: with the backbone frozen, after this many
            epochs without validation improvement unfreeze the last ``unfreeze_blocks`` blocks
            at ``lr * unfreeze_lr_factor``; 0: one phase.
        early_stopping: stop after this many epochs without improvement; 0: never.
        restarts: train a fold again from a fresh initialization, at most this many times,
            when its network gives more than half of its validation faces (its training faces
            without validation subjects) one and the same output: its ReLU units died
            (``training.networks``); 0: never.
        monitor: ``val_loss`` or ``val_accuracy``: what "improvement" and "best" mean.
        keep: which weights model.pt keeps: ``best`` (the epoch with the best ``monitor``
            value) or ``last`` (the last epoch trained: with ``early_stopping`` 0, a network
            trained to the end, as overconfident as that makes it).
        cache: train a frozen-backbone head on cached embeddings (only without ``augment``).
        cache_dir: where embeddings are stored; None: ``out / "cache"``.
        resume: continue a fold from its checkpoint.pt when one is there.
        device: ``auto`` (cuda when available), ``cpu`` or ``cuda``.
        precision: ``fp32``, ``bf16`` (mixed-precision training forward passes: about 2×
            faster where bfloat16 is native — CPUs with AMX or AVX512-BF16, recent GPUs;
            predictions stay float32) or ``auto`` (bf16 where native).
        workers: DataLoader worker processes.
        seed: seeds model initialization, shuffling, dropout and augmentation.
        calibration: fit a calibrator on each fold's validation images once the run is done
            (``neopain calibrate``), e.g. ``{method: temperature, alpha: 0.1}``; None: not.
    """

    model: str
    manifest: Path
    folds: Path
    out: Path
    model_args: dict[str, Any] = field(default_factory=dict)
    fold: int | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    weight_decay: float = 0.0
    class_weights: str | None = "balanced"
    l1_head: float = 0.0
    label_smoothing: float = 0.0
    soft_labels: str | None = None
    scheduler: str | None = None
    scheduler_args: dict[str, Any] = field(default_factory=dict)
    lr_schedule: str | None = None
    flip: float = 0.0
    augment: bool = False
    crop_to_face: bool = True
    weights: Path | None = None
    freeze_backbone: bool = False
    unfreeze_patience: int = 0
    unfreeze_blocks: int = 1
    unfreeze_lr_factor: float = 0.1
    early_stopping: int = 10
    restarts: int = 2
    monitor: str = "val_loss"
    keep: str = "best"
    cache: bool = True
    cache_dir: Path | None = None
    resume: bool = True
    device: str = "auto"
    precision: str = "fp32"
    workers: int = 0
    seed: int = 0
    calibration: CalibrationSettings | None = None

    def absolute(self) -> TrainConfig:
        """The same config with every path absolute: for a process that does not run in this
        folder (a Ray task)."""
        return dataclasses.replace(self, **{name: getattr(self, name).absolute()
                                            for name in _PATHS
                                            if getattr(self, name) is not None})

    def __post_init__(self) -> None:
        for name in _PATHS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.calibration is not None and not isinstance(self.calibration,
                                                           CalibrationSettings):
            object.__setattr__(self, "calibration",
                               CalibrationSettings.from_value(self.calibration))
        problems = self._resolve_recipe()
        problems += _problems(self) if not problems else []
        if problems:
            raise ConfigError("invalid run config:\n  " + "\n  ".join(problems))

    def _resolve_recipe(self) -> list[str]:
        """The old ``lr_schedule`` read as ``scheduler``, an optimizer alias as its class and
        arguments, empty args as {}; what prevents it."""
        for name in ("model_args", "optimizer_args", "scheduler_args"):
            value = getattr(self, name)
            object.__setattr__(self, name, {} if value is None else
                               dict(value) if isinstance(value, dict) else value)
        if self.lr_schedule is not None:
            if not isinstance(self.lr_schedule, str) or self.lr_schedule not in LR_SCHEDULES:
                return [f"lr_schedule={self.lr_schedule!r} is not valid; valid: "
                        f"{', '.join(LR_SCHEDULES)} (the old key; now scheduler: "
                        "OneCycleLR, or any torch scheduler)"]
            given = [f"{name}={getattr(self, name)!r}" for name in ("scheduler", "scheduler_args")
                     if getattr(self, name)]
            meant = LR_SCHEDULES[self.lr_schedule]
            if given:
                return [f"lr_schedule={self.lr_schedule!r} is the old key of scheduler and "
                        f"cannot be combined with {' and '.join(given)}; valid: lr_schedule "
                        "alone, or scheduler and scheduler_args without lr_schedule "
                        f"(lr_schedule: {self.lr_schedule} is scheduler: {meant or 'null'})"]
            object.__setattr__(self, "scheduler", meant)
            object.__setattr__(self, "lr_schedule", None)
        if isinstance(self.optimizer, str) and self.optimizer in OPTIMIZER_ALIASES \
                and isinstance(self.optimizer_args, dict):
            spec = OptimizerSpec.of(self.optimizer, self.optimizer_args)
            object.__setattr__(self, "optimizer", spec.name)
            object.__setattr__(self, "optimizer_args", dict(spec.args))
        return []

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown or missing keys are named with the valid ones."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: must be a mapping of keys to values; got {data!r:.60}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            renamed = "".join(f" ({key} is {SEED_KEYS[key]} here)" for key in unknown
                              if key in SEED_KEYS)
            raise ConfigError(f"{source}: unknown key{'s' * (len(unknown) > 1)} "
                              f"{', '.join(map(repr, unknown))}{renamed}; valid: "
                              f"{', '.join(valid)}")
        required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if data.get(name) in (None, "")]
        if missing:
            raise ConfigError(f"{source}: missing {', '.join(map(repr, missing))}; give "
                              "them in the YAML file or as --model, --manifest, --folds, --out")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values (paths as strings), in field order."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "lr_schedule":  # read as scheduler, never written
                out[f.name] = (str(value) if isinstance(value, Path) else value.to_dict()
                               if isinstance(value, CalibrationSettings) else
                               dict(value) if isinstance(value, dict) else value)
        return out

    @property
    def embedding_dir(self) -> Path:
        """Where embeddings are cached: ``cache_dir`` or ``out / "cache"``."""
        return self.cache_dir if self.cache_dir is not None else self.out / "cache"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _problems(config: TrainConfig) -> list[str]:
    models = fold_model_names()
    checks: list[tuple[str, bool, str]] = [
        ("model", isinstance(config.model, str) and config.model in models, ", ".join(models)),
        ("fold", config.fold is None or (_is_int(config.fold) and config.fold >= 0),
         "a fold index >= 0, or empty for every fold"),
        ("epochs", _is_int(config.epochs) and config.epochs >= 1, "a whole number >= 1"),
        ("batch_size", _is_int(config.batch_size) and config.batch_size >= 1,
         "a whole number >= 1"),
        ("lr", _is_number(config.lr) and config.lr > 0, "a number > 0"),
        ("weight_decay", _is_number(config.weight_decay) and config.weight_decay >= 0,
         "a number >= 0"),
        ("class_weights", config.class_weights in ("balanced", None), "balanced, or null"),
        ("l1_head", _is_number(config.l1_head) and config.l1_head >= 0, "a number >= 0"),
        ("label_smoothing", _is_number(config.label_smoothing)
         and 0 <= config.label_smoothing < 1, "a number from 0 to below 1"),
        ("soft_labels", config.soft_labels in (*SOFT_LABELS, None),
         f"{', '.join(SOFT_LABELS)}, or null"),
        ("flip", _is_number(config.flip) and 0 <= config.flip <= 1, "a probability from 0 to 1"),
        ("unfreeze_patience", _is_int(config.unfreeze_patience)
         and config.unfreeze_patience >= 0, "a whole number >= 0"),
        ("unfreeze_blocks", _is_int(config.unfreeze_blocks) and config.unfreeze_blocks >= 1,
         "a whole number >= 1"),
        ("unfreeze_lr_factor", _is_number(config.unfreeze_lr_factor)
         and 0 < config.unfreeze_lr_factor <= 1, "a number in (0, 1]"),
        ("early_stopping", _is_int(config.early_stopping) and config.early_stopping >= 0,
         "a whole number >= 0"),
        ("restarts", _is_int(config.restarts) and 0 <= config.restarts <= 10,
         "a whole number from 0 to 10"),
        ("monitor", config.monitor in MONITORS, ", ".join(MONITORS)),
        ("keep", config.keep in KEEP, ", ".join(KEEP)),
        ("device", config.device in DEVICES, ", ".join(DEVICES)),
        ("precision", config.precision in PRECISIONS, ", ".join(PRECISIONS)),
        ("workers", _is_int(config.workers) and config.workers >= 0, "a whole number >= 0"),
        ("seed", _is_int(config.seed) and config.seed >= 0, "a whole number >= 0"),
    ]
    checks += [(name, isinstance(getattr(config, name), bool), "true or false")
               for name in ("augment", "crop_to_face", "freeze_backbone", "cache", "resume")]
    problems = [f"{name}={getattr(config, name)!r} is not valid; valid: {what}"
                for name, ok, what in checks if not ok]
    valid = {name for name, ok, _ in checks if ok}
    if {"lr", "weight_decay", "monitor"} <= valid:
        # the optimizer and scheduler are built on a dummy parameter: bad arguments now, not
        # after the first fold's data is loaded
        problems += recipe_problems(
            optimizer=config.optimizer, optimizer_args=config.optimizer_args, lr=config.lr,
            weight_decay=config.weight_decay, scheduler=config.scheduler,
            scheduler_args=config.scheduler_args, monitor=config.monitor)
    rules = [model_args_problem(config.model, config.model_args)
             if "model" in valid and config.model_args != {} else None,
             per_batch_unfreeze_problem(config.scheduler) if config.unfreeze_patience else None,
             smoothing_problem(soft_labels=config.soft_labels,
                               label_smoothing=config.label_smoothing)]
    return problems + [problem for problem in rules if problem is not None]


def model_args_problem(model: str, args: object) -> str | None:
    """What is wrong with ``model_args`` for ``model``: a rule-based fold model takes none; a
    network is built with them on torch's meta device (``models.registry``)."""
    from neopain.models import list_models, registry  # imports torch: only when args are given

    if model not in list_models():
        return (f"model_args={args!r:.80} is not valid for {model}: only a network is built "
                "with arguments; valid: none (leave model_args out)")
    return registry.model_args_problem(model, args)


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> TrainConfig:
    """Read run.yaml (when given) and apply ``overrides`` that are not None.

    Relative paths in the file are taken from the current folder, as on the command line.

    Raises:
        ConfigError: unreadable file, bad YAML, unknown, missing or invalid keys.
    """
    data: dict[str, Any] = {}
    source = "flags"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = read_yaml_mapping(path, what="a YAML run config")
        except FileReadError as error:
            raise ConfigError(str(error)) from None
        data.update(loaded)
    data.update({key: value for key, value in overrides.items() if value is not None})
    return TrainConfig.from_dict(data, source=source)


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as YAML (every key, defaults included)."""
    return write_config(config.to_dict(), path=path)
