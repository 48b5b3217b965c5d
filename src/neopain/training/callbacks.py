"""Callbacks: hooks the ``Trainer`` calls with the fit's ``TrainState``; each does nothing
unless overridden.

``EarlyStopping``, ``Unfreeze`` (two-phase fine-tuning), ``Checkpoint`` (best weights, last
state for resuming) and ``History`` (history.csv) live here; the files they write are
``neopain.runs``'s (``save_checkpoint``, ``write_history``); a network fold model reports its
epochs and batches to the run's progress through one more (``training.networks.StepReport``).
A callback's ``state_dict`` goes into checkpoint.pt, so that a resumed run continues exactly
where the interrupted one stopped.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neopain.errors import NeopainError
from neopain.runs import HISTORY_COLUMNS, save_checkpoint, write_history

if TYPE_CHECKING:
    from neopain.training.state import TrainState

MONITORS = ("val_loss", "val_accuracy")


def check_monitor(monitor: str) -> str:
    """``monitor`` when it is one of ``MONITORS``.

    Raises:
        NeopainError: it is not.
    """
    if monitor not in MONITORS:
        raise NeopainError(f"monitor={monitor!r} is not valid; valid: {', '.join(MONITORS)}")
    return monitor


def _better(value: float, best: float | None, monitor: str) -> bool:
    """Whether ``value`` improves on ``best`` (lower loss, higher accuracy)."""
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


class Callback:
    """Hooks called by ``Trainer.fit`` with its ``TrainState``; all do nothing by default.

    A hook changes the fit through the state: ``state.stop_training = True`` ends it after the
    epoch, ``state.phase`` names the phase in history.csv, ``state.configure_optimizer(lr)``
    starts a fresh optimizer, ``state.model`` can be frozen or unfrozen.

    ``order`` sorts callbacks (stable): ``Checkpoint`` runs last so that it saves what the
    others changed in the same epoch.
    """

    order: int = 0

    def on_fit_start(self, state: TrainState) -> None:
        """Before the first epoch (also when resuming, before the checkpoint is loaded)."""

    def on_epoch_start(self, state: TrainState, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based)."""

    def on_batch_end(self, state: TrainState, batch: int, batches: int, loss: float) -> None:
        """After training batch ``batch`` (1-based) of ``batches``."""

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        """After validation; ``logs`` holds the history.csv columns of this epoch."""

    def on_fit_end(self, state: TrainState) -> None:
        """After the last epoch."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive an interruption (saved in checkpoint.pt)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` output."""


class _Monitoring(Callback):
    """Tracks the best ``monitor`` value and the epochs since it last improved."""

    def __init__(self, *, monitor: str = "val_loss") -> None:
        self.monitor = check_monitor(monitor)
        self.best_: float | None = None
        self.wait_ = 0

    def _update(self, logs: dict[str, Any]) -> bool | None:
        """True when improved, False when not, None when there is no validation value."""
        value = float(logs.get(self.monitor, math.nan))
        if math.isnan(value):
            return None
        if _better(value, self.best_, self.monitor):
            self.best_, self.wait_ = value, 0
            return True
        self.wait_ += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best_, "wait": self.wait_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_, self.wait_ = state["best"], state["wait"]


class EarlyStopping(_Monitoring):
    """Stop after ``patience`` epochs without improvement (the count restarts with a new phase).

    Raises:
        NeopainError: ``patience`` < 1 or an unknown ``monitor``.
    """

    def __init__(self, patience: int = 10, *, monitor: str = "val_loss") -> None:
        super().__init__(monitor=monitor)
        if patience < 1:
            raise NeopainError(f"patience={patience} must be >= 1")
        self.patience = patience
        self.phase_ = ""
        self.stopped_epoch_: int | None = None

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if logs["phase"] != self.phase_:  # a new phase (e.g. unfrozen) gets its own patience
            self.phase_, self.wait_ = logs["phase"], 0
            self.best_ = None
        if self._update(logs) is False and self.wait_ >= self.patience:
            state.stop_training = True
            self.stopped_epoch_ = logs["epoch"]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "phase": self.phase_, "stopped": self.stopped_epoch_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.phase_, self.stopped_epoch_ = state["phase"], state["stopped"]


class Unfreeze(_Monitoring):
    """Two-phase fine-tuning: head first, then the last ``blocks`` backbone blocks.

    The backbone is frozen when fitting starts (phase ``head``). After ``patience`` epochs
    without improvement, the last ``blocks`` blocks are unfrozen and training goes on at
    ``lr_factor`` times the rate the head phase started at (phase ``fine-tune``), with a fresh
    optimizer and, when the fit has a per-epoch scheduler, a fresh one starting there.

    Raises:
        NeopainError: ``patience`` or ``blocks`` < 1, ``lr_factor`` outside (0, 1].
    """

    def __init__(self, patience: int = 5, *, blocks: int = 1, lr_factor: float = 0.1,
                 monitor: str = "val_loss") -> None:
        super().__init__(monitor=monitor)
        if patience < 1 or blocks < 1:
            raise NeopainError(f"patience={patience} and blocks={blocks} must be >= 1")
        if not 0 < lr_factor <= 1:
            raise NeopainError(f"lr_factor={lr_factor} must be in (0, 1]")
        self.patience = patience
        self.blocks = blocks
        self.lr_factor = lr_factor
        self.unfrozen_epoch_: int | None = None

    def on_fit_start(self, state: TrainState) -> None:
        state.model.freeze()
        state.phase = "head"

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if self.unfrozen_epoch_ is not None:
            return
        if self._update(logs) is False and self.wait_ >= self.patience:
            state.model.unfreeze(state.model.blocks()[-self.blocks:])
            state.phase = "fine-tune"
            state.configure_optimizer(state.phase_lr * self.lr_factor)
            self.unfrozen_epoch_ = logs["epoch"]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "unfrozen": self.unfrozen_epoch_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.unfrozen_epoch_ = state["unfrozen"]


class Checkpoint(_Monitoring):
    """Keep the best weights (by ``monitor``) and write the last state to ``path`` each epoch.

    At the end of fitting the model gets the best weights back (``restore_best``); without
    validation values, the last ones stay. ``path=None`` keeps everything in memory.
    """

    order = 100

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 monitor: str = "val_loss", restore_best: bool = True) -> None:
        super().__init__(monitor=monitor)
        self.path = None if path is None else Path(path)
        self.restore_best = restore_best
        self.best_epoch_: int | None = None
        self.best_state_: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if self._update(logs):
            self.best_epoch_ = logs["epoch"]
            self.best_state_ = copy.deepcopy({k: v.detach().cpu()
                                              for k, v in state.model.state_dict().items()})
        if self.path is not None:
            save_checkpoint(self.path, state=state.state_dict())

    def on_fit_end(self, state: TrainState) -> None:
        if self.restore_best and self.best_state_ is not None:
            state.model.load_state_dict(self.best_state_)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_epoch": self.best_epoch_,
                "best_state": self.best_state_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best_epoch_, self.best_state_ = state["best_epoch"], state["best_state"]


class History(Callback):
    """One row per epoch (``HISTORY_COLUMNS``) kept in ``rows_`` and written to ``path``."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.rows_: list[dict[str, Any]] = []

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        self.rows_.append({column: logs[column] for column in HISTORY_COLUMNS})
        if self.path is not None:
            write_history(self.path, rows=self.rows_)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows_)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows_ = list(state["rows"])
