"""Any ``torch.optim`` optimizer and ``torch.optim.lr_scheduler`` scheduler, by class name.

A run config names them as the seed repository's configs do (``optimizer: RMSprop`` with
``optimizer_args``, ``scheduler: CosineAnnealingLR`` with ``scheduler_args``); the valid names
are computed from torch's modules. ``recipe_problems`` checks names and arguments against
each class's signature (their names, and their types where it says int, float or bool) and
builds both on a dummy parameter, so that a wrong argument is told before training starts,
naming the class and the parameters it accepts. ``fit_recipe`` is what a checkpoint records of
them; ``recipe_changes`` names what a resumed fit would change.

The lowercase names of earlier configs are aliases: ``adam``, ``rmsprop``, ``sgd`` (SGD with
momentum 0.9); ``lr_schedule: constant`` is no scheduler and ``onecycle`` is ``OneCycleLR``.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import lr_scheduler

OPTIMIZER_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "adam": ("Adam", {}), "rmsprop": ("RMSprop", {}), "sgd": ("SGD", {"momentum": 0.9})}
"""The lowercase names of earlier configs: the torch class and its default arguments."""
LR_SCHEDULES: dict[str, str | None] = {"constant": None, "onecycle": "OneCycleLR"}
"""The old ``lr_schedule`` key's values and the scheduler each one means."""

UNUSABLE = {
    "LBFGS": "its step needs a closure that computes the loss again",
    "SparseAdam": "it takes sparse gradients only",
    "Muon": "it takes 2-D parameters only (networks have biases and convolutions)",
    "LambdaLR": "it needs a Python function", "MultiplicativeLR": "it needs a Python function",
    "SequentialLR": "it needs scheduler objects", "ChainedScheduler": "it needs scheduler objects",
}
"""torch classes a YAML config cannot use, and why (left out of the valid names)."""
PER_BATCH = ("OneCycleLR", "CyclicLR")
"""Schedulers stepped after every batch (torch's documented use); the others step per epoch."""
_STEPS = "epochs × batches per epoch"
FILLED: dict[str, dict[str, str]] = {
    "optimizer": {"params": "the trainer's", "lr": "the run config's top-level lr",
                  "weight_decay": "the run config's top-level weight_decay"},
    "scheduler": {"optimizer": "the trainer's", "last_epoch": "a resumed scheduler's own"},
    "OneCycleLR": {"max_lr": "the run config's lr", "total_steps": _STEPS, "epochs": _STEPS,
                   "steps_per_epoch": _STEPS},
    "ReduceLROnPlateau": {"mode": "min for monitor val_loss, max for val_accuracy"},
}
"""Arguments the trainer gives itself, and where their values come from."""


def _classes(module: Any, base: type) -> tuple[str, ...]:
    return tuple(sorted((name for name, value in vars(module).items()
                         if inspect.isclass(value) and issubclass(value, base)
                         and value is not base and not name.startswith("_")
                         and name not in UNUSABLE and name != "LRScheduler"), key=str.lower))


def optimizer_names() -> tuple[str, ...]:
    """The ``torch.optim`` optimizers a config can name (not the ``UNUSABLE`` ones)."""
    return _classes(torch.optim, torch.optim.Optimizer)


def scheduler_names() -> tuple[str, ...]:
    """The ``torch.optim.lr_scheduler`` schedulers a config can name."""
    return _classes(lr_scheduler, lr_scheduler.LRScheduler)


@dataclass(frozen=True)
class OptimizerSpec:
    """A torch optimizer by class name (an alias resolved) with its arguments.

    Example:
        >>> OptimizerSpec.of("sgd", {}, weight_decay=1e-4).build(model.parameters(), lr=0.01)
    """

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    weight_decay: float = 0.0

    @classmethod
    def of(cls, name: str, args: Mapping[str, Any] | None = None, *,
           weight_decay: float = 0.0) -> OptimizerSpec:
        """``name`` with an alias resolved: its class and default arguments, ``args`` over
        them."""
        name, defaults = OPTIMIZER_ALIASES.get(name, (name, {}))
        return cls(name, {**defaults, **(args or {})}, weight_decay)

    def build(self, params: Iterable[torch.nn.Parameter], *, lr: float) -> torch.optim.Optimizer:
        """A fresh optimizer over ``params`` at ``lr``."""
        optimizer = getattr(torch.optim, self.name)
        # an optimizer without weight decay (Rprop) is built without it when it is 0
        decay = {"weight_decay": self.weight_decay} if self.weight_decay else {}
        return optimizer(params, lr=lr, **decay, **self.args)


