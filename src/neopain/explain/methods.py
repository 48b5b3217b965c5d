"""Explanation methods by name: what ``neopain explain run --method`` and ``explain benchmark``
accept, and the one place that builds them."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from torch import nn

from neopain.errors import NeopainError
from neopain.explain.attention_rollout import AttentionRollout, attention_layers
from neopain.explain.base import Explainer, Model
from neopain.explain.captum_gradients import CaptumGradients
from neopain.explain.gradcam import GradCam
from neopain.explain.guided_gradcam import GuidedGradCam
from neopain.explain.integrated_gradients import IntegratedGradients
from neopain.explain.lime import Lime
from neopain.explain.occlusion import Occlusion
from neopain.explain.rise import Rise
from neopain.models.cfg import ModelCfg

log = logging.getLogger(__name__)

MODEL_AGNOSTIC = ("occlusion", "rise", "lime")
"""Methods that need only P(pain) of an image, so they also explain an ONNX model."""

ATTENTION_METHODS = ("rollout",)
"""Methods that read a transformer's attention layers; skipped, with a log note, for a model
without them when other methods are asked for too (e.g. ``explain benchmark``'s default of
every method on a CNN)."""

METHOD_NAMES = ("gradcam", "ig", *MODEL_AGNOSTIC, "guidedgradcam", *CaptumGradients.METHODS,
                *ATTENTION_METHODS)
"""Every method, by the name the CLI and the output files use."""


def build_explainers(methods: Iterable[str], model: Model, cfg: ModelCfg | None, *,
                     layer: str | None = None, baseline: str = "blur", steps: int = 64,
                     gate: bool = True, rise_masks: int = 2000,
                     seed: int = 0) -> dict[str, Explainer]:
    """Open one explainer per method name (repeats ignored), in the order given.

    Args:
        methods: names from ``METHOD_NAMES``.
        model: a torch model, or a ``PainFunction`` (only ``MODEL_AGNOSTIC`` methods).
        cfg: the model's cfg (normalization of the ``black`` baseline).
        layer: the Grad-CAM and guided Grad-CAM layer (default: the cfg's ``cam_layer``).
        baseline: what removed information becomes (IG, occlusion, RISE, LIME, DeepLift,
            GradientSHAP): ``blur``, ``black`` or ``mean``.
        steps: IG's integration steps.
        gate: Grad-CAM's gate.
        rise_masks: RISE's random masks per image.
        seed: seeds the random methods (RISE, LIME, GradientSHAP, SmoothGrad).

    Returns:
        name → open explainer; the caller closes them in reverse order (each restores the
        model mode it found). ``ATTENTION_METHODS`` asked for together with other methods are
        left out, with a log note, for a model without attention layers.

    Raises:
        NeopainError: an unknown name (the valid ones are listed), a gradient or attention
            method for a model function, an attention method alone for a model without
            attention layers, or a bad option of a method.
    """
    names = list(dict.fromkeys(methods))
    unknown = [m for m in names if m not in METHOD_NAMES]
    if unknown:
        raise NeopainError(f"--method {unknown[0]!r} is not valid; valid: "
                           f"{', '.join(METHOD_NAMES)}")
    if not isinstance(model, nn.Module):
        needs_torch = [m for m in names if m not in MODEL_AGNOSTIC]
        if needs_torch:
            how = "reads attention layers" if needs_torch[0] in ATTENTION_METHODS else \
                "follows gradients"
            raise NeopainError(f"--method {needs_torch[0]!r} needs a torch model (it {how}); "
                               f"an .onnx model can use: {', '.join(MODEL_AGNOSTIC)}")
    skipped = [m for m in names if m in ATTENTION_METHODS]
    if skipped and len(skipped) < len(names) and not attention_layers(model):
        names = [m for m in names if m not in skipped]
        log.warning("%s skipped: the model has no attention layers (a transformer's "
                    "nn.MultiheadAttention)", ", ".join(skipped))
    makers = {
        "gradcam": lambda: GradCam(model, layer=layer, gate=gate),
        "ig": lambda: IntegratedGradients(model, baseline=baseline, steps=steps, cfg=cfg),
        "occlusion": lambda: Occlusion(model, baseline=baseline, cfg=cfg),
        "rise": lambda: Rise(model, masks=rise_masks, baseline=baseline, cfg=cfg, seed=seed),
        "lime": lambda: Lime(model, baseline=baseline, cfg=cfg, seed=seed),
        "guidedgradcam": lambda: GuidedGradCam(model, layer=layer),
        "rollout": lambda: AttentionRollout(model),
    }
    built: dict[str, Explainer] = {}
    try:
        for name in names:
            built[name] = makers[name]() if name in makers else CaptumGradients(
                model, method=name, baseline=baseline, cfg=cfg, seed=seed)
    except NeopainError:
        for explainer in reversed(built.values()):  # each restores the mode it found
            explainer.close()
        raise
    return built
