"""Score explanation methods side by side: faithfulness, stability, localization, time.

For the same images and targets, each method's heatmaps are scored by:

- ``infidelity`` (captum.metrics, Yeh et al. 2019): the mean squared gap between what the
  heatmap predicts a small Gaussian perturbation changes and what it changes in P(target), the
  heatmap rescaled by its best factor (``normalize=True``) so methods of any scale compare;
  lower is better;
- ``sensitivity_max`` (captum.metrics): the largest relative change of the heatmap under
  perturbations within a small L∞ ball; lower is more stable;
- ``deletion`` / ``insertion`` (Petsiuk et al. 2018): P(target) while the heatmap's pixels,
  highest first, are replaced by the baseline (deletion: lower area under the curve is better)
  or restored onto it (insertion: higher is better). Hand-written: captum has neither curve;
- ``mass_ratio`` / ``pointing`` against ground-truth masks where they exist
  (``localization``);
- ``seconds_per_image``: wall time of the heatmaps.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from captum.metrics import infidelity, sensitivity_max
from matplotlib.figure import Figure
from sklearn.metrics import auc
from torch import Tensor

from neopain.errors import NeopainError
from neopain.explain.base import (
    Explainer, Model, Target, as_batch, baseline_images, class_indices,
)
from neopain.explain.captum_gradients import seeded_random
from neopain.explain.localization import localization
from neopain.explain.methods import METHOD_NAMES
from neopain.explain.perturbation import probability_scores
from neopain.models.cfg import ModelCfg

BENCHMARK_COLUMNS = ("method", "images", "seconds_per_image", "infidelity", "sensitivity_max",
                     "deletion", "insertion", "localized_images", "mass_ratio", "pointing")
ProgressHook = Callable[[int, int], None]
SCORE_CHUNK = 32  # images per forward pass of the deletion, insertion and captum metrics


@dataclass(frozen=True)
class BenchmarkResult:
    """The scores (one row per method, ``BENCHMARK_COLUMNS``) and the mean deletion and
    insertion curves (``method, curve, fraction, score``: P(target) at each share of pixels
    removed or restored)."""

    table: pd.DataFrame
    curves: pd.DataFrame


def deletion_insertion(scores: Callable[[Tensor], Tensor], images: Tensor, heatmaps: Tensor, *,
                       target: Tensor, baselines: Tensor,
                       steps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves (N, steps + 1) of P(target), at 0, 1/steps, … 1 of the
    pixels removed (or restored) in the order of the heatmap, highest first (ties: row-major).
    """
    count = images.shape[-2] * images.shape[-1]
    fractions = torch.linspace(0, 1, steps + 1)
    curves = np.zeros((2, len(images), steps + 1))
    for i, (image, heat, base) in enumerate(zip(images, heatmaps, baselines)):
        rank = torch.empty(count, dtype=torch.int64)
        rank[torch.argsort(heat.flatten(), descending=True, stable=True)] = torch.arange(count)
        # chosen[k]: the pixels among the first fractions[k] of the ranking, (steps+1, 1, H, W)
        chosen = (rank[None] < (fractions * count).round()[:, None]).view(
            steps + 1, 1, *images.shape[-2:]).float()
        deleted = image * (1 - chosen) + base * chosen
        inserted = base * (1 - chosen) + image * chosen
        stack = torch.cat([deleted, inserted])
        with torch.no_grad():
            probs = torch.cat([scores(stack[start:start + SCORE_CHUNK])
                               for start in range(0, len(stack), SCORE_CHUNK)])
        curves[:, i] = probs[:, int(target[i])].cpu().numpy().reshape(2, steps + 1)
    return curves[0], curves[1]


def _gaussian_perturbation(noise: float):
    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        delta = torch.randn_like(inputs) * noise
        return delta, inputs - delta

    return perturb


def _explanation_function(explainer: Explainer):
    def explain(inputs: Tensor | tuple[Tensor], target: Tensor) -> tuple[Tensor]:
        # captum passes and expects tuples of tensors
        images = inputs[0] if isinstance(inputs, tuple) else inputs
        if target.numel() == 1:  # captum leaves one target unexpanded: it means every copy
            target = int(target)
        return (torch.from_numpy(explainer.explain(images, target=target)),)

    return explain


