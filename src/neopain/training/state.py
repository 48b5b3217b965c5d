"""``TrainState``: what one ``Trainer.fit`` changes as it runs, handed to every callback hook.

Callbacks read it and change it through its fields (``phase``, ``stop_training``) and its
``configure_optimizer``, never through the trainer; ``Checkpoint`` saves its ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neopain.errors import NeopainError
from neopain.models.base import PainModel

if TYPE_CHECKING:
    from neopain.training.callbacks import Callback


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build the optimizer: ``adam``, ``rmsprop`` or ``sgd`` (momentum 0.9)."""

    name: str
    weight_decay: float = 0.0

    def build(self, params: Iterable[torch.nn.Parameter], *, lr: float) -> torch.optim.Optimizer:
        """A fresh optimizer over ``params`` at ``lr``."""
        if self.name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        if self.name == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=self.weight_decay)


@dataclass(eq=False)
class TrainState:
    """The state of one ``Trainer.fit``: what callbacks see and may change.

    Attributes:
        model: the model being trained (callbacks may freeze or unfreeze its blocks).
        epochs: the number of epochs asked for.
        optimizer_spec: how ``configure_optimizer`` builds an optimizer.
        callbacks: the fit's callbacks, in order (their state goes into ``state_dict``).
        epoch: epochs completed so far (resumed ones included).
        phase: the ``phase`` column of history.csv (``train``; with ``Unfreeze``: ``head``,
            then ``fine-tune``).
        lr: the learning rate now.
        history: one ``logs`` dict per completed epoch.
        stop_training: set to True to end fitting after this epoch.
        optimizer: the optimizer now (set before the first epoch).
        scheduler: the learning-rate schedule (None: constant).
    """

    model: PainModel
    epochs: int
    optimizer_spec: OptimizerSpec
    callbacks: list[Callback] = field(default_factory=list)
    epoch: int = 0
    phase: str = "train"
    lr: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_training: bool = False
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def configure_optimizer(self, lr: float) -> None:
        """A fresh optimizer over the parameters that train now, at ``lr``.

        Raises:
            NeopainError: a learning-rate schedule is running (it anneals one optimizer over
                the whole fit), or no parameter trains.
        """
        if self.scheduler is not None:
            raise NeopainError("lr_schedule='onecycle' anneals one optimizer over the whole "
                               "fit; it cannot be combined with unfreezing "
                               "(unfreeze_patience > 0)")
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise NeopainError("the model has no trainable parameter; unfreeze some blocks")
        self.optimizer = self.optimizer_spec.build(params, lr=lr)
        self.lr = lr

    def _callback_keys(self) -> list[str]:
        names = [type(callback).__name__ for callback in self.callbacks]
        return [name if names.count(name) == 1 else f"{name}{names[:i].count(name)}"
                for i, name in enumerate(names)]

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed ``fit`` needs: weights, optimizer, epoch, callbacks, RNG."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "lr": self.lr,
            "phase": self.phase,
            "frozen": self.model.frozen_blocks(),
            "history": list(self.history),
            "callbacks": {key: callback.state_dict()
                          for key, callback in zip(self._callback_keys(), self.callbacks)},
            "stopped": self.stop_training,
            "rng": torch.get_rng_state(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` output (callbacks are matched by class name); the scheduler
        is the caller's, who builds it."""
        self.model.load_state_dict(state["model"])
        self.model.unfreeze()
        self.model.freeze(state["frozen"])
        self.phase, self.epoch = state["phase"], state["epoch"]
        self.history = list(state["history"])
        for key, callback in zip(self._callback_keys(), self.callbacks):
            if key in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][key])
        self.configure_optimizer(state["lr"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stop_training = state["stopped"]
        torch.set_rng_state(state["rng"])
