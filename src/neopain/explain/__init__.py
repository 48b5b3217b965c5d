"""Explanations of a model's decisions: heatmaps, facial regions, agreement with human perception.

One explainer per method, all sharing ``Explainer`` (a context manager): ``GradCam``,
``GuidedGradCam``, ``IntegratedGradients``, captum's gradient methods (``CaptumGradients``:
saliency, input × gradient, DeepLift, GradientSHAP, SmoothGrad), and the perturbation methods
``Occlusion``, ``Rise`` and ``Lime`` (which also explain a model given as a function, such as an
ONNX session). ``methods.build_explainers`` builds them by name (``METHOD_NAMES``);
``benchmark`` scores them on faithfulness, localization and time. ``regions`` splits a face into
forehead, brows, eyes, nose, nasolabial folds, mouth, chin and cheeks; ``perception`` compares
heatmaps with human perception heatmaps; ``sanity`` checks that explanations depend on the
weights and that IG attributions add up.

Example:
    >>> with GradCam(model) as explainer:  # doctest: +SKIP
    ...     heatmaps = explainer.explain(images, target="pain")  # (N, H, W)
"""

from neopain.explain.attention_rollout import AttentionRollout
from neopain.explain.base import CLASSES, ClassScores, Explainer, PainFunction
from neopain.explain.captum_gradients import CaptumGradients
from neopain.explain.gradcam import GradCam
from neopain.explain.guided_gradcam import GuidedGradCam
from neopain.explain.integrated_gradients import IgResult, IntegratedGradients
from neopain.explain.lime import Lime
from neopain.explain.methods import METHOD_NAMES, MODEL_AGNOSTIC, build_explainers
from neopain.explain.occlusion import Occlusion
from neopain.explain.rise import Rise
from neopain.faces.regions import OUTSIDE, REGIONS, region_map, region_shares

__all__ = [
    "CLASSES", "METHOD_NAMES", "MODEL_AGNOSTIC", "OUTSIDE", "REGIONS", "AttentionRollout",
    "CaptumGradients",
    "ClassScores", "Explainer", "GradCam", "GuidedGradCam", "IgResult", "IntegratedGradients",
    "Lime", "Occlusion", "PainFunction", "Rise", "build_explainers", "region_map",
    "region_shares",
]
