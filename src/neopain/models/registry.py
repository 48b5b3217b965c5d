"""The model registry: build any architecture by name, read its cfg without building it.

Example:
    >>> from neopain.models import create_model, list_models
    >>> model = create_model("ncnn")
    >>> model.cfg.input_size
    (120, 120)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TypeVar

from neopain.errors import NeopainError
from neopain.models.base import PainModel
from neopain.models.cfg import ModelCfg

Factory = Callable[..., PainModel]
F = TypeVar("F", bound=Factory)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it.

    Attributes:
        name: registry name.
        cfg: the default cfg (the one ``create_model(name)`` sets).
        summary: one line on the architecture and where it comes from.
        published_params: the parameter count the literature reports, when it does.
        published_note: how that count was counted (e.g. Keras, with batch-norm statistics).
    """

    name: str
    cfg: ModelCfg
    summary: str = ""
    published_params: int | None = None
    published_note: str = ""


_FACTORIES: dict[str, Factory] = {}
_INFO: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    cfg: ModelCfg,
    summary: str = "",
    published_params: int | None = None,
    published_note: str = "",
) -> Callable[[F], F]:
    """Decorator: make a factory ``fn(**kwargs) -> PainModel`` buildable by ``name``.

    ``cfg`` is the model's preprocessing; ``create_model`` sets it on every model the factory
    builds, and ``model_cfg(name)`` reads it without building one.

    Raises:
        ValueError: ``name`` is registered already (a programming error, not a user's).
    """

    def add(factory: F) -> F:
        if name in _FACTORIES:
            raise ValueError(f"model {name!r} is registered twice")
        _FACTORIES[name] = factory
        _INFO[name] = ModelInfo(name, cfg, summary or _first_line(factory.__doc__),
                                published_params, published_note)
        return factory

    return add


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0]


def _load_families() -> None:
    # imported here so that each family registers itself on first use, not at package import
    from neopain.models import inception, mobile, ncnn, resnet, vgg, vit  # noqa: F401


def list_models() -> list[str]:
    """Names of every registered network, sorted."""
    _load_families()
    return sorted(_FACTORIES)


FOLD_MODEL_GROUP = "neopain.fold_models"
"""The entry point group of the models ``neopain train`` runs that are not networks (the NFCS
scorer): ``pyproject.toml``, read by ``neopain.runs``."""


def _other_model_names() -> list[str]:
    """Names of the registered models that are not networks, read from their entry points'
    names only: loading them would import packages above this one."""
    return sorted(point.name for point in entry_points(group=FOLD_MODEL_GROUP))


def _check_name(name: str) -> None:
    _load_families()
    if name in _FACTORIES:
        return
    named = _other_model_names()
    if name in named:
        raise NeopainError(f"model {name!r} is rule-based, not a network: there is nothing to "
                           f"build; use neopain.prediction.load_predictor({name!r})")
    raise NeopainError(f"unknown model {name!r}; valid: {', '.join(sorted(_FACTORIES))} "
                       f"(rule-based: {', '.join(named)})")


def model_info(name: str) -> ModelInfo:
    """The registry's record of a model (cfg, summary, published count).

    Raises:
        NeopainError: unknown name (the valid ones are listed).
    """
    _check_name(name)
    return _INFO[name]


def model_cfg(name: str) -> ModelCfg:
    """The default cfg of a model, without building it where the registry holds one.

    Raises:
        NeopainError: unknown name (the valid ones are listed).
    """
    return model_info(name).cfg


def create_model(name: str, **kwargs: object) -> PainModel:
    """Build a registered model with fresh (random) weights, e.g. ``create_model("vgg16_nb")``.

    Raises:
        NeopainError: unknown name (the valid ones are listed) or an option the factory does not
            take (its valid options are listed).
    """
    _check_name(name)
    factory = _FACTORIES[name]
    signature = inspect.signature(factory)
    try:
        signature.bind(**kwargs)
    except TypeError:
        options = list(signature.parameters)
        unknown = sorted(set(kwargs) - set(options)) or sorted(kwargs)
        raise NeopainError(f"model {name!r}: unknown option(s) {', '.join(unknown)}; "
                           f"valid: {', '.join(options) or 'none'}") from None
    model = factory(**kwargs)
    model.cfg = _INFO[name].cfg
    model.build_args = dict(kwargs)
    return model


def model_options(name: str) -> str:
    """The keyword arguments network ``name`` is built with (a run config's ``model_args``),
    each with its default: ``dropout=0.1, single_output=False``, or ``none``.

    Raises:
        NeopainError: unknown name (the valid ones are listed).
    """
    _check_name(name)
    parameters = inspect.signature(_FACTORIES[name]).parameters.items()
    return ", ".join(f"{option}={parameter.default!r}" for option, parameter in parameters) \
        or "none"


def model_args_problem(name: str, args: object) -> str | None:
    """What is wrong with building network ``name`` with keyword arguments ``args`` (a run
    config's ``model_args``), or None. The model is built on torch's meta device, so its own
    value checks run without allocating its weights.

    Raises:
        NeopainError: unknown name (the valid ones are listed).
    """
    import torch

    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        return (f"model_args={args!r:.80} is not valid; valid: a mapping of {name}'s options "
                "to values, e.g. {dropout: 0.5}")
    try:
        with torch.device("meta"):
            model = create_model(name, **args)
            height, width = model.cfg.input_size
            outputs = model.eval()(torch.empty(1, 3, height, width)).shape
    except NeopainError as error:
        return f"model_args: {error}"
    except Exception as error:  # noqa: BLE001 - any constructor's failure, told not raised
        return (f"model_args={args!r:.80} cannot build {name} ({type(error).__name__}: "
                f"{str(error)[:200]}); its options and defaults: {model_options(name)}")
    if tuple(outputs) != (1, 2):
        return (f"model_args={args!r:.80} gives {name} outputs of shape {tuple(outputs)[1:]}; "
                "neopain trains and runs networks with two logits (nopain, pain); its options "
                f"and defaults: {model_options(name)}")
    return None
