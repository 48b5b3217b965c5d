"""A model's score per class, (N, 2), whatever its output layout: what explanations attribute
and what an exported graph computes (with ``probabilities=True``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neopain.errors import NeopainError


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
        if out.ndim == 1:
            out = out[:, None]
        if out.ndim != 2 or out.shape[1] not in (1, 2):
            raise NeopainError(f"model output has shape {tuple(out.shape)}; valid: (N, 2) class "
                               "logits or (N, 1) one sigmoid logit")
        if out.shape[1] == 1:
            if self.probabilities:
                pain = torch.sigmoid(out)
                return torch.cat([1.0 - pain, pain], dim=1)
            return torch.cat([-out, out], dim=1)
        return torch.softmax(out, dim=1) if self.probabilities else out
