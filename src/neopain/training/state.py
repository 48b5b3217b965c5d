"""``TrainState``: what one ``Trainer.fit`` changes as it runs, handed to every callback hook.

Callbacks read it and change it through its fields (``phase``, ``stop_training``) and its
``configure_optimizer``, never through the trainer; ``Checkpoint`` saves its ``state_dict``:
the optimizer's and the scheduler's state with the rest, so that a resumed fit goes on exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.training.optimizers import (
    OptimizerSpec,
    SchedulerSpec,
    fit_recipe,
    per_batch_unfreeze_problem,
    recipe_changes,
)

if TYPE_CHECKING:
    from neopain.training.callbacks import Callback


@dataclass(eq=False)
class TrainState:
    """The state of one ``Trainer.fit``: what callbacks see and may change.

    Attributes:
        model: the model being trained (callbacks may freeze or unfreeze its blocks).
        epochs: the number of epochs asked for.
        optimizer_spec: how ``configure_optimizer`` builds an optimizer.
        scheduler_spec: how it builds the learning-rate scheduler (None: constant rate).
        base_lr: the rate the fit was asked for (the trainer's ``lr``), part of its recipe.
        total_steps: the fit's training batches in all (OneCycleLR spans them).
        callbacks: the fit's callbacks, in order (their state goes into ``state_dict``).
        epoch: epochs completed so far (resumed ones included).
        phase: the ``phase`` column of history.csv (``train``; with ``Unfreeze``: ``head``,
            then ``fine-tune``).
        lr: the learning rate of the last training step (before any: the one configured).
        phase_lr: the rate the optimizer was last configured at (its scheduler's base).
        history: one ``logs`` dict per completed epoch.
        stop_training: set to True to end fitting after this epoch.
        optimizer: the optimizer now (set before the first epoch).
        scheduler: its learning-rate scheduler (None: constant).
    """

    model: PainModel
    epochs: int
    optimizer_spec: OptimizerSpec
    scheduler_spec: SchedulerSpec | None = None
    base_lr: float = 0.0
    total_steps: int = 1
    callbacks: list[Callback] = field(default_factory=list)
    epoch: int = 0
    phase: str = "train"
    lr: float = 0.0
    phase_lr: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_training: bool = False
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def configure_optimizer(self, lr: float) -> None:
        """A fresh optimizer over the parameters that train now, at ``lr``, and a fresh
        scheduler of it: a per-epoch schedule starts again from ``lr``.

        Raises:
            NeopainError: a per-batch scheduler is running (it spans the whole fit), or no
                parameter trains.
        """
        spec = self.scheduler_spec
        problem = None if spec is None else per_batch_unfreeze_problem(spec.name)
        if self.scheduler is not None and problem is not None:
            raise NeopainError(problem)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise NeopainError("the model has no trainable parameter; unfreeze some blocks")
        self.optimizer = self.optimizer_spec.build(params, lr=lr)
        self.scheduler = None if spec is None else spec.build(self.optimizer, lr=lr,
                                                              total_steps=self.total_steps)
        self.lr = self.optimizer.param_groups[0]["lr"]  # OneCycleLR starts below lr
        self.phase_lr = lr

    def recipe(self) -> dict[str, Any]:
        """How this fit builds its optimizer and scheduler (``optimizers.fit_recipe``), and
        the network's constructor arguments (dropout changes no weight's shape, so a resume
        with another rate would load silently)."""
        return {**fit_recipe(self.optimizer_spec, self.scheduler_spec, lr=self.base_lr,
                             total_steps=self.total_steps),
                "model_args": dict(getattr(self.model, "build_args", {}))}

    def _callback_keys(self) -> list[str]:
        names = [type(callback).__name__ for callback in self.callbacks]
        return [name if names.count(name) == 1 else f"{name}{names[:i].count(name)}"
                for i, name in enumerate(names)]

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed ``fit`` needs: weights, optimizer and scheduler, epoch,
        callbacks, RNG."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "lr": self.lr,
            "phase_lr": self.phase_lr,
            "recipe": self.recipe(),
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
        """Restore ``state_dict`` output (callbacks are matched by class name), with a fresh
        optimizer and scheduler given the saved state.

        Raises:
            NeopainError: the state was saved with another recipe (``recipe``): another
                optimizer, scheduler, lr, weight_decay or argument; each change is named.
        """
        # checkpoints written before the recipe key lack it: only their scheduler is checked
        wanted = self.recipe()
        saved_recipe = state.get("recipe", {})
        if saved_recipe:  # a recipe without model_args: its network was built without any
            saved_recipe = {"model_args": {}, **saved_recipe}
        changes = recipe_changes(saved_recipe, wanted)
        saved = "none" if state.get("scheduler") is None else "a scheduler's state"
        if "recipe" not in state and (saved == "none") != (wanted["scheduler"] is None):
            changes.append(f"scheduler: {saved} in the checkpoint, {wanted['scheduler']!r} in "
                           "this fit")
        if changes:
            raise NeopainError("the checkpoint was trained with another recipe: "
                               + "; ".join(changes) + ". To resume it, give the checkpoint's "
                               "values again; to train with the new ones, start a new run "
                               "folder (another --out) or set resume: false")
        self.model.load_state_dict(state["model"])
        self.model.unfreeze()
        self.model.freeze(state["frozen"])
        self.phase, self.epoch = state["phase"], state["epoch"]
        self.history = list(state["history"])
        for key, callback in zip(self._callback_keys(), self.callbacks):
            if key in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][key])
        self.scheduler = None
        self.configure_optimizer(state.get("phase_lr", state["lr"]))
        # after the scheduler is built: building it set the optimizer's rates to its start
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.lr = state["lr"]
        self.stop_training = state["stopped"]
        torch.set_rng_state(state["rng"])