def benchmark_explainers(model: Model, explainers: Mapping[str, Explainer],
                         images: Tensor | np.ndarray, *, target: Target,
                         masks: np.ndarray | None = None, cfg: ModelCfg | None = None,
                         baseline: str = "blur", steps: int = 20, perturbations: int = 4,
                         noise: float = 0.1, radius: float = 0.02, seed: int = 0,
                         on_progress: ProgressHook | None = None) -> BenchmarkResult:
    """Score every explainer on the same images (module docstring).

    Args:
        model: the model the explainers explain (torch model or ``PainFunction``).
        explainers: method name → open explainer.
        images: (N, 3, H, W) preprocessed images.
        target: one class for all or one per image.
        masks: (N, H, W) boolean ground truth of the target's evidence; an image with an empty
            mask is left out of the localization. None: no localization.
        cfg: the normalization of the ``black`` baseline.
        baseline: what deleted pixels become (and insertion starts from).
        steps: points of the deletion and insertion curves, after the first.
        perturbations: perturbed copies per image of infidelity and sensitivity-max (>= 2).
        noise: infidelity's Gaussian perturbation (standard deviation, normalized pixels).
        radius: sensitivity-max's L∞ radius (normalized pixels).
        seed: seeds the perturbations.
        on_progress: called ``(done, total)`` after each method's stage.

    Raises:
        NeopainError: no explainers, bad images, targets or masks, or a bad count.
    """
    if not explainers:
        raise NeopainError(f"no explanation method given; valid: {', '.join(METHOD_NAMES)}")
    # infidelity fits the heatmap's scale to the perturbations: one fits exactly (0 always)
    for key, value, least in (("steps", steps, 1), ("perturbations", perturbations, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise NeopainError(f"{key}={value!r} is not valid; valid: a whole number >= "
                               f"{least}")
    batch = as_batch(images)
    targets = class_indices(target, len(batch))
    if masks is not None and np.shape(masks) != (len(batch), *batch.shape[-2:]):
        raise NeopainError(f"masks have shape {np.shape(masks)}; valid: one (H, W) mask per "
                           f"image, {(len(batch), *batch.shape[-2:])}")
    truth = None if masks is None else np.asarray(masks, dtype=bool)
    present = None if truth is None else truth.reshape(len(batch), -1).any(axis=1)
    scores = probability_scores(model)
    baselines = baseline_images(batch, baseline=baseline, cfg=cfg)
    rows, curves, done, total = [], [], 0, 3 * len(explainers)
    fractions = np.linspace(0, 1, steps + 1)
    # captum takes at least the whole batch, once per perturbation, in one pass
    per_pass = min(max(SCORE_CHUNK, len(batch)), len(batch) * perturbations)
    with torch.no_grad():  # untimed warm-up, so the first method is not timed with the start
        scores(batch[:1])
    for name, explainer in explainers.items():
        started = time.perf_counter()
        heat = torch.from_numpy(explainer.explain(batch, target=targets))
        seconds = (time.perf_counter() - started) / len(batch)
        deletion, insertion = deletion_insertion(scores, batch, heat, target=targets,
                                                 baselines=baselines, steps=steps)
        done += 1
        if on_progress is not None:
            on_progress(done, total)
        with seeded_random(seed):
            # the heatmap is per pixel; spread over the colour channels to match the input
            unfaithful = infidelity(
                scores, _gaussian_perturbation(noise), batch,
                heat[:, None].expand_as(batch) / batch.shape[1], target=targets,
                n_perturb_samples=perturbations, max_examples_per_batch=per_pass,
                normalize=True)
            done += 1
            if on_progress is not None:
                on_progress(done, total)
            sensitivity = sensitivity_max(
                _explanation_function(explainer), batch, target=targets, perturb_radius=radius,
                n_perturb_samples=perturbations, max_examples_per_batch=per_pass)
        done += 1
        if on_progress is not None:
            on_progress(done, total)
        row = {"method": name, "images": len(batch), "seconds_per_image": seconds,
               "infidelity": float(unfaithful.mean()),
               "sensitivity_max": float(sensitivity.mean()),
               "deletion": float(auc(fractions, deletion.mean(axis=0))),
               "insertion": float(auc(fractions, insertion.mean(axis=0))),
               "localized_images": 0, "mass_ratio": np.nan, "pointing": np.nan}
        if present is not None and present.any():
            with warnings.catch_warnings():  # all-zero heatmaps: NaN, said in the table
                warnings.simplefilter("ignore", RuntimeWarning)
                found = localization(heat.numpy()[present], truth[present])
            row.update(localized_images=int(present.sum()), mass_ratio=found.mass_ratio,
                       pointing=found.pointing)
        rows.append(row)
        for curve, values in (("deletion", deletion), ("insertion", insertion)):
            curves += [{"method": name, "curve": curve, "fraction": f, "score": v}
                       for f, v in zip(fractions, values.mean(axis=0))]
    return BenchmarkResult(table=pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS)),
                           curves=pd.DataFrame(curves))


def benchmark_figure(result: BenchmarkResult, out: str | os.PathLike[str]) -> Path:
    """Deletion and insertion curves of every method, and bars of the mass in the masks
    (or, without masks, insertion − deletion), as PNG."""
    out = Path(out)
    fig = Figure(figsize=(13, 4), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, curve, better in zip(axes, ("deletion", "insertion"), ("lower", "higher")):
        for k, (method, points) in enumerate(result.curves[result.curves["curve"] == curve]
                                             .groupby("method", sort=False)):
            # matplotlib cycles 10 colours: the 11th method onwards gets a dashed line
            ax.plot(points["fraction"], points["score"], label=method,
                    ls=("-", "--", ":")[k // 10 % 3])
        ax.set_xlabel(f"share of pixels {'removed' if curve == 'deletion' else 'restored'}, "
                      "highest heatmap first")
        ax.set_ylabel("mean P(target)")
        ax.set_title(f"{curve} ({better} area is better)", fontsize=10)
    axes[0].legend(fontsize=7)
    table = result.table
    localized = table["mass_ratio"].notna().any()
    values = table["mass_ratio"] if localized else table["insertion"] - table["deletion"]
    axes[2].barh(table["method"], values.to_numpy(float), color="tab:purple")
    axes[2].invert_yaxis()
    if localized:
        axes[2].axvline(1.0, color="grey", ls="--", lw=1)
        axes[2].set_xlabel("mass in the masks ÷ their area share (1 = chance)")
    else:
        axes[2].set_xlabel("insertion − deletion area")
    axes[2].set_title("localization" if localized else "faithfulness", fontsize=10)
    fig.savefig(out, dpi=100)
    return out
