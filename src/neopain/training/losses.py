"""Targets and losses: balanced class weights, soft labels from NFCS scores, L1 on the head."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from neopain.errors import NeopainError

SOFT_LABELS = ("sigmoid", "linear", "step")
NFCS_MAX = 7.0
"""Highest score of the 7-action NFCS (brow bulge, eye squeeze, nasolabial furrow, open lips,
stretched mouth vertical and horizontal, taut tongue): ``linear`` divides by it."""
STEP_THRESHOLD = 3.0


def smoothing_problem(*, soft_labels: str | None, label_smoothing: float) -> str | None:
    """Why ``label_smoothing`` cannot be used with ``soft_labels``; None when it can (the one
    rule for the run config and the ``Trainer``)."""
    if soft_labels is None or not label_smoothing:
        return None
    return (f"label_smoothing={label_smoothing!r} cannot be combined with soft_labels="
            f"{soft_labels!r} (soft targets are already smoothed; the seed refuses it too); "
            "valid: label_smoothing: 0, or soft_labels: null")


def balanced_class_weights(labels: np.ndarray, *, n_classes: int = 2) -> np.ndarray:
    """``n / (n_classes · count_c)`` per class, as scikit-learn's ``class_weight="balanced"``.

    Raises:
        NeopainError: a class with no example (its weight would be infinite).
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    if (counts == 0).any():
        missing = int(np.flatnonzero(counts == 0)[0])
        raise NeopainError(f"class_weights='balanced' needs every class in the training data; "
                           f"class {missing} has no image; use class_weights=None")
    return len(labels) / (n_classes * counts.astype(np.float64))


def soft_targets(scores: np.ndarray, labels: np.ndarray, *, kind: str) -> np.ndarray:
    """P(pain) targets from NFCS ``scores``; rows without a score (NaN) keep their hard label.

    ``sigmoid``: 1 / (1 + exp(-(s − 2.5))); ``linear``: s / 7 clipped to 0–1; ``step``: s >= 3.

    Raises:
        NeopainError: an unknown ``kind``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if kind == "sigmoid":
        target = 1.0 / (1.0 + np.exp(-(scores - 2.5)))
    elif kind == "linear":
        target = np.clip(scores / NFCS_MAX, 0.0, 1.0)
    elif kind == "step":
        target = (scores >= STEP_THRESHOLD).astype(np.float64)
    else:
        raise NeopainError(f"soft_labels={kind!r} is not valid; valid: "
                           f"{', '.join(SOFT_LABELS)}, or None")
    return np.where(np.isnan(scores), np.asarray(labels, dtype=np.float64), target)


def pain_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    targets: Tensor | None = None,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Mean cross-entropy of 2-class ``logits``, each example weighted by its class's weight.

    With ``targets`` (P(pain) per example), the cross-entropy is against the soft distribution
    ``(1 - t, t)``; ``label_smoothing`` then mixes it with the uniform one, as torch does.
    """
    if targets is None:
        losses = F.cross_entropy(logits, labels, reduction="none",
                                 label_smoothing=label_smoothing)
    else:
        soft = torch.stack([1.0 - targets, targets], dim=1).to(logits.dtype)
        soft = soft * (1.0 - label_smoothing) + label_smoothing / 2.0
        losses = -(soft * F.log_softmax(logits, dim=1)).sum(dim=1)
    if class_weights is None:
        return losses.mean()
    weights = class_weights.to(logits.dtype)[labels]
    # weighted mean, as torch's cross_entropy(weight=...) reduces: sum(w·l) / sum(w)
    return (weights * losses).sum() / weights.sum()


def l1_penalty(parameters: Iterable[torch.nn.Parameter]) -> Tensor:
    """Sum of absolute values of the weight matrices/kernels (biases are left out)."""
    terms = [p.abs().sum() for p in parameters if p.dim() > 1]
    return torch.stack(terms).sum() if terms else torch.zeros(())
