"""Integrated Gradients (Sundararajan et al., ICML 2017) through captum.

Attributions integrate the gradient of the target class's logit along the straight path from a
baseline image to the input; they add up to ``f(x) - f(baseline)`` (completeness) up to the
error of the numerical integral, which ``attribute`` reports per image. Images whose error
exceeds ``tolerance`` × ``|f(x) - f(baseline)|`` are integrated again with twice the steps, up
to ``max_steps``: most images converge at 64 steps, a few sit on kinks of the ReLU network's
path and need more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from torch import Tensor, nn

from neopain.errors import NeopainError
from neopain.explain.base import (
    BASELINES, ClassScores, Explainer, Target, as_batch, baseline_images, class_indices,
)
from neopain.models.cfg import ModelCfg

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_middle")


@dataclass(frozen=True)
class IgResult:
    """Attributions (N, 3, H, W) and the completeness check, per image.

    Attributes:
        attributions: per input value; ``attributions[i].sum()`` approximates
            ``score[i] - baseline_score[i]``.
        score, baseline_score: the target class's logit for the image and for its baseline.
        error: ``|attributions.sum() - (score - baseline_score)|`` per image.
    """

    attributions: np.ndarray
    score: np.ndarray
    baseline_score: np.ndarray
    error: np.ndarray

    @property
    def relative_error(self) -> np.ndarray:
        """``error / |score - baseline_score|`` per image (inf where the difference is 0)."""
        gap = np.abs(self.score - self.baseline_score)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gap > 0, self.error / gap, np.where(self.error > 0, np.inf, 0.0))


class IntegratedGradients(Explainer):
    """Integrated Gradients with a black or a blurred baseline; heatmap = positive evidence.

    The heatmap of an image is its attributions summed over colour channels, negative values
    (evidence against the class) set to 0.

    Args:
        model: a torch model; a ``PainModel``'s cfg gives the normalization of black.
        baseline: ``blur`` (the image blurred with a Gaussian of ``blur_sigma`` × image width:
            removes the fine features, keeps colour and layout) or ``black`` (every pixel 0
            before normalization).
        steps: integration steps of the first pass.
        tolerance: completeness error, relative to ``|f(x) - f(baseline)|``, above which an
            image is integrated again with twice the steps; None: never.
        max_steps: the most steps a repeated pass uses.
        method: captum's quadrature: ``gausslegendre``, ``riemann_trapezoid``,
            ``riemann_middle``.
        internal_batch_size: path points evaluated per pass (bounds memory: each holds one
            forward and backward pass of the model).
        blur_sigma: the blur baseline's Gaussian sigma as a share of the image width.
        cfg: the normalization for ``black``; default the model's cfg.
        batch_size: images per call of captum.

    Raises:
        NeopainError: a bad option, or ``black`` without a cfg.
    """

    name = "ig"

    def __init__(self, model: nn.Module, *, baseline: str = "blur", steps: int = 64,
                 tolerance: float | None = 0.02, max_steps: int = 512,
                 method: str = "gausslegendre", internal_batch_size: int = 64,
                 blur_sigma: float = 0.1, cfg: ModelCfg | None = None,
                 batch_size: int = 8) -> None:
        self.baseline = baseline
        self.steps = steps
        self.tolerance = tolerance
        self.max_steps = max_steps
        self.method = method
        self.internal_batch_size = internal_batch_size
        self.blur_sigma = blur_sigma
        self.cfg = cfg if cfg is not None else getattr(model, "cfg", None)  # PainModel has one
        checks = [
            ("baseline", baseline in BASELINES, ", ".join(BASELINES)),
            ("steps", isinstance(steps, int) and steps >= 2, "a whole number >= 2"),
            ("tolerance", tolerance is None or (isinstance(tolerance, (int, float))
                                                and tolerance > 0), "a number > 0, or None"),
            ("max_steps", isinstance(max_steps, int) and max_steps >= steps,
             f"a whole number >= steps ({steps})"),
            ("method", method in METHODS, ", ".join(METHODS)),
            ("internal_batch_size", isinstance(internal_batch_size, int)
             and internal_batch_size >= 1, "a whole number >= 1"),
            ("blur_sigma", isinstance(blur_sigma, (int, float)) and 0 < blur_sigma <= 1,
             "a share of the image width in (0, 1]"),
        ]
        for key, ok, valid in checks:
            if not ok:
                raise NeopainError(f"{key}={getattr(self, key)!r} is not valid; valid: {valid}")
        if baseline == "black" and self.cfg is None:
            raise NeopainError("baseline='black' needs the model's normalization: pass cfg= or "
                               "a PainModel built by create_model")
        super().__init__(model, batch_size=batch_size)  # after the checks: it sets eval mode
        self._scores = ClassScores(model)
        self._ig: CaptumIntegratedGradients | None = CaptumIntegratedGradients(self._scores)

    def baselines(self, images: Tensor) -> Tensor:
        """The baseline of each image, normalized like the images."""
        return baseline_images(images, baseline=self.baseline, blur_sigma=self.blur_sigma,
                               cfg=self.cfg)

    def _integrate(self, images: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self._ig is None:
            raise NeopainError(f"this {self.name} explainer is closed; create a new one")
        baselines = self.baselines(images)
        with torch.no_grad():
            ends = self._scores(torch.cat([images, baselines]))
        index = torch.arange(len(images))
        score = ends[: len(images)][index, target]
        baseline_score = ends[len(images):][index, target]
        gap = (score - baseline_score).abs().double()
        attributions = torch.zeros_like(images)
        todo, steps = index, self.steps
        while len(todo):
            part = self._ig.attribute(
                images[todo], baselines=baselines[todo], target=target[todo], n_steps=steps,
                method=self.method, internal_batch_size=self.internal_batch_size).detach()
            attributions[todo] = part
            if self.tolerance is None or steps * 2 > self.max_steps:
                break
            error = (part.flatten(1).double().sum(dim=1) - (score - baseline_score)[todo]).abs()
            todo, steps = todo[error > self.tolerance * gap[todo]], steps * 2
        return attributions, score, baseline_score

    def _attribute(self, images: Tensor, target: Tensor) -> Tensor:
        attributions, _, _ = self._integrate(images, target)
        return attributions.sum(dim=1).clamp(min=0.0)

    def attribute(self, images: Tensor | np.ndarray, *, target: Target) -> IgResult:
        """Signed attributions and the completeness error of every image.

        Raises:
            NeopainError: bad images or targets, or the explainer is closed.
        """
        batch = as_batch(images)
        targets = class_indices(target, len(batch))
        parts: list[list[np.ndarray]] = [[], [], []]
        for start in range(0, len(batch), self.batch_size):
            stop = start + self.batch_size
            for part, value in zip(parts, self._integrate(batch[start:stop], targets[start:stop])):
                part.append(value.cpu().numpy())
        attributions, score, baseline_score = (np.concatenate(part) for part in parts)
        total = attributions.reshape(len(batch), -1).astype(np.float64).sum(axis=1)
        error = np.abs(total - (score.astype(np.float64) - baseline_score))
        return IgResult(attributions, score, baseline_score, error)

    def _release(self) -> None:
        self._ig = None