@dataclass(frozen=True)
class SchedulerSpec:
    """A torch learning-rate scheduler by class name with its arguments.

    Per-epoch schedulers step after validation (``ReduceLROnPlateau`` on the ``monitor``
    value); ``PER_BATCH`` ones after every batch, OneCycleLR peaking at the run's ``lr`` over
    ``total_steps``.
    """

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    monitor: str = "val_loss"

    @classmethod
    def of(cls, name: str | None, args: Mapping[str, Any] | None = None, *,
           monitor: str = "val_loss") -> SchedulerSpec | None:
        """The spec, or None for no scheduler (``name`` None)."""
        return None if name is None else cls(name, dict(args or {}), monitor)

    @property
    def per_batch(self) -> bool:
        """Whether it steps after every batch rather than every epoch."""
        return self.name in PER_BATCH

    def build(self, optimizer: torch.optim.Optimizer, *, lr: float,
              total_steps: int) -> lr_scheduler.LRScheduler:
        """A fresh scheduler of ``optimizer`` (built at ``lr``)."""
        filled: dict[str, Any] = {}
        if self.name == "OneCycleLR":
            filled = {"max_lr": lr, "total_steps": total_steps}
        elif self.name == "ReduceLROnPlateau":
            filled = {"mode": "min" if self.monitor == "val_loss" else "max"}
        return getattr(lr_scheduler, self.name)(optimizer, **filled, **self.args)

    def step(self, scheduler: lr_scheduler.LRScheduler, logs: Mapping[str, Any]) -> None:
        """The end-of-epoch step (ReduceLROnPlateau's on ``logs[monitor]``)."""
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(logs[self.monitor])
        else:
            scheduler.step()


def per_batch_unfreeze_problem(scheduler: Any) -> str | None:
    """Why ``scheduler`` cannot be combined with unfreezing; None when it can.

    The one rule for the run config (``unfreeze_patience``) and the fit (``Unfreeze``).
    """
    if scheduler not in PER_BATCH:
        return None
    return (f"scheduler={scheduler!r} steps after every batch of the whole fit and cannot be "
            "combined with unfreezing (unfreeze_patience > 0), which starts a fresh optimizer; "
            "valid: a per-epoch scheduler (e.g. CosineAnnealingLR), which restarts with it, or "
            "none")


def fit_recipe(optimizer: OptimizerSpec, scheduler: SchedulerSpec | None, *, lr: float,
               total_steps: int) -> dict[str, Any]:
    """How a fit builds its optimizer and scheduler, as its checkpoint records it: a resume
    that would build them otherwise is refused (``recipe_changes``)."""
    recipe: dict[str, Any] = {
        "optimizer": optimizer.name, "optimizer_args": dict(optimizer.args), "lr": lr,
        "weight_decay": optimizer.weight_decay,
        "scheduler": None if scheduler is None else scheduler.name,
        "scheduler_args": {} if scheduler is None else dict(scheduler.args)}
    if scheduler is not None and "total_steps" in FILLED.get(scheduler.name, {}):
        recipe["total_steps"] = total_steps  # OneCycleLR's one cycle spans the whole fit
    return recipe


