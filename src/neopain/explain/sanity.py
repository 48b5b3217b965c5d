"""Sanity checks of explanations: do they depend on the model, do IG attributions add up?

- ``randomization_test``: cascading model-parameter randomization (Adebayo et al., NeurIPS 2018):
  the layers are re-initialized from the output back towards the input, one more at each step,
  and each image's heatmap is compared with the trained model's (Spearman rank correlation of
  the pixels). An explanation that barely changes while the weights become noise describes the
  image, not the model.
- ``completeness_check``: Integrated Gradients' attributions must add up to
  ``f(x) - f(baseline)``; the error per image, absolute and relative.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from neopain.errors import NeopainError
from neopain.explain.base import ClassScores, Explainer, Target, as_batch, class_indices
from neopain.explain.integrated_gradients import IntegratedGradients

RANDOMIZATION_LIMIT = 0.5
"""Mean Spearman correlation with the trained model's heatmaps that fully randomized weights
must stay below."""
COMPLETENESS_LIMIT = 0.02
"""Largest completeness error of IG, relative to ``|f(x) - f(baseline)|``."""

ExplainerFactory = Callable[[nn.Module], Explainer]


def heatmap_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two heatmaps' pixels.

    A constant map (e.g. an all-zero Grad-CAM of a randomized model) shares no ranking with
    the other: 0. NaN when both are constant.
    """
    a, b = np.ravel(a), np.ravel(b)
    constant_a, constant_b = np.ptp(a) == 0, np.ptp(b) == 0
    if constant_a and constant_b:
        return math.nan
    if constant_a or constant_b:
        return 0.0
    return float(stats.spearmanr(a, b)[0])


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the modules whose own parameters can be re-initialized, output → input."""
    names = [name for name, module in model.named_modules()
             if any(True for _ in module.parameters(recurse=False))
             and callable(getattr(module, "reset_parameters", None))]  # torch layers have it
    return names[::-1]


def randomization_test(model: nn.Module, images: torch.Tensor | np.ndarray, *,
                       target: Target, explainer: ExplainerFactory, seed: int = 0,
                       layers: list[str] | None = None) -> pd.DataFrame:
    """Cascading randomization: heatmaps after each further layer is re-initialized.

    The model itself is not changed (a copy is randomized).

    Args:
        model: the trained model.
        images: (N, 3, H, W) preprocessed images.
        target: the class explained (one, or one per image).
        explainer: builds an explainer for a model, e.g. ``lambda m: GradCam(m)``.
        seed: seeds the re-initialization.
        layers: the cascade, output → input; default ``parameter_layers(model)``.

    Returns:
        One row per step and image: ``step`` (1 = only the first layer randomized),
        ``layer`` (the layer randomized at that step), ``image`` (index), ``spearman``.

    Raises:
        NeopainError: a layer name that is not a module with parameters of the model.
    """
    batch = as_batch(images)
    targets = class_indices(target, len(batch))
    cascade = parameter_layers(model) if layers is None else list(layers)
    valid = parameter_layers(model)
    unknown = [name for name in cascade if name not in valid]
    if unknown or not cascade:
        raise NeopainError(f"layers {unknown or cascade} cannot be randomized; valid: "
                           f"{', '.join(valid)}")
    with explainer(model) as trained:
        reference = trained.explain(batch, target=targets)
    randomized = copy.deepcopy(model)
    rows = []
    with torch.random.fork_rng(devices=[]):
        for step, name in enumerate(cascade, start=1):
            torch.manual_seed(seed * 1000 + step)
            randomized.get_submodule(name).reset_parameters()
            with explainer(randomized) as method:
                heat = method.explain(batch, target=targets)
            rows += [{"step": step, "layer": name, "image": i,
                      "spearman": heatmap_spearman(reference[i], heat[i])}
                     for i in range(len(batch))]
    return pd.DataFrame(rows, columns=["step", "layer", "image", "spearman"])


def randomization_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and median Spearman per cascade step (NaN images left out)."""
    grouped = table.groupby(["step", "layer"], sort=True)["spearman"]
    return grouped.agg(["mean", "median", "count"]).reset_index()


