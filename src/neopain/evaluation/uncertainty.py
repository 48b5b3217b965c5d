"""How unsure a model is of one face, from several stochastic predictions of it.

Given P(pain) from ``P`` passes (MC dropout, Gal & Ghahramani 2016) or ensemble members,
``p_k``, k = 1 … P, for each face:

- predictive mean ``p̄ = mean_k p_k``, what the model answers;
- predictive entropy ``H(p̄)`` (nats; ``H(p) = −p log p − (1−p) log(1−p)``, at most log 2),
  the total uncertainty;
- expected entropy ``mean_k H(p_k)``, the part every pass shares (the face itself is
  ambiguous: aleatoric);
- mutual information ``H(p̄) − mean_k H(p_k)`` (≥ 0, the BALD score of Houlsby et al. 2011),
  the part the passes disagree on: the model does not know this kind of face (epistemic).
  0 when every pass agrees; log 2 when half the passes say 0 and half say 1.

``summarize_passes`` is numpy alone. ``mc_dropout_probs`` runs a torch network ``passes``
times with its dropout layers sampling and everything else (batch norm above all) in eval mode,
as MC dropout requires: batch statistics of the test batch would change the answer with its
company, not with the model's doubt.

Example:
    >>> summary = summarize_passes([[0.9, 0.5], [0.1, 0.5]])  # 2 passes × 2 faces
    >>> summary.mutual_information.round(3).tolist()
    [0.368, 0.0]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from neopain.errors import NeopainError

if TYPE_CHECKING:  # torch loads with the first stochastic pass, not with this module
    from torch import Tensor, nn

EPS = 1e-12
"""Probabilities are clipped to [EPS, 1 − EPS] before taking logarithms."""


@dataclass(frozen=True)
class PassSummary:
    """Per face: the predictive mean and the entropies of ``P`` passes.

    Attributes:
        mean: predictive mean P(pain), shape (N,).
        entropy: predictive entropy H(mean) in nats, (N,).
        expected_entropy: mean over passes of H(p_k), (N,).
        mutual_information: entropy − expected_entropy, clipped at 0, (N,).
        passes: P, the passes (or members × passes) each face had.
        spread: the standard deviation of the passes' P(pain) (over P, not P − 1), (N,).
    """

    mean: np.ndarray
    entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_information: np.ndarray
    passes: int
    spread: np.ndarray

    def for_face(self, index: int) -> dict[str, float]:
        """One face's ``Prediction.uncertainty``: entropy, mutual_information, passes."""
        return {"entropy": float(self.entropy[index]),
                "mutual_information": float(self.mutual_information[index]),
                "passes": float(self.passes)}


def binary_entropy(prob: ArrayLike) -> np.ndarray:
    """H(p) in nats of P(pain) ``prob`` (any shape); 0 at 0 and 1, log 2 at 0.5.

    Raises:
        NeopainError: values outside [0, 1] or not finite.
    """
    p = _probabilities(prob, what="prob")
    q = np.clip(p, EPS, 1.0 - EPS)
    entropy = -(q * np.log(q) + (1.0 - q) * np.log1p(-q))
    return np.where((p == 0.0) | (p == 1.0), 0.0, entropy)


def summarize_passes(probs: ArrayLike) -> PassSummary:
    """Predictive mean, entropy, expected entropy and mutual information of passes.

    Args:
        probs: P(pain) of shape (P, N): P passes (or ensemble members) over N faces; one
            pass gives mutual information 0.

    Raises:
        NeopainError: not a non-empty (P, N) array of probabilities in [0, 1].
    """
    p = _probabilities(probs, what="probs")
    if p.ndim != 2 or p.shape[0] < 1:
        raise NeopainError(f"probs has shape {p.shape}; expected (passes, faces) with at "
                           "least one pass")
    mean = p.mean(axis=0)
    entropy = binary_entropy(mean)
    expected = binary_entropy(p).mean(axis=0)
    # MI is never negative, and exactly 0 where every pass agrees (rounding of the mean of
    # equal values would leave ±1e-16 there)
    information = np.clip(entropy - expected, 0.0, None)
    information[p.min(axis=0) == p.max(axis=0)] = 0.0
    return PassSummary(mean=mean, entropy=entropy, expected_entropy=expected,
                       mutual_information=information, passes=int(p.shape[0]),
                       spread=p.std(axis=0))


def _probabilities(values: ArrayLike, *, what: str) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(p)):
        raise NeopainError(f"{what} holds NaN or infinite values; valid: probabilities of pain "
                           "in [0, 1]")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise NeopainError(f"{what} holds values outside [0, 1] (min {p.min():.3g}, max "
                           f"{p.max():.3g}); valid: probabilities of pain")
    return p


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``model`` (``nn.Dropout`` and its 1d/2d/3d/alpha variants)."""
    from torch import nn

    kinds = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
             nn.FeatureAlphaDropout)
    return [module for module in model.modules() if isinstance(module, kinds)]


@contextmanager
def dropout_sampling(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, only ``model``'s dropout layers are in training mode (they sample);
    every other module keeps its mode. On exit each dropout layer gets its mode back.

    Raises:
        NeopainError: the model has no dropout layer (its passes could not differ).
    """
    layers = dropout_layers(model)
    if not layers:
        raise NeopainError(f"{type(model).__name__} has no dropout layer; MC dropout needs "
                           "one (use mc_passes=0, or an ensemble of a run's folds)")
    modes = [layer.training for layer in layers]
    try:
        for layer in layers:
            layer.train(True)
        yield model
    finally:
        for layer, mode in zip(layers, modes):
            layer.train(mode)


def mc_dropout_probs(model: nn.Module, inputs: Tensor, *, passes: int, seed: int | None = 0,
                     pain_index: int = 1) -> np.ndarray:
    """P(pain) of ``passes`` stochastic forward passes of ``model`` over ``inputs``.

    The model is put in eval mode and only its dropout layers sample (``dropout_sampling``);
    its modes are as before on return. With ``seed`` the passes are reproducible for the same
    inputs (torch's global generator is forked, so the caller's random state is untouched);
    None: torch's current random state.

    Args:
        model: logits (N, classes) from (N, …) inputs; softmax gives the probabilities, or a
            sigmoid for one output.
        inputs: a batch on the model's device.
        passes: how many passes, at least 1.
        seed: the seed of the dropout masks, or None.
        pain_index: the output of ``pain`` (the cfg's labels).

    Returns:
        (passes, N) float64 P(pain).

    Raises:
        NeopainError: passes below 1, or a model without dropout.
    """
    import torch

    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise NeopainError(f"passes={passes!r} must be a whole number >= 1")
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode(), \
                dropout_sampling(model):
            if seed is not None:
                torch.manual_seed(seed)
            return np.stack([pain_probability(model(inputs), pain_index=pain_index)
                             for _ in range(passes)])
    finally:
        for module, mode in modes.items():
            module.training = mode


def pain_probability(logits: Tensor, *, pain_index: int = 1) -> np.ndarray:
    """P(pain) (N,) float64 of logits (N, classes) (softmax), or (N, 1) (sigmoid)."""
    logits = logits.float()
    probs = logits.sigmoid()[:, 0] if logits.shape[1] == 1 else \
        logits.softmax(dim=1)[:, pain_index]
    return probs.cpu().numpy().astype(np.float64)
