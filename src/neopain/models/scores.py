"""A model's score per class, (N, 2), whatever its output layout: what explanations attribute
and what an exported graph computes (with ``probabilities=True``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neopain.errors import NeopainError


def softmax_logits(out: Tensor) -> Tensor:
    """A model's output as (N, 2) logits whose softmax is P(class): (N, 2) logits as they are,
    one sigmoid logit ``z`` (N, 1) or (N,) as ``(0, z)`` (softmax(0, z) = (1 - sigmoid(z),
    sigmoid(z))).

    Raises:
        NeopainError: the output has another shape.
    """
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2 or out.shape[1] not in (1, 2):
        raise NeopainError(f"model output has shape {tuple(out.shape)}; valid: (N, 2) class "
                           "logits or (N, 1) one sigmoid logit")
    return torch.cat([torch.zeros_like(out), out], dim=1) if out.shape[1] == 1 else out


class ClassScores(nn.Module):
    """A model's score per class, (N, 2), whatever its output layout.

    Args:
        model: returns (N, 2) logits (softmax model) or (N, 1) / (N,) logits (sigmoid model).
        probabilities: scores are P(class) (softmax, or sigmoid and its complement) instead of
            logits (for a sigmoid model, the logits are ``(-z, z)``).

    Raises:
        NeopainError: (when called) the model's output has another shape.
    """

    def __init__(self, model: nn.Module, *, probabilities: bool = False) -> None:
        super().__init__()
        self.model = model
        self.probabilities = probabilities

    def forward(self, images: Tensor) -> Tensor:
        out = self.model(images)
        logits = softmax_logits(out)
        if self.probabilities:
            return torch.softmax(logits, dim=1)
        if out.ndim == 1 or out.shape[1] == 1:  # one sigmoid logit z: scores (-z, z)
            return torch.cat([-logits[:, 1:], logits[:, 1:]], dim=1)
        return logits