def completeness_check(model: nn.Module, images: torch.Tensor | np.ndarray, *,
                       target: Target, **options: object) -> pd.DataFrame:
    """IG completeness per image at the given ``IntegratedGradients`` options.

    Returns:
        Columns ``image``, ``score`` (f(x)), ``baseline_score`` (f(baseline)),
        ``attribution_sum``, ``error`` (absolute) and ``relative_error``
        (``error / |f(x) - f(baseline)|``).
    """
    with IntegratedGradients(model, **options) as ig:
        result = ig.attribute(images, target=target)
    total = result.attributions.reshape(len(result.score), -1).astype(np.float64).sum(axis=1)
    return pd.DataFrame({"image": np.arange(len(total)), "score": result.score,
                         "baseline_score": result.baseline_score, "attribution_sum": total,
                         "error": result.error, "relative_error": result.relative_error})


@dataclass(frozen=True)
class Verdict:
    """One check's outcome, in words."""

    text: str
    passed: bool


@dataclass(frozen=True)
class SanityReport:
    """``check_fold``'s findings: per method the randomization summary, IG completeness per
    image (None when IG was not checked), and the verdicts."""

    images: int
    randomization: dict[str, pd.DataFrame]
    completeness: pd.DataFrame | None
    verdicts: list[Verdict]


def check_fold(fold_dir: str | os.PathLike[str], *, methods: Sequence[str] = ("gradcam", "ig"),
               images: int = 8, manifest: str | os.PathLike[str] | None = None,
               layer: str | None = None, seed: int = 0,
               on_progress: Callable[[int, int], None] | None = None) -> SanityReport:
    """Both sanity checks on the first ``images`` test images of a training fold.

    Each image is explained for its predicted class; IG runs at its default settings.

    Raises:
        NeopainError: an unknown method, a fold without model.pt or manifest, no test images.
    """
    from neopain.data.manifest import load_manifest
    from neopain.explain.gradcam import GradCam
    from neopain.explain.run import manifest_items
    from neopain.runs import load_fold, select_rows

    factories: dict[str, ExplainerFactory] = {
        "gradcam": lambda m: GradCam(m, layer=layer), "ig": lambda m: IntegratedGradients(m)}
    unknown = [m for m in methods if m not in factories]
    if unknown or not methods:
        raise NeopainError(f"method {unknown[0] if unknown else None!r} cannot be checked; "
                           f"valid: {', '.join(factories)}")
    fold = load_fold(fold_dir)
    path = manifest or fold.manifest
    if path is None:
        raise NeopainError(f"{fold_dir}: the run's config.yaml names no manifest; give one")
    data = load_manifest(path)
    rows = select_rows(data, subjects=fold.test_subjects, limit=images)
    if not rows:
        raise NeopainError(f"{fold_dir}: none of its test subjects is in {path}")
    model = fold.model
    batch = np.stack([item.image for item in manifest_items(
        data, model.cfg, rows=rows, crop_to_face=fold.crop_to_face)])
    with torch.no_grad():
        prob_pain = ClassScores(model, probabilities=True)(torch.from_numpy(batch))[:, 1]
    target = (prob_pain.numpy() >= model.cfg.threshold).astype(int)
    methods = list(dict.fromkeys(methods))
    steps = len(methods) + ("ig" in methods)
    summaries, verdicts, completeness = {}, [], None
    for done, method in enumerate(methods, start=1):
        table = randomization_test(model, batch, target=target, explainer=factories[method],
                                   seed=seed)
        summaries[method] = randomization_summary(table)
        final = float(summaries[method]["mean"].iloc[-1])
        verdicts.append(Verdict(f"{method}: mean Spearman {final:.2f} with every layer "
                                f"randomized (must be < {RANDOMIZATION_LIMIT})",
                                final < RANDOMIZATION_LIMIT))
        if on_progress is not None:
            on_progress(done, steps)
    if "ig" in methods:
        completeness = completeness_check(model, batch, target=target)
        worst = float(completeness["relative_error"].max())
        verdicts.append(Verdict(f"ig: completeness error at most {worst:.2%} of |f(x) - "
                                f"f(baseline)| (must be <= {COMPLETENESS_LIMIT:.0%})",
                                worst <= COMPLETENESS_LIMIT))
        if on_progress is not None:
            on_progress(steps, steps)
    return SanityReport(len(batch), summaries, completeness, verdicts)