def recipe_changes(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``KEY: A in the checkpoint, B in this fit`` for each key of the ``saved`` recipe that
    ``wanted`` gives otherwise, arguments one by one. Only the saved keys are compared:
    checkpoints written before the full recipe have the class names only."""
    changes = []
    for key, value in saved.items():
        new = wanted.get(key)
        if isinstance(value, dict) and isinstance(new, dict):
            changes += [f"{key}.{name}: {_shown(value, name)} in the checkpoint, "
                        f"{_shown(new, name)} in this fit"
                        for name in sorted({*value, *new}, key=str)
                        if name not in value or name not in new or value[name] != new[name]]
        elif value != new:
            changes.append(f"{key}: {value!r} in the checkpoint, {new!r} in this fit")
    return changes


def _shown(values: Mapping[str, Any], name: str) -> str:
    return repr(values[name]) if name in values else "not given"


def _parameters(cls: type) -> list[inspect.Parameter]:
    """The constructor's parameters after the first (``params`` / ``optimizer``)."""
    return list(inspect.signature(cls).parameters.values())[1:]


_KINDS: dict[type, str] = {int: "a whole number", float: "a number", bool: "true or false"}
"""The argument types checked against the signature before torch sees a value, and how the
valid values of each are told."""


def _kind(parameter: inspect.Parameter) -> type | None:
    """int, float or bool when the signature says the parameter is one; None otherwise."""
    annotation = parameter.annotation
    if isinstance(annotation, str):  # the schedulers' annotations are strings
        annotation = {kind.__name__: kind for kind in _KINDS}.get(annotation)
    if annotation in _KINDS:
        return annotation
    if parameter.annotation is parameter.empty and type(parameter.default) in _KINDS:
        # the default's type, an int read as a number: torch writes momentum=0 for a float
        return float if type(parameter.default) is int else type(parameter.default)
    return None


def _fits(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, int) if kind is int else isinstance(value, (int, float))


def _args_problems(key: str, cls: type, args: Any, *, filled: dict[str, str]) -> list[str]:
    """What is wrong with ``args`` for ``cls`` by its signature; [] when nothing is."""
    params = {p.name: p for p in _parameters(cls)}
    accepted = [p.name for p in params.values() if p.name not in filled
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    listed = f"its parameters: {', '.join(accepted) or 'none'}"
    if not isinstance(args, dict) or not all(isinstance(name, str) for name in args):
        return [f"{key}={args!r:.60} is not valid; valid: a mapping of {cls.__name__}'s "
                f"parameters ({', '.join(accepted) or 'none'}) to values"]
    problems = []
    clash = [f"{name} ({filled[name]})" for name in args if name in filled]
    if clash:
        problems.append(f"{key}: the run sets {cls.__name__}'s {', '.join(clash)}; leave "
                        f"{'it' if len(clash) == 1 else 'them'} out; {listed}")
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [name for name in args if name not in accepted and name not in filled]
        if unknown:
            problems.append(f"{key}: {cls.__name__} takes no {', '.join(map(repr, unknown))}; "
                            f"{listed}")
    missing = [name for name in accepted if params[name].default is params[name].empty
               and name not in args]
    if missing:
        problems.append(f"{key}: {cls.__name__} needs {', '.join(missing)}; {listed}")
    for name, value in args.items():
        kind = _kind(params[name]) if name in accepted else None
        if kind is not None and not _fits(value, kind):
            problems.append(f"{key}: {name}={value!r} is not valid for {cls.__name__}; "
                            f"valid: {_KINDS[kind]}")
    return problems


def recipe_problems(*, optimizer: Any, optimizer_args: Any, lr: float, weight_decay: float,
                    scheduler: Any, scheduler_args: Any, monitor: str = "val_loss") -> list[str]:
    """What is wrong with an optimizer and scheduler recipe; [] when it builds.

    Checks the names (valid: ``optimizer_names()`` and the aliases, ``scheduler_names()``)
    and the arguments against each class's signature (names, and int, float or bool types),
    the optimizer's and the scheduler's each told; when both pass, builds them on a dummy
    parameter, so that a value torch refuses (``momentum: -1``) is told too. None args are {}.
    """
    optimizer_args = {} if optimizer_args is None else optimizer_args
    scheduler_args = {} if scheduler_args is None else scheduler_args
    problems = [*_optimizer_problems(optimizer, optimizer_args, weight_decay=weight_decay),
                *_scheduler_problems(scheduler, scheduler_args)]
    if problems:
        return problems
    return _build_problems(OptimizerSpec.of(optimizer, optimizer_args,
                                            weight_decay=weight_decay),
                           SchedulerSpec.of(scheduler, scheduler_args, monitor=monitor), lr=lr)


def _optimizer_problems(name: Any, args: Any, *, weight_decay: float) -> list[str]:
    valid = (*OPTIMIZER_ALIASES, *optimizer_names())
    if name not in valid:
        return [f"optimizer={name!r} is not valid; valid: {', '.join(valid)}"
                + _unusable(name) + _close_to(name, valid)]
    spec = OptimizerSpec.of(name, weight_decay=weight_decay)
    optimizer_class = getattr(torch.optim, spec.name)
    problems = _args_problems("optimizer_args", optimizer_class, args,
                              filled=FILLED["optimizer"])
    if weight_decay and "weight_decay" not in [p.name for p in _parameters(optimizer_class)]:
        problems.append(f"weight_decay={weight_decay!r} is not valid with optimizer="
                        f"{spec.name!r}: it takes no weight_decay; valid: 0")
    return problems


def _scheduler_problems(name: Any, args: Any) -> list[str]:
    if name is None:
        return [] if not args else [
            f"scheduler_args={args!r:.60} is given without a scheduler; valid: a scheduler "
            "(scheduler: NAME) that takes them, or no scheduler_args"]
    if name not in scheduler_names():
        return [f"scheduler={name!r} is not valid; valid: {', '.join(scheduler_names())}, "
                "or null" + _unusable(name) + _close_to(name, scheduler_names())]
    return _args_problems("scheduler_args", getattr(lr_scheduler, name), args,
                          filled={**FILLED["scheduler"], **FILLED.get(name, {})})


def _close_to(name: Any, valid: Sequence[str]) -> str:
    """`` (did you mean X?)`` for a name that differs from a valid one in case or a letter."""
    if not isinstance(name, str):
        return ""
    by_lower = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.8)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


def _unusable(name: Any) -> str:
    known = isinstance(name, str) and name in UNUSABLE
    return f" ({name} is torch's, but {UNUSABLE[name]})" if known else ""


_REFUSALS = (TypeError, ValueError, RuntimeError, ZeroDivisionError, KeyError)
"""What torch raises for an argument value it cannot use (a string for a number, a 0 period)."""


def _refusal(key: str, name: str, args: Mapping[str, Any], what: str, error: Exception) -> str:
    return (f"{key}={dict(args)!r}: {name} {what}: {error}; valid: values torch's {name} "
            "accepts (see its documentation)")


def _build_problems(optimizer: OptimizerSpec, scheduler: SchedulerSpec | None, *,
                    lr: float) -> list[str]:
    """Build both on a dummy parameter, as the trainer does, and take two steps; torch's
    refusal, or a rate that is not finite and >= 0, named."""
    parameter = torch.nn.Parameter(torch.zeros(2))
    parameter.grad = torch.zeros(2)
    try:
        built = optimizer.build([parameter], lr=lr)
    except _REFUSALS as error:
        return [_refusal("optimizer_args", optimizer.name, optimizer.args, "refused them", error)]
    try:
        schedule = None if scheduler is None else scheduler.build(built, lr=lr, total_steps=10)
    except _REFUSALS as error:
        return [_refusal("scheduler_args", scheduler.name, scheduler.args, "refused them", error)]
    for step in (1, 2):
        try:
            built.step()
        except _REFUSALS as error:
            return [_refusal("optimizer_args", optimizer.name, optimizer.args, "failed a step",
                             error)]
        if scheduler is None:
            continue
        try:
            scheduler.step(schedule, {scheduler.monitor: 1.0})
        except _REFUSALS as error:
            return [_refusal("scheduler_args", scheduler.name, scheduler.args, "failed a step",
                             error)]
        rate = built.param_groups[0]["lr"]
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate >= 0):
            return [f"scheduler_args={dict(scheduler.args)!r}: {scheduler.name} gives a "
                    f"learning rate of {rate!r} after {step} step(s); valid: finite rates >= 0"]
    return []
