"""What the methods that remove information share (RISE, LIME, occlusion, DeepLift,
GradientSHAP): checked options, and P(class) of a torch model or of a function."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.explain.base import BASELINES, ClassScores, Model, function_scores
from neopain.models.cfg import ModelCfg


def probability_scores(model: Model) -> Callable[[Tensor], Tensor]:
    """(P(nopain), P(pain)) per image of a torch model or a ``PainFunction``."""
    return (ClassScores(model, probabilities=True) if isinstance(model, nn.Module)
            else function_scores(model))


def check_counts(owner: object, keys: Iterable[str], *, least: int = 1) -> None:
    """Raise a NeopainError naming the first of ``owner``'s ``keys`` that is not a whole
    number >= ``least``."""
    for key in keys:
        value = getattr(owner, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise NeopainError(f"{key}={value!r} is not valid; valid: a whole number >= {least}")


def check_baseline(baseline: str, cfg: ModelCfg | None) -> None:
    """Raise a NeopainError for an unknown baseline, or ``black`` without a normalization."""
    if baseline not in BASELINES:
        raise NeopainError(f"baseline={baseline!r} is not valid; valid: {', '.join(BASELINES)}")
    if baseline == "black" and cfg is None:
        raise NeopainError("baseline='black' needs the model's normalization: pass cfg=")
