"""Explanations of a model's decisions: heatmaps, facial regions, agreement with human perception.

One explainer per method, all sharing ``Explainer`` (a context manager): ``GradCam``,
``IntegratedGradients`` and ``Occlusion`` (which also explains a model given as a function, such
as an ONNX session). ``regions`` splits a face into forehead, brows, eyes, nose, nasolabial
folds, mouth, chin and cheeks; ``perception`` compares heatmaps with human perception heatmaps;
``sanity`` checks that explanations depend on the weights and that IG attributions add up.

Example:
    >>> with GradCam(model) as explainer:  # doctest: +SKIP
    ...     heatmaps = explainer.explain(images, target="pain")  # (N, H, W)
"""

from neopain.explain.base import CLASSES, ClassScores, Explainer, PainFunction
from neopain.explain.gradcam import GradCam
from neopain.explain.integrated_gradients import IgResult, IntegratedGradients
from neopain.explain.occlusion import Occlusion
from neopain.faces.regions import OUTSIDE, REGIONS, region_map, region_shares

__all__ = [
    "CLASSES", "OUTSIDE", "REGIONS", "ClassScores", "Explainer", "GradCam", "IgResult",
    "IntegratedGradients", "Occlusion", "PainFunction", "region_map", "region_shares",
]
